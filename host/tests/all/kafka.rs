//! The Kafka transport against a real Kafka-protocol broker: `tansu` with sqlite storage,
//! one broker per test on its own port and directory (scripts/kafka-dev.sh installs it;
//! `SLUICE_TANSU` names the binary).

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::service_util::{
    ACME, Service, TENANTS, eventually, points, query, try_request, write_v2,
};
use crate::tansu::Broker;

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
    let health = || {
        try_request("GET", &svc.url("/health"), &[], Vec::new())
            .ok()
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .unwrap_or_default()
    };
    assert!(
        eventually(Duration::from_secs(10), || health()["status"] == "degraded"),
        "/health does not say the brokers are gone: {}",
        health()
    );
    assert!(
        health()["transport"]
            .as_str()
            .is_some_and(|t| t.starts_with("brokers unreachable since")),
        "{}",
        health()
    );
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
    assert!(
        eventually(Duration::from_secs(10), || health()["status"] == "ok"),
        "{}",
        health()
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

/// The scale-out tenant: 1-minute rollups of cpu usage and an alert on their means.
const SCALE_TENANT: &str = r#"
[windows]
idle_after_secs = 3600

[[tenants]]
name = "acme"
tokens = ["acme-token-1"]
retention_days = 36500
tiers = { "1m" = "36500d" }

[[tenants.rollups]]
name = "cpu-1m"
measurement = "cpu"
window = { tumbling = "1m" }
aggregates = ["count", "sum", "min", "max", "mean"]
grace = "20s"
tier = "1m"

[[tenants.alerts]]
name = "cpu-busy"
plugin = "threshold-alert"
measurement = "cpu"
field = "usage_user"
window_secs = 60
grace_secs = 20
aggregates = ["mean"]
params = { aggregate = "mean", warn_above = "70", crit_above = "85", hysteresis = "5" }
"#;

/// Event time of the scale-out input (seconds): a fixed past, so no clock closes windows.
const BASE: i64 = 1_700_000_000;
const PARTITIONS: u32 = 4;
const SERIES: i64 = 24;
const BATCHES: i64 = 30;

/// Batch `b` of the input: 30 s of every series, a point each 5 s.
fn batch(b: i64) -> String {
    (0..6)
        .flat_map(|step| {
            let t = BASE + b * 30 + step * 5;
            (0..SERIES).map(move |h| {
                let v = 50.0 + 45.0 * ((t - BASE) as f64 / 97.0 + h as f64).sin();
                format!("cpu,host=h{h} usage_user={v:.3} {t}\n")
            })
        })
        .collect()
}

/// One point per partition an hour after the input: every window of the input closes.
fn closing_ticks() -> String {
    let acme = sluice::tenant::TenantId::new("acme");
    let mut ticks = Vec::new();
    for p in 0..PARTITIONS {
        let line = (0..)
            .map(|k| format!("tick,k=k{k} v=1 {}\n", BASE + 3600))
            .find(|line| {
                let point = &crate::common::points(line)[0];
                sluice::transport::partition_for(&acme, point, PARTITIONS) == p
            })
            .expect("a tag for every partition");
        ticks.push(line);
    }
    ticks.concat()
}

/// The body of a service of the scale-out test on `broker`.
fn scale_body(broker: &Broker, prefix: &str) -> String {
    format!(
        "{}[transport.properties]\n\"consumer.session.timeout.ms\" = \"6000\"\n\"consumer.heartbeat.interval.ms\" = \"500\"\n{SCALE_TENANT}",
        kafka_transport(broker, prefix, PARTITIONS)
    )
}

/// Waits until the group has committed everything (its lag, in `svc`'s metrics, is 0 on
/// every partition).
fn drained(svc: &Service) {
    let lag_zero = || {
        let Ok((200, metrics)) = try_request("GET", &svc.url("/metrics"), &[], Vec::new()) else {
            return false;
        };
        let lags: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("sluice_transport_lag_records{"))
            .collect();
        lags.len() == PARTITIONS as usize && lags.iter().all(|l| l.ends_with(" 0"))
    };
    // The lag is measured each second: wait for a measurement after the last write.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        eventually(Duration::from_secs(60), lag_zero),
        "the group did not commit everything; log: {}",
        svc.log()
    );
}

/// Every rollup row (series, window start) → values, and every alert, in the store of a
/// stopped service's data directory.
type Results = (
    std::collections::BTreeMap<(String, i64), String>,
    std::collections::BTreeSet<String>,
);

fn results(data: &std::path::Path) -> Results {
    use sluice::store::{EmbeddedStore, SeriesFilter, Store};
    let store = EmbeddedStore::open(&data.join("store")).expect("store");
    let acme = sluice::tenant::TenantId::new("acme");
    let mut rows = std::collections::BTreeMap::new();
    let series = store
        .rollup_series_page(&acme, "1m", &SeriesFilter::default(), None, 10_000)
        .expect("series")
        .series;
    for s in series {
        let page = store
            .read_rollups(&acme, "1m", &s, 0..i64::MAX, 100_000)
            .expect("rows");
        for (start, end, values) in page.rows {
            rows.insert((format!("{s:?}"), start), format!("{end} {values:?}"));
        }
    }
    let alerts = store
        .alerts(&acme, 0..i64::MAX)
        .expect("alerts")
        .iter()
        .map(|a| format!("{a:?}"))
        .collect();
    (rows, alerts)
}

#[test]
fn two_processes_split_the_partitions_and_one_killed_mid_stream_changes_no_result() {
    let broker = Broker::start();
    let write = |svc: &Service, body: &str| {
        let (status, answer) = write_v2(svc, ACME, "s", body);
        assert_eq!(status, 204, "{answer}; log: {}", svc.log());
    };

    // The reference: one process over the whole input.
    let mut single = Service::start(&scale_body(&broker, "single."), &["threshold-alert"]);
    for b in 0..BATCHES {
        write(&single, &batch(b));
    }
    write(&single, &closing_ticks());
    drained(&single);
    single.stop();
    let (rows, alerts) = results(&single.data_dir());
    // 15 minutes of input from 20 s past a minute: 16 windows a series.
    assert_eq!(
        rows.len() as i64,
        SERIES * (BATCHES / 2 + 1),
        "every series' every minute"
    );
    assert!(!alerts.is_empty(), "the input makes alerts fire");

    // Two processes of one group; the first killed halfway through the input.
    let mut a = Service::start(&scale_body(&broker, "scale."), &["threshold-alert"]);
    let mut b = Service::start(&scale_body(&broker, "scale."), &["threshold-alert"]);
    let split = |svc: &Service| {
        let metrics = try_request("GET", &svc.url("/metrics"), &[], Vec::new())
            .map(|r| r.1)
            .unwrap_or_default();
        metrics.lines().any(|l| l == "sluice_partitions_owned 2")
    };
    assert!(
        eventually(Duration::from_secs(30), || split(&a) && split(&b)),
        "the partitions were not split; logs: {}\n{}",
        a.log(),
        b.log()
    );
    for i in 0..BATCHES / 2 {
        write(if i % 2 == 0 { &a } else { &b }, &batch(i));
    }
    // Let the first process save its partitions' states and commit (every 5 s), then
    // kill it, and write on.
    std::thread::sleep(Duration::from_secs(7));
    a.kill_9();
    for i in BATCHES / 2..BATCHES * 3 / 4 {
        write(&b, &batch(i));
    }
    // A supervisor starts a replacement once the dead member's session (6 s) is over:
    // tansu 0.6 evicts a dead member only when someone joins after that (Kafka evicts it
    // by itself), and the group then splits the partitions between the two live ones.
    std::thread::sleep(Duration::from_secs(7));
    let mut c = Service::start(&scale_body(&broker, "scale."), &["threshold-alert"]);
    for i in BATCHES * 3 / 4..BATCHES {
        write(&c, &batch(i));
    }
    write(&c, &closing_ticks());
    drained(&c);
    c.stop();
    b.stop();
    // The replacement resumed the killed process's partitions mid-stream, from their
    // committed offsets and saved states.
    let resumed = |log: &str| {
        log.lines().any(|l| {
            l.contains("Partition assigned.")
                && l.contains("committed=")
                && !l.contains("committed=0 ")
        })
    };
    assert!(
        resumed(&c.log()),
        "no partition moved mid-stream; logs: {}\n{}",
        a.log(),
        c.log()
    );

    let (rows_a, alerts_a) = results(&a.data_dir());
    let (rows_b, alerts_b) = results(&b.data_dir());
    let (rows_c, alerts_c) = results(&c.data_dir());
    assert!(!rows_a.is_empty(), "the killed process had stored windows");
    let mut merged = rows_b.clone();
    for (key, values) in rows_a.into_iter().chain(rows_c) {
        if let Some(other) = merged.get(&key) {
            assert_eq!(
                other, &values,
                "a window stored twice (before the kill and replayed) differs: {key:?}"
            );
        }
        merged.insert(key, values);
    }
    let differing: Vec<_> = rows
        .iter()
        .filter(|(key, values)| merged.get(*key) != Some(values))
        .map(|(key, values)| (key, values, merged.get(key)))
        .take(3)
        .collect();
    assert!(
        differing.is_empty() && merged.len() == rows.len(),
        "rollups differ from the single process's ({} rows against {}); first: {differing:?}",
        merged.len(),
        rows.len()
    );
    let merged_alerts: std::collections::BTreeSet<String> = alerts_a
        .into_iter()
        .chain(alerts_b)
        .chain(alerts_c)
        .collect();
    assert_eq!(merged_alerts, alerts, "alerts equal the single process's");
}
