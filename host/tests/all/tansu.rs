//! A `tansu` broker (Kafka protocol, sqlite storage) on a free port, in a temporary
//! directory: one per test, so tests can stop and restart theirs. Also used by the Kafka
//! bench (`#[path]`). scripts/kafka-dev.sh installs the binary; `SLUICE_TANSU` names
//! another.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A tansu broker of a test's (or a bench's) own.
pub struct Broker {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

/// The tansu binary: `SLUICE_TANSU`, else where scripts/kafka-dev.sh caches it.
fn tansu() -> PathBuf {
    let path = std::env::var_os("SLUICE_TANSU").map_or_else(
        || {
            let cache = std::env::var_os("SLUICE_CACHE_DIR").map_or_else(
                || {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/sluice")
                },
                PathBuf::from,
            );
            cache.join("tansu-0.6.0/bin/tansu")
        },
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "no tansu broker at {}: run `scripts/kafka-dev.sh install` (scripts/test.sh does)",
        path.display()
    );
    path
}

impl Broker {
    /// Starts a broker on a free port, with sqlite storage in a fresh directory.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut broker = Self {
            child: None,
            port,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        broker.resume();
        broker
    }

    /// Its process id (for the bench's CPU accounting).
    #[allow(dead_code)] // Used by the Kafka bench, which includes this file; not by tests.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `host:port`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts it again on the same port and storage.
    pub fn resume(&mut self) {
        let url = format!("tcp://{}", self.address());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .expect("log");
        let child = Command::new(tansu())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            // tansu reads ./.env when present: its own directory has none.
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it (SIGTERM), as an operator or a crash of its host would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
