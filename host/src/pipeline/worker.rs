//! A lane's worker: reads its tenant's records of the partition in order, runs the
//! tenant's stages, writes the points to the store (queryable at once) and feeds the
//! windows. It resumes from the lane's saved state and what the store holds, saves the
//! state every [`STATE_EVERY`] when it changed, and saves it once more when its partition
//! is revoked or the runner stops.

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::checkpoint::{Lane, LaneState};
use super::dead_letter::{DeadLetter, DeadLetterError};
use super::health::panic_message;
use super::lane::LaneReader;
use super::pipelines::{Pipelines, StageStates};
use super::runner::RunnerParts;
use super::windowing::{Delivery, PartitionWindows};
use super::{Backoff, RETRY_PAUSE};
use crate::columns::Points;
use crate::format::Checkpoint;
use crate::lineproto::format_point;
use crate::point::Point;
use crate::quota::thread_cpu_time;
use crate::store::{Batch, Through};
use crate::telemetry::{PartitionLabels, TenantLabels};
use crate::tenant::TenantId;
use crate::time::{now_ns, seconds_between};
use crate::transport::{Offset, Partition, Record};

/// Records read and stored together. Small groups bound the latency a point waits
/// behind others; large ones amortize the per-group work.
const READ_RECORDS: usize = 64;

/// How often a partition saves its window state (when it changed): what a crash replays
/// into the windows at most. Each save encodes every open window of the partition.
const STATE_EVERY: Duration = Duration::from_secs(5);

/// How long a read waits for new records before checking for a stop.
pub(super) const READ_WAIT: Duration = Duration::from_millis(100);

/// Notes a panic caught on `partition` (health, metrics); its message.
pub(super) fn caught(
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

/// Runs [`consume`] until the partition is revoked or the runner stops. A panic outside
/// the processing of records (which `consume` catches itself) restarts it from the last
/// processed offset.
pub(super) fn supervise(parts: &RunnerParts, slot: &Lane, reader: &mut LaneReader) {
    let partition = slot.partition;
    while let Err(payload) =
        std::panic::catch_unwind(AssertUnwindSafe(|| consume(parts, slot, &mut *reader)))
    {
        let message = caught(parts, partition, payload.as_ref());
        tracing::error!(partition, tenant = %slot.tenant, %message, "A lane's worker panicked; restarting it.");
        std::thread::sleep(RETRY_PAUSE);
    }
}

fn consume(parts: &RunnerParts, slot: &Lane, reader: &mut LaneReader) {
    let partition = slot.partition;
    let stop = &*slot.stop;
    let _span = tracing::info_span!("lane", partition, tenant = %slot.tenant).entered();
    let mut worker = Worker::resume(parts, slot, reader);
    // After a panic, records are taken one at a time through the last one of the group
    // that panicked, so the one that panics alone is found and kept as a dead letter.
    let mut isolate_through: Option<Offset> = None;
    let mut last_records = Instant::now();
    while !stop.load(Ordering::Acquire) {
        worker.refresh();
        let next = worker.next;
        let isolating = isolate_through.is_some_and(|last| next <= last);
        let max = if isolating { 1 } else { READ_RECORDS };
        let records = match worker.reader.read(max, READ_WAIT) {
            Ok(records) if records.is_empty() => {
                let idle_through = worker.reader.idle_through();
                if let Some(at) = idle_through {
                    worker.idle_at(at);
                }
                slot.quiet(idle_through.is_some() && !worker.stateful());
                // The heartbeat: a lane idle long enough closes windows by the clock.
                let idle = last_records.elapsed() >= parts.idle_after;
                worker.advance(idle);
                worker.save_when_due(false);
                continue;
            }
            Ok(records) => {
                slot.quiet(false);
                last_records = Instant::now();
                records
            }
            Err(error) => {
                tracing::error!(%error, "Reading the partition failed; retrying.");
                std::thread::sleep(RETRY_PAUSE);
                continue;
            }
        };
        let last = records.last().map_or(next, |(offset, _)| *offset);
        let through = Through {
            partition,
            lane: Some(slot.tenant.clone()),
            next: last + 1,
        };
        let suspect = isolating.then(|| records[0].1.clone());
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            worker.process(through.clone(), records)
        }));
        match outcome {
            Ok(Ok(Outcome::Done)) => {}
            Ok(Ok(Outcome::Stopped)) => break,
            Ok(Err(error)) => {
                // Not committed: the same records are read again.
                tracing::error!(%error, "Could not keep a dead letter; retrying the records.");
                std::thread::sleep(RETRY_PAUSE);
                worker.seek(next);
                continue;
            }
            Err(payload) => {
                let message = caught(parts, partition, payload.as_ref());
                tracing::error!(offset = next, %message, "Processing records panicked.");
                let Some(record) = suspect else {
                    // Again one record at a time, from the last saved state (the windows
                    // and stage states may hold part of the group).
                    isolate_through = Some(last);
                    if !worker.rewind_if_stateful() {
                        worker.seek(next);
                    }
                    continue;
                };
                // This record alone panics: kept with the reason, and the partition goes on.
                let letter = DeadLetter::refused(
                    Some(&record.tenant),
                    "pipeline",
                    &format!("processing panicked at offset {partition}/{next}: {message}"),
                    lines(&record.points),
                );
                if !parts.dead_letters.keep(&[letter], stop) {
                    break;
                }
                if !note_offset(parts, through, stop) {
                    return;
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
    // The last checkpoint makes it durable: the next owner resumes the windows here.
    worker.save_when_due(true);
}

/// Writes nothing but `through` to the store, so it notes that the lane moved past
/// records that stored nothing (dead letters); false when stopped first.
fn note_offset(parts: &RunnerParts, through: Through, stop: &AtomicBool) -> bool {
    while let Err(error) = parts.store.write(&[], through.clone()) {
        if stop.load(Ordering::Acquire) {
            return false;
        }
        tracing::error!(%error, "Could not note the offset in the store; retrying.");
        std::thread::sleep(RETRY_PAUSE);
    }
    true
}

/// How processing a group of records ended.
enum Outcome {
    /// Stored (or dead-lettered); the partition moves past the group.
    Done,
    /// The runner is stopping; the group stays unprocessed.
    Stopped,
}

/// A lane's worker: where it is in the partition, and its tenant's state: windows, alert
/// states, stage states.
struct Worker<'a> {
    parts: &'a RunnerParts,
    /// The lane's shared progress: its partition, tenant and stop flag too.
    slot: &'a Lane,
    reader: &'a mut LaneReader,
    /// The first record the transport held at assignment: where a state replays from
    /// when none was saved.
    kept_from: Offset,
    /// The next record to process.
    next: Offset,
    /// Records before this are in the store already: a replay runs them through the
    /// stages and windows only.
    stored_to: Offset,
    /// Records before this are in the state already.
    state_from: Offset,
    /// The pipelines the state is of (the registry may have swapped newer ones in).
    pipelines: Arc<Pipelines>,
    windows: PartitionWindows,
    /// The plugin state of the stages.
    stages: StageStates,
    /// Whether the state changed since it was last saved.
    changed: bool,
    saved_at: Instant,
    /// Records that panic, passed over by a replay.
    skipped: BTreeSet<Offset>,
}

impl<'a> Worker<'a> {
    /// Resumes after what the store holds durably, or what the group committed,
    /// whichever is further (a crash between a store sync and the commit leaves the
    /// transport behind; replaying from there would store points twice), with the lane's
    /// last saved state: the records between the two (in either order) are replayed into
    /// whichever lacks them.
    fn resume(parts: &'a RunnerParts, slot: &'a Lane, reader: &'a mut LaneReader) -> Self {
        let kept_from = reader.committed();
        let next = kept_from
            .max(slot.stored_at_start)
            .max(slot.processed.load(Ordering::Acquire));
        slot.processed.store(next, Ordering::Release);
        let mut worker = Self {
            parts,
            slot,
            reader,
            kept_from,
            next,
            stored_to: next,
            state_from: 0,
            pipelines: parts.pipelines.current(),
            windows: PartitionWindows::default(),
            stages: StageStates::default(),
            changed: false,
            saved_at: Instant::now(),
            skipped: BTreeSet::new(),
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
        let saved = super::checkpoint::lock(&self.slot.saved).clone();
        self.stored_to = self.stored_to.max(self.next);
        let checkpoint = saved
            .as_ref()
            .map_or_else(Checkpoint::default, |s| s.checkpoint.clone());
        self.pipelines = self.parts.pipelines.current();
        self.windows = PartitionWindows::import(&self.pipelines, &checkpoint);
        self.stages = StageStates::import(&self.pipelines, &checkpoint);
        // Nothing saved: the state replays what the transport held at assignment.
        self.state_from = saved.map_or(self.kept_from, |s| s.next);
        self.next = self.state_from.min(self.stored_to);
        self.changed = false;
        self.seek(self.next);
    }

    /// Takes up the pipelines the registry swapped in since the last group. The state
    /// carries over by name: a stage or rule kept keeps its state, a removed one's goes, a
    /// new one starts empty.
    fn refresh(&mut self) {
        let current = self.parts.pipelines.current();
        if Arc::ptr_eq(&current, &self.pipelines) {
            return;
        }
        let mut checkpoint = Checkpoint::default();
        self.windows.export(&mut checkpoint);
        self.stages.export(&mut checkpoint);
        self.windows = PartitionWindows::import(&current, &checkpoint);
        self.stages = StageStates::import(&current, &checkpoint);
        self.pipelines = current;
        self.changed = true;
    }

    /// Reads from `offset` next.
    fn seek(&mut self, offset: Offset) {
        self.next = offset;
        while let Err(error) = self.reader.seek(offset) {
            if self.slot.stop.load(Ordering::Acquire) {
                return;
            }
            tracing::error!(%error, offset, "Could not read the lane's records again; retrying.");
            std::thread::sleep(RETRY_PAUSE);
        }
    }

    /// Advances the windows; `idle`: by the wall clock too.
    fn advance(&mut self, idle: bool) {
        if self.windows.is_empty() {
            return;
        }
        let d = delivery(self.parts, self.slot, &self.pipelines);
        self.changed |= self.windows.advance(&d, idle, &mut self.stages);
    }

    /// The lane is past record `last`: its points are stored, and in the state.
    fn moved_past(&mut self, last: Offset) {
        self.next = last + 1;
        self.stored_to = self.stored_to.max(self.next);
        self.processed();
        self.save_when_due(false);
    }

    /// The lane has nothing to do: none of its tenant's records before `at` is left.
    fn idle_at(&mut self, at: Offset) {
        if at <= self.next || self.next < self.state_from {
            return;
        }
        self.next = at;
        self.stored_to = self.stored_to.max(at);
        self.processed();
    }

    /// Publishes the lane's progress: to the checkpoints, and to the transport's backlog.
    fn processed(&self) {
        let slot = self.slot;
        slot.processed.fetch_max(self.next, Ordering::AcqRel);
        self.parts
            .committer
            .processed(slot.partition, &slot.tenant, self.next);
    }

    /// Saves the partition's state (for the next checkpoint to make durable) when it
    /// changed, or the partition moved past the last save (so the log need not keep those
    /// records), and the last save is [`STATE_EVERY`] old; with `now`, whatever its age.
    fn save_when_due(&mut self, now: bool) {
        let needed = self.slot.needed_from.load(Ordering::Acquire);
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
        let state = LaneState {
            next: self.next,
            checkpoint,
        };
        // A replay starts at the saved state now: earlier records are not seen again.
        self.skipped = self.skipped.split_off(&state.next);
        self.slot.stage(state);
        self.changed = false;
        self.saved_at = Instant::now();
    }

    /// Runs `records` through their tenants' stages into the store, then the windows:
    /// each record only where it isn't already (a replay after a restart).
    ///
    /// # Errors
    /// When a failed batch could not be kept as a dead letter: the group must be retried.
    fn process(
        &mut self,
        through: Through,
        records: Vec<(Offset, Record)>,
    ) -> Result<Outcome, DeadLetterError> {
        let (parts, stop) = (self.parts, &*self.slot.stop);
        // A record already stored is replayed for the state only (stages, windows): not at
        // all where its tenant has neither. One that panics is passed over.
        let records: Vec<_> = records
            .into_iter()
            .filter(|(o, r)| {
                !self.skipped.contains(o)
                    && (*o >= self.stored_to
                        || self
                            .pipelines
                            .get(&r.tenant)
                            .is_some_and(|p| p.windows.is_some() || !p.stages.is_empty()))
            })
            .collect();
        let offsets: Vec<Offset> = records.iter().map(|(o, _)| *o).collect();
        // Stages run on records the state lacks, and on those the store lacks (a record
        // behind the state but not stored runs its stages again: the store's sync makes
        // states durable only with the points before them, so that doesn't happen).
        let mut batches = run_stages(parts, &self.pipelines, records, &mut self.stages, stop)?;
        self.changed |= !offsets.is_empty() && !self.stages.is_empty();
        let stored = offsets.partition_point(|o| *o < self.stored_to);
        let windowed = offsets.partition_point(|o| *o < self.state_from);
        let fresh = &mut batches[stored..];
        // Stages ran once (plugin state is committed); only the store write is retried.
        let mut backoff = Backoff::default();
        while stored < offsets.len() {
            match store(parts, &self.pipelines, fresh, through.clone()) {
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
                    tracing::error!(%error, pause = ?backoff.next(), "Could not store processed records; retrying without committing.");
                    backoff.pause();
                }
                Err(error) => {
                    tracing::error!(%error, "Records can't be stored; keeping them as dead letters.");
                    let letters: Vec<DeadLetter> = fresh
                        .iter()
                        .map(|(tenant, points)| {
                            DeadLetter::refused(
                                Some(tenant),
                                "store",
                                &error.to_string(),
                                lines(points),
                            )
                        })
                        .collect();
                    if !parts.dead_letters.keep(&letters, stop) {
                        return Ok(Outcome::Stopped);
                    }
                    // Written again with nothing in it: the store still notes the offsets.
                    for (_, points) in fresh.iter_mut() {
                        *points = Points::default();
                    }
                }
            }
        }
        if windowed < batches.len() {
            let d = delivery(self.parts, self.slot, &self.pipelines);
            self.windows.observe(&d, &mut batches[windowed..]);
            self.changed = true;
        }
        // From its first state on, a crash replays the partition from `state_from` (until a
        // save moves it): the transport must keep those records.
        if self.stateful() {
            self.slot.needs_from(self.state_from);
        }
        self.advance(false);
        Ok(Outcome::Done)
    }
}

/// What delivering windows needs, from the runner's parts.
fn delivery<'a>(parts: &'a RunnerParts, slot: &'a Lane, pipelines: &'a Pipelines) -> Delivery<'a> {
    Delivery {
        pipelines,
        store: parts.store.as_ref(),
        dead_letters: &parts.dead_letters,
        metrics: &parts.metrics,
        stop: &slot.stop,
        watermarks: &parts.watermarks,
        partition: slot.partition,
        outbox: parts.outbox.as_deref(),
    }
}

/// Runs `f` until it succeeds, logging each failure as trouble with `what`; none when
/// `stop` is set first.
pub(super) fn retry<T, E: std::fmt::Display>(
    stop: &AtomicBool,
    what: &str,
    mut f: impl FnMut() -> Result<T, E>,
) -> Option<T> {
    loop {
        match f() {
            Ok(value) => return Some(value),
            Err(error) => {
                if stop.load(Ordering::Acquire) {
                    return None;
                }
                tracing::error!(%error, "Could not read {what}; retrying.");
                std::thread::sleep(RETRY_PAUSE);
            }
        }
    }
}

/// Runs each record through its tenant's stages, within the tenant's plugin CPU quota:
/// past it, the lane pauses until the quota has room again (or the lane stops). A tenant
/// without stages has its records' points as they came, in columns only where they came so.
fn run_stages(
    parts: &RunnerParts,
    pipelines: &Pipelines,
    records: Vec<(Offset, Record)>,
    states: &mut StageStates,
    stop: &AtomicBool,
) -> Result<Vec<(TenantId, Points)>, DeadLetterError> {
    records
        .into_iter()
        .map(|(_, record)| {
            let Record { tenant, points } = record;
            let staged = pipelines.get(&tenant).is_some_and(|p| !p.stages.is_empty());
            if !staged {
                // No plugin runs: no quota to wait for or charge.
                return Ok((tenant, points));
            }
            let (points, columns) = match points.into_made() {
                Ok(made) => made,
                Err(reason) => {
                    // Kept as a stage's failed batch is: not kept, the records are read again.
                    parts.dead_letters.put(&DeadLetter::refused(
                        Some(&tenant),
                        "pipeline",
                        &format!("the record's columns don't make points: {reason}"),
                        Vec::new(),
                    ))?;
                    return Ok((tenant, Points::default()));
                }
            };
            loop {
                let pause = parts.quotas.cpu_pause(&tenant);
                if pause.is_zero() || stop.load(Ordering::Acquire) {
                    break;
                }
                std::thread::sleep(pause.min(READ_WAIT));
            }
            let permit = parts.quotas.plugin_permit(&tenant, stop);
            let started = thread_cpu_time();
            let (points, columns) =
                pipelines.run(&tenant, points, columns, states, &parts.metrics)?;
            parts
                .quotas
                .charge_cpu(&tenant, thread_cpu_time().saturating_sub(started));
            drop(permit);
            Ok((tenant, Points::new(points, columns)))
        })
        .collect()
}

/// Each of `points` in line protocol, for a dead letter (a point whose columns don't make
/// one says why instead).
fn lines(points: &Points) -> Vec<String> {
    let mut scratch = Point::default();
    (0..points.len())
        .map(|i| {
            points
                .point(i, &mut scratch)
                .map_or_else(|e| format!("# {e}"), format_point)
        })
        .collect()
}

/// Writes `batches` to the store. Points the store refuses are taken out of `batches` and
/// returned as dead letters, one per point with its reason.
fn store(
    parts: &RunnerParts,
    pipelines: &Pipelines,
    batches: &mut [(TenantId, Points)],
    through: Through,
) -> Result<Vec<DeadLetter>, crate::store::StoreError> {
    let started = Instant::now();
    let kept: Vec<Batch<'_>> = batches
        .iter()
        .map(|(tenant, points)| Batch {
            tenant,
            retention: pipelines.retention(tenant),
            points,
        })
        .collect();
    let mut refused = parts.store.write(&kept, through)?;
    drop(kept);
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
                let line = points
                    .remove(r.point)
                    .map_or_else(|e| format!("# {e}"), |p| format_point(&p));
                DeadLetter::refused(Some(tenant), "store", &r.reason.to_string(), vec![line])
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
        if let Some(newest) = points.timestamps().max() {
            let age = seconds_between(newest, now);
            if (0.0..60.0).contains(&age) {
                parts.metrics.ingest_to_stored_seconds.observe(age);
            }
        }
    }
    Ok(letters)
}
