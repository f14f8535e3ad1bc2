//! Group keys: what a window aggregates over, encoded as compact bytes (measurement, the
//! grouping tags, field; each length-prefixed, so no value can forge a boundary). The engine
//! keys its state by these bytes and decodes them only when it emits.

use serde::{Deserialize, Serialize};

use crate::point::Point;

/// A window's group, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Group {
    /// Measurement.
    pub measurement: String,
    /// The grouping tags (every tag of the series when the rule has no `group_by`),
    /// sorted by key.
    pub tags: Vec<(String, String)>,
    /// Field.
    pub field: String,
}

fn put(out: &mut Vec<u8>, s: &str) {
    // Names are bounded by the ingest limits, far below 4 GiB.
    out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn take<'a>(bytes: &mut &'a [u8]) -> Option<&'a str> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let s = std::str::from_utf8(bytes.get(4..4 + len)?).ok()?;
    *bytes = &bytes[4 + len..];
    Some(s)
}

/// Puts the part of `point`'s group key before the field in `out` (cleared first): the
/// measurement and the tags of `group_by` it has (all its tags without `group_by`).
/// Returns its length, for [`with_field`].
pub fn prefix(out: &mut Vec<u8>, point: &Point, group_by: Option<&[String]>) -> usize {
    out.clear();
    put(out, &point.measurement);
    let count_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let mut count = 0u32;
    for tag in &point.tags {
        if group_by.is_none_or(|keys| keys.binary_search_by(|k| k.as_str().cmp(&tag.key)).is_ok()) {
            put(out, &tag.key);
            put(out, &tag.value);
            count += 1;
        }
    }
    out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
    out.len()
}

/// Completes a key [`prefix`] left in `out` (of length `prefix`) with `field`.
pub fn with_field(out: &mut Vec<u8>, prefix: usize, field: &str) {
    out.truncate(prefix);
    put(out, field);
}

/// The group of a key; none for bytes no [`prefix`] + [`with_field`] wrote.
pub fn decode(mut key: &[u8]) -> Option<Group> {
    let b = &mut key;
    let measurement = take(b)?.to_owned();
    let count = u32::from_le_bytes(b.get(..4)?.try_into().ok()?);
    *b = &b[4..];
    let mut tags = Vec::new();
    for _ in 0..count {
        tags.push((take(b)?.to_owned(), take(b)?.to_owned()));
    }
    let field = take(b)?.to_owned();
    b.is_empty().then_some(Group {
        measurement,
        tags,
        field,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::{Precision, parse};

    #[test]
    fn keys_keep_the_grouping_tags_and_decode_back() {
        let point = &parse("cpu,dc=x,host=a,rack=9 u=1 1", Precision::Nanoseconds, 0).0[0];
        let mut key = Vec::new();
        let at = prefix(&mut key, point, None);
        with_field(&mut key, at, "u");
        let all = decode(&key).expect("decode");
        assert_eq!(all.measurement, "cpu");
        assert_eq!(all.field, "u");
        assert_eq!(all.tags.len(), 3);
        let by = ["host".to_owned(), "zone".to_owned()];
        let at = prefix(&mut key, point, Some(&by));
        with_field(&mut key, at, "other");
        assert_eq!(
            decode(&key),
            Some(Group {
                measurement: "cpu".into(),
                tags: vec![("host".into(), "a".into())],
                field: "other".into()
            })
        );
        assert_eq!(decode(&key[..key.len() - 1]), None);
        // A value can't pass for a boundary: these two series get different keys.
        let a = &parse("m,t=a\\,u=b f=1 1", Precision::Nanoseconds, 0).0[0];
        let b = &parse("m,t=a,u=b f=1 1", Precision::Nanoseconds, 0).0[0];
        let (mut ka, mut kb) = (Vec::new(), Vec::new());
        prefix(&mut ka, a, None);
        prefix(&mut kb, b, None);
        assert_ne!(ka, kb);
    }
}
