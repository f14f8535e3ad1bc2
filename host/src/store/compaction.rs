//! Compaction of the embedded store's chunks: what of a series' run of chunks to rewrite,
//! and as what.
//!
//! A sync writes each series' new points as chunks of their own, so a series written a
//! point per second by a service syncing once a second gets a one-point chunk per sync
//! (20 bytes each, where a full chunk of the same series costs about 1.2 a point), and a
//! replay after a crash writes points again that an earlier sync already holds. Compaction
//! reads a series' chunks in key order (last time, then sync sequence), merges a group of
//! them (the latest sync winning on equal times, as reads do) and cuts the result afresh
//! with [`chunk::cut`]: full chunks, duplicates dropped.
//!
//! A group is rewritten as one only when no chunk outside it holds a time inside its span:
//! reads rank the samples of one time by sync sequence, and a merged chunk takes the
//! highest sequence of its group, so an outside chunk ranked between the group's would
//! change rank against some of its points. This module is the pure part (plans over
//! decoded chunks); the store reads, locks and commits.

use std::ops::Range;

use super::chunk::{self, MAX_SPAN, Sample};
use crate::point::Nanos;

/// Chunks of fewer points than this are worth merging: below it a chunk's fixed cost (its
/// key, the encoder's headers: some 30 bytes) is more than a tenth of a byte a point, and
/// merging bigger ones rewrites much to save little.
const SMALL: usize = chunk::MAX_POINTS / 4;

/// A chunk as stored: its key, the sync sequence that wrote it, and its points (sorted).
#[derive(Debug, Clone)]
pub struct Stored {
    /// The chunk's key in the store.
    pub key: Vec<u8>,
    /// The sync sequence in the key.
    pub seq: u64,
    /// Its points, in time order.
    pub samples: Vec<Sample>,
    /// Whether it is in the format of releases before chunks were versioned: such chunks
    /// are read, never merged (their sequences predate the versioned format's).
    pub legacy: bool,
}

impl Stored {
    fn first(&self) -> Nanos {
        self.samples.first().map_or(Nanos::MAX, |s| s.0)
    }

    fn last(&self) -> Nanos {
        self.samples.last().map_or(Nanos::MIN, |s| s.0)
    }
}

/// How many leading chunks of `window` (consecutive chunks of one series in key order,
/// the first starting after every chunk before the window ends) form a group no later
/// chunk overlaps. `complete` says the window reaches the series' last chunk; otherwise a
/// chunk after it (ending no earlier than the window's last) may start up to [`MAX_SPAN`]
/// before its end, so only groups ending before that are known to be clear. None when no
/// prefix qualifies (read a wider window).
pub fn clear_prefix(window: &[Stored], complete: bool) -> Option<usize> {
    let n = window.len();
    if n == 0 {
        return None;
    }
    // The earliest start among chunks from i on.
    let mut later_first = vec![Nanos::MAX; n + 1];
    for i in (0..n).rev() {
        later_first[i] = later_first[i + 1].min(window[i].first());
    }
    let unseen_from = if complete {
        Nanos::MAX
    } else {
        window[n - 1].last().saturating_sub(MAX_SPAN)
    };
    // The latest end among chunks before k.
    let mut end = vec![Nanos::MIN; n + 1];
    for k in 1..=n {
        end[k] = end[k - 1].max(window[k - 1].last());
    }
    // The longest clear prefix: the most merged at once.
    (1..=n)
        .rev()
        .find(|&k| end[k] < later_first[k] && end[k] < unseen_from)
}

/// The earliest and the latest time in `chunks`.
pub fn span(chunks: &[Stored]) -> (Nanos, Nanos) {
    let first = chunks.iter().map(Stored::first).min().unwrap_or(Nanos::MAX);
    let last = chunks.iter().map(Stored::last).max().unwrap_or(Nanos::MIN);
    (first, last)
}

/// A group's rewrite: the chunks to write (each a run of `samples`), which of the
/// group's chunks to delete, and how many duplicate points it drops.
#[derive(Debug, Default)]
pub struct Rewrite {
    /// The group's points after merging, sorted, one per time.
    pub samples: Vec<Sample>,
    /// The new chunks, as ranges of `samples`.
    pub chunks: Vec<Range<usize>>,
    /// Indices into the group of the chunks the new ones replace.
    pub replaced: Vec<usize>,
    /// Points dropped because a later sync held the same time.
    pub duplicates: usize,
}

/// The rewrite of `group` (a clear prefix, see [`clear_prefix`]); none when it would gain
/// nothing (no fewer chunks, no duplicates) or holds a legacy chunk.
pub fn rewrite(group: &[Stored]) -> Option<Rewrite> {
    if group.len() < 2 || group.iter().any(|c| c.legacy) {
        return None;
    }
    // (time, sequence, value): sorted by both, the last of each time is the newest sync's.
    let mut all: Vec<(Nanos, u64, &Sample)> = group
        .iter()
        .flat_map(|c| c.samples.iter().map(move |s| (s.0, c.seq, s)))
        .collect();
    let total = all.len();
    all.sort_by_key(|(ts, seq, _)| (*ts, *seq));
    let mut samples: Vec<Sample> = Vec::with_capacity(total);
    for (i, (ts, _, sample)) in all.iter().enumerate() {
        if all.get(i + 1).is_none_or(|next| next.0 != *ts) {
            samples.push((*sample).clone());
        }
    }
    let duplicates = total - samples.len();
    let cuts = cut_ranges(&samples);
    let small = group.iter().filter(|c| c.samples.len() < SMALL).count();
    if duplicates == 0 && (cuts.len() >= group.len() || small < 2) {
        return None;
    }
    // A chunk that comes out as it went in (same span and size, overlapping no other of
    // the group) is left where it is.
    let untouched = |c: &Stored, r: &Range<usize>| {
        r.len() == c.samples.len()
            && samples[r.start].0 == c.first()
            && samples[r.end - 1].0 == c.last()
    };
    let overlaps = |i: usize| {
        group.iter().enumerate().any(|(j, other)| {
            j != i && other.first() <= group[i].last() && group[i].first() <= other.last()
        })
    };
    let mut chunks = Vec::new();
    let mut kept = vec![false; group.len()];
    for r in cuts {
        let same = (0..group.len()).find(|&i| !kept[i] && untouched(&group[i], &r));
        match same.filter(|&i| !overlaps(i)) {
            Some(i) => kept[i] = true,
            None => chunks.push(r),
        }
    }
    let replaced = (0..group.len()).filter(|&i| !kept[i]).collect();
    Some(Rewrite {
        samples,
        chunks,
        replaced,
        duplicates,
    })
}

/// [`chunk::cut`]'s chunks of sorted, distinct `samples`, as ranges of it.
fn cut_ranges(samples: &[Sample]) -> Vec<Range<usize>> {
    let mut start = 0;
    chunk::cut(samples)
        .iter()
        .map(|c| {
            let r = start..start + c.len();
            start = r.end;
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::FieldValue;

    fn stored(seq: u64, times: impl IntoIterator<Item = Nanos>, value: f64) -> Stored {
        let samples: Vec<Sample> = times
            .into_iter()
            .map(|t| (t, FieldValue::Float(value)))
            .collect();
        let last = samples.last().map_or(0, |s| s.0);
        Stored {
            key: super::super::keys::chunk(1, last, seq).to_vec(),
            seq,
            samples,
            legacy: false,
        }
    }

    #[test]
    fn one_point_chunks_merge_into_one() {
        let group: Vec<Stored> = (0..10).map(|i| stored(i, [i as Nanos * 10], 1.0)).collect();
        let r = rewrite(&group).expect("a rewrite");
        assert_eq!(r.chunks, vec![0..10]);
        assert_eq!(r.replaced, (0..10).collect::<Vec<_>>());
        assert_eq!(r.duplicates, 0);
    }

    #[test]
    fn the_latest_sync_wins_and_duplicates_go() {
        // Sync 1 wrote 0..5 with 1.0; a replay (sync 2) wrote 3..8 with 2.0.
        let group = vec![stored(1, 0..5, 1.0), stored(2, 3..8, 2.0)];
        let r = rewrite(&group).expect("a rewrite");
        assert_eq!(r.duplicates, 2);
        let values: Vec<(Nanos, f64)> = r
            .samples
            .iter()
            .map(|(t, v)| (*t, v.as_f64().expect("float")))
            .collect();
        let want: Vec<(Nanos, f64)> = (0..8).map(|t| (t, if t < 3 { 1.0 } else { 2.0 })).collect();
        assert_eq!(values, want);
    }

    #[test]
    fn full_chunks_are_left_alone() {
        let full = |i: i64| {
            stored(
                i as u64,
                (0..chunk::MAX_POINTS as i64).map(move |t| i * 10_000 + t),
                1.0,
            )
        };
        // Chunks of a few hundred points are not worth a rewrite.
        let big = |i: i64| stored(i as u64, (0..300).map(move |t| i * 1_000 + t), 1.0);
        assert!(rewrite(&[big(0), big(1), big(2)]).is_none());
        // Two full chunks and a tail of two small ones: only the tail is rewritten.
        let group = vec![
            full(0),
            full(1),
            stored(2, [30_000], 1.0),
            stored(3, [30_001], 1.0),
        ];
        let r = rewrite(&group).expect("a rewrite");
        assert_eq!(r.replaced, vec![2, 3]);
        assert_eq!(r.chunks.len(), 1);
        assert_eq!(r.samples[r.chunks[0].clone()].len(), 2);
        // Nothing to gain from full chunks alone.
        assert!(rewrite(&[full(0), full(1)]).is_none());
    }

    #[test]
    fn legacy_chunks_are_never_merged() {
        let mut old = stored(0, [0], 1.0);
        old.legacy = true;
        assert!(rewrite(&[old, stored(1, [1], 1.0)]).is_none());
    }

    #[test]
    fn a_group_ends_where_no_later_chunk_starts_inside_it() {
        // Chunk 2 ends last but starts at 5, inside chunk 1's span: 0..=2 are one group.
        let window = vec![
            stored(1, [0, 1], 1.0),
            stored(2, [2, 10], 1.0),
            stored(3, [5, 20], 1.0),
        ];
        assert_eq!(clear_prefix(&window, true), Some(3));
        let window = vec![stored(1, [0, 1], 1.0), stored(2, [3, 4], 1.0)];
        assert_eq!(clear_prefix(&window, true), Some(2));
        // Not complete: a chunk after the window may start an hour before its end.
        let hour = MAX_SPAN;
        let window = vec![
            stored(1, [0], 1.0),
            stored(2, [hour], 1.0),
            stored(3, [hour + 1], 1.0),
        ];
        assert_eq!(clear_prefix(&window, false), Some(1));
        assert_eq!(clear_prefix(&window[1..], false), None);
    }
}
