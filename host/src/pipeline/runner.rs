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
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::alerting::AlertStage;
use super::dead_letter::DeadLetterError;
use super::stage::Stage;
use super::webhook::Webhook;
use crate::point::Point;
use crate::store::Store;
use crate::telemetry::{Metrics, RuleLabels, StageLabels, TenantLabels};
use crate::tenant::TenantId;
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
                    .spawn(move || consume(&parts, p, &stop))
            })
            .collect::<std::io::Result<_>>()?;
        let checkpoints = {
            let mut checkpoint = Checkpoint {
                committed: parts.progress.snapshot(),
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
                        checkpoint.take(&parts);
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
            checkpoint.take(&self.parts);
        }
    }
}

/// The offsets committed so far, per partition.
struct Checkpoint {
    committed: Vec<Offset>,
}

impl Checkpoint {
    /// Syncs the store and commits what the partitions had processed before the sync. On
    /// failure the points stay queryable, the records stay in the transport, and the next
    /// checkpoint tries again.
    fn take(&mut self, parts: &RunnerParts) {
        let processed = parts.progress.snapshot();
        if processed.iter().zip(&self.committed).all(|(p, c)| p <= c) {
            return;
        }
        let started = Instant::now();
        if let Err(error) = parts.store.sync() {
            tracing::error!(%error, "Could not sync the store; offsets stay uncommitted.");
            return;
        }
        parts
            .metrics
            .store_sync_seconds
            .observe(started.elapsed().as_secs_f64());
        for (p, (next, committed)) in processed.into_iter().zip(&mut self.committed).enumerate() {
            if next <= *committed {
                continue;
            }
            match parts.transport.commit(GROUP, p as Partition, next) {
                Ok(()) => *committed = next,
                Err(error) => {
                    tracing::error!(%error, partition = p, "Commit failed; retrying at the next checkpoint.");
                }
            }
        }
    }
}

fn consume(parts: &RunnerParts, partition: Partition, stop: &AtomicBool) {
    let _span = tracing::info_span!("partition", partition).entered();
    let mut next = parts.progress.processed[partition as usize].load(Ordering::Acquire);
    let mut windows: HashMap<(TenantId, usize), Tumbling> = HashMap::new();
    while !stop.load(Ordering::Acquire) {
        let records = match parts
            .transport
            .fetch(partition, next, FETCH_RECORDS, FETCH_WAIT)
        {
            Ok(records) if records.is_empty() => {
                // The heartbeat: idle partitions still close their windows.
                fire_alerts(parts, &mut windows);
                continue;
            }
            Ok(records) => records,
            Err(error) => {
                tracing::error!(%error, "Fetch failed; retrying.");
                std::thread::sleep(RETRY_PAUSE);
                continue;
            }
        };
        let last = records.last().map_or(next, |(o, _)| *o);
        let batches = match run_stages(parts, records) {
            Ok(batches) => batches,
            Err(error) => {
                // Not committed: the same records are fetched again.
                tracing::error!(%error, "Could not keep a dead letter; retrying the records.");
                std::thread::sleep(RETRY_PAUSE);
                continue;
            }
        };
        // Stages ran once (plugin state is committed); only the store write is retried.
        while let Err(error) = store(parts, &batches) {
            if stop.load(Ordering::Acquire) {
                return;
            }
            tracing::error!(%error, "Could not store processed records; retrying without committing.");
            std::thread::sleep(RETRY_PAUSE);
        }
        next = last + 1;
        parts.progress.processed[partition as usize].store(next, Ordering::Release);
        observe(parts, &mut windows, &batches);
        fire_alerts(parts, &mut windows);
    }
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
            let late_before = w.late();
            for point in points {
                w.record(point);
            }
            if w.late() > late_before {
                parts
                    .metrics
                    .window_late_points
                    .get_or_create(&RuleLabels {
                        tenant: tenant.to_string(),
                        rule: rule.spec.name.clone(),
                    })
                    .inc_by(w.late() - late_before);
            }
        }
    }
}

/// Closes due windows, evaluates them and delivers the alerts: log, store, webhook.
fn fire_alerts(parts: &RunnerParts, windows: &mut HashMap<(TenantId, usize), Tumbling>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    for ((tenant, i), w) in windows.iter_mut() {
        let closed = w.close(now);
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

fn store(
    parts: &RunnerParts,
    batches: &[(TenantId, Vec<Point>)],
) -> Result<(), crate::store::StoreError> {
    let started = Instant::now();
    parts.store.write(batches)?;
    parts
        .metrics
        .store_write_seconds
        .observe(started.elapsed().as_secs_f64());
    let now_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    for (tenant, points) in batches {
        parts
            .metrics
            .points_stored
            .get_or_create(&TenantLabels {
                tenant: tenant.to_string(),
            })
            .inc_by(points.len() as u64);
        // Latency from event time is meaningful only for live data (clients stamping now).
        if let Some(newest) = points.iter().map(|p| p.timestamp).max() {
            let age = (now_ns - newest) as f64 / 1e9;
            if (0.0..60.0).contains(&age) {
                parts.metrics.ingest_to_stored_seconds.observe(age);
            }
        }
    }
    Ok(())
}
