//! The head: points written since the last sync, per series id, in write order. Queryable
//! at once; a sync cuts it into chunks and writes them durably. Until then the transport
//! holds the points (offsets are committed only after a sync), so losing the head in a
//! crash loses nothing.

use std::ops::Range;

use super::chunk::Sample;
use super::{Reach, Through};
use crate::point::Nanos;

/// Samples per series id, and how far into each transport partition they reach.
#[derive(Default, Clone)]
pub struct Head {
    by_series: foldhash::HashMap<u64, Vec<Sample>>,
    len: usize,
    through: Reach,
}

impl Head {
    /// Adds samples of series `id`, in order: one lookup for a run of them (a
    /// remote-written series' samples), where a lookup and a push each were 7% of its
    /// ingest (perf, the bench's remote-write round).
    /// None adds nothing: not even the series, which [`Head::has`] would then tell.
    pub fn extend(&mut self, id: u64, samples: impl ExactSizeIterator<Item = Sample>) {
        if samples.len() == 0 {
            return;
        }
        self.len += samples.len();
        self.by_series.entry(id).or_default().extend(samples);
    }

    /// Notes that the samples reach `through` (offsets only grow).
    pub fn reach(&mut self, through: &Through) {
        self.through.note(through);
    }

    /// How far into each partition and lane the samples reach.
    pub fn through(&self) -> &Reach {
        &self.through
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no samples and no offsets to make durable.
    pub fn is_empty(&self) -> bool {
        self.len == 0 && self.through.is_empty()
    }

    /// Whether series `id` has samples here.
    pub fn has(&self, id: u64) -> bool {
        self.by_series.contains_key(&id)
    }

    /// Samples of series `id` in `range`, in write order.
    pub fn range(&self, id: u64, range: &Range<Nanos>) -> impl Iterator<Item = &Sample> {
        self.by_series
            .get(&id)
            .into_iter()
            .flatten()
            .filter(move |(ts, _)| range.contains(ts))
    }

    /// Every series and its samples.
    pub fn series(&self) -> impl Iterator<Item = (u64, &[Sample])> {
        self.by_series.iter().map(|(id, s)| (*id, s.as_slice()))
    }

    /// Removes samples of series `id` older than `before`; returns how many.
    pub fn expire(&mut self, id: u64, before: Nanos) -> u64 {
        let Some(samples) = self.by_series.get_mut(&id) else {
            return 0;
        };
        let was = samples.len();
        samples.retain(|(ts, _)| *ts >= before);
        let removed = was - samples.len();
        if samples.is_empty() {
            self.by_series.remove(&id);
        }
        self.len -= removed;
        removed as u64
    }

    /// Puts `older` (a head whose sync failed) back in front of this one's samples, so the
    /// next sync writes both and newer writes still win.
    pub fn absorb(&mut self, older: Head) {
        for (id, mut samples) in older.by_series {
            let newer = self.by_series.entry(id).or_default();
            samples.append(newer);
            *newer = samples;
        }
        self.len += older.len;
        self.through.absorb(&older.through);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::point::FieldValue;

    #[test]
    fn absorb_keeps_older_samples_first_and_expire_counts() {
        let mut older = Head::default();
        older.extend(1, [(10, FieldValue::Integer(1))].into_iter());
        older.extend(2, [(5, FieldValue::Integer(2))].into_iter());
        let mut head = Head::default();
        head.extend(1, [(10, FieldValue::Integer(3))].into_iter());
        head.extend(3, std::iter::empty());
        assert!(!head.has(3), "no samples, no series");
        head.absorb(older);
        let one: Vec<_> = head.range(1, &(0..100)).cloned().collect();
        assert_eq!(
            one,
            vec![(10, FieldValue::Integer(1)), (10, FieldValue::Integer(3))]
        );
        assert_eq!(head.expire(2, 6), 1);
        assert!(!head.has(2));
        assert_eq!(head.expire(1, 6), 0);
        assert!(!head.is_empty());
        assert_eq!(head.expire(1, 11), 2);
        assert!(head.is_empty());
    }
}
