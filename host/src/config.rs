//! The service configuration (TOML), checked field by field by serde and across fields by
//! [`Config::validate`].
//!
//! Layering, lowest first: the defaults below, then the file (`config/sluice.toml` unless
//! `--config` names another), then command-line flags (`--listen`, `--data-dir`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::quota::Limits;
use crate::tenant::Secret;
use crate::window::RollupConfig;

/// The shipped default configuration, used when `config/sluice.toml` isn't on disk.
pub const DEFAULT_TOML: &str = include_str!("../../config/sluice.toml");

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTP API.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Where the embedded log, store and dead letters live.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// HTTP ingest limits.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// The transport between ingest and the pipeline.
    #[serde(default)]
    pub transport: TransportConfig,
    /// Where points are stored.
    #[serde(default)]
    pub store: StoreConfig,
    /// The plugin directory and the bounds of plugin calls.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// Lookup tables for enrichment plugins: name → CSV file (first column is the key).
    #[serde(default)]
    pub lookups: BTreeMap<String, PathBuf>,
    /// Event-time windows (of alert rules).
    #[serde(default)]
    pub windows: WindowsConfig,
    /// How often points past their tenant's `retention_days` are deleted.
    #[serde(default = "default_retention_interval_secs")]
    pub retention_interval_secs: u64,
    /// Chunk bytes the embedded store's compaction may read and write a second (MiB).
    #[serde(default = "default_compaction_mib_per_sec")]
    pub compaction_mib_per_sec: u64,
    /// Every tenant's quotas, where its own `limits` don't set them.
    #[serde(default)]
    pub limits: Limits,
    /// The admin API: its listener and tokens.
    #[serde(default)]
    pub admin: AdminConfig,
    /// The tenants, their tokens and pipelines.
    pub tenants: Vec<TenantConfig>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// The admin API: a listener of its own, and tokens tenant tokens are not.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Where it listens: loopback unless said otherwise, so only the machine's own
    /// operators reach it.
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
    /// Who may call it: each token with a name (the audit log's `by`).
    #[serde(default)]
    pub tokens: Vec<AdminToken>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
            tokens: Vec::new(),
        }
    }
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8081))
}

/// An admin token.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminToken {
    /// Who holds it (in the audit log).
    pub name: String,
    /// The token (16+ characters, not a tenant's).
    pub token: Secret,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

// Retention is counted in days: a minute late is nothing, and a pass costs a scan.
const fn default_retention_interval_secs() -> u64 {
    60
}

// A tenth of what a cheap SSD sustains: compaction trails the syncs by minutes at worst,
// and ingest keeps the disk.
const fn default_compaction_mib_per_sec() -> u64 {
    8
}

/// HTTP ingest limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest request body, after gzip decompression.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Whole-request timeout.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Records the pipeline may lag behind ingest on a partition before writes get 503.
    #[serde(default = "default_max_lag_records")]
    pub max_lag_records: u64,
    /// Requests served at once; more are refused with 503.
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// Longest series key of a point's field: measurement, tag keys and values, and field
    /// key, in bytes.
    #[serde(default = "default_max_series_key_bytes")]
    pub max_series_key_bytes: usize,
    /// Most tags on one point.
    #[serde(default = "default_max_tags")]
    pub max_tags: usize,
    /// Most fields on one point.
    #[serde(default = "default_max_fields")]
    pub max_fields: usize,
    /// Time for a client to send a request body, from its headers on (apart from
    /// `request_timeout_ms`, which bounds processing).
    #[serde(default = "default_body_timeout_ms")]
    pub body_timeout_ms: u64,
    /// Time for a client to send a request's headers.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// Time a connection may sit idle between requests before it is closed.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Open connections at most; more are closed at once. Keep it below the process's file
    /// descriptor limit.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Bytes of request bodies held in memory at once over all requests; past it, writes
    /// get 503.
    #[serde(default = "default_max_buffered_body_bytes")]
    pub max_buffered_body_bytes: usize,
}

// 32 MiB: well above Telegraf's default 1,000-metric batches (~100 KiB) and InfluxDB
// client batches of 5,000 lines, small enough that a few concurrent bodies fit in memory.
const fn default_max_body_bytes() -> usize {
    32 << 20
}
const fn default_request_timeout_ms() -> u64 {
    30_000
}
// 2,000 records of a few thousand points each: seconds of work at full speed, bounded disk.
const fn default_max_lag_records() -> u64 {
    2_000
}
const fn default_max_concurrent_requests() -> usize {
    256
}
// Far above real series keys (InfluxDB's are rarely over 1 KiB), far below the store's
// 64 KiB key limit, so no acknowledged point can be refused by the store for its length.
const fn default_max_series_key_bytes() -> usize {
    16 << 10
}
// Telegraf's richest inputs carry a few dozen tags; hundreds mean a client bug.
const fn default_max_tags() -> usize {
    256
}
// Telegraf's procstat and InfluxDB's own stats reach about 200 fields per point.
const fn default_max_fields() -> usize {
    1_024
}

// 32 MiB in a minute is 550 KB/s: any real client; a stalled upload is dropped in time.
const fn default_body_timeout_ms() -> u64 {
    60_000
}
// Headers are one packet for every real client.
const fn default_header_timeout_ms() -> u64 {
    10_000
}
// Telegraf flushes every 10 s by default: a minute keeps its connection, reaps abandoned ones.
const fn default_idle_timeout_ms() -> u64 {
    60_000
}
// Well under the usual 1,024-descriptor soft limit plus what the log and store keep open.
const fn default_max_connections() -> usize {
    768
}
// Sixteen bodies at the default size limit: ample for batches of thousands of lines.
const fn default_max_buffered_body_bytes() -> usize {
    512 << 20
}

/// Largest `ingest.max_series_key_bytes`: with `MAX_TAGS_LIMIT` tags, their length prefixes
/// and a tenant name, a key still fits the store's 65,535 bytes.
const MAX_SERIES_KEY_LIMIT: usize = 32 << 10;
/// Largest `ingest.max_tags`.
const MAX_TAGS_LIMIT: usize = 1_024;

impl IngestConfig {
    /// The HTTP server's limits.
    pub fn server_limits(&self) -> crate::server::ServerLimits {
        crate::server::ServerLimits {
            max_connections: self.max_connections,
            header_timeout: std::time::Duration::from_millis(self.header_timeout_ms),
            idle_timeout: std::time::Duration::from_millis(self.idle_timeout_ms),
            body_timeout: std::time::Duration::from_millis(self.body_timeout_ms),
            max_body_bytes: self.max_body_bytes,
            max_buffered_body_bytes: self.max_buffered_body_bytes,
        }
    }

    /// The per-point limits.
    pub fn limits(&self) -> crate::ingest::Limits {
        crate::ingest::Limits {
            max_series_key_bytes: self.max_series_key_bytes,
            max_tags: self.max_tags,
            max_fields: self.max_fields,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body_bytes(),
            request_timeout_ms: default_request_timeout_ms(),
            max_lag_records: default_max_lag_records(),
            max_concurrent_requests: default_max_concurrent_requests(),
            max_series_key_bytes: default_max_series_key_bytes(),
            max_tags: default_max_tags(),
            max_fields: default_max_fields(),
            body_timeout_ms: default_body_timeout_ms(),
            header_timeout_ms: default_header_timeout_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
            max_connections: default_max_connections(),
            max_buffered_body_bytes: default_max_buffered_body_bytes(),
        }
    }
}

/// Event-time windows.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WindowsConfig {
    /// How far ahead of the wall clock a point may be dated and still count in windows;
    /// later ones are stored but left out (and counted), so they can't close windows early.
    #[serde(default = "default_max_future_secs")]
    pub max_future_secs: u64,
    /// How long a partition must go without records before the wall clock closes its
    /// windows (the heartbeat); until then only event time does, so a backfill or a replay
    /// closes its windows one by one.
    #[serde(default = "default_idle_after_secs")]
    pub idle_after_secs: u64,
    /// How far behind the newest point of a partition another may arrive and still be on
    /// time: the watermark is the newest event time less this.
    #[serde(default = "default_allowed_disorder_secs")]
    pub allowed_disorder_secs: u64,
}

// Clocks drift by seconds, and batching agents hold points for up to a minute or so: an
// hour ahead is no honest clock.
const fn default_max_future_secs() -> u64 {
    3_600
}
// Several flush intervals of a Telegraf agent (10 s): a pause in a backfill is not idleness.
const fn default_idle_after_secs() -> u64 {
    30
}

// One flush interval of a Telegraf agent (10 s): agents flushing in turn don't make each
// other's points late.
const fn default_allowed_disorder_secs() -> u64 {
    10
}

impl Default for WindowsConfig {
    fn default() -> Self {
        Self {
            max_future_secs: default_max_future_secs(),
            idle_after_secs: default_idle_after_secs(),
            allowed_disorder_secs: default_allowed_disorder_secs(),
        }
    }
}

/// The transport implementation.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransportConfig {
    /// The embedded durable log under `data_dir/log`.
    Embedded {
        /// Partitions; points are keyed to one by tenant and series.
        #[serde(default = "default_partitions")]
        partitions: u32,
    },
    /// Apache Kafka: the processes of one consumer group share the partitions.
    Kafka(KafkaConfig),
}

impl TransportConfig {
    /// The number of partitions points are keyed to.
    pub fn partitions(&self) -> u32 {
        match self {
            TransportConfig::Embedded { partitions } => *partitions,
            TransportConfig::Kafka(kafka) => kafka.partitions,
        }
    }
}

const fn default_partitions() -> u32 {
    4
}

/// The Kafka transport: where the brokers are, the topics' names and shape, and any
/// librdkafka property (SASL, TLS, batching) passed through as it is.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port,host:port`.
    pub brokers: String,
    /// Prefix of the topics: `{prefix}points`, `{prefix}alerts`, `{prefix}late`,
    /// `{prefix}dead-letters`, `{prefix}state`.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// Partitions of the topics (created with this many when missing; an existing points
    /// topic with another count is refused at startup).
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// Replication factor of topics created by Sluice.
    #[serde(default = "default_replication")]
    pub replication: u16,
    /// The pipeline's consumer group: processes with the same group share the partitions.
    #[serde(default = "default_group")]
    pub group: String,
    /// How long an append waits for the brokers to confirm it (acks=all) before ingest
    /// answers 503; librdkafka gives the records up at the same time.
    #[serde(default = "default_append_timeout_ms")]
    pub append_timeout_ms: u64,
    /// librdkafka properties for every client (`security.protocol`, `sasl.password`,
    /// `linger.ms`...): shown as `***` in logs, since some are secrets.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, Secret>,
}

fn default_topic_prefix() -> String {
    "sluice.".into()
}

const fn default_replication() -> u16 {
    1
}

fn default_group() -> String {
    "sluice".into()
}

const fn default_append_timeout_ms() -> u64 {
    10_000
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig::Embedded {
            partitions: default_partitions(),
        }
    }
}

impl KafkaConfig {
    fn validate(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("transport.brokers is empty: name at least one `host:port`".into());
        }
        // Kafka's topic names: letters, digits, `.`, `_`, `-`, at most 249 (with the
        // longest suffix, `dead-letters`).
        let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if !self.topic_prefix.chars().all(legal) || self.topic_prefix.len() > 200 {
            return Err(format!(
                "transport.topic_prefix = {:?}: only letters, digits, `.`, `_` and `-`, at most 200",
                self.topic_prefix
            ));
        }
        if self.group.is_empty() {
            return Err("transport.group is empty".into());
        }
        if self.replication == 0 {
            return Err("transport.replication must be at least 1".into());
        }
        if self.append_timeout_ms == 0 {
            return Err("transport.append_timeout_ms must be positive".into());
        }
        Ok(())
    }
}

/// The store implementation.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum StoreConfig {
    /// The embedded store under `data_dir/store`.
    #[default]
    Embedded,
    /// A ScyllaDB (or Cassandra) cluster.
    Scylla(Box<ScyllaConfig>),
}

/// The ScyllaDB store: where the nodes are, the keyspace and its replication, how
/// requests are routed and how long they may take.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScyllaConfig {
    /// Contact points, `host:port` (the driver discovers the rest of the cluster).
    pub nodes: Vec<String>,
    /// The keyspace; created at startup when missing, with `replication`.
    #[serde(default = "default_keyspace")]
    pub keyspace: String,
    /// Replicas per datacenter of a keyspace Sluice creates: `{ dc1 = 3, dc2 = 3 }`
    /// (NetworkTopologyStrategy). Empty: `replication_factor` in every datacenter.
    #[serde(default)]
    pub datacenters: BTreeMap<String, u32>,
    /// Replicas in every datacenter when `datacenters` is empty.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: u32,
    /// The datacenter this process is in: requests go to its nodes only (no failover to
    /// another datacenter, whose latency would surprise). None: every node.
    #[serde(default)]
    pub local_datacenter: Option<String>,
    /// Consistency level of reads and writes: `one`, `local_one`, `local_quorum`,
    /// `quorum`, `each_quorum` or `all`.
    #[serde(default = "default_consistency")]
    pub consistency: String,
    /// User name, when the cluster authenticates.
    #[serde(default)]
    pub username: Option<String>,
    /// Password of `username` (shown as `***` in logs).
    #[serde(default)]
    pub password: Option<Secret>,
    /// How long one request may take before it fails (and is retried by the pipeline).
    #[serde(default = "default_scylla_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// How long opening a connection to a node may take.
    #[serde(default = "default_scylla_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// How long startup waits for the nodes to agree on the schema it created.
    #[serde(default = "default_schema_agreement_ms")]
    pub schema_agreement_timeout_ms: u64,
    /// Most requests one write keeps in flight.
    #[serde(default = "default_scylla_concurrency")]
    pub concurrency: usize,
    /// Time span of a raw series' partition (so none grows without bound), e.g. `1d`.
    /// Fixed for a keyspace: startup refuses another than the keyspace was created with.
    #[serde(default = "default_raw_bucket")]
    pub raw_bucket: String,
    /// Time span of a rollup tier series' partition, e.g. `30d`, for tiers without their
    /// own in `tier_buckets`. A tier's span is fixed at its first use in the keyspace.
    #[serde(default = "default_tier_bucket")]
    pub tier_bucket: String,
    /// Tiers' own partition spans, by tier name: `{ "1m" = "7d", "1h" = "1y" }`.
    #[serde(default)]
    pub tier_buckets: BTreeMap<String, String>,
}

fn default_keyspace() -> String {
    "sluice".into()
}

const fn default_replication_factor() -> u32 {
    3
}

fn default_consistency() -> String {
    "local_quorum".into()
}

const fn default_scylla_request_timeout_ms() -> u64 {
    10_000
}

const fn default_scylla_connect_timeout_ms() -> u64 {
    5_000
}

const fn default_schema_agreement_ms() -> u64 {
    60_000
}

const fn default_scylla_concurrency() -> usize {
    64
}

fn default_raw_bucket() -> String {
    "1d".into()
}

fn default_tier_bucket() -> String {
    "30d".into()
}

impl ScyllaConfig {
    /// A config for `nodes` with every other setting at its default.
    pub fn new(nodes: Vec<String>) -> Self {
        Self {
            nodes,
            keyspace: default_keyspace(),
            datacenters: BTreeMap::new(),
            replication_factor: default_replication_factor(),
            local_datacenter: None,
            consistency: default_consistency(),
            username: None,
            password: None,
            request_timeout_ms: default_scylla_request_timeout_ms(),
            connect_timeout_ms: default_scylla_connect_timeout_ms(),
            schema_agreement_timeout_ms: default_schema_agreement_ms(),
            concurrency: default_scylla_concurrency(),
            raw_bucket: default_raw_bucket(),
            tier_bucket: default_tier_bucket(),
            tier_buckets: BTreeMap::new(),
        }
    }

    /// The bucket spans: raw, tiers by default, and tiers' own.
    ///
    /// # Errors
    /// Naming the setting that isn't a duration of at least an hour.
    pub fn buckets(
        &self,
    ) -> Result<
        (
            std::time::Duration,
            std::time::Duration,
            BTreeMap<String, std::time::Duration>,
        ),
        String,
    > {
        let span = |name: &str, value: &str| {
            let span = humantime::parse_duration(value)
                .map_err(|e| format!("store.{name} = `{value}`: {e}"))?;
            if span < std::time::Duration::from_secs(3_600) {
                return Err(format!("store.{name} = `{value}`: at least 1h"));
            }
            Ok(span)
        };
        let mut tiers = BTreeMap::new();
        for (tier, value) in &self.tier_buckets {
            tiers.insert(tier.clone(), span(&format!("tier_buckets.{tier}"), value)?);
        }
        Ok((
            span("raw_bucket", &self.raw_bucket)?,
            span("tier_bucket", &self.tier_bucket)?,
            tiers,
        ))
    }

    fn validate(&self) -> Result<(), String> {
        if self.nodes.is_empty() {
            return Err("store.nodes: name at least one node, `host:9042`".into());
        }
        let ident = |s: &str| {
            s.len() <= 48
                && s.starts_with(|c: char| c.is_ascii_lowercase())
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if !ident(&self.keyspace) {
            return Err(format!(
                "store.keyspace = `{}`: lowercase letters, digits and `_`, starting with a letter, at most 48",
                self.keyspace
            ));
        }
        if let Some(dc) = self.datacenters.keys().find(|dc| {
            dc.is_empty()
                || !dc
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        }) {
            return Err(format!(
                "store.datacenters: `{dc}` is not a datacenter name"
            ));
        }
        if self.replication_factor == 0 || self.datacenters.values().any(|n| *n == 0) {
            return Err("store: replication factors must be at least 1".into());
        }
        if !CONSISTENCIES.contains(&self.consistency.as_str()) {
            return Err(format!(
                "store.consistency = `{}`: one of {}",
                self.consistency,
                CONSISTENCIES.join(", ")
            ));
        }
        if self.password.is_some() && self.username.is_none() {
            return Err("store.password is set without store.username".into());
        }
        if self.request_timeout_ms == 0 || self.connect_timeout_ms == 0 || self.concurrency == 0 {
            return Err(
                "store: request_timeout_ms, connect_timeout_ms and concurrency must be positive"
                    .into(),
            );
        }
        self.buckets().map(|_| ())
    }
}

/// The consistency levels `store.consistency` takes.
pub const CONSISTENCIES: [&str; 6] = [
    "one",
    "local_one",
    "local_quorum",
    "quorum",
    "each_quorum",
    "all",
];

/// Plugins.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Directory of `NAME.wasm` files, watched for new versions.
    #[serde(default = "default_plugin_dir")]
    pub dir: PathBuf,
    /// Deadline of one plugin call.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Linear memory cap of a plugin.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: usize,
    /// Consecutive failed batches that quarantine a plugin version.
    #[serde(default = "default_quarantine_after")]
    pub quarantine_after: u32,
    /// Per-plugin overrides of `timeout_ms` and `memory_mib`, by plugin name.
    #[serde(default)]
    pub limits: BTreeMap<String, PluginLimitsConfig>,
    /// The largest component a tenant may deploy (at most `ingest.max_body_bytes`, which
    /// every request body is held to).
    #[serde(default = "default_max_plugin_bytes")]
    pub max_upload_bytes: usize,
    /// Size the cache of compiled plugins (`DATA_DIR/plugin-cache`) is held to.
    #[serde(default = "default_cache_max_mib")]
    pub cache_max_mib: u64,
    /// Components of at least this many MiB that the cache doesn't hold serve baseline
    /// code first, while the optimizing compile runs.
    #[serde(default = "default_baseline_from_mib")]
    pub baseline_from_mib: u64,
}

// A Python component is ~18 MB (the interpreter is inside it); the default request body
// limit, 32 MiB, is the most a deploy can be anyway.
const fn default_max_plugin_bytes() -> usize {
    32 << 20
}

// ~30 versions of a Python plugin (~35 MB compiled), thousands of Rust ones.
const fn default_cache_max_mib() -> u64 {
    1024
}

// Cranelift takes ~0.3 s a MB on 2 cores: a smaller component serves soon enough from it.
const fn default_baseline_from_mib() -> u64 {
    1
}

fn default_plugin_dir() -> PathBuf {
    PathBuf::from("target/plugins")
}
const fn default_timeout_ms() -> u64 {
    1_000
}
const fn default_memory_mib() -> usize {
    64
}
const fn default_quarantine_after() -> u32 {
    5
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: default_plugin_dir(),
            timeout_ms: default_timeout_ms(),
            memory_mib: default_memory_mib(),
            quarantine_after: default_quarantine_after(),
            limits: BTreeMap::new(),
            max_upload_bytes: default_max_plugin_bytes(),
            cache_max_mib: default_cache_max_mib(),
            baseline_from_mib: default_baseline_from_mib(),
        }
    }
}

/// Limits of one plugin.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginLimitsConfig {
    /// Deadline of one call.
    pub timeout_ms: Option<u64>,
    /// Linear memory cap.
    pub memory_mib: Option<usize>,
}

/// A tenant.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The tenant's name.
    pub name: String,
    /// API tokens of this tenant (`Authorization: Token T`).
    pub tokens: Vec<Secret>,
    /// How long raw points are kept.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// The plugin stages every point of this tenant runs through, in order.
    #[serde(default)]
    pub stages: Vec<StageConfig>,
    /// Alert rules: windows over the stored points, evaluated by alert plugins.
    #[serde(default)]
    pub alerts: Vec<AlertConfig>,
    /// Rollup rules: windowed aggregates of the stored points, kept as tiers.
    #[serde(default)]
    pub rollups: Vec<RollupConfig>,
    /// Rollup tiers and how long each keeps its windows: `{ "1m" = "90d", "1h" = "2y" }`.
    #[serde(default)]
    pub tiers: BTreeMap<String, String>,
    /// The tenant's quotas (each absent one from the service's `limits`).
    #[serde(default)]
    pub limits: Limits,
    /// The tenant's own lookup tables: name → CSV file (they hide the service's tables of
    /// the same name).
    #[serde(default)]
    pub lookups: BTreeMap<String, PathBuf>,
}

impl TenantConfig {
    /// The tenant's pipeline, its lookup tables read from their files.
    ///
    /// # Errors
    /// A lookup file that can't be read, naming the table and file.
    pub fn pipeline(&self) -> Result<PipelineSpec, String> {
        let mut lookups = BTreeMap::new();
        for (name, path) in &self.lookups {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("lookups: `{name}`: reading {}: {e}", path.display()))?;
            lookups.insert(name.clone(), text);
        }
        Ok(PipelineSpec {
            stages: self.stages.clone(),
            alerts: self.alerts.clone(),
            rollups: self.rollups.clone(),
            tiers: self.tiers.clone(),
            lookups,
        })
    }
}

/// A tenant's pipeline: its stages, alert and rollup rules, tiers, and its own lookup
/// tables. The config file's tenants and the admin API's pipelines share it. (The
/// config file's `[[tenants]]` repeat its fields rather than flatten it: serde can't
/// refuse unknown fields of a flattened struct, and a misspelt field must fail.)
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// The plugin stages every point runs through, in order.
    #[serde(default)]
    pub stages: Vec<StageConfig>,
    /// Alert rules: windows over the stored points, evaluated by alert plugins.
    #[serde(default)]
    pub alerts: Vec<AlertConfig>,
    /// Rollup rules: windowed aggregates of the stored points, kept as tiers.
    #[serde(default)]
    pub rollups: Vec<RollupConfig>,
    /// Rollup tiers and how long each keeps its windows.
    #[serde(default)]
    pub tiers: BTreeMap<String, String>,
    /// The tenant's own lookup tables: name → CSV text (the first column is the key).
    /// They hide the service's tables of the same name.
    #[serde(default)]
    pub lookups: BTreeMap<String, String>,
}

impl PipelineSpec {
    /// Each tier's name, retention and rule (the one rule that writes it), checked.
    ///
    /// # Errors
    /// What is wrong, naming the tier or rule.
    pub fn tiers(&self, retention_days: u32) -> Result<Vec<Tier>, String> {
        let mut tiers = Vec::new();
        for (name, retention) in &self.tiers {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                return Err(format!(
                    "tiers: `{name}`: a tier name is letters, digits, `_`, `-` and `.`"
                ));
            }
            let keep = humantime::parse_duration(retention)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    format!("tiers: `{name}` = `{retention}`: expected a retention such as \"90d\" or \"2y\"")
                })?;
            let raw = std::time::Duration::from_secs(u64::from(retention_days) * 86_400);
            if keep < raw {
                return Err(format!(
                    "tiers: `{name}` = `{retention}` is shorter than the raw retention ({} days): windows of points ingest accepts would be deleted as they are written",
                    retention_days
                ));
            }
            let mut writers = self.rollups.iter().filter(|r| r.tier == *name);
            let Some(rule) = writers.next() else {
                return Err(format!("tiers: `{name}`: no rollup writes it"));
            };
            if let Some(other) = writers.next() {
                return Err(format!(
                    "tiers: `{name}` is written by rollups `{}` and `{}`: one rollup per tier",
                    rule.name, other.name
                ));
            }
            tiers.push(Tier {
                name: name.clone(),
                retention: keep,
                rule: rule.name.clone(),
            });
        }
        Ok(tiers)
    }

    /// Checks what can be checked without plugins: rule names, windows, aggregates, tiers,
    /// lookup tables (with raw points kept `retention_days`).
    ///
    /// # Errors
    /// The first thing wrong, naming the rule, tier or table and the field.
    pub fn check(&self, retention_days: u32) -> Result<(), String> {
        for alert in &self.alerts {
            if alert.window_secs == 0 {
                return Err(format!(
                    "alert `{}`: `window_secs` must be positive",
                    alert.name
                ));
            }
            for a in &alert.aggregates {
                a.parse::<crate::aggregate::Function>()
                    .map_err(|e| format!("alert `{}`: `aggregates`: {e}", alert.name))?;
            }
        }
        let mut rules = BTreeSet::new();
        for name in self
            .alerts
            .iter()
            .map(|a| &a.name)
            .chain(self.rollups.iter().map(|r| &r.name))
        {
            if !rules.insert(name.as_str()) {
                return Err(format!(
                    "rule name `{name}` is used twice (alert and rollup names share one space)"
                ));
            }
        }
        let mut stages = BTreeSet::new();
        for stage in &self.stages {
            if stage.name.is_empty() || !stages.insert(stage.name.as_str()) {
                return Err(format!(
                    "stage `{}`: `name` is empty or used twice",
                    stage.name
                ));
            }
        }
        for rollup in &self.rollups {
            crate::window::RollupRule::build(rollup).map_err(|e| e.to_string())?;
            if !self.tiers.contains_key(&rollup.tier) {
                return Err(format!(
                    "rollup `{}`: `tier`: `{}` is not in the tenant's `tiers` (declare it with its retention)",
                    rollup.name, rollup.tier
                ));
            }
        }
        self.tiers(retention_days)?;
        let mut tables = crate::lookup::LookupTables::default();
        for (name, csv) in &self.lookups {
            tables
                .parse_csv(name, "the tenant's pipeline", csv)
                .map_err(|e| format!("lookups: {e}"))?;
        }
        Ok(())
    }
}

/// A rollup tier of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    /// Its name (`1m`).
    pub name: String,
    /// How long its windows are kept.
    pub retention: std::time::Duration,
    /// The rollup that writes it.
    pub rule: String,
}

/// An alert rule: tumbling windows of one field, closed windows evaluated by an alert plugin.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// The rule's name (in alerts, logs, dead letters).
    pub name: String,
    /// The alert plugin.
    pub plugin: String,
    /// Measurement to window.
    pub measurement: String,
    /// Field to aggregate.
    pub field: String,
    /// Window width.
    pub window_secs: u64,
    /// How long after its end a window still takes points. Explicit: no hidden default.
    pub grace_secs: u64,
    /// Aggregates each window reports (mean, min, max, sum, count, last); default all.
    #[serde(default)]
    pub aggregates: Vec<String>,
    /// Parameters handed to the plugin (strings; numbers and booleans are taken as their
    /// text).
    #[serde(default, deserialize_with = "params")]
    pub params: BTreeMap<String, String>,
    /// Where alerts are also POSTed as JSON (`http://` only); they are always logged and
    /// stored (`GET /api/v1/alerts`).
    pub webhook_url: Option<String>,
}

const fn default_retention_days() -> u32 {
    30
}

/// A pipeline stage.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// The stage's name (in logs, metrics and dead letters).
    pub name: String,
    /// The plugin (file stem in the plugin directory).
    pub plugin: String,
    /// Parameters handed to the plugin (strings; numbers and booleans are taken as their
    /// text).
    #[serde(default, deserialize_with = "params")]
    pub params: BTreeMap<String, String>,
}

/// A plugin parameter as written: plugins read every parameter as text, so `max = 50`
/// means what `max = "50"` does.
#[derive(Deserialize)]
#[serde(untagged)]
enum Param {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

/// Plugin parameters, each scalar taken as its text.
fn params<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, Param>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Param::Text(s) => s,
                Param::Integer(i) => i.to_string(),
                Param::Float(f) => f.to_string(),
                Param::Bool(b) => b.to_string(),
            };
            (k, text)
        })
        .collect())
}

/// The configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file can't be read.
    #[error("config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is invalid or has unknown or mistyped fields.
    #[error("config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error, with line and column.
        source: Box<toml::de::Error>,
    },
    /// Fields that are fine alone but not together.
    #[error("config {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Reads and validates the file at `path`; when `path` is the default and absent, the
    /// shipped default.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the file and the problem.
    pub fn load(path: &Path, allow_builtin: bool) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if allow_builtin && e.kind() == std::io::ErrorKind::NotFound => {
                DEFAULT_TOML.to_owned()
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Self::parse(&text, path)
    }

    /// Parses and validates `text` (`path` is for messages).
    ///
    /// # Errors
    /// A [`ConfigError`] naming the problem.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let mut names = BTreeSet::new();
        let mut tokens = BTreeSet::new();
        for tenant in &self.tenants {
            if tenant.name.is_empty() || !names.insert(tenant.name.as_str()) {
                return Err(format!(
                    "tenant name `{}` is empty or used twice",
                    tenant.name
                ));
            }
            if tenant.name.chars().any(char::is_control) {
                return Err(format!(
                    "tenant name {:?} has control characters",
                    tenant.name
                ));
            }
            if tenant.tokens.is_empty() {
                return Err(format!("tenant `{}` has no token", tenant.name));
            }
            for token in &tenant.tokens {
                // Never echo a token: it is a secret.
                if token.expose().len() < 8 || !tokens.insert(token.expose()) {
                    return Err(format!(
                        "tenant `{}`: a token is shorter than 8 characters or shared with another tenant",
                        tenant.name
                    ));
                }
            }
            tenant
                .pipeline()
                .and_then(|p| p.check(tenant.retention_days))
                .map_err(|e| format!("tenant `{}`: {e}", tenant.name))?;
            if tenant.retention_days == 0 {
                return Err(format!(
                    "tenant `{}`: retention_days must be at least 1",
                    tenant.name
                ));
            }
        }
        let mut admins = BTreeSet::new();
        for admin in &self.admin.tokens {
            // Never echo a token: it is a secret.
            if admin.name.is_empty() || !admins.insert(admin.name.as_str()) {
                return Err(format!(
                    "admin.tokens: name `{}` is empty or used twice",
                    admin.name
                ));
            }
            if admin.token.expose().len() < 16 || !tokens.insert(admin.token.expose()) {
                return Err(format!(
                    "admin.tokens: `{}`: the token is shorter than 16 characters or shared with a tenant or another admin",
                    admin.name
                ));
            }
        }
        let partitions = self.transport.partitions();
        if partitions == 0 || partitions > 1024 {
            return Err(format!(
                "transport.partitions = {partitions}: must be 1 to 1024"
            ));
        }
        if let StoreConfig::Scylla(scylla) = &self.store {
            scylla.validate()?;
        }
        if let TransportConfig::Kafka(kafka) = &self.transport {
            kafka.validate()?;
        }
        if self.retention_interval_secs == 0 {
            return Err("retention_interval_secs must be positive".into());
        }
        if self.compaction_mib_per_sec == 0 {
            return Err("compaction_mib_per_sec must be positive".into());
        }
        let ingest = &self.ingest;
        if !(1..=MAX_SERIES_KEY_LIMIT).contains(&ingest.max_series_key_bytes) {
            return Err(format!(
                "ingest.max_series_key_bytes = {}: must be 1 to {MAX_SERIES_KEY_LIMIT} (the store's keys hold at most 65,535 bytes)",
                ingest.max_series_key_bytes
            ));
        }
        if !(1..=MAX_TAGS_LIMIT).contains(&ingest.max_tags) {
            return Err(format!(
                "ingest.max_tags = {}: must be 1 to {MAX_TAGS_LIMIT}",
                ingest.max_tags
            ));
        }
        if ingest.max_fields == 0 {
            return Err("ingest.max_fields must be positive".into());
        }
        for (name, value) in [
            ("body_timeout_ms", ingest.body_timeout_ms),
            ("header_timeout_ms", ingest.header_timeout_ms),
            ("idle_timeout_ms", ingest.idle_timeout_ms),
            ("request_timeout_ms", ingest.request_timeout_ms),
            ("max_connections", ingest.max_connections as u64),
            (
                "max_concurrent_requests",
                ingest.max_concurrent_requests as u64,
            ),
        ] {
            if value == 0 {
                return Err(format!("ingest.{name} must be positive"));
            }
        }
        if ingest.max_buffered_body_bytes < ingest.max_body_bytes {
            return Err(format!(
                "ingest.max_buffered_body_bytes = {} is below ingest.max_body_bytes = {}: no body of the largest size could be read",
                ingest.max_buffered_body_bytes, ingest.max_body_bytes
            ));
        }
        if self.plugins.timeout_ms == 0 || self.plugins.memory_mib == 0 {
            return Err("plugins.timeout_ms and plugins.memory_mib must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_config_is_valid_and_the_kafka_ones_name_kafka() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        let mut kinds = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).expect("config dir") {
            let path = entry.expect("entry").path();
            // Beside the configs: the files of Grafana and Prometheus for docker compose.
            if path.extension().is_none_or(|e| e != "toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            let config = Config::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            kinds.insert(name.unwrap_or_default(), config.transport);
        }
        assert!(matches!(
            kinds["sluice.toml"],
            TransportConfig::Embedded { .. }
        ));
        let TransportConfig::Kafka(local) = &kinds["kafka-local.toml"] else {
            panic!("kafka-local.toml is not on Kafka");
        };
        assert_eq!(local.brokers, "127.0.0.1:19092");
        assert!(matches!(
            kinds["production.toml"],
            TransportConfig::Kafka(_)
        ));
    }

    #[test]
    fn plugin_parameters_may_be_numbers_or_booleans_and_are_taken_as_text() {
        let text = "[[tenants]]\nname = \"a\"\ntokens = [\"token-123\"]\n[[tenants.stages]]\nname = \"s\"\nplugin = \"p\"\nparams = { max = 50, ratio = 0.5, on = true, name = \"x\" }\n";
        let config = Config::parse(text, Path::new("x.toml")).expect("parses");
        let params = &config.tenants[0].stages[0].params;
        let got: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("max", "50"),
                ("name", "x"),
                ("on", "true"),
                ("ratio", "0.5")
            ]
        );
        let bad = text.replace("on = true", "on = [1]");
        let err = Config::parse(&bad, Path::new("x.toml")).expect_err("a list is no parameter");
        assert!(err.to_string().contains("params"), "{err}");
    }

    #[test]
    fn the_shipped_default_parses_and_round_trips() {
        let config =
            Config::parse(DEFAULT_TOML, Path::new("config/sluice.toml")).expect("default config");
        assert_eq!(config.listen, default_listen());
        assert_eq!(config.tenants[0].name, "demo");
        let again = toml::to_string(&config).expect("serialize");
        let reparsed = Config::parse(&again, Path::new("again")).expect("round trip");
        assert_eq!(
            reparsed.tenants[0].stages.len(),
            config.tenants[0].stages.len()
        );
    }

    #[test]
    fn unknown_fields_and_bad_combinations_are_named() {
        let err = Config::parse("tenants = []\nlisten_port = 1\n", Path::new("x.toml"))
            .expect_err("unknown");
        assert!(err.to_string().contains("listen_port"), "{err}");
        let err = Config::parse(
            "[[tenants]]\nname = \"a\"\ntokens = [\"secret-token-1\"]\n[[tenants]]\nname = \"b\"\ntokens = [\"secret-token-1\"]\n",
            Path::new("x.toml"),
        )
        .expect_err("shared token");
        assert!(err.to_string().contains("tenant `b`"), "{err}");
        assert!(
            !err.to_string().contains("secret-token-1"),
            "tokens are never echoed: {err}"
        );
    }

    #[test]
    fn rollups_and_tiers_are_checked_at_load_naming_tenant_rule_and_field() {
        let tenant = |extra: &str| {
            format!(
                "[[tenants]]\nname = \"t\"\ntokens = [\"secret-token-1\"]\nretention_days = 7\ntiers = {{ \"1m\" = \"90d\" }}\n{extra}"
            )
        };
        let rollup = |fields: &str| {
            format!(
                "[[tenants.rollups]]\nname = \"r\"\nwindow = {{ tumbling = \"1m\" }}\naggregates = [\"mean\"]\ntier = \"1m\"\n{fields}"
            )
        };
        let good = tenant(&rollup("grace = \"5s\"\n"));
        let config = Config::parse(&good, Path::new("x.toml")).expect("good");
        let first = &config.tenants[0];
        let tiers = first
            .pipeline()
            .and_then(|p| p.tiers(first.retention_days))
            .expect("tiers");
        assert_eq!(tiers.len(), 1);
        assert_eq!(
            (tiers[0].name.as_str(), tiers[0].rule.as_str()),
            ("1m", "r")
        );
        for (text, wanted) in [
            (
                tenant(&rollup("")),
                "tenant `t`: rollup `r`: `grace`: required",
            ),
            (
                tenant(&rollup("grace = \"5s\"\n")).replace("[\"mean\"]", "[\"median\"]"),
                "tenant `t`: rollup `r`: `aggregates`: `median`",
            ),
            (
                tenant(&rollup("grace = \"5s\"\n")).replace("tier = \"1m\"", "tier = \"1h\""),
                "rollup `r`: `tier`: `1h` is not in the tenant's `tiers`",
            ),
            (
                tenant(&rollup("grace = \"5s\"\n")).replace("\"90d\"", "\"1d\""),
                "tiers: `1m` = `1d` is shorter than the raw retention (7 days)",
            ),
            (
                tenant(&format!(
                    "{}{}",
                    rollup("grace = \"5s\"\n"),
                    rollup("grace = \"5s\"\n").replace("name = \"r\"", "name = \"s\"")
                )),
                "tiers: `1m` is written by rollups `r` and `s`",
            ),
            (
                format!(
                    "{}[[tenants.alerts]]\nname = \"r\"\nplugin = \"p\"\nmeasurement = \"m\"\nfield = \"f\"\nwindow_secs = 1\ngrace_secs = 0\n",
                    good
                ),
                "rule name `r` is used twice",
            ),
        ] {
            let err = Config::parse(&text, Path::new("x.toml")).expect_err(&text);
            assert!(err.to_string().contains(wanted), "{err}\nwanted: {wanted}");
        }
    }

    #[test]
    fn debug_output_never_shows_a_token() {
        let config =
            Config::parse(DEFAULT_TOML, Path::new("config/sluice.toml")).expect("default config");
        let token = config.tenants[0].tokens[0].expose().to_owned();
        assert!(token.len() >= 8);
        let shown = format!("{config:?} {config:#?}");
        assert!(!shown.contains(&token), "{shown}");
        assert!(shown.contains("***"));
        let mut tokens = crate::tenant::Tokens::default();
        tokens.insert(&token, crate::tenant::TenantId::new("demo"));
        assert!(!format!("{tokens:?}").contains(&token));
    }
}
