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

/// Labels naming a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PluginLabels {
    /// Plugin name.
    pub plugin: String,
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
    /// Versions swapped in by hot reload.
    pub plugin_swaps: Family<PluginLabels, Counter>,
    /// Plugin files that failed to load (the serving version, if any, stays).
    pub plugin_load_failures: Family<PluginLabels, Counter>,
    /// 1 for the serving version of each plugin.
    pub plugin_info: Family<PluginVersionLabels, Gauge>,
    /// 1 while a plugin is quarantined.
    pub plugin_quarantined: Family<PluginLabels, Gauge>,
    /// Points kept as dead letters.
    pub dead_letter_points: Family<PluginVersionLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let plugin_batches = Family::default();
        let plugin_points_in = Family::default();
        let plugin_points_out = Family::default();
        let plugin_call_seconds =
            HistogramFamily::new_with_constructor(latency_histogram as fn() -> Histogram);
        let plugin_swaps = Family::default();
        let plugin_load_failures = Family::default();
        let plugin_info = Family::default();
        let plugin_quarantined = Family::default();
        let dead_letter_points = Family::default();
        registry.register(
            "plugin_batches",
            "Plugin calls, one per batch",
            plugin_batches.clone(),
        );
        registry.register(
            "plugin_points_in",
            "Points handed to plugins",
            plugin_points_in.clone(),
        );
        registry.register(
            "plugin_points_out",
            "Points or alerts returned by plugins",
            plugin_points_out.clone(),
        );
        registry.register(
            "plugin_call_seconds",
            "Wall time of plugin calls",
            plugin_call_seconds.clone(),
        );
        registry.register(
            "plugin_swaps",
            "Plugin versions swapped in by hot reload",
            plugin_swaps.clone(),
        );
        registry.register(
            "plugin_load_failures",
            "Plugin files that failed to load",
            plugin_load_failures.clone(),
        );
        registry.register(
            "plugin_info",
            "The serving version of each plugin",
            plugin_info.clone(),
        );
        registry.register(
            "plugin_quarantined",
            "1 while a plugin is quarantined",
            plugin_quarantined.clone(),
        );
        registry.register(
            "dead_letter_points",
            "Points kept as dead letters",
            dead_letter_points.clone(),
        );
        Self {
            registry,
            plugin_batches,
            plugin_points_in,
            plugin_points_out,
            plugin_call_seconds,
            plugin_swaps,
            plugin_load_failures,
            plugin_info,
            plugin_quarantined,
            dead_letter_points,
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Installs the global tracing subscriber: `RUST_LOG`-style filter (default `info`), text or
/// JSON lines on stderr.
pub fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
