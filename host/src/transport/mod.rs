//! The transport seam between ingest and the pipeline, shaped like Kafka: partitions of
//! ordered records with offsets, a producer that appends, and a consumer group whose
//! members are assigned partitions, read them and commit how far they got.
//!
//! Ingest acknowledges only once [`Producer::append`] returns (durable). A pipeline member
//! ([`GroupConsumer`]) is told which partitions are its own ([`Rebalance::assigned`], with a
//! [`PartitionReader`] each) and which it must give up ([`Rebalance::revoked`], which
//! returns only once their state is checkpointed and their offsets committed). Offsets are
//! committed only after a store sync has made what they cover durable, so a crash or a
//! partition moving to another member replays at most the uncommitted tail, which
//! idempotent store writes absorb. `embedded` is the single-machine log (one member owning
//! every partition); `kafka` the scale-out one.

mod backlog;
mod embedded;
mod fjall_log;
pub mod kafka;
mod segments;
mod tail;

use std::sync::Arc;
use std::time::Duration;

pub use backlog::Backlog;
pub use embedded::{EmbeddedConsumer, EmbeddedLog};

use crate::columns::{Columns, Points};
use crate::point::{Point, Samples, continues};
use crate::tenant::TenantId;

/// A partition number.
pub type Partition = u32;

/// A position in a partition: the offset of a record, or the next one to read.
pub type Offset = u64;

/// One record: a tenant's points of one partition, as ingest received them. Stored in
/// [`crate::format`]'s versioned form.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Whose points these are.
    pub tenant: TenantId,
    /// The points, with their columns once made: encoding the record for the log makes
    /// them, reading a record of format 2 or 3 has them, and a plugin stage borrows them
    /// instead of encoding the points again. Remote write's records are made in columns
    /// only.
    pub points: Points,
}

impl Record {
    /// `tenant`'s `points`, their columns not made yet.
    pub fn new(tenant: TenantId, points: Vec<Point>) -> Self {
        Self {
            tenant,
            points: points.into(),
        }
    }
}

/// A record as read: it decoded, or it didn't (a foreign producer, a corrupt log), and
/// then the pipeline keeps its bytes as a dead letter with the reason and goes on.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    /// Its offset.
    pub offset: Offset,
    /// The record, or why it is not one.
    pub record: Result<Record, Undecodable>,
}

/// Bytes on a partition that are not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {partition}/{offset} does not decode: {reason}")]
pub struct Undecodable {
    /// Partition.
    pub partition: Partition,
    /// Offset.
    pub offset: Offset,
    /// The decoder's message.
    pub reason: String,
    /// The bytes, as found.
    pub bytes: Vec<u8>,
}

/// A transport failure.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The storage under the log failed (disk full, I/O error...).
    #[error("transport storage: {0}")]
    Storage(String),
    /// The broker can't be reached or refused the request; retrying may help once it is
    /// back.
    #[error("transport broker: {0} (retrying may help)")]
    Broker(String),
    /// The transport is shutting down.
    #[error("transport is closed")]
    Closed,
    /// The log has another number of partitions than the configuration: series would be
    /// looked for in other partitions than their records are in.
    #[error(
        "the log in {place} has {found} partitions, but transport.partitions = {configured}: series would move to other partitions than their records are in; set it back to {found} (retrying can't help)"
    )]
    PartitionCount {
        /// The log's directory or topic.
        place: String,
        /// Partitions found.
        found: u32,
        /// Partitions configured.
        configured: u32,
    },
}

/// The producing side: what ingest appends to.
pub trait Producer: Send + Sync + 'static {
    /// Number of partitions.
    fn partitions(&self) -> u32;

    /// Appends records to their partitions; returns once all are durable.
    ///
    /// # Errors
    /// When the records could not be made durable: nothing may be acknowledged.
    fn append(&self, records: Vec<(Partition, Record)>) -> Result<(), TransportError>;

    /// Waits up to `timeout` until everything appended so far is durable.
    ///
    /// # Errors
    /// When something could not be made durable in time.
    fn flush(&self, timeout: Duration) -> Result<(), TransportError>;

    /// Stops taking appends; later ones fail with [`TransportError::Closed`].
    fn close(&self);

    /// How far the pipeline is behind `tenant`'s appends, for backpressure.
    fn backlog(&self, tenant: &TenantId) -> Backlog;

    /// Why the transport can't work until the process restarts (its storage failed, say
    /// on a full disk), or none while it is healthy or may recover by itself.
    fn failure(&self) -> Option<String>;

    /// What troubles the transport now that may pass by itself (brokers unreachable, say;
    /// writes get 503 meanwhile), or none. The embedded log has no such state.
    fn trouble(&self) -> Option<String> {
        None
    }
}

/// One member of the pipeline's consumer group.
pub trait GroupConsumer: Send {
    /// Waits up to `wait` for changes of this member's partitions and tells `rebalance`
    /// about them, on this thread.
    ///
    /// # Errors
    /// When the group can't be reached; polling again retries.
    fn poll(
        &mut self,
        rebalance: &Arc<dyn Rebalance>,
        wait: Duration,
    ) -> Result<(), TransportError>;

    /// Where offsets are committed from (any thread).
    fn committer(&self) -> Arc<dyn Committer>;
}

/// What a group member does when its partitions change.
pub trait Rebalance: Send + Sync {
    /// These partitions are now the member's, each with a reader at the group's
    /// committed offset.
    fn assigned(&self, readers: Vec<Box<dyn PartitionReader>>);

    /// These partitions are no longer the member's. Returns once their work is
    /// checkpointed and committed: the next member resumes exactly there.
    fn revoked(&self, partitions: &[Partition]);
}

/// Commits how far the group got.
pub trait Committer: Send + Sync {
    /// Records that the group has processed everything of each partition before its
    /// offset. A lost commit only replays records, which the idempotent store absorbs.
    ///
    /// # Errors
    /// When the commit could not be made; the next one carries it.
    fn commit(&self, offsets: &[(Partition, Offset)]) -> Result<(), TransportError>;

    /// The pipeline has processed `tenant`'s records of `partition` before `next` (not yet
    /// durably): what a transport that counts each tenant's backlog counts down.
    fn processed(&self, _partition: Partition, _tenant: &TenantId, _next: Offset) {}
}

/// Reads one assigned partition in order.
pub trait PartitionReader: Send {
    /// The partition.
    fn partition(&self) -> Partition;

    /// The group's committed offset when the partition was assigned: where reading
    /// starts, and the first record the transport is sure to hold.
    fn committed(&self) -> Offset;

    /// The offset the next appended record will get, as of now.
    ///
    /// # Errors
    /// When the transport can't tell.
    fn end(&self) -> Result<Offset, TransportError>;

    /// Up to `max` records from the reader's position on, waiting up to `wait` for the
    /// first one.
    ///
    /// # Errors
    /// When the partition can't be read; reading again retries.
    fn read(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivered>, TransportError>;

    /// Moves the position to `offset`: the next read starts there.
    ///
    /// # Errors
    /// When the transport refuses the position.
    fn seek(&mut self, offset: Offset) -> Result<(), TransportError>;

    /// A second reader of the same partition, at `offset`, that reads independently of
    /// this one (and moves no backlog or group position): for one tenant's lane to read its
    /// records again after a rewind while the partition's reader goes on.
    ///
    /// # Errors
    /// When the transport can't open another reader (retrying may help).
    fn fork(&self, offset: Offset) -> Result<Box<dyn PartitionReader>, TransportError>;
}

/// Where a pipeline output goes besides the store, for consumers outside Sluice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outlet {
    /// Alerts that fired or resolved.
    Alerts,
    /// Points that arrived after their windows closed.
    Late,
    /// What the pipeline could not process, with the reason.
    DeadLetters,
}

/// The pipeline's outputs besides the store, published where other systems read them:
/// Kafka topics (`{prefix}alerts`, `{prefix}late`, `{prefix}dead-letters`). Messages are
/// JSON, keyed by tenant. The embedded log has no outbox: its outputs are in the store
/// and the dead-letter file. A replay after a crash may publish a message again.
pub trait Outbox: Send + Sync {
    /// Publishes `messages` (key, JSON) to `outlet`; returns once they are durable.
    ///
    /// # Errors
    /// When the brokers don't confirm them; retrying may help.
    fn publish(&self, outlet: Outlet, messages: &[(&[u8], &[u8])]) -> Result<(), TransportError>;
}

/// The saved state of a partition's windows (and what else is scoped to it), as of the
/// record before `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// The first record the state does not reflect.
    pub next: Offset,
    /// The state, in its own versioned format ([`crate::format::Checkpoint`]).
    pub bytes: Vec<u8>,
}

/// Where partitions' states are kept, so that whichever member is assigned a partition
/// next resumes its windows there: the embedded store, or a changelog topic (Kafka).
///
/// The checkpoint saves a state only after a store sync made durable everything it
/// reflects (the rows its windows emitted), and commits the offsets that rely on it only
/// after the save: a crash anywhere between leaves a state no newer than the store, and
/// the records it needs still in the transport.
pub trait StateLog: Send + Sync {
    /// Keeps each state as its partition's latest; durable on return.
    ///
    /// # Errors
    /// When they can't be kept; the next checkpoint tries again.
    fn save(&self, states: &[(Partition, PartitionState)]) -> Result<(), TransportError>;

    /// `partition`'s latest durable state, if any.
    ///
    /// # Errors
    /// When the states can't be read.
    fn load(&self, partition: Partition) -> Result<Option<PartitionState>, TransportError>;
}

/// The partition of a series of a tenant: stable across restarts and processes, so one
/// series is always processed in order by one consumer.
pub fn partition_for(tenant: &TenantId, point: &Point, partitions: u32) -> Partition {
    // FNV-1a, written out because the assignment must never change between releases (std's
    // hashers don't promise that) and it is five lines.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes.iter().chain(&[0xff]) {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(tenant.as_str().as_bytes());
    eat(point.measurement.as_bytes());
    for tag in &point.tags {
        eat(tag.key.as_bytes());
        eat(tag.value.as_bytes());
    }
    (h % u64::from(partitions.max(1))) as Partition
}

/// Splits a tenant's batch into one record per partition, each with its columns made.
pub fn records_for(
    tenant: &TenantId,
    points: Vec<Point>,
    partitions: u32,
) -> Vec<(Partition, Record)> {
    // A point of the series before it goes where that one went: hashing byte by byte was
    // 7% of remote-write ingest, whose series come as runs of samples.
    let mut each: Vec<Partition> = Vec::with_capacity(points.len());
    for (i, point) in points.iter().enumerate() {
        let partition = match each.last() {
            Some(&p) if continues(&points, i, Point::same_series) => p,
            _ => partition_for(tenant, point, partitions),
        };
        each.push(partition);
    }
    // Each partition's points sized first (`partition_for` is below `partitions`): grown
    // point by point, their copies were 1.6% of remote-write ingest (perf, the bench's
    // remote-write round).
    let mut sizes = vec![0usize; partitions.max(1) as usize];
    for &p in &each {
        sizes[p as usize] += 1;
    }
    let mut by_partition: Vec<Vec<Point>> = sizes.iter().map(|&n| Vec::with_capacity(n)).collect();
    for (point, p) in points.into_iter().zip(each) {
        by_partition[p as usize].push(point);
    }
    (0..)
        .zip(by_partition)
        .filter(|(_, points)| !points.is_empty())
        .map(|(p, points)| {
            let columns = Columns::from_points(&points);
            let points = Points::new(points, Some(columns));
            let tenant = tenant.clone();
            (p, Record { tenant, points })
        })
        .collect()
}

/// Splits a tenant's `samples` of `series` (remote write's: a point per series) into one
/// record per partition, each series' samples in its series' partition, in columns only.
pub fn records_of_samples(
    tenant: &TenantId,
    series: &[Point],
    samples: &Samples,
    partitions: u32,
) -> Vec<(Partition, Record)> {
    let mut by_partition = vec![Vec::new(); partitions.max(1) as usize];
    for (s, point) in series.iter().enumerate() {
        if !samples.of(s).is_empty() {
            by_partition[partition_for(tenant, point, partitions) as usize].push(s);
        }
    }
    (0..)
        .zip(by_partition)
        .filter(|(_, which)| !which.is_empty())
        .map(|(p, which)| {
            let columns = Columns::from_samples(series, samples, &which);
            let points = Points::in_columns(columns);
            let tenant = tenant.clone();
            (p, Record { tenant, points })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::{Precision, parse};

    #[test]
    fn samples_go_in_columns_only_to_their_series_partition_as_the_points_they_are() {
        let tenant = TenantId::new("t");
        let lines: String = (0..40)
            .map(|i| format!("m,host=h{i} value=0 0\n"))
            .collect();
        let series = parse(&lines, Precision::Nanoseconds, 0).0;
        let mut samples = Samples::default();
        for s in 0..40i64 {
            samples.start_series();
            for k in 0..s % 4 {
                samples.push(k * 10 + s, (s * k) as f64);
            }
        }
        let points = samples.points(&series);
        let records = records_of_samples(&tenant, &series, &samples, 8);
        assert!(records.len() > 1, "the series spread over partitions");
        let mut seen = 0;
        for (partition, mut record) in records {
            assert!(record.points.made().is_none(), "not made");
            // The log's format writes them as it writes made points.
            let bytes = crate::format::encode_record(&mut record);
            assert_eq!(
                crate::format::decode_record(&bytes).expect("decodes"),
                record
            );
            let made = record.points.into_made().expect("they make").0;
            let given: Vec<&Point> = points
                .iter()
                .filter(|p| partition_for(&tenant, p, 8) == partition)
                .collect();
            assert_eq!(made.iter().collect::<Vec<_>>(), given);
            seen += made.len();
        }
        assert_eq!(seen, 60, "every sample once");
    }

    #[test]
    fn each_point_goes_to_its_series_partition_with_its_columns() {
        let tenant = TenantId::new("t");
        let lines: String = (0..200)
            .map(|i| format!("m,host=h{} v={i} {i}\n", (i / 3) % 17))
            .collect();
        let points = parse(&lines, Precision::Nanoseconds, 0).0;
        assert_eq!(points.len(), 200);
        // Runs of three points of one series.
        let records = records_for(&tenant, points.clone(), 8);
        for (_, record) in &records {
            let columns = Columns::from_points(record.points.made().expect("made"));
            assert_eq!(record.points.columns(), Some(&columns));
        }
        assert!(
            records.len() > 1,
            "the bench's series spread over partitions"
        );
        let mut seen = 0;
        for (partition, record) in &records {
            for point in record.points.made().expect("made") {
                assert_eq!(partition_for(&tenant, point, 8), *partition);
            }
            seen += record.points.len();
        }
        // Every point once, each partition's in the order given.
        assert_eq!(seen, points.len());
        for (partition, record) in records {
            let given: Vec<&Point> = points
                .iter()
                .filter(|p| partition_for(&tenant, p, 8) == partition)
                .collect();
            let made = record.points.made().expect("made");
            assert_eq!(made.iter().collect::<Vec<_>>(), given);
        }
    }
}
