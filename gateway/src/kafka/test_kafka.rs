//! The Kafka broker the tests use: `tansu` (Kafka-compatible, in-memory
//! storage), one per test, started on a free port as a child process and
//! killed when dropped. Its path is `CARACAL_TANSU`, or
//! `/opt/caracal-tools/bin/tansu`; a test that needs it fails, saying how
//! to get it, when it is not there. And a reader of a topic, in a consumer
//! group of its own.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caracal_load_tests::faults::FaultProxy;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;

use super::admin::{create_topics, TopicSpec};

const DEFAULT_TANSU: &str = "/opt/caracal-tools/bin/tansu";

/// A running broker; killed on drop.
pub struct Broker {
    child: Child,
    /// What clients bootstrap to (the proxy's address, behind one).
    pub brokers: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Broker {
    /// A broker clients reach directly.
    pub async fn start() -> Broker {
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        spawn(addr, addr).await
    }

    /// A broker clients reach only through a fault proxy: it advertises
    /// the proxy's address, so every connection goes through it.
    pub async fn behind_proxy() -> (Broker, FaultProxy) {
        let port = free_port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let proxy = FaultProxy::start(addr).await.expect("fault proxy");
        (spawn(addr, proxy.addr()).await, proxy)
    }

    /// Creates `topic` with `partitions` partitions.
    pub async fn topic(&self, partitions: u32) -> String {
        let name = format!("caracal.test.{}", uuid::Uuid::new_v4().simple());
        create_topics(&self.brokers, &[TopicSpec::new(&name, partitions, 1)])
            .await
            .expect("create the test topic");
        name
    }
}

async fn spawn(listen: SocketAddr, advertised: SocketAddr) -> Broker {
    let path = std::env::var("CARACAL_TANSU").unwrap_or_else(|_| DEFAULT_TANSU.into());
    let mut child = Command::new(&path)
        .arg("broker")
        .args(["--storage-engine", "memory://tansu/"])
        .args(["--listener-url", &format!("tcp://{listen}")])
        .args(["--advertised-listener-url", &format!("tcp://{advertised}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "the Kafka tests need the tansu broker at {path} ({e}); \
                 install it with `cargo install --locked tansu --root /opt/caracal-tools` \
                 or point CARACAL_TANSU at it"
            )
        });
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(listen).await.is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("tansu at {path} exited at start: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "tansu at {path} did not listen on {listen} within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Broker {
        child,
        brokers: advertised.to_string(),
    }
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
