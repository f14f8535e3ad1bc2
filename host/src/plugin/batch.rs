//! The columnar batch of the plugin ABI (`batch` in `wit/plugin.wit`): every string of a
//! batch in one text, points, tags and fields as flat lists of numbers. Lists of numbers
//! cross into a plugin as one copy each, so a call costs a few copies per batch instead of
//! guest allocations per point.

use super::bindings::types::Batch;
use crate::point::{FieldValue, Point};

/// Field type codes of `field-kinds`.
const FLOAT: u8 = 0;
const INTEGER: u8 = 1;
const UNSIGNED: u8 = 2;
const BOOLEAN: u8 = 3;
const STRING: u8 = 4;

/// Offsets of a batch fit in u32: request bodies are bounded far below 4 GiB.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("batch offsets stay below 4 GiB: request bodies are bounded")
}

/// Appends `s` to `text`; its (start, length).
fn span(text: &mut String, s: &str) -> (u32, u32) {
    let start = to_u32(text.len());
    text.push_str(s);
    (start, to_u32(s.len()))
}

/// Encodes `points` for a filter or transform call.
pub fn encode(points: &[Point]) -> Batch {
    let n = points.len();
    // A Telegraf-like point has ~60 bytes of strings, two tags and two fields: reserving
    // that avoids regrowing per point.
    let mut b = Batch {
        text: String::with_capacity(n * 64),
        points: Vec::with_capacity(n * 6),
        timestamps: Vec::with_capacity(n),
        tags: Vec::with_capacity(n * 8),
        field_keys: Vec::with_capacity(n * 4),
        field_kinds: Vec::with_capacity(n * 2),
        field_values: Vec::with_capacity(n * 2),
    };
    for p in points {
        let (m_start, m_len) = span(&mut b.text, &p.measurement);
        b.points.extend_from_slice(&[
            m_start,
            m_len,
            to_u32(b.tags.len() / 4),
            to_u32(p.tags.len()),
            to_u32(b.field_kinds.len()),
            to_u32(p.fields.len()),
        ]);
        b.timestamps.push(p.timestamp);
        for t in &p.tags {
            let (ks, kl) = span(&mut b.text, &t.key);
            let (vs, vl) = span(&mut b.text, &t.value);
            b.tags.extend_from_slice(&[ks, kl, vs, vl]);
        }
        for f in &p.fields {
            let (ks, kl) = span(&mut b.text, &f.key);
            b.field_keys.extend_from_slice(&[ks, kl]);
            let (kind, bits) = match &f.value {
                FieldValue::Float(v) => (FLOAT, v.to_bits()),
                FieldValue::Integer(v) => (INTEGER, *v as u64),
                FieldValue::Unsigned(v) => (UNSIGNED, *v),
                FieldValue::Boolean(v) => (BOOLEAN, u64::from(*v)),
                FieldValue::String(s) => {
                    let (start, len) = span(&mut b.text, s);
                    (STRING, (u64::from(start) << 32) | u64::from(len))
                }
            };
            b.field_kinds.push(kind);
            b.field_values.push(bits);
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::{Precision, parse};

    #[test]
    fn numbers_point_at_the_strings_and_values_of_each_point() {
        let (points, _) = parse(
            "cpu,host=a u=1.5,s=\"x\",n=-2i 7\nmem free=3u 8\n",
            Precision::Nanoseconds,
            0,
        );
        let b = encode(&points);
        let s = |start: u32, len: u32| &b.text[start as usize..(start + len) as usize];
        assert_eq!(b.points.len(), 12);
        assert_eq!(s(b.points[6], b.points[7]), "mem");
        assert_eq!(
            &b.points[8..12],
            &[1, 0, 3, 1],
            "no tags; its field is the 4th"
        );
        assert_eq!(
            (s(b.tags[0], b.tags[1]), s(b.tags[2], b.tags[3])),
            ("host", "a")
        );
        assert_eq!(b.timestamps, [7, 8]);
        let field = |key: &str| {
            let i = (0..4)
                .find(|i| s(b.field_keys[2 * i], b.field_keys[2 * i + 1]) == key)
                .expect("field");
            (b.field_kinds[i], b.field_values[i])
        };
        assert_eq!(field("u"), (FLOAT, 1.5f64.to_bits()));
        assert_eq!(field("n"), (INTEGER, -2i64 as u64));
        assert_eq!(field("free"), (UNSIGNED, 3));
        let (kind, bits) = field("s");
        assert_eq!((kind, s((bits >> 32) as u32, bits as u32)), (STRING, "x"));
    }
}
