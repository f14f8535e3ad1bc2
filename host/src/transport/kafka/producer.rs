//! Appends to the points topic: idempotent, `acks=all`, durable on return; and the
//! consumer group's lag, measured from the brokers for backpressure and `/metrics`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message as _};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};

use super::{Role, Topics, broker, client_config};
use crate::config::KafkaConfig;
use crate::format;
use crate::telemetry::{Metrics, PartitionLabels};
use crate::tenant::TenantId;
use crate::transport::{
    Backlog, Offset, Outbox, Outlet, Partition, Producer, Record, TransportError,
};

/// Records are split below this many encoded bytes: Kafka's default largest message is
/// 1 MB (`message.max.bytes`), and a 32 MiB request body can make far larger records.
const MAX_MESSAGE_BYTES: usize = 512 * 1024;

/// How often the group's lag is measured.
const LAG_EVERY: Duration = Duration::from_secs(1);

/// How long a measure waits for the brokers: past it, they count as unreachable.
const LAG_TIMEOUT: Duration = Duration::from_secs(2);

/// Appends to Kafka's topics: the points topic for ingest, the others for the pipeline.
pub struct KafkaProducer {
    /// Replaced by a new one after a failed delivery ([`Deliveries::broken`]).
    producer: RwLock<Arc<ThreadedProducer<Deliveries>>>,
    /// How to make one.
    config: ClientConfig,
    topics: Topics,
    topic: String,
    partitions: u32,
    /// How long librdkafka tries to deliver a message (`message.timeout.ms`).
    append_timeout: Duration,
    closed: Arc<AtomicBool>,
    /// Uncommitted records per partition, as last measured.
    lag: Arc<Vec<AtomicU64>>,
    /// Why the brokers could not be reached at the last measure, if they couldn't.
    trouble: Arc<Mutex<Option<String>>>,
}

/// One message to send: its partition (none: by its key), key and payload.
pub(super) struct Message<'a> {
    pub(super) partition: Option<Partition>,
    pub(super) key: &'a [u8],
    pub(super) payload: &'a [u8],
}

/// The producer's callbacks: deliveries, and whether the producer is broken.
///
/// After a message times out, the idempotent producer bumps its epoch to go on; brokers
/// without KIP-360 (tansu, Kafka before 2.5) refuse every later message of that producer
/// ("Unknown broker error"), and a fatal error ends it on any broker. Either way a new
/// producer (a new producer id) works: one is made at the next send after any failed
/// delivery. Appends that failed were answered 503, so nothing acknowledged depends on
/// the old one.
#[derive(Default)]
struct Deliveries {
    broken: AtomicBool,
}

impl ClientContext for Deliveries {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::Global(code) if code == rdkafka::types::RDKafkaErrorCode::Fatal)
        {
            tracing::error!(%error, reason, "The Kafka producer failed fatally; making a new one.");
            self.broken.store(true, Ordering::Release);
        } else {
            tracing::warn!(%error, reason, "Kafka producer error.");
        }
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Ticket>;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Box<Ticket>) {
        let outcome = match result {
            Ok(message) => Ok(Offset::try_from(message.offset()).unwrap_or(0)),
            Err((error, _)) => {
                self.broken.store(true, Ordering::Release);
                Err(error.to_string())
            }
        };
        ticket.pending.done(ticket.index, outcome);
    }
}

/// Which message of which send a delivery report is about.
pub(super) struct Ticket {
    pending: Arc<Pending>,
    index: usize,
}

/// One send's messages in flight: the unconfirmed ones, the offsets of the confirmed
/// ones, and the first failure.
#[derive(Default)]
struct Pending {
    state: Mutex<Sent>,
    settled: Condvar,
}

#[derive(Default)]
struct Sent {
    unconfirmed: usize,
    offsets: Vec<Offset>,
    failure: Option<String>,
}

impl Pending {
    fn sent(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.unconfirmed += 1;
        state.offsets.push(0);
    }

    fn done(&self, index: usize, outcome: Result<Offset, String>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.unconfirmed -= 1;
        match outcome {
            Ok(offset) => {
                if let Some(slot) = state.offsets.get_mut(index) {
                    *slot = offset;
                }
            }
            Err(failure) => {
                state.failure.get_or_insert(failure);
            }
        }
        if state.unconfirmed == 0 {
            self.settled.notify_all();
        }
    }

    /// Waits until every message sent is confirmed or failed, at most `timeout`: their
    /// offsets, in the order sent.
    fn wait(&self, timeout: Duration) -> Result<Vec<Offset>, String> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (state, waited) = self
            .settled
            .wait_timeout_while(state, timeout, |s| s.unconfirmed > 0)
            .unwrap_or_else(PoisonError::into_inner);
        match &state.failure {
            Some(failure) => Err(failure.clone()),
            None if waited.timed_out() => Err(format!(
                "{} messages unconfirmed after {timeout:?}",
                state.unconfirmed
            )),
            None => Ok(state.offsets.clone()),
        }
    }
}

impl KafkaProducer {
    /// A producer to `topics.points`, measuring `config.group`'s lag in the background.
    ///
    /// # Errors
    /// When librdkafka refuses the configuration.
    pub fn new(
        config: &KafkaConfig,
        topics: &Topics,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, TransportError> {
        let mut client = client_config(config, Role::Producer, &[]);
        // What the guarantees rest on: after the operator's properties, so they stay.
        client
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", config.append_timeout_ms.to_string());
        let producer = Arc::new(create(&client)?);
        let lag: Arc<Vec<AtomicU64>> =
            Arc::new((0..config.partitions).map(|_| AtomicU64::new(0)).collect());
        let closed = Arc::new(AtomicBool::new(false));
        let trouble = Arc::new(Mutex::new(None));
        let monitor = LagMonitor {
            trouble: trouble.clone(),
            consumer: client_config(config, Role::Consumer, &[])
                .set("group.id", &config.group)
                .set("enable.auto.commit", "false")
                .create()
                .map_err(|e| broker("creating the lag monitor", &e))?,
            topic: topics.points.clone(),
            lag: lag.clone(),
            closed: closed.clone(),
            metrics,
        };
        std::thread::Builder::new()
            .name("sluice-kafka-lag".into())
            .spawn(move || monitor.run())
            .map_err(|e| TransportError::Broker(format!("starting the lag monitor: {e}")))?;
        Ok(Arc::new(Self {
            producer: RwLock::new(producer),
            config: client,
            topic: topics.points.clone(),
            topics: topics.clone(),
            partitions: config.partitions,
            append_timeout: Duration::from_millis(config.append_timeout_ms),
            closed,
            lag,
            trouble,
        }))
    }

    /// The producer to send with: a new one when the current one is broken.
    fn producer(&self) -> Result<Arc<ThreadedProducer<Deliveries>>, TransportError> {
        let current = self
            .producer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if !current.context().broken.load(Ordering::Acquire) {
            return Ok(current);
        }
        let mut slot = self
            .producer
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Another send may have replaced it meanwhile.
        if Arc::ptr_eq(&slot, &current) {
            tracing::info!("A delivery failed: making a new Kafka producer (a new producer id).");
            *slot = Arc::new(create(&self.config)?);
        }
        Ok(slot.clone())
    }

    /// Sends `messages` to `topic` and waits until the brokers confirmed all of them
    /// (`acks=all`): their offsets, in order.
    ///
    /// # Errors
    /// When one can't be queued or delivered. Those queued are still waited for, so
    /// nothing is reported lost that may yet be delivered.
    pub(super) fn send_all(
        &self,
        topic: &str,
        messages: &[Message<'_>],
    ) -> Result<Vec<Offset>, TransportError> {
        let producer = self.producer()?;
        let pending = Arc::new(Pending::default());
        let mut queued = Ok(());
        for (index, message) in messages.iter().enumerate() {
            pending.sent();
            let ticket = Box::new(Ticket {
                pending: pending.clone(),
                index,
            });
            let mut record = BaseRecord::with_opaque_to(topic, ticket)
                .key(message.key)
                .payload(message.payload);
            if let Some(p) = message.partition {
                record = record.partition(i32::try_from(p).unwrap_or(i32::MAX));
            }
            if let Err((error, _)) = producer.send(record) {
                // Not queued (the queue may be full): settled here, without an offset.
                pending.done(index, Err(error.to_string()));
                queued = Err(broker(&format!("queueing messages for {topic}"), &error));
                break;
            }
        }
        // librdkafka settles each message within message.timeout.ms; the margin covers
        // its timer's granularity.
        let settled = pending
            .wait(self.append_timeout.saturating_add(Duration::from_secs(5)))
            .map_err(|e| TransportError::Broker(format!("sending to {topic}: {e}")));
        queued.and(settled)
    }
}

/// A producer of `client`'s configuration.
fn create(client: &ClientConfig) -> Result<ThreadedProducer<Deliveries>, TransportError> {
    client
        .create_with_context(Deliveries::default())
        .map_err(|e| broker("creating the producer", &e))
}

/// `record` encoded, split into as many messages as its size needs.
fn encode_split(mut record: Record, out: &mut Vec<Vec<u8>>) {
    let bytes = format::encode_record(&mut record);
    if bytes.len() <= MAX_MESSAGE_BYTES || record.points.len() < 2 {
        out.push(bytes);
        return;
    }
    let Record { tenant, points } = record;
    let mut points = match points.into_made() {
        Ok((points, _)) => points,
        // Sent whole: refused as too large, it is not acknowledged.
        Err(_) => return out.push(bytes),
    };
    let second = points.split_off(points.len() / 2);
    encode_split(Record::new(tenant.clone(), points), out);
    encode_split(Record::new(tenant, second), out);
}

impl Producer for KafkaProducer {
    fn partitions(&self) -> u32 {
        self.partitions
    }

    fn append(&self, records: Vec<(Partition, Record)>) -> Result<(), TransportError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(TransportError::Closed);
        }
        let mut encoded = Vec::new();
        for (partition, record) in records {
            let tenant = record.tenant.clone();
            let mut payloads = Vec::new();
            encode_split(record, &mut payloads);
            encoded.extend(payloads.into_iter().map(|p| (partition, tenant.clone(), p)));
        }
        let messages: Vec<Message<'_>> = encoded
            .iter()
            .map(|(partition, tenant, payload)| Message {
                partition: Some(*partition),
                key: tenant.as_str().as_bytes(),
                payload,
            })
            .collect();
        self.send_all(&self.topic, &messages).map(|_| ())
    }

    fn flush(&self, timeout: Duration) -> Result<(), TransportError> {
        self.producer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .flush(timeout)
            .map_err(|e| broker("flushing the producer", &e))
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    fn backlog(&self, _tenant: &TenantId) -> Backlog {
        Backlog {
            partition: self
                .lag
                .iter()
                .map(|l| l.load(Ordering::Acquire))
                .max()
                .unwrap_or(0),
            tenant: None,
        }
    }

    /// None: a broken producer is replaced, and an unreachable broker is waited for
    /// (appends answer 503 meanwhile; [`Producer::trouble`] says so).
    fn failure(&self) -> Option<String> {
        None
    }

    fn trouble(&self) -> Option<String> {
        self.trouble
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Outbox for KafkaProducer {
    fn publish(&self, outlet: Outlet, messages: &[(&[u8], &[u8])]) -> Result<(), TransportError> {
        let topic = match outlet {
            Outlet::Alerts => &self.topics.alerts,
            Outlet::Late => &self.topics.late,
            Outlet::DeadLetters => &self.topics.dead_letters,
        };
        let messages: Vec<Message<'_>> = messages
            .iter()
            .map(|(key, payload)| Message {
                partition: None,
                key,
                payload,
            })
            .collect();
        self.send_all(topic, &messages).map(|_| ())
    }
}

/// Measures the consumer group's lag: each partition's high watermark less the group's
/// committed offset.
struct LagMonitor {
    consumer: BaseConsumer,
    /// Set while the brokers can't be reached, with since when and why.
    trouble: Arc<Mutex<Option<String>>>,
    topic: String,
    lag: Arc<Vec<AtomicU64>>,
    closed: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl LagMonitor {
    fn run(&self) {
        while !self.closed.load(Ordering::Acquire) {
            let outcome = self.measure();
            let mut trouble = self.trouble.lock().unwrap_or_else(PoisonError::into_inner);
            match outcome {
                Ok(()) => {
                    if trouble.take().is_some() {
                        tracing::info!("The Kafka brokers answer again.");
                    }
                }
                // Once per outage: the producer's own errors say the rest.
                Err(error) if trouble.is_none() => {
                    tracing::warn!(%error, "Could not measure the consumer group's lag.");
                    *trouble = Some(format!(
                        "brokers unreachable since {}: {error}",
                        crate::time::human(crate::time::now_ns())
                    ));
                }
                Err(_) => {}
            }
            drop(trouble);
            std::thread::sleep(LAG_EVERY);
        }
    }

    fn measure(&self) -> Result<(), TransportError> {
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.lag.len() {
            tpl.add_partition(&self.topic, i32::try_from(p).unwrap_or(i32::MAX));
        }
        let committed = self
            .consumer
            .committed_offsets(tpl, LAG_TIMEOUT)
            .map_err(|e| broker("reading the group's offsets", &e))?;
        for (p, slot) in self.lag.iter().enumerate() {
            let partition = i32::try_from(p).unwrap_or(i32::MAX);
            let (low, high) = self
                .consumer
                .fetch_watermarks(&self.topic, partition, LAG_TIMEOUT)
                .map_err(|e| broker("reading the partitions' ends", &e))?;
            let done = match committed
                .find_partition(&self.topic, partition)
                .map(|e| e.offset())
            {
                Some(KafkaOffset::Offset(o)) => o,
                _ => low,
            };
            let lag = u64::try_from(high.saturating_sub(done)).unwrap_or(0);
            slot.store(lag, Ordering::Release);
            self.metrics
                .transport_lag_records
                .get_or_create(&PartitionLabels {
                    partition: p as Partition,
                })
                .set(i64::try_from(lag).unwrap_or(i64::MAX));
        }
        Ok(())
    }
}
