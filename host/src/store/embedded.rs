//! The single-machine store on fjall: an index of series (series key → numeric id) for
//! listing and tag filtering, and one keyspace of points (series id + time → value).

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{SeriesFilter, SeriesKey, Store, StoreError, keys};
use crate::point::{Alert, FieldValue, Nanos, Point};
use crate::tenant::TenantId;

/// Series ids kept in memory, so a write looks the index up once per series, not per
/// point. Bounded: cleared when it grows past this many series (they are re-read).
const KNOWN_SERIES_CAP: usize = 1_000_000;

/// Series key → id, for the series seen lately, and the next id to hand out.
#[derive(Default)]
struct SeriesIds {
    known: HashMap<Vec<u8>, u64>,
    next: u64,
}

/// The embedded store in a directory.
pub struct EmbeddedStore {
    db: Database,
    points: Keyspace,
    series: Keyspace,
    alerts: Keyspace,
    ids: Mutex<SeriesIds>,
    /// The first write failure: fjall refuses every write after one, until reopened.
    failed: Mutex<Option<String>>,
}

fn storage(e: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(e.to_string())
}

impl EmbeddedStore {
    /// Opens (creating or recovering) the store in `dir`.
    ///
    /// # Errors
    /// When the directory can't be opened.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = Database::builder(dir).open().map_err(storage)?;
        let points = db
            .keyspace("points", KeyspaceCreateOptions::default)
            .map_err(storage)?;
        let series = db
            .keyspace("series", KeyspaceCreateOptions::default)
            .map_err(storage)?;
        let alerts = db
            .keyspace("alerts", KeyspaceCreateOptions::default)
            .map_err(storage)?;
        // Ids continue after the highest one in the index.
        let mut next = 1;
        for kv in series.iter() {
            let value = kv.value().map_err(storage)?;
            next = next.max(decode_id(&value)? + 1);
        }
        Ok(Self {
            db,
            points,
            series,
            alerts,
            ids: Mutex::new(SeriesIds {
                known: HashMap::new(),
                next,
            }),
            failed: Mutex::default(),
        })
    }
}

impl EmbeddedStore {
    /// The id of the series with key `series`, if it is indexed.
    fn id_of(&self, series: &[u8]) -> Result<Option<u64>, StoreError> {
        if let Some(id) = self
            .ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .known
            .get(series)
        {
            return Ok(Some(*id));
        }
        self.series
            .get(series)
            .map_err(storage)?
            .map(|v| decode_id(&v))
            .transpose()
    }

    /// Commits `batch` and syncs the journal; remembers a failure for [`Store::failure`].
    fn durably(&self, batch: fjall::OwnedWriteBatch) -> Result<(), StoreError> {
        let result = batch
            .commit()
            .and_then(|()| self.db.persist(PersistMode::SyncData))
            .map_err(storage);
        if let Err(error) = &result {
            let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
            if failed.is_none() {
                tracing::error!(%error, "The embedded store failed; writes are refused until a restart.");
                *failed = Some(error.to_string());
            }
        }
        result
    }
}

impl Store for EmbeddedStore {
    fn write(&self, batches: &[(TenantId, Vec<Point>)]) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        if ids.known.len() > KNOWN_SERIES_CAP {
            ids.known.clear();
        }
        let mut new_series: Vec<(Vec<u8>, u64)> = Vec::new();
        for (tenant, points) in batches {
            for point in points {
                for field in &point.fields {
                    let series = keys::series_of(tenant, point, &field.key);
                    let id = match ids.known.get(&series) {
                        Some(id) => *id,
                        None => match self.series.get(&series).map_err(storage)? {
                            Some(v) => {
                                let id = decode_id(&v)?;
                                ids.known.insert(series, id);
                                id
                            }
                            None => match new_series.iter().find(|(k, _)| *k == series) {
                                Some((_, id)) => *id,
                                None => {
                                    let id = ids.next;
                                    ids.next += 1;
                                    batch.insert(&self.series, series.clone(), id.to_be_bytes());
                                    new_series.push((series, id));
                                    id
                                }
                            },
                        },
                    };
                    batch.insert(
                        &self.points,
                        keys::point(id, point.timestamp),
                        keys::value(&field.value),
                    );
                }
            }
        }
        drop(ids);
        self.durably(batch)?;
        // Only once durable: a failed write must not leave ids that the index doesn't have.
        self.ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .known
            .extend(new_series);
        Ok(())
    }

    fn series(
        &self,
        tenant: &TenantId,
        filter: &SeriesFilter,
    ) -> Result<Vec<SeriesKey>, StoreError> {
        let prefix = keys::prefix(
            tenant,
            filter.measurement.as_deref(),
            filter.measurement.as_ref().and(filter.field.as_deref()),
        );
        let mut out = Vec::new();
        for kv in self.series.prefix(prefix) {
            let key = kv.key().map_err(storage)?;
            let series = keys::decode_series(&key)
                .ok_or_else(|| StoreError::Corrupt(format!("series key {key:?}")))?;
            if filter.matches(&series) {
                out.push(series);
            }
        }
        out.sort();
        Ok(out)
    }

    fn read(
        &self,
        tenant: &TenantId,
        series: &SeriesKey,
        range: Range<Nanos>,
    ) -> Result<Vec<(Nanos, FieldValue)>, StoreError> {
        let Some(id) = self.id_of(&keys::series(tenant, series))? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for kv in self
            .points
            .range(keys::point(id, range.start)..keys::point(id, range.end))
        {
            let (key, value) = kv.into_inner().map_err(storage)?;
            let ts = keys::decode_time(&key[8..])
                .ok_or_else(|| StoreError::Corrupt(format!("point key {key:?}")))?;
            let value = keys::decode_value(&value)
                .ok_or_else(|| StoreError::Corrupt(format!("value of {key:?}")))?;
            out.push((ts, value));
        }
        Ok(out)
    }

    fn expire(&self, tenant: &TenantId, before: Nanos) -> Result<u64, StoreError> {
        let mut removed = 0;
        for series in self.series(tenant, &SeriesFilter::default())? {
            let key = keys::series(tenant, &series);
            let Some(id) = self.id_of(&key)? else {
                continue;
            };
            let mut batch = self.db.batch();
            for kv in self
                .points
                .range(keys::point(id, Nanos::MIN)..keys::point(id, before))
            {
                batch.remove(&self.points, kv.key().map_err(storage)?);
                removed += 1;
            }
            let rest = keys::point(id, before);
            let emptied = self
                .points
                .range(rest..keys::point(id, Nanos::MAX))
                .next()
                .is_none();
            if emptied {
                batch.remove(&self.series, key.clone());
                self.ids
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .known
                    .remove(&key);
            }
            self.durably(batch)?;
        }
        let mut batch = self.db.batch();
        let start = alert_key(tenant, Nanos::MIN, "");
        for kv in self.alerts.range(start..alert_key(tenant, before, "")) {
            batch.remove(&self.alerts, kv.key().map_err(storage)?);
        }
        self.durably(batch)?;
        Ok(removed)
    }

    fn write_alerts(&self, tenant: &TenantId, alerts: &[Alert]) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        for alert in alerts {
            let id = format!("{}\u{1f}{}\u{1f}{}", alert.rule, alert.series, alert.field);
            let value = serde_json::to_vec(alert).map_err(storage)?;
            batch.insert(
                &self.alerts,
                alert_key(tenant, alert.window_end, &id),
                value,
            );
        }
        batch.commit().map_err(storage)?;
        self.db.persist(PersistMode::SyncData).map_err(storage)
    }

    fn alerts(&self, tenant: &TenantId, range: Range<Nanos>) -> Result<Vec<Alert>, StoreError> {
        let mut out = Vec::new();
        for kv in self
            .alerts
            .range(alert_key(tenant, range.start, "")..alert_key(tenant, range.end, ""))
        {
            let value = kv.value().map_err(storage)?;
            out.push(
                serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            );
        }
        Ok(out)
    }

    fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn decode_id(bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("series id {bytes:?}")))?;
    Ok(u64::from_be_bytes(arr))
}

/// Alerts sort by tenant, then window end, then rule and series.
fn alert_key(tenant: &TenantId, window_end: Nanos, id: &str) -> Vec<u8> {
    let mut key = keys::prefix(tenant, None, None);
    key.extend_from_slice(&keys::time(window_end));
    key.extend_from_slice(id.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::{Precision, parse};

    fn pts(lp: &str) -> Vec<Point> {
        parse(lp, Precision::Nanoseconds, 0).0
    }

    #[test]
    fn writes_are_idempotent_tenant_scoped_and_range_scannable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let a = TenantId::new("a");
        let b = TenantId::new("b");
        let batch = pts("cpu,host=x usage=1 10\ncpu,host=x usage=2 20\ncpu,host=y usage=3 10\n");
        store.write(&[(a.clone(), batch.clone())]).expect("write");
        store.write(&[(a.clone(), batch)]).expect("write again");
        store
            .write(&[(b.clone(), pts("cpu,host=x usage=9 10"))])
            .expect("write b");

        let filter = SeriesFilter {
            measurement: Some("cpu".into()),
            field: Some("usage".into()),
            tags: vec![("host".into(), "x".into())],
        };
        let series = store.series(&a, &filter).expect("series");
        assert_eq!(series.len(), 1);
        let points = store.read(&a, &series[0], 0..100).expect("read");
        assert_eq!(
            points,
            vec![(10, FieldValue::Float(1.0)), (20, FieldValue::Float(2.0))]
        );
        assert_eq!(store.read(&a, &series[0], 15..100).expect("read").len(), 1);
        assert_eq!(
            store.read(&b, &series[0], 0..100).expect("read"),
            vec![(10, FieldValue::Float(9.0))]
        );
        assert_eq!(
            store
                .series(&a, &SeriesFilter::default())
                .expect("all")
                .len(),
            2
        );

        assert_eq!(store.expire(&a, 15).expect("expire"), 2);
        assert_eq!(
            store.read(&a, &series[0], 0..100).expect("read"),
            vec![(20, FieldValue::Float(2.0))]
        );
        assert_eq!(
            store
                .series(&a, &SeriesFilter::default())
                .expect("all")
                .len(),
            1,
            "host=y emptied"
        );
        assert_eq!(
            store.read(&b, &series[0], 0..100).expect("read").len(),
            1,
            "b untouched"
        );
    }

    #[test]
    fn series_ids_survive_a_reopen_and_new_series_get_new_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = TenantId::new("a");
        let filter = |host: &str| SeriesFilter {
            measurement: Some("m".into()),
            field: Some("v".into()),
            tags: vec![("h".into(), host.into())],
        };
        {
            let store = EmbeddedStore::open(dir.path()).expect("open");
            store
                .write(&[(a.clone(), pts("m,h=x v=1 1"))])
                .expect("write");
        }
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        store
            .write(&[(a.clone(), pts("m,h=y v=2 1\nm,h=x v=3 2"))])
            .expect("write");
        let x = &store.series(&a, &filter("x")).expect("x")[0];
        let y = &store.series(&a, &filter("y")).expect("y")[0];
        assert_eq!(
            store.read(&a, x, 0..10).expect("x"),
            vec![(1, FieldValue::Float(1.0)), (2, FieldValue::Float(3.0))]
        );
        assert_eq!(
            store.read(&a, y, 0..10).expect("y"),
            vec![(1, FieldValue::Float(2.0))]
        );
    }
}
