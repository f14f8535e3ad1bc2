//! The scale-out transport on Apache Kafka (librdkafka, through `rdkafka`): the same seam
//! as the embedded log, so the pipeline runs unchanged on either.
//!
//! - Points go to `{prefix}points`, a record per tenant and partition; the partition is
//!   chosen from tenant and series ([`super::partition_for`]), so a series stays in one
//!   partition and its windows see all of it. The message key is the tenant.
//! - The producer is idempotent with `acks=all`: an append returns once every broker in
//!   sync has the records, or fails (ingest answers 503) within `append_timeout_ms`.
//! - The pipeline's processes form one consumer group. A member's assigned partitions each
//!   get their own queue (`split_partition_queue`) and worker; a revocation returns only
//!   once those workers saved their state and committed, so the next owner resumes there.
//!   Offsets are committed by hand, after the store write and the state save are durable.
//! - Partition states go to `{prefix}state`, a compacted changelog with the points topic's
//!   partitioning ([`KafkaStates`]): whichever process owns a partition next restores its
//!   windows from there.
//! - Every librdkafka property in `transport.properties` reaches every client.

mod changelog;
mod consumer;
mod producer;
#[cfg(test)]
mod tests;

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

pub use changelog::KafkaStates;
pub use consumer::KafkaConsumer;
pub use producer::KafkaProducer;

use super::TransportError;
use crate::config::KafkaConfig;

/// How long a metadata or admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The topics of one deployment, named from its prefix.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Ingested points, a record per tenant and partition.
    pub points: String,
    /// Alerts that fired or resolved.
    pub alerts: String,
    /// Points that arrived after their windows closed.
    pub late: String,
    /// What the pipeline could not process, with the reason.
    pub dead_letters: String,
    /// Partition states (compacted changelog).
    pub state: String,
}

impl Topics {
    /// The topics under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            points: format!("{prefix}points"),
            alerts: format!("{prefix}alerts"),
            late: format!("{prefix}late"),
            dead_letters: format!("{prefix}dead-letters"),
            state: format!("{prefix}state"),
        }
    }
}

/// A broker error as a transport error.
fn broker(context: &str, error: &KafkaError) -> TransportError {
    TransportError::Broker(format!("{context}: {error}"))
}

/// Which kind of client a configuration is for: properties prefixed `producer.` or
/// `consumer.` reach that kind only (librdkafka warns about a property of the other kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Producer,
    Consumer,
}

/// The client configuration a client of `role` starts from: the brokers, `defaults`, then
/// the operator's properties (which override the defaults; what the guarantees rest on is
/// set after them by the caller).
fn client_config(config: &KafkaConfig, role: Role, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &config.brokers);
    for (key, value) in defaults {
        client.set(*key, *value);
    }
    for (key, value) in &config.properties {
        let key = match (key.split_once('.'), role) {
            (Some(("producer", rest)), Role::Producer)
            | (Some(("consumer", rest)), Role::Consumer) => rest,
            (Some(("producer" | "consumer", _)), _) => continue,
            _ => key.as_str(),
        };
        client.set(key, value.expose());
    }
    client
}

/// Creates the topics that are missing (the state changelog compacted), and refuses
/// topics whose partition count differs from the configuration: series would be looked
/// for in other partitions than their records are in.
///
/// # Errors
/// When the brokers can't be reached, a topic can't be created, or has another count.
pub async fn ensure_topics(config: &KafkaConfig, topics: &Topics) -> Result<(), TransportError> {
    let probe: BaseConsumer = client_config(config, Role::Consumer, &[])
        .create()
        .map_err(|e| broker("creating a metadata client", &e))?;
    let names = [
        &topics.points,
        &topics.alerts,
        &topics.late,
        &topics.dead_letters,
        &topics.state,
    ];
    let counts = |probe: &BaseConsumer| -> Result<Vec<Option<u32>>, TransportError> {
        let metadata = probe
            .fetch_metadata(None, REQUEST_TIMEOUT)
            .map_err(|e| broker(&format!("reading topics from {}", config.brokers), &e))?;
        Ok(names
            .iter()
            .map(|name| {
                metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == name.as_str() && t.error().is_none())
                    .map(|t| t.partitions().len() as u32)
            })
            .collect())
    };
    let missing: Vec<&String> = names
        .iter()
        .zip(counts(&probe)?)
        .filter(|(_, count)| count.is_none())
        .map(|(name, _)| *name)
        .collect();
    if !missing.is_empty() {
        create_topics(config, topics, &missing).await?;
    }
    for (name, count) in names.iter().zip(counts(&probe)?) {
        let keyed = *name == &topics.points || *name == &topics.state;
        match count {
            Some(found) if keyed && found != config.partitions => {
                return Err(TransportError::PartitionCount {
                    place: format!("topic {name}"),
                    found,
                    configured: config.partitions,
                });
            }
            Some(_) => {}
            None => {
                return Err(TransportError::Broker(format!(
                    "topic {name} is still missing after it was created"
                )));
            }
        }
    }
    Ok(())
}

async fn create_topics(
    config: &KafkaConfig,
    topics: &Topics,
    missing: &[&String],
) -> Result<(), TransportError> {
    let admin: AdminClient<DefaultClientContext> = client_config(config, Role::Producer, &[])
        .create()
        .map_err(|e| broker("creating an admin client", &e))?;
    let partitions = i32::try_from(config.partitions).unwrap_or(i32::MAX);
    let replication = i32::from(config.replication);
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|name| {
            let topic = NewTopic::new(
                name.as_str(),
                partitions,
                TopicReplication::Fixed(replication),
            );
            if **name == topics.state {
                // Only a partition's latest state matters.
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = admin
        .create_topics(&new, &options)
        .await
        .map_err(|e| broker("creating topics", &e))?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, partitions, "Created a topic."),
            // Another process created it meanwhile.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(TransportError::Broker(format!(
                    "creating topic {name}: {code}"
                )));
            }
        }
    }
    Ok(())
}
