//! The query API, token-authenticated and tenant-scoped: a token only ever reads its own
//! tenant's series.
//!
//! - `GET /api/v1/query?measurement=M&field=F&start=S&end=E[&tag=k:v]...[&agg=A&step=D]`:
//!   raw points, or `agg` over steps, answered from the coarsest rollup tier that has it
//!   exactly (else from raw points); `tier=T&agg=A[&step=D]` reads tier `T` itself.
//! - `GET /api/v1/series[?measurement=M][&tier=T]`
//! - `GET /api/v1/alerts?start=S&end=E` (alerts whose window ended in [S, E))
//! - `GET /api/v1/late?start=S&end=E` (values that came after their window's grace)
//! - the Prometheus HTTP API under `/prometheus` ([`prometheus`])

mod aggregate;
mod fanout;
pub mod prometheus;
mod tier;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::UNIX_EPOCH;

use axum::Json;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::get;
use serde::{Deserialize, Serialize};

pub use aggregate::{Aggregation, Buckets};
pub use tier::TierInfo;

use crate::aggregate::{Function, Values};
use crate::api::{ApiError, TokenLookup, authenticate};
use crate::point::{FieldValue, Nanos};
use crate::store::{SeriesFilter, SeriesKey, Store};
use crate::tenant::TenantId;
use crate::time::{floor_to, now_ns};

/// Points (or buckets) of a query answer unless `limit` says otherwise.
const POINTS_PAGE: usize = 100_000;

/// The largest `limit` of a query: an answer of this many points is some 30 MB of JSON.
const MAX_POINTS_PAGE: usize = 1_000_000;

/// Series of a listing unless `limit` says otherwise.
const SERIES_PAGE: usize = 10_000;

/// The largest `limit` of a listing.
const MAX_SERIES_PAGE: usize = 100_000;

/// Series a query looks up at a time.
const SERIES_BATCH: usize = 1_000;

/// Raw points read at a time to aggregate.
const RAW_BATCH: usize = 65_536;

/// What queries know of each tenant, as of now (the registry changes it at runtime).
pub trait Tenants: TokenLookup {
    /// `tenant`'s rollup tiers.
    fn tiers(&self, tenant: &TenantId) -> Vec<TierInfo>;
}

/// What the query routes need.
pub struct QueryState {
    /// Token → tenant, and each tenant's tiers.
    pub tenants: Arc<dyn Tenants>,
    /// Where points are.
    pub store: Arc<dyn Store>,
    /// How far each tenant's windows have closed.
    pub watermarks: Arc<crate::pipeline::Watermarks>,
    /// The dead letters, which each tenant reads its own of.
    pub dead_letters: Arc<crate::pipeline::DeadLetterLog>,
}

/// The query routes.
pub fn routes(state: Arc<QueryState>) -> Router {
    Router::new()
        .route("/api/v1/query", get(query))
        .route("/api/v1/series", get(series))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/late", get(late))
        .route("/api/v1/dead-letters", get(dead_letters))
        .with_state(state.clone())
        .nest("/prometheus", prometheus::routes(state))
}

/// One series of a query answer.
#[derive(Debug, Serialize)]
pub struct SeriesPoints {
    measurement: String,
    field: String,
    tags: serde_json::Map<String, serde_json::Value>,
    points: Points,
}

/// A series' points, written as `[[ts, value], ...]` straight from the store's values.
#[derive(Debug)]
enum Points {
    /// Raw points.
    Raw(Vec<(Nanos, FieldValue)>),
    /// Buckets of an aggregation.
    Buckets(Vec<(Nanos, f64)>),
}

impl Points {
    fn len(&self) -> usize {
        match self {
            Points::Raw(p) => p.len(),
            Points::Buckets(b) => b.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the first `n`; the time of the first dropped, if any was.
    fn truncate(&mut self, n: usize) -> Option<Nanos> {
        let first_dropped = match self {
            Points::Raw(p) => p.get(n).map(|(t, _)| *t),
            Points::Buckets(b) => b.get(n).map(|(t, _)| *t),
        };
        match self {
            Points::Raw(p) => p.truncate(n),
            Points::Buckets(b) => b.truncate(n),
        }
        first_dropped
    }
}

/// A field value as plain JSON.
struct Plain<'a>(&'a FieldValue);

impl Serialize for Plain<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            FieldValue::Float(f) => s.serialize_f64(*f),
            FieldValue::Integer(i) => s.serialize_i64(*i),
            FieldValue::Unsigned(u) => s.serialize_u64(*u),
            FieldValue::Boolean(b) => s.serialize_bool(*b),
            FieldValue::String(v) => s.serialize_str(v),
        }
    }
}

impl Serialize for Points {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Points::Raw(p) => s.collect_seq(p.iter().map(|(t, v)| (t, Plain(v)))),
            Points::Buckets(b) => s.collect_seq(b),
        }
    }
}

/// A query answer: up to `limit` points, and the cursor of the rest when there is more.
#[derive(Debug, Serialize)]
pub struct QueryAnswer {
    /// What answered: `raw` points, or the rollup tier's name.
    tier: String,
    series: Vec<SeriesPoints>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// Where a query answer stopped: the series, and the time to go on from.
#[derive(Debug, Serialize, Deserialize)]
struct QueryCursor {
    series: SeriesKey,
    from: Nanos,
}

/// An opaque cursor for clients: hex of its JSON.
fn encode_cursor(value: &impl Serialize) -> String {
    hex::encode(serde_json::to_vec(value).unwrap_or_default())
}

/// A page's answer: `items` under `key`, and the cursor of the next page when there is one.
fn paged(
    key: &str,
    items: Vec<serde_json::Value>,
    next: Option<impl Serialize>,
) -> Json<serde_json::Value> {
    let mut answer = serde_json::json!({ key: items });
    if let Some(next) = next {
        answer["next"] = serde_json::Value::String(encode_cursor(&next));
    }
    Json(answer)
}

fn decode_cursor<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T, ApiError> {
    hex::decode(raw)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| ApiError::invalid("parameter `cursor`: not the `next` of an earlier answer"))
}

/// The `limit` parameter: `default` when absent, at most `max`.
fn limit_param(raw: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    raw.parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "parameter `limit` = `{raw}`: expected a whole number from 1 to {max}"
            ))
        })
}

#[derive(Default)]
struct Params {
    measurement: Option<String>,
    field: Option<String>,
    start: Option<String>,
    end: Option<String>,
    tags: Vec<(String, String)>,
    agg: Option<String>,
    step: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
    tier: Option<String>,
}

fn params(raw: Option<&str>) -> Result<Params, ApiError> {
    let mut p = Params::default();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let v = v.into_owned();
        match k.as_ref() {
            "measurement" => p.measurement = Some(v),
            "field" => p.field = Some(v),
            "start" => p.start = Some(v),
            "end" => p.end = Some(v),
            "agg" => p.agg = Some(v),
            "step" => p.step = Some(v),
            "limit" => p.limit = Some(v),
            "cursor" => p.cursor = Some(v),
            "tier" => p.tier = Some(v),
            "tag" => {
                let (tk, tv) = v.split_once(':').ok_or_else(|| {
                    ApiError::invalid(format!("parameter `tag` = `{v}`: expected key:value"))
                })?;
                p.tags.push((tk.to_owned(), tv.to_owned()));
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown query parameter `{other}`"
                )));
            }
        }
    }
    Ok(p)
}

fn required(v: Option<String>, name: &str) -> Result<String, ApiError> {
    v.ok_or_else(|| ApiError::invalid(format!("missing query parameter `{name}`")))
}

/// A time as nanoseconds since the epoch, or RFC 3339 (`2026-11-23T10:00:00Z`).
fn parse_time(raw: &str, name: &str) -> Result<Nanos, ApiError> {
    if let Ok(ns) = raw.parse::<Nanos>() {
        return Ok(ns);
    }
    let t = humantime::parse_rfc3339_weak(raw).map_err(|e| {
        ApiError::invalid(format!(
            "parameter `{name}` = `{raw}`: not nanoseconds or RFC 3339 ({e})"
        ))
    })?;
    let ns = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| ApiError::invalid(format!("parameter `{name}`: before 1970")))?
        .as_nanos();
    Nanos::try_from(ns).map_err(|_| ApiError::invalid(format!("parameter `{name}`: out of range")))
}

fn tags_json(tags: Vec<(String, String)>) -> serde_json::Map<String, serde_json::Value> {
    tags.into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect()
}

/// Runs blocking store work off the async threads.
async fn on_store<T: Send + 'static>(
    state: &QueryState,
    work: impl FnOnce(&dyn Store) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || work(store.as_ref()))
        .await
        .map_err(store_error)?
        .map_err(store_error)
}

fn store_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable {
        what: "store",
        detail: e.to_string(),
    }
}

async fn query(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<QueryAnswer>, ApiError> {
    let tenant = authenticate(state.tenants.as_ref(), &headers, None)?;
    let p = params(raw.as_deref())?;
    let measurement = required(p.measurement, "measurement")?;
    let field = required(p.field, "field")?;
    let start = parse_time(&required(p.start, "start")?, "start")?;
    let end = parse_time(&required(p.end, "end")?, "end")?;
    if end <= start {
        return Err(ApiError::invalid("`end` must be after `start`"));
    }
    let limit = limit_param(p.limit.as_deref(), POINTS_PAGE, MAX_POINTS_PAGE)?;
    let cursor: Option<QueryCursor> = p.cursor.as_deref().map(decode_cursor).transpose()?;
    let filter = SeriesFilter {
        measurement: Some(measurement),
        field: Some(field),
        tags: p.tags,
    };
    let tiers = state.tenants.tiers(&tenant);
    let tiers = tiers.as_slice();
    let source = match (p.tier, p.agg, p.step) {
        (Some(name), agg, step) => {
            let tier = find_tier(tiers, &name)?;
            let agg = agg.ok_or_else(|| ApiError::invalid("`tier` needs `agg`"))?;
            let function: Function = agg
                .parse()
                .map_err(|e| ApiError::invalid(format!("parameter `agg` = {e}")))?;
            let step = step.as_deref().map(parse_step).transpose()?;
            if !tier.answers(function, step) {
                return Err(ApiError::invalid(format!(
                    "tier `{name}` can't answer `agg` = `{agg}`{}: it keeps {} of {:?} windows; steps must be multiples of a tumbling window, and only count, sum, min, max, first, last and mean (from sum and count) merge across windows",
                    step.map(|s| format!(" over steps of {s} ns"))
                        .unwrap_or_default(),
                    tier.rule
                        .aggregates
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    tier.rule.kind,
                )));
            }
            Source::Tier {
                tier: name,
                function,
                step,
            }
        }
        (None, Some(agg), step) => {
            let aggregation = Aggregation::parse(&agg, step.as_deref())?;
            let settled = state.watermarks.lowest(&tenant);
            match tier::choose(
                tiers,
                &filter,
                aggregation,
                &(start..end),
                (now_ns(), settled),
            ) {
                Some(t) => Source::Chosen {
                    tier: t.name.clone(),
                    rule: t.rule.name.clone(),
                    aggregation,
                },
                None => Source::Raw(Some(aggregation)),
            }
        }
        (None, None, None) => Source::Raw(None),
        (None, None, Some(_)) => return Err(ApiError::invalid("`step` needs `agg`")),
    };
    let query = Query {
        range: start..end,
        source,
        limit,
    };
    on_store(&state, move |store| {
        let query = Query {
            source: query.source.settle(store, &tenant, &query.range)?,
            ..query
        };
        query.run(store, &tenant, &filter, cursor)
    })
    .await
    .map(Json)
}

/// The tier `name` of a tenant's `tiers`.
fn find_tier<'a>(tiers: &'a [TierInfo], name: &str) -> Result<&'a TierInfo, ApiError> {
    tiers.iter().find(|t| t.name == name).ok_or_else(|| {
        let names: Vec<&str> = tiers.iter().map(|t| t.name.as_str()).collect();
        ApiError::invalid(format!(
            "parameter `tier` = `{name}`: no such tier (this tenant has: {})",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        ))
    })
}

/// The `step` parameter (`10s`, `1m`, `1h`...).
fn parse_step(raw: &str) -> Result<Nanos, ApiError> {
    humantime::parse_duration(raw)
        .ok()
        .and_then(|d| Nanos::try_from(d.as_nanos()).ok())
        .filter(|s| *s > 0)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "parameter `step` = `{raw}`: expected a duration such as 10s, 1m, 1h"
            ))
        })
}

/// Where a query's points come from.
#[derive(Debug, Clone)]
enum Source {
    /// Raw points, or an aggregation of them.
    Raw(Option<Aggregation>),
    /// A rollup tier: one value of `function` per window, or per `step`.
    Tier {
        tier: String,
        function: Function,
        step: Option<Nanos>,
    },
    /// A tier chosen for an aggregation, unless late data of its rule falls in the range
    /// (the tier lacks it: raw points answer then).
    Chosen {
        tier: String,
        rule: String,
        aggregation: Aggregation,
    },
}

impl Source {
    /// The source itself: a chosen tier, or raw points where its rule has late data in
    /// `range`.
    fn settle(
        self,
        store: &dyn Store,
        tenant: &TenantId,
        range: &std::ops::Range<Nanos>,
    ) -> Result<Self, crate::store::StoreError> {
        let Source::Chosen {
            tier,
            rule,
            aggregation,
        } = self
        else {
            return Ok(self);
        };
        let late = store.late_page(tenant, range.clone(), LATE_CHECK)?;
        if late.next.is_some() || late.records.iter().any(|r| r.rule == rule) {
            return Ok(Source::Raw(Some(aggregation)));
        }
        Ok(Source::Tier {
            tier,
            function: aggregation.function,
            step: Some(aggregation.step),
        })
    }
}

/// Late records looked at to tell whether a chosen tier lacks some: past them, raw points
/// answer.
const LATE_CHECK: usize = 1_000;

/// A query of points, run page by page so its memory is bounded by `limit`.
struct Query {
    range: std::ops::Range<Nanos>,
    source: Source,
    limit: usize,
}

impl Query {
    /// Answers with the points of the series matching `filter`, from `cursor` on.
    fn run(
        &self,
        store: &dyn Store,
        tenant: &TenantId,
        filter: &SeriesFilter,
        cursor: Option<QueryCursor>,
    ) -> Result<QueryAnswer, crate::store::StoreError> {
        let mut answer = QueryAnswer {
            tier: match &self.source {
                Source::Raw(_) => "raw".to_owned(),
                Source::Tier { tier, .. } | Source::Chosen { tier, .. } => tier.clone(),
            },
            series: Vec::new(),
            next: None,
        };
        let mut left = self.limit;
        let mut after = None;
        // The series the cursor stopped in goes on first, from where it stopped.
        if let Some(QueryCursor { series, from }) = cursor {
            if !filter.matches(&series) {
                return Ok(answer);
            }
            let points = self.points(store, tenant, &series, from, left)?;
            if let Some(next) = self.add(&series, from, points, &mut left, &mut answer) {
                answer.next = Some(encode_cursor(&QueryCursor { series, from: next }));
                return Ok(answer);
            }
            after = Some(series);
        }
        loop {
            let page = match &self.source {
                Source::Raw(_) => {
                    store.series_page(tenant, filter, after.as_ref(), SERIES_BATCH)?
                }
                Source::Tier { tier, .. } | Source::Chosen { tier, .. } => {
                    store.rollup_series_page(tenant, tier, filter, after.as_ref(), SERIES_BATCH)?
                }
            };
            let from = self.range.start;
            // Read side by side until the page's answers hold what the limit takes.
            let found = AtomicUsize::new(0);
            let read = fanout::map(
                &page.series,
                |series| {
                    let points = self.points(store, tenant, series, from, left);
                    if let Ok((points, _)) = &points {
                        found.fetch_add(points.len(), Ordering::Relaxed);
                    }
                    points
                },
                || found.load(Ordering::Relaxed) >= left,
            );
            for (series, points) in page.series.into_iter().zip(read) {
                let points = match points {
                    Some(points) => points?,
                    None => self.points(store, tenant, &series, from, left)?,
                };
                if let Some(next) = self.add(&series, from, points, &mut left, &mut answer) {
                    answer.next = Some(encode_cursor(&QueryCursor { series, from: next }));
                    return Ok(answer);
                }
                after = Some(series);
            }
            if !page.more {
                return Ok(answer);
            }
        }
    }

    /// Up to `max` points of `series` from `from` on, and where the rest start.
    fn points(
        &self,
        store: &dyn Store,
        tenant: &TenantId,
        series: &SeriesKey,
        from: Nanos,
        max: usize,
    ) -> Result<(Points, Option<Nanos>), crate::store::StoreError> {
        let range = from..self.range.end;
        if max == 0 {
            return Ok((Points::Raw(Vec::new()), Some(from)));
        }
        match &self.source {
            Source::Raw(None) => {
                let page = store.read_page(tenant, series, range, max)?;
                Ok((Points::Raw(page.samples), page.next))
            }
            Source::Raw(Some(aggregation)) | Source::Chosen { aggregation, .. } => {
                aggregate(store, tenant, series, range, *aggregation, max)
            }
            Source::Tier {
                tier,
                function,
                step,
            } => windows(store, tenant, tier, series, range, (*function, *step), max),
        }
    }

    /// Adds `series`' points (read from `from` on, the rest starting at `next`) to the
    /// answer, as many as `left` takes; returns where to go on when they didn't all fit.
    fn add(
        &self,
        series: &SeriesKey,
        from: Nanos,
        (mut points, next): (Points, Option<Nanos>),
        left: &mut usize,
        answer: &mut QueryAnswer,
    ) -> Option<Nanos> {
        if *left == 0 {
            return Some(from);
        }
        // Read with a larger budget (side by side with series before it): the rest waits.
        let next = points.truncate(*left).or(next);
        *left -= points.len();
        if !points.is_empty() {
            answer.series.push(SeriesPoints {
                measurement: series.measurement.clone(),
                field: series.field.clone(),
                tags: tags_json(series.tags.clone()),
                points,
            });
        }
        next
    }
}

/// Up to `max` buckets of `series` in `range`, read a page at a time; the start of the
/// next bucket when more follow.
fn aggregate(
    store: &dyn Store,
    tenant: &TenantId,
    series: &SeriesKey,
    range: std::ops::Range<Nanos>,
    aggregation: Aggregation,
    max: usize,
) -> Result<(Points, Option<Nanos>), crate::store::StoreError> {
    let mut buckets = Buckets::new(aggregation);
    let mut out = Vec::new();
    let mut from = range.start;
    loop {
        let next = match store.read_numbers(tenant, series, from..range.end, RAW_BATCH)? {
            Some(page) => {
                if let Some(start) = buckets.push_numbers(&page.times, &page.values, &mut out, max)
                {
                    return Ok((Points::Buckets(out), Some(start)));
                }
                page.next
            }
            // Not all numbers: booleans and strings count.
            None => {
                let page = store.read_page(tenant, series, from..range.end, RAW_BATCH)?;
                for (ts, value) in &page.samples {
                    out.extend(buckets.push_number(*ts, value.as_f64()));
                    // Once `out` holds `max` buckets, the one `ts` opened is the first of
                    // the next answer.
                    if out.len() == max {
                        return Ok((Points::Buckets(out), Some(buckets.start_of(*ts))));
                    }
                }
                page.next
            }
        };
        match next {
            Some(next) => from = next,
            None => break,
        }
    }
    out.extend(buckets.finish());
    Ok((Points::Buckets(out), None))
}

/// Up to `max` values of `function` of `series` in tier `tier`: one per window, or per
/// `step` (windows merged), read a page at a time; the start of the next when more follow.
fn windows(
    store: &dyn Store,
    tenant: &TenantId,
    tier: &str,
    series: &SeriesKey,
    range: std::ops::Range<Nanos>,
    (function, step): (Function, Option<Nanos>),
    max: usize,
) -> Result<(Points, Option<Nanos>), crate::store::StoreError> {
    let mut out = Vec::new();
    // The step being merged: its start and its windows' values.
    let mut open: Option<(Nanos, Vec<Values>)> = None;
    let close = |open: Option<(Nanos, Vec<Values>)>, out: &mut Vec<(Nanos, f64)>| {
        if let Some((start, rows)) = open {
            let rows: Vec<&[(Function, f64)]> = rows.iter().map(Vec::as_slice).collect();
            out.extend(tier::merge(function, &rows).map(|v| (start, v)));
        }
    };
    let mut from = range.start;
    loop {
        let page = store.read_rollups(tenant, tier, series, from..range.end, RAW_BATCH)?;
        for (start, _, values) in page.rows {
            let bucket = step.map_or(start, |s| floor_to(start, s));
            if open.as_ref().is_none_or(|(b, _)| *b != bucket) {
                close(open.take(), &mut out);
                if out.len() >= max {
                    return Ok((Points::Buckets(out), Some(bucket)));
                }
                open = Some((bucket, Vec::new()));
            }
            if let Some((_, rows)) = &mut open {
                rows.push(values);
            }
        }
        match page.next {
            Some(next) => from = next,
            None => break,
        }
    }
    close(open, &mut out);
    Ok((Points::Buckets(out), None))
}

/// One entry of the series list.
#[derive(Debug, Serialize)]
pub struct SeriesEntry {
    measurement: String,
    field: String,
    tags: serde_json::Map<String, serde_json::Value>,
}

async fn series(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = authenticate(state.tenants.as_ref(), &headers, None)?;
    let p = params(raw.as_deref())?;
    let limit = limit_param(p.limit.as_deref(), SERIES_PAGE, MAX_SERIES_PAGE)?;
    let after: Option<SeriesKey> = p.cursor.as_deref().map(decode_cursor).transpose()?;
    let filter = SeriesFilter {
        measurement: p.measurement,
        field: p.field,
        tags: p.tags,
    };
    if let Some(tier) = &p.tier {
        find_tier(&state.tenants.tiers(&tenant), tier)?;
    }
    let tier = p.tier;
    let page = on_store(&state, move |store| match &tier {
        None => store.series_page(&tenant, &filter, after.as_ref(), limit),
        Some(tier) => store.rollup_series_page(&tenant, tier, &filter, after.as_ref(), limit),
    })
    .await?;
    let next = page
        .more
        .then(|| page.series.last().map(encode_cursor))
        .flatten();
    let entries: Vec<SeriesEntry> = page
        .series
        .into_iter()
        .map(|s| SeriesEntry {
            measurement: s.measurement,
            field: s.field,
            tags: tags_json(s.tags),
        })
        .collect();
    let mut answer = serde_json::json!({ "series": entries });
    if let Some(next) = next {
        answer["next"] = serde_json::Value::String(next);
    }
    Ok(Json(answer))
}

async fn alerts(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = authenticate(state.tenants.as_ref(), &headers, None)?;
    let p = params(raw.as_deref())?;
    let start = parse_time(&required(p.start, "start")?, "start")?;
    let end = parse_time(&required(p.end, "end")?, "end")?;
    let list = on_store(&state, move |store| store.alerts(&tenant, start..end)).await?;
    Ok(Json(serde_json::json!({ "alerts": list })))
}

/// The tenant's dead letters, oldest first, paged: batches its stages failed on, and
/// points the store or the pipeline refused, each with the reason.
async fn dead_letters(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = authenticate(state.tenants.as_ref(), &headers, None)?;
    let p = params(raw.as_deref())?;
    let limit = limit_param(p.limit.as_deref(), SERIES_PAGE, MAX_SERIES_PAGE)?;
    let from: u64 = p
        .cursor
        .as_deref()
        .map(decode_cursor)
        .transpose()?
        .unwrap_or(0);
    let log = state.dead_letters.clone();
    let page = tokio::task::spawn_blocking(move || log.page(&tenant, from, limit))
        .await
        .map_err(|e| ApiError::Unavailable {
            what: "dead letters",
            detail: e.to_string(),
        })?
        .map_err(|e| ApiError::Unavailable {
            what: "dead letters",
            detail: e.to_string(),
        })?;
    let next = page.next();
    let letters: Vec<serde_json::Value> = page
        .letters
        .into_iter()
        .map(|l| {
            serde_json::json!({
                "time": l.at_ns,
                "stage": l.stage,
                "plugin": l.plugin,
                "version": l.version,
                "error": l.error,
                "items": l.items,
            })
        })
        .collect();
    Ok(paged("dead_letters", letters, next))
}

/// Late data: values that came after their window's grace, in time order, with the rule
/// that found them late; `next` continues after `limit` records.
async fn late(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = authenticate(state.tenants.as_ref(), &headers, None)?;
    let p = params(raw.as_deref())?;
    let mut start = parse_time(&required(p.start, "start")?, "start")?;
    let end = parse_time(&required(p.end, "end")?, "end")?;
    let limit = limit_param(p.limit.as_deref(), SERIES_PAGE, MAX_SERIES_PAGE)?;
    if let Some(cursor) = p.cursor.as_deref() {
        start = decode_cursor(cursor)?;
    }
    let page = on_store(&state, move |store| {
        store.late_page(&tenant, start..end, limit)
    })
    .await?;
    let records: Vec<serde_json::Value> = page
        .records
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "rule": r.rule,
                "measurement": r.series.measurement,
                "field": r.series.field,
                "tags": tags_json(r.series.tags),
                "time": r.timestamp,
                "value": r.value,
            })
        })
        .collect();
    Ok(paged("late", records, page.next))
}
