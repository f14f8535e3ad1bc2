//! The single-machine transport: a durable partitioned log in segment files
//! ([`super::segments`]), with group commit.
//!
//! Appends from all request handlers go to one writer thread, which writes everything
//! pending as one write to the active segment and syncs it once, then acknowledges them
//! all: one fsync per group, not per request. Processed records give their disk back by
//! whole segments once committed: the log has one consumer group, whose one member
//! ([`EmbeddedConsumer`]) owns every partition. Its readers take the records just written
//! from the [`Tail`] as they were given, and read the files for the rest. Logs of the
//! releases that kept the log in fjall are moved into segments when first opened.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::backlog::Unread;
use super::segments::Segments;
use super::tail::{TAIL_BYTES, Tail};
use super::{
    Backlog, Committer, Delivered, GroupConsumer, Offset, Partition, PartitionReader, Producer,
    Rebalance, Record, TransportError, Undecodable,
};
use crate::format;
use crate::tenant::TenantId;

/// Appends waiting for the writer at most; more block the caller (backpressure).
const PENDING_APPENDS: usize = 1024;

/// After this long without appends the writer deletes a fully processed active segment:
/// an idle log takes no disk.
const IDLE: Duration = Duration::from_secs(1);

type Reply = SyncSender<Result<(), TransportError>>;

/// An append request for the writer thread: records with their encodings, and where to
/// answer. Callers encode, so the one writer thread only writes and syncs (and puts the
/// records in the tail).
type Append = (Vec<(Partition, Record, Vec<u8>)>, Reply);

/// A partition's next offset, and a signal for fetchers waiting on new records.
struct PartitionEnd {
    end: Mutex<Offset>,
    grown: Condvar,
}

/// A durable partitioned log in a directory.
pub struct EmbeddedLog {
    segments: Arc<Segments>,
    tail: Arc<Tail>,
    partitions: Vec<Arc<PartitionEnd>>,
    writer: Mutex<Option<SyncSender<Append>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The first storage failure: the log refuses every append after one (what a failed
    /// write or fsync left on disk is unknown until a reopen cuts the torn end off).
    failed: Arc<Mutex<Option<String>>>,
    /// Segment syncs so far: what a test counts to prove appends are durable on return.
    syncs: Arc<AtomicU64>,
    /// What the pipeline has not read yet, for backpressure.
    unread: Arc<Unread>,
}

impl EmbeddedLog {
    /// Opens (creating or recovering) the log in `dir` with `partitions` partitions.
    ///
    /// # Errors
    /// When the directory can't be opened, or holds a log with another number of
    /// partitions ([`TransportError::PartitionCount`]).
    pub fn open(dir: &Path, partitions: u32) -> Result<Arc<Self>, TransportError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| TransportError::Storage(format!("creating {}: {e}", dir.display())))?;
        super::fjall_log::migrate(dir, partitions)?;
        let segments = Arc::new(Segments::open(dir, partitions)?);
        let positions = segments.positions();
        let ends: Vec<Arc<PartitionEnd>> = positions
            .iter()
            .map(|(_, end)| {
                Arc::new(PartitionEnd {
                    end: Mutex::new(*end),
                    grown: Condvar::new(),
                })
            })
            .collect();
        let (tx, rx) = sync_channel(PENDING_APPENDS);
        let failed = Arc::new(Mutex::new(None));
        let syncs = Arc::new(AtomicU64::new(0));
        let unread = Arc::new(Unread::new(positions));
        let tail = Arc::new(Tail::new(partitions, TAIL_BYTES));
        let written = Written {
            segments: segments.clone(),
            tail: tail.clone(),
            ends: ends.clone(),
            failed: failed.clone(),
            syncs: syncs.clone(),
            unread: unread.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("sluice-log-writer".into())
            .spawn(move || written.write_loop(&rx))
            .map_err(|e| TransportError::Storage(format!("starting the log writer: {e}")))?;
        Ok(Arc::new(Self {
            segments,
            tail,
            partitions: ends,
            writer: Mutex::new(Some(tx)),
            writer_thread: Mutex::new(Some(thread)),
            failed,
            syncs,
            unread,
        }))
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
        let committed = self
            .segments
            .positions()
            .get(partition as usize)
            .map_or(0, |(committed, _)| *committed);
        Ok(EmbeddedReader {
            log: self.clone(),
            partition,
            committed,
            position: committed,
            counts: true,
        })
    }

    fn partition(&self, p: Partition) -> Result<&Arc<PartitionEnd>, TransportError> {
        self.partitions
            .get(p as usize)
            .ok_or_else(|| TransportError::Storage(format!("no partition {p}")))
    }

    /// Segment syncs (fsyncs) the writer has made.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Acquire)
    }

    /// Up to `max` records of `partition` from offset `from`, waiting up to `wait` for the
    /// first one; those the tail holds from there on are taken from it when `from_tail`.
    fn fetch(
        &self,
        partition: Partition,
        from: Offset,
        max: usize,
        wait: Duration,
        from_tail: bool,
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
        let mut delivered: Vec<Delivered> = if from_tail {
            self.tail.take(partition, from, end, max)
        } else {
            Vec::new()
        }
        .into_iter()
        .map(|(offset, record)| Delivered {
            offset,
            record: Ok(record),
        })
        .collect();
        let from = delivered.last().map_or(from, |d| d.offset + 1);
        if delivered.len() == max || from >= end {
            return Ok(delivered);
        }
        let payloads = self
            .segments
            .read(partition, from, end, max - delivered.len())?;
        delivered.extend(payloads.into_iter().map(|(offset, bytes)| Delivered {
            offset,
            record: format::decode_record(&bytes).map_err(|e| Undecodable {
                partition,
                offset,
                reason: e.to_string(),
                bytes,
            }),
        }));
        Ok(delivered)
    }

    /// The offset the next appended record of `partition` will get.
    fn end_offset(&self, partition: Partition) -> Result<Offset, TransportError> {
        Ok(*self
            .partition(partition)?
            .end
            .lock()
            .unwrap_or_else(PoisonError::into_inner))
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// What the writer thread writes to, and where it reports.
struct Written {
    segments: Arc<Segments>,
    tail: Arc<Tail>,
    ends: Vec<Arc<PartitionEnd>>,
    failed: Arc<Mutex<Option<String>>>,
    syncs: Arc<AtomicU64>,
    unread: Arc<Unread>,
}

impl Written {
    /// The writer: takes every pending append, writes them as one batch, syncs once,
    /// answers; when idle, gives back the disk of a processed active segment.
    fn write_loop(&self, rx: &Receiver<Append>) {
        loop {
            let first = match rx.recv_timeout(IDLE) {
                Ok(first) => first,
                // Idle, or closing: a processed active segment goes.
                Err(idle) => {
                    if let Err(error) = self.segments.reclaim_idle() {
                        record_failure(&self.failed, &error);
                    }
                    if idle == RecvTimeoutError::Disconnected {
                        return;
                    }
                    continue;
                }
            };
            let mut group = vec![first];
            while let Ok(more) = rx.try_recv() {
                group.push(more);
            }
            let result = self.write_group(&mut group);
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

    fn write_group(&self, group: &mut [Append]) -> Result<(), TransportError> {
        if let Some(failure) = self
            .failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Err(TransportError::Storage(format!(
                "the log failed earlier ({failure}); it takes appends again after a restart"
            )));
        }
        // Offsets are reserved here (the one writer), published only after the sync.
        let mut ends: Vec<Offset> = self
            .ends
            .iter()
            .map(|l| *l.end.lock().unwrap_or_else(PoisonError::into_inner))
            .collect();
        let mut frames: Vec<(Partition, Offset, &[u8])> = Vec::new();
        for (records, _) in group.iter() {
            for (p, _, bytes) in records {
                let Some(offset) = ends.get_mut(*p as usize) else {
                    return Err(TransportError::Storage(format!("no partition {p}")));
                };
                frames.push((*p, *offset, bytes.as_slice()));
                *offset += 1;
            }
        }
        let offsets: Vec<Offset> = frames.iter().map(|(_, offset, _)| *offset).collect();
        self.segments.append(&frames)?;
        self.syncs.fetch_add(1, Ordering::AcqRel);
        // Durable: into the tail before the new ends are published, so a reader that sees
        // them finds the records there.
        let records = group.iter_mut().flat_map(|(records, _)| records.drain(..));
        for ((p, record, _), offset) in records.zip(offsets) {
            self.unread.appended(p, &record.tenant, offset, offset + 1);
            self.tail.keep(p, offset, record);
        }
        for (log, end) in self.ends.iter().zip(ends) {
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
            .map(|(p, mut record)| {
                let bytes = format::encode_record(&mut record);
                (p, record, bytes)
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

    /// Appends pending are written first; returns once the writer has stopped (and the
    /// log's files are closed: another open of the directory may follow at once).
    fn close(&self) {
        self.writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let thread = self
            .writer_thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            // A panic there was reported by the panic hook already.
            let _ = thread.join();
        }
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
    /// The segments every partition has committed past are deleted (the offsets made
    /// durable first); a commit is durable within seconds otherwise (see
    /// [`Segments::commit`]): after a crash, the records since are processed again.
    fn commit(&self, offsets: &[(Partition, Offset)]) -> Result<(), TransportError> {
        let result = self.segments.commit(offsets);
        if let Err(error) = &result {
            record_failure(&self.failed, error);
        }
        result
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
        // Only the partition's own reader takes from the tail: a fork reads elsewhere.
        let records = self
            .log
            .fetch(self.partition, self.position, max, wait, self.counts)?;
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
        Record::new(
            TenantId::new(tenant),
            parse(lp, Precision::Nanoseconds, 0).0,
        )
    }

    /// Every decodable record of `partition` from `from`, with its offset.
    fn fetch(log: &EmbeddedLog, partition: Partition, from: Offset) -> Vec<(Offset, Record)> {
        log.fetch(partition, from, 100, Duration::ZERO, false)
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
    fn the_reader_takes_fresh_records_from_the_tail_and_the_rest_from_the_files_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(dir.path(), 1).expect("open");
        let big = |i: usize| {
            let lines: String = (0..1000).map(|k| format!("m,k=é{i} v={k} {k}\n")).collect();
            record("a", &lines)
        };
        // Five records more than the tail holds: those are in the files only.
        let mut made = big(0);
        crate::format::encode_record(&mut made);
        let each = made.points.bytes();
        let n = TAIL_BYTES / each + 5;
        for i in 0..n {
            log.append(vec![(0, big(i))]).expect("append");
        }
        let full = log.tail.bytes();
        assert!(
            full + each > TAIL_BYTES && full <= TAIL_BYTES,
            "the tail is full"
        );
        let read_all = |reader: &mut dyn PartitionReader| {
            let mut all = Vec::new();
            loop {
                let batch = reader.read(7, Duration::ZERO).expect("read");
                if batch.is_empty() {
                    return all;
                }
                all.extend(
                    batch
                        .into_iter()
                        .map(|d| (d.offset, d.record.expect("decodes"))),
                );
            }
        };
        let mut reader = log.reader(0).expect("reader");
        // A fork reads the files, and leaves the tail to the reader.
        let from_files = read_all(&mut *reader.fork(0).expect("fork"));
        assert_eq!(log.tail.bytes(), full);
        let got = read_all(&mut reader);
        assert_eq!(log.tail.bytes(), 0, "the reader took the tail");
        let expected: Vec<(Offset, Record)> = (0..n).map(|i| (i as Offset, big(i))).collect();
        assert!(got == expected, "in order, each record as appended");
        assert!(from_files == expected, "the files hold the same");
        // From the tail and from the files alike, a record comes with its points' columns,
        // for its plugin stages to read.
        for (offset, record) in got.iter().chain(&from_files) {
            let columns = record.points.columns().expect("columns");
            let appended = big(*offset as usize);
            assert_eq!(columns.to_points().ok().as_deref(), appended.points.made());
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
    fn a_caught_up_idle_log_gives_its_disk_back_and_offsets_go_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(dir.path(), 2).expect("open");
        for i in 0..10 {
            log.append(vec![(i % 2, record("a", "m v=1 1"))])
                .expect("append");
        }
        let segment_files = || {
            std::fs::read_dir(dir.path().join("segments"))
                .expect("segments")
                .count()
        };
        assert_eq!(segment_files(), 1);
        log.commit(&[(0, 5), (1, 5)]).expect("commit");
        // Idle for a second: the writer deletes the processed active segment.
        let deadline = Instant::now() + Duration::from_secs(10);
        while segment_files() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(segment_files(), 0, "no segment file left");
        log.append(vec![(1, record("a", "m v=2 2"))])
            .expect("append");
        assert_eq!(fetch(&log, 1, 0), vec![(5, record("a", "m v=2 2"))]);
        log.close();
        drop(log);
        let log = EmbeddedLog::open(dir.path(), 2).expect("reopen");
        assert_eq!(log.end_offset(0).expect("end"), 5);
        assert_eq!(log.end_offset(1).expect("end"), 6);
    }

    #[test]
    fn after_a_failed_append_the_log_refuses_appends_until_reopened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(dir.path(), 1).expect("open");
        log.append(vec![(0, record("a", "m v=1 1"))])
            .expect("append");
        record_failure(&log.failed, &TransportError::Storage("disk full".into()));
        let err = log
            .append(vec![(0, record("a", "m v=2 2"))])
            .expect_err("refused");
        assert!(err.to_string().contains("after a restart"), "{err}");
        assert_eq!(
            log.failure().as_deref(),
            Some("transport storage: disk full")
        );
        log.close();
        drop(log);
        let log = EmbeddedLog::open(dir.path(), 1).expect("reopen");
        log.append(vec![(0, record("a", "m v=3 3"))])
            .expect("append");
        assert_eq!(fetch(&log, 0, 0).len(), 2);
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
