//! The query API, token-authenticated and tenant-scoped: a token only ever reads its own
//! tenant's series.
//!
//! - `GET /api/v1/query?measurement=M&field=F&start=S&end=E[&tag=k:v]...[&agg=A&step=D]`
//! - `GET /api/v1/series[?measurement=M]`
//! - `GET /api/v1/alerts?start=S&end=E` (alerts whose window ended in [S, E))

mod aggregate;

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use axum::Json;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::get;
use serde::Serialize;

pub use aggregate::Aggregation;

use crate::api::{ApiError, authenticate};
use crate::point::{FieldValue, Nanos};
use crate::store::{SeriesFilter, Store};
use crate::tenant::Tokens;

/// Most raw points one query may return; aggregate for more.
const MAX_POINTS: usize = 1_000_000;

/// What the query routes need.
pub struct QueryState {
    /// Token → tenant.
    pub tokens: Arc<Tokens>,
    /// Where points are.
    pub store: Arc<dyn Store>,
}

/// The query routes.
pub fn routes(state: Arc<QueryState>) -> Router {
    Router::new()
        .route("/api/v1/query", get(query))
        .route("/api/v1/series", get(series))
        .route("/api/v1/alerts", get(alerts))
        .with_state(state)
}

/// One series of a query answer.
#[derive(Debug, Serialize)]
pub struct SeriesPoints {
    measurement: String,
    field: String,
    tags: serde_json::Map<String, serde_json::Value>,
    points: Vec<(Nanos, serde_json::Value)>,
}

/// A query answer.
#[derive(Debug, Serialize)]
pub struct QueryAnswer {
    series: Vec<SeriesPoints>,
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

fn json_value(v: &FieldValue) -> serde_json::Value {
    match v {
        FieldValue::Float(f) => serde_json::json!(f),
        FieldValue::Integer(i) => serde_json::json!(i),
        FieldValue::Unsigned(u) => serde_json::json!(u),
        FieldValue::Boolean(b) => serde_json::json!(b),
        FieldValue::String(s) => serde_json::json!(s),
    }
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
    let tenant = authenticate(&state.tokens, &headers, None)?;
    let p = params(raw.as_deref())?;
    let measurement = required(p.measurement, "measurement")?;
    let field = required(p.field, "field")?;
    let start = parse_time(&required(p.start, "start")?, "start")?;
    let end = parse_time(&required(p.end, "end")?, "end")?;
    if end <= start {
        return Err(ApiError::invalid("`end` must be after `start`"));
    }
    let aggregation = match (p.agg, p.step) {
        (None, None) => None,
        (Some(agg), step) => Some(Aggregation::parse(&agg, step.as_deref())?),
        (None, Some(_)) => return Err(ApiError::invalid("`step` needs `agg`")),
    };
    let filter = SeriesFilter {
        measurement: Some(measurement),
        field: Some(field),
        tags: p.tags,
    };
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let mut total = 0;
        for series in store.series(&tenant, &filter).map_err(store_error)? {
            let raw = store.read(&tenant, &series, start..end).map_err(store_error)?;
            let points: Vec<(Nanos, serde_json::Value)> = match &aggregation {
                Some(a) => a.apply(&raw).into_iter().map(|(t, v)| (t, serde_json::json!(v))).collect(),
                None => raw.iter().map(|(t, v)| (*t, json_value(v))).collect(),
            };
            total += points.len();
            if total > MAX_POINTS {
                return Err(ApiError::invalid(format!(
                    "query matches more than {MAX_POINTS} points; narrow the range or use agg and step"
                )));
            }
            out.push(SeriesPoints {
                measurement: series.measurement,
                field: series.field,
                tags: tags_json(series.tags),
                points,
            });
        }
        Ok(Json(QueryAnswer { series: out }))
    })
    .await
    .map_err(store_error)?
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
    let tenant = authenticate(&state.tokens, &headers, None)?;
    let p = params(raw.as_deref())?;
    let filter = SeriesFilter {
        measurement: p.measurement,
        field: p.field,
        tags: p.tags,
    };
    let list = on_store(&state, move |store| store.series(&tenant, &filter)).await?;
    let entries: Vec<SeriesEntry> = list
        .into_iter()
        .map(|s| SeriesEntry {
            measurement: s.measurement,
            field: s.field,
            tags: tags_json(s.tags),
        })
        .collect();
    Ok(Json(serde_json::json!({ "series": entries })))
}

async fn alerts(
    State(state): State<Arc<QueryState>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tenant = authenticate(&state.tokens, &headers, None)?;
    let p = params(raw.as_deref())?;
    let start = parse_time(&required(p.start, "start")?, "start")?;
    let end = parse_time(&required(p.end, "end")?, "end")?;
    let list = on_store(&state, move |store| store.alerts(&tenant, start..end)).await?;
    Ok(Json(serde_json::json!({ "alerts": list })))
}
