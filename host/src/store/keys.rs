//! Key layout of the embedded store.
//!
//! A series key is its components, each length-prefixed (so a prefix of whole components is
//! a key prefix, and no value can forge a separator): tenant, measurement, field, tag
//! count, then each tag key and value. The series index maps it to a short numeric id; a
//! chunk key is that id, the time of the chunk's last point and the sync that wrote it, all
//! big-endian (the time with its sign bit flipped), so a series' chunks sort by time and
//! keys stay 24 bytes whatever the tags.
//!
//! A posting is a series under one of its tags: tenant, tag key and value (length-prefixed),
//! then the series key. A listing by tag reads the series of that tag, in the index's
//! order, without passing every series of the tenant.

use super::SeriesKey;
use crate::point::{Nanos, Point};
use crate::tenant::TenantId;

/// The longest key the storage engine (fjall's LSM tree) indexes: its keys are at most
/// `u16::MAX` bytes, and a longer one panics inside it.
pub const MAX_KEY_BYTES: usize = u16::MAX as usize;

/// The longest series key: a posting holds one and a tag of it, so at most twice its size.
pub const MAX_SERIES_KEY_BYTES: usize = MAX_KEY_BYTES / 2;

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

/// A tag as a key: its key and value, each length-prefixed (so no value can pass for
/// another tag).
pub fn tag(key: &str, value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len() + value.len());
    put(&mut out, key);
    put(&mut out, value);
    out
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
    let mut out = Vec::new();
    encode_series(
        &mut out,
        tenant,
        &s.measurement,
        &s.field,
        s.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    out
}

/// Puts the key of the series of `field` of `point` in `out` (reused across points: the
/// write path builds one per value).
pub fn series_of_into(out: &mut Vec<u8>, tenant: &TenantId, point: &Point, field: &str) {
    encode_series(
        out,
        tenant,
        &point.measurement,
        field,
        point
            .tags
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str())),
    );
}

fn encode_series<'a>(
    out: &mut Vec<u8>,
    tenant: &TenantId,
    measurement: &str,
    field: &str,
    tags: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) {
    out.clear();
    put(out, tenant.as_str());
    put(out, measurement);
    put(out, field);
    out.extend_from_slice(&(tags.len() as u32).to_be_bytes());
    for (k, v) in tags {
        put(out, k);
        put(out, v);
    }
}

/// The key of a chunk: series id, the time of its last point, then the sync sequence that
/// wrote it (so a chunk never overwrites another, and later syncs win on equal times).
pub fn chunk(series_id: u64, last: Nanos, seq: u64) -> [u8; 24] {
    let mut key = [0; 24];
    key[..8].copy_from_slice(&series_id.to_be_bytes());
    key[8..16].copy_from_slice(&time(last));
    key[16..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The time of the last point and the sync sequence of a chunk key.
pub fn chunk_time_seq(key: &[u8]) -> Option<(Nanos, u64)> {
    let time = decode_time(key.get(8..16)?)?;
    let seq = u64::from_be_bytes(key.get(16..24)?.try_into().ok()?);
    Some((time, seq))
}

/// The timestamp of [`time`]'s eight bytes; none for another length.
pub fn decode_time(bytes: &[u8]) -> Option<Nanos> {
    let raw = u64::from_be_bytes(bytes.try_into().ok()?);
    Some((raw ^ (1 << 63)) as Nanos)
}

/// The tenant component of a series key (or of a rollup key: its tier scope).
pub fn tenant(mut bytes: &[u8]) -> Option<&str> {
    take(&mut bytes)
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

/// The prefix of the postings of `tenant`'s tag `key`=`value`.
pub fn posting_prefix(tenant: &str, key: &str, value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + tenant.len() + key.len() + value.len());
    put(&mut out, tenant);
    put(&mut out, key);
    put(&mut out, value);
    out
}

/// The postings of the series whose index key is `series`: one per tag. None when the
/// bytes are not a series key.
pub fn postings(series: &[u8]) -> Option<Vec<Vec<u8>>> {
    let b = &mut &series[..];
    let tenant = take(b)?;
    take(b)?;
    take(b)?;
    let n = u32::from_be_bytes(b.get(..4)?.try_into().ok()?);
    *b = &b[4..];
    let mut out = Vec::new();
    for _ in 0..n {
        let mut posting = posting_prefix(tenant, take(b)?, take(b)?);
        posting.extend_from_slice(series);
        out.push(posting);
    }
    b.is_empty().then_some(out)
}

/// Timestamp bytes that sort like the signed value.
pub fn time(ts: Nanos) -> [u8; 8] {
    ((ts as u64) ^ (1 << 63)).to_be_bytes()
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
        assert_eq!(tenant(&key), Some("a"));
        assert!(key.starts_with(&prefix(&t, Some("cpu"), Some("usage"))));
        assert!(!key.starts_with(&prefix(&TenantId::new("ab"), None, None)));
    }

    #[test]
    fn chunk_keys_sort_by_series_then_time_then_sync() {
        assert!(time(-5) < time(0) && time(0) < time(7) && time(7) < time(i64::MAX));
        assert!(chunk(1, 5, 9) < chunk(1, 6, 0));
        assert!(chunk(1, 5, 1) < chunk(1, 5, 2));
        assert!(chunk(1, i64::MAX, u64::MAX) < chunk(2, i64::MIN, 0));
        assert_eq!(chunk_time_seq(&chunk(3, -1, 42)), Some((-1, 42)));
        assert_eq!(
            chunk_time_seq(&chunk(3, Nanos::MIN, 0)),
            Some((Nanos::MIN, 0))
        );
    }
}
