//! Chunks: up to [`MAX_POINTS`] points of one series within [`MAX_SPAN`], stored as one
//! entry. One LSM entry per point made the tree's per-entry work (memtable insert, journal,
//! flush, compaction) the bulk of the write path; a chunk pays it once per few hundred
//! points.
//!
//! The encoding is [`crate::format`]'s header (format version [`CHUNK_VERSION`]), then
//! postcard: the first timestamp, each point's distance from the previous one, and the
//! values as [`format::Value`]s. Times are sorted, so the distances are small varints.
//! Chunks of stores written before the format had a version (postcard of the WIT types, no
//! header) are read by [`decode_legacy`], and rewritten in their own format.

use serde::ser::{Serialize, Serializer};

use crate::format::{self, CHUNK_VERSION, FormatError, ValueOut};
use crate::point::{FieldValue, Nanos};

/// Most points in one chunk: bounds what a narrow query decodes beyond its range.
pub const MAX_POINTS: usize = 1_024;

/// Widest time span of one chunk (first to last point): a read of `[start, end)` finds every
/// chunk that can hold a point of it among those whose last point is in
/// `[start, end + MAX_SPAN]`.
pub const MAX_SPAN: Nanos = 3_600 * 1_000_000_000;

/// A point of a series: its time and value.
pub type Sample = (Nanos, FieldValue);

#[derive(serde::Serialize)]
struct ChunkRef<V> {
    first: Nanos,
    gaps: Vec<u64>,
    values: V,
}

/// The values of borrowed samples, as stored values, without copying them.
struct Values<'a>(&'a [&'a Sample]);

impl Serialize for Values<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(_, v)| ValueOut(v)))
    }
}

/// The values of borrowed samples as the WIT types serialize (the legacy format).
struct LegacyValues<'a>(&'a [&'a Sample]);

impl Serialize for LegacyValues<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(_, v)| v))
    }
}

#[derive(serde::Deserialize)]
struct ChunkOwned<V> {
    first: Nanos,
    gaps: Vec<u64>,
    values: Vec<V>,
}

/// Sorts `samples` by time, keeping only the last written of equal times (a rewrite of a
/// point replaces it), and cuts them into chunks.
pub fn cut(samples: &[Sample]) -> Vec<Vec<&Sample>> {
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    // Stable: equal times stay in write order, so the last of them is the newest.
    sorted.sort_by_key(|(ts, _)| *ts);
    let mut chunks: Vec<Vec<&Sample>> = Vec::new();
    for (i, sample) in sorted.iter().enumerate() {
        if sorted.get(i + 1).is_some_and(|next| next.0 == sample.0) {
            continue;
        }
        match chunks.last_mut() {
            Some(chunk)
                if chunk.len() < MAX_POINTS && sample.0.saturating_sub(chunk[0].0) <= MAX_SPAN =>
            {
                chunk.push(sample);
            }
            _ => chunks.push(vec![sample]),
        }
    }
    chunks
}

/// Gaps between the sorted times of `chunk`, from its first.
fn gaps(chunk: &[&Sample]) -> (Nanos, Vec<u64>) {
    let first = chunk.first().map_or(0, |(ts, _)| *ts);
    let mut previous = first;
    let gaps = chunk
        .iter()
        .map(|(ts, _)| {
            let gap = ts.abs_diff(previous);
            previous = *ts;
            gap
        })
        .collect();
    (first, gaps)
}

/// Encodes one chunk, as [`cut`] made it (sorted, non-empty).
pub fn encode(chunk: &[&Sample]) -> Vec<u8> {
    let (first, gaps) = gaps(chunk);
    let chunk = ChunkRef {
        first,
        gaps,
        values: Values(chunk),
    };
    // Serializing into a Vec can't fail for these types (no maps, no non-string keys).
    postcard::to_extend(&chunk, format::header(CHUNK_VERSION)).unwrap_or_default()
}

/// Encodes one chunk in the legacy format, for rewriting a legacy chunk in place.
pub fn encode_legacy(chunk: &[&Sample]) -> Vec<u8> {
    let (first, gaps) = gaps(chunk);
    let chunk = ChunkRef {
        first,
        gaps,
        values: LegacyValues(chunk),
    };
    postcard::to_allocvec(&chunk).unwrap_or_default()
}

/// Decodes [`encode`].
///
/// # Errors
/// Another version, no header, or bytes that are not a chunk.
pub fn decode(bytes: &[u8]) -> Result<Vec<Sample>, FormatError> {
    const WHAT: &str = "chunk";
    let body = format::body(WHAT, bytes, CHUNK_VERSION)?;
    let chunk: ChunkOwned<format::Value> =
        postcard::from_bytes(body).map_err(|e| FormatError::Decode {
            what: WHAT,
            message: e.to_string(),
        })?;
    times(chunk.first, chunk.gaps, chunk.values).ok_or(FormatError::Decode {
        what: WHAT,
        message: "gaps and values disagree, or times pass i64::MAX".into(),
    })
}

/// Decodes [`encode_legacy`]; none when the bytes are not a chunk.
pub fn decode_legacy(bytes: &[u8]) -> Option<Vec<Sample>> {
    let chunk: ChunkOwned<FieldValue> = postcard::from_bytes(bytes).ok()?;
    times(chunk.first, chunk.gaps, chunk.values)
}

/// Samples from a first time, the gaps between times, and values.
fn times<V: Into<FieldValue>>(first: Nanos, gaps: Vec<u64>, values: Vec<V>) -> Option<Vec<Sample>> {
    if gaps.len() != values.len() {
        return None;
    }
    let mut ts = first;
    gaps.into_iter()
        .zip(values)
        .map(|(gap, value)| {
            // Gaps of a real chunk never pass i64::MAX; bytes whose gaps do are not one.
            ts = ts.checked_add_unsigned(gap)?;
            Some((ts, value.into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_sorts_keeps_the_last_rewrite_and_bounds_chunks() {
        let mut samples: Vec<Sample> = vec![
            (30, FieldValue::Float(3.0)),
            (10, FieldValue::Float(1.0)),
            (30, FieldValue::Float(3.5)),
            (-5, FieldValue::String("neg".into())),
        ];
        let chunks = cut(&samples);
        assert_eq!(chunks.len(), 1);
        let times: Vec<_> = chunks[0].iter().map(|(ts, v)| (*ts, v.clone())).collect();
        assert_eq!(
            times,
            vec![
                (-5, FieldValue::String("neg".into())),
                (10, FieldValue::Float(1.0)),
                (30, FieldValue::Float(3.5)),
            ]
        );

        // A point past the span, and more than MAX_POINTS points, start new chunks.
        samples.push((30 + MAX_SPAN, FieldValue::Boolean(true)));
        samples.extend((0..=MAX_POINTS as i64).map(|i| (3 * MAX_SPAN + i, FieldValue::Integer(i))));
        let sizes: Vec<_> = cut(&samples).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![3, 1, MAX_POINTS, 1]);
        for chunk in cut(&samples) {
            assert!(chunk.last().expect("non-empty").0 - chunk[0].0 <= MAX_SPAN);
        }
    }

    #[test]
    fn chunks_round_trip_every_value_type_and_reject_garbage() {
        let samples: Vec<Sample> = vec![
            (i64::MIN + 1, FieldValue::Unsigned(u64::MAX)),
            (-1, FieldValue::Integer(-7)),
            (0, FieldValue::Float(f64::NAN.copysign(-1.0))),
            (1, FieldValue::Boolean(false)),
            (i64::MAX, FieldValue::String("é\n".into())),
        ];
        let chunks = cut(&samples);
        assert_eq!(
            chunks.len(),
            3,
            "the extreme times are more than a span apart"
        );
        let decoded: Vec<Sample> = chunks
            .iter()
            .flat_map(|c| decode(&encode(c)).expect("decodes"))
            .collect();
        assert_eq!(decoded.len(), samples.len());
        for ((ts, v), (ts2, v2)) in decoded.iter().zip(&samples) {
            assert_eq!(ts, ts2);
            match (v, v2) {
                (FieldValue::Float(a), FieldValue::Float(b)) => {
                    assert_eq!(a.to_bits(), b.to_bits());
                }
                _ => assert_eq!(v, v2),
            }
        }
        assert!(matches!(
            decode(&[0xff, 0xff]),
            Err(FormatError::NoHeader { .. })
        ));
        let bytes = encode(&chunks[1]);
        assert!(
            matches!(
                decode(&bytes[..bytes.len() - 1]),
                Err(FormatError::Decode { .. })
            ),
            "truncated"
        );
        let mut newer = bytes.clone();
        newer[1] = CHUNK_VERSION + 1;
        assert!(matches!(
            decode(&newer),
            Err(FormatError::UnknownVersion { .. })
        ));
        // The legacy format reads and writes the same samples.
        for chunk in &chunks {
            let again = decode_legacy(&encode_legacy(chunk)).expect("legacy");
            assert_eq!(again.len(), chunk.len());
        }
        // Pinned bytes: header, first time, gaps, then values by their stored variant.
        let pinned: Vec<Sample> =
            vec![(1, FieldValue::Integer(-1)), (3, FieldValue::Boolean(true))];
        let refs: Vec<&Sample> = pinned.iter().collect();
        assert_eq!(encode(&refs), [b'S', 1, 2, 2, 0, 2, 2, 1, 1, 3, 1]);
    }
}
