//! Shared helpers of the integration tests: the example plugins built by
//! `scripts/build-plugins.sh`, and small constructors.

use std::path::PathBuf;
use std::sync::Arc;

use sluice::lineproto::{Precision, parse};
use sluice::plugin::{CallEnv, LoadedPlugin, Params, PluginLimits, Runtime, RuntimeConfig, Tier};
use sluice::point::Point;

/// The component of example plugin `name`. Panics with the fix when it wasn't built: these
/// tests must never pass by skipping.
pub fn plugin_file(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/plugins")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-plugins.sh first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The tests' `XDG_CACHE_HOME`, under the target directory: the CLI run without a
/// configuration keeps its cache there instead of in the user's.
pub fn xdg_cache_home() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cache")
}

/// The compilation cache the tests share, the CLI's included (a Python component takes
/// ~13 s of CPU to compile, and a dozen tests load one). Tests of the cache itself make
/// their own.
pub fn shared_cache_dir() -> PathBuf {
    xdg_cache_home().join("sluice/plugin-cache")
}

/// A runtime with the default settings and the tests' shared cache.
pub fn runtime() -> Arc<Runtime> {
    Runtime::new(&RuntimeConfig {
        cache_dir: Some(shared_cache_dir()),
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

/// Loads example plugin `name` with `limits`.
pub fn load_with(name: &str, limits: PluginLimits) -> LoadedPlugin {
    runtime()
        .load_file(&plugin_file(name), limits)
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// Loads example plugin `name` with `limits`, compiled by `tier`'s compiler.
pub fn load_tier(name: &str, limits: PluginLimits, tier: Tier) -> LoadedPlugin {
    let path = plugin_file(name);
    let bytes = std::fs::read(&path).expect("read plugin");
    let plugin = runtime()
        .load_bytes_with(name, &bytes, &path, limits, tier)
        .unwrap_or_else(|e| panic!("loading {name}: {e}"));
    if cfg!(target_arch = "x86_64") {
        assert_eq!(plugin.tier(), tier, "{name}");
    }
    plugin
}

/// Both compilers: every failure must be caught in the code of each.
pub const TIERS: [Tier; 2] = [Tier::Optimized, Tier::Baseline];

/// Loads example plugin `name` with default limits.
pub fn load(name: &str) -> LoadedPlugin {
    load_with(name, PluginLimits::default())
}

/// Points of a line-protocol text (nanosecond timestamps).
pub fn points(lp: &str) -> Vec<Point> {
    let (points, errors) = parse(lp, Precision::Nanoseconds, 0);
    assert!(errors.is_empty(), "{errors:?}");
    points
}

/// A call environment with `params` and otherwise defaults.
pub fn env(params: &[(&str, &str)]) -> CallEnv {
    CallEnv {
        params: Arc::new(
            params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Params>(),
        ),
        ..CallEnv::default()
    }
}
