//! A partition's reader: reads the partition in order and hands each record to its
//! tenant's lane ([`super::lane`]), starting a lane (a worker thread, [`super::worker`])
//! for each tenant it meets, and one at once for each tenant with saved state. Records
//! that don't decode have no tenant: the reader keeps them as dead letters itself.
//!
//! Every tenant's records before the lowest of the reader's position and the lanes'
//! progress are processed: the checkpoints note that offset in the store for the
//! partition, and each lane notes its own, further on, for its tenant. A restart reads
//! from the group's commit again, and each lane passes over what the store holds of its
//! tenant's records: nothing is stored twice.

use std::collections::{BTreeMap, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::RETRY_PAUSE;
use super::checkpoint::{Lane, LaneState, Slot, lane_states, lock};
use super::dead_letter::DeadLetter;
use super::lane::LaneReader;
use super::runner::RunnerParts;
use super::worker::{READ_WAIT, caught, retry, supervise};
use crate::tenant::TenantId;
use crate::transport::{Delivered, Offset, PartitionReader};

/// Records read at once: handing one over is cheap, so a group of a few reads' worth.
const READ_RECORDS: usize = 256;

/// How long a lane has nothing to do and no state before its thread ends (a record of its
/// tenant starts it again): threads follow the tenants writing, not every tenant ever seen.
const LANE_IDLE: Duration = if cfg!(test) {
    Duration::from_secs(1)
} else {
    Duration::from_secs(60)
};

/// Where the store and the saved state left the partition when it was assigned.
struct Start {
    /// Every tenant's records before this are stored.
    stored: Offset,
    /// Tenants whose stored records reach further, and how far.
    lanes_stored: HashMap<TenantId, Offset>,
    /// Each tenant's saved state.
    states: BTreeMap<TenantId, LaneState>,
}

/// The partition's lanes and their threads.
struct Lanes<'a> {
    parts: &'a Arc<RunnerParts>,
    slot: &'a Arc<Slot>,
    source: Arc<Mutex<Box<dyn PartitionReader>>>,
    start: Start,
    threads: HashMap<TenantId, JoinHandle<()>>,
    /// When quiet lanes were last looked for.
    looked: Instant,
}

/// Reads `slot`'s partition with `reader` until the partition is revoked or the runner
/// stops, then stops its lanes (each saves its state).
pub(super) fn run(parts: &Arc<RunnerParts>, slot: &Arc<Slot>, reader: Box<dyn PartitionReader>) {
    let partition = slot.partition;
    let _span = tracing::info_span!("partition", partition).entered();
    let Some(start) = resume(parts, slot, reader.as_ref()) else {
        return;
    };
    let committed = reader.committed();
    tracing::info!(
        partition,
        committed,
        lanes = start.states.len(),
        "Partition assigned."
    );
    let mut lanes = Lanes {
        parts,
        slot,
        source: Arc::new(Mutex::new(reader)),
        start,
        threads: HashMap::new(),
        looked: Instant::now(),
    };
    let saved: Vec<TenantId> = lanes.start.states.keys().cloned().collect();
    for tenant in saved {
        lanes.lane(&tenant, committed);
    }
    while !slot.stop.load(Ordering::Acquire) {
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            lanes.hand_out();
            lanes.retire_quiet();
        }));
        if let Err(payload) = outcome {
            let message = caught(parts, partition, payload.as_ref());
            tracing::error!(%message, "Handing records to lanes panicked; reading on from where it was.");
            std::thread::sleep(RETRY_PAUSE);
            let head = slot.head.next.load(Ordering::Acquire);
            if let Err(error) = lock(&lanes.source).seek(head) {
                tracing::error!(%error, "Could not seek the partition; retrying.");
            }
        }
    }
    for lane in slot.lanes() {
        lane.stop.store(true, Ordering::Release);
        lane.inbox.wake();
    }
    for (tenant, thread) in lanes.threads {
        if thread.join().is_err() {
            tracing::error!(%tenant, "A lane's thread ended in a panic.");
        }
    }
}

/// Where the store and the saved state left the partition; none when stopped before
/// they could be read.
fn resume(parts: &RunnerParts, slot: &Slot, reader: &dyn PartitionReader) -> Option<Start> {
    let stop = &*slot.stop;
    let partition = slot.partition;
    let throughs = retry(stop, "where the store's points reach", || {
        parts.store.checkpointed()
    })?;
    let state = retry(stop, "the partition's saved state", || {
        parts.states.load(partition)
    })?;
    let end = retry(stop, "the partition's end", || reader.end())?;
    slot.end_at_start.store(end, Ordering::Release);
    let mut start = Start {
        stored: 0,
        lanes_stored: HashMap::new(),
        states: state.as_ref().map(lane_states).unwrap_or_default(),
    };
    for through in throughs.into_iter().filter(|t| t.partition == partition) {
        match through.lane {
            None => start.stored = through.next,
            Some(tenant) => {
                start.lanes_stored.insert(tenant, through.next);
            }
        }
    }
    slot.noted_from(start.stored);
    Some(start)
}

impl Lanes<'_> {
    /// Reads a group of records and hands each to its tenant's lane.
    fn hand_out(&mut self) {
        let slot = self.slot;
        let read = lock(&self.source).read(READ_RECORDS, READ_WAIT);
        let records = match read {
            Ok(records) => records,
            Err(error) => {
                tracing::error!(%error, "Reading the partition failed; retrying.");
                std::thread::sleep(RETRY_PAUSE);
                return;
            }
        };
        for Delivered { offset, record } in records {
            match record {
                Ok(record) => {
                    let tenant = record.tenant.clone();
                    let Some(lane) = self.lane(&tenant, offset) else {
                        return;
                    };
                    lane.inbox.offer(offset, record);
                }
                // Once: a replay from before what the store holds passes over it.
                Err(undecodable) if offset >= self.start.stored => {
                    tracing::warn!(%undecodable, "Keeping a record that does not decode as a dead letter.");
                    let letter = DeadLetter::refused(
                        None,
                        "transport",
                        &undecodable.to_string(),
                        vec![String::from_utf8_lossy(&undecodable.bytes).into_owned()],
                    );
                    if !self.parts.dead_letters.keep(&[letter], &slot.stop) {
                        return;
                    }
                }
                Err(_) => {}
            }
            // Every record before this is handed out: its lane's progress now counts it.
            slot.head.next.store(offset + 1, Ordering::Release);
        }
    }

    /// `tenant`'s lane, started with its first record at `from` when it has none yet;
    /// none when stopped before its thread could start.
    fn lane(&mut self, tenant: &TenantId, from: Offset) -> Option<Arc<Lane>> {
        if let Some(lane) = lock(&self.slot.lanes).get(tenant) {
            return Some(lane.clone());
        }
        let stored = self
            .start
            .lanes_stored
            .get(tenant)
            .copied()
            .unwrap_or(0)
            .max(self.start.stored);
        let saved = self.start.states.remove(tenant);
        let lane = Arc::new(Lane::new(self.slot, tenant.clone(), from, saved, stored));
        // Counted before the reader's head passes `from`: the partition's progress waits
        // for the lane from its first record on.
        lock(&self.slot.lanes).insert(tenant.clone(), lane.clone());
        self.spawn(&lane).then_some(lane)
    }

    /// Starts `lane`'s thread; false when stopped before it could.
    fn spawn(&mut self, lane: &Arc<Lane>) -> bool {
        let tenant = &lane.tenant;
        loop {
            let mut reader = LaneReader::new(lane, self.slot, self.source.clone());
            let (parts, worker_lane) = (self.parts.clone(), lane.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("sluice-lane-{}", self.slot.partition))
                .spawn(move || supervise(&parts, &worker_lane, &mut reader));
            match spawned {
                Ok(thread) => {
                    self.threads.insert(tenant.clone(), thread);
                    return true;
                }
                Err(error) => {
                    tracing::error!(%error, %tenant, "Could not start a lane's thread; retrying.");
                    if self.slot.stop.load(Ordering::Acquire) {
                        return false;
                    }
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
    }

    /// Ends the threads of lanes quiet for [`LANE_IDLE`]: nothing to do, no state. This
    /// thread alone hands records out, so none can reach a lane while it retires; one
    /// that finds work after all is started again.
    fn retire_quiet(&mut self) {
        if self.looked.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.looked = Instant::now();
        let quiet: Vec<Arc<Lane>> = self
            .slot
            .lanes()
            .into_iter()
            .filter(|l| l.quiet_for() >= LANE_IDLE)
            .collect();
        for lane in quiet {
            lane.stop.store(true, Ordering::Release);
            lane.inbox.wake();
            if let Some(thread) = self.threads.remove(&lane.tenant)
                && thread.join().is_err()
            {
                tracing::error!(tenant = %lane.tenant, "A lane's thread ended in a panic.");
            }
            if lane.inbox.is_empty() && lane.quiet_for() >= LANE_IDLE {
                lock(&self.slot.lanes).remove(&lane.tenant);
                tracing::debug!(tenant = %lane.tenant, "A quiet lane retired.");
            } else {
                lane.stop.store(false, Ordering::Release);
                self.spawn(&lane);
            }
        }
    }
}
