//! The Kafka broker the tests use (`caracal_load_tests::broker`: tansu, one
//! per test), its topics, and a reader of a topic in a consumer group of
//! its own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;

use super::admin::{create_topics, TopicSpec};

pub use caracal_load_tests::broker::Broker;

/// Creates a fresh topic with `partitions` partitions on `broker`; its name.
pub async fn topic(broker: &Broker, partitions: u32) -> String {
    let name = format!("caracal.test.{}", uuid::Uuid::new_v4().simple());
    create_topics(&broker.brokers, &[TopicSpec::new(&name, partitions, 1)])
        .await
        .expect("create the test topic");
    name
}

/// One message read back.
#[derive(Debug, Clone)]
pub struct Msg {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub partition: i32,
    pub offset: i64,
}

/// Reads a topic from its start, in a consumer group of its own, into
/// memory, until dropped.
pub struct TopicReader {
    msgs: Arc<Mutex<Vec<Msg>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TopicReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TopicReader {
    pub fn start(brokers: &str, topic: &str) -> Self {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("caracal-test-{}", uuid::Uuid::new_v4()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let sink = msgs.clone();
        let task = tokio::spawn(async move {
            loop {
                match consumer.recv().await {
                    Ok(m) => sink.lock().unwrap().push(Msg {
                        key: m.key().unwrap_or_default().to_vec(),
                        value: m.payload().unwrap_or_default().to_vec(),
                        partition: m.partition(),
                        offset: m.offset(),
                    }),
                    Err(e) => {
                        tracing::debug!(error = %e, "test consumer");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Self { msgs, task }
    }

    /// Every message read so far, in the order read.
    pub fn messages(&self) -> Vec<Msg> {
        self.msgs.lock().unwrap().clone()
    }

    /// Waits (at most `within`) until `done` holds of what was read, and
    /// returns it; fails the test naming `what` otherwise.
    pub async fn until(
        &self,
        what: &str,
        within: Duration,
        done: impl Fn(&[Msg]) -> bool,
    ) -> Vec<Msg> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msgs = self.messages();
            if done(&msgs) {
                return msgs;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: not within {within:?} ({} messages read)",
                msgs.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Waits (at most `within`) until `cond` holds; fails the test naming
/// `what` otherwise.
pub async fn wait_for(what: &str, within: Duration, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
