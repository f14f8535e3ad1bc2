//! Key layout of the embedded store.
//!
//! A series key is its components, each length-prefixed (so a prefix of whole components is
//! a key prefix, and no value can forge a separator): tenant, measurement, field, tag
//! count, then each tag key and value. The series index maps it to a short numeric id; a
//! point key is that id plus the timestamp, both big-endian (the timestamp with its sign
//! bit flipped), so points of a series sort by time and keys stay 16 bytes whatever the
//! tags: the write path is dominated by key handling in the LSM tree.

use super::SeriesKey;
use crate::point::{FieldValue, Nanos, Point};
use crate::tenant::TenantId;

fn put(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn take<'a>(bytes: &mut &'a [u8]) -> Option<&'a str> {
    let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let s = std::str::from_utf8(bytes.get(4..4 + len)?).ok()?;
    *bytes = &bytes[4 + len..];
    Some(s)
}

/// Prefix of every key of `tenant` (and of one measurement and field, when given).
pub fn prefix(tenant: &TenantId, measurement: Option<&str>, field: Option<&str>) -> Vec<u8> {
    let mut out = Vec::new();
    put(&mut out, tenant.as_str());
    if let Some(m) = measurement {
        put(&mut out, m);
        if let Some(f) = field {
            put(&mut out, f);
        }
    }
    out
}

/// The key of a series of `tenant`.
pub fn series(tenant: &TenantId, s: &SeriesKey) -> Vec<u8> {
    encode_series(
        tenant,
        &s.measurement,
        &s.field,
        s.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )
}

/// The key of the series of `field` of `point`, without building a [`SeriesKey`].
pub fn series_of(tenant: &TenantId, point: &Point, field: &str) -> Vec<u8> {
    encode_series(
        tenant,
        &point.measurement,
        field,
        point
            .tags
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str())),
    )
}

fn encode_series<'a>(
    tenant: &TenantId,
    measurement: &str,
    field: &str,
    tags: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) -> Vec<u8> {
    let mut out = prefix(tenant, Some(measurement), Some(field));
    out.extend_from_slice(&(tags.len() as u32).to_be_bytes());
    for (k, v) in tags {
        put(&mut out, k);
        put(&mut out, v);
    }
    out
}

/// The key of a point: series id, then time.
pub fn point(series_id: u64, ts: Nanos) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&series_id.to_be_bytes());
    key[8..].copy_from_slice(&time(ts));
    key
}

/// Decodes a series key (without tenant check).
pub fn decode_series(mut bytes: &[u8]) -> Option<SeriesKey> {
    let b = &mut bytes;
    let _tenant = take(b)?;
    let measurement = take(b)?.to_owned();
    let field = take(b)?.to_owned();
    let n = u32::from_be_bytes(b.get(..4)?.try_into().ok()?);
    *b = &b[4..];
    let mut tags = Vec::with_capacity(n as usize);
    for _ in 0..n {
        tags.push((take(b)?.to_owned(), take(b)?.to_owned()));
    }
    b.is_empty().then_some(SeriesKey {
        measurement,
        field,
        tags,
    })
}

/// Timestamp bytes that sort like the signed value.
pub fn time(ts: Nanos) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
}

/// Decodes [`time`].
pub fn decode_time(bytes: &[u8]) -> Option<Nanos> {
    Some((u64::from_be_bytes(bytes.try_into().ok()?) ^ (1 << 63)) as Nanos)
}

/// A field value: one type byte, then the payload.
pub fn value(v: &FieldValue) -> Vec<u8> {
    let (tag, payload): (u8, Vec<u8>) = match v {
        FieldValue::Float(f) => (0, f.to_be_bytes().to_vec()),
        FieldValue::Integer(i) => (1, i.to_be_bytes().to_vec()),
        FieldValue::Unsigned(u) => (2, u.to_be_bytes().to_vec()),
        FieldValue::Boolean(b) => (3, vec![u8::from(*b)]),
        FieldValue::String(s) => (4, s.as_bytes().to_vec()),
    };
    let mut out = Vec::with_capacity(1 + payload.len());
    out.push(tag);
    out.extend_from_slice(&payload);
    out
}

/// Decodes [`value`].
pub fn decode_value(bytes: &[u8]) -> Option<FieldValue> {
    let (tag, p) = bytes.split_first()?;
    let eight = || -> Option<[u8; 8]> { p.try_into().ok() };
    Some(match tag {
        0 => FieldValue::Float(f64::from_be_bytes(eight()?)),
        1 => FieldValue::Integer(i64::from_be_bytes(eight()?)),
        2 => FieldValue::Unsigned(u64::from_be_bytes(eight()?)),
        3 => FieldValue::Boolean(*p.first()? != 0),
        4 => FieldValue::String(String::from_utf8(p.to_vec()).ok()?),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_keys_round_trip_and_tags_cannot_forge_components() {
        let t = TenantId::new("a");
        let s = SeriesKey {
            measurement: "cpu".into(),
            field: "usage".into(),
            tags: vec![("host".into(), "x\0\u{1}y".into())],
        };
        let key = series(&t, &s);
        assert_eq!(decode_series(&key), Some(s));
        assert!(key.starts_with(&prefix(&t, Some("cpu"), Some("usage"))));
        assert!(!key.starts_with(&prefix(&TenantId::new("ab"), None, None)));
    }

    #[test]
    fn times_sort_like_numbers_and_values_round_trip() {
        assert!(time(-5) < time(0) && time(0) < time(7) && time(7) < time(i64::MAX));
        assert_eq!(decode_time(&time(-5)), Some(-5));
        for v in [
            FieldValue::Float(1.5),
            FieldValue::Integer(-3),
            FieldValue::Unsigned(9),
            FieldValue::Boolean(true),
            FieldValue::String("s".into()),
        ] {
            assert_eq!(decode_value(&value(&v)), Some(v));
        }
    }
}
