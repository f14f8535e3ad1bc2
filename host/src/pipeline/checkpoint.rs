//! Checkpoints: the store is synced every [`SYNC_EVERY`], and only then are the offsets
//! it made durable committed, each held back to where its partition's saved state would
//! replay from. Syncs never hold up the partitions; a crash replays the uncommitted tail,
//! which the store's idempotent writes absorb.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::health::panic_message;
use super::runner::RunnerParts;
use crate::store::Through;
use crate::transport::{Offset, Partition, PartitionState};

/// How often the store is synced and offsets committed: about what a crash replays at most,
/// and how long the transport keeps processed records. One fsync per interval, not per group.
pub(super) const SYNC_EVERY: Duration = Duration::from_secs(1);

/// No offset yet (an atomic offset's "none").
const NONE: Offset = Offset::MAX;

/// One owned partition's progress, shared by its worker, the checkpoints and its
/// revocation.
pub(super) struct Slot {
    /// The partition.
    pub(super) partition: Partition,
    /// The next record to run through the stages.
    pub(super) processed: AtomicU64,
    /// What the group has committed: the transport's at assignment, then this member's.
    pub(super) committed: AtomicU64,
    /// The end of the partition when its worker started: caught up once `processed`
    /// reaches it. [`NONE`] until known.
    pub(super) end_at_start: AtomicU64,
    /// The first record the state needs replayed after a crash (its last save's, or the
    /// first held at assignment before any save): commits stop there. [`NONE`] while the
    /// partition holds no state.
    pub(super) needed_from: AtomicU64,
    /// The last saved state.
    pub(super) saved: Mutex<Option<PartitionState>>,
    /// Set when the partition is revoked or the runner stops: its worker ends after the
    /// current group of records and saves its state.
    pub(super) stop: AtomicBool,
    /// Set by a state save, cleared by the checkpoint that makes it durable: a save (after
    /// windows closed on an idle partition, say) is synced even when no offset moved.
    pub(super) saved_since_sync: AtomicBool,
}

impl Slot {
    /// A partition just assigned, whose group committed `committed`.
    pub(super) fn new(partition: Partition, committed: Offset) -> Self {
        Self {
            partition,
            processed: AtomicU64::new(committed),
            committed: AtomicU64::new(committed),
            end_at_start: AtomicU64::new(NONE),
            needed_from: AtomicU64::new(NONE),
            saved: Mutex::new(None),
            stop: AtomicBool::new(false),
            saved_since_sync: AtomicBool::new(false),
        }
    }

    /// Whether the partition has processed what it held when its worker started.
    fn caught_up(&self) -> bool {
        let end = self.end_at_start.load(Ordering::Acquire);
        end != NONE && self.processed.load(Ordering::Acquire) >= end
    }

    /// The state needs records from `from` on replayed after a crash (the first time it
    /// holds anything).
    pub(super) fn needs_from(&self, from: Offset) {
        let _ = self
            .needed_from
            .compare_exchange(NONE, from, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// The partitions this member owns, and how far the checkpoints have taken them.
#[derive(Default)]
pub(super) struct Owned {
    slots: Mutex<BTreeMap<Partition, Arc<Slot>>>,
    /// Whether the group has assigned this member its partitions (maybe none) yet.
    assigned: AtomicBool,
    /// Held while a checkpoint runs, so a revocation's last checkpoint and the periodic
    /// ones never interleave (a stale commit could move another member's offset back).
    checkpointing: Mutex<()>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Owned {
    /// Adds `slots`; the group has assigned this member's partitions.
    pub(super) fn add(&self, slots: &[Arc<Slot>]) {
        let mut owned = lock(&self.slots);
        for slot in slots {
            owned.insert(slot.partition, slot.clone());
        }
        self.assigned.store(true, Ordering::Release);
    }

    /// Every partition this member owns.
    pub(super) fn partitions(&self) -> Vec<Partition> {
        lock(&self.slots).keys().copied().collect()
    }

    /// Whether every owned partition has processed what it held when its worker started
    /// (and the group has assigned partitions at all).
    pub(super) fn caught_up(&self) -> bool {
        self.assigned.load(Ordering::Acquire) && lock(&self.slots).values().all(|s| s.caught_up())
    }

    /// Syncs the store and commits how far its durable points reach, on the owned
    /// partitions. A panic is caught and logged: offsets then stay uncommitted and the
    /// next checkpoint tries again.
    pub(super) fn checkpoint(&self, parts: &RunnerParts) {
        self.checkpoint_and_release(parts, &[]);
    }

    /// [`Owned::checkpoint`], then gives `partitions` up: the next owner resumes where
    /// this one committed.
    pub(super) fn checkpoint_and_release(&self, parts: &RunnerParts, partitions: &[Partition]) {
        let _one_at_a_time = lock(&self.checkpointing);
        let slots: Vec<Arc<Slot>> = lock(&self.slots).values().cloned().collect();
        let run = AssertUnwindSafe(|| commit(parts, &slots));
        if let Err(payload) = std::panic::catch_unwind(run) {
            let message = panic_message(payload.as_ref());
            tracing::error!(%message, "A checkpoint panicked; offsets stay uncommitted.");
        }
        let mut owned = lock(&self.slots);
        for p in partitions {
            owned.remove(p);
        }
    }
}

/// Syncs the store, then commits on `slots` how far its durable points reach.
fn commit(parts: &RunnerParts, slots: &[Arc<Slot>]) {
    // Cleared before the sync, which covers those saves (set again if it fails).
    let saved: Vec<bool> = slots
        .iter()
        .map(|s| s.saved_since_sync.swap(false, Ordering::AcqRel))
        .collect();
    let moved = slots
        .iter()
        .any(|s| s.processed.load(Ordering::Acquire) > s.committed.load(Ordering::Acquire));
    if !moved && !saved.contains(&true) {
        return;
    }
    // Taken before the sync: the states they come from are durable once it returns.
    let needed: BTreeMap<Partition, Offset> = slots
        .iter()
        .map(|s| (s.partition, s.needed_from.load(Ordering::Acquire)))
        .collect();
    let started = Instant::now();
    let synced = match parts.store.sync() {
        Ok(synced) => synced,
        Err(error) => {
            tracing::error!(%error, "Could not sync the store; offsets stay uncommitted.");
            for (slot, saved) in slots.iter().zip(saved) {
                if saved {
                    slot.saved_since_sync.store(true, Ordering::Release);
                }
            }
            return;
        }
    };
    parts
        .metrics
        .store_sync_seconds
        .observe(started.elapsed().as_secs_f64());
    let mut commits = Vec::new();
    for Through { partition, next } in synced {
        let (Some(slot), Some(needed)) = (
            slots.iter().find(|s| s.partition == partition),
            needed.get(&partition),
        ) else {
            // Not this member's (any more): its owner commits it.
            continue;
        };
        // The log keeps what the state would replay after a crash.
        let next = next.min(*needed);
        if next > slot.committed.load(Ordering::Acquire) {
            commits.push((slot, next));
        }
    }
    if commits.is_empty() {
        return;
    }
    let offsets: Vec<(Partition, Offset)> = commits
        .iter()
        .map(|(s, next)| (s.partition, *next))
        .collect();
    match parts.committer.commit(&offsets) {
        Ok(()) => {
            for (slot, next) in commits {
                slot.committed.store(next, Ordering::Release);
            }
        }
        Err(error) => {
            tracing::error!(%error, ?offsets, "Commit failed; retrying at the next checkpoint.");
        }
    }
}
