//! The scale-out store on ScyllaDB (or Cassandra), through the `scylla` driver.
//!
//! One table holds every time-ordered row: raw points, rollup windows, alerts and late data,
//! each in a *stream* (`raw`, `tier:1m`, `alerts`, `late`). A partition is (tenant, stream,
//! series, time bucket), so none grows without bound, clustered by time (and an id where
//! several rows share a time). A `buckets` table lists each series' buckets, so a read of
//! any range touches only partitions that exist. The series index (`series`,
//! `measurements`, `series_by_tag`) is written once per series and refreshed only when a
//! write extends its life; a cache in memory remembers what is indexed.
//!
//! Rows carry their retention as a TTL (`USING TTL`, counted from the row's own time,
//! rounded up to hours so writes share prepared statements; rows already past it are not
//! written). Writes are unlogged batches of one partition's rows, with a bounded number
//! in flight. Upserts are idempotent: a replay writes the same cells again.
//!
//! How far each transport partition's points reach ([`Through`]) is a row of `through`,
//! written by [`Store::sync`]: a write is durable once the database acknowledged it at the
//! configured consistency.
//!
//! The trait is synchronous and the driver async: the store owns a small tokio runtime
//! that runs the driver's connections, and each call blocks its (worker or blocking-pool)
//! thread on its request. Never call it from an async task.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use ::scylla::client::execution_profile::ExecutionProfile;
use ::scylla::client::session::Session;
use ::scylla::client::session_builder::SessionBuilder;
use ::scylla::errors::{
    DbError, ExecutionError, NewSessionError, PrepareError, RequestAttemptError,
};
use ::scylla::policies::load_balancing::DefaultPolicy;
use ::scylla::response::PagingState;
use ::scylla::serialize::row::SerializeRow;
use ::scylla::statement::Consistency;
use ::scylla::statement::batch::{Batch as CqlBatch, BatchType};
use ::scylla::statement::prepared::PreparedStatement;
use futures_util::stream::{self, StreamExt, TryStreamExt};

use super::{
    Batch, LatePage, LateRecord, PointError, Reach, ReadPage, Refused, Retention, Rollup,
    RollupPage, SeriesFilter, SeriesKey, SeriesPage, Store, StoreError, Through, Tier, alert_id,
    keys,
};
use crate::config::ScyllaConfig;
use crate::format;
use crate::point::{Alert, FieldType, FieldValue, Nanos, Point};
use crate::tenant::TenantId;
use crate::transport::{Offset, Partition};

/// The stream of raw points.
const RAW: &str = "raw";
/// The stream of alerts.
const ALERTS: &str = "alerts";
/// The stream of late data.
const LATE: &str = "late";
/// The series and id of rows that have none of their own (points and windows have no id;
/// alerts and late data no series). CQL refuses an empty partition key component.
const NONE: &[u8] = b".";
/// The scope of the through rows of the points topic.
const THROUGH_SCOPE: &str = "points";
/// Most rows in one unlogged batch (all of one partition, so one replica set takes it
/// whole).
const BATCH_ROWS: usize = 64;
/// Most value bytes in one batch: under ScyllaDB's batch size warning (128 KiB), far under
/// its failure threshold, whatever the values (a huge string goes alone).
const BATCH_BYTES: usize = 64 * 1024;
/// The longest TTL CQL takes: 20 years.
const MAX_TTL_SECS: i64 = 630_720_000;
/// TTLs are rounded up to this, so a steady stream shares a few prepared statements.
const TTL_STEP_SECS: i64 = 3_600;
/// The longest series key taken: CQL's partition keys are at most 64 KiB, and the key
/// shares them with tenant, stream and bucket.
const MAX_SERIES_KEY: usize = 60_000;
/// Rows fetched per page of a read.
const PAGE_ROWS: i32 = 1_000;
/// Index rows remembered as written; cleared past this (they are written again).
const KNOWN_CAP: usize = 1_000_000;
/// Kind of a series without one field type (a rollup tier's).
const NO_KIND: i32 = -1;

/// The tables, created when missing. `{ks}` is the keyspace.
const SCHEMA: [&str; 6] = [
    // Rows expire by TTL, mostly in time order: time-window compaction drops whole
    // SSTables as they expire instead of rewriting them.
    "CREATE TABLE IF NOT EXISTS {ks}.samples (tenant text, stream text, series blob, bucket bigint, ts bigint, id blob, value blob, PRIMARY KEY ((tenant, stream, series, bucket), ts, id)) WITH compaction = {'class': 'TimeWindowCompactionStrategy', 'compaction_window_unit': 'DAYS', 'compaction_window_size': 1}",
    "CREATE TABLE IF NOT EXISTS {ks}.buckets (tenant text, stream text, series blob, bucket bigint, PRIMARY KEY ((tenant, stream, series), bucket))",
    "CREATE TABLE IF NOT EXISTS {ks}.series (tenant text, stream text, measurement text, series blob, kind int, PRIMARY KEY ((tenant, stream, measurement), series))",
    "CREATE TABLE IF NOT EXISTS {ks}.measurements (tenant text, stream text, measurement text, PRIMARY KEY ((tenant, stream), measurement))",
    "CREATE TABLE IF NOT EXISTS {ks}.series_by_tag (tenant text, stream text, measurement text, tag blob, series blob, PRIMARY KEY ((tenant, stream, measurement, tag), series))",
    "CREATE TABLE IF NOT EXISTS {ks}.through (scope text, log_partition int, lane text, next bigint, PRIMARY KEY ((scope), log_partition, lane))",
];

/// Settings fixed for a keyspace's life, kept in it and checked at each start.
const SETTINGS_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS {ks}.settings (name text, value text, PRIMARY KEY ((name)))";

/// A TTL in seconds, none for rows kept forever.
type Ttl = Option<i64>;

/// Tables written with a TTL, each with a prepared insert per TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Insert {
    Sample,
    Bucket,
    Series,
    Measurement,
    Tag,
}

impl Insert {
    fn cql(self, ks: &str, ttl: Ttl) -> String {
        let (table, columns) = match self {
            Insert::Sample => ("samples", "tenant, stream, series, bucket, ts, id, value"),
            Insert::Bucket => ("buckets", "tenant, stream, series, bucket"),
            Insert::Series => ("series", "tenant, stream, measurement, series, kind"),
            Insert::Measurement => ("measurements", "tenant, stream, measurement"),
            Insert::Tag => ("series_by_tag", "tenant, stream, measurement, tag, series"),
        };
        let marks = vec!["?"; columns.split(", ").count()].join(", ");
        // A literal TTL, not a bind marker: one statement per TTL step, and the same text
        // works on servers that don't bind TTLs.
        let using = ttl.map_or(String::new(), |s| format!(" USING TTL {s}"));
        format!("INSERT INTO {ks}.{table} ({columns}) VALUES ({marks}){using}")
    }
}

/// The statements without TTL, prepared at startup.
struct Statements {
    kind: PreparedStatement,
    buckets: PreparedStatement,
    rows: PreparedStatement,
    delete_row: PreparedStatement,
    measurements: PreparedStatement,
    series: PreparedStatement,
    tagged: PreparedStatement,
    write_through: PreparedStatement,
    delete_through: PreparedStatement,
    read_through: PreparedStatement,
}

impl Statements {
    async fn prepare(session: &Session, ks: &str) -> Result<Self, StoreError> {
        let p = |cql: String| async move {
            session
                .prepare(cql)
                .await
                .map_err(|e| prepare_error("preparing statements", &e))
        };
        Ok(Self {
            kind: p(format!("SELECT series, kind FROM {ks}.series WHERE tenant = ? AND stream = ? AND measurement = ? AND series = ?")).await?,
            buckets: p(format!("SELECT bucket FROM {ks}.buckets WHERE tenant = ? AND stream = ? AND series = ? AND bucket >= ? AND bucket < ?")).await?,
            rows: p(format!("SELECT ts, id, value FROM {ks}.samples WHERE tenant = ? AND stream = ? AND series = ? AND bucket = ? AND ts >= ? AND ts < ?")).await?,
            delete_row: p(format!("DELETE FROM {ks}.samples WHERE tenant = ? AND stream = ? AND series = ? AND bucket = ? AND ts = ? AND id = ?")).await?,
            measurements: p(format!("SELECT measurement FROM {ks}.measurements WHERE tenant = ? AND stream = ? AND measurement >= ?")).await?,
            series: p(format!("SELECT series FROM {ks}.series WHERE tenant = ? AND stream = ? AND measurement = ? AND series > ?")).await?,
            tagged: p(format!("SELECT series FROM {ks}.series_by_tag WHERE tenant = ? AND stream = ? AND measurement = ? AND tag = ? AND series > ?")).await?,
            write_through: p(format!("INSERT INTO {ks}.through (scope, log_partition, lane, next) VALUES (?, ?, ?, ?)")).await?,
            delete_through: p(format!("DELETE FROM {ks}.through WHERE scope = ? AND log_partition = ? AND lane = ?")).await?,
            read_through: p(format!("SELECT log_partition, lane, next FROM {ks}.through WHERE scope = ?")).await?,
        })
    }
}

/// One row of the samples table.
struct Row {
    stream: String,
    series: Vec<u8>,
    bucket: i64,
    ts: Nanos,
    id: Vec<u8>,
    value: Vec<u8>,
    ttl: Ttl,
}

/// An index row a write needs, with the longest TTL of the rows that need it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum IndexRow {
    Bucket {
        stream: String,
        series: Vec<u8>,
        bucket: i64,
    },
    Series {
        stream: String,
        measurement: String,
        series: Vec<u8>,
        kind: i32,
    },
    Measurement {
        stream: String,
        measurement: String,
    },
    Tag {
        stream: String,
        measurement: String,
        tag: Vec<u8>,
        series: Vec<u8>,
    },
}

impl IndexRow {
    fn table(&self) -> Insert {
        match self {
            IndexRow::Bucket { .. } => Insert::Bucket,
            IndexRow::Series { .. } => Insert::Series,
            IndexRow::Measurement { .. } => Insert::Measurement,
            IndexRow::Tag { .. } => Insert::Tag,
        }
    }
}

/// What a write sends: rows, and the index rows they need (with their TTLs).
#[derive(Default)]
struct Writes {
    rows: Vec<Row>,
    index: BTreeMap<IndexRow, Ttl>,
}

impl Writes {
    /// Adds `row` of `series` (its index rows too, with `tags` and `kind`).
    fn add(&mut self, row: Row, measurement: &str, tags: &[(&str, &str)], kind: i32) {
        let mut need = |index: IndexRow| {
            let ttl = self.index.entry(index).or_insert(Some(0));
            *ttl = longer(*ttl, row.ttl);
        };
        need(IndexRow::Bucket {
            stream: row.stream.clone(),
            series: row.series.clone(),
            bucket: row.bucket,
        });
        if row.series != NONE {
            need(IndexRow::Series {
                stream: row.stream.clone(),
                measurement: measurement.to_owned(),
                series: row.series.clone(),
                kind,
            });
            need(IndexRow::Measurement {
                stream: row.stream.clone(),
                measurement: measurement.to_owned(),
            });
            for (k, v) in tags {
                need(IndexRow::Tag {
                    stream: row.stream.clone(),
                    measurement: measurement.to_owned(),
                    tag: keys::tag(k, v),
                    series: row.series.clone(),
                });
            }
        }
        self.rows.push(row);
    }
}

/// `rows` cut into batches of at most [`BATCH_ROWS`] rows and [`BATCH_BYTES`] bytes of
/// values (a row larger than that alone).
fn batches_of<'a, 'r>(rows: &'a [&'r Row]) -> Vec<&'a [&'r Row]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, row) in rows.iter().enumerate() {
        let size = row.value.len() + row.id.len();
        if i > start && (i - start == BATCH_ROWS || bytes + size > BATCH_BYTES) {
            out.push(&rows[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

/// The longer of two TTLs (none: forever).
fn longer(a: Ttl, b: Ttl) -> Ttl {
    Some(a?.max(b?))
}

/// The TTL of a row of time `ts` kept for `retention` at `now`, rounded up to
/// [`TTL_STEP_SECS`]; none (outside) when the row is already past its retention.
fn ttl(retention: Retention, ts: Nanos, now: Nanos) -> Option<Ttl> {
    let Retention::For(keep) = retention else {
        return Some(None);
    };
    let left = i128::from(ts) + keep.as_nanos() as i128 - i128::from(now);
    let left = u128::try_from(left).ok().filter(|l| *l > 0)?;
    let step = TTL_STEP_SECS as u128;
    let rounded = left.div_ceil(1_000_000_000).div_ceil(step) * step;
    Some(Some(rounded.min(MAX_TTL_SECS as u128) as i64))
}

/// The start of the bucket of `ts` of span `width`.
fn bucket_of(ts: Nanos, width: Nanos) -> i64 {
    // Saturates at the earliest time, whose bucket start is before it.
    ts.saturating_sub(ts.rem_euclid(width))
}

/// What a rollup tier's stream is named by: then the tier.
const TIER_PREFIX: &str = "tier:";

/// The stream of a rollup tier.
fn tier_stream(tier: &str) -> String {
    format!("{TIER_PREFIX}{tier}")
}

/// A point's value as stored: postcard of [`FieldValue`] (tagged by its type).
fn encode_value(value: &FieldValue) -> Vec<u8> {
    // Can't fail for these plain types; an empty value would read back as corrupt, never
    // as another value.
    postcard::to_allocvec(value).unwrap_or_default()
}

fn kind_code(ty: FieldType) -> i32 {
    i32::from(ty.code())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The store error of a failed request `what`: retryable while the cluster is
/// unreachable, overloaded or short of replicas; not for a request it refuses.
fn execution_error(what: &'static str, e: &ExecutionError) -> StoreError {
    let reason = e.to_string();
    match e {
        ExecutionError::RequestTimeout(_) => StoreError::Timeout { what, reason },
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => {
            db_error(what, db, reason)
        }
        ExecutionError::BadQuery(_) | ExecutionError::PrepareError(_) => {
            StoreError::Refused { what, reason }
        }
        _ => StoreError::Unreachable { what, reason },
    }
}

fn db_error(what: &'static str, db: &DbError, reason: String) -> StoreError {
    match db {
        DbError::SyntaxError
        | DbError::Invalid
        | DbError::AlreadyExists { .. }
        | DbError::FunctionFailure { .. }
        | DbError::AuthenticationError
        | DbError::Unauthorized
        | DbError::ConfigError
        | DbError::ProtocolError => StoreError::Refused { what, reason },
        _ => StoreError::Timeout { what, reason },
    }
}

fn prepare_error(what: &'static str, e: &PrepareError) -> StoreError {
    let reason = e.to_string();
    match e {
        PrepareError::ConnectionPoolError(_) => StoreError::Unreachable { what, reason },
        _ => StoreError::Refused { what, reason },
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// The driver's consistency of config name `name` (checked when the config loaded).
fn consistency(name: &str) -> Consistency {
    match name {
        "one" => Consistency::One,
        "local_one" => Consistency::LocalOne,
        "quorum" => Consistency::Quorum,
        "each_quorum" => Consistency::EachQuorum,
        "all" => Consistency::All,
        _ => Consistency::LocalQuorum,
    }
}

/// The ScyllaDB store. See the module docs.
pub struct ScyllaStore {
    db: Db,
    /// Runs the driver's connections. Taken at drop and shut down in the background: the
    /// last holder of the store may be an async task, where a blocking shutdown panics.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for ScyllaStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The connected store: everything its async methods need.
struct Db {
    session: Session,
    keyspace: String,
    statements: Statements,
    /// Inserts prepared per table and TTL.
    inserts: tokio::sync::Mutex<HashMap<(Insert, Ttl), PreparedStatement>>,
    raw_bucket: Nanos,
    /// The bucket span of tiers without one of their own.
    tier_bucket: Nanos,
    /// Tiers' own bucket spans.
    tier_buckets: HashMap<String, Nanos>,
    /// Tiers whose span is checked against the keyspace's settings.
    pinned: Mutex<std::collections::HashSet<String>>,
    concurrency: usize,
    /// Index rows written, with when they expire (seconds since the epoch; none: never).
    known: Mutex<HashMap<TenantId, HashMap<IndexRow, Option<i64>>>>,
    /// Field types of raw series, by series key.
    kinds: Mutex<HashMap<Vec<u8>, FieldType>>,
    /// How far each partition's (and lane's) written points reach.
    through: Mutex<Reach>,
    /// What of `through` the table holds.
    synced: Mutex<Reach>,
    /// Since when, and why, the cluster fails requests; none while they succeed.
    trouble: Mutex<Option<(SystemTime, String)>>,
}

impl ScyllaStore {
    /// Connects to the cluster of `config`, creates the keyspace and tables when missing
    /// (idempotent), waits for the nodes to agree on the schema, and checks the keyspace's
    /// fixed settings (bucket spans) match the config.
    ///
    /// # Errors
    /// When no node answers, the schema can't be created or agreed on, or the keyspace was
    /// created with other bucket spans; each error says which.
    pub fn connect(config: &ScyllaConfig) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("scylla")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Storage(format!("starting the ScyllaDB runtime: {e}")))?;
        let db = runtime.block_on(Db::connect(config))?;
        Ok(Self {
            db,
            runtime: Some(runtime),
        })
    }

    /// Runs `f` on the store's runtime, noting trouble while the cluster fails it.
    fn run<'a, T>(
        &'a self,
        f: impl Future<Output = Result<T, StoreError>> + 'a,
    ) -> Result<T, StoreError> {
        let Some(runtime) = &self.runtime else {
            return Err(StoreError::Storage(
                "the ScyllaDB store is shut down".into(),
            ));
        };
        let result = runtime.block_on(f);
        let mut trouble = lock(&self.db.trouble);
        match &result {
            Ok(_) => *trouble = None,
            Err(e) if e.is_retryable() => {
                let since = trouble.as_ref().map_or_else(SystemTime::now, |(t, _)| *t);
                *trouble = Some((since, e.to_string()));
            }
            Err(_) => {}
        }
        result
    }
}

impl Db {
    async fn connect(config: &ScyllaConfig) -> Result<Self, StoreError> {
        let mut lb = DefaultPolicy::builder().token_aware(true);
        if let Some(dc) = &config.local_datacenter {
            lb = lb.prefer_datacenter(dc.clone()).permit_dc_failover(false);
        }
        let profile = ExecutionProfile::builder()
            .consistency(consistency(&config.consistency))
            .request_timeout(Some(Duration::from_millis(config.request_timeout_ms)))
            .load_balancing_policy(lb.build())
            .build();
        let mut builder = SessionBuilder::new()
            .known_nodes(&config.nodes)
            .connection_timeout(Duration::from_millis(config.connect_timeout_ms))
            .default_execution_profile_handle(profile.into_handle())
            // Waited for explicitly below, with an error that says what to do.
            .auto_await_schema_agreement(false);
        if let Some(user) = &config.username {
            let password = config.password.as_ref().map_or("", |p| p.expose());
            builder = builder.user(user, password);
        }
        let nodes = config.nodes.join(",");
        let session = builder.build().await.map_err(|e| match e {
            NewSessionError::FailedToResolveAnyHostname(_)
            | NewSessionError::EmptyKnownNodesList => StoreError::Refused {
                what: "connecting",
                reason: format!("{nodes}: {e}"),
            },
            _ => StoreError::Unreachable {
                what: "connecting",
                reason: format!("{nodes}: {e}"),
            },
        })?;
        if let Some(dc) = &config.local_datacenter {
            let known: std::collections::BTreeSet<String> = session
                .get_cluster_state()
                .get_nodes_info()
                .iter()
                .filter_map(|n| n.datacenter.clone())
                .collect();
            // Nodes that don't say their datacenter (no metadata) can't be checked.
            if !known.is_empty() && !known.contains(dc) {
                return Err(StoreError::Refused {
                    what: "connecting",
                    reason: format!(
                        "store.local_datacenter = `{dc}` is not a datacenter of the cluster at {nodes}; its datacenters: {known:?}"
                    ),
                });
            }
        }
        let ks = &config.keyspace;
        let replication = if config.datacenters.is_empty() {
            format!(
                "{{'class': 'NetworkTopologyStrategy', 'replication_factor': {}}}",
                config.replication_factor
            )
        } else {
            let dcs: Vec<String> = config
                .datacenters
                .iter()
                .map(|(dc, n)| format!("'{dc}': {n}"))
                .collect();
            format!("{{'class': 'NetworkTopologyStrategy', {}}}", dcs.join(", "))
        };
        let ddl = std::iter::once(format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH REPLICATION = {replication}"
        ))
        .chain(
            SCHEMA
                .iter()
                .chain([&SETTINGS_TABLE])
                .map(|t| t.replace("{ks}", ks)),
        );
        for statement in ddl {
            session
                .query_unpaged(statement.as_str(), ())
                .await
                .map_err(|e| execution_error("creating the schema", &e))?;
        }
        if config.schema_agreement_timeout_ms > 0 {
            let wait = Duration::from_millis(config.schema_agreement_timeout_ms);
            match tokio::time::timeout(wait, session.await_schema_agreement()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(StoreError::Unreachable {
                        what: "agreeing on the schema",
                        reason: e.to_string(),
                    });
                }
                Err(_) => {
                    return Err(StoreError::Timeout {
                        what: "agreeing on the schema",
                        reason: format!(
                            "the nodes still disagree on the schema version after {wait:?} (a node down or still applying it? `nodetool describecluster` shows the versions)"
                        ),
                    });
                }
            }
        }
        let statements = Statements::prepare(&session, ks).await?;
        let (raw, tier, tiers) = config.buckets().map_err(|reason| StoreError::Refused {
            what: "reading the config",
            reason,
        })?;
        let nanos = |d: Duration| Nanos::try_from(d.as_nanos()).unwrap_or(Nanos::MAX);
        let db = Self {
            session,
            keyspace: ks.clone(),
            statements,
            inserts: tokio::sync::Mutex::default(),
            raw_bucket: nanos(raw),
            tier_bucket: nanos(tier),
            tier_buckets: tiers.into_iter().map(|(t, d)| (t, nanos(d))).collect(),
            pinned: Mutex::default(),
            concurrency: config.concurrency,
            known: Mutex::default(),
            kinds: Mutex::default(),
            through: Mutex::default(),
            synced: Mutex::default(),
            trouble: Mutex::default(),
        };
        db.check_setting("raw_bucket", &db.raw_bucket.to_string())
            .await?;
        Ok(db)
    }

    /// Records `value` as the keyspace's setting `name`, or checks it against the one
    /// recorded: rows already written are laid out by it.
    async fn check_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        let ks = &self.keyspace;
        let what = "checking the keyspace's settings";
        let found = self
            .session
            .query_unpaged(
                format!("SELECT value FROM {ks}.settings WHERE name = ?"),
                (name,),
            )
            .await
            .map_err(|e| execution_error(what, &e))?
            .into_rows_result()
            .map_err(|e| corrupt(what, e))?
            .maybe_first_row::<(String,)>()
            .map_err(|e| corrupt(what, e))?;
        match found {
            Some((stored,)) if stored != value => Err(StoreError::Refused {
                what,
                reason: format!(
                    "keyspace {ks} was created with {name} = {stored} ns, the config says {value} ns; its rows are laid out by the first, so set that back (or use a new keyspace)"
                ),
            }),
            Some(_) => Ok(()),
            None => self
                .session
                .query_unpaged(
                    format!("INSERT INTO {ks}.settings (name, value) VALUES (?, ?)"),
                    (name, value),
                )
                .await
                .map(|_| ())
                .map_err(|e| execution_error(what, &e)),
        }
    }

    /// The insert into `table` with `ttl`, prepared on first use.
    async fn insert(&self, table: Insert, ttl: Ttl) -> Result<PreparedStatement, StoreError> {
        let mut inserts = self.inserts.lock().await;
        if let Some(statement) = inserts.get(&(table, ttl)) {
            return Ok(statement.clone());
        }
        let statement = self
            .session
            .prepare(table.cql(&self.keyspace, ttl))
            .await
            .map_err(|e| prepare_error("preparing an insert", &e))?;
        inserts.insert((table, ttl), statement.clone());
        Ok(statement)
    }

    /// The bucket span of `stream`: a tier's is pinned in the keyspace's settings at its
    /// first use, since its rows are laid out by it.
    async fn width(&self, stream: &str) -> Result<Nanos, StoreError> {
        let Some(tier) = stream.strip_prefix(TIER_PREFIX) else {
            return Ok(self.raw_bucket);
        };
        let width = self
            .tier_buckets
            .get(tier)
            .copied()
            .unwrap_or(self.tier_bucket);
        if !lock(&self.pinned).contains(tier) {
            let name = format!("tier_bucket:{tier}");
            self.check_setting(&name, &width.to_string()).await?;
            lock(&self.pinned).insert(tier.to_owned());
        }
        Ok(width)
    }

    /// Sends `writes` of `tenant`: rows in unlogged batches of one partition, index rows
    /// not known to be there; at most `concurrency` requests at a time.
    async fn send(&self, tenant: &TenantId, writes: Writes) -> Result<(), StoreError> {
        let now_secs = crate::time::now_ns() / 1_000_000_000;
        let expiry = |ttl: Ttl| ttl.map(|t| now_secs.saturating_add(t));
        let fresh: Vec<(IndexRow, Ttl)> = {
            let known = lock(&self.known);
            let known = known.get(tenant);
            writes
                .index
                .into_iter()
                .filter(
                    |(row, ttl)| match (known.and_then(|k| k.get(row)), expiry(*ttl)) {
                        (None, _) => true,
                        (Some(None), _) => false,
                        (Some(Some(_)), None) => true,
                        // Refreshed only when it would live an hour longer.
                        (Some(Some(until)), Some(new)) => new > until.saturating_add(TTL_STEP_SECS),
                    },
                )
                .collect()
        };
        let mut groups: BTreeMap<(&str, &[u8], i64, Ttl), Vec<&Row>> = BTreeMap::new();
        for row in &writes.rows {
            groups
                .entry((&row.stream, &row.series, row.bucket, row.ttl))
                .or_default()
                .push(row);
        }
        type Request<'a> = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send + 'a>>;
        let t = tenant.as_str();
        let mut requests: Vec<Request<'_>> = Vec::new();
        for ((.., ttl), rows) in &groups {
            for chunk in batches_of(rows) {
                let ttl = *ttl;
                requests.push(Box::pin(async move {
                    let insert = self.insert(Insert::Sample, ttl).await?;
                    let mut batch = CqlBatch::new(BatchType::Unlogged);
                    let values: Vec<_> = chunk
                        .iter()
                        .map(|r| {
                            batch.append_statement(insert.clone());
                            (t, &r.stream, &r.series, r.bucket, r.ts, &r.id, &r.value)
                        })
                        .collect();
                    self.session
                        .batch(&batch, values)
                        .await
                        .map(|_| ())
                        .map_err(|e| execution_error("writing rows", &e))
                }));
            }
        }
        for (row, ttl) in &fresh {
            let ttl = *ttl;
            requests.push(Box::pin(async move {
                let insert = self.insert(row.table(), ttl).await?;
                let s = &self.session;
                let done = match row {
                    IndexRow::Bucket {
                        stream,
                        series,
                        bucket,
                    } => {
                        s.execute_unpaged(&insert, (t, stream, series, *bucket))
                            .await
                    }
                    IndexRow::Series {
                        stream,
                        measurement,
                        series,
                        kind,
                    } => {
                        let values = (t, stream, measurement, series, *kind);
                        s.execute_unpaged(&insert, values).await
                    }
                    IndexRow::Measurement {
                        stream,
                        measurement,
                    } => s.execute_unpaged(&insert, (t, stream, measurement)).await,
                    IndexRow::Tag {
                        stream,
                        measurement,
                        tag,
                        series,
                    } => {
                        let values = (t, stream, measurement, tag, series);
                        s.execute_unpaged(&insert, values).await
                    }
                };
                done.map(|_| ())
                    .map_err(|e| execution_error("writing the series index", &e))
            }));
        }
        stream::iter(requests)
            .buffer_unordered(self.concurrency)
            .try_collect::<Vec<()>>()
            .await?;
        let mut known = lock(&self.known);
        if known.values().map(HashMap::len).sum::<usize>() > KNOWN_CAP {
            known.clear();
        }
        let own = known.entry(tenant.clone()).or_default();
        for (row, ttl) in fresh {
            own.insert(row, expiry(ttl));
        }
        Ok(())
    }

    /// Reads the field types of the series `field_keys` (of `points`' fields) this process
    /// doesn't know from the index (once per series, concurrently).
    async fn learn_kinds(
        &self,
        tenant: &TenantId,
        points: &[Point],
        field_keys: &[Vec<Vec<u8>>],
    ) -> Result<(), StoreError> {
        let unknown: HashMap<&[u8], &str> = {
            let kinds = lock(&self.kinds);
            let mut unknown = HashMap::new();
            for (point, keys) in points.iter().zip(field_keys) {
                for key in keys {
                    if !kinds.contains_key(key) {
                        unknown.insert(key.as_slice(), point.measurement.as_str());
                    }
                }
            }
            unknown
        };
        let found: Vec<Option<(Vec<u8>, FieldType)>> = stream::iter(unknown)
            .map(|(key, measurement)| async move {
                let ty = self.read_kind(tenant, measurement, key).await?;
                Ok::<_, StoreError>(ty.map(|ty| (key.to_vec(), ty)))
            })
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await?;
        let mut kinds = lock(&self.kinds);
        if kinds.len() > KNOWN_CAP {
            kinds.clear();
        }
        kinds.extend(found.into_iter().flatten());
        Ok(())
    }

    async fn read_kind(
        &self,
        tenant: &TenantId,
        measurement: &str,
        key: &[u8],
    ) -> Result<Option<FieldType>, StoreError> {
        let mut kind = None;
        self.pages(
            &self.statements.kind,
            (tenant.as_str(), RAW, measurement, key),
            |(series, code): (Vec<u8>, Option<i32>)| {
                // Checked here too: a server may ignore the clustering key's equality.
                if series == key {
                    kind = code
                        .and_then(|c| u8::try_from(c).ok())
                        .and_then(FieldType::from_code);
                    return Ok(false);
                }
                Ok(true)
            },
        )
        .await?;
        Ok(kind)
    }

    /// Writes raw points, refusing those the store can't take.
    async fn write(&self, batches: &[Batch<'_>]) -> Result<Vec<Refused>, StoreError> {
        let now = crate::time::now_ns();
        let mut refused = Vec::new();
        for (b, batch) in batches.iter().enumerate() {
            let tenant = batch.tenant;
            let points = match batch.points.to_made() {
                Ok(points) => points,
                Err(reason) => {
                    refused.extend((0..batch.points.len()).map(|point| Refused {
                        batch: b,
                        point,
                        reason: PointError::Unreadable(reason.clone()),
                    }));
                    continue;
                }
            };
            // Each field's series key, built once: for the type lookups, then the rows.
            let field_keys: Vec<Vec<Vec<u8>>> = points
                .iter()
                .map(|point| {
                    let key = |field: &crate::point::Field| {
                        let mut key = Vec::new();
                        keys::series_of_into(&mut key, tenant, point, &field.key);
                        key
                    };
                    point.fields.iter().map(key).collect()
                })
                .collect();
            self.learn_kinds(tenant, &points, &field_keys).await?;
            let mut writes = Writes::default();
            for (i, (point, keys)) in points.iter().zip(field_keys).enumerate() {
                match self.rows_of(batch.retention, point, keys, now) {
                    Ok(rows) => {
                        let tags: Vec<(&str, &str)> = point
                            .tags
                            .iter()
                            .map(|t| (t.key.as_str(), t.value.as_str()))
                            .collect();
                        for (row, kind) in rows {
                            writes.add(row, &point.measurement, &tags, kind);
                        }
                    }
                    Err(reason) => refused.push(Refused {
                        batch: b,
                        point: i,
                        reason,
                    }),
                }
            }
            self.send(tenant, writes).await?;
        }
        Ok(refused)
    }

    /// The rows of `point`'s fields, whose series keys are `field_keys` (with their
    /// kinds), or why the point is refused whole. Notes the types of new series.
    fn rows_of(
        &self,
        retention: Retention,
        point: &Point,
        field_keys: Vec<Vec<u8>>,
        now: Nanos,
    ) -> Result<Vec<(Row, i32)>, PointError> {
        let mut kinds = lock(&self.kinds);
        let mut rows = Vec::with_capacity(point.fields.len());
        for (field, key) in point.fields.iter().zip(field_keys) {
            if key.len() > MAX_SERIES_KEY {
                return Err(PointError::KeyTooLong {
                    field: field.key.to_string(),
                    bytes: key.len(),
                    limit: MAX_SERIES_KEY,
                });
            }
            let got = field.value.field_type();
            if let Some(stored) = kinds.get(&key).copied().filter(|t| *t != got) {
                return Err(PointError::TypeConflict {
                    field: field.key.to_string(),
                    stored,
                    got,
                });
            }
            rows.push((key, got, &field.value));
        }
        let Some(ttl) = ttl(retention, point.timestamp, now) else {
            // Past retention already: it would expire as it is written.
            return Ok(Vec::new());
        };
        Ok(rows
            .into_iter()
            .map(|(key, ty, value)| {
                if !kinds.contains_key(&key) {
                    kinds.insert(key.clone(), ty);
                }
                let row = Row {
                    stream: RAW.to_owned(),
                    series: key,
                    bucket: bucket_of(point.timestamp, self.raw_bucket),
                    ts: point.timestamp,
                    id: NONE.to_vec(),
                    value: encode_value(value),
                    ttl,
                };
                (row, kind_code(ty))
            })
            .collect())
    }

    /// Runs `statement` once for each row of `values`, at most `concurrency` at a time.
    async fn execute_each<V: SerializeRow>(
        &self,
        what: &'static str,
        statement: &PreparedStatement,
        values: impl IntoIterator<Item = V>,
    ) -> Result<(), StoreError> {
        stream::iter(values)
            .map(|row| async move {
                self.session
                    .execute_unpaged(statement, row)
                    .await
                    .map(|_| ())
                    .map_err(|e| execution_error(what, &e))
            })
            .buffer_unordered(self.concurrency)
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }

    /// Calls `each` with the rows of one series of `stream` in `range`, in time order,
    /// until it returns false.
    async fn scan(
        &self,
        tenant: &TenantId,
        stream: &str,
        series: &[u8],
        range: Range<Nanos>,
        mut each: impl FnMut(Nanos, Vec<u8>, Vec<u8>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        if range.start >= range.end {
            return Ok(());
        }
        let t = tenant.as_str();
        let width = self.width(stream).await?;
        let first = bucket_of(range.start, width);
        let mut buckets = Vec::new();
        self.pages(
            &self.statements.buckets,
            (t, stream, series, first, range.end),
            |(bucket,): (i64,)| {
                // A server that ignores clustering ranges still gets the right buckets.
                if (first..range.end).contains(&bucket) {
                    buckets.push(bucket);
                }
                Ok(true)
            },
        )
        .await?;
        buckets.sort_unstable();
        buckets.dedup();
        for bucket in buckets {
            let mut go_on = true;
            self.pages(
                &self.statements.rows,
                (t, stream, series, bucket, range.start, range.end),
                |(ts, id, value): (i64, Vec<u8>, Vec<u8>)| {
                    // Rows come in clustering order (time, id); a server that ignores
                    // clustering ranges still gives the right ones.
                    if range.contains(&ts) {
                        go_on = each(ts, id, value)?;
                    }
                    Ok(go_on)
                },
            )
            .await?;
            if !go_on {
                break;
            }
        }
        Ok(())
    }

    /// Runs `statement` with `values` page by page, calling `each` with every row until it
    /// returns false.
    async fn pages<R>(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
        mut each: impl FnMut(R) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError>
    where
        R: for<'f, 'm> ::scylla::deserialize::row::DeserializeRow<'f, 'm>,
    {
        let what = "reading";
        let mut statement = statement.clone();
        statement.set_page_size(PAGE_ROWS);
        let mut paging = PagingState::start();
        loop {
            let (result, next) = self
                .session
                .execute_single_page(&statement, &values, paging)
                .await
                .map_err(|e| execution_error(what, &e))?;
            let rows = result.into_rows_result().map_err(|e| corrupt(what, e))?;
            for row in rows.rows::<R>().map_err(|e| corrupt(what, e))? {
                if !each(row.map_err(|e| corrupt(what, e))?)? {
                    return Ok(());
                }
            }
            match next.into_paging_control_flow() {
                std::ops::ControlFlow::Break(()) => return Ok(()),
                std::ops::ControlFlow::Continue(state) => paging = state,
            }
        }
    }

    /// Up to `limit` series of `stream` matching `filter`, after `after`.
    async fn list_series(
        &self,
        tenant: &TenantId,
        stream: &str,
        filter: &SeriesFilter,
        after: Option<&SeriesKey>,
        limit: usize,
    ) -> Result<SeriesPage, StoreError> {
        let t = tenant.as_str();
        let mut measurements = Vec::new();
        match &filter.measurement {
            Some(m) => measurements.push(m.clone()),
            None => {
                let from = after.map_or("", |a| a.measurement.as_str());
                self.pages(
                    &self.statements.measurements,
                    (t, stream, from),
                    |(m,): (String,)| {
                        measurements.push(m);
                        Ok(true)
                    },
                )
                .await?;
                measurements.retain(|m| m.as_str() >= from);
                measurements.sort();
            }
        }
        let after_key = after.map(|a| (a.measurement.clone(), keys::series(tenant, a)));
        let mut page = SeriesPage::default();
        for measurement in measurements {
            let start = match &after_key {
                Some((m, key)) if *m == measurement => key.clone(),
                Some((m, _)) if *m > measurement => continue,
                _ => Vec::new(),
            };
            let mut found = Vec::new();
            let mut take = |(key,): (Vec<u8>,)| {
                if key <= start {
                    return Ok(true);
                }
                let series = keys::decode_series(&key)
                    .ok_or_else(|| corrupt("series key", "undecodable"))?;
                if filter.matches(&series) {
                    found.push((key, series));
                }
                Ok(found.len() <= limit)
            };
            match filter.tags.first() {
                Some((k, v)) => {
                    let tag = keys::tag(k, v);
                    let values = (t, stream, measurement.as_str(), tag, start.clone());
                    self.pages(&self.statements.tagged, values, &mut take)
                        .await?;
                }
                None => {
                    let values = (t, stream, measurement.as_str(), start.clone());
                    self.pages(&self.statements.series, values, &mut take)
                        .await?;
                }
            }
            found.sort();
            for (_, series) in found {
                if page.series.len() == limit {
                    page.more = true;
                    return Ok(page);
                }
                page.series.push(series);
            }
        }
        Ok(page)
    }

    /// Up to `max` rows of a series, and the time of the next.
    async fn read_rows(
        &self,
        tenant: &TenantId,
        stream: &str,
        series: &[u8],
        range: Range<Nanos>,
        max: usize,
    ) -> Result<(Vec<(Nanos, Vec<u8>)>, Option<Nanos>), StoreError> {
        let mut rows = Vec::new();
        let mut next = None;
        self.scan(tenant, stream, series, range, |ts, _, value| {
            if rows.len() == max {
                next = Some(ts);
                return Ok(false);
            }
            rows.push((ts, value));
            Ok(true)
        })
        .await?;
        Ok((rows, next))
    }

    /// Writes events (alerts, late data) of `tenant` to `stream`: (time, id, body).
    async fn write_events(
        &self,
        tenant: &TenantId,
        stream: &str,
        retention: Retention,
        events: Vec<(Nanos, Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let now = crate::time::now_ns();
        let mut writes = Writes::default();
        for (ts, id, value) in events {
            let Some(ttl) = ttl(retention, ts, now) else {
                continue;
            };
            let row = Row {
                stream: stream.to_owned(),
                series: NONE.to_vec(),
                bucket: bucket_of(ts, self.raw_bucket),
                ts,
                id,
                value,
                ttl,
            };
            writes.add(row, "", &[], NO_KIND);
        }
        self.send(tenant, writes).await
    }

    /// Upserts rows of a rollup tier and deletes the retracted ones.
    async fn write_rollups(
        &self,
        tenant: &TenantId,
        tier: Tier<'_>,
        rows: &[Rollup],
        retracted: &[(SeriesKey, Nanos)],
    ) -> Result<(), StoreError> {
        let stream = tier_stream(tier.name);
        let width = self.width(&stream).await?;
        let now = crate::time::now_ns();
        let mut writes = Writes::default();
        for row in rows {
            let Some(ttl) = ttl(tier.retention, row.start, now) else {
                continue;
            };
            let tags: Vec<(&str, &str)> = row
                .series
                .tags
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let r = Row {
                stream: stream.clone(),
                series: keys::series(tenant, &row.series),
                bucket: bucket_of(row.start, width),
                ts: row.start,
                id: NONE.to_vec(),
                value: format::encode_rollup(row.end, &row.values),
                ttl,
            };
            writes.add(r, &row.series.measurement, &tags, NO_KIND);
        }
        let t = tenant.as_str();
        let deletes = retracted.iter().map(|(series, start)| {
            let key = keys::series(tenant, series);
            (
                t,
                stream.as_str(),
                key,
                bucket_of(*start, width),
                *start,
                NONE,
            )
        });
        self.execute_each("retracting a window", &self.statements.delete_row, deletes)
            .await?;
        self.send(tenant, writes).await
    }

    async fn sync(&self) -> Result<Vec<Through>, StoreError> {
        let (pending, dropped) = {
            let mut through = lock(&self.through);
            let dropped = through.settle();
            let synced = lock(&self.synced);
            let pending: Vec<Through> = through
                .iter()
                .filter(|t| synced.get(t) != Some(t.next))
                .collect();
            (pending, dropped)
        };
        let rows = pending.iter().map(|t| {
            let next = i64::try_from(t.next).unwrap_or(i64::MAX);
            let partition = i32::try_from(t.partition).unwrap_or(i32::MAX);
            (THROUGH_SCOPE, partition, lane_name(t.lane.as_ref()), next)
        });
        self.execute_each(
            "noting how far the points reach",
            &self.statements.write_through,
            rows,
        )
        .await?;
        // After the partition's row that covers them: a crash between leaves a lane's row
        // behind its partition's, which says nothing more.
        let stale = dropped.iter().map(|(p, tenant)| {
            let partition = i32::try_from(*p).unwrap_or(i32::MAX);
            (THROUGH_SCOPE, partition, tenant.as_str())
        });
        self.execute_each(
            "dropping lanes' offsets their partition passed",
            &self.statements.delete_through,
            stale,
        )
        .await?;
        let mut synced = lock(&self.synced);
        for t in &pending {
            synced.note(t);
        }
        synced.settle();
        Ok(synced.iter().collect())
    }

    async fn checkpointed(&self) -> Result<Vec<Through>, StoreError> {
        let mut out = Reach::default();
        self.pages(
            &self.statements.read_through,
            (THROUGH_SCOPE,),
            |(partition, lane, next): (i32, String, i64)| {
                out.note(&Through {
                    partition: Partition::try_from(partition)
                        .map_err(|e| corrupt("through partition", e))?,
                    lane: (!lane.is_empty()).then(|| TenantId::new(&lane)),
                    next: Offset::try_from(next).map_err(|e| corrupt("through offset", e))?,
                });
                Ok(true)
            },
        )
        .await?;
        out.settle();
        Ok(out.iter().collect())
    }
}

/// The `lane` column of a through row: the tenant's name, or empty for every tenant's (a
/// tenant's name is never empty).
fn lane_name(lane: Option<&TenantId>) -> &str {
    lane.map_or("", TenantId::as_str)
}

impl Store for ScyllaStore {
    fn write(&self, batches: &[Batch<'_>], through: Through) -> Result<Vec<Refused>, StoreError> {
        let refused = self.run(self.db.write(batches))?;
        lock(&self.db.through).note(&through);
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
        if let Some(ty) = lock(&self.db.kinds).get(&key) {
            return Ok(Some(*ty));
        }
        self.run(self.db.read_kind(tenant, &point.measurement, &key))
    }

    fn sync(&self) -> Result<Vec<Through>, StoreError> {
        self.run(self.db.sync())
    }

    fn checkpointed(&self) -> Result<Vec<Through>, StoreError> {
        self.run(self.db.checkpointed())
    }

    fn series_page(
        &self,
        tenant: &TenantId,
        filter: &SeriesFilter,
        after: Option<&SeriesKey>,
        limit: usize,
    ) -> Result<SeriesPage, StoreError> {
        self.run(self.db.list_series(tenant, RAW, filter, after, limit))
    }

    fn read_page(
        &self,
        tenant: &TenantId,
        series: &SeriesKey,
        range: Range<Nanos>,
        max: usize,
    ) -> Result<ReadPage, StoreError> {
        let key = keys::series(tenant, series);
        let (rows, next) = self.run(self.db.read_rows(tenant, RAW, &key, range, max))?;
        let samples = rows
            .into_iter()
            .map(|(ts, value)| {
                postcard::from_bytes::<FieldValue>(&value)
                    .map(|v| (ts, v))
                    .map_err(|e| corrupt("point value", e))
            })
            .collect::<Result<_, _>>()?;
        Ok(ReadPage { samples, next })
    }

    fn expire_due(&self, _now: Nanos) -> Result<u64, StoreError> {
        // Rows carry their retention as a TTL: the database expires them.
        Ok(0)
    }

    fn write_alerts(
        &self,
        tenant: &TenantId,
        retention: Retention,
        alerts: &[Alert],
    ) -> Result<(), StoreError> {
        let events = alerts
            .iter()
            .map(|a| {
                let id = alert_id(a).into_bytes();
                (a.window_end, id, format::encode_alert(a))
            })
            .collect();
        self.run(self.db.write_events(tenant, ALERTS, retention, events))
    }

    fn alerts(&self, tenant: &TenantId, range: Range<Nanos>) -> Result<Vec<Alert>, StoreError> {
        let mut out = Vec::new();
        self.run(self.db.scan(tenant, ALERTS, NONE, range, |_, _, body| {
            out.push(format::decode_alert(&body).map_err(|e| corrupt("alert", e))?);
            Ok(true)
        }))?;
        Ok(out)
    }

    fn failure(&self) -> Option<String> {
        // Nothing here needs a restart: the driver reconnects by itself.
        None
    }

    fn trouble(&self) -> Option<String> {
        lock(&self.db.trouble).as_ref().map(|(since, why)| {
            format!(
                "ScyllaDB requests failing since {}: {why}",
                humantime::format_rfc3339_seconds(*since)
            )
        })
    }

    fn write_rollups(
        &self,
        tenant: &TenantId,
        tier: Tier<'_>,
        rows: &[Rollup],
        retracted: &[(SeriesKey, Nanos)],
    ) -> Result<(), StoreError> {
        self.run(self.db.write_rollups(tenant, tier, rows, retracted))
    }

    fn rollup_series_page(
        &self,
        tenant: &TenantId,
        tier: &str,
        filter: &SeriesFilter,
        after: Option<&SeriesKey>,
        limit: usize,
    ) -> Result<SeriesPage, StoreError> {
        let stream = tier_stream(tier);
        self.run(self.db.list_series(tenant, &stream, filter, after, limit))
    }

    fn read_rollups(
        &self,
        tenant: &TenantId,
        tier: &str,
        series: &SeriesKey,
        range: Range<Nanos>,
        max: usize,
    ) -> Result<RollupPage, StoreError> {
        let key = keys::series(tenant, series);
        let stream = tier_stream(tier);
        let (rows, next) = self.run(self.db.read_rows(tenant, &stream, &key, range, max))?;
        let rows = rows
            .into_iter()
            .map(|(start, value)| {
                format::decode_rollup(&value)
                    .map(|(end, values)| (start, end, values))
                    .map_err(|e| corrupt("rollup row", e))
            })
            .collect::<Result<_, _>>()?;
        Ok(RollupPage { rows, next })
    }

    fn write_late(
        &self,
        tenant: &TenantId,
        retention: Retention,
        records: &[LateRecord],
    ) -> Result<(), StoreError> {
        let events = records
            .iter()
            .map(|r| {
                // Unique per rule and series at a time: the rule's name in place of the
                // tenant of a series key.
                let id = keys::series(&TenantId::new(&r.rule), &r.series);
                (r.timestamp, id, format::encode_late(r))
            })
            .collect();
        self.run(self.db.write_events(tenant, LATE, retention, events))
    }

    fn late_page(
        &self,
        tenant: &TenantId,
        range: Range<Nanos>,
        max: usize,
    ) -> Result<LatePage, StoreError> {
        let mut page = LatePage::default();
        self.run(self.db.scan(tenant, LATE, NONE, range, |ts, _, body| {
            // Whole times only: the next page starts at a time, and holds all of it.
            if page.records.len() >= max && page.records.last().is_none_or(|r| r.timestamp != ts) {
                page.next = Some(ts);
                return Ok(false);
            }
            page.records
                .push(format::decode_late(&body).map_err(|e| corrupt("late record", e))?);
            Ok(true)
        }))?;
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The conformance suite, against the ScyllaDB nodes `SCYLLA_NODES` names
    /// (`host:9042,host:9042`), each test in a keyspace of its own.
    mod conformance {
        use std::sync::atomic::{AtomicU32, Ordering};

        use super::super::ScyllaStore;
        use crate::config::ScyllaConfig;

        fn fresh() -> Option<((), ScyllaStore)> {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let nodes = std::env::var("SCYLLA_NODES")
                .ok()
                .filter(|n| !n.is_empty())?;
            let mut config = ScyllaConfig::new(nodes.split(',').map(str::to_owned).collect());
            config.keyspace = format!(
                "sluice_conformance_{}_{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            config.replication_factor = 1;
            let store = ScyllaStore::connect(&config)
                .unwrap_or_else(|e| panic!("SCYLLA_NODES={nodes}: {e}"));
            Some(((), store))
        }

        crate::store::conformance::conformance!(fresh());
    }

    #[test]
    fn ttls_count_from_the_row_time_round_up_to_hours_and_skip_expired_rows() {
        let hour = 3_600_000_000_000;
        let day = Retention::For(Duration::from_secs(86_400));
        let now = 1_000 * hour;
        assert_eq!(ttl(Retention::Forever, i64::MIN, now), Some(None));
        assert_eq!(ttl(day, now, now), Some(Some(86_400)));
        assert_eq!(
            ttl(day, now - hour / 2, now),
            Some(Some(86_400)),
            "23.5 h up to 24"
        );
        assert_eq!(ttl(day, now - 2 * hour, now), Some(Some(22 * 3_600)));
        assert_eq!(ttl(day, now - 24 * hour, now), None, "expired as written");
        assert_eq!(ttl(day, i64::MIN, now), None);
        assert_eq!(
            ttl(day, i64::MAX, now),
            Some(Some(MAX_TTL_SECS)),
            "far future: the most CQL takes"
        );
    }

    #[test]
    fn batches_hold_at_most_64_rows_and_64_kib_and_a_huge_row_goes_alone() {
        let row = |bytes: usize| Row {
            stream: RAW.into(),
            series: NONE.to_vec(),
            bucket: 0,
            ts: 0,
            id: NONE.to_vec(),
            value: vec![0; bytes],
            ttl: None,
        };
        let sizes = |rows: &[Row]| {
            let refs: Vec<&Row> = rows.iter().collect();
            batches_of(&refs)
                .iter()
                .map(|b| b.len())
                .collect::<Vec<_>>()
        };
        let small: Vec<Row> = (0..130).map(|_| row(10)).collect();
        assert_eq!(sizes(&small), [64, 64, 2]);
        let mixed = [row(10), row(200_000), row(10), row(40_000), row(40_000)];
        assert_eq!(sizes(&mixed), [1, 1, 2, 1]);
        assert!(sizes(&[]).is_empty());
    }

    #[test]
    fn buckets_floor_negative_times_too() {
        assert_eq!(bucket_of(25, 10), 20);
        assert_eq!(bucket_of(-1, 10), -10);
        assert_eq!(bucket_of(i64::MIN, 10), i64::MIN);
        assert_eq!(bucket_of(i64::MAX, 10), i64::MAX - 7);
    }
}
