//! Sluice's own formats on disk, versioned and independent of the WIT contract: the WIT
//! types are what plugins see, and an edit of `wit/` must never change stored bytes. Data
//! of a version this release doesn't know is refused with an error that says so.
//!
//! Log records and chunks start with a two-byte header, `S` and the format version. Log
//! records then hold their points' [`Columns`] with each run of points of one shape written
//! once (format 3, [`encode_record`]); the columns as they are (format 2, still read); or
//! postcard's encoding (a specified, varint-based serde format) of their points (format 1,
//! still read): the order of fields and of value variants *is* the format.
//! Chunks hold columns compressed by value type (format 2; `store/chunk.rs` describes it),
//! or postcard over the shapes below (format 1, still read). Rollup rows, late data
//! and partition checkpoints have headers of their own. Alerts are JSON (few, and read by
//! operators) with the version in `v`.

use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use crate::aggregate::{Function, Values};
use crate::columns::{Columns, Points, Shape};
use crate::point::{Alert, AlertState, Field, FieldValue, Name, Nanos, Point, Series, Tag};
use crate::store::{LateRecord, SeriesKey};
use crate::tenant::TenantId;
use crate::transport::Record;
use crate::varint;

/// First byte of every encoding.
const MAGIC: u8 = b'S';

/// The version of the log-record format this release writes: 3 holds the points'
/// [`Columns`], the batch a plugin reads, each run of points of one shape written once.
pub const RECORD_VERSION: u8 = 3;

/// Most tag and field rows a record of format 3 lays out per byte of it: four times what a
/// stored point can need. A point of a run takes 16 bytes of the record at least (its time
/// and a value), and its tags fit its series key, at most 32 KiB
/// ([`crate::store::keys::MAX_SERIES_KEY_BYTES`]) at 2 bytes a tag or more: 16 Ki rows,
/// 1,024 a byte.
const MAX_ROWS_A_BYTE: usize = 4_096;

/// Log records of the release before: the points' [`Columns`] as they are, still read.
const RECORD_V2: u8 = 2;

/// Log records of the releases before that: postcard's encoding of the points, still read.
const RECORD_V1: u8 = 1;

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

/// Log records of format 3 are the record's tenant, then the [`Columns`] of its points
/// (the batch a plugin stage is handed, so points are encoded once, here, however many
/// plugins read them: `columns.rs` says why), with the rows that repeat from point to point
/// written once. In order:
/// - the tenant and then the text, each as a varint of its length and its bytes;
/// - the number of points, a varint;
/// - the points in runs of one [`Shape`]: the run's length, then its shape as varints (the
///   measurement's span; the tag count and each tag's four numbers; the field count and each
///   field's key span and then a byte of its type), until every point is in a run;
/// - every point's timestamp, 8 bytes little-endian, then every point's field values, 8
///   bytes each.
///
/// Decoding lays each point's rows after the last ones. The samples of a Prometheus
/// series come as runs of one shape: format 2 wrote each point's rows whole, 97 bytes a
/// point of the Prometheus bench, and the log's writes (the page-cache copy) were a fifth
/// of its remote-write ingest under perf; this writes about 20. The columns cost 23-24 ns a point
/// to make (`plugin_throughput`'s 1,000-point batches), the runs a comparison of rows.
///
/// Makes the record's columns if it has none, and keeps them.
pub fn encode_record(record: &mut Record) -> Vec<u8> {
    let n = record.points.len();
    let written = record
        .points
        .columns()
        .filter(|c| c.len() == n)
        .and_then(|c| encode_columns(record.tenant.as_str(), c));
    if let Some(bytes) = written {
        return bytes;
    }
    // Columns that lost rows can't be ours; made again from the points, they can't fail.
    // (Points in columns only have every row: see `Points::in_columns`.)
    let c = Columns::from_points(&record.points.to_made().unwrap_or_default());
    let bytes = encode_columns(record.tenant.as_str(), &c).unwrap_or_default();
    record.points.set_columns(c);
    bytes
}

/// Format 3 of `tenant`'s `columns`; `None` when a point's rows are not in them.
fn encode_columns(tenant: &str, c: &Columns) -> Option<Vec<u8>> {
    let n = c.len();
    let mut out = header(RECORD_VERSION);
    out.reserve(tenant.len() + c.text.len() + c.timestamps.len() + c.field_values.len() + 20);
    put_str(&mut out, tenant);
    varint::put(&mut out, c.text.len() as u64);
    out.extend_from_slice(&c.text);
    varint::put(&mut out, n as u64);
    let mut values = Vec::with_capacity(c.field_values.len());
    let mut i = 0;
    while i < n {
        let (shape, v) = c.shape(i)?;
        values.extend_from_slice(v);
        let mut run = 1;
        while let Some((_, v)) = (i + run < n)
            .then(|| c.shape(i + run))
            .flatten()
            .filter(|(s, _)| *s == shape)
        {
            values.extend_from_slice(v);
            run += 1;
        }
        put_run(&mut out, run, &shape);
        i += run;
    }
    out.extend_from_slice(c.timestamps.get(..n * 8)?);
    out.extend_from_slice(&values);
    Some(out)
}

/// A run of `run` points of `shape`, as format 3 writes it.
fn put_run(out: &mut Vec<u8>, run: usize, shape: &Shape<'_>) {
    let numbers = |out: &mut Vec<u8>, bytes: &[u8]| {
        for n in bytes.chunks_exact(4) {
            varint::put(out, u64::from(u32::from_le_bytes([n[0], n[1], n[2], n[3]])));
        }
    };
    varint::put(out, run as u64);
    for n in shape.measurement {
        varint::put(out, u64::from(n));
    }
    varint::put(out, (shape.tags.len() / 16) as u64);
    numbers(out, shape.tags);
    varint::put(out, shape.field_kinds.len() as u64);
    for (key, kind) in shape.field_keys.chunks_exact(8).zip(shape.field_kinds) {
        numbers(out, key);
        out.push(*kind);
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    varint::put(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// Format 2 of `tenant`'s `c`, as the release before wrote it: what tests and the fuzz
/// target still decode.
#[cfg(test)]
pub(crate) fn v2_record(tenant: &str, c: &Columns) -> Vec<u8> {
    let mut out = header(RECORD_V2);
    put_str(&mut out, tenant);
    let columns = [
        &c.text,
        &c.points,
        &c.timestamps,
        &c.tags,
        &c.field_keys,
        &c.field_kinds,
        &c.field_values,
    ];
    for column in columns {
        varint::put(&mut out, column.len() as u64);
        out.extend_from_slice(column);
    }
    out
}

/// Reads log records; errors say what was being read and where. Records of format 1 are
/// postcard's encoding of the tuple `(tenant, [(measurement, [(key, value)], [(key, Value)],
/// timestamp)])`: strings and counts as varints of their length, integers as (zigzag)
/// varints, floats as 8 bytes little-endian, a [`Value`] as its variant's index and then
/// its payload. They are read by hand: serde's path decoded into tuples of names and then
/// moved them into points, 308-316 ns a point against 249-253 ns by hand.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let taken = self
            .pos
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.pos..end))
            .ok_or_else(|| {
                format!(
                    "{what}: {n} bytes at byte {} run past the end ({} bytes)",
                    self.pos,
                    self.bytes.len()
                )
            })?;
        self.pos += n;
        Ok(taken)
    }

    fn varint(&mut self, what: &str) -> Result<u64, String> {
        let mut n = 0u64;
        for i in 0..10 {
            let b = self.take(1, what)?[0];
            // The tenth byte holds bit 63 only.
            if i == 9 && b > 1 {
                break;
            }
            n |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(format!(
            "{what}: the varint ending at byte {} overflows 64 bits",
            self.pos
        ))
    }

    /// A count of items of at least a byte each: never more than the bytes left, so a
    /// corrupt count can't ask for a huge allocation.
    fn count(&mut self, what: &str) -> Result<usize, String> {
        let n = self.varint(what)?;
        let left = self.bytes.len() - self.pos;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= left)
            .ok_or_else(|| format!("{what}: {n} items, with {left} bytes left"))
    }

    fn str(&mut self, what: &str) -> Result<&'a str, String> {
        let len = self.count(what)?;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes).map_err(|_| format!("{what}: not UTF-8"))
    }

    fn value(&mut self, what: &str) -> Result<FieldValue, String> {
        Ok(match self.varint(what)? {
            0 => {
                let bytes = self.take(8, what)?;
                FieldValue::Float(f64::from_le_bytes(bytes.try_into().unwrap_or([0; 8])))
            }
            1 => FieldValue::Integer(varint::unzigzag(self.varint(what)?)),
            2 => FieldValue::Unsigned(self.varint(what)?),
            3 => match self.take(1, what)?[0] {
                0 => FieldValue::Boolean(false),
                1 => FieldValue::Boolean(true),
                b => return Err(format!("{what}: boolean byte {b}, not 0 or 1")),
            },
            4 => FieldValue::String(self.str(what)?.to_owned()),
            kind => return Err(format!("{what}: value type {kind}, not 0-4")),
        })
    }

    fn point(&mut self) -> Result<Point, String> {
        let measurement = self.str("measurement")?.into();
        let n = self.count("tag count")?;
        let mut tags = Vec::with_capacity(n);
        for _ in 0..n {
            tags.push(Tag {
                key: self.str("tag key")?.into(),
                value: self.str("tag value")?.into(),
            });
        }
        let n = self.count("field count")?;
        let mut fields = Vec::with_capacity(n);
        for _ in 0..n {
            fields.push(Field {
                key: self.str("field key")?.into(),
                value: self.value("field value")?,
            });
        }
        let timestamp = varint::unzigzag(self.varint("timestamp")?);
        Ok(Point {
            measurement,
            tags,
            fields,
            timestamp,
        })
    }
}

/// Decodes [`encode_record`], and records of formats 1 and 2.
///
/// # Errors
/// Another version, no header, or bytes that don't decode.
pub fn decode_record(bytes: &[u8]) -> Result<Record, FormatError> {
    const WHAT: &str = "log record";
    let error = |message| FormatError::Decode {
        what: WHAT,
        message,
    };
    let version = match bytes {
        [MAGIC, v @ (RECORD_V1 | RECORD_V2), ..] => *v,
        _ => {
            body(WHAT, bytes, RECORD_VERSION)?;
            RECORD_VERSION
        }
    };
    let mut r = Reader {
        bytes: &bytes[2..],
        pos: 0,
    };
    let tenant = TenantId::new(r.str("tenant").map_err(error)?);
    if version == RECORD_V1 {
        let n = r.count("point count").map_err(error)?;
        let mut points = Vec::with_capacity(n);
        for i in 0..n {
            points.push(r.point().map_err(|e| error(format!("point {i}: {e}")))?);
        }
        return Ok(Record::new(tenant, points));
    }
    let columns = if version == RECORD_V2 {
        r.columns()
    } else {
        r.runs()
    }
    .map_err(error)?;
    if r.pos != r.bytes.len() {
        return Err(error(format!(
            "{} bytes after the last column",
            r.bytes.len() - r.pos
        )));
    }
    // Checked whole here, so a broken record is a dead letter whole; its points are made
    // where something needs them (the store writes from the columns).
    columns.check().map_err(error)?;
    Ok(Record {
        tenant,
        points: Points::in_columns(columns),
    })
}

impl Reader<'_> {
    /// A column of format 2 or 3: a varint of its length and its bytes.
    fn column(&mut self, name: &str) -> Result<Vec<u8>, String> {
        let what = format!("column `{name}`");
        let n = self.count(&what)?;
        Ok(self.take(n, &what)?.to_vec())
    }

    /// The columns of a record of format 2, each as it is.
    fn columns(&mut self) -> Result<Columns, String> {
        let c = Columns {
            text: self.column("text")?,
            points: self.column("points")?,
            timestamps: self.column("timestamps")?,
            tags: self.column("tags")?,
            field_keys: self.column("field_keys")?,
            field_kinds: self.column("field_kinds")?,
            field_values: self.column("field_values")?,
        };
        // Points may name the same rows, and each becomes a point's own tags and fields
        // when decoded: a few bytes could ask for gigabytes. Releases wrote each point's
        // rows apart, so points never name more rows than there are.
        let named = c.points.chunks_exact(24).fold(0usize, |n, row| {
            let count =
                |at: usize| u32::from_le_bytes([row[at], row[at + 1], row[at + 2], row[at + 3]]);
            n.saturating_add(count(12) as usize + count(20) as usize)
        });
        let rows = c.tags.len() / 16 + c.field_keys.len() / 8;
        if named > rows {
            return Err(format!(
                "its points name {named} tags and fields, of the {rows} rows it has"
            ));
        }
        Ok(c)
    }

    /// A varint that must fit a column's u32.
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let n = self.varint(what)?;
        u32::try_from(n).map_err(|_| format!("{what}: {n} is past u32"))
    }

    /// The columns of a record of format 3 ([`encode_record`]).
    fn runs(&mut self) -> Result<Columns, String> {
        let mut c = Columns {
            text: self.column("text")?,
            ..Columns::default()
        };
        // Each point has 8 bytes of timestamp.
        let n = self.count("point count")?;
        if n > (self.bytes.len() - self.pos) / 8 {
            return Err(format!(
                "{n} points, with {} bytes left",
                self.bytes.len() - self.pos
            ));
        }
        let (mut done, mut fields) = (0, 0usize);
        let (mut tags, mut keys, mut kinds) = (Vec::new(), Vec::new(), Vec::new());
        while done < n {
            let at = |e: String| format!("run at point {done}: {e}");
            let run = self.count("run length").map_err(at)?;
            if run == 0 || run > n - done {
                return Err(at(format!("{run} points, with {} to go", n - done)));
            }
            let measurement = [
                self.u32("measurement start").map_err(at)?,
                self.u32("measurement length").map_err(at)?,
            ];
            tags.clear();
            for _ in 0..self.count("tag count").map_err(at)? {
                for _ in 0..4 {
                    tags.extend_from_slice(&self.u32("tag span").map_err(at)?.to_le_bytes());
                }
            }
            keys.clear();
            kinds.clear();
            for _ in 0..self.count("field count").map_err(at)? {
                for _ in 0..2 {
                    keys.extend_from_slice(&self.u32("field key span").map_err(at)?.to_le_bytes());
                }
                kinds.push(self.take(1, "field type").map_err(at)?[0]);
            }
            // A run's rows are laid out for each of its points: bounded by the record's
            // bytes, so a few bytes of a foreign producer can't ask for gigabytes.
            let rows = (tags.len() / 16 + keys.len() / 8).saturating_mul(run);
            let laid = c.tags.len() / 16 + c.field_keys.len() / 8;
            if rows.saturating_add(laid) > self.bytes.len().saturating_mul(MAX_ROWS_A_BYTE) {
                return Err(at(format!(
                    "{run} points of {} tags and {} fields: more rows than a {}-byte record holds",
                    tags.len() / 16,
                    kinds.len(),
                    self.bytes.len()
                )));
            }
            let shape = Shape {
                measurement,
                tags: &tags,
                field_keys: &keys,
                field_kinds: &kinds,
            };
            c.push_run(run, shape).map_err(at)?;
            fields = run
                .checked_mul(kinds.len())
                .and_then(|f| f.checked_add(fields))
                .ok_or_else(|| at("field count overflows".into()))?;
            done += run;
        }
        c.timestamps = self.take(n * 8, "timestamps")?.to_vec();
        let values = fields
            .checked_mul(8)
            .ok_or_else(|| format!("{fields} field values overflow"))?;
        c.field_values = self.take(values, "field values")?.to_vec();
        Ok(c)
    }
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
    measurement: Name,
    tags: Vec<StoredTag>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredTag {
    key: Name,
    value: Name,
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
        let mut record = Record::new(
            TenantId::new("acme"),
            parse(
                "m,h=a v=1.5,i=-3i,u=7u,b=true,s=\"é\" -9223372036854775808",
                Precision::Nanoseconds,
                0,
            )
            .0,
        );
        let bytes = encode_record(&mut record);
        let decoded = decode_record(&bytes).expect("decodes");
        assert_eq!(decoded, record);
        assert_eq!(
            decoded.points.columns(),
            record.points.columns(),
            "the columns it was written from"
        );
        // The format, byte for byte: an edit of wit/ or of the types can't change it. Two
        // points of one shape are one run.
        let mut small = Record::new(
            TenantId::new("t"),
            parse(
                "m,k=v x=2u,y=true 5\nm,k=v x=3u,y=false 6",
                Precision::Nanoseconds,
                0,
            )
            .0,
        );
        let le = |numbers: &[u64]| numbers.iter().flat_map(|n| n.to_le_bytes()).collect();
        let expected = [
            vec![b'S', 3, 1, b't', 5],
            b"mkvxy".to_vec(),
            // Two points in one run of two: the measurement's span; one tag, its key and
            // value spans; two fields, each its key span and type (unsigned, boolean).
            vec![2, 2, 0, 1, 1, 1, 1, 2, 1, 2, 3, 1, 2, 4, 1, 3],
            // Timestamps, then values.
            le(&[5, 6]),
            le(&[2, 1, 3, 0]),
        ]
        .concat();
        let bytes = encode_record(&mut small);
        assert_eq!(bytes, expected);
        assert_eq!(decode_record(&bytes).expect("decodes"), small);
        assert_eq!(
            decode_record(&bytes).expect("decodes").points.columns(),
            small.points.columns(),
            "the columns it was written from, rows laid out again"
        );
    }

    #[test]
    fn a_series_run_is_written_once_and_each_sample_takes_16_bytes() {
        // Remote write's shape: a series' samples one after the other, as decoded.
        let series = |samples: usize, from: usize| -> Vec<Point> {
            (from..from + samples)
                .map(|k| {
                    let line = format!(
                        "bench_requests_total,code=200,instance=host-{from}:9100,job=api value={k}.5 {k}"
                    );
                    parse(&line, Precision::Nanoseconds, 0).0.remove(0)
                })
                .collect()
        };
        let size =
            |points: Vec<Point>| encode_record(&mut Record::new(TenantId::new("t"), points)).len();
        // One more sample of a series: its time and value, nothing else.
        assert_eq!(size(series(11, 0)) - size(series(10, 0)), 16);
        // Another series of 10 samples: 160 bytes and its run's shape and strings.
        let two = [series(10, 0), series(10, 10)].concat();
        let more = size(two) - size(series(10, 0));
        assert!((160..160 + 40).contains(&more), "{more} bytes");
        // Format 2 wrote every row of every sample: 97 bytes each.
        let v2 = |points: Vec<Point>| v2_record("t", &Columns::from_points(&points)).len();
        assert_eq!(v2(series(11, 0)) - v2(series(10, 0)), 97);
    }

    #[test]
    fn records_of_format_2_still_decode_with_their_columns() {
        let column = |numbers: &[u64], width: usize| {
            let mut c = vec![u8::try_from(numbers.len() * width).expect("short")];
            for n in numbers {
                c.extend_from_slice(&n.to_le_bytes()[..width]);
            }
            c
        };
        // The bytes the release before wrote for `m,k=v x=2u,y=true 5`.
        let v2 = [
            vec![b'S', 2, 1, b't', 5],
            b"mkvxy".to_vec(),
            column(&[0, 1, 0, 1, 0, 2], 4),
            column(&[5], 8),
            column(&[1, 1, 2, 1], 4),
            column(&[3, 1, 4, 1], 4),
            vec![2, 2, 3],
            column(&[2, 1], 8),
        ]
        .concat();
        let points = parse("m,k=v x=2u,y=true 5", Precision::Nanoseconds, 0).0;
        let decoded = decode_record(&v2).expect("decodes");
        assert_eq!(decoded, Record::new(TenantId::new("t"), points.clone()));
        assert_eq!(
            decoded.points.columns(),
            Some(&Columns::from_points(&points))
        );
        assert_eq!(v2_record("t", &Columns::from_points(&points)), v2);
    }

    #[test]
    fn a_record_is_written_from_the_columns_it_is_given() {
        let points = parse("m,k=v x=1 1\nm,k=w x=2 2", Precision::Nanoseconds, 0).0;
        let mut columns = Columns::from_points(&points);
        columns.retain(&[false, true]);
        let mut record = Record {
            tenant: TenantId::new("t"),
            points: Points::new(points[1..].to_vec(), Some(columns.clone())),
        };
        let decoded = decode_record(&encode_record(&mut record)).expect("decodes");
        assert_eq!(decoded.points.to_made().as_deref(), Ok(&points[1..]));
        assert_eq!(record.points.columns(), Some(&columns), "kept as given");
        // Written from them: their text, with the dropped point's strings, and the kept
        // point's rows laid out from the first.
        let written = decoded.points.columns().expect("columns");
        assert_eq!(written.text, columns.text);
        assert_eq!(written.to_points(), Ok(points[1..].to_vec()));
        assert_eq!(written.tags.len(), 16);
        // Columns without the rows their points name are not written: the points are.
        let mut lost = columns;
        lost.tags.clear();
        record.points.set_columns(lost);
        let decoded = decode_record(&encode_record(&mut record)).expect("decodes");
        assert_eq!(decoded.points.to_made().as_deref(), Ok(&points[1..]));
        assert_eq!(
            record.points.columns(),
            Some(&Columns::from_points(&points[1..]))
        );
    }

    /// A record of format 1 as serde writes it through postcard: what [`decode_record`]
    /// reads by hand.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct SerdePoint(
        String,
        Vec<(String, String)>,
        Vec<(String, SerdeValue)>,
        i64,
    );

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum SerdeValue {
        Float(f64),
        Integer(i64),
        Unsigned(u64),
        Boolean(bool),
        String(String),
    }

    fn serde_point(p: &Point) -> SerdePoint {
        let tags = p.tags.iter();
        let fields = p.fields.iter().map(|f| {
            let value = match &f.value {
                FieldValue::Float(v) => SerdeValue::Float(*v),
                FieldValue::Integer(v) => SerdeValue::Integer(*v),
                FieldValue::Unsigned(v) => SerdeValue::Unsigned(*v),
                FieldValue::Boolean(v) => SerdeValue::Boolean(*v),
                FieldValue::String(v) => SerdeValue::String(v.clone()),
            };
            (f.key.to_string(), value)
        });
        SerdePoint(
            p.measurement.to_string(),
            tags.map(|t| (t.key.to_string(), t.value.to_string()))
                .collect(),
            fields.collect(),
            p.timestamp,
        )
    }

    fn any_point() -> impl proptest::strategy::Strategy<Value = Point> {
        use proptest::prelude::*;
        let name = || "\\PC{0,40}";
        let value = prop_oneof![
            any::<u64>().prop_map(|b| FieldValue::Float(f64::from_bits(b))),
            any::<i64>().prop_map(FieldValue::Integer),
            any::<u64>().prop_map(FieldValue::Unsigned),
            any::<bool>().prop_map(FieldValue::Boolean),
            "\\PC{0,300}".prop_map(FieldValue::String),
        ];
        (
            name(),
            proptest::collection::vec((name(), name()), 0..4),
            proptest::collection::vec((name(), value), 0..4),
            any::<i64>(),
        )
            .prop_map(|(measurement, tags, fields, timestamp)| Point {
                measurement: measurement.into(),
                tags: tags
                    .into_iter()
                    .map(|(k, v)| Tag {
                        key: k.into(),
                        value: v.into(),
                    })
                    .collect(),
                fields: fields
                    .into_iter()
                    .map(|(k, value)| Field {
                        key: k.into(),
                        value,
                    })
                    .collect(),
                timestamp,
            })
    }

    /// `p` `k` steps later, with other values of the same types.
    fn later(p: &Point, k: usize) -> Point {
        let fields = p.fields.iter().map(|f| {
            let value = match &f.value {
                FieldValue::Float(v) => FieldValue::Float(v + k as f64),
                FieldValue::Integer(v) => FieldValue::Integer(v.wrapping_add(k as i64)),
                FieldValue::Unsigned(v) => FieldValue::Unsigned(v.wrapping_add(k as u64)),
                FieldValue::Boolean(v) => FieldValue::Boolean(*v ^ (k % 2 == 1)),
                FieldValue::String(v) => FieldValue::String(format!("{v}{k}")),
            };
            Field {
                key: f.key.clone(),
                value,
            }
        });
        Point {
            fields: fields.collect(),
            timestamp: p.timestamp.wrapping_add(k as i64),
            ..p.clone()
        }
    }

    proptest::proptest! {
        #[test]
        fn records_round_trip_and_every_cut_is_refused(
            tenant in "\\PC{0,20}",
            points in proptest::collection::vec((any_point(), 1..4usize), 0..20),
        ) {
            // Each point and then its like at later times, with other values: runs of one
            // shape, as a remote-written series' samples come.
            let points = points
                .into_iter()
                .flat_map(|(p, n)| (0..n).map(move |k| later(&p, k)))
                .collect();
            let mut record = Record::new(TenantId::new(&tenant), points);
            let bytes = encode_record(&mut record);
            let decoded = decode_record(&bytes).expect("decodes");
            // Compared as serde's shapes: NaN != NaN, but their bits are kept.
            let shapes = |r: &Record| format!("{:?}", r.points.to_made().expect("made").iter().map(serde_point).collect::<Vec<_>>());
            proptest::prop_assert_eq!(decoded.tenant.as_str(), tenant.as_str());
            proptest::prop_assert_eq!(shapes(&decoded), shapes(&record));
            // Every cut of a record is refused, never a panic or a part.
            for cut in [2, bytes.len() / 2, bytes.len() - 1] {
                proptest::prop_assert!(decode_record(&bytes[..cut]).is_err());
            }
            // The same columns in format 2 decode to the same.
            let columns = record.points.columns().expect("made");
            let v2 = decode_record(&v2_record(&tenant, columns)).expect("decodes");
            proptest::prop_assert_eq!(shapes(&v2), shapes(&record));
        }

        #[test]
        fn records_of_format_1_still_decode(
            tenant in "\\PC{0,20}",
            points in proptest::collection::vec(any_point(), 0..20),
        ) {
            let shape = (tenant, points.iter().map(serde_point).collect::<Vec<_>>());
            let bytes = postcard::to_extend(&shape, header(RECORD_V1)).expect("encodes");
            let decoded = decode_record(&bytes).expect("decodes");
            let ours: Vec<_> = decoded.points.to_made().expect("made").iter().map(serde_point).collect();
            proptest::prop_assert_eq!(decoded.tenant.as_str(), shape.0.as_str());
            proptest::prop_assert_eq!(format!("{ours:?}"), format!("{:?}", shape.1));
            proptest::prop_assert!(decoded.points.columns().is_none());
            let cut = bytes.len() / 2;
            if !points.is_empty() {
                proptest::prop_assert!(decode_record(&bytes[..cut]).is_err());
            }
        }
    }

    #[test]
    fn broken_records_are_refused_naming_what_and_where() {
        let points = parse("m,k=v x=2u,y=true 5\nm x=1 6", Precision::Nanoseconds, 0).0;
        let v1 = postcard::to_extend(
            &("t", points.iter().map(serde_point).collect::<Vec<_>>()),
            header(RECORD_V1),
        )
        .expect("encodes");
        let broken = |good: &[u8], at: usize, byte: u8| {
            let mut bytes = good.to_vec();
            bytes[at] = byte;
            decode_record(&bytes).expect_err("broken").to_string()
        };
        // Format 1: y's boolean, then its value type.
        assert!(broken(&v1, 20, 7).contains("point 0: field value: boolean byte 7, not 0 or 1"));
        assert!(broken(&v1, 19, 9).contains("point 0: field value: value type 9, not 0-4"));
        // The second point's tag count, claiming more tags than bytes are left.
        assert!(broken(&v1, 24, 100).contains("point 1: tag count: 100 items, with"));
        let mut long = v1[..2].to_vec();
        long.extend_from_slice(&[0xff; 11]);
        assert!(
            decode_record(&long)
                .expect_err("overflow")
                .to_string()
                .contains("tenant: the varint ending at byte 10 overflows 64 bits")
        );
        // Format 2 (the release before's): header, tenant `t`, the text's length and the
        // text `mkvxy` from byte 5, the points' length (byte 10), then their rows: the
        // measurement's length is byte 15. Format 3: the same text, then 2 points (byte
        // 10), a run of 1 (byte 11), its measurement's span (bytes 12 and 13), its tag (14
        // to 18) and its two fields: the first's type is byte 22.
        let v2 = v2_record("t", &Columns::from_points(&points));
        let v3 = encode_record(&mut Record::new(TenantId::new("t"), points));
        assert_eq!(&v2[5..10], b"mkvxy");
        assert_eq!(
            (&v3[5..10], &v3[10..14]),
            (&b"mkvxy"[..], &[2, 1, 0, 1][..])
        );
        for (bytes, length) in [(&v2, 15), (&v3, 13)] {
            assert_eq!(
                broken(bytes, length, 9),
                "log record does not decode: point 0: measurement: span 0+9 is outside the 5-byte text; retrying can't help"
            );
            assert_eq!(
                broken(bytes, 5, 0xff),
                "log record does not decode: point 0: measurement: span 0+1 is not UTF-8; retrying can't help"
            );
        }
        assert_eq!(
            broken(&v3, 22, 9),
            "log record does not decode: point 0: field 0 has type code 9, not 0-4; retrying can't help"
        );
        assert_eq!(
            broken(&v3, 11, 3),
            "log record does not decode: run at point 0: 3 points, with 2 to go; retrying can't help"
        );
        // A run of many points of many tags: refused before its rows are laid out.
        let (points, tags) = (40_000usize, 131_072usize);
        let mut wide = vec![b'S', 3, 1, b't', 1, b'm'];
        varint::put(&mut wide, points as u64);
        varint::put(&mut wide, points as u64);
        wide.extend_from_slice(&[0, 1]);
        varint::put(&mut wide, tags as u64);
        wide.extend(std::iter::repeat_n([0, 1, 0, 1], tags).flatten());
        wide.extend_from_slice(&[1, 0, 1, 0]);
        wide.resize(wide.len() + points * 16, 0);
        let err = decode_record(&wide).expect_err("too wide").to_string();
        assert!(
            err.contains("run at point 0: 40000 points of 131072 tags and 1 fields: more rows"),
            "{err}"
        );
        // Format 2: points naming the same rows, each its own tags once decoded.
        let row: Vec<u8> = [0u32, 1, 0, 60_000, 0, 1]
            .iter()
            .flat_map(|n| n.to_le_bytes())
            .collect();
        let shared = Columns {
            text: b"m".to_vec(),
            points: row.repeat(1_000),
            timestamps: vec![0; 8_000],
            tags: [0u32, 1, 0, 1]
                .iter()
                .flat_map(|n| n.to_le_bytes())
                .collect::<Vec<_>>()
                .repeat(60_000),
            field_keys: vec![0, 0, 0, 0, 1, 0, 0, 0],
            field_kinds: vec![0],
            field_values: vec![0; 8],
        };
        let err = decode_record(&v2_record("t", &shared))
            .expect_err("too wide")
            .to_string();
        assert!(
            err.contains("its points name 60001000 tags and fields, of the 60001 rows it has"),
            "{err}"
        );
        // More points than bytes left, and more than their timestamps' 8 bytes each fit.
        assert!(broken(&v3, 10, 100).contains("point count: 100 items, with 63 bytes left"));
        assert!(broken(&v3, 10, 10).contains(": 10 points, with 63 bytes left"));
        let mut trailing = v3.clone();
        trailing.push(0);
        assert!(
            decode_record(&trailing)
                .expect_err("trailing")
                .to_string()
                .contains("1 bytes after the last column")
        );
    }

    #[test]
    fn unknown_versions_and_foreign_bytes_are_refused_clearly() {
        let mut bytes = encode_record(&mut Record::new(TenantId::new("t"), Vec::new()));
        bytes[1] = 9;
        let err = decode_record(&bytes).expect_err("version 9");
        assert_eq!(
            err.to_string(),
            "log record is in format version 9, unknown to this release (it reads version 3): written by a newer Sluice? Retrying can't help"
        );
        assert!(matches!(
            decode_record(b"\x01\x02"),
            Err(FormatError::NoHeader { .. })
        ));
        for version in [1, 2, 3] {
            assert!(matches!(
                decode_record(&[b'S', version, 0xff]),
                Err(FormatError::Decode { .. })
            ));
        }
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
