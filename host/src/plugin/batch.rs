//! The columnar batch of the plugin ABI: every string of a batch in one text, points, tags
//! and fields as flat rows of spans. Crossing into a plugin then costs four list copies per
//! batch instead of several guest allocations per point.

use super::bindings::types::{Batch, FieldRow, PointRow, Span, TagRow, ValueCell};
use crate::point::{FieldValue, Point};

/// Appends strings to the text and answers their spans.
struct Text(String);

impl Text {
    fn span(&mut self, s: &str) -> Span {
        let start = self.0.len();
        self.0.push_str(s);
        Span {
            start: to_u32(start),
            len: to_u32(s.len()),
        }
    }
}

/// Offsets of a batch fit in u32: request bodies are bounded far below 4 GiB.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("batch offsets stay below 4 GiB: request bodies are bounded")
}

/// Encodes `points` for a filter or transform call.
pub fn encode(points: &[Point]) -> Batch {
    // A Telegraf-like point has ~60 bytes of strings; reserving avoids regrowing per point.
    let mut text = Text(String::with_capacity(points.len() * 64));
    let mut rows = Vec::with_capacity(points.len());
    let mut tags = Vec::with_capacity(points.len() * 2);
    let mut fields = Vec::with_capacity(points.len() * 2);
    for p in points {
        let measurement = text.span(&p.measurement);
        let first_tag = tags.len();
        for t in &p.tags {
            tags.push(TagRow {
                key: text.span(&t.key),
                value: text.span(&t.value),
            });
        }
        let first_field = fields.len();
        for f in &p.fields {
            let value = match &f.value {
                FieldValue::Float(v) => ValueCell::Float(*v),
                FieldValue::Integer(v) => ValueCell::Integer(*v),
                FieldValue::Unsigned(v) => ValueCell::Unsigned(*v),
                FieldValue::Boolean(v) => ValueCell::Boolean(*v),
                FieldValue::String(s) => ValueCell::String(text.span(s)),
            };
            fields.push(FieldRow {
                key: text.span(&f.key),
                value,
            });
        }
        rows.push(PointRow {
            measurement,
            tags: Span {
                start: to_u32(first_tag),
                len: to_u32(p.tags.len()),
            },
            fields: Span {
                start: to_u32(first_field),
                len: to_u32(p.fields.len()),
            },
            timestamp: p.timestamp,
        });
    }
    Batch {
        text: text.0,
        points: rows,
        tags,
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::{Precision, parse};

    #[test]
    fn spans_point_at_the_strings_of_each_point() {
        let (points, _) = parse(
            "cpu,host=a u=1.5,s=\"x\" 7\nmem free=3i 8\n",
            Precision::Nanoseconds,
            0,
        );
        let b = encode(&points);
        let s = |sp: &Span| &b.text[sp.start as usize..(sp.start + sp.len) as usize];
        assert_eq!(b.points.len(), 2);
        assert_eq!(s(&b.points[1].measurement), "mem");
        let t = &b.tags[b.points[0].tags.start as usize];
        assert_eq!((s(&t.key), s(&t.value)), ("host", "a"));
        assert_eq!(b.points[1].fields, Span { start: 2, len: 1 });
        match &b.fields[1].value {
            ValueCell::String(sp) => assert_eq!(s(sp), "x"),
            other => panic!("{other:?}"),
        }
        assert_eq!(b.points[1].timestamp, 8);
    }
}
