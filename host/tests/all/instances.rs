//! Instances of plugins of every language: reused after a clean batch and thrown away after
//! any failure; calls beyond the concurrency limit wait instead of failing; components of
//! another version of the WIT package are refused with a message naming it.

use std::sync::Arc;
use std::time::Duration;

use sluice::plugin::{
    Health, LoadError, PluginLimits, PluginRegistry, RegistryConfig, Runtime, RuntimeConfig,
};
use sluice::telemetry::Metrics;
use sluice::tenant::TenantId;

use crate::common::{env, load, load_with, plugin_file, points};

fn batch() -> Vec<sluice::point::Point> {
    points("cpu,host=a value=1 1\ncpu,host=b value=2 2\nswap,host=c value=3 3\n")
}

#[test]
fn an_instance_serves_the_next_batch_only_after_a_clean_one() {
    let plugin = load_with(
        "chaos",
        PluginLimits {
            memory_bytes: 16 << 20,
            ..PluginLimits::default()
        },
    );
    assert_eq!(plugin.idle_instances(), 1, "loading instantiates once");
    for _ in 0..3 {
        plugin.filter(&batch(), &env(&[])).expect("pass");
        assert_eq!(
            plugin.idle_instances(),
            1,
            "one instance serves batch after batch"
        );
    }
    for mode in ["trap", "oom", "error", "bad-length"] {
        plugin
            .filter(&batch(), &env(&[("mode", mode)]))
            .expect_err(mode);
        assert_eq!(
            plugin.idle_instances(),
            0,
            "after `{mode}` the instance that failed is gone"
        );
        // The next batch runs on a fresh instance: the hoard of `oom` is not there.
        assert_eq!(
            plugin.filter(&batch(), &env(&[])).expect("after failure"),
            [true, true, true]
        );
        assert_eq!(plugin.idle_instances(), 1);
    }
}

#[test]
fn a_component_built_against_another_wit_version_is_refused_by_name() {
    let current = std::fs::read(plugin_file("drop-filter")).expect("read");
    // The same component as 0.1.0 would name its imports: same length, so still valid.
    let old = replace_all(&current, b"sluice:plugin/", b"@0.2.0", b"@0.1.0");
    assert_ne!(old, current, "the component names its package version");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old-filter.wasm");
    std::fs::write(&path, &old).expect("write");
    let err = crate::common::runtime()
        .load_file(&path, PluginLimits::default())
        .err()
        .expect("refused");
    assert!(
        matches!(&err, LoadError::OtherContract { found, .. } if found == "0.1.0"),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("sluice:plugin@0.1.0") && message.contains("sluice:plugin@0.2.0"),
        "{message}"
    );
    assert!(message.contains("rebuild"), "{message}");
}

/// `bytes` with `from` replaced by `to` wherever it follows `prefix` within 40 bytes.
fn replace_all(bytes: &[u8], prefix: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut i = 0;
    while let Some(p) = find(&out[i..], prefix) {
        let at = i + p;
        let window = at..(at + 40).min(out.len());
        if let Some(v) = find(&out[window.clone()], from) {
            let v = window.start + v;
            out[v..v + to.len()].copy_from_slice(to);
        }
        i = at + prefix.len();
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn calls_beyond_the_concurrency_limit_wait_and_never_count_as_failures() {
    // Two call slots, eight threads, plugins of every language: Python and JavaScript
    // components hold dozens of core instances each, which a fixed instance pool once
    // refused ("maximum concurrent limit ... reached"), dead-lettering healthy batches.
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin_dir = dir.path().join("plugins");
    std::fs::create_dir_all(&plugin_dir).expect("plugin dir");
    let names = ["drop-filter", "drop-filter-py", "drop-filter-js"];
    for name in names {
        std::fs::copy(plugin_file(name), plugin_dir.join(format!("{name}.wasm"))).expect("copy");
    }
    let runtime = Runtime::new(&RuntimeConfig {
        max_concurrent_calls: 2,
        cache_dir: Some(crate::common::shared_cache_dir()),
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let registry = PluginRegistry::open(
        runtime,
        RegistryConfig {
            dir: plugin_dir,
            default_limits: PluginLimits {
                timeout: Duration::from_secs(10),
                memory_bytes: 64 << 20,
            },
            limits: Default::default(),
            quarantine_after: 1,
        },
        Arc::new(Metrics::default()),
    )
    .expect("registry");
    let tenant = TenantId::new("t");
    let env = env(&[("measurement", "swap*")]);
    std::thread::scope(|s| {
        for t in 0..8 {
            let (registry, tenant, env) = (&registry, &tenant, &env);
            s.spawn(move || {
                for i in 0..4 {
                    let name = names[(t + i) % names.len()];
                    let slot = registry.get(name).expect("slot");
                    let outcome = slot.run(tenant, 3, Vec::len, |p| p.filter(&batch(), env));
                    assert_eq!(
                        outcome.result.expect("a healthy batch never fails"),
                        [true, true, false],
                        "{name}"
                    );
                }
            });
        }
    });
    for status in registry.statuses() {
        assert_eq!(status.health, Some(Health::Serving), "{}", status.name);
        assert_eq!(status.batches_failed, 0, "{}", status.name);
    }
}

#[test]
fn a_memory_cap_below_the_initial_memory_fails_the_load_not_a_batch() {
    // Python's component starts with more linear memory than 1 MiB: it can't be
    // instantiated under that cap, and the load (the check before deploy) says so.
    let err = crate::common::runtime()
        .load_file(
            &plugin_file("drop-filter-py"),
            PluginLimits {
                memory_bytes: 1 << 20,
                ..PluginLimits::default()
            },
        )
        .err()
        .expect("refused");
    assert!(matches!(err, LoadError::Instantiate { .. }), "{err}");
    assert!(err.to_string().contains("memory limit"), "{err}");
    // Under the default cap it loads and runs.
    let plugin = load("drop-filter-py");
    let kept = plugin
        .filter(&batch(), &env(&[("measurement", "swap*")]))
        .expect("filter");
    assert_eq!(kept, [true, true, false]);
}
