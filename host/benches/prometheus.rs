//! Prometheus benchmark (issue 13, item 7): Sluice against a real Prometheus 2.42 and a real
//! VictoriaMetrics 1.79.5 in one run, with the same generator, the same pre-encoded requests
//! and the same HTTP client, all on 127.0.0.1.
//!
//! (a) Remote-write ingest: 40,000 counters (`bench_requests_total{job, instance, code}`) at
//!     15 s resolution over the last 55 minutes (Prometheus refuses samples more than an hour
//!     older than the newest it holds), as snappy `WriteRequest`s of 500 series × 10
//!     samples, encoded before the clock starts, POSTed by four writers on keep-alive
//!     connections. Each writer owns a fixed set of series and sends them in time order
//!     (Prometheus refuses a sample older than its series' last one). The clock runs until
//!     the last request is acknowledged (204); then each server's PromQL API is polled with
//!     `sum(count_over_time(...))` until it counts every point, so only what a server
//!     stored is counted. Fresh servers each round, rounds alternating the order.
//! (b) Dashboard query: `sum by (job) (rate(bench_requests_total[5m]))` over 1,000 counters,
//!     6 h at a 15 s step (1,441 steps of 10 series), on the three servers holding the same
//!     6 h 10 min of samples, all written through remote write in time order (a fresh
//!     Prometheus takes 6 h old data that way: it compacts its head into blocks as the data
//!     moves on). After a warm-up, the servers take turns, one query each, and each gets
//!     median and p90 latency (request sent to last byte of the answer). The three answers
//!     must agree: same series, same steps, values within 1e-6 relative. Samples sit on the
//!     step grid, so `rate`'s windows start on a sample and Prometheus' extrapolation and
//!     VictoriaMetrics' use of the sample before the window give the same numbers.
//!
//! Sluice runs in-process on its own runtime (as `sluice run` would, with its allocator): one
//! tenant, no pipeline stages, an empty plugin directory. Prometheus and VictoriaMetrics run
//! as child processes with temp data directories and default flags but for
//! `--web.enable-remote-write-receiver` and VictoriaMetrics' `-search.latencyOffset=0s`
//! (see `support::ChildServer::victoria_metrics`). VictoriaMetrics caches range-query results;
//! it is timed with `nocache=1` (every query computed, as the others do) and, for reference,
//! with its cache.
//!
//! Run: `scripts/bench-prometheus.sh` (installs Prometheus and VictoriaMetrics, then runs
//! `cargo bench --bench prometheus`).

use std::collections::BTreeMap;
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use hyper::body::Bytes;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderName};
use hyper::{Method, StatusCode};
use prost::Message;
use sluice::ingest::remote_write::prompb::{TimeSeries, WriteRequest};

#[allow(dead_code, reason = "shared by the benches; this one uses part of it")]
mod support;

use support::{
    CPU_LEGEND, ChildServer, Cpu, CpuShare, HttpClient, SluiceServer, TOKEN, cpu, free_port,
    http_client, ratio, require, send, send_with, sluice_stored_points, thousands,
};

/// The binary's allocator, so the in-process service runs as `sluice run` does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const METRIC: &str = "bench_requests_total";
/// Prometheus' usual scrape interval; samples sit on multiples of it.
const STEP_MS: i64 = 15_000;

/// (a): 40,000 series × 220 samples (55 min) = 8.8 M points, a few seconds for the fastest
/// server. 1,000 series over an hour are 240,000 points, 0.1 s for it: too short to time on
/// a shared machine (10,000 series took 0.7 s, with rounds 30 % apart).
const INGEST_SERIES: usize = 40_000;
const INGEST_SAMPLES: usize = 220;
const INGEST_ROUNDS: usize = 3;
/// The shape of a request, the same for every server: 5,000 samples.
const BATCH_SERIES: usize = 500;
const BATCH_SAMPLES: usize = 10;
const WRITERS: usize = 4;

/// (b): 1,000 series over 6 h plus the 5 min of the first window, plus 5 min to spare.
const QUERY_SERIES: usize = 1_000;
const QUERY_SAMPLES: usize = ((6 * 3600 + 600) * 1000 / STEP_MS) as usize + 1;
const QUERY_RANGE_MS: i64 = 6 * 3600 * 1000;
const QUERY: &str = "sum by (job) (rate(bench_requests_total[5m]))";
const WARMUP_RUNS: usize = 3;
const QUERY_RUNS: usize = 25;
/// Values of two servers agree within this, relative.
const TOLERANCE: f64 = 1e-6;
/// Pause after loading, so that Prometheus' head compaction and VictoriaMetrics' merges of
/// the freshly written data are not inside the timed queries.
const SETTLE: Duration = Duration::from_secs(15);

/// A refused request (429 or 503: the server is busy) is sent again after this pause, up to
/// `RETRIES` times; any other refusal is final and its points are missing from the count.
const REFUSED_PAUSE: Duration = Duration::from_millis(100);
const RETRIES: u32 = 600;
/// How long after the last acknowledgement a server may take to show every point, and how
/// often it is asked.
const VERIFY_LIMIT: Duration = Duration::from_secs(180);
const VERIFY_EVERY: Duration = Duration::from_millis(200);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("prometheus bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let hint = "Install it and run the bench with scripts/bench-prometheus.sh (it runs \
                `apt-get install prometheus victoria-metrics`).";
    require("prometheus", &["--version"], hint)?;
    require("victoria-metrics", &["-version"], hint)?;
    let plugins = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("client runtime")?;
    println!(
        "Prometheus benchmark: Sluice vs Prometheus 2.42 vs VictoriaMetrics 1.79.5, one run, \
         127.0.0.1 only."
    );

    let end = now_ms() / STEP_MS * STEP_MS;
    let ingest_data = Dataset {
        series: INGEST_SERIES,
        samples: INGEST_SAMPLES,
        first_ms: end - (INGEST_SAMPLES as i64 - 1) * STEP_MS,
    };
    let encoding = Instant::now();
    let batches = Arc::new(ingest_data.batches());
    eprintln!(
        "(a) {} requests encoded in {:.1} s",
        batches.requests(),
        encoding.elapsed().as_secs_f64()
    );
    // Rounds rotate the order, so a slow spell on the shared machine doesn't hit one server
    // only.
    let order = [Server::Sluice, Server::Prometheus, Server::VictoriaMetrics];
    let mut ingest_results: BTreeMap<Server, Vec<IngestResult>> = BTreeMap::new();
    for round in 0..INGEST_ROUNDS {
        for k in 0..order.len() {
            let server = order[(round + k) % order.len()];
            eprintln!("(a) round {}, {}...", round + 1, server.name());
            let result = with_server(server, &rt, plugins.path(), |ep| {
                rt.block_on(ingest(ep, &ingest_data, &batches))
            })?;
            ingest_results.entry(server).or_default().push(result);
        }
    }
    let shape = (batches.requests(), batches.bytes());
    drop(batches);
    print_ingest(&ingest_data, shape, &ingest_results);

    let query_data = Dataset {
        series: QUERY_SERIES,
        samples: QUERY_SAMPLES,
        first_ms: end - (QUERY_SAMPLES as i64 - 1) * STEP_MS,
    };
    let query = rt.block_on(async {
        let mut servers = Vec::new();
        for server in order {
            servers.push(Running::start(server, plugins.path()).await?);
        }
        query_bench(&servers, &query_data).await
    });
    print_query(&query_data, &query?);
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

// ---- servers ---------------------------------------------------------------------------

/// Which server an endpoint is, for its URLs and answers.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Server {
    Sluice,
    Prometheus,
    VictoriaMetrics,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Sluice => "Sluice",
            Server::Prometheus => "Prometheus 2.42",
            Server::VictoriaMetrics => "VictoriaMetrics",
        }
    }
}

/// A running server of this bench's kinds.
type Endpoint = support::Endpoint<Server>;

/// A fresh server of each kind; stopped (and its storage deleted) on drop.
enum Running {
    Sluice(SluiceServer),
    Child(Server, ChildServer),
}

impl Running {
    async fn start(server: Server, plugins: &std::path::Path) -> anyhow::Result<Self> {
        Ok(match server {
            // Sluice starts on its own runtime; waiting for it must not block this one.
            Server::Sluice => {
                let plugins = plugins.to_owned();
                let sluice = tokio::task::spawn_blocking(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    SluiceServer::start(&rt, &plugins, "")
                })
                .await??;
                Running::Sluice(sluice)
            }
            Server::Prometheus => {
                let mut child = start_prometheus()?;
                child.ready("/-/ready", StatusCode::OK).await?;
                Running::Child(server, child)
            }
            Server::VictoriaMetrics => {
                let mut child = ChildServer::victoria_metrics()?;
                child.ready("/health", StatusCode::OK).await?;
                Running::Child(server, child)
            }
        })
    }

    fn endpoint(&self) -> Endpoint {
        match self {
            Running::Sluice(s) => Endpoint {
                server: Server::Sluice,
                addr: s.addr,
                admin: Some(s.admin),
                pid: None,
            },
            Running::Child(server, c) => Endpoint {
                server: *server,
                addr: c.addr,
                admin: None,
                pid: Some(c.pid()),
            },
        }
    }
}

/// Runs `measure` against a fresh `server`, then stops it.
fn with_server<T>(
    server: Server,
    rt: &tokio::runtime::Runtime,
    plugins: &std::path::Path,
    measure: impl FnOnce(Endpoint) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let running = rt.block_on(Running::start(server, plugins))?;
    let result = measure(running.endpoint());
    if let Running::Sluice(mut sluice) = running {
        sluice.shutdown()?;
    }
    result
}

/// Prometheus 2.42 (Debian `prometheus`) as a remote-write receiver, scraping nothing.
fn start_prometheus() -> anyhow::Result<ChildServer> {
    let dir = tempfile::tempdir()?;
    let addr = free_port()?;
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        "# No scrape jobs: the bench remote-writes its data.\n",
    )?;
    let mut command = Command::new("prometheus");
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--web.enable-remote-write-receiver");
    ChildServer::spawn("Prometheus 2.42", command, addr, dir)
}

// ---- HTTP ------------------------------------------------------------------------------

impl Endpoint {
    fn auth(self) -> Option<String> {
        match self.server {
            Server::Sluice => Some(format!("Bearer {TOKEN}")),
            Server::Prometheus | Server::VictoriaMetrics => None,
        }
    }

    /// Where the Prometheus HTTP API is.
    fn api(self) -> String {
        match self.server {
            Server::Sluice => format!("http://{}/prometheus/api/v1", self.addr),
            Server::Prometheus | Server::VictoriaMetrics => format!("http://{}/api/v1", self.addr),
        }
    }

    /// Posts one pre-encoded `WriteRequest` as Prometheus' remote write does.
    async fn remote_write(
        self,
        client: &HttpClient,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let uri = format!("http://{}/api/v1/write", self.addr);
        let headers = [
            (CONTENT_ENCODING, "snappy"),
            (CONTENT_TYPE, "application/x-protobuf"),
            (
                HeaderName::from_static("x-prometheus-remote-write-version"),
                "0.1.0",
            ),
        ];
        send_with(
            client,
            Method::POST,
            &uri,
            self.auth().as_deref(),
            &headers,
            body,
        )
        .await
    }

    /// `GET api/<path>?params`: the raw answer, after checking it is a 200.
    async fn get(
        self,
        client: &HttpClient,
        path: &str,
        params: &[(&str, String)],
    ) -> anyhow::Result<Bytes> {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let uri = format!("{}/{path}?{query}", self.api());
        let (status, body) = send(
            client,
            Method::GET,
            &uri,
            self.auth().as_deref(),
            Bytes::new(),
        )
        .await?;
        if status != StatusCode::OK {
            bail!(
                "{} {path}: {status} {}",
                self.server.name(),
                String::from_utf8_lossy(&body)
            );
        }
        Ok(body)
    }

    /// The points of `data` the server holds, by PromQL.
    async fn count(self, client: &HttpClient, data: &Dataset) -> anyhow::Result<u64> {
        // A window a whole hour longer than the data, ending on its last sample.
        let hours = (data.last_ms() - data.first_ms) / 3_600_000 + 2;
        let mut params = vec![
            ("query", format!("sum(count_over_time({METRIC}[{hours}h]))")),
            ("time", seconds(data.last_ms())),
        ];
        if self.server == Server::VictoriaMetrics {
            params.push(("nocache", "1".into()));
        }
        let body = self.get(client, "query", &params).await?;
        let answer: serde_json::Value = serde_json::from_slice(&body)?;
        // {"data":{"result":[{"metric":{},"value":[t,"N"]}]}}; no result while empty.
        Ok(answer["data"]["result"][0]["value"][1]
            .as_str()
            .map_or(Ok(0.0), str::parse::<f64>)? as u64)
    }
}

/// Milliseconds as seconds, `1700000000.123`.
fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

// ---- data ------------------------------------------------------------------------------

/// `series` counters with `samples` samples each, every `STEP_MS` from `first_ms`.
struct Dataset {
    series: usize,
    samples: usize,
    first_ms: i64,
}

/// One pre-encoded request and the samples in it.
struct Batch {
    body: Bytes,
    points: u64,
}

/// Requests by group of `BATCH_SERIES` series, each group's in time order.
struct Batches(Vec<Vec<Batch>>);

impl Batches {
    fn requests(&self) -> usize {
        self.0.iter().map(Vec::len).sum()
    }

    fn bytes(&self) -> usize {
        self.0.iter().flatten().map(|b| b.body.len()).sum()
    }
}

impl Dataset {
    fn points(&self) -> u64 {
        (self.series * self.samples) as u64
    }

    fn last_ms(&self) -> i64 {
        self.first_ms + (self.samples as i64 - 1) * STEP_MS
    }

    /// Series `i`'s labels: ten jobs, a tenth of the series each (what the query groups
    /// by); `(job, instance)` tells them apart.
    fn labels(i: usize) -> [(&'static str, String); 4] {
        const CODES: [&str; 4] = ["200", "200", "404", "500"];
        [
            ("__name__", METRIC.to_owned()),
            ("job", format!("job-{}", i % 10)),
            ("instance", format!("host-{}:9100", i / 10)),
            ("code", CODES[i / 10 % 4].to_owned()),
        ]
    }

    /// Sample `k` of series `i`: a counter growing by 1 to 19 units a step (times a
    /// per-series scale), irregularly, so that `rate` differs from window to window. Whole
    /// numbers below 2^53: exact in every server's floats.
    fn value(i: usize, k: usize) -> f64 {
        let (i, k) = (i as u64, k as u64);
        ((i % 50 + 1) * (10 * k + (7 * k * k + 13 * i) % 10)) as f64
    }

    fn batches(&self) -> Batches {
        let groups = self.series.div_ceil(BATCH_SERIES);
        Batches(
            (0..groups)
                .map(|g| {
                    let series = g * BATCH_SERIES..((g + 1) * BATCH_SERIES).min(self.series);
                    (0..self.samples)
                        .step_by(BATCH_SAMPLES)
                        .map(|from| {
                            let samples = from..(from + BATCH_SAMPLES).min(self.samples);
                            self.batch(series.clone(), samples)
                        })
                        .collect()
                })
                .collect(),
        )
    }

    fn batch(&self, series: std::ops::Range<usize>, samples: std::ops::Range<usize>) -> Batch {
        let points = (series.len() * samples.len()) as u64;
        let timeseries = series
            .map(|i| {
                let labels = Self::labels(i);
                let labels: Vec<(&str, &str)> =
                    labels.iter().map(|(n, v)| (*n, v.as_str())).collect();
                let samples: Vec<(f64, i64)> = samples
                    .clone()
                    .map(|k| (Self::value(i, k), self.first_ms + k as i64 * STEP_MS))
                    .collect();
                TimeSeries::new(&labels, &samples)
            })
            .collect();
        let body = snap::raw::Encoder::new()
            .compress_vec(&WriteRequest { timeseries }.encode_to_vec())
            .expect("snappy compresses any input");
        Batch {
            body: Bytes::from(body),
            points,
        }
    }
}

// ---- (a) remote-write ingest -----------------------------------------------------------

struct IngestResult {
    /// Points acknowledged, and when the last was.
    acked: u64,
    acked_in: Duration,
    /// Points the server counted at the end, when it first counted them all, and how long
    /// that last count query took.
    stored: u64,
    queryable_in: Option<Duration>,
    count_took: Duration,
    /// Sluice only: when its pipeline had stored every acknowledged point (by its metrics,
    /// asked before the count query, whose own cost is then left out).
    pipeline_stored_in: Option<Duration>,
    /// Requests answered 429/503 (and sent again), and refused for good.
    refused: u64,
    rejected: u64,
    first_rejection: Option<String>,
    cpu: CpuShare,
}

#[derive(Default)]
struct Tally {
    acked: AtomicU64,
    refused: AtomicU64,
    rejected: AtomicU64,
    first_rejection: Mutex<Option<String>>,
}

async fn ingest(
    ep: Endpoint,
    data: &Dataset,
    batches: &Arc<Batches>,
) -> anyhow::Result<IngestResult> {
    let client = http_client();
    let tally = Arc::new(Tally::default());
    let groups = batches.0.len();
    let chunks = batches.0.iter().map(Vec::len).max().unwrap_or(0);
    let cpu_before = Cpu::now(ep.pid);
    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS.min(groups))
        .map(|w| {
            let (client, tally, batches) = (client.clone(), tally.clone(), batches.clone());
            tokio::spawn(async move {
                // Time-major over this writer's groups, as live remote write sends; each
                // group's requests one after the other, so its series stay in time order.
                for c in 0..chunks {
                    for g in (w..groups).step_by(WRITERS) {
                        if let Some(batch) = batches.0[g].get(c) {
                            write_until_answered(&client, ep, batch, &tally).await;
                        }
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await?;
    }
    let acked_in = started.elapsed();
    let cpu = Cpu::now(ep.pid).share_since(cpu_before);
    let acked = tally.acked.load(Ordering::Relaxed);

    let deadline = Instant::now() + VERIFY_LIMIT;
    let mut pipeline_stored_in = None;
    if let Some(admin) = ep.admin {
        while Instant::now() < deadline {
            if sluice_stored_points(&client, admin).await? >= acked {
                pipeline_stored_in = Some(started.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let (stored, queryable_in, count_took) = loop {
        let asked = Instant::now();
        let stored = ep.count(&client, data).await?;
        let took = asked.elapsed();
        if stored >= acked {
            break (stored, Some(started.elapsed()), took);
        }
        if Instant::now() > deadline {
            break (stored, None, took);
        }
        tokio::time::sleep(VERIFY_EVERY).await;
    };
    let first_rejection = tally
        .first_rejection
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    Ok(IngestResult {
        acked,
        acked_in,
        stored,
        queryable_in,
        count_took,
        pipeline_stored_in,
        refused: tally.refused.load(Ordering::Relaxed),
        rejected: tally.rejected.load(Ordering::Relaxed),
        first_rejection,
        cpu,
    })
}

/// Sends `batch` until it is answered: again after a 429, a 503 or no answer; a 204 counts
/// its points, anything else is final.
async fn write_until_answered(client: &HttpClient, ep: Endpoint, batch: &Batch, tally: &Tally) {
    for _ in 0..RETRIES {
        let why = match ep.remote_write(client, batch.body.clone()).await {
            Ok((StatusCode::NO_CONTENT | StatusCode::OK, _)) => {
                tally.acked.fetch_add(batch.points, Ordering::Relaxed);
                return;
            }
            Ok((StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE, _)) | Err(_) => {
                tally.refused.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(REFUSED_PAUSE).await;
                continue;
            }
            Ok((status, body)) => format!("{status} {}", String::from_utf8_lossy(&body)),
        };
        tally.rejected.fetch_add(1, Ordering::Relaxed);
        let mut first = tally
            .first_rejection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        first.get_or_insert(why);
        return;
    }
    tally.rejected.fetch_add(1, Ordering::Relaxed);
}

// ---- (b) query_range -------------------------------------------------------------------

/// One way of asking a server: VictoriaMetrics with and without its result cache.
#[derive(Clone, Copy)]
struct Target {
    ep: Endpoint,
    label: &'static str,
    nocache: bool,
}

struct Loaded {
    name: &'static str,
    result: IngestResult,
}

struct QueryResult {
    loads: Vec<Loaded>,
    /// Per target: its label and its sorted latencies.
    latencies: Vec<(&'static str, Vec<Duration>)>,
    /// Per server compared with Prometheus: its name and the comparison.
    agreement: Vec<(&'static str, Agreement)>,
    steps: usize,
    series: usize,
    answer_bytes: Vec<(&'static str, usize)>,
}

async fn query_bench(servers: &[Running], data: &Dataset) -> anyhow::Result<QueryResult> {
    let client = http_client();
    let batches = Arc::new(data.batches());
    let mut loads = Vec::new();
    for server in servers {
        let ep = server.endpoint();
        eprintln!("(b) loading 6 h into {}...", ep.server.name());
        let result = ingest(ep, data, &batches).await?;
        if result.stored != data.points() {
            bail!(
                "{} holds {} of the {} points written ({} requests refused: {})",
                ep.server.name(),
                result.stored,
                data.points(),
                result.rejected,
                result.first_rejection.as_deref().unwrap_or("-")
            );
        }
        loads.push(Loaded {
            name: ep.server.name(),
            result,
        });
    }
    eprintln!("(b) settling for {} s...", SETTLE.as_secs());
    tokio::time::sleep(SETTLE).await;

    let mut targets = Vec::new();
    for server in servers {
        let ep = server.endpoint();
        match ep.server {
            Server::Sluice => targets.push(Target {
                ep,
                label: "Sluice",
                nocache: false,
            }),
            Server::Prometheus => targets.push(Target {
                ep,
                label: "Prometheus 2.42",
                nocache: false,
            }),
            Server::VictoriaMetrics => {
                targets.push(Target {
                    ep,
                    label: "VictoriaMetrics",
                    nocache: true,
                });
                targets.push(Target {
                    ep,
                    label: "VM, cache on",
                    nocache: false,
                });
            }
        }
    }
    let end = data.last_ms();
    let start = end - QUERY_RANGE_MS;

    // The answers, compared with Prometheus' (from the first warm-up run).
    let mut answers = Vec::new();
    let mut answer_bytes = Vec::new();
    for target in &targets {
        let (_, body) = query_range(&client, *target, start, end).await?;
        answer_bytes.push((target.label, body.len()));
        answers.push((target.label, parse_matrix(&body)?));
    }
    let reference = answers
        .iter()
        .find(|(label, _)| *label == "Prometheus 2.42")
        .map(|(_, a)| a.clone())
        .context("no Prometheus answer")?;
    let agreement = answers
        .iter()
        .filter(|(label, _)| *label != "Prometheus 2.42")
        .map(|(label, answer)| (*label, compare(answer, &reference)))
        .collect();
    let steps = reference.values().map(Vec::len).max().unwrap_or(0);
    let series = reference.len();

    eprintln!("(b) warm-up...");
    for _ in 1..WARMUP_RUNS {
        for target in &targets {
            query_range(&client, *target, start, end).await?;
        }
    }
    eprintln!("(b) {QUERY_RUNS} timed queries each...");
    let mut latencies: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    for run in 0..QUERY_RUNS {
        // Rotate who goes first: the one after a slow neighbour isn't always the same.
        for k in 0..targets.len() {
            let t = (run + k) % targets.len();
            let (took, _) = query_range(&client, targets[t], start, end).await?;
            latencies[t].push(took);
        }
    }
    Ok(QueryResult {
        loads,
        latencies: targets
            .iter()
            .zip(latencies)
            .map(|(t, mut l)| {
                l.sort();
                (t.label, l)
            })
            .collect(),
        agreement,
        steps,
        series,
        answer_bytes,
    })
}

/// One `query_range` of `QUERY`: how long until the whole answer arrived, and the answer.
async fn query_range(
    client: &HttpClient,
    target: Target,
    start: i64,
    end: i64,
) -> anyhow::Result<(Duration, Bytes)> {
    let mut params = vec![
        ("query", QUERY.to_owned()),
        ("start", seconds(start)),
        ("end", seconds(end)),
        ("step", (STEP_MS / 1000).to_string()),
    ];
    if target.nocache {
        params.push(("nocache", "1".into()));
    }
    let sent = Instant::now();
    let body = target.ep.get(client, "query_range", &params).await?;
    Ok((sent.elapsed(), body))
}

/// A range query's answer: series (labels as `k="v",...`, sorted) → (ms, value) by time.
type Matrix = BTreeMap<String, Vec<(i64, f64)>>;

fn parse_matrix(body: &[u8]) -> anyhow::Result<Matrix> {
    let answer: serde_json::Value = serde_json::from_slice(body)?;
    if answer["status"] != "success" || answer["data"]["resultType"] != "matrix" {
        bail!("not a matrix: {}", String::from_utf8_lossy(body));
    }
    let mut matrix = Matrix::new();
    for series in answer["data"]["result"].as_array().into_iter().flatten() {
        let labels: BTreeMap<&str, &str> = series["metric"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or_default()))
            .collect();
        let key = labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut points = Vec::new();
        for pair in series["values"].as_array().into_iter().flatten() {
            let t = pair[0].as_f64().context("timestamp")?;
            let v: f64 = pair[1].as_str().context("value")?.parse()?;
            points.push(((t * 1000.0).round() as i64, v));
        }
        matrix.insert(key, points);
    }
    Ok(matrix)
}

/// How an answer compares with the reference.
struct Agreement {
    /// Series only in one of them.
    series_missing: usize,
    series_extra: usize,
    /// Steps compared, steps in only one of them, and values apart by more than
    /// `TOLERANCE`.
    compared: usize,
    steps_differ: usize,
    values_differ: usize,
    max_relative: f64,
    first_difference: Option<String>,
}

impl Agreement {
    fn agrees(&self) -> bool {
        self.series_missing + self.series_extra + self.steps_differ + self.values_differ == 0
            && self.compared > 0
    }
}

fn compare(answer: &Matrix, reference: &Matrix) -> Agreement {
    let mut a = Agreement {
        series_missing: reference
            .keys()
            .filter(|k| !answer.contains_key(*k))
            .count(),
        series_extra: answer
            .keys()
            .filter(|k| !reference.contains_key(*k))
            .count(),
        compared: 0,
        steps_differ: 0,
        values_differ: 0,
        max_relative: 0.0,
        first_difference: None,
    };
    for (key, want) in reference {
        let Some(got) = answer.get(key) else { continue };
        let got: BTreeMap<i64, f64> = got.iter().copied().collect();
        let want: BTreeMap<i64, f64> = want.iter().copied().collect();
        a.steps_differ += got.keys().filter(|t| !want.contains_key(t)).count()
            + want.keys().filter(|t| !got.contains_key(t)).count();
        for (t, w) in &want {
            let Some(g) = got.get(t) else { continue };
            a.compared += 1;
            let relative = if g == w || (g.is_nan() && w.is_nan()) {
                0.0
            } else {
                (g - w).abs() / g.abs().max(w.abs())
            };
            a.max_relative = a.max_relative.max(relative);
            // NaN (one value NaN, the other not) differs too.
            if relative.is_nan() || relative > TOLERANCE {
                a.values_differ += 1;
                a.first_difference
                    .get_or_insert_with(|| format!("{{{key}}} at {}: {g} vs {w}", seconds(*t)));
            }
        }
    }
    a
}

// ---- report ----------------------------------------------------------------------------

/// Nearest rank of the sorted `xs`.
fn percentile(xs: &[Duration], q: f64) -> Duration {
    let n = xs.len();
    if n == 0 {
        return Duration::ZERO;
    }
    xs[((q * n as f64).ceil() as usize).clamp(1, n) - 1]
}

fn median_by<T>(xs: &[T], key: impl Fn(&T) -> f64) -> f64 {
    let mut v: Vec<f64> = xs.iter().map(key).collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn rates(r: &IngestResult) -> (f64, f64) {
    let acked = r.acked as f64 / r.acked_in.as_secs_f64();
    let queryable = r
        .queryable_in
        .map_or(0.0, |d| r.stored as f64 / d.as_secs_f64());
    (acked, queryable)
}

fn print_ingest(
    data: &Dataset,
    (requests, bytes): (usize, usize),
    results: &BTreeMap<Server, Vec<IngestResult>>,
) {
    println!();
    println!(
        "(a) Remote write: {} series ({METRIC}{{job,instance,code}}), {} samples each at {} s \
         (the last {} min), {} points,",
        thousands(data.series as f64),
        data.samples,
        STEP_MS / 1000,
        data.samples as i64 * STEP_MS / 60_000,
        thousands(data.points() as f64)
    );
    println!(
        "    {requests} pre-encoded snappy WriteRequests of {BATCH_SERIES} series x \
         {BATCH_SAMPLES} samples ({} points, {} KB on average), {WRITERS} concurrent writers on",
        BATCH_SERIES * BATCH_SAMPLES,
        bytes / requests.max(1) / 1000
    );
    println!(
        "    keep-alive connections, each sending its own series in time order; fresh server \
         each round, {INGEST_ROUNDS} rounds in rotating order."
    );
    println!(
        "    {:<16} {:>15} {:>18} {:>21} {:>11} {:>8} {:>9}  rounds (acked points/s)",
        "server",
        "acked points/s",
        "queryable points/s",
        "stored/sent",
        "count query",
        "refused",
        "CPU"
    );
    let mut medians = BTreeMap::new();
    for (server, runs) in results {
        let acked = median_by(runs, |r| rates(r).0);
        let queryable = median_by(runs, |r| rates(r).1);
        medians.insert(*server, (acked, queryable));
        let stored: u64 = runs.iter().map(|r| r.stored).min().unwrap_or(0);
        let refused: u64 = runs.iter().map(|r| r.refused).sum();
        let share = CpuShare {
            ours: median_by(runs, |r| r.cpu.ours),
            others: median_by(runs, |r| r.cpu.others),
        };
        println!(
            "    {:<16} {:>15} {:>18} {:>21} {:>11} {:>8} {:>9}  {}",
            server.name(),
            thousands(acked),
            thousands(queryable),
            format!(
                "{}/{}",
                thousands(stored as f64),
                thousands(data.points() as f64)
            ),
            ms(Duration::from_secs_f64(median_by(runs, |r| r
                .count_took
                .as_secs_f64()))),
            refused,
            cpu(share),
            runs.iter()
                .map(|r| thousands(rates(r).0))
                .collect::<Vec<_>>()
                .join(" ")
        );
        for r in runs
            .iter()
            .filter(|r| r.rejected > 0 || r.queryable_in.is_none())
        {
            println!(
                "      ! {} requests refused for good (first: {}); all points queryable: {}",
                r.rejected,
                r.first_rejection.as_deref().unwrap_or("-"),
                r.queryable_in.is_some()
            );
        }
    }
    let m = |s| medians.get(&s).copied().unwrap_or_default();
    let (sluice, prom, vm) = (
        m(Server::Sluice),
        m(Server::Prometheus),
        m(Server::VictoriaMetrics),
    );
    println!(
        "    Sluice/Prometheus: acked {}, queryable {}. Sluice/VictoriaMetrics: acked {}, \
         queryable {}.",
        ratio(sluice.0, prom.0),
        ratio(sluice.1, prom.1),
        ratio(sluice.0, vm.0),
        ratio(sluice.1, vm.1)
    );
    if let Some(runs) = results.get(&Server::Sluice) {
        let stored = median_by(runs, |r| {
            r.pipeline_stored_in
                .map_or(0.0, |d| r.acked as f64 / d.as_secs_f64())
        });
        println!(
            "    Sluice's pipeline had stored every point at {} points/s (sluice_points_stored_total, \
             before any count query;\n    rounds: {}); Sluice/Prometheus at that: {}, \
             Sluice/VictoriaMetrics: {}.",
            thousands(stored),
            runs.iter()
                .map(|r| r
                    .pipeline_stored_in
                    .map_or("-".into(), |d| format!("{:.1} s", d.as_secs_f64())))
                .collect::<Vec<_>>()
                .join(" "),
            ratio(stored, prom.1),
            ratio(stored, vm.1)
        );
    }
    println!(
        "    Medians of the rounds. acked = points / time until the last 204. queryable = points \
         / time until sum(count_over_time(...))\n    over the server's PromQL API counted every \
         point (asked every {} ms once all were acked; count query = how long the last\n    of \
         those took). Sluice answers 204 once its log holds the points (fsynced), Prometheus once \
         they are in its head and WAL\n    (not fsynced), VictoriaMetrics once they are in memory \
         (on disk about a second later; new series become searchable only\n    several seconds \
         later, about 7 s on this machine, which is most of its queryable time here). refused = \
         requests\n    answered 429/503 and sent again. CPU during the writes: {CPU_LEGEND}.",
        VERIFY_EVERY.as_millis()
    );
}

fn print_query(data: &Dataset, r: &QueryResult) {
    println!();
    println!(
        "(b) query_range `{QUERY}`: {} series, {} h at a {} s step ({} steps x {} series in \
         the answer),",
        thousands(data.series as f64),
        QUERY_RANGE_MS / 3_600_000,
        STEP_MS / 1000,
        r.steps,
        r.series
    );
    println!(
        "    on {} samples per server ({} h {} min at {} s, written by remote write in time \
         order; load times below). {} warm-up runs, then",
        thousands(data.points() as f64),
        (data.last_ms() - data.first_ms) / 3_600_000,
        (data.last_ms() - data.first_ms) % 3_600_000 / 60_000,
        STEP_MS / 1000,
        WARMUP_RUNS
    );
    println!(
        "    {QUERY_RUNS} runs each, servers taking turns; latency = request sent to last byte \
         received. All three servers run throughout."
    );
    println!(
        "    {:<16} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "server", "median", "p90", "min", "max", "answer bytes"
    );
    let stats: Vec<(&str, Duration, Duration)> = r
        .latencies
        .iter()
        .map(|(label, l)| (*label, percentile(l, 0.5), percentile(l, 0.9)))
        .collect();
    for ((label, l), (_, bytes)) in r.latencies.iter().zip(&r.answer_bytes) {
        println!(
            "    {label:<16} {:>10} {:>10} {:>10} {:>10} {:>12}",
            ms(percentile(l, 0.5)),
            ms(percentile(l, 0.9)),
            ms(l.first().copied().unwrap_or_default()),
            ms(l.last().copied().unwrap_or_default()),
            thousands(*bytes as f64)
        );
    }
    let get = |label: &str| {
        stats
            .iter()
            .find(|(l, ..)| *l == label)
            .map_or((0.0, 0.0), |(_, m, p)| (m.as_secs_f64(), p.as_secs_f64()))
    };
    let (sluice, prom, vm) = (
        get("Sluice"),
        get("Prometheus 2.42"),
        get("VictoriaMetrics"),
    );
    println!(
        "    Sluice/Prometheus: median {}, p90 {}. Sluice/VictoriaMetrics (no cache): median {}, \
         p90 {}. (Latency ratios: below 1 is faster.)",
        ratio(sluice.0, prom.0),
        ratio(sluice.1, prom.1),
        ratio(sluice.0, vm.0),
        ratio(sluice.1, vm.1)
    );
    for (label, a) in &r.agreement {
        if a.agrees() {
            println!(
                "    {label} agrees with Prometheus: same {} series, same steps, {} values, \
                 largest relative difference {:.1e}.",
                r.series, a.compared, a.max_relative
            );
        } else {
            println!(
                "    {label} DIFFERS from Prometheus: {} series missing, {} extra, {} steps in \
                 one only, {} of {} values off by more than {TOLERANCE:e} (largest {:.1e}); \
                 first: {}",
                a.series_missing,
                a.series_extra,
                a.steps_differ,
                a.values_differ,
                a.compared,
                a.max_relative,
                a.first_difference.as_deref().unwrap_or("-")
            );
        }
    }
    println!(
        "    Loading the data (the same requests, {} writers: one per {BATCH_SERIES} series, at \
         most {WRITERS}):",
        WRITERS.min(data.series.div_ceil(BATCH_SERIES))
    );
    for load in &r.loads {
        let (acked, queryable) = rates(&load.result);
        println!(
            "      {:<16} acked {} points/s, all {} queryable after {}, CPU {}",
            load.name,
            thousands(acked),
            thousands(load.result.stored as f64),
            load.result.queryable_in.map_or("-".into(), |d| format!(
                "{:.1} s ({} points/s)",
                d.as_secs_f64(),
                thousands(queryable)
            )),
            cpu(load.result.cpu)
        );
    }
    println!(
        "    VM, cache on = VictoriaMetrics with its range-query result cache (its default); \
         the row above it asks with nocache=1."
    );
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
