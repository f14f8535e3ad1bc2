//! Memory of large answers: peak RSS of a real `sluice run` while four clients at once read
//! every page of a 300,000-series listing, and then every page of a 2,000,000-point series,
//! against its RSS when idle with the same data (the target: within 2×).
//!
//! `cargo bench --bench listing_memory`. Linux only (reads `/proc/PID/status`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const TOKEN: &str = "bench-token-1";
/// The admin token of the service: its metrics name tenants only on the admin API.
const ADMIN_TOKEN: &str = "bench-admin-token-1";
const SERIES: usize = 300_000;
const POINTS: usize = 2_000_000;
const CLIENTS: usize = 4;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("listing_memory bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// One request over a fresh connection; (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    http_as(addr, TOKEN, method, path, body)
}

fn http_as(
    addr: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut conn = TcpStream::connect(addr)?;
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    conn.write_all(body)?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status")?;
    Ok((status, raw[split + 4..].to_vec()))
}

/// Resident set size of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// Follows `next` cursors through every page of `path`; the number of items in `key`.
fn read_all(
    addr: SocketAddr,
    path: &str,
    count: impl Fn(&serde_json::Value) -> usize,
) -> anyhow::Result<usize> {
    let mut cursor: Option<String> = None;
    let mut n = 0;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}&cursor={c}"),
            None => path.to_owned(),
        };
        let (status, body) = http(addr, "GET", &url, b"")?;
        if status != 200 {
            bail!("{url}: {status} {}", String::from_utf8_lossy(&body));
        }
        let page: serde_json::Value = serde_json::from_slice(&body)?;
        n += count(&page);
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(n),
        }
    }
}

/// Runs `CLIENTS` readers of `path` at once while sampling RSS; (peak RSS, seconds).
fn concurrently(
    pid: u32,
    addr: SocketAddr,
    path: &str,
    want: usize,
    count: fn(&serde_json::Value) -> usize,
) -> anyhow::Result<(u64, f64)> {
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (done, peak) = (done.clone(), peak.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                peak.fetch_max(rss(pid), Ordering::AcqRel);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let started = Instant::now();
    let results: Vec<anyhow::Result<usize>> = std::thread::scope(|s| {
        let readers: Vec<_> = (0..CLIENTS)
            .map(|_| s.spawn(|| read_all(addr, path, count)))
            .collect();
        readers
            .into_iter()
            .map(|r| {
                r.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("reader panicked")))
            })
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Release);
    let _ = sampler.join();
    for r in results {
        let n = r?;
        if n != want {
            bail!("{path}: read {n}, expected {want}");
        }
    }
    Ok((peak.load(Ordering::Acquire), seconds))
}

/// A service in `dir`: its process, API and admin API.
fn start(dir: &std::path::Path) -> anyhow::Result<(Child, SocketAddr, SocketAddr)> {
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[admin.tokens]]\nname = \"bench\"\ntoken = \"{ADMIN_TOKEN}\"\n[plugins]\ndir = \"{}\"\n[[tenants]]\nname = \"bench\"\ntokens = [\"{TOKEN}\"]\nretention_days = 36500\n",
            dir.join("data").display(),
            dir.join("plugins").display()
        ),
    )?;
    std::fs::create_dir_all(dir.join("plugins"))?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting sluice")?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut stdout = BufReader::new(stdout);
    let mut address = |prefix: &str| -> anyhow::Result<SocketAddr> {
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        Ok(line
            .trim()
            .strip_prefix(prefix)
            .with_context(|| format!("no `{prefix}` line"))?
            .parse()?)
    };
    let addr = address("listening on ")?;
    let admin = address("admin listening on ")?;
    Ok((child, addr, admin))
}

fn write_lines(addr: SocketAddr, lines: impl Iterator<Item = String>) -> anyhow::Result<usize> {
    let mut body = String::new();
    let mut n = 0;
    let flush = |body: &mut String| -> anyhow::Result<()> {
        loop {
            let (status, answer) = http(addr, "POST", "/api/v2/write", body.as_bytes())?;
            match status {
                204 => break,
                503 => std::thread::sleep(Duration::from_millis(100)),
                _ => bail!("write: {status} {}", String::from_utf8_lossy(&answer)),
            }
        }
        body.clear();
        Ok(())
    };
    for line in lines {
        body += &line;
        n += 1;
        if n % 10_000 == 0 {
            flush(&mut body)?;
        }
    }
    if !body.is_empty() {
        flush(&mut body)?;
    }
    Ok(n)
}

/// Points stored so far, from the admin API's metrics (which name tenants).
fn stored(admin: SocketAddr) -> anyhow::Result<u64> {
    let (_, body) = http_as(admin, ADMIN_TOKEN, "GET", "/admin/v1/metrics", b"")?;
    Ok(String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix("sluice_points_stored_total{tenant=\"bench\"} "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64)
}

fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut child, addr, admin) = start(dir.path())?;
    let pid = child.id();
    let result = (|| -> anyhow::Result<()> {
        eprintln!("writing {SERIES} series and a series of {POINTS} points...");
        let n = write_lines(
            addr,
            (0..SERIES).map(|i| format!("mem,host=h{i:06} v=1 1\n")),
        )?;
        let m = write_lines(addr, (0..POINTS).map(|i| format!("long v={i} {}\n", 1 + i)))?;
        let deadline = Instant::now() + Duration::from_secs(300);
        while stored(admin)? < (n + m) as u64 {
            if Instant::now() > deadline {
                bail!("points not stored in time");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // Settle: the checkpoint syncs the head into chunks.
        std::thread::sleep(Duration::from_secs(3));
        let idle = rss(pid);
        let series_count = |page: &serde_json::Value| page["series"].as_array().map_or(0, Vec::len);
        let (listing_peak, listing_secs) = concurrently(
            pid,
            addr,
            "/api/v1/series?measurement=mem",
            SERIES,
            series_count,
        )?;
        let point_count = |page: &serde_json::Value| {
            page["series"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| s["points"].as_array().map_or(0, Vec::len))
                .sum()
        };
        let (query_peak, query_secs) = concurrently(
            pid,
            addr,
            "/api/v1/query?measurement=long&field=v&start=0&end=1000000000000",
            POINTS,
            point_count,
        )?;
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        println!(
            "Memory of large answers, {CLIENTS} clients at once, one run (sluice run, release):"
        );
        println!(
            "| phase | peak RSS | × idle RSS ({:.0} MiB) | wall time |",
            mib(idle)
        );
        println!("|---|---|---|---|");
        println!(
            "| {SERIES} series listed in pages of 10,000 | {:.0} MiB | {:.2} | {listing_secs:.1} s |",
            mib(listing_peak),
            listing_peak as f64 / idle as f64
        );
        println!(
            "| {POINTS} raw points read in pages of 100,000 | {:.0} MiB | {:.2} | {query_secs:.1} s |",
            mib(query_peak),
            query_peak as f64 / idle as f64
        );
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}
