//! Tenant fairness benchmark (issue 11, item 8): tenant B's writes while tenant A floods
//! through a slow stage, against B alone, in one run on the real binary.
//!
//! - B alone: a fresh service; B writes one point a request, one request every 20 ms,
//!   300 requests.
//! - B beside A: a fresh service with the same config; A's two writers send 500-point
//!   requests as fast as they are taken, through A's `chaos` stage in `slow` mode (20 ms a
//!   batch); after 2 s, B writes as above.
//!
//! Reported for B: the p50 and p99 of acknowledged writes' latency, how many were refused
//! (503 for the pipeline's lag), and how long after its last write all its acknowledged
//! points were queryable (A's slow batches share B's partition threads). Target (issue
//! 11): p99 beside A at most 2x alone, and none refused.
//!
//! Needs the example plugins (`scripts/build-plugins.sh`). Run: `cargo bench --bench
//! fairness`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

// The tests' service helper and plugin paths; the bench uses part of them.
#[allow(dead_code)]
#[path = "../tests/all/common.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/all/service_util.rs"]
mod service_util;

use service_util::{Service, try_request};

const BODY: &str = r#"
[[tenants]]
name = "acme"
tokens = ["acme-token-1"]
retention_days = 36500
[[tenants.stages]]
name = "slow"
plugin = "chaos"
params = { mode = "slow", ms = "20" }

[[tenants]]
name = "globex"
tokens = ["globex-token-1"]
retention_days = 36500
"#;

const B_WRITES: usize = 300;
const B_EVERY: Duration = Duration::from_millis(20);
const A_WRITERS: usize = 2;
const A_LINES: usize = 500;
/// Longest wait for B's points to be queryable.
const VISIBLE_WAIT: Duration = Duration::from_secs(120);

/// B's writes: latencies of the acknowledged ones, how many were refused, and how long
/// after the last write all acknowledged points were queryable.
struct Outcome {
    acked: Vec<Duration>,
    refused: usize,
    visible_after: Option<Duration>,
}

impl Outcome {
    fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.acked.clone();
        sorted.sort_unstable();
        let i = ((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1);
        sorted.get(i).copied().unwrap_or_default()
    }
}

fn write(svc: &Service, tok: &str, body: String) -> u16 {
    let auth = format!("Token {tok}");
    try_request(
        "POST",
        &svc.url("/api/v2/write"),
        &[("Authorization", &auth)],
        body.into_bytes(),
    )
    .map_or(0, |(status, _)| status)
}

/// B's writes on `svc`.
fn b_writes(svc: &Service) -> Outcome {
    let mut out = Outcome {
        acked: Vec::new(),
        refused: 0,
        visible_after: None,
    };
    let start = Instant::now();
    for i in 0..B_WRITES {
        let due = start + B_EVERY * u32::try_from(i).unwrap_or(u32::MAX);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let sent = Instant::now();
        let status = write(svc, "globex-token-1", format!("b,host=x v={i} {}\n", i + 1));
        if status == 204 {
            out.acked.push(sent.elapsed());
        } else {
            out.refused += 1;
        }
    }
    let written = Instant::now();
    while written.elapsed() < VISIBLE_WAIT {
        if stored(svc) >= out.acked.len() {
            out.visible_after = Some(written.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    out
}

/// How many of B's points a query returns.
fn stored(svc: &Service) -> usize {
    let url = svc.url("/api/v1/query?measurement=b&field=v&start=0&end=1000000");
    let answer = try_request(
        "GET",
        &url,
        &[("Authorization", "Token globex-token-1")],
        Vec::new(),
    )
    .ok()
    .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
    .unwrap_or_default();
    answer["series"][0]["points"].as_array().map_or(0, Vec::len)
}

fn report(name: &str, o: &Outcome) {
    let visible = o.visible_after.map_or_else(
        || format!("not within {VISIBLE_WAIT:?}"),
        |d| format!("{:.2} s", d.as_secs_f64()),
    );
    println!(
        "  {name:<12} ack p50 {:>6.1} ms  p99 {:>6.1} ms  refused {:>3}/{B_WRITES}  all queryable {visible} after the last write",
        o.quantile(0.5).as_secs_f64() * 1e3,
        o.quantile(0.99).as_secs_f64() * 1e3,
        o.refused
    );
}

fn main() {
    println!("fairness bench: tenant B's writes, alone and while A floods a slow stage");
    let alone = {
        let svc = Service::start(BODY, &["chaos"]);
        b_writes(&svc)
    };
    let svc = Service::start(BODY, &["chaos"]);
    let stop = Arc::new(AtomicBool::new(false));
    let a_acked = Arc::new(AtomicU64::new(0));
    let a_refused = Arc::new(AtomicU64::new(0));
    std::thread::scope(|scope| {
        for w in 0..A_WRITERS {
            let (stop, acked, refused, svc) = (&stop, &a_acked, &a_refused, &svc);
            scope.spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let body: String = (0..A_LINES)
                        .map(|i| format!("a,host=h{i},w={w} v={n} {}\n", n + 1))
                        .collect();
                    n += 1;
                    match write(svc, "acme-token-1", body) {
                        204 => acked.fetch_add(1, Ordering::Relaxed),
                        _ => refused.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
        std::thread::sleep(Duration::from_secs(2));
        // A keeps flooding while B's points are waited for.
        let beside = b_writes(&svc);
        stop.store(true, Ordering::Relaxed);
        report("B alone", &alone);
        report("B beside A", &beside);
        println!(
            "  A: {} requests acknowledged, {} refused (its own backlog)",
            a_acked.load(Ordering::Relaxed),
            a_refused.load(Ordering::Relaxed)
        );
        let ratio = beside.quantile(0.99).as_secs_f64() / alone.quantile(0.99).as_secs_f64();
        println!(
            "  B's p99 beside A / alone: {ratio:.2} (target <= 2), B refused beside A: {} (target 0)",
            beside.refused
        );
    });
}
