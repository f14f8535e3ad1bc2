//! Every way a plugin can fail fails its batch only, with an error that says what happened,
//! and the host carries on.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::pipeline::{DeadLetterLog, Stage};
use sluice::plugin::{
    CallErrorKind, Health, LoadError, PluginLimits, PluginRegistry, RegistryConfig, World,
};
use sluice::telemetry::Metrics;
use sluice::tenant::TenantId;

use crate::common::{TIERS, env, load, load_tier, plugin_file, points, runtime};

fn batch() -> Vec<sluice::point::Point> {
    points("cpu,host=a value=1 1\ncpu,host=b value=2 2\ncpu,host=c value=3 3\n")
}

#[test]
fn a_trap_fails_the_batch_and_the_next_call_works() {
    for tier in TIERS {
        a_trap_fails_the_batch_and_the_next_call_works_in(tier);
    }
}

fn a_trap_fails_the_batch_and_the_next_call_works_in(tier: sluice::plugin::Tier) {
    let plugin = load_tier("chaos", PluginLimits::default(), tier);
    let err = plugin
        .filter(&batch(), &env(&[("mode", "trap")]))
        .expect_err("trap");
    let CallErrorKind::Trap(message) = &err.kind else {
        panic!("expected a trap, got {err}");
    };
    assert!(
        message.contains("chaos"),
        "the guest's panic message is reported: {message}"
    );
    assert!(err.to_string().starts_with("plugin chaos@"), "{err}");
    let ok = plugin
        .filter(&batch(), &env(&[]))
        .expect("the host carries on");
    assert_eq!(ok, [true, true, true]);
}

#[test]
fn an_infinite_loop_hits_the_deadline() {
    for tier in TIERS {
        an_infinite_loop_hits_the_deadline_in(tier);
    }
}

fn an_infinite_loop_hits_the_deadline_in(tier: sluice::plugin::Tier) {
    let limits = PluginLimits {
        timeout: Duration::from_millis(50),
        ..PluginLimits::default()
    };
    let plugin = load_tier("chaos", limits, tier);
    let started = Instant::now();
    let err = plugin
        .filter(&batch(), &env(&[("mode", "loop")]))
        .expect_err("loop");
    let elapsed = started.elapsed();
    assert!(matches!(err.kind, CallErrorKind::Timeout(_)), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    // Generous bound for a loaded 2-core machine; the point is that it ends at all.
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    plugin
        .filter(&batch(), &env(&[]))
        .expect("the host carries on");
}

#[test]
fn a_memory_bomb_hits_the_memory_cap() {
    for tier in TIERS {
        a_memory_bomb_hits_the_memory_cap_in(tier);
    }
}

fn a_memory_bomb_hits_the_memory_cap_in(tier: sluice::plugin::Tier) {
    let limits = PluginLimits {
        memory_bytes: 16 << 20,
        ..PluginLimits::default()
    };
    let plugin = load_tier("chaos", limits, tier);
    let err = plugin
        .filter(&batch(), &env(&[("mode", "oom")]))
        .expect_err("oom");
    assert_eq!(
        err.kind,
        CallErrorKind::MemoryLimit {
            limit_bytes: 16 << 20
        },
        "{err}"
    );
    plugin
        .filter(&batch(), &env(&[]))
        .expect("the host carries on");
}

#[test]
fn a_rejected_batch_and_a_broken_contract_are_reported() {
    let plugin = load("chaos");
    let err = plugin
        .filter(&batch(), &env(&[("mode", "error")]))
        .expect_err("error");
    assert_eq!(
        err.kind,
        CallErrorKind::Rejected {
            message: "chaos error".into(),
            index: Some(0)
        }
    );
    let err = plugin
        .filter(&batch(), &env(&[("mode", "bad-length")]))
        .expect_err("bad length");
    assert!(
        matches!(&err.kind, CallErrorKind::BadOutput(m) if m.contains("4 verdicts for 3 points")),
        "{err}"
    );
}

#[test]
fn a_plugin_of_another_world_is_refused() {
    let transform = load("enrich");
    let err = transform
        .filter(&batch(), &env(&[]))
        .expect_err("wrong world");
    assert_eq!(
        err.kind,
        CallErrorKind::WrongWorld {
            wanted: "filter",
            actual: "transform"
        }
    );
    let alert = load("threshold-alert");
    assert_eq!(alert.world(), World::Alert);
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = registry_with(dir.path(), &["threshold-alert"], 5);
    let dead = Arc::new(
        DeadLetterLog::open(&dir.path().join("dead.jsonl"), Default::default())
            .expect("dead letters"),
    );
    let slot = registry.get("threshold-alert").expect("slot");
    let err = Stage::new(&TenantId::new("t"), "s", slot, env(&[]), dead)
        .err()
        .expect("alert plugin in a point stage");
    assert!(
        err.to_string().contains("needs a filter or transform"),
        "{err}"
    );
}

#[test]
fn files_that_are_not_plugins_get_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).expect("write");
        p
    };
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let err = rt
        .load_file(&write("random.wasm", &random), PluginLimits::default())
        .err()
        .expect("random");
    assert!(matches!(err, LoadError::NotWasm { .. }), "{err}");
    assert!(
        err.to_string().contains("random.wasm"),
        "names the file: {err}"
    );

    let core = b"\0asm\x01\0\0\0";
    let err = rt
        .load_file(&write("core.wasm", core), PluginLimits::default())
        .err()
        .expect("core");
    assert!(
        err.to_string()
            .contains("core WebAssembly module, not a component"),
        "{err}"
    );

    let good = std::fs::read(plugin_file("drop-filter")).expect("read");
    let err = rt
        .load_file(
            &write("torn.wasm", &good[..good.len() / 2]),
            PluginLimits::default(),
        )
        .err()
        .expect("truncated");
    assert!(matches!(err, LoadError::Compile { .. }), "{err}");

    let err = rt
        .load_file(&dir.path().join("absent.wasm"), PluginLimits::default())
        .err()
        .expect("absent");
    assert!(matches!(err, LoadError::Read { .. }), "{err}");
}

/// A registry over a fresh directory holding copies of the named example plugins.
pub fn registry_with(dir: &Path, plugins: &[&str], quarantine_after: u32) -> Arc<PluginRegistry> {
    let plugin_dir = dir.join("plugins");
    std::fs::create_dir_all(&plugin_dir).expect("plugin dir");
    for name in plugins {
        std::fs::copy(plugin_file(name), plugin_dir.join(format!("{name}.wasm"))).expect("copy");
    }
    PluginRegistry::open(
        runtime(),
        RegistryConfig {
            dir: plugin_dir,
            default_limits: PluginLimits {
                timeout: Duration::from_millis(200),
                memory_bytes: 16 << 20,
            },
            limits: Default::default(),
            quarantine_after,
        },
        Arc::new(Metrics::default()),
    )
    .expect("registry")
}

#[test]
fn repeated_failures_quarantine_the_plugin_and_batches_become_dead_letters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = registry_with(dir.path(), &["chaos"], 3);
    let dead = Arc::new(
        DeadLetterLog::open(&dir.path().join("dead.jsonl"), Default::default())
            .expect("dead letters"),
    );
    let slot = registry.get("chaos").expect("slot");
    let version = slot.current().id().version.to_string();
    let stage = Stage::new(
        &TenantId::new("t"),
        "trapper",
        slot.clone(),
        env(&[("mode", "trap")]),
        dead.clone(),
    )
    .expect("stage");
    // Another tenant's stage on the same version.
    let other = Stage::new(
        &TenantId::new("u"),
        "passer",
        slot.clone(),
        env(&[("mode", "pass")]),
        dead.clone(),
    )
    .expect("stage");

    for _ in 0..4 {
        let out = stage.process(batch()).expect("dead letter kept");
        assert!(out.points.is_none(), "a failed batch yields no points");
    }
    let status = registry
        .statuses()
        .into_iter()
        .find(|s| s.name == "chaos")
        .expect("status");
    assert!(
        matches!(&status.health, Some(Health::Quarantined { failures: 3, last_error, tenants: 1 }) if last_error.contains("trapped")),
        "{status:?}"
    );
    assert_eq!(status.batches_failed, 3, "the 4th batch was not run at all");
    let out = other.process(batch()).expect("process");
    assert_eq!(
        out.points.map(|p| p.len()),
        Some(3),
        "quarantined for the tenant whose batches failed only"
    );

    let letters = dead.read_all().expect("read dead letters");
    assert_eq!(letters.len(), 4, "every failed batch is kept");
    assert!(
        letters
            .iter()
            .all(|l| l.plugin == "chaos" && l.version == version && l.stage == "t/trapper")
    );
    assert!(letters[0].error.contains("trapped"), "{}", letters[0].error);
    assert!(
        letters[3].error.contains("quarantined"),
        "{}",
        letters[3].error
    );
    assert_eq!(
        letters[0].items,
        [
            "cpu,host=a value=1 1",
            "cpu,host=b value=2 2",
            "cpu,host=c value=3 3"
        ]
    );

    // A new version (another filter's content under the same name) lifts the quarantine.
    let path = registry.dir().join("chaos.wasm");
    std::fs::copy(plugin_file("bench-filter"), &path).expect("deploy");
    registry.reload(&path).expect("reload");
    let out = stage.process(batch()).expect("process");
    assert_eq!(out.points.map(|p| p.len()), Some(3));
    assert_ne!(out.plugin.version.as_ref(), version);
}

#[test]
fn compiled_artifacts_are_cached_and_a_corrupt_cache_entry_is_recompiled() {
    use sluice::plugin::{Runtime, RuntimeConfig};
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    let runtime = Runtime::new(&RuntimeConfig {
        cache_dir: Some(cache.clone()),
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let first = runtime
        .load_file(&plugin_file("drop-filter"), PluginLimits::default())
        .expect("first load compiles");
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .expect("cache dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "one artifact: {entries:?}");
    assert!(
        cache
            .join("functions.log")
            .metadata()
            .expect("function cache")
            .len()
            > 1000,
        "Cranelift's per-function cache is kept beside the artifacts"
    );
    let name = entries[0]
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_owned();
    assert!(
        name.starts_with(first.id().version.as_ref()),
        "keyed by content hash: {name}"
    );

    // A cached artifact loads and runs like the original.
    let cached = runtime
        .load_file(&plugin_file("drop-filter"), PluginLimits::default())
        .expect("cached load");
    assert_eq!(
        cached.filter(&batch(), &env(&[])).expect("filter"),
        [true, true, true]
    );

    // A corrupt entry is not trusted: the plugin is compiled again.
    std::fs::write(&entries[0], b"garbage").expect("corrupt");
    let again = runtime
        .load_file(&plugin_file("drop-filter"), PluginLimits::default())
        .expect("recompiles");
    assert_eq!(
        again.filter(&batch(), &env(&[])).expect("filter"),
        [true, true, true]
    );
    assert!(
        std::fs::read(&entries[0]).expect("rewritten").len() > 1000,
        "entry rewritten"
    );
}
