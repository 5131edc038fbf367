//! Topic creation (`caracal kafka create-topics`): the metering topic and
//! the dead-letter queue, created with the admin API. Idempotent: a topic
//! that exists already is left as it is (its partitions and replication
//! are not compared or changed) and reported as such.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::sink::EVENTS_TOPIC;

/// The dead-letter queue: events the ledger writer could not process,
/// with the reason.
pub const DLQ_TOPIC: &str = "caracal.dlq";

/// How long the broker may take to create the topics.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: u32,
    pub replication: u16,
}

impl TopicSpec {
    pub fn new(name: impl Into<String>, partitions: u32, replication: u16) -> Self {
        Self {
            name: name.into(),
            partitions,
            replication,
        }
    }
}

/// The deployment's topics: the metering events (`partitions` of them:
/// the most ledger writers that can consume in parallel) and the
/// dead-letter queue (one partition: it is small and read in order).
pub fn deployment_topics(partitions: u32, replication: u16) -> Vec<TopicSpec> {
    vec![
        TopicSpec::new(EVENTS_TOPIC, partitions, replication),
        TopicSpec::new(DLQ_TOPIC, 1, replication),
    ]
}

/// What became of one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Created,
    AlreadyExisted,
}

/// Why topics could not be created.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("kafka admin: {0}")]
    Client(#[from] KafkaError),
    #[error("topic {name}: {code}")]
    Topic {
        name: String,
        code: RDKafkaErrorCode,
    },
    #[error("topic {name}: {what} must be at least 1")]
    Invalid { name: String, what: &'static str },
}

/// Creates `topics` on the cluster at `brokers` (`host:port,…`), each
/// with its partitions and replication factor. A topic that exists is not
/// an error. Answers, in the order given, what became of each.
pub async fn create_topics(
    brokers: &str,
    topics: &[TopicSpec],
) -> Result<Vec<(String, Created)>, AdminError> {
    for t in topics {
        let invalid = |what| AdminError::Invalid {
            name: t.name.clone(),
            what,
        };
        if t.partitions == 0 || t.partitions > i32::MAX as u32 {
            return Err(invalid("partitions"));
        }
        if t.replication == 0 {
            return Err(invalid("replication"));
        }
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("client.id", "caracal-admin")
        .create()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                &t.name,
                t.partitions as i32,
                TopicReplication::Fixed(i32::from(t.replication)),
            )
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(TIMEOUT))
        .request_timeout(Some(TIMEOUT));
    let results = admin.create_topics(&new, &options).await?;
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(name) => out.push((name, Created::Created)),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                out.push((name, Created::AlreadyExisted))
            }
            Err((name, code)) => return Err(AdminError::Topic { name, code }),
        }
    }
    Ok(out)
}
