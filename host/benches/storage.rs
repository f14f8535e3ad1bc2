//! Storage benchmark (issue 14, item 5): the bytes Sluice, a real InfluxDB 1.6.7 and a real
//! VictoriaMetrics 1.79.5 take for the same data, how fast they take it in, and how fast they
//! read it back, in one run, with the same generator, the same line-protocol bytes and the
//! same HTTP client, all on 127.0.0.1.
//!
//! Two workloads, each written into a fresh server (`POST /write?db=bench&precision=s`) as
//! pre-encoded batches of 5,000 lines by two concurrent writers on keep-alive connections:
//! (A) Fleet: 1,000 series `m,host=h0000..h0999,group=g0..g7` (125 hosts a group), two fields
//!     a point: `v`, a random walk with two decimals, and `c`, an integer counter growing a
//!     few units a point; every 10 s over the 24 h ending on the last whole hour (a little
//!     before now): 8.64 M points, 17.28 M values, in time order.
//! (B) Telegraf-like: `cpu` (4 float fields with many decimals summing to 100), `mem` (3
//!     integers in bytes changing slowly, a float percent), `disk` (3 integers changing
//!     rarely) and `net` (4 integer counters) of 100 hosts every 10 s over 8 h: 4.32 M
//!     values.
//!
//! Ingest rate = points (values) / time from the first write until every point is durable
//! and queryable: for Sluice until its pipeline has stored them all
//! (`sluice_points_stored_total`; its 204 means they are in its fsynced log); for InfluxDB at
//! the last 204 (the points are in its fsynced WAL and its cache: queryable); for
//! VictoriaMetrics until its PromQL API counts every value (its 204 means they are in memory;
//! on disk and queryable a second or so later). Then every server must count every value
//! through its query language (untimed).
//!
//! Storage: 3 s later (see `SETTLE`) each server is stopped cleanly (Sluice's graceful
//! shutdown; SIGTERM for the peers, which flush their buffers, and a wait for their exit) and
//! its data directory measured: the apparent size of its files and the bytes allocated to
//! them (`st_blocks` × 512: files may be sparse or preallocated, as InfluxDB's series file
//! and fjall's journal are), per value written, and by part (Sluice: store tables, store
//! journal, log). Not counted: server logs, config files, and InfluxDB's `_internal` database
//! of its own statistics. Workload A's are measured again after the queries (restarts, the
//! queries, clean stops): compactions and merges will have moved on.
//!
//! Queries (A only), in 3 rounds (`QUERY_ROUNDS`): in each, every server in turn is started
//! again on its data, alone (the others are stopped), answers q0..q5, and is stopped; a
//! query's time is the lowest of its rounds' medians, and the report lists every round's. A
//! server answers through its own API: Sluice through its native
//! `/api/v1/query` and through PromQL (`/prometheus/api/v1`; the faster counts, the report
//! says which), InfluxDB through InfluxQL, VictoriaMetrics through `/api/v1/export` (raw
//! points) and MetricsQL `query_range` with `nocache=1` (its result cache off; Sluice and
//! InfluxDB 1.x cache no results). Each is timed as the median of 5 runs after a warm-up run
//! (request sent to last byte received), and each answer checked against the generator's data:
//! same series, same points per series, values within 1e-9 (relative). Buckets are
//! half-open, `[start, start + step)`, and reported at their start, as InfluxDB and Sluice's
//! native API report them; PromQL evaluates a range `[d]` at `t` over `[t - d, t]` (Sluice, as
//! Prometheus 2.x) or `(t - d, t]` (VictoriaMetrics), so a bucket is asked for 5 s before its
//! end, between two samples, where both windows hold exactly its samples.
//!
//! q5, the fleet's hourly counter increase, is the increase within each hour: its last value
//! of `c` less its first, per series, summed. 8,640 samples a series leave no sample before
//! the first hour, so "last of this hour less last of the previous" would give 23 hours, or
//! an extrapolation. In PromQL that is `increase(m_c[3590s])` at 10 s before the hour's end:
//! both ends of the window on a sample, so Prometheus' extrapolation adds nothing and
//! VictoriaMetrics' previous sample is the hour's first. InfluxQL: `last(c) - first(c)` per
//! host and hour, summed per hour in an outer query.
//!
//! Sluice runs in-process on its own runtime (with the binary's allocator): one tenant with a
//! year's retention, no pipeline stages, no rollup tiers. InfluxDB and VictoriaMetrics run as
//! child processes with temp data directories and default settings (see
//! `support::ChildServer::influxdb` and `victoria_metrics`). InfluxDB's shards span 7 days
//! from a Monday 00:00 UTC: run early on a Monday, workload A falls in two.
//!
//! Run: `scripts/bench-storage.sh` (installs InfluxDB and VictoriaMetrics, then runs
//! `cargo bench --bench storage`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::{AddAssign, Range};
use std::path::{Component, Path};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use hyper::body::Bytes;
use hyper::{Method, StatusCode};

#[allow(dead_code, reason = "shared by the benches; this one uses part of it")]
mod support;

use support::{
    CPU_LEGEND, ChildServer, Cpu, CpuShare, HttpClient, SluiceServer, TOKEN, cpu,
    create_influx_database, http_client, ratio, require, send, sluice_stored_points, thousands,
};

/// The binary's allocator, so the in-process service runs as `sluice run` does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Workload A: 1,000 series in 8 groups, a point every 10 s over a day.
const SERIES: usize = 1_000;
const GROUPS: usize = 8;
const INTERVAL_S: i64 = 10;
const DAY_S: i64 = 86_400;
const HOUR_S: i64 = 3_600;
const POINTS_PER_SERIES: usize = (DAY_S / INTERVAL_S) as usize;
/// Workload B: 100 hosts over 8 h are 4.32 M values: several million, and some seconds of
/// ingest for the slowest server, without making the run long.
const TELEGRAF_HOSTS: usize = 100;
const TELEGRAF_HOURS: i64 = 8;
/// A write request's lines, and the concurrent writers.
const BATCH_LINES: usize = 5_000;
const WRITERS: usize = 2;

/// The bench tenant's settings: the data is up to a day old, well within a year.
const TENANT_SETTINGS: &str = "retention_days = 365";
const DB: &str = "bench";

/// The series of the single-series questions, and the group of q4 (it holds that series).
const ONE_SERIES: usize = 421;
const ONE_GROUP: usize = 3;
/// Timing of a query: runs before the timed ones (their answer is the one checked), and
/// timed runs, of which the median counts.
const WARMUP_RUNS: usize = 1;
const TIMED_RUNS: usize = 5;
/// Rounds of workload A's queries: servers take turns, each restarted alone for its round,
/// and a query's time is the lowest of its rounds' medians. One round per server let a slow
/// spell of the shared machine decide a comparison: two runs of the same build here timed
/// VictoriaMetrics' q5 at 56.6 and 101.8 ms.
const QUERY_ROUNDS: usize = 3;
/// Values agree within this, relative to the larger (at least 1): the servers sum in
/// different orders.
const TOLERANCE: f64 = 1e-9;
/// A PromQL bucket is asked for this long before its end: between two samples.
const HALF_INTERVAL_S: i64 = INTERVAL_S / 2;

/// A write refused as busy (429, 503) or not answered is sent again after this pause, until
/// `WRITE_LIMIT` after its first try.
const REFUSED_PAUSE: Duration = Duration::from_millis(50);
const WRITE_LIMIT: Duration = Duration::from_secs(120);
/// How long after the last acknowledgement a server may take to show every point, and how
/// often it is asked (Sluice's metrics are cheap; a count query is not).
const VISIBLE_LIMIT: Duration = Duration::from_secs(300);
const STORED_POLL: Duration = Duration::from_millis(20);
const COUNT_POLL: Duration = Duration::from_millis(200);

/// Pause between the count that checks an ingest and the stop: InfluxDB deletes a TSM file
/// its compaction replaced while a query read it only once the query is done, checking
/// every second; stopped at once, it leaves the file behind (deleted at its next start).
const SETTLE: Duration = Duration::from_secs(3);

/// Issue 14's ingest target: Sluice's bulk ingest at least this many times InfluxDB's.
const INGEST_TARGET: f64 = 1.7;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("storage bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let hint = "Install it and run the bench with scripts/bench-storage.sh (it runs \
                `apt-get install influxdb victoria-metrics`).";
    require("influxd", &["version"], hint)?;
    require("victoria-metrics", &["-version"], hint)?;
    let began = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("client runtime")?;
    // No stages: an empty plugin directory.
    let plugins = tempfile::tempdir()?;
    println!(
        "Storage benchmark: Sluice vs InfluxDB 1.6.7 vs VictoriaMetrics 1.79.5, one run, \
         127.0.0.1 only."
    );

    let end = now_s() / HOUR_S * HOUR_S;
    let fleet = Fleet::generate(end - DAY_S);
    let fleet_data = Arc::new(fleet.workload());
    let telegraf_data = Arc::new(telegraf(end - TELEGRAF_HOURS * HOUR_S..end));
    eprintln!(
        "Encoded {} + {} batches in {:.1} s.",
        fleet_data.batches.len(),
        telegraf_data.batches.len(),
        began.elapsed().as_secs_f64()
    );

    let mut ingested = Vec::new();
    for server in SERVERS {
        eprintln!("(A) {}: ingest...", server.name());
        let mut running = Running::start(server, &rt, plugins.path())?;
        let stored = store(&mut running, &rt, &fleet_data)?;
        ingested.push((running, stored));
    }
    let fleet_runs = query_rounds(ingested, &rt, &fleet)?;
    // The other order for B, so that a slow spell on the shared machine doesn't hit one
    // server only.
    let mut telegraf_runs = Vec::new();
    for server in SERVERS.into_iter().rev() {
        eprintln!("(B) {}: ingest...", server.name());
        let mut running = Running::start(server, &rt, plugins.path())?;
        telegraf_runs.push((server, store(&mut running, &rt, &telegraf_data)?));
    }
    telegraf_runs.reverse();

    let fleet_stored: Vec<_> = fleet_runs.iter().map(|r| (r.server, &r.stored)).collect();
    let telegraf_stored: Vec<_> = telegraf_runs.iter().map(|(s, r)| (*s, r)).collect();
    print_ingest("(A) Fleet", &fleet_data, &fleet_stored);
    print_storage("(A) Fleet", &fleet_data, &fleet_stored);
    print_after_queries(&fleet_data, &fleet_runs);
    print_ingest("(B) Telegraf-like", &telegraf_data, &telegraf_stored);
    print_storage("(B) Telegraf-like", &telegraf_data, &telegraf_stored);
    print_queries(&fleet, &fleet_runs);
    let wrong = print_checks(&fleet_runs);
    print_targets(&fleet_data, &telegraf_data, &fleet_runs, &telegraf_stored);
    println!();
    println!(
        "Run time: {:.0} s (generating the data included).",
        began.elapsed().as_secs_f64()
    );
    if wrong > 0 {
        bail!("{wrong} answers differ from the data written (see above)");
    }
    Ok(())
}

/// Workload A's queries on the servers it was written to (each stopped, with what it
/// stored), in [`QUERY_ROUNDS`] rounds: each server in turn started again on its data, alone,
/// asked every question, and stopped. Then each one's data again.
fn query_rounds(
    mut ingested: Vec<(Running, Stored)>,
    rt: &tokio::runtime::Runtime,
    fleet: &Fleet,
) -> anyhow::Result<Vec<FleetRun>> {
    let mut answers: Vec<Option<Vec<Vec<Timed>>>> = ingested.iter().map(|_| None).collect();
    for round in 1..=QUERY_ROUNDS {
        for ((running, _), answers) in ingested.iter_mut().zip(&mut answers) {
            let name = running.endpoint().name();
            eprintln!("(A) {name}: restart, queries, round {round} of {QUERY_ROUNDS}...");
            running.restart(rt)?;
            let got = rt.block_on(ask_all(running.endpoint(), fleet))?;
            running.stop()?;
            *answers = Some(match answers.take() {
                None => got,
                Some(so_far) => faster(so_far, got),
            });
        }
    }
    ingested
        .into_iter()
        .zip(answers)
        .map(|((running, stored), answers)| {
            Ok(FleetRun {
                server: running.endpoint().server,
                stored,
                after_queries: running.disk()?,
                answers: answers.unwrap_or_default(),
            })
        })
        .collect()
}

/// A round's answers added to those before it: the lower median of each ask, every round's
/// median, and the first difference from the data any round found.
fn faster(so_far: Vec<Vec<Timed>>, round: Vec<Vec<Timed>>) -> Vec<Vec<Timed>> {
    so_far
        .into_iter()
        .zip(round)
        .map(|(asks, again)| {
            asks.into_iter()
                .zip(again)
                .map(|(mut t, again)| {
                    t.median = t.median.min(again.median);
                    t.rounds.extend(again.rounds);
                    t.differs = t.differs.or(again.differs);
                    t
                })
                .collect()
        })
        .collect()
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

// ---- workloads -------------------------------------------------------------------------

/// A workload as line protocol, encoded before any clock starts: the same bytes for every
/// server.
struct Workload {
    batches: Vec<Bytes>,
    points: u64,
    values: u64,
    /// When its points are, in seconds: `[start, end)`.
    span: Range<i64>,
    /// Its PromQL metric names, for counting its values.
    names: &'static [&'static str],
}

impl Workload {
    fn bytes(&self) -> usize {
        self.batches.iter().map(Bytes::len).sum()
    }
}

/// Lines cut into batches of `BATCH_LINES`.
#[derive(Default)]
struct Batcher {
    batch: String,
    lines: usize,
    points: u64,
    values: u64,
    batches: Vec<Bytes>,
}

impl Batcher {
    /// Adds one line (one point) of `values` fields.
    fn line(&mut self, values: u64, line: std::fmt::Arguments<'_>) {
        if self.lines == 0 {
            self.batch.reserve(BATCH_LINES * 64);
        }
        self.batch
            .write_fmt(line)
            .expect("writing to a String cannot fail");
        self.batch.push('\n');
        self.lines += 1;
        self.points += 1;
        self.values += values;
        if self.lines == BATCH_LINES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.lines > 0 {
            self.batches
                .push(Bytes::from(std::mem::take(&mut self.batch)));
            self.lines = 0;
        }
    }

    fn finish(mut self, span: Range<i64>, names: &'static [&'static str]) -> Workload {
        self.flush();
        Workload {
            batches: self.batches,
            points: self.points,
            values: self.values,
            span,
            names,
        }
    }
}

/// A small seeded generator (SplitMix64): the same data on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Hundredths as a decimal with two digits after the point: -5 is `-0.05`.
struct Cents(i32);

impl std::fmt::Display for Cents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

fn host(s: usize) -> String {
    format!("h{s:04}")
}

fn group_of(s: usize) -> usize {
    s / (SERIES / GROUPS)
}

/// Workload A's values, kept to check the answers against.
struct Fleet {
    /// The first point's time, seconds.
    start: i64,
    /// `v` in hundredths and `c` of series `s`'s point `k`, at `s * POINTS_PER_SERIES + k`.
    cents: Vec<i32>,
    counter: Vec<u64>,
}

impl Fleet {
    fn generate(start: i64) -> Self {
        let mut cents = Vec::with_capacity(SERIES * POINTS_PER_SERIES);
        let mut counter = Vec::with_capacity(SERIES * POINTS_PER_SERIES);
        for s in 0..SERIES {
            let mut rng = Rng(s as u64);
            // A walk of ±0.50 a step from somewhere in 50..150; it may go below 0.
            let mut v = 5_000 + rng.below(10_000) as i32;
            let mut c = 1_000_000 + rng.below(1_000_000);
            for _ in 0..POINTS_PER_SERIES {
                v += rng.below(101) as i32 - 50;
                c += 1 + rng.below(5);
                cents.push(v);
                counter.push(c);
            }
        }
        Self {
            start,
            cents,
            counter,
        }
    }

    fn at(s: usize, k: usize) -> usize {
        s * POINTS_PER_SERIES + k
    }

    /// Point `k`'s time, seconds.
    fn time(&self, k: usize) -> i64 {
        self.start + k as i64 * INTERVAL_S
    }

    /// Field `field` of series `s`'s point `k`, as the servers read it back.
    fn value(&self, field: Field, s: usize, k: usize) -> f64 {
        match field {
            // Correctly rounded: the f64 nearest the decimal, as every parser gets.
            Field::V => f64::from(self.cents[Self::at(s, k)]) / 100.0,
            Field::C => self.counter[Self::at(s, k)] as f64,
        }
    }

    /// The points in `span` (seconds, on the 10 s grid).
    fn points_in(&self, span: &Range<i64>) -> Range<usize> {
        let k =
            |t: i64| ((t - self.start) / INTERVAL_S).clamp(0, POINTS_PER_SERIES as i64) as usize;
        k(span.start)..k(span.end)
    }

    /// Line protocol in time order: every series' point k, then k + 1.
    fn workload(&self) -> Workload {
        let mut out = Batcher::default();
        for k in 0..POINTS_PER_SERIES {
            let t = self.time(k);
            for s in 0..SERIES {
                let i = Self::at(s, k);
                out.line(
                    2,
                    format_args!(
                        "m,host={},group=g{} v={},c={}i {t}",
                        host(s),
                        group_of(s),
                        Cents(self.cents[i]),
                        self.counter[i]
                    ),
                );
            }
        }
        out.finish(self.start..self.time(POINTS_PER_SERIES), &["m_v", "m_c"])
    }
}

/// One Telegraf-like host's state: its CPU's usual load, memory, disk and interface.
struct Machine {
    rng: Rng,
    user_base: f64,
    mem_total: u64,
    mem_used: u64,
    mem_cached: u64,
    disk_total: u64,
    disk_used: u64,
    inodes_used: u64,
    /// bytes_recv, bytes_sent, packets_recv, packets_sent.
    net: [u64; 4],
}

const PAGE: u64 = 4_096;
const GIB: u64 = 1 << 30;

impl Machine {
    fn new(i: usize) -> Self {
        let mut rng = Rng(1_000_000 + i as u64);
        let mem_total = [8, 16, 32][i % 3] * GIB;
        let disk_total = [50, 100, 200][i % 3] * GIB;
        Self {
            user_base: 5.0 + 40.0 * rng.unit(),
            mem_used: mem_total / 4 + rng.below(mem_total / 4 / PAGE) * PAGE,
            mem_cached: mem_total / 8,
            disk_used: disk_total / 5 + rng.below(disk_total / 5 / PAGE) * PAGE,
            inodes_used: 100_000 + rng.below(400_000),
            net: [
                rng.below(1 << 40),
                rng.below(1 << 38),
                rng.below(1 << 30),
                rng.below(1 << 28),
            ],
            mem_total,
            disk_total,
            rng,
        }
    }

    /// The next 10 s: load jitters, memory drifts by pages, the disk changes now and then,
    /// counters grow.
    fn tick(&mut self) {
        let r = &mut self.rng;
        self.mem_used = (self.mem_used + r.below(129) * PAGE)
            .saturating_sub(64 * PAGE)
            .clamp(self.mem_total / 8, self.mem_total / 8 * 5);
        self.mem_cached = (self.mem_cached + r.below(33) * PAGE)
            .saturating_sub(16 * PAGE)
            .clamp(self.mem_total / 16, self.mem_total / 4);
        if r.below(20) == 0 {
            self.disk_used = (self.disk_used + r.below(2_048) * PAGE).min(self.disk_total);
        }
        if r.below(20) == 0 {
            self.inodes_used += r.below(50);
        }
        let received = 50_000 + r.below(500_000);
        let sent = 20_000 + r.below(200_000);
        self.net[0] += received;
        self.net[1] += sent;
        self.net[2] += received / (600 + r.below(800));
        self.net[3] += sent / (400 + r.below(800));
    }

    /// This host's four lines at `t`: 15 values.
    fn write(&mut self, i: usize, t: i64, out: &mut Batcher) {
        let r = &mut self.rng;
        let user = (self.user_base + 6.0 * r.unit() - 3.0).max(0.0);
        let system = 1.0 + 4.0 * r.unit();
        let iowait = r.unit() * r.unit();
        let idle = 100.0 - user - system - iowait;
        out.line(
            4,
            format_args!(
                "cpu,cpu=cpu-total,host=web{i:03} usage_user={user},usage_system={system},\
                 usage_idle={idle},usage_iowait={iowait} {t}"
            ),
        );
        let free = self.mem_total - self.mem_used - self.mem_cached;
        out.line(
            4,
            format_args!(
                "mem,host=web{i:03} used={}i,free={free}i,available={}i,used_percent={} {t}",
                self.mem_used,
                free + self.mem_cached / 10 * 9,
                self.mem_used as f64 / self.mem_total as f64 * 100.0
            ),
        );
        out.line(
            3,
            format_args!(
                "disk,device=vda1,fstype=ext4,host=web{i:03},mode=rw,path=/ free={}i,used={}i,\
                 inodes_used={}i {t}",
                self.disk_total - self.disk_used,
                self.disk_used,
                self.inodes_used
            ),
        );
        let [bytes_recv, bytes_sent, packets_recv, packets_sent] = self.net;
        out.line(
            4,
            format_args!(
                "net,host=web{i:03},interface=eth0 bytes_recv={bytes_recv}i,\
                 bytes_sent={bytes_sent}i,packets_recv={packets_recv}i,\
                 packets_sent={packets_sent}i {t}"
            ),
        );
    }
}

/// Workload B's metric names.
const TELEGRAF_NAMES: &[&str] = &[
    "cpu_usage_user",
    "cpu_usage_system",
    "cpu_usage_idle",
    "cpu_usage_iowait",
    "mem_used",
    "mem_free",
    "mem_available",
    "mem_used_percent",
    "disk_free",
    "disk_used",
    "disk_inodes_used",
    "net_bytes_recv",
    "net_bytes_sent",
    "net_packets_recv",
    "net_packets_sent",
];

/// Workload B over `span` (seconds), in time order.
fn telegraf(span: Range<i64>) -> Workload {
    let mut machines: Vec<Machine> = (0..TELEGRAF_HOSTS).map(Machine::new).collect();
    let mut out = Batcher::default();
    for t in span.clone().step_by(INTERVAL_S as usize) {
        for (i, machine) in machines.iter_mut().enumerate() {
            machine.tick();
            machine.write(i, t, &mut out);
        }
    }
    out.finish(span, TELEGRAF_NAMES)
}

// ---- servers ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    Sluice,
    InfluxDb,
    VictoriaMetrics,
}

const SERVERS: [Server; 3] = [Server::Sluice, Server::InfluxDb, Server::VictoriaMetrics];

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Sluice => "Sluice",
            Server::InfluxDb => "InfluxDB 1.6.7",
            Server::VictoriaMetrics => "VictoriaMetrics",
        }
    }

    /// The parts of its data, in the order reported.
    fn parts(self) -> &'static [&'static str] {
        match self {
            Server::Sluice => &["store tables", "store journal", "log", "other"],
            Server::InfluxDb => &[
                "TSM files",
                "TSM .tmp files",
                "WAL",
                "series file",
                "meta",
                "other",
            ],
            Server::VictoriaMetrics => &["parts", "indexdb", "caches", "other"],
        }
    }

    /// Which of its `parts` a file is, by its path under the measured directory; `None`
    /// for what is not the workload's data (logs, config, InfluxDB's own monitoring).
    fn part_of(self, path: &Path) -> Option<&'static str> {
        let names: Vec<&str> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(name) => name.to_str(),
                _ => None,
            })
            .collect();
        Some(match (self, names.as_slice()) {
            // Its data directory: fjall's tables (one directory a keyspace) and journal
            // (`N.jnl`, with its version and lock files), the durable log, the rest (dead
            // letters, plugin cache).
            (Server::Sluice, ["store", "keyspaces", ..]) => "store tables",
            (Server::Sluice, ["store", ..]) => "store journal",
            (Server::Sluice, ["log", ..]) => "log",
            (Server::Sluice, _) => "other",
            // Its temp directory: meta, data and wal. `_internal` is the database of its own
            // statistics (on by default), written every 10 s whatever the workload.
            (Server::InfluxDb, ["data" | "wal", "_internal", ..]) => return None,
            (Server::InfluxDb, ["wal", ..]) => "WAL",
            (Server::InfluxDb, ["meta", ..]) => "meta",
            (Server::InfluxDb, ["data", rest @ ..]) if rest.contains(&"_series") => "series file",
            (Server::InfluxDb, ["data", .., file]) if file.ends_with(".tsm") => "TSM files",
            // A compaction's output not finished when it stopped, or a file it replaced
            // that a query still read (deleted once unused); deleted at its next start.
            (Server::InfluxDb, ["data", .., file]) if file.ends_with(".tsm.tmp") => {
                "TSM .tmp files"
            }
            (Server::InfluxDb, ["data", ..]) => "other",
            // Its temp directory: `-storageDataPath` is `data`.
            (Server::VictoriaMetrics, ["data", "data", ..]) => "parts",
            (Server::VictoriaMetrics, ["data", "indexdb", ..]) => "indexdb",
            (Server::VictoriaMetrics, ["data", "cache", ..]) => "caches",
            (Server::VictoriaMetrics, ["data", ..]) => "other",
            _ => return None,
        })
    }
}

/// A running server of this bench's kinds.
type Endpoint = support::Endpoint<Server>;

/// A server on its own data directory: stopped and started again on it, deleted on drop.
enum Running {
    Sluice(SluiceServer),
    Child(Server, ChildServer),
}

impl Running {
    /// A fresh server, ready for writes.
    fn start(server: Server, rt: &tokio::runtime::Runtime, plugins: &Path) -> anyhow::Result<Self> {
        let mut running = match server {
            Server::Sluice => Running::Sluice(SluiceServer::start(rt, plugins, TENANT_SETTINGS)?),
            Server::InfluxDb => Running::Child(server, ChildServer::influxdb()?),
            Server::VictoriaMetrics => Running::Child(server, ChildServer::victoria_metrics()?),
        };
        rt.block_on(running.ready())?;
        Ok(running)
    }

    async fn ready(&mut self) -> anyhow::Result<()> {
        match self {
            // It serves once `start` returns.
            Running::Sluice(_) => Ok(()),
            Running::Child(Server::InfluxDb, child) => {
                child.ready("/ping", StatusCode::NO_CONTENT).await?;
                create_influx_database(child.addr, DB).await
            }
            Running::Child(_, child) => child.ready("/health", StatusCode::OK).await,
        }
    }

    /// Stops the server cleanly: Sluice's graceful shutdown, SIGTERM for the peers.
    fn stop(&mut self) -> anyhow::Result<()> {
        match self {
            Running::Sluice(sluice) => sluice.shutdown(),
            Running::Child(_, child) => child.stop(),
        }
    }

    /// Starts the server again on its data and waits until it is ready.
    fn restart(&mut self, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        match self {
            Running::Sluice(sluice) => sluice.restart(rt)?,
            Running::Child(_, child) => child.restart()?,
        }
        rt.block_on(self.ready())
    }

    fn endpoint(&self) -> Endpoint {
        match self {
            Running::Sluice(sluice) => Endpoint {
                server: Server::Sluice,
                addr: sluice.addr,
                admin: Some(sluice.admin),
                pid: None,
            },
            Running::Child(server, child) => Endpoint {
                server: *server,
                addr: child.addr,
                admin: None,
                pid: Some(child.pid()),
            },
        }
    }

    /// The bytes of its data, by part.
    fn disk(&self) -> anyhow::Result<Disk> {
        let (server, root) = match self {
            Running::Sluice(sluice) => (Server::Sluice, sluice.data_dir()),
            Running::Child(server, child) => (*server, child.dir.path().to_owned()),
        };
        measure(&root, server)
            .with_context(|| format!("measuring {}'s data in {}", server.name(), root.display()))
    }
}

impl Endpoint {
    fn name(self) -> &'static str {
        self.server.name()
    }

    fn auth(self) -> Option<String> {
        match self.server {
            Server::Sluice => Some(format!("Token {TOKEN}")),
            Server::InfluxDb | Server::VictoriaMetrics => None,
        }
    }

    /// Writes line protocol through the v1 `/write` endpoint all three serve. (VictoriaMetrics
    /// adds the label `db="bench"` from `db`.)
    async fn write(self, client: &HttpClient, body: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
        let uri = format!("http://{}/write?db={DB}&precision=s", self.addr);
        send(client, Method::POST, &uri, self.auth().as_deref(), body).await
    }

    /// `GET path?params`: the answer, after checking it is a 200.
    async fn get(
        self,
        client: &HttpClient,
        path: &str,
        params: &[(&str, String)],
    ) -> anyhow::Result<Bytes> {
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
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
            bail!("{status} {}", String::from_utf8_lossy(&body));
        }
        Ok(body)
    }

    /// The values of `data` the server holds, counted through its query language.
    async fn count(self, client: &HttpClient, data: &Workload) -> anyhow::Result<u64> {
        let Range { start, end } = data.span;
        let counted = match self.server {
            Server::InfluxDb => {
                let q =
                    format!("SELECT count(*) FROM /.*/ WHERE time >= {start}s AND time < {end}s");
                let params = [("db", DB.to_owned()), ("epoch", "ms".to_owned()), ("q", q)];
                let body = self.get(client, "/query", &params).await?;
                influx_count(&body)?
            }
            Server::Sluice | Server::VictoriaMetrics => {
                // A window an hour longer than the data, ending between its last two
                // samples; a sum per name (counting drops the name, and series of two names
                // may have the same labels left).
                let hours = (end - start) / HOUR_S + 1;
                let sums: Vec<String> = data
                    .names
                    .iter()
                    .map(|name| format!("sum(count_over_time({name}[{hours}h]))"))
                    .collect();
                let mut params = vec![
                    ("query", sums.join(" + ")),
                    ("time", (end - HALF_INTERVAL_S).to_string()),
                ];
                let path = if self.server == Server::Sluice {
                    "/prometheus/api/v1/query"
                } else {
                    params.push(("nocache", "1".to_owned()));
                    "/api/v1/query"
                };
                let body = self.get(client, path, &params).await?;
                let answer: serde_json::Value = serde_json::from_slice(&body)?;
                // {"data":{"result":[{"metric":{},"value":[t,"N"]}]}}; no result while empty.
                answer["data"]["result"][0]["value"][1]
                    .as_str()
                    .map_or(Ok(0.0), str::parse::<f64>)? as u64
            }
        };
        Ok(counted)
    }
}

/// Sums the counts of `SELECT count(*) FROM /.*/`: a series per measurement, a column per
/// field.
fn influx_count(body: &[u8]) -> anyhow::Result<u64> {
    let answer: serde_json::Value = serde_json::from_slice(body)?;
    if let Some(error) = answer["results"][0]["error"].as_str() {
        bail!("{error}");
    }
    Ok(answer["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["values"].as_array().into_iter().flatten())
        .flat_map(|row| row.as_array().into_iter().flatten().skip(1))
        .filter_map(serde_json::Value::as_u64)
        .sum())
}

// ---- ingest ----------------------------------------------------------------------------

struct Ingest {
    /// From the first write until the last acknowledgement, and until every point was
    /// durable and queryable.
    acked_in: Duration,
    took: Duration,
    /// Writes answered 429 or 503 (or not at all), and sent again.
    refused: u64,
    cpu: CpuShare,
}

/// Ingest, then the data on disk after a clean stop.
struct Stored {
    ingest: Ingest,
    disk: Disk,
}

/// Writes `data` into the running server, stops it cleanly and measures its data.
fn store(
    running: &mut Running,
    rt: &tokio::runtime::Runtime,
    data: &Arc<Workload>,
) -> anyhow::Result<Stored> {
    let ingest = rt.block_on(ingest(running.endpoint(), data))?;
    std::thread::sleep(SETTLE);
    running.stop()?;
    Ok(Stored {
        ingest,
        disk: running.disk()?,
    })
}

async fn ingest(ep: Endpoint, data: &Arc<Workload>) -> anyhow::Result<Ingest> {
    let client = http_client();
    let next = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let cpu_before = Cpu::now(ep.pid);
    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (client, next, refused, data) =
                (client.clone(), next.clone(), refused.clone(), data.clone());
            tokio::spawn(async move {
                while let Some(batch) = data.batches.get(next.fetch_add(1, Ordering::Relaxed)) {
                    write_until_acked(&client, ep, batch, &refused).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for writer in writers {
        writer.await??;
    }
    let acked_in = started.elapsed();
    wait_visible(&client, ep, data).await?;
    let took = started.elapsed();
    let cpu = Cpu::now(ep.pid).share_since(cpu_before);
    let counted = ep
        .count(&client, data)
        .await
        .with_context(|| format!("{}: counting the values", ep.name()))?;
    if counted != data.values {
        bail!(
            "{} counts {} values, {} were written",
            ep.name(),
            thousands(counted as f64),
            thousands(data.values as f64)
        );
    }
    Ok(Ingest {
        acked_in,
        took,
        refused: refused.load(Ordering::Relaxed),
        cpu,
    })
}

/// Sends `batch` until it is acknowledged: again after a 429, a 503 or no answer, until
/// `WRITE_LIMIT`; any other answer fails the bench.
async fn write_until_acked(
    client: &HttpClient,
    ep: Endpoint,
    batch: &Bytes,
    refused: &AtomicU64,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + WRITE_LIMIT;
    loop {
        match ep.write(client, batch.clone()).await {
            Ok((StatusCode::NO_CONTENT | StatusCode::OK, _)) => return Ok(()),
            Ok((StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE, _)) | Err(_)
                if Instant::now() < deadline =>
            {
                refused.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(REFUSED_PAUSE).await;
            }
            Ok((status, body)) => bail!(
                "{}: a write was answered {status}: {}",
                ep.name(),
                String::from_utf8_lossy(&body)
            ),
            Err(error) => {
                return Err(error.context(format!(
                    "{}: a write went unanswered for {WRITE_LIMIT:?}",
                    ep.name()
                )));
            }
        }
    }
}

/// Waits until every point of `data` is durable and queryable (see the top of the file).
async fn wait_visible(client: &HttpClient, ep: Endpoint, data: &Workload) -> anyhow::Result<()> {
    let deadline = Instant::now() + VISIBLE_LIMIT;
    loop {
        let (visible, pause) = match (ep.server, ep.admin) {
            (Server::Sluice, Some(admin)) => (
                sluice_stored_points(client, admin).await? >= data.points,
                STORED_POLL,
            ),
            (Server::VictoriaMetrics, _) => {
                let counted = ep
                    .count(client, data)
                    .await
                    .with_context(|| format!("{}: counting the values", ep.name()))?;
                (counted >= data.values, COUNT_POLL)
            }
            // Its 204 means queryable, and in its fsynced WAL.
            _ => (true, Duration::ZERO),
        };
        if visible {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{}: not every point queryable {VISIBLE_LIMIT:?} after the last write",
                ep.name()
            );
        }
        tokio::time::sleep(pause).await;
    }
}

// ---- disk ------------------------------------------------------------------------------

/// Bytes of files: their apparent size, and what the file system allocated (`st_blocks`).
#[derive(Clone, Copy, Default)]
struct Usage {
    apparent: u64,
    allocated: u64,
}

impl AddAssign for Usage {
    fn add_assign(&mut self, other: Self) {
        self.apparent += other.apparent;
        self.allocated += other.allocated;
    }
}

/// A server's data: in all, and by part (in the server's order).
struct Disk {
    total: Usage,
    parts: Vec<(&'static str, Usage)>,
}

/// Adds up the files under `root` that are `server`'s data, by part.
fn measure(root: &Path, server: Server) -> anyhow::Result<Disk> {
    use std::os::unix::fs::MetadataExt as _;
    let mut disk = Disk {
        total: Usage::default(),
        parts: server
            .parts()
            .iter()
            .map(|p| (*p, Usage::default()))
            .collect(),
    };
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
            let entry = entry?;
            let meta = entry.metadata()?;
            let path = entry.path();
            if meta.is_dir() {
                dirs.push(path);
                continue;
            }
            let Some(part) = server.part_of(path.strip_prefix(root)?) else {
                continue;
            };
            let usage = Usage {
                apparent: meta.len(),
                allocated: meta.blocks() * 512,
            };
            disk.total += usage;
            match disk.parts.iter_mut().find(|(name, _)| *name == part) {
                Some((_, sum)) => *sum += usage,
                None => disk.parts.push((part, usage)),
            }
        }
    }
    Ok(disk)
}

// ---- queries ---------------------------------------------------------------------------

/// The questions asked of workload A.
#[derive(Clone, Copy)]
enum Question {
    RawDay,
    RawHour,
    MinuteMeans,
    HourlyMeans,
    GroupMaxima,
    FleetIncrease,
}

const QUESTIONS: [Question; 6] = [
    Question::RawDay,
    Question::RawHour,
    Question::MinuteMeans,
    Question::HourlyMeans,
    Question::GroupMaxima,
    Question::FleetIncrease,
];

#[derive(Clone, Copy)]
enum Field {
    V,
    C,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::V => "v",
            Field::C => "c",
        }
    }
}

/// Which series a question is about.
#[derive(Clone, Copy)]
enum Selection {
    One,
    Group,
    All,
}

#[derive(Clone, Copy)]
enum Agg {
    Mean,
    Max,
}

/// What a question wants of the series.
#[derive(Clone, Copy)]
enum Shape {
    Raw,
    /// An aggregate of each series over buckets of `step` seconds.
    Buckets {
        step: i64,
        agg: Agg,
    },
    /// Per bucket of `step` seconds, each series' last value less its first, summed.
    IncreaseSum {
        step: i64,
    },
}

/// A question in full: which series, which field, when (seconds, `[start, end)`), what.
struct Spec {
    selection: Selection,
    field: Field,
    span: Range<i64>,
    shape: Shape,
}

impl Question {
    fn label(self) -> &'static str {
        match self {
            Question::RawDay => "q0 raw points of 1 series, 24 h (8,640)",
            Question::RawHour => "q1 raw points of 1 series, 1 h (360)",
            Question::MinuteMeans => "q2 1-min means of 1 series, 24 h",
            Question::HourlyMeans => "q3 hourly means of 1,000 series, 24 h",
            Question::GroupMaxima => "q4 5-min maxima of 125 series, 24 h",
            Question::FleetIncrease => "q5 hourly increase of c, summed, 24 h",
        }
    }

    fn spec(self, fleet: &Fleet) -> Spec {
        let day = fleet.start..fleet.start + DAY_S;
        // The 13th hour: in the middle of the data.
        let noon = fleet.start + 12 * HOUR_S;
        let (selection, field, span, shape) = match self {
            Question::RawDay => (Selection::One, Field::V, day, Shape::Raw),
            Question::RawHour => (Selection::One, Field::V, noon..noon + HOUR_S, Shape::Raw),
            Question::MinuteMeans => (
                Selection::One,
                Field::V,
                day,
                Shape::Buckets {
                    step: 60,
                    agg: Agg::Mean,
                },
            ),
            Question::HourlyMeans => (
                Selection::All,
                Field::V,
                day,
                Shape::Buckets {
                    step: HOUR_S,
                    agg: Agg::Mean,
                },
            ),
            Question::GroupMaxima => (
                Selection::Group,
                Field::V,
                day,
                Shape::Buckets {
                    step: 300,
                    agg: Agg::Max,
                },
            ),
            Question::FleetIncrease => (
                Selection::All,
                Field::C,
                day,
                Shape::IncreaseSum { step: HOUR_S },
            ),
        };
        Spec {
            selection,
            field,
            span,
            shape,
        }
    }
}

/// A series' points: (time in ms, value), by time.
type Points = Vec<(i64, f64)>;

/// An answer: series by their `host` (empty when the series has none).
type Answer = BTreeMap<String, Points>;

impl Fleet {
    fn selected(selection: Selection) -> Vec<usize> {
        match selection {
            Selection::One => vec![ONE_SERIES],
            Selection::Group => (0..SERIES).filter(|s| group_of(*s) == ONE_GROUP).collect(),
            Selection::All => (0..SERIES).collect(),
        }
    }

    /// What a server should answer to `spec`: computed from the values written.
    fn answer(&self, spec: &Spec) -> Answer {
        let points = self.points_in(&spec.span);
        let ms = |k: usize| self.time(k) * 1000;
        let series = Self::selected(spec.selection);
        let buckets = |step: i64| {
            points
                .clone()
                .step_by((step / INTERVAL_S) as usize)
                .map(move |first| first..first + (step / INTERVAL_S) as usize)
        };
        match spec.shape {
            Shape::Raw => series
                .into_iter()
                .map(|s| {
                    let values = points
                        .clone()
                        .map(|k| (ms(k), self.value(spec.field, s, k)))
                        .collect();
                    (host(s), values)
                })
                .collect(),
            Shape::Buckets { step, agg } => series
                .into_iter()
                .map(|s| {
                    let values = buckets(step)
                        .map(|bucket| {
                            let start = ms(bucket.start);
                            let n = bucket.len() as f64;
                            let values = bucket.map(|k| self.value(spec.field, s, k));
                            let value = match agg {
                                Agg::Mean => values.sum::<f64>() / n,
                                Agg::Max => values.fold(f64::NEG_INFINITY, f64::max),
                            };
                            (start, value)
                        })
                        .collect();
                    (host(s), values)
                })
                .collect(),
            Shape::IncreaseSum { step } => {
                let values = buckets(step)
                    .map(|bucket| {
                        let sum: f64 = series
                            .iter()
                            .map(|s| {
                                self.value(spec.field, *s, bucket.end - 1)
                                    - self.value(spec.field, *s, bucket.start)
                            })
                            .sum();
                        (ms(bucket.start), sum)
                    })
                    .collect();
                BTreeMap::from([(String::new(), values)])
            }
        }
    }
}

/// How an answer is read.
#[derive(Clone, Copy)]
enum Reader {
    /// Sluice's `/api/v1/query`.
    Native,
    /// A Prometheus API matrix (`query` with a range selector, `query_range`).
    Matrix,
    /// VictoriaMetrics' `/api/v1/export`: JSON lines.
    Export,
    InfluxQl,
}

/// One way of asking one server one question.
struct Ask {
    /// The API, for the report.
    api: &'static str,
    path: &'static str,
    params: Vec<(&'static str, String)>,
    /// The query in the server's language, for the report and for errors.
    text: String,
    reader: Reader,
    /// Added to the answer's times (ms): from a PromQL step's evaluation time to the start
    /// of its bucket.
    shift_ms: i64,
}

/// A question's selector: PromQL's, and the InfluxQL condition before the time range.
fn selectors(spec: &Spec) -> (String, String) {
    let metric = format!("m_{}", spec.field.name());
    match spec.selection {
        Selection::One => (
            format!("{metric}{{host=\"{}\"}}", host(ONE_SERIES)),
            format!("host = '{}' AND ", host(ONE_SERIES)),
        ),
        Selection::Group => (
            format!("{metric}{{group=\"g{ONE_GROUP}\"}}"),
            format!("\"group\" = 'g{ONE_GROUP}' AND "),
        ),
        Selection::All => (metric, String::new()),
    }
}

/// The ways `server` is asked `spec`: two for Sluice where its native API can answer.
fn asks(server: Server, spec: &Spec) -> Vec<Ask> {
    match server {
        Server::Sluice => native_ask(spec)
            .into_iter()
            .chain([promql_ask(spec, server)])
            .collect(),
        Server::InfluxDb => vec![influxql_ask(spec)],
        Server::VictoriaMetrics => match spec.shape {
            Shape::Raw => vec![export_ask(spec)],
            Shape::Buckets { .. } | Shape::IncreaseSum { .. } => vec![promql_ask(spec, server)],
        },
    }
}

/// Sluice's `/api/v1/query`: raw points or buckets of one series' field, tag filters; no
/// sums across series.
fn native_ask(spec: &Spec) -> Option<Ask> {
    let mut params = vec![
        ("measurement", "m".to_owned()),
        ("field", spec.field.name().to_owned()),
    ];
    match spec.selection {
        Selection::One => params.push(("tag", format!("host:{}", host(ONE_SERIES)))),
        Selection::Group => params.push(("tag", format!("group:g{ONE_GROUP}"))),
        Selection::All => {}
    }
    match spec.shape {
        Shape::Raw => {}
        Shape::Buckets { step, agg } => {
            let agg = match agg {
                Agg::Mean => "mean",
                Agg::Max => "max",
            };
            params.push(("agg", agg.to_owned()));
            params.push(("step", format!("{step}s")));
        }
        Shape::IncreaseSum { .. } => return None,
    }
    let text = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let ns = |s: i64| (s * 1_000_000_000).to_string();
    params.push(("start", ns(spec.span.start)));
    params.push(("end", ns(spec.span.end)));
    // Every point in one page (the default page is 100,000).
    params.push(("limit", "1000000".to_owned()));
    Some(Ask {
        api: "native",
        path: "/api/v1/query",
        params,
        text,
        reader: Reader::Native,
        shift_ms: 0,
    })
}

/// PromQL (Sluice) or MetricsQL (VictoriaMetrics, without its result cache).
fn promql_ask(spec: &Spec, server: Server) -> Ask {
    let (selector, _) = selectors(spec);
    let Range { start, end } = spec.span;
    let (path, query, mut params, reader, shift_s) = match spec.shape {
        // Raw points: a range selector at one time, 5 s after the last sample.
        Shape::Raw => {
            let query = format!("{selector}[{}s]", end - start);
            let params = vec![("time", (end - HALF_INTERVAL_S).to_string())];
            ("query", query, params, Reader::Matrix, 0)
        }
        Shape::Buckets { step, agg } => {
            let function = match agg {
                Agg::Mean => "avg_over_time",
                Agg::Max => "max_over_time",
            };
            let query = format!("{function}({selector}[{step}s])");
            let at = step - HALF_INTERVAL_S;
            (
                "query_range",
                query,
                range(start + at, end - HALF_INTERVAL_S, step),
                Reader::Matrix,
                at,
            )
        }
        // Both ends of the window on the bucket's first and last samples (see the top).
        Shape::IncreaseSum { step } => {
            let at = step - INTERVAL_S;
            let query = format!("sum(increase({selector}[{at}s]))");
            (
                "query_range",
                query,
                range(start + at, end - INTERVAL_S, step),
                Reader::Matrix,
                at,
            )
        }
    };
    params.push(("query", query.clone()));
    let (api, path) = match (server, path) {
        (Server::Sluice, "query") => ("PromQL", "/prometheus/api/v1/query"),
        (Server::Sluice, _) => ("PromQL", "/prometheus/api/v1/query_range"),
        (_, "query") => ("MetricsQL", "/api/v1/query"),
        (_, _) => ("MetricsQL", "/api/v1/query_range"),
    };
    if server == Server::VictoriaMetrics {
        params.push(("nocache", "1".to_owned()));
    }
    Ask {
        api,
        path,
        params,
        text: query,
        reader,
        shift_ms: -shift_s * 1000,
    }
}

/// `query_range`'s `start`, `end` and `step`, in seconds.
fn range(start: i64, end: i64, step: i64) -> Vec<(&'static str, String)> {
    vec![
        ("start", start.to_string()),
        ("end", end.to_string()),
        ("step", step.to_string()),
    ]
}

/// VictoriaMetrics' raw samples: `/api/v1/export` (both ends included; they sit between
/// samples).
fn export_ask(spec: &Spec) -> Ask {
    let (selector, _) = selectors(spec);
    Ask {
        api: "export",
        path: "/api/v1/export",
        params: vec![
            ("match[]", selector.clone()),
            ("start", (spec.span.start - HALF_INTERVAL_S).to_string()),
            ("end", (spec.span.end - HALF_INTERVAL_S).to_string()),
        ],
        text: selector,
        reader: Reader::Export,
        shift_ms: 0,
    }
}

fn influxql_ask(spec: &Spec) -> Ask {
    let (_, condition) = selectors(spec);
    let field = spec.field.name();
    let Range { start, end } = spec.span;
    let filter = format!("WHERE {condition}time >= {start}s AND time < {end}s");
    let q = match spec.shape {
        Shape::Raw => format!("SELECT {field} FROM m {filter}"),
        Shape::Buckets { step, agg } => {
            let function = match agg {
                Agg::Mean => "mean",
                Agg::Max => "max",
            };
            let by_host = match spec.selection {
                Selection::One => "",
                Selection::Group | Selection::All => ", host",
            };
            format!("SELECT {function}({field}) FROM m {filter} GROUP BY time({step}s){by_host}")
        }
        // The increase within each hour of each series, summed per hour (see the top).
        Shape::IncreaseSum { step } => format!(
            "SELECT sum(d) FROM (SELECT last({field}) - first({field}) AS d FROM m {filter} \
             GROUP BY time({step}s), host) {filter} GROUP BY time({step}s)"
        ),
    };
    Ask {
        api: "InfluxQL",
        path: "/query",
        params: vec![
            ("db", DB.to_owned()),
            ("epoch", "ms".to_owned()),
            ("q", q.clone()),
        ],
        text: q,
        reader: Reader::InfluxQl,
        shift_ms: 0,
    }
}

/// One ask, timed, and how its answer compares with the data.
struct Timed {
    api: &'static str,
    text: String,
    /// The lowest of the rounds' medians.
    median: Duration,
    /// Each round's median, in the order run.
    rounds: Vec<Duration>,
    /// Where the answer differs from the data written, when it does.
    differs: Option<String>,
}

/// Workload A's questions asked of one server: per question, its asks.
async fn ask_all(ep: Endpoint, fleet: &Fleet) -> anyhow::Result<Vec<Vec<Timed>>> {
    let client = http_client();
    let mut answers = Vec::new();
    for question in QUESTIONS {
        let spec = question.spec(fleet);
        let truth = fleet.answer(&spec);
        let mut timed = Vec::new();
        for ask in asks(ep.server, &spec) {
            timed.push(
                time_ask(&client, ep, &ask, &truth).await.with_context(|| {
                    format!("{} {} ({})", ep.name(), question.label(), ask.text)
                })?,
            );
        }
        answers.push(timed);
    }
    Ok(answers)
}

/// Asks `WARMUP_RUNS + TIMED_RUNS` times; the median of the timed runs, and the first
/// answer compared with `truth`.
async fn time_ask(
    client: &HttpClient,
    ep: Endpoint,
    ask: &Ask,
    truth: &Answer,
) -> anyhow::Result<Timed> {
    let mut first = None;
    for _ in 0..WARMUP_RUNS {
        let (_, body) = ask_once(client, ep, ask).await?;
        first.get_or_insert(body);
    }
    let mut runs = Vec::with_capacity(TIMED_RUNS);
    for _ in 0..TIMED_RUNS {
        runs.push(ask_once(client, ep, ask).await?.0);
    }
    runs.sort();
    let body = first.context("no warm-up run")?;
    let answer = read(ask.reader, &body, ask.shift_ms).context("reading the answer")?;
    Ok(Timed {
        api: ask.api,
        text: ask.text.clone(),
        median: runs[TIMED_RUNS / 2],
        rounds: vec![runs[TIMED_RUNS / 2]],
        differs: compare(&answer, truth),
    })
}

/// One request: the time from sending it until the last byte of the answer, and the answer.
async fn ask_once(
    client: &HttpClient,
    ep: Endpoint,
    ask: &Ask,
) -> anyhow::Result<(Duration, Bytes)> {
    let sent = Instant::now();
    let body = ep.get(client, ask.path, &ask.params).await?;
    Ok((sent.elapsed(), body))
}

/// Reads an answer of `reader`'s kind, times moved by `shift_ms`.
fn read(reader: Reader, body: &[u8], shift_ms: i64) -> anyhow::Result<Answer> {
    let mut answer = Answer::new();
    let mut add = |labels: &serde_json::Value, t: i64, v: f64| {
        let host = labels["host"].as_str().unwrap_or_default().to_owned();
        answer.entry(host).or_default().push((t + shift_ms, v));
    };
    match reader {
        // {"series":[{"tags":{...},"points":[[ns, v]...]}],"next":...}
        Reader::Native => {
            let json: serde_json::Value = serde_json::from_slice(body)?;
            if !json["next"].is_null() {
                bail!("the answer has more pages");
            }
            for series in json["series"].as_array().into_iter().flatten() {
                for point in series["points"].as_array().into_iter().flatten() {
                    let t = point[0].as_i64().context("time")? / 1_000_000;
                    add(&series["tags"], t, point[1].as_f64().context("value")?);
                }
            }
        }
        // {"data":{"result":[{"metric":{...},"values":[[s, "v"]...]}]}}
        Reader::Matrix => {
            let json: serde_json::Value = serde_json::from_slice(body)?;
            if json["status"] != "success" || json["data"]["resultType"] != "matrix" {
                bail!("not a matrix: {}", String::from_utf8_lossy(body));
            }
            for series in json["data"]["result"].as_array().into_iter().flatten() {
                for pair in series["values"].as_array().into_iter().flatten() {
                    let t = (pair[0].as_f64().context("time")? * 1000.0).round() as i64;
                    let v: f64 = pair[1].as_str().context("value")?.parse()?;
                    add(&series["metric"], t, v);
                }
            }
        }
        // A line per block: {"metric":{...},"values":[v...],"timestamps":[ms...]}
        Reader::Export => {
            for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let block: serde_json::Value = serde_json::from_slice(line)?;
                let values = block["values"].as_array().into_iter().flatten();
                let times = block["timestamps"].as_array().into_iter().flatten();
                for (v, t) in values.zip(times) {
                    add(
                        &block["metric"],
                        t.as_i64().context("time")?,
                        v.as_f64().context("value")?,
                    );
                }
            }
        }
        // {"results":[{"series":[{"tags":{...},"values":[[ms, v]...]}]}]}; a null value (an
        // empty bucket) reads as NaN, which differs from any value.
        Reader::InfluxQl => {
            let json: serde_json::Value = serde_json::from_slice(body)?;
            let result = &json["results"][0];
            if let Some(error) = result["error"].as_str() {
                bail!("{error}");
            }
            for series in result["series"].as_array().into_iter().flatten() {
                for row in series["values"].as_array().into_iter().flatten() {
                    let t = row[0].as_i64().context("time")?;
                    add(&series["tags"], t, row[1].as_f64().unwrap_or(f64::NAN));
                }
            }
        }
    }
    for points in answer.values_mut() {
        points.sort_by_key(|(t, _)| *t);
    }
    Ok(answer)
}

/// Where `answer` differs from `truth`, if it does: the series (by host), their points'
/// times and values. A single series is compared whatever its key: InfluxDB names no tags it
/// did not group by.
fn compare(answer: &Answer, truth: &Answer) -> Option<String> {
    if answer.len() != truth.len() {
        return Some(format!("{} series, expected {}", answer.len(), truth.len()));
    }
    let pairs: Vec<(&String, Option<&Points>, &Points)> = if answer.len() == 1 {
        answer
            .values()
            .zip(truth)
            .map(|(got, (key, want))| (key, Some(got), want))
            .collect()
    } else {
        truth
            .iter()
            .map(|(key, want)| (key, answer.get(key), want))
            .collect()
    };
    for (key, got, want) in pairs {
        let Some(got) = got else {
            return Some(format!("series {key:?} missing"));
        };
        if got.len() != want.len() {
            return Some(format!(
                "series {key:?}: {} points, expected {}",
                got.len(),
                want.len()
            ));
        }
        for ((gt, gv), (wt, wv)) in got.iter().zip(want) {
            if gt != wt {
                return Some(format!(
                    "series {key:?}: a point at {gt} ms, expected {wt} ms"
                ));
            }
            // False for NaN: it differs from anything.
            let close = (gv - wv).abs() <= TOLERANCE * gv.abs().max(wv.abs()).max(1.0);
            if !close {
                return Some(format!("series {key:?} at {wt} ms: {gv}, expected {wv}"));
            }
        }
    }
    None
}

// ---- report ----------------------------------------------------------------------------

/// Workload A on one server.
struct FleetRun {
    server: Server,
    stored: Stored,
    /// The data after the restart, the queries and a second clean stop.
    after_queries: Disk,
    /// Per question, the asks.
    answers: Vec<Vec<Timed>>,
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn per_value(bytes: u64, data: &Workload) -> f64 {
    bytes as f64 / data.values as f64
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// The `server` entry of `runs`.
fn of<T: Copy>(runs: &[(Server, T)], server: Server) -> Option<T> {
    runs.iter().find(|(s, _)| *s == server).map(|(_, r)| *r)
}

fn values_per_s(data: &Workload, ingest: &Ingest) -> f64 {
    data.values as f64 / ingest.took.as_secs_f64()
}

fn print_ingest(title: &str, data: &Workload, runs: &[(Server, &Stored)]) {
    println!();
    println!(
        "{title}, ingest: {} points ({} values), {} batches of up to {} lines ({} KB on \
         average), {WRITERS} writers, fresh server each.",
        thousands(data.points as f64),
        thousands(data.values as f64),
        thousands(data.batches.len() as f64),
        thousands(BATCH_LINES as f64),
        data.bytes() / data.batches.len().max(1) / 1000
    );
    println!(
        "    {:<16} {:>11} {:>11} {:>12} {:>12} {:>8} {:>9}",
        "server", "last 204", "queryable", "points/s", "values/s", "refused", "CPU"
    );
    for (server, stored) in runs {
        let ingest = &stored.ingest;
        println!(
            "    {:<16} {:>11} {:>11} {:>12} {:>12} {:>8} {:>9}",
            server.name(),
            format!("{:.1} s", ingest.acked_in.as_secs_f64()),
            format!("{:.1} s", ingest.took.as_secs_f64()),
            thousands(data.points as f64 / ingest.took.as_secs_f64()),
            thousands(values_per_s(data, ingest)),
            ingest.refused,
            cpu(ingest.cpu)
        );
    }
    let rate = |server| of(runs, server).map_or(0.0, |s| values_per_s(data, &s.ingest));
    println!(
        "    Sluice/InfluxDB {}, Sluice/VictoriaMetrics {} (rates until queryable; above 1 is \
         faster).",
        ratio(rate(Server::Sluice), rate(Server::InfluxDb)),
        ratio(rate(Server::Sluice), rate(Server::VictoriaMetrics))
    );
    println!(
        "    Times from the first write. queryable = every point durable and queryable: Sluice's \
         pipeline stored them all (its 204 = in its\n    log), InfluxDB's last 204 (WAL + \
         cache), VictoriaMetrics' PromQL API counts them all (asked every {} ms). refused = \
         writes\n    answered 429/503 and sent again. {CPU_LEGEND}.",
        COUNT_POLL.as_millis()
    );
}

fn print_storage(title: &str, data: &Workload, runs: &[(Server, &Stored)]) {
    println!();
    println!(
        "{title}, storage after a clean stop (bytes of the data directory's files / {} values \
         written; {} of line protocol):",
        thousands(data.values as f64),
        mb(data.bytes() as u64)
    );
    println!(
        "    {:<16} {:>12} {:>12} {:>18} {:>19}",
        "server", "apparent", "allocated", "B/value apparent", "B/value allocated"
    );
    for (server, stored) in runs {
        let total = stored.disk.total;
        println!(
            "    {:<16} {:>12} {:>12} {:>18.3} {:>19.3}",
            server.name(),
            mb(total.apparent),
            mb(total.allocated),
            per_value(total.apparent, data),
            per_value(total.allocated, data)
        );
    }
    let total = |server| of(runs, server).map_or(Usage::default(), |s| s.disk.total);
    let (sluice, influx, vm) = (
        total(Server::Sluice),
        total(Server::InfluxDb),
        total(Server::VictoriaMetrics),
    );
    let f = |u: u64| u as f64;
    println!(
        "    Sluice/InfluxDB: apparent {}, allocated {}. Sluice/VictoriaMetrics: apparent {}, \
         allocated {}. (Below 1 is smaller.)",
        ratio(f(sluice.apparent), f(influx.apparent)),
        ratio(f(sluice.allocated), f(influx.allocated)),
        ratio(f(sluice.apparent), f(vm.apparent)),
        ratio(f(sluice.allocated), f(vm.allocated))
    );
    println!(
        "    apparent = the files' sizes (ls -l), allocated = the blocks they take (du): files may \
         be sparse or preallocated\n    (InfluxDB's series file, fjall's journal). By part:"
    );
    for (server, stored) in runs {
        for (i, (part, u)) in stored.disk.parts.iter().enumerate() {
            println!(
                "      {:<16} {:<14} {:>12} {:>12} {:>18.3} {:>19.3}",
                if i == 0 { server.name() } else { "" },
                part,
                mb(u.apparent),
                mb(u.allocated),
                per_value(u.apparent, data),
                per_value(u.allocated, data)
            );
        }
    }
}

fn print_after_queries(data: &Workload, runs: &[FleetRun]) {
    let line: Vec<String> = runs
        .iter()
        .map(|r| {
            let total = r.after_queries.total;
            format!(
                "{} {:.3}/{:.3}",
                r.server.name(),
                per_value(total.apparent, data),
                per_value(total.allocated, data)
            )
        })
        .collect();
    println!(
        "    After the rounds of queries (restarts, queries, clean stops), B/value apparent/allocated: \
         {}.",
        line.join(", ")
    );
}

/// The fastest of a server's asks of a question that answered right (else of all).
fn best(timed: &[Timed]) -> Option<&Timed> {
    let right = timed.iter().filter(|t| t.differs.is_none());
    right
        .min_by_key(|t| t.median)
        .or_else(|| timed.iter().min_by_key(|t| t.median))
}

/// The best time of `server` for question `q`.
fn best_of(runs: &[FleetRun], server: Server, q: usize) -> Option<&Timed> {
    runs.iter()
        .find(|r| r.server == server)
        .and_then(|r| best(r.answers.get(q)?))
}

fn print_queries(fleet: &Fleet, runs: &[FleetRun]) {
    println!();
    println!(
        "(A) Queries, each server restarted on its data and alone, in {QUERY_ROUNDS} rounds \
         taking turns: the lowest of the rounds' medians of {TIMED_RUNS} runs after \
         {WARMUP_RUNS} warm-up (request sent to last byte);"
    );
    println!(
        "    series {} (group g{ONE_GROUP}), hour 13 for q1; Sluice: the faster of its native API \
         and PromQL; VictoriaMetrics with nocache=1.",
        host(ONE_SERIES)
    );
    println!(
        "    {:<40} {:>20} {:>11} {:>15} {:>9} {:>9}   Sluice native / PromQL",
        "question", "Sluice", "InfluxDB", "VictoriaMetrics", "S/Influx", "S/VM"
    );
    let secs = |t: Option<&Timed>| t.map_or(0.0, |t| t.median.as_secs_f64());
    for (q, question) in QUESTIONS.iter().enumerate() {
        let sluice = best_of(runs, Server::Sluice, q);
        let influx = best_of(runs, Server::InfluxDb, q);
        let vm = best_of(runs, Server::VictoriaMetrics, q);
        let both: Vec<String> = runs
            .iter()
            .find(|r| r.server == Server::Sluice)
            .and_then(|r| r.answers.get(q))
            .into_iter()
            .flatten()
            .map(|t| ms(t.median))
            .collect();
        let native = if both.len() == 1 { "- / " } else { "" };
        println!(
            "    {:<40} {:>20} {:>11} {:>15} {:>9} {:>9}   {native}{}",
            question.label(),
            sluice.map_or("-".into(), |t| format!("{} {}", ms(t.median), t.api)),
            influx.map_or("-".into(), |t| ms(t.median)),
            vm.map_or("-".into(), |t| ms(t.median)),
            ratio(secs(sluice), secs(influx)),
            ratio(secs(sluice), secs(vm)),
            both.join(" / ")
        );
    }
    println!(
        "    (Time ratios: below 1 is faster. Sluice's native API has no sums across series: q5 \
         is PromQL only.)"
    );
    println!(
        "    Asked as (parameters start, end, step, time left out; the data spans {}..{} s since \
         the epoch):",
        fleet.start,
        fleet.start + DAY_S
    );
    for (q, question) in QUESTIONS.iter().enumerate() {
        println!("      {}", question.label());
        for run in runs {
            for t in run.answers.get(q).into_iter().flatten() {
                println!("        {} {}: {}", run.server.name(), t.api, t.text);
            }
        }
    }
    println!("    Each round's median, in the order run:");
    for (q, question) in QUESTIONS.iter().enumerate() {
        let rounds: Vec<String> = runs
            .iter()
            .flat_map(|run| {
                run.answers.get(q).into_iter().flatten().map(|t| {
                    let each: Vec<String> = t.rounds.iter().map(|d| ms(*d)).collect();
                    format!("{} {}: {}", run.server.name(), t.api, each.join(", "))
                })
            })
            .collect();
        println!("      {:<40} {}", question.label(), rounds.join("; "));
    }
}

/// Prints the answers that differ from the data; returns how many.
fn print_checks(runs: &[FleetRun]) -> usize {
    println!();
    let mut wrong = 0;
    let mut checked = 0;
    for run in runs {
        for (q, timed) in run.answers.iter().enumerate() {
            for t in timed {
                checked += 1;
                if let Some(difference) = &t.differs {
                    wrong += 1;
                    println!(
                        "WARNING: {} ({}) answers {} wrong: {difference}",
                        run.server.name(),
                        t.api,
                        QUESTIONS[q].label()
                    );
                }
            }
        }
    }
    if wrong == 0 {
        println!(
            "Answers: all {checked} agree with the data written (same series, same points per \
             series, values within {TOLERANCE:e} relative)."
        );
    }
    wrong
}

fn pass(ok: bool) -> &'static str {
    if ok { "pass" } else { "MISS" }
}

fn print_targets(
    fleet_data: &Workload,
    telegraf_data: &Workload,
    fleet_runs: &[FleetRun],
    telegraf_runs: &[(Server, &Stored)],
) {
    let fleet_stored: Vec<_> = fleet_runs.iter().map(|r| (r.server, &r.stored)).collect();
    println!();
    println!("Issue 14 targets (this run):");
    for (name, data, runs) in [
        ("A", fleet_data, fleet_stored.as_slice()),
        ("B", telegraf_data, telegraf_runs),
    ] {
        let total = |server| of(runs, server).map_or(Usage::default(), |s| s.disk.total);
        let (sluice, vm) = (total(Server::Sluice), total(Server::VictoriaMetrics));
        let (apparent, allocated) = (
            (
                per_value(sluice.apparent, data),
                per_value(vm.apparent, data),
            ),
            (
                per_value(sluice.allocated, data),
                per_value(vm.allocated, data),
            ),
        );
        for (how, (ours, theirs)) in [("apparent", apparent), ("allocated", allocated)] {
            println!(
                "    {}  bytes per value <= VictoriaMetrics' on workload {name} ({how}): \
                 {ours:.3} vs {theirs:.3} ({}x)",
                pass(ours <= theirs),
                ratio(ours, theirs)
            );
        }
    }
    let slower: Vec<String> = (0..QUESTIONS.len())
        .filter_map(|q| {
            let sluice = best_of(fleet_runs, Server::Sluice, q)?.median;
            let vm = best_of(fleet_runs, Server::VictoriaMetrics, q)?.median;
            (sluice > vm).then(|| {
                format!(
                    "{} {}x",
                    &QUESTIONS[q].label()[..2],
                    ratio(sluice.as_secs_f64(), vm.as_secs_f64())
                )
            })
        })
        .collect();
    println!(
        "    {}  every query at or under VictoriaMetrics' time{}",
        pass(slower.is_empty()),
        if slower.is_empty() {
            String::new()
        } else {
            format!(": slower on {}", slower.join(", "))
        }
    );
    let rate =
        |server| of(&fleet_stored, server).map_or(0.0, |s| values_per_s(fleet_data, &s.ingest));
    let times = rate(Server::Sluice) / rate(Server::InfluxDb);
    println!(
        "    {}  bulk ingest (A) >= {INGEST_TARGET}x InfluxDB's: {}x (until queryable)",
        pass(times >= INGEST_TARGET),
        ratio(rate(Server::Sluice), rate(Server::InfluxDb))
    );
}
