//! ScyllaDB store benchmark (issue 10, item 6): points/s written through the `Store` seam
//! to the ScyllaDB nodes `SCYLLA_NODES` names (`host:9042,...`), next to the embedded
//! store on the same input in the same run. Without `SCYLLA_NODES` it says it skipped.
//!
//! Input: 200,000 points of 1,000 series (a float field, two tags), one point a second
//! per series, written 5,000 at a time with a 30-day retention (so rows carry a TTL) and
//! synced after each write, as the pipeline's checkpoints do. The keyspace
//! `sluice_bench` is created on first use (replication factor 1).
//!
//! Run: `SCYLLA_NODES=127.0.0.1:9042 cargo bench --bench scylla`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use sluice::columns::Points;
use sluice::config::ScyllaConfig;
use sluice::point::{Field, FieldValue, Point, Tag};
use sluice::store::{Batch, EmbeddedStore, Retention, ScyllaStore, Store, Through};
use sluice::tenant::TenantId;

const POINTS: usize = 200_000;
const SERIES: usize = 1_000;
const BATCH: usize = 5_000;

fn main() -> ExitCode {
    let Some(nodes) = std::env::var("SCYLLA_NODES").ok().filter(|n| !n.is_empty()) else {
        println!("scylla bench: SKIPPED (set SCYLLA_NODES=host:9042 to measure a ScyllaDB node)");
        return ExitCode::SUCCESS;
    };
    let mut config = ScyllaConfig::new(nodes.split(',').map(str::to_owned).collect());
    config.keyspace = "sluice_bench".into();
    config.replication_factor = 1;
    let scylla = match ScyllaStore::connect(&config) {
        Ok(store) => store,
        Err(error) => {
            eprintln!("scylla bench: SCYLLA_NODES={nodes}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let embedded = EmbeddedStore::open(dir.path()).expect("embedded store");
    let batches = input();
    let scylla_rate = measure(&scylla, &batches);
    let embedded_rate = measure(&embedded, &batches);
    println!("scylla bench: {POINTS} points of {SERIES} series, {BATCH} a write, each synced");
    println!("  ScyllaDB ({nodes}): {scylla_rate:>12.0} points/s");
    println!("  embedded store:     {embedded_rate:>12.0} points/s");
    println!(
        "  ratio ScyllaDB / embedded: {:.2}",
        scylla_rate / embedded_rate
    );
    ExitCode::SUCCESS
}

/// The input: writes of `BATCH` points, recent (within the retention).
fn input() -> Vec<Points> {
    let now = sluice::time::now_ns();
    let start = now - (POINTS / SERIES) as i64 * 1_000_000_000;
    let points: Vec<Point> = (0..POINTS)
        .map(|i| Point {
            measurement: "cpu".into(),
            tags: vec![
                Tag {
                    key: "host".into(),
                    value: format!("h{}", i % SERIES).into(),
                },
                Tag {
                    key: "region".into(),
                    value: format!("r{}", i % 7).into(),
                },
            ],
            fields: vec![Field {
                key: "usage".into(),
                value: FieldValue::Float(i as f64),
            }],
            timestamp: start + (i / SERIES) as i64 * 1_000_000_000,
        })
        .collect();
    points
        .chunks(BATCH)
        .map(|chunk| chunk.to_vec().into())
        .collect()
}

/// Points/s writing `batches` to `store`, a sync after each.
fn measure(store: &dyn Store, batches: &[Points]) -> f64 {
    let tenant = TenantId::new("bench");
    let retention = Retention::For(Duration::from_secs(30 * 86_400));
    let started = Instant::now();
    for (i, points) in batches.iter().enumerate() {
        let batch = Batch {
            tenant: &tenant,
            retention,
            points,
        };
        let through = Through::partition(0, i as u64 + 1);
        let refused = store.write(&[batch], through).expect("write");
        assert!(refused.is_empty(), "{refused:?}");
        store.sync().expect("sync");
    }
    POINTS as f64 / started.elapsed().as_secs_f64()
}
