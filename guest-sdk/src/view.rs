//! Borrowed views of the columnar [`Batch`] the host hands filters and transforms: read a
//! point's measurement, tags and fields without copying them out of the batch.

use crate::bindings::iface::types::{Batch, FieldRow, PointRow, Span, TagRow, ValueCell};
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

/// One point of a batch.
#[derive(Debug, Clone, Copy)]
pub struct PointView<'a> {
    batch: &'a Batch,
    row: &'a PointRow,
}

impl Batch {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// True without points.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The points, in order.
    pub fn points(&self) -> impl ExactSizeIterator<Item = PointView<'_>> {
        self.points.iter().map(|row| PointView { batch: self, row })
    }

    /// A batch of `points`, as the host would send it: for plugin tests.
    pub fn from_points(points: &[Point]) -> Batch {
        let mut b = Batch {
            text: String::new(),
            points: Vec::new(),
            tags: Vec::new(),
            fields: Vec::new(),
        };
        for p in points {
            let measurement = b.push_text(&p.measurement);
            let tags = Span {
                start: b.tags.len() as u32,
                len: p.tags.len() as u32,
            };
            for t in &p.tags {
                let (key, value) = (b.push_text(&t.key), b.push_text(&t.value));
                b.tags.push(TagRow { key, value });
            }
            let fields = Span {
                start: b.fields.len() as u32,
                len: p.fields.len() as u32,
            };
            for f in &p.fields {
                let value = match &f.value {
                    FieldValue::Float(v) => ValueCell::Float(*v),
                    FieldValue::Integer(v) => ValueCell::Integer(*v),
                    FieldValue::Unsigned(v) => ValueCell::Unsigned(*v),
                    FieldValue::Boolean(v) => ValueCell::Boolean(*v),
                    FieldValue::String(s) => ValueCell::String(b.push_text(s)),
                };
                let key = b.push_text(&f.key);
                b.fields.push(FieldRow { key, value });
            }
            b.points.push(PointRow {
                measurement,
                tags,
                fields,
                timestamp: p.timestamp,
            });
        }
        b
    }

    fn push_text(&mut self, s: &str) -> Span {
        let start = self.text.len() as u32;
        self.text.push_str(s);
        Span {
            start,
            len: s.len() as u32,
        }
    }

    fn str(&self, span: &Span) -> &str {
        // The host only sends spans inside the text; a bad one reads as empty, not a trap.
        self.text
            .get(span.start as usize..(span.start as usize).saturating_add(span.len as usize))
            .unwrap_or_default()
    }

    fn rows<'a, T>(list: &'a [T], span: &Span) -> &'a [T] {
        list.get(span.start as usize..(span.start as usize).saturating_add(span.len as usize))
            .unwrap_or_default()
    }
}

impl<'a> PointView<'a> {
    /// The measurement.
    pub fn measurement(&self) -> &'a str {
        self.batch.str(&self.row.measurement)
    }

    /// Event time.
    pub fn timestamp(&self) -> Nanos {
        self.row.timestamp
    }

    /// Tags as (key, value), sorted by key.
    pub fn tags(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let batch = self.batch;
        Batch::rows(&batch.tags, &self.row.tags)
            .iter()
            .map(move |t| (batch.str(&t.key), batch.str(&t.value)))
    }

    /// The value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&'a str> {
        self.tags().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Fields as (key, value).
    pub fn fields(&self) -> impl Iterator<Item = (&'a str, FieldRef<'a>)> + 'a {
        let batch = self.batch;
        Batch::rows(&batch.fields, &self.row.fields).iter().map(move |f| {
            let value = match &f.value {
                ValueCell::Float(v) => FieldRef::Float(*v),
                ValueCell::Integer(v) => FieldRef::Integer(*v),
                ValueCell::Unsigned(v) => FieldRef::Unsigned(*v),
                ValueCell::Boolean(v) => FieldRef::Boolean(*v),
                ValueCell::String(s) => FieldRef::String(batch.str(s)),
            };
            (batch.str(&f.key), value)
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
