//! Partition states on Kafka: the `{prefix}state` topic, partitioned like the points
//! topic (state of points partition `p` in state partition `p`), compacted.
//!
//! A save writes the state in chunks of at most [`CHUNK_BYTES`] (Kafka's messages are
//! small), then a header naming the chunks' offsets. Chunks alternate between two key
//! slots, so compaction (which keeps the latest message per key) never drops a chunk of
//! the latest complete save, even when a save dies half-written. A load finds the last
//! header, reading back from the partition's end, and reads its chunks.
//!
//! Header format (`S` `T` version 1, then postcard): [`Header`]. Chunks are raw bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{ClientConfig, Offset as KafkaOffset, TopicPartitionList};

use super::producer::{KafkaProducer, Message};
use super::{REQUEST_TIMEOUT, Role, Topics, broker, client_config};
use crate::config::KafkaConfig;
use crate::transport::{Offset, Partition, PartitionState, StateLog, TransportError};

/// The largest chunk of a state in one message (Kafka's default largest message is 1 MB).
const CHUNK_BYTES: usize = 512 * 1024;

/// Messages read back from the end at first when looking for the last header.
const FIRST_LOOK_BACK: Offset = 64;

/// The header format's magic and version.
const HEADER_MAGIC: &[u8; 3] = b"ST\x01";

/// What a save's last message says: which state, and where its chunks are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Header {
    /// The first record of the points partition the state does not reflect.
    next: Offset,
    /// The key slot its chunks were written under (0 or 1).
    slot: u8,
    /// The chunks' offsets in the state partition, in order.
    chunks: Vec<Offset>,
    /// The state's length in bytes.
    len: u64,
}

fn encode_header(header: &Header) -> Vec<u8> {
    let mut bytes = HEADER_MAGIC.to_vec();
    // Encoding plain integers and a vector into a Vec can't fail.
    bytes.extend(postcard::to_allocvec(header).unwrap_or_default());
    bytes
}

fn decode_header(bytes: &[u8]) -> Result<Header, String> {
    let body = bytes
        .strip_prefix(HEADER_MAGIC)
        .ok_or("not a state header of a known version")?;
    postcard::from_bytes(body).map_err(|e| e.to_string())
}

/// The keys of partition `p`'s messages.
fn header_key(p: Partition) -> Vec<u8> {
    format!("{p}/state").into_bytes()
}

fn chunk_key(p: Partition, slot: u8, index: usize) -> Vec<u8> {
    format!("{p}/{slot}/{index}").into_bytes()
}

/// A message read back: offset, key, and value.
type Read = (Offset, Vec<u8>, Vec<u8>);

/// Partition states in Kafka's changelog topic.
pub struct KafkaStates {
    producer: Arc<KafkaProducer>,
    topic: String,
    /// How a load's reader is made: each load has its own (by assignment, no group), so
    /// the partitions of a rebalance load at once.
    reader: ClientConfig,
    /// The slot of each partition's latest save known here.
    slots: Mutex<HashMap<Partition, u8>>,
}

impl KafkaStates {
    /// States in `topics.state`, written by `producer`.
    ///
    /// # Errors
    /// When librdkafka refuses the configuration.
    pub fn new(
        config: &KafkaConfig,
        topics: &Topics,
        producer: Arc<KafkaProducer>,
    ) -> Result<Self, TransportError> {
        let mut reader = client_config(config, Role::Consumer, &[]);
        reader
            .set("group.id", format!("{}-state-reader", config.group))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            // A load reads to the partition's end: the broker answers at once there.
            .set("fetch.wait.max.ms", "10");
        // Refused configurations show here, not at the first load.
        let _: BaseConsumer = reader
            .create()
            .map_err(|e| broker("creating the state reader", &e))?;
        Ok(Self {
            producer,
            topic: topics.state.clone(),
            reader,
            slots: Mutex::new(HashMap::new()),
        })
    }

    /// The messages of partition `p` from `from` to `end`, with their keys and values.
    fn read(
        &self,
        reader: &BaseConsumer,
        p: Partition,
        from: Offset,
        end: Offset,
    ) -> Result<Vec<Read>, TransportError> {
        let partition = i32::try_from(p).unwrap_or(i32::MAX);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.topic,
            partition,
            KafkaOffset::Offset(i64::try_from(from).unwrap_or(i64::MAX)),
        )
        .map_err(|e| broker("reading states", &e))?;
        reader
            .assign(&tpl)
            .map_err(|e| broker("reading states", &e))?;
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(TransportError::Broker(format!(
                    "reading states of partition {p} from {from} to {end}: timed out"
                )));
            }
            match reader.poll(left.min(Duration::from_millis(500))) {
                None => {}
                Some(Ok(message)) => {
                    let offset = Offset::try_from(message.offset()).unwrap_or(0);
                    let key = message.key().unwrap_or_default().to_vec();
                    out.push((offset, key, message.payload().unwrap_or_default().to_vec()));
                    if offset + 1 >= end {
                        break;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(error)) => return Err(broker("reading states", &error)),
            }
        }
        Ok(out)
    }

    /// The last header of partition `p`, reading back from the end, and the messages read
    /// (a save's chunks come just before its header: usually among them).
    fn last_header(
        &self,
        reader: &BaseConsumer,
        p: Partition,
    ) -> Result<Option<(Header, Vec<Read>)>, TransportError> {
        let partition = i32::try_from(p).unwrap_or(i32::MAX);
        let (low, high) = reader
            .fetch_watermarks(&self.topic, partition, REQUEST_TIMEOUT)
            .map_err(|e| broker("reading the state partition's bounds", &e))?;
        let (low, high) = (
            Offset::try_from(low).unwrap_or(0),
            Offset::try_from(high).unwrap_or(0),
        );
        let mut back = FIRST_LOOK_BACK;
        loop {
            if high <= low {
                return Ok(None);
            }
            let from = high.saturating_sub(back).max(low);
            let read = self.read(reader, p, from, high)?;
            let found = read.iter().rev().find(|(_, key, _)| *key == header_key(p));
            if let Some((offset, _, value)) = found {
                let header = decode_header(value).map_err(|e| {
                    TransportError::Broker(format!(
                        "the state header of partition {p} at {}/{offset} does not decode: {e} (retrying can't help)",
                        self.topic
                    ))
                })?;
                return Ok(Some((header, read)));
            }
            if from == low {
                return Ok(None);
            }
            back = back.saturating_mul(4);
        }
    }

    /// Writes `state` as `partition`'s latest: its chunks, then the header naming them.
    fn save_one(&self, partition: Partition, state: &PartitionState) -> Result<(), TransportError> {
        let slot = {
            let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            slots.get(&partition).map_or(0, |s| 1 - s)
        };
        let keys: Vec<Vec<u8>> = state
            .bytes
            .chunks(CHUNK_BYTES)
            .enumerate()
            .map(|(i, _)| chunk_key(partition, slot, i))
            .collect();
        let chunks: Vec<Message<'_>> = state
            .bytes
            .chunks(CHUNK_BYTES)
            .zip(&keys)
            .map(|(payload, key)| Message {
                partition: Some(partition),
                key,
                payload,
            })
            .collect();
        let offsets = self.producer.send_all(&self.topic, &chunks)?;
        let header = encode_header(&Header {
            next: state.next,
            slot,
            chunks: offsets,
            len: state.bytes.len() as u64,
        });
        let key = header_key(partition);
        self.producer.send_all(
            &self.topic,
            &[Message {
                partition: Some(partition),
                key: &key,
                payload: &header,
            }],
        )?;
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(partition, slot);
        Ok(())
    }
}

impl StateLog for KafkaStates {
    fn save(&self, states: &[(Partition, PartitionState)]) -> Result<(), TransportError> {
        states
            .iter()
            .try_for_each(|(partition, state)| self.save_one(*partition, state))
    }

    fn load(&self, partition: Partition) -> Result<Option<PartitionState>, TransportError> {
        let reader: BaseConsumer = self
            .reader
            .create()
            .map_err(|e| broker("creating a state reader", &e))?;
        let Some((header, mut read)) = self.last_header(&reader, partition)? else {
            return Ok(None);
        };
        let mut bytes = Vec::with_capacity(usize::try_from(header.len).unwrap_or(0));
        if let (Some(first), Some(last)) = (header.chunks.first(), header.chunks.last()) {
            if read.first().is_none_or(|(o, _, _)| o > first) {
                read = self.read(&reader, partition, *first, last + 1)?;
            }
            for offset in &header.chunks {
                let Some((_, _, value)) = read.iter().find(|(o, _, _)| o == offset) else {
                    return Err(TransportError::Broker(format!(
                        "the state of partition {partition} misses its chunk at {}/{offset} (retrying can't help)",
                        self.topic
                    )));
                };
                bytes.extend_from_slice(value);
            }
        }
        if bytes.len() as u64 != header.len {
            return Err(TransportError::Broker(format!(
                "the state of partition {partition} has {} bytes, its header says {} (retrying can't help)",
                bytes.len(),
                header.len
            )));
        }
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(partition, header.slot);
        Ok(Some(PartitionState {
            next: header.next,
            bytes,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_format_is_pinned_and_others_are_refused() {
        let header = Header {
            next: 300,
            slot: 1,
            chunks: vec![7, 8],
            len: 1000,
        };
        let bytes = encode_header(&header);
        assert_eq!(bytes, b"ST\x01\xac\x02\x01\x02\x07\x08\xe8\x07");
        assert_eq!(decode_header(&bytes), Ok(header));
        assert!(decode_header(b"ST\x02\x00").is_err());
        assert!(decode_header(b"").is_err());
    }
}
