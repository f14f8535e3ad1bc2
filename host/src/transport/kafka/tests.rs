//! The Kafka transport against librdkafka's in-process mock cluster: appends, group
//! assignment and resumption at commits, the state changelog, refused partition counts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use super::producer::Message;
use super::*;
use crate::config::KafkaConfig;
use crate::lineproto::{Precision, parse};
use crate::telemetry::Metrics;
use crate::tenant::TenantId;
use crate::transport::{
    GroupConsumer, Partition, PartitionReader, PartitionState, Producer, Rebalance, Record,
    StateLog,
};

const PARTITIONS: u32 = 2;

/// A mock cluster with the topics of prefix `t.` created (the mock can't create them
/// through the admin API), and a configuration for it.
fn cluster(partitions: i32) -> (MockCluster<'static, DefaultProducerContext>, KafkaConfig) {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let topics = Topics::new("t.");
    for topic in [
        &topics.points,
        &topics.alerts,
        &topics.late,
        &topics.dead_letters,
        &topics.state,
    ] {
        cluster.create_topic(topic, partitions, 1).expect("topic");
    }
    let config = KafkaConfig {
        brokers: cluster.bootstrap_servers(),
        topic_prefix: "t.".into(),
        partitions: PARTITIONS,
        replication: 1,
        group: "g".into(),
        append_timeout_ms: 5_000,
        // The mock cluster notices a member gone only when its session times out.
        properties: properties(&[
            ("consumer.session.timeout.ms", "6000"),
            ("consumer.heartbeat.interval.ms", "500"),
        ]),
    };
    (cluster, config)
}

/// `transport.properties` of `pairs`.
fn properties(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, crate::tenant::Secret> {
    pairs
        .iter()
        .map(|(k, v)| {
            let secret = serde_json::from_value((*v).into()).expect("secret");
            ((*k).to_owned(), secret)
        })
        .collect()
}

fn record(tenant: &str, lp: &str) -> Record {
    Record::new(
        TenantId::new(tenant),
        parse(lp, Precision::Nanoseconds, 0).0,
    )
}

/// Collects what the group assigns and revokes.
#[derive(Default)]
struct Seen {
    readers: Mutex<Vec<Box<dyn PartitionReader>>>,
    revoked: Mutex<Vec<Partition>>,
}

impl Rebalance for Seen {
    fn assigned(&self, readers: Vec<Box<dyn PartitionReader>>) {
        self.readers.lock().expect("lock").extend(readers);
    }
    fn revoked(&self, partitions: &[Partition]) {
        self.revoked.lock().expect("lock").extend(partitions);
    }
}

/// Polls `member` until it owns `count` partitions: their readers.
fn assigned(member: &mut KafkaConsumer, count: usize) -> Vec<Box<dyn PartitionReader>> {
    let seen = Arc::new(Seen::default());
    let rebalance: Arc<dyn Rebalance> = seen.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.readers.lock().expect("lock").len() < count {
        assert!(
            Instant::now() < deadline,
            "no assignment of {count}: {} readers, revoked {:?}",
            seen.readers.lock().expect("lock").len(),
            seen.revoked.lock().expect("lock")
        );
        member
            .poll(&rebalance, Duration::from_millis(100))
            .expect("poll");
    }
    let mut readers = std::mem::take(&mut *seen.readers.lock().expect("lock"));
    readers.sort_by_key(|r| r.partition());
    readers
}

/// Reads `reader` until `count` records came.
fn read(reader: &mut dyn PartitionReader, count: usize) -> Vec<(u64, Record)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while out.len() < count {
        assert!(Instant::now() < deadline, "only {} records", out.len());
        for d in reader.read(10, Duration::from_millis(100)).expect("read") {
            out.push((d.offset, d.record.expect("decodes")));
        }
    }
    out
}

#[test]
fn appends_are_read_by_the_group_and_a_new_member_resumes_at_the_commit() {
    let (_cluster, config) = cluster(2);
    let topics = Topics::new("t.");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime
        .block_on(ensure_topics(&config, &topics))
        .expect("topics are there");
    let producer = KafkaProducer::new(&config, &topics, Arc::new(Metrics::default())).expect("p");
    producer
        .append(vec![
            (0, record("a", "m v=1 1")),
            (1, record("b", "m v=2 2")),
            (0, record("a", "m v=3 3")),
        ])
        .expect("append");

    let mut member = KafkaConsumer::new(&config, &topics).expect("consumer");
    let mut readers = assigned(&mut member, 2);
    assert_eq!(
        readers
            .iter()
            .map(|r| (r.partition(), r.committed()))
            .collect::<Vec<_>>(),
        [(0, 0), (1, 0)]
    );
    assert_eq!(readers[0].end().expect("end"), 2);
    let got = read(readers[0].as_mut(), 2);
    assert_eq!(
        got,
        [(0, record("a", "m v=1 1")), (1, record("a", "m v=3 3"))]
    );
    // A seek reads again from there.
    readers[0].seek(1).expect("seek");
    assert_eq!(read(readers[0].as_mut(), 1)[0].0, 1);
    member.committer().commit(&[(0, 1)]).expect("commit");
    drop(readers);
    drop(member);

    let mut member = KafkaConsumer::new(&config, &topics).expect("consumer");
    let mut readers = assigned(&mut member, 2);
    assert_eq!(readers[0].committed(), 1, "resumes at the commit");
    readers[0].seek(1).expect("seek");
    assert_eq!(read(readers[0].as_mut(), 1), [(1, record("a", "m v=3 3"))]);
}

#[test]
fn a_record_larger_than_a_message_is_split_and_bytes_of_a_foreign_producer_are_undecodable() {
    let (_cluster, config) = cluster(2);
    let topics = Topics::new("t.");
    let producer = KafkaProducer::new(&config, &topics, Arc::new(Metrics::default())).expect("p");
    // About 1.2 MB of points in one record: more than a message may hold.
    let lines: String = (0..20_000)
        .map(|i| format!("cpu,host=h{i} usage_user={i}.5,usage_system=1 {i}\n"))
        .collect();
    let big = record("a", &lines);
    producer.append(vec![(0, big.clone())]).expect("append");
    let foreign = [Message {
        partition: Some(0),
        key: b"x",
        payload: b"{\"json\": true}",
    }];
    producer
        .send_all(&topics.points, &foreign)
        .expect("foreign");

    let mut member = KafkaConsumer::new(&config, &topics).expect("consumer");
    let mut readers = assigned(&mut member, 2);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut points = Vec::new();
    let mut undecodable = Vec::new();
    let sent = big.points.made().expect("made");
    while points.len() < sent.len() || undecodable.is_empty() {
        assert!(Instant::now() < deadline, "{} points", points.len());
        for d in readers[0]
            .read(10, Duration::from_millis(100))
            .expect("read")
        {
            match d.record {
                Ok(r) => points.extend(r.points.into_made().expect("made").0),
                Err(e) => undecodable.push(e),
            }
        }
    }
    assert_eq!(points, sent, "every point, in order");
    assert_eq!(undecodable.len(), 1);
    assert_eq!(undecodable[0].bytes, b"{\"json\": true}");
    assert!(
        undecodable[0].to_string().starts_with("record 0/"),
        "{}",
        undecodable[0]
    );
}

#[test]
fn states_round_trip_through_the_changelog_and_a_half_written_save_is_passed_over() {
    let (_cluster, config) = cluster(2);
    let topics = Topics::new("t.");
    let producer = KafkaProducer::new(&config, &topics, Arc::new(Metrics::default())).expect("p");
    let states = KafkaStates::new(&config, &topics, producer.clone()).expect("states");
    assert_eq!(states.load(1).expect("load"), None, "nothing saved yet");
    // Three chunks' worth, then a small one.
    let big = PartitionState {
        next: 41,
        bytes: (0..1_300_000u32).map(|i| (i % 251) as u8).collect(),
    };
    states.save(&[(1, big.clone())]).expect("save");
    assert_eq!(states.load(1).expect("load"), Some(big.clone()));
    let small = PartitionState {
        next: 42,
        bytes: b"S1small".to_vec(),
    };
    states.save(&[(1, small.clone())]).expect("save");
    assert_eq!(states.load(0).expect("load"), None, "partitions are apart");

    // A save that died after its chunks, before its header.
    producer
        .send_all(
            &topics.state,
            &[Message {
                partition: Some(1),
                key: b"1/0/0",
                payload: b"half",
            }],
        )
        .expect("chunk");
    // Another process (a fresh changelog reader) finds the last complete save.
    let other = KafkaStates::new(&config, &topics, producer).expect("states");
    assert_eq!(other.load(1).expect("load"), Some(small));
}

#[test]
fn topics_with_another_partition_count_are_refused() {
    let (_cluster, config) = cluster(3);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let error = runtime
        .block_on(ensure_topics(&config, &Topics::new("t.")))
        .expect_err("refused");
    assert!(
        error
            .to_string()
            .contains("topic t.points has 3 partitions, but transport.partitions = 2"),
        "{error}"
    );
}

#[test]
fn properties_reach_every_client_or_the_kind_their_prefix_names_and_override_defaults() {
    let (_cluster, mut config) = cluster(2);
    config.properties = properties(&[
        ("linger.ms", "7"),
        ("producer.batch.size", "1000"),
        ("consumer.fetch.wait.max.ms", "33"),
    ]);
    let producer = client_config(&config, Role::Producer, &[]);
    let consumer = client_config(&config, Role::Consumer, &[("fetch.wait.max.ms", "20")]);
    assert_eq!(producer.get("linger.ms"), Some("7"));
    assert_eq!(producer.get("batch.size"), Some("1000"));
    assert_eq!(producer.get("fetch.wait.max.ms"), None);
    assert_eq!(consumer.get("batch.size"), None);
    assert_eq!(
        consumer.get("fetch.wait.max.ms"),
        Some("33"),
        "the operator's value wins over the default"
    );
}
