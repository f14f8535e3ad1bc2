//! The single-machine transport: a durable partitioned log on fjall (an LSM storage engine),
//! with group commit.
//!
//! One keyspace per partition maps big-endian offsets to postcard-encoded records; consumer
//! offsets live in their own keyspace. Appends from all request handlers go to one writer
//! thread, which writes everything pending as one batch and syncs the journal once, then
//! acknowledges them all: one fsync per group, not per request. Records every consumer
//! group has committed are deleted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{Offset, Partition, Record, Transport, TransportError};
use crate::format;

/// Appends waiting for the writer at most; more block the caller (backpressure).
const PENDING_APPENDS: usize = 1024;

type Reply = SyncSender<Result<(), TransportError>>;

/// An append request for the writer thread: encoded records and where to answer. Callers
/// encode, so the one writer thread only writes and syncs.
type Append = (Vec<(Partition, Vec<u8>)>, Reply);

struct PartitionLog {
    keyspace: Keyspace,
    /// The first offset written in the versioned record format ([`format::encode_record`]);
    /// records before it are in the format of releases before it.
    v1_from: Offset,
    /// Next offset to assign, and a signal for fetchers waiting on new records.
    end: Mutex<Offset>,
    grown: Condvar,
}

/// A durable partitioned log in a directory.
pub struct EmbeddedLog {
    db: Database,
    partitions: Vec<Arc<PartitionLog>>,
    offsets: Keyspace,
    writer: Mutex<Option<SyncSender<Append>>>,
    /// The first storage failure: fjall refuses every write after one (it poisons itself),
    /// so the log is unusable until a restart reopens it.
    failed: Arc<Mutex<Option<String>>>,
    /// Journal syncs so far: what a test counts to prove appends are durable on return.
    syncs: Arc<AtomicU64>,
}

fn storage(e: impl std::fmt::Display) -> TransportError {
    TransportError::Storage(e.to_string())
}

impl EmbeddedLog {
    /// Opens (creating or recovering) the log in `dir` with `partitions` partitions.
    ///
    /// # Errors
    /// When the directory can't be opened, or holds a log with another number of
    /// partitions ([`TransportError::PartitionCount`]).
    pub fn open(dir: &std::path::Path, partitions: u32) -> Result<Arc<Self>, TransportError> {
        let db = Database::builder(dir).open().map_err(storage)?;
        let found = (0..)
            .take_while(|p| db.keyspace_exists(&format!("p{p}")))
            .count() as u32;
        if found != 0 && found != partitions {
            return Err(TransportError::PartitionCount {
                dir: dir.display().to_string(),
                found,
                configured: partitions,
            });
        }
        let offsets = db
            .keyspace("offsets", KeyspaceCreateOptions::default)
            .map_err(storage)?;
        let mut logs = Vec::new();
        for p in 0..partitions {
            let keyspace = db
                .keyspace(&format!("p{p}"), KeyspaceCreateOptions::default)
                .map_err(storage)?;
            let end = match keyspace.last_key_value() {
                Some(kv) => decode_offset(&kv.key().map_err(storage)?)? + 1,
                // An empty partition may have been consumed and truncated: continue after the
                // highest committed offset so offsets never repeat.
                None => max_committed(&offsets, p)?,
            };
            let v1_from = match offsets.get(format_key(p)).map_err(storage)? {
                Some(v) => decode_offset(&v)?,
                None => {
                    offsets
                        .insert(format_key(p), end.to_be_bytes())
                        .map_err(storage)?;
                    end
                }
            };
            logs.push(Arc::new(PartitionLog {
                keyspace,
                v1_from,
                end: Mutex::new(end),
                grown: Condvar::new(),
            }));
        }
        let (tx, rx) = sync_channel(PENDING_APPENDS);
        let failed = Arc::new(Mutex::new(None));
        let syncs = Arc::new(AtomicU64::new(0));
        let log = Arc::new(Self {
            db: db.clone(),
            partitions: logs.clone(),
            offsets,
            writer: Mutex::new(Some(tx)),
            failed: failed.clone(),
            syncs: syncs.clone(),
        });
        std::thread::Builder::new()
            .name("sluice-log-writer".into())
            .spawn(move || write_loop(&db, &logs, &rx, &failed, &syncs))
            .map_err(storage)?;
        Ok(log)
    }

    fn partition(&self, p: Partition) -> Result<&Arc<PartitionLog>, TransportError> {
        self.partitions
            .get(p as usize)
            .ok_or_else(|| TransportError::Storage(format!("no partition {p}")))
    }

    /// Journal syncs (fsyncs) the writer has made.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Acquire)
    }

    /// Stops the writer; later appends fail with [`TransportError::Closed`].
    pub fn close(&self) {
        self.writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

/// The key of partition `p`'s first offset in the versioned record format, in the offsets
/// keyspace. (No group name ends in `/`, so it can't pass for a group's commit.)
fn format_key(p: Partition) -> Vec<u8> {
    let mut key = b"#record-format-1-from/".to_vec();
    key.extend_from_slice(&p.to_be_bytes());
    key
}

fn offset_key(group: &str, p: Partition) -> Vec<u8> {
    let mut key = group.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&p.to_be_bytes());
    key
}

fn decode_offset(bytes: &[u8]) -> Result<Offset, TransportError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| TransportError::Storage("offset is not 8 bytes".into()))?;
    Ok(Offset::from_be_bytes(arr))
}

fn max_committed(offsets: &Keyspace, p: Partition) -> Result<Offset, TransportError> {
    let mut max = 0;
    for kv in offsets.iter() {
        let (key, value) = kv.into_inner().map_err(storage)?;
        if key.ends_with(&p.to_be_bytes()) && key.len() > 4 && key[key.len() - 5] == 0 {
            max = max.max(decode_offset(&value)?);
        }
    }
    Ok(max)
}

/// The writer: takes every pending append, writes them as one batch, syncs once, answers.
fn write_loop(
    db: &Database,
    logs: &[Arc<PartitionLog>],
    rx: &Receiver<Append>,
    failed: &Mutex<Option<String>>,
    syncs: &AtomicU64,
) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while let Ok(more) = rx.try_recv() {
            group.push(more);
        }
        let result = write_group(db, logs, &group, syncs);
        if let Err(error) = &result {
            record_failure(failed, error);
        }
        for (_, reply) in group {
            // The caller may have given up (timeout); its records are durable anyway.
            let _ = reply.send(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| TransportError::Storage(e.to_string())),
            );
        }
    }
}

fn record_failure(failed: &Mutex<Option<String>>, error: &TransportError) {
    let mut failed = failed.lock().unwrap_or_else(PoisonError::into_inner);
    if failed.is_none() {
        tracing::error!(%error, "The embedded log failed; writes are refused until a restart.");
        *failed = Some(error.to_string());
    }
}

fn write_group(
    db: &Database,
    logs: &[Arc<PartitionLog>],
    group: &[Append],
    syncs: &AtomicU64,
) -> Result<(), TransportError> {
    let mut batch = db.batch();
    // Offsets are reserved under the partition locks, published only after the sync.
    let mut ends: Vec<Offset> = logs
        .iter()
        .map(|l| *l.end.lock().unwrap_or_else(PoisonError::into_inner))
        .collect();
    for (records, _) in group {
        for (p, bytes) in records {
            let Some(log) = logs.get(*p as usize) else {
                return Err(TransportError::Storage(format!("no partition {p}")));
            };
            let offset = &mut ends[*p as usize];
            batch.insert(&log.keyspace, offset.to_be_bytes(), bytes.as_slice());
            *offset += 1;
        }
    }
    batch.commit().map_err(storage)?;
    db.persist(PersistMode::SyncData).map_err(storage)?;
    syncs.fetch_add(1, Ordering::AcqRel);
    for (log, end) in logs.iter().zip(ends) {
        let mut current = log.end.lock().unwrap_or_else(PoisonError::into_inner);
        if *current != end {
            *current = end;
            log.grown.notify_all();
        }
    }
    Ok(())
}

impl Transport for EmbeddedLog {
    fn partitions(&self) -> u32 {
        self.partitions.len() as u32
    }

    fn append(&self, records: Vec<(Partition, Record)>) -> Result<(), TransportError> {
        if records.is_empty() {
            return Ok(());
        }
        let records = records
            .into_iter()
            .map(|(p, record)| (p, format::encode_record(&record)))
            .collect::<Vec<_>>();
        let sender = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(TransportError::Closed)?;
        let (reply, answer) = sync_channel(1);
        sender
            .send((records, reply))
            .map_err(|_| TransportError::Closed)?;
        answer.recv().map_err(|_| TransportError::Closed)?
    }

    fn fetch(
        &self,
        partition: Partition,
        from: Offset,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<(Offset, Record)>, TransportError> {
        let log = self.partition(partition)?;
        let deadline = Instant::now() + wait;
        let mut end = log.end.lock().unwrap_or_else(PoisonError::into_inner);
        while *end <= from {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Vec::new());
            }
            end = log
                .grown
                .wait_timeout(end, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let end = *end;
        let mut out = Vec::new();
        for kv in log
            .keyspace
            .range(from.to_be_bytes()..end.to_be_bytes())
            .take(max)
        {
            let (key, value) = kv.into_inner().map_err(storage)?;
            let offset = decode_offset(&key)?;
            let record = if offset < log.v1_from {
                // Written before records had a versioned format of their own.
                postcard::from_bytes(&value).map_err(|e| e.to_string())
            } else {
                format::decode_record(&value).map_err(|e| e.to_string())
            }
            .map_err(|message| TransportError::Corrupt {
                partition,
                offset,
                message,
            })?;
            out.push((offset, record));
        }
        Ok(out)
    }

    fn committed(&self, group: &str, partition: Partition) -> Result<Offset, TransportError> {
        match self
            .offsets
            .get(offset_key(group, partition))
            .map_err(storage)?
        {
            Some(v) => decode_offset(&v),
            None => Ok(0),
        }
    }

    fn commit(
        &self,
        group: &str,
        partition: Partition,
        next: Offset,
    ) -> Result<(), TransportError> {
        let log = self.partition(partition)?;
        let previous = self.committed(group, partition)?;
        let mut batch = self.db.batch();
        batch.insert(
            &self.offsets,
            offset_key(group, partition),
            next.to_be_bytes(),
        );
        // One consumer group per embedded log (the pipeline), so what it has committed is
        // garbage: delete it in the same atomic batch.
        for offset in previous..next {
            batch.remove(&log.keyspace, offset.to_be_bytes());
        }
        // No fsync: a commit lost in a crash only replays records whose points the store
        // already holds, and store writes are idempotent. The next append's sync makes it
        // durable anyway.
        let result = batch.commit().map_err(storage);
        if let Err(error) = &result {
            record_failure(&self.failed, error);
        }
        result
    }

    fn end_offset(&self, partition: Partition) -> Offset {
        self.partitions
            .get(partition as usize)
            .map_or(0, |l| *l.end.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::{Precision, parse};
    use crate::tenant::TenantId;

    fn record(tenant: &str, lp: &str) -> Record {
        Record {
            tenant: TenantId::new(tenant),
            points: parse(lp, Precision::Nanoseconds, 0).0,
        }
    }

    #[test]
    fn appended_records_survive_reopen_and_commits_resume_and_truncate() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let log = EmbeddedLog::open(dir.path(), 2).expect("open");
            log.append(vec![
                (0, record("a", "m v=1 1")),
                (1, record("b", "m v=2 2")),
            ])
            .expect("append");
            log.append(vec![(0, record("a", "m v=3 3"))])
                .expect("append");
            let got = log.fetch(0, 0, 10, Duration::ZERO).expect("fetch");
            assert_eq!(got.len(), 2);
            assert_eq!(got[1].0, 1);
            log.commit("g", 0, 1).expect("commit");
            log.close();
        }
        let log = EmbeddedLog::open(dir.path(), 2).expect("reopen");
        assert_eq!(log.committed("g", 0).expect("committed"), 1);
        let rest = log.fetch(0, 1, 10, Duration::ZERO).expect("fetch");
        assert_eq!(rest, vec![(1, record("a", "m v=3 3"))]);
        assert!(
            log.fetch(0, 0, 10, Duration::ZERO).expect("fetch")[0].0 >= 1,
            "committed records are truncated"
        );
        assert_eq!(log.fetch(1, 0, 10, Duration::ZERO).expect("fetch").len(), 1);
        // Offsets continue after the last record even once everything is truncated.
        log.commit("g", 0, 2).expect("commit all");
        log.close();
        drop(log);
        let log = EmbeddedLog::open(dir.path(), 2).expect("reopen");
        assert_eq!(log.end_offset(0), 2);
    }

    #[test]
    fn an_append_returns_only_after_a_journal_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(dir.path(), 2).expect("open");
        for i in 0..5 {
            let before = log.syncs();
            log.append(vec![(i % 2, record("a", "m v=1 1"))])
                .expect("append");
            assert_eq!(log.syncs(), before + 1, "append {i} was not synced");
        }
        // Nothing to write, nothing to sync.
        log.append(Vec::new()).expect("empty");
        assert_eq!(log.syncs(), 5);
    }

    #[test]
    fn records_of_the_release_before_the_versioned_format_still_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = record("a", "m,h=x v=1.5,s=\"é\" 7");
        {
            // What that release wrote: postcard of the WIT-typed record, no header.
            let db = Database::builder(dir.path()).open().expect("db");
            let p0 = db
                .keyspace("p0", KeyspaceCreateOptions::default)
                .expect("p0");
            let bytes =
                postcard::to_allocvec(&(old.tenant.as_str(), &old.points)).expect("legacy bytes");
            p0.insert(0u64.to_be_bytes(), bytes).expect("insert");
            db.persist(PersistMode::SyncData).expect("persist");
        }
        for _ in 0..2 {
            let log = EmbeddedLog::open(dir.path(), 1).expect("open");
            if log.end_offset(0) == 1 {
                log.append(vec![(0, record("a", "m v=2 8"))])
                    .expect("append");
            }
            let got = log.fetch(0, 0, 10, Duration::ZERO).expect("fetch");
            assert_eq!(got, vec![(0, old.clone()), (1, record("a", "m v=2 8"))]);
            log.close();
        }
    }

    #[test]
    fn another_partition_count_than_on_disk_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let log = EmbeddedLog::open(dir.path(), 4).expect("open");
            log.append(vec![(3, record("a", "m v=1 1"))])
                .expect("append");
            log.close();
        }
        for other in [2, 8] {
            let err = EmbeddedLog::open(dir.path(), other).err().expect("refused");
            assert!(
                err.to_string().contains(&format!(
                    "has 4 partitions, but transport.partitions = {other}"
                )),
                "{err}"
            );
        }
        let log = EmbeddedLog::open(dir.path(), 4).expect("the same count opens");
        assert_eq!(log.fetch(3, 0, 10, Duration::ZERO).expect("fetch").len(), 1);
    }

    #[test]
    fn fetch_waits_for_new_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(dir.path(), 1).expect("open");
        let writer = {
            let log = log.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                log.append(vec![(0, record("a", "m v=1 1"))])
                    .expect("append");
            })
        };
        let got = log.fetch(0, 0, 10, Duration::from_secs(10)).expect("fetch");
        assert_eq!(got.len(), 1);
        writer.join().expect("writer");
    }
}
