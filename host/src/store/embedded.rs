//! The single-machine store on fjall: an index of series (series key → numeric id) for
//! listing and tag filtering, an in-memory head of the points written since the last sync,
//! and chunks of points per series written by each sync.
//!
//! Writes go to the head and are queryable at once; [`Store::sync`] cuts the head into
//! chunks and writes them in one fsynced batch. Reads merge chunks and head; where a series
//! has several values at one time (a rewrite, or a replay after a crash), the latest write
//! wins, so writes are idempotent.

use std::collections::BTreeMap;
use std::ops::{Bound, Range};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};

use super::chunk::{self, Sample};
use super::compaction::{self, Stored};
use super::head::Head;
use super::journal;
use super::{
    Batch, Compacted, LatePage, LateRecord, NumberPage, PointError, Reach, ReadPage, Refused,
    Retention, Rollup, RollupPage, SeriesFilter, SeriesKey, SeriesPage, Store, StoreError, Through,
    Tier, Usage, alert_id, keys,
};
use crate::columns::{Columns, Shape};
use crate::format;
use crate::point::{Alert, FieldType, FieldValue, Nanos, Point};
use crate::tenant::TenantId;
use crate::transport::{Partition, PartitionState, StateLog, TransportError};

/// Series ids kept in memory, so a write looks the index up once per series, not per
/// point. Bounded: cleared when it grows past this many series (they are re-read).
const KNOWN_SERIES_CAP: usize = 1_000_000;

/// Most points that may wait for a sync by default: about 10 s of the bulk bench's rate,
/// some 400 MB of head.
const HEAD_LIMIT: usize = 10_000_000;

/// Sealed journals kept at most before fjall flushes the keyspaces that hold them back.
const JOURNALS_BYTES: u64 = 64 << 20;

/// Chunks a compaction reads of a series at first; more when a group spans them all.
const COMPACTION_WINDOW: usize = 64;

/// Key of the next sync sequence in the `meta` keyspace.
const NEXT_SEQ: &[u8] = b"next-sync-seq";

/// Key of the first sync sequence in the versioned chunk format, in the `meta` keyspace.
const CHUNK_FORMAT_FROM: &[u8] = b"chunk-format-1-from-seq";

/// Key in the `meta` keyspace saying every series has its postings (stores of the
/// releases before postings get them at their first open).
const POSTINGS_BUILT: &[u8] = b"postings-built";

/// Key in the `meta` keyspace saying the store was closed with every series compacted;
/// removed (durably) at open, so only a clean close leaves it.
const COMPACTED_AT_CLOSE: &[u8] = b"compacted-at-close";

/// Prefix of the synced offsets' keys in the `meta` keyspace (then the partition).
const THROUGH_PREFIX: &[u8] = b"through/";

/// Prefix of the saved partition states' keys in the `meta` keyspace (then the partition).
const STATE_PREFIX: &[u8] = b"state/";

/// Prefix of the retention keys in the `meta` keyspace (then the tenant, a NUL and the
/// tier, empty for raw points); the value is the retention in seconds.
const RETENTION_PREFIX: &[u8] = b"retention/";

fn retention_key(tenant: &TenantId, tier: Option<&str>) -> Vec<u8> {
    let mut key = RETENTION_PREFIX.to_vec();
    key.extend_from_slice(tier_scope(tenant, tier.unwrap_or("")).as_str().as_bytes());
    key
}

/// What writes, reads and syncs share: series ids, the head, and the head being synced.
#[derive(Default)]
struct Shared {
    /// Series key → index entry, for the series seen lately.
    known: foldhash::HashMap<Vec<u8>, Indexed>,
    /// The next series id to hand out.
    next_id: u64,
    /// Points written since the last sync began.
    head: Head,
    /// The head a running sync is writing: still read until its chunks are committed.
    syncing: Option<Arc<Head>>,
    /// Partition states saved since the last sync began, for the next one to write.
    states: BTreeMap<Partition, PartitionState>,
    /// Whether rollups or late data were written since the last sync began: the next one
    /// syncs the journal even without points.
    unsynced: bool,
}

/// A series' entry in the index: its id and the type of its values (none in stores written
/// before types were recorded: any type is taken there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Indexed {
    id: u64,
    ty: Option<FieldType>,
}

impl Indexed {
    /// Big-endian id, then the type's code.
    fn encode(self) -> Vec<u8> {
        let mut out = self.id.to_be_bytes().to_vec();
        out.extend(self.ty.map(FieldType::code));
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let (id, ty) = bytes.split_at(bytes.len().min(8));
        let ty = match ty {
            [] => None,
            [code] => Some(FieldType::from_code(*code).ok_or_else(|| {
                StoreError::Corrupt(format!("series index: unknown type code {code}"))
            })?),
            _ => return Err(StoreError::Corrupt(format!("series index value {bytes:?}"))),
        };
        Ok(Self {
            id: decode_u64(id)?,
            ty,
        })
    }
}

/// The series keys of one point's fields, in a buffer reused across points, each with its
/// index entry when the series exists.
#[derive(Default)]
struct FieldKeys {
    keys: Vec<Vec<u8>>,
    indexed: Vec<Option<Indexed>>,
}

impl FieldKeys {
    fn clear(&mut self) {
        self.indexed.clear();
    }

    /// A cleared buffer for the next field's key.
    fn next_key(&mut self) -> &mut Vec<u8> {
        let n = self.indexed.len();
        if self.keys.len() == n {
            self.keys.push(Vec::new());
        }
        &mut self.keys[n]
    }

    fn set_indexed(&mut self, indexed: Option<Indexed>) {
        self.indexed.push(indexed);
    }

    /// Whether every field's series is indexed.
    fn all_indexed(&self) -> bool {
        self.indexed.iter().all(Option::is_some)
    }

    /// The check of a point whose fields have these keys: each value of its series' type.
    fn check_types(&self, point: &Point) -> Result<(), PointError> {
        for (field, indexed) in point.fields.iter().zip(&self.indexed) {
            let got = field.value.field_type();
            if let Some(stored) = indexed.and_then(|i| i.ty).filter(|t| *t != got) {
                return Err(PointError::TypeConflict {
                    field: field.key.to_string(),
                    stored,
                    got,
                });
            }
        }
        Ok(())
    }
}

/// Adds point `i` of `columns`, of `shape` and field `values` (as [`Columns::shape`] gave
/// them), whose fields' series `keys` has indexed (the point before had its shape), to
/// their `run`s from the columns, without making it; false, adding nothing, when a value
/// is not in the columns.
fn sampled(
    columns: &Columns,
    (i, shape, values): (usize, Shape<'_>, &[u8]),
    keys: &FieldKeys,
    run: &mut [(u64, Vec<Sample>)],
) -> bool {
    let Some((timestamp, values)) = columns.sample(i, shape, values) else {
        return false;
    };
    for (f, value) in values.enumerate() {
        match (
            value,
            keys.indexed.get(f).copied().flatten(),
            run.get_mut(f),
        ) {
            (Some(value), Some(indexed), Some(run)) => {
                run.0 = indexed.id;
                run.1.push((timestamp, value));
            }
            _ => {
                // Whole or not at all: the fields before go again.
                for (_, samples) in &mut run[..f] {
                    samples.pop();
                }
                return false;
            }
        }
    }
    true
}

/// A record of the control plane kept beside the data: key, value.
pub type Record = (Vec<u8>, Vec<u8>);

/// The durable state of the syncs.
struct Synced {
    /// The next sync's sequence.
    seq: u64,
    /// How far into each partition (and lane ahead of it) the synced points reach.
    through: Reach,
}

impl Synced {
    fn through(&self) -> Vec<Through> {
        self.through.iter().collect()
    }
}

/// The meta key of the synced offset of partition `p`, or of `lane`'s there.
fn through_key(p: Partition, lane: Option<&TenantId>) -> Vec<u8> {
    let mut key = THROUGH_PREFIX.to_vec();
    key.extend_from_slice(&p.to_be_bytes());
    if let Some(tenant) = lane {
        key.extend_from_slice(tenant.as_str().as_bytes());
    }
    key
}

/// The partition and lane of a [`through_key`].
fn decode_through_key(key: &[u8]) -> Result<(Partition, Option<TenantId>), StoreError> {
    let corrupt = || StoreError::Corrupt(format!("offset key {key:?}"));
    let rest = key.get(THROUGH_PREFIX.len()..).ok_or_else(corrupt)?;
    let (p, lane) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let lane = match lane {
        [] => None,
        name => Some(TenantId::new(
            std::str::from_utf8(name).map_err(|_| corrupt())?,
        )),
    };
    Ok((Partition::from_be_bytes(*p), lane))
}

/// The meta key of the saved state of partition `p`.
fn state_key(p: Partition) -> Vec<u8> {
    let mut key = STATE_PREFIX.to_vec();
    key.extend_from_slice(&p.to_be_bytes());
    key
}

/// The key space of a rollup tier of a tenant: the tenant component of its keys. Tenant
/// and tier names have no control characters (config checks), so none can pass for another.
fn tier_scope(tenant: &TenantId, tier: &str) -> TenantId {
    TenantId::new(&format!("{tenant}\0{tier}"))
}

/// The key of a rollup row: its series in the tier's key space, then its start.
fn rollup_key(scope: &TenantId, series: &SeriesKey, start: Nanos) -> Vec<u8> {
    let mut key = keys::series(scope, series);
    key.extend_from_slice(&keys::time(start));
    key
}

/// The embedded store in a directory.
pub struct EmbeddedStore {
    db: Database,
    chunks: Keyspace,
    series: Keyspace,
    /// Each series under each of its tags (see [`keys::postings`]).
    postings: Keyspace,
    alerts: Keyspace,
    meta: Keyspace,
    /// Rollup rows by tier, series and start.
    rollups: Keyspace,
    /// The series of each rollup tier, for listings.
    rollup_series: Keyspace,
    /// Late data by tenant and time.
    late: Keyspace,
    shared: Mutex<Shared>,
    /// Most points that may wait for a sync; writes beyond are refused.
    head_limit: usize,
    /// What the syncs so far made durable; held for the whole sync, so syncs run one at a
    /// time.
    synced: Mutex<Synced>,
    /// The first sync sequence whose chunks are in the versioned format; chunks of earlier
    /// syncs are in the format of the releases before it.
    chunk_format_from: u64,
    /// The first write failure: fjall refuses every write after one, until reopened.
    failed: Mutex<Option<String>>,
    /// How long each tenant keeps its raw points (tier none) and each tier its windows,
    /// as their latest writes said.
    retentions: Mutex<BTreeMap<(TenantId, Option<String>), Duration>>,
    /// Series whose chunks compaction has not seen since they changed, each with the
    /// earliest time written since (every series at open: a restart looks at all once).
    dirty: Mutex<BTreeMap<u64, Nanos>>,
    /// Held while a series' chunks are rewritten (compaction, expiry), so neither undoes
    /// the other's.
    rewriting: Mutex<()>,
    /// Empties fjall's journal after a clean close. Last, so dropped after the database.
    trim: journal::Trim,
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
        // Sealed journals are deleted once every keyspace holding data in them has flushed
        // its memtable; a keyspace written little (meta, alerts) flushes late, so fjall's
        // default lets them pile up to 512 MiB. At 64 MiB it flushes those stragglers
        // sooner. (The active journal, up to 64 MB, fjall 3.1 keeps until it fills: it has
        // no public call to cut it short.)
        let db = Database::builder(dir)
            .max_journaling_size(JOURNALS_BYTES)
            .open()
            .map_err(storage)?;
        let keyspace = |name: &str| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(storage)
        };
        let (chunks, series, postings, alerts, meta) = (
            keyspace("chunks")?,
            keyspace("series")?,
            keyspace("postings")?,
            keyspace("alerts")?,
            keyspace("meta")?,
        );
        if meta.get(POSTINGS_BUILT).map_err(storage)?.is_none() {
            build_postings(&db, &series, &postings)?;
            // After the postings in the journal: a crash before it builds them again.
            meta.insert(POSTINGS_BUILT, []).map_err(storage)?;
        }
        let (rollups, rollup_series, late) = (
            keyspace("rollups")?,
            keyspace("rollup_series")?,
            keyspace("late")?,
        );
        // Ids continue after the highest one in the index.
        let mut next_id = 1;
        let mut dirty = BTreeMap::new();
        for kv in series.iter() {
            let value = kv.value().map_err(storage)?;
            let id = Indexed::decode(&value)?.id;
            next_id = next_id.max(id + 1);
            dirty.insert(id, Nanos::MIN);
        }
        // Closed with nothing left to compact: no series needs a look (a pass over every
        // chunk of a year's store would re-read it all after each restart).
        if meta.get(COMPACTED_AT_CLOSE).map_err(storage)?.is_some() {
            dirty.clear();
            meta.remove(COMPACTED_AT_CLOSE).map_err(storage)?;
            db.persist(PersistMode::SyncData).map_err(storage)?;
        }
        let seq = match meta.get(NEXT_SEQ).map_err(storage)? {
            Some(v) => decode_u64(&v)?,
            None => 0,
        };
        let chunk_format_from = match meta.get(CHUNK_FORMAT_FROM).map_err(storage)? {
            Some(v) => decode_u64(&v)?,
            None => {
                // Made durable by the first sync's journal write, before any chunk of it.
                meta.insert(CHUNK_FORMAT_FROM, seq.to_be_bytes())
                    .map_err(storage)?;
                seq
            }
        };
        let mut through = Reach::default();
        for kv in meta.prefix(THROUGH_PREFIX) {
            let (key, value) = kv.into_inner().map_err(storage)?;
            let (partition, lane) = decode_through_key(&key)?;
            through.note(&Through {
                partition,
                lane,
                next: decode_u64(&value)?,
            });
        }
        // Lanes a crash left behind their partition (their keys go at the next sync).
        through.settle();
        let mut retentions = BTreeMap::new();
        for kv in meta.prefix(RETENTION_PREFIX) {
            let (key, value) = kv.into_inner().map_err(storage)?;
            let scope = std::str::from_utf8(&key[RETENTION_PREFIX.len()..])
                .ok()
                .and_then(|s| s.split_once('\0'))
                .ok_or_else(|| StoreError::Corrupt(format!("retention key {key:?}")))?;
            let tier = (!scope.1.is_empty()).then(|| scope.1.to_owned());
            retentions.insert(
                (TenantId::new(scope.0), tier),
                Duration::from_secs(decode_u64(&value)?),
            );
        }
        Ok(Self {
            db,
            chunks,
            series,
            postings,
            alerts,
            meta,
            rollups,
            rollup_series,
            late,
            shared: Mutex::new(Shared {
                next_id,
                ..Shared::default()
            }),
            head_limit: HEAD_LIMIT,
            synced: Mutex::new(Synced { seq, through }),
            chunk_format_from,
            failed: Mutex::default(),
            retentions: Mutex::new(retentions),
            dirty: Mutex::new(dirty),
            rewriting: Mutex::default(),
            trim: journal::Trim::new(dir),
        })
    }

    /// Sets how many points may wait for a sync before writes are refused.
    #[must_use]
    pub fn with_head_limit(mut self, points: usize) -> Self {
        self.head_limit = points;
        self
    }

    /// Deletes `tenant`'s points, alerts and late data older than `before`; returns how
    /// many points.
    ///
    /// # Errors
    /// On storage failure.
    pub fn expire(&self, tenant: &TenantId, before: Nanos) -> Result<u64, StoreError> {
        let mut removed = 0;
        for series in self.series(tenant, &SeriesFilter::default())? {
            let key = keys::series(tenant, &series);
            let _rewriting = lock(&self.rewriting);
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
                removed += self.decode_chunk(&chunk_key, &value)?.len() as u64;
                batch.remove(&self.chunks, chunk_key);
            }
            // Chunks ending after it keep their newest point, but may start before it.
            let later = keys::chunk(id, before, 0)..=keys::chunk(id, Nanos::MAX, u64::MAX);
            let kept = self.chunks.range(later).next().is_some();
            let straddling = keys::chunk(id, before, 0)
                ..=keys::chunk(id, before.saturating_add(chunk::MAX_SPAN), u64::MAX);
            for kv in self.chunks.range(straddling) {
                let (chunk_key, value) = kv.into_inner().map_err(storage)?;
                let samples = self.decode_chunk(&chunk_key, &value)?;
                let rest: Vec<&Sample> = samples.iter().filter(|(ts, _)| *ts >= before).collect();
                if rest.len() < samples.len() {
                    removed += (samples.len() - rest.len()) as u64;
                    let bytes = if self.is_legacy(&chunk_key) {
                        chunk::encode_legacy(&rest)
                    } else {
                        chunk::encode(&rest)
                    };
                    batch.insert(&self.chunks, chunk_key, bytes);
                }
            }
            let syncing = shared.syncing.as_ref().is_some_and(|h| h.has(id));
            if !kept && !shared.head.has(id) && !syncing {
                for posting in keys::postings(&key).unwrap_or_default() {
                    batch.remove(&self.postings, posting);
                }
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
        for kv in self
            .late
            .range(late_prefix(tenant, Nanos::MIN)..late_prefix(tenant, before))
        {
            batch.remove(&self.late, kv.key().map_err(storage)?);
        }
        self.durably(batch)?;
        Ok(removed)
    }

    /// Deletes the windows of `tenant`'s tier `tier` starting before `before`; how many.
    ///
    /// # Errors
    /// On storage failure.
    pub fn expire_tier(
        &self,
        tenant: &TenantId,
        tier: &str,
        before: Nanos,
    ) -> Result<u64, StoreError> {
        let scope = tier_scope(tenant, tier);
        let mut removed = 0;
        let mut after = None;
        loop {
            let page = list_series(
                &self.rollup_series,
                &[],
                &scope,
                &SeriesFilter::default(),
                after.as_ref(),
                super::SERIES_BATCH,
            )?;
            let mut batch = self.db.batch();
            for series in &page.series {
                let gone =
                    rollup_key(&scope, series, Nanos::MIN)..rollup_key(&scope, series, before);
                for kv in self.rollups.range(gone) {
                    batch.remove(&self.rollups, kv.key().map_err(storage)?);
                    removed += 1;
                }
                let from = rollup_key(&scope, series, before);
                let mut to = keys::series(&scope, series);
                to.extend_from_slice(&[0xff; 9]);
                if self.rollups.range(from..to).next().is_none() {
                    batch.remove(&self.rollup_series, keys::series(&scope, series));
                }
            }
            self.commit_for_sync(batch)?;
            if !page.more {
                break;
            }
            after = page.series.last().cloned();
        }
        Ok(removed)
    }

    /// Remembers how long `tenant` keeps its raw points (tier none) or a tier's windows,
    /// for [`Store::expire_due`]; kept in the meta keyspace (made durable by the next sync)
    /// so a restart expires a tenant that no longer writes.
    fn note_retention(
        &self,
        tenant: &TenantId,
        tier: Option<&str>,
        retention: Retention,
    ) -> Result<(), StoreError> {
        let key = (tenant.clone(), tier.map(str::to_owned));
        let mut known = lock(&self.retentions);
        let keep = match retention {
            Retention::For(keep) => Some(keep),
            Retention::Forever => None,
        };
        if known.get(&key).copied() == keep {
            return Ok(());
        }
        let meta_key = retention_key(tenant, tier);
        match keep {
            Some(keep) => {
                self.meta
                    .insert(meta_key, keep.as_secs().to_be_bytes())
                    .map_err(|e| self.note_failure(e))?;
                known.insert(key, keep);
            }
            None => {
                self.meta
                    .remove(meta_key)
                    .map_err(|e| self.note_failure(e))?;
                known.remove(&key);
            }
        }
        Ok(())
    }

    /// The index entry of the series with key `series`, if it is indexed.
    fn lookup(&self, shared: &Shared, series: &[u8]) -> Result<Option<Indexed>, StoreError> {
        if let Some(indexed) = shared.known.get(series) {
            return Ok(Some(*indexed));
        }
        self.series
            .get(series)
            .map_err(storage)?
            .map(|v| Indexed::decode(&v))
            .transpose()
    }

    /// As [`Self::lookup`], remembering an entry read from the index.
    fn resolve(&self, shared: &mut Shared, series: &[u8]) -> Result<Option<Indexed>, StoreError> {
        if let Some(indexed) = shared.known.get(series) {
            return Ok(Some(*indexed));
        }
        let indexed = self.lookup(shared, series)?;
        if let Some(indexed) = indexed {
            shared.known.insert(series.to_vec(), indexed);
        }
        Ok(indexed)
    }

    /// The id of the series with key `series`, if it is indexed.
    fn id_of(&self, shared: &Shared, series: &[u8]) -> Result<Option<u64>, StoreError> {
        Ok(self.lookup(shared, series)?.map(|i| i.id))
    }

    /// Checks that every field of `point` can be stored (key length, type), leaving each
    /// field's series key and index entry (when it has one) in `keys`.
    fn check_point(
        &self,
        shared: &mut Shared,
        tenant: &TenantId,
        point: &Point,
        keys: &mut FieldKeys,
    ) -> Result<(), PointError> {
        keys.clear();
        for field in &point.fields {
            let key = keys.next_key();
            keys::series_of_into(key, tenant, point, &field.key);
            if key.len() > keys::MAX_SERIES_KEY_BYTES {
                return Err(PointError::KeyTooLong {
                    field: field.key.to_string(),
                    bytes: key.len(),
                    limit: keys::MAX_SERIES_KEY_BYTES,
                });
            }
            // A failing index read is not the point's fault: treat the series as unknown
            // here, and let the insert report the storage failure.
            let indexed = self.resolve(shared, key).ok().flatten();
            keys.set_indexed(indexed);
        }
        keys.check_types(point)
    }

    /// Indexes the new series `key` with values of type `ty`. The index entry is committed
    /// at once (visible to listings) and made durable by the sync that writes the series'
    /// first chunk: the journal is ordered, so no chunk survives a crash without its entry.
    fn insert_series(
        &self,
        shared: &mut Shared,
        key: &[u8],
        ty: FieldType,
    ) -> Result<Indexed, StoreError> {
        // Another field of the same write may have indexed it since the check.
        if let Some(indexed) = shared.known.get(key) {
            return Ok(*indexed);
        }
        let indexed = Indexed {
            id: shared.next_id,
            ty: Some(ty),
        };
        let postings = keys::postings(key)
            .ok_or_else(|| StoreError::Corrupt(format!("series key {key:?}")))?;
        let mut batch = self.db.batch();
        batch.insert(&self.series, key, indexed.encode());
        for posting in postings {
            batch.insert(&self.postings, posting, []);
        }
        batch.commit().map_err(|e| self.note_failure(e))?;
        shared.next_id += 1;
        shared.known.insert(key.to_vec(), indexed);
        Ok(indexed)
    }

    /// Commits `batch` and syncs the journal.
    fn durably(&self, batch: fjall::OwnedWriteBatch) -> Result<(), StoreError> {
        batch
            .commit()
            .and_then(|()| self.db.persist(PersistMode::SyncData))
            .map_err(|e| self.note_failure(e))
    }

    /// Every record under `prefix` of the keyspace beside the data's (where the control
    /// plane keeps tenants and the audit log), in key order.
    ///
    /// # Errors
    /// On storage failure.
    pub fn records(&self, prefix: &[u8]) -> Result<Vec<Record>, StoreError> {
        self.meta
            .prefix(prefix)
            .map(|kv| {
                let (key, value) = kv.into_inner().map_err(storage)?;
                Ok((key.to_vec(), value.to_vec()))
            })
            .collect()
    }

    /// Up to `limit` records under `prefix` with keys after `after`, in key order.
    ///
    /// # Errors
    /// On storage failure.
    pub fn records_after(
        &self,
        prefix: &[u8],
        after: &[u8],
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        for kv in self
            .meta
            .range::<&[u8], _>((Bound::Excluded(after), Bound::Unbounded))
        {
            let (key, value) = kv.into_inner().map_err(storage)?;
            if !key.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((key.to_vec(), value.to_vec()));
        }
        Ok(out)
    }

    /// The last record under `prefix`, if any.
    ///
    /// # Errors
    /// On storage failure.
    pub fn last_record(&self, prefix: &[u8]) -> Result<Option<Record>, StoreError> {
        match self.meta.prefix(prefix).next_back() {
            Some(kv) => {
                let (key, value) = kv.into_inner().map_err(storage)?;
                Ok(Some((key.to_vec(), value.to_vec())))
            }
            None => Ok(None),
        }
    }

    /// Writes `puts` and removes `removes` (records of [`EmbeddedStore::records`]) at once,
    /// durably: all or none.
    ///
    /// # Errors
    /// On storage failure; nothing was written then.
    pub fn write_records(&self, puts: &[Record], removes: &[Vec<u8>]) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        for (key, value) in puts {
            batch.insert(&self.meta, key.clone(), value.clone());
        }
        for key in removes {
            batch.remove(&self.meta, key.clone());
        }
        self.durably(batch)
    }

    /// Commits `batch` at once (visible to reads), durable with the next [`Store::sync`]:
    /// that one syncs the journal even when no points wait.
    fn commit_for_sync(&self, batch: fjall::OwnedWriteBatch) -> Result<(), StoreError> {
        batch.commit().map_err(|e| self.note_failure(e))?;
        lock(&self.shared).unsynced = true;
        Ok(())
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

    /// Every sample of `series` held in chunks and head, before the read path folds rewrites
    /// of one timestamp into one: what a check for points stored twice counts.
    ///
    /// # Errors
    /// On storage failure.
    pub fn stored_samples(
        &self,
        tenant: &TenantId,
        series: &SeriesKey,
    ) -> Result<Vec<Sample>, StoreError> {
        let all = Nanos::MIN..Nanos::MAX;
        let (id, mut out) = {
            let shared = lock(&self.shared);
            let Some(id) = self.id_of(&shared, &keys::series(tenant, series))? else {
                return Ok(Vec::new());
            };
            let syncing = shared.syncing.iter().flat_map(|h| h.range(id, &all));
            let head: Vec<Sample> = syncing
                .chain(shared.head.range(id, &all))
                .cloned()
                .collect();
            (id, head)
        };
        for chunk in self.chunks_in(id, &all) {
            out.extend(chunk?.2);
        }
        out.sort_by_key(|(ts, _)| *ts);
        Ok(out)
    }

    /// Whether the chunk at `key` was written before chunks had a versioned format.
    fn is_legacy(&self, key: &[u8]) -> bool {
        keys::chunk_time_seq(key).is_some_and(|(_, seq)| seq < self.chunk_format_from)
    }

    /// The samples of the chunk at `key`, in the format its sync wrote.
    fn decode_chunk(&self, key: &[u8], value: &[u8]) -> Result<Vec<Sample>, StoreError> {
        if self.is_legacy(key) {
            chunk::decode_legacy(value)
                .ok_or_else(|| StoreError::Corrupt(format!("legacy chunk {key:?}")))
        } else {
            chunk::decode(value).map_err(|e| StoreError::Corrupt(format!("chunk {key:?}: {e}")))
        }
    }

    /// Chunks of series `id` that may hold points in `range`, in the order of their last
    /// times, with that time and their sync sequence.
    fn chunks_in(
        &self,
        id: u64,
        range: &Range<Nanos>,
    ) -> impl Iterator<Item = Result<(Nanos, u64, Vec<Sample>), StoreError>> {
        self.chunk_entries(id, range).map(|entry| {
            let (key, value, last, seq) = entry?;
            Ok((last, seq, self.decode_chunk(&key, &value)?))
        })
    }

    /// The stored entries of [`EmbeddedStore::chunks_in`]: key, encoded chunk, last time
    /// and sync sequence, as of now, but for chunks seen to start after the range
    /// ([`chunk::first_time`]). A snapshot: `Keyspace::range` reads the latest entries as
    /// it goes, so a compaction committing meanwhile could replace chunks behind it with
    /// merged ones before it (the storage bench's q3 lost points so).
    fn chunk_entries(
        &self,
        id: u64,
        range: &Range<Nanos>,
    ) -> impl Iterator<Item = Result<(fjall::Slice, fjall::Slice, Nanos, u64), StoreError>> {
        // A chunk spans at most MAX_SPAN, so one ending past `end + MAX_SPAN` starts after it.
        let last = range.end.saturating_add(chunk::MAX_SPAN);
        self.db
            .snapshot()
            .range(
                &self.chunks,
                keys::chunk(id, range.start, 0)..=keys::chunk(id, last, u64::MAX),
            )
            .map(|kv| {
                let (key, value) = kv.into_inner().map_err(storage)?;
                let (last, seq) = keys::chunk_time_seq(&key)
                    .ok_or_else(|| StoreError::Corrupt(format!("chunk key {key:?}")))?;
                Ok((key, value, last, seq))
            })
            .filter(|entry| match entry {
                Ok((key, value, _, _)) => {
                    self.is_legacy(key)
                        || chunk::first_time(value).is_none_or(|first| first < range.end)
                }
                Err(_) => true,
            })
    }

    /// [`Store::read_numbers`]: columns copied straight from each chunk while times rise
    /// through the chunks and then the head (every series written in order, once
    /// compaction has merged a replay's duplicates), a chunk that overlaps the last few
    /// merged into them (points delivered late); ranked and merged as [`Store::read_page`]
    /// does from the first chunk that overlaps more. None where a value is not a number.
    fn numbers(
        &self,
        tenant: &TenantId,
        series: &SeriesKey,
        range: &Range<Nanos>,
        max: usize,
    ) -> Result<Option<NumberPage>, StoreError> {
        let cap = max.saturating_add(1);
        // The head first, as `read_page` reads it: a sync finishing meanwhile moves its
        // points into chunks read after, which then rank below the head's copies.
        let mut head: Vec<(Nanos, u64, f64)> = Vec::new();
        let id = {
            let shared = lock(&self.shared);
            let Some(id) = self.id_of(&shared, &keys::series(tenant, series))? else {
                return Ok(Some(NumberPage::default()));
            };
            let syncing = shared.syncing.iter().flat_map(|h| h.range(id, range));
            let sources = syncing
                .map(|s| (s, u64::MAX - 1))
                .chain(shared.head.range(id, range).map(|s| (s, u64::MAX)));
            for ((ts, v), rank) in sources {
                let Some(v) = v.as_f64() else {
                    return Ok(None);
                };
                head.push((*ts, rank, v));
            }
            id
        };
        let mut merge = Merge::with_capacity(cap);
        let mut decoder = chunk::NumberDecoder::default();
        let mut entries = self.chunk_entries(id, range).peekable();
        while let Some(entry) = entries.next() {
            let (key, value, _, seq) = entry?;
            if self.is_legacy(&key) {
                return Ok(None);
            }
            let Some((times, values)) = decoder
                .decode(&value)
                .map_err(|e| StoreError::Corrupt(format!("chunk {key:?}: {e}")))?
            else {
                return Ok(None);
            };
            let from = times.partition_point(|t| *t < range.start);
            let to = times.partition_point(|t| *t < range.end);
            merge.add(&times[from..to], &values[from..to], seq);
            if merge.len() <= max {
                continue;
            }
            // Chunks come by their last time; one ending at `last` starts after
            // `last - MAX_SPAN`, so every time before that frontier is final.
            let frontier = match entries.peek() {
                Some(Ok((_, _, last, _))) => last.saturating_sub(chunk::MAX_SPAN),
                _ => Nanos::MAX,
            };
            if merge.final_before(frontier, cap) > max {
                break;
            }
        }
        merge.add_head(head);
        Ok(Some(merge.finish(max)))
    }
}

/// The points of [`EmbeddedStore::numbers`]: columns while times rise (a chunk that
/// overlaps their end merged into it), else ranked triples (time, rank, value) merged as
/// [`settle`] does.
#[derive(Default)]
struct Merge {
    times: Vec<Nanos>,
    values: Vec<f64>,
    /// Where each run of one sync's points starts in the columns, and that sync's sequence.
    runs: Vec<(usize, u64)>,
    ranked: Option<Vec<(Nanos, u64, f64)>>,
}

impl Merge {
    /// Most points the columns are sized for up front: a page's worth for the reads of
    /// aggregations (growing them as chunks came copied each point again, twice).
    const RESERVED: usize = 1 << 14;

    /// A chunk overlapping the columns' last points is merged into them while those are at
    /// most this many, or four times the chunk's: a point then costs a few steps of a
    /// merge, where ranking every point of the series and sorting them cost a fifth of an
    /// aggregation of 1,000 series whose syncs had taken a few points late.
    const MERGED_TAIL: usize = 64;

    /// A merge with room for `cap` points in its columns (up to [`Self::RESERVED`]).
    fn with_capacity(cap: usize) -> Self {
        let cap = cap.min(Self::RESERVED);
        Self {
            times: Vec::with_capacity(cap),
            values: Vec::with_capacity(cap),
            ..Self::default()
        }
    }

    /// Adds a chunk's points in the range, in order, of sync `seq`.
    fn add(&mut self, times: &[Nanos], values: &[f64], seq: u64) {
        let Some(first) = times.first() else {
            return;
        };
        if self.ranked.is_none() {
            if self.times.last().is_none_or(|last| last < first) {
                self.runs.push((self.times.len(), seq));
                self.times.extend_from_slice(times);
                self.values.extend_from_slice(values);
                return;
            }
            let from = self.times.partition_point(|t| t < first);
            if self.times.len() - from <= Self::MERGED_TAIL.max(4 * times.len()) {
                self.merge_tail(from, times, values, seq);
                return;
            }
        }
        let ranked = self.ranked();
        ranked.extend(times.iter().zip(values).map(|(t, v)| (*t, seq, *v)));
    }

    /// Merges a chunk of sync `seq` into the columns from `from` on (where its first time
    /// falls): of one time in both, the value of the later sync wins, and of one sync the
    /// chunk's, read later, as [`settle`] ranks them.
    fn merge_tail(&mut self, from: usize, times: &[Nanos], values: &[f64], seq: u64) {
        let old_times = self.times.split_off(from);
        let old_values = self.values.split_off(from);
        // The sync of each point taken out, from the runs that held them.
        let run = self.runs.partition_point(|(start, _)| *start <= from) - 1;
        let mut old_seqs = Vec::with_capacity(old_times.len());
        for (i, (start, run_seq)) in self.runs.iter().enumerate().skip(run) {
            let end = self.runs.get(i + 1).map_or(from + old_times.len(), |r| r.0);
            old_seqs.extend(std::iter::repeat_n(*run_seq, end - from.max(*start)));
        }
        self.runs.truncate(if self.runs[run].0 < from {
            run + 1
        } else {
            run
        });
        let (mut i, mut j) = (0, 0);
        while i < old_times.len() || j < times.len() {
            let older = match (old_times.get(i), times.get(j)) {
                (Some(old), Some(new)) => old.cmp(new),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match older {
                std::cmp::Ordering::Less => {
                    self.push(old_times[i], old_values[i], old_seqs[i]);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    self.push(times[j], values[j], seq);
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    if old_seqs[i] > seq {
                        self.push(old_times[i], old_values[i], old_seqs[i]);
                    } else {
                        self.push(times[j], values[j], seq);
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
    }

    /// Appends one point of sync `seq` to the columns.
    fn push(&mut self, time: Nanos, value: f64, seq: u64) {
        if self.runs.last().is_none_or(|(_, last)| *last != seq) {
            self.runs.push((self.times.len(), seq));
        }
        self.times.push(time);
        self.values.push(value);
    }

    /// Adds the head's points (rank above every chunk's), in the order written.
    fn add_head(&mut self, head: Vec<(Nanos, u64, f64)>) {
        let rising = head.windows(2).all(|w| w[0].0 < w[1].0);
        let after = match (head.first(), self.times.last()) {
            (Some(first), Some(last)) => first.0 > *last,
            _ => true,
        };
        if self.ranked.is_none() && rising && after {
            self.times.extend(head.iter().map(|(t, _, _)| *t));
            self.values.extend(head.iter().map(|(_, _, v)| *v));
        } else {
            self.ranked().extend(head);
        }
    }

    /// The ranked triples, made from the columns on first use.
    fn ranked(&mut self) -> &mut Vec<(Nanos, u64, f64)> {
        self.ranked.get_or_insert_with(|| {
            let mut out = Vec::with_capacity(self.times.len());
            for (i, (start, seq)) in self.runs.iter().enumerate() {
                let end = self.runs.get(i + 1).map_or(self.times.len(), |c| c.0);
                out.extend((*start..end).map(|j| (self.times[j], *seq, self.values[j])));
            }
            out
        })
    }

    fn len(&self) -> usize {
        self.ranked.as_ref().map_or(self.times.len(), Vec::len)
    }

    /// How many points are known to come before `frontier` (settling the ranked ones).
    fn final_before(&mut self, frontier: Nanos, cap: usize) -> usize {
        match &mut self.ranked {
            None => self.times.partition_point(|t| *t < frontier),
            Some(found) => {
                settle(found, cap);
                found.partition_point(|(ts, _, _)| *ts < frontier)
            }
        }
    }

    /// The page of up to `max` points, and the time of the next.
    fn finish(mut self, max: usize) -> NumberPage {
        if let Some(mut found) = self.ranked.take() {
            settle(&mut found, max.saturating_add(1));
            (self.times, self.values) = found.into_iter().map(|(t, _, v)| (t, v)).unzip();
        }
        let next = self.times.get(max).copied();
        self.times.truncate(max);
        self.values.truncate(max);
        NumberPage {
            times: self.times,
            values: self.values,
            next,
        }
    }
}

/// A clean close writes every memtable to tables and empties the journal (see
/// [`journal`]). With nothing left to compact, it also says so, so the next open skips the
/// pass over every series. Dropped without it (a crash, or series left to compact), the
/// next open looks at them all.
impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        if self.failure().is_some() {
            return;
        }
        if lock(&self.dirty).is_empty() {
            // Durable with the compactions before it: the journal is ordered.
            let marked = self
                .meta
                .insert(COMPACTED_AT_CLOSE, [])
                .and_then(|()| self.db.persist(PersistMode::SyncData));
            if let Err(error) = marked {
                tracing::warn!(%error, "Could not note a clean close; the next start re-checks every series for compaction.");
            }
        }
        if journal::flush_all(&self.db) {
            self.trim.arm();
        } else {
            tracing::warn!(
                "Could not write the store's memtables to tables at close; the next start replays its journal (no data is lost)."
            );
        }
    }
}

/// Notes that series `id` changed from time `from` on.
fn mark_dirty(dirty: &mut BTreeMap<u64, Nanos>, id: u64, from: Nanos) {
    let earliest = dirty.entry(id).or_insert(from);
    *earliest = (*earliest).min(from);
}

/// Compaction: see [`compaction`].
impl EmbeddedStore {
    /// Compacts series `id` where it changed from `from` on: rewrites the first clear
    /// group of its chunks from the one holding its last points before `from` (the tail
    /// the new points may fill). Returns what it did, and where to go on from when chunks
    /// after the group wait still.
    fn compact_series(
        &self,
        id: u64,
        from: Nanos,
    ) -> Result<(Compacted, Option<Nanos>), StoreError> {
        let _rewriting = lock(&self.rewriting);
        let series_start = keys::chunk(id, Nanos::MIN, 0).to_vec();
        let series_end = keys::chunk(id, Nanos::MAX, u64::MAX).to_vec();
        let before = |key: &[u8]| -> Result<Option<Vec<u8>>, StoreError> {
            match self
                .chunks
                .range(series_start.clone()..key.to_vec())
                .next_back()
            {
                Some(kv) => Ok(Some(kv.key().map_err(storage)?.to_vec())),
                None => Ok(None),
            }
        };
        let from_key = keys::chunk(id, from, 0).to_vec();
        let mut start = before(&from_key)?.unwrap_or(from_key);
        let mut width = COMPACTION_WINDOW;
        let mut done = Compacted::default();
        loop {
            let (window, complete) = self.chunk_window(&start, &series_end, width, &mut done)?;
            // A group of one chunk left alone gains nothing and goes nowhere: read more.
            let clear = compaction::clear_prefix(&window, complete).filter(|&k| complete || k > 1);
            let Some(k) = clear else {
                if complete {
                    return Ok((done, None));
                }
                width = width.saturating_mul(4);
                continue;
            };
            let group = &window[..k];
            // No chunk before the group may end inside it; the one just before ends last.
            let (first, end) = compaction::span(group);
            if let Some(key) = before(&start)? {
                let (last, _) = keys::chunk_time_seq(&key)
                    .ok_or_else(|| StoreError::Corrupt(format!("chunk key {key:?}")))?;
                if last >= first {
                    start = key;
                    continue;
                }
            }
            if let Some(rewrite) = compaction::rewrite(group) {
                done.add(self.commit_rewrite(id, group, &rewrite)?);
            }
            return Ok((done, (!complete).then(|| end.saturating_add(1))));
        }
    }

    /// Up to `width` chunks from key `start` to `end`, decoded, counting the bytes read
    /// into `done`; and whether they are all there are.
    fn chunk_window(
        &self,
        start: &[u8],
        end: &[u8],
        width: usize,
        done: &mut Compacted,
    ) -> Result<(Vec<Stored>, bool), StoreError> {
        let mut window = Vec::new();
        for kv in self.chunks.range(start.to_vec()..=end.to_vec()) {
            if window.len() == width {
                return Ok((window, false));
            }
            let (key, value) = kv.into_inner().map_err(storage)?;
            done.read += value.len() as u64;
            let (_, seq) = keys::chunk_time_seq(&key)
                .ok_or_else(|| StoreError::Corrupt(format!("chunk key {key:?}")))?;
            window.push(Stored {
                samples: self.decode_chunk(&key, &value)?,
                legacy: self.is_legacy(&key),
                key: key.to_vec(),
                seq,
            });
        }
        Ok((window, true))
    }

    /// Replaces `group`'s chunks of series `id` by `rewrite`'s, in one batch, durable with
    /// the next sync (a crash before leaves the group as it was).
    fn commit_rewrite(
        &self,
        id: u64,
        group: &[Stored],
        rewrite: &compaction::Rewrite,
    ) -> Result<Compacted, StoreError> {
        // The merged chunks rank as the group's newest sync did.
        let seq = group.iter().map(|c| c.seq).max().unwrap_or(0);
        let new: Vec<([u8; 24], Vec<u8>)> = rewrite
            .chunks
            .iter()
            .map(|r| {
                let points: Vec<&Sample> = rewrite.samples[r.clone()].iter().collect();
                let last = points.last().map_or(0, |s| s.0);
                (keys::chunk(id, last, seq), chunk::encode(&points))
            })
            .collect();
        let mut batch = self.db.batch();
        for &i in &rewrite.replaced {
            let key = &group[i].key;
            if !new.iter().any(|(k, _)| k[..] == key[..]) {
                batch.remove(&self.chunks, key.clone());
            }
        }
        let mut written = 0;
        for (key, bytes) in new {
            written += bytes.len() as u64;
            batch.insert(&self.chunks, key, bytes);
        }
        self.commit_for_sync(batch)?;
        Ok(Compacted {
            written,
            replaced: rewrite.replaced.len() as u64,
            chunks: rewrite.chunks.len() as u64,
            duplicates: rewrite.duplicates as u64,
            ..Compacted::default()
        })
    }
}

impl Store for EmbeddedStore {
    fn compact(&self, budget: u64) -> Result<Compacted, StoreError> {
        let mut done = Compacted::default();
        while done.read + done.written < budget {
            let Some((id, from)) = lock(&self.dirty).pop_first() else {
                break;
            };
            match self.compact_series(id, from) {
                Ok((did, next)) => {
                    if let Some(next) = next {
                        mark_dirty(&mut lock(&self.dirty), id, next);
                    }
                    done.add(did);
                }
                Err(error) => {
                    mark_dirty(&mut lock(&self.dirty), id, from);
                    return Err(error);
                }
            }
        }
        done.more = !lock(&self.dirty).is_empty();
        Ok(done)
    }

    fn write(&self, batches: &[Batch<'_>], through: Through) -> Result<Vec<Refused>, StoreError> {
        for batch in batches {
            self.note_retention(batch.tenant, None, batch.retention)?;
        }
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
        let mut refused = Vec::new();
        let mut keys = FieldKeys::default();
        // The samples of a run of points of the same keys, per field, go to the head
        // together, once the run ends.
        let mut run: Vec<(u64, Vec<Sample>)> = Vec::new();
        let flush = |head: &mut Head, run: &mut Vec<(u64, Vec<Sample>)>| {
            for (id, samples) in run.iter_mut() {
                head.extend(*id, samples.drain(..));
            }
        };
        // Where a point of a batch in columns only is made, its tags and fields keeping
        // their room: a new point for each run cost 4% of remote-write ingest (perf).
        let mut scratch = Point::default();
        for (b, batch) in batches.iter().enumerate() {
            let Batch { tenant, points, .. } = *batch;
            let (made, columns) = (points.made(), points.columns());
            // The last point taken, when its keys are built and indexed in `keys`, and its
            // shape in the columns.
            let mut known: Option<(usize, Option<Shape<'_>>)> = None;
            for i in 0..points.len() {
                let shaped_as = columns.and_then(|c| c.shape(i));
                let shape = shaped_as.map(|(s, _)| s);
                // A point of the same keys as the last one taken finds them built and
                // indexed (each was, when that point was written): building and hashing
                // them for every sample of a remote-written series was 6% of its ingest.
                // In the columns, a point of the same shape has the same keys and field
                // types too, so its types pass as the last one's did, and the point itself
                // is neither read nor made: comparing points, whose tags had left the
                // cache since ingest made them, was 8% of remote-write ingest (perf).
                let shaped = known.and_then(|(_, k)| Some(k? == shape?));
                let again = keys.all_indexed()
                    && shaped.unwrap_or_else(|| {
                        known.is_some_and(|(k, _)| made.is_some_and(|m| m[k].same_keys(&m[i])))
                    });
                if !again {
                    flush(&mut shared.head, &mut run);
                }
                let from_columns = columns
                    .zip(shaped_as)
                    .filter(|_| again && shaped == Some(true));
                if from_columns
                    .is_some_and(|(c, (s, values))| sampled(c, (i, s, values), &keys, &mut run))
                {
                    known = Some((i, shape));
                    continue;
                }
                // All of a point's fields are checked before any is written: a point is
                // stored whole or refused whole.
                let checked = points
                    .point(i, &mut scratch)
                    .map_err(PointError::Unreadable)
                    .and_then(|point| {
                        if again {
                            keys.check_types(point)?;
                        } else {
                            self.check_point(&mut shared, tenant, point, &mut keys)?;
                        }
                        Ok(point)
                    });
                known = checked.is_ok().then_some((i, shape));
                let point = match checked {
                    Ok(point) => point,
                    Err(reason) => {
                        refused.push(Refused {
                            batch: b,
                            point: i,
                            reason,
                        });
                        continue;
                    }
                };
                if run.len() < point.fields.len() {
                    run.resize_with(point.fields.len(), Default::default);
                }
                for (f, field) in point.fields.iter().enumerate() {
                    let id = match keys.indexed[f] {
                        Some(indexed) => indexed.id,
                        None => {
                            let ty = field.value.field_type();
                            let indexed = self.insert_series(&mut shared, &keys.keys[f], ty)?;
                            keys.indexed[f] = Some(indexed);
                            indexed.id
                        }
                    };
                    run[f].0 = id;
                    run[f].1.push((point.timestamp, field.value.clone()));
                }
            }
        }
        flush(&mut shared.head, &mut run);
        shared.head.reach(&through);
        Ok(refused)
    }

    fn field_type(
        &self,
        tenant: &TenantId,
        point: &Point,
        field: &str,
    ) -> Result<Option<FieldType>, StoreError> {
        let mut key = Vec::new();
        keys::series_of_into(&mut key, tenant, point, field);
        let shared = lock(&self.shared);
        Ok(self.lookup(&shared, &key)?.and_then(|i| i.ty))
    }

    fn sync(&self) -> Result<Vec<Through>, StoreError> {
        let mut synced = lock(&self.synced);
        let head = {
            let mut shared = lock(&self.shared);
            if shared.head.is_empty() && shared.states.is_empty() && !shared.unsynced {
                return Ok(synced.through());
            }
            shared.unsynced = false;
            let head = Arc::new(std::mem::take(&mut shared.head));
            shared.syncing = Some(head.clone());
            (head, std::mem::take(&mut shared.states))
        };
        let (head, states) = head;
        let seq = synced.seq;
        let mut batch = self.db.batch();
        for (p, state) in &states {
            let mut value = state.next.to_be_bytes().to_vec();
            value.extend_from_slice(&state.bytes);
            batch.insert(&self.meta, state_key(*p), value);
        }
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
        // In the same atomic batch as the chunks: after a crash, the offsets say exactly
        // which records' points are in. Lanes no longer ahead of their partition go.
        let mut through = synced.through.clone();
        through.absorb(head.through());
        for (p, tenant) in through.settle() {
            batch.remove(&self.meta, through_key(p, Some(&tenant)));
        }
        for t in head.through().iter() {
            if let Some(next) = through.get(&t) {
                batch.insert(
                    &self.meta,
                    through_key(t.partition, t.lane.as_ref()),
                    next.to_be_bytes(),
                );
            }
        }
        let result = self.durably(batch);
        let mut shared = lock(&self.shared);
        shared.syncing = None;
        match result {
            Ok(()) => {
                let mut dirty = lock(&self.dirty);
                for (id, samples) in head.series() {
                    let first = samples.iter().map(|s| s.0).min().unwrap_or(Nanos::MAX);
                    mark_dirty(&mut dirty, id, first);
                }
                synced.seq = seq + 1;
                synced.through = through;
                Ok(synced.through())
            }
            // Not durable: back into the head for the next sync to retry.
            Err(error) => {
                shared.head.absorb(Arc::unwrap_or_clone(head));
                for (p, state) in states {
                    // A state saved meanwhile is newer.
                    shared.states.entry(p).or_insert(state);
                }
                shared.unsynced = true;
                Err(error)
            }
        }
    }

    fn checkpointed(&self) -> Result<Vec<Through>, StoreError> {
        Ok(lock(&self.synced).through())
    }

    fn series_page(
        &self,
        tenant: &TenantId,
        filter: &SeriesFilter,
        after: Option<&SeriesKey>,
        limit: usize,
    ) -> Result<SeriesPage, StoreError> {
        match filter.tags.first() {
            Some((key, value)) => {
                let prefix = keys::posting_prefix(tenant.as_str(), key, value);
                list_series(&self.postings, &prefix, tenant, filter, after, limit)
            }
            None => list_series(&self.series, &[], tenant, filter, after, limit),
        }
    }

    /// Chunk bytes by the tenant of their series, rollup rows by tenant and tier (points
    /// not synced yet count once they are).
    fn usage(&self) -> Result<Option<Vec<Usage>>, StoreError> {
        let corrupt = |what: &str, key: &[u8]| StoreError::Corrupt(format!("{what} key {key:?}"));
        // Chunks are keyed by series id: the index says whose each id is.
        let mut tenants: Vec<String> = Vec::new();
        let mut whose: foldhash::HashMap<u64, usize> = foldhash::HashMap::default();
        for kv in self.series.iter() {
            let (key, value) = kv.into_inner().map_err(storage)?;
            let tenant = keys::tenant(&key).ok_or_else(|| corrupt("series", &key))?;
            // The index is in key order: a tenant's series are together.
            if tenants.last().is_none_or(|t| t != tenant) {
                tenants.push(tenant.to_owned());
            }
            whose.insert(Indexed::decode(&value)?.id, tenants.len() - 1);
        }
        let mut bytes: BTreeMap<(String, Option<String>), u64> = BTreeMap::new();
        let mut raw = vec![0u64; tenants.len()];
        for kv in self.chunks.iter() {
            let (key, value) = kv.into_inner().map_err(storage)?;
            let id = decode_u64(key.get(..8).ok_or_else(|| corrupt("chunk", &key))?)?;
            // A series expired meanwhile has no index entry: its chunks go with it.
            if let Some(&i) = whose.get(&id) {
                raw[i] = raw[i].saturating_add((key.len() + value.len()) as u64);
            }
        }
        for (tenant, raw) in tenants.into_iter().zip(raw) {
            *bytes.entry((tenant, None)).or_default() += raw;
        }
        for kv in self.rollups.iter() {
            let (key, value) = kv.into_inner().map_err(storage)?;
            let (tenant, tier) = keys::tenant(&key)
                .and_then(|scope| scope.split_once('\0'))
                .ok_or_else(|| corrupt("rollup", &key))?;
            let total = bytes
                .entry((tenant.to_owned(), Some(tier.to_owned())))
                .or_default();
            *total = total.saturating_add((key.len() + value.len()) as u64);
        }
        Ok(Some(
            bytes
                .into_iter()
                .map(|((tenant, tier), bytes)| Usage {
                    tenant: TenantId::new(&tenant),
                    tier,
                    bytes,
                })
                .collect(),
        ))
    }

    fn read_page(
        &self,
        tenant: &TenantId,
        series: &SeriesKey,
        range: Range<Nanos>,
        max: usize,
    ) -> Result<ReadPage, StoreError> {
        // (time, rank, value): ranks order the sources of one time (chunks by sync, then
        // the syncing head, then the head), and the highest wins. Collected, then sorted
        // once: a map insert per point was a quarter of a PromQL query's time.
        let mut found: Vec<(Nanos, u64, FieldValue)> = Vec::new();
        // The page, and the first time after it.
        let cap = max.saturating_add(1);
        // The head first: a sync finishing meanwhile moves its points into chunks read after.
        let id = {
            let shared = lock(&self.shared);
            let Some(id) = self.id_of(&shared, &keys::series(tenant, series))? else {
                return Ok(ReadPage::default());
            };
            for (ts, v) in shared.syncing.iter().flat_map(|h| h.range(id, &range)) {
                found.push((*ts, u64::MAX - 1, v.clone()));
            }
            for (ts, v) in shared.head.range(id, &range) {
                found.push((*ts, u64::MAX, v.clone()));
            }
            id
        };
        let mut chunks = self.chunks_in(id, &range).peekable();
        while let Some(chunk) = chunks.next() {
            let (_, seq, samples) = chunk?;
            found.extend(
                samples
                    .into_iter()
                    .filter(|(ts, _)| range.contains(ts))
                    .map(|(ts, v)| (ts, seq, v)),
            );
            if found.len() <= max {
                continue;
            }
            settle(&mut found, cap);
            // Chunks come by their last time; one ending at `last` starts after
            // `last - MAX_SPAN`, so every time before that frontier is final.
            let frontier = match chunks.peek() {
                Some(Ok((last, _, _))) => last.saturating_sub(chunk::MAX_SPAN),
                _ => Nanos::MAX,
            };
            if found.partition_point(|(ts, _, _)| *ts < frontier) > max {
                break;
            }
        }
        settle(&mut found, cap);
        let next = found.get(max).map(|(ts, _, _)| *ts);
        found.truncate(max);
        Ok(ReadPage {
            samples: found.into_iter().map(|(ts, _, v)| (ts, v)).collect(),
            next,
        })
    }

    fn read_numbers(
        &self,
        tenant: &TenantId,
        series: &SeriesKey,
        range: Range<Nanos>,
        max: usize,
    ) -> Result<Option<NumberPage>, StoreError> {
        match self.numbers(tenant, series, &range, max)? {
            Some(page) => Ok(Some(page)),
            // Booleans or strings; or chunks of the formats before the typed one.
            None => Ok(NumberPage::of(self.read_page(tenant, series, range, max)?)),
        }
    }

    fn expire_due(&self, now: Nanos) -> Result<u64, StoreError> {
        let due: Vec<_> = lock(&self.retentions)
            .iter()
            .map(|((tenant, tier), keep)| (tenant.clone(), tier.clone(), *keep))
            .collect();
        let mut removed = 0;
        for (tenant, tier, keep) in due {
            let cutoff = crate::time::minus(now, keep);
            removed += match &tier {
                None => self.expire(&tenant, cutoff)?,
                Some(tier) => self.expire_tier(&tenant, tier, cutoff)?,
            };
        }
        Ok(removed)
    }

    fn write_alerts(
        &self,
        tenant: &TenantId,
        retention: Retention,
        alerts: &[Alert],
    ) -> Result<(), StoreError> {
        self.note_retention(tenant, None, retention)?;
        let mut batch = self.db.batch();
        for alert in alerts {
            let id = alert_id(alert);
            batch.insert(
                &self.alerts,
                alert_key(tenant, alert.window_end, &id),
                format::encode_alert(alert),
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
            out.push(format::decode_alert(&value).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
        Ok(out)
    }

    fn failure(&self) -> Option<String> {
        lock(&self.failed).clone()
    }

    fn write_rollups(
        &self,
        tenant: &TenantId,
        tier: Tier<'_>,
        rows: &[Rollup],
        retracted: &[(SeriesKey, Nanos)],
    ) -> Result<(), StoreError> {
        self.note_retention(tenant, Some(tier.name), tier.retention)?;
        let scope = tier_scope(tenant, tier.name);
        let mut batch = self.db.batch();
        for (series, start) in retracted {
            batch.remove(&self.rollups, rollup_key(&scope, series, *start));
        }
        for row in rows {
            batch.insert(&self.rollup_series, keys::series(&scope, &row.series), []);
            batch.insert(
                &self.rollups,
                rollup_key(&scope, &row.series, row.start),
                format::encode_rollup(row.end, &row.values),
            );
        }
        self.commit_for_sync(batch)
    }

    fn rollup_series_page(
        &self,
        tenant: &TenantId,
        tier: &str,
        filter: &SeriesFilter,
        after: Option<&SeriesKey>,
        limit: usize,
    ) -> Result<SeriesPage, StoreError> {
        list_series(
            &self.rollup_series,
            &[],
            &tier_scope(tenant, tier),
            filter,
            after,
            limit,
        )
    }

    fn read_rollups(
        &self,
        tenant: &TenantId,
        tier: &str,
        series: &SeriesKey,
        range: Range<Nanos>,
        max: usize,
    ) -> Result<RollupPage, StoreError> {
        let scope = tier_scope(tenant, tier);
        let from = rollup_key(&scope, series, range.start);
        let to = rollup_key(&scope, series, range.end);
        let prefix_len = from.len() - 8;
        let mut page = RollupPage::default();
        for kv in self.rollups.range(from..to) {
            let (key, value) = kv.into_inner().map_err(storage)?;
            let start = key
                .get(prefix_len..)
                .and_then(keys::decode_time)
                .ok_or_else(|| StoreError::Corrupt(format!("rollup key {key:?}")))?;
            if page.rows.len() == max {
                page.next = Some(start);
                break;
            }
            let (end, values) = format::decode_rollup(&value)
                .map_err(|e| StoreError::Corrupt(format!("rollup row: {e}")))?;
            page.rows.push((start, end, values));
        }
        Ok(page)
    }

    fn write_late(
        &self,
        tenant: &TenantId,
        retention: Retention,
        records: &[LateRecord],
    ) -> Result<(), StoreError> {
        self.note_retention(tenant, None, retention)?;
        let mut batch = self.db.batch();
        for record in records {
            batch.insert(
                &self.late,
                late_key(tenant, record),
                format::encode_late(record),
            );
        }
        self.commit_for_sync(batch)
    }

    fn late_page(
        &self,
        tenant: &TenantId,
        range: Range<Nanos>,
        max: usize,
    ) -> Result<LatePage, StoreError> {
        let mut page = LatePage::default();
        let from = late_prefix(tenant, range.start);
        for kv in self.late.range(from..late_prefix(tenant, range.end)) {
            let value = kv.value().map_err(storage)?;
            let record = format::decode_late(&value)
                .map_err(|e| StoreError::Corrupt(format!("late record: {e}")))?;
            // Whole times only: the next page starts at a time, and holds all of it.
            let full = page.records.len() >= max;
            if full
                && page
                    .records
                    .last()
                    .is_none_or(|r| r.timestamp != record.timestamp)
            {
                page.next = Some(record.timestamp);
                break;
            }
            page.records.push(record);
        }
        Ok(page)
    }
}

/// Partition states live beside the points, written by a sync of their own.
impl StateLog for EmbeddedStore {
    fn save(&self, states: &[(Partition, PartitionState)]) -> Result<(), TransportError> {
        lock(&self.shared)
            .states
            .extend(states.iter().map(|(p, s)| (*p, s.clone())));
        self.sync()
            .map(|_| ())
            .map_err(|e| TransportError::Storage(format!("partition states in the store: {e}")))
    }

    fn load(&self, partition: Partition) -> Result<Option<PartitionState>, TransportError> {
        let state_storage = |e: &dyn std::fmt::Display| {
            TransportError::Storage(format!("partition state in the store: {e}"))
        };
        let Some(value) = self
            .meta
            .get(state_key(partition))
            .map_err(|e| state_storage(&e))?
        else {
            return Ok(None);
        };
        let (next, bytes) = value.split_at(value.len().min(8));
        Ok(Some(PartitionState {
            next: decode_u64(next).map_err(|e| state_storage(&e))?,
            bytes: bytes.to_vec(),
        }))
    }
}

/// Late data sort by tenant, then time.
fn late_prefix(tenant: &TenantId, ts: Nanos) -> Vec<u8> {
    let mut key = keys::prefix(tenant, None, None);
    key.extend_from_slice(&keys::time(ts));
    key
}

/// The key of a late record: tenant, time, then rule and series (the rule in the place of
/// the tenant of a series key): the same value found late again is kept once.
fn late_key(tenant: &TenantId, record: &LateRecord) -> Vec<u8> {
    let mut key = late_prefix(tenant, record.timestamp);
    key.extend_from_slice(&keys::series(&TenantId::new(&record.rule), &record.series));
    key
}

/// Up to `limit` series of the key space `scope` matching `filter`, after `after`, from
/// `index`: the series index, or postings (`under` is then the prefix of the postings of
/// the filter's first tag, before each series key; the series index's is empty).
fn list_series(
    index: &Keyspace,
    under: &[u8],
    scope: &TenantId,
    filter: &SeriesFilter,
    after: Option<&SeriesKey>,
    limit: usize,
) -> Result<SeriesPage, StoreError> {
    let wanted = keys::prefix(
        scope,
        filter.measurement.as_deref(),
        filter.measurement.as_ref().and(filter.field.as_deref()),
    );
    let prefix = [under, &wanted].concat();
    let start = match after.map(|s| [under, &keys::series(scope, s)].concat()) {
        Some(key) if key >= prefix => Bound::Excluded(key),
        _ => Bound::Included(prefix.clone()),
    };
    let mut page = SeriesPage::default();
    for kv in index.range((start, Bound::Unbounded)) {
        let key = kv.key().map_err(storage)?;
        if !key.starts_with(&prefix) {
            break;
        }
        let series = keys::decode_series(&key[under.len()..])
            .ok_or_else(|| StoreError::Corrupt(format!("series key {key:?}")))?;
        if !filter.matches(&series) {
            continue;
        }
        if page.series.len() == limit {
            page.more = true;
            break;
        }
        page.series.push(series);
    }
    Ok(page)
}

/// Writes the postings of every series in `series` (a store of a release before them).
fn build_postings(db: &Database, series: &Keyspace, postings: &Keyspace) -> Result<(), StoreError> {
    let mut batch = db.batch();
    for (n, kv) in series.iter().enumerate() {
        let key = kv.key().map_err(storage)?;
        for posting in keys::postings(&key)
            .ok_or_else(|| StoreError::Corrupt(format!("series key {key:?}")))?
        {
            batch.insert(postings, posting, []);
        }
        // Batches of bounded size: a store may hold millions of series.
        if n % 10_000 == 9_999 {
            std::mem::replace(&mut batch, db.batch())
                .commit()
                .map_err(storage)?;
        }
    }
    batch.commit().map_err(storage)
}

/// Sorts `found` by time, keeps the value of the highest rank of each time (of one rank, the
/// last pushed: a rewrite in the head), and only the `cap` earliest times: a time past them
/// can't be on the page.
fn settle<V>(found: &mut Vec<(Nanos, u64, V)>, cap: usize) {
    // Reversed, then sorted stably: of equal time and rank, the last pushed comes first.
    found.reverse();
    found.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    found.dedup_by_key(|(ts, _, _)| *ts);
    found.truncate(cap);
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
    use crate::columns::Points;
    use crate::lineproto::{Precision, parse};
    use crate::store::forever;

    /// Where test writes come from: no partition of a real log.
    const AT: Through = Through {
        partition: 0,
        lane: None,
        next: 0,
    };

    fn pts(lp: &str) -> Points {
        parse(lp, Precision::Nanoseconds, 0).0.into()
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

    /// Chunks of series `id` in the store, as (last time, sync sequence, points).
    fn chunk_shapes(store: &EmbeddedStore, id: u64) -> Vec<(Nanos, u64, usize)> {
        store
            .chunks_in(id, &(Nanos::MIN..Nanos::MAX))
            .map(|c| {
                let (last, seq, samples) = c.expect("chunk");
                (last, seq, samples.len())
            })
            .collect()
    }

    fn id_of(store: &EmbeddedStore, tenant: &TenantId, series: &SeriesKey) -> u64 {
        let shared = lock(&store.shared);
        store
            .id_of(&shared, &keys::series(tenant, series))
            .expect("index")
            .expect("indexed")
    }

    /// Bytes of `tenant`'s raw points, as [`Store::usage`] tells.
    fn raw_bytes(store: &EmbeddedStore, tenant: &TenantId) -> u64 {
        let usage = store.usage().expect("usage").expect("measured");
        usage
            .iter()
            .find(|u| u.tenant == *tenant && u.tier.is_none())
            .map_or(0, |u| u.bytes)
    }

    /// Compacts until nothing waits.
    fn compact_all(store: &EmbeddedStore) -> Compacted {
        let mut all = Compacted::default();
        loop {
            let done = store.compact(u64::MAX).expect("compact");
            all.add(done);
            if !done.more {
                return all;
            }
        }
    }

    #[test]
    fn usage_counts_each_tenants_raw_points_and_tiers_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, ab) = (TenantId::new("a"), TenantId::new("ab"));
        let store = EmbeddedStore::open(dir.path()).expect("open");
        // Values that don't compress to nothing: ab's thousand points outweigh a's ten.
        let lines = |n: i64| {
            (0..n)
                .map(|t| format!("cpu,host=x usage={} {t}", t * t % 9_973))
                .collect::<Vec<_>>()
                .join("\n")
        };
        store
            .write(&[forever(&a, &pts(&lines(10)))], AT)
            .expect("write");
        store
            .write(&[forever(&ab, &pts(&lines(1_000)))], AT)
            .expect("write");
        let row = Rollup {
            series: only(&store, &a, "x"),
            start: 0,
            end: 60,
            values: vec![(crate::aggregate::Function::Mean, 1.0)],
        };
        let tier = Tier {
            name: "1m",
            retention: Retention::Forever,
        };
        store.write_rollups(&a, tier, &[row], &[]).expect("rollups");
        // Not synced: no chunk yet, and no raw bytes.
        assert_eq!(raw_bytes(&store, &a), 0);
        store.sync().expect("sync");
        let usage = store.usage().expect("usage").expect("measured");
        let of = |t: &TenantId, tier: Option<&str>| {
            usage
                .iter()
                .find(|u| u.tenant == *t && u.tier.as_deref() == tier)
                .map(|u| u.bytes)
        };
        let (a_raw, ab_raw) = (of(&a, None).expect("a"), of(&ab, None).expect("ab"));
        assert!(a_raw > 0 && ab_raw > a_raw, "a {a_raw}, ab {ab_raw}");
        assert!(of(&a, Some("1m")).expect("a's tier") > 0);
        assert_eq!(of(&ab, Some("1m")), None);
        assert_eq!(usage.len(), 3);
    }

    #[test]
    fn compaction_merges_one_point_syncs_into_full_chunks_and_reads_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = TenantId::new("a");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        // A slow series: one point a sync, 10 s apart, for 3 hours (a chunk spans 1 h).
        let n: i64 = 3 * 360;
        for i in 0..n {
            let line = format!("cpu,host=x usage={}.25 {}", i % 97, i * 10_000_000_000);
            store.write(&[forever(&a, &pts(&line))], AT).expect("write");
            store.sync().expect("sync");
        }
        let x = only(&store, &a, "x");
        let id = id_of(&store, &a, &x);
        assert_eq!(chunk_shapes(&store, id).len(), n as usize);
        let before = store.read(&a, &x, Nanos::MIN..Nanos::MAX).expect("read");
        let bytes_before = raw_bytes(&store, &a);
        let done = compact_all(&store);
        // Every one-point chunk went (a group's last chunk may be merged again with the
        // next window's).
        assert!(done.replaced >= n as u64, "{done:?}");
        assert_eq!(done.duplicates, 0);
        let shapes = chunk_shapes(&store, id);
        // Each chunk spans at most an hour: 361 points of 10 s steps; three hours take 3.
        assert!(shapes.len() <= 4, "{shapes:?}");
        assert_eq!(shapes.iter().map(|s| s.2).sum::<usize>(), n as usize);
        assert_eq!(
            store.read(&a, &x, Nanos::MIN..Nanos::MAX).expect("read"),
            before
        );
        let bytes_after = raw_bytes(&store, &a);
        assert!(
            bytes_after * 5 < bytes_before,
            "{bytes_before} bytes before, {bytes_after} after"
        );
        // Nothing more to gain: a second pass rewrites nothing.
        store.sync().expect("sync");
        assert_eq!(compact_all(&store).replaced, 0);
        // Durable: a reopen reads the merged chunks (and its own pass finds nothing to do).
        drop(store);
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        assert_eq!(
            store.read(&a, &x, Nanos::MIN..Nanos::MAX).expect("read"),
            before
        );
        assert_eq!(compact_all(&store).replaced, 0);
        assert_eq!(chunk_shapes(&store, id), shapes);
    }

    #[test]
    fn a_clean_close_with_everything_compacted_spares_the_next_open_a_pass_over_every_series() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = TenantId::new("a");
        let open = || EmbeddedStore::open(dir.path()).expect("open");
        let dirty = |store: &EmbeddedStore| lock(&store.dirty).len();
        {
            let store = open();
            for t in 0..20 {
                let lp = format!("cpu,host=x usage={t} {t}\ncpu,host=y usage={t} {t}\n");
                store.write(&[forever(&a, &pts(&lp))], AT).expect("write");
                store.sync().expect("sync");
            }
            assert_eq!(dirty(&store), 2);
            // Closed with series left to compact: no mark.
        }
        let store = open();
        assert_eq!(dirty(&store), 2, "every series is looked at");
        compact_all(&store);
        assert_eq!(dirty(&store), 0);
        drop(store);
        let store = open();
        assert_eq!(dirty(&store), 0, "closed clean: nothing to look at");
        // The mark goes at open, durably: a crash from here on leaves none.
        assert!(store.meta.get(COMPACTED_AT_CLOSE).expect("meta").is_none());
        let x = only(&store, &a, "x");
        assert_eq!(store.read(&a, &x, 0..100).expect("read").len(), 20);
    }

    #[test]
    fn a_clean_close_leaves_the_data_in_tables_and_an_empty_journal_and_later_writes_still_win() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = TenantId::new("a");
        let journal_bytes = || {
            std::fs::read_dir(dir.path())
                .expect("dir")
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "jnl"))
                .map(|e| e.metadata().expect("metadata").len())
                .sum::<u64>()
        };
        // Each round rewrites times 0..50 with its own value and adds 50 new times: a
        // later sync wins only if the next open continues fjall's sequence numbers (an
        // emptied journal recovered as a new one would restart them, and older versions of
        // the meta keys would shadow newer ones).
        for round in 1..=3_i64 {
            let store = EmbeddedStore::open(dir.path()).expect("open");
            if round > 1 {
                let x = only(&store, &a, "x");
                let read = store.read(&a, &x, 0..1_000).expect("read");
                assert_eq!(read.len(), 50 + 50 * (round as usize - 1));
            }
            let lp: String = (0..50)
                .chain(round * 50..round * 50 + 50)
                .map(|t| format!("cpu,host=x usage={round} {t}\n"))
                .collect();
            store.write(&[forever(&a, &pts(&lp))], AT).expect("write");
            store.sync().expect("sync");
            drop(store);
            assert_eq!(journal_bytes(), 0, "round {round}: the journal is emptied");
        }
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let x = only(&store, &a, "x");
        let read = store.read(&a, &x, 0..1_000).expect("read");
        let want: Vec<(i64, i64)> = (0..50)
            .map(|t| (t, 3))
            .chain((1..=3).flat_map(|r| (r * 50..r * 50 + 50).map(move |t| (t, r))))
            .collect();
        let got: Vec<(i64, i64)> = read
            .iter()
            .map(|(t, v)| match v {
                FieldValue::Float(v) => (*t, *v as i64),
                ref other => panic!("a float, not {other:?}"),
            })
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn compaction_drops_a_replays_duplicates_and_keeps_the_latest_sync() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = TenantId::new("a");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let lines = |from: i64, to: i64, v: i64| {
            (from..to)
                .map(|t| format!("cpu,host=x usage={v} {t}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        store
            .write(&[forever(&a, &pts(&lines(0, 100, 1)))], AT)
            .expect("write");
        store.sync().expect("sync");
        // A replay of 50..100 (after a crash lost the commit), then a rewrite of 90..95.
        store
            .write(&[forever(&a, &pts(&lines(50, 120, 1)))], AT)
            .expect("replay");
        store.sync().expect("sync");
        store
            .write(&[forever(&a, &pts(&lines(90, 95, 2)))], AT)
            .expect("rewrite");
        store.sync().expect("sync");
        let x = only(&store, &a, "x");
        assert_eq!(
            store.stored_samples(&a, &x).expect("samples").len(),
            100 + 70 + 5
        );
        let want: Vec<Sample> = (0..120)
            .map(|t| {
                (
                    t,
                    FieldValue::Float(if (90..95).contains(&t) { 2.0 } else { 1.0 }),
                )
            })
            .collect();
        assert_eq!(store.read(&a, &x, 0..1_000).expect("read"), want);
        let done = compact_all(&store);
        assert_eq!(done.duplicates, 55);
        assert_eq!(store.stored_samples(&a, &x).expect("samples"), want);
        assert_eq!(store.read(&a, &x, 0..1_000).expect("read"), want);
        // A point written after compaction still wins over the merged chunk.
        store
            .write(&[forever(&a, &pts("cpu,host=x usage=3 10"))], AT)
            .expect("write");
        store.sync().expect("sync");
        compact_all(&store);
        assert_eq!(
            store.read(&a, &x, 10..11).expect("read"),
            floats(&[(10, 3.0)])
        );
        assert_eq!(store.stored_samples(&a, &x).expect("samples").len(), 120);
    }

    #[test]
    fn compaction_racing_syncs_and_expiry_loses_no_point_and_keeps_none_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = TenantId::new("a");
        let store = Arc::new(EmbeddedStore::open(dir.path()).expect("open"));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let compactor = std::thread::spawn({
            let (store, stop) = (store.clone(), stop.clone());
            move || {
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    store.compact(4_096).expect("compact");
                }
            }
        });
        // Two series, points out of order and rewritten, a sync after every few writes.
        let mut want: BTreeMap<(&str, Nanos), f64> = BTreeMap::new();
        for round in 0..300i64 {
            let t = (round * 7_919) % 1_000;
            let host = if round % 3 == 0 { "x" } else { "y" };
            let line = format!("cpu,host={host} usage={round} {t}");
            store.write(&[forever(&a, &pts(&line))], AT).expect("write");
            want.insert((host, t), round as f64);
            if round % 4 == 0 {
                store.sync().expect("sync");
            }
            if round == 200 {
                // Expiry of everything before 100, racing compaction.
                store.expire(&a, 100).expect("expire");
                want.retain(|(_, t), _| *t >= 100);
            }
        }
        store.sync().expect("sync");
        stop.store(true, std::sync::atomic::Ordering::Release);
        compactor.join().expect("compactor");
        compact_all(&store);
        for host in ["x", "y"] {
            let s = only(&store, &a, host);
            let expected: Vec<Sample> = want
                .iter()
                .filter(|((h, _), _)| *h == host)
                .map(|((_, t), v)| (*t, FieldValue::Float(*v)))
                .collect();
            assert_eq!(
                store.read(&a, &s, Nanos::MIN..Nanos::MAX).expect("read"),
                expected
            );
            assert_eq!(store.stored_samples(&a, &s).expect("samples"), expected);
        }
    }

    #[test]
    fn reads_racing_compaction_see_every_point_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = TenantId::new("a");
        let store = Arc::new(EmbeddedStore::open(dir.path()).expect("open"));
        // Chunks that overlap: each sync writes every 8th time of a span, shifted by one, so
        // the merge of a group cuts chunks ending before chunks it replaces.
        let hosts = 8;
        let mut want: Vec<Sample> = Vec::new();
        for round in 0..8i64 {
            let mut lp = String::new();
            for i in 0..150i64 {
                let t = i * 8 + round;
                for h in 0..hosts {
                    lp += &format!("cpu,host=h{h} usage={t} {t}\n");
                }
            }
            store.write(&[forever(&a, &pts(&lp))], AT).expect("write");
            store.sync().expect("sync");
        }
        for t in 0..1_200i64 {
            want.push((t, FieldValue::Float(t as f64)));
        }
        let series: Vec<SeriesKey> = (0..hosts)
            .map(|h| only(&store, &a, &format!("h{h}")))
            .collect();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let compactor = std::thread::spawn({
            let (store, done) = (store.clone(), done.clone());
            move || {
                while store.compact(2_048).expect("compact").more {}
                done.store(true, std::sync::atomic::Ordering::Release);
            }
        });
        let numbers = NumberPage::of(ReadPage {
            samples: want.clone(),
            next: None,
        });
        let mut reads = 0;
        while !done.load(std::sync::atomic::Ordering::Acquire) || reads < 2 * hosts {
            let s = &series[reads % hosts];
            assert_eq!(store.read(&a, s, 0..Nanos::MAX).expect("read"), want);
            let page = store
                .read_numbers(&a, s, 0..Nanos::MAX, usize::MAX)
                .expect("numbers");
            assert_eq!(page, numbers);
            reads += 1;
        }
        compactor.join().expect("compactor");
    }

    #[test]
    fn synced_writes_survive_a_reopen_unsynced_ones_do_not_and_the_latest_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = TenantId::new("a");
        {
            let store = EmbeddedStore::open(dir.path()).expect("open");
            store
                .write(&[forever(&a, &pts("cpu,host=x usage=1 5"))], AT)
                .expect("write");
            store.sync().expect("sync");
            store
                .write(&[forever(&a, &pts("cpu,host=x usage=2 5"))], AT)
                .expect("rewrite");
            let x = only(&store, &a, "x");
            assert_eq!(
                store.read(&a, &x, 0..10).expect("read"),
                floats(&[(5, 2.0)])
            );
            store.sync().expect("sync");
            // Never synced: the transport still holds it and replays it.
            store
                .write(
                    &[forever(
                        &a,
                        &pts("cpu,host=x usage=3 5\ncpu,host=z usage=1 1"),
                    )],
                    AT,
                )
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
            .write(&[forever(&a, &pts("cpu,host=x usage=4 5"))], AT)
            .expect("write");
        store.sync().expect("sync");
        assert_eq!(
            store.read(&a, &x, 0..10).expect("read"),
            floats(&[(5, 4.0)]),
            "sync sequence continues after a reopen"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// A listing by tag (from postings) pages through exactly the series a scan of the
        /// whole index finds, in the same order.
        #[test]
        fn tag_listings_from_postings_are_the_index_scans(
            series in proptest::collection::vec((0u8..3, 0u8..2, 0u8..4, proptest::option::of(0u8..3)), 1..40),
            measurement in proptest::option::of(0u8..3),
            field in proptest::option::of(0u8..2),
            tags in proptest::collection::vec((proptest::bool::ANY, 0u8..4), 1..3),
            limit in 1usize..6,
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = EmbeddedStore::open(dir.path()).expect("open");
            let (a, b) = (TenantId::new("a"), TenantId::new("b"));
            let mut lp = String::new();
            for (m, f, host, dc) in &series {
                let dc = dc.map(|d| format!(",dc=d{d}")).unwrap_or_default();
                lp += &format!("m{m},host=h{host}{dc} f{f}=1 1\n");
            }
            store.write(&[forever(&a, &pts(&lp)), forever(&b, &pts(&lp))], AT).expect("write");
            let filter = SeriesFilter {
                measurement: measurement.map(|m| format!("m{m}")),
                field: field.map(|f| format!("f{f}")),
                tags: tags
                    .iter()
                    .map(|(host, v)| if *host { ("host".into(), format!("h{v}")) } else { ("dc".into(), format!("d{v}")) })
                    .collect(),
            };
            let scan = list_series(&store.series, &[], &a, &filter, None, usize::MAX).expect("scan");
            let mut paged = Vec::new();
            let mut after = None;
            loop {
                let page = store.series_page(&a, &filter, after.as_ref(), limit).expect("page");
                proptest::prop_assert!(page.series.len() <= limit);
                after = page.series.last().cloned();
                paged.extend(page.series);
                if !page.more {
                    break;
                }
            }
            proptest::prop_assert_eq!(paged, scan.series);
        }
    }

    #[test]
    fn postings_go_with_their_series_and_a_store_without_them_gets_them_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = TenantId::new("a");
        let by_host = |host: &str| SeriesFilter {
            tags: vec![("host".into(), host.into())],
            ..SeriesFilter::default()
        };
        {
            let store = EmbeddedStore::open(dir.path()).expect("open");
            let lp = "cpu,host=x usage=1 1\ncpu,host=y usage=1 1000\nmem,host=x used=1 1000\n";
            store.write(&[forever(&a, &pts(lp))], AT).expect("write");
            store.sync().expect("sync");
            assert_eq!(store.series(&a, &by_host("x")).expect("x").len(), 2);
            // Expiring cpu,host=x's only point drops the series, and its posting with it.
            assert_eq!(store.expire(&a, 2).expect("expire"), 1);
            let x = store.series(&a, &by_host("x")).expect("x");
            assert_eq!(x.len(), 1);
            assert_eq!(x[0].measurement, "mem");
            // As a store of the release before postings: none, and no mark.
            let postings: Vec<_> = store
                .postings
                .iter()
                .map(|kv| kv.key().expect("key"))
                .collect();
            assert_eq!(postings.len(), 2, "one a series: cpu,host=y and mem,host=x");
            for key in postings {
                store.postings.remove(key).expect("remove");
            }
            store.meta.remove(POSTINGS_BUILT).expect("unmark");
            store.sync().expect("sync");
            assert!(store.series(&a, &by_host("y")).expect("y").is_empty());
        }
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        assert_eq!(store.series(&a, &by_host("y")).expect("y").len(), 1);
        assert_eq!(store.series(&a, &by_host("x")).expect("x").len(), 1);
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
        store.write(&[forever(&a, &pts(&lp))], AT).expect("write");
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
            .write(&[forever(&a, &two)], AT)
            .expect("under the limit");
        store.write(&[forever(&a, &two)], AT).expect("reaches it");
        let refused = store.write(&[forever(&a, &two)], AT);
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
        store.write(&[forever(&a, &two)], AT).expect("room again");
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
                .write(&[forever(&a, &pts("cpu,host=x usage=1 1"))], AT)
                .expect("write");
            store.sync().expect("sync");
        }
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        store
            .write(
                &[forever(
                    &a,
                    &pts("cpu,host=y usage=2 1\ncpu,host=x usage=3 2"),
                )],
                AT,
            )
            .expect("write");
        let (x, y) = (only(&store, &a, "x"), only(&store, &a, "y"));
        assert_eq!(
            store.read(&a, &x, 0..10).expect("x"),
            floats(&[(1, 1.0), (2, 3.0)])
        );
        assert_eq!(store.read(&a, &y, 0..10).expect("y"), floats(&[(1, 2.0)]));
    }

    #[test]
    fn points_the_store_cannot_take_are_refused_whole_and_the_rest_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = TenantId::new("a");
        {
            let store = EmbeddedStore::open(dir.path()).expect("open");
            let huge = "x".repeat(keys::MAX_KEY_BYTES);
            let batch = pts(&format!(
                "cpu,host=x usage=1 1\ncpu,host={huge} usage=2,other=3 2\ncpu,host=x usage=2i 3\ncpu,host=x usage=4 4"
            ));
            let refused = store.write(&[forever(&a, &batch)], AT).expect("write");
            assert_eq!(refused.len(), 2, "{refused:?}");
            assert!(
                matches!(&refused[0], Refused { batch: 0, point: 1, reason: PointError::KeyTooLong { field, .. } } if field == "usage"),
                "{refused:?}"
            );
            assert_eq!(
                refused[1].reason,
                PointError::TypeConflict {
                    field: "usage".into(),
                    stored: FieldType::Float,
                    got: FieldType::Integer
                }
            );
            assert_eq!(refused[1].point, 2);
            let x = only(&store, &a, "x");
            assert_eq!(
                store.read(&a, &x, 0..10).expect("read"),
                floats(&[(1, 1.0), (4, 4.0)])
            );
            assert_eq!(
                store
                    .series(&a, &SeriesFilter::default())
                    .expect("series")
                    .len(),
                1,
                "no field of the refused point was indexed"
            );
            store.sync().expect("sync");
        }
        // The type is stored with the series: it holds after a reopen.
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        let refused = store
            .write(&[forever(&a, &pts("cpu,host=x usage=true 5"))], AT)
            .expect("write");
        assert!(
            matches!(
                &refused[..],
                [Refused {
                    reason: PointError::TypeConflict {
                        stored: FieldType::Float,
                        got: FieldType::Boolean,
                        ..
                    },
                    ..
                }]
            ),
            "{refused:?}"
        );
        let point = &parse("cpu,host=x usage=1 1", Precision::Nanoseconds, 0).0[0];
        assert_eq!(
            store.field_type(&a, point, "usage").expect("type"),
            Some(FieldType::Float)
        );
        assert_eq!(store.field_type(&a, point, "nope").expect("type"), None);
    }

    #[test]
    fn runs_of_one_series_are_checked_point_by_point() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = TenantId::new("a");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        // A new series, then the same keys again (type conflicts among them), then a new
        // field in a run of its own.
        let batch = pts(
            "cpu,host=x usage=1 1\ncpu,host=x usage=2 2\ncpu,host=x usage=3i 3\n\
             cpu,host=x usage=4 4\ncpu,host=x usage=5,other=1 5\ncpu,host=x usage=6,other=2i 6\n\
             cpu,host=x usage=7,other=3 7",
        );
        let refused = store.write(&[forever(&a, &batch)], AT).expect("write");
        let conflicts: Vec<(usize, &str)> = refused
            .iter()
            .map(|r| match &r.reason {
                PointError::TypeConflict { field, .. } => (r.point, field.as_str()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(conflicts, [(2, "usage"), (5, "other")]);
        let x = only(&store, &a, "x");
        assert_eq!(
            store.read(&a, &x, 0..10).expect("usage"),
            floats(&[(1, 1.0), (2, 2.0), (4, 4.0), (5, 5.0), (7, 7.0)])
        );
        let other = SeriesFilter {
            field: Some("other".into()),
            ..SeriesFilter::default()
        };
        let other = store.series(&a, &other).expect("series");
        assert_eq!(other.len(), 1);
        assert_eq!(
            store.read(&a, &other[0], 0..10).expect("other"),
            floats(&[(5, 1.0), (7, 3.0)])
        );
    }

    #[test]
    fn a_saved_state_is_durable_on_return_and_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = PartitionState {
            next: 42,
            bytes: b"S1state".to_vec(),
        };
        {
            let store = EmbeddedStore::open(dir.path()).expect("open");
            store.save(&[(3, state.clone())]).expect("save");
            assert_eq!(store.load(3).expect("state"), Some(state.clone()));
        }
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        assert_eq!(
            store.load(3).expect("state"),
            Some(state),
            "survives a reopen"
        );
        assert_eq!(store.load(4).expect("state"), None);
    }

    /// A fresh store and the directory it lives in.
    fn fresh() -> (tempfile::TempDir, EmbeddedStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        (dir, store)
    }

    mod conformance {
        use super::fresh;

        crate::store::conformance::conformance!(Some(fresh()));
    }

    #[test]
    fn synced_offsets_are_durable_with_the_points_they_cover() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = TenantId::new("a");
        let at = Through::partition;
        {
            let store = EmbeddedStore::open(dir.path()).expect("open");
            assert_eq!(store.checkpointed().expect("none"), []);
            store
                .write(&[forever(&a, &pts("cpu,host=x usage=1 1"))], at(0, 5))
                .expect("write");
            // Records filtered out whole still move the offset.
            store.write(&[], at(1, 9)).expect("empty write");
            assert_eq!(store.sync().expect("sync"), [at(0, 5), at(1, 9)]);
            store
                .write(&[forever(&a, &pts("cpu,host=x usage=2 2"))], at(0, 7))
                .expect("write");
            assert_eq!(store.checkpointed().expect("synced"), [at(0, 5), at(1, 9)]);
            // Not synced: lost with the head, and its offset with it.
        }
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        assert_eq!(store.checkpointed().expect("synced"), [at(0, 5), at(1, 9)]);
        let x = only(&store, &a, "x");
        assert_eq!(
            store.read(&a, &x, 0..10).expect("read"),
            floats(&[(1, 1.0)])
        );
        // A replay of offsets 5..7 writes the point again: stored once below the read path.
        store
            .write(&[forever(&a, &pts("cpu,host=x usage=2 2"))], at(0, 7))
            .expect("replay");
        assert_eq!(store.sync().expect("sync"), [at(0, 7), at(1, 9)]);
        assert_eq!(
            store.stored_samples(&a, &x).expect("samples"),
            floats(&[(1, 1.0), (2, 2.0)])
        );
    }

    #[test]
    fn read_pages_resume_across_chunks_rewrites_and_the_head() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let a = TenantId::new("a");
        let span = chunk::MAX_SPAN;
        // Three syncs of overlapping times, rewrites included, then an unsynced head.
        let mut want = BTreeMap::new();
        for round in 0..3i64 {
            let mut lp = String::new();
            for i in 0..3_000i64 {
                let ts = (i * 7 + round * 1_000) % 9_000 * (span / 3_000);
                let v = round * 10_000 + i;
                lp += &format!("cpu,host=x usage={v} {ts}\n");
                want.insert(ts, v as f64);
            }
            store.write(&[forever(&a, &pts(&lp))], AT).expect("write");
            if round < 2 {
                store.sync().expect("sync");
            }
        }
        let x = only(&store, &a, "x");
        let all: Vec<Sample> = want
            .iter()
            .map(|(t, v)| (*t, FieldValue::Float(*v)))
            .collect();
        assert_eq!(
            store.read(&a, &x, Nanos::MIN..Nanos::MAX).expect("all"),
            all
        );
        for max in [1, 999, 1_024, 5_000] {
            assert_eq!(
                crate::store::conformance::read_in_pages(&store, &a, &x, max),
                all,
                "pages of {max}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Numbers read as columns are the page read, whether copied straight (times in
        /// order through chunks and head), merged into the columns' tail (times a little
        /// late) or ranked and merged (times in any order).
        #[test]
        fn numbers_read_as_columns_are_what_was_written_and_the_page_read(
            writes in proptest::collection::vec((0i64..300, -1_000i64..1_000, proptest::bool::weighted(0.2)), 1..200),
            order in 0u8..3,
            integers: bool,
            reads in proptest::collection::vec((0i64..320, 0i64..320, 0usize..250), 1..6),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = EmbeddedStore::open(dir.path()).expect("open");
            let a = TenantId::new("a");
            // A unit is a hundredth of a chunk's span: 300 units are three spans.
            let unit = chunk::MAX_SPAN / 100;
            let mut ts = 0;
            // What was written last at each time: what every read must give.
            let mut model = BTreeMap::new();
            let in_order = order == 0;
            let mut base = 0;
            for (gap, v, sync) in &writes {
                ts = match order {
                    0 => ts + 1 + gap,
                    // Rising, but some points up to 5 units late: a later sync overlaps
                    // the one before it, and may write a time it wrote again.
                    1 => {
                        base += 1 + gap % 3;
                        (base - v.rem_euclid(7).min(5)).max(0)
                    }
                    _ => *gap,
                };
                let value = if integers { format!("{v}i") } else { format!("{}", *v as f64 / 4.0) };
                model.insert(ts * unit, if integers { *v as f64 } else { *v as f64 / 4.0 });
                let lp = format!("cpu,host=x usage={value} {}\n", ts * unit);
                store.write(&[forever(&a, &pts(&lp))], AT).expect("write");
                if *sync {
                    store.sync().expect("sync");
                }
            }
            let x = only(&store, &a, "x");
            for (from, to, max) in reads {
                let range = from.min(to) * unit..from.max(to) * unit;
                let columns = store.read_numbers(&a, &x, range.clone(), max).expect("numbers");
                let mut want: Vec<(Nanos, f64)> = model.range(range.clone()).map(|(t, v)| (*t, *v)).collect();
                let next = want.get(max).map(|(t, _)| *t);
                want.truncate(max);
                let (times, values) = want.into_iter().unzip();
                proptest::prop_assert_eq!(&columns, &Some(NumberPage { times, values, next }));
                let page = NumberPage::of(store.read_page(&a, &x, range, max).expect("page"));
                proptest::prop_assert_eq!(columns, page);
            }
            if in_order {
                let all = store
                    .numbers(&a, &x, &(Nanos::MIN..Nanos::MAX), usize::MAX)
                    .expect("read");
                proptest::prop_assert!(all.is_some_and(|p| p.times.len() == writes.len()));
            }
        }
    }

    #[test]
    fn a_store_of_the_release_before_versioned_chunks_still_reads_and_expires() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = TenantId::new("a");
        let x = SeriesKey {
            measurement: "cpu".into(),
            field: "usage".into(),
            tags: vec![("host".into(), "x".into())],
        };
        let old: Vec<Sample> = (0..10)
            .map(|i| (i * 10, FieldValue::Float(i as f64)))
            .collect();
        {
            // What that release wrote: an 8-byte index entry, a headerless chunk of sync 0.
            let db = Database::builder(dir.path()).open().expect("db");
            let ks = |name: &str| {
                db.keyspace(name, KeyspaceCreateOptions::default)
                    .expect("ks")
            };
            let (series, chunks, meta) = (ks("series"), ks("chunks"), ks("meta"));
            series
                .insert(keys::series(&a, &x), 1u64.to_be_bytes())
                .expect("index");
            let refs: Vec<&Sample> = old.iter().collect();
            chunks
                .insert(keys::chunk(1, 90, 0), chunk::encode_legacy(&refs))
                .expect("chunk");
            meta.insert(NEXT_SEQ, 1u64.to_be_bytes()).expect("seq");
            db.persist(PersistMode::SyncData).expect("persist");
        }
        let store = EmbeddedStore::open(dir.path()).expect("open");
        assert_eq!(store.read(&a, &x, 0..1_000).expect("read"), old);
        store
            .write(&[forever(&a, &pts("cpu,host=x usage=2.5 95"))], AT)
            .expect("write");
        store.sync().expect("sync");
        // Retention cuts the legacy chunk, which stays in its own format.
        assert_eq!(store.expire(&a, 45).expect("expire"), 5);
        drop(store);
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        let left = store.read(&a, &x, 0..1_000).expect("read");
        assert_eq!(left.first(), Some(&(50, FieldValue::Float(5.0))));
        assert_eq!(left.last(), Some(&(95, FieldValue::Float(2.5))));
        assert_eq!(left.len(), 6);
    }
}
