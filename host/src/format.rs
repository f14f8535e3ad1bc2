//! Sluice's own formats on disk, versioned and independent of the WIT contract: the WIT
//! types are what plugins see, and an edit of `wit/` must never change stored bytes. Data
//! of a version this release doesn't know is refused with an error that says so.
//!
//! Log records and chunks start with a two-byte header, `S` and the format version. Log
//! records then hold postcard (a specified, varint-based serde format) over the shapes
//! below, written out by hand: the order of fields and of value variants *is* the format.
//! Chunks hold columns compressed by value type (format 2; `store/chunk.rs` describes it),
//! or postcard over the shapes below (format 1, still read). Rollup rows, late data
//! and partition checkpoints have headers of their own. Alerts are JSON (few, and read by
//! operators) with the version in `v`.

use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

use crate::aggregate::{Function, Values};
use crate::point::{Alert, AlertState, Field, FieldValue, Nanos, Point, Series, Tag};
use crate::store::{LateRecord, SeriesKey};
use crate::tenant::TenantId;
use crate::transport::Record;

/// First byte of every encoding.
const MAGIC: u8 = b'S';

/// The version of the log-record format this release writes.
pub const RECORD_VERSION: u8 = 1;

/// The version of the chunk format this release writes: 2 compresses each value type's
/// column (delta-of-delta times, pco of numbers, runs of booleans, dictionary strings); 1,
/// postcard of tagged values, is still read.
pub const CHUNK_VERSION: u8 = 2;

/// Bytes that are not data this release can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// No `S` header: not Sluice data, or torn.
    #[error("{what} has no format header; retrying can't help")]
    NoHeader {
        /// What was read (`log record`, `chunk`).
        what: &'static str,
    },
    /// A version this release doesn't know.
    #[error(
        "{what} is in format version {found}, unknown to this release (it reads version {known}): written by a newer Sluice? Retrying can't help"
    )]
    UnknownVersion {
        /// What was read.
        what: &'static str,
        /// The version found.
        found: u8,
        /// The version this release reads.
        known: u8,
    },
    /// The header is right, the body isn't.
    #[error("{what} does not decode: {message}; retrying can't help")]
    Decode {
        /// What was read.
        what: &'static str,
        /// The decoder's message.
        message: String,
    },
}

/// `bytes` past a header of `version`.
pub fn body<'a>(what: &'static str, bytes: &'a [u8], version: u8) -> Result<&'a [u8], FormatError> {
    match bytes {
        [MAGIC, found, rest @ ..] if *found == version => Ok(rest),
        [MAGIC, found, ..] => Err(FormatError::UnknownVersion {
            what,
            found: *found,
            known: version,
        }),
        _ => Err(FormatError::NoHeader { what }),
    }
}

/// A new encoding: the header of `version`.
pub fn header(version: u8) -> Vec<u8> {
    vec![MAGIC, version]
}

/// A stored field value. Append variants only: their order is the format.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub enum Value {
    /// 64-bit float.
    Float(f64),
    /// Signed integer.
    Integer(i64),
    /// Unsigned integer.
    Unsigned(u64),
    /// Boolean.
    Boolean(bool),
    /// String.
    String(String),
}

impl From<Value> for FieldValue {
    fn from(v: Value) -> Self {
        match v {
            Value::Float(f) => FieldValue::Float(f),
            Value::Integer(i) => FieldValue::Integer(i),
            Value::Unsigned(u) => FieldValue::Unsigned(u),
            Value::Boolean(b) => FieldValue::Boolean(b),
            Value::String(s) => FieldValue::String(s),
        }
    }
}

/// Writes a field value as a [`Value`], without copying it.
pub struct ValueOut<'a>(pub &'a FieldValue);

impl Serialize for ValueOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            FieldValue::Float(f) => s.serialize_newtype_variant("Value", 0, "Float", f),
            FieldValue::Integer(i) => s.serialize_newtype_variant("Value", 1, "Integer", i),
            FieldValue::Unsigned(u) => s.serialize_newtype_variant("Value", 2, "Unsigned", u),
            FieldValue::Boolean(b) => s.serialize_newtype_variant("Value", 3, "Boolean", b),
            FieldValue::String(v) => s.serialize_newtype_variant("Value", 4, "String", v),
        }
    }
}

/// A point as stored: measurement, tags, fields, timestamp.
struct PointOut<'a>(&'a Point);

impl Serialize for PointOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut t = s.serialize_tuple(4)?;
        t.serialize_element(&p.measurement)?;
        t.serialize_element(&Seq(&p.tags, tag_pair))?;
        t.serialize_element(&Seq(&p.fields, field_pair))?;
        t.serialize_element(&p.timestamp)?;
        t.end()
    }
}

fn tag_pair(t: &Tag) -> (&str, &str) {
    (&t.key, &t.value)
}

fn field_pair(f: &Field) -> (&str, ValueOut<'_>) {
    (&f.key, ValueOut(&f.value))
}

/// A slice written as a sequence of `item` of each element.
struct Seq<'a, T, F>(&'a [T], F);

impl<'a, T, F, I> Serialize for Seq<'a, T, F>
where
    F: Fn(&'a T) -> I,
    I: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(&self.1))
    }
}

#[derive(Deserialize)]
struct PointIn(String, Vec<(String, String)>, Vec<(String, Value)>, i64);

impl From<PointIn> for Point {
    fn from(PointIn(measurement, tags, fields, timestamp): PointIn) -> Self {
        Point {
            measurement,
            tags: tags
                .into_iter()
                .map(|(key, value)| Tag { key, value })
                .collect(),
            fields: fields
                .into_iter()
                .map(|(key, value)| Field {
                    key,
                    value: value.into(),
                })
                .collect(),
            timestamp,
        }
    }
}

/// Encodes a log record: header, then tenant and points.
pub fn encode_record(record: &Record) -> Vec<u8> {
    let body = (record.tenant.as_str(), Seq(&record.points, PointOut));
    // Serializing into a Vec can't fail for these shapes (no maps, no non-string keys).
    postcard::to_extend(&body, header(RECORD_VERSION)).unwrap_or_default()
}

/// Decodes [`encode_record`].
///
/// # Errors
/// Another version, no header, or bytes that don't decode.
pub fn decode_record(bytes: &[u8]) -> Result<Record, FormatError> {
    const WHAT: &str = "log record";
    let body = body(WHAT, bytes, RECORD_VERSION)?;
    let (tenant, points): (String, Vec<PointIn>) =
        postcard::from_bytes(body).map_err(|e| FormatError::Decode {
            what: WHAT,
            message: e.to_string(),
        })?;
    Ok(Record {
        tenant: TenantId::new(&tenant),
        points: points.into_iter().map(Point::from).collect(),
    })
}

/// The version of the stored alert format this release writes.
pub const ALERT_VERSION: u8 = 1;

/// An alert as stored: JSON (alerts are few, and an operator may read them), with the
/// format version in `v`. Alerts of the release before carried no `v`: the same shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredAlert {
    #[serde(default = "first_alert_version")]
    v: u8,
    rule: String,
    series: StoredSeries,
    field: String,
    state: StoredState,
    window_start: i64,
    window_end: i64,
    value: f64,
    message: String,
}

const fn first_alert_version() -> u8 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredSeries {
    measurement: String,
    tags: Vec<StoredTag>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredTag {
    key: String,
    value: String,
}

/// Alert states by name, as they were stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum StoredState {
    Ok,
    Warning,
    Critical,
}

/// Encodes an alert.
pub fn encode_alert(alert: &Alert) -> Vec<u8> {
    let stored = StoredAlert {
        v: ALERT_VERSION,
        rule: alert.rule.clone(),
        series: StoredSeries {
            measurement: alert.series.measurement.clone(),
            tags: alert
                .series
                .tags
                .iter()
                .map(|t| StoredTag {
                    key: t.key.clone(),
                    value: t.value.clone(),
                })
                .collect(),
        },
        field: alert.field.clone(),
        state: match alert.state {
            AlertState::Ok => StoredState::Ok,
            AlertState::Warning => StoredState::Warning,
            AlertState::Critical => StoredState::Critical,
        },
        window_start: alert.window_start,
        window_end: alert.window_end,
        value: alert.value,
        message: alert.message.clone(),
    };
    // Serializing these plain types into a Vec can't fail.
    serde_json::to_vec(&stored).unwrap_or_default()
}

/// Decodes [`encode_alert`] (and alerts of the release before, which had no `v`).
///
/// # Errors
/// Another version, or bytes that are not a stored alert.
pub fn decode_alert(bytes: &[u8]) -> Result<Alert, FormatError> {
    const WHAT: &str = "alert";
    let stored: StoredAlert = serde_json::from_slice(bytes).map_err(|e| FormatError::Decode {
        what: WHAT,
        message: e.to_string(),
    })?;
    if stored.v != ALERT_VERSION {
        return Err(FormatError::UnknownVersion {
            what: WHAT,
            found: stored.v,
            known: ALERT_VERSION,
        });
    }
    Ok(Alert {
        rule: stored.rule,
        series: Series {
            measurement: stored.series.measurement,
            tags: stored
                .series
                .tags
                .into_iter()
                .map(|t| Tag {
                    key: t.key,
                    value: t.value,
                })
                .collect(),
        },
        field: stored.field,
        state: match stored.state {
            StoredState::Ok => AlertState::Ok,
            StoredState::Warning => AlertState::Warning,
            StoredState::Critical => AlertState::Critical,
        },
        window_start: stored.window_start,
        window_end: stored.window_end,
        value: stored.value,
        message: stored.message,
    })
}

/// The version of the stored rollup-row format this release writes.
pub const ROLLUP_VERSION: u8 = 1;

/// Decodes postcard `body` as `T`, naming `what` on failure.
fn decode_body<'a, T: Deserialize<'a>>(
    what: &'static str,
    body: &'a [u8],
) -> Result<T, FormatError> {
    postcard::from_bytes(body).map_err(|e| FormatError::Decode {
        what,
        message: e.to_string(),
    })
}

/// Encodes a rollup row's end and values: header, then the end and (aggregate name, value)
/// pairs. Names, not codes: `p99.9` needs no table, and a name never changes meaning.
pub fn encode_rollup(end: Nanos, values: &[(Function, f64)]) -> Vec<u8> {
    let named: Vec<(String, f64)> = values.iter().map(|(f, v)| (f.to_string(), *v)).collect();
    postcard::to_extend(&(end, named), header(ROLLUP_VERSION)).unwrap_or_default()
}

/// Decodes [`encode_rollup`]: the end and the values.
///
/// # Errors
/// Another version, no header, bytes that don't decode, or an unknown aggregate name.
pub fn decode_rollup(bytes: &[u8]) -> Result<(Nanos, Values), FormatError> {
    const WHAT: &str = "rollup row";
    let (end, named): (Nanos, Vec<(String, f64)>) =
        decode_body(WHAT, body(WHAT, bytes, ROLLUP_VERSION)?)?;
    let values = named
        .into_iter()
        .map(|(name, v)| {
            let f = name.parse().map_err(|message| FormatError::Decode {
                what: WHAT,
                message,
            })?;
            Ok((f, v))
        })
        .collect::<Result<_, FormatError>>()?;
    Ok((end, values))
}

/// The version of the stored late-data format this release writes.
pub const LATE_VERSION: u8 = 1;

/// Encodes a late record: header, then rule, measurement, field, tags, time and value.
pub fn encode_late(record: &LateRecord) -> Vec<u8> {
    let s = &record.series;
    let body = (
        record.rule.as_str(),
        s.measurement.as_str(),
        s.field.as_str(),
        &s.tags,
        record.timestamp,
        record.value,
    );
    postcard::to_extend(&body, header(LATE_VERSION)).unwrap_or_default()
}

/// A late record as JSON with its tenant, for consumers outside Sluice (Kafka's late
/// topic), with the format version in `v`.
pub fn late_json(tenant: &TenantId, record: &LateRecord) -> Vec<u8> {
    let s = &record.series;
    let json = serde_json::json!({
        "v": LATE_VERSION,
        "tenant": tenant.as_str(),
        "rule": record.rule,
        "measurement": s.measurement,
        "field": s.field,
        "tags": s.tags.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "timestamp": record.timestamp,
        "value": record.value,
    });
    json.to_string().into_bytes()
}

/// Decodes [`encode_late`].
///
/// # Errors
/// Another version, no header, or bytes that don't decode.
pub fn decode_late(bytes: &[u8]) -> Result<LateRecord, FormatError> {
    const WHAT: &str = "late record";
    let (rule, measurement, field, tags, timestamp, value): (
        String,
        String,
        String,
        Vec<(String, String)>,
        Nanos,
        f64,
    ) = decode_body(WHAT, body(WHAT, bytes, LATE_VERSION)?)?;
    Ok(LateRecord {
        rule,
        series: SeriesKey {
            measurement,
            field,
            tags,
        },
        timestamp,
        value,
    })
}

/// The version of the partition checkpoint format this release writes: 2 gives each
/// tenant's part the offset it reflects (tenants' lanes move on their own); 1, written
/// before lanes, has one offset for the whole, beside it.
pub const CHECKPOINT_VERSION: u8 = 2;

/// What a partition checkpoint holds, per tenant: each part an opaque blob of the module
/// that owns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The tenants with state on the partition.
    pub tenants: Vec<TenantCheckpoint>,
}

/// One tenant's state on a partition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantCheckpoint {
    /// The tenant.
    pub tenant: String,
    /// Its windows' state (empty without windows).
    pub windows: Vec<u8>,
    /// Its alert states.
    pub alerts: Vec<u8>,
    /// Each stage's plugin state, by stage name.
    pub stages: Vec<(String, Vec<u8>)>,
    /// The first of the tenant's records on the partition this part does not reflect.
    pub next: u64,
}

/// A tenant's part as version 1 wrote it: no offset of its own.
#[derive(Deserialize)]
struct TenantCheckpointV1 {
    tenant: String,
    windows: Vec<u8>,
    alerts: Vec<u8>,
    stages: Vec<(String, Vec<u8>)>,
}

impl Checkpoint {
    /// The entry of `tenant`, added when absent.
    pub fn tenant_mut(&mut self, tenant: &str) -> &mut TenantCheckpoint {
        let at = match self.tenants.iter().position(|t| t.tenant == tenant) {
            Some(at) => at,
            None => {
                self.tenants.push(TenantCheckpoint {
                    tenant: tenant.to_owned(),
                    ..TenantCheckpoint::default()
                });
                self.tenants.len() - 1
            }
        };
        &mut self.tenants[at]
    }
}

/// Encodes a partition checkpoint.
pub fn encode_checkpoint(checkpoint: &Checkpoint) -> Vec<u8> {
    postcard::to_extend(checkpoint, header(CHECKPOINT_VERSION)).unwrap_or_default()
}

/// Decodes [`encode_checkpoint`]; a checkpoint of version 1 reflects every tenant's records
/// before `next`.
///
/// # Errors
/// Another version, no header, or bytes that don't decode.
pub fn decode_checkpoint(bytes: &[u8], next: u64) -> Result<Checkpoint, FormatError> {
    const WHAT: &str = "partition checkpoint";
    if let Ok(v1) = body(WHAT, bytes, 1) {
        let tenants: Vec<TenantCheckpointV1> = decode_body(WHAT, v1)?;
        let tenants = tenants
            .into_iter()
            .map(|t| TenantCheckpoint {
                tenant: t.tenant,
                windows: t.windows,
                alerts: t.alerts,
                stages: t.stages,
                next,
            })
            .collect();
        return Ok(Checkpoint { tenants });
    }
    decode_body(WHAT, body(WHAT, bytes, CHECKPOINT_VERSION)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::{Precision, parse};

    #[test]
    fn records_round_trip_and_their_bytes_are_pinned() {
        let record = Record {
            tenant: TenantId::new("acme"),
            points: parse(
                "m,h=a v=1.5,i=-3i,u=7u,b=true,s=\"é\" -9223372036854775808",
                Precision::Nanoseconds,
                0,
            )
            .0,
        };
        let bytes = encode_record(&record);
        assert_eq!(decode_record(&bytes), Ok(record));
        // The format, byte for byte: an edit of wit/ or of the types can't change it.
        let small = Record {
            tenant: TenantId::new("t"),
            points: parse("m,k=v x=2u,y=true 5", Precision::Nanoseconds, 0).0,
        };
        assert_eq!(
            encode_record(&small),
            [
                b'S', 1, 1, b't', 1, 1, b'm', 1, 1, b'k', 1, b'v', 2, 1, b'x', 2, 2, 1, b'y', 3, 1,
                10
            ]
        );
    }

    #[test]
    fn unknown_versions_and_foreign_bytes_are_refused_clearly() {
        let mut bytes = encode_record(&Record {
            tenant: TenantId::new("t"),
            points: Vec::new(),
        });
        bytes[1] = 9;
        let err = decode_record(&bytes).expect_err("version 9");
        assert_eq!(
            err.to_string(),
            "log record is in format version 9, unknown to this release (it reads version 1): written by a newer Sluice? Retrying can't help"
        );
        assert!(matches!(
            decode_record(b"\x01\x02"),
            Err(FormatError::NoHeader { .. })
        ));
        assert!(matches!(
            decode_record(b"S\x01\xff"),
            Err(FormatError::Decode { .. })
        ));
    }

    #[test]
    fn checkpoints_keep_each_tenants_offset_and_those_before_lanes_still_read() {
        let part = |tenant: &str, next| TenantCheckpoint {
            tenant: tenant.into(),
            windows: vec![1, 2],
            alerts: vec![3],
            stages: vec![("s".into(), vec![4])],
            next,
        };
        let checkpoint = Checkpoint {
            tenants: vec![part("a", 7), part("b", 90)],
        };
        let bytes = encode_checkpoint(&checkpoint);
        assert_eq!(bytes[..2], [b'S', 2]);
        assert_eq!(decode_checkpoint(&bytes, 0), Ok(checkpoint));
        // Version 1: the same parts without offsets; each takes the partition state's.
        /// A tenant's part as version 1 wrote it: tenant, windows, alerts, stages.
        type PartV1<'a> = (&'a str, Vec<u8>, Vec<u8>, Vec<(&'a str, Vec<u8>)>);
        let v1: Vec<PartV1<'_>> = vec![("a", vec![1, 2], vec![3], vec![("s", vec![4])])];
        let bytes = postcard::to_extend(&v1, header(1)).expect("v1");
        assert_eq!(
            decode_checkpoint(&bytes, 42),
            Ok(Checkpoint {
                tenants: vec![part("a", 42)]
            })
        );
    }

    #[test]
    fn alerts_round_trip_and_alerts_of_the_release_before_read() {
        let alert = Alert {
            rule: "hot".into(),
            series: Series {
                measurement: "cpu".into(),
                tags: vec![Tag {
                    key: "host".into(),
                    value: "a".into(),
                }],
            },
            field: "usage".into(),
            state: AlertState::Critical,
            window_start: i64::MIN,
            window_end: 10,
            value: 96.5,
            message: "usage 96.5 > 90".into(),
        };
        let bytes = encode_alert(&alert);
        assert_eq!(decode_alert(&bytes), Ok(alert.clone()));
        // What the release before stored: the WIT type's JSON, no `v`.
        let legacy = br#"{"rule":"hot","series":{"measurement":"cpu","tags":[{"key":"host","value":"a"}]},"field":"usage","state":"Critical","window_start":-9223372036854775808,"window_end":10,"value":96.5,"message":"usage 96.5 > 90"}"#;
        assert_eq!(decode_alert(legacy), Ok(alert));
        let newer = String::from_utf8(bytes)
            .expect("json")
            .replace("\"v\":1", "\"v\":2");
        assert!(matches!(
            decode_alert(newer.as_bytes()),
            Err(FormatError::UnknownVersion { found: 2, .. })
        ));
    }
}
