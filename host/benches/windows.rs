//! The windowing engine: points/s through 1-minute tumbling windows over 100,000 active
//! series, with a plain accumulator (count, sum, min, max, mean) and with a p99 sketch; in
//! the same run, the same aggregation by a minimal native loop (a hash map of accumulators
//! keyed by series and window) as the ceiling; and heap bytes per open (series, window).
//!
//! Single-threaded: points/s is per core. Memory is the growth of resident memory (on the
//! service's allocator, mimalloc) while one window of every series opens.
//!
//! Run: `cargo bench --bench windows`

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use sluice::lineproto::{Precision, parse};
use sluice::point::{Nanos, Point};
use sluice::window::{
    Output, RollupConfig, RollupRule, TenantWindows, WindowConfig, WindowSettings,
};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Resident memory of this process, in bytes (`/proc/self/statm`).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

const SERIES: usize = 100_000;
/// Points per series: one every 10 s for 3 minutes.
const PER_SERIES: usize = 18;
const STEP: Nanos = 10_000_000_000;
const MINUTE: Nanos = 60_000_000_000;
/// Points recorded between two advances of the engine (as one fetch group's worth).
const GROUP: usize = 64;

/// Points in time order: every series once per step, as agents report.
fn points() -> Vec<Point> {
    let mut out = Vec::with_capacity(SERIES * PER_SERIES);
    let base: Nanos = 1_700_000_000 * 1_000_000_000 / MINUTE * MINUTE;
    for round in 0..PER_SERIES {
        let lines: String = (0..SERIES)
            .map(|s| {
                format!(
                    "cpu,host=host-{s},region=r{} usage={}.5 {}\n",
                    s % 8,
                    (s * 7 + round) % 100,
                    base + round as Nanos * STEP + s as Nanos
                )
            })
            .collect();
        out.extend(parse(&lines, Precision::Nanoseconds, 0).0);
    }
    out
}

fn rule(aggregates: &[&str]) -> RollupRule {
    RollupRule::build(&RollupConfig {
        name: "cpu-1m".into(),
        measurement: "cpu".into(),
        fields: "*".into(),
        tags: Default::default(),
        group_by: None,
        window: WindowConfig {
            tumbling: Some("1m".into()),
            ..WindowConfig::default()
        },
        aggregates: aggregates.iter().map(|a| (*a).to_owned()).collect(),
        grace: Some("0s".into()),
        early_every: None,
        tier: "1m".into(),
    })
    .expect("rule")
}

fn engine(aggregates: &[&str]) -> TenantWindows {
    TenantWindows::new(WindowSettings {
        rules: vec![rule(aggregates)].into(),
        disorder: 0,
        max_future: Nanos::MAX,
    })
}

/// Points/s through the engine, and the rows it emitted.
fn run_engine(points: &[Point], aggregates: &[&str]) -> (f64, usize) {
    let mut w = engine(aggregates);
    let mut rows = 0;
    let started = Instant::now();
    for group in points.chunks(GROUP) {
        let mut out = Output::default();
        for p in group {
            w.record(p, Nanos::MAX, &mut out);
        }
        w.advance(0, false, &mut out);
        rows += out.windows.len();
        black_box(&out);
    }
    (points.len() as f64 / started.elapsed().as_secs_f64(), rows)
}

#[derive(Default, Clone, Copy)]
struct NativeAcc {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

/// Points/s of the same aggregation by a minimal loop: key = series key and window start,
/// one hash map of accumulators, windows taken out as the time passes their end.
fn run_native(points: &[Point]) -> (f64, usize) {
    let mut open: HashMap<Vec<u8>, (Nanos, NativeAcc)> = HashMap::new();
    let mut key = Vec::new();
    let mut rows = 0;
    let mut newest = Nanos::MIN;
    let mut closed_through = Nanos::MIN;
    let started = Instant::now();
    for group in points.chunks(GROUP) {
        for p in group {
            key.clear();
            key.extend_from_slice(p.measurement.as_bytes());
            for t in &p.tags {
                key.push(b',');
                key.extend_from_slice(t.key.as_bytes());
                key.push(b'=');
                key.extend_from_slice(t.value.as_bytes());
            }
            let prefix = key.len();
            let window = p.timestamp - p.timestamp.rem_euclid(MINUTE);
            newest = newest.max(p.timestamp);
            for f in &p.fields {
                let Some(v) = f.value.as_f64() else { continue };
                key.truncate(prefix);
                key.push(b' ');
                key.extend_from_slice(f.key.as_bytes());
                key.extend_from_slice(&window.to_be_bytes());
                let acc = match open.get_mut(key.as_slice()) {
                    Some((_, acc)) => acc,
                    None => {
                        let entry = (
                            window,
                            NativeAcc {
                                min: v,
                                max: v,
                                ..NativeAcc::default()
                            },
                        );
                        &mut open.entry(key.clone()).or_insert(entry).1
                    }
                };
                acc.count += 1;
                acc.sum += v;
                acc.min = acc.min.min(v);
                acc.max = acc.max.max(v);
            }
        }
        // Close the windows time has passed, when it passed a window's end.
        let through = newest - newest.rem_euclid(MINUTE);
        if through > closed_through {
            closed_through = through;
            let before = open.len();
            open.retain(|_, (w, acc)| {
                let keep = *w + MINUTE > newest;
                if !keep {
                    black_box(acc.sum / acc.count as f64);
                }
                keep
            });
            rows += before - open.len();
        }
    }
    (points.len() as f64 / started.elapsed().as_secs_f64(), rows)
}

/// Engine state with one open window of every series, and the resident bytes it added
/// per open (series, window). Measured on fresh memory: call before the throughput runs,
/// and keep the state until every measurement is done (freed memory would be reused).
fn bytes_per_window(points: &[Point], aggregates: &[&str]) -> (TenantWindows, f64) {
    let before = rss();
    let mut w = engine(aggregates);
    let mut out = Output::default();
    for p in points.iter().take(SERIES) {
        w.record(p, Nanos::MAX, &mut out);
    }
    let bytes = rss().saturating_sub(before);
    assert_eq!(w.open_windows(), SERIES);
    (w, bytes as f64 / SERIES as f64)
}

fn main() {
    let points = points();
    println!(
        "{} points: {SERIES} series, one point each every 10 s for 3 minutes; 1-minute tumbling windows\n",
        points.len()
    );
    let plain = ["count", "sum", "min", "max", "mean"];
    let sketched = ["count", "sum", "min", "max", "mean", "p99"];
    let (kept_plain, plain_bytes) = bytes_per_window(&points, &plain);
    let (kept_sketch, sketch_bytes) = bytes_per_window(&points, &sketched);
    drop((kept_plain, kept_sketch));
    // Best of three rounds each, interleaved: the machine is shared.
    let (mut native, mut engine_plain, mut engine_sketch) = ((0.0, 0), (0.0, 0), (0.0, 0));
    for _ in 0..3 {
        let n = run_native(&points);
        let e = run_engine(&points, &plain);
        let s = run_engine(&points, &sketched);
        if n.0 > native.0 {
            native = n;
        }
        if e.0 > engine_plain.0 {
            engine_plain = e;
        }
        if s.0 > engine_sketch.0 {
            engine_sketch = s;
        }
    }
    let m = |rate: f64| rate / 1e6;
    println!("| run | points/s (M) | vs native | windows closed |");
    println!("|---|---:|---:|---:|");
    println!(
        "| native loop (hash map of accumulators) | {:.2} | 1.00 | {} |",
        m(native.0),
        native.1
    );
    println!(
        "| engine, count/sum/min/max/mean | {:.2} | {:.2} | {} |",
        m(engine_plain.0),
        engine_plain.0 / native.0,
        engine_plain.1
    );
    println!(
        "| engine, + p99 sketch | {:.2} | {:.2} | {} |",
        m(engine_sketch.0),
        engine_sketch.0 / native.0,
        engine_sketch.1
    );
    println!();
    println!(
        "resident bytes per open (series, window): {plain_bytes:.0} without a sketch, {sketch_bytes:.0} with a p99 sketch"
    );
}
