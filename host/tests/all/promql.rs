//! Sluice's Prometheus API against the real Prometheus 2.42: the same data remote-written
//! to both answers the compliance tester's PromQL queries the same, and Prometheus itself
//! (remote write) and `promtool` (queries) work with Sluice as they do with a Prometheus.
//!
//! `scripts/install-peers.sh prometheus` installs both binaries (scripts/test.sh does); these
//! tests fail, never skip, without them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::service_util::{ACME, Service, TENANTS, try_request};

/// A Prometheus process of a test's own: a fresh data directory and a free port. Killed on
/// drop.
struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// The path of `name` (`prometheus`, `promtool`) on `PATH`; panics with the fix when it is
/// missing.
fn installed(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed: run `scripts/install-peers.sh prometheus` \
                 (scripts/test.sh and CI do); these tests compare Sluice with the real Prometheus"
            )
        })
}

/// A port nobody listens on now (the same small race as every test that starts a server
/// needing its port in its config).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

impl Prometheus {
    /// Starts Prometheus with the configuration `config(port)` and `flags`, and waits until
    /// `/-/ready` answers 200.
    fn start(config: impl FnOnce(u16) -> String, flags: &[&str]) -> Self {
        let binary = installed("prometheus");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config(port)).expect("write prometheus.yml");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn prometheus");
        let mut prometheus = Self { child, port, dir };
        prometheus.wait_ready();
        prometheus
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("prometheus exited with {status}; log:\n{}", self.log());
            }
            if let Ok((200, _)) = try_request("GET", &self.url("/-/ready"), &[], Vec::new()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready in 60 s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT/path`.
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Its log so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// stdout and stderr of a finished process, for failure messages.
fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Prometheus 2.42 is the reference: the compliance tester's queries
/// (`tests/e2e/promql/queries.txt`), run as range queries over the same remote-written data
/// (counters with resets, gauges, a classic histogram, staleness markers, gaps), answer the
/// same in Sluice, at least in `PROMQL_MIN_PASS` (90 %) of the cases. The script prints
/// every verdict and the failures grouped by cause; the JSON report is kept at
/// `target/tmp/promql-report.json`.
#[test]
fn prometheus_2_42_and_sluice_agree_on_the_compliance_queries() {
    let prometheus = Prometheus::start(
        |_| "global:\n  scrape_interval: 15s\n".to_owned(),
        &["--web.enable-remote-write-receiver"],
    );
    let svc = Service::start(TENANTS, &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/promql_differential.py");
    let report = Path::new(env!("CARGO_TARGET_TMPDIR")).join("promql-report.json");
    let out = Command::new("python3")
        .arg(&script)
        .arg(svc.url(""))
        .arg(ACME)
        .arg(prometheus.url(""))
        .env("PROMQL_REPORT", &report)
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\nreport: {}\nsluice log (tail): {}",
        text(&out),
        report.display(),
        tail(&svc.log(), 40)
    );
    // The summary and the failure groups, for `--nocapture` runs.
    if let Some(at) = stdout.find("\nfailures by cause:") {
        println!("{}", &stdout[at..]);
    } else if let Some(summary) = stdout.lines().rev().find(|l| l.starts_with("passed ")) {
        println!("{summary}");
    }
}

/// The last `n` lines of `log`.
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `promtool` with `args`, which must succeed; its stdout.
fn promtool(args: &[&str]) -> Result<String, String> {
    let out = Command::new(installed("promtool"))
        .args(args)
        .output()
        .expect("spawn promtool");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(text(&out))
    }
}

/// Seconds since the epoch, now.
fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// The series of a `promtool query range -o json` answer with `job`, and their values.
fn series_of_job(answer: &str, job: &str) -> Vec<(serde_json::Value, Vec<f64>)> {
    let matrix: serde_json::Value = serde_json::from_str(answer).unwrap_or_default();
    matrix
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["metric"]["job"] == job)
        .map(|s| {
            let values = s["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v[1].as_str()?.parse().ok())
                .collect();
            (s["metric"].clone(), values)
        })
        .collect()
}

/// A real Prometheus 2.42, scraping itself every second, remote-writes to Sluice (bearer
/// token, snappy protobuf), and `promtool` reads those series back from Sluice's
/// Prometheus API: a range query sends the token as a header; an instant query (`1+1`,
/// Grafana's health check) sends it as the password of basic auth, since promtool 2.42's
/// `query instant` has no header flag. Without a token the query is refused.
#[test]
fn prometheus_remote_writes_its_own_metrics_and_promtool_reads_them_back() {
    installed("promtool");
    let svc = Service::start(TENANTS, &[]);
    let write_url = svc.url("/api/v1/write");
    let job = "prometheus-self";
    let _prometheus = Prometheus::start(
        |port| {
            [
                "global:".to_owned(),
                "  scrape_interval: 1s".to_owned(),
                "scrape_configs:".to_owned(),
                format!("  - job_name: {job}"),
                "    static_configs:".to_owned(),
                format!("      - targets: ['127.0.0.1:{port}']"),
                "remote_write:".to_owned(),
                format!("  - url: {write_url}"),
                "    authorization:".to_owned(),
                format!("      credentials: {ACME}"),
                // Send within a second, and retry soon while Sluice pushes back.
                "    queue_config:".to_owned(),
                "      batch_send_deadline: 1s".to_owned(),
                "      min_backoff: 100ms".to_owned(),
                "      max_backoff: 1s".to_owned(),
            ]
            .join("\n")
                + "\n"
        },
        &[],
    );
    let api = svc.url("/prometheus");
    let header = format!("Authorization: Bearer {ACME}");
    let range = |query: &str| {
        let now = now_s();
        promtool(&[
            "query",
            "range",
            "-o",
            "json",
            "--header",
            &header,
            "--start",
            &(now - 120).to_string(),
            "--end",
            &now.to_string(),
            "--step",
            "1s",
            &api,
            query,
        ])
    };

    // Prometheus sends within a second of each scrape; Sluice makes points queryable soon
    // after acknowledging them.
    let deadline = Instant::now() + Duration::from_secs(60);
    let last = loop {
        let answer = range("up");
        let seen = answer
            .as_deref()
            .is_ok_and(|answer| series_of_job(answer, job).iter().any(|(_, v)| v.len() >= 3));
        if seen || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let up = series_of_job(last.as_deref().unwrap_or_default(), job);
    assert!(
        up.iter().any(|(_, v)| v.len() >= 3),
        "promtool never read 3 samples of up{{job=\"{job}\"}} back from Sluice in 60 s: \
         {last:?}\nsluice log (tail): {}",
        tail(&svc.log(), 40)
    );
    assert_eq!(up.len(), 1, "{up:?}");
    let (metric, values) = &up[0];
    assert_eq!(metric["__name__"], "up", "{metric}");
    assert!(
        metric["instance"]
            .as_str()
            .is_some_and(|i| i.starts_with("127.0.0.1:")),
        "{metric}"
    );
    assert!(values.iter().all(|v| *v == 1.0), "{values:?}");

    let answer = range("prometheus_tsdb_head_series").expect("promtool query range");
    let head = series_of_job(&answer, job);
    // Its first scrape runs before the head holds any series: only the latest must be > 0.
    assert!(
        head.len() == 1 && head[0].1.last().is_some_and(|v| *v > 0.0),
        "prometheus_tsdb_head_series read back: {answer}"
    );

    let basic = api.replacen("http://", &format!("http://promtool:{ACME}@"), 1);
    let answer = promtool(&["query", "instant", &basic, "1+1"]).unwrap_or_else(|e| {
        panic!(
            "promtool query instant 1+1 failed: {e}\n(promtool 2.42 sends no headers for \
             instant queries, only basic auth from the URL: Sluice must take the token as its \
             password, `Authorization: Basic base64(any:TOKEN)`)"
        )
    });
    assert!(answer.starts_with("scalar: 2 @["), "{answer}");
    // Without a token: refused.
    assert!(promtool(&["query", "instant", &api, "1+1"]).is_err());
}
