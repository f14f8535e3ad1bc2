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
    /// The last saved state (maybe not durable yet): where a rewind goes back to.
    pub(super) saved: Mutex<Option<PartitionState>>,
    /// The last saved state until the next checkpoint makes it durable.
    staged: Mutex<Option<PartitionState>>,
    /// Set when the partition is revoked or the runner stops: its worker ends after the
    /// current group of records and saves its state.
    pub(super) stop: AtomicBool,
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
            staged: Mutex::new(None),
            stop: AtomicBool::new(false),
        }
    }

    /// Whether the partition has processed what it held when its worker started.
    fn caught_up(&self) -> bool {
        let end = self.end_at_start.load(Ordering::Acquire);
        end != NONE && self.processed.load(Ordering::Acquire) >= end
    }

    /// Saves `state`: a rewind goes back to it at once; the next checkpoint makes it
    /// durable (a state saved after windows closed on an idle partition, say, even when no
    /// offset moved).
    pub(super) fn stage(&self, state: PartitionState) {
        *lock(&self.saved) = Some(state.clone());
        *lock(&self.staged) = Some(state);
    }

    /// Puts `state` back for the next checkpoint, unless a newer one was saved meanwhile.
    fn restage(&self, state: PartitionState) {
        lock(&self.staged).get_or_insert(state);
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

/// Syncs the store, saves the states staged before the sync (everything they reflect is
/// durable now), then commits on `slots` how far the store's durable points reach, held
/// back to where each durable state replays from.
fn commit(parts: &RunnerParts, slots: &[Arc<Slot>]) {
    let staged: Vec<(&Arc<Slot>, PartitionState)> = slots
        .iter()
        .filter_map(|s| lock(&s.staged).take().map(|state| (s, state)))
        .collect();
    let moved = slots
        .iter()
        .any(|s| s.processed.load(Ordering::Acquire) > s.committed.load(Ordering::Acquire));
    if !moved && staged.is_empty() {
        return;
    }
    let started = Instant::now();
    let synced = match parts.store.sync() {
        Ok(synced) => synced,
        Err(error) => {
            tracing::error!(%error, "Could not sync the store; offsets stay uncommitted.");
            for (slot, state) in staged {
                slot.restage(state);
            }
            return;
        }
    };
    parts
        .metrics
        .store_sync_seconds
        .observe(started.elapsed().as_secs_f64());
    if !staged.is_empty() {
        let states: Vec<(Partition, PartitionState)> = staged
            .iter()
            .map(|(slot, state)| (slot.partition, state.clone()))
            .collect();
        match parts.states.save(&states) {
            Ok(()) => {
                for (slot, state) in &staged {
                    slot.needed_from.store(state.next, Ordering::Release);
                }
            }
            Err(error) => {
                tracing::error!(%error, "Could not save partition states; their records stay uncommitted.");
                for (slot, state) in staged {
                    slot.restage(state);
                }
            }
        }
    }
    let mut commits = Vec::new();
    for Through { partition, next } in synced {
        let Some(slot) = slots.iter().find(|s| s.partition == partition) else {
            // Not this member's (any more): its owner commits it.
            continue;
        };
        // The log keeps what the state would replay after a crash.
        let next = next.min(slot.needed_from.load(Ordering::Acquire));
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
