//! Kafka transport benchmark (issue 9, item 7): end-to-end points/s through Sluice on a
//! Kafka broker, next to the transport's own ceiling, in one run on one broker.
//!
//! - Ceiling: raw rdkafka. The same record bytes Sluice would produce for the input
//!   (encoded beforehand, outside the clock) are produced to a topic with Sluice's
//!   producer settings (idempotent, `acks=all`), while a consumer group member reads them
//!   back; the clock stops when the last one is read.
//! - Sluice: the same input as line protocol, 5,000 lines a request from two concurrent
//!   writers, through ingest (parse, validate, produce, wait for the brokers), the
//!   consumer group and the pipeline into the embedded store; the clock stops when the
//!   store holds every point (`sluice_points_stored_total`).
//!
//! The broker is `tansu` with sqlite storage (scripts/kafka-dev.sh installs it; set
//! `SLUICE_TANSU` to use another binary). Run: `cargo bench --bench kafka`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use sluice::config::Config;
use sluice::tenant::TenantId;

// The tests' broker helper; the bench uses part of it.
#[allow(dead_code)]
#[path = "../tests/all/tansu.rs"]
mod tansu;

use tansu::Broker;

/// The binary's allocator, so the in-process service runs as `sluice run` does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCHES: u64 = 120;
const BATCH_LINES: u64 = 5_000;
const SERIES: u64 = 1_000;
const PARTITIONS: u32 = 4;
const WRITERS: u64 = 8;
const TENANT: &str = "bench";
const TOKEN: &str = "bench-token-0001";
/// The admin token of the in-process Sluice: its metrics name tenants only there.
const ADMIN_TOKEN: &str = "bench-admin-token-0001";
const LIMIT: Duration = Duration::from_secs(300);
const ROUNDS: usize = 5;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kafka bench failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let broker = Broker::start();
    let batches: Vec<String> = (0..BATCHES).map(batch).collect();
    let points = BATCHES * BATCH_LINES;
    let rate = |d: Duration| points as f64 / d.as_secs_f64();
    println!(
        "Kafka transport, {points} points ({BATCHES} batches of {BATCH_LINES} lines, {SERIES} series, {PARTITIONS} partitions, {WRITERS} HTTP writers), tansu with sqlite; {ROUNDS} rounds, alternating:"
    );
    // Alternating rounds on one broker: the machine's noise falls on both alike.
    let (mut raw, mut through) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let cpu = Cpu::now(&broker);
        raw.push(raw_ceiling(&broker.address(), &batches, round)?);
        let raw_cpu = cpu.since(&broker);
        let cpu = Cpu::now(&broker);
        through.push(through_sluice(&broker.address(), &batches, round)?);
        let sluice_cpu = cpu.since(&broker);
        println!(
            "  round {round}: raw {:>9.0} points/s (CPU s: broker {:.2}, clients {:.2}), Sluice {:>9.0} points/s (CPU s: broker {:.2}, Sluice and its client {:.2})",
            rate(raw[round]),
            raw_cpu.0,
            raw_cpu.1,
            rate(through[round]),
            sluice_cpu.0,
            sluice_cpu.1,
        );
    }
    let (raw, through) = (median(raw), median(through));
    println!(
        "  median: raw rdkafka produce + consume of the same record bytes {:>9.0} points/s",
        rate(raw)
    );
    println!(
        "  median: Sluice end to end (HTTP -> Kafka -> pipeline -> store) {:>9.0} points/s",
        rate(through)
    );
    println!(
        "  Sluice / ceiling: {:.0} %",
        100.0 * raw.as_secs_f64() / through.as_secs_f64()
    );
    Ok(())
}

/// CPU seconds used so far by the broker and by this process (user + system).
struct Cpu(f64, f64);

impl Cpu {
    fn now(broker: &Broker) -> Self {
        let pid = broker.pid().map_or_else(String::new, |p| p.to_string());
        Self(cpu_seconds(&pid), cpu_seconds("self"))
    }

    /// CPU seconds used since `self`: (broker, this process).
    fn since(&self, broker: &Broker) -> (f64, f64) {
        let now = Self::now(broker);
        (now.0 - self.0, now.1 - self.1)
    }
}

/// User + system CPU seconds of process `pid` (`/proc/PID/stat`, at 100 ticks a second).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) are space-separated; utime
    // and stime are the 14th and 15th of the line.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    fields.iter().sum::<f64>() / 100.0
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Batch `b` of the input: line protocol of the ingest bench's bulk workload.
fn batch(b: u64) -> String {
    let base = 1_700_000_000_000_000_000_i64;
    let mut out = String::with_capacity(BATCH_LINES as usize * 72);
    for k in b * BATCH_LINES..(b + 1) * BATCH_LINES {
        writeln!(
            out,
            "cpu,host=host-{} usage_user={}.{},usage_system={}.{} {}",
            k % SERIES,
            k % 97,
            k % 10,
            k / 7 % 89,
            k % 3,
            base + k as i64
        )
        .expect("writing to a String cannot fail");
    }
    out
}

/// Produces the records of `batches` (as Sluice encodes them) and reads them back: how
/// long until the last is read.
fn raw_ceiling(brokers: &str, batches: &[String], round: usize) -> anyhow::Result<Duration> {
    let tenant = TenantId::new(TENANT);
    let mut messages = Vec::new();
    for text in batches {
        let (points, errors) =
            sluice::lineproto::parse(text, sluice::lineproto::Precision::Nanoseconds, 0);
        if !errors.is_empty() {
            bail!("the input does not parse: {errors:?}");
        }
        for (p, mut record) in sluice::transport::records_for(&tenant, points, PARTITIONS) {
            messages.push((p, sluice::format::encode_record(&mut record)));
        }
    }
    let topic = &format!("raw{round}.points");
    create_topic(brokers, topic)?;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("raw{round}"))
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "20")
        .create()?;
    consumer.subscribe(&[topic])?;
    // Joined before the clock starts, as Sluice's member is.
    let joined = Instant::now();
    while consumer.assignment()?.count() < PARTITIONS as usize {
        consumer.poll(Duration::from_millis(100));
        if joined.elapsed() > LIMIT {
            bail!("the raw consumer was never assigned the partitions");
        }
    }
    let started = Instant::now();
    let total = messages.len();
    let reader = std::thread::spawn(move || {
        let mut read = 0;
        while read < total && started.elapsed() < LIMIT {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                read += usize::from(m.payload().is_some());
            }
        }
        (read, started.elapsed())
    });
    for (p, payload) in &messages {
        let mut record = BaseRecord::to(topic)
            .partition(i32::try_from(*p)?)
            .key(TENANT)
            .payload(payload);
        // Queue full: wait for deliveries, as an append waits for its own.
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(LIMIT)?;
    let (read, elapsed) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))?;
    if read < total {
        bail!("read {read} of {total} messages");
    }
    Ok(elapsed)
}

fn create_topic(brokers: &str, topic: &str) -> anyhow::Result<()> {
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let topics = [rdkafka::admin::NewTopic::new(
        topic,
        i32::try_from(PARTITIONS)?,
        rdkafka::admin::TopicReplication::Fixed(1),
    )];
    for result in rt.block_on(admin.create_topics(&topics, &rdkafka::admin::AdminOptions::new()))? {
        result.map_err(|(name, code)| anyhow::anyhow!("creating {name}: {code}"))?;
    }
    Ok(())
}

/// Writes `batches` to an in-process Sluice on Kafka: how long until its store holds
/// every point.
fn through_sluice(brokers: &str, batches: &[String], round: usize) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    let text = format!(
        r#"
listen = "127.0.0.1:0"
data_dir = {data}

[admin]
listen = "127.0.0.1:0"
[[admin.tokens]]
name = "bench"
token = "{ADMIN_TOKEN}"

[ingest]
max_lag_records = 100000

[transport]
kind = "kafka"
brokers = "{brokers}"
topic_prefix = "e2e{round}."
partitions = {PARTITIONS}
group = "e2e{round}"

[plugins]
dir = {plugins}

[[tenants]]
name = "{TENANT}"
tokens = ["{TOKEN}"]
retention_days = 36500
"#,
        data = toml_string(&dir.path().join("data")),
        plugins = toml_string(&dir.path().join("plugins")),
    );
    let config = Config::parse(&text, Path::new("kafka-bench.toml"))?;
    let rt = tokio::runtime::Runtime::new()?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let service = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(sluice::service::run(config, Some(ready_tx), async {
            let _ = stop_rx.await;
        }))
    });
    let bound = rt
        .block_on(async { tokio::time::timeout(LIMIT, ready_rx).await })
        .context("the service did not start")?
        .context("the service stopped before serving")?;
    let (addr, admin) = (bound.api, bound.admin);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let points = BATCHES * BATCH_LINES;
    let elapsed = rt.block_on(async {
        let started = Instant::now();
        let next = Arc::new(AtomicU64::new(0));
        let batches = Arc::new(batches.to_vec());
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (client, next, batches) = (client.clone(), next.clone(), batches.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(body) = batches.get(i as usize) else {
                            return Ok::<_, anyhow::Error>(());
                        };
                        let uri = format!("http://{addr}/api/v2/write?bucket=b&precision=ns");
                        loop {
                            let (status, answer) =
                                request(&client, "POST", &uri, TOKEN, body.clone()).await?;
                            match status {
                                204 => break,
                                503 => tokio::time::sleep(Duration::from_millis(50)).await,
                                other => bail!("write answered {other}: {answer}"),
                            }
                        }
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await??;
        }
        let uri = format!("http://{admin}/admin/v1/metrics");
        let label = format!("sluice_points_stored_total{{tenant=\"{TENANT}\"}} ");
        loop {
            let (_, metrics) = request(&client, "GET", &uri, ADMIN_TOKEN, String::new()).await?;
            let stored: u64 = metrics
                .lines()
                .find_map(|l| l.strip_prefix(&label)?.parse().ok())
                .unwrap_or(0);
            if stored >= points {
                return Ok::<_, anyhow::Error>(started.elapsed());
            }
            if started.elapsed() > LIMIT {
                bail!("{stored} of {points} points stored");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })?;
    let _ = stop_tx.send(());
    service
        .join()
        .map_err(|_| anyhow::anyhow!("the service panicked"))??;
    Ok(elapsed)
}

async fn request(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    method: &str,
    uri: &str,
    token: &str,
    body: String,
) -> anyhow::Result<(u16, String)> {
    let request = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .header("Authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from(body)))?;
    let response = client.request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn toml_string(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}
