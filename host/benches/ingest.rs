//! Ingest benchmark (issue 3, item 10; issue 13, item 7): Sluice against a real InfluxDB 1.6.7
//! and a real VictoriaMetrics 1.79.5 in one run, with the same generator, the same data and the
//! same HTTP client, all on 127.0.0.1. All three take line protocol on `/write`.
//!
//! (a) Bulk: the highest rate each server acknowledges (HTTP 204) for line protocol of 1,000
//!     series (`cpu,host=host-N`, two float fields) in 5,000-line batches from two
//!     concurrent writers on keep-alive connections, measured after a warm-up. Sluice
//!     acknowledges once its log holds the points, before they are queryable, so for Sluice
//!     the bench also reports how fast its pipeline stored them and how long the backlog
//!     took to drain. InfluxDB's 204 means the points are in its WAL and cache: queryable.
//!     VictoriaMetrics' 204 means they are in its in-memory buffers: queryable, and on disk,
//!     about a second later (it has no WAL).
//! (b) SAL mock (shared/seeds/001): 1,051 topics (274 at 1 Hz, 541 at 10 Hz, 236 at 100 Hz,
//!     29,284 points/s) from three producers, points stamped with the current time; the
//!     achieved rate, and ingest→queryable latency: a marker point every 50 ms, the query
//!     API polled every 1 ms until it shows it, latency = seen − sent.
//!
//! Every (server, workload) pair gets a fresh server with empty storage, on a disk that has
//! written back what the one before left (`support::settle_disk`). Sluice runs
//! in-process on its own runtime: one tenant, one `drop-filter` stage that keeps every
//! benchmark point. InfluxDB runs as a child `influxd` with a generated config
//! (`support::ChildServer::influxdb`), VictoriaMetrics as a child `victoria-metrics` with
//! default flags (but see `support::ChildServer::victoria_metrics`).
//!
//! Run: `scripts/bench-ingest.sh` (installs InfluxDB and VictoriaMetrics, builds the
//! plugins, then runs `cargo bench --bench ingest`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use hyper::body::Bytes;
use hyper::{Method, StatusCode};

#[allow(dead_code, reason = "shared by the benches; this one uses most of it")]
mod support;

use support::{
    CPU_LEGEND, ChildServer, Cpu, CpuShare, HttpClient, SluiceServer, TOKEN, cpu,
    create_influx_database, http_client, ratio, require, send, settle_disk, sluice_stored_points,
    thousands,
};

/// The binary's allocator, so the in-process service runs as `sluice run` does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Series of the bulk workload, and their shape (issue 3, item 10).
const SERIES: u64 = 1_000;
const BATCH_LINES: u64 = 5_000;
const WRITERS: usize = 2;
/// Long enough for connections, caches and the first log/WAL segments to settle.
const BULK_WARMUP: Duration = Duration::from_secs(3);
const BULK_WINDOW: Duration = Duration::from_secs(15);

/// The SAL mock producers of the seed: topics per producer and their rate.
const PRODUCERS: [Producer; 3] = [
    Producer {
        name: "commands",
        topics: 274,
        hz: 1,
    },
    Producer {
        name: "logevents",
        topics: 541,
        hz: 10,
    },
    Producer {
        name: "telemetry",
        topics: 236,
        hz: 100,
    },
];
/// The fastest topics run at 100 Hz: every tick sends what is due.
const TICK: Duration = Duration::from_millis(10);
const TICKS_PER_SECOND: u64 = 100;
/// Long enough for the first writes, which create 1,051 measurements, to be caught up on
/// before the window: a catch-up burst inside it would overstate the rate.
const SAL_WARMUP: Duration = Duration::from_secs(5);
const SAL_WINDOW: Duration = Duration::from_secs(20);
/// 20 markers a second gives 400 samples per run: enough for a p99 that isn't the maximum.
const MARKER_EVERY: Duration = Duration::from_millis(50);
const POLL_EVERY: Duration = Duration::from_millis(1);
/// A marker not queryable by then is counted as lost.
const MARKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound on Sluice's pipeline draining its backlog after the bulk window (the other bounds
/// are `support`'s).
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
/// Pause after a refused write: the servers refuse when overloaded; don't spin on them.
const REFUSED_PAUSE: Duration = Duration::from_millis(100);

const DB: &str = "bench";
const MARKER: &str = "latency-marker";
/// Sluice's pipeline in this bench: one stage that keeps every benchmark point.
const STAGES: &str = r#"
[[tenants.stages]]
name = "drop-debug"
plugin = "drop-filter"
params = { measurement = "debug*" }
"#;

struct Producer {
    name: &'static str,
    topics: u64,
    hz: u64,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ingest bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let plugins = plugin_dir()?;
    require(
        "influxd",
        &["version"],
        "Install InfluxDB 1.6.7 and run the bench with scripts/bench-ingest.sh (it runs \
         `apt-get install influxdb`).",
    )?;
    require(
        "victoria-metrics",
        &["-version"],
        "Install VictoriaMetrics 1.79.5 and run the bench with scripts/bench-ingest.sh (it runs \
         `apt-get install victoria-metrics`).",
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("client runtime")?;
    let generator = generator_rate();
    println!(
        "Ingest benchmark: Sluice vs InfluxDB 1.6.7 vs VictoriaMetrics 1.79.5, one run, 127.0.0.1 \
         only."
    );

    // Alternate servers so a slow spell on the shared machine doesn't hit one side only.
    eprintln!("(a) bulk, Sluice...");
    let sluice_bulk = on_sluice(&rt, &plugins, |ep| rt.block_on(bulk(ep)))?;
    eprintln!("(a) bulk, InfluxDB...");
    let influx_bulk = on_influxdb(&rt, |ep| rt.block_on(bulk(ep)))?;
    eprintln!("(a) bulk, VictoriaMetrics...");
    let vm_bulk = on_victoria_metrics(&rt, |ep| rt.block_on(bulk(ep)))?;
    eprintln!("(b) SAL mock, Sluice...");
    let sluice_sal = on_sluice(&rt, &plugins, |ep| rt.block_on(sal(ep)))?;
    eprintln!("(b) SAL mock, InfluxDB...");
    let influx_sal = on_influxdb(&rt, |ep| rt.block_on(sal(ep)))?;
    eprintln!("(b) SAL mock, VictoriaMetrics...");
    let vm_sal = on_victoria_metrics(&rt, |ep| rt.block_on(sal(ep)))?;

    print_bulk(generator, &sluice_bulk, &influx_bulk, &vm_bulk);
    print_sal(&sluice_sal, &influx_sal, &vm_sal);
    Ok(())
}

// ---- servers ---------------------------------------------------------------------------

/// Which server an endpoint is, for its URLs and answers.
#[derive(Clone, Copy)]
enum Server {
    Sluice,
    InfluxDb,
    VictoriaMetrics,
}

/// A running server of this bench's kinds.
type Endpoint = support::Endpoint<Server>;

fn plugin_dir() -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    if !dir.join("drop-filter.wasm").is_file() {
        bail!(
            "{}/drop-filter.wasm is missing: run scripts/build-plugins.sh (or scripts/bench-ingest.sh)",
            dir.display()
        );
    }
    Ok(dir)
}

/// Runs `measure` against a fresh in-process Sluice, then shuts it down.
fn on_sluice<T>(
    rt: &tokio::runtime::Runtime,
    plugins: &Path,
    measure: impl FnOnce(Endpoint) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    settle_disk();
    let mut server = SluiceServer::start(rt, plugins, STAGES)?;
    let result = measure(Endpoint {
        server: Server::Sluice,
        addr: server.addr,
        admin: Some(server.admin),
        pid: None,
    });
    server.shutdown()?;
    result
}

/// Runs `measure` against a fresh `influxd` with a `bench` database, then kills it.
fn on_influxdb<T>(
    rt: &tokio::runtime::Runtime,
    measure: impl FnOnce(Endpoint) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    settle_disk();
    let mut server = ChildServer::influxdb()?;
    rt.block_on(async {
        server.ready("/ping", StatusCode::NO_CONTENT).await?;
        create_influx_database(server.addr, DB).await
    })?;
    measure(Endpoint {
        server: Server::InfluxDb,
        addr: server.addr,
        admin: None,
        pid: Some(server.pid()),
    })
}

/// Runs `measure` against a fresh `victoria-metrics`, then kills it.
fn on_victoria_metrics<T>(
    rt: &tokio::runtime::Runtime,
    measure: impl FnOnce(Endpoint) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    settle_disk();
    let mut server = ChildServer::victoria_metrics()?;
    rt.block_on(server.ready("/health", StatusCode::OK))?;
    measure(Endpoint {
        server: Server::VictoriaMetrics,
        addr: server.addr,
        admin: None,
        pid: Some(server.pid()),
    })
}

// ---- HTTP ------------------------------------------------------------------------------

impl Endpoint {
    fn name(self) -> &'static str {
        match self.server {
            Server::Sluice => "Sluice",
            Server::InfluxDb => "InfluxDB 1.6.7",
            Server::VictoriaMetrics => "VictoriaMetrics",
        }
    }

    fn auth(self) -> Option<String> {
        match self.server {
            Server::Sluice => Some(format!("Token {TOKEN}")),
            Server::InfluxDb | Server::VictoriaMetrics => None,
        }
    }

    /// Writes line protocol through the v1 `/write` endpoint all three serve; true on 204.
    /// (VictoriaMetrics adds the label `db="bench"` from `db`.)
    async fn write(self, client: &HttpClient, body: String) -> bool {
        let uri = format!("http://{}/write?db={DB}&precision=ns", self.addr);
        matches!(
            send(
                client,
                Method::POST,
                &uri,
                self.auth().as_deref(),
                Bytes::from(body)
            )
            .await,
            Ok((StatusCode::NO_CONTENT, _))
        )
    }

    /// Timestamps of the markers queryable in `from..=to`.
    async fn visible_markers(
        self,
        client: &HttpClient,
        from: i64,
        to: i64,
    ) -> anyhow::Result<Vec<i64>> {
        let query = match self.server {
            Server::Sluice => form_urlencoded::Serializer::new(String::new())
                .append_pair("measurement", MARKER)
                .append_pair("field", "seq")
                .append_pair("start", &from.to_string())
                .append_pair("end", &(to + 1).to_string())
                .finish(),
            Server::InfluxDb => form_urlencoded::Serializer::new(String::new())
                .append_pair("db", DB)
                .append_pair("epoch", "ns")
                .append_pair(
                    "q",
                    &format!("SELECT seq FROM \"{MARKER}\" WHERE time >= {from} AND time <= {to}"),
                )
                .finish(),
            // Raw samples (its query API would evaluate PromQL at steps); times in seconds
            // with milliseconds, its resolution (markers are stamped on whole milliseconds).
            Server::VictoriaMetrics => form_urlencoded::Serializer::new(String::new())
                .append_pair("match[]", &format!("{{__name__=\"{MARKER}_seq\"}}"))
                .append_pair("start", &seconds(from))
                .append_pair("end", &seconds(to + 1_000_000))
                .finish(),
        };
        let path = match self.server {
            Server::Sluice => "/api/v1/query",
            Server::InfluxDb => "/query",
            Server::VictoriaMetrics => "/api/v1/export",
        };
        let uri = format!("http://{}{path}?{query}", self.addr);
        let (status, body) = send(
            client,
            Method::GET,
            &uri,
            self.auth().as_deref(),
            Bytes::new(),
        )
        .await?;
        if status != StatusCode::OK {
            bail!("{} query: {status} {body:?}", self.name());
        }
        // VictoriaMetrics: JSON lines {"metric":{...},"values":[v...],"timestamps":[ms...]}.
        if let Server::VictoriaMetrics = self.server {
            let mut stamps = Vec::new();
            for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let block: serde_json::Value = serde_json::from_slice(line)?;
                stamps.extend(
                    block["timestamps"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|ms| Some(ms.as_i64()? * 1_000_000)),
                );
            }
            return Ok(stamps);
        }
        let answer: serde_json::Value = serde_json::from_slice(&body)?;
        // Sluice: {"series":[{"points":[[t, v]...]}]};
        // InfluxDB: {"results":[{"series":[{"values":[[t, v]...]}]}]}.
        let (series, rows) = match self.server {
            Server::Sluice => (&answer["series"], "points"),
            Server::InfluxDb | Server::VictoriaMetrics => {
                (&answer["results"][0]["series"], "values")
            }
        };
        Ok(series
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s[rows].as_array())
            .flatten()
            .filter_map(|row| row[0].as_i64())
            .collect())
    }

    /// Points Sluice's pipeline has stored so far (from the admin API's metrics, which
    /// name tenants); `None` for the peers, whose 204 already means queryable (about a
    /// second later for VictoriaMetrics).
    async fn stored_points(self, client: &HttpClient) -> anyhow::Result<Option<u64>> {
        let (Server::Sluice, Some(admin)) = (self.server, self.admin) else {
            return Ok(None);
        };
        Ok(Some(sluice_stored_points(client, admin).await?))
    }
}

// ---- generators ------------------------------------------------------------------------

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// Bulk lines `first..first + BATCH_LINES` of the run, cycling through the hosts. Point k
/// gets timestamp `base_ts + k`: unique, so no point overwrites another.
fn cpu_batch(first: u64, base_ts: i64) -> String {
    let mut out = String::with_capacity(BATCH_LINES as usize * 72);
    for k in first..first + BATCH_LINES {
        writeln!(
            out,
            "cpu,host=host-{} usage_user={}.{},usage_system={}.{} {}",
            k % SERIES,
            k % 97,
            k % 10,
            k / 7 % 89,
            k % 3,
            base_ts + k as i64
        )
        .expect("writing to a String cannot fail");
    }
    out
}

/// Points a second one thread formats: shows the client is not what limits the bulk rate.
fn generator_rate() -> f64 {
    let started = Instant::now();
    let mut points = 0;
    while started.elapsed() < Duration::from_secs(1) {
        black_box(cpu_batch(points, 0));
        points += BATCH_LINES;
    }
    points as f64 / started.elapsed().as_secs_f64()
}

/// The points producer `p` owes at tick `n`, stamped `ts`. Topic i of a producer at f Hz is
/// due every 100/f ticks at phase i, so each tick carries an even share. Fields follow the
/// seed's `MTM1M3_accelerometerData` example (arrays flattened, as its connector did).
fn sal_batch(p: &Producer, n: u64, ts: i64) -> String {
    let period = TICKS_PER_SECOND / p.hz;
    let mut out = String::new();
    for i in (0..p.topics).filter(|i| i % period == n % period) {
        let v = (n * 31 + i * 17) % 1000;
        writeln!(
            out,
            "salmock-{}-{i:03} kafka_timestamp={}i,timestamp={}.{:06},\
             accelerometers0={}.{},accelerometers1=-{}.{},\
             angularAccelerationX={}.{},angularAccelerationY=-{}.{},angularAccelerationZ={}.{},\
             rawAccelerometers0={v},rawAccelerometers1={} {ts}",
            p.name,
            ts / 1_000_000,
            ts / 1_000_000_000,
            ts / 1_000 % 1_000_000,
            v % 7,
            v,
            v % 5,
            v,
            v % 3,
            v,
            v % 2,
            v,
            v % 4,
            v,
            1000 - v,
        )
        .expect("writing to a String cannot fail");
    }
    out
}

/// Nanoseconds as seconds with milliseconds, `1700000000.123`.
fn seconds(ns: i64) -> String {
    format!(
        "{}.{:03}",
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) / 1_000_000
    )
}

/// Now, on a whole millisecond: VictoriaMetrics keeps milliseconds, and a marker must read
/// back with the timestamp it was sent with.
fn now_ms_as_ns() -> i64 {
    now_ns() / 1_000_000 * 1_000_000
}

fn marker_line(seq: u64, ts: i64) -> String {
    format!("{MARKER} seq={seq}i {ts}\n")
}

// ---- measuring -------------------------------------------------------------------------

/// Acknowledged points, counted only when the 204 arrives inside the measured window.
struct Tally {
    window: std::ops::Range<Instant>,
    in_window: AtomicU64,
    total: AtomicU64,
    refused: AtomicU64,
}

impl Tally {
    fn new(warmup: Duration, window: Duration) -> Self {
        let start = Instant::now() + warmup;
        Self {
            window: start..start + window,
            in_window: AtomicU64::new(0),
            total: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Counts a write's answer; after a refusal, pauses before the next one.
    async fn record(&self, points: u64, acked: bool) {
        if acked {
            self.total.fetch_add(points, Ordering::Relaxed);
            if self.window.contains(&Instant::now()) {
                self.in_window.fetch_add(points, Ordering::Relaxed);
            }
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(REFUSED_PAUSE).await;
        }
    }

    fn rate(&self) -> f64 {
        self.in_window.load(Ordering::Relaxed) as f64
            / (self.window.end - self.window.start).as_secs_f64()
    }
}

fn sleep_until(t: Instant) -> tokio::time::Sleep {
    tokio::time::sleep_until(tokio::time::Instant::from_std(t))
}

// ---- (a) bulk --------------------------------------------------------------------------

struct BulkResult {
    acked_per_s: f64,
    refused: u64,
    cpu: CpuShare,
    /// Sluice only: points stored per second during the window, and the drain time after it
    /// (`None` when not drained within `DRAIN_LIMIT`).
    stored: Option<(f64, Option<Duration>)>,
}

async fn bulk(ep: Endpoint) -> anyhow::Result<BulkResult> {
    let client = http_client();
    let tally = Arc::new(Tally::new(BULK_WARMUP, BULK_WINDOW));
    let next_batch = Arc::new(AtomicU64::new(0));
    let base_ts = now_ns();
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (client, tally, next_batch) = (client.clone(), tally.clone(), next_batch.clone());
            tokio::spawn(async move {
                while Instant::now() < tally.window.end {
                    let first = next_batch.fetch_add(1, Ordering::Relaxed) * BATCH_LINES;
                    let acked = ep.write(&client, cpu_batch(first, base_ts)).await;
                    tally.record(BATCH_LINES, acked).await;
                }
            })
        })
        .collect();
    sleep_until(tally.window.start).await;
    let cpu = Cpu::now(ep.pid);
    let stored_before = ep.stored_points(&client).await?;
    sleep_until(tally.window.end).await;
    let stored_after = ep.stored_points(&client).await?;
    let cpu = Cpu::now(ep.pid).share_since(cpu);
    for writer in writers {
        writer.await?;
    }
    let stored = match (stored_before, stored_after) {
        (Some(before), Some(after)) => {
            let rate = (after - before) as f64 / BULK_WINDOW.as_secs_f64();
            let target = tally.total.load(Ordering::Relaxed);
            Some((rate, drain(&client, ep, target).await?))
        }
        _ => None,
    };
    Ok(BulkResult {
        acked_per_s: tally.rate(),
        refused: tally.refused.load(Ordering::Relaxed),
        cpu,
        stored,
    })
}

/// How long until `target` points are stored; `None` past `DRAIN_LIMIT`.
async fn drain(client: &HttpClient, ep: Endpoint, target: u64) -> anyhow::Result<Option<Duration>> {
    let started = Instant::now();
    while started.elapsed() < DRAIN_LIMIT {
        if ep.stored_points(client).await?.unwrap_or(target) >= target {
            return Ok(Some(started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(None)
}

// ---- (b) SAL mock ----------------------------------------------------------------------

struct SalResult {
    acked_per_s: f64,
    /// How far the slowest producer was behind its schedule when the window closed.
    behind: Duration,
    refused: u64,
    cpu: CpuShare,
    markers_sent: u64,
    markers_lost: u64,
    /// Ingest→queryable latencies, sorted.
    latencies: Vec<Duration>,
}

async fn sal(ep: Endpoint) -> anyhow::Result<SalResult> {
    let client = http_client();
    let tally = Arc::new(Tally::new(SAL_WARMUP, SAL_WINDOW));
    let producers: Vec<_> = PRODUCERS
        .iter()
        .map(|p| tokio::spawn(produce(client.clone(), ep, p, tally.clone())))
        .collect();
    sleep_until(tally.window.start).await;
    let cpu = Cpu::now(ep.pid);
    // Marker timestamp → when its write was sent.
    let pending = Arc::new(Mutex::new(BTreeMap::new()));
    let writing = Arc::new(AtomicBool::new(true));
    let poller = tokio::spawn(poll_markers(
        client.clone(),
        ep,
        pending.clone(),
        writing.clone(),
    ));
    let markers_sent = write_markers(&client, ep, &pending, tally.window.end).await;
    let cpu = Cpu::now(ep.pid).share_since(cpu);
    writing.store(false, Ordering::Release);
    let (mut latencies, markers_lost) = poller.await?;
    let mut behind = Duration::ZERO;
    for producer in producers {
        behind = behind.max(producer.await?);
    }
    latencies.sort();
    Ok(SalResult {
        acked_per_s: tally.rate(),
        behind,
        refused: tally.refused.load(Ordering::Relaxed),
        cpu,
        markers_sent,
        markers_lost,
        latencies,
    })
}

/// One producer: every tick, one write of the points due. Ticks missed while a write is
/// slow are caught up at once (tokio's default), so the offered rate holds if the server
/// keeps up. Returns how far behind schedule it was at the end of the window.
async fn produce(
    client: HttpClient,
    ep: Endpoint,
    p: &'static Producer,
    tally: Arc<Tally>,
) -> Duration {
    let mut tick = tokio::time::interval(TICK);
    let mut n = 0;
    loop {
        let due = tick.tick().await.into_std();
        let now = Instant::now();
        if now >= tally.window.end {
            return now.saturating_duration_since(due);
        }
        let batch = sal_batch(p, n, now_ns());
        n += 1;
        if batch.is_empty() {
            continue;
        }
        let points = batch.lines().count() as u64;
        let acked = ep.write(&client, batch).await;
        tally.record(points, acked).await;
    }
}

/// Writes a marker every `MARKER_EVERY` until `end`; returns how many were acknowledged.
async fn write_markers(
    client: &HttpClient,
    ep: Endpoint,
    pending: &Mutex<BTreeMap<i64, Instant>>,
    end: Instant,
) -> u64 {
    let mut every = tokio::time::interval(MARKER_EVERY);
    let mut sent = 0;
    for seq in 0.. {
        every.tick().await;
        if Instant::now() >= end {
            break;
        }
        let ts = now_ms_as_ns();
        lock(pending).insert(ts, Instant::now());
        if ep.write(client, marker_line(seq, ts)).await {
            sent += 1;
        } else {
            lock(pending).remove(&ts);
        }
    }
    sent
}

/// Polls every `POLL_EVERY` for the pending markers (one range query covers all of them, so
/// the query load stays the same however slow they are); returns the latencies and the
/// markers never seen within `MARKER_TIMEOUT`.
async fn poll_markers(
    client: HttpClient,
    ep: Endpoint,
    pending: Arc<Mutex<BTreeMap<i64, Instant>>>,
    writing: Arc<AtomicBool>,
) -> (Vec<Duration>, u64) {
    let mut latencies = Vec::new();
    let mut lost = 0;
    loop {
        let range = {
            let p = lock(&pending);
            p.keys()
                .next()
                .zip(p.keys().next_back())
                .map(|(a, b)| (*a, *b))
        };
        let Some((from, to)) = range else {
            if !writing.load(Ordering::Acquire) {
                break;
            }
            tokio::time::sleep(POLL_EVERY).await;
            continue;
        };
        // A failed poll is retried at the next tick; the marker's clock keeps running.
        let visible = ep
            .visible_markers(&client, from, to)
            .await
            .unwrap_or_default();
        lost += settle(&pending, &visible, Instant::now(), &mut latencies);
        tokio::time::sleep(POLL_EVERY).await;
    }
    (latencies, lost)
}

/// Takes the `visible` markers out of `pending` with their latency at `seen`, and drops
/// those pending longer than `MARKER_TIMEOUT`; returns how many it dropped.
fn settle(
    pending: &Mutex<BTreeMap<i64, Instant>>,
    visible: &[i64],
    seen: Instant,
    latencies: &mut Vec<Duration>,
) -> u64 {
    let mut p = lock(pending);
    for ts in visible {
        if let Some(sent) = p.remove(ts) {
            latencies.push(seen - sent);
        }
    }
    let before = p.len();
    p.retain(|_, sent| seen - *sent < MARKER_TIMEOUT);
    (before - p.len()) as u64
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---- report ----------------------------------------------------------------------------

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1} ms", d.as_secs_f64() * 1e3))
}

fn print_bulk(generator: f64, sluice: &BulkResult, influx: &BulkResult, vm: &BulkResult) {
    println!();
    println!(
        "(a) Bulk line protocol: {SERIES} series (cpu,host=host-N, 2 float fields), \
         {BATCH_LINES}-line batches, {WRITERS} concurrent writers on keep-alive connections,"
    );
    println!(
        "    POST /write?precision=ns, {}s warm-up then {}s measured, fresh server each. \
         Generator alone: {} points/s on one thread.",
        BULK_WARMUP.as_secs(),
        BULK_WINDOW.as_secs(),
        thousands(generator)
    );
    println!(
        "    {:<16} {:>15} {:>16} {:>8} {:>15} {:>10}",
        "server", "acked points/s", "stored points/s", "refused", "backlog drained", "CPU"
    );
    for (name, r) in [
        ("Sluice", sluice),
        ("InfluxDB 1.6.7", influx),
        ("VictoriaMetrics", vm),
    ] {
        let (stored, drained) = match r.stored {
            Some((rate, drained)) => (
                thousands(rate),
                drained.map_or(format!(">{}s", DRAIN_LIMIT.as_secs()), |d| {
                    format!("{:.1} s after", d.as_secs_f64())
                }),
            ),
            None => ("= acked".into(), "-".into()),
        };
        println!(
            "    {name:<16} {:>15} {stored:>16} {:>8} {drained:>15} {:>10}",
            thousands(r.acked_per_s),
            r.refused,
            cpu(r.cpu)
        );
    }
    let sluice_stored = sluice.stored.map_or(sluice.acked_per_s, |(rate, _)| rate);
    println!(
        "    Sluice/InfluxDB: acked {}, stored {}",
        ratio(sluice.acked_per_s, influx.acked_per_s),
        ratio(sluice_stored, influx.acked_per_s)
    );
    println!(
        "    Sluice/VictoriaMetrics: acked {}, stored {}",
        ratio(sluice.acked_per_s, vm.acked_per_s),
        ratio(sluice_stored, vm.acked_per_s)
    );
    println!(
        "    refused = write requests not answered 204 over the whole run. Sluice answers 204 once \
         its log holds the points,\n    InfluxDB once they are queryable, VictoriaMetrics once \
         they are in its memory buffers (queryable about 1 s later);\n    stored = Sluice's \
         pipeline output during the window. {CPU_LEGEND}."
    );
}

fn print_sal(sluice: &SalResult, influx: &SalResult, vm: &SalResult) {
    let offered: u64 = PRODUCERS.iter().map(|p| p.topics * p.hz).sum();
    let topics: u64 = PRODUCERS.iter().map(|p| p.topics).sum();
    let percentile = |r: &SalResult, q: f64| {
        let n = r.latencies.len();
        // Nearest rank.
        (n > 0).then(|| r.latencies[((q * n as f64).ceil() as usize).clamp(1, n) - 1])
    };
    println!();
    println!(
        "(b) SAL mock (seed 001): {topics} topics ({}), offered {} points/s, 9 fields a point,",
        PRODUCERS
            .iter()
            .map(|p| format!("{} at {} Hz", p.topics, p.hz))
            .collect::<Vec<_>>()
            .join(", "),
        thousands(offered as f64)
    );
    println!(
        "    {} producers each writing what is due every {} ms, points stamped now; {}s warm-up \
         then {}s measured, fresh server each;",
        PRODUCERS.len(),
        TICK.as_millis(),
        SAL_WARMUP.as_secs(),
        SAL_WINDOW.as_secs()
    );
    println!(
        "    a marker point every {} ms, query API polled every {} ms until it shows; latency = \
         seen - sent.",
        MARKER_EVERY.as_millis(),
        POLL_EVERY.as_millis()
    );
    println!(
        "    {:<16} {:>14} {:>8} {:>8} {:>9} {:>10} {:>10} {:>10} {:>10}",
        "server", "acked points/s", "behind", "refused", "markers", "p50", "p99", "max", "CPU"
    );
    for (name, r) in [
        ("Sluice", sluice),
        ("InfluxDB 1.6.7", influx),
        ("VictoriaMetrics", vm),
    ] {
        println!(
            "    {name:<16} {:>14} {:>8} {:>8} {:>9} {:>10} {:>10} {:>10} {:>10}",
            thousands(r.acked_per_s),
            format!("{:.2} s", r.behind.as_secs_f64()),
            r.refused,
            format!("{}/{}", r.latencies.len(), r.markers_sent),
            ms(percentile(r, 0.5)),
            ms(percentile(r, 0.99)),
            ms(r.latencies.last().copied()),
            cpu(r.cpu),
        );
    }
    let secs = |r: &SalResult, q| percentile(r, q).map_or(0.0, |d| d.as_secs_f64());
    println!(
        "    Sluice/InfluxDB: throughput {}, p50 latency {}, p99 latency {}.",
        ratio(sluice.acked_per_s, influx.acked_per_s),
        ratio(secs(sluice, 0.5), secs(influx, 0.5)),
        ratio(secs(sluice, 0.99), secs(influx, 0.99)),
    );
    println!(
        "    Sluice/VictoriaMetrics: throughput {}, p50 latency {}, p99 latency {}.",
        ratio(sluice.acked_per_s, vm.acked_per_s),
        ratio(secs(sluice, 0.5), secs(vm, 0.5)),
        ratio(secs(sluice, 0.99), secs(vm, 0.99)),
    );
    println!(
        "    behind = how far the slowest producer lagged its schedule at the end; markers = seen/\
         acknowledged ({}, {} and {} not seen within {}s).\n    VictoriaMetrics is polled through \
         /api/v1/export (raw samples). {CPU_LEGEND}.",
        sluice.markers_lost,
        influx.markers_lost,
        vm.markers_lost,
        MARKER_TIMEOUT.as_secs()
    );
    println!(
        "    Seed's own pipeline (Kafka + InfluxDB): p50 183 ms, p99 1.34 s. Target: p99 < 100 ms."
    );
}
