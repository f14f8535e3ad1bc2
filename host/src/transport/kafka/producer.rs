//! Appends to the points topic: idempotent, `acks=all`, durable on return; and the
//! consumer group's lag, measured from the brokers for backpressure and `/metrics`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message as _};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};

use super::{REQUEST_TIMEOUT, Topics, broker, client_config};
use crate::config::KafkaConfig;
use crate::format;
use crate::telemetry::{Metrics, PartitionLabels};
use crate::tenant::TenantId;
use crate::transport::{Backlog, Offset, Partition, Producer, Record, TransportError};

/// Records are split below this many encoded bytes: Kafka's default largest message is
/// 1 MB (`message.max.bytes`), and a 32 MiB request body can make far larger records.
const MAX_MESSAGE_BYTES: usize = 512 * 1024;

/// How often the group's lag is measured.
const LAG_EVERY: Duration = Duration::from_secs(1);

/// Appends to Kafka's topics: the points topic for ingest, the others for the pipeline.
pub struct KafkaProducer {
    producer: ThreadedProducer<Deliveries>,
    topic: String,
    partitions: u32,
    /// How long librdkafka tries to deliver a message (`message.timeout.ms`).
    append_timeout: Duration,
    closed: Arc<AtomicBool>,
    /// Uncommitted records per partition, as last measured.
    lag: Arc<Vec<AtomicU64>>,
}

/// One message to send: its partition, key and payload.
pub(super) struct Message<'a> {
    pub(super) partition: Partition,
    pub(super) key: &'a [u8],
    pub(super) payload: &'a [u8],
}

/// The producer's callbacks: deliveries, and fatal errors (the idempotent producer can't
/// go on after one).
struct Deliveries {
    fatal: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::Global(code) if code == rdkafka::types::RDKafkaErrorCode::Fatal)
        {
            tracing::error!(%error, reason, "The Kafka producer failed fatally; restart the process.");
            *self.fatal.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason.to_owned());
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
            Err((error, _)) => Err(error.to_string()),
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
        let timeout = config.append_timeout_ms.to_string();
        let producer: ThreadedProducer<Deliveries> = client_config(config)
            // What the guarantees rest on: after the operator's properties, so they stay.
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", &timeout)
            .create_with_context(Deliveries {
                fatal: Mutex::new(None),
            })
            .map_err(|e| broker("creating the producer", &e))?;
        let lag: Arc<Vec<AtomicU64>> =
            Arc::new((0..config.partitions).map(|_| AtomicU64::new(0)).collect());
        let closed = Arc::new(AtomicBool::new(false));
        let monitor = LagMonitor {
            consumer: client_config(config)
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
            producer,
            topic: topics.points.clone(),
            partitions: config.partitions,
            append_timeout: Duration::from_millis(config.append_timeout_ms),
            closed,
            lag,
        }))
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
        let pending = Arc::new(Pending::default());
        let mut queued = Ok(());
        for (index, message) in messages.iter().enumerate() {
            pending.sent();
            let ticket = Box::new(Ticket {
                pending: pending.clone(),
                index,
            });
            let record = BaseRecord::with_opaque_to(topic, ticket)
                .partition(i32::try_from(message.partition).unwrap_or(i32::MAX))
                .key(message.key)
                .payload(message.payload);
            if let Err((error, _)) = self.producer.send(record) {
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

/// `record` encoded, split into as many messages as its size needs.
fn encode_split(record: Record, out: &mut Vec<Vec<u8>>) {
    let bytes = format::encode_record(&record);
    if bytes.len() <= MAX_MESSAGE_BYTES || record.points.len() < 2 {
        out.push(bytes);
        return;
    }
    let Record { tenant, mut points } = record;
    let second = points.split_off(points.len() / 2);
    encode_split(
        Record {
            tenant: tenant.clone(),
            points,
        },
        out,
    );
    encode_split(
        Record {
            tenant,
            points: second,
        },
        out,
    );
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
                partition: *partition,
                key: tenant.as_str().as_bytes(),
                payload,
            })
            .collect();
        self.send_all(&self.topic, &messages).map(|_| ())
    }

    fn flush(&self, timeout: Duration) -> Result<(), TransportError> {
        self.producer
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

    fn failure(&self) -> Option<String> {
        self.producer
            .context()
            .fatal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Measures the consumer group's lag: each partition's high watermark less the group's
/// committed offset.
struct LagMonitor {
    consumer: BaseConsumer,
    topic: String,
    lag: Arc<Vec<AtomicU64>>,
    closed: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
}

impl LagMonitor {
    fn run(&self) {
        let mut failing = false;
        while !self.closed.load(Ordering::Acquire) {
            match self.measure() {
                Ok(()) => failing = false,
                // Once per outage: the producer's own errors say the rest.
                Err(error) if !failing => {
                    tracing::warn!(%error, "Could not measure the consumer group's lag.");
                    failing = true;
                }
                Err(_) => {}
            }
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
            .committed_offsets(tpl, REQUEST_TIMEOUT)
            .map_err(|e| broker("reading the group's offsets", &e))?;
        for (p, slot) in self.lag.iter().enumerate() {
            let partition = i32::try_from(p).unwrap_or(i32::MAX);
            let (low, high) = self
                .consumer
                .fetch_watermarks(&self.topic, partition, REQUEST_TIMEOUT)
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
