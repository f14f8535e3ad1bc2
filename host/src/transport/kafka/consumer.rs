//! A member of the pipeline's consumer group on Kafka. Rebalances are served on the
//! runner's poll thread (librdkafka calls back from `poll`): an assignment splits each new
//! partition into its own queue and hands the runner a reader per partition; a revocation
//! waits until the runner has checkpointed and committed those partitions.

use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance as KafkaRebalance,
};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset as KafkaOffset, TopicPartitionList};

use super::{REQUEST_TIMEOUT, Role, Topics, broker, client_config};
use crate::config::KafkaConfig;
use crate::format;
use crate::transport::{
    Committer, Delivered, GroupConsumer, Offset, Partition, PartitionReader, Rebalance,
    TransportError, Undecodable,
};

type Client = BaseConsumer<GroupContext>;

/// A member of the pipeline's consumer group.
pub struct KafkaConsumer {
    consumer: Arc<Client>,
}

/// Serves the group's rebalances.
struct GroupContext {
    topic: String,
    /// How a fork's reader is configured: the group's client, without the group.
    fork: rdkafka::ClientConfig,
    /// The consumer itself, to split partition queues from a callback.
    consumer: OnceLock<Weak<Client>>,
    /// The runner, set at its first poll; taken when the consumer is dropped.
    rebalance: Mutex<Option<Arc<dyn Rebalance>>>,
}

impl ClientContext for GroupContext {}

impl GroupContext {
    fn rebalance(&self) -> Option<Arc<dyn Rebalance>> {
        self.rebalance
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The points topic's partitions in `tpl`.
    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<Partition> {
        tpl.elements_for_topic(&self.topic)
            .iter()
            .filter_map(|e| Partition::try_from(e.partition()).ok())
            .collect()
    }

    /// A reader per partition of `tpl`, each on its own queue.
    fn readers(&self, tpl: &TopicPartitionList) -> Vec<Box<dyn PartitionReader>> {
        let Some(consumer) = self.consumer.get().and_then(Weak::upgrade) else {
            return Vec::new();
        };
        // Where each partition starts: the group's commit, or the partition's start.
        let committed = consumer
            .committed_offsets(tpl.clone(), REQUEST_TIMEOUT)
            .unwrap_or_else(|error| {
                tracing::warn!(%error, "Could not read the group's offsets; starting from the partitions' starts.");
                TopicPartitionList::new()
            });
        let mut readers: Vec<Box<dyn PartitionReader>> = Vec::new();
        for partition in self.partitions(tpl) {
            let p = i32::try_from(partition).unwrap_or(i32::MAX);
            let Some(queue) = consumer.split_partition_queue(&self.topic, p) else {
                tracing::error!(partition, "Could not split the partition's queue.");
                continue;
            };
            let committed = match committed.find_partition(&self.topic, p).map(|e| e.offset()) {
                Some(KafkaOffset::Offset(o)) => Offset::try_from(o).unwrap_or(0),
                _ => consumer
                    .fetch_watermarks(&self.topic, p, REQUEST_TIMEOUT)
                    .map_or(0, |(low, _)| Offset::try_from(low).unwrap_or(0)),
            };
            readers.push(Box::new(KafkaReader {
                consumer: consumer.clone(),
                queue,
                topic: self.topic.clone(),
                partition,
                committed,
            }));
        }
        readers
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &Client, rebalance: &KafkaRebalance<'_>) {
        if let KafkaRebalance::Revoke(tpl) = rebalance
            && let Some(runner) = self.rebalance()
        {
            // Returns once their state is saved and their offsets committed.
            runner.revoked(&self.partitions(tpl));
        }
    }

    fn post_rebalance(&self, _: &Client, rebalance: &KafkaRebalance<'_>) {
        match rebalance {
            KafkaRebalance::Assign(tpl) => {
                if let Some(runner) = self.rebalance() {
                    runner.assigned(self.readers(tpl));
                }
            }
            KafkaRebalance::Revoke(_) => {}
            KafkaRebalance::Error(error) => {
                tracing::error!(%error, "The consumer group's rebalance failed.");
            }
        }
    }
}

impl KafkaConsumer {
    /// Joins `config.group` on `topics.points`.
    ///
    /// # Errors
    /// When librdkafka refuses the configuration or the subscription.
    pub fn new(config: &KafkaConfig, topics: &Topics) -> Result<Self, TransportError> {
        let mut fork = client_config(config, Role::Consumer, &[("fetch.wait.max.ms", "20")]);
        // A fork reads assigned offsets only: nothing is committed or stored for a group.
        fork.set("group.id", format!("{}-lane-reader", config.group))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        let context = GroupContext {
            topic: topics.points.clone(),
            fork,
            consumer: OnceLock::new(),
            rebalance: Mutex::new(None),
        };
        // Records are read as soon as they are there: the default half-second wait of an
        // idle fetch would be most of the ingest-to-stored latency. Cooperative rebalancing
        // moves only the partitions that change owner: the others keep their workers and
        // their state in memory, instead of saving and reloading it.
        let consumer: Client = client_config(
            config,
            Role::Consumer,
            &[
                ("fetch.wait.max.ms", "20"),
                ("partition.assignment.strategy", "cooperative-sticky"),
            ],
        )
        .set("group.id", &config.group)
        // Offsets are committed by the runner, after the store and the state are
        // durable; never by librdkafka on its own.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create_with_context(context)
        .map_err(|e| broker("creating the consumer", &e))?;
        let consumer = Arc::new(consumer);
        let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
        consumer
            .subscribe(&[&topics.points])
            .map_err(|e| broker(&format!("subscribing to {}", topics.points), &e))?;
        Ok(Self { consumer })
    }
}

impl GroupConsumer for KafkaConsumer {
    fn poll(
        &mut self,
        rebalance: &Arc<dyn Rebalance>,
        wait: Duration,
    ) -> Result<(), TransportError> {
        {
            let mut set = self
                .consumer
                .context()
                .rebalance
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if set.is_none() {
                *set = Some(rebalance.clone());
            }
        }
        match self.consumer.poll(wait) {
            None => Ok(()),
            Some(Ok(message)) => {
                // Fetched before its partition's queue was split: sent back, so its
                // partition's worker reads it.
                let (partition, offset) = (message.partition(), message.offset());
                drop(message);
                tracing::warn!(
                    partition,
                    offset,
                    "A record reached the group's queue; seeking it back to its partition."
                );
                self.consumer
                    .seek(
                        message_topic(&self.consumer),
                        partition,
                        KafkaOffset::Offset(offset),
                        REQUEST_TIMEOUT,
                    )
                    .map_err(|e| broker("seeking a record back to its partition", &e))
            }
            Some(Err(error)) => Err(broker("polling the consumer group", &error)),
        }
    }

    fn committer(&self) -> Arc<dyn Committer> {
        Arc::new(KafkaCommitter {
            consumer: Arc::downgrade(&self.consumer),
            topic: self.consumer.context().topic.clone(),
        })
    }
}

fn message_topic(consumer: &Client) -> &str {
    &consumer.context().topic
}

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        // The runner has given every partition up: closing (on drop of the last handle)
        // leaves the group without calling back into it.
        self.consumer
            .context()
            .rebalance
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

/// Commits the group's offsets, synchronously.
struct KafkaCommitter {
    /// Weak: commits end with the consumer, which must close when the member leaves.
    consumer: Weak<Client>,
    topic: String,
}

impl Committer for KafkaCommitter {
    fn commit(&self, offsets: &[(Partition, Offset)]) -> Result<(), TransportError> {
        let consumer = self.consumer.upgrade().ok_or(TransportError::Closed)?;
        let mut tpl = TopicPartitionList::new();
        for (partition, next) in offsets {
            tpl.add_partition_offset(
                &self.topic,
                i32::try_from(*partition).unwrap_or(i32::MAX),
                KafkaOffset::Offset(i64::try_from(*next).unwrap_or(i64::MAX)),
            )
            .map_err(|e| broker("building a commit", &e))?;
        }
        consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| broker("committing offsets", &e))
    }
}

/// Reads one assigned partition from its own queue.
struct KafkaReader {
    consumer: Arc<Client>,
    queue: rdkafka::consumer::base_consumer::PartitionQueue<GroupContext>,
    topic: String,
    partition: Partition,
    committed: Offset,
}

impl PartitionReader for KafkaReader {
    fn partition(&self) -> Partition {
        self.partition
    }

    fn committed(&self) -> Offset {
        self.committed
    }

    fn end(&self) -> Result<Offset, TransportError> {
        let (_, high) = self
            .consumer
            .fetch_watermarks(&self.topic, self.p(), REQUEST_TIMEOUT)
            .map_err(|e| broker("reading the partition's end", &e))?;
        Ok(Offset::try_from(high).unwrap_or(0))
    }

    fn read(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivered>, TransportError> {
        let queue = &self.queue;
        read_polled(self.partition, max, wait, |left| queue.poll(left))
    }

    fn seek(&mut self, offset: Offset) -> Result<(), TransportError> {
        self.consumer
            .seek(
                &self.topic,
                self.p(),
                KafkaOffset::Offset(i64::try_from(offset).unwrap_or(i64::MAX)),
                REQUEST_TIMEOUT,
            )
            .map_err(|e| broker("seeking the partition", &e))
    }

    fn fork(&self, offset: Offset) -> Result<Box<dyn PartitionReader>, TransportError> {
        let config = self.consumer.context().fork.clone();
        ForkReader::open(config, &self.topic, self.partition, self.committed, offset)
    }
}

impl KafkaReader {
    fn p(&self) -> i32 {
        i32::try_from(self.partition).unwrap_or(i32::MAX)
    }
}

/// Up to `max` records of `partition` from `poll`, waiting up to `wait` for the first (the
/// rest are what is fetched already).
fn read_polled<M: Message>(
    partition: Partition,
    max: usize,
    wait: Duration,
    mut poll: impl FnMut(Duration) -> Option<rdkafka::error::KafkaResult<M>>,
) -> Result<Vec<Delivered>, TransportError> {
    let mut out = Vec::new();
    let deadline = Instant::now() + wait;
    while out.len() < max {
        let left = if out.is_empty() {
            deadline.saturating_duration_since(Instant::now())
        } else {
            Duration::ZERO
        };
        match poll(left) {
            None => break,
            Some(Ok(message)) => out.push(delivered(partition, &message)),
            Some(Err(error)) if out.is_empty() => {
                return Err(broker("reading the partition", &error));
            }
            Some(Err(_)) => break,
        }
    }
    Ok(out)
}

/// `message` of `partition` as read: a record, or why it is not one.
fn delivered(partition: Partition, message: &impl Message) -> Delivered {
    let offset = Offset::try_from(message.offset()).unwrap_or(0);
    let bytes = message.payload().unwrap_or_default();
    let record = format::decode_record(bytes).map_err(|e| Undecodable {
        partition,
        offset,
        reason: e.to_string(),
        bytes: bytes.to_vec(),
    });
    Delivered { offset, record }
}

/// A reader of one partition outside the group (a [`PartitionReader::fork`]): its own
/// client, assigned the partition at an offset.
struct ForkReader {
    consumer: BaseConsumer,
    /// Its client's configuration, for a fork of its own.
    config: rdkafka::ClientConfig,
    topic: String,
    partition: Partition,
    committed: Offset,
}

impl PartitionReader for ForkReader {
    fn partition(&self) -> Partition {
        self.partition
    }

    fn committed(&self) -> Offset {
        self.committed
    }

    fn end(&self) -> Result<Offset, TransportError> {
        let p = i32::try_from(self.partition).unwrap_or(i32::MAX);
        let (_, high) = self
            .consumer
            .fetch_watermarks(&self.topic, p, REQUEST_TIMEOUT)
            .map_err(|e| broker("reading the partition's end", &e))?;
        Ok(Offset::try_from(high).unwrap_or(0))
    }

    fn read(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivered>, TransportError> {
        let consumer = &self.consumer;
        read_polled(self.partition, max, wait, |left| consumer.poll(left))
    }

    fn seek(&mut self, offset: Offset) -> Result<(), TransportError> {
        // Assigned anew at the offset: a seek needs the partition fetched already, an
        // assignment doesn't.
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.topic,
            i32::try_from(self.partition).unwrap_or(i32::MAX),
            KafkaOffset::Offset(i64::try_from(offset).unwrap_or(i64::MAX)),
        )
        .map_err(|e| broker("positioning a lane's reader", &e))?;
        self.consumer
            .assign(&tpl)
            .map_err(|e| broker("positioning a lane's reader", &e))
    }

    fn fork(&self, offset: Offset) -> Result<Box<dyn PartitionReader>, TransportError> {
        ForkReader::open(
            self.config.clone(),
            &self.topic,
            self.partition,
            self.committed,
            offset,
        )
    }
}

impl ForkReader {
    /// A reader of `partition` of `topic` at `offset`, on a client of `config`.
    fn open(
        config: rdkafka::ClientConfig,
        topic: &str,
        partition: Partition,
        committed: Offset,
        offset: Offset,
    ) -> Result<Box<dyn PartitionReader>, TransportError> {
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| broker("creating a lane's reader", &e))?;
        let mut fork = Self {
            consumer,
            config,
            topic: topic.to_owned(),
            partition,
            committed,
        };
        fork.seek(offset)?;
        Ok(Box::new(fork))
    }
}
