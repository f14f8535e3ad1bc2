//! A tenant's lane through a partition: the partition's reader hands each record to its
//! tenant's lane, and each lane runs its own stages and writes on a thread of its own, so
//! one tenant's slow stage or failing plugin holds up its own records only.
//!
//! A lane's inbox is small. When it is full the partition's reader doesn't wait: it passes
//! the tenant's records over and marks a gap, and the lane reads them itself from the
//! transport (a [`PartitionReader::fork`]) once it has worked through what it holds, until
//! it has caught up with the partition's reader. A lane that rewinds (after a panic) reads
//! its records again the same way. Memory stays bounded whatever a tenant sends; the
//! transport holds its backlog.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::checkpoint::{Lane, Slot, lock};
use crate::tenant::TenantId;
use crate::transport::{Delivered, Offset, PartitionReader, Record, TransportError};

/// Records an inbox holds before its tenant's next ones are left for its lane to read from
/// the transport: enough for a few reads of [`super::worker`]'s group size, so a lane that
/// keeps up never reads twice.
const INBOX_RECORDS: usize = 256;

/// Records of one tenant on their way from the partition's reader to the tenant's lane.
#[derive(Default)]
pub(super) struct Inbox {
    queue: Mutex<Queue>,
    arrived: Condvar,
}

#[derive(Default)]
struct Queue {
    records: VecDeque<(Offset, Record)>,
    /// The first of the tenant's records passed over because the inbox was full: the lane
    /// reads from there itself.
    gap_from: Option<Offset>,
}

impl Inbox {
    /// Hands the lane `record` at `offset`, or passes it over (a gap the lane reads itself)
    /// when the inbox is full or has a gap already.
    pub(super) fn offer(&self, offset: Offset, record: Record) {
        let mut queue = lock(&self.queue);
        if queue.gap_from.is_some() {
            return;
        }
        if queue.records.len() >= INBOX_RECORDS {
            queue.gap_from = Some(offset);
            return;
        }
        queue.records.push_back((offset, record));
        drop(queue);
        self.arrived.notify_one();
    }

    /// Wakes a lane waiting for records (it is stopping).
    pub(super) fn wake(&self) {
        self.arrived.notify_all();
    }

    /// Whether it holds no records and no gap.
    pub(super) fn is_empty(&self) -> bool {
        let queue = lock(&self.queue);
        queue.records.is_empty() && queue.gap_from.is_none()
    }
}

/// What the partition's reader shares with its lanes.
pub(super) struct Head {
    /// Every record before this has been handed to its lane (or passed over into a gap).
    pub(super) next: AtomicU64,
}

/// A lane's reader: its tenant's records of the partition, from its inbox, or from a fork
/// of the transport's reader while it catches up over a gap or after a rewind.
pub(super) struct LaneReader {
    tenant: TenantId,
    inbox: Arc<Inbox>,
    head: Arc<Head>,
    /// Where forks come from: the partition's reader, shared.
    source: Arc<Mutex<Box<dyn PartitionReader>>>,
    /// A reader of the transport while catching up.
    fork: Option<Box<dyn PartitionReader>>,
    /// The next offset to deliver: anything before it is passed over.
    cursor: Offset,
    /// The first offset the inbox may still deliver: records from here on come through it
    /// (unless a gap says otherwise); reading before it needs a fork.
    floor: Offset,
    /// The group's committed offset at assignment.
    committed: Offset,
    stop: Arc<AtomicBool>,
}

impl LaneReader {
    /// `lane`'s reader on `slot`'s partition, forking `source` to read again; its inbox
    /// delivers from where the partition's reader started (the group's commit) on.
    pub(super) fn new(
        lane: &Lane,
        slot: &Slot,
        source: Arc<Mutex<Box<dyn PartitionReader>>>,
    ) -> Self {
        let from = slot.committed_at_start;
        Self {
            tenant: lane.tenant.clone(),
            inbox: lane.inbox.clone(),
            head: slot.head.clone(),
            source,
            fork: None,
            cursor: from,
            floor: from,
            committed: from,
            stop: lane.stop.clone(),
        }
    }

    /// The group's committed offset when the partition was assigned.
    pub(super) fn committed(&self) -> Offset {
        self.committed
    }

    /// Where the lane stands when it has nothing to do: every record of its tenant before
    /// the returned offset has been delivered. None while it has records waiting, a gap
    /// to read, or a fork catching up.
    pub(super) fn idle_through(&self) -> Option<Offset> {
        if self.fork.is_some() {
            return None;
        }
        let queue = lock(&self.inbox.queue);
        // Under the inbox's lock: a record handed over after this is at or past the head
        // read here.
        (queue.records.is_empty() && queue.gap_from.is_none())
            .then(|| self.head.next.load(Ordering::Acquire).max(self.cursor))
    }

    /// Up to `max` of the tenant's records from the cursor on, waiting up to `wait` for
    /// the first one.
    ///
    /// # Errors
    /// When the transport can't be read while catching up; reading again retries.
    pub(super) fn read(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<(Offset, Record)>, TransportError> {
        let deadline = Instant::now() + wait;
        loop {
            if self.fork.is_none() {
                self.fork_over_gap()?;
            }
            if self.fork.is_some() {
                let out = self.catch_up(max)?;
                if !out.is_empty() || Instant::now() >= deadline {
                    return Ok(out);
                }
                continue;
            }
            let out = self.take_from_inbox(max, deadline);
            if !out.is_empty() || Instant::now() >= deadline || self.stop.load(Ordering::Acquire) {
                return Ok(out);
            }
        }
    }

    /// Moves the cursor to `offset`: records before it are passed over; records before
    /// what the inbox can still deliver are read again from the transport.
    ///
    /// # Errors
    /// When the transport can't open a reader there; seeking again retries.
    pub(super) fn seek(&mut self, offset: Offset) -> Result<(), TransportError> {
        if offset < self.floor {
            let fork = lock(&self.source).fork(offset)?;
            self.fork = Some(fork);
        } else if let Some(fork) = &mut self.fork {
            fork.seek(offset)?;
        }
        self.cursor = offset;
        Ok(())
    }

    /// Opens a fork at the inbox's gap once the records before it are delivered.
    fn fork_over_gap(&mut self) -> Result<(), TransportError> {
        let gap = {
            let queue = lock(&self.inbox.queue);
            match queue.gap_from {
                Some(gap) if queue.records.is_empty() => gap,
                _ => return Ok(()),
            }
        };
        let from = gap.max(self.cursor);
        self.fork = Some(lock(&self.source).fork(from)?);
        self.cursor = from;
        Ok(())
    }

    /// The tenant's records from the fork, up to `max`; drops the fork once it reaches
    /// what the inbox delivers again.
    fn catch_up(&mut self, max: usize) -> Result<Vec<(Offset, Record)>, TransportError> {
        let Some(fork) = &mut self.fork else {
            return Ok(Vec::new());
        };
        let read = fork.read(max, super::worker::READ_WAIT)?;
        let mut out = Vec::new();
        for Delivered { offset, record } in read {
            if offset < self.cursor {
                continue;
            }
            if offset >= self.floor && !self.in_gap(offset) {
                // The inbox delivers from here on.
                self.fork = None;
                return Ok(out);
            }
            self.cursor = offset + 1;
            // Records that don't decode are the partition reader's to keep.
            if let Ok(record) = record
                && record.tenant == self.tenant
            {
                out.push((offset, record));
            }
        }
        self.rejoin_when_caught_up();
        Ok(out)
    }

    /// Whether `offset` is in the inbox's gap (passed over, to be read by the lane).
    fn in_gap(&self, offset: Offset) -> bool {
        lock(&self.inbox.queue)
            .gap_from
            .is_some_and(|gap| offset >= gap)
    }

    /// Ends the fork once it has read everything the partition's reader has handed out:
    /// the inbox takes the tenant's records again from there.
    fn rejoin_when_caught_up(&mut self) {
        let mut queue = lock(&self.inbox.queue);
        // Under the inbox's lock: the partition's reader hands the next record of the
        // tenant to the inbox only after this, at or past the head read here.
        if self.cursor < self.head.next.load(Ordering::Acquire) {
            return;
        }
        if queue.gap_from.take().is_some() {
            queue.records.clear();
        }
        queue.records.retain(|(o, _)| *o >= self.cursor);
        drop(queue);
        self.floor = self.cursor;
        self.fork = None;
    }

    /// Up to `max` records from the inbox at or past the cursor, waiting until `deadline`
    /// for the first.
    fn take_from_inbox(&mut self, max: usize, deadline: Instant) -> Vec<(Offset, Record)> {
        let mut queue = lock(&self.inbox.queue);
        let mut out = Vec::new();
        loop {
            while out.len() < max {
                let Some((offset, record)) = queue.records.pop_front() else {
                    break;
                };
                self.floor = offset + 1;
                if offset >= self.cursor {
                    self.cursor = offset + 1;
                    out.push((offset, record));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if !out.is_empty()
                || queue.gap_from.is_some()
                || left.is_zero()
                || self.stop.load(Ordering::Acquire)
            {
                return out;
            }
            queue = self
                .inbox
                .arrived
                .wait_timeout(queue, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }
}
