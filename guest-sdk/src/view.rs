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
    row: [u32; 6],
    index: usize,
}

/// Number `i` of a column of little-endian u32; 0 past its end.
fn u32_at(column: &[u8], i: usize) -> u32 {
    column
        .get(i * 4..i * 4 + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

/// The six numbers of point `i`; zeros past the end of the column.
fn row_at(points: &[u8], i: usize) -> [u32; 6] {
    // One bounds check for the row, then fixed-size reads the compiler unrolls.
    let Some(bytes) = points.get(i * 24..i * 24 + 24) else {
        return [0; 6];
    };
    std::array::from_fn(|j| {
        u32::from_le_bytes([
            bytes[4 * j],
            bytes[4 * j + 1],
            bytes[4 * j + 2],
            bytes[4 * j + 3],
        ])
    })
}

/// Number `i` of a column of little-endian 64-bit values; 0 past its end.
fn u64_at(column: &[u8], i: usize) -> u64 {
    column
        .get(i * 8..i * 8 + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Rows `first..first + count` of a column with `rows` rows, cut to the rows there are:
/// a bad count reads as fewer rows, never as a loop over billions.
fn rows(first: u32, count: u32, rows: usize) -> std::ops::Range<usize> {
    let end = (first as usize).saturating_add(count as usize).min(rows);
    (first as usize).min(end)..end
}

impl Batch {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.timestamps.len() / 8
    }

    /// True without points.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The points, in order.
    pub fn points(&self) -> impl ExactSizeIterator<Item = PointView<'_>> {
        (0..self.len()).map(move |index| PointView {
            batch: self,
            row: row_at(&self.points, index),
            index,
        })
    }

    /// A batch of `points`, as the host would send it: for plugin tests.
    pub fn from_points(points: &[Point]) -> Batch {
        let mut b = Batch {
            text: Vec::new(),
            points: Vec::new(),
            timestamps: Vec::new(),
            tags: Vec::new(),
            field_keys: Vec::new(),
            field_kinds: Vec::new(),
            field_values: Vec::new(),
        };
        let put = |column: &mut Vec<u8>, numbers: &[u32]| {
            for n in numbers {
                column.extend_from_slice(&n.to_le_bytes());
            }
        };
        let (mut tags, mut fields) = (0u32, 0u32);
        for p in points {
            let (ms, ml) = b.push_text(&p.measurement);
            let (n_tags, n_fields) = (p.tags.len() as u32, p.fields.len() as u32);
            put(&mut b.points, &[ms, ml, tags, n_tags, fields, n_fields]);
            (tags, fields) = (tags + n_tags, fields + n_fields);
            b.timestamps.extend_from_slice(&p.timestamp.to_le_bytes());
            for t in &p.tags {
                let (k, v) = (b.push_text(&t.key), b.push_text(&t.value));
                put(&mut b.tags, &[k.0, k.1, v.0, v.1]);
            }
            for f in &p.fields {
                let key = b.push_text(&f.key);
                put(&mut b.field_keys, &[key.0, key.1]);
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
                b.field_values.extend_from_slice(&bits.to_le_bytes());
            }
        }
        b
    }

    fn push_text(&mut self, s: &str) -> (u32, u32) {
        let start = self.text.len() as u32;
        self.text.extend_from_slice(s.as_bytes());
        (start, s.len() as u32)
    }

    /// The bytes of a span; empty when it is not inside the text.
    fn bytes(&self, start: u32, len: u32) -> &[u8] {
        self.text
            .get(start as usize..(start as usize).saturating_add(len as usize))
            .unwrap_or_default()
    }

    fn str(&self, start: u32, len: u32) -> &str {
        // The host only sends spans of UTF-8 inside the text; a bad one reads as empty, not
        // a trap.
        std::str::from_utf8(self.bytes(start, len)).unwrap_or_default()
    }

    /// The key span of field `i`.
    fn field_key(&self, i: usize) -> (u32, u32) {
        (
            u32_at(&self.field_keys, 2 * i),
            u32_at(&self.field_keys, 2 * i + 1),
        )
    }

    fn field_value(&self, i: usize) -> FieldRef<'_> {
        let bits = u64_at(&self.field_values, i);
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
        u64_at(&self.batch.timestamps, self.index) as Nanos
    }

    /// Tags as (key, value), sorted by key.
    pub fn tags(&self) -> impl Iterator<Item = (&'a str, &'a str)> + use<'a> {
        let batch = self.batch;
        rows(self.row[2], self.row[3], batch.tags.len() / 16).map(move |t| {
            let n = |j| u32_at(&batch.tags, 4 * t + j);
            (batch.str(n(0), n(1)), batch.str(n(2), n(3)))
        })
    }

    /// The value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&'a str> {
        self.tags().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Fields as (key, value).
    pub fn fields(&self) -> impl Iterator<Item = (&'a str, FieldRef<'a>)> + use<'a> {
        let batch = self.batch;
        self.field_rows().map(move |i| {
            let (start, len) = batch.field_key(i);
            (batch.str(start, len), batch.field_value(i))
        })
    }

    /// The value of field `key`.
    pub fn field(&self, key: &str) -> Option<FieldRef<'a>> {
        // Compares key bytes: no UTF-8 check of the keys it passes over.
        let batch = self.batch;
        self.field_rows()
            .find(|&i| {
                let (start, len) = batch.field_key(i);
                batch.bytes(start, len) == key.as_bytes()
            })
            .map(|i| batch.field_value(i))
    }

    fn field_rows(&self) -> std::ops::Range<usize> {
        rows(self.row[4], self.row[5], self.batch.field_kinds.len())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_batch() -> Batch {
        Batch::from_points(&[])
    }

    /// A column of little-endian u32.
    fn le32(numbers: &[u32]) -> Vec<u8> {
        numbers.iter().flat_map(|n| n.to_le_bytes()).collect()
    }

    /// A column of little-endian 64-bit values.
    fn le64(numbers: &[u64]) -> Vec<u8> {
        numbers.iter().flat_map(|n| n.to_le_bytes()).collect()
    }

    /// Points covering every field type, the integer extremes, non-ASCII strings and a
    /// point without tags.
    fn sample_points() -> Vec<Point> {
        vec![
            Point::new("cpu", 1_700_000_000_000_000_000)
                .with_tag("region", "eu")
                .with_tag("host", "web-1")
                .with_field("usage", 12.5)
                .with_field("count", i64::MIN)
                .with_field("max", i64::MAX)
                .with_field("bytes", u64::MAX)
                .with_field("up", true)
                .with_field("down", false)
                .with_field("note", "ok"),
            Point::new("température", i64::MIN)
                .with_tag("ville", "Zürich")
                .with_tag("城市", "東京")
                .with_field("°C", -0.0)
                .with_field("msg", "ünïcødé 🚀, with = and \\")
                .with_field("empty", ""),
            Point::new("", i64::MAX).with_field("v", 0u64),
            Point::new("mem", -1)
                .with_field("inf", f64::NEG_INFINITY)
                .with_field("tiny", f64::MIN_POSITIVE),
        ]
    }

    #[test]
    fn empty_batch_has_no_points() {
        let b = empty_batch();
        assert_eq!(b.len(), 0);
        assert!(b.is_empty());
        assert_eq!(b.points().len(), 0);
        assert_eq!(b.points().count(), 0);
        assert!(b.text.is_empty() && b.points.is_empty() && b.tags.is_empty());
        assert!(b.field_keys.is_empty() && b.field_kinds.is_empty());
        assert!(b.field_values.is_empty());
    }

    #[test]
    fn points_round_trip_through_a_batch() {
        let points = sample_points();
        let b = Batch::from_points(&points);
        assert_eq!(b.len(), points.len());
        assert!(!b.is_empty());
        assert_eq!(b.points().len(), points.len());
        let back: Vec<Point> = b.points().map(|p| p.to_point()).collect();
        assert_eq!(back, points);
        // -0.0 == 0.0, so check the sign survived too.
        let v = b.points().nth(1).and_then(|p| p.field("°C"));
        assert_eq!(
            v.and_then(|v| v.as_f64()).map(f64::to_bits),
            Some((-0.0f64).to_bits())
        );
    }

    #[test]
    fn tags_and_fields_outlive_their_point_view() {
        // The iterators borrow the batch, not the view: flat_map over views compiles.
        let b = Batch::from_points(&sample_points());
        let keys: Vec<&str> = b
            .points()
            .flat_map(|p| p.fields())
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys.first(), Some(&"usage"));
        let tags = b.points().flat_map(|p| p.tags()).count();
        assert_eq!(tags, b.points().map(|p| p.tags().count()).sum::<usize>());
    }

    #[test]
    fn nan_keeps_its_bits() {
        let nan = f64::from_bits(0x7ff8_0000_dead_beef);
        let b = Batch::from_points(&[Point::new("m", 0).with_field("v", nan)]);
        let Some(FieldRef::Float(v)) = b.points().next().and_then(|p| p.field("v")) else {
            panic!("a float field");
        };
        assert_eq!(v.to_bits(), nan.to_bits());
    }

    #[test]
    fn views_read_measurement_timestamp_tags_and_fields() {
        let b = Batch::from_points(&sample_points());
        let views: Vec<PointView<'_>> = b.points().collect();
        let cpu = views[0];
        assert_eq!(cpu.measurement(), "cpu");
        assert_eq!(cpu.timestamp(), 1_700_000_000_000_000_000);
        assert_eq!(
            cpu.tags().collect::<Vec<_>>(),
            [("host", "web-1"), ("region", "eu")]
        );
        assert_eq!(cpu.tag("region"), Some("eu"));
        assert_eq!(cpu.tag("ville"), None, "another point's tag");
        assert_eq!(cpu.field("usage"), Some(FieldRef::Float(12.5)));
        assert_eq!(cpu.field("count"), Some(FieldRef::Integer(i64::MIN)));
        assert_eq!(cpu.field("max"), Some(FieldRef::Integer(i64::MAX)));
        assert_eq!(cpu.field("bytes"), Some(FieldRef::Unsigned(u64::MAX)));
        assert_eq!(cpu.field("up"), Some(FieldRef::Boolean(true)));
        assert_eq!(cpu.field("down"), Some(FieldRef::Boolean(false)));
        assert_eq!(cpu.field("note"), Some(FieldRef::String("ok")));
        assert_eq!(cpu.field("msg"), None, "another point's field");
        let keys: Vec<&str> = cpu.fields().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            ["usage", "count", "max", "bytes", "up", "down", "note"]
        );

        let t = views[1];
        assert_eq!(t.measurement(), "température");
        assert_eq!(t.timestamp(), i64::MIN);
        assert_eq!(t.tag("ville"), Some("Zürich"));
        assert_eq!(t.tag("城市"), Some("東京"));
        assert_eq!(
            t.field("msg"),
            Some(FieldRef::String("ünïcødé 🚀, with = and \\"))
        );
        assert_eq!(t.field("empty"), Some(FieldRef::String("")));

        let unnamed = views[2];
        assert_eq!(unnamed.measurement(), "");
        assert_eq!(unnamed.timestamp(), i64::MAX);
        assert_eq!(unnamed.tags().count(), 0);
        assert_eq!(
            unnamed.fields().collect::<Vec<_>>(),
            [("v", FieldRef::Unsigned(0))]
        );
    }

    #[test]
    fn layout_is_what_the_wit_batch_record_describes() {
        // The host decodes nothing: it writes this layout (host/src/plugin/batch.rs), and the
        // views must read it. Byte offsets, not character offsets.
        let b = Batch::from_points(&[
            Point::new("é", 7)
                .with_tag("h", "a")
                .with_field("s", "ü")
                .with_field("n", -2i64),
            Point::new("m", 8).with_field("b", true),
        ]);
        assert_eq!(b.text, "éhasünmb".as_bytes());
        assert_eq!(b.points, le32(&[0, 2, 0, 1, 0, 2, 8, 1, 1, 0, 2, 1]));
        assert_eq!(b.timestamps, le64(&[7, 8]));
        assert_eq!(b.tags, le32(&[2, 1, 3, 1]));
        assert_eq!(b.field_keys, le32(&[4, 1, 7, 1, 9, 1]));
        assert_eq!(b.field_kinds, [STRING, INTEGER, BOOLEAN]);
        assert_eq!(b.field_values, le64(&[(5 << 32) | 2, u64::MAX - 1, 1]));
    }

    #[test]
    fn decodes_a_batch_whose_spans_share_text() {
        // The format only promises spans into `text`: a host may reuse one string for
        // repeated keys and values, and list fields of a point in any order of the text.
        let b = Batch {
            text: b"cpuhostvalue".to_vec(),
            points: le32(&[0, 3, 0, 1, 0, 2, 0, 3, 1, 1, 2, 1]),
            timestamps: le64(&[10, 20]),
            tags: le32(&[3, 4, 3, 4, 3, 4, 0, 3]),
            field_keys: le32(&[7, 5, 3, 4, 7, 5]),
            field_kinds: vec![FLOAT, STRING, INTEGER],
            field_values: le64(&[2.5f64.to_bits(), 7 << 32 | 5, (-3i64) as u64]),
        };
        let points: Vec<Point> = b.points().map(|p| p.to_point()).collect();
        assert_eq!(
            points,
            [
                Point::new("cpu", 10)
                    .with_tag("host", "host")
                    .with_field("value", 2.5)
                    .with_field("host", "value"),
                Point::new("cpu", 20)
                    .with_tag("host", "cpu")
                    .with_field("value", -3i64),
            ]
        );
    }

    #[test]
    fn malformed_batch_reads_as_empty_values_instead_of_trapping() {
        let b = Batch {
            text: "aé".as_bytes().to_vec(), // 'é' is bytes 1..3
            // Point 0: measurement past the text, tags past the tag list, two fields where
            // the field lists hold one. Point 1 has no row at all.
            points: le32(&[2, 5, 9, 1, 0, 2]),
            timestamps: le64(&[1, 2]),
            tags: vec![],
            field_keys: le32(&[0, 2]), // cuts 'é' in half
            field_kinds: vec![FLOAT],
            field_values: vec![1, 2, 3], // not even one whole value
        };
        let views: Vec<PointView<'_>> = b.points().collect();
        assert_eq!(views.len(), 2);
        let p = views[0];
        assert_eq!(p.measurement(), "");
        assert_eq!(p.timestamp(), 1);
        assert_eq!(p.tags().count(), 0);
        // Only field 0 has a kind: the count of 2 reads as the one row there is. Its key
        // cuts a character in half and its value is short: "" and float 0.
        assert_eq!(
            p.fields().collect::<Vec<_>>(),
            [("", FieldRef::Float(0.0))]
        );
        let q = views[1];
        assert_eq!((q.measurement(), q.timestamp()), ("", 2));
        assert_eq!((q.tags().count(), q.fields().count()), (0, 0));
    }

    #[test]
    fn unknown_field_kind_reads_as_float_and_bad_string_span_as_empty() {
        let b = Batch {
            text: b"mkx".to_vec(),
            points: le32(&[0, 1, 0, 0, 0, 2]),
            timestamps: le64(&[0]),
            tags: vec![],
            field_keys: le32(&[1, 1, 1, 1]),
            field_kinds: vec![9, STRING],
            field_values: le64(&[1.5f64.to_bits(), 2 << 32 | 100]),
        };
        let p = b.points().next().expect("one point");
        let fields: Vec<_> = p.fields().collect();
        assert_eq!(
            fields,
            [("k", FieldRef::Float(1.5)), ("k", FieldRef::String(""))]
        );
    }

    #[test]
    fn field_ref_as_f64_converts_numbers_only() {
        assert_eq!(FieldRef::Float(-1.25).as_f64(), Some(-1.25));
        assert_eq!(FieldRef::Integer(i64::MIN).as_f64(), Some(-(2f64.powi(63))));
        assert_eq!(FieldRef::Unsigned(u64::MAX).as_f64(), Some(2f64.powi(64)));
        assert_eq!(FieldRef::Boolean(true).as_f64(), None);
        assert_eq!(FieldRef::String("1.5").as_f64(), None);
    }

    #[test]
    fn field_ref_to_owned_keeps_variant_and_value() {
        assert_eq!(FieldRef::Float(0.5).to_owned(), FieldValue::Float(0.5));
        assert_eq!(
            FieldRef::Integer(i64::MAX).to_owned(),
            FieldValue::Integer(i64::MAX)
        );
        assert_eq!(
            FieldRef::Unsigned(u64::MAX).to_owned(),
            FieldValue::Unsigned(u64::MAX)
        );
        assert_eq!(
            FieldRef::Boolean(false).to_owned(),
            FieldValue::Boolean(false)
        );
        assert_eq!(
            FieldRef::String("東京").to_owned(),
            FieldValue::String("東京".into())
        );
    }
}
