//! End-to-end tests of `sluice run` over real HTTP: ingest formats, query, tenant
//! isolation, bad input, limits, backpressure, dead letters and a kill -9 crash.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::service_util::{
    ACME, GLOBEX, Service, TENANTS, admin_metrics, eventually, get_json, points, query, request,
    token, try_request, write_v2,
};

#[test]
fn every_ingest_format_is_queryable_and_aggregates_work() {
    let svc = Service::start(TENANTS, &[]);
    // v2, seconds, gzip.
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(b"cpu,host=a usage=10 100\ncpu,host=a usage=20 110\ncpu,host=b usage=5 100\n")
        .expect("gzip");
    let auth = token(ACME);
    let (status, body) = request(
        "POST",
        &svc.url("/api/v2/write?bucket=b&precision=s"),
        &[(auth.0, &auth.1), ("Content-Encoding", "gzip")],
        gz.finish().expect("gzip"),
    );
    assert_eq!(status, 204, "{body}");
    // v1 with the token as password, milliseconds.
    let (status, body) = request(
        "POST",
        &svc.url(&format!("/write?db=x&u=any&p={ACME}&precision=ms")),
        &[],
        "cpu,host=a usage=30 120000\n",
    );
    assert_eq!(status, 204, "{body}");
    // Telegraf JSON batch, seconds by default.
    let (status, body) = request(
        "POST",
        &svc.url("/metrics"),
        &[(auth.0, &auth.1)],
        r#"{"metrics":[{"name":"cpu","tags":{"host":"a"},"fields":{"usage":40},"timestamp":130}]}"#,
    );
    assert_eq!(status, 204, "{body}");

    let s = 1_000_000_000i64;
    let q = "measurement=cpu&field=usage&start=0&end=1000000000000&tag=host:a";
    assert!(eventually(Duration::from_secs(10), || points(&query(
        &svc, ACME, q
    ))
    .len()
        == 4));
    assert_eq!(
        points(&query(&svc, ACME, q)),
        [
            (100 * s, 10.0),
            (110 * s, 20.0),
            (120 * s, 30.0),
            (130 * s, 40.0)
        ]
    );
    let mean = query(&svc, ACME, &format!("{q}&agg=mean&step=20s"));
    assert_eq!(points(&mean), [(100 * s, 15.0), (120 * s, 35.0)]);
    let rfc = query(
        &svc,
        ACME,
        "measurement=cpu&field=usage&start=1970-01-01T00:01:50Z&end=1970-01-01T00:02:05Z&tag=host:a",
    );
    assert_eq!(points(&rfc), [(110 * s, 20.0), (120 * s, 30.0)]);
    let all = query(
        &svc,
        ACME,
        "measurement=cpu&field=usage&start=0&end=1000000000000",
    );
    assert_eq!(
        all["series"].as_array().map(Vec::len),
        Some(2),
        "one series per tag set"
    );

    let (status, series) = get_json(&svc.url("/api/v1/series"), ACME);
    assert_eq!(status, 200);
    assert_eq!(
        series["series"].as_array().map(Vec::len),
        Some(2),
        "{series}"
    );
}

#[test]
fn a_token_reaches_only_its_own_tenant() {
    let svc = Service::start(TENANTS, &[]);
    assert_eq!(
        write_v2(&svc, ACME, "ns", "secret,team=acme v=1 1\n").0,
        204
    );
    assert_eq!(
        write_v2(&svc, GLOBEX, "ns", "secret,team=globex v=2 1\n").0,
        204
    );
    let q = "measurement=secret&field=v&start=0&end=10";
    assert!(eventually(Duration::from_secs(10), || points(&query(
        &svc, ACME, q
    ))
    .len()
        == 1));
    assert!(eventually(Duration::from_secs(10), || points(&query(
        &svc, GLOBEX, q
    ))
    .len()
        == 1));
    assert_eq!(points(&query(&svc, ACME, q)), [(1, 1.0)]);
    assert_eq!(points(&query(&svc, GLOBEX, q)), [(1, 2.0)]);
    let (_, acme_series) = get_json(&svc.url("/api/v1/series"), ACME);
    assert_eq!(acme_series["series"][0]["tags"]["team"], "acme");
    assert_eq!(acme_series["series"].as_array().map(Vec::len), Some(1));

    for (status, _) in [
        get_json(&svc.url(&format!("/api/v1/query?{q}")), "wrong-token"),
        get_json(&svc.url("/api/v1/series"), ""),
    ] {
        assert_eq!(status, 401);
    }
    assert_eq!(write_v2(&svc, "wrong-token", "ns", "x v=1 1").0, 401);
    let (status, _) = request("POST", &svc.url("/api/v2/write"), &[], "x v=1 1");
    assert_eq!(status, 401, "no token at all");
}

#[test]
fn bad_input_is_refused_whole_with_its_line_and_the_service_goes_on() {
    let svc = Service::start(&format!("[ingest]\nmax_body_bytes = 4096\n{TENANTS}"), &[]);
    let (status, body) = write_v2(
        &svc,
        ACME,
        "ns",
        "good v=1 1\ngood v=2 2\ngood v=oops 3\ngood v=4 4\n",
    );
    assert_eq!(status, 400);
    let err: serde_json::Value = serde_json::from_str(&body).expect("json error");
    assert_eq!(err["code"], "invalid");
    assert_eq!(err["line"], 3);
    assert!(
        err["message"]
            .as_str()
            .is_some_and(|m| m.contains("line 3")),
        "{body}"
    );

    let (status, body) = write_v2(&svc, ACME, "fortnights", "good v=1 1");
    assert_eq!(status, 400);
    assert!(body.contains("precision"), "{body}");
    let (status, body) = request(
        "POST",
        &svc.url("/metrics"),
        &[("Authorization", "Token acme-token-1")],
        "{\"metrics\": [1]}",
    );
    assert_eq!(status, 400, "{body}");
    let big = "big v=1 1\n".repeat(1000);
    let (status, _) = write_v2(&svc, ACME, "ns", &big);
    assert_eq!(status, 413);
    let (status, _) = request(
        "POST",
        &svc.url("/api/v2/write"),
        &[
            ("Authorization", "Token acme-token-1"),
            ("Content-Encoding", "gzip"),
        ],
        b"not gzip".to_vec(),
    );
    assert_eq!(status, 400);

    // The service still works, and nothing of the refused bodies was written.
    assert_eq!(write_v2(&svc, ACME, "ns", "after v=1 1\n").0, 204);
    assert!(eventually(Duration::from_secs(10), || {
        points(&query(
            &svc,
            ACME,
            "measurement=after&field=v&start=0&end=10",
        ))
        .len()
            == 1
    }));
    assert!(
        points(&query(
            &svc,
            ACME,
            "measurement=good&field=v&start=0&end=10"
        ))
        .is_empty()
    );
    let (_, metrics) = request("GET", &svc.url("/metrics"), &[], Vec::new());
    assert!(
        metrics.contains("sluice_requests_rejected_total{reason=\"Invalid\"}"),
        "{metrics}"
    );
}

#[test]
fn failing_plugins_dead_letter_batches_and_show_in_health() {
    let body = format!(
        "{TENANTS}\n[[tenants.stages]]\nname = \"boom\"\nplugin = \"chaos\"\nparams = {{ mode = \"trap\" }}\n"
    );
    let svc = Service::start(&body, &["chaos"]);
    for i in 0..4 {
        // Acknowledged: durable in the log, whatever the plugin does later.
        assert_eq!(
            write_v2(&svc, GLOBEX, "ns", &format!("m v={i} {i}\n")).0,
            204
        );
    }
    let dead = svc.data_dir().join("dead-letters.jsonl");
    assert!(eventually(Duration::from_secs(20), || {
        std::fs::read_to_string(&dead).is_ok_and(|t| t.lines().count() == 4)
    }));
    let letters = std::fs::read_to_string(&dead).expect("dead letters");
    assert!(
        letters
            .lines()
            .all(|l| l.contains("\"plugin\":\"chaos\"") && l.contains("globex/boom"))
    );
    let (status, health) = request("GET", &svc.url("/health"), &[], Vec::new());
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&health).expect("json");
    assert_eq!(health["status"], "degraded", "{health}");
    // acme has no stages: unaffected.
    assert_eq!(write_v2(&svc, ACME, "ns", "fine v=1 1\n").0, 204);
    assert!(eventually(Duration::from_secs(10), || {
        points(&query(
            &svc,
            ACME,
            "measurement=fine&field=v&start=0&end=10",
        ))
        .len()
            == 1
    }));
}

#[test]
fn a_slow_pipeline_pushes_back_with_503_and_retry_after() {
    let body = format!(
        "[ingest]\nmax_lag_records = 2\n[transport]\nkind = \"embedded\"\npartitions = 1\n{TENANTS}\n[[tenants.stages]]\nname = \"slow\"\nplugin = \"chaos\"\nparams = {{ mode = \"slow\", ms = \"50\" }}\n"
    );
    let svc = Service::start(&body, &["chaos"]);
    let mut saw_503 = false;
    for i in 0..200 {
        // globex is the tenant with the slow stage (stages follow the last [[tenants]]).
        let (status, body) = write_v2(&svc, GLOBEX, "ns", &format!("m v={i} {i}\n"));
        if status == 503 {
            assert!(body.contains("behind; retry later"), "{body}");
            saw_503 = true;
            break;
        }
        assert_eq!(status, 204);
    }
    assert!(saw_503, "writes were never pushed back");
    // The backlog is globex's: acme, sharing its partition, is not held back by it.
    for i in 0..2 {
        let (status, body) = write_v2(&svc, ACME, "ns", &format!("m v={i} {i}\n"));
        assert_eq!(status, 204, "{body}");
    }
    // The stage's latency shows per tenant and stage: every batch took its 50 ms at least.
    let stage = |metrics: &str, name: &str| {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "{name}{{tenant=\"globex\",stage=\"globex/slow\"}} "
                ))
            })
            .and_then(|v| v.parse::<f64>().ok())
    };
    let mut metrics = String::new();
    assert!(
        eventually(Duration::from_secs(10), || {
            metrics = admin_metrics(&svc);
            stage(&metrics, "sluice_stage_seconds_count").is_some()
        }),
        "no stage latency for globex/slow in {metrics}"
    );
    let count = stage(&metrics, "sluice_stage_seconds_count").unwrap_or_default();
    let sum = stage(&metrics, "sluice_stage_seconds_sum").unwrap_or_default();
    assert!(
        count >= 1.0 && sum >= 0.05 * count,
        "count {count}, sum {sum}"
    );
}

#[test]
fn kill_9_during_a_write_stream_loses_no_acknowledged_point_and_stores_none_twice() {
    let mut svc = Service::start(TENANTS, &[]);
    let url = svc.url("/api/v2/write?bucket=b");
    // Current timestamps: retention must not touch them.
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .expect("clock");
    let stop = Arc::new(AtomicBool::new(false));
    // Four writers: whenever the kill lands, requests are in flight.
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (stop, url) = (stop.clone(), url.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut batch = 0i64;
                let mut cut = false;
                while !stop.load(Ordering::Relaxed) {
                    let body: String = (0..100)
                        .map(|i| {
                            let seq = batch * 100 + i;
                            format!("crash,w={w} seq={seq} {}\n", base + seq)
                        })
                        .collect();
                    match try_request(
                        "POST",
                        &url,
                        &[("Authorization", "Token acme-token-1")],
                        body.into_bytes(),
                    ) {
                        Ok((204, _)) => acked.push(batch),
                        Ok(_) | Err(_) => {
                            // The server died mid-request.
                            cut = true;
                            break;
                        }
                    }
                    batch += 1;
                }
                (acked, batch, cut)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    svc.kill_9();
    stop.store(true, Ordering::Relaxed);
    let results: Vec<(Vec<i64>, i64, bool)> = writers
        .into_iter()
        .map(|w| w.join().expect("writer"))
        .collect();
    assert!(
        results.iter().any(|(_, _, cut)| *cut),
        "the kill landed between requests"
    );
    let acked_points: usize = results.iter().map(|(a, _, _)| a.len() * 100).sum();
    assert!(
        acked_points > 2_000,
        "too few writes before the crash: {acked_points}"
    );
    let sent = results.iter().map(|(_, s, _)| *s).max().unwrap_or(0);
    let end = base + sent * 100 + 100;

    svc.restart();
    let stored_of = |w: usize| {
        points(&query(
            &svc,
            ACME,
            &format!("measurement=crash&field=seq&tag=w:{w}&start={base}&end={end}"),
        ))
    };
    assert!(
        eventually(Duration::from_secs(30), || (0..WRITERS)
            .map(|w| stored_of(w).len())
            .sum::<usize>()
            >= acked_points),
        "acknowledged points missing after restart; log: {}",
        svc.log()
    );
    for (w, (acked, _, _)) in results.iter().enumerate() {
        let stored = stored_of(w);
        for batch in acked {
            for i in 0..100 {
                let t = base + batch * 100 + i;
                assert!(
                    stored.binary_search_by_key(&t, |(t, _)| *t).is_ok(),
                    "acknowledged point {t} of writer {w} lost; {} acked batches, {} stored",
                    acked.len(),
                    stored.len(),
                );
            }
        }
        assert!(
            stored
                .iter()
                .all(|(t, v)| (*t - base) as f64 == *v && *t < end),
            "only points that were sent, with their own values"
        );
    }
    // Below the read path (which folds rewrites of a timestamp): each point once.
    svc.stop();
    use sluice::store::Store as _;
    let store = sluice::store::EmbeddedStore::open(&svc.data_dir().join("store")).expect("store");
    let acme = sluice::tenant::TenantId::new("acme");
    let series = store
        .series(&acme, &sluice::store::SeriesFilter::default())
        .expect("series");
    assert_eq!(series.len(), WRITERS);
    let mut below = 0;
    for s in &series {
        let samples = store.stored_samples(&acme, s).expect("samples");
        let mut ts: Vec<i64> = samples.iter().map(|(t, _)| *t).collect();
        ts.dedup();
        assert_eq!(ts.len(), samples.len(), "a point stored twice in {s:?}");
        below += samples.len();
    }
    assert!(
        below >= acked_points,
        "{below} stored, {acked_points} acknowledged"
    );
}

/// Concurrent writers of the kill -9 test.
const WRITERS: usize = 4;

/// Runs the client script `tests/e2e/NAME` against a fresh service; it needs the Python
/// packages `needs`, which scripts/test.sh installs.
fn run_client_script(name: &str, needs: &str) {
    let svc = Service::start(TENANTS, &[]);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/e2e")
        .join(name);
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(svc.url(""))
        .arg(ACME)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}\n{}\n(needs `python3 -m pip install {needs}`; scripts/test.sh does it)",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_official_influxdb_python_client_writes_and_reads_back() {
    run_client_script("influx_client.py", "influxdb-client");
}

#[test]
fn the_opentelemetry_python_sdk_exports_over_otlp_http_and_reads_back() {
    run_client_script(
        "otlp_client.py",
        "opentelemetry-sdk opentelemetry-exporter-otlp-proto-http",
    );
}

/// A webhook receiver on loopback: collects request bodies until dropped.
fn webhook_receiver() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                sink.lock()
                    .expect("lock")
                    .push(String::from_utf8_lossy(&body).into_owned());
            }
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    (url, bodies)
}

#[test]
fn alert_rules_fire_and_resolve_to_the_log_store_and_webhook() {
    let (hook, received) = webhook_receiver();
    // Idle after a second: the wall clock then closes the windows of these past points.
    let body = format!(
        "[windows]\nidle_after_secs = 1\n{TENANTS}\n[[tenants.alerts]]\nname = \"cpu-hot\"\nplugin = \"threshold-alert\"\nmeasurement = \"cpu\"\nfield = \"usage\"\nwindow_secs = 10\ngrace_secs = 0\naggregates = [\"mean\", \"max\"]\nparams = {{ crit_above = \"90\" }}\nwebhook_url = \"{hook}\"\n"
    );
    let svc = Service::start(&body, &["threshold-alert"]);
    // Ten minutes ago, so the wall-clock heartbeat closes the windows at once.
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .expect("clock");
    let t0 = (now_s - 600) / 10 * 10;
    let lines = format!(
        "cpu,host=a usage=95 {}\ncpu,host=a usage=97 {}\ncpu,host=a usage=50 {}\ncpu,host=b usage=10 {}\n",
        t0,
        t0 + 5,
        t0 + 10,
        t0 + 1
    );
    assert_eq!(write_v2(&svc, GLOBEX, "s", &lines).0, 204);

    let url = svc.url(&format!(
        "/api/v1/alerts?start={}&end={}",
        (t0 - 60) * 1_000_000_000,
        now_s * 1_000_000_000
    ));
    let mut alerts = serde_json::Value::Null;
    assert!(
        eventually(Duration::from_secs(20), || {
            alerts = get_json(&url, GLOBEX).1;
            alerts["alerts"].as_array().is_some_and(|a| a.len() == 2)
        }),
        "alerts: {alerts}; log: {}",
        svc.log()
    );
    let list = alerts["alerts"].as_array().expect("alerts");
    assert_eq!(list[0]["state"], "Critical");
    assert_eq!(list[0]["value"], 96.0, "the mean of the first window");
    assert_eq!(list[0]["window_start"], t0 * 1_000_000_000);
    assert_eq!(list[1]["state"], "Ok", "the next window resolves it");
    assert_eq!(
        get_json(&url, ACME).1["alerts"].as_array().map(Vec::len),
        Some(0),
        "tenant-scoped"
    );
    assert!(eventually(Duration::from_secs(10), || {
        received
            .lock()
            .expect("lock")
            .iter()
            .any(|b| b.contains("\"Critical\"") && b.contains("globex"))
    }));
}

/// A small tmpfs, unmounted on drop: a disk that really fills up.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &std::path::Path, size: &str) -> Self {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mounting a tmpfs needs root (CI runs as root)");
        Self(at.to_owned())
    }

    fn grow(&self, size: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_refuses_writes_and_loses_no_acknowledged_point() {
    let mut disk = None;
    let mut svc = Service::start_with(TENANTS, &[], |data| {
        disk = Some(SmallDisk::mount(data, "3m"))
    });
    let disk = disk.expect("mounted");
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .expect("clock");
    let mut acked = 0i64;
    let mut refused = None;
    for batch in 0..200i64 {
        let body: String = (0..3000)
            .map(|j| {
                format!(
                    "fill,h=h{} v={} {}\n",
                    j % 50,
                    batch * 3000 + j,
                    base + batch * 3000 + j
                )
            })
            .collect();
        let (status, answer) = write_v2(&svc, ACME, "ns", &body);
        if status != 204 {
            refused = Some((status, answer));
            break;
        }
        acked += 1;
    }
    let (status, answer) = refused.expect("the 3 MiB disk never filled");
    assert_eq!(status, 503, "{answer}");
    assert!(acked > 0, "nothing was acknowledged before the disk filled");
    let (status, health) = request("GET", &svc.url("/health"), &[], Vec::new());
    assert_eq!(status, 503, "{health}");
    assert!(health.contains("\"failed\""), "{health}");

    // Room again, and a restart (the supervisor's answer to a failed health check).
    svc.kill_9();
    disk.grow("256m");
    svc.restart();
    let q = format!(
        "measurement=fill&field=v&start={base}&end={}&limit=1000000",
        base + 1_000_000_000
    );
    let count = |svc: &Service| {
        let all = query(svc, ACME, &q);
        all["series"].as_array().map_or(0, |s| {
            s.iter()
                .map(|s| s["points"].as_array().map_or(0, Vec::len))
                .sum::<usize>()
        })
    };
    assert!(
        eventually(Duration::from_secs(30), || count(&svc)
            >= (acked * 3000) as usize),
        "acknowledged points lost: {} of {}",
        count(&svc),
        acked * 3000
    );
    assert_eq!(
        write_v2(
            &svc,
            ACME,
            "ns",
            &format!("fill,h=after v=1 {}\n", base + 999)
        )
        .0,
        204
    );
}
