//! The per-call store data of a plugin instance, and the host side of the WIT imports
//! (`log`, `params`, `lookup`, `state`).
//!
//! A [`PluginCtx`] lives as long as its instance, which may run many batches; each call
//! starts with [`PluginCtx::begin`], which gives it the stage's environment, a fresh state
//! overlay and fresh log and output budgets.

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

/// Bytes of stdout (and of stderr) an instance may write in its life. A plugin writing more
/// fails its batch (the guest's write errors), which bounds memory per instance. An
/// instance that wrote more than [`STDIO_BYTES_PER_CALL`] is not reused, so every call has
/// at least that much.
const STDIO_BYTES_PER_INSTANCE: usize = 128 * 1024;

/// Bytes of stdout (and of stderr) every call may write.
const STDIO_BYTES_PER_CALL: usize = STDIO_BYTES_PER_INSTANCE / 2;

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

/// Store data of one instance.
pub struct PluginCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) memory: MemoryCap,
    pub(super) stdout: MemoryOutputPipe,
    pub(super) stderr: MemoryOutputPipe,
    /// How much of stdout and stderr earlier calls wrote.
    stdio_mark: (usize, usize),
    plugin: PluginId,
    env: CallEnv,
    pub(super) state: StateOverlay,
    logs_left: u32,
}

impl PluginCtx {
    /// A fresh context: no filesystem, network, environment or arguments; stdout and stderr
    /// captured for the host's log.
    pub(super) fn new(plugin: PluginId, env: CallEnv, memory_limit_bytes: usize) -> Self {
        let stdout = MemoryOutputPipe::new(STDIO_BYTES_PER_INSTANCE);
        let stderr = MemoryOutputPipe::new(STDIO_BYTES_PER_INSTANCE);
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
            stdio_mark: (0, 0),
            state: StateOverlay::new(env.state.clone()),
            plugin,
            env,
            logs_left: LOG_RECORDS_PER_CALL,
        }
    }

    /// Readies a reused instance for its next call with `env`.
    pub(super) fn begin(&mut self, env: &CallEnv) {
        self.state = StateOverlay::new(env.state.clone());
        self.env = env.clone();
        self.logs_left = LOG_RECORDS_PER_CALL;
        self.memory.exceeded = false;
        self.stdio_mark = (self.stdout.contents().len(), self.stderr.contents().len());
    }

    /// Makes this call's state writes the stage's state.
    pub(super) fn commit_state(&mut self) {
        let fresh = StateOverlay::new(self.env.state.clone());
        std::mem::replace(&mut self.state, fresh).commit();
    }

    /// Whether the instance may run another call: its output budgets have room for one.
    pub(super) fn reusable(&self) -> bool {
        self.stdout
            .contents()
            .len()
            .max(self.stderr.contents().len())
            <= STDIO_BYTES_PER_INSTANCE - STDIO_BYTES_PER_CALL
    }

    /// What the guest wrote to stderr in this call.
    pub(super) fn call_stderr(&self) -> Vec<u8> {
        let all = self.stderr.contents();
        all.get(self.stdio_mark.1..).unwrap_or_default().to_vec()
    }

    /// Sends what the guest printed in this call to the host's log, a line a record.
    pub(super) fn flush_stdio(&self) {
        let streams = [
            ("stdout", &self.stdout, self.stdio_mark.0),
            ("stderr", &self.stderr, self.stdio_mark.1),
        ];
        for (stream, pipe, mark) in streams {
            let all = pipe.contents();
            let bytes = all.get(mark..).unwrap_or_default();
            for line in String::from_utf8_lossy(bytes).lines() {
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
