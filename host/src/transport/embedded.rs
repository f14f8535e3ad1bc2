//! The single-machine transport: a durable partitioned log on fjall (an LSM storage engine),
//! with group commit.
//!
//! One keyspace per partition maps big-endian offsets to postcard-encoded records; consumer
//! offsets live in their own keyspace. Appends from all request handlers go to one writer
//! thread, which writes everything pending as one batch and syncs the journal once, then
//! acknowledges them all: one fsync per group, not per request. Committed records are
//! deleted: the log has one consumer group, whose one member ([`EmbeddedConsumer`]) owns
//! every partition.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::backlog::Unread;
use super::{
    Backlog, Committer, Delivered, GroupConsumer, Offset, Partition, PartitionReader, Producer,
    Rebalance, Record, TransportError, Undecodable,
};
use crate::format;
use crate::tenant::TenantId;

/// Appends waiting for the writer at most; more block the caller (backpressure).
const PENDING_APPENDS: usize = 1024;

type Reply = SyncSender<Result<(), TransportError>>;

/// An append request for the writer thread: encoded records (with their tenants, for the
/// backlog) and where to answer. Callers encode, so the one writer thread only writes and
/// syncs.
type Append = (Vec<(Partition, TenantId, Vec<u8>)>, Reply);

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
    /// What the pipeline has not read yet, for backpressure.
    unread: Arc<Unread>,
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
                place: dir.display().to_string(),
                found,
                configured: partitions,
            });
        }
        let offsets = db
            .keyspace("offsets", KeyspaceCreateOptions::default)
            .map_err(storage)?;
        let mut logs = Vec::new();
        let mut positions = Vec::new();
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
            positions.push((committed(&offsets, GROUP, p)?, end));
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
        let unread = Arc::new(Unread::new(positions));
        let log = Arc::new(Self {
            db: db.clone(),
            partitions: logs.clone(),
            offsets,
            writer: Mutex::new(Some(tx)),
            failed: failed.clone(),
            syncs: syncs.clone(),
            unread: unread.clone(),
        });
        let written = Written {
            db,
            logs,
            failed,
            syncs,
            unread,
        };
        std::thread::Builder::new()
            .name("sluice-log-writer".into())
            .spawn(move || written.write_loop(&rx))
            .map_err(storage)?;
        Ok(log)
    }

    /// The log's one consumer-group member: it is assigned every partition at its first
    /// poll, and nothing ever moves.
    pub fn consumer(self: &Arc<Self>) -> EmbeddedConsumer {
        EmbeddedConsumer {
            log: self.clone(),
            assigned: false,
        }
    }

    /// A reader of `partition` from the committed offset.
    fn reader(self: &Arc<Self>, partition: Partition) -> Result<EmbeddedReader, TransportError> {
        self.partition(partition)?;
        let committed = committed(&self.offsets, GROUP, partition)?;
        Ok(EmbeddedReader {
            log: self.clone(),
            partition,
            committed,
            position: committed,
            counts: true,
        })
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

    /// Up to `max` records of `partition` from offset `from`, waiting up to `wait` for the
    /// first one.
    fn fetch(
        &self,
        partition: Partition,
        from: Offset,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivered>, TransportError> {
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
            .map_err(|reason| Undecodable {
                partition,
                offset,
                reason,
                bytes: value.to_vec(),
            });
            out.push(Delivered { offset, record });
        }
        Ok(out)
    }

    /// The offset the next appended record of `partition` will get.
    fn end_offset(&self, partition: Partition) -> Result<Offset, TransportError> {
        Ok(*self
            .partition(partition)?
            .end
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }

    /// Commits `next` for `partition` and deletes the records before it, which the one
    /// consumer group has processed.
    fn commit_one(&self, partition: Partition, next: Offset) -> Result<(), TransportError> {
        let log = self.partition(partition)?;
        let previous = committed(&self.offsets, GROUP, partition)?;
        let mut batch = self.db.batch();
        batch.insert(
            &self.offsets,
            offset_key(GROUP, partition),
            next.to_be_bytes(),
        );
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
}

/// The consumer group's name in the offsets keyspace (the log has one group, the
/// pipeline; this is its name in logs written before the seam had groups per member).
const GROUP: &str = "pipeline";

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

fn committed(offsets: &Keyspace, group: &str, p: Partition) -> Result<Offset, TransportError> {
    match offsets.get(offset_key(group, p)).map_err(storage)? {
        Some(v) => decode_offset(&v),
        None => Ok(0),
    }
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

/// What the writer thread writes to, and where it reports.
struct Written {
    db: Database,
    logs: Vec<Arc<PartitionLog>>,
    failed: Arc<Mutex<Option<String>>>,
    syncs: Arc<AtomicU64>,
    unread: Arc<Unread>,
}

impl Written {
    /// The writer: takes every pending append, writes them as one batch, syncs once,
    /// answers.
    fn write_loop(&self, rx: &Receiver<Append>) {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while let Ok(more) = rx.try_recv() {
                group.push(more);
            }
            let result = self.write_group(&group);
            if let Err(error) = &result {
                record_failure(&self.failed, error);
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

    fn write_group(&self, group: &[Append]) -> Result<(), TransportError> {
        let mut batch = self.db.batch();
        // Offsets are reserved under the partition locks, published only after the sync.
        let mut ends: Vec<Offset> = self
            .logs
            .iter()
            .map(|l| *l.end.lock().unwrap_or_else(PoisonError::into_inner))
            .collect();
        let mut placed = Vec::new();
        for (records, _) in group {
            for (p, tenant, bytes) in records {
                let Some(log) = self.logs.get(*p as usize) else {
                    return Err(TransportError::Storage(format!("no partition {p}")));
                };
                let offset = &mut ends[*p as usize];
                batch.insert(&log.keyspace, offset.to_be_bytes(), bytes.as_slice());
                placed.push((*p, tenant, *offset));
                *offset += 1;
            }
        }
        batch.commit().map_err(storage)?;
        self.db.persist(PersistMode::SyncData).map_err(storage)?;
        self.syncs.fetch_add(1, Ordering::AcqRel);
        for (p, tenant, offset) in placed {
            self.unread.appended(p, tenant, offset, offset + 1);
        }
        for (log, end) in self.logs.iter().zip(ends) {
            let mut current = log.end.lock().unwrap_or_else(PoisonError::into_inner);
            if *current != end {
                *current = end;
                log.grown.notify_all();
            }
        }
        Ok(())
    }
}

fn record_failure(failed: &Mutex<Option<String>>, error: &TransportError) {
    let mut failed = failed.lock().unwrap_or_else(PoisonError::into_inner);
    if failed.is_none() {
        tracing::error!(%error, "The embedded log failed; writes are refused until a restart.");
        *failed = Some(error.to_string());
    }
}

impl Producer for EmbeddedLog {
    fn partitions(&self) -> u32 {
        self.partitions.len() as u32
    }

    fn append(&self, records: Vec<(Partition, Record)>) -> Result<(), TransportError> {
        if records.is_empty() {
            return Ok(());
        }
        let records = records
            .into_iter()
            .map(|(p, record)| {
                let bytes = format::encode_record(&record);
                (p, record.tenant, bytes)
            })
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

    /// Appends are durable on return: nothing is ever pending.
    fn flush(&self, _timeout: Duration) -> Result<(), TransportError> {
        Ok(())
    }

    fn close(&self) {
        self.writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    fn backlog(&self, tenant: &TenantId) -> Backlog {
        self.unread.backlog(tenant)
    }

    fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The embedded log's one group member: every partition is its own from the first poll.
pub struct EmbeddedConsumer {
    log: Arc<EmbeddedLog>,
    assigned: bool,
}

impl GroupConsumer for EmbeddedConsumer {
    fn poll(
        &mut self,
        rebalance: &Arc<dyn Rebalance>,
        wait: Duration,
    ) -> Result<(), TransportError> {
        if self.assigned {
            std::thread::sleep(wait);
            return Ok(());
        }
        let readers = (0..self.log.partitions.len() as Partition)
            .map(|p| {
                self.log
                    .reader(p)
                    .map(|r| Box::new(r) as Box<dyn PartitionReader>)
            })
            .collect::<Result<Vec<_>, _>>()?;
        rebalance.assigned(readers);
        self.assigned = true;
        Ok(())
    }

    fn committer(&self) -> Arc<dyn Committer> {
        self.log.clone()
    }
}

impl Committer for EmbeddedLog {
    fn commit(&self, offsets: &[(Partition, Offset)]) -> Result<(), TransportError> {
        offsets
            .iter()
            .try_for_each(|(partition, next)| self.commit_one(*partition, *next))
    }

    fn processed(&self, partition: Partition, tenant: &TenantId, next: Offset) {
        self.unread.processed(partition, tenant, next);
    }
}

/// Reads one partition of the embedded log.
struct EmbeddedReader {
    log: Arc<EmbeddedLog>,
    partition: Partition,
    committed: Offset,
    position: Offset,
    /// Whether reads count as the pipeline's progress (the backlog): the partition's
    /// reader's do, a fork's don't.
    counts: bool,
}

impl PartitionReader for EmbeddedReader {
    fn partition(&self) -> Partition {
        self.partition
    }

    fn committed(&self) -> Offset {
        self.committed
    }

    fn end(&self) -> Result<Offset, TransportError> {
        self.log.end_offset(self.partition)
    }

    fn read(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivered>, TransportError> {
        let records = self.log.fetch(self.partition, self.position, max, wait)?;
        if let Some(last) = records.last() {
            self.position = last.offset + 1;
            if self.counts {
                self.log.unread.read_to(self.partition, self.position);
            }
        }
        Ok(records)
    }

    fn seek(&mut self, offset: Offset) -> Result<(), TransportError> {
        self.position = offset;
        Ok(())
    }

    fn fork(&self, offset: Offset) -> Result<Box<dyn PartitionReader>, TransportError> {
        Ok(Box::new(Self {
            log: self.log.clone(),
            partition: self.partition,
            committed: self.committed,
            position: offset,
            counts: false,
        }))
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

    /// Every decodable record of `partition` from `from`, with its offset.
    fn fetch(log: &EmbeddedLog, partition: Partition, from: Offset) -> Vec<(Offset, Record)> {
        log.fetch(partition, from, 100, Duration::ZERO)
            .expect("fetch")
            .into_iter()
            .map(|d| (d.offset, d.record.expect("decodes")))
            .collect()
    }

    /// What the log's one member is assigned at its first poll.
    #[derive(Default)]
    struct Assigned(Mutex<Vec<Box<dyn PartitionReader>>>);

    impl Rebalance for Assigned {
        fn assigned(&self, readers: Vec<Box<dyn PartitionReader>>) {
            self.0.lock().expect("lock").extend(readers);
        }
        fn revoked(&self, _: &[Partition]) {
            unreachable!("the embedded log never revokes");
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
            let got = fetch(&log, 0, 0);
            assert_eq!(got.len(), 2);
            assert_eq!(got[1].0, 1);
            log.consumer()
                .committer()
                .commit(&[(0, 1)])
                .expect("commit");
            log.close();
        }
        let log = EmbeddedLog::open(dir.path(), 2).expect("reopen");
        let assigned = Arc::new(Assigned::default());
        let rebalance: Arc<dyn Rebalance> = assigned.clone();
        let mut member = log.consumer();
        member.poll(&rebalance, Duration::ZERO).expect("poll");
        let mut readers = std::mem::take(&mut *assigned.0.lock().expect("lock"));
        assert_eq!(readers.len(), 2, "one member owns every partition");
        assert_eq!((readers[0].partition(), readers[0].committed()), (0, 1));
        let rest = readers[0].read(10, Duration::ZERO).expect("read");
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].offset, 1);
        assert_eq!(rest[0].record, Ok(record("a", "m v=3 3")));
        assert!(
            fetch(&log, 0, 0)[0].0 >= 1,
            "committed records are truncated"
        );
        assert_eq!(readers[1].read(10, Duration::ZERO).expect("read").len(), 1);
        // A seek reads again from there.
        readers[1].seek(0).expect("seek");
        assert_eq!(readers[1].read(10, Duration::ZERO).expect("read").len(), 1);
        // Offsets continue after the last record even once everything is truncated.
        member.committer().commit(&[(0, 2)]).expect("commit all");
        log.close();
        drop((readers, member, log));
        let log = EmbeddedLog::open(dir.path(), 2).expect("reopen");
        assert_eq!(log.end_offset(0).expect("end"), 2);
    }

    #[test]
    fn the_backlog_counts_unprocessed_records_per_tenant() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(dir.path(), 2).expect("open");
        log.append(vec![
            (0, record("a", "m v=1 1")),
            (1, record("a", "m v=2 2")),
            (1, record("b", "m v=3 3")),
        ])
        .expect("append");
        let (a, b) = (TenantId::new("a"), TenantId::new("b"));
        assert_eq!(
            log.backlog(&a),
            Backlog {
                partition: 2,
                tenant: Some(2)
            }
        );
        assert_eq!(log.backlog(&b).tenant, Some(1));
        let mut reader = log.reader(1).expect("reader");
        assert_eq!(reader.read(2, Duration::ZERO).expect("read").len(), 2);
        // Read is not processed: the backlog shrinks as each tenant's lane moves on.
        assert_eq!(log.backlog(&a).tenant, Some(2));
        log.processed(1, &a, 1);
        assert_eq!(
            log.backlog(&a),
            Backlog {
                partition: 1,
                tenant: Some(1)
            }
        );
        assert_eq!(log.backlog(&b).tenant, Some(1));
        // A fork reads without moving anything.
        let mut fork = reader.fork(0).expect("fork");
        assert_eq!(fork.read(10, Duration::ZERO).expect("read").len(), 2);
        log.processed(1, &b, 2);
        log.processed(0, &a, 1);
        assert_eq!(log.backlog(&b).tenant, Some(0));
        assert_eq!(
            log.backlog(&a),
            Backlog {
                partition: 1,
                tenant: Some(0)
            },
            "partition 0 is not read yet"
        );
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
            if log.end_offset(0).expect("end") == 1 {
                log.append(vec![(0, record("a", "m v=2 8"))])
                    .expect("append");
            }
            let got = fetch(&log, 0, 0);
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
        assert_eq!(fetch(&log, 3, 0).len(), 1);
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
        let mut reader = log.reader(0).expect("reader");
        let got = reader.read(10, Duration::from_secs(10)).expect("read");
        assert_eq!(got.len(), 1);
        writer.join().expect("writer");
    }
}
