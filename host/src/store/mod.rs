//! The store seam: raw points by series, laid out for time-range scans, written
//! idempotently (a point is identified by its tenant, series, field and timestamp, so
//! writing it again changes nothing). Each write says how far into its transport partition
//! it reaches ([`Through`]), and a sync makes that durable with the points, so a restart
//! resumes exactly after what the store holds. Each write also carries how long its rows
//! are kept ([`Retention`], per tenant and per rollup tier): ScyllaDB turns it into a TTL,
//! the embedded store remembers it for its expiry pass. Reads and listings come in pages,
//! their limits applied while reading. Rollup tiers, late data and alerts sit beside the
//! raw points, made durable by the same syncs.
//!
//! `embedded` is the single-machine implementation (fjall); `scylla` the scale-out one.
//! The trait is synchronous: its callers are pipeline worker threads and blocking tasks
//! of the API, never async tasks. The ScyllaDB store bridges to its async driver on a
//! runtime of its own (see [`ScyllaStore`]).

pub mod chunk;
mod compaction;
#[cfg(test)]
pub(crate) mod conformance;
mod embedded;
mod head;
mod journal;
mod keys;
mod packed;
mod scylla;

use std::ops::Range;
use std::time::Duration;

pub use self::scylla::ScyllaStore;
pub use embedded::EmbeddedStore;

use crate::aggregate::Values;
use crate::columns::Points;
use crate::point::{Alert, FieldType, FieldValue, Nanos, Point, Tag};
use crate::tenant::TenantId;
use crate::transport::{Offset, Partition};

/// How far into a transport partition a write reaches: its points come from records before
/// `next`, of one tenant (its lane, which runs ahead of the partition on its own) or of
/// every tenant. A sync makes these durable with the points, so a restart resumes each
/// partition, and each lane ahead of it, exactly after what the store holds: nothing
/// replayed is stored twice, even below the read path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Through {
    /// The partition.
    pub partition: Partition,
    /// Whose records: one tenant's, or (none) every tenant's.
    pub lane: Option<TenantId>,
    /// The next record to process.
    pub next: Offset,
}

impl Through {
    /// Every tenant's records of `partition` before `next`.
    pub fn partition(partition: Partition, next: Offset) -> Self {
        Self {
            partition,
            lane: None,
            next,
        }
    }
}

/// How far the points a store holds reach, by partition and lane. Offsets only grow, and
/// a lane's is kept only while it is ahead of its partition's: behind it, it says nothing
/// more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Reach(std::collections::BTreeMap<(Partition, Option<TenantId>), Offset>);

impl Reach {
    /// Notes `through`.
    pub(crate) fn note(&mut self, through: &Through) {
        let at = self
            .0
            .entry((through.partition, through.lane.clone()))
            .or_default();
        *at = (*at).max(through.next);
    }

    /// Notes everything `other` holds.
    pub(crate) fn absorb(&mut self, other: &Reach) {
        for through in other.iter() {
            self.note(&through);
        }
    }

    /// Drops the lanes no longer ahead of their partition; returns them.
    pub(crate) fn settle(&mut self) -> Vec<(Partition, TenantId)> {
        let partitions: std::collections::HashMap<Partition, Offset> = self
            .0
            .iter()
            .filter(|((_, lane), _)| lane.is_none())
            .map(|((p, _), next)| (*p, *next))
            .collect();
        let mut dropped = Vec::new();
        self.0.retain(|(p, lane), next| {
            let Some(tenant) = lane else { return true };
            let ahead = partitions.get(p).is_none_or(|all| *next > *all);
            if !ahead {
                dropped.push((*p, tenant.clone()));
            }
            ahead
        });
        dropped
    }

    /// The offset noted for `through`'s partition and lane.
    pub(crate) fn get(&self, through: &Through) -> Option<Offset> {
        self.0
            .get(&(through.partition, through.lane.clone()))
            .copied()
    }

    /// Whether nothing is noted.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What is noted, by partition (every tenant first) and lane.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Through> + '_ {
        self.0.iter().map(|((partition, lane), next)| Through {
            partition: *partition,
            lane: lane.clone(),
            next: *next,
        })
    }
}

/// How long stored rows are kept, counted from their own time (a point's timestamp, a
/// window's start): forever, or a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retention {
    /// Never expires.
    #[default]
    Forever,
    /// Expires this long after its time.
    For(Duration),
}

impl Retention {
    /// The time before which rows are past retention at `now`; none when kept forever.
    pub fn cutoff(self, now: Nanos) -> Option<Nanos> {
        match self {
            Retention::Forever => None,
            Retention::For(keep) => Some(crate::time::minus(now, keep)),
        }
    }
}

/// A tenant's raw points for a write, with how long the tenant keeps them.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// The tenant.
    pub tenant: &'a TenantId,
    /// How long its raw points are kept.
    pub retention: Retention,
    /// The points, made or in columns only (remote write's), with their columns when the
    /// pipeline has them (a record's, or a filter's output): a store may read each point of
    /// a run of one series from the columns, which are laid out in order, instead of the
    /// point.
    pub points: &'a Points,
}

/// A batch of `tenant`'s points kept forever (tests).
#[cfg(test)]
pub(crate) fn forever<'a>(tenant: &'a TenantId, points: &'a Points) -> Batch<'a> {
    Batch {
        tenant,
        retention: Retention::Forever,
        points,
    }
}

/// A rollup tier as a write names it: its name and how long it keeps its windows.
#[derive(Debug, Clone, Copy)]
pub struct Tier<'a> {
    /// The tier's name (`1m`, `1h`...).
    pub name: &'a str,
    /// How long its windows are kept.
    pub retention: Retention,
}

/// One stored series: a measurement's field for one tag set.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct SeriesKey {
    /// Measurement.
    pub measurement: String,
    /// Field.
    pub field: String,
    /// Tags, sorted by key.
    pub tags: Vec<(String, String)>,
}

impl SeriesKey {
    /// The series of `field` of `point`.
    pub fn of(point: &Point, field: &str) -> Self {
        Self {
            measurement: point.measurement.to_string(),
            field: field.to_owned(),
            tags: point
                .tags
                .iter()
                .map(|Tag { key, value }| (key.to_string(), value.to_string()))
                .collect(),
        }
    }
}

/// Which series a query wants: measurement, optionally a field, and tags that must match.
#[derive(Debug, Clone, Default)]
pub struct SeriesFilter {
    /// Measurement; none lists every measurement.
    pub measurement: Option<String>,
    /// Field; none matches every field.
    pub field: Option<String>,
    /// (key, value) pairs a series must all have.
    pub tags: Vec<(String, String)>,
}

impl SeriesFilter {
    /// Whether series `s` is one the filter wants.
    pub fn matches(&self, s: &SeriesKey) -> bool {
        self.measurement
            .as_ref()
            .is_none_or(|m| *m == s.measurement)
            && self.field.as_ref().is_none_or(|f| *f == s.field)
            && self.tags.iter().all(|t| s.tags.contains(t))
    }
}

/// Why the store refused one point. The rest of its write is stored; the pipeline keeps the
/// refused point as a dead letter with this reason. Retrying the same point can't help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointError {
    /// A series key over what the storage engine can index.
    #[error("series key of field `{field}` is {bytes} bytes; the store takes at most {limit}")]
    KeyTooLong {
        /// The field whose series key is too long.
        field: String,
        /// Its length.
        bytes: usize,
        /// The most the store takes.
        limit: usize,
    },
    /// Its columns don't make a point (they were not Sluice's, or broke).
    #[error("the point's columns don't make a point: {0}")]
    Unreadable(String),
    /// A value of another type than the series already holds.
    #[error("field type conflict: field `{field}` is {got}, but the series holds {stored} values")]
    TypeConflict {
        /// The field.
        field: String,
        /// The type the series holds.
        stored: FieldType,
        /// The type of the refused value.
        got: FieldType,
    },
}

/// A point the store refused: which one of the write, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Index of its batch in the write.
    pub batch: usize,
    /// Index of the point in its batch.
    pub point: usize,
    /// Why.
    pub reason: PointError,
}

/// Longest alert id kept as it is; longer ones (huge series keys) are hashed, so keys
/// stay within what the engines index.
const MAX_ALERT_ID_BYTES: usize = 1_024;

/// What makes an alert unique within its window end: rule, series and field.
fn alert_id(alert: &Alert) -> String {
    let id = format!("{}\u{1f}{}\u{1f}{}", alert.rule, alert.series, alert.field);
    if id.len() <= MAX_ALERT_ID_BYTES {
        return id;
    }
    use sha2::Digest as _;
    format!("#{}", hex::encode(sha2::Sha256::digest(id.as_bytes())))
}

/// Series listed at a time where all are wanted.
const SERIES_BATCH: usize = 10_000;

/// A page of a tenant's series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesPage {
    /// The series, in the store's order.
    pub series: Vec<SeriesKey>,
    /// Whether more series follow the last one.
    pub more: bool,
}

/// A page of a series' points.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadPage {
    /// Points, sorted by time.
    pub samples: Vec<(Nanos, FieldValue)>,
    /// The time of the first point after the page, when there is one.
    pub next: Option<Nanos>,
}

/// A page of a series of numbers: [`ReadPage`] as columns, each value as
/// [`FieldValue::as_f64`] reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NumberPage {
    /// Times, ascending.
    pub times: Vec<Nanos>,
    /// The value at each time.
    pub values: Vec<f64>,
    /// The time of the first point after the page, when there is one.
    pub next: Option<Nanos>,
}

impl NumberPage {
    /// `page` as numbers; none when a value is not a float or an integer.
    pub fn of(page: ReadPage) -> Option<Self> {
        let (times, values) = page
            .samples
            .iter()
            .map(|(ts, v)| Some((*ts, v.as_f64()?)))
            .collect::<Option<_>>()?;
        Some(Self {
            times,
            values,
            next: page.next,
        })
    }
}

/// One window of a rollup tier: a row keyed by tenant, tier, series and window start.
/// Written again (a correction by a late point within grace), it replaces the row.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollup {
    /// The series: measurement, field and the rule's grouping tags.
    pub series: SeriesKey,
    /// Window start.
    pub start: Nanos,
    /// Window end (exclusive).
    pub end: Nanos,
    /// Each aggregate's value.
    pub values: Values,
}

/// A page of a tier's windows of one series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RollupPage {
    /// (window start, window end, values), sorted by start.
    pub rows: Vec<(Nanos, Nanos, Values)>,
    /// The start of the first window after the page, when there is one.
    pub next: Option<Nanos>,
}

/// A value that came after its window had been dropped (late beyond grace), kept with the
/// rule that found it late. Keyed by tenant, time, rule and series: kept once, however often
/// it is replayed.
#[derive(Debug, Clone, PartialEq)]
pub struct LateRecord {
    /// The rule.
    pub rule: String,
    /// The series of the value (every tag of its point).
    pub series: SeriesKey,
    /// Its time.
    pub timestamp: Nanos,
    /// Its value.
    pub value: f64,
}

/// A page of late data, in time order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatePage {
    /// The records.
    pub records: Vec<LateRecord>,
    /// The time of the first record after the page, when there is one.
    pub next: Option<Nanos>,
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage engine failed (disk full, I/O error...); a retry helps once the cause is
    /// gone.
    #[error("store: {0}")]
    Storage(String),
    /// The database can't be reached (no node answers, connections broke); a retry helps
    /// once it is back.
    #[error("store: {what}: database unreachable ({reason}); retrying can help once it is back")]
    Unreachable {
        /// The operation.
        what: &'static str,
        /// The driver's reason.
        reason: String,
    },
    /// The database didn't answer in time, or too few replicas did for the consistency
    /// level; a retry may succeed.
    #[error("store: {what}: {reason}; retrying can help")]
    Timeout {
        /// The operation.
        what: &'static str,
        /// What timed out.
        reason: String,
    },
    /// The database refused the request as malformed or for its schema (a keyspace or
    /// table of another shape, a schema version mismatch that doesn't settle, a missing
    /// permission); retrying the same request can't help.
    #[error("store: {what}: refused by the database: {reason}; retrying can't help")]
    Refused {
        /// The operation.
        what: &'static str,
        /// The database's reason.
        reason: String,
    },
    /// Too many points wait for a sync (it fails or lags): the write is refused until one
    /// succeeds, so memory stays bounded and the pipeline's lag pushes back on ingest.
    #[error("store: {waiting} points wait for a sync (at most {limit}); retry after one")]
    SyncBehind {
        /// Points written but not yet synced.
        waiting: usize,
        /// The most that may wait.
        limit: usize,
    },
    /// A stored value could not be decoded; retrying can't help.
    #[error("store: corrupt entry: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether the same call may succeed later (after a sync, or once the disk has room).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Storage(_)
            | StoreError::Unreachable { .. }
            | StoreError::Timeout { .. }
            | StoreError::SyncBehind { .. } => true,
            StoreError::Corrupt(_) | StoreError::Refused { .. } => false,
        }
    }
}

/// Bytes one tenant's data takes in one place: its raw points, or a rollup tier's windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// Whose data.
    pub tenant: TenantId,
    /// The rollup tier; none for raw points.
    pub tier: Option<String>,
    /// Bytes of keys and encoded values.
    pub bytes: u64,
}

/// What a [`Store::compact`] pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// Chunk bytes read.
    pub read: u64,
    /// Chunk bytes written.
    pub written: u64,
    /// Chunks replaced by the rewrites.
    pub replaced: u64,
    /// Chunks the rewrites wrote.
    pub chunks: u64,
    /// Points dropped because a later sync held the same time.
    pub duplicates: u64,
    /// Whether series wait for compaction still: call again (after the I/O budget's pause).
    pub more: bool,
}

impl Compacted {
    fn add(&mut self, other: Compacted) {
        self.read += other.read;
        self.written += other.written;
        self.replaced += other.replaced;
        self.chunks += other.chunks;
        self.duplicates += other.duplicates;
    }
}

/// Durable storage of points.
pub trait Store: Send + Sync + 'static {
    /// Writes the points of each tenant, processed from records of a partition up to
    /// `through`, kept for their batch's retention: queryable when it returns, durable
    /// (with `through`) once a later [`Store::sync`] returns. Idempotent: a point written
    /// again replaces the first.
    /// Points the store can't take (a series key too long, a field type conflict) are left
    /// out whole and returned; every other point is written.
    ///
    /// # Errors
    /// When the write could not be taken (the store failed): nothing of it is written.
    fn write(&self, batches: &[Batch<'_>], through: Through) -> Result<Vec<Refused>, StoreError>;

    /// The type of the values the series of `field` of `point` holds, if it has any.
    ///
    /// # Errors
    /// On storage failure.
    fn field_type(
        &self,
        tenant: &TenantId,
        point: &Point,
        field: &str,
    ) -> Result<Option<FieldType>, StoreError>;

    /// Makes everything written before it durable, and returns how far into each partition
    /// the durable points reach. The pipeline commits those offsets to the transport, so
    /// points the store lost in a crash are replayed.
    ///
    /// # Errors
    /// When the points could not be made durable; they stay queryable and the next sync
    /// tries again.
    fn sync(&self) -> Result<Vec<Through>, StoreError>;

    /// How far into each partition the durable points reach (as the last sync returned).
    ///
    /// # Errors
    /// On storage failure.
    fn checkpointed(&self) -> Result<Vec<Through>, StoreError>;

    /// Every series of `tenant` matching `filter`, sorted.
    ///
    /// # Errors
    /// On storage failure.
    fn series(
        &self,
        tenant: &TenantId,
        filter: &SeriesFilter,
    ) -> Result<Vec<SeriesKey>, StoreError> {
        let mut all = Vec::new();
        loop {
            let page = self.series_page(tenant, filter, all.last(), SERIES_BATCH)?;
            all.extend(page.series);
            if !page.more {
                break;
            }
        }
        all.sort();
        Ok(all)
    }

    /// Up to `limit` of `tenant`'s series matching `filter`, in the store's order,
    /// starting after `after` (the last series of the page before), and whether more
    /// follow. Listing a page holds about `limit` series in memory, however many there are.
    ///
    /// # Errors
    /// On storage failure.
    fn series_page(
        &self,
        tenant: &TenantId,
        filter: &SeriesFilter,
        after: Option<&SeriesKey>,
        limit: usize,
    ) -> Result<SeriesPage, StoreError>;

    /// The first `max` points of one series in `range`, sorted by time, and the time of
    /// the next one when there are more. The limit is applied while reading: a page holds
    /// about `max` points in memory, whatever the range.
    ///
    /// # Errors
    /// On storage failure.
    fn read_page(
        &self,
        tenant: &TenantId,
        series: &SeriesKey,
        range: Range<Nanos>,
        max: usize,
    ) -> Result<ReadPage, StoreError>;

    /// [`Store::read_page`] of a series of numbers, as columns: none when the page holds a
    /// value that is not a float or an integer (a boolean, a string). Aggregations read
    /// this way, without a [`FieldValue`] per point.
    ///
    /// # Errors
    /// On storage failure.
    fn read_numbers(
        &self,
        tenant: &TenantId,
        series: &SeriesKey,
        range: Range<Nanos>,
        max: usize,
    ) -> Result<Option<NumberPage>, StoreError> {
        Ok(NumberPage::of(self.read_page(tenant, series, range, max)?))
    }

    /// Every point of one series in `range`, sorted by time.
    ///
    /// # Errors
    /// On storage failure.
    fn read(
        &self,
        tenant: &TenantId,
        series: &SeriesKey,
        range: Range<Nanos>,
    ) -> Result<Vec<(Nanos, FieldValue)>, StoreError> {
        Ok(self.read_page(tenant, series, range, usize::MAX)?.samples)
    }

    /// Deletes what is past the retention its writes carried at `now`; returns how many
    /// rows. A store whose rows expire by themselves (ScyllaDB's TTL) has nothing to do.
    ///
    /// # Errors
    /// On storage failure.
    fn expire_due(&self, now: Nanos) -> Result<u64, StoreError>;

    /// Stores alerts of `tenant` durably, kept as long as its raw points; idempotent
    /// (keyed by window end, rule, series).
    ///
    /// # Errors
    /// On storage failure.
    fn write_alerts(
        &self,
        tenant: &TenantId,
        retention: Retention,
        alerts: &[Alert],
    ) -> Result<(), StoreError>;

    /// `tenant`'s alerts whose window ended in `range`, oldest first.
    ///
    /// # Errors
    /// On storage failure.
    fn alerts(&self, tenant: &TenantId, range: Range<Nanos>) -> Result<Vec<Alert>, StoreError>;

    /// Why the store can't work until the process restarts (a full disk, say), or none
    /// while it is healthy.
    fn failure(&self) -> Option<String>;

    /// Trouble that may pass by itself (the database unreachable since a time, and why),
    /// or none.
    fn trouble(&self) -> Option<String> {
        None
    }

    /// How many series `tenant` has (for its series quota): the listing, paged.
    ///
    /// # Errors
    /// On storage failure.
    fn series_count(&self, tenant: &TenantId) -> Result<u64, StoreError> {
        let (mut count, mut after) = (0, None);
        loop {
            let page = self.series_page(
                tenant,
                &SeriesFilter::default(),
                after.as_ref(),
                SERIES_BATCH,
            )?;
            count += page.series.len() as u64;
            if !page.more {
                return Ok(count);
            }
            after = page.series.last().cloned();
        }
    }

    /// Merges small chunks of series into full ones and drops points a replay stored
    /// twice, reading and writing about `budget` bytes at most before it returns (it
    /// may exceed it by one series' group). Stores that compact by themselves (ScyllaDB)
    /// do nothing.
    ///
    /// # Errors
    /// On storage failure; what was committed before stays (each group is rewritten
    /// atomically).
    fn compact(&self, _budget: u64) -> Result<Compacted, StoreError> {
        Ok(Compacted::default())
    }

    /// Bytes each tenant's data takes: its raw points and each rollup tier apart (keys and
    /// encoded values, before the storage engine's compression of its own), for storage
    /// quotas and metrics; none where the store can't tell cheaply. Reads every chunk
    /// and row: a job for now and then.
    ///
    /// # Errors
    /// On storage failure.
    fn usage(&self) -> Result<Option<Vec<Usage>>, StoreError> {
        Ok(None)
    }

    /// Upserts rows of `tenant`'s rollup tier `tier`, kept for the tier's retention, and
    /// deletes the rows at `retracted` (series, start): queryable at once, durable once a
    /// later [`Store::sync`] returns.
    ///
    /// # Errors
    /// On storage failure (nothing of it is written).
    fn write_rollups(
        &self,
        tenant: &TenantId,
        tier: Tier<'_>,
        rows: &[Rollup],
        retracted: &[(SeriesKey, Nanos)],
    ) -> Result<(), StoreError>;

    /// Up to `limit` series of `tenant`'s tier `tier` matching `filter`, after `after`.
    ///
    /// # Errors
    /// On storage failure.
    fn rollup_series_page(
        &self,
        tenant: &TenantId,
        tier: &str,
        filter: &SeriesFilter,
        after: Option<&SeriesKey>,
        limit: usize,
    ) -> Result<SeriesPage, StoreError>;

    /// The first `max` windows of `series` in tier `tier` starting in `range`, in time
    /// order, and the start of the next when there are more.
    ///
    /// # Errors
    /// On storage failure.
    fn read_rollups(
        &self,
        tenant: &TenantId,
        tier: &str,
        series: &SeriesKey,
        range: Range<Nanos>,
        max: usize,
    ) -> Result<RollupPage, StoreError>;

    /// Keeps late data of `tenant` (idempotent), as long as its raw points: durable once
    /// a later sync returns.
    ///
    /// # Errors
    /// On storage failure.
    fn write_late(
        &self,
        tenant: &TenantId,
        retention: Retention,
        records: &[LateRecord],
    ) -> Result<(), StoreError>;

    /// `tenant`'s late data in `range`: at least the first `max` records (and every other
    /// one at the time of the last), and the time to go on from.
    ///
    /// # Errors
    /// On storage failure.
    fn late_page(
        &self,
        tenant: &TenantId,
        range: Range<Nanos>,
        max: usize,
    ) -> Result<LatePage, StoreError>;
}
