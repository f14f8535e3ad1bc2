//! The wasmtime [`Engine`]s and [`Linker`]s of the process, and the settings every plugin
//! runs under. Only this module touches `wasmtime::Config`.
//!
//! Two compilers, as [`Tier`]s: Cranelift optimizes, and its artifacts are cached; Winch,
//! wasmtime's single-pass baseline compiler (tier 1 on x86_64, like Cranelift), makes
//! slower code about 4x sooner. An interpreter-sized component the cache doesn't hold
//! serves first from Winch while Cranelift compiles it in the background (measured on
//! the 19.6 MB Python bench filter: Winch 1.3 s, Cranelift 5.7 s, or 1.8-2.7 s with every
//! function in the per-function cache).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Strategy};

use super::bindings::{log, lookup, params, state};
use super::cache::{ArtifactCache, FunctionCache};

/// The file of the per-function compilation cache in the cache directory.
const FUNCTION_CACHE_FILE: &str = "functions.log";
use super::ctx::PluginCtx;
use super::error::LoadError;
use super::loaded::LoadedPlugin;
use super::pool::{Pool, WarmBudget, WorldPre};

/// How often the epoch advances. Deadlines are whole ticks, so this is their resolution.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Bounds of every call of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Wall-clock budget of one call (instantiation included).
    pub timeout: Duration,
    /// Cap on the plugin's linear memory.
    pub memory_bytes: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        // A batch of 10,000 points takes well under 100 ms in a reasonable plugin, even in
        // an interpreted guest language; 64 MiB holds such a batch many times over.
        Self {
            timeout: Duration::from_millis(1000),
            memory_bytes: 64 << 20,
        }
    }
}

/// Settings of the runtime.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where precompiled artifacts are cached; none compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Most plugin calls running at once; more wait for a slot.
    pub max_concurrent_calls: u32,
    /// Most idle instances kept for reuse, over all plugins (each holds its linear memory).
    pub max_warm_instances: u32,
    /// Most idle instances one plugin version keeps; more than the cores never run at once.
    pub max_idle_per_plugin: u32,
    /// Size the artifact cache is held to (least recently used artifacts go first); the
    /// per-function compilation cache beside it gets a quarter of this on top.
    pub cache_max_bytes: u64,
    /// Components of at least this size that the artifact cache doesn't hold serve first
    /// from the baseline compiler, until the optimizing one is done; `usize::MAX` never.
    pub baseline_from_bytes: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_concurrent_calls: 32,
            max_warm_instances: 64,
            max_idle_per_plugin: u32::try_from(crate::cores::cores().get()).unwrap_or(u32::MAX),
            cache_max_bytes: 1 << 30,
            // As `plugins.baseline_from_mib`'s default.
            baseline_from_bytes: 1 << 20,
        }
    }
}

/// The runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// wasmtime refused the engine configuration or linking the host imports.
    #[error("plugin runtime: {0}")]
    Engine(String),
    /// The artifact cache directory is unusable.
    #[error("plugin cache directory {path}: {source}")]
    Cache {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Which compiler made a plugin version's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Winch: compiled fast, runs slower; replaced by [`Tier::Optimized`] code when ready.
    Baseline,
    /// Cranelift.
    Optimized,
}

/// One compiler's engine, and the host imports linked for it.
struct Compiler {
    engine: Engine,
    linker: Linker<PluginCtx>,
}

impl Compiler {
    fn new(config: &Config) -> Result<Self, RuntimeError> {
        let engine_err = |e: wasmtime::Error| RuntimeError::Engine(format!("{e:#}"));
        let engine = Engine::new(config).map_err(engine_err)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(engine_err)?;
        log::add_to_linker::<_, HasSelf<PluginCtx>>(&mut linker, |c| c).map_err(engine_err)?;
        params::add_to_linker::<_, HasSelf<PluginCtx>>(&mut linker, |c| c).map_err(engine_err)?;
        lookup::add_to_linker::<_, HasSelf<PluginCtx>>(&mut linker, |c| c).map_err(engine_err)?;
        state::add_to_linker::<_, HasSelf<PluginCtx>>(&mut linker, |c| c).map_err(engine_err)?;
        Ok(Self { engine, linker })
    }
}

/// Engines, linkers and cache shared by every plugin.
pub struct Runtime {
    optimized: Compiler,
    /// None where Winch has no backend (it has x86_64 only).
    baseline: Option<Compiler>,
    baseline_from_bytes: usize,
    cache: Option<ArtifactCache>,
    pub(super) permits: CallPermits,
    warm: Arc<WarmBudget>,
    idle_per_plugin: usize,
}

impl Runtime {
    /// Builds the engine (component model, epoch interruption), links the host imports and
    /// starts the epoch ticker.
    ///
    /// # Errors
    /// When wasmtime rejects the configuration or the cache directory can't be made.
    pub fn new(config: &RuntimeConfig) -> Result<Arc<Self>, RuntimeError> {
        let engine_err = |e: wasmtime::Error| RuntimeError::Engine(format!("{e:#}"));
        let slots = config.max_concurrent_calls.max(1);
        // Instances are allocated on demand, not from a fixed pool: a Python component holds
        // ~40 core instances and tables, a Rust one a handful, and no fixed split of a pool
        // fits every language. Concurrency is bounded by the call permits, memory by each
        // store's cap, and instantiation is rare because instances are reused.
        let mut wasm = base_config();
        if let Some(dir) = &config.cache_dir {
            let cache_err = |source| RuntimeError::Cache {
                path: dir.clone(),
                source,
            };
            std::fs::create_dir_all(dir).map_err(cache_err)?;
            // A quarter of the budget: functions are reused across versions, artifacts are
            // whole versions.
            let functions =
                FunctionCache::open(&dir.join(FUNCTION_CACHE_FILE), config.cache_max_bytes / 4)
                    .map_err(cache_err)?;
            wasm.enable_incremental_compilation(Arc::new(functions))
                .map_err(engine_err)?;
        }
        let optimized = Compiler::new(&wasm)?;
        let baseline = if cfg!(target_arch = "x86_64") {
            let mut winch = base_config();
            winch.strategy(Strategy::Winch);
            Some(Compiler::new(&winch)?)
        } else {
            None
        };
        let cache = match &config.cache_dir {
            Some(dir) => Some(
                ArtifactCache::new(dir, &optimized.engine, config.cache_max_bytes).map_err(
                    |source| RuntimeError::Cache {
                        path: dir.clone(),
                        source,
                    },
                )?,
            ),
            None => None,
        };
        start_epoch_ticker(
            std::iter::once(&optimized)
                .chain(&baseline)
                .map(|c| c.engine.clone())
                .collect(),
        );
        Ok(Arc::new(Self {
            optimized,
            baseline,
            baseline_from_bytes: config.baseline_from_bytes,
            cache,
            permits: CallPermits::new(slots as usize),
            warm: WarmBudget::new(config.max_warm_instances as usize),
            idle_per_plugin: config.max_idle_per_plugin as usize,
        }))
    }

    /// Reads, compiles and links the plugin file at `path`; the plugin's name is the file
    /// stem.
    ///
    /// # Errors
    /// A [`LoadError`] naming the file and what is wrong with it.
    pub fn load_file(
        self: &Arc<Self>,
        path: &Path,
        limits: PluginLimits,
    ) -> Result<LoadedPlugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.load_bytes(&name, &bytes, path, limits)
    }

    /// Compiles (optimized) and links `bytes` as plugin `name`, and instantiates it once
    /// (the instance serves the first batch); `path` is for messages.
    ///
    /// # Errors
    /// A [`LoadError`] naming `path` and what is wrong.
    pub fn load_bytes(
        self: &Arc<Self>,
        name: &str,
        bytes: &[u8],
        path: &Path,
        limits: PluginLimits,
    ) -> Result<LoadedPlugin, LoadError> {
        self.load_bytes_with(name, bytes, path, limits, Tier::Optimized)
    }

    /// [`Runtime::load_bytes`] by `tier`'s compiler (the optimizing one where there is no
    /// baseline compiler).
    ///
    /// # Errors
    /// A [`LoadError`] naming `path` and what is wrong.
    pub fn load_bytes_with(
        self: &Arc<Self>,
        name: &str,
        bytes: &[u8],
        path: &Path,
        limits: PluginLimits,
        tier: Tier,
    ) -> Result<LoadedPlugin, LoadError> {
        self.load(name, &Source::new(bytes, path), limits, tier)
    }

    /// The tier a new version serves from first: optimized when the artifact cache holds
    /// it, when it is small, or when there is no baseline compiler; baseline otherwise.
    pub(super) fn first_tier(&self, source: &Source) -> Tier {
        let cached = self
            .cache
            .as_ref()
            .is_some_and(|cache| cache.holds(&source.digest));
        if self.baseline.is_none() || cached || source.bytes.len() < self.baseline_from_bytes {
            Tier::Optimized
        } else {
            Tier::Baseline
        }
    }

    /// Compiles `source` with `tier`'s compiler, links it as plugin `name`, and instantiates
    /// it once (the instance serves the first batch).
    ///
    /// # Errors
    /// A [`LoadError`] naming the source's path and what is wrong.
    pub(super) fn load(
        self: &Arc<Self>,
        name: &str,
        source: &Source,
        limits: PluginLimits,
        tier: Tier,
    ) -> Result<LoadedPlugin, LoadError> {
        let (bytes, path) = (&source.bytes[..], &source.path);
        check_header(bytes, path)?;
        let tier = if self.baseline.is_some() {
            tier
        } else {
            Tier::Optimized
        };
        let compiled = match (tier, &self.cache) {
            (Tier::Baseline, _) => Component::new(self.engine(tier), bytes),
            (Tier::Optimized, Some(cache)) => {
                cache.get_or_compile(self.engine(tier), bytes, &source.digest)
            }
            (Tier::Optimized, None) => Component::new(self.engine(tier), bytes),
        };
        let component = compiled.map_err(|e| LoadError::Compile {
            path: path.to_owned(),
            message: format!("{e:#}"),
        })?;
        let plugin = LoadedPlugin::link(self, name, source, component, limits, tier)?;
        plugin.warm_up().map_err(|e| LoadError::Instantiate {
            path: path.to_owned(),
            message: e.kind.to_string(),
        })?;
        Ok(plugin)
    }

    /// The engine of `tier`'s compiler.
    pub(super) fn engine(&self, tier: Tier) -> &Engine {
        &self.compiler(tier).engine
    }

    /// The host imports, linked for `tier`'s engine.
    pub(super) fn linker(&self, tier: Tier) -> &Linker<PluginCtx> {
        &self.compiler(tier).linker
    }

    fn compiler(&self, tier: Tier) -> &Compiler {
        match (tier, &self.baseline) {
            (Tier::Baseline, Some(baseline)) => baseline,
            _ => &self.optimized,
        }
    }

    /// An empty instance pool for a newly linked version.
    pub(super) fn pool<P: WorldPre>(&self, pre: P) -> Pool<P> {
        Pool::new(pre, self.idle_per_plugin, self.warm.clone())
    }
}

/// The SHA-256 of a component, hex: its identity in the caches and, shortened, its version.
pub fn digest_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A component file's bytes, their digest, and its path (for messages). A version serving
/// baseline code keeps it, to compile it optimized.
#[derive(Debug, Clone)]
pub(super) struct Source {
    pub(super) bytes: Arc<[u8]>,
    pub(super) digest: String,
    pub(super) path: PathBuf,
}

impl Source {
    pub(super) fn new(bytes: &[u8], path: &Path) -> Self {
        Self {
            bytes: bytes.into(),
            digest: digest_of(bytes),
            path: path.to_owned(),
        }
    }
}

/// The settings of both compilers' engines.
fn base_config() -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(1 << 20)
        // Plugins ship stripped; a backtrace of unnamed functions costs time on every trap
        // and tells an operator nothing. The guest's own stderr carries the panic message.
        .wasm_backtrace_max_frames(None);
    config
}

/// Tells a component from a core module or a stranger before Cranelift sees it, so the
/// error says what the file is.
fn check_header(bytes: &[u8], path: &Path) -> Result<(), LoadError> {
    const MAGIC: &[u8] = b"\0asm";
    const CORE_VERSION: &[u8] = &[1, 0, 0, 0];
    if !bytes.starts_with(MAGIC) {
        return Err(LoadError::NotWasm {
            path: path.to_owned(),
        });
    }
    if bytes.get(4..8) == Some(CORE_VERSION) {
        return Err(LoadError::CoreModule {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Advances the engines' epochs every [`EPOCH_TICK`] until they are dropped; holds only
/// weak references so it never keeps an engine alive.
fn start_epoch_ticker(engines: Vec<Engine>) {
    let weak: Vec<_> = engines.iter().map(Engine::weak).collect();
    drop(engines);
    std::thread::Builder::new()
        .name("sluice-epoch".into())
        .spawn(move || {
            loop {
                let live: Vec<Engine> = weak.iter().filter_map(|w| w.upgrade()).collect();
                if live.is_empty() {
                    break;
                }
                live.iter().for_each(Engine::increment_epoch);
                drop(live);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread at startup");
}

/// A counting semaphore in front of the instance pool: a call waits for a slot instead of
/// failing when the pool is full.
pub(super) struct CallPermits {
    free: Mutex<usize>,
    returned: Condvar,
}

impl CallPermits {
    fn new(n: usize) -> Self {
        Self {
            free: Mutex::new(n),
            returned: Condvar::new(),
        }
    }

    /// Blocks until a slot is free.
    pub(super) fn acquire(&self) -> CallPermit<'_> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        while *free == 0 {
            free = self
                .returned
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *free -= 1;
        CallPermit(self)
    }
}

/// A held slot; returned on drop.
pub(super) struct CallPermit<'a>(&'a CallPermits);

impl Drop for CallPermit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.returned.notify_one();
    }
}
