//! The store's background compaction, on a thread of its own at the lowest CPU priority.
//!
//! A compaction step decodes and encodes chunks in a burst. Run on the async runtime's
//! blocking threads, those bursts competed as equals with queries: after a restart with
//! series left to compact, a query of hourly means over 1,000 series took 83-88 ms
//! (median) while compaction ran, 56-61 ms with it at nice 19, and 51-57 ms with nothing
//! to compact (throwaway driver, 2 cores). At nice 19 the kernel gives the thread what
//! queries and ingest leave: all of an idle machine, little of a busy one. The byte budget still paces it, so it never takes the disk from
//! ingest either.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::store::Store;
use crate::telemetry::Metrics;

/// How often compaction looks for series whose chunks changed.
const COMPACT_EVERY: Duration = Duration::from_secs(5);

/// Chunk bytes one compaction step reads and writes at most (about): the I/O budget's
/// pauses come between steps. Small, so a step's burst of decoding and encoding is short:
/// with 1 MiB steps the SAL bench's slowest marker took 63-226 ms, with 256 KiB 37 ms (27
/// without compaction), on the same shared machine.
const COMPACT_STEP: u64 = 256 << 10;

/// The thread's nice value: the lowest priority there is.
const NICE: i32 = 19;

/// The running compaction thread. [`Compactor::stop`] ends it between two steps.
pub struct Compactor {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Compactor {
    /// Starts merging small chunks into full ones and dropping a replay's duplicates, where
    /// the store doesn't compact by itself, at about `bytes_per_sec` of chunk reads and
    /// writes.
    ///
    /// # Errors
    /// When the thread can't be started.
    pub fn start(
        store: Arc<dyn Store>,
        bytes_per_sec: u64,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("compaction".into())
            .spawn(move || run(store.as_ref(), bytes_per_sec, &metrics, &stopped))?;
        Ok(Self { stop, thread })
    }

    /// Stops the thread (a step under way finishes first) and waits for it.
    pub fn stop(self) {
        drop(self.stop);
        if self.thread.join().is_err() {
            tracing::error!("The compaction thread panicked.");
        }
    }
}

/// The thread: a pass at once and then every [`COMPACT_EVERY`], each of steps paced to
/// the budget, until `stopped` hears from [`Compactor::stop`].
fn run(store: &dyn Store, bytes_per_sec: u64, metrics: &Metrics, stopped: &mpsc::Receiver<()>) {
    // On Linux a thread has a nice value of its own: PRIO_PROCESS of the caller's id (0)
    // sets the calling thread's.
    if let Err(error) = rustix::process::setpriority_process(None, NICE) {
        tracing::warn!(%error, "Could not lower the compaction thread's CPU priority; it competes with queries and ingest as an equal.");
    }
    // Waits `pause`; false once the service stops.
    let wait =
        |pause: Duration| matches!(stopped.recv_timeout(pause), Err(RecvTimeoutError::Timeout));
    // The first pass at once: a restart may find series left to compact.
    loop {
        loop {
            let started = Instant::now();
            let done = match store.compact(COMPACT_STEP) {
                Ok(done) => done,
                Err(error) => {
                    tracing::error!(%error, "Compaction failed; it retries at its next pass.");
                    break;
                }
            };
            metrics.compacted(&done);
            let due = Duration::from_secs_f64(
                (done.read + done.written) as f64 / bytes_per_sec.max(1) as f64,
            );
            if !wait(due.saturating_sub(started.elapsed())) {
                return;
            }
            if !done.more {
                break;
            }
        }
        if !wait(COMPACT_EVERY) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineproto::{Precision, parse};
    use crate::store::{EmbeddedStore, Through, forever};
    use crate::tenant::TenantId;

    #[test]
    fn the_thread_compacts_at_once_at_low_priority_and_stops_between_steps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(EmbeddedStore::open(dir.path()).expect("open"));
        let tenant = TenantId::new("a");
        // One-point chunks: a sync per point.
        for i in 0..50u64 {
            let line = format!("cpu,host=x usage={i}.5 {}", i * 10_000_000_000);
            let points = parse(&line, Precision::Nanoseconds, 0).0.into();
            store
                .write(&[forever(&tenant, &points)], Through::partition(0, i + 1))
                .expect("write");
            store.sync().expect("sync");
        }
        let metrics = Arc::new(Metrics::default());
        let compactor = Compactor::start(store.clone(), u64::MAX, metrics.clone()).expect("start");
        // The first pass runs at once, not after COMPACT_EVERY.
        let began = Instant::now();
        while metrics.compaction_replaced_chunks.get() < 50 {
            assert!(
                began.elapsed() < COMPACT_EVERY,
                "nothing compacted after {:?}",
                began.elapsed()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // At the lowest priority, the compaction thread alone.
        assert_eq!(nice_of("compaction"), Some(NICE));
        assert_eq!(rustix::process::getpriority_process(None).expect("nice"), 0);
        let stopping = Instant::now();
        compactor.stop();
        assert!(stopping.elapsed() < Duration::from_secs(1));
        // The store is the test's alone again: the thread let go of it.
        assert_eq!(Arc::strong_count(&store), 1);
        assert_eq!(nice_of("compaction"), None);
    }

    /// The nice value of this process' thread named `name` (Linux's `/proc`: the 19th field
    /// of its `stat`, the 17th after the name in brackets).
    fn nice_of(name: &str) -> Option<i32> {
        let tasks = std::fs::read_dir("/proc/self/task").expect("/proc/self/task");
        tasks.flatten().find_map(|task| {
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            if comm.trim_end() != name {
                return None;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let (_, after_name) = stat.rsplit_once(')')?;
            after_name.split_whitespace().nth(16)?.parse().ok()
        })
    }
}
