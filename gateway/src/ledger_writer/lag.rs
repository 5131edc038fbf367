//! Consumer lag: how far a consumer group's committed offsets are behind
//! the end of each partition of a topic (`caracal kafka consumer-lag`, and
//! the writers' `caracal_kafka_consumer_lag` gauge).

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// How long each request to the broker may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// One partition's lag.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionLag {
    pub partition: i32,
    /// The group's committed offset (the next message it will read); None
    /// when it has committed none.
    pub committed: Option<i64>,
    pub high_watermark: i64,
    /// Messages after the committed offset (from the partition's start
    /// when none is committed).
    pub lag: i64,
}

/// Why the lag could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LagError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("topic {0} does not exist")]
    NoTopic(String),
}

/// The lag of consumer group `group` on every partition of `topic`, read
/// through a consumer that carries the group's id but never joins it.
pub async fn consumer_lag(
    brokers: &str,
    group: &str,
    topic: &str,
) -> Result<Vec<PartitionLag>, LagError> {
    let (brokers, group, topic) = (brokers.to_string(), group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()?;
        let metadata = consumer.fetch_metadata(Some(&topic), TIMEOUT)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        if partitions.is_empty() {
            return Err(LagError::NoTopic(topic));
        }
        Ok(lag_of(&consumer, &topic, &partitions)?)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// The lag of `consumer`'s group on `partitions` of `topic` (blocking).
pub(crate) fn lag_of<X: ConsumerContext, C: Consumer<X>>(
    consumer: &C,
    topic: &str,
    partitions: &[i32],
) -> Result<Vec<PartitionLag>, KafkaError> {
    let mut list = TopicPartitionList::new();
    for &p in partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(list, TIMEOUT)?;
    let mut lags = Vec::with_capacity(partitions.len());
    for &partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, TIMEOUT)?;
        let committed = committed
            .find_partition(topic, partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        lags.push(PartitionLag {
            partition,
            committed,
            high_watermark: high,
            lag: (high - committed.unwrap_or(low)).max(0),
        });
    }
    Ok(lags)
}
