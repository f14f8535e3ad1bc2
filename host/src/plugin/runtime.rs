//! The one wasmtime [`Engine`] and [`Linker`] of the process, and the settings every plugin
//! runs under. Only this module touches `wasmtime::Config`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::{log, lookup, params, state};
use super::cache::ArtifactCache;
use super::ctx::PluginCtx;
use super::error::LoadError;
use super::loaded::LoadedPlugin;

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
    /// Most plugin calls running at once; more wait. Sizes the pooling allocator.
    pub max_concurrent_calls: u32,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            max_concurrent_calls: 32,
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

/// Engine, linker and cache shared by every plugin.
pub struct Runtime {
    pub(super) engine: Engine,
    linker: Linker<PluginCtx>,
    cache: Option<ArtifactCache>,
    pub(super) permits: CallPermits,
}

impl Runtime {
    /// Builds the engine (component model, epoch interruption, pooling allocator), links
    /// the host imports and starts the epoch ticker.
    ///
    /// # Errors
    /// When wasmtime rejects the configuration or the cache directory can't be made.
    pub fn new(config: &RuntimeConfig) -> Result<Arc<Self>, RuntimeError> {
        let engine_err = |e: wasmtime::Error| RuntimeError::Engine(format!("{e:#}"));
        let slots = config.max_concurrent_calls.max(1);
        let mut pool = PoolingAllocationConfig::default();
        // A Rust wasip2 component instantiates a handful of core modules (the program plus
        // wit-component shims), each with at most one memory and a few tables.
        pool.total_component_instances(slots)
            .total_core_instances(slots * 8)
            .total_memories(slots * 2)
            .total_tables(slots * 8);
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(1 << 20)
            // Plugins ship stripped; a backtrace of unnamed functions costs time on every trap
            // and tells an operator nothing. The guest's own stderr carries the panic message.
            .wasm_backtrace_max_frames(None)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(engine_err)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(engine_err)?;
        log::add_to_linker::<_, HasSelf<PluginCtx>>(&mut linker, |c| c).map_err(engine_err)?;
        params::add_to_linker::<_, HasSelf<PluginCtx>>(&mut linker, |c| c).map_err(engine_err)?;
        lookup::add_to_linker::<_, HasSelf<PluginCtx>>(&mut linker, |c| c).map_err(engine_err)?;
        state::add_to_linker::<_, HasSelf<PluginCtx>>(&mut linker, |c| c).map_err(engine_err)?;

        let cache =
            match &config.cache_dir {
                Some(dir) => Some(ArtifactCache::new(dir, &engine).map_err(|source| {
                    RuntimeError::Cache {
                        path: dir.clone(),
                        source,
                    }
                })?),
                None => None,
            };
        start_epoch_ticker(&engine);
        Ok(Arc::new(Self {
            engine,
            linker,
            cache,
            permits: CallPermits::new(slots as usize),
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

    /// Compiles and links `bytes` as plugin `name`; `path` is for messages.
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
        check_header(bytes, path)?;
        let digest = hex::encode(Sha256::digest(bytes));
        let compiled = match &self.cache {
            Some(cache) => cache.get_or_compile(&self.engine, bytes, &digest),
            None => Component::new(&self.engine, bytes),
        };
        let component = compiled.map_err(|e| LoadError::Compile {
            path: path.to_owned(),
            message: format!("{e:#}"),
        })?;
        LoadedPlugin::link(self, name, &digest, bytes.len(), component, path, limits)
    }

    pub(super) fn linker(&self) -> &Linker<PluginCtx> {
        &self.linker
    }
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

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is dropped; holds only
/// a weak reference so it never keeps the engine alive.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("sluice-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
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
