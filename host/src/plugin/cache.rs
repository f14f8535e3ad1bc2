//! On-disk cache of precompiled plugin artifacts, so a restart (or a file that returns to
//! an earlier version) skips Cranelift.
//!
//! The key is the SHA-256 of the component plus the engine's compatibility hash: a new
//! wasmtime or different engine settings never read an old artifact. The cache directory
//! must be as trusted as the binary itself, since its artifacts are native code.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Precompiled artifacts in one directory.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_hash: u64,
}

impl ArtifactCache {
    /// A cache in `dir` (created if missing) for artifacts of `engine`.
    ///
    /// # Errors
    /// When the directory can't be created.
    pub fn new(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        // DefaultHasher is deterministic for one build of the binary, which is all the key
        // needs: another build may hash differently and simply recompiles.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir: dir.to_owned(),
            engine_hash: hasher.finish(),
        })
    }

    /// The compiled component for `bytes` (whose SHA-256 is `digest`): from the cache when
    /// present and loadable, otherwise compiled now and stored.
    ///
    /// # Errors
    /// When compiling fails. Cache I/O failures only cost a recompile and are logged.
    pub fn get_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        digest: &str,
    ) -> wasmtime::Result<Component> {
        let path = self
            .dir
            .join(format!("{digest}-{:016x}.cwasm", self.engine_hash));
        if let Ok(cached) = std::fs::read(&path) {
            match deserialize(engine, &cached) {
                Ok(component) => return Ok(component),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "Unusable cached artifact; recompiling.");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let artifact = engine.precompile_component(bytes)?;
        if let Err(error) = write_atomically(&path, &artifact) {
            tracing::warn!(path = %path.display(), %error, "Could not cache compiled plugin.");
        }
        deserialize(engine, &artifact)
    }
}

/// Loads a precompiled artifact. Read into memory rather than mapped from its file: a mapped
/// file that someone truncates would crash the process (SIGBUS).
#[expect(
    unsafe_code,
    reason = "wasmtime artifacts are native code; the cache directory is trusted like the binary"
)]
fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `artifact` was produced by `Engine::precompile_component` of an engine with the
    // same compatibility hash (it is in the file name), just now or into a directory only we
    // write; wasmtime still checks its header and version.
    unsafe { Component::deserialize(engine, artifact) }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
