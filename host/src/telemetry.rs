//! The service's own metrics, in Prometheus form (`prometheus-client`), and tracing setup.
//!
//! Metrics are typed: one field per metric on [`Metrics`], label sets as structs, so names
//! are written once. Label cardinality stays bounded: plugin names and versions, tenants
//! and outcomes, never series or points.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels naming one plugin version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PluginVersionLabels {
    /// Plugin name.
    pub plugin: String,
    /// Content-hash version.
    pub version: String,
}

/// How a plugin call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
pub enum CallOutcome {
    /// The call returned a result.
    Ok,
    /// The call failed; the batch was dead-lettered.
    Failed,
    /// The plugin was quarantined; not called, batch dead-lettered.
    Quarantined,
}

/// Labels of a plugin call.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PluginCallLabels {
    /// Plugin name.
    pub plugin: String,
    /// Content-hash version.
    pub version: String,
    /// How it ended.
    pub outcome: CallOutcome,
}

/// Labels naming a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TenantLabels {
    /// Tenant name.
    pub tenant: String,
}

/// Why ingest refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
pub enum RejectReason {
    /// No or unknown token.
    Unauthorized,
    /// Unparsable or invalid input.
    Invalid,
    /// Body over the size limit.
    TooLarge,
    /// The pipeline lags too far behind.
    Backpressure,
    /// Over a tenant's quota.
    OverQuota,
    /// The transport failed.
    Unavailable,
}

/// Labels of a refused request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RejectLabels {
    /// Why.
    pub reason: RejectReason,
}

/// Labels naming an alert rule of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RuleLabels {
    /// Tenant name.
    pub tenant: String,
    /// Rule name.
    pub rule: String,
}

/// Labels naming a tenant's pipeline stage.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StageLabels {
    /// Tenant name.
    pub tenant: String,
    /// Stage name.
    pub stage: String,
}

/// Labels naming a transport partition (at most 1,024 of them).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PartitionLabels {
    /// The partition.
    pub partition: u32,
}

/// Labels naming a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PluginLabels {
    /// Plugin name.
    pub plugin: String,
}

/// Labels of what a tenant stores in one place.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StoredLabels {
    /// Tenant name.
    pub tenant: String,
    /// `raw` (points) or `rollup` (a tier's windows).
    pub data: &'static str,
    /// The rollup tier; empty for raw points.
    pub tier: String,
}

/// Labels of a part of the data directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct DiskLabels {
    /// The entry of the data directory (`store`, `log`, `dead-letters.jsonl`, ...).
    pub path: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs to ~1.6 s: a batch call is tens of µs; the default deadline is 1 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// Every metric the service exports.
pub struct Metrics {
    registry: Registry,
    /// Plugin calls (batches), by version and outcome.
    pub plugin_batches: Family<PluginCallLabels, Counter>,
    /// Points handed to plugins.
    pub plugin_points_in: Family<PluginVersionLabels, Counter>,
    /// Points (or alerts) plugins returned.
    pub plugin_points_out: Family<PluginVersionLabels, Counter>,
    /// Wall time of plugin calls.
    pub plugin_call_seconds: HistogramFamily<PluginLabels>,
    /// Time a batch spends in a tenant's stage (the plugin call, dead-lettering included).
    pub stage_seconds: HistogramFamily<StageLabels>,
    /// Versions swapped in by hot reload.
    pub plugin_swaps: Family<PluginLabels, Counter>,
    /// Plugin files that failed to load (the serving version, if any, stays).
    pub plugin_load_failures: Family<PluginLabels, Counter>,
    /// 1 for the serving version of each plugin.
    pub plugin_info: Family<PluginVersionLabels, Gauge>,
    /// For how many tenants the serving version of a plugin is quarantined.
    pub plugin_quarantined: Family<PluginLabels, Gauge>,
    /// Points kept as dead letters.
    pub dead_letter_points: Family<PluginVersionLabels, Counter>,
    /// Points acknowledged by ingest (durable in the transport).
    pub points_ingested: Family<TenantLabels, Counter>,
    /// Write requests refused, by reason.
    pub requests_rejected: Family<RejectLabels, Counter>,
    /// Points written to the store after the pipeline (queryable from then on).
    pub points_stored: Family<TenantLabels, Counter>,
    /// Wall time of write requests, from body received to acknowledgement.
    pub ingest_seconds: Histogram,
    /// Wall time of store writes (one per fetched group of records).
    pub store_write_seconds: Histogram,
    /// Wall time of store syncs (making writes durable before an offset commit).
    pub store_sync_seconds: Histogram,
    /// Event time to stored, for points written within the last minute of event time.
    pub ingest_to_stored_seconds: Histogram,
    /// Points that arrived after their alert window closed (stored, not evaluated).
    pub window_late_points: Family<RuleLabels, Counter>,
    /// Points dated past `windows.max_future_secs` (stored, not windowed).
    pub window_future_points: Family<TenantLabels, Counter>,
    /// Window rows emitted to rollup tiers (closes, corrections, early updates).
    pub window_rows: Family<RuleLabels, Counter>,
    /// Panics caught while processing a partition's records.
    pub partition_panics: Family<PartitionLabels, Counter>,
    /// Records of the points topic the pipeline's consumer group has not committed, per
    /// partition (Kafka).
    pub transport_lag_records: Family<PartitionLabels, Gauge>,
    /// Partitions this process's pipeline owns.
    pub partitions_owned: Gauge,
    /// HTTP connections open.
    pub connections_open: Gauge,
    /// HTTP connections closed at once because the connection limit was reached.
    pub connections_refused: Counter,
    /// Bytes each tenant stores, raw points and each tier apart.
    pub stored_bytes: Family<StoredLabels, Gauge>,
    /// Bytes on disk of each entry of the data directory.
    pub disk_bytes: Family<DiskLabels, Gauge>,
    /// Chunk bytes compaction read.
    pub compaction_read_bytes: Counter,
    /// Chunk bytes compaction wrote.
    pub compaction_written_bytes: Counter,
    /// Chunks compaction replaced (small ones merged, or holding duplicates).
    pub compaction_replaced_chunks: Counter,
    /// Points compaction dropped because a later sync held the same time (a replay's).
    pub compaction_duplicate_points: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Self {
            registry: Registry::with_prefix("sluice"),
            plugin_batches: Family::default(),
            plugin_points_in: Family::default(),
            plugin_points_out: Family::default(),
            plugin_call_seconds: HistogramFamily::new_with_constructor(latency_histogram),
            stage_seconds: HistogramFamily::new_with_constructor(latency_histogram),
            plugin_swaps: Family::default(),
            plugin_load_failures: Family::default(),
            plugin_info: Family::default(),
            plugin_quarantined: Family::default(),
            dead_letter_points: Family::default(),
            points_ingested: Family::default(),
            requests_rejected: Family::default(),
            points_stored: Family::default(),
            ingest_seconds: latency_histogram(),
            store_write_seconds: latency_histogram(),
            store_sync_seconds: latency_histogram(),
            ingest_to_stored_seconds: latency_histogram(),
            window_late_points: Family::default(),
            window_future_points: Family::default(),
            window_rows: Family::default(),
            partition_panics: Family::default(),
            transport_lag_records: Family::default(),
            partitions_owned: Gauge::default(),
            connections_open: Gauge::default(),
            connections_refused: Counter::default(),
            stored_bytes: Family::default(),
            disk_bytes: Family::default(),
            compaction_read_bytes: Counter::default(),
            compaction_written_bytes: Counter::default(),
            compaction_replaced_chunks: Counter::default(),
            compaction_duplicate_points: Counter::default(),
        };
        m.register()
    }
}

impl Metrics {
    fn register(mut self) -> Self {
        // Families and histograms are handles: the registry's clones share the counts.
        let r = &mut self.registry;
        r.register(
            "plugin_batches",
            "Plugin calls, one per batch",
            self.plugin_batches.clone(),
        );
        r.register(
            "plugin_points_in",
            "Points handed to plugins",
            self.plugin_points_in.clone(),
        );
        r.register(
            "plugin_points_out",
            "Points or alerts returned by plugins",
            self.plugin_points_out.clone(),
        );
        r.register(
            "plugin_call_seconds",
            "Wall time of plugin calls",
            self.plugin_call_seconds.clone(),
        );
        r.register(
            "stage_seconds",
            "Time a batch spends in a pipeline stage, by tenant and stage",
            self.stage_seconds.clone(),
        );
        r.register(
            "plugin_swaps",
            "Plugin versions swapped in by hot reload",
            self.plugin_swaps.clone(),
        );
        r.register(
            "plugin_load_failures",
            "Plugin files that failed to load",
            self.plugin_load_failures.clone(),
        );
        r.register(
            "plugin_info",
            "The serving version of each plugin",
            self.plugin_info.clone(),
        );
        r.register(
            "plugin_quarantined",
            "for how many tenants the serving version of a plugin is quarantined",
            self.plugin_quarantined.clone(),
        );
        r.register(
            "dead_letter_points",
            "Points kept as dead letters",
            self.dead_letter_points.clone(),
        );
        r.register(
            "points_ingested",
            "Points acknowledged by ingest",
            self.points_ingested.clone(),
        );
        r.register(
            "requests_rejected",
            "Write requests refused",
            self.requests_rejected.clone(),
        );
        r.register(
            "points_stored",
            "Points written to the store",
            self.points_stored.clone(),
        );
        r.register(
            "ingest_seconds",
            "Write request time to acknowledgement",
            self.ingest_seconds.clone(),
        );
        r.register(
            "store_write_seconds",
            "Store write time",
            self.store_write_seconds.clone(),
        );
        r.register(
            "store_sync_seconds",
            "Store sync time (durable before offsets are committed)",
            self.store_sync_seconds.clone(),
        );
        r.register(
            "ingest_to_stored_seconds",
            "Event time to stored, recent points",
            self.ingest_to_stored_seconds.clone(),
        );
        r.register(
            "window_late_points",
            "Values after their window's grace had passed (kept as late data)",
            self.window_late_points.clone(),
        );
        r.register(
            "window_future_points",
            "Points dated too far ahead of the clock for windows (windows.max_future_secs)",
            self.window_future_points.clone(),
        );
        r.register(
            "window_rows",
            "Window rows written to rollup tiers (closes, corrections, early updates)",
            self.window_rows.clone(),
        );
        r.register(
            "partition_panics",
            "Panics caught while processing a partition's records (each kept as a dead letter)",
            self.partition_panics.clone(),
        );
        r.register(
            "transport_lag_records",
            "Records of the points topic the pipeline's consumer group has not committed (Kafka)",
            self.transport_lag_records.clone(),
        );
        r.register(
            "partitions_owned",
            "Partitions this process's pipeline owns",
            self.partitions_owned.clone(),
        );
        r.register(
            "connections_open",
            "HTTP connections open",
            self.connections_open.clone(),
        );
        r.register(
            "connections_refused",
            "HTTP connections closed at once at the connection limit (ingest.max_connections)",
            self.connections_refused.clone(),
        );
        r.register(
            "stored_bytes",
            "Bytes each tenant stores (keys and encoded values), raw points and each rollup tier apart",
            self.stored_bytes.clone(),
        );
        r.register(
            "disk_bytes",
            "Bytes on disk (allocated) of each entry of the data directory",
            self.disk_bytes.clone(),
        );
        r.register(
            "compaction_read_bytes",
            "Chunk bytes compaction read",
            self.compaction_read_bytes.clone(),
        );
        r.register(
            "compaction_written_bytes",
            "Chunk bytes compaction wrote",
            self.compaction_written_bytes.clone(),
        );
        r.register(
            "compaction_replaced_chunks",
            "Chunks compaction replaced (small ones merged, or holding a replay's duplicates)",
            self.compaction_replaced_chunks.clone(),
        );
        r.register(
            "compaction_duplicate_points",
            "Points compaction dropped because a later sync held the same time",
            self.compaction_duplicate_points.clone(),
        );
        self
    }

    /// Sets what each tenant stores, as a store measured it (tenants gone are dropped).
    pub fn stored(&self, usage: &[crate::store::Usage]) {
        self.stored_bytes.clear();
        for u in usage {
            let labels = StoredLabels {
                tenant: u.tenant.to_string(),
                data: if u.tier.is_some() { "rollup" } else { "raw" },
                tier: u.tier.clone().unwrap_or_default(),
            };
            self.stored_bytes
                .get_or_create(&labels)
                .set(i64::try_from(u.bytes).unwrap_or(i64::MAX));
        }
    }

    /// Sets the bytes on disk of each entry of the data directory.
    pub fn disk(&self, entries: &[(String, u64)]) {
        self.disk_bytes.clear();
        for (path, bytes) in entries {
            self.disk_bytes
                .get_or_create(&DiskLabels { path: path.clone() })
                .set(i64::try_from(*bytes).unwrap_or(i64::MAX));
        }
    }

    /// Counts what a compaction step did.
    pub fn compacted(&self, done: &crate::store::Compacted) {
        self.compaction_read_bytes.inc_by(done.read);
        self.compaction_written_bytes.inc_by(done.written);
        self.compaction_replaced_chunks.inc_by(done.replaced);
        self.compaction_duplicate_points.inc_by(done.duplicates);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// [`Metrics::render`] without the series that name a tenant: what anyone who reaches
    /// the API may see (the admin API serves them all).
    pub fn render_public(&self) -> String {
        let mut out = String::new();
        for line in self.render().lines() {
            if line.starts_with('#') || !line.contains("tenant=\"") {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

/// Bytes on disk (allocated blocks, what `du` counts) of each entry of `dir`, by name;
/// entries that vanish while walked count what was seen. Empty when `dir` can't be read.
pub fn disk_usage(dir: &std::path::Path) -> Vec<(String, u64)> {
    fn walk(path: &std::path::Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return 0;
        };
        let own = meta.blocks().saturating_mul(512);
        if !meta.is_dir() {
            return own;
        }
        let children = std::fs::read_dir(path).into_iter().flatten().flatten();
        children.fold(own, |total, e| total.saturating_add(walk(&e.path())))
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, u64)> = entries
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                walk(&e.path()),
            )
        })
        .collect();
    out.sort();
    out
}

/// Installs the global tracing subscriber: `RUST_LOG`-style filter (default `info`), text or
/// JSON lines on stderr.
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colors only on a terminal: a log file or collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
