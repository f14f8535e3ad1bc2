//! The single-machine store on fjall: an index of series (series key → numeric id) for
//! listing and tag filtering, an in-memory head of the points written since the last sync,
//! and chunks of points per series written by each sync.
//!
//! Writes go to the head and are queryable at once; [`Store::sync`] cuts the head into
//! chunks and writes them in one fsynced batch. Reads merge chunks and head; where a series
//! has several values at one time (a rewrite, or a replay after a crash), the latest write
//! wins, so writes are idempotent.

use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::chunk::{self, Sample};
use super::head::Head;
use super::{SeriesFilter, SeriesKey, Store, StoreError, keys};
use crate::point::{Alert, FieldValue, Nanos};
use crate::tenant::TenantId;

/// Series ids kept in memory, so a write looks the index up once per series, not per
/// point. Bounded: cleared when it grows past this many series (they are re-read).
const KNOWN_SERIES_CAP: usize = 1_000_000;

/// Most points that may wait for a sync by default: about 10 s of the bulk bench's rate,
/// some 400 MB of head.
const HEAD_LIMIT: usize = 10_000_000;

/// Key of the next sync sequence in the `meta` keyspace.
const NEXT_SEQ: &[u8] = b"next-sync-seq";

/// What writes, reads and syncs share: series ids, the head, and the head being synced.
#[derive(Default)]
struct Shared {
    /// Series key → id, for the series seen lately.
    known: foldhash::HashMap<Vec<u8>, u64>,
    /// The next series id to hand out.
    next_id: u64,
    /// Points written since the last sync began.
    head: Head,
    /// The head a running sync is writing: still read until its chunks are committed.
    syncing: Option<Arc<Head>>,
}

/// The embedded store in a directory.
pub struct EmbeddedStore {
    db: Database,
    chunks: Keyspace,
    series: Keyspace,
    alerts: Keyspace,
    meta: Keyspace,
    shared: Mutex<Shared>,
    /// Most points that may wait for a sync; writes beyond are refused.
    head_limit: usize,
    /// The next sync sequence; held for the whole sync, so syncs run one at a time.
    next_seq: Mutex<u64>,
    /// The first write failure: fjall refuses every write after one, until reopened.
    failed: Mutex<Option<String>>,
}

fn storage(e: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(e.to_string())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl EmbeddedStore {
    /// Opens (creating or recovering) the store in `dir`.
    ///
    /// # Errors
    /// When the directory can't be opened.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = Database::builder(dir).open().map_err(storage)?;
        let keyspace = |name: &str| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(storage)
        };
        let (chunks, series, alerts, meta) = (
            keyspace("chunks")?,
            keyspace("series")?,
            keyspace("alerts")?,
            keyspace("meta")?,
        );
        // Ids continue after the highest one in the index.
        let mut next_id = 1;
        for kv in series.iter() {
            let value = kv.value().map_err(storage)?;
            next_id = next_id.max(decode_u64(&value)? + 1);
        }
        let next_seq = match meta.get(NEXT_SEQ).map_err(storage)? {
            Some(v) => decode_u64(&v)?,
            None => 0,
        };
        Ok(Self {
            db,
            chunks,
            series,
            alerts,
            meta,
            shared: Mutex::new(Shared {
                next_id,
                ..Shared::default()
            }),
            head_limit: HEAD_LIMIT,
            next_seq: Mutex::new(next_seq),
            failed: Mutex::default(),
        })
    }

    /// Sets how many points may wait for a sync before writes are refused.
    #[must_use]
    pub fn with_head_limit(mut self, points: usize) -> Self {
        self.head_limit = points;
        self
    }

    /// The id of the series with key `series`, if it is indexed.
    fn id_of(&self, shared: &Shared, series: &[u8]) -> Result<Option<u64>, StoreError> {
        if let Some(id) = shared.known.get(series) {
            return Ok(Some(*id));
        }
        self.series
            .get(series)
            .map_err(storage)?
            .map(|v| decode_u64(&v))
            .transpose()
    }

    /// The id of series `key`, indexing it if new. The index entry is committed at once
    /// (visible to listings) and made durable by the sync that writes the series' first
    /// chunk: the journal is ordered, so no chunk survives a crash without its entry.
    fn id_or_insert(&self, shared: &mut Shared, key: &[u8]) -> Result<u64, StoreError> {
        if let Some(id) = shared.known.get(key) {
            return Ok(*id);
        }
        let id = match self.series.get(key).map_err(storage)? {
            Some(v) => decode_u64(&v)?,
            None => {
                let id = shared.next_id;
                self.series
                    .insert(key, id.to_be_bytes())
                    .map_err(|e| self.note_failure(e))?;
                shared.next_id += 1;
                id
            }
        };
        shared.known.insert(key.to_vec(), id);
        Ok(id)
    }

    /// Commits `batch` and syncs the journal.
    fn durably(&self, batch: fjall::OwnedWriteBatch) -> Result<(), StoreError> {
        batch
            .commit()
            .and_then(|()| self.db.persist(PersistMode::SyncData))
            .map_err(|e| self.note_failure(e))
    }

    /// Remembers the first storage failure for [`Store::failure`].
    fn note_failure(&self, error: impl std::fmt::Display) -> StoreError {
        let mut failed = lock(&self.failed);
        if failed.is_none() {
            tracing::error!(%error, "The embedded store failed; writes are refused until a restart.");
            *failed = Some(error.to_string());
        }
        storage(error)
    }

    /// Chunks of series `id` that may hold points in `range`, with their sync sequence.
    fn chunks_in(
        &self,
        id: u64,
        range: &Range<Nanos>,
    ) -> impl Iterator<Item = Result<(u64, Vec<Sample>), StoreError>> {
        // A chunk spans at most MAX_SPAN, so one ending past `end + MAX_SPAN` starts after it.
        let last = range.end.saturating_add(chunk::MAX_SPAN);
        self.chunks
            .range(keys::chunk(id, range.start, 0)..=keys::chunk(id, last, u64::MAX))
            .map(|kv| {
                let (key, value) = kv.into_inner().map_err(storage)?;
                let seq = keys::chunk_seq(&key)
                    .ok_or_else(|| StoreError::Corrupt(format!("chunk key {key:?}")))?;
                Ok((seq, decode_chunk(&key, &value)?))
            })
    }
}

/// Orders candidate samples by time and keeps, for each time, the one written last: `rank`
/// orders their sources (chunks by sync, then the syncing head, then the head) and the
/// stable sort keeps write order within a source.
fn latest_per_time(mut candidates: Vec<(Nanos, u64, FieldValue)>) -> Vec<Sample> {
    candidates.sort_by_key(|(ts, rank, _)| (*ts, *rank));
    let mut out: Vec<Sample> = Vec::with_capacity(candidates.len());
    for (ts, _, value) in candidates {
        match out.last_mut() {
            Some(last) if last.0 == ts => last.1 = value,
            _ => out.push((ts, value)),
        }
    }
    out
}

impl Store for EmbeddedStore {
    fn write(&self, batches: &[(TenantId, Vec<crate::point::Point>)]) -> Result<(), StoreError> {
        let mut shared = lock(&self.shared);
        let waiting = shared.head.len() + shared.syncing.as_ref().map_or(0, |h| h.len());
        if waiting >= self.head_limit {
            return Err(StoreError::SyncBehind {
                waiting,
                limit: self.head_limit,
            });
        }
        if shared.known.len() > KNOWN_SERIES_CAP {
            shared.known.clear();
        }
        let mut key = Vec::new();
        for (tenant, points) in batches {
            for point in points {
                for field in &point.fields {
                    keys::series_of_into(&mut key, tenant, point, &field.key);
                    let id = self.id_or_insert(&mut shared, &key)?;
                    shared.head.push(id, (point.timestamp, field.value.clone()));
                }
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        let mut next_seq = lock(&self.next_seq);
        let head = {
            let mut shared = lock(&self.shared);
            if shared.head.is_empty() {
                return Ok(());
            }
            let head = Arc::new(std::mem::take(&mut shared.head));
            shared.syncing = Some(head.clone());
            head
        };
        let seq = *next_seq;
        let mut batch = self.db.batch();
        for (id, samples) in head.series() {
            for chunk in chunk::cut(samples) {
                let last = chunk.last().map_or(0, |(ts, _)| *ts);
                batch.insert(
                    &self.chunks,
                    keys::chunk(id, last, seq),
                    chunk::encode(&chunk),
                );
            }
        }
        batch.insert(&self.meta, NEXT_SEQ, (seq + 1).to_be_bytes());
        let result = self.durably(batch);
        let mut shared = lock(&self.shared);
        shared.syncing = None;
        match result {
            Ok(()) => *next_seq = seq + 1,
            // Not durable: back into the head for the next sync to retry.
            Err(_) => shared.head.absorb(Arc::unwrap_or_clone(head)),
        }
        result
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
    ) -> Result<Vec<Sample>, StoreError> {
        // The head first: a sync finishing meanwhile moves its points into chunks read after.
        let (id, mut candidates) = {
            let shared = lock(&self.shared);
            let Some(id) = self.id_of(&shared, &keys::series(tenant, series))? else {
                return Ok(Vec::new());
            };
            let syncing = shared.syncing.iter().flat_map(|h| h.range(id, &range));
            let candidates: Vec<_> = syncing
                .map(|(ts, v)| (*ts, u64::MAX - 1, v.clone()))
                .chain(
                    shared
                        .head
                        .range(id, &range)
                        .map(|(ts, v)| (*ts, u64::MAX, v.clone())),
                )
                .collect();
            (id, candidates)
        };
        for chunk in self.chunks_in(id, &range) {
            let (seq, samples) = chunk?;
            candidates.extend(
                samples
                    .into_iter()
                    .filter(|(ts, _)| range.contains(ts))
                    .map(|(ts, v)| (ts, seq, v)),
            );
        }
        Ok(latest_per_time(candidates))
    }

    fn expire(&self, tenant: &TenantId, before: Nanos) -> Result<u64, StoreError> {
        let mut removed = 0;
        for series in self.series(tenant, &SeriesFilter::default())? {
            let key = keys::series(tenant, &series);
            // Held throughout, so no write adds to the series while it may be dropped.
            let mut shared = lock(&self.shared);
            let Some(id) = self.id_of(&shared, &key)? else {
                continue;
            };
            removed += shared.head.expire(id, before);
            let mut batch = self.db.batch();
            // Chunks ending before the cutoff go whole.
            let gone = keys::chunk(id, Nanos::MIN, 0)..keys::chunk(id, before, 0);
            for kv in self.chunks.range(gone) {
                let (chunk_key, value) = kv.into_inner().map_err(storage)?;
                removed += decode_chunk(&chunk_key, &value)?.len() as u64;
                batch.remove(&self.chunks, chunk_key);
            }
            // Chunks ending after it keep their newest point, but may start before it.
            let later = keys::chunk(id, before, 0)..=keys::chunk(id, Nanos::MAX, u64::MAX);
            let kept = self.chunks.range(later).next().is_some();
            let straddling = keys::chunk(id, before, 0)
                ..=keys::chunk(id, before.saturating_add(chunk::MAX_SPAN), u64::MAX);
            for kv in self.chunks.range(straddling) {
                let (chunk_key, value) = kv.into_inner().map_err(storage)?;
                let samples = decode_chunk(&chunk_key, &value)?;
                let rest: Vec<&Sample> = samples.iter().filter(|(ts, _)| *ts >= before).collect();
                if rest.len() < samples.len() {
                    removed += (samples.len() - rest.len()) as u64;
                    batch.insert(&self.chunks, chunk_key, chunk::encode(&rest));
                }
            }
            let syncing = shared.syncing.as_ref().is_some_and(|h| h.has(id));
            if !kept && !shared.head.has(id) && !syncing {
                batch.remove(&self.series, key.clone());
                shared.known.remove(&key);
            }
            // Not synced per series (that would stall writes for an fsync each): the alert
            // batch below syncs the journal once for all, and a deletion lost in a crash is
            // redone by the next pass.
            batch.commit().map_err(|e| self.note_failure(e))?;
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
        self.durably(batch)
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
        lock(&self.failed).clone()
    }
}

fn decode_chunk(key: &[u8], value: &[u8]) -> Result<Vec<Sample>, StoreError> {
    chunk::decode(value).ok_or_else(|| StoreError::Corrupt(format!("chunk {key:?}")))
}

fn decode_u64(bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("not a big-endian u64: {bytes:?}")))?;
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
    use crate::point::Point;

    fn pts(lp: &str) -> Vec<Point> {
        parse(lp, Precision::Nanoseconds, 0).0
    }

    fn only(store: &EmbeddedStore, tenant: &TenantId, host: &str) -> SeriesKey {
        let filter = SeriesFilter {
            measurement: Some("cpu".into()),
            field: Some("usage".into()),
            tags: vec![("host".into(), host.into())],
        };
        let series = store.series(tenant, &filter).expect("series");
        assert_eq!(series.len(), 1, "one series for host={host}");
        series.into_iter().next().expect("one")
    }

    fn floats(values: &[(Nanos, f64)]) -> Vec<Sample> {
        values
            .iter()
            .map(|(ts, v)| (*ts, FieldValue::Float(*v)))
            .collect()
    }

    #[test]
    fn writes_are_idempotent_tenant_scoped_and_range_scannable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let a = TenantId::new("a");
        let b = TenantId::new("b");
        let batch = pts("cpu,host=x usage=1 10\ncpu,host=x usage=2 20\ncpu,host=y usage=3 10\n");
        store.write(&[(a.clone(), batch.clone())]).expect("write");
        store.sync().expect("sync");
        // Replayed after a crash: once in chunks, again in the head, then in two chunks.
        store.write(&[(a.clone(), batch)]).expect("write again");
        store
            .write(&[(b.clone(), pts("cpu,host=x usage=9 10"))])
            .expect("write b");
        let x = only(&store, &a, "x");
        for synced in [false, true] {
            assert_eq!(
                store.read(&a, &x, 0..100).expect("read"),
                floats(&[(10, 1.0), (20, 2.0)]),
                "synced: {synced}"
            );
            assert_eq!(store.read(&a, &x, 15..100).expect("read").len(), 1);
            assert_eq!(
                store.read(&b, &x, 0..100).expect("read"),
                floats(&[(10, 9.0)])
            );
            store.sync().expect("sync");
        }
        assert_eq!(
            store
                .series(&a, &SeriesFilter::default())
                .expect("all")
                .len(),
            2
        );

        // Both copies of x@10 and y@10 go.
        assert_eq!(store.expire(&a, 15).expect("expire"), 4);
        assert_eq!(
            store.read(&a, &x, 0..100).expect("read"),
            floats(&[(20, 2.0)])
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
            store.read(&b, &x, 0..100).expect("read").len(),
            1,
            "b untouched"
        );
    }

    #[test]
    fn synced_writes_survive_a_reopen_unsynced_ones_do_not_and_the_latest_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = TenantId::new("a");
        {
            let store = EmbeddedStore::open(dir.path()).expect("open");
            store
                .write(&[(a.clone(), pts("cpu,host=x usage=1 5"))])
                .expect("write");
            store.sync().expect("sync");
            store
                .write(&[(a.clone(), pts("cpu,host=x usage=2 5"))])
                .expect("rewrite");
            let x = only(&store, &a, "x");
            assert_eq!(
                store.read(&a, &x, 0..10).expect("read"),
                floats(&[(5, 2.0)])
            );
            store.sync().expect("sync");
            // Never synced: the transport still holds it and replays it.
            store
                .write(&[(a.clone(), pts("cpu,host=x usage=3 5\ncpu,host=z usage=1 1"))])
                .expect("write");
        }
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        let x = only(&store, &a, "x");
        assert_eq!(
            store.read(&a, &x, 0..10).expect("read"),
            floats(&[(5, 2.0)]),
            "the later sync wins after a reopen"
        );
        store
            .write(&[(a.clone(), pts("cpu,host=x usage=4 5"))])
            .expect("write");
        store.sync().expect("sync");
        assert_eq!(
            store.read(&a, &x, 0..10).expect("read"),
            floats(&[(5, 4.0)]),
            "sync sequence continues after a reopen"
        );
    }

    #[test]
    fn chunks_are_found_and_expired_across_their_span() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let a = TenantId::new("a");
        let span = chunk::MAX_SPAN;
        // Two chunks: [0, span/2, span] and [3 span/2 .. 3 span/2 + 2000] (split at 1,024).
        let mut lp = format!(
            "cpu,host=x usage=0 0\ncpu,host=x usage=1 {}\ncpu,host=x usage=2 {span}\n",
            span / 2
        );
        for i in 0..2000 {
            lp += &format!("cpu,host=x usage={i} {}\n", 3 * span / 2 + i);
        }
        store.write(&[(a.clone(), pts(&lp))]).expect("write");
        store.sync().expect("sync");
        let x = only(&store, &a, "x");
        // A range inside the first chunk, found although the chunk ends after it.
        assert_eq!(
            store.read(&a, &x, span / 4..span / 2 + 1).expect("read"),
            floats(&[(span / 2, 1.0)])
        );
        assert_eq!(store.read(&a, &x, 0..Nanos::MAX).expect("read").len(), 2003);
        // Cut the first chunk: two points go, the rest stays.
        assert_eq!(store.expire(&a, span / 2 + 1).expect("expire"), 2);
        let left = store.read(&a, &x, Nanos::MIN..Nanos::MAX).expect("read");
        assert_eq!(left.len(), 2001);
        assert_eq!(left[0], (span, FieldValue::Float(2.0)));
        assert_eq!(store.expire(&a, Nanos::MAX).expect("expire all"), 2001);
        assert!(
            store
                .series(&a, &SeriesFilter::default())
                .expect("all")
                .is_empty()
        );
    }

    #[test]
    fn writes_wait_for_a_sync_once_the_head_is_full() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path())
            .expect("open")
            .with_head_limit(3);
        let a = TenantId::new("a");
        let two = pts("cpu,host=x usage=1 1\ncpu,host=x usage=2 2");
        store
            .write(&[(a.clone(), two.clone())])
            .expect("under the limit");
        store
            .write(&[(a.clone(), two.clone())])
            .expect("reaches it");
        let refused = store.write(&[(a.clone(), two.clone())]);
        assert!(
            matches!(
                refused,
                Err(StoreError::SyncBehind {
                    waiting: 4,
                    limit: 3
                })
            ),
            "{refused:?}"
        );
        store.sync().expect("sync");
        store.write(&[(a.clone(), two)]).expect("room again");
        assert_eq!(
            store
                .read(&a, &only(&store, &a, "x"), 0..10)
                .expect("read")
                .len(),
            2
        );
    }

    #[test]
    fn series_ids_survive_a_reopen_and_new_series_get_new_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = TenantId::new("a");
        {
            let store = EmbeddedStore::open(dir.path()).expect("open");
            store
                .write(&[(a.clone(), pts("cpu,host=x usage=1 1"))])
                .expect("write");
            store.sync().expect("sync");
        }
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        store
            .write(&[(a.clone(), pts("cpu,host=y usage=2 1\ncpu,host=x usage=3 2"))])
            .expect("write");
        let (x, y) = (only(&store, &a, "x"), only(&store, &a, "y"));
        assert_eq!(
            store.read(&a, &x, 0..10).expect("x"),
            floats(&[(1, 1.0), (2, 3.0)])
        );
        assert_eq!(store.read(&a, &y, 0..10).expect("y"), floats(&[(1, 2.0)]));
    }
}
