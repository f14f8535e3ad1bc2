//! Rollup rules against the running binary (issue 8): windows stored as a tier, corrected
//! within grace, late data kept and readable, tiers chosen for queries, and window state
//! that survives `kill -9` with the same rollups as an uninterrupted run.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::service_util::{Service, admin_metrics, eventually, get_json, request, token};

const ACME: &str = "acme-token-1";
const NS: i64 = 1_000_000_000;

/// One partition (one watermark), no wall-clock heartbeat during a test, no disorder: the
/// windows close on event time alone. Rule `cpu-10s` rolls `cpu` into 10 s windows.
fn config(partitions: u32) -> String {
    format!(
        r#"[windows]
idle_after_secs = 3600
allowed_disorder_secs = 0
[transport]
kind = "embedded"
partitions = {partitions}

[[tenants]]
name = "globex"
tokens = ["globex-token-1"]
retention_days = 36500

[[tenants]]
name = "acme"
tokens = ["acme-token-1"]
retention_days = 36500
tiers = {{ "10s" = "36500d" }}

[[tenants.rollups]]
name = "cpu-10s"
measurement = "cpu"
window = {{ tumbling = "10s" }}
aggregates = ["count", "sum", "mean", "max", "p99"]
grace = "5s"
tier = "10s"
"#
    )
}

fn write(svc: &Service, lines: &str) {
    write_in(svc, "s", lines);
}

fn write_in(svc: &Service, precision: &str, lines: &str) {
    let auth = token(ACME);
    let (status, body) = request(
        "POST",
        &svc.url(&format!("/api/v2/write?precision={precision}")),
        &[(auth.0, &auth.1)],
        lines.to_owned(),
    );
    assert_eq!(status, 204, "{body}");
}

/// An hour ago, aligned to 10 s, in seconds.
fn base() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .expect("clock");
    (now - 3_600) / 10 * 10
}

/// `GET /api/v1/query` of cpu usage over `[from, to)` seconds with `extra` parameters.
fn query(svc: &Service, from: i64, to: i64, extra: &str) -> Value {
    let url = svc.url(&format!(
        "/api/v1/query?measurement=cpu&field=usage&start={}&end={}{extra}",
        from * NS,
        to * NS
    ));
    let (status, body) = get_json(&url, ACME);
    assert_eq!(status, 200, "{body}");
    body
}

/// The points of the series with `host` in an answer.
fn points_of(answer: &Value, host: &str) -> Value {
    answer["series"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["tags"]["host"] == host)
        .map_or(Value::Null, |s| s["points"].clone())
}

fn late(svc: &Service, from: i64, to: i64) -> Vec<Value> {
    let url = svc.url(&format!("/api/v1/late?start={}&end={}", from * NS, to * NS));
    let (status, body) = get_json(&url, ACME);
    assert_eq!(status, 200, "{body}");
    body["late"].as_array().cloned().unwrap_or_default()
}

#[test]
fn windows_are_stored_as_a_tier_corrected_within_grace_and_late_data_is_kept() {
    let svc = Service::start(&config(1), &[]);
    let t0 = base();
    let tier = |agg: &str| query(&svc, t0 - 60, t0 + 60, &format!("&tier=10s&agg={agg}"));

    write(
        &svc,
        &format!(
            "cpu,host=a usage=1 {}\ncpu,host=a usage=3 {}\ncpu,host=b usage=10 {}\nmem,host=a usage=5 {}\n",
            t0 + 1,
            t0 + 4,
            t0 + 2,
            t0 + 3
        ),
    );
    assert_eq!(
        tier("count")["series"],
        Value::Array(Vec::new()),
        "window [t0, t0+10) is open"
    );
    // Event time passes the window's end: it closes, one row per series.
    write(&svc, &format!("cpu,host=a usage=5 {}\n", t0 + 12));
    let mut answer = Value::Null;
    assert!(
        eventually(Duration::from_secs(10), || {
            answer = tier("count");
            points_of(&answer, "b") == serde_json::json!([[t0 * NS, 1.0]])
        }),
        "{answer}; log: {}",
        svc.log()
    );
    assert_eq!(answer["tier"], "10s");
    assert_eq!(points_of(&answer, "a"), serde_json::json!([[t0 * NS, 2.0]]));
    assert_eq!(
        points_of(&tier("mean"), "a"),
        serde_json::json!([[t0 * NS, 2.0]])
    );

    // Late within grace (watermark t0+12 < end t0+10 + grace 5): the row is corrected.
    write(&svc, &format!("cpu,host=a usage=8 {}\n", t0 + 3));
    assert!(
        eventually(Duration::from_secs(10), || {
            points_of(&tier("count"), "a") == serde_json::json!([[t0 * NS, 3.0]])
        }),
        "{}",
        tier("count")
    );
    assert_eq!(
        points_of(&tier("max"), "a"),
        serde_json::json!([[t0 * NS, 8.0]])
    );

    // Grace passes at t0+15; a point for the window after that is late data.
    write(&svc, &format!("cpu,host=a usage=1 {}\n", t0 + 16));
    write(&svc, &format!("cpu,host=a usage=7 {}\n", t0 + 5));
    let mut kept = Vec::new();
    assert!(
        eventually(Duration::from_secs(10), || {
            kept = late(&svc, t0 - 60, t0 + 60);
            !kept.is_empty()
        }),
        "no late data; log: {}",
        svc.log()
    );
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["rule"], "cpu-10s");
    assert_eq!(kept[0]["time"], (t0 + 5) * NS);
    assert_eq!(kept[0]["value"], 7.0);
    assert_eq!(kept[0]["tags"]["host"], "a");
    assert_eq!(
        points_of(&tier("count"), "a"),
        serde_json::json!([[t0 * NS, 3.0]]),
        "the late value left the window as it was"
    );
    // It is a stored raw point all the same.
    let raw = query(&svc, t0, t0 + 10, "&tag=host:a");
    assert_eq!(points_of(&raw, "a").as_array().map(Vec::len), Some(4));
    let metrics = admin_metrics(&svc);
    assert!(
        metrics.contains("sluice_window_late_points_total{tenant=\"acme\",rule=\"cpu-10s\"} 1"),
        "{metrics}"
    );

    // An agg+step query is answered from the coarsest tier that has it exactly, and says
    // so: once the watermark has made the windows final, and where no late data of the
    // rule falls in the range (the tier lacks it).
    write(&svc, &format!("cpu,host=c usage=1 {}\n", t0 + 40));
    let mut stepped = Value::Null;
    assert!(
        eventually(Duration::from_secs(10), || {
            stepped = query(&svc, t0 + 10, t0 + 20, "&agg=sum&step=10s");
            stepped["tier"] == "10s"
        }),
        "{stepped}"
    );
    assert_eq!(
        points_of(&stepped, "a"),
        serde_json::json!([[(t0 + 10) * NS, 6.0]])
    );
    let with_late = query(&svc, t0, t0 + 10, "&agg=sum&step=10s");
    assert_eq!(with_late["tier"], "raw", "late data in range: {with_late}");
    assert_eq!(
        points_of(&with_late, "a"),
        serde_json::json!([[t0 * NS, 19.0]])
    );
    let raw_min = query(&svc, t0 + 10, t0 + 20, "&agg=min&step=10s");
    assert_eq!(raw_min["tier"], "raw", "the tier keeps no min");
    assert_eq!(
        points_of(&raw_min, "a"),
        serde_json::json!([[(t0 + 10) * NS, 1.0]])
    );
    // Asking a tier for what it can't answer is a 400 that says why.
    let url = svc.url(&format!(
        "/api/v1/query?measurement=cpu&field=usage&start={}&end={}&tier=10s&agg=p99&step=20s",
        t0 * NS,
        (t0 + 60) * NS
    ));
    let (status, body) = get_json(&url, ACME);
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("can't answer"), "{body}");
    let listed = get_json(&svc.url("/api/v1/series?tier=10s"), ACME).1;
    assert_eq!(
        listed["series"].as_array().map(Vec::len),
        Some(2),
        "a and b: {listed}"
    );
    let (status, other) = get_json(&svc.url("/api/v1/series?tier=10s"), "globex-token-1");
    assert_eq!(status, 400, "tenant-scoped: {other}");
    assert!(other.to_string().contains("no such tier"), "{other}");
}

/// Batch `i` of a reproducible stream (milliseconds): ten series, points a few seconds
/// out of order, so some are corrections within grace and some late beyond it. No two
/// points of a series share a time (a point written twice is one point).
fn batch(t0: i64, i: i64) -> String {
    (0..10)
        .map(|host| {
            let jitter = (i * 7 + host * 3) % 9;
            format!(
                "cpu,host=h{host} usage={} {}\n",
                (i * 31 + host * 17) % 100,
                (t0 + i * 2 + 8 - jitter) * 1_000 + i
            )
        })
        .collect()
}

/// Everything the rollups of a run hold: each series' count, sum and max rows, and the
/// late data.
fn outcome(svc: &Service, t0: i64, end: i64) -> Value {
    let series: Vec<Value> = ["count", "sum", "max", "p99"]
        .iter()
        .map(|agg| query(svc, t0 - 60, end, &format!("&tier=10s&agg={agg}"))["series"].clone())
        .collect();
    serde_json::json!({ "series": series, "late": late(svc, t0 - 60, end + 3_600) })
}

/// Polls until every value before the closing point is in a closed window or late.
fn settled(svc: &Service, t0: i64, end: i64, values: usize) -> bool {
    eventually(Duration::from_secs(60), || {
        let counts = query(svc, t0 - 60, end, "&tier=10s&agg=count");
        let counted: f64 = counts["series"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["points"].as_array().cloned().unwrap_or_default())
            .map(|p| p[1].as_f64().unwrap_or(0.0))
            .sum();
        counted as usize + late(svc, t0 - 60, end + 3_600).len() == values
    })
}

#[test]
fn after_kill_9_the_stored_rollups_equal_those_of_an_uninterrupted_run() {
    const BATCHES: i64 = 60;
    let t0 = base() - 3_600;
    let end = t0 + BATCHES * 2 + 60;
    // A point far ahead on every series closes every window on both partitions.
    let closing: String = (0..10)
        .map(|host| format!("cpu,host=h{host} usage=0 {}\n", (end + 600) * 1_000))
        .collect();
    let values = (BATCHES * 10) as usize;

    let whole = Service::start(&config(2), &[]);
    for i in 0..BATCHES {
        write_in(&whole, "ms", &batch(t0, i));
    }
    write_in(&whole, "ms", &closing);
    assert!(settled(&whole, t0, end, values), "log: {}", whole.log());
    let expected = outcome(&whole, t0, end);
    assert!(
        !expected["late"].as_array().is_some_and(Vec::is_empty),
        "the stream has late data: {expected}"
    );

    let mut crashed = Service::start(&config(2), &[]);
    for i in 0..BATCHES {
        write_in(&crashed, "ms", &batch(t0, i));
        if i == 20 {
            // Past a save of the window state, so the restart replays from one.
            std::thread::sleep(Duration::from_secs(6));
        }
        if i == 40 {
            crashed.kill_9();
            crashed.restart();
        }
    }
    write_in(&crashed, "ms", &closing);
    assert!(settled(&crashed, t0, end, values), "log: {}", crashed.log());
    assert_eq!(
        outcome(&crashed, t0, end),
        expected,
        "log: {}",
        crashed.log()
    );
}

#[test]
fn after_kill_9_stage_state_continues_as_if_uninterrupted() {
    // The `rate` stage keeps each series' last counter sample in its state.
    let body = config(2).replace(
        "[[tenants.rollups]]",
        "[[tenants.stages]]\nname = \"rate\"\nplugin = \"rate\"\nparams = { fields = \"bytes\" }\n\n[[tenants.rollups]]",
    );
    let t0 = base() - 7_200;
    let line = |i: i64| -> String {
        (0..5)
            .map(|host| format!("net,host=h{host} bytes={} {}\n", i * i * (host + 1), t0 + i))
            .collect()
    };
    let rates = |svc: &Service| {
        let url = svc.url(&format!(
            "/api/v1/query?measurement=net&field=bytes_rate&start={}&end={}",
            t0 * NS,
            (t0 + 100) * NS
        ));
        get_json(&url, ACME).1["series"].clone()
    };
    let count = |series: &Value| -> usize {
        series
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| s["points"].as_array().map_or(0, Vec::len))
            .sum()
    };
    const WRITES: i64 = 40;
    // Every point but each series' first has a rate.
    let expected_points = (WRITES as usize - 1) * 5;

    let whole = Service::start(&body, &["rate"]);
    for i in 0..WRITES {
        write(&whole, &line(i));
    }
    assert!(
        eventually(Duration::from_secs(30), || count(&rates(&whole))
            == expected_points),
        "{}; log: {}",
        rates(&whole),
        whole.log()
    );
    let expected = rates(&whole);

    let mut crashed = Service::start(&body, &["rate"]);
    for i in 0..WRITES {
        write(&crashed, &line(i));
        if i == 12 {
            // Past a save of the partition state.
            std::thread::sleep(Duration::from_secs(6));
        }
        if i == 25 {
            crashed.kill_9();
            crashed.restart();
        }
    }
    let mut got = Value::Null;
    assert!(
        eventually(Duration::from_secs(30), || {
            got = rates(&crashed);
            count(&got) >= expected_points
        }),
        "{got}; log: {}",
        crashed.log()
    );
    assert_eq!(got, expected, "log: {}", crashed.log());
}
