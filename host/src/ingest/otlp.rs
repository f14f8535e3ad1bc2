//! OTLP/HTTP metrics (`POST /v1/metrics`): an `ExportMetricsServiceRequest` as protobuf
//! (`Content-Type: application/x-protobuf`) or OTLP/JSON (`application/json`), gzipped or
//! not, as the OpenTelemetry SDKs' and the Collector's OTLP/HTTP exporters send it.
//!
//! How OpenTelemetry's data model maps onto Sluice's (the README's "OpenTelemetry"
//! section). It follows OpenTelemetry's Prometheus compatibility rules, so the Prometheus
//! query API reads these metrics as Prometheus would:
//! - the metric name is the measurement and attribute keys are tag keys, with characters
//!   Prometheus doesn't allow in names replaced by `_` (`http.server.duration` →
//!   `http_server_duration`);
//! - tags are the resource's attributes, then the scope's name and version
//!   (`otel_scope_name`, `otel_scope_version`) and attributes, then the data point's; a later
//!   one wins a key, and an empty value is no tag;
//! - a gauge or sum data point is a point with the float field `value` (integers become
//!   floats, as in Prometheus); a delta sum is stored as its deltas;
//! - a histogram data point is Prometheus' classic histogram: `<name>_bucket` per bound with
//!   tag `le` and the cumulative count (`+Inf`: the total), `<name>_count`, and `<name>_sum`
//!   when the point has a sum;
//! - a summary data point is `<name>` per quantile with tag `quantile`, `<name>_count` and
//!   `<name>_sum`;
//! - a data point flagged "no recorded value" is stored as Prometheus' staleness marker;
//! - exponential histograms are refused by name (400).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};

use super::remote_write::{STALE_NAN, VALUE_FIELD};
use super::{Decoded, IngestState, SeriesNames, body};
use crate::api::{ApiError, authenticate};
use crate::point::{Field, FieldValue, Point, Tag};

/// `DataPointFlags.FLAG_NO_RECORDED_VALUE`.
const NO_RECORDED_VALUE: u32 = 1;

/// The two encodings of OTLP/HTTP.
#[derive(Debug, Clone, Copy)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    const PROTOBUF: &str = "application/x-protobuf";
    const JSON: &str = "application/json";

    fn of(headers: &HeaderMap) -> Result<Self, ApiError> {
        let given = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match given.split(';').next().map(str::trim) {
            Some(Self::PROTOBUF) => Ok(Self::Protobuf),
            Some(Self::JSON) => Ok(Self::Json),
            _ => Err(ApiError::invalid(format!(
                "Content-Type is `{given}`: OTLP/HTTP bodies are `{}` or `{}`",
                Self::PROTOBUF,
                Self::JSON
            ))),
        }
    }

    /// An empty `ExportMetricsServiceResponse` in this encoding: full success.
    fn success(self) -> Response {
        match self {
            Self::Protobuf => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, Self::PROTOBUF)],
                Vec::new(),
            )
                .into_response(),
            Self::Json => {
                (StatusCode::OK, [(header::CONTENT_TYPE, Self::JSON)], "{}").into_response()
            }
        }
    }
}

/// `POST /v1/metrics`.
pub async fn write(
    State(state): State<Arc<IngestState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let tenant =
        authenticate(state.tenants.as_ref(), &headers, None).map_err(|e| state.reject(e))?;
    let encoding = Encoding::of(&headers).map_err(|e| state.reject(e))?;
    let bytes = body::read_bytes(body, &headers, state.max_body_bytes)
        .await
        .map_err(|e| state.reject(e))?;
    state
        .accept(tenant, bytes.len(), move || decode(&bytes, encoding))
        .await?;
    Ok(encoding.success())
}

fn decode(bytes: &[u8], encoding: Encoding) -> Result<Decoded, ApiError> {
    let request: ExportMetricsServiceRequest = match encoding {
        Encoding::Protobuf => prost::Message::decode(bytes).map_err(|e| {
            ApiError::invalid(format!(
                "body is not an OTLP ExportMetricsServiceRequest: {e}"
            ))
        })?,
        Encoding::Json => serde_json::from_slice(bytes).map_err(|e| ApiError::Invalid {
            message: format!(
                "line {} column {}: not an OTLP/JSON ExportMetricsServiceRequest: {e}",
                e.line(),
                e.column()
            ),
            line: Some(e.line()),
        })?,
    };
    let mut out = Points::default();
    for (i, resource) in request.resource_metrics.into_iter().enumerate() {
        let mut base = BTreeMap::new();
        if let Some(r) = &resource.resource {
            add_attributes(&mut base, &r.attributes);
        }
        for (j, scope) in resource.scope_metrics.into_iter().enumerate() {
            let mut tags = base.clone();
            if let Some(s) = &scope.scope {
                add_scope(&mut tags, s);
            }
            for (k, metric) in scope.metrics.into_iter().enumerate() {
                let at = format!(
                    "resourceMetrics[{i}].scopeMetrics[{j}].metrics[{k}] `{}`",
                    metric.name
                );
                let refuse = |why: String| ApiError::invalid(format!("{at}: {why}"));
                if metric.name.is_empty() {
                    return Err(refuse("the metric has no name".to_owned()));
                }
                out.series.push(at.clone());
                let name = metric_name(&metric.name);
                match metric.data {
                    None => return Err(refuse("the metric has no data".to_owned())),
                    Some(Data::Gauge(g)) => out.numbers(&name, &tags, g.data_points),
                    Some(Data::Sum(s)) => out.numbers(&name, &tags, s.data_points),
                    Some(Data::Histogram(h)) => out.histograms(&name, &tags, h.data_points),
                    Some(Data::Summary(s)) => out.summaries(&name, &tags, s.data_points),
                    Some(Data::ExponentialHistogram(_)) => {
                        return Err(refuse(
                            "exponential histograms aren't supported; export explicit-bucket histograms"
                                .to_owned(),
                        ));
                    }
                }
                .map_err(|(l, why)| refuse(format!("dataPoints[{l}]: {why}")))?;
            }
        }
    }
    Ok(Decoded::series(
        out.points,
        SeriesNames::Listed(out.series),
        "dataPoints",
        out.at,
    ))
}

/// The points of `bytes` read as OTLP protobuf, and as OTLP/JSON: the fuzz target's view.
#[cfg(test)]
pub(crate) fn fuzz_points(bytes: &[u8]) -> [Option<Vec<Point>>; 2] {
    [Encoding::Protobuf, Encoding::Json].map(|e| decode(bytes, e).ok().map(|d| d.points))
}

/// The points made so far, and where each came from.
#[derive(Default)]
struct Points {
    points: Vec<Point>,
    /// Each metric's place in the request.
    series: Vec<String>,
    /// Per point: (metric, data point).
    at: Vec<(usize, usize)>,
}

/// A data point's refusal: its index and why.
type Refused = (usize, String);

/// What every kind of data point has: its index and time, its tags, and whether it
/// recorded no value.
struct Common {
    when: (usize, i64),
    tags: BTreeMap<String, String>,
    stale: bool,
}

impl Common {
    /// Data point `l`, under the resource's and scope's `tags`.
    fn of(
        l: usize,
        tags: &BTreeMap<String, String>,
        time_unix_nano: u64,
        attributes: &[KeyValue],
        flags: u32,
    ) -> Result<Self, Refused> {
        let mut tags = tags.clone();
        add_attributes(&mut tags, attributes);
        Ok(Self {
            when: (l, timestamp(time_unix_nano).map_err(|why| (l, why))?),
            tags,
            stale: flags & NO_RECORDED_VALUE != 0,
        })
    }
}

impl Points {
    /// Adds one point of measurement `name` for data point `c`, with tag `extra` too; its
    /// value is `value`, or the staleness marker when `c` recorded none.
    fn push(&mut self, c: &Common, name: String, extra: Option<(&str, String)>, value: f64) {
        let mut tags = c.tags.clone();
        if let Some((key, v)) = extra {
            tags.insert(key.to_owned(), v);
        }
        self.points.push(Point {
            measurement: name.into(),
            tags: tags
                .into_iter()
                .map(|(key, value)| Tag {
                    key: key.into(),
                    value: value.into(),
                })
                .collect(),
            fields: vec![Field {
                key: VALUE_FIELD.into(),
                value: FieldValue::Float(if c.stale {
                    f64::from_bits(STALE_NAN)
                } else {
                    value
                }),
            }],
            timestamp: c.when.1,
        });
        self.at.push((self.series.len() - 1, c.when.0));
    }

    /// `NAME_count`, and `NAME_sum` when there is one.
    fn count_and_sum(&mut self, c: &Common, name: &str, count: u64, sum: Option<f64>) {
        self.push(c, format!("{name}_count"), None, count as f64);
        if let Some(sum) = sum {
            self.push(c, format!("{name}_sum"), None, sum);
        }
    }

    fn numbers(
        &mut self,
        name: &str,
        tags: &BTreeMap<String, String>,
        points: Vec<opentelemetry_proto::tonic::metrics::v1::NumberDataPoint>,
    ) -> Result<(), Refused> {
        for (l, p) in points.into_iter().enumerate() {
            let c = Common::of(l, tags, p.time_unix_nano, &p.attributes, p.flags)?;
            let value = match p.value {
                Some(number_data_point::Value::AsDouble(v)) => v,
                Some(number_data_point::Value::AsInt(v)) => v as f64,
                None if c.stale => f64::NAN,
                None => return Err((l, "the data point has no value".to_owned())),
            };
            self.push(&c, name.to_owned(), None, value);
        }
        Ok(())
    }

    fn histograms(
        &mut self,
        name: &str,
        tags: &BTreeMap<String, String>,
        points: Vec<opentelemetry_proto::tonic::metrics::v1::HistogramDataPoint>,
    ) -> Result<(), Refused> {
        for (l, p) in points.into_iter().enumerate() {
            let c = Common::of(l, tags, p.time_unix_nano, &p.attributes, p.flags)?;
            if !p.bucket_counts.is_empty() {
                if p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
                    return Err((
                        l,
                        format!(
                            "{} bucket counts for {} explicit bounds (there must be one more count than bounds)",
                            p.bucket_counts.len(),
                            p.explicit_bounds.len()
                        ),
                    ));
                }
                let mut cumulative = 0u64;
                let bounds = p.explicit_bounds.iter().map(|b| format!("{b}"));
                for (count, le) in p.bucket_counts.iter().zip(bounds.chain(["+Inf".into()])) {
                    cumulative = cumulative.saturating_add(*count);
                    let bucket = format!("{name}_bucket");
                    self.push(&c, bucket, Some(("le", le)), cumulative as f64);
                }
            }
            self.count_and_sum(&c, name, p.count, p.sum);
        }
        Ok(())
    }

    fn summaries(
        &mut self,
        name: &str,
        tags: &BTreeMap<String, String>,
        points: Vec<opentelemetry_proto::tonic::metrics::v1::SummaryDataPoint>,
    ) -> Result<(), Refused> {
        for (l, p) in points.into_iter().enumerate() {
            let c = Common::of(l, tags, p.time_unix_nano, &p.attributes, p.flags)?;
            for q in &p.quantile_values {
                let quantile = Some(("quantile", format!("{}", q.quantile)));
                self.push(&c, name.to_owned(), quantile, q.value);
            }
            self.count_and_sum(&c, name, p.count, Some(p.sum));
        }
        Ok(())
    }
}

/// A data point's time as Sluice's nanoseconds.
fn timestamp(unix_nano: u64) -> Result<i64, String> {
    if unix_nano == 0 {
        return Err("the data point has no time (time_unix_nano is 0)".to_owned());
    }
    i64::try_from(unix_nano).map_err(|_| {
        format!(
            "time_unix_nano {unix_nano} is past 2262, the last time nanoseconds in an i64 can hold"
        )
    })
}

fn add_scope(tags: &mut BTreeMap<String, String>, scope: &InstrumentationScope) {
    for (key, value) in [
        ("otel_scope_name", &scope.name),
        ("otel_scope_version", &scope.version),
    ] {
        if !value.is_empty() {
            tags.insert(key.to_owned(), value.clone());
        }
    }
    add_attributes(tags, &scope.attributes);
}

fn add_attributes(tags: &mut BTreeMap<String, String>, attributes: &[KeyValue]) {
    for kv in attributes {
        let key = label_name(&kv.key);
        match kv.value.as_ref().map(text_of).unwrap_or_default() {
            value if value.is_empty() || key.is_empty() => {
                tags.remove(&key);
            }
            value => {
                tags.insert(key, value);
            }
        }
    }
}

/// An attribute value as tag text: strings as they are, other scalars as their literal,
/// bytes as hex, arrays and maps in JSON-like brackets.
fn text_of(value: &AnyValue) -> String {
    use any_value::Value;
    match &value.value {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => hex::encode(b),
        // An index into a profile's string table: metrics have none, so it names nothing.
        Some(Value::StringValueStrindex(_)) => String::new(),
        Some(Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(text_of).collect();
            format!("[{}]", items.join(","))
        }
        Some(Value::KvlistValue(kv)) => {
            let items: Vec<String> = kv
                .values
                .iter()
                .map(|e| {
                    format!(
                        "{}={}",
                        e.key,
                        e.value.as_ref().map(text_of).unwrap_or_default()
                    )
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
    }
}

/// `name` with every character Prometheus doesn't allow in a metric name as `_`.
fn metric_name(name: &str) -> String {
    sanitize(name, |c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `key` with every character Prometheus doesn't allow in a label name as `_`.
fn label_name(key: &str) -> String {
    sanitize(key, |c| c.is_ascii_alphanumeric() || c == '_')
}

fn sanitize(s: &str, allowed: impl Fn(char) -> bool) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request with one resource (`service.name=api`), one scope and `metrics` (JSON).
    fn request(metrics: &str) -> Vec<u8> {
        format!(
            r#"{{"resourceMetrics":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"api"}}}},{{"key":"host","value":{{"stringValue":"h1"}}}}]}},
               "scopeMetrics":[{{"scope":{{"name":"meter","version":"1.2"}},"metrics":[{metrics}]}}]}}]}}"#
        )
        .into_bytes()
    }

    fn decoded(metrics: &str) -> Vec<Point> {
        decode(&request(metrics), Encoding::Json)
            .unwrap_or_else(|e| panic!("{e}"))
            .points
    }

    fn line(p: &Point) -> String {
        crate::lineproto::format_point(p)
    }

    #[test]
    fn gauges_and_sums_are_points_with_resource_scope_and_point_attributes_as_tags() {
        let points = decoded(
            r#"{"name":"process.cpu.time","sum":{"aggregationTemporality":2,"isMonotonic":true,
                "dataPoints":[{"attributes":[{"key":"state","value":{"stringValue":"user"}},{"key":"host","value":{"stringValue":"h2"}}],
                               "timeUnixNano":"1700000000000000000","asDouble":1.5},
                              {"timeUnixNano":"1700000001000000000","asInt":"7"}]}},
               {"name":"temp","gauge":{"dataPoints":[{"timeUnixNano":"5","asDouble":-3,"flags":1}]}}"#,
        );
        let lines: Vec<String> = points.iter().map(line).collect();
        assert_eq!(
            lines[..2],
            [
                "process_cpu_time,host=h2,otel_scope_name=meter,otel_scope_version=1.2,service_name=api,state=user value=1.5 1700000000000000000",
                "process_cpu_time,host=h1,otel_scope_name=meter,otel_scope_version=1.2,service_name=api value=7 1700000001000000000",
            ]
        );
        // No recorded value: the staleness marker.
        match points[2].fields[0].value {
            FieldValue::Float(v) => assert_eq!(v.to_bits(), STALE_NAN),
            ref other => panic!("{other:?}"),
        }
    }

    #[test]
    fn histograms_and_summaries_become_prometheus_series() {
        let points = decoded(
            r#"{"name":"http.duration","histogram":{"aggregationTemporality":2,"dataPoints":[
                 {"timeUnixNano":"9","count":"6","sum":2.5,"bucketCounts":["1","2","3"],"explicitBounds":[0.1,1]}]}},
               {"name":"rpc","summary":{"dataPoints":[
                 {"timeUnixNano":"9","count":"4","sum":8,"quantileValues":[{"quantile":0.5,"value":1},{"quantile":0.99,"value":3}]}]}}"#,
        );
        let lines: Vec<String> = points
            .iter()
            .map(|p| {
                let tags: Vec<String> = p
                    .tags
                    .iter()
                    .filter(|t| t.key == "le" || t.key == "quantile")
                    .map(|t| format!("{}={}", t.key, t.value))
                    .collect();
                format!(
                    "{}{{{}}} {}",
                    p.measurement,
                    tags.join(","),
                    match p.fields[0].value {
                        FieldValue::Float(v) => v,
                        _ => f64::NAN,
                    }
                )
            })
            .collect();
        assert_eq!(
            lines,
            [
                "http_duration_bucket{le=0.1} 1",
                "http_duration_bucket{le=1} 3",
                "http_duration_bucket{le=+Inf} 6",
                "http_duration_count{} 6",
                "http_duration_sum{} 2.5",
                "rpc{quantile=0.5} 1",
                "rpc{quantile=0.99} 3",
                "rpc_count{} 4",
                "rpc_sum{} 8",
            ]
        );
    }

    #[test]
    fn bad_metrics_are_refused_naming_the_metric_and_data_point() {
        let err = |metrics: &str| {
            decode(&request(metrics), Encoding::Json)
                .expect_err("refused")
                .to_string()
        };
        let e = err(r#"{"name":"x","exponentialHistogram":{"dataPoints":[]}}"#);
        assert!(
            e.contains("resourceMetrics[0].scopeMetrics[0].metrics[0] `x`: exponential histograms"),
            "{e}"
        );
        let e = err(
            r#"{"name":"ok","gauge":{"dataPoints":[]}},{"name":"y","gauge":{"dataPoints":[{"timeUnixNano":"1","asDouble":1},{"asDouble":1}]}}"#,
        );
        assert!(
            e.contains("metrics[1] `y`: dataPoints[1]: the data point has no time"),
            "{e}"
        );
        let e = err(
            r#"{"name":"z","gauge":{"dataPoints":[{"timeUnixNano":"18446744073709551615","asDouble":1}]}}"#,
        );
        assert!(e.contains("past 2262"), "{e}");
        let e = err(
            r#"{"name":"h","histogram":{"dataPoints":[{"timeUnixNano":"1","count":"1","bucketCounts":["1"],"explicitBounds":[1]}]}}"#,
        );
        assert!(e.contains("1 bucket counts for 1 explicit bounds"), "{e}");
        let e = err(r#"{"name":"n"}"#);
        assert!(e.contains("`n`: the metric has no data"), "{e}");
        let e = decode(b"{\"resourceMetrics\": 3}", Encoding::Json)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("line 1 column"), "{e}");
    }

    #[test]
    fn protobuf_bodies_decode_like_json_ones() {
        let json =
            request(r#"{"name":"up","gauge":{"dataPoints":[{"timeUnixNano":"3","asInt":"1"}]}}"#);
        let message: ExportMetricsServiceRequest = serde_json::from_slice(&json).expect("json");
        let protobuf = prost::Message::encode_to_vec(&message);
        let (a, b) = (
            decode(&json, Encoding::Json).expect("json").points,
            decode(&protobuf, Encoding::Protobuf)
                .expect("protobuf")
                .points,
        );
        assert_eq!(a, b);
        assert_eq!(a.len(), 1);
        let e = decode(b"\xff\xff", Encoding::Protobuf)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("not an OTLP ExportMetricsServiceRequest"), "{e}");
    }

    #[test]
    fn names_get_prometheus_characters() {
        assert_eq!(metric_name("http.server.duration"), "http_server_duration");
        assert_eq!(metric_name("a:b-c"), "a:b_c");
        assert_eq!(label_name("k8s.pod:name"), "k8s_pod_name");
        assert_eq!(label_name("9lives"), "_9lives");
    }
}
