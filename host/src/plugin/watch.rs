//! Hot reload: watches the plugin directory (notify/inotify) and reloads a plugin file once
//! it has settled, in a background thread, off the batch path.
//!
//! Settling avoids load storms from half-written files: a finished write (close after
//! write) or an atomic rename into place settles after a short quiet period; any other
//! change (data still being written without a close, attribute changes) only after a long
//! one. A file that still fails to load is reported once per settled change, and the
//! serving version keeps serving.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecursiveMode, Watcher as _};

use super::registry::{PluginRegistry, Reloaded, plugin_name};

/// Quiet periods before a changed file is loaded.
#[derive(Debug, Clone, Copy)]
pub struct Settle {
    /// After a completed write or a rename into place.
    pub finished: Duration,
    /// After any other change, when no completion was seen.
    pub unfinished: Duration,
}

impl Default for Settle {
    fn default() -> Self {
        // 25 ms lets an editor's write-then-rename sequence finish; 1 s covers a copy that
        // is still writing without closing the file.
        Self {
            finished: Duration::from_millis(25),
            unfinished: Duration::from_secs(1),
        }
    }
}

/// A running watcher; dropping it stops watching (the thread ends).
pub struct PluginWatcher {
    _watcher: notify::RecommendedWatcher,
}

/// Starts watching the registry's directory.
///
/// # Errors
/// When the directory can't be watched.
pub fn watch(registry: Arc<PluginRegistry>, settle: Settle) -> notify::Result<PluginWatcher> {
    let (tx, rx) = channel::<notify::Result<Event>>();
    let mut watcher = notify::recommended_watcher(move |event| {
        // The receiver only goes away when the thread ends, after the watcher is dropped.
        let _ = tx.send(event);
    })?;
    watcher.watch(registry.dir(), RecursiveMode::NonRecursive)?;
    std::thread::Builder::new()
        .name("sluice-plugin-watch".into())
        .spawn(move || {
            let mut due: HashMap<PathBuf, Instant> = HashMap::new();
            loop {
                let now = Instant::now();
                let wait = due.values().min().map_or(Duration::from_secs(3600), |t| {
                    t.saturating_duration_since(now)
                });
                match rx.recv_timeout(wait) {
                    Ok(Ok(event)) => schedule(&mut due, &event, settle),
                    Ok(Err(error)) => tracing::warn!(%error, "Plugin directory watch error."),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
                let now = Instant::now();
                let ready: Vec<PathBuf> = due
                    .iter()
                    .filter(|(_, t)| **t <= now)
                    .map(|(p, _)| p.clone())
                    .collect();
                for path in ready {
                    due.remove(&path);
                    load(&registry, path);
                }
            }
        })
        .map_err(notify::Error::io)?;
    Ok(PluginWatcher { _watcher: watcher })
}

fn schedule(due: &mut HashMap<PathBuf, Instant>, event: &Event, settle: Settle) {
    let quiet = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write))
        | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => settle.finished,
        EventKind::Remove(_)
        | EventKind::Access(_)
        | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => return,
        _ => settle.unfinished,
    };
    let at = Instant::now() + quiet;
    for path in event.paths.iter().filter(|p| plugin_name(p).is_some()) {
        due.insert(path.clone(), at);
    }
}

fn load(registry: &PluginRegistry, path: PathBuf) {
    if !path.exists() {
        // Deleting a file doesn't stop a running pipeline: the serving version stays.
        tracing::warn!(path = %path.display(), "Plugin file removed; its serving version stays loaded.");
        return;
    }
    let started = Instant::now();
    match registry.reload(&path) {
        Ok(Reloaded::Unchanged) => {}
        Ok(change) => tracing::info!(
            path = %path.display(),
            load_ms = started.elapsed().as_millis() as u64,
            ?change,
            "Plugin reloaded."
        ),
        // Already logged and recorded by the registry.
        Err(_) => {}
    }
}
