//! Telegraf's JSON output (`outputs.http` with `data_format = "json"`): a batch
//! `{"metrics": [...]}` or a single metric `{"name", "tags", "fields", "timestamp"}`.
//! Timestamps are seconds unless `?precision=` (ns, us, ms, s) says otherwise, matching
//! Telegraf's `json_timestamp_units`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Decoded, IngestState, body, precision_param};
use crate::api::{ApiError, authenticate};
use crate::lineproto::Precision;
use crate::point::{Field, FieldValue, Point, Tag};

/// Query parameters of `POST /metrics`.
#[derive(Debug, Deserialize)]
pub struct Params {
    precision: Option<String>,
}

/// `POST /metrics`.
pub async fn write(
    State(state): State<Arc<IngestState>>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let tenant =
        authenticate(state.tenants.as_ref(), &headers, None).map_err(|e| state.reject(e))?;
    let precision = precision_param(params.precision.as_deref(), Precision::Seconds)
        .map_err(|e| state.reject(e))?;
    let text = body::read_text(body, &headers, state.max_body_bytes)
        .await
        .map_err(|e| state.reject(e))?;
    state
        .accept(tenant, text.len(), move || parse(&text, precision))
        .await
}

fn parse(text: &str, precision: Precision) -> Result<Decoded, ApiError> {
    let payload: Value = serde_json::from_str(text).map_err(|e| ApiError::Invalid {
        message: format!(
            "line {} column {}: not valid JSON: {e}",
            e.line(),
            e.column()
        ),
        line: Some(e.line()),
    })?;
    let metrics = match payload {
        Value::Object(mut batch) if batch.contains_key("metrics") => {
            match batch.remove("metrics") {
                Some(Value::Array(metrics)) if batch.is_empty() => metrics,
                Some(Value::Array(_)) => {
                    let other = batch.keys().next().map_or("", String::as_str);
                    return Err(ApiError::invalid(format!(
                        "unknown key `{other}` beside `metrics` (a batch is {{\"metrics\": [...]}})"
                    )));
                }
                Some(other) => {
                    return Err(ApiError::invalid(format!(
                        "`metrics`: expected an array of metrics, got {}",
                        describe(&other)
                    )));
                }
                None => Vec::new(),
            }
        }
        single @ Value::Object(_) => vec![single],
        other => {
            return Err(ApiError::invalid(format!(
                "expected an object: a batch {{\"metrics\": [...]}} or one metric {{\"name\", \"tags\", \"fields\", \"timestamp\"}}, got {}",
                describe(&other)
            )));
        }
    };
    let points = metrics
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            to_point(m, precision).map_err(|e| ApiError::invalid(format!("metrics[{i}]: {e}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Decoded::metrics(points))
}

/// Decodes a Telegraf JSON body into points, without validating them.
///
/// # Errors
/// A 400 naming the metric, the field and what was expected.
pub fn decode(text: &str, precision: Precision) -> Result<Vec<Point>, ApiError> {
    parse(text, precision).map(|d| d.points)
}

/// A JSON value's kind and, when short, the value itself: what an error says it got.
fn describe(v: &Value) -> String {
    let kind = match v {
        Value::Null => return "null".into(),
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => return "an array".into(),
        Value::Object(_) => return "an object".into(),
    };
    let text = v.to_string();
    if text.len() <= 40 {
        format!("{kind} {text}")
    } else {
        kind.to_owned()
    }
}

fn to_point(m: Value, precision: Precision) -> Result<Point, String> {
    let Value::Object(mut m) = m else {
        return Err(format!("expected a metric object, got {}", describe(&m)));
    };
    let name = match m.remove("name") {
        Some(Value::String(name)) => name,
        Some(other) => {
            return Err(format!(
                "`name`: expected a string, got {}",
                describe(&other)
            ));
        }
        None => return Err("missing `name`".into()),
    };
    let tags = match m.remove("tags") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(tags)) => tags,
        Some(other) => {
            return Err(format!(
                "`tags`: expected an object of strings, got {}",
                describe(&other)
            ));
        }
    };
    let fields = match m.remove("fields") {
        Some(Value::Object(fields)) => fields,
        Some(other) => {
            return Err(format!(
                "`fields`: expected an object of numbers, strings and booleans, got {}",
                describe(&other)
            ));
        }
        None => return Err("missing `fields`".into()),
    };
    let timestamp = match m.remove("timestamp") {
        None => return Err("missing `timestamp`".into()),
        Some(v) => v.as_i64().ok_or_else(|| {
            format!(
                "`timestamp`: expected an integer in {} (the `precision` parameter), got {}",
                precision.unit_name(),
                describe(&v)
            )
        })?,
    };
    if let Some(other) = m.keys().next() {
        return Err(format!(
            "unknown key `{other}` (a metric has name, tags, fields and timestamp)"
        ));
    }
    if fields.is_empty() {
        return Err(format!("metric `{name}` has no fields"));
    }
    let tags = tags
        .into_iter()
        .map(|(key, v)| match v {
            Value::String(value) => Ok(Tag {
                key: key.into(),
                value: value.into(),
            }),
            other => Err(format!(
                "tag `{key}`: expected a string, got {}",
                describe(&other)
            )),
        })
        .collect::<Result<_, _>>()?;
    let fields = fields
        .into_iter()
        .map(|(key, v)| {
            let value = match v {
                Value::Bool(b) => FieldValue::Boolean(b),
                Value::String(s) => FieldValue::String(s),
                Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) => FieldValue::Integer(i),
                    (None, Some(u), _) => FieldValue::Unsigned(u),
                    (None, None, Some(f)) => FieldValue::Float(f),
                    _ => return Err(format!("field `{key}`: number {n} out of range")),
                },
                other => {
                    return Err(format!(
                        "field `{key}`: expected a number, string or boolean, got {}",
                        describe(&other)
                    ));
                }
            };
            Ok(Field {
                key: key.into(),
                value,
            })
        })
        .collect::<Result<_, _>>()?;
    let timestamp = timestamp
        .checked_mul(precision.nanos_per_unit())
        .ok_or_else(|| format!("`timestamp` {timestamp} overflows nanoseconds"))?;
    let mut point = Point {
        measurement: name.into(),
        tags,
        fields,
        timestamp,
    };
    point.sort_tags();
    Ok(point)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_batches_and_single_metrics_from_telegraf() {
        let batch = r#"{"metrics":[{"fields":{"usage_idle":99.5,"n":3,"ok":true,"s":"x"},"name":"cpu","tags":{"host":"a","cpu":"cpu0"},"timestamp":1700000000}]}"#;
        let points = parse(batch, Precision::Seconds).expect("batch").points;
        assert_eq!(points[0].timestamp, 1_700_000_000_000_000_000);
        assert_eq!(points[0].tags[0].key, "cpu");
        assert_eq!(points[0].field("n"), Some(&FieldValue::Integer(3)));
        assert_eq!(
            points[0].field("usage_idle"),
            Some(&FieldValue::Float(99.5))
        );
        let single = r#"{"fields":{"v":1.5},"name":"m","tags":{},"timestamp":5}"#;
        assert_eq!(
            parse(single, Precision::Milliseconds)
                .expect("single")
                .points[0]
                .timestamp,
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
