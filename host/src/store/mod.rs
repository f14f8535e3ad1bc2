//! The store seam: raw points by series, laid out for time-range scans, written
//! idempotently (a point is identified by its tenant, series, field and timestamp, so
//! writing it again changes nothing). `embedded` is the single-machine implementation
//! (fjall); a ScyllaDB one fits the same trait.

mod chunk;
mod embedded;
mod head;
mod keys;

use std::ops::Range;

pub use embedded::EmbeddedStore;

use crate::point::{Alert, FieldValue, Nanos, Point, Tag};
use crate::tenant::TenantId;

/// One stored series: a measurement's field for one tag set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
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
            measurement: point.measurement.clone(),
            field: field.to_owned(),
            tags: point
                .tags
                .iter()
                .map(|Tag { key, value }| (key.clone(), value.clone()))
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
    fn matches(&self, s: &SeriesKey) -> bool {
        self.measurement
            .as_ref()
            .is_none_or(|m| *m == s.measurement)
            && self.field.as_ref().is_none_or(|f| *f == s.field)
            && self.tags.iter().all(|t| s.tags.contains(t))
    }
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage engine failed (disk full, I/O error...).
    #[error("store: {0}")]
    Storage(String),
    /// Too many points wait for a sync (it fails or lags): the write is refused until one
    /// succeeds, so memory stays bounded and the pipeline's lag pushes back on ingest.
    #[error("store: {waiting} points wait for a sync (at most {limit}); retry after one")]
    SyncBehind {
        /// Points written but not yet synced.
        waiting: usize,
        /// The most that may wait.
        limit: usize,
    },
    /// A stored value could not be decoded.
    #[error("store: corrupt entry: {0}")]
    Corrupt(String),
}

/// Durable storage of points.
pub trait Store: Send + Sync + 'static {
    /// Writes the points of each tenant: queryable when it returns, durable once a later
    /// [`Store::sync`] returns. Idempotent: a point written again replaces the first.
    ///
    /// # Errors
    /// When the write could not be taken (the store failed).
    fn write(&self, batches: &[(TenantId, Vec<Point>)]) -> Result<(), StoreError>;

    /// Makes everything written before it durable. The pipeline commits transport offsets
    /// only after a sync, so points the store lost in a crash are replayed.
    ///
    /// # Errors
    /// When the points could not be made durable; they stay queryable and the next sync
    /// tries again.
    fn sync(&self) -> Result<(), StoreError>;

    /// The series of `tenant` matching `filter`, sorted.
    ///
    /// # Errors
    /// On storage failure.
    fn series(
        &self,
        tenant: &TenantId,
        filter: &SeriesFilter,
    ) -> Result<Vec<SeriesKey>, StoreError>;

    /// The points of one series in `range`, sorted by time.
    ///
    /// # Errors
    /// On storage failure.
    fn read(
        &self,
        tenant: &TenantId,
        series: &SeriesKey,
        range: Range<Nanos>,
    ) -> Result<Vec<(Nanos, FieldValue)>, StoreError>;

    /// Deletes `tenant`'s points older than `before`; returns how many.
    ///
    /// # Errors
    /// On storage failure.
    fn expire(&self, tenant: &TenantId, before: Nanos) -> Result<u64, StoreError>;

    /// Stores alerts of `tenant` durably; idempotent (keyed by window end, rule, series).
    ///
    /// # Errors
    /// On storage failure.
    fn write_alerts(&self, tenant: &TenantId, alerts: &[Alert]) -> Result<(), StoreError>;

    /// `tenant`'s alerts whose window ended in `range`, oldest first.
    ///
    /// # Errors
    /// On storage failure.
    fn alerts(&self, tenant: &TenantId, range: Range<Nanos>) -> Result<Vec<Alert>, StoreError>;

    /// Why the store can't work until the process restarts (a full disk, say), or none
    /// while it is healthy.
    fn failure(&self) -> Option<String>;
}
