//! Plugin benchmark: points per second through a trivial filter plugin at batch sizes 1,
//! 100, 1,000 and 10,000, against the same logic compiled natively, in one run; then the
//! time from a new `.wasm` landing in the plugin directory to the new version serving.
//!
//! Run: `scripts/build-plugins.sh && cargo bench --bench plugin_throughput`

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::plugin::{
    CallEnv, PluginLimits, PluginRegistry, RegistryConfig, Runtime, RuntimeConfig, Settle, watch,
};
use sluice::point::{Field, FieldValue, Point, Tag};
use sluice::telemetry::Metrics;

fn plugin_file(name: &str) -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../target/plugins/{name}.wasm"));
    assert!(
        path.exists(),
        "{} missing: run scripts/build-plugins.sh",
        path.display()
    );
    path
}

/// Points shaped like Telegraf's `cpu` input: 1,000 hosts, two tags, two fields.
fn points(n: usize) -> Vec<Point> {
    (0..n)
        .map(|i| Point {
            measurement: "cpu".into(),
            tags: vec![
                Tag {
                    key: "cpu".into(),
                    value: "cpu-total".into(),
                },
                Tag {
                    key: "host".into(),
                    value: format!("host-{}", i % 1000),
                },
            ],
            fields: vec![
                Field {
                    key: "usage_user".into(),
                    value: FieldValue::Float(12.5),
                },
                Field {
                    key: "value".into(),
                    value: FieldValue::Float(if i % 10 == 0 { -1.0 } else { 1.0 }),
                },
            ],
            timestamp: 1_700_000_000_000_000_000 + i as i64,
        })
        .collect()
}

/// The native twin of `plugins/bench-filter`: keep a point iff it has a field `value`
/// whose numeric value is >= 0.
fn native_filter(points: &[Point]) -> Vec<bool> {
    points
        .iter()
        .map(|p| {
            p.field("value")
                .and_then(FieldValue::as_f64)
                .is_some_and(|v| v >= 0.0)
        })
        .collect()
}

/// Runs `f` over `data` in batches of `batch` until at least `min_time` has passed;
/// returns points per second.
fn rate(
    data: &[Point],
    batch: usize,
    min_time: Duration,
    mut f: impl FnMut(&[Point]) -> Vec<bool>,
) -> f64 {
    let started = Instant::now();
    let mut n = 0usize;
    while started.elapsed() < min_time {
        for chunk in data.chunks(batch) {
            let kept = f(chunk);
            assert_eq!(kept.len(), chunk.len());
            black_box(kept);
            n += chunk.len();
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn throughput() {
    let runtime = Runtime::new(&RuntimeConfig::default()).expect("runtime");
    let plugin = runtime
        .load_file(&plugin_file("bench-filter"), PluginLimits::default())
        .expect("load bench-filter");
    let env = CallEnv::default();
    // Same verdicts, or the comparison means nothing.
    let sample = points(1000);
    assert_eq!(
        plugin.filter(&sample, &env).expect("filter"),
        native_filter(&sample)
    );

    println!(
        "plugin throughput: bench-filter ({} bytes) vs native, points/s per core",
        plugin.size_bytes()
    );
    println!(
        "{:>7} {:>14} {:>14} {:>8}",
        "batch", "wasm", "native", "native/wasm"
    );
    for batch in [1usize, 100, 1_000, 10_000] {
        let data = points(if batch == 1 { 20_000 } else { 100_000 });
        let min = Duration::from_secs(2);
        let wasm = rate(&data, batch, min, |c| {
            plugin.filter(c, &env).expect("filter")
        });
        let native = rate(&data, batch, min, native_filter);
        println!(
            "{batch:>7} {wasm:>14.0} {native:>14.0} {:>8.1}x",
            native / wasm
        );
    }
}

fn swap_latency() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin_dir = dir.path().join("plugins");
    let registry = PluginRegistry::open(
        Runtime::new(&RuntimeConfig::default()).expect("runtime"),
        RegistryConfig {
            dir: plugin_dir.clone(),
            default_limits: PluginLimits::default(),
            limits: Default::default(),
            quarantine_after: 5,
        },
        Arc::new(Metrics::default()),
    )
    .expect("registry");
    let versions = [
        std::fs::read(plugin_file("bench-filter")).expect("read"),
        std::fs::read(plugin_file("drop-filter")).expect("read"),
    ];
    let target = plugin_dir.join("p.wasm");
    std::fs::write(&target, &versions[1]).expect("write");
    registry.reload(&target).expect("initial load");
    let _watcher = watch(registry.clone(), Settle::default()).expect("watch");
    let mut samples = Vec::new();
    for i in 0..10 {
        let bytes = &versions[i % 2];
        let old = registry.get("p").expect("slot").current().id().clone();
        let tmp = plugin_dir.join(".p.wasm.tmp");
        std::fs::write(&tmp, bytes).expect("write");
        let landed = Instant::now();
        std::fs::rename(&tmp, &target).expect("rename");
        while registry.get("p").expect("slot").current().id() == &old {
            assert!(
                landed.elapsed() < Duration::from_secs(30),
                "swap never happened"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        samples.push(landed.elapsed());
    }
    samples.sort();
    println!(
        "hot swap (rename into plugin dir -> new version serving, {} and {} bytes, no artifact cache): \
         median {:.0} ms, max {:.0} ms over {} swaps",
        versions[0].len(),
        versions[1].len(),
        samples[samples.len() / 2].as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        samples.len()
    );
}

fn main() {
    // `cargo test --benches` runs benches in test mode: keep that quick.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    throughput();
    swap_latency();
}
