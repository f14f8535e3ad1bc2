//! Errors of loading and calling plugins. Every message names the plugin (and version, once
//! known) and says what went wrong, because an operator reads it in a log line or a dead
//! letter without any other context.

use std::path::PathBuf;
use std::time::Duration;

use super::PluginId;
use super::loaded::WIT_PACKAGE;

/// A plugin file could not become a runnable plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: cannot read plugin: {source}")]
    Read {
        /// The plugin file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not WebAssembly at all.
    #[error("{path}: not a WebAssembly component (no `\\0asm` header)")]
    NotWasm {
        /// The plugin file.
        path: PathBuf,
    },
    /// A core module, not a component.
    #[error(
        "{path}: this is a core WebAssembly module, not a component; build for wasm32-wasip2 \
         (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule {
        /// The plugin file.
        path: PathBuf,
    },
    /// Cranelift rejected or failed to compile the component.
    #[error("{path}: invalid component: {message}")]
    Compile {
        /// The plugin file.
        path: PathBuf,
        /// wasmtime's description, with its cause chain.
        message: String,
    },
    /// The component exports none of the world entry points.
    #[error(
        "{path}: implements no Sluice world: expected an export `filter`, `transform` or \
         `evaluate` from {WIT_PACKAGE}, found exports [{}]",
        found.join(", ")
    )]
    UnknownWorld {
        /// The plugin file.
        path: PathBuf,
        /// What it does export.
        found: Vec<String>,
    },
    /// The component was built against another version of the WIT package.
    #[error(
        "{path}: built against sluice:plugin@{found}, but this host runs {WIT_PACKAGE} \
         plugins only (0.2.0 passes the batch's text as bytes, so spans index the same in \
         every language); rebuild it against the wit/ of this release"
    )]
    OtherContract {
        /// The plugin file.
        path: PathBuf,
        /// The package version it imports.
        found: String,
    },
    /// The component needs an import the host doesn't provide, or an export has the wrong
    /// type.
    #[error("{path}: does not fit world `{world}`: {message}")]
    Link {
        /// The plugin file.
        path: PathBuf,
        /// The world it claims.
        world: &'static str,
        /// wasmtime's description.
        message: String,
    },
    /// The component links but can't be instantiated within its limits (its start code
    /// traps or times out, or its initial memory exceeds the cap).
    #[error("{path}: cannot be instantiated: {message}")]
    Instantiate {
        /// The plugin file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A new version implements another world than the one it replaces.
    #[error("{path}: implements world `{found}` but plugin `{name}` is a `{expected}` plugin")]
    WorldChanged {
        /// The plugin file.
        path: PathBuf,
        /// Plugin name.
        name: String,
        /// The world of the serving version.
        expected: &'static str,
        /// The world of the new file.
        found: &'static str,
    },
}

/// One call of a plugin on one batch failed. The batch becomes a dead letter.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin {plugin}: {kind}")]
pub struct CallError {
    /// The plugin version that failed.
    pub plugin: PluginId,
    /// What happened.
    pub kind: CallErrorKind,
}

/// What went wrong in a plugin call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CallErrorKind {
    /// The guest trapped (panic, unreachable, out-of-bounds access, stack overflow...).
    #[error("trapped: {0}")]
    Trap(String),
    /// The call ran past its epoch deadline.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The guest tried to grow its linear memory past the cap.
    #[error("exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit {
        /// The cap.
        limit_bytes: usize,
    },
    /// The guest returned a `plugin-error` for the batch.
    #[error("rejected the batch: {message}{}", index.map(|i| format!(" (item {i})")).unwrap_or_default())]
    Rejected {
        /// The plugin's message.
        message: String,
        /// The offending item, if named.
        index: Option<u32>,
    },
    /// The guest returned something the contract forbids.
    #[error("broke the contract: {0}")]
    BadOutput(String),
    /// The plugin is quarantined after repeated failures; it is not called.
    #[error("is quarantined after {failures} consecutive failed batches (last: {last_error})")]
    Quarantined {
        /// Consecutive failures that led to the quarantine.
        failures: u32,
        /// The last error.
        last_error: String,
    },
    /// The operating system refused the host what instantiating the plugin needs (memory,
    /// a memory image), again after retries: the host's trouble, not the plugin's, so it
    /// does not count toward quarantine, and a later try may succeed.
    #[error("could not be instantiated by the host (a later try may succeed): {0}")]
    Host(String),
    /// The plugin's world has no such entry point (a host bug or misconfigured stage).
    #[error("implements world `{actual}`, cannot be called as `{wanted}`")]
    WrongWorld {
        /// The entry point asked for.
        wanted: &'static str,
        /// The plugin's world.
        actual: &'static str,
    },
}
