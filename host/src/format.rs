//! Sluice's own formats on disk, versioned and independent of the WIT contract: the WIT
//! types are what plugins see, and an edit of `wit/` must never change stored bytes. Every
//! encoding starts with a two-byte header, `S` and the format version; data of a version
//! this release doesn't know is refused with an error that says so.
//!
//! The body is postcard (a specified, varint-based serde format) over the shapes below,
//! written out by hand: the order of fields and of value variants *is* the format.

use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

use crate::point::{Field, FieldValue, Point, Tag};
use crate::tenant::TenantId;
use crate::transport::Record;

/// First byte of every encoding.
const MAGIC: u8 = b'S';

/// The version of the log-record format this release writes.
pub const RECORD_VERSION: u8 = 1;

/// The version of the chunk format this release writes.
pub const CHUNK_VERSION: u8 = 1;

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
}
