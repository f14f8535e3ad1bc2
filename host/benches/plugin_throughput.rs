//! Plugin benchmark, in one run, for the same filter logic (keep a point iff its field
//! `value` is a number >= 0) as Rust, Python and JavaScript components and compiled natively:
//!
//! 1. points per second at batch sizes 100, 1,000 and 10,000, for a call on the batch's
//!    columns (what a pipeline stage hands its plugin: the record's own, encoded once when
//!    it was appended to the log) and for a call that encodes the points first;
//! 2. per language, the time to instantiate a component and the resident memory of an
//!    instance that has run a batch;
//! 3. per language, the time from a new version's file landing in the plugin directory to
//!    that version serving, and to it running optimized code (a component of 1 MiB or more
//!    that the artifact cache doesn't hold serves baseline code first): with no caches
//!    (everything compiled), as a new version with the caches warm from the previous one
//!    (the per-function cache hits what didn't change), and as a version seen before (the
//!    artifact cache hits);
//! 4. points per second of the baseline code, at batch 1,000.
//!
//! It runs on the service's allocator (mimalloc), as `sluice run` does.
//!
//! Run: `scripts/build-plugins.sh && cargo bench --bench plugin_throughput`

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::columns::Columns;
use sluice::plugin::{
    CallEnv, LoadedPlugin, PluginLimits, PluginRegistry, RegistryConfig, Runtime, RuntimeConfig,
    Settle, Tier, watch,
};
use sluice::point::{Field, FieldValue, Point, Tag};
use sluice::telemetry::Metrics;

/// The binary's allocator, so compiles and calls allocate as in `sluice run`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The languages and their builds of the bench filter.
const LANGUAGES: [(&str, &str); 3] = [
    ("Rust", "bench-filter"),
    ("Python", "bench-filter-py"),
    ("JavaScript", "bench-filter-js"),
];

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
                    value: format!("host-{}", i % 1000).into(),
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

/// The native twin of the bench filter.
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

/// As [`rate`], over the columns of each batch, made beforehand: what a pipeline stage
/// hands its plugin, the record's own columns, encoded when the record was appended.
fn columns_rate(
    data: &[Point],
    batch: usize,
    min_time: Duration,
    mut f: impl FnMut(&mut Columns) -> Vec<bool>,
) -> f64 {
    let mut batches: Vec<Columns> = data.chunks(batch).map(Columns::from_points).collect();
    let started = Instant::now();
    let mut n = 0usize;
    while started.elapsed() < min_time {
        for columns in &mut batches {
            let kept = f(columns);
            assert_eq!(kept.len(), columns.len());
            n += kept.len();
            black_box(kept);
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn runtime(cache_dir: Option<PathBuf>) -> Arc<Runtime> {
    Runtime::new(&RuntimeConfig {
        cache_dir,
        // Room to run and hold many instances at once, to measure what each costs.
        max_concurrent_calls: 64,
        max_warm_instances: 1000,
        max_idle_per_plugin: 1000,
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

fn throughput(plugins: &[(&str, LoadedPlugin)], data: &[Point]) {
    let env = CallEnv::default();
    // Same verdicts, or the comparison means nothing.
    let sample = points(1000);
    for (language, plugin) in plugins {
        assert_eq!(
            plugin.filter(&sample, &env).expect("filter"),
            native_filter(&sample),
            "{language}"
        );
        assert_eq!(
            plugin
                .filter_columns(&mut Columns::from_points(&sample), &env)
                .expect("filter"),
            native_filter(&sample),
            "{language}"
        );
    }
    println!("plugin throughput: points/s per core, the same filter in each language");
    println!(
        "  columns: the call on a batch's columns, as a pipeline stage makes it (the record's \
         own, encoded once when appended to the log); points: encoding them for the call too"
    );
    print!("{:>7} {:>12}", "batch", "native");
    for (language, _) in plugins {
        print!(
            " {:>18} {:>18}",
            format!("{language} columns"),
            format!("{language} points")
        );
    }
    println!(" {:>18} {:>18}", "native/Rust cols", "native/Rust points");
    for batch in [100usize, 1_000, 10_000] {
        let min = Duration::from_secs(2);
        let native = rate(data, batch, min, native_filter);
        print!("{batch:>7} {native:>12.0}");
        let mut rust = (0.0, 0.0);
        for (language, plugin) in plugins {
            let columns = columns_rate(data, batch, min, |c| {
                plugin.filter_columns(c, &env).expect("filter")
            });
            let points = rate(data, batch, min, |c| {
                plugin.filter(c, &env).expect("filter")
            });
            if *language == "Rust" {
                rust = (columns, points);
            }
            print!(" {columns:>18.0} {points:>18.0}");
        }
        println!(" {:>17.1}x {:>17.1}x", native / rust.0, native / rust.1);
    }
    let n = data.len().min(1_000);
    let started = Instant::now();
    let mut encoded = 0usize;
    while started.elapsed() < Duration::from_secs(2) {
        encoded += black_box(Columns::from_points(&data[..n])).len();
    }
    println!(
        "  encoding a batch of {n} into columns (done once per record, when it is appended): {:.1} ns a point",
        started.elapsed().as_secs_f64() * 1e9 / encoded as f64
    );
}

/// Resident memory of this process.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

fn instances(plugins: &[(&str, LoadedPlugin)]) {
    println!(
        "instances: time to instantiate; resident memory per instance after a 1,000-point batch"
    );
    let env = CallEnv::default();
    let batch = points(1000);
    for (language, plugin) in plugins {
        // N batches at once need N instances: the idle ones (which ran batches already),
        // then new ones. Each runs a batch, so it holds what a working instance holds, and
        // all stay idle after.
        let before = rss_bytes();
        let idle_before = plugin.idle_instances();
        let calls = idle_before + 16;
        let barrier = std::sync::Barrier::new(calls);
        std::thread::scope(|s| {
            for _ in 0..calls {
                s.spawn(|| {
                    barrier.wait();
                    plugin.filter(&batch, &env).expect("filter");
                });
            }
        });
        let added = plugin.idle_instances().saturating_sub(idle_before).max(1);
        let memory = rss_bytes().saturating_sub(before) / added as u64;
        let n = 20u32;
        let started = Instant::now();
        for _ in 0..n {
            plugin.warm_up().expect("instantiate");
        }
        let each = started.elapsed() / n;
        println!(
            "  {language:<10} {:>8.2} ms  {:>7.2} MiB  ({added} instances added by {calls} concurrent batches)",
            each.as_secs_f64() * 1e3,
            memory as f64 / f64::from(1 << 20),
        );
    }
}

/// `bytes` with a custom section appended: the same code as a new version (new digest).
fn new_version(bytes: &[u8], n: u32) -> Vec<u8> {
    let name = b"sluice-bench";
    let payload = n.to_le_bytes();
    let size = 1 + name.len() + payload.len();
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    out.push(u8::try_from(size).expect("small section"));
    out.push(u8::try_from(name.len()).expect("short name"));
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

/// Median times from renaming each of `versions` into `dir` as `p.wasm` to that version
/// serving, and to it running optimized code.
fn swaps(registry: &Arc<PluginRegistry>, dir: &Path, versions: &[Vec<u8>]) -> (Duration, Duration) {
    let target = dir.join("p.wasm");
    let (mut serving, mut optimized) = (Vec::new(), Vec::new());
    for bytes in versions {
        let old = registry.get("p").expect("slot").current().id().clone();
        let tmp = dir.join(".p.wasm.tmp");
        std::fs::write(&tmp, bytes).expect("write");
        let landed = Instant::now();
        std::fs::rename(&tmp, &target).expect("rename");
        while registry.get("p").expect("slot").current().id() == &old {
            assert!(
                landed.elapsed() < Duration::from_secs(60),
                "swap never happened"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        serving.push(landed.elapsed());
        wait_for_optimized(registry, landed);
        optimized.push(landed.elapsed());
    }
    (median(serving), median(optimized))
}

/// Loads the first version and waits for its optimized code: a deployment has long had it
/// when the next version lands, and its compile would slow the next one's.
fn initial_load(registry: &Arc<PluginRegistry>, target: &Path) {
    registry.reload(target).expect("initial load");
    wait_for_optimized(registry, Instant::now());
}

/// Waits until `p` runs optimized code, at most 2 minutes from `since`.
fn wait_for_optimized(registry: &Arc<PluginRegistry>, since: Instant) {
    while registry.get("p").expect("slot").current().tier() != Tier::Optimized {
        assert!(
            since.elapsed() < Duration::from_secs(120),
            "never optimized"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn swap_latency() {
    println!(
        "hot swap: new file renamed into the plugin directory -> that version serving / running \
         optimized code (median)"
    );
    println!(
        "  {:<10} {:>10} {:>22} {:>22} {:>22}",
        "language", "size", "no caches", "new version", "seen version"
    );
    for (language, name) in LANGUAGES {
        let dir = tempfile::tempdir().expect("tempdir");
        let plugin_dir = dir.path().join("plugins");
        std::fs::create_dir_all(&plugin_dir).expect("plugin dir");
        let bytes = std::fs::read(plugin_file(name)).expect("read");
        let versions: Vec<Vec<u8>> = (0..7).map(|n| new_version(&bytes, n)).collect();
        let target = plugin_dir.join("p.wasm");
        let open = |cache: Option<PathBuf>| {
            let registry = PluginRegistry::open(
                runtime(cache),
                RegistryConfig {
                    dir: plugin_dir.clone(),
                    default_limits: PluginLimits::default(),
                    limits: Default::default(),
                    quarantine_after: 5,
                },
                Arc::new(Metrics::default()),
            )
            .expect("registry");
            let watcher = watch(registry.clone(), Settle::default()).expect("watch");
            (registry, watcher)
        };
        // No caches: every version compiles from scratch.
        std::fs::write(&target, &versions[0]).expect("write");
        let (registry, watcher) = open(None);
        initial_load(&registry, &target);
        let cold = swaps(&registry, &plugin_dir, &versions[1..3]);
        drop((watcher, registry));
        // Caches: the first version fills the function cache, new versions then hit it;
        // returning to a version hits the artifact cache.
        std::fs::write(&target, &versions[0]).expect("write");
        let (registry, _watcher) = open(Some(dir.path().join("cache")));
        initial_load(&registry, &target);
        let fresh = swaps(&registry, &plugin_dir, &versions[1..4]);
        let seen = swaps(&registry, &plugin_dir, &versions[1..4]);
        let ms = |(serving, optimized): (Duration, Duration)| {
            format!(
                "{:.0} / {:.0} ms",
                serving.as_secs_f64() * 1e3,
                optimized.as_secs_f64() * 1e3
            )
        };
        println!(
            "  {language:<10} {:>8} KB {:>22} {:>22} {:>22}",
            bytes.len() / 1000,
            ms(cold),
            ms(fresh),
            ms(seen)
        );
    }
}

fn main() {
    // `cargo test --benches` runs benches in test mode: keep that quick.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    // 10,000 points (~5 MB), in cache like a batch the pipeline has just decoded. From
    // 100,000 points (~55 MB) the native filter runs at memory speed on this 2-core VM
    // (a standalone copy of it: 10-15 M points/s against 85-90 M from cache), which hides
    // what a plugin call costs.
    let data = points(10_000);
    let runtime = runtime(None);
    let plugins: Vec<(&str, LoadedPlugin)> = LANGUAGES
        .iter()
        .map(|(language, name)| {
            let plugin = runtime
                .load_file(&plugin_file(name), PluginLimits::default())
                .expect("load");
            (*language, plugin)
        })
        .collect();
    throughput(&plugins, &data);
    instances(&plugins);
    drop(plugins);
    baseline_throughput(&runtime, &data);
    swap_latency();
}

/// Points per second of each language's baseline code at batch 1,000: what a new version
/// runs until its optimized code is ready.
fn baseline_throughput(runtime: &Arc<Runtime>, data: &[Point]) {
    let env = CallEnv::default();
    println!("baseline code (Winch), points/s at batch 1,000, against optimized (Cranelift):");
    for (language, name) in LANGUAGES {
        let path = plugin_file(name);
        let bytes = std::fs::read(&path).expect("read");
        let rates: Vec<f64> = [Tier::Baseline, Tier::Optimized]
            .into_iter()
            .map(|tier| {
                let plugin = runtime
                    .load_bytes_with(name, &bytes, &path, PluginLimits::default(), tier)
                    .expect("load");
                assert_eq!(plugin.tier(), tier, "{language}: no {tier:?} compiler");
                columns_rate(data, 1_000, Duration::from_secs(2), |c| {
                    plugin.filter_columns(c, &env).expect("filter")
                })
            })
            .collect();
        println!(
            "  {language:<10} {:>12.0} {:>12.0}  ({:.2}x)",
            rates[0],
            rates[1],
            rates[0] / rates[1]
        );
    }
}
