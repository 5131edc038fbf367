//! Ledger events through Kafka, the event sink of the distributed
//! deployment: the wire format of an event on the topic ([`schema`]), the
//! durable local spool events wait in while the broker cannot take them
//! ([`spool`]), the sink itself ([`KafkaSink`], which passes the event-sink
//! conformance suite), and topic creation ([`admin`]).

pub mod admin;
pub mod schema;
mod sink;
pub mod spool;

pub use admin::{create_topics, TopicSpec};
pub use sink::{KafkaConfig, KafkaPublisher, KafkaSink, SinkError, EVENTS_TOPIC, QUEUE_LIMIT};

#[cfg(test)]
mod test_kafka;
#[cfg(test)]
mod tests;
