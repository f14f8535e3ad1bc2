//! Dead letters: batches a plugin failed on, kept with the tenant, plugin, version and error
//! so an operator (or the tenant, through the API) can inspect and replay them. Never
//! silently dropped.

use crate::plugin::CallError;
use crate::telemetry::{Metrics, PluginVersionLabels};
use crate::tenant::TenantId;
use crate::time::now_ns;
use crate::transport::{Outbox, Outlet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// One failed batch.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// When it was dead-lettered, nanoseconds since the epoch.
    pub at_ns: i64,
    /// Whose items they are; none for bytes that name no tenant (a foreign producer's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<TenantId>,
    /// The pipeline stage (`tenant/stage`).
    pub stage: String,
    /// Plugin name; empty when the host itself refused the items (the store, a panic).
    pub plugin: String,
    /// Plugin version; empty when the host refused the items.
    pub version: String,
    /// Why the batch failed.
    pub error: String,
    /// Whether the items were derived from points (windows, alerts, late values) rather
    /// than being points: those can't be re-run through a pipeline.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub derived: bool,
    /// The batch, one line-protocol line per point (windows as points of their aggregates).
    pub items: Vec<String>,
}

impl DeadLetter {
    /// A dead letter for `tenant`'s `items` that failed in `stage` (`tenant/stage`) with
    /// `error`.
    pub fn new(tenant: &TenantId, stage: &str, error: &CallError, items: Vec<String>) -> Self {
        Self {
            stage: stage.to_owned(),
            plugin: error.plugin.name.to_string(),
            version: error.plugin.version.to_string(),
            ..Self::refused(Some(tenant), "", &error.kind.to_string(), items)
        }
    }

    /// A dead letter for `items` the host could not process in step `what` (`store`,
    /// say; the stage is `tenant/what`), for the reason `error`.
    pub fn refused(tenant: Option<&TenantId>, what: &str, error: &str, items: Vec<String>) -> Self {
        Self {
            at_ns: now_ns(),
            tenant: tenant.cloned(),
            stage: tenant.map_or_else(|| what.to_owned(), |t| format!("{t}/{what}")),
            plugin: String::new(),
            version: String::new(),
            error: error.to_owned(),
            derived: false,
            items,
        }
    }

    /// The same letter, marked as holding what was derived from points, not points.
    #[must_use]
    pub fn derived(self) -> Self {
        Self {
            derived: true,
            ..self
        }
    }
}

/// The most of the log one page reads.
pub const PAGE_SCAN_BYTES: u64 = 8 << 20;

/// A page of one tenant's dead letters.
#[derive(Debug, Default)]
pub struct DeadLetterPage {
    /// The letters, oldest first.
    pub letters: Vec<DeadLetter>,
    /// Where reading stopped: after the last whole letter read.
    pub read_to: u64,
    /// Whether more may follow (reading stopped at the limit, not at the end).
    pub more: bool,
}

impl DeadLetterPage {
    /// Where the next page starts, when there may be one.
    pub fn next(&self) -> Option<u64> {
        self.more.then_some(self.read_to)
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
    /// Held while the replay marks are rewritten.
    marks: Mutex<()>,
    /// Held for a whole replay.
    replays: Mutex<()>,
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
            marks: Mutex::default(),
            replays: Mutex::default(),
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

    /// Up to `limit` of `tenant`'s dead letters, oldest first, from position `from` (0, or
    /// the `next` of the page before), and where the next page starts when there may be
    /// more. A page reads at most [`PAGE_SCAN_BYTES`] of the log, whoever's letters they
    /// are, so it may hold fewer than `limit` and still have a next.
    ///
    /// # Errors
    /// When the file can't be read.
    pub fn page(
        &self,
        tenant: &TenantId,
        from: u64,
        limit: usize,
    ) -> Result<DeadLetterPage, DeadLetterError> {
        let err = |source| DeadLetterError {
            path: self.path.clone(),
            source,
        };
        let mut file = File::open(&self.path).map_err(err)?;
        file.seek(std::io::SeekFrom::Start(from)).map_err(err)?;
        let mut reader = std::io::BufReader::new(file);
        let mut page = DeadLetterPage::default();
        let (mut at, mut line) = (from, Vec::new());
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(err)?;
            // The end, or a letter still being written: nothing more for now.
            if n == 0 || line.last() != Some(&b'\n') {
                page.read_to = at;
                return Ok(page);
            }
            at += n as u64;
            let letter = serde_json::from_slice::<DeadLetter>(&line).ok();
            if let Some(letter) = letter.filter(|l| l.tenant.as_ref() == Some(tenant)) {
                page.letters.push(letter);
            }
            if page.letters.len() >= limit || at - from >= PAGE_SCAN_BYTES {
                page.more = true;
                page.read_to = at;
                return Ok(page);
            }
        }
    }

    /// Where `tenant`'s letters not yet re-run start (0 before its first replay).
    ///
    /// # Errors
    /// When the replay marks can't be read.
    pub fn replayed_to(&self, tenant: &TenantId) -> Result<u64, DeadLetterError> {
        Ok(self.replay_marks()?.get(tenant).copied().unwrap_or(0))
    }

    /// Notes durably that `tenant`'s letters before `to` are re-run.
    ///
    /// # Errors
    /// When the marks can't be written; the letters may then be re-run again (the store
    /// keeps a point once however often it is written).
    pub fn mark_replayed(&self, tenant: &TenantId, to: u64) -> Result<(), DeadLetterError> {
        let _one_at_a_time = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        let mut marks = self.replay_marks()?;
        marks.insert(tenant.clone(), to);
        let path = self.marks_path();
        let tmp = path.with_extension("replayed.tmp");
        let err = |source| DeadLetterError {
            path: path.clone(),
            source,
        };
        // Plain map of strings to numbers: serializing can't fail.
        let json = serde_json::to_vec(&marks).unwrap_or_default();
        let mut file = File::create(&tmp).map_err(err)?;
        file.write_all(&json)
            .and_then(|()| file.sync_all())
            .map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)?;
        if let Some(dir) = path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
        }
        Ok(())
    }

    /// One replay at a time per log, so two can't re-run the same letters at once.
    pub fn replaying(&self) -> std::sync::MutexGuard<'_, ()> {
        self.replays.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn marks_path(&self) -> PathBuf {
        self.path.with_extension("replayed")
    }

    fn replay_marks(&self) -> Result<std::collections::BTreeMap<TenantId, u64>, DeadLetterError> {
        let path = self.marks_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| DeadLetterError {
                path,
                source: std::io::Error::other(e),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
            Err(source) => Err(DeadLetterError { path, source }),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_pages_through_its_own_letters_only_and_a_torn_last_line_waits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dead.jsonl");
        let log = DeadLetterLog::open(&path, Arc::default()).expect("open");
        let (a, b) = (TenantId::new("a"), TenantId::new("b"));
        for i in 0..5 {
            let item = |t: &TenantId| vec![format!("{t} v={i} {i}")];
            log.put(&DeadLetter::refused(Some(&a), "store", "full", item(&a)))
                .expect("a's");
            log.put(&DeadLetter::refused(Some(&b), "store", "full", item(&b)))
                .expect("b's");
        }
        log.put(&DeadLetter::refused(None, "transport", "foreign", vec![]))
            .expect("no tenant's");
        let mut pages = Vec::new();
        let mut from = 0;
        loop {
            let page = log.page(&a, from, 2).expect("page");
            pages.push(page.letters.len());
            assert!(page.letters.iter().all(|l| l.tenant.as_ref() == Some(&a)));
            assert!(page.letters.iter().all(|l| l.stage == "a/store"));
            match page.next() {
                Some(next) => from = next,
                None => break,
            }
        }
        assert_eq!(pages.iter().sum::<usize>(), 5, "{pages:?}");
        assert_eq!(pages[..2], [2, 2]);
        let end = std::fs::metadata(&path).expect("size").len();
        // A letter half written (a crash mid-append, or a write in flight) is not read.
        let mut file = OpenOptions::new().append(true).open(&path).expect("file");
        file.write_all(br#"{"at_ns":1,"tenant":"a","stage":"a/st"#)
            .expect("torn");
        let tail = log.page(&a, end, 10).expect("tail");
        assert!(tail.letters.is_empty() && tail.next().is_none(), "{tail:?}");
    }
}

#[cfg(test)]
mod replay_tests {
    use super::*;

    #[test]
    fn replay_marks_are_per_tenant_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dead.jsonl");
        let (a, b) = (TenantId::new("a"), TenantId::new("b"));
        {
            let log = DeadLetterLog::open(&path, Arc::default()).expect("open");
            assert_eq!(log.replayed_to(&a).expect("none yet"), 0);
            log.mark_replayed(&a, 120).expect("mark a");
            log.mark_replayed(&b, 40).expect("mark b");
            log.mark_replayed(&a, 300).expect("a again");
        }
        let log = DeadLetterLog::open(&path, Arc::default()).expect("reopen");
        assert_eq!(log.replayed_to(&a).expect("a"), 300);
        assert_eq!(log.replayed_to(&b).expect("b"), 40);
        assert_eq!(log.replayed_to(&TenantId::new("c")).expect("c"), 0);
    }
}
