//! The per-call store data of a plugin instance, and the host side of the WIT imports
//! (`log`, `params`, `lookup`, `state`).
//!
//! A fresh [`PluginCtx`] is built for every batch: no guest-visible state survives a call
//! except through the committed [`StateOverlay`].

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::PluginId;
use super::bindings::{log, lookup, params, state};
use super::state::{StageState, StateOverlay};
use crate::lookup::LookupTables;

/// Most log records a plugin may emit in one call; the rest are counted and dropped so a
/// chatty plugin can't flood the host's log.
const LOG_RECORDS_PER_CALL: u32 = 100;

/// Bytes of stdout (and of stderr) kept per call. A plugin writing more fails its batch
/// (the guest's write errors), which bounds memory per call.
const STDIO_BYTES_PER_CALL: usize = 64 * 1024;

/// A stage's parameters, as the pipeline configuration gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

impl FromIterator<(String, String)> for Params {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// What a stage gives each call of its plugin: parameters, lookup tables and its state.
#[derive(Debug, Clone, Default)]
pub struct CallEnv {
    /// The stage's parameters.
    pub params: Arc<Params>,
    /// Lookup tables for enrichment.
    pub lookups: Arc<LookupTables>,
    /// The stage's state.
    pub state: Arc<StageState>,
}

/// Store data of one call.
pub struct PluginCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) memory: MemoryCap,
    pub(super) stdout: MemoryOutputPipe,
    pub(super) stderr: MemoryOutputPipe,
    plugin: PluginId,
    env: CallEnv,
    pub(super) state: StateOverlay,
    logs_left: u32,
}

impl PluginCtx {
    /// A fresh context: no filesystem, network, environment or arguments; stdout and stderr
    /// captured for the host's log.
    pub(super) fn new(plugin: PluginId, env: CallEnv, memory_limit_bytes: usize) -> Self {
        let stdout = MemoryOutputPipe::new(STDIO_BYTES_PER_CALL);
        let stderr = MemoryOutputPipe::new(STDIO_BYTES_PER_CALL);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap {
                limit_bytes: memory_limit_bytes,
                exceeded: false,
            },
            stdout,
            stderr,
            state: StateOverlay::new(env.state.clone()),
            plugin,
            env,
            logs_left: LOG_RECORDS_PER_CALL,
        }
    }

    /// Sends what the guest printed to the host's log, a line a record.
    pub(super) fn flush_stdio(&self) {
        for (stream, pipe) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let bytes = pipe.contents();
            for line in String::from_utf8_lossy(&bytes).lines() {
                if !line.trim().is_empty() {
                    tracing::info!(plugin = %self.plugin, stream, "{line}");
                }
            }
        }
    }
}

impl WasiView for PluginCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps linear memory growth and remembers whether the cap was hit, so a failed call can be
/// reported as a memory overrun rather than a generic trap. (`StoreLimits` caps but doesn't
/// tell which limit a trap came from.)
#[derive(Debug)]
pub(super) struct MemoryCap {
    pub(super) limit_bytes: usize,
    pub(super) exceeded: bool,
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit_bytes {
            self.exceeded = true;
            // An error (rather than Ok(false)) traps at once instead of letting the guest's
            // allocator abort with a less precise message.
            wasmtime::bail!(
                "memory limit: growing to {desired} bytes exceeds the cap of {} bytes",
                self.limit_bytes
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Function tables of real plugins hold a few thousand entries at most.
        Ok(desired <= 100_000)
    }
}

impl log::Host for PluginCtx {
    fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        if self.logs_left == 0 {
            return;
        }
        self.logs_left -= 1;
        let fields = fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        let plugin = &self.plugin;
        match level {
            log::Level::Trace => tracing::trace!(%plugin, fields, "{message}"),
            log::Level::Debug => tracing::debug!(%plugin, fields, "{message}"),
            log::Level::Info => tracing::info!(%plugin, fields, "{message}"),
            log::Level::Warn => tracing::warn!(%plugin, fields, "{message}"),
            log::Level::Error => tracing::error!(%plugin, fields, "{message}"),
        }
        if self.logs_left == 0 {
            tracing::warn!(%plugin, "Plugin hit its log budget of {LOG_RECORDS_PER_CALL} records for this batch; further records are dropped.");
        }
    }
}

impl params::Host for PluginCtx {
    fn get(&mut self, name: String) -> Option<String> {
        self.env.params.get(&name).map(str::to_owned)
    }

    fn all(&mut self) -> Vec<(String, String)> {
        self.env
            .params
            .0
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl lookup::Host for PluginCtx {
    fn get(&mut self, table: String, key: String) -> Option<Vec<(String, String)>> {
        self.env.lookups.get(&table, &key).cloned()
    }
}

impl state::Host for PluginCtx {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.state.get(&key)
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        self.state.set(key, value)
    }

    fn remove(&mut self, key: String) {
        self.state.remove(key);
    }
}
