//! What the benchmarks against real peers share (`ingest`, `prometheus`, `storage`): Sluice
//! in-process on its own runtime, peers (InfluxDB, VictoriaMetrics, Prometheus) as child
//! processes on free loopback ports with temp data directories, both restartable on their
//! data, one HTTP client, CPU accounting from /proc, and number formatting.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, HeaderName};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sluice::config::Config;

/// The tenant of the in-process Sluice and its token.
pub const TENANT: &str = "bench";
pub const TOKEN: &str = "bench-token-0001";
/// The admin token of the in-process Sluice: its metrics name tenants only there.
pub const ADMIN_TOKEN: &str = "bench-admin-token-0001";

/// Bounds on waiting: one request, a server start (Sluice compiles its plugins), and a
/// clean stop (a peer flushing its buffers on SIGTERM).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const START_LIMIT: Duration = Duration::from_secs(60);
pub const STOP_LIMIT: Duration = Duration::from_secs(60);

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// One request with the whole answer body, bounded in time. `headers` besides
/// `Authorization` (the remote-write ones).
pub async fn send_with(
    client: &HttpClient,
    method: Method,
    uri: &str,
    auth: Option<&str>,
    headers: &[(HeaderName, &str)],
    body: Bytes,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(auth) = auth {
        request = request.header(AUTHORIZATION, auth);
    }
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    let request = request.body(Full::new(body))?;
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status();
        // Reading the body to its end returns the connection to the keep-alive pool.
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .context("request timed out")?
}

/// One request with the whole answer body, bounded in time.
pub async fn send(
    client: &HttpClient,
    method: Method,
    uri: &str,
    auth: Option<&str>,
    body: Bytes,
) -> anyhow::Result<(StatusCode, Bytes)> {
    send_with(client, method, uri, auth, &[], body).await
}

/// A path as a quoted TOML string, escapes and all.
pub fn toml_string(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

pub fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Writes back what earlier servers of the run left dirty, and what deleting their data
/// directories freed (the disk here is mounted with online discard), before the next
/// server starts: otherwise that writeback lands in the next server's fsyncs, and a
/// latency measured after a bulk run pays for it.
pub fn settle_disk() {
    if let Err(error) = Command::new("sync").status() {
        eprintln!(
            "(could not run sync: {error}; the next measurement may pay for the last one's writeback)"
        );
    }
}

/// Fails with `hint` unless `program args...` runs and exits 0.
pub fn require(program: &str, args: &[&str], hint: &str) -> anyhow::Result<()> {
    match Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Ok(()),
        _ => bail!("`{program}` is not installed. {hint}"),
    }
}

/// The address of a running server (of a bench's own kinds `S`) and what a bench reads of
/// it.
#[derive(Clone, Copy)]
pub struct Endpoint<S> {
    pub server: S,
    pub addr: SocketAddr,
    /// Sluice's admin API (its metrics say what its pipeline stored), when this is Sluice.
    pub admin: Option<SocketAddr>,
    /// The server's process when it isn't the bench's, for CPU accounting.
    pub pid: Option<u32>,
}

// ---- Sluice ----------------------------------------------------------------------------

/// Sluice on its own runtime and thread, as a separate process would be, with a temp data
/// directory: one tenant (`TENANT`, `TOKEN`) configured by `tenant` (TOML inside its
/// `[[tenants]]` table: keys such as `retention_days`, then `[[tenants.stages]]` tables;
/// empty for none), plugins from `plugins`. It can be stopped gracefully and started again
/// on the same data ([`SluiceServer::restart`]).
pub struct SluiceServer {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
    /// The configuration, kept to start again on the same data.
    config: String,
    dir: tempfile::TempDir,
}

/// A running service: its addresses, how to stop it, and its thread.
struct Launched {
    bound: sluice::service::Bound,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: JoinHandle<anyhow::Result<()>>,
}

impl SluiceServer {
    pub fn start(
        rt: &tokio::runtime::Runtime,
        plugins: &Path,
        tenant: &str,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let config = format!(
            r#"
listen = "127.0.0.1:0"
data_dir = {data}

[admin]
listen = "127.0.0.1:0"
[[admin.tokens]]
name = "bench"
token = "{ADMIN_TOKEN}"

[plugins]
dir = {plugins}

[[tenants]]
name = "{TENANT}"
tokens = ["{TOKEN}"]
{tenant}
"#,
            data = toml_string(&dir.path().join("data")),
            plugins = toml_string(plugins),
        );
        let launched = launch(rt, &config)?;
        Ok(Self {
            addr: launched.bound.api,
            admin: launched.bound.admin,
            stop: Some(launched.stop),
            thread: Some(launched.thread),
            config,
            dir,
        })
    }

    /// Where the service keeps its data (`data_dir`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the service gracefully (when it runs), then starts it again on the same data,
    /// on new ports.
    pub fn restart(&mut self, rt: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        self.shutdown()?;
        let launched = launch(rt, &self.config)?;
        self.addr = launched.bound.api;
        self.admin = launched.bound.admin;
        self.stop = Some(launched.stop);
        self.thread = Some(launched.thread);
        Ok(())
    }

    /// Stops the service gracefully: it drains its pipeline and closes its log and store.
    pub fn shutdown(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result.context("Sluice"),
            Some(Err(_)) => bail!("Sluice panicked"),
            None => Ok(()),
        }
    }
}

/// Starts the service of `config` on its own thread and runtime; returns once it serves.
fn launch(rt: &tokio::runtime::Runtime, config: &str) -> anyhow::Result<Launched> {
    let config = Config::parse(config, Path::new("bench.toml"))?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(sluice::service::run(config, Some(ready_tx), async {
            let _ = stop_rx.await;
        }))
    });
    // `run` either reports its address or returns an error, which drops `ready_tx`.
    let bound = match rt.block_on(async { tokio::time::timeout(START_LIMIT, ready_rx).await }) {
        Ok(Ok(bound)) => bound,
        Ok(Err(_)) => {
            let error = match thread.join() {
                Ok(Err(error)) => error,
                _ => anyhow::anyhow!("the service stopped before serving"),
            };
            return Err(error.context("starting Sluice"));
        }
        Err(_) => bail!("Sluice not serving after {START_LIMIT:?}"),
    };
    Ok(Launched {
        bound,
        stop: stop_tx,
        thread,
    })
}

impl Drop for SluiceServer {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Points the in-process Sluice's pipeline has stored so far, from its admin API's metrics
/// (they name tenants there).
pub async fn sluice_stored_points(client: &HttpClient, admin: SocketAddr) -> anyhow::Result<u64> {
    let uri = format!("http://{admin}/admin/v1/metrics");
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let (status, body) = send(client, Method::GET, &uri, Some(&auth), Bytes::new()).await?;
    if status != StatusCode::OK {
        bail!("Sluice /admin/v1/metrics: {status}");
    }
    let text = String::from_utf8_lossy(&body);
    let label = format!("tenant=\"{TENANT}\"");
    // Absent until the pipeline stores its first point.
    Ok(text
        .lines()
        .find(|l| l.starts_with("sluice_points_stored_total{") && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0))
}

// ---- peers as child processes ----------------------------------------------------------

/// How a restartable peer is started: the command that serves the data in `dir` on `addr`
/// (it may write its config file into `dir`).
pub type Launch = fn(dir: &Path, addr: SocketAddr) -> anyhow::Result<Command>;

/// A peer server as a child process with its storage and log in a temp directory, listening
/// on `addr`; killed on drop.
pub struct ChildServer {
    pub name: &'static str,
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    /// How to start it again on the same data, when it was started by [`Launch`].
    launch: Option<Launch>,
}

impl ChildServer {
    /// Starts `command` (its stdout and stderr go to `<dir>/server.log`).
    pub fn spawn(
        name: &'static str,
        mut command: Command,
        addr: SocketAddr,
        dir: tempfile::TempDir,
    ) -> anyhow::Result<Self> {
        let child = spawn_logged(name, &mut command, dir.path())?;
        Ok(Self {
            name,
            child,
            addr,
            dir,
            launch: None,
        })
    }

    /// Starts `launch` in a fresh temp directory on a free port; restartable.
    fn launched(name: &'static str, launch: Launch) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let addr = free_port()?;
        let mut server = Self::spawn(name, launch(dir.path(), addr)?, addr, dir)?;
        server.launch = Some(launch);
        Ok(server)
    }

    /// VictoriaMetrics single-node (Debian `victoria-metrics`, 1.79.5): remote write on
    /// `/api/v1/write`, line protocol on `/write`, the Prometheus query API on `/api/v1/`.
    /// Ready when `/health` answers 200. Its data is under `<dir>/data`.
    pub fn victoria_metrics() -> anyhow::Result<Self> {
        Self::launched("VictoriaMetrics 1.79.5", victoria_metrics_command)
    }

    /// InfluxDB 1.6.7 (Debian `influxdb`) with a generated config: line protocol on
    /// `/write`, InfluxQL on `/query`. Ready when `/ping` answers 204; then create the
    /// database ([`create_influx_database`]). Its data is under `<dir>/meta`, `<dir>/data`
    /// and `<dir>/wal`.
    pub fn influxdb() -> anyhow::Result<Self> {
        Self::launched("InfluxDB 1.6.7", influxdb_command)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Waits until `GET path` answers `expect`.
    pub async fn ready(&mut self, path: &str, expect: StatusCode) -> anyhow::Result<()> {
        let client = http_client();
        let deadline = Instant::now() + START_LIMIT;
        let uri = format!("http://{}{path}", self.addr);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited with {status}; its log:\n{}",
                    self.name,
                    self.log()
                );
            }
            if let Ok((status, _)) = send(&client, Method::GET, &uri, None, Bytes::new()).await
                && status == expect
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after {START_LIMIT:?}; its log:\n{}",
                    self.name,
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server cleanly: SIGTERM, then waits for it to flush and exit (killed and an
    /// error past `STOP_LIMIT`). Nothing to do when it has exited already.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let pid = self.pid().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -TERM {pid} ({}) failed: {status}", self.name);
        }
        let deadline = Instant::now() + STOP_LIMIT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    eprintln!("{} exited with {status} on SIGTERM", self.name);
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "{} did not stop within {STOP_LIMIT:?} of SIGTERM; its log:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server cleanly (when it runs), then starts it again on the same data, on a
    /// new port (wait for it with [`ChildServer::ready`]). Only for servers started by a
    /// [`Launch`].
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let Some(launch) = self.launch else {
            bail!("{} can't be restarted: it has no launcher", self.name);
        };
        self.stop()?;
        self.addr = free_port()?;
        let mut command = launch(self.dir.path(), self.addr)?;
        self.child = spawn_logged(self.name, &mut command, self.dir.path())?;
        Ok(())
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `command` with stdout and stderr appended to `<dir>/server.log` (a restart keeps
/// the earlier run's log).
fn spawn_logged(name: &str, command: &mut Command, dir: &Path) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))?;
    command
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {name}"))
}

fn victoria_metrics_command(dir: &Path, addr: SocketAddr) -> anyhow::Result<Command> {
    let mut command = Command::new("victoria-metrics");
    command
        .arg(format!("-storageDataPath={}", dir.join("data").display()))
        .arg(format!("-httpListenAddr={addr}"))
        // Defaults otherwise. By default queries leave out the last 30 s (samples
        // still arriving from scrapes); these benches write their data at once and read
        // it right after, so nothing is left out. It changes which samples a query sees,
        // not how fast it runs.
        .arg("-search.latencyOffset=0s");
    Ok(command)
}

fn influxdb_command(dir: &Path, http: SocketAddr) -> anyhow::Result<Command> {
    let rpc = free_port()?;
    let path = |name: &str| toml_string(&dir.join(name));
    // Defaults otherwise (WAL fsync on every write, like Sluice's log). Request and query
    // logs are off because Sluice logs nothing per request in these benches. Debian's build
    // calls the reporting switch `reporting-enabled`, upstream `reporting-disabled`.
    let config = format!(
        r#"reporting-disabled = true
reporting-enabled = false
bind-address = "{rpc}"

[meta]
  dir = {meta}

[data]
  dir = {data}
  wal-dir = {wal}
  query-log-enabled = false

[http]
  bind-address = "{http}"
  log-enabled = false
"#,
        meta = path("meta"),
        data = path("data"),
        wal = path("wal"),
    );
    let config_path = dir.join("influxdb.conf");
    std::fs::write(&config_path, config)?;
    let mut command = Command::new("influxd");
    command.arg("run").arg("-config").arg(&config_path);
    Ok(command)
}

/// Creates database `db` on the InfluxDB at `addr` (a no-op when it exists).
pub async fn create_influx_database(addr: SocketAddr, db: &str) -> anyhow::Result<()> {
    let create = format!(
        "http://{addr}/query?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("q", &format!("CREATE DATABASE {db}"))
            .finish()
    );
    match send(&http_client(), Method::POST, &create, None, Bytes::new()).await? {
        (StatusCode::OK, _) => Ok(()),
        (status, body) => bail!("InfluxDB CREATE DATABASE: {status} {body:?}"),
    }
}

// ---- CPU accounting --------------------------------------------------------------------

/// CPU clock ticks from /proc: the machine's busy and total time, and this process's
/// (client and in-process Sluice) plus the server child's. The machine is shared, so each
/// result shows how much of it other processes took during the window.
#[derive(Clone, Copy)]
pub struct Cpu {
    busy: u64,
    total: u64,
    ours: u64,
}

/// Shares of the whole machine (all cores) during a window.
#[derive(Clone, Copy)]
pub struct CpuShare {
    pub ours: f64,
    pub others: f64,
}

impl Cpu {
    pub fn now(child: Option<u32>) -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        // `cpu user nice system idle iowait irq softirq steal ...`; steal counts as busy:
        // it is CPU someone else got.
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|t| t.parse().ok())
            .collect();
        let total: u64 = ticks.iter().sum();
        let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
        Self {
            busy: total.saturating_sub(idle),
            total,
            ours: process_ticks("self") + child.map_or(0, |pid| process_ticks(&pid.to_string())),
        }
    }

    pub fn share_since(self, earlier: Cpu) -> CpuShare {
        let total = self.total.saturating_sub(earlier.total).max(1) as f64;
        let busy = self.busy.saturating_sub(earlier.busy);
        let ours = self.ours.saturating_sub(earlier.ours);
        CpuShare {
            ours: ours as f64 / total,
            others: busy.saturating_sub(ours) as f64 / total,
        }
    }
}

/// utime + stime of a process: fields 14 and 15 of its stat, counted after the
/// parenthesised command name (which may contain spaces).
fn process_ticks(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            Some(
                rest.split_whitespace()
                    .skip(11)
                    .take(2)
                    .filter_map(|t| t.parse::<u64>().ok())
                    .sum(),
            )
        })
        .unwrap_or(0)
}

/// `ours/others`, each in percent of the whole machine (all cores).
pub fn cpu(share: CpuShare) -> String {
    format!("{:.0}%/{:.0}%", share.ours * 100.0, share.others * 100.0)
}

pub const CPU_LEGEND: &str = "CPU = share of the whole machine (all cores) used during the \
     window by this bench with its server / by other processes (the machine is shared)";

// ---- report ----------------------------------------------------------------------------

/// `1234567.8` → `1,234,568`.
pub fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `a/b` with two decimals, or three when below 0.1 (a latency 200 times lower is not 0.00).
pub fn ratio(a: f64, b: f64) -> String {
    match a / b {
        r if b <= 0.0 || !r.is_finite() => "-".into(),
        r if r < 0.095 => format!("{r:.3}"),
        r => format!("{r:.2}"),
    }
}
