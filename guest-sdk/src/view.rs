//! Borrowed views of the columnar [`Batch`] the host hands filters and transforms: read a
//! point's measurement, tags and fields without copying them out of the batch.

use crate::bindings::iface::types::Batch;
use crate::{Field, FieldValue, Nanos, Point, Tag};

/// A field value borrowed from a batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldRef<'a> {
    /// 64-bit float.
    Float(f64),
    /// Signed integer.
    Integer(i64),
    /// Unsigned integer.
    Unsigned(u64),
    /// Boolean.
    Boolean(bool),
    /// String.
    String(&'a str),
}

impl FieldRef<'_> {
    /// Numeric values as `f64`; none for strings and booleans.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            FieldRef::Float(v) => Some(v),
            FieldRef::Integer(v) => Some(v as f64),
            FieldRef::Unsigned(v) => Some(v as f64),
            FieldRef::Boolean(_) | FieldRef::String(_) => None,
        }
    }

    /// An owned copy.
    pub fn to_owned(&self) -> FieldValue {
        match *self {
            FieldRef::Float(v) => FieldValue::Float(v),
            FieldRef::Integer(v) => FieldValue::Integer(v),
            FieldRef::Unsigned(v) => FieldValue::Unsigned(v),
            FieldRef::Boolean(v) => FieldValue::Boolean(v),
            FieldRef::String(s) => FieldValue::String(s.to_owned()),
        }
    }
}

/// Field type codes of the batch's `field-kinds`.
const FLOAT: u8 = 0;
const INTEGER: u8 = 1;
const UNSIGNED: u8 = 2;
const BOOLEAN: u8 = 3;
const STRING: u8 = 4;

/// One point of a batch.
#[derive(Debug, Clone, Copy)]
pub struct PointView<'a> {
    batch: &'a Batch,
    /// This point's six numbers in `batch.points`.
    row: &'a [u32],
    index: usize,
}

impl Batch {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    /// True without points.
    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    /// The points, in order.
    pub fn points(&self) -> impl ExactSizeIterator<Item = PointView<'_>> {
        (0..self.len()).map(move |index| PointView {
            batch: self,
            row: self.points.get(index * 6..index * 6 + 6).unwrap_or(&[0; 6]),
            index,
        })
    }

    /// A batch of `points`, as the host would send it: for plugin tests.
    pub fn from_points(points: &[Point]) -> Batch {
        let mut b = Batch {
            text: String::new(),
            points: Vec::new(),
            timestamps: Vec::new(),
            tags: Vec::new(),
            field_keys: Vec::new(),
            field_kinds: Vec::new(),
            field_values: Vec::new(),
        };
        for p in points {
            let (ms, ml) = b.push_text(&p.measurement);
            let (first_tag, first_field) = (b.tags.len() / 4, b.field_kinds.len());
            b.points.extend([ms, ml, first_tag as u32, p.tags.len() as u32]);
            b.points.extend([first_field as u32, p.fields.len() as u32]);
            b.timestamps.push(p.timestamp);
            for t in &p.tags {
                let (k, v) = (b.push_text(&t.key), b.push_text(&t.value));
                b.tags.extend([k.0, k.1, v.0, v.1]);
            }
            for f in &p.fields {
                let key = b.push_text(&f.key);
                b.field_keys.extend([key.0, key.1]);
                let (kind, bits) = match &f.value {
                    FieldValue::Float(v) => (FLOAT, v.to_bits()),
                    FieldValue::Integer(v) => (INTEGER, *v as u64),
                    FieldValue::Unsigned(v) => (UNSIGNED, *v),
                    FieldValue::Boolean(v) => (BOOLEAN, u64::from(*v)),
                    FieldValue::String(s) => {
                        let (start, len) = b.push_text(s);
                        (STRING, (u64::from(start) << 32) | u64::from(len))
                    }
                };
                b.field_kinds.push(kind);
                b.field_values.push(bits);
            }
        }
        b
    }

    fn push_text(&mut self, s: &str) -> (u32, u32) {
        let start = self.text.len() as u32;
        self.text.push_str(s);
        (start, s.len() as u32)
    }

    fn str(&self, start: u32, len: u32) -> &str {
        // The host only sends spans inside the text; a bad one reads as empty, not a trap.
        self.text
            .get(start as usize..(start as usize).saturating_add(len as usize))
            .unwrap_or_default()
    }

    fn field_value(&self, i: usize) -> FieldRef<'_> {
        let bits = self.field_values.get(i).copied().unwrap_or_default();
        match self.field_kinds.get(i).copied().unwrap_or(FLOAT) {
            INTEGER => FieldRef::Integer(bits as i64),
            UNSIGNED => FieldRef::Unsigned(bits),
            BOOLEAN => FieldRef::Boolean(bits != 0),
            STRING => FieldRef::String(self.str((bits >> 32) as u32, bits as u32)),
            _ => FieldRef::Float(f64::from_bits(bits)),
        }
    }
}

impl<'a> PointView<'a> {
    /// The measurement.
    pub fn measurement(&self) -> &'a str {
        self.batch.str(self.row[0], self.row[1])
    }

    /// Event time.
    pub fn timestamp(&self) -> Nanos {
        self.batch.timestamps.get(self.index).copied().unwrap_or_default()
    }

    /// Tags as (key, value), sorted by key.
    pub fn tags(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let batch = self.batch;
        let (first, count) = (self.row[2] as usize, self.row[3] as usize);
        batch
            .tags
            .get(first * 4..(first + count) * 4)
            .unwrap_or_default()
            .chunks_exact(4)
            .map(move |t| (batch.str(t[0], t[1]), batch.str(t[2], t[3])))
    }

    /// The value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&'a str> {
        self.tags().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Fields as (key, value).
    pub fn fields(&self) -> impl Iterator<Item = (&'a str, FieldRef<'a>)> + 'a {
        let batch = self.batch;
        let (first, count) = (self.row[4] as usize, self.row[5] as usize);
        (first..first + count).map(move |i| {
            let key = batch
                .field_keys
                .get(2 * i..2 * i + 2)
                .map_or("", |k| batch.str(k[0], k[1]));
            (key, batch.field_value(i))
        })
    }

    /// The value of field `key`.
    pub fn field(&self, key: &str) -> Option<FieldRef<'a>> {
        self.fields().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// An owned copy of the point.
    pub fn to_point(&self) -> Point {
        Point {
            measurement: self.measurement().to_owned(),
            tags: self.tags().map(|(k, v)| Tag::new(k, v)).collect(),
            fields: self
                .fields()
                .map(|(k, v)| Field {
                    key: k.to_owned(),
                    value: v.to_owned(),
                })
                .collect(),
            timestamp: self.timestamp(),
        }
    }
}
