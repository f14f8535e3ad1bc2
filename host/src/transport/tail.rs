//! The embedded log's tail: records just appended, kept in memory as they were given, so
//! a partition's reader, which follows close behind the writer, takes them as they are
//! instead of reading their bytes back and decoding them. Reading back and decoding was
//! 18 % of the CPU of bulk line-protocol ingest (1,000 series, 5,000-line bodies,
//! throwaway driver under perf).
//!
//! The log's files stay the truth: a record enters the tail only once it is durable, a
//! reader that finds no record at its offset reads the files, and a full tail takes no
//! more records until readers take some.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use super::{Offset, Partition, Record};

/// Memory the tail's records take at most, across partitions, as [`crate::columns::Points::bytes`] counts
/// it: 100,000 points of a few tags and fields with their columns, or 800,000 remote-written
/// samples in columns only. A reader within this far of the writer never decodes. Counted
/// in points, it held five times fewer samples than this, and the Prometheus bench's
/// reader, falling that far behind, read and decoded a quarter of its records.
pub const TAIL_BYTES: usize = 40 << 20;

/// Each partition's records in the tail, in offset order with the bytes each takes, and
/// the bytes they take in all.
pub struct Tail {
    partitions: Vec<Mutex<VecDeque<(Offset, Record, usize)>>>,
    bytes: Mutex<usize>,
    limit: usize,
}

impl Tail {
    /// An empty tail for `partitions` partitions, holding at most `limit` bytes.
    pub fn new(partitions: u32, limit: usize) -> Self {
        Self {
            partitions: (0..partitions).map(|_| Mutex::default()).collect(),
            bytes: Mutex::new(0),
            limit,
        }
    }

    /// Keeps `record`, durable at `offset` of `partition`, unless the tail is full. Offsets
    /// of a partition come in increasing order.
    pub fn keep(&self, partition: Partition, offset: Offset, record: Record) {
        let Some(records) = self.partitions.get(partition as usize) else {
            return;
        };
        let bytes = record.points.bytes();
        {
            let mut held = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
            if *held + bytes > self.limit {
                return;
            }
            *held += bytes;
        }
        records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back((offset, record, bytes));
    }

    /// The records of `partition` from `from` on that the tail holds without a gap, up to
    /// `max` and before `end`. Records before `from` go: the reader has moved past them.
    pub fn take(
        &self,
        partition: Partition,
        from: Offset,
        end: Offset,
        max: usize,
    ) -> Vec<(Offset, Record)> {
        let Some(records) = self.partitions.get(partition as usize) else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        let mut dropped = 0;
        {
            let mut records = records.lock().unwrap_or_else(PoisonError::into_inner);
            while records.front().is_some_and(|(offset, ..)| *offset < from) {
                if let Some((.., bytes)) = records.pop_front() {
                    dropped += bytes;
                }
            }
            let mut next = from;
            while taken.len() < max
                && next < end
                && records.front().is_some_and(|(offset, ..)| *offset == next)
            {
                let Some((offset, record, bytes)) = records.pop_front() else {
                    break;
                };
                dropped += bytes;
                taken.push((offset, record));
                next += 1;
            }
        }
        if dropped > 0 {
            let mut held = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
            *held = held.saturating_sub(dropped);
        }
        taken
    }

    /// The bytes held now.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        *self.bytes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::{Precision, parse};
    use crate::tenant::TenantId;

    fn record(lp: &str) -> Record {
        Record::new(TenantId::new("t"), parse(lp, Precision::Nanoseconds, 0).0)
    }

    #[test]
    fn records_are_taken_in_order_without_gaps_and_a_full_tail_keeps_nothing_more() {
        // Room for three points.
        let tail = Tail::new(2, record("m v=1 1\nm v=2 2\nm v=3 3").points.bytes());
        tail.keep(0, 5, record("m v=1 1\nm v=2 2"));
        tail.keep(0, 6, record("m v=3 3"));
        // Full: three points held.
        tail.keep(0, 7, record("m v=4 4"));
        tail.keep(1, 0, record("m v=5 5"));
        let offsets = |taken: Vec<(Offset, Record)>| -> Vec<Offset> {
            taken.into_iter().map(|(o, _)| o).collect()
        };
        // Not at the reader's offset: nothing, and nothing goes.
        assert_eq!(offsets(tail.take(0, 4, 10, 10)), Vec::<Offset>::new());
        // Up to `end` and `max`.
        assert_eq!(offsets(tail.take(0, 5, 6, 10)), vec![5]);
        let taken = tail.take(0, 6, 10, 10);
        assert_eq!(taken, vec![(6, record("m v=3 3"))]);
        // Offset 7 was never kept: the reader reads the files.
        assert!(tail.take(0, 7, 10, 10).is_empty());
        // Taking gave the room back.
        tail.keep(0, 8, record("m v=6 6\nm v=7 7"));
        tail.keep(1, 0, record("m v=8 8"));
        assert_eq!(tail.take(1, 0, 1, 1).len(), 1);
        // A reader past a record drops it.
        tail.keep(0, 9, record("m v=9 9"));
        assert_eq!(offsets(tail.take(0, 9, 10, 10)), vec![9]);
        assert_eq!(tail.bytes(), 0);
    }
}
