//! The Kafka transport against a real Kafka-protocol broker: `tansu` with sqlite storage,
//! one broker per test on its own port and directory (scripts/kafka-dev.sh installs it;
//! `SLUICE_TANSU` names the binary).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::service_util::{
    ACME, Service, TENANTS, eventually, points, query, try_request, write_v2,
};

/// A tansu broker of this test's own.
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

/// The `[transport]` section of a service on `broker`, topics under `prefix`.
pub fn kafka_transport(broker: &Broker, prefix: &str, partitions: u32) -> String {
    format!(
        "[transport]\nkind = \"kafka\"\nbrokers = \"{}\"\ntopic_prefix = \"{prefix}\"\npartitions = {partitions}\ngroup = \"{prefix}group\"\nappend_timeout_ms = 2000\n",
        broker.address()
    )
}

fn client(broker: &Broker) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", broker.address());
    config
}

/// Every message of `topic`'s partitions `0..partitions`, from the start, read until
/// `until` holds of them (or 20 s).
fn messages(
    broker: &Broker,
    topic: &str,
    partitions: i32,
    until: impl Fn(&[Vec<u8>]) -> bool,
) -> Vec<Vec<u8>> {
    let consumer: BaseConsumer = client(broker)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !until(&out) && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(m.payload().unwrap_or_default().to_vec());
        }
    }
    out
}

#[test]
fn ingest_answers_503_while_the_broker_is_down_and_recovers_with_nothing_acknowledged_lost() {
    let mut broker = Broker::start();
    let body = format!("{}{TENANTS}", kafka_transport(&broker, "outage.", 2));
    let svc = Service::start(&body, &[]);
    let write = |i: i64| write_v2(&svc, ACME, "s", &format!("m,host=h{} v={i} {i}\n", i % 3));
    let mut acknowledged = Vec::new();
    for i in 1..=10 {
        let (status, body) = write(i);
        assert_eq!(status, 204, "{body}");
        acknowledged.push(i);
    }

    broker.stop();
    for i in 11..=13 {
        let (status, body) = write(i);
        assert_eq!(
            status, 503,
            "a write the broker can't take is never acknowledged: {body}"
        );
    }

    broker.resume();
    let mut i = 14;
    assert!(
        eventually(Duration::from_secs(60), || {
            i += 1;
            let (status, _) = write(i);
            if status == 204 {
                acknowledged.push(i);
            }
            status == 204
        }),
        "ingest did not recover; log: {}",
        svc.log()
    );
    for i in i + 1..i + 5 {
        assert_eq!(write(i).0, 204);
        acknowledged.push(i);
    }
    // Every acknowledged point is stored (the 503s may or may not be: never promised).
    let stored = || {
        let answer = query(
            &svc,
            ACME,
            "measurement=m&field=v&start=0&end=1000000000000",
        );
        let mut got: Vec<i64> = answer["series"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["points"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p[1].as_f64())
            .map(|v| v as i64)
            .collect();
        got.sort_unstable();
        got
    };
    assert!(
        eventually(Duration::from_secs(30), || acknowledged
            .iter()
            .all(|a| stored().contains(a))),
        "acknowledged {acknowledged:?}, stored {:?}; log: {}",
        stored(),
        svc.log()
    );
    assert_eq!(
        try_request("GET", &svc.url("/health"), &[], Vec::new()).map(|r| r.0),
        Ok(200)
    );
}

#[test]
fn bytes_of_a_foreign_producer_go_to_the_dead_letter_topic_and_processing_goes_on() {
    let broker = Broker::start();
    let body = format!("{}{TENANTS}", kafka_transport(&broker, "foreign.", 2));
    let svc = Service::start(&body, &[]);
    let producer: ThreadedProducer<DefaultProducerContext> =
        client(&broker).create().expect("producer");
    producer
        .send(
            BaseRecord::to("foreign.points")
                .partition(0)
                .key("someone")
                .payload("{\"not\": \"a sluice record\"}"),
        )
        .map_err(|(e, _)| e)
        .expect("send");
    producer.flush(Duration::from_secs(10)).expect("flush");
    assert_eq!(write_v2(&svc, ACME, "ns", "after v=1 1\n").0, 204);
    let after = || {
        points(&query(
            &svc,
            ACME,
            "measurement=after&field=v&start=0&end=10",
        ))
    };
    assert!(
        eventually(Duration::from_secs(20), || after().len() == 1),
        "log: {}",
        svc.log()
    );
    let letters = messages(&broker, "foreign.dead-letters", 2, |m| !m.is_empty());
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter: serde_json::Value = serde_json::from_slice(&letters[0]).expect("json");
    assert_eq!(letter["stage"], "transport");
    assert!(
        letter["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("record 0/0 does not decode")),
        "{letter}"
    );
    assert_eq!(letter["items"][0], "{\"not\": \"a sluice record\"}");
}
