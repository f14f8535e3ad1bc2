//! The plugin platform: WebAssembly components implementing the `sluice:plugin` worlds,
//! compiled once, run per batch under a deadline and a memory cap, hot-swapped between
//! batches.
//!
//! - [`Runtime`]: the engines (optimizing and baseline [`Tier`]s), linkers and artifact cache
//!   (only place that configures wasmtime).
//! - [`LoadedPlugin`]: one compiled version; `filter`, `transform`, `evaluate` run a batch.
//! - [`PluginRegistry`] / [`PluginSlot`]: the serving version of each plugin of a directory,
//!   health and quarantine; [`watch`] reloads changed files.

mod batch;
mod bindings;
mod cache;
mod convert;
mod ctx;
mod error;
mod loaded;
mod pool;
mod registry;
mod runtime;
mod state;
mod watch;

pub use ctx::{CallEnv, Params};
pub use error::{CallError, CallErrorKind, LoadError};
pub use loaded::{LoadedPlugin, PluginId, WIT_PACKAGE, World, version_of};
pub use registry::{
    Health, Outcome, PluginRegistry, PluginSlot, PluginStatus, RegistryConfig, Reloaded,
    plugin_name,
};
pub use runtime::{PluginLimits, Runtime, RuntimeConfig, RuntimeError, Tier, digest_of};
pub use state::{StageState, StateLimits};
pub use watch::{PluginWatcher, Settle, watch};
