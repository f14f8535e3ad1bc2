//! HTTP ingest: InfluxDB line protocol (v1 `/write`, v2 `/api/v2/write`), Telegraf JSON
//! (`POST /metrics`), Prometheus remote write (`POST /api/v1/write`) and OTLP/HTTP
//! metrics (`POST /v1/metrics`). A request is authenticated, decoded and validated, split into
//! transport records by tenant and series, and acknowledged with 204 only once the
//! transport holds it durably.
//!
//! Partial writes: none. A body with any bad line is refused whole with 400 naming the
//! first bad line (and how many are bad); nothing of it is written. A client can fix and
//! resend the whole body without creating duplicates or gaps.

mod body;
mod influx;
pub(crate) mod otlp;
pub mod remote_write;
mod replay;
mod telegraf;
mod validate;

pub use telegraf::decode as decode_telegraf;
pub use validate::{FieldTypes, Invalid, Limits};

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;

use crate::api::{ApiError, TokenLookup};
use crate::lineproto::Precision;
use crate::point::{Nanos, Point, Samples};
use crate::quota::Quotas;
use crate::store::Store;
use crate::telemetry::{Metrics, RejectLabels, RejectReason, TenantLabels};
use crate::tenant::TenantId;
use crate::transport::{Producer, records_for, records_of_samples};

/// Where the transport counts each tenant's backlog, how many times `max_lag_records` the
/// partitions' backlog may reach before every tenant's writes are held back.
const PARTITION_BACKLOG_FACTOR: u64 = 4;

/// What ingest knows of each tenant, as of now (the registry changes it at runtime).
pub trait Tenants: TokenLookup {
    /// How long `tenant` keeps points (none: no such tenant).
    fn retention(&self, tenant: &TenantId) -> Option<Duration>;

    /// Whether `tenant`'s stages may change points' types (transforms): then the store
    /// holds what they made, and can't tell the types it ingested.
    fn retyping(&self, tenant: &TenantId) -> bool;
}

/// What ingest needs.
pub struct IngestState {
    /// Token → tenant, and what ingest knows of each.
    pub tenants: Arc<dyn Tenants>,
    /// Where accepted points go; it also tells the pipeline's backlog.
    pub producer: Arc<dyn Producer>,
    /// Largest body after decompression.
    pub max_body_bytes: usize,
    /// Backlog (records) above which a tenant's writes get 503: its own backlog where the
    /// transport tells it, else the partitions'.
    pub max_lag_records: u64,
    /// What every point must keep.
    pub limits: Limits,
    /// The type of every series field written.
    pub types: FieldTypes,
    /// The store, asked for the types of series `types` doesn't know.
    pub store: Arc<dyn Store>,
    /// Service metrics.
    pub metrics: Arc<Metrics>,
    /// The dead letters, which a tenant re-runs.
    pub dead_letters: Arc<crate::pipeline::DeadLetterLog>,
    /// Each tenant's quotas.
    pub quotas: Arc<Quotas>,
}

/// The ingest routes.
pub fn routes(state: Arc<IngestState>) -> Router {
    Router::new()
        .route("/api/v2/write", post(influx::write_v2))
        .route("/write", post(influx::write_v1))
        .route("/metrics", post(telegraf::write))
        .route("/api/v1/write", post(remote_write::write))
        .route("/v1/metrics", post(otlp::write))
        .route("/api/v1/dead-letters/replay", post(replay::replay))
        .with_state(state)
}

/// The `precision` query parameter, `default` when absent.
fn precision_param(raw: Option<&str>, default: Precision) -> Result<Precision, ApiError> {
    raw.map_or(Ok(default), |p| {
        p.parse()
            .map_err(|e: String| ApiError::invalid(format!("query parameter `precision`: {e}")))
    })
}

/// Where a decoded point came from, for error messages.
#[derive(Debug)]
enum Origin {
    /// Line protocol: the 1-based line of each point.
    Lines(Vec<usize>),
    /// Telegraf JSON: points are metrics by index.
    Metrics,
    /// Remote write and OTLP: per point, which series (named in `series`) and which of its
    /// `item`s (samples, data points) it came from.
    Series {
        /// Where each series is in the request.
        series: SeriesNames,
        /// What a series holds (`samples`).
        item: &'static str,
        /// Per point: (index into `series`, index of the item).
        at: Vec<(usize, usize)>,
    },
}

/// How an error names the series of a request.
#[derive(Debug)]
enum SeriesNames {
    /// By index in the request's list of this name (`timeseries[3]`): made only when an
    /// error needs one, not for every series of every request.
    Indexed(&'static str),
    /// By the place and name of each (OTLP: `resourceMetrics[0]...metrics[2] "up"`).
    Listed(Vec<String>),
}

impl SeriesNames {
    fn name(&self, s: usize) -> String {
        match self {
            Self::Indexed(list) => format!("{list}[{s}]"),
            Self::Listed(names) => names.get(s).cloned().unwrap_or_default(),
        }
    }
}

/// Points decoded from a body, and where each came from. With `samples` (remote write),
/// each of `points` is a series, one point of its keys, and the body's points are its
/// samples.
#[derive(Debug)]
struct Decoded {
    points: Vec<Point>,
    origin: Origin,
    samples: Option<Samples>,
}

impl Decoded {
    /// Points of line protocol, with their lines.
    fn lines(points: Vec<Point>, lines: Vec<usize>) -> Self {
        Self {
            points,
            origin: Origin::Lines(lines),
            samples: None,
        }
    }

    /// Points of Telegraf metrics, in order.
    fn metrics(points: Vec<Point>) -> Self {
        Self {
            points,
            origin: Origin::Metrics,
            samples: None,
        }
    }

    /// Points of series' items: see [`Origin::Series`].
    fn series(
        points: Vec<Point>,
        series: SeriesNames,
        item: &'static str,
        at: Vec<(usize, usize)>,
    ) -> Self {
        Self {
            points,
            origin: Origin::Series { series, item, at },
            samples: None,
        }
    }

    /// Remote write's `samples` of `series` (a point each, of its keys), each series at its
    /// index in `at` of the request's `timeseries`.
    fn samples(series: Vec<Point>, at: Vec<(usize, usize)>, samples: Samples) -> Self {
        Self {
            origin: Origin::Series {
                series: SeriesNames::Indexed("timeseries"),
                item: "samples",
                at,
            },
            points: series,
            samples: Some(samples),
        }
    }

    /// The body's points: its samples made points, where it has them.
    #[cfg(test)]
    fn made(&self) -> Vec<Point> {
        match &self.samples {
            Some(samples) => samples.points(&self.points),
            None => self.points.clone(),
        }
    }

    /// Number of points of the body: samples, where it has them.
    fn len(&self) -> usize {
        self.samples
            .as_ref()
            .map_or(self.points.len(), Samples::len)
    }

    /// The timestamps of point `i`: its samples', where the body has them.
    fn timestamps(&self, i: usize) -> impl Iterator<Item = Nanos> + '_ {
        let samples = self.samples.as_ref().map(|s| s.of(i)).unwrap_or_default();
        let point = self.points.get(i).filter(|_| self.samples.is_none());
        samples
            .iter()
            .map(|(t, _)| *t)
            .chain(point.map(|p| p.timestamp))
    }

    /// The 400 for point `i`, refused because `why`; `bad` counts the refused points when
    /// all were checked.
    fn refuse(&self, i: usize, why: &Invalid, bad: Option<usize>) -> ApiError {
        self.refuse_at(i, 0, why, bad)
    }

    /// [`Decoded::refuse`] of the `k`th sample of point `i` (0 for a body without samples).
    fn refuse_at(&self, i: usize, k: usize, why: &Invalid, bad: Option<usize>) -> ApiError {
        let total = self.len();
        match &self.origin {
            Origin::Lines(lines) => {
                let line = lines.get(i).copied().unwrap_or_default();
                let counted = bad.map_or(String::new(), |n| format!("{n} of {total} lines bad; "));
                ApiError::Invalid {
                    message: format!("line {line}: {why} ({counted}nothing was written)"),
                    line: Some(line),
                }
            }
            Origin::Metrics => {
                let counted =
                    bad.map_or(String::new(), |n| format!("{n} of {total} metrics bad; "));
                ApiError::invalid(format!(
                    "metrics[{i}]: {why} ({counted}nothing was written)"
                ))
            }
            Origin::Series { series, item, at } => {
                let (s, j) = at.get(i).copied().unwrap_or_default();
                let j = j + k;
                let name = series.name(s);
                let counted = bad.map_or(String::new(), |n| format!("{n} of {total} {item} bad; "));
                ApiError::invalid(format!(
                    "{name} {item}[{j}]: {why} ({counted}nothing was written)"
                ))
            }
        }
    }
}

impl IngestState {
    /// Checks every point of `decoded` ([`Limits::check`], then [`FieldTypes::admit`]),
    /// then the tenant's points and series quotas.
    fn validate(&self, tenant: &TenantId, decoded: &mut Decoded) -> Result<(), ApiError> {
        // Older points are refused, as InfluxDB refuses points beyond its retention policy,
        // rather than acknowledged and then deleted.
        let kept = self.tenants.retention(tenant);
        let cutoff = kept.map_or(i64::MIN, |d| crate::time::minus(crate::time::now_ns(), d));
        let retained = |timestamp: Nanos| {
            if timestamp >= cutoff {
                return Ok(());
            }
            Err(Invalid::BeyondRetention {
                timestamp,
                days: kept.map_or(0, |d| d.as_secs() / 86_400),
                cutoff,
            })
        };
        // Each sample of a series is a point: each is refused with its series' names.
        let first_bad = {
            let mut bad = self
                .limits
                .check_each(&decoded.points)
                .enumerate()
                .flat_map(|(i, checked)| {
                    let times = decoded.timestamps(i).enumerate();
                    times.map(move |(k, t)| (i, k, checked.clone().and_then(|()| retained(t))))
                })
                .filter_map(|(i, k, checked)| checked.err().map(|e| (i, k, e)));
            bad.next().map(|(i, k, why)| (i, k, why, 1 + bad.count()))
        };
        if let Some((i, k, why, n)) = first_bad {
            return Err(decoded.refuse_at(i, k, &why, Some(n)));
        }
        let retyping = self.tenants.retyping(tenant);
        let widen = matches!(decoded.origin, Origin::Metrics);
        let admitted = self
            .types
            .admit(
                tenant,
                &mut decoded.points,
                Some(self.store.as_ref()),
                retyping,
                widen,
            )
            .map_err(|(i, why)| decoded.refuse(i, &why, None))?;
        let count = || match self.store.series_count(tenant) {
            Ok(count) => Some(count),
            Err(error) => {
                // Not counted: the quota is checked once the store answers.
                tracing::warn!(%error, "Could not count the tenant's series.");
                None
            }
        };
        self.quotas
            .admit_points(tenant, decoded.len(), admitted.new_series, count)
            .map_err(|over| {
                self.types.forget(&admitted);
                ApiError::from(over)
            })
    }

    fn reject(&self, error: ApiError) -> ApiError {
        let reason = match &error {
            ApiError::Unauthorized => RejectReason::Unauthorized,
            ApiError::Invalid { .. } => RejectReason::Invalid,
            ApiError::TooLarge { .. } => RejectReason::TooLarge,
            ApiError::Backpressure { .. } => RejectReason::Backpressure,
            ApiError::OverQuota(_) => RejectReason::OverQuota,
            ApiError::Unavailable { .. } => RejectReason::Unavailable,
        };
        self.metrics
            .requests_rejected
            .get_or_create(&RejectLabels { reason })
            .inc();
        error
    }

    /// Refuses `tenant`'s writes while the pipeline is too far behind them, so memory and
    /// disk stay bounded and clients back off (503 with Retry-After). Where the transport
    /// counts each tenant's backlog, a tenant is held back by its own only: one tenant's
    /// flood doesn't throttle another. The partitions' backlog still bounds everyone at
    /// [`PARTITION_BACKLOG_FACTOR`] times the limit, so the log stays bounded too.
    fn check_backpressure(&self, tenant: &TenantId) -> Result<(), ApiError> {
        let backlog = self.producer.backlog(tenant);
        let lag = match backlog.tenant {
            Some(own) if backlog.partition <= self.max_lag_records * PARTITION_BACKLOG_FACTOR => {
                own
            }
            _ => backlog.partition,
        };
        if lag > self.max_lag_records {
            return Err(ApiError::Backpressure { lag });
        }
        Ok(())
    }

    /// Decodes the body (of `bytes`) with `decode` off the async threads, appends the
    /// points durably, and answers 204.
    async fn accept(
        self: Arc<Self>,
        tenant: TenantId,
        bytes: usize,
        decode: impl FnOnce() -> Result<Decoded, ApiError> + Send + 'static,
    ) -> Result<StatusCode, ApiError> {
        let started = Instant::now();
        self.check_backpressure(&tenant)
            .and_then(|()| Ok(self.quotas.admit_body(&tenant, bytes)?))
            .map_err(|e| self.reject(e))?;
        let state = self.clone();
        let span = tracing::info_span!("ingest", %tenant);
        let appended = tokio::task::spawn_blocking(move || {
            let _span = span.entered();
            let mut decoded = decode()?;
            state.validate(&tenant, &mut decoded)?;
            let n = decoded.len();
            let partitions = state.producer.partitions();
            let records = match &decoded.samples {
                Some(samples) => records_of_samples(&tenant, &decoded.points, samples, partitions),
                None => records_for(&tenant, decoded.points, partitions),
            };
            state
                .producer
                .append(records)
                .map_err(|e| ApiError::Unavailable {
                    what: "transport",
                    detail: e.to_string(),
                })?;
            Ok::<_, ApiError>((tenant, n))
        })
        .await
        .map_err(|e| ApiError::Unavailable {
            what: "ingest worker",
            detail: e.to_string(),
        })
        .and_then(|r| r);
        let (tenant, n) = appended.map_err(|e| self.reject(e))?;
        self.metrics
            .points_ingested
            .get_or_create(&TenantLabels {
                tenant: tenant.to_string(),
            })
            .inc_by(n as u64);
        self.metrics
            .ingest_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(StatusCode::NO_CONTENT)
    }
}
