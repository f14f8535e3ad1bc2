//! The transport seam between ingest and the pipeline, shaped like Kafka: partitions of
//! ordered records with offsets, and committed offsets per consumer group.
//!
//! Ingest appends and acknowledges only once [`Transport::append`] returns (durable). The
//! pipeline fetches from its committed offset and commits only after a store sync has made
//! what it wrote durable, so a crash replays at most the uncommitted tail, which idempotent
//! store writes absorb. `embedded` is the single-machine implementation; a Kafka one fits the same trait.

mod embedded;

use std::time::Duration;

pub use embedded::EmbeddedLog;

use crate::point::Point;
use crate::tenant::TenantId;

/// A partition number.
pub type Partition = u32;

/// A position in a partition: the offset of a record, or the next one to read.
pub type Offset = u64;

/// One record: a tenant's points of one partition, as ingest received them. Stored in
/// [`crate::format`]'s versioned form; `Deserialize` reads records of earlier releases.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Record {
    /// Whose points these are.
    pub tenant: TenantId,
    /// The points.
    pub points: Vec<Point>,
}

/// A transport failure.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The storage under the log failed (disk full, I/O error...).
    #[error("transport storage: {0}")]
    Storage(String),
    /// A record could not be decoded: the log is corrupt at this position.
    #[error("transport record {partition}/{offset} is corrupt: {message}")]
    Corrupt {
        /// Partition.
        partition: Partition,
        /// Offset.
        offset: Offset,
        /// Decoder message.
        message: String,
    },
    /// The transport is shutting down.
    #[error("transport is closed")]
    Closed,
    /// The log on disk has another number of partitions than the configuration: series
    /// would be looked for in other partitions than their records are in.
    #[error(
        "the log in {dir} has {found} partitions, but transport.partitions = {configured}: series would move to other partitions than their records are in; set it back to {found} (retrying can't help)"
    )]
    PartitionCount {
        /// The log's directory.
        dir: String,
        /// Partitions on disk.
        found: u32,
        /// Partitions configured.
        configured: u32,
    },
}

/// A durable, partitioned log.
pub trait Transport: Send + Sync + 'static {
    /// Number of partitions.
    fn partitions(&self) -> u32;

    /// Appends records to their partitions; returns once all are durable.
    ///
    /// # Errors
    /// When the records could not be made durable: nothing may be acknowledged.
    fn append(&self, records: Vec<(Partition, Record)>) -> Result<(), TransportError>;

    /// Up to `max` records of `partition` from offset `from`, waiting up to `wait` for the
    /// first one.
    ///
    /// # Errors
    /// On storage failure or a corrupt record.
    fn fetch(
        &self,
        partition: Partition,
        from: Offset,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<(Offset, Record)>, TransportError>;

    /// The next offset `group` has to read in `partition` (0 if it never committed).
    ///
    /// # Errors
    /// On storage failure.
    fn committed(&self, group: &str, partition: Partition) -> Result<Offset, TransportError>;

    /// Records that `group` has processed everything of `partition` before `next`. Need not
    /// be durable at once: a lost commit only replays records, which the idempotent store
    /// absorbs.
    ///
    /// # Errors
    /// On storage failure.
    fn commit(&self, group: &str, partition: Partition, next: Offset)
    -> Result<(), TransportError>;

    /// The offset the next appended record of `partition` will get.
    fn end_offset(&self, partition: Partition) -> Offset;

    /// Why the transport can't work until the process restarts (its storage failed, say
    /// on a full disk), or none while it is healthy.
    fn failure(&self) -> Option<String>;
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

/// Splits a tenant's batch into one record per partition.
pub fn records_for(
    tenant: &TenantId,
    points: Vec<Point>,
    partitions: u32,
) -> Vec<(Partition, Record)> {
    let mut by_partition: std::collections::BTreeMap<Partition, Vec<Point>> = Default::default();
    for point in points {
        by_partition
            .entry(partition_for(tenant, &point, partitions))
            .or_default()
            .push(point);
    }
    by_partition
        .into_iter()
        .map(|(p, points)| {
            (
                p,
                Record {
                    tenant: tenant.clone(),
                    points,
                },
            )
        })
        .collect()
}
