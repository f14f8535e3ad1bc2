//! The Prometheus HTTP API under `/prometheus` (Grafana's data source URL is then
//! `http://HOST:PORT/prometheus`): `query`, `query_range`, `labels`, `label/<name>/values`,
//! `series`, `metadata`, `status/buildinfo`, with Prometheus' envelope and error types.
//! Token-authenticated like every query route: a token reads its own tenant's series only.
//!
//! Sluice series are Prometheus series this way: the name is the measurement when the
//! field is `value` (what remote write and OTLP store), else `measurement_field` (a
//! line-protocol `cpu usage_user=1` is `cpu_usage_user`); tags are labels. Integer and
//! unsigned fields read as floats, booleans as 0 and 1; string fields are not series here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq};

use super::QueryState;
use crate::api::{ApiError, authenticate};
use crate::ingest::remote_write::VALUE_FIELD;
use crate::point::{FieldValue, Nanos};
use crate::promql::{
    self, EvalError, Evaluated, Grid, Labels, Limits, METRIC_NAME, Matcher, Millis, RawSeries,
    Reduce, Series, Source,
};
use crate::store::{SeriesFilter, SeriesKey, Store, StoreError};
use crate::tenant::TenantId;

/// Prometheus' limit on a range query's resolution.
const MAX_STEPS: i64 = 11_000;

/// Series a listing (`series`, `labels`, label values) looks at, at most.
const MAX_LISTED_SERIES: usize = 1_000_000;

/// The Prometheus API version Sluice answers as (Grafana picks its features by it).
const PROMETHEUS_VERSION: &str = "2.42.0";

/// The routes, to nest under `/prometheus`.
pub fn routes(state: Arc<QueryState>) -> Router {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/query_exemplars", get(exemplars).post(exemplars))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .with_state(state)
}

/// A failed request, in Prometheus' envelope.
#[derive(Debug)]
pub struct PromError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl PromError {
    fn bad_data(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "bad_data",
            message: message.into(),
        }
    }
}

impl From<EvalError> for PromError {
    fn from(e: EvalError) -> Self {
        let (status, kind) = match &e {
            EvalError::BadData(_) => (StatusCode::BAD_REQUEST, "bad_data"),
            EvalError::Execution(_) | EvalError::TooLarge(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "execution")
            }
            EvalError::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            EvalError::Unavailable(detail) => {
                tracing::error!(detail, "A PromQL query failed on the store.");
                return Self {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    kind: "unavailable",
                    message: "store unavailable; retrying can help".into(),
                };
            }
        };
        Self {
            status,
            kind,
            message: e.to_string(),
        }
    }
}

impl From<ApiError> for PromError {
    fn from(e: ApiError) -> Self {
        let (status, kind) = match &e {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Invalid { .. } | ApiError::TooLarge { .. } => {
                (StatusCode::BAD_REQUEST, "bad_data")
            }
            ApiError::Unavailable { what, detail } => {
                tracing::error!(what, detail, "A Prometheus API request failed.");
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            ApiError::Backpressure { .. } | ApiError::OverQuota(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
        };
        Self {
            status,
            kind,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Body {
            status: &'static str,
            error_type: &'static str,
            error: String,
        }
        let body = Body {
            status: "error",
            error_type: self.kind,
            error: self.message,
        };
        (self.status, axum::Json(body)).into_response()
    }
}

/// A successful answer: `{"status":"success","data":...}`.
fn success(data: impl Serialize) -> Response {
    #[derive(Serialize)]
    struct Envelope<T> {
        status: &'static str,
        data: T,
    }
    axum::Json(Envelope {
        status: "success",
        data,
    })
    .into_response()
}

/// A request's parameters, from the URL and (for POST) the form body; repeated ones kept.
struct Params(Vec<(String, String)>);

impl Params {
    fn of(raw: Option<&str>, body: &[u8]) -> Self {
        let url = form_urlencoded::parse(raw.unwrap_or("").as_bytes());
        let form = form_urlencoded::parse(body);
        Self(
            url.chain(form)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn time(&self, name: &str) -> Result<Option<Millis>, PromError> {
        self.get(name).map(|raw| parse_time(raw, name)).transpose()
    }

    fn limit(&self) -> Result<Option<usize>, PromError> {
        match self.get("limit") {
            None | Some("0") => Ok(None),
            Some(raw) => raw.parse().map(Some).map_err(|_| {
                PromError::bad_data(format!(
                    "invalid parameter \"limit\": cannot parse {raw:?} to a valid limit"
                ))
            }),
        }
    }
}

/// A time as Prometheus takes it: Unix seconds (fractions allowed) or RFC 3339.
fn parse_time(raw: &str, name: &str) -> Result<Millis, PromError> {
    if let Ok(secs) = raw.parse::<f64>() {
        let ms = (secs * 1000.0).round();
        if ms.is_finite() && ms.abs() < 9.0e15 {
            return Ok(ms as Millis);
        }
    }
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            PromError::bad_data(format!(
                "invalid parameter \"{name}\": cannot parse {raw:?} to a valid timestamp"
            ))
        })
}

/// A duration as Prometheus takes it: seconds (fractions allowed) or `1m30s`.
fn parse_duration(raw: &str, name: &str) -> Result<Millis, PromError> {
    let bad = || {
        PromError::bad_data(format!(
            "invalid parameter \"{name}\": cannot parse {raw:?} to a valid duration"
        ))
    };
    if let Ok(secs) = raw.parse::<f64>() {
        let ms = (secs * 1000.0).round();
        return if ms.is_finite() && ms.abs() < 9.0e15 {
            Ok(ms as Millis)
        } else {
            Err(bad())
        };
    }
    promql_parser::util::parse_duration(raw)
        .map(promql::millis)
        .map_err(|_| bad())
}

fn now_ms() -> Millis {
    crate::time::now_ns().div_euclid(1_000_000)
}

/// The tenant and parameters of a request.
fn request(
    state: &QueryState,
    headers: &HeaderMap,
    raw: Option<&str>,
    body: &[u8],
) -> Result<(TenantId, Params), PromError> {
    let tenant = authenticate(state.tenants.as_ref(), headers, None)?;
    Ok((tenant, Params::of(raw, body)))
}

/// Runs `work` with the tenant's series as a PromQL source, off the async threads.
async fn with_source<T: Send + 'static>(
    state: &QueryState,
    tenant: TenantId,
    work: impl FnOnce(&StoreSource<'_>) -> Result<T, PromError> + Send + 'static,
) -> Result<T, PromError> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || {
        work(&StoreSource {
            store: store.as_ref(),
            tenant: &tenant,
        })
    })
    .await
    .map_err(|e| PromError::from(EvalError::Unavailable(e.to_string())))?
}

async fn query(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, PromError> {
    let (tenant, p) = request(&state, &headers, raw.as_deref(), &body)?;
    let text = p
        .get("query")
        .ok_or_else(|| PromError::bad_data("invalid parameter \"query\": query is empty"))?;
    let at = p.time("time")?.unwrap_or_else(now_ms);
    let answer = evaluate(&state, tenant, &p, text, Grid::instant(at)).await?;
    Ok(success(Instant { at, answer }))
}

async fn query_range(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, PromError> {
    let (tenant, p) = request(&state, &headers, raw.as_deref(), &body)?;
    let required = |name: &str| {
        p.get(name)
            .ok_or_else(|| PromError::bad_data(format!("invalid parameter \"{name}\": missing")))
    };
    let text = required("query")?;
    let start = parse_time(required("start")?, "start")?;
    let end = parse_time(required("end")?, "end")?;
    let step = parse_duration(required("step")?, "step")?;
    if end < start {
        return Err(PromError::bad_data(
            "invalid parameter \"end\": end timestamp must not be before start time",
        ));
    }
    if step <= 0 {
        return Err(PromError::bad_data(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step >= MAX_STEPS {
        return Err(PromError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let grid = Grid { start, end, step };
    let answer = evaluate(&state, tenant, &p, text, grid).await?;
    let series = match answer {
        Evaluated::Scalar(values) => vec![promql::Series {
            labels: Labels::default(),
            values: values.into_iter().map(Some).collect(),
        }],
        Evaluated::Vector(mut v) => {
            v.sort_by(|a, b| a.labels.cmp(&b.labels));
            v
        }
        Evaluated::Matrix(_) | Evaluated::String(_) => {
            let kind = if matches!(answer, Evaluated::Matrix(_)) {
                "range vector"
            } else {
                "string"
            };
            return Err(PromError::bad_data(format!(
                "invalid expression type \"{kind}\" for range query, must be Scalar or instant Vector"
            )));
        }
    };
    Ok(success(RangeAnswer { grid, series }))
}

/// Parses `text` and evaluates it on `grid` over the tenant's series, within the request's
/// limits.
async fn evaluate(
    state: &QueryState,
    tenant: TenantId,
    p: &Params,
    text: &str,
    grid: Grid,
) -> Result<Evaluated, PromError> {
    let expr = promql::parse(text)?;
    let limits = limits(p)?;
    with_source(state, tenant, move |source| {
        Ok(promql::evaluate(&expr, grid, source, limits)?)
    })
    .await
}

/// The `timeout` parameter, within the default.
fn limits(p: &Params) -> Result<Limits, PromError> {
    let mut limits = Limits::default();
    if let Some(raw) = p.get("timeout") {
        let ms = parse_duration(raw, "timeout")?;
        let asked = std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
        limits.timeout = limits.timeout.min(asked);
    }
    Ok(limits)
}

async fn series(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, PromError> {
    let (tenant, p) = request(&state, &headers, raw.as_deref(), &body)?;
    let selectors = selectors(&p)?;
    if selectors.is_empty() {
        return Err(PromError::bad_data("no match[] parameter provided"));
    }
    let range = listing_range(&p)?;
    let limit = p.limit()?;
    let found = with_source(&state, tenant, move |source| {
        source.listed(&selectors, range)
    })
    .await?;
    let found: Vec<LabelsJson> = found
        .into_iter()
        .take(limit.unwrap_or(usize::MAX))
        .map(LabelsJson)
        .collect();
    Ok(success(found))
}

async fn labels(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, PromError> {
    listing(&state, &headers, raw.as_deref(), &body, |l| {
        l.iter().map(|(n, _)| n.to_owned()).collect()
    })
    .await
}

async fn label_values(
    State(state): State<Arc<QueryState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, PromError> {
    listing(&state, &headers, raw.as_deref(), &[], move |l| {
        l.get(&name).map(str::to_owned).into_iter().collect()
    })
    .await
}

/// What `pick` takes from each series the request's `match[]` selectors (or all) match,
/// sorted, deduplicated and cut at `limit`.
async fn listing(
    state: &QueryState,
    headers: &HeaderMap,
    raw: Option<&str>,
    body: &[u8],
    pick: impl Fn(&Labels) -> Vec<String> + Send + 'static,
) -> Result<Response, PromError> {
    let (tenant, p) = request(state, headers, raw, body)?;
    let selectors = selectors(&p)?;
    let range = listing_range(&p)?;
    let limit = p.limit()?.unwrap_or(usize::MAX);
    let found = with_source(state, tenant, move |source| {
        let series = source.listed(&selectors, range)?;
        Ok(series.iter().flat_map(pick).collect::<BTreeSet<String>>())
    })
    .await?;
    Ok(success(found.into_iter().take(limit).collect::<Vec<_>>()))
}

/// Metric metadata (type, help, unit): Sluice does not keep it yet, so none is known.
async fn metadata(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
) -> Result<Response, PromError> {
    authenticate(state.tenants.as_ref(), &headers, None)?;
    Ok(success(serde_json::Map::new()))
}

/// Exemplars: Sluice keeps none.
async fn exemplars(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
) -> Result<Response, PromError> {
    authenticate(state.tenants.as_ref(), &headers, None)?;
    Ok(success(Vec::<()>::new()))
}

/// Build information: the Prometheus API version Sluice answers as, and Sluice's own.
async fn buildinfo(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
) -> Result<Response, PromError> {
    authenticate(state.tenants.as_ref(), &headers, None)?;
    Ok(success(serde_json::json!({
        "version": PROMETHEUS_VERSION,
        "revision": format!("sluice-{}", env!("CARGO_PKG_VERSION")),
        "branch": "",
        "buildUser": "sluice",
        "buildDate": "",
        "goVersion": "",
    })))
}

/// The `match[]` selectors of a listing.
fn selectors(p: &Params) -> Result<Vec<Vec<Matcher>>, PromError> {
    p.all("match[]")
        .into_iter()
        .map(|raw| match promql::parse(raw)? {
            promql_parser::parser::Expr::VectorSelector(vs) => {
                let name = vs
                    .name
                    .map(|n| Matcher::new(promql_parser::label::MatchOp::Equal, METRIC_NAME, &n));
                Ok(name.into_iter().chain(vs.matchers.matchers).collect())
            }
            _ => Err(PromError::bad_data(format!(
                "invalid parameter \"match[]\": {raw:?} is not a series selector"
            ))),
        })
        .collect()
}

/// A listing's `[start, end]`, when it names one.
fn listing_range(p: &Params) -> Result<Option<(Millis, Millis)>, PromError> {
    let start = p.time("start")?;
    let end = p.time("end")?;
    Ok(match (start, end) {
        (None, None) => None,
        (start, end) => Some((
            start.unwrap_or(Millis::MIN / 2),
            end.unwrap_or(Millis::MAX / 2),
        )),
    })
}

/// A tenant's series in the store, as PromQL sees them.
struct StoreSource<'a> {
    store: &'a dyn Store,
    tenant: &'a TenantId,
}

/// A series' Prometheus name: the measurement for a field named `value`, else
/// `measurement_field`.
pub fn metric_name(key: &SeriesKey) -> String {
    if key.field == VALUE_FIELD {
        key.measurement.clone()
    } else {
        format!("{}_{}", key.measurement, key.field)
    }
}

/// A series' Prometheus labels: its name and tags.
fn labels_of(key: &SeriesKey) -> Labels {
    Labels::new(
        key.tags
            .iter()
            .cloned()
            .chain([(METRIC_NAME.to_owned(), metric_name(key))]),
    )
}

fn unavailable(e: StoreError) -> EvalError {
    EvalError::Unavailable(e.to_string())
}

impl StoreSource<'_> {
    /// The store's series matching `matchers`, by label set (several Sluice series may
    /// read as one: `a_b` with field `value` and `a` with field `b`).
    fn matching(
        &self,
        matchers: &[Matcher],
    ) -> Result<BTreeMap<Labels, Vec<SeriesKey>>, EvalError> {
        // Equality matchers narrow what the store lists: on a name, to the measurement and
        // field pairs that give it; on a tag, to series with it.
        let tags: Vec<(String, String)> = matchers
            .iter()
            .filter(|m| {
                m.op == promql_parser::label::MatchOp::Equal
                    && m.name != METRIC_NAME
                    && !m.value.is_empty()
            })
            .map(|m| (m.name.clone(), m.value.clone()))
            .collect();
        let name = matchers
            .iter()
            .find(|m| m.op == promql_parser::label::MatchOp::Equal && m.name == METRIC_NAME);
        let filters: Vec<SeriesFilter> = match name {
            Some(m) => name_candidates(&m.value)
                .map(|(measurement, field)| SeriesFilter {
                    measurement: Some(measurement),
                    field: Some(field),
                    tags: tags.clone(),
                })
                .collect(),
            None => vec![SeriesFilter {
                measurement: None,
                field: None,
                tags,
            }],
        };
        let mut found: BTreeMap<Labels, Vec<SeriesKey>> = BTreeMap::new();
        let mut listed = 0usize;
        for filter in filters {
            let mut after: Option<SeriesKey> = None;
            loop {
                let page = self
                    .store
                    .series_page(self.tenant, &filter, after.as_ref(), 10_000)
                    .map_err(unavailable)?;
                listed += page.series.len();
                if listed > MAX_LISTED_SERIES {
                    return Err(EvalError::TooLarge(format!(
                        "the selector matches more than {MAX_LISTED_SERIES} series; narrow it"
                    )));
                }
                after = page.series.last().cloned();
                for key in page.series {
                    let labels = labels_of(&key);
                    if matchers.iter().all(|m| m.is_match(labels.value(&m.name))) {
                        found.entry(labels).or_default().push(key);
                    }
                }
                if !page.more {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// The label sets of series matching any of `selectors` (all series when there are
    /// none), with a point in `range` when one is given.
    fn listed(
        &self,
        selectors: &[Vec<Matcher>],
        range: Option<(Millis, Millis)>,
    ) -> Result<Vec<Labels>, PromError> {
        let all = [Vec::new()];
        let selectors = if selectors.is_empty() {
            &all[..]
        } else {
            selectors
        };
        let mut found = BTreeSet::new();
        for matchers in selectors {
            for (labels, keys) in self.matching(matchers)? {
                if found.contains(&labels) {
                    continue;
                }
                let within = match range {
                    None => true,
                    Some((start, end)) => {
                        let mut any = false;
                        for key in &keys {
                            let page = self
                                .store
                                .read_page(self.tenant, key, nanos_range(start, end), 1)
                                .map_err(unavailable)?;
                            if !page.samples.is_empty() {
                                any = true;
                                break;
                            }
                        }
                        any
                    }
                };
                if within {
                    found.insert(labels);
                }
            }
        }
        Ok(found.into_iter().collect())
    }
}

/// The store's range of `[start, end]` in milliseconds: every nanosecond of both ends.
fn nanos_range(start: Millis, end: Millis) -> std::ops::Range<Nanos> {
    start.saturating_mul(1_000_000)..end.saturating_add(1).saturating_mul(1_000_000)
}

/// The (measurement, field) pairs whose Prometheus name is `name`.
fn name_candidates(name: &str) -> impl Iterator<Item = (String, String)> + '_ {
    let whole = (name.to_owned(), VALUE_FIELD.to_owned());
    let splits = name
        .match_indices('_')
        .map(|(i, _)| (name[..i].to_owned(), name[i + 1..].to_owned()))
        .filter(|(m, f)| !m.is_empty() && !f.is_empty() && f != VALUE_FIELD);
    std::iter::once(whole).chain(splits)
}

/// A stored value as a sample; string fields are no sample.
fn sample_value(v: &FieldValue) -> Option<f64> {
    match v {
        FieldValue::Boolean(b) => Some(f64::from(u8::from(*b))),
        other => other.as_f64(),
    }
}

impl Source for StoreSource<'_> {
    fn select(
        &self,
        matchers: &[Matcher],
        start: Millis,
        end: Millis,
    ) -> Result<Vec<RawSeries>, EvalError> {
        self.read_each(matchers, start, end, Ok)
    }

    fn select_reduced(
        &self,
        matchers: &[Matcher],
        start: Millis,
        end: Millis,
        reduce: Reduce<'_>,
    ) -> Result<Vec<Series>, EvalError> {
        self.read_each(matchers, start, end, reduce)
    }
}

impl StoreSource<'_> {
    /// `f` of each series matching `matchers` (with its samples in `[start, end]`), read
    /// side by side; the first error stops the reading.
    fn read_each<T: Send>(
        &self,
        matchers: &[Matcher],
        start: Millis,
        end: Millis,
        f: impl Fn(RawSeries) -> Result<T, EvalError> + Sync,
    ) -> Result<Vec<T>, EvalError> {
        let matching: Vec<_> = self.matching(matchers)?.into_iter().collect();
        let failed = AtomicBool::new(false);
        let read = super::fanout::map(
            &matching,
            |(labels, keys)| {
                let series = self.samples(labels, keys, start, end);
                let done = series.and_then(|s| s.map(&f).transpose());
                if done.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                done
            },
            || failed.load(Ordering::Relaxed),
        );
        let mut out = Vec::new();
        for series in read.into_iter().flatten() {
            out.extend(series?);
        }
        // After an error, the reads not begun were left undone: the error is among those
        // done, and returned above.
        Ok(out)
    }

    /// The samples of the series `keys` (one Prometheus series may be several of the
    /// store's) in `[start, end]`, as one series named `labels`; none when it has none.
    fn samples(
        &self,
        labels: &Labels,
        keys: &[SeriesKey],
        start: Millis,
        end: Millis,
    ) -> Result<Option<RawSeries>, EvalError> {
        let mut samples = Vec::new();
        for key in keys {
            let range = nanos_range(start, end);
            // Unsigned where it can be (nearly always): without the sign's fix-ups this
            // copy takes 1.7 instead of 2.5 ns a sample (throwaway micro-benchmark).
            let ms = |&t: &Nanos| match u64::try_from(t) {
                Ok(t) => (t / 1_000_000) as i64,
                Err(_) => t.div_euclid(1_000_000),
            };
            match self
                .store
                .read_numbers(self.tenant, key, range.clone(), usize::MAX)
                .map_err(unavailable)?
            {
                Some(page) => samples.extend(page.times.iter().map(ms).zip(page.values)),
                // Booleans (as 0 and 1) or strings (not samples).
                None => {
                    let points = self
                        .store
                        .read(self.tenant, key, range)
                        .map_err(unavailable)?;
                    samples.extend(
                        points
                            .iter()
                            .filter_map(|(t, v)| Some((ms(t), sample_value(v)?))),
                    );
                }
            }
        }
        if keys.len() > 1 {
            samples.sort_by_key(|s| s.0);
        }
        // Points within one millisecond are one sample: the last.
        samples.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 = later.1;
            }
            same
        });
        Ok((!samples.is_empty()).then(|| RawSeries {
            labels: labels.clone(),
            samples,
        }))
    }
}

/// A time as Prometheus writes it: seconds, with milliseconds when there are some.
struct Time(Millis);

impl Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 % 1000 == 0 {
            s.serialize_i64(self.0 / 1000)
        } else {
            s.serialize_f64(self.0 as f64 / 1000.0)
        }
    }
}

/// A sample as Prometheus writes it: `[time, "value"]`.
struct SampleJson(Millis, f64);

impl Serialize for SampleJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (Time(self.0), promql::format_value(self.1)).serialize(s)
    }
}

/// A label set as a JSON object.
struct LabelsJson(Labels);

impl Serialize for LabelsJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (n, v) in self.0.iter() {
            map.serialize_entry(n, v)?;
        }
        map.end()
    }
}

/// An instant query's answer.
struct Instant {
    at: Millis,
    answer: Evaluated,
}

impl Serialize for Instant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        match &self.answer {
            Evaluated::Scalar(v) => {
                map.serialize_entry("resultType", "scalar")?;
                let v = v.first().copied().unwrap_or(f64::NAN);
                map.serialize_entry("result", &SampleJson(self.at, v))?;
            }
            Evaluated::String(text) => {
                map.serialize_entry("resultType", "string")?;
                map.serialize_entry("result", &(Time(self.at), text))?;
            }
            Evaluated::Vector(series) => {
                map.serialize_entry("resultType", "vector")?;
                map.serialize_entry("result", &InstantVector(series, self.at))?;
            }
            Evaluated::Matrix(series) => {
                map.serialize_entry("resultType", "matrix")?;
                map.serialize_entry("result", &RawMatrix(series))?;
            }
        }
        map.end()
    }
}

struct InstantVector<'a>(&'a [promql::Series], Millis);

impl Serialize for InstantVector<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for series in self.0 {
            let Some(v) = series.values.first().copied().flatten() else {
                continue;
            };
            seq.serialize_element(&serde_json::json!({
                "metric": LabelsJson(series.labels.clone()),
                "value": SampleJson(self.1, v),
            }))?;
        }
        seq.end()
    }
}

struct RawMatrix<'a>(&'a [RawSeries]);

impl Serialize for RawMatrix<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for series in self.0 {
            let values: Vec<SampleJson> = series
                .samples
                .iter()
                .map(|&(t, v)| SampleJson(t, v))
                .collect();
            seq.serialize_element(&serde_json::json!({
                "metric": LabelsJson(series.labels.clone()),
                "values": values,
            }))?;
        }
        seq.end()
    }
}

/// A range query's answer: a matrix of each series' values at the steps it has one.
struct RangeAnswer {
    grid: Grid,
    series: Vec<promql::Series>,
}

impl Serialize for RangeAnswer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Values<'a>(&'a [Option<f64>], Grid);
        impl Serialize for Values<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut seq = s.serialize_seq(None)?;
                for (i, v) in self.0.iter().enumerate() {
                    if let Some(v) = v {
                        seq.serialize_element(&SampleJson(self.1.at(i), *v))?;
                    }
                }
                seq.end()
            }
        }
        struct One<'a>(&'a promql::Series, Grid);
        impl Serialize for One<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(Some(2))?;
                map.serialize_entry("metric", &LabelsJson(self.0.labels.clone()))?;
                map.serialize_entry("values", &Values(&self.0.values, self.1))?;
                map.end()
            }
        }
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("resultType", "matrix")?;
        let all: Vec<One<'_>> = self.series.iter().map(|x| One(x, self.grid)).collect();
        map.serialize_entry("result", &all)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_the_measurement_and_field_pairs_that_give_them() {
        let key = |m: &str, f: &str| SeriesKey {
            measurement: m.into(),
            field: f.into(),
            tags: vec![],
        };
        assert_eq!(metric_name(&key("up", "value")), "up");
        assert_eq!(metric_name(&key("cpu", "usage_user")), "cpu_usage_user");
        let candidates: Vec<(String, String)> = name_candidates("cpu_usage_user").collect();
        for (m, f) in &candidates {
            assert_eq!(metric_name(&key(m, f)), "cpu_usage_user");
        }
        assert_eq!(candidates.len(), 3);
        // `a_value` is not measurement `a` with field `value` (that reads as `a`).
        assert!(name_candidates("a_value").all(|(_, f)| f == "value"));
    }

    #[test]
    fn times_and_durations_parse_as_prometheus_takes_them() {
        assert_eq!(
            parse_time("1435781451.781", "t").expect("valid"),
            1_435_781_451_781
        );
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z", "t").expect("valid"),
            1_435_781_451_781
        );
        assert!(
            parse_time("yesterday", "time")
                .expect_err("not a time")
                .message
                .contains("\"time\"")
        );
        assert_eq!(parse_duration("15", "step").expect("valid"), 15_000);
        assert_eq!(parse_duration("1m30s", "step").expect("valid"), 90_000);
        assert!(parse_duration("NaN", "step").is_err());
        let t = serde_json::to_string(&SampleJson(1_500, f64::INFINITY)).expect("valid");
        assert_eq!(t, r#"[1.5,"+Inf"]"#);
        let t = serde_json::to_string(&SampleJson(2_000, 0.1)).expect("valid");
        assert_eq!(t, r#"[2,"0.1"]"#);
    }
}
