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
use super::lane::{Head, Inbox};
use super::runner::RunnerParts;
use crate::format::{self, Checkpoint};
use crate::store::Through;
use crate::tenant::TenantId;
use crate::transport::{Offset, Partition, PartitionState};

/// How often the store is synced and offsets committed: about what a crash replays at most,
/// and how long the transport keeps processed records. One fsync per interval, not per group.
pub(super) const SYNC_EVERY: Duration = Duration::from_secs(1);

/// No offset yet (an atomic offset's "none").
pub(super) const NONE: Offset = Offset::MAX;

/// One owned partition's progress, shared by its reader, its lanes, the checkpoints and
/// its revocation.
pub(super) struct Slot {
    /// The partition.
    pub(super) partition: Partition,
    /// What the group has committed: the transport's at assignment, then this member's.
    pub(super) committed: AtomicU64,
    /// What the group had committed at assignment: where the reader starts.
    pub(super) committed_at_start: Offset,
    /// The end of the partition when its reader started: caught up once the reader and
    /// every lane reach it. [`NONE`] until known.
    pub(super) end_at_start: AtomicU64,
    /// Where the partition's reader is, shared with the lanes.
    pub(super) head: Arc<Head>,
    /// Each tenant's lane through the partition.
    pub(super) lanes: Mutex<BTreeMap<TenantId, Arc<Lane>>>,
    /// The offset noted in the store for every tenant's records (all of them before it
    /// are processed).
    noted: AtomicU64,
    /// Set when the partition is revoked or the runner stops: its reader and lanes end
    /// after their current group of records, and the lanes save their state.
    pub(super) stop: Arc<AtomicBool>,
}

impl Slot {
    /// A partition just assigned, whose group committed `committed`.
    pub(super) fn new(partition: Partition, committed: Offset) -> Self {
        Self {
            partition,
            committed: AtomicU64::new(committed),
            committed_at_start: committed,
            end_at_start: AtomicU64::new(NONE),
            head: Arc::new(Head {
                next: AtomicU64::new(committed),
            }),
            lanes: Mutex::default(),
            noted: AtomicU64::new(0),
            stop: Arc::default(),
        }
    }

    /// The store holds every tenant's records before `stored` already.
    pub(super) fn noted_from(&self, stored: Offset) {
        self.noted.fetch_max(stored, Ordering::AcqRel);
    }

    /// The lanes, as of now.
    pub(super) fn lanes(&self) -> Vec<Arc<Lane>> {
        lock(&self.lanes).values().cloned().collect()
    }

    /// Every record before the returned offset is processed: handed out by the reader,
    /// and stored by its lane.
    fn processed(&self) -> Offset {
        // The head first: a record handed out after this read shows in its lane's
        // progress, which is read after.
        let head = self.head.next.load(Ordering::Acquire);
        self.lanes()
            .iter()
            .map(|l| l.processed.load(Ordering::Acquire))
            .fold(head, Offset::min)
    }

    /// Whether the reader and every lane have processed what the partition held when
    /// its reader started.
    fn caught_up(&self) -> bool {
        let end = self.end_at_start.load(Ordering::Acquire);
        end != NONE && self.processed() >= end
    }

    /// The first record the lanes' states need replayed after a crash: commits stop there.
    fn needed_from(&self) -> Offset {
        self.lanes()
            .iter()
            .map(|l| l.needed_from.load(Ordering::Acquire))
            .fold(NONE, Offset::min)
    }

    /// The partition's state as its lanes last saved it: each tenant's part with the
    /// offset it reflects; none when no lane saved since the last checkpoint. With it,
    /// each saving lane and the offset it saved at.
    fn staged(&self) -> Option<Staged> {
        let lanes = self.lanes();
        if !lanes.iter().any(|l| l.staged.load(Ordering::Acquire)) {
            return None;
        }
        let mut checkpoint = Checkpoint::default();
        let mut saved = Vec::new();
        for lane in lanes {
            lane.staged.store(false, Ordering::Release);
            let Some(state) = lock(&lane.saved).clone() else {
                continue;
            };
            for mut part in state.checkpoint.tenants {
                part.next = state.next;
                checkpoint.tenants.push(part);
            }
            saved.push((lane, state.next));
        }
        let next = saved
            .iter()
            .map(|(_, next)| *next)
            .min()
            .unwrap_or_else(|| self.head.next.load(Ordering::Acquire));
        let state = PartitionState {
            next,
            bytes: format::encode_checkpoint(&checkpoint),
        };
        Some(Staged {
            state,
            lanes: saved,
        })
    }
}

/// A partition's state composed of its lanes' last saves, for a checkpoint to make
/// durable.
struct Staged {
    state: PartitionState,
    /// Each lane whose save it holds, and the offset of that save.
    lanes: Vec<(Arc<Lane>, Offset)>,
}

impl Staged {
    /// Stages its lanes' saves again: they were not made durable.
    fn restage(&self) {
        for (lane, _) in &self.lanes {
            lane.staged.store(true, Ordering::Release);
        }
    }
}

/// A tenant's lane through a partition: its progress, its saved state, its inbox.
pub(super) struct Lane {
    /// The partition.
    pub(super) partition: Partition,
    /// The tenant.
    pub(super) tenant: TenantId,
    /// The tenant's records before this are processed (stored, and in its state).
    pub(super) processed: AtomicU64,
    /// The first of the tenant's records the lane's state needs replayed after a crash
    /// (its last durable save's, or the first held at assignment before any save).
    /// [`NONE`] while the lane holds no state.
    pub(super) needed_from: AtomicU64,
    /// The lane's last saved state (maybe not durable yet): where a rewind goes back to.
    pub(super) saved: Mutex<Option<LaneState>>,
    /// Whether a state was saved since the last checkpoint made one durable.
    staged: AtomicBool,
    /// Records the partition's reader hands the lane.
    pub(super) inbox: Arc<Inbox>,
    /// Where the tenant's records are stored up to, per the store when the partition was
    /// assigned: a replay stores nothing before it again.
    pub(super) stored_at_start: Offset,
    /// Set when the lane ends: its partition is revoked, the runner stops, or it retires.
    pub(super) stop: Arc<AtomicBool>,
    /// Since when the lane has had nothing to do and held no state: then it may retire.
    quiet_since: Mutex<Option<Instant>>,
}

/// A lane's saved state: its tenant's part of a partition checkpoint, as of the tenant's
/// record before `next`.
#[derive(Clone)]
pub(super) struct LaneState {
    /// The first of the tenant's records the state does not reflect.
    pub(super) next: Offset,
    /// The state.
    pub(super) checkpoint: Checkpoint,
}

impl Lane {
    /// The lane of `tenant` on `slot`'s partition, from `from` on, with its state as last
    /// durably saved and where its stored points reach.
    pub(super) fn new(
        slot: &Slot,
        tenant: TenantId,
        from: Offset,
        saved: Option<LaneState>,
        stored: Offset,
    ) -> Self {
        let needed_from = saved.as_ref().map_or(NONE, |s| s.next);
        Self {
            partition: slot.partition,
            tenant,
            processed: AtomicU64::new(from),
            needed_from: AtomicU64::new(needed_from),
            saved: Mutex::new(saved),
            staged: AtomicBool::new(false),
            inbox: Arc::default(),
            stored_at_start: stored,
            stop: Arc::default(),
            quiet_since: Mutex::new(None),
        }
    }

    /// Notes whether the lane has nothing to do and holds no state.
    pub(super) fn quiet(&self, quiet: bool) {
        let mut since = lock(&self.quiet_since);
        match (quiet, *since) {
            (true, None) => *since = Some(Instant::now()),
            (false, Some(_)) => *since = None,
            _ => {}
        }
    }

    /// How long the lane has had nothing to do and held no state.
    pub(super) fn quiet_for(&self) -> Duration {
        lock(&self.quiet_since).map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// Saves `state`: a rewind goes back to it at once; the next checkpoint makes it
    /// durable (a state saved after windows closed on an idle lane, say, even when no
    /// offset moved).
    pub(super) fn stage(&self, state: LaneState) {
        *lock(&self.saved) = Some(state);
        self.staged.store(true, Ordering::Release);
    }

    /// The state needs records from `from` on replayed after a crash (the first time it
    /// holds anything).
    pub(super) fn needs_from(&self, from: Offset) {
        let _ = self
            .needed_from
            .compare_exchange(NONE, from, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// Each tenant's part of a partition's saved state: as saved with lanes, or (saved before
/// them) the whole partition's state as of its `next`.
pub(super) fn lane_states(state: &PartitionState) -> BTreeMap<TenantId, LaneState> {
    let checkpoint = match format::decode_checkpoint(&state.bytes, state.next) {
        Ok(checkpoint) => checkpoint,
        Err(error) => {
            tracing::error!(%error, "Partition state unreadable; its lanes start empty.");
            return BTreeMap::new();
        }
    };
    let mut out = BTreeMap::new();
    for part in checkpoint.tenants {
        out.insert(
            TenantId::new(&part.tenant),
            LaneState {
                next: part.next,
                checkpoint: Checkpoint {
                    tenants: vec![part],
                },
            },
        );
    }
    out
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

    /// Lanes of the owned partitions (running, or quiet and not yet retired).
    #[cfg(test)]
    pub(super) fn lanes(&self) -> usize {
        lock(&self.slots)
            .values()
            .map(|s| lock(&s.lanes).len())
            .sum()
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

/// Notes in the store how far each of `slots` has processed every tenant's records, syncs
/// it, saves the states staged before the sync (everything they reflect is durable now),
/// then commits on `slots` how far the store's durable points reach, held back to where
/// each durable state replays from.
fn commit(parts: &RunnerParts, slots: &[Arc<Slot>]) {
    for slot in slots {
        let processed = slot.processed();
        if processed > slot.noted.load(Ordering::Acquire)
            && parts
                .store
                .write(&[], Through::partition(slot.partition, processed))
                .is_ok()
        {
            slot.noted.store(processed, Ordering::Release);
        }
    }
    let staged: Vec<(Partition, Staged)> = slots
        .iter()
        .filter_map(|s| s.staged().map(|staged| (s.partition, staged)))
        .collect();
    let moved = slots
        .iter()
        .any(|s| s.noted.load(Ordering::Acquire) > s.committed.load(Ordering::Acquire));
    if !moved && staged.is_empty() {
        return;
    }
    let started = Instant::now();
    let synced = match parts.store.sync() {
        Ok(synced) => synced,
        Err(error) => {
            tracing::error!(%error, "Could not sync the store; offsets stay uncommitted.");
            staged.iter().for_each(|(_, s)| s.restage());
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
            .map(|(partition, s)| (*partition, s.state.clone()))
            .collect();
        match parts.states.save(&states) {
            Ok(()) => {
                for (lane, next) in staged.iter().flat_map(|(_, s)| &s.lanes) {
                    lane.needed_from.store(*next, Ordering::Release);
                }
            }
            Err(error) => {
                tracing::error!(%error, "Could not save partition states; their records stay uncommitted.");
                staged.iter().for_each(|(_, s)| s.restage());
            }
        }
    }
    let mut commits = Vec::new();
    for through in synced {
        let Through {
            partition,
            lane: None,
            next,
        } = through
        else {
            continue;
        };
        let Some(slot) = slots.iter().find(|s| s.partition == partition) else {
            // Not this member's (any more): its owner commits it.
            continue;
        };
        // The log keeps what the states would replay after a crash.
        let next = next.min(slot.needed_from());
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
