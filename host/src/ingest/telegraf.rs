//! Telegraf's JSON output (`outputs.http` with `data_format = "json"`): a batch
//! `{"metrics": [...]}` or a single metric `{"name", "tags", "fields", "timestamp"}`.
//! Timestamps are seconds unless `?precision=` (ns, us, ms, s) says otherwise, matching
//! Telegraf's `json_timestamp_units`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::{IngestState, body, precision_param};
use crate::api::{ApiError, authenticate};
use crate::lineproto::Precision;
use crate::point::{Field, FieldValue, Point, Tag};

/// Query parameters of `POST /metrics`.
#[derive(Debug, Deserialize)]
pub struct Params {
    precision: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Payload {
    Batch { metrics: Vec<Metric> },
    Single(Metric),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Metric {
    name: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    fields: serde_json::Map<String, serde_json::Value>,
    timestamp: i64,
}

/// `POST /metrics`.
pub async fn write(
    State(state): State<Arc<IngestState>>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let tenant = authenticate(&state.tokens, &headers, None).map_err(|e| state.reject(e))?;
    let precision = precision_param(params.precision.as_deref(), Precision::Seconds)
        .map_err(|e| state.reject(e))?;
    let text = body::read_text(body, &headers, state.max_body_bytes)
        .await
        .map_err(|e| state.reject(e))?;
    state.accept(tenant, move || parse(&text, precision)).await
}

fn parse(text: &str, precision: Precision) -> Result<Vec<Point>, ApiError> {
    let payload: Payload = serde_json::from_str(text).map_err(|e| ApiError::Invalid {
        message: format!(
            "line {} column {}: not a Telegraf JSON metric or batch: {e}",
            e.line(),
            e.column()
        ),
        line: Some(e.line()),
    })?;
    let metrics = match payload {
        Payload::Batch { metrics } => metrics,
        Payload::Single(m) => vec![m],
    };
    metrics
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            to_point(m, precision).map_err(|e| ApiError::invalid(format!("metrics[{i}]: {e}")))
        })
        .collect()
}

fn to_point(m: Metric, precision: Precision) -> Result<Point, String> {
    if m.name.is_empty() {
        return Err("empty `name`".into());
    }
    if m.fields.is_empty() {
        return Err(format!("metric `{}` has no fields", m.name));
    }
    let fields = m
        .fields
        .into_iter()
        .map(|(key, v)| {
            let value = match &v {
                serde_json::Value::Bool(b) => FieldValue::Boolean(*b),
                serde_json::Value::String(s) => FieldValue::String(s.clone()),
                serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) => FieldValue::Integer(i),
                    (None, Some(u), _) => FieldValue::Unsigned(u),
                    (None, None, Some(f)) => FieldValue::Float(f),
                    _ => return Err(format!("field `{key}`: number out of range")),
                },
                other => {
                    return Err(format!(
                        "field `{key}`: {other} is not a number, string or boolean"
                    ));
                }
            };
            Ok(Field { key, value })
        })
        .collect::<Result<_, _>>()?;
    let timestamp = m
        .timestamp
        .checked_mul(precision.nanos_per_unit())
        .ok_or_else(|| format!("timestamp {} overflows nanoseconds", m.timestamp))?;
    Ok(Point {
        measurement: m.name,
        // BTreeMap iterates sorted by key: the order the contract promises.
        tags: m
            .tags
            .into_iter()
            .map(|(key, value)| Tag { key, value })
            .collect(),
        fields,
        timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_batches_and_single_metrics_from_telegraf() {
        let batch = r#"{"metrics":[{"fields":{"usage_idle":99.5,"n":3,"ok":true,"s":"x"},"name":"cpu","tags":{"host":"a","cpu":"cpu0"},"timestamp":1700000000}]}"#;
        let points = parse(batch, Precision::Seconds).expect("batch");
        assert_eq!(points[0].timestamp, 1_700_000_000_000_000_000);
        assert_eq!(points[0].tags[0].key, "cpu");
        assert_eq!(points[0].field("n"), Some(&FieldValue::Integer(3)));
        assert_eq!(
            points[0].field("usage_idle"),
            Some(&FieldValue::Float(99.5))
        );
        let single = r#"{"fields":{"v":1.5},"name":"m","tags":{},"timestamp":5}"#;
        assert_eq!(
            parse(single, Precision::Milliseconds).expect("single")[0].timestamp,
            5_000_000
        );
    }

    #[test]
    fn errors_name_the_metric_and_field_or_the_position() {
        let err = parse(r#"{"metrics":[{"fields":{"v":1},"name":"a","timestamp":1},{"fields":{"v":[1]},"name":"b","timestamp":1}]}"#, Precision::Seconds)
            .expect_err("array field");
        assert!(err.to_string().contains("metrics[1]: field `v`"), "{err}");
        let err = parse("{\n  \"metrics\": [oops", Precision::Seconds).expect_err("bad json");
        assert!(err.to_string().starts_with("line 2 column"), "{err}");
    }
}
