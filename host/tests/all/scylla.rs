//! The ScyllaDB store against the in-memory CQL server `kassandra`: connecting, schema
//! creation, prepared inserts and batches (smoke tests), and a node outage under a running
//! service. Ranges, ordering and TTL need a real node: the conformance suite covers them
//! where `SCYLLA_NODES` is set (`cargo test conformance`).

use std::time::Duration;

use sluice::aggregate::Function;
use sluice::config::ScyllaConfig;
use sluice::ingest::remote_write::prompb::TimeSeries;
use sluice::lineproto::{Precision, parse};
use sluice::point::FieldType;
use sluice::store::{
    Batch, PointError, Retention, Rollup, ScyllaStore, SeriesKey, Store, StoreError, Through, Tier,
};
use sluice::tenant::TenantId;

use crate::kassandra::Kassandra;
use crate::prometheus::{body, remote_write};
use crate::service_util::{Service, TENANTS, eventually, try_request, write_v2};

const KEYSPACE: &str = "sluice";

fn config(server: &Kassandra) -> ScyllaConfig {
    let mut config = ScyllaConfig::new(vec![server.node()]);
    config.replication_factor = 1;
    // kassandra's system tables can't tell schema versions.
    config.schema_agreement_timeout_ms = 0;
    config.request_timeout_ms = 2_000;
    config
}

fn points(lp: &str) -> Vec<sluice::point::Point> {
    let (points, errors) = parse(lp, Precision::Nanoseconds, 0);
    assert!(errors.is_empty(), "{errors:?}");
    points
}

fn at(next: u64) -> Through {
    Through::partition(1, next)
}

#[test]
fn the_scylla_store_creates_its_schema_once_and_writes_prepared_batches() {
    let server = Kassandra::start();
    let store = ScyllaStore::connect(&config(&server)).expect("connect and create the schema");
    drop(store);
    // Idempotent: the keyspace, tables and settings are there already.
    let store = ScyllaStore::connect(&config(&server)).expect("connect again");

    let (a, b) = (TenantId::new("a"), TenantId::new("b"));
    // 150 points of one series (three batches of one partition) and two of others.
    let mut lp: String = (1..=150)
        .map(|i| format!("cpu,host=x usage={i} {i}\n"))
        .collect();
    lp.push_str("cpu,host=y usage=1 1\nmem,host=x free=5i 1\n");
    let (pa, pb) = (points(&lp).into(), points("cpu,host=x usage=1 1\n").into());
    let kept = Retention::For(Duration::from_secs(86_400 * 365 * 100));
    let batches = [
        Batch {
            tenant: &a,
            retention: Retention::Forever,
            points: &pa,
        },
        Batch {
            tenant: &b,
            retention: kept,
            points: &pb,
        },
    ];
    let refused = store.write(&batches, at(7)).expect("write");
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(server.rows(KEYSPACE, "samples"), 153);
    store.write(&batches, at(7)).expect("the same points again");
    assert_eq!(
        server.rows(KEYSPACE, "samples"),
        153,
        "a rewrite stores nothing twice"
    );
    assert_eq!(server.rows(KEYSPACE, "series"), 4, "a:x, a:y, a:mem, b:x");
    assert_eq!(
        server.rows(KEYSPACE, "measurements"),
        3,
        "a:cpu, a:mem, b:cpu"
    );
    assert_eq!(server.rows(KEYSPACE, "series_by_tag"), 4);

    assert_eq!(store.sync().expect("sync"), [at(7)]);
    let again = ScyllaStore::connect(&config(&server)).expect("a second process");
    assert_eq!(again.checkpointed().expect("checkpointed"), [at(7)]);
    // The series' type is read from the index by a process that didn't write it.
    let float = points("cpu,host=x usage=1 1\n");
    assert_eq!(
        again.field_type(&a, &float[0], "usage").expect("type"),
        Some(FieldType::Float)
    );
    let conflict = points("cpu,host=x usage=7i 2\ncpu,host=z usage=2 2\n").into();
    let refused = again
        .write(
            &[Batch {
                tenant: &a,
                retention: Retention::Forever,
                points: &conflict,
            }],
            at(8),
        )
        .expect("write");
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        matches!(&refused[0].reason, PointError::TypeConflict { field, stored: FieldType::Float, got: FieldType::Integer } if field == "usage"),
        "{refused:?}"
    );
    assert_eq!(
        server.rows(KEYSPACE, "samples"),
        154,
        "the rest of the write is stored"
    );
}

#[test]
fn the_scylla_store_refuses_other_bucket_spans_than_its_keyspace_has_and_says_when_no_node_answers()
{
    let server = Kassandra::start();
    ScyllaStore::connect(&config(&server)).expect("create");
    let mut other = config(&server);
    other.raw_bucket = "2d".into();
    let error = ScyllaStore::connect(&other).err().expect("refused");
    assert!(
        matches!(&error, StoreError::Refused { reason, .. } if reason.contains("raw_bucket")),
        "{error}"
    );
    assert!(!error.is_retryable());

    // A tier's span is pinned at its first use.
    let tier = |name| Tier {
        name,
        retention: Retention::Forever,
    };
    let window = Rollup {
        series: SeriesKey {
            measurement: "cpu".into(),
            field: "usage".into(),
            tags: vec![],
        },
        start: 0,
        end: 60_000_000_000,
        values: vec![(Function::Mean, 1.0)],
    };
    let store = ScyllaStore::connect(&config(&server)).expect("defaults");
    let a = TenantId::new("a");
    store
        .write_rollups(&a, tier("1m"), std::slice::from_ref(&window), &[])
        .expect("the 1m tier, at the default span");
    let mut own = config(&server);
    own.tier_buckets.insert("1m".into(), "7d".into());
    own.tier_buckets.insert("1h".into(), "1y".into());
    let store = ScyllaStore::connect(&own).expect("tiers' spans are checked at their use");
    store
        .write_rollups(&a, tier("1h"), std::slice::from_ref(&window), &[])
        .expect("a new tier takes its own span");
    let error = store
        .write_rollups(&a, tier("1m"), &[window], &[])
        .expect_err("the 1m tier is laid out by the default span");
    assert!(
        matches!(&error, StoreError::Refused { reason, .. } if reason.contains("tier_bucket:1m")),
        "{error}"
    );

    server.stop();
    let mut quick = config(&server);
    quick.connect_timeout_ms = 500;
    let error = ScyllaStore::connect(&quick).err().expect("nothing listens");
    assert!(matches!(error, StoreError::Unreachable { .. }), "{error}");
    assert!(error.is_retryable(), "{error}");
}

/// A service storing in `server`, with a small lag limit so an outage fills it quickly.
fn service_on(server: &Kassandra) -> Service {
    let body = format!(
        "[ingest]\nmax_lag_records = 5\n\n[store]\nkind = \"scylla\"\nnodes = [\"{}\"]\nreplication_factor = 1\nschema_agreement_timeout_ms = 0\nrequest_timeout_ms = 1000\nconnect_timeout_ms = 500\n{TENANTS}",
        server.node()
    );
    Service::start(&body, &[])
}

/// Writes point `i` (its own series and time) for acme; the status.
fn write(svc: &Service, i: i64) -> (u16, String) {
    let line = format!("m,host=h{} v={i} {i}\n", i % 3);
    write_v2(svc, "acme-token-1", "s", &line)
}

/// Writes points 1..=10 (each retried while the small lag limit pushes back), and waits
/// for `server` to hold them.
fn store_ten(svc: &Service, server: &Kassandra) {
    for i in 1..=10 {
        assert!(
            eventually(Duration::from_secs(10), || write(svc, i).0 == 204),
            "log: {}",
            svc.log()
        );
    }
    assert!(
        eventually(Duration::from_secs(20), || server.rows(KEYSPACE, "samples")
            == 10),
        "log: {}",
        svc.log()
    );
}

/// Writes points after `from` while the store is down, until ingest answers 503 for the
/// pipeline's lag; how many were acknowledged, and the last point written.
fn write_until_pushed_back(svc: &Service, from: i64) -> (usize, i64) {
    let (mut i, mut acknowledged) = (from, 0);
    let mut pushed_back = String::new();
    let refused = eventually(Duration::from_secs(30), || {
        i += 1;
        let (status, body) = write(svc, i);
        if status == 204 {
            acknowledged += 1;
        }
        pushed_back = body;
        status == 503
    });
    assert!(refused, "ingest never pushed back; log: {}", svc.log());
    assert!(
        pushed_back.contains("records behind"),
        "503 for the pipeline's lag: {pushed_back}"
    );
    assert!(acknowledged > 0, "the log took writes during the outage");
    (acknowledged, i)
}

/// Waits for `server` to hold `n` points.
fn wait_stored(svc: &Service, server: &Kassandra, n: usize) {
    assert!(
        eventually(Duration::from_secs(60), || server.rows(KEYSPACE, "samples")
            == n),
        "acknowledged {n}, stored {}; log: {}",
        server.rows(KEYSPACE, "samples"),
        svc.log()
    );
}

/// Remote write's samples reach the store in columns only: the ScyllaDB store makes their
/// points and stores each sample once.
#[test]
fn remote_written_samples_in_columns_only_are_stored_by_the_scylla_store() {
    let server = Kassandra::start();
    let svc = service_on(&server);
    let now_ms = sluice::time::now_ns() / 1_000_000;
    let samples: Vec<(f64, i64)> = (0..4)
        .map(|k| (k as f64, now_ms - 60_000 + k * 15_000))
        .collect();
    let jobs = ["api", "db", "web"];
    let series = jobs
        .iter()
        .map(|job| TimeSeries::new(&[("__name__", "up"), ("job", job)], &samples))
        .collect();
    let (status, answer) = remote_write(&svc, "acme-token-1", body(series));
    assert_eq!(status, 204, "{answer}");
    wait_stored(&svc, &server, 12);
    assert_eq!(server.rows(KEYSPACE, "series"), 3, "one series a job");
}

#[test]
fn a_scylla_outage_stops_the_pipeline_then_ingest_answers_503_and_it_resumes_with_nothing_lost() {
    let server = Kassandra::start();
    let svc = service_on(&server);
    let health = || {
        try_request("GET", &svc.url("/health"), &[], Vec::new())
            .ok()
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .unwrap_or_default()
    };
    store_ten(&svc, &server);

    server.stop();
    let (during, mut i) = write_until_pushed_back(&svc, 10);
    assert!(
        eventually(Duration::from_secs(10), || health()["status"] == "degraded"),
        "{}",
        health()
    );
    let why = health()["store"].as_str().unwrap_or_default().to_owned();
    assert!(
        why.starts_with("ScyllaDB requests failing since"),
        "/health says why: {}",
        health()
    );

    server.restart();
    wait_stored(&svc, &server, 10 + during);
    assert!(
        eventually(Duration::from_secs(20), || health()["status"] == "ok"),
        "{}",
        health()
    );
    assert!(
        eventually(Duration::from_secs(20), || {
            i += 1;
            write(&svc, i).0 == 204
        }),
        "ingest resumes"
    );
    wait_stored(&svc, &server, 10 + during + 1);
}

#[test]
fn a_process_killed_during_a_scylla_outage_committed_nothing_it_had_not_stored() {
    let server = Kassandra::start();
    let mut svc = service_on(&server);
    store_ten(&svc, &server);
    server.stop();
    let (during, _) = write_until_pushed_back(&svc, 10);
    svc.kill_9();
    // The acknowledged points are in the log, uncommitted: the next start replays them.
    server.restart();
    svc.restart();
    wait_stored(&svc, &server, 10 + during);
}
