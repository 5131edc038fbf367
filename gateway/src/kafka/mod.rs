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

/// Describes the sink's metrics to the installed recorder.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, Unit};
    describe_counter!(
        "caracal_kafka_events_produced_total",
        "Ledger events the broker confirmed (directly or from the spool)"
    );
    describe_counter!(
        "caracal_kafka_events_spooled_total",
        "Ledger events written to the local spool"
    );
    describe_counter!(
        "caracal_kafka_delivery_failures_total",
        "Failed deliveries (each turns the sink to spooling, or delays a drain)"
    );
    describe_counter!(
        "caracal_kafka_spool_records_dropped_total",
        "Bad records (torn or corrupt) dropped from the spool"
    );
    describe_gauge!(
        "caracal_kafka_spool_bytes",
        Unit::Bytes,
        "Bytes in the local spool not yet delivered"
    );
    describe_gauge!(
        "caracal_kafka_backlog",
        "Ledger events in memory, neither confirmed nor spooled"
    );
}

#[cfg(test)]
mod test_kafka;
#[cfg(test)]
mod tests;
