//! The distributed deployment's ledger writer (`caracal-gateway
//! ledger-writer`): consumes spend events from `caracal.metering.events`
//! in consumer group `ledger-writer-group` and writes them to the
//! PostgreSQL ledger, as many replicas as the topic has partitions.
//!
//! The loop, per batch (up to [`WriterConfig::batch_size`] messages, or
//! what arrived within [`WriterConfig::linger`] of the first):
//! 1. decode each message; one that does not decode is a dead letter;
//! 2. write the events in one transaction, idempotent by event id, the
//!    per-minute spend aggregates added from the rows newly inserted only
//!    (so a redelivered event never counts twice). A row the database
//!    refuses for good is isolated by splitting the batch and becomes a
//!    dead letter; any other database error is retried with backoff, the
//!    batch kept in memory, until it passes or the writer stops;
//! 3. record the dead letters (table, then topic `caracal.dlq`);
//! 4. only then commit the next offset of each partition the batch read.
//!
//! So offsets never pass what is stored: a writer that dies anywhere
//! leaves its batch to be redelivered, and writing it again is a no-op.
//!
//! Rebalances: the batch in hand is finished (its rows written, which is
//! harmless for a partition lost meanwhile: its new owner's redelivery is
//! skipped by id), but offsets are committed only for partitions still
//! assigned when the batch is done; a lost partition's progress is left
//! to its new owner. A revocation racing the commit can at worst commit an
//! offset of rows already stored, never one past them. While the database
//! is down the writer stops reading (its pipeline is full), so it serves no
//! rebalance; past librdkafka's `max.poll.interval.ms` (5 min) it leaves
//! the group and its partitions go to the other writers.
//!
//! Reading the next batch overlaps writing the current one (one batch in
//! flight, in order, so offsets are committed in order).

pub mod batch;
pub mod dlq;
pub mod lag;
pub mod service;
mod write;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::store::{PgStore, StoreError};
use batch::{dead_letter, Batch, Message, Rejection};
pub use dlq::{dlq_get, dlq_list, dlq_retry, ensure_topic, Retried, RetryTarget};
pub use lag::{consumer_lag, LagError, PartitionLag};
pub use write::{is_permanent, write_events, Written};

/// The topic spend events are produced to, and the dead-letter topic.
pub use crate::kafka::admin::DLQ_TOPIC;
pub use crate::kafka::EVENTS_TOPIC;
/// The ledger writers' consumer group.
pub const GROUP: &str = "ledger-writer-group";

/// The longest wait between two attempts at a failing database write.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a writer reads, from where, and how it batches.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Kafka bootstrap servers (`host:port,…`).
    pub brokers: String,
    pub topic: String,
    pub group_id: String,
    pub dlq_topic: String,
    /// The most messages in one batch (one transaction).
    pub batch_size: usize,
    /// How long a batch waits for more messages after its first.
    pub linger: Duration,
    /// Batches being stored at once (each in its own transaction, on its
    /// own connection); their offsets are still committed in order.
    pub in_flight: usize,
    /// How long one database write may take before it counts as failed
    /// (and is retried).
    pub write_timeout: Duration,
    /// After a stop, how long a failing batch keeps being retried before
    /// the writer gives up on it (uncommitted: it will be redelivered).
    pub shutdown_grace: Duration,
    /// How often lag and queue size metrics are refreshed.
    pub report_interval: Duration,
    /// librdkafka settings applied last, to the consumer and producer.
    pub client_overrides: Vec<(String, String)>,
    /// Test only: stop right after the first batch is stored, before its
    /// offsets are committed, as a writer killed there would.
    #[cfg(test)]
    pub(crate) crash_after_store: bool,
}

impl WriterConfig {
    /// The defaults: topic [`EVENTS_TOPIC`], group [`GROUP`], DLQ
    /// [`DLQ_TOPIC`], batches of 5000 or 50 ms.
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: EVENTS_TOPIC.into(),
            group_id: GROUP.into(),
            dlq_topic: DLQ_TOPIC.into(),
            batch_size: 5000,
            linger: Duration::from_millis(50),
            in_flight: 2,
            write_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            report_interval: Duration::from_secs(5),
            client_overrides: Vec::new(),
            #[cfg(test)]
            crash_after_store: false,
        }
    }
}

/// Why a writer could not start.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Topics(#[from] crate::kafka::admin::AdminError),
}

/// What a writer did until it stopped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub batches: u64,
    /// Messages read and dealt with (stored, skipped or dead-lettered).
    pub messages: u64,
    /// Rows inserted.
    pub inserted: u64,
    /// Events the ledger already held (redeliveries, duplicates).
    pub duplicates: u64,
    pub dead_letters: u64,
}

/// A ledger writer: a member of the consumer group, until [`Writer::run`]
/// ends.
pub struct Writer {
    config: WriterConfig,
    store: PgStore,
    consumer: Arc<StreamConsumer>,
    dlq: dlq::DlqProducer,
    /// Messages read so far (stored or not).
    received: std::sync::atomic::AtomicU64,
}

impl Writer {
    /// Creates the consumer (subscribed to the topic, nothing read yet)
    /// and the dead-letter producer, and makes sure the DLQ topic exists.
    pub async fn new(config: WriterConfig, store: PgStore) -> Result<Self, WriterError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            // Kafka answers a fetch as soon as it has data, whatever this
            // says; tansu waits for it every time (500 ms by default held
            // a reader to ~30 000 messages/s). Idle, it costs 40 empty
            // fetches a second.
            .set("fetch.wait.max.ms", "25");
        for (k, v) in &config.client_overrides {
            client.set(k, v);
        }
        let consumer: StreamConsumer = client.create()?;
        consumer.subscribe(&[&config.topic])?;
        ensure_topic(&config.brokers, &config.dlq_topic, 1).await?;
        let dlq =
            dlq::DlqProducer::new(&config.brokers, &config.dlq_topic, &config.client_overrides)?;
        Ok(Self {
            config,
            store,
            consumer: Arc::new(consumer),
            dlq,
            received: Default::default(),
        })
    }

    /// Consumes and writes until `stop` is cancelled, then finishes the
    /// batch in hand (database, then offsets) and returns what it did.
    /// Dropping the future instead (a crash) commits nothing more.
    pub async fn run(&self, stop: CancellationToken) -> Totals {
        let (tx, rx) = mpsc::channel(1);
        let work = async {
            let ((), totals) = tokio::join!(self.collect(tx, &stop), self.sink(rx, &stop));
            totals
        };
        tokio::select! {
            totals = work => totals,
            never = self.report() => match never {},
        }
    }

    /// Reads batches and sorts them, until `stop`.
    async fn collect(&self, tx: mpsc::Sender<Batch>, stop: &CancellationToken) {
        let size = self.config.batch_size.max(1);
        loop {
            let first = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                // The sink ended (it could not store a batch by the stop).
                _ = tx.closed() => return,
                m = self.consumer.recv() => m,
            };
            let mut messages = Vec::with_capacity(size);
            take(first, &mut messages);
            let deadline = tokio::time::Instant::now() + self.config.linger;
            while messages.len() < size {
                match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                    Ok(m) => take(m, &mut messages),
                    Err(_) => break,
                }
            }
            if messages.is_empty() {
                continue;
            }
            self.received
                .fetch_add(messages.len() as u64, std::sync::atomic::Ordering::Relaxed);
            let batch = Batch::sort(messages, &jiff::Timestamp::now().to_string());
            if tx.send(batch).await.is_err() {
                return;
            }
        }
    }

    /// Stores batches, up to [`WriterConfig::in_flight`] at once, and
    /// commits each batch's offsets once it and every batch before it are
    /// stored.
    async fn sink(&self, mut rx: mpsc::Receiver<Batch>, stop: &CancellationToken) -> Totals {
        let mut totals = Totals::default();
        let mut stored: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let batches = futures_util::stream::poll_fn(|cx| rx.poll_recv(cx));
        // `buffered` yields the batches in the order they came.
        let mut done = batches
            .map(|batch| async move {
                let started = Instant::now();
                let offsets = batch.next_offsets.clone();
                let messages = batch.len() as u64;
                let stored = self.store_batch(batch, stop).await;
                (stored, offsets, messages, started)
            })
            .buffered(self.config.in_flight.max(1));
        while let Some((outcome, offsets, messages, started)) = done.next().await {
            let Some(outcome) = outcome else {
                tracing::warn!(
                    "ledger writer stopped with a batch not stored; it will be redelivered"
                );
                return totals;
            };
            #[cfg(test)]
            if self.config.crash_after_store {
                return totals;
            }
            if let Err(e) = self.commit(&offsets, CommitMode::Async) {
                tracing::warn!(error = %e, "ledger writer: committing offsets failed; the next commit carries them");
            }
            stored.extend(offsets);
            totals.batches += 1;
            totals.messages += messages;
            totals.inserted += outcome.inserted;
            totals.duplicates += outcome.duplicates;
            totals.dead_letters += outcome.dead_letters;
            WRITTEN.fetch_add(outcome.inserted, std::sync::atomic::Ordering::Relaxed);
            metrics::counter!("caracal_ledger_writer_events_total").increment(outcome.inserted);
            metrics::counter!("caracal_ledger_writer_duplicates_total")
                .increment(outcome.duplicates);
            metrics::histogram!("caracal_ledger_writer_batch_seconds")
                .record(started.elapsed().as_secs_f64());
        }
        // Stopping: make sure the last offsets reach the broker.
        let consumer = self.consumer.clone();
        let committed =
            tokio::task::spawn_blocking(move || commit(&consumer, &stored, CommitMode::Sync)).await;
        if let Ok(Err(e)) = committed {
            tracing::warn!(error = %e, "ledger writer: the last offset commit failed; those messages will be redelivered");
        }
        totals
    }

    /// Writes a batch's events and records its dead letters, retrying
    /// what fails for a reason that may pass. None when the writer
    /// stopped before it could.
    async fn store_batch(&self, batch: Batch, stop: &CancellationToken) -> Option<Stored> {
        let Batch {
            events,
            sources,
            mut dead,
            ..
        } = batch;
        let timeout = self.config.write_timeout;
        let written = self
            .retrying(stop, "writing ledger events", || async {
                match tokio::time::timeout(timeout, write_events(&self.store, &events)).await {
                    Ok(result) => result.map_err(Attempt::Failed),
                    Err(_) => Err(Attempt::TimedOut(timeout)),
                }
            })
            .await?;
        let now = jiff::Timestamp::now().to_string();
        for (i, error) in &written.refused {
            let mut letter = dead_letter(
                sources[*i].clone(),
                &Rejection::Refused(error.clone()),
                &now,
            );
            letter.event_id = Some(events[*i].id.clone());
            dead.push(letter);
        }
        for letter in &dead {
            self.retrying(stop, "recording a dead letter", || async {
                self.store
                    .insert_dead_letter(letter)
                    .await
                    .map_err(Attempt::Failed)
            })
            .await?;
            metrics::counter!("caracal_ledger_writer_dead_letters_total", "reason" => letter.reason.clone())
                .increment(1);
            tracing::warn!(
                topic = %letter.topic, partition = letter.partition, offset = letter.offset,
                event_id = letter.event_id.as_deref().unwrap_or("-"), reason = %letter.reason,
                error = %letter.error, "ledger writer: message sent to the dead-letter queue"
            );
            if let Err(e) = self.dlq.publish(letter).await {
                // The table is the record (retries work from it); the topic
                // is a notification.
                tracing::warn!(error = %e, "ledger writer: publishing a dead letter to {} failed", self.config.dlq_topic);
                metrics::counter!("caracal_ledger_writer_dlq_publish_errors_total").increment(1);
            }
        }
        let refused = written.refused.len() as u64;
        Some(Stored {
            inserted: written.inserted,
            duplicates: events.len() as u64 - written.inserted - refused,
            dead_letters: dead.len() as u64,
        })
    }

    /// Runs `attempt` until it succeeds, with backoff. After `stop`, gives
    /// up (None) once the shutdown grace has passed.
    async fn retrying<T, F, Fut>(
        &self,
        stop: &CancellationToken,
        what: &str,
        mut attempt: F,
    ) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Attempt>>,
    {
        let mut delay = Duration::from_millis(100);
        let mut stopped_at: Option<Instant> = None;
        loop {
            match attempt().await {
                Ok(v) => return Some(v),
                Err(e) => {
                    metrics::counter!("caracal_ledger_writer_db_errors_total").increment(1);
                    tracing::warn!(error = %e, "ledger writer: {what} failed; retrying in {delay:?}");
                }
            }
            if stop.is_cancelled() {
                let at = *stopped_at.get_or_insert_with(Instant::now);
                if at.elapsed() >= self.config.shutdown_grace {
                    return None;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled(), if stopped_at.is_none() => {}
            }
            delay = (delay * 2).min(MAX_BACKOFF);
        }
    }

    /// How many messages this writer has read (not necessarily stored).
    pub fn received(&self) -> u64 {
        self.received.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The partitions of the events topic assigned to this writer now.
    pub fn assigned(&self) -> Vec<i32> {
        self.consumer
            .assignment()
            .map(|a| {
                a.elements_for_topic(&self.config.topic)
                    .iter()
                    .map(|e| e.partition())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Commits `offsets` for the partitions still assigned.
    fn commit(
        &self,
        offsets: &BTreeMap<(String, i32), i64>,
        mode: CommitMode,
    ) -> Result<(), KafkaError> {
        commit(&self.consumer, offsets, mode)
    }

    /// Refreshes the lag of the partitions assigned, the DLQ's size and
    /// the write rate, every report interval; never returns.
    async fn report(&self) -> std::convert::Infallible {
        let mut last = (Instant::now(), 0u64);
        let mut interval = tokio::time::interval(self.config.report_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let consumer = self.consumer.clone();
            let topic = self.config.topic.clone();
            let lags = tokio::task::spawn_blocking(move || {
                let assigned = consumer.assignment()?;
                let partitions: Vec<i32> = assigned
                    .elements_for_topic(&topic)
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                lag::lag_of(&*consumer, &topic, &partitions)
            })
            .await;
            match lags {
                Ok(Ok(lags)) => {
                    for l in lags {
                        metrics::gauge!("caracal_kafka_consumer_lag", "partition" => l.partition.to_string())
                            .set(l.lag as f64);
                    }
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "ledger writer: reading the lag failed"),
                Err(_) => {}
            }
            if let Ok(size) = self.store.dead_letter_count().await {
                metrics::gauge!("caracal_dlq_size").set(size as f64);
            }
            let now = (Instant::now(), self.written());
            let secs = now.0.duration_since(last.0).as_secs_f64();
            if secs > 0.0 {
                metrics::gauge!("caracal_ledger_writer_events_per_second")
                    .set((now.1 - last.1) as f64 / secs);
            }
            last = now;
        }
    }

    /// Rows inserted so far, as the events counter has them.
    fn written(&self) -> u64 {
        WRITTEN.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Rows inserted by the writers of this process (the rate gauge's source).
static WRITTEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Why one attempt at a database write failed.
#[derive(Debug, thiserror::Error)]
enum Attempt {
    #[error(transparent)]
    Failed(StoreError),
    #[error("no answer from the database within {0:?}")]
    TimedOut(Duration),
}

/// What storing one batch did.
struct Stored {
    inserted: u64,
    duplicates: u64,
    dead_letters: u64,
}

/// Commits `offsets` for the partitions `consumer` still has assigned.
fn commit(
    consumer: &StreamConsumer,
    offsets: &BTreeMap<(String, i32), i64>,
    mode: CommitMode,
) -> Result<(), KafkaError> {
    let assigned = consumer.assignment()?;
    let mut list = TopicPartitionList::new();
    for ((topic, partition), next) in offsets {
        if assigned.find_partition(topic, *partition).is_some() {
            list.add_partition_offset(topic, *partition, Offset::Offset(*next))?;
        } else {
            tracing::debug!(
                topic,
                partition,
                "ledger writer: partition no longer assigned; not committing it"
            );
        }
    }
    if list.count() > 0 {
        consumer.commit(&list, mode)?;
    }
    Ok(())
}

/// Adds a received message to `messages` (a receive error is logged: the
/// consumer recovers from them by itself).
fn take(
    received: Result<rdkafka::message::BorrowedMessage<'_>, KafkaError>,
    messages: &mut Vec<Message>,
) {
    match received {
        Ok(m) => messages.push(Message {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
        }),
        Err(e) => tracing::warn!(error = %e, "ledger writer: consumer error"),
    }
}
