//! The pipeline runner: one member of the transport's consumer group. A poll thread
//! follows the group: each partition assigned to the member gets a reader thread
//! ([`super::partition`]) that hands each tenant's records to the tenant's lane, a worker
//! thread of its own ([`super::worker`]); a revoked partition's lanes stop, save their
//! state, and a last checkpoint commits it before the revocation returns, so the next
//! owner resumes exactly there. A checkpoint thread syncs the store and commits every
//! [`super::checkpoint::SYNC_EVERY`]. The embedded log has one member owning every
//! partition; Kafka spreads them over the processes of a group: one code path.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::checkpoint::{Owned, SYNC_EVERY, Slot, lock};
use super::dead_letter::DeadLetterLog;
use super::health::PartitionHealth;
use super::pipelines::PipelinesCell;
use super::windowing::Watermarks;
use super::worker::READ_WAIT;
use crate::quota::Quotas;
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::transport::{
    Committer, GroupConsumer, Outbox, Partition, PartitionReader, Rebalance, StateLog,
};

/// What the runner needs.
pub struct RunnerParts {
    /// Where points go.
    pub store: Arc<dyn Store>,
    /// Where partitions' states are kept for whichever member owns them next.
    pub states: Arc<dyn StateLog>,
    /// Where offsets are committed (the group consumer's).
    pub committer: Arc<dyn Committer>,
    /// Tenants' stages, as of now.
    pub pipelines: Arc<PipelinesCell>,
    /// Where records the store refuses, or that panic or don't decode, are kept.
    pub dead_letters: Arc<DeadLetterLog>,
    /// Panics caught per partition.
    pub health: Arc<PartitionHealth>,
    /// How long a partition goes without records before the wall clock closes its windows.
    pub idle_after: Duration,
    /// Service metrics.
    pub metrics: Arc<Metrics>,
    /// Where partitions publish their watermarks.
    pub watermarks: Arc<Watermarks>,
    /// Where alerts and late data are published too (Kafka topics), if anywhere.
    pub outbox: Option<Arc<dyn Outbox>>,
    /// Each tenant's quotas (its plugins' CPU time).
    pub quotas: Arc<Quotas>,
}

/// The running member: its poll thread (with the workers it started) and its checkpoint
/// thread. [`Runner::stop`] gives every partition up cleanly.
pub struct Runner {
    members: Arc<Members>,
    stop: Arc<AtomicBool>,
    poll: JoinHandle<()>,
    checkpoints: JoinHandle<()>,
}

/// The member's side of the group: its partitions' workers.
struct Members {
    parts: Arc<RunnerParts>,
    owned: Owned,
    workers: Mutex<HashMap<Partition, Worker>>,
}

/// A partition's reader thread, and what it shares.
type Worker = (Arc<Slot>, JoinHandle<()>);

impl Rebalance for Members {
    fn assigned(&self, readers: Vec<Box<dyn PartitionReader>>) {
        let partitions: Vec<Partition> = readers.iter().map(|r| r.partition()).collect();
        if !partitions.is_empty() {
            tracing::info!(?partitions, "Partitions assigned to this member.");
        }
        let slots: Vec<Arc<Slot>> = readers
            .iter()
            .map(|r| Arc::new(Slot::new(r.partition(), r.committed())))
            .collect();
        self.owned.add(&slots);
        self.parts
            .metrics
            .partitions_owned
            .inc_by(slots.len() as i64);
        let mut workers = lock(&self.workers);
        for (slot, reader) in slots.into_iter().zip(readers) {
            let partition = slot.partition;
            let parts = self.parts.clone();
            let worker_slot = slot.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("sluice-partition-{partition}"))
                .spawn(move || super::partition::run(&parts, &worker_slot, reader));
            match spawned {
                Ok(thread) => {
                    workers.insert(partition, (slot, thread));
                }
                Err(error) => {
                    tracing::error!(%error, partition, "Could not start the partition's worker.");
                }
            }
        }
    }

    fn revoked(&self, partitions: &[Partition]) {
        tracing::info!(
            ?partitions,
            "Partitions revoked: saving their state and committing."
        );
        let stopping: Vec<_> = {
            let mut workers = lock(&self.workers);
            partitions
                .iter()
                .filter_map(|p| workers.remove(p))
                .collect()
        };
        for (slot, _) in &stopping {
            slot.stop.store(true, Ordering::Release);
        }
        let stopped = stopping.len() as i64;
        for (_, thread) in stopping {
            let _ = thread.join();
        }
        self.owned.checkpoint_and_release(&self.parts, partitions);
        self.parts.metrics.partitions_owned.dec_by(stopped);
        for p in partitions {
            self.parts.watermarks.forget(*p);
        }
        tracing::info!(?partitions, "Partitions given up.");
    }
}

impl Runner {
    /// Joins the group with `consumer`: starts the poll thread, which starts a worker per
    /// assigned partition, and the checkpoint thread.
    ///
    /// # Errors
    /// When a thread can't be spawned.
    pub fn start(
        parts: RunnerParts,
        mut consumer: Box<dyn GroupConsumer>,
    ) -> std::io::Result<Self> {
        let members = Arc::new(Members {
            parts: Arc::new(parts),
            owned: Owned::default(),
            workers: Mutex::default(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let poll = {
            let (members, stop) = (members.clone(), stop.clone());
            std::thread::Builder::new()
                .name("sluice-group".into())
                .spawn(move || {
                    let rebalance: Arc<dyn Rebalance> = members.clone();
                    while !stop.load(Ordering::Acquire) {
                        if let Err(error) = consumer.poll(&rebalance, READ_WAIT) {
                            tracing::error!(%error, "Polling the consumer group failed; retrying.");
                            std::thread::sleep(super::RETRY_PAUSE);
                        }
                    }
                    // Every partition given up cleanly before the member leaves the group.
                    members.revoked(&members.owned.partitions());
                    drop(consumer);
                })?
        };
        let checkpoints = {
            let (members, stop) = (members.clone(), stop.clone());
            std::thread::Builder::new()
                .name("sluice-checkpoint".into())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        let due = Instant::now() + SYNC_EVERY;
                        // Short naps, so a stop is seen as soon as a read would see it.
                        while Instant::now() < due && !stop.load(Ordering::Acquire) {
                            std::thread::sleep(READ_WAIT);
                        }
                        members.owned.checkpoint(&members.parts);
                    }
                })?
        };
        Ok(Self {
            members,
            stop,
            poll,
            checkpoints,
        })
    }

    /// Whether every partition this member owns has processed what it held when assigned
    /// (after a crash: the replay of the unprocessed tail). False until the group has
    /// assigned this member its partitions.
    pub fn caught_up(&self) -> bool {
        self.members.owned.caught_up()
    }

    /// Lanes of this member's partitions.
    #[cfg(test)]
    fn lanes(&self) -> usize {
        self.members.owned.lanes()
    }

    /// Stops: every partition is given up (its worker ends, saves its state, and a last
    /// checkpoint commits it), then the member leaves the group.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.poll.join();
        let _ = self.checkpoints.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::{Precision, parse};
    use crate::point::{FieldType, Nanos, Point};
    use crate::store::{
        Batch, EmbeddedStore, ReadPage, Refused, Retention, SeriesFilter, SeriesKey, SeriesPage,
        StoreError, Through, Tier,
    };
    use crate::tenant::TenantId;
    use crate::transport::{EmbeddedLog, Producer, Record};

    /// The embedded store, except that a write holding a `panic` point panics, as a bug in
    /// a store would, and that writes of tenant `slow` time out while `stalled`.
    struct Panicky(EmbeddedStore, AtomicBool);

    impl Panicky {
        fn open(dir: &std::path::Path) -> Arc<Self> {
            let store = EmbeddedStore::open(dir).expect("store");
            Arc::new(Self(store, AtomicBool::new(false)))
        }
    }

    impl Store for Panicky {
        fn write(
            &self,
            batches: &[Batch<'_>],
            through: Through,
        ) -> Result<Vec<Refused>, StoreError> {
            let poisoned = batches
                .iter()
                .flat_map(|b| b.points.to_made().unwrap_or_default().into_owned())
                .any(|p| p.measurement == "panic");
            assert!(!poisoned, "a store bug met a panic point");
            if self.1.load(Ordering::Acquire) && batches.iter().any(|b| b.tenant.as_str() == "slow")
            {
                return Err(StoreError::Timeout {
                    what: "a test's write",
                    reason: "tenant slow is stalled".into(),
                });
            }
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
        fn expire_due(&self, now: Nanos) -> Result<u64, StoreError> {
            self.0.expire_due(now)
        }
        fn write_alerts(
            &self,
            tenant: &TenantId,
            retention: Retention,
            alerts: &[crate::point::Alert],
        ) -> Result<(), StoreError> {
            self.0.write_alerts(tenant, retention, alerts)
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
            tier: Tier<'_>,
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
        fn write_late(
            &self,
            tenant: &TenantId,
            retention: Retention,
            records: &[crate::store::LateRecord],
        ) -> Result<(), StoreError> {
            self.0.write_late(tenant, retention, records)
        }
        fn late_page(
            &self,
            tenant: &TenantId,
            range: std::ops::Range<Nanos>,
            max: usize,
        ) -> Result<crate::store::LatePage, StoreError> {
            self.0.late_page(tenant, range, max)
        }
    }

    /// A member running `log`'s partitions (no tenant pipelines) into `store`: with its
    /// dead letters, partition health and metrics.
    fn start(
        dir: &std::path::Path,
        log: &Arc<EmbeddedLog>,
        store: Arc<Panicky>,
    ) -> (
        Runner,
        Arc<DeadLetterLog>,
        Arc<PartitionHealth>,
        Arc<Metrics>,
    ) {
        let metrics = Arc::new(Metrics::default());
        let health = Arc::new(PartitionHealth::new(1));
        let dead_letters =
            Arc::new(DeadLetterLog::open(&dir.join("dead.jsonl"), metrics.clone()).expect("dl"));
        let consumer = log.consumer();
        let runner = Runner::start(
            RunnerParts {
                store,
                states: Arc::new(NoStates),
                committer: consumer.committer(),
                pipelines: Arc::default(),
                dead_letters: dead_letters.clone(),
                health: health.clone(),
                idle_after: Duration::from_secs(1),
                metrics: metrics.clone(),
                watermarks: Arc::default(),
                outbox: None,
                quotas: Arc::default(),
            },
            Box::new(consumer),
        )
        .expect("start");
        (runner, dead_letters, health, metrics)
    }

    /// Waits up to 20 s for `done`.
    fn wait_for(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `log`'s partitions (no tenant pipelines) until they have processed what they
    /// held, then stops: its dead letters, partition health and metrics.
    fn run_through(
        dir: &std::path::Path,
        log: &Arc<EmbeddedLog>,
        store: Arc<Panicky>,
    ) -> (Arc<DeadLetterLog>, Arc<PartitionHealth>, Arc<Metrics>) {
        let (runner, dead_letters, health, metrics) = start(dir, log, store);
        wait_for("the partitions to catch up", || runner.caught_up());
        runner.stop();
        (dead_letters, health, metrics)
    }

    /// No partition state is ever kept (these pipelines have none).
    struct NoStates;

    impl StateLog for NoStates {
        fn save(
            &self,
            _: &[(Partition, crate::transport::PartitionState)],
        ) -> Result<(), crate::transport::TransportError> {
            Ok(())
        }
        fn load(
            &self,
            _: Partition,
        ) -> Result<Option<crate::transport::PartitionState>, crate::transport::TransportError>
        {
            Ok(None)
        }
    }

    fn record(lp: &str) -> Record {
        tenant_record("a", lp)
    }

    fn tenant_record(tenant: &str, lp: &str) -> Record {
        Record::new(
            TenantId::new(tenant),
            parse(lp, Precision::Nanoseconds, 0).0,
        )
    }

    /// How many times each of `tenant`'s series `m,i=I` (for each I of `ids`) is stored,
    /// below the read path: 1 for each, when nothing was lost or stored twice.
    fn copies(store: &Panicky, tenant: &str, ids: impl Iterator<Item = usize>) -> Vec<usize> {
        let tenant = TenantId::new(tenant);
        ids.map(|i| {
            let series = SeriesKey {
                measurement: "m".into(),
                field: "v".into(),
                tags: vec![("i".into(), i.to_string())],
            };
            store
                .0
                .stored_samples(&tenant, &series)
                .expect("samples")
                .len()
        })
        .collect()
    }

    #[test]
    fn a_quiet_lane_retires_and_its_tenant_s_next_record_starts_it_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(&dir.path().join("log"), 1).expect("log");
        let store = Panicky::open(&dir.path().join("store"));
        log.append(vec![
            (0, tenant_record("a", "m,i=1 v=1 1")),
            (0, tenant_record("b", "m,i=2 v=2 2")),
        ])
        .expect("append");
        let (runner, ..) = start(dir.path(), &log, store.clone());
        wait_for("both stored", || {
            copies(&store, "a", 1..2) == [1] && copies(&store, "b", 2..3) == [1]
        });
        assert_eq!(runner.lanes(), 2);
        wait_for("the quiet lanes to retire", || runner.lanes() == 0);
        log.append(vec![(0, tenant_record("a", "m,i=3 v=3 3"))])
            .expect("append");
        wait_for("a's next record", || copies(&store, "a", 3..4) == [1]);
        assert_eq!(runner.lanes(), 1, "a's lane only");
        runner.stop();
        assert_eq!(
            store.checkpointed().expect("checkpointed"),
            [Through::partition(0, 3)],
            "every record processed once, retired lanes included"
        );
        assert_eq!(copies(&store, "a", 1..4), [1, 0, 1]);
    }

    #[test]
    fn a_tenant_whose_writes_stall_holds_up_no_other_and_loses_or_repeats_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = EmbeddedLog::open(&dir.path().join("log"), 1).expect("log");
        // One partition, tenants interleaved: more of slow's records than its lane's
        // inbox holds, so its lane reads them again from the log itself.
        let tenant_of = |i: usize| if i % 5 == 4 { "b" } else { "slow" };
        let records: Vec<_> = (0..1000)
            .map(|i| {
                (
                    0,
                    tenant_record(tenant_of(i), &format!("m,i={i} v={i} {i}")),
                )
            })
            .collect();
        log.append(records).expect("append");
        let store = Panicky::open(&dir.path().join("store"));
        store.1.store(true, Ordering::Release);
        let of = |tenant: &'static str| (0..1000).filter(move |i| tenant_of(*i) == tenant);

        let (runner, ..) = start(dir.path(), &log, store.clone());
        // b's records, behind and among slow's, are all stored while slow's can't be.
        wait_for("b's points", || {
            copies(&store, "b", of("b")).iter().all(|n| *n == 1)
        });
        assert!(copies(&store, "slow", of("slow")).iter().all(|n| *n == 0));
        assert_eq!(log.backlog(&TenantId::new("b")).tenant, Some(0));
        assert_eq!(log.backlog(&TenantId::new("slow")).tenant, Some(800));
        // Stopped with b's lane far ahead of its partition: the store says so durably.
        runner.stop();
        let reach = store.checkpointed().expect("checkpointed");
        assert_eq!(
            reach,
            [Through {
                partition: 0,
                lane: Some(TenantId::new("b")),
                next: 1000
            }]
        );

        // A restart replays the partition from its start: slow's records are stored, and
        // b's, already stored, are passed over.
        store.1.store(false, Ordering::Release);
        let (dead_letters, health, _) = run_through(dir.path(), &log, store.clone());
        assert_eq!(copies(&store, "slow", of("slow")), vec![1; 800]);
        assert_eq!(copies(&store, "b", of("b")), vec![1; 200]);
        assert_eq!(
            store.checkpointed().expect("checkpointed"),
            [Through::partition(0, 1000)],
            "b's lane offset went once the partition passed it"
        );
        assert!(dead_letters.read_all().expect("letters").is_empty());
        assert!(health.troubled().is_empty());
    }

    #[test]
    fn a_panicking_record_is_found_kept_as_a_dead_letter_and_its_partition_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let transport = EmbeddedLog::open(&dir.path().join("log"), 1).expect("log");
        let store = Panicky::open(&dir.path().join("store"));
        // Ten records around the poisoned one, fetched in one group.
        let mut records: Vec<_> = (0..10)
            .map(|i| (0, record(&format!("ok,i={i} v={i} {i}"))))
            .collect();
        records.insert(4, (0, record("panic v=1 1")));
        transport.append(records).expect("append");
        let (dead_letters, health, metrics) = run_through(dir.path(), &transport, store.clone());

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
            [Through::partition(0, 11)],
            "the last checkpoint covers the dead-lettered record too"
        );
    }

    #[test]
    fn a_record_that_does_not_decode_is_kept_as_a_dead_letter_and_its_partition_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            // A foreign producer's bytes at offset 0.
            let db = fjall::Database::builder(dir.path().join("log"))
                .open()
                .expect("db");
            let p0 = db
                .keyspace("p0", fjall::KeyspaceCreateOptions::default)
                .expect("p0");
            p0.insert(0u64.to_be_bytes(), b"{\"not\": \"sluice\"}")
                .expect("insert");
            db.persist(fjall::PersistMode::SyncData).expect("persist");
        }
        let transport = EmbeddedLog::open(&dir.path().join("log"), 1).expect("log");
        transport
            .append(vec![(0, record("ok v=1 1"))])
            .expect("append");
        let store = Panicky::open(&dir.path().join("store"));
        let (dead_letters, health, _) = run_through(dir.path(), &transport, store.clone());

        let letters = dead_letters.read_all().expect("letters");
        assert_eq!(letters.len(), 1, "{letters:?}");
        assert_eq!(letters[0].stage, "transport");
        assert!(
            letters[0].error.starts_with("record 0/0 does not decode: "),
            "{}",
            letters[0].error
        );
        assert_eq!(letters[0].items, ["{\"not\": \"sluice\"}"]);
        assert_eq!(
            store
                .series(&TenantId::new("a"), &SeriesFilter::default())
                .expect("series")
                .len(),
            1,
            "the record after it is stored"
        );
        assert_eq!(
            store.checkpointed().expect("checkpointed"),
            [Through::partition(0, 2)]
        );
        assert!(health.troubled().is_empty(), "nothing panicked");
    }
}
