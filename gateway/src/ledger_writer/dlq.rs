//! The dead-letter queue: the `dead_letters` table (the record, which
//! retries work from) and the `caracal.dlq` topic (each dead letter's raw
//! message, with headers saying why, for whoever watches the topic), and
//! the operations of `caracal dlq`.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use super::write::is_permanent;
use crate::kafka::schema;
use crate::store::{DeadLetter, PgStore, StoreError};

/// How long publishing a dead letter may wait for the broker.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// Publishes dead letters to the DLQ topic.
pub struct DlqProducer {
    producer: FutureProducer,
    topic: String,
}

impl DlqProducer {
    /// A producer for `topic` on `brokers`; `overrides` are librdkafka
    /// settings applied last.
    pub fn new(
        brokers: &str,
        topic: &str,
        overrides: &[(String, String)],
    ) -> Result<Self, KafkaError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "30000");
        for (k, v) in overrides {
            config.set(k, v);
        }
        Ok(Self {
            producer: config.create()?,
            topic: topic.to_string(),
        })
    }

    /// Publishes `letter`'s message as read (key and payload), with
    /// headers `reason`, `error` and `source` (`topic/partition/offset`),
    /// and waits for the broker to take it.
    pub async fn publish(&self, letter: &DeadLetter) -> Result<(), KafkaError> {
        let source = format!("{}/{}/{}", letter.topic, letter.partition, letter.offset);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "reason",
                value: Some(letter.reason.as_str()),
            })
            .insert(Header {
                key: "error",
                value: Some(letter.error.as_str()),
            })
            .insert(Header {
                key: "source",
                value: Some(source.as_str()),
            });
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic).headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(key.as_slice());
        }
        if let Some(payload) = &letter.payload {
            record = record.payload(payload.as_slice());
        }
        self.producer
            .send(record, PUBLISH_TIMEOUT)
            .await
            .map(drop)
            .map_err(|(e, _)| e)
    }
}

/// Creates `topic` (single replica) unless it exists.
pub async fn ensure_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
) -> Result<(), crate::kafka::admin::AdminError> {
    let partitions = u32::try_from(partitions.max(1)).unwrap_or(1);
    crate::kafka::create_topics(
        brokers,
        &[crate::kafka::TopicSpec::new(topic, partitions, 1)],
    )
    .await
    .map(|_| ())
}

/// The dead letters, oldest first (`caracal dlq list`).
pub async fn dlq_list(store: &PgStore, limit: Option<i64>) -> Result<Vec<DeadLetter>, StoreError> {
    store.dead_letters(limit).await
}

/// The dead letters of one event (`caracal dlq get`).
pub async fn dlq_get(store: &PgStore, event_id: &str) -> Result<Vec<DeadLetter>, StoreError> {
    store.dead_letters_of(event_id).await
}

/// Which dead letters to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryTarget {
    Event(String),
    All,
}

/// What a retry did to one dead letter.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Retried {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub event_id: Option<String>,
    /// Stored in the ledger and removed from the queue.
    pub stored: bool,
    /// Why not, when it stays.
    pub error: Option<String>,
}

/// Retries dead letters (`caracal dlq retry`): each is decoded and
/// inserted again (idempotent by event id). One that is stored leaves the
/// queue in the same transaction; one that still fails stays, with one
/// more attempt and the new error. Fails only when the database itself
/// cannot be reached (nothing is changed for the letters not tried yet).
pub async fn dlq_retry(store: &PgStore, target: &RetryTarget) -> Result<Vec<Retried>, StoreError> {
    let letters = match target {
        RetryTarget::Event(id) => store.dead_letters_of(id).await?,
        RetryTarget::All => store.dead_letters(None).await?,
    };
    let now = jiff::Timestamp::now().to_string();
    let mut report = Vec::with_capacity(letters.len());
    for letter in letters {
        let outcome = match schema::decode(letter.payload.as_deref().unwrap_or_default()) {
            Err(e) => Err(e.to_string()),
            Ok(event) => match store.resolve_dead_letter(&letter, &event).await {
                Ok(()) => Ok(()),
                Err(e) if is_permanent(&e) => Err(e.to_string()),
                Err(e) => return Err(e),
            },
        };
        if let Err(error) = &outcome {
            store.record_dead_letter_retry(&letter, error, &now).await?;
        }
        report.push(Retried {
            topic: letter.topic,
            partition: letter.partition,
            offset: letter.offset,
            event_id: letter.event_id,
            stored: outcome.is_ok(),
            error: outcome.err(),
        });
    }
    Ok(report)
}
