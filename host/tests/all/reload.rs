//! Hot reload: new versions are picked up from the plugin directory without a restart,
//! swapped between batches, never replacing a working version with a broken one.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sluice::pipeline::{DeadLetterLog, Stage};
use sluice::plugin::{
    PluginLimits, PluginRegistry, PluginSlot, RegistryConfig, Runtime, RuntimeConfig, Settle, Tier,
    watch,
};
use sluice::point::{Field, FieldValue, Point, Tag};
use sluice::telemetry::Metrics;
use sluice::tenant::TenantId;

use crate::common::{env, plugin_file, points};
use crate::failures::registry_with;

/// Waits until `slot` serves a version other than `old`.
fn wait_for_swap(registry: &PluginRegistry, name: &str, old: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = registry
            .get(name)
            .map(|slot| slot.current().id().version.to_string())
            .unwrap_or_default();
        if now != old {
            return now;
        }
        assert!(Instant::now() < deadline, "{name} never left version {old}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Deploys `bytes` as `name` the recommended way: write a dotfile, rename into place.
fn deploy(registry: &PluginRegistry, name: &str, bytes: &[u8]) {
    let tmp = registry.dir().join(format!(".{name}.wasm.tmp"));
    std::fs::write(&tmp, bytes).expect("write tmp");
    std::fs::rename(&tmp, registry.dir().join(format!("{name}.wasm"))).expect("rename");
}

/// The serving version of `name`.
fn serving(registry: &PluginRegistry, name: &str) -> String {
    registry
        .get(name)
        .expect("slot")
        .current()
        .id()
        .version
        .to_string()
}

/// Waits until the latest file of `name` is reported as failed to load; its error.
fn wait_for_load_error(registry: &PluginRegistry, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let error = registry
            .statuses()
            .into_iter()
            .find(|s| s.name == name)
            .and_then(|s| s.load_error);
        if let Some(error) = error {
            return error;
        }
        assert!(
            Instant::now() < deadline,
            "no load error reported for {name}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn load_failures(registry: &PluginRegistry, name: &str) -> bool {
    registry
        .statuses()
        .iter()
        .any(|s| s.name == name && s.load_error.is_some())
}

#[test]
fn watcher_swaps_new_versions_and_keeps_serving_through_broken_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = registry_with(dir.path(), &[], 5);
    let v1 = std::fs::read(plugin_file("drop-filter")).expect("read");
    let v2 = std::fs::read(plugin_file("bench-filter")).expect("read");
    let _watcher = watch(registry.clone(), Settle::default()).expect("watch");

    // A new plugin appears.
    deploy(&registry, "p", &v1);
    let first = wait_for_swap(&registry, "p", "");
    // A new version by atomic rename.
    deploy(&registry, "p", &v2);
    let second = wait_for_swap(&registry, "p", &first);

    // Garbage written in place: reported, the working version keeps serving.
    std::fs::write(registry.dir().join("p.wasm"), b"not wasm at all").expect("write");
    wait_for_load_error(&registry, "p");
    assert_eq!(serving(&registry, "p"), second);

    // A slow, half-written copy: written in two parts with a pause, closed only at the end.
    // It must load once, when complete, without failing on the first half.
    let status_before = registry.statuses();
    let mut file = std::fs::File::create(registry.dir().join("p.wasm")).expect("create");
    file.write_all(&v1[..v1.len() / 2]).expect("first half");
    file.flush().expect("flush");
    std::thread::sleep(Duration::from_millis(300));
    file.write_all(&v1[v1.len() / 2..]).expect("second half");
    drop(file);
    let third = wait_for_swap(&registry, "p", &second);
    assert_eq!(third, first, "same content, same version");
    assert!(
        !load_failures(&registry, "p"),
        "{status_before:?} -> {:?}",
        registry.statuses()
    );

    // Another world under the same name is refused; the filter keeps serving.
    deploy(
        &registry,
        "p",
        &std::fs::read(plugin_file("enrich")).expect("read"),
    );
    let error = wait_for_load_error(&registry, "p");
    assert!(error.contains("world `transform`"), "{error}");
    assert_eq!(serving(&registry, "p"), third);
}

fn numbered_batch(start: u64, n: u64) -> Vec<Point> {
    (start..start + n)
        .map(|id| Point {
            measurement: "load".into(),
            tags: vec![Tag {
                key: "host".into(),
                value: format!("h{}", id % 7).into(),
            }],
            fields: vec![
                Field {
                    key: "id".into(),
                    value: FieldValue::Unsigned(id),
                },
                Field {
                    key: "value".into(),
                    value: FieldValue::Float(1.0),
                },
            ],
            timestamp: id as i64,
        })
        .collect()
}

#[test]
fn swaps_under_continuous_load_lose_nothing_and_run_nothing_twice() {
    const BATCH: u64 = 100;
    const SWAPS: usize = 6;
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = registry_with(dir.path(), &[], 5);
    let v1 = std::fs::read(plugin_file("drop-filter")).expect("read");
    let v2 = std::fs::read(plugin_file("bench-filter")).expect("read");
    deploy(&registry, "p", &v1);
    registry
        .reload(&registry.dir().join("p.wasm"))
        .expect("initial load");
    let _watcher = watch(registry.clone(), Settle::default()).expect("watch");
    let dead = Arc::new(
        DeadLetterLog::open(&dir.path().join("dead.jsonl"), Default::default()).expect("dead"),
    );
    let stage = Stage::new(
        &sluice::tenant::TenantId::new("t"),
        "s",
        registry.get("p").expect("slot"),
        env(&[]),
        dead.clone(),
    )
    .expect("stage");

    // The swapper deploys alternating versions (and once a broken file) while the main
    // thread keeps processing batches, until SWAPS swaps have happened.
    let swaps = Arc::new(AtomicUsize::new(0));
    let swapper = {
        let registry = registry.clone();
        let swaps = swaps.clone();
        std::thread::spawn(move || {
            let mut current = registry
                .get("p")
                .expect("slot")
                .current()
                .id()
                .version
                .to_string();
            for n in 0..SWAPS {
                std::thread::sleep(Duration::from_millis(50));
                let bytes = if n % 2 == 0 { &v2 } else { &v1 };
                if n == 3 {
                    // A broken deploy in the middle must change nothing.
                    deploy(&registry, "p", b"\0asm garbage");
                    std::thread::sleep(Duration::from_millis(100));
                }
                deploy(&registry, "p", bytes);
                current = wait_for_swap(&registry, "p", &current);
                swaps.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    let mut seen: Vec<u8> = Vec::new();
    let mut by_version: HashMap<String, u64> = HashMap::new();
    let mut dead_lettered = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while swaps.load(Ordering::SeqCst) < SWAPS {
        assert!(Instant::now() < deadline, "swaps did not finish");
        let start = seen.len() as u64;
        seen.resize(seen.len() + BATCH as usize, 0);
        let out = stage
            .process(numbered_batch(start, BATCH))
            .expect("process");
        match out.points {
            Some(points) => {
                *by_version
                    .entry(out.plugin.version.to_string())
                    .or_default() += points.len() as u64;
                for p in points {
                    let Some(FieldValue::Unsigned(id)) = p.field("id") else {
                        panic!("point lost its id: {p:?}");
                    };
                    seen[*id as usize] += 1;
                }
            }
            None => dead_lettered += BATCH,
        }
    }
    swapper.join().expect("swapper");

    let total = seen.len() as u64;
    assert_eq!(by_version.len(), 2, "both versions served: {by_version:?}");
    assert_eq!(dead_lettered, 0, "both versions keep every point");
    assert_eq!(dead.read_all().expect("dead").len(), 0);
    assert!(seen.iter().all(|n| *n == 1), "every point exactly once");
    assert_eq!(by_version.values().sum::<u64>(), total);
}

/// Waits until `name` serves code of `tier`.
fn wait_for_tier(registry: &PluginRegistry, name: &str, tier: Tier) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while registry.get(name).expect("slot").current().tier() != tier {
        assert!(Instant::now() < deadline, "{name} never ran {tier:?} code");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_big_uncached_version_serves_baseline_code_at_once_then_optimized_code_with_its_health() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugin_dir).expect("plugin dir");
    std::fs::copy(
        plugin_file("drop-filter"),
        plugin_dir.join("drop-filter.wasm"),
    )
    .expect("copy");
    // Every component counts as big; the cache is empty.
    let open = || {
        let runtime = Runtime::new(&RuntimeConfig {
            cache_dir: Some(dir.path().join("cache")),
            baseline_from_bytes: 0,
            ..RuntimeConfig::default()
        })
        .expect("runtime");
        PluginRegistry::open(
            runtime,
            RegistryConfig {
                dir: plugin_dir.clone(),
                default_limits: PluginLimits::default(),
                limits: Default::default(),
                quarantine_after: 3,
            },
            Arc::new(Metrics::default()),
        )
        .expect("registry")
    };
    let tenant = TenantId::new("t");
    let batch = points("cpu,host=a v=1 1\ndebug,host=b v=2 2\ncpu,host=c v=3 3\n");
    let env = env(&[("measurement", "debug")]);
    let run = |slot: &PluginSlot| {
        slot.run(&tenant, batch.len(), Vec::len, |p| p.filter(&batch, &env))
            .result
            .expect("filter")
    };
    let registry = open();
    let slot = registry.get("drop-filter").expect("slot");
    let first = slot.current();
    if cfg!(target_arch = "x86_64") {
        assert_eq!(first.tier(), Tier::Baseline, "Winch serves first");
    }
    assert_eq!(run(&slot), [true, false, true]);
    wait_for_tier(&registry, "drop-filter", Tier::Optimized);
    let optimized = slot.current();
    assert_eq!(optimized.id(), first.id(), "the same version, other code");
    assert_eq!(run(&slot), [true, false, true]);
    let status = registry.statuses().pop().expect("status");
    assert_eq!(status.tier, Some(Tier::Optimized));
    assert_eq!(
        status.batches_ok, 2,
        "the batch on baseline code still counts"
    );
    // The optimized artifact is cached now: the next start serves it at once.
    drop((slot, registry));
    let registry = open();
    assert_eq!(
        registry.get("drop-filter").expect("slot").current().tier(),
        Tier::Optimized
    );
}
