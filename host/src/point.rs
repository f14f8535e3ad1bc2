//! The metric data model: points, tags, typed fields, window results and alerts.
//!
//! Sluice's own types, with the shapes of the WIT contract's: the plugin boundary
//! ([`crate::plugin`]) converts them to and from the `bindgen!`-generated ones, moving
//! strings rather than copying them. Nothing else sees the generated types, so an edit of
//! `wit/` changes no type the host stores, logs or serves.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A name: a measurement, tag key or value, or field key. Up to 24 bytes (nearly every
/// name) it is kept inline, without an allocation of its own: parsing a body and decoding a
/// log record allocated once per name, and a plugin batch's encoding followed a pointer to
/// each.
pub type Name = compact_str::CompactString;

/// A nanosecond timestamp: nanoseconds since the Unix epoch, UTC.
pub type Nanos = i64;

/// A field's value, with the five types of InfluxDB line protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FieldValue {
    /// 64-bit IEEE float.
    Float(f64),
    /// Signed 64-bit integer.
    Integer(i64),
    /// Unsigned 64-bit integer.
    Unsigned(u64),
    /// Boolean.
    Boolean(bool),
    /// UTF-8 string.
    String(String),
}

/// One tag: an indexed string dimension of a series (`host=web-1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// Key.
    pub key: Name,
    /// Value.
    pub value: Name,
}

/// One field: a named, typed value (`usage_idle=99.5`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    /// Key.
    pub key: Name,
    /// Value.
    pub value: FieldValue,
}

/// A metric point.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The measurement name (`cpu`).
    pub measurement: Name,
    /// Tags, sorted by key once ingested.
    pub tags: Vec<Tag>,
    /// At least one field.
    pub fields: Vec<Field>,
    /// Event time.
    pub timestamp: Nanos,
}

/// The identity of a series: measurement plus its tag set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    /// Measurement.
    pub measurement: Name,
    /// Tags sorted by key.
    pub tags: Vec<Tag>,
}

/// One named aggregate of a closed window (`mean`, `p99`...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: f64,
}

/// The state of an alert rule for one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlertState {
    /// Not firing (never fired, or resolved).
    Ok,
    /// Firing at warning level.
    Warning,
    /// Firing at critical level.
    Critical,
}

/// A closed window of one rule for one series: what an alert plugin evaluates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowResult {
    /// The rule that produced the window.
    pub rule: String,
    /// The series the window aggregates.
    pub series: Series,
    /// The field the aggregates are computed over.
    pub field: String,
    /// Window start, inclusive.
    pub window_start: Nanos,
    /// Window end, exclusive.
    pub window_end: Nanos,
    /// The aggregates the rule asks for.
    pub aggregates: Vec<Aggregate>,
    /// The alert state the host holds for the rule and series before this window.
    pub state: AlertState,
}

/// An alert: a change of state of one rule for one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The rule.
    pub rule: String,
    /// The series.
    pub series: Series,
    /// The field.
    pub field: String,
    /// The new state; `Ok` resolves a firing alert.
    pub state: AlertState,
    /// Start of the window that caused the change.
    pub window_start: Nanos,
    /// End of that window.
    pub window_end: Nanos,
    /// The value that crossed the threshold.
    pub value: f64,
    /// A human-readable message.
    pub message: String,
}

/// Whether point `i` of `points` has what `same` compares (its series, its keys) of the
/// point before it. A run of such points lets each stage of ingest reuse what it worked out
/// for the first (checks, types, partition): a comparison costs less than a check of every
/// name or a hash.
pub fn continues(points: &[Point], i: usize, same: fn(&Point, &Point) -> bool) -> bool {
    i.checked_sub(1)
        .and_then(|before| Some(same(points.get(before)?, points.get(i)?)))
        .unwrap_or(false)
}

/// Float samples of series, as remote write sends them: each series' times and values, in
/// order. The series themselves are points apart (their measurement, tags and field, made
/// once): a point made for each sample, and dropped again, was a fifth of remote-write
/// ingest (perf, the Prometheus bench).
#[derive(Debug, Clone, Default)]
pub struct Samples {
    /// Where each series' samples start in `all`.
    starts: Vec<usize>,
    /// Every sample.
    all: Vec<(Nanos, f64)>,
}

impl Samples {
    /// Room for `n` samples.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            starts: Vec::new(),
            all: Vec::with_capacity(n),
        }
    }

    /// Starts the next series: the samples pushed after are its own.
    pub fn start_series(&mut self) {
        self.starts.push(self.all.len());
    }

    /// Adds a sample to the last series started.
    pub fn push(&mut self, timestamp: Nanos, value: f64) {
        self.all.push((timestamp, value));
    }

    /// Series `s`'s samples (none past the last series).
    pub fn of(&self, s: usize) -> &[(Nanos, f64)] {
        let start = self.starts.get(s).copied().unwrap_or(self.all.len());
        let end = self.starts.get(s + 1).copied().unwrap_or(self.all.len());
        self.all.get(start..end).unwrap_or_default()
    }

    /// Number of samples, of every series.
    pub fn len(&self) -> usize {
        self.all.len()
    }

    /// True without samples.
    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// The points the samples of `series` (one point per series, whose one field takes
    /// each sample's value) are: what ingest never makes, for tests to compare with.
    #[cfg(test)]
    pub(crate) fn points(&self, series: &[Point]) -> Vec<Point> {
        let mut points = Vec::with_capacity(self.len());
        for (s, point) in series.iter().enumerate() {
            for &(timestamp, value) in self.of(s) {
                let mut point = point.clone();
                for field in &mut point.fields {
                    field.value = FieldValue::Float(value);
                }
                point.timestamp = timestamp;
                points.push(point);
            }
        }
        points
    }
}

impl Point {
    /// Whether `other` is of the same series: measurement and tags. A run of such points
    /// (the samples of one remote-written series) lets a stage reuse what it worked out
    /// for the first: a comparison costs less than a hash or a check of every name.
    pub fn same_series(&self, other: &Point) -> bool {
        self.measurement == other.measurement && self.tags == other.tags
    }

    /// Whether `other` is of the same series and has fields of the same keys, in the same
    /// order: the same series keys, field by field.
    pub fn same_keys(&self, other: &Point) -> bool {
        self.same_series(other)
            && self
                .fields
                .iter()
                .map(|f| &f.key)
                .eq(other.fields.iter().map(|f| &f.key))
    }

    /// The value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }

    /// The value of field `key`.
    pub fn field(&self, key: &str) -> Option<&FieldValue> {
        self.fields.iter().find(|f| f.key == key).map(|f| &f.value)
    }

    /// Sorts tags by key, the order the WIT contract promises plugins.
    pub fn sort_tags(&mut self) {
        self.tags.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    }

    /// The series this point belongs to (measurement plus tag set).
    pub fn series(&self) -> Series {
        Series {
            measurement: self.measurement.clone(),
            tags: self.tags.clone(),
        }
    }
}

/// The type of a field's values. A series' field keeps the type it was first written with:
/// a value of another type is a conflict, refused at ingest and never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// 64-bit float.
    Float,
    /// Signed 64-bit integer.
    Integer,
    /// Unsigned 64-bit integer.
    Unsigned,
    /// Boolean.
    Boolean,
    /// UTF-8 string.
    String,
}

impl FieldType {
    /// Every type, in the order of [`FieldType::code`].
    const ALL: [FieldType; 5] = [
        FieldType::Float,
        FieldType::Integer,
        FieldType::Unsigned,
        FieldType::Boolean,
        FieldType::String,
    ];

    /// The type's one-byte code in stored formats (stable across releases).
    pub fn code(self) -> u8 {
        match self {
            FieldType::Float => 0,
            FieldType::Integer => 1,
            FieldType::Unsigned => 2,
            FieldType::Boolean => 3,
            FieldType::String => 4,
        }
    }

    /// The type of stored code `code`.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // InfluxDB's names, as in its `field type conflict` errors.
        f.write_str(match self {
            FieldType::Float => "float",
            FieldType::Integer => "integer",
            FieldType::Unsigned => "unsigned",
            FieldType::Boolean => "boolean",
            FieldType::String => "string",
        })
    }
}

impl FieldValue {
    /// The value's type.
    pub fn field_type(&self) -> FieldType {
        match self {
            FieldValue::Float(_) => FieldType::Float,
            FieldValue::Integer(_) => FieldType::Integer,
            FieldValue::Unsigned(_) => FieldType::Unsigned,
            FieldValue::Boolean(_) => FieldType::Boolean,
            FieldValue::String(_) => FieldType::String,
        }
    }

    /// The value as a float, for numeric types; none for strings and booleans.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            FieldValue::Float(v) => Some(v),
            FieldValue::Integer(v) => Some(v as f64),
            FieldValue::Unsigned(v) => Some(v as f64),
            FieldValue::Boolean(_) | FieldValue::String(_) => None,
        }
    }
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlertState::Ok => "ok",
            AlertState::Warning => "warning",
            AlertState::Critical => "critical",
        })
    }
}

impl fmt::Display for Series {
    /// Line-protocol form of the series key: `cpu,host=a,region=eu`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::lineproto::write_series_key(f, &self.measurement, &self.tags)
    }
}
