//! The pipeline runner: one thread per transport partition fetches records from the
//! committed offset, runs each tenant's stages and writes the result to the store, where it
//! is queryable at once. A checkpoint thread syncs the store every [`SYNC_EVERY`] and only
//! then commits the offsets processed before the sync began, so syncs never hold up the
//! partitions. A crash replays the uncommitted tail; the store's idempotent writes make that
//! harmless.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::panic::AssertUnwindSafe;

use super::RETRY_PAUSE;
use super::dead_letter::{DeadLetter, DeadLetterError, DeadLetterLog};
use super::health::{PartitionHealth, panic_message};
use super::pipelines::{Pipelines, StageStates};
use super::windowing::{Delivery, PartitionWindows, Watermarks};
use crate::format::{self, Checkpoint};
use crate::lineproto::format_point;
use crate::point::Point;
use crate::store::{PartitionState, Store, Through};
use crate::telemetry::{Metrics, PartitionLabels, TenantLabels};
use crate::tenant::TenantId;
use crate::time::{now_ns, seconds_between};
use crate::transport::{Offset, Partition, Transport};

/// The consumer group of the pipeline in the transport.
pub const GROUP: &str = "pipeline";

/// Records fetched and stored together. Small groups bound the latency a point waits
/// behind others; large ones amortize the per-group work.
const FETCH_RECORDS: usize = 64;

/// How often the store is synced and offsets committed: about what a crash replays at most,
/// and how long the transport keeps processed records. One fsync per interval, not per group.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// How often a partition saves its window state (when it changed): what a crash replays
/// into the windows at most. Each save encodes every open window of the partition.
const STATE_EVERY: Duration = Duration::from_secs(5);

/// How long a fetch waits for new records before checking for shutdown.
const FETCH_WAIT: Duration = Duration::from_millis(100);

/// Where a partition resumes: the next record to process, and its last saved state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    /// The next record whose points are not in the store.
    pub next: Offset,
    /// The first record the transport still holds (its committed offset).
    pub kept_from: Offset,
    /// The saved state (it may be behind `next`: the records between are replayed into
    /// it). Without one, the state replays everything the transport holds.
    pub state: Option<PartitionState>,
}

/// Processed offsets per partition (the next record to run through the stages), shared
/// with ingest to measure the pipeline's lag, and each partition's last saved window state.
pub struct Progress {
    processed: Vec<AtomicU64>,
    saved: Vec<Mutex<Option<PartitionState>>>,
    /// The first record the transport held at start.
    kept_from: Vec<Offset>,
    /// The first record each partition's state needs replayed after a crash (its last
    /// save's, or the first held at start before any save): commits stop there.
    /// `u64::MAX` while the partition holds no state.
    needed_from: Vec<AtomicU64>,
    /// States saved so far, over all partitions: a save (after windows closed on an idle
    /// partition, say) is made durable by the next checkpoint even when no offset moved.
    saves: AtomicU64,
}

impl Progress {
    /// Progress of partitions resuming at `resume`.
    pub fn new(resume: Vec<Resume>) -> Self {
        Self {
            processed: resume.iter().map(|r| AtomicU64::new(r.next)).collect(),
            kept_from: resume.iter().map(|r| r.kept_from).collect(),
            needed_from: resume.iter().map(|_| AtomicU64::new(u64::MAX)).collect(),
            saves: AtomicU64::new(0),
            saved: resume.into_iter().map(|r| Mutex::new(r.state)).collect(),
        }
    }

    /// Where each partition's state would replay from after a crash now.
    fn needed_from(&self) -> Vec<Offset> {
        self.needed_from
            .iter()
            .map(|n| n.load(Ordering::Acquire))
            .collect()
    }

    /// Each partition's processed offset.
    fn snapshot(&self) -> Vec<Offset> {
        self.processed
            .iter()
            .map(|p| p.load(Ordering::Acquire))
            .collect()
    }

    /// Whether every partition has processed up to `ends` (offsets, per partition).
    pub fn reached(&self, ends: &[Offset]) -> bool {
        self.snapshot()
            .iter()
            .zip(ends)
            .all(|(done, end)| done >= end)
    }

    /// The largest lag (appended but not yet processed records) over all partitions.
    pub fn max_lag(&self, transport: &dyn Transport) -> u64 {
        self.processed
            .iter()
            .enumerate()
            .map(|(p, c)| {
                transport
                    .end_offset(p as Partition)
                    .saturating_sub(c.load(Ordering::Acquire))
            })
            .max()
            .unwrap_or(0)
    }
}

/// The running pipeline threads; [`Runner::stop`] ends them after their current group.
pub struct Runner {
    parts: Arc<RunnerParts>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    checkpoints: JoinHandle<Commits>,
}

/// What the runner needs.
pub struct RunnerParts {
    /// Where records come from.
    pub transport: Arc<dyn Transport>,
    /// Where points go.
    pub store: Arc<dyn Store>,
    /// Tenants' stages.
    pub pipelines: Arc<Pipelines>,
    /// Shared committed offsets.
    pub progress: Arc<Progress>,
    /// Where records the store refuses, or that panic, are kept.
    pub dead_letters: Arc<DeadLetterLog>,
    /// Panics caught per partition.
    pub health: Arc<PartitionHealth>,
    /// How long a partition goes without records before the wall clock closes its windows.
    pub idle_after: Duration,
    /// Service metrics.
    pub metrics: Arc<Metrics>,
    /// Where partitions publish their watermarks.
    pub watermarks: Arc<Watermarks>,
}

impl Runner {
    /// Starts one thread per partition, and the checkpoint thread.
    ///
    /// # Errors
    /// When a thread can't be spawned.
    pub fn start(parts: RunnerParts) -> std::io::Result<Self> {
        let parts = Arc::new(parts);
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..parts.transport.partitions())
            .map(|p| {
                let parts = parts.clone();
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name(format!("sluice-pipeline-{p}"))
                    .spawn(move || supervise(&parts, p, &stop))
            })
            .collect::<std::io::Result<_>>()?;
        let checkpoints = {
            // Nothing known committed: the first checkpoint commits what the store holds.
            let mut checkpoint = Commits {
                committed: vec![0; parts.progress.processed.len()],
                saves: 0,
            };
            let (parts, stop) = (parts.clone(), stop.clone());
            std::thread::Builder::new()
                .name("sluice-checkpoint".into())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        let due = Instant::now() + SYNC_EVERY;
                        // Short naps, so a stop is seen as soon as a fetch would see it.
                        while Instant::now() < due && !stop.load(Ordering::Acquire) {
                            std::thread::sleep(FETCH_WAIT);
                        }
                        checkpoint.take_guarded(&parts);
                    }
                    checkpoint
                })?
        };
        Ok(Self {
            parts,
            stop,
            threads,
            checkpoints,
        })
    }

    /// Stops and joins the threads; a last checkpoint leaves nothing to replay.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads {
            let _ = t.join();
        }
        if let Ok(mut checkpoint) = self.checkpoints.join() {
            checkpoint.take_guarded(&self.parts);
        }
    }
}

/// Where each partition resumes: after what the store holds durably, or what the
/// transport has committed, whichever is further (a crash between a store sync and the
/// commit leaves the transport behind; replaying from there would store points twice);
/// with the window state the store last saved for it.
///
/// # Errors
/// When the transport or the store can't tell.
pub fn resume_offsets(
    transport: &dyn Transport,
    store: &dyn Store,
) -> Result<Vec<Resume>, Box<dyn std::error::Error + Send + Sync>> {
    let mut resume = (0..transport.partitions())
        .map(|p| {
            let committed = transport.committed(GROUP, p)?;
            Ok(Resume {
                next: committed,
                kept_from: committed,
                state: store.state(p)?,
            })
        })
        .collect::<Result<Vec<_>, Box<dyn std::error::Error + Send + Sync>>>()?;
    for Through { partition, next } in store.checkpointed()? {
        if let Some(r) = resume.get_mut(partition as usize) {
            r.next = r.next.max(next);
        }
    }
    Ok(resume)
}

/// The offsets committed so far, per partition.
struct Commits {
    committed: Vec<Offset>,
    /// The partition-state saves the last checkpoint saw.
    saves: u64,
}

impl Commits {
    /// [`Commits::take`], with a panic caught and logged: offsets then stay uncommitted
    /// and the next checkpoint tries again, instead of checkpoints ending for good.
    fn take_guarded(&mut self, parts: &RunnerParts) {
        if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(|| self.take(parts))) {
            let message = panic_message(payload.as_ref());
            tracing::error!(%message, "A checkpoint panicked; offsets stay uncommitted.");
        }
    }

    /// Syncs the store and commits to the transport how far its durable points reach. On
    /// failure the points stay queryable, the records stay in the transport, and the next
    /// checkpoint tries again.
    fn take(&mut self, parts: &RunnerParts) {
        let processed = parts.progress.snapshot();
        let saves = parts.progress.saves.load(Ordering::Acquire);
        if processed.iter().zip(&self.committed).all(|(p, c)| p <= c) && saves == self.saves {
            return;
        }
        self.saves = saves;
        // Taken before the sync: the states they come from are durable once it returns.
        let needed = parts.progress.needed_from();
        let started = Instant::now();
        let synced = match parts.store.sync() {
            Ok(synced) => synced,
            Err(error) => {
                tracing::error!(%error, "Could not sync the store; offsets stay uncommitted.");
                return;
            }
        };
        parts
            .metrics
            .store_sync_seconds
            .observe(started.elapsed().as_secs_f64());
        for Through { partition: p, next } in synced {
            let Some(committed) = self.committed.get_mut(p as usize) else {
                continue;
            };
            // The log keeps what the state would replay after a crash.
            let next = needed.get(p as usize).map_or(next, |from| next.min(*from));
            if next <= *committed {
                continue;
            }
            match parts.transport.commit(GROUP, p, next) {
                Ok(()) => *committed = next,
                Err(error) => {
                    tracing::error!(%error, partition = p, "Commit failed; retrying at the next checkpoint.");
                }
            }
        }
    }
}

/// Notes a panic caught on `partition` (health, metrics); its message.
fn caught(
    parts: &RunnerParts,
    partition: Partition,
    payload: &(dyn std::any::Any + Send),
) -> String {
    let message = panic_message(payload);
    parts.health.record_panic(partition, &message);
    parts
        .metrics
        .partition_panics
        .get_or_create(&PartitionLabels { partition })
        .inc();
    message
}

/// Runs [`consume`] until the runner stops. A panic outside the processing of records
/// (which `consume` catches itself) restarts it from the last processed offset.
fn supervise(parts: &RunnerParts, partition: Partition, stop: &AtomicBool) {
    while let Err(payload) =
        std::panic::catch_unwind(AssertUnwindSafe(|| consume(parts, partition, stop)))
    {
        let message = caught(parts, partition, payload.as_ref());
        tracing::error!(partition, %message, "The partition worker panicked; restarting it.");
        std::thread::sleep(RETRY_PAUSE);
    }
}

fn consume(parts: &RunnerParts, partition: Partition, stop: &AtomicBool) {
    let _span = tracing::info_span!("partition", partition).entered();
    let mut worker = Worker::resume(parts, partition, stop);
    // After a panic, records are taken one at a time through the last one of the group
    // that panicked, so the one that panics alone is found and kept as a dead letter.
    let mut isolate_through: Option<Offset> = None;
    let mut last_records = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let next = worker.next;
        let isolating = isolate_through.is_some_and(|last| next <= last);
        let max = if isolating { 1 } else { FETCH_RECORDS };
        let records = match parts.transport.fetch(partition, next, max, FETCH_WAIT) {
            Ok(records) if records.is_empty() => {
                // The heartbeat: a partition idle long enough closes windows by the clock.
                let idle = last_records.elapsed() >= parts.idle_after;
                worker.advance(idle);
                worker.save_when_due(false);
                continue;
            }
            Ok(records) => {
                last_records = Instant::now();
                records
            }
            Err(error) => {
                tracing::error!(%error, "Fetch failed; retrying.");
                std::thread::sleep(RETRY_PAUSE);
                continue;
            }
        };
        let last = records.last().map_or(next, |(o, _)| *o);
        let suspect = isolating.then(|| records[0].1.clone());
        let through = Through {
            partition,
            next: last + 1,
        };
        let outcome =
            std::panic::catch_unwind(AssertUnwindSafe(|| worker.process(through, records)));
        match outcome {
            Ok(Ok(Outcome::Done)) => {}
            Ok(Ok(Outcome::Stopped)) => break,
            Ok(Err(error)) => {
                // Not committed: the same records are fetched again.
                tracing::error!(%error, "Could not keep a dead letter; retrying the records.");
                std::thread::sleep(RETRY_PAUSE);
                continue;
            }
            Err(payload) => {
                let message = caught(parts, partition, payload.as_ref());
                tracing::error!(offset = next, %message, "Processing records panicked.");
                let Some(record) = suspect else {
                    // Again one record at a time, from the last saved state (the windows
                    // and stage states may hold part of the group).
                    isolate_through = Some(last);
                    worker.rewind_if_stateful();
                    continue;
                };
                // This record alone panics: kept with the reason, and the partition goes on.
                let letter = DeadLetter::refused(
                    &format!("{}/pipeline", record.tenant),
                    &format!("processing panicked at offset {partition}/{next}: {message}"),
                    record.points.iter().map(format_point).collect(),
                );
                if !parts.dead_letters.keep(&[letter], stop) {
                    break;
                }
                // The store notes that the partition moved past it.
                while let Err(error) = parts.store.write(&[], through) {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    tracing::error!(%error, "Could not note the offset in the store; retrying.");
                    std::thread::sleep(RETRY_PAUSE);
                }
                // A replay passes over it.
                worker.skip(next);
                if worker.rewind_if_stateful() {
                    continue;
                }
            }
        }
        worker.moved_past(last);
    }
    // The runner's last sync makes it durable: a restart resumes the windows here.
    worker.save_when_due(true);
}

/// How processing a group of records ended.
enum Outcome {
    /// Stored (or dead-lettered); the partition moves past the group.
    Done,
    /// The runner is stopping; the group stays unprocessed.
    Stopped,
}

/// A partition's worker: where it is in the partition, and its state: windows, alert
/// states, stage states.
struct Worker<'a> {
    parts: &'a RunnerParts,
    partition: Partition,
    stop: &'a AtomicBool,
    /// The next record to process.
    next: Offset,
    /// Records before this are in the store already: a replay runs them through the
    /// stages and windows only.
    stored_to: Offset,
    /// Records before this are in the state already.
    state_from: Offset,
    windows: PartitionWindows,
    /// The plugin state of the stages.
    stages: StageStates,
    /// Whether the state changed since it was last saved.
    changed: bool,
    saved_at: Instant,
    /// Records that panic, passed over by a replay.
    skipped: std::collections::BTreeSet<Offset>,
}

impl<'a> Worker<'a> {
    /// Resumes from what the partition processed and its last saved window state: the
    /// records between the two (in either order) are replayed into whichever lacks them.
    fn resume(parts: &'a RunnerParts, partition: Partition, stop: &'a AtomicBool) -> Self {
        let processed = parts.progress.processed[partition as usize].load(Ordering::Acquire);
        let mut worker = Self {
            parts,
            partition,
            stop,
            next: processed,
            stored_to: processed,
            state_from: 0,
            windows: PartitionWindows::default(),
            stages: StageStates::default(),
            changed: false,
            saved_at: Instant::now(),
            skipped: std::collections::BTreeSet::new(),
        };
        worker.rewind();
        worker
    }

    /// Passes over record `offset` from now on (it panics; its points were dead-lettered).
    fn skip(&mut self, offset: Offset) {
        self.stored_to = self.stored_to.max(offset + 1);
        self.skipped.insert(offset);
    }

    /// Whether the partition holds state (windows, stage state) a crash would lose.
    fn stateful(&self) -> bool {
        !self.windows.is_empty() || !self.stages.is_empty()
    }

    /// Back to the last saved state when there is state (a panic may have left it holding
    /// part of a group); whether it went back.
    fn rewind_if_stateful(&mut self) -> bool {
        if !self.stateful() {
            return false;
        }
        self.rewind();
        true
    }

    /// Back to the last saved state (windows, alert and stage states), to replay from
    /// there.
    fn rewind(&mut self) {
        let saved = lock(&self.parts.progress.saved[self.partition as usize]).clone();
        self.stored_to = self.stored_to.max(self.next);
        let checkpoint = match saved.as_ref().map(|s| format::decode_checkpoint(&s.bytes)) {
            Some(Ok(checkpoint)) => checkpoint,
            Some(Err(error)) => {
                tracing::error!(%error, "Partition state unreadable; it starts empty.");
                Checkpoint::default()
            }
            None => Checkpoint::default(),
        };
        self.windows = PartitionWindows::import(&self.parts.pipelines, &checkpoint);
        self.stages = StageStates::import(&self.parts.pipelines, &checkpoint);
        // Nothing saved: the state replays what the transport held at start.
        self.state_from = saved.map_or(
            self.parts.progress.kept_from[self.partition as usize],
            |s| s.next,
        );
        self.next = self.state_from.min(self.stored_to);
        self.changed = false;
    }

    /// Advances the windows; `idle`: by the wall clock too.
    fn advance(&mut self, idle: bool) {
        if self.windows.is_empty() {
            return;
        }
        let d = delivery(self.parts, self.stop, self.partition);
        self.changed |= self.windows.advance(&d, idle, &mut self.stages);
    }

    /// The partition is past record `last`: its points are stored, and in the state.
    fn moved_past(&mut self, last: Offset) {
        self.next = last + 1;
        self.stored_to = self.stored_to.max(self.next);
        let processed = &self.parts.progress.processed[self.partition as usize];
        processed.fetch_max(self.next, Ordering::AcqRel);
        self.save_when_due(false);
    }

    /// Saves the partition's state (for the next sync to make durable) when it changed, or
    /// the partition moved past the last save (so the log need not keep those records), and
    /// the last save is [`STATE_EVERY`] old; with `now`, whatever its age.
    fn save_when_due(&mut self, now: bool) {
        let needed =
            self.parts.progress.needed_from[self.partition as usize].load(Ordering::Acquire);
        let behind = needed != u64::MAX && needed < self.next;
        if !(self.changed || behind) || (!now && self.saved_at.elapsed() < STATE_EVERY) {
            return;
        }
        // Only where the state reflects every record before `next`.
        if self.next < self.state_from {
            return;
        }
        let mut checkpoint = Checkpoint::default();
        self.windows.export(&mut checkpoint);
        self.stages.export(&mut checkpoint);
        let state = PartitionState {
            next: self.next,
            bytes: format::encode_checkpoint(&checkpoint),
        };
        match self.parts.store.save_state(self.partition, state.clone()) {
            Ok(()) => {
                // A replay starts at the saved state now: earlier records are not seen again.
                self.skipped = self.skipped.split_off(&state.next);
                let p = self.partition as usize;
                self.parts.progress.needed_from[p].store(state.next, Ordering::Release);
                *lock(&self.parts.progress.saved[p]) = Some(state);
                self.parts.progress.saves.fetch_add(1, Ordering::AcqRel);
                self.changed = false;
                self.saved_at = Instant::now();
            }
            Err(error) => {
                tracing::error!(%error, "Could not save the window state; trying again later.");
            }
        }
    }

    /// Runs `records` through their tenants' stages into the store, then the windows:
    /// each record only where it isn't already (a replay after a restart).
    ///
    /// # Errors
    /// When a failed batch could not be kept as a dead letter: the group must be retried.
    fn process(
        &mut self,
        through: Through,
        records: Vec<(Offset, crate::transport::Record)>,
    ) -> Result<Outcome, DeadLetterError> {
        let (parts, stop) = (self.parts, self.stop);
        // A record already stored is replayed for the state only (stages, windows): not at
        // all where its tenant has neither. One that panics is passed over.
        let records: Vec<_> = records
            .into_iter()
            .filter(|(o, r)| {
                !self.skipped.contains(o)
                    && (*o >= self.stored_to
                        || parts
                            .pipelines
                            .get(&r.tenant)
                            .is_some_and(|p| p.windows.is_some() || !p.stages.is_empty()))
            })
            .collect();
        let offsets: Vec<Offset> = records.iter().map(|(o, _)| *o).collect();
        // Stages run on records the state lacks, and on those the store lacks (a record
        // behind the state but not stored runs its stages again: the store's sync makes
        // states durable only with the points before them, so that doesn't happen).
        let mut batches = run_stages(parts, records, &mut self.stages)?;
        self.changed |= !offsets.is_empty() && !self.stages.is_empty();
        let stored = offsets.partition_point(|o| *o < self.stored_to);
        let windowed = offsets.partition_point(|o| *o < self.state_from);
        let fresh = &mut batches[stored..];
        // Stages ran once (plugin state is committed); only the store write is retried.
        while stored < offsets.len() {
            match store(parts, fresh, through) {
                Ok(refused) => {
                    if !parts.dead_letters.keep(&refused, stop) {
                        return Ok(Outcome::Stopped);
                    }
                    break;
                }
                Err(error) if error.is_retryable() => {
                    if stop.load(Ordering::Acquire) {
                        return Ok(Outcome::Stopped);
                    }
                    tracing::error!(%error, "Could not store processed records; retrying without committing.");
                    std::thread::sleep(RETRY_PAUSE);
                }
                Err(error) => {
                    tracing::error!(%error, "Records can't be stored; keeping them as dead letters.");
                    let letters: Vec<DeadLetter> = fresh
                        .iter()
                        .map(|(tenant, points)| {
                            DeadLetter::refused(
                                &format!("{tenant}/store"),
                                &error.to_string(),
                                points.iter().map(format_point).collect(),
                            )
                        })
                        .collect();
                    if !parts.dead_letters.keep(&letters, stop) {
                        return Ok(Outcome::Stopped);
                    }
                    // Written again with nothing in it: the store still notes the offsets.
                    for (_, points) in fresh.iter_mut() {
                        points.clear();
                    }
                }
            }
        }
        if windowed < batches.len() {
            let d = delivery(self.parts, self.stop, self.partition);
            self.windows.observe(&d, &batches[windowed..]);
            self.changed = true;
        }
        // From its first state on, a crash replays the partition from `state_from` (until a
        // save moves it): the transport must keep those records.
        if self.stateful() {
            let needed = &self.parts.progress.needed_from[self.partition as usize];
            let _ = needed.compare_exchange(
                u64::MAX,
                self.state_from,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        self.advance(false);
        Ok(Outcome::Done)
    }
}

/// What delivering windows needs, from the runner's parts.
fn delivery<'a>(
    parts: &'a RunnerParts,
    stop: &'a AtomicBool,
    partition: Partition,
) -> Delivery<'a> {
    Delivery {
        pipelines: &parts.pipelines,
        store: parts.store.as_ref(),
        dead_letters: &parts.dead_letters,
        metrics: &parts.metrics,
        stop,
        watermarks: &parts.watermarks,
        partition,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn run_stages(
    parts: &RunnerParts,
    records: Vec<(Offset, crate::transport::Record)>,
    states: &mut StageStates,
) -> Result<Vec<(TenantId, Vec<Point>)>, DeadLetterError> {
    records
        .into_iter()
        .map(|(_, record)| {
            let points =
                parts
                    .pipelines
                    .run(&record.tenant, record.points, states, &parts.metrics)?;
            Ok((record.tenant, points))
        })
        .collect()
}

/// Writes `batches` to the store. Points the store refuses are taken out of `batches` and
/// returned as dead letters, one per point with its reason.
fn store(
    parts: &RunnerParts,
    batches: &mut [(TenantId, Vec<Point>)],
    through: Through,
) -> Result<Vec<DeadLetter>, crate::store::StoreError> {
    let started = Instant::now();
    let mut refused = parts.store.write(batches, through)?;
    parts
        .metrics
        .store_write_seconds
        .observe(started.elapsed().as_secs_f64());
    // Highest index first, so removing one doesn't move the others.
    refused.sort_by_key(|r| std::cmp::Reverse((r.batch, r.point)));
    let letters = refused
        .into_iter()
        .filter_map(|r| {
            let (tenant, points) = batches.get_mut(r.batch)?;
            (r.point < points.len()).then(|| {
                let point = points.remove(r.point);
                DeadLetter::refused(
                    &format!("{tenant}/store"),
                    &r.reason.to_string(),
                    vec![format_point(&point)],
                )
            })
        })
        .collect();
    let now = now_ns();
    for (tenant, points) in batches.iter() {
        parts
            .metrics
            .points_stored
            .get_or_create(&TenantLabels {
                tenant: tenant.to_string(),
            })
            .inc_by(points.len() as u64);
        // Latency from event time is meaningful only for live data (clients stamping now).
        if let Some(newest) = points.iter().map(|p| p.timestamp).max() {
            let age = seconds_between(newest, now);
            if (0.0..60.0).contains(&age) {
                parts.metrics.ingest_to_stored_seconds.observe(age);
            }
        }
    }
    Ok(letters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::{Precision, parse};
    use crate::point::{FieldType, Nanos};
    use crate::store::{
        EmbeddedStore, ReadPage, Refused, SeriesFilter, SeriesKey, SeriesPage, StoreError,
    };
    use crate::transport::{EmbeddedLog, Record};

    /// The embedded store, except that a write holding a `panic` point panics, as a bug in
    /// a store would.
    struct Panicky(EmbeddedStore);

    impl Store for Panicky {
        fn write(
            &self,
            batches: &[(TenantId, Vec<Point>)],
            through: Through,
        ) -> Result<Vec<Refused>, StoreError> {
            let poisoned = batches
                .iter()
                .flat_map(|(_, points)| points)
                .any(|p| p.measurement == "panic");
            assert!(!poisoned, "a store bug met a panic point");
            self.0.write(batches, through)
        }
        fn field_type(
            &self,
            tenant: &TenantId,
            point: &Point,
            field: &str,
        ) -> Result<Option<FieldType>, StoreError> {
            self.0.field_type(tenant, point, field)
        }
        fn sync(&self) -> Result<Vec<Through>, StoreError> {
            self.0.sync()
        }
        fn checkpointed(&self) -> Result<Vec<Through>, StoreError> {
            self.0.checkpointed()
        }
        fn series_page(
            &self,
            tenant: &TenantId,
            filter: &SeriesFilter,
            after: Option<&SeriesKey>,
            limit: usize,
        ) -> Result<SeriesPage, StoreError> {
            self.0.series_page(tenant, filter, after, limit)
        }
        fn read_page(
            &self,
            tenant: &TenantId,
            series: &SeriesKey,
            range: std::ops::Range<Nanos>,
            max: usize,
        ) -> Result<ReadPage, StoreError> {
            self.0.read_page(tenant, series, range, max)
        }
        fn expire(&self, tenant: &TenantId, before: Nanos) -> Result<u64, StoreError> {
            self.0.expire(tenant, before)
        }
        fn write_alerts(
            &self,
            tenant: &TenantId,
            alerts: &[crate::point::Alert],
        ) -> Result<(), StoreError> {
            self.0.write_alerts(tenant, alerts)
        }
        fn alerts(
            &self,
            tenant: &TenantId,
            range: std::ops::Range<Nanos>,
        ) -> Result<Vec<crate::point::Alert>, StoreError> {
            self.0.alerts(tenant, range)
        }
        fn failure(&self) -> Option<String> {
            self.0.failure()
        }
        fn write_rollups(
            &self,
            tenant: &TenantId,
            tier: &str,
            rows: &[crate::store::Rollup],
            retracted: &[(SeriesKey, Nanos)],
        ) -> Result<(), StoreError> {
            self.0.write_rollups(tenant, tier, rows, retracted)
        }
        fn rollup_series_page(
            &self,
            tenant: &TenantId,
            tier: &str,
            filter: &SeriesFilter,
            after: Option<&SeriesKey>,
            limit: usize,
        ) -> Result<SeriesPage, StoreError> {
            self.0
                .rollup_series_page(tenant, tier, filter, after, limit)
        }
        fn read_rollups(
            &self,
            tenant: &TenantId,
            tier: &str,
            series: &SeriesKey,
            range: std::ops::Range<Nanos>,
            max: usize,
        ) -> Result<crate::store::RollupPage, StoreError> {
            self.0.read_rollups(tenant, tier, series, range, max)
        }
        fn expire_tier(
            &self,
            tenant: &TenantId,
            tier: &str,
            before: Nanos,
        ) -> Result<u64, StoreError> {
            self.0.expire_tier(tenant, tier, before)
        }
        fn write_late(
            &self,
            tenant: &TenantId,
            records: &[crate::store::LateRecord],
        ) -> Result<(), StoreError> {
            self.0.write_late(tenant, records)
        }
        fn late_page(
            &self,
            tenant: &TenantId,
            range: std::ops::Range<Nanos>,
            max: usize,
        ) -> Result<crate::store::LatePage, StoreError> {
            self.0.late_page(tenant, range, max)
        }
        fn save_state(
            &self,
            partition: Partition,
            state: crate::store::PartitionState,
        ) -> Result<(), StoreError> {
            self.0.save_state(partition, state)
        }
        fn state(
            &self,
            partition: Partition,
        ) -> Result<Option<crate::store::PartitionState>, StoreError> {
            self.0.state(partition)
        }
    }

    fn record(lp: &str) -> Record {
        Record {
            tenant: TenantId::new("a"),
            points: parse(lp, Precision::Nanoseconds, 0).0,
        }
    }

    #[test]
    fn a_panicking_record_is_found_kept_as_a_dead_letter_and_its_partition_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let transport = EmbeddedLog::open(&dir.path().join("log"), 1).expect("log");
        let store = Arc::new(Panicky(
            EmbeddedStore::open(&dir.path().join("store")).expect("store"),
        ));
        // Ten records around the poisoned one, fetched in one group.
        let mut records: Vec<_> = (0..10)
            .map(|i| (0, record(&format!("ok,i={i} v={i} {i}"))))
            .collect();
        records.insert(4, (0, record("panic v=1 1")));
        transport.append(records).expect("append");
        let metrics = Arc::new(Metrics::default());
        let health = Arc::new(PartitionHealth::new(1));
        let dead_letters = Arc::new(
            DeadLetterLog::open(&dir.path().join("dead.jsonl"), metrics.clone()).expect("dl"),
        );
        let progress = Arc::new(Progress::new(vec![Resume::default()]));
        let runner = Runner::start(RunnerParts {
            transport: transport.clone(),
            store: store.clone(),
            pipelines: Arc::new(Pipelines::default()),
            progress: progress.clone(),
            dead_letters: dead_letters.clone(),
            health: health.clone(),
            idle_after: Duration::from_secs(1),
            metrics: metrics.clone(),
            watermarks: Arc::default(),
        })
        .expect("start");
        let deadline = Instant::now() + Duration::from_secs(20);
        while progress.snapshot()[0] < 11 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        runner.stop();

        assert_eq!(
            progress.snapshot(),
            [11],
            "the partition went past the record"
        );
        let letters = dead_letters.read_all().expect("letters");
        assert_eq!(letters.len(), 1, "{letters:?}");
        assert_eq!(letters[0].items, ["panic v=1 1"]);
        assert!(
            letters[0].error.contains("panicked at offset 0/4")
                && letters[0].error.contains("a store bug met a panic point"),
            "{}",
            letters[0].error
        );
        let troubled = health.troubled();
        assert_eq!(troubled.len(), 1);
        assert_eq!(troubled[0].partition, 0);
        assert!(troubled[0].panics >= 2, "the group, then the record alone");
        assert!(
            metrics
                .render()
                .contains("sluice_partition_panics_total{partition=\"0\"}"),
            "{}",
            metrics.render()
        );
        let stored = store
            .series(&TenantId::new("a"), &SeriesFilter::default())
            .expect("series");
        assert_eq!(stored.len(), 10, "every other record stored");
        assert_eq!(
            store.checkpointed().expect("checkpointed"),
            [Through {
                partition: 0,
                next: 11
            }],
            "the last checkpoint covers the dead-lettered record too"
        );
    }
}
