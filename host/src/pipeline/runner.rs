//! The pipeline runner: one thread per transport partition fetches records from the
//! committed offset, runs each tenant's stages and writes the result to the store, where it
//! is queryable at once. A checkpoint thread syncs the store every [`SYNC_EVERY`] and only
//! then commits the offsets processed before the sync began, so syncs never hold up the
//! partitions. A crash replays the uncommitted tail; the store's idempotent writes make that
//! harmless.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use std::panic::AssertUnwindSafe;

use super::alerting::AlertStage;
use super::dead_letter::{DeadLetter, DeadLetterError, DeadLetterLog};
use super::health::{PartitionHealth, panic_message};
use super::stage::Stage;
use super::webhook::Webhook;
use crate::lineproto::format_point;
use crate::point::Point;
use crate::store::{Store, Through};
use crate::telemetry::{Metrics, PartitionLabels, RuleLabels, StageLabels, TenantLabels};
use crate::tenant::TenantId;
use crate::time::{now_ns, seconds_between};
use crate::transport::{Offset, Partition, Transport};
use crate::window::{RuleSpec, Tumbling};

/// The consumer group of the pipeline in the transport.
pub const GROUP: &str = "pipeline";

/// Records fetched and stored together. Small groups bound the latency a point waits
/// behind others; large ones amortize the per-group work.
const FETCH_RECORDS: usize = 64;

/// How often the store is synced and offsets committed: about what a crash replays at most,
/// and how long the transport keeps processed records. One fsync per interval, not per group.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// How long a fetch waits for new records before checking for shutdown.
const FETCH_WAIT: Duration = Duration::from_millis(100);

/// Pause before retrying a failed store or dead-letter write (disk full, say).
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// An alert rule: its windows' spec, the alert stage evaluating closed windows, and an
/// optional webhook besides the log and the store.
pub struct AlertRule {
    /// What to window.
    pub spec: Arc<RuleSpec>,
    /// The alert plugin stage.
    pub stage: AlertStage,
    /// Where alerts are also posted.
    pub webhook: Option<Webhook>,
}

/// A tenant's point stages, in order, and alert rules.
#[derive(Default)]
pub struct TenantPipeline {
    /// Filter and transform stages.
    pub stages: Vec<Stage>,
    /// Alert rules over the stored points.
    pub alerts: Vec<AlertRule>,
}

/// Every tenant's pipeline.
#[derive(Default)]
pub struct Pipelines {
    by_tenant: HashMap<TenantId, TenantPipeline>,
}

impl Pipelines {
    /// Sets `tenant`'s pipeline.
    pub fn insert(&mut self, tenant: TenantId, pipeline: TenantPipeline) {
        self.by_tenant.insert(tenant, pipeline);
    }

    /// Runs `points` of `tenant` through its stages, timing each; a dead-lettered batch
    /// yields nothing.
    ///
    /// # Errors
    /// When a failed batch could not be kept as a dead letter.
    pub fn run(
        &self,
        tenant: &TenantId,
        mut points: Vec<Point>,
        metrics: &Metrics,
    ) -> Result<Vec<Point>, DeadLetterError> {
        let _span = tracing::debug_span!("pipeline", %tenant).entered();
        for stage in self
            .by_tenant
            .get(tenant)
            .into_iter()
            .flat_map(|p| &p.stages)
        {
            let started = Instant::now();
            let output = stage.process(points)?;
            metrics
                .stage_seconds
                .get_or_create(&StageLabels {
                    tenant: tenant.to_string(),
                    stage: stage.name().to_owned(),
                })
                .observe(started.elapsed().as_secs_f64());
            match output.points {
                Some(out) => points = out,
                None => return Ok(Vec::new()),
            }
        }
        Ok(points)
    }
}

/// Processed offsets per partition (the next record to run through the stages), shared
/// with ingest to measure the pipeline's lag.
pub struct Progress {
    processed: Vec<AtomicU64>,
}

impl Progress {
    /// Progress of `partitions` partitions starting at their committed offsets.
    pub fn new(committed: Vec<Offset>) -> Self {
        Self {
            processed: committed.into_iter().map(AtomicU64::new).collect(),
        }
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
    checkpoints: JoinHandle<Checkpoint>,
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
            let mut checkpoint = Checkpoint {
                committed: vec![0; parts.progress.processed.len()],
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
/// commit leaves the transport behind; replaying from there would store points twice).
///
/// # Errors
/// When the transport or the store can't tell.
pub fn resume_offsets(
    transport: &dyn Transport,
    store: &dyn Store,
) -> Result<Vec<Offset>, Box<dyn std::error::Error + Send + Sync>> {
    let mut offsets = (0..transport.partitions())
        .map(|p| transport.committed(GROUP, p))
        .collect::<Result<Vec<_>, _>>()?;
    for Through { partition, next } in store.checkpointed()? {
        if let Some(offset) = offsets.get_mut(partition as usize) {
            *offset = (*offset).max(next);
        }
    }
    Ok(offsets)
}

/// The offsets committed so far, per partition.
struct Checkpoint {
    committed: Vec<Offset>,
}

impl Checkpoint {
    /// [`Checkpoint::take`], with a panic caught and logged: offsets then stay uncommitted
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
        if processed.iter().zip(&self.committed).all(|(p, c)| p <= c) {
            return;
        }
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
    let mut next = parts.progress.processed[partition as usize].load(Ordering::Acquire);
    let mut windows: HashMap<(TenantId, usize), Tumbling> = HashMap::new();
    // After a panic, records are taken one at a time through the last one of the group
    // that panicked, so the one that panics alone is found and kept as a dead letter.
    let mut isolate_through: Option<Offset> = None;
    let mut last_records = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let isolating = isolate_through.is_some_and(|last| next <= last);
        let max = if isolating { 1 } else { FETCH_RECORDS };
        let records = match parts.transport.fetch(partition, next, max, FETCH_WAIT) {
            Ok(records) if records.is_empty() => {
                // The heartbeat: a partition idle long enough closes windows by the clock.
                let idle = last_records.elapsed() >= parts.idle_after;
                fire_alerts(parts, &mut windows, idle, stop);
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
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            process(parts, through, records, &mut windows, stop)
        }));
        match outcome {
            Ok(Ok(Outcome::Done)) => {}
            Ok(Ok(Outcome::Stopped)) => return,
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
                    isolate_through = Some(last);
                    continue;
                };
                // This record alone panics: kept with the reason, and the partition goes on.
                let letter = DeadLetter::refused(
                    &format!("{}/pipeline", record.tenant),
                    &format!("processing panicked at offset {partition}/{next}: {message}"),
                    record.points.iter().map(format_point).collect(),
                );
                if !keep(parts, &[letter], stop) {
                    return;
                }
                // The store notes that the partition moved past it.
                while let Err(error) = parts.store.write(&[], through) {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    tracing::error!(%error, "Could not note the offset in the store; retrying.");
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
        next = last + 1;
        parts.progress.processed[partition as usize].store(next, Ordering::Release);
    }
}

/// How processing a group of records ended.
enum Outcome {
    /// Stored (or dead-lettered); the partition moves past the group.
    Done,
    /// The runner is stopping; the group stays unprocessed.
    Stopped,
}

/// Runs `records` through their tenants' stages into the store, then their alert windows.
///
/// # Errors
/// When a failed batch could not be kept as a dead letter: the group must be retried.
fn process(
    parts: &RunnerParts,
    through: Through,
    records: Vec<(Offset, crate::transport::Record)>,
    windows: &mut HashMap<(TenantId, usize), Tumbling>,
    stop: &AtomicBool,
) -> Result<Outcome, DeadLetterError> {
    let mut batches = run_stages(parts, records)?;
    // Stages ran once (plugin state is committed); only the store write is retried.
    loop {
        match store(parts, &mut batches, through) {
            Ok(refused) => {
                if !keep(parts, &refused, stop) {
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
                let letters: Vec<DeadLetter> = batches
                    .iter()
                    .map(|(tenant, points)| {
                        DeadLetter::refused(
                            &format!("{tenant}/store"),
                            &error.to_string(),
                            points.iter().map(format_point).collect(),
                        )
                    })
                    .collect();
                if !keep(parts, &letters, stop) {
                    return Ok(Outcome::Stopped);
                }
                // Written again with nothing in it: the store still notes the offsets.
                batches.clear();
            }
        }
    }
    observe(parts, windows, &batches);
    fire_alerts(parts, windows, false, stop);
    Ok(Outcome::Done)
}

/// Keeps `letters` durably, retrying while the dead-letter log fails; false when the runner
/// stopped first.
fn keep(parts: &RunnerParts, letters: &[DeadLetter], stop: &AtomicBool) -> bool {
    if letters.is_empty() {
        return true;
    }
    while let Err(error) = parts.dead_letters.put_all(letters) {
        if stop.load(Ordering::Acquire) {
            return false;
        }
        tracing::error!(%error, "Could not keep dead letters; retrying.");
        std::thread::sleep(RETRY_PAUSE);
    }
    true
}

/// Adds stored points to the windows of their tenant's alert rules.
fn observe(
    parts: &RunnerParts,
    windows: &mut HashMap<(TenantId, usize), Tumbling>,
    batches: &[(TenantId, Vec<Point>)],
) {
    for (tenant, points) in batches {
        let Some(pipeline) = parts.pipelines.by_tenant.get(tenant) else {
            continue;
        };
        for (i, rule) in pipeline.alerts.iter().enumerate() {
            let w = windows
                .entry((tenant.clone(), i))
                .or_insert_with(|| Tumbling::new(rule.spec.clone()));
            let (late_before, future_before) = (w.late(), w.future());
            let now = now_ns();
            for point in points {
                w.record(point, now);
            }
            let labels = || RuleLabels {
                tenant: tenant.to_string(),
                rule: rule.spec.name.clone(),
            };
            if w.late() > late_before {
                parts
                    .metrics
                    .window_late_points
                    .get_or_create(&labels())
                    .inc_by(w.late() - late_before);
            }
            if w.future() > future_before {
                parts
                    .metrics
                    .window_future_points
                    .get_or_create(&labels())
                    .inc_by(w.future() - future_before);
            }
        }
    }
}

/// Closes due windows, evaluates them and delivers the alerts: log, store, webhook.
fn fire_alerts(
    parts: &RunnerParts,
    windows: &mut HashMap<(TenantId, usize), Tumbling>,
    idle: bool,
    stop: &AtomicBool,
) {
    let now = now_ns();
    for ((tenant, i), w) in windows.iter_mut() {
        let closed = w.close(now, idle);
        if closed.is_empty() {
            continue;
        }
        let Some(rule) = parts
            .pipelines
            .by_tenant
            .get(tenant)
            .and_then(|p| p.alerts.get(*i))
        else {
            continue;
        };
        let alerts = match rule.stage.process(closed) {
            Ok(alerts) => alerts,
            Err(error) => {
                tracing::error!(%error, %tenant, rule = %rule.spec.name, "Closed windows lost: dead letter not kept.");
                continue;
            }
        };
        if alerts.is_empty() {
            continue;
        }
        for a in &alerts {
            tracing::warn!(%tenant, rule = %a.rule, series = %a.series, state = %a.state, value = a.value, "{}", a.message);
        }
        while let Err(error) = parts.store.write_alerts(tenant, &alerts) {
            if !error.is_retryable() || stop.load(Ordering::Acquire) {
                // Kept where an operator finds them, rather than retried forever.
                let letter = DeadLetter::refused(
                    &format!("{tenant}/alerts/{}", rule.spec.name),
                    &format!("alerts not stored: {error}"),
                    alerts.iter().map(|a| a.message.clone()).collect(),
                );
                keep(parts, &[letter], stop);
                break;
            }
            tracing::error!(%error, %tenant, "Could not store alerts; retrying.");
            std::thread::sleep(RETRY_PAUSE);
        }
        if let Some(webhook) = &rule.webhook {
            webhook.send(tenant, &alerts);
        }
    }
}

fn run_stages(
    parts: &RunnerParts,
    records: Vec<(Offset, crate::transport::Record)>,
) -> Result<Vec<(TenantId, Vec<Point>)>, DeadLetterError> {
    records
        .into_iter()
        .map(|(_, record)| {
            Ok((
                record.tenant.clone(),
                parts
                    .pipelines
                    .run(&record.tenant, record.points, &parts.metrics)?,
            ))
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
        let progress = Arc::new(Progress::new(vec![0]));
        let runner = Runner::start(RunnerParts {
            transport: transport.clone(),
            store: store.clone(),
            pipelines: Arc::new(Pipelines::default()),
            progress: progress.clone(),
            dead_letters: dead_letters.clone(),
            health: health.clone(),
            idle_after: Duration::from_secs(1),
            metrics: metrics.clone(),
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
