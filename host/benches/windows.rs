//! The windowing engine: points/s through 1-minute tumbling windows over 100,000 active
//! series, with a plain accumulator (count, sum, min, max, mean) and with p99; in the same
//! run, the same aggregation by a minimal native loop (a hash map of accumulators keyed by
//! series and window, with a DDSketch for p99) as the ceiling; the same with 10,000 series
//! at 60 values a window (quantiles from the sketch); and resident bytes per open (series,
//! window).
//!
//! Single-threaded: points/s is per core. Memory is the growth of resident memory (on the
//! service's allocator, mimalloc) while one window of every series opens.
//!
//! Run: `cargo bench --bench windows`

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use sketches_ddsketch::{Config as SketchConfig, DDSketch};
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

/// `rounds` points of each of `series` series, `step` apart, in time order (every series
/// once per round, as agents report).
fn points(series: usize, rounds: usize, step: Nanos) -> Vec<Point> {
    let mut out = Vec::with_capacity(series * rounds);
    let base: Nanos = 1_700_000_000 * 1_000_000_000 / MINUTE * MINUTE;
    for round in 0..rounds {
        let lines: String = (0..series)
            .map(|s| {
                format!(
                    "cpu,host=host-{s},region=r{} usage={}.5 {}\n",
                    s % 8,
                    (s * 7 + round) % 100,
                    base + round as Nanos * step + s as Nanos
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

#[derive(Default, Clone)]
struct NativeAcc {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    /// A DDSketch of 1 % relative error from the first value, when p99 is wanted.
    sketch: Option<Box<DDSketch>>,
}

/// Points/s of the same aggregation by a minimal loop: key = series key and window start,
/// one hash map of accumulators (each with a DDSketch with `p99`), windows taken out as
/// the time passes their end.
fn run_native(points: &[Point], p99: bool) -> (f64, usize) {
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
                                sketch: p99.then(|| {
                                    Box::new(DDSketch::new(SketchConfig::new(0.01, 2048, 1e-9)))
                                }),
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
                if let Some(sketch) = &mut acc.sketch {
                    sketch.add(v);
                }
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
                    black_box(acc.sketch.as_ref().map(|s| s.quantile(0.99)));
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
    // One point per series: the first round.
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

/// A run over points: points/s, and windows closed.
type Run<'a> = (&'a str, &'a dyn Fn(&[Point]) -> (f64, usize));

/// Best of three interleaved rounds (the machine is shared) of each run over `points`.
fn rates(points: &[Point], runs: &[Run<'_>]) {
    let mut best = vec![(0.0, 0); runs.len()];
    for _ in 0..3 {
        for (i, (_, run)) in runs.iter().enumerate() {
            let r = run(points);
            if r.0 > best[i].0 {
                best[i] = r;
            }
        }
    }
    println!("| run | points/s (M) | vs native | windows closed |");
    println!("|---|---:|---:|---:|");
    for ((name, _), (rate, rows)) in runs.iter().zip(&best) {
        println!(
            "| {name} | {:.2} | {:.2} | {rows} |",
            rate / 1e6,
            rate / best[0].0
        );
    }
    println!();
}

fn main() {
    let plain = ["count", "sum", "min", "max", "mean"];
    let sketched = ["count", "sum", "min", "max", "mean", "p99"];
    let few = points(SERIES, PER_SERIES, STEP);
    // Memory first, on fresh memory.
    let (kept_plain, plain_bytes) = bytes_per_window(&few, &plain);
    let (kept_sketch, sketch_bytes) = bytes_per_window(&few, &sketched);
    // What a partition's state save costs (every 5 s while windows change).
    let started = Instant::now();
    let saved = kept_plain.export().expect("export");
    let export = started.elapsed();
    drop((kept_plain, kept_sketch));
    println!(
        "{} points: {SERIES} series, one point each every 10 s for 3 minutes; 1-minute tumbling windows (6 values each: quantiles exact)\n",
        few.len()
    );
    rates(
        &few,
        &[
            ("native loop (hash map of accumulators)", &|p| {
                run_native(p, false)
            }),
            ("engine, count/sum/min/max/mean", &|p| run_engine(p, &plain)),
        ],
    );
    rates(
        &few,
        &[
            ("native loop, + DDSketch p99", &|p| run_native(p, true)),
            ("engine, + p99", &|p| run_engine(p, &sketched)),
        ],
    );
    drop(few);
    let many = points(SERIES / 10, PER_SERIES * 10, STEP / 10);
    println!(
        "{} points: {} series, one point each every second for 3 minutes (60 values a window: quantiles from the DDSketch)\n",
        many.len(),
        SERIES / 10
    );
    rates(
        &many,
        &[
            ("native loop (hash map of accumulators)", &|p| {
                run_native(p, false)
            }),
            ("engine, count/sum/min/max/mean", &|p| run_engine(p, &plain)),
        ],
    );
    rates(
        &many,
        &[
            ("native loop, + DDSketch p99", &|p| run_native(p, true)),
            ("engine, + p99 sketch", &|p| run_engine(p, &sketched)),
        ],
    );
    println!(
        "resident bytes per open (series, window), 100,000 series: {plain_bytes:.0} without a quantile, {sketch_bytes:.0} with p99 (one value each)"
    );
    println!(
        "saving the state of 100,000 open windows: {:.1} ms, {} bytes",
        export.as_secs_f64() * 1e3,
        saved.len()
    );
}
