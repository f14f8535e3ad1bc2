//! A real `sluice run` process for end-to-end tests, and a small blocking HTTP client.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::common::plugin_file;

/// A running service process with its own data and plugin directories.
pub struct Service {
    child: Child,
    /// Its address.
    pub addr: SocketAddr,
    /// Its admin API's address.
    pub admin: SocketAddr,
    dir: tempfile::TempDir,
    config: PathBuf,
    /// Environment variables of the process (`SLUICE_ARGS` holds extra arguments).
    env: Vec<(String, String)>,
}

/// The tenants every test service has. A century of retention: the tests write points
/// dated near 1970, which a shorter retention refuses.
pub const TENANTS: &str = r#"
[[tenants]]
name = "acme"
tokens = ["acme-token-1"]
retention_days = 36500

[[tenants]]
name = "globex"
tokens = ["globex-token-1"]
retention_days = 36500
"#;

impl Service {
    /// Starts a service whose config is `body` (tenants, stages...) plus listen address,
    /// data and plugin directories; `plugins` are copied into its plugin directory.
    pub fn start(body: &str, plugins: &[&str]) -> Self {
        Self::start_with(body, plugins, |_| {})
    }

    /// As [`Service::start`], calling `prepare` with the (not yet created) data directory
    /// before the process starts.
    pub fn start_with(body: &str, plugins: &[&str], prepare: impl FnOnce(&Path)) -> Self {
        Self::start_opts(body, plugins, prepare, &[])
    }

    /// As [`Service::start_with`], with more arguments for `sluice` (before `run`) and
    /// environment variables.
    pub fn start_opts(
        body: &str,
        plugins: &[&str],
        prepare: impl FnOnce(&Path),
        env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        prepare(&dir.path().join("data"));
        let plugin_dir = dir.path().join("plugins");
        std::fs::create_dir_all(&plugin_dir).expect("plugin dir");
        for name in plugins {
            std::fs::copy(plugin_file(name), plugin_dir.join(format!("{name}.wasm")))
                .expect("copy plugin");
        }
        let config = dir.path().join("sluice.toml");
        // Port 0: the service binds a free port and reports it (no race for ports).
        let text = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{body}\n[plugins]\ndir = \"{}\"\ntimeout_ms = 300\nquarantine_after = 3\n[admin]\nlisten = \"127.0.0.1:0\"\n[[admin.tokens]]\nname = \"ops\"\ntoken = \"{ADMIN}\"\n",
            dir.path().join("data").display(),
            plugin_dir.display()
        );
        std::fs::write(&config, text).expect("write config");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let (child, (addr, admin)) = spawn(&config, &env);
        let mut service = Self {
            child,
            addr,
            admin,
            dir,
            config,
            env,
        };
        service.wait_ready();
        service
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("sluice exited early with {status}; log: {}", self.log());
            }
            if let Ok((200, _)) = try_request("GET", &self.url("/health"), &[], Vec::new()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "service not ready; log: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The service's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sluice.log")).unwrap_or_default()
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The plugin directory it watches.
    pub fn plugin_dir(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    /// `http://ADDR/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The URL of `path` on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// SIGKILL, as a crash.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    /// SIGTERM, and waits for the clean shutdown (a last checkpoint syncs the store).
    pub fn stop(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let status = self.child.wait().expect("wait");
        assert!(
            status.success(),
            "sluice exited with {status}; log: {}",
            self.log()
        );
    }

    /// Starts the same service again on the same data.
    pub fn restart(&mut self) {
        (self.child, (self.addr, self.admin)) = spawn(&self.config, &self.env);
        self.wait_ready();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sluice run` and waits for the address it reports on stdout.
fn spawn(config: &Path, env: &[(String, String)]) -> (Child, (SocketAddr, SocketAddr)) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.with_file_name("sluice.log"))
        .expect("log file");
    let extra = env
        .iter()
        .filter(|(k, _)| k == "SLUICE_ARGS")
        .flat_map(|(_, v)| v.split_whitespace());
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(extra)
        .args(["run", "--config", config.to_str().expect("utf-8 path")])
        .envs(env.iter().filter(|(k, _)| k != "SLUICE_ARGS").cloned())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn sluice");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut api = None;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(addr) = line.strip_prefix("listening on ") {
                api = addr.parse::<SocketAddr>().ok();
            }
            if let (Some(api), Some(admin)) = (api, line.strip_prefix("admin listening on ")) {
                let _ = tx.send(admin.parse::<SocketAddr>().map(|admin| (api, admin)));
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(addrs)) => (child, addrs),
        other => {
            let _ = child.kill();
            panic!(
                "sluice did not report its address ({other:?}); log: {}",
                std::fs::read_to_string(config.with_file_name("sluice.log")).unwrap_or_default()
            );
        }
    }
}

/// One HTTP request; (status, body) or the transport error.
pub fn try_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<(u16, String), String> {
    try_request_full(method, url, headers, body).map(|(status, _, body)| (status, body))
}

/// One HTTP request; (status, response headers, body) or the transport error.
pub fn try_request_full(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<(u16, hyper::HeaderMap, String), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let mut req = hyper::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let response_headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((
            status,
            response_headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        ))
    })
}

/// One HTTP request that must get an answer.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Vec<u8>>,
) -> (u16, String) {
    try_request(method, url, headers, body.into()).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// The `Authorization` header of `token`.
pub fn token(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Token {token}"))
}

/// GET with a token, parsed as JSON.
pub fn get_json(url: &str, tok: &str) -> (u16, serde_json::Value) {
    let auth = token(tok);
    let (status, body) = request("GET", url, &[(auth.0, &auth.1)], Vec::new());
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
    )
}

/// Polls `check` until it is true or `timeout` passes.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Every metric of `svc`, tenants named (from the admin API).
pub fn admin_metrics(svc: &Service) -> String {
    let auth = format!("Bearer {ADMIN}");
    request(
        "GET",
        &svc.admin_url("/admin/v1/metrics"),
        &[("Authorization", &auth)],
        Vec::new(),
    )
    .1
}

/// The admin token of every test service (admin `ops`).
pub const ADMIN: &str = "admin-token-0123456789";

/// acme's token.
pub const ACME: &str = "acme-token-1";
/// globex's token.
pub const GLOBEX: &str = "globex-token-1";

/// Writes line protocol through the v2 API.
pub fn write_v2(svc: &Service, tok: &str, precision: &str, body: &str) -> (u16, String) {
    let auth = token(tok);
    request(
        "POST",
        &svc.url(&format!(
            "/api/v2/write?bucket=b&org=o&precision={precision}"
        )),
        &[(auth.0, &auth.1)],
        body.to_owned(),
    )
}

/// A query that must answer 200.
pub fn query(svc: &Service, tok: &str, params: &str) -> serde_json::Value {
    let (status, body) = get_json(&svc.url(&format!("/api/v1/query?{params}")), tok);
    assert_eq!(status, 200, "{body}");
    body
}

/// Points of the first series of a query answer.
pub fn points(answer: &serde_json::Value) -> Vec<(i64, f64)> {
    answer["series"][0]["points"]
        .as_array()
        .map(|pts| {
            pts.iter()
                .map(|p| {
                    (
                        p[0].as_i64().unwrap_or(-1),
                        p[1].as_f64().unwrap_or(f64::NAN),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
