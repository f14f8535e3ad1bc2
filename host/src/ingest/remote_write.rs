//! Prometheus remote write 1.0 (`POST /api/v1/write`): a snappy block-compressed protobuf
//! `WriteRequest`, as Prometheus, vmagent and the Grafana Agent send it.
//!
//! How Prometheus' data model maps onto Sluice's (the README's "Prometheus" section; the
//! Prometheus query API reverses it):
//! - the metric name (label `__name__`) is the measurement;
//! - every other label is a tag; a label with an empty value is no label, as in Prometheus;
//! - each sample is one point with the float field `value`, at its millisecond timestamp.
//!
//! So `http_requests_total{job="api"} 7 @1700000000000` is the line
//! `http_requests_total,job=api value=7 1700000000000000000`. NaN and ±Inf are kept, bit
//! for bit (Prometheus' staleness marker is a NaN). A request with metadata only (Prometheus
//! sends one first) is accepted and writes nothing; exemplars are dropped. Native histograms
//! are refused by name: remote write 1.0 carries classic ones as `_bucket` series.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};

use super::{Decoded, IngestState};
use crate::api::{ApiError, authenticate};
use crate::point::{Field, FieldValue, Name, Point, Samples, Tag};

/// The label that holds the metric name.
pub const NAME_LABEL: &str = "__name__";

/// The field a sample's value is stored in.
pub const VALUE_FIELD: &str = "value";

/// The bits of Prometheus' staleness marker, the NaN a series that stopped gets.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// The messages of `prometheus/prompb/{remote,types}.proto` that remote write 1.0 sends,
/// as far as Sluice reads them; prost skips the rest (exemplars, metadata). Public for
/// the tests and benchmarks that play the sender.
pub mod prompb {
    /// `prometheus.WriteRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        /// Series with their samples.
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }

    /// `prometheus.TimeSeries`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        /// Labels, the name among them.
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        /// Float samples.
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        /// Native histogram samples: only counted, to refuse them by name.
        #[prost(message, repeated, tag = "4")]
        pub histograms: Vec<Histogram>,
    }

    /// `prometheus.Label`. Its strings are read as bytes (the same on the wire), so that
    /// each is a slice of the request's bytes instead of a `String` of its own, and checked
    /// to be UTF-8 where they become names: allocating and freeing every label's two
    /// strings was a third of decoding a request (perf, the Prometheus bench).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        /// Label name.
        #[prost(bytes = "bytes", tag = "1")]
        pub name: prost::bytes::Bytes,
        /// Label value.
        #[prost(bytes = "bytes", tag = "2")]
        pub value: prost::bytes::Bytes,
    }

    /// `prometheus.Sample`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        /// The value.
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Milliseconds since the Unix epoch.
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }

    /// `prometheus.Histogram`, none of whose fields Sluice reads.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {}

    impl TimeSeries {
        /// A series of `(name, value)` labels and `(value, milliseconds)` samples.
        pub fn new(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> Self {
            Self {
                labels: labels
                    .iter()
                    .map(|(name, value)| Label {
                        name: prost::bytes::Bytes::copy_from_slice(name.as_bytes()),
                        value: prost::bytes::Bytes::copy_from_slice(value.as_bytes()),
                    })
                    .collect(),
                samples: samples
                    .iter()
                    .map(|&(value, timestamp)| Sample { value, timestamp })
                    .collect(),
                histograms: Vec::new(),
            }
        }
    }
}

/// `POST /api/v1/write`.
pub async fn write(
    State(state): State<Arc<IngestState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let tenant =
        authenticate(state.tenants.as_ref(), &headers, None).map_err(|e| state.reject(e))?;
    let limit = state.max_body_bytes;
    let raw = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| state.reject(ApiError::TooLarge { limit }))?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok());
    if !encoding.is_some_and(|e| e.eq_ignore_ascii_case("snappy")) {
        return Err(state.reject(ApiError::invalid(format!(
            "Content-Encoding is {}: remote write 1.0 bodies are snappy-compressed protobuf (`Content-Encoding: snappy`)",
            encoding.map_or_else(|| "missing".to_owned(), |e| format!("`{e}`"))
        ))));
    }
    let bytes = decompress(&raw, limit).map_err(|e| state.reject(e))?;
    state
        .accept(tenant, bytes.len(), move || decode(bytes))
        .await
}

/// The snappy block of `raw`, refused before any allocation when it says it is over
/// `limit` bytes.
fn decompress(raw: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let not_snappy = |e: snap::Error| {
        ApiError::invalid(format!(
            "body is not snappy block-compressed (remote write 1.0 uses the block format, not the framed one): {e}"
        ))
    };
    let len = snap::raw::decompress_len(raw).map_err(not_snappy)?;
    if len > limit {
        return Err(ApiError::TooLarge { limit });
    }
    snap::raw::Decoder::new()
        .decompress_vec(raw)
        .map_err(not_snappy)
}

/// The samples of a serialized `WriteRequest`, all or none: a point of each series with
/// samples (at its first sample), and the samples.
fn decode(bytes: Vec<u8>) -> Result<Decoded, ApiError> {
    let request: prompb::WriteRequest = prost::Message::decode(prost::bytes::Bytes::from(bytes))
        .map_err(|e| ApiError::invalid(format!("body is not a remote-write WriteRequest: {e}")))?;
    let n = request.timeseries.iter().map(|s| s.samples.len()).sum();
    let mut series = Vec::with_capacity(request.timeseries.len());
    let mut samples = Samples::with_capacity(n);
    // Where each series is in the request.
    let mut at = Vec::with_capacity(series.capacity());
    for (i, s) in request.timeseries.into_iter().enumerate() {
        let refuse = |why: String| ApiError::invalid(format!("timeseries[{i}]: {why}"));
        if !s.histograms.is_empty() {
            return Err(refuse(format!(
                "{} native histogram samples: Sluice stores classic histograms only (their `_bucket`, `_sum` and `_count` series)",
                s.histograms.len()
            )));
        }
        let (measurement, tags) = name_and_tags(&s.labels).map_err(refuse)?;
        if s.samples.is_empty() {
            continue;
        }
        samples.start_series();
        for (j, sample) in s.samples.iter().enumerate() {
            let timestamp = sample.timestamp.checked_mul(1_000_000).ok_or_else(|| {
                ApiError::invalid(format!(
                    "timeseries[{i}] `{measurement}` samples[{j}]: timestamp {} ms is outside what nanoseconds since 1970 can hold (years 1678 to 2262)",
                    sample.timestamp
                ))
            })?;
            samples.push(timestamp, sample.value);
        }
        let first = samples.of(series.len()).first().copied();
        at.push((i, 0));
        series.push(Point {
            measurement,
            tags,
            fields: vec![Field {
                key: VALUE_FIELD.into(),
                value: FieldValue::Float(first.map_or(0.0, |(_, v)| v)),
            }],
            timestamp: first.map_or(0, |(t, _)| t),
        });
    }
    Ok(Decoded::samples(series, at, samples))
}

/// The points of `bytes` read as a serialized `WriteRequest`, and as a snappy-compressed
/// one: the fuzz target's view of both decoders.
#[cfg(test)]
pub(crate) fn fuzz_points(bytes: &[u8]) -> [Option<Vec<Point>>; 2] {
    let plain = decode(bytes.to_vec()).ok().map(|d| d.made());
    let packed = decompress(bytes, 1 << 20)
        .and_then(decode)
        .ok()
        .map(|d| d.made());
    [plain, packed]
}

/// The metric name and the other labels as tags, sorted; labels with empty values dropped.
fn name_and_tags(labels: &[prompb::Label]) -> Result<(Name, Vec<Tag>), String> {
    let mut name = None;
    let mut tags = Vec::with_capacity(labels.len().saturating_sub(1));
    for (l, label) in labels.iter().enumerate() {
        let utf8 = |bytes, what| {
            std::str::from_utf8(bytes)
                .map_err(|e| format!("labels[{l}]: the {what} is not UTF-8 ({e})"))
        };
        let (key, value) = (utf8(&label.name, "name")?, utf8(&label.value, "value")?);
        if key.is_empty() {
            return Err("a label has an empty name".to_owned());
        }
        if value.is_empty() {
            continue;
        }
        if key == NAME_LABEL {
            if name.replace(value).is_some() {
                return Err(format!("label `{NAME_LABEL}` appears twice"));
            }
        } else {
            tags.push(Tag {
                key: key.into(),
                value: value.into(),
            });
        }
    }
    let name = name.ok_or_else(|| format!("no metric name (label `{NAME_LABEL}`)"))?;
    tags.sort_by(|a, b| a.key.cmp(&b.key));
    Ok((name.into(), tags))
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::prompb::{Histogram, TimeSeries, WriteRequest};
    use super::*;
    use crate::ingest::Origin;

    fn encoded(timeseries: Vec<TimeSeries>) -> Vec<u8> {
        WriteRequest { timeseries }.encode_to_vec()
    }

    fn error_of(bytes: &[u8]) -> String {
        decode(bytes.to_vec()).expect_err("refused").to_string()
    }

    #[test]
    fn samples_become_points_named_by_the_metric_with_labels_as_tags() {
        let stale = f64::from_bits(STALE_NAN);
        let bytes = encoded(vec![
            TimeSeries::new(
                &[("__name__", "up"), ("job", "api"), ("instance", "a:9090")],
                &[(1.0, 1_700_000_000_000), (stale, 1_700_000_015_000)],
            ),
            TimeSeries::new(&[("zone", ""), ("__name__", "temp")], &[(f64::INFINITY, 5)]),
        ]);
        let decoded = decode(bytes).expect("decoded");
        let points = &decoded.made();
        assert_eq!(points.len(), 3);
        assert_eq!(points[0].measurement, "up");
        let tags: Vec<_> = points[0]
            .tags
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str()))
            .collect();
        assert_eq!(tags, [("instance", "a:9090"), ("job", "api")]);
        assert_eq!(points[0].timestamp, 1_700_000_000_000_000_000);
        assert_eq!(points[0].fields[0].key, "value");
        match points[1].fields[0].value {
            FieldValue::Float(v) => assert_eq!(v.to_bits(), stale.to_bits()),
            ref other => panic!("{other:?}"),
        }
        // An empty label value is no label.
        assert!(points[2].tags.is_empty());
        assert_eq!(points[2].fields[0].value, FieldValue::Float(f64::INFINITY));
    }

    #[test]
    fn each_series_is_one_point_of_its_keys_and_its_samples_follow() {
        let a = [("__name__", "up"), ("job", "api")];
        let bytes = encoded(vec![
            TimeSeries::new(&a, &[(1.0, 1), (2.0, 2), (3.0, 3)]),
            // No samples: no series.
            TimeSeries::new(&[("__name__", "idle")], &[]),
            TimeSeries::new(&[("__name__", "up"), ("job", "db")], &[(4.0, 1), (5.0, 2)]),
            // The same series again: a series of its own, which is safe.
            TimeSeries::new(&a, &[(6.0, 4)]),
        ]);
        let decoded = decode(bytes).expect("decoded");
        let series: Vec<_> = decoded
            .points
            .iter()
            .map(|p| (p.tag("job"), p.timestamp, p.field("value").cloned()))
            .collect();
        let float = |v| Some(FieldValue::Float(v));
        assert_eq!(
            series,
            [
                (Some("api"), 1_000_000, float(1.0)),
                (Some("db"), 1_000_000, float(4.0)),
                (Some("api"), 4_000_000, float(6.0))
            ],
            "each series at its first sample"
        );
        assert_eq!(decoded.len(), 6);
        let made: Vec<_> = decoded
            .made()
            .iter()
            .map(|p| {
                (
                    p.tag("job").map(str::to_owned),
                    p.timestamp,
                    p.field("value").cloned(),
                )
            })
            .collect();
        let at = |job: &str, t: i64, v| (Some(job.to_owned()), t * 1_000_000, float(v));
        assert_eq!(
            made,
            [
                at("api", 1, 1.0),
                at("api", 2, 2.0),
                at("api", 3, 3.0),
                at("db", 1, 4.0),
                at("db", 2, 5.0),
                at("api", 4, 6.0)
            ]
        );
        // A refusal names the series by its place in the request.
        let Origin::Series { at, .. } = &decoded.origin else {
            panic!("series");
        };
        assert_eq!(at, &[(0, 0), (2, 0), (3, 0)]);
    }

    #[test]
    fn metadata_only_requests_write_nothing() {
        // Field 3 (metadata): type GAUGE, family name "up".
        let metadata = [0x1a, 0x06, 0x08, 0x02, 0x12, 0x02, b'u', b'p'];
        assert_eq!(decode(metadata.to_vec()).expect("decoded").len(), 0);
    }

    #[test]
    fn bad_series_are_refused_naming_the_series_and_sample() {
        let err = error_of(&encoded(vec![
            TimeSeries::new(&[("__name__", "up")], &[(1.0, 1)]),
            TimeSeries::new(&[("job", "api")], &[(1.0, 1)]),
        ]));
        assert!(err.contains("timeseries[1]: no metric name"), "{err}");
        let err = error_of(&encoded(vec![TimeSeries::new(
            &[("__name__", "up"), ("__name__", "down")],
            &[(1.0, 1)],
        )]));
        assert!(err.contains("`__name__` appears twice"), "{err}");
        let err = error_of(&encoded(vec![TimeSeries::new(
            &[("__name__", "up"), ("", "x")],
            &[(1.0, 1)],
        )]));
        assert!(err.contains("empty name"), "{err}");
        let mut latin1 = TimeSeries::new(&[("__name__", "up"), ("city", "x")], &[(1.0, 1)]);
        latin1.labels[1].value = prost::bytes::Bytes::from_static(b"K\xf6ln");
        let ok = TimeSeries::new(&[("__name__", "up")], &[(1.0, 1)]);
        let err = error_of(&encoded(vec![ok, latin1]));
        assert!(
            err.contains("timeseries[1]: labels[1]: the value is not UTF-8"),
            "{err}"
        );
        let err = error_of(&encoded(vec![TimeSeries::new(
            &[("__name__", "up")],
            &[(1.0, 1), (1.0, i64::MIN)],
        )]));
        assert!(
            err.contains("timeseries[0] `up` samples[1]: timestamp -9223372036854775808 ms"),
            "{err}"
        );
        let mut native = TimeSeries::new(&[("__name__", "lat")], &[]);
        native.histograms.push(Histogram {});
        let err = error_of(&encoded(vec![native]));
        assert!(err.contains("timeseries[0]: 1 native histogram"), "{err}");
        let err = error_of(b"\xff\xff\xff");
        assert!(err.contains("not a remote-write WriteRequest"), "{err}");
    }

    #[test]
    fn snappy_bodies_are_sized_before_they_are_inflated() {
        let body = encoded(vec![TimeSeries::new(&[("__name__", "up")], &[(1.0, 1)])]);
        let packed = snap::raw::Encoder::new()
            .compress_vec(&body)
            .expect("compress");
        assert_eq!(decompress(&packed, body.len()).expect("inflated"), body);
        assert!(matches!(
            decompress(&packed, body.len() - 1),
            Err(ApiError::TooLarge { .. })
        ));
        // A header claiming 2 GiB is refused without allocating it.
        let bomb = [0x80, 0x80, 0x80, 0x80, 0x08, 0x00];
        assert!(matches!(
            decompress(&bomb, 1 << 20),
            Err(ApiError::TooLarge { .. })
        ));
        let framed = [0xff, 0x06, 0x00, 0x00, b's', b'N', b'a', b'P', b'p', b'Y'];
        let err = decompress(&framed, 1 << 20)
            .expect_err("framed")
            .to_string();
        assert!(err.contains("not snappy block-compressed"), "{err}");
    }
}
