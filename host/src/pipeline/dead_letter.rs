//! Dead letters: batches a plugin failed on, kept with the plugin, version and error so an
//! operator can inspect and replay them. Never silently dropped.

use crate::plugin::CallError;
use crate::telemetry::{Metrics, PluginVersionLabels};
use crate::time::now_ns;
use crate::transport::{Outbox, Outlet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// One failed batch.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// When it was dead-lettered, nanoseconds since the epoch.
    pub at_ns: i64,
    /// The pipeline stage.
    pub stage: String,
    /// Plugin name; empty when the host itself refused the items (the store, a panic).
    pub plugin: String,
    /// Plugin version; empty when the host refused the items.
    pub version: String,
    /// Why the batch failed.
    pub error: String,
    /// The batch, one line-protocol line per point (windows as points of their aggregates).
    pub items: Vec<String>,
}

impl DeadLetter {
    /// A dead letter for `items` that failed in `stage` with `error`.
    pub fn new(stage: &str, error: &CallError, items: Vec<String>) -> Self {
        Self {
            plugin: error.plugin.name.to_string(),
            version: error.plugin.version.to_string(),
            ..Self::refused(stage, &error.kind.to_string(), items)
        }
    }

    /// A dead letter for `items` the host could not process in `stage` (`tenant/store`,
    /// say), for the reason `error`.
    pub fn refused(stage: &str, error: &str, items: Vec<String>) -> Self {
        Self {
            at_ns: now_ns(),
            stage: stage.to_owned(),
            plugin: String::new(),
            version: String::new(),
            error: error.to_owned(),
            items,
        }
    }
}

/// A dead letter could not be kept: the batch must not be acknowledged downstream.
#[derive(Debug, thiserror::Error)]
#[error("dead-letter log {path}: {source}")]
pub struct DeadLetterError {
    /// The log file.
    pub path: PathBuf,
    /// The I/O error.
    pub source: std::io::Error,
}

/// An append-only JSON-lines file of dead letters, fsynced per letter (failures are rare;
/// losing one is not acceptable).
pub struct DeadLetterLog {
    path: PathBuf,
    file: Mutex<File>,
    metrics: Arc<Metrics>,
    /// Where dead letters are published too (Kafka's dead-letter topic), first.
    outbox: Option<Arc<dyn Outbox>>,
}

impl DeadLetterLog {
    /// Opens (creating) the log at `path`.
    ///
    /// # Errors
    /// When the file can't be opened.
    pub fn open(path: &Path, metrics: Arc<Metrics>) -> Result<Self, DeadLetterError> {
        let err = |source| DeadLetterError {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(file),
            metrics,
            outbox: None,
        })
    }

    /// Publishes every dead letter to `outbox` too, before the file has it.
    #[must_use]
    pub fn with_outbox(mut self, outbox: Arc<dyn Outbox>) -> Self {
        self.outbox = Some(outbox);
        self
    }

    /// Appends `letter` durably.
    ///
    /// # Errors
    /// When writing or syncing fails.
    pub fn put(&self, letter: &DeadLetter) -> Result<(), DeadLetterError> {
        self.put_all(std::slice::from_ref(letter))
    }

    /// Appends `letters` durably, with one sync.
    ///
    /// # Errors
    /// When writing or syncing fails: none of them may be taken as kept.
    pub fn put_all(&self, letters: &[DeadLetter]) -> Result<(), DeadLetterError> {
        let json: Vec<Vec<u8>> = letters
            .iter()
            // Plain strings and numbers: serializing into a Vec can't fail.
            .map(|letter| serde_json::to_vec(letter).unwrap_or_default())
            .collect();
        if let Some(outbox) = &self.outbox {
            let messages: Vec<(&[u8], &[u8])> = letters
                .iter()
                .zip(&json)
                .map(|(letter, json)| (letter.stage.as_bytes(), json.as_slice()))
                .collect();
            outbox
                .publish(Outlet::DeadLetters, &messages)
                .map_err(|e| DeadLetterError {
                    path: self.path.clone(),
                    source: std::io::Error::other(e.to_string()),
                })?;
        }
        let mut lines = Vec::new();
        for line in json {
            lines.extend(line);
            lines.push(b'\n');
        }
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(&lines)
            .and_then(|()| file.sync_data())
            .map_err(|source| DeadLetterError {
                path: self.path.clone(),
                source,
            })?;
        drop(file);
        for letter in letters {
            self.metrics
                .dead_letter_points
                .get_or_create(&PluginVersionLabels {
                    plugin: letter.plugin.clone(),
                    version: letter.version.clone(),
                })
                .inc_by(letter.items.len() as u64);
            tracing::warn!(stage = %letter.stage, plugin = %letter.plugin, version = %letter.version, items = letter.items.len(), error = %letter.error, "Batch kept as dead letter.");
        }
        Ok(())
    }

    /// Keeps `letters` durably, retrying while the log fails (a full disk); false when
    /// `stop` was set first.
    pub fn keep(&self, letters: &[DeadLetter], stop: &std::sync::atomic::AtomicBool) -> bool {
        if letters.is_empty() {
            return true;
        }
        while let Err(error) = self.put_all(letters) {
            if stop.load(std::sync::atomic::Ordering::Acquire) {
                return false;
            }
            tracing::error!(%error, "Could not keep dead letters; retrying.");
            std::thread::sleep(super::RETRY_PAUSE);
        }
        true
    }

    /// Every dead letter in the log, oldest first.
    ///
    /// # Errors
    /// When the file can't be read; unparsable lines (a torn last write) are skipped.
    pub fn read_all(&self) -> Result<Vec<DeadLetter>, DeadLetterError> {
        let text = std::fs::read_to_string(&self.path).map_err(|source| DeadLetterError {
            path: self.path.clone(),
            source,
        })?;
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }
}
