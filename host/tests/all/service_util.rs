//! A real `sluice run` process for end-to-end tests, and a small blocking HTTP client.

use std::net::{SocketAddr, TcpListener};
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
    dir: tempfile::TempDir,
    config: PathBuf,
}

/// The tenants every test service has.
pub const TENANTS: &str = r#"
[[tenants]]
name = "acme"
tokens = ["acme-token-1"]

[[tenants]]
name = "globex"
tokens = ["globex-token-1"]
"#;

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

impl Service {
    /// Starts a service whose config is `body` (tenants, stages...) plus listen address,
    /// data and plugin directories; `plugins` are copied into its plugin directory.
    pub fn start(body: &str, plugins: &[&str]) -> Self {
        Self::start_with(body, plugins, |_| {})
    }

    /// As [`Service::start`], calling `prepare` with the (not yet created) data directory
    /// before the process starts.
    pub fn start_with(body: &str, plugins: &[&str], prepare: impl FnOnce(&Path)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        prepare(&dir.path().join("data"));
        let plugin_dir = dir.path().join("plugins");
        std::fs::create_dir_all(&plugin_dir).expect("plugin dir");
        for name in plugins {
            std::fs::copy(plugin_file(name), plugin_dir.join(format!("{name}.wasm")))
                .expect("copy plugin");
        }
        let addr = free_port();
        let config = dir.path().join("sluice.toml");
        let text = format!(
            "listen = \"{addr}\"\ndata_dir = \"{}\"\n{body}\n[plugins]\ndir = \"{}\"\ntimeout_ms = 300\nquarantine_after = 3\n",
            dir.path().join("data").display(),
            plugin_dir.display()
        );
        std::fs::write(&config, text).expect("write config");
        let mut service = Self {
            child: spawn(&config),
            addr,
            dir,
            config,
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

    /// `http://ADDR/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGKILL, as a crash.
    pub fn kill_9(&mut self) {
        self.child.kill().expect("kill");
        self.child.wait().expect("wait");
    }

    /// Starts the same service again on the same data.
    pub fn restart(&mut self) {
        self.child = spawn(&self.config);
        self.wait_ready();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(config: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.with_file_name("sluice.log"))
        .expect("log file");
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--config", config.to_str().expect("utf-8 path")])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn sluice")
}

/// One HTTP request; (status, body) or the transport error.
pub fn try_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<(u16, String), String> {
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
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
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
