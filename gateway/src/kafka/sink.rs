//! [`KafkaSink`]: the event sink of the distributed deployment. Every
//! ledger event is produced to the metering topic (see [`super::schema`]),
//! keyed by principal, by an idempotent producer (`enable.idempotence`,
//! `acks=all`); while the broker cannot take events they wait in a durable
//! local spool ([`super::spool`]) and are produced from it, in order, once
//! it can.
//!
//! The data path never waits on Kafka: [`KafkaSink::emit`] puts the event
//! on an in-memory queue and returns. One task, the publisher, takes
//! events from the queue and runs in one of two modes:
//!
//! - **direct** (the spool is empty): each event is handed to the
//!   producer at once, and its delivery tracked in send order. An event
//!   leaves memory when the broker confirmed it.
//! - **spooling**: every event is appended to the spool, one fsync per
//!   batch taken off the queue (group commit: the batch is what arrived
//!   while the previous fsync ran), and leaves memory once it is on disk.
//!   Meanwhile the spool is drained: a batch of records is read from its
//!   head and produced, and the head moves past them only once the broker
//!   confirmed them. A failed batch is retried from its first unconfirmed
//!   record, after a backoff, one record at a time until the broker
//!   answers again. When the spool is empty the publisher goes direct.
//!
//! Direct turns to spooling when a delivery fails, when the producer's
//! queue is full, or when the oldest unconfirmed delivery is older than
//! [`KafkaConfig::spool_after`] (the broker is unreachable or slow). Every
//! unconfirmed event is then appended to the spool, in send order, before
//! any newer one, so the spool keeps emit order. What happens to their
//! first sends: those not yet sent are purged from the producer; those in
//! flight may still be written by the broker (a timeout says only that no
//! answer came), so the event is on the topic twice. Duplicates are
//! allowed here and removed by the ledger writer, which keys rows by event
//! id. Per principal, first occurrences stay in emit order: one partition
//! per key, each send (direct, or a drain batch) in order, and a retry
//! starts at the first unconfirmed event. The one way around it is a
//! delivery that timed out in flight while later events of its partition
//! were sent under a bumped producer epoch before the failure was seen;
//! purging the queue on every failure makes that window small, not empty.
//!
//! A producer the broker refuses (a fatal error, or a fenced or unknown
//! producer id or epoch, which follows the epoch bump librdkafka makes
//! after a timed-out delivery on brokers that do not accept the bump) is
//! replaced by a new one, which gets a new id.
//!
//! Back-pressure, as in the embedded writer: past [`KafkaConfig::queue_limit`]
//! events in memory (neither confirmed nor spooled), past
//! [`KafkaConfig::spool_max_bytes`] in the spool, or while the spool
//! cannot be written, [`EventSink::accepting`] is false and the data path
//! refuses new calls with `not_ready` (an unrecorded call must not be
//! forwarded). Events already accepted are still kept. Past ten times the
//! queue limit or twice the spool limit, events emitted with
//! [`Retention::Shed`] are dropped and counted.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::{join_all, JoinAll};
use futures_util::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer, PurgeConfig};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::schema;
use super::spool::{Record, Spool, SpoolError, SpoolSize};
use crate::ledger::{EventSink, LedgerEvent, Retention};

/// The metering topic.
pub const EVENTS_TOPIC: &str = "caracal.metering.events";

/// Events taken off the queue at once (and spooled under one fsync).
const BATCH: usize = 1024;
/// Spooled records produced at once while draining.
const DRAIN_BATCH: usize = 1000;
const DRAIN_BYTES: usize = 4 << 20;
/// How often the publisher looks at the age of the oldest delivery.
const TICK: Duration = Duration::from_millis(50);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// The default [`KafkaConfig::queue_limit`] (the embedded writer's).
pub const QUEUE_LIMIT: u64 = 50_000;

/// How the sink reaches Kafka and where it spools.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]` of the bootstrap brokers.
    pub brokers: String,
    pub topic: String,
    /// The spool's directory (one gateway process per directory).
    pub spool_dir: PathBuf,
    /// Spooled bytes past which the sink stops accepting.
    pub spool_max_bytes: u64,
    /// How long the producer tries to deliver an event
    /// (`message.timeout.ms`).
    pub message_timeout: Duration,
    /// How long the oldest delivery may wait for the broker's answer
    /// before events go to the spool instead.
    pub spool_after: Duration,
    /// Events in memory (neither confirmed nor spooled) past which the
    /// sink stops accepting.
    pub queue_limit: u64,
    /// How long [`KafkaPublisher::finish`] tries to deliver before it
    /// leaves the rest in the spool.
    pub finish_timeout: Duration,
    /// Further librdkafka properties (TLS, SASL, tuning); they cannot
    /// override idempotence or `acks`.
    pub properties: Vec<(String, String)>,
}

impl KafkaConfig {
    /// The defaults for `brokers`, spooling in `spool_dir`.
    pub fn new(brokers: impl Into<String>, spool_dir: impl Into<PathBuf>) -> Self {
        Self {
            brokers: brokers.into(),
            topic: EVENTS_TOPIC.to_string(),
            spool_dir: spool_dir.into(),
            spool_max_bytes: 1 << 30,
            message_timeout: Duration::from_secs(30),
            spool_after: Duration::from_secs(2),
            queue_limit: QUEUE_LIMIT,
            finish_timeout: Duration::from_secs(5),
            properties: Vec::new(),
        }
    }

    fn client_config(&self) -> Result<ClientConfig, SinkError> {
        if self.brokers.trim().is_empty() {
            return Err(SinkError::Config("no brokers".into()));
        }
        if self.topic.is_empty() {
            return Err(SinkError::Config("no topic".into()));
        }
        let timeout_ms = self
            .message_timeout
            .as_millis()
            .clamp(1000, i32::MAX as u128);
        let mut c = ClientConfig::new();
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c.set("bootstrap.servers", &self.brokers)
            .set("client.id", "caracal-gateway")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", timeout_ms.to_string())
            .set("request.timeout.ms", timeout_ms.min(30_000).to_string())
            .set("linger.ms", "5")
            // Java's key hashing, so other clients agree on the partitions.
            .set("partitioner", "murmur2_random")
            .set("reconnect.backoff.max.ms", "1000");
        Ok(c)
    }
}

/// Why the sink cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("kafka sink config: {0}")]
    Config(String),
    #[error("kafka producer: {0}")]
    Producer(#[from] KafkaError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// State shared by the sink handles and the publisher.
struct Shared {
    /// Events accepted by `emit`.
    queued: AtomicU64,
    /// Events confirmed by the broker or durably spooled.
    settled: AtomicU64,
    dropped: AtomicU64,
    /// False while the spool cannot be written.
    spool_ok: AtomicBool,
    /// The publisher has stopped.
    stopped: AtomicBool,
    spool: SpoolSize,
    spool_max: u64,
    queue_limit: u64,
}

impl Shared {
    fn backlog(&self) -> u64 {
        self.queued
            .load(Ordering::Relaxed)
            .saturating_sub(self.settled.load(Ordering::Relaxed))
    }

    fn settle(&self, n: usize) {
        self.settled.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// The sending side, handed to the data path.
#[derive(Clone)]
pub struct KafkaSink {
    tx: mpsc::UnboundedSender<LedgerEvent>,
    shared: Arc<Shared>,
}

impl EventSink for KafkaSink {
    fn emit(&self, event: LedgerEvent, retention: Retention) {
        let s = &self.shared;
        if retention == Retention::Shed
            && (s.backlog() >= s.queue_limit.saturating_mul(10)
                || s.spool.get() >= s.spool_max.saturating_mul(2))
        {
            s.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("caracal_ledger_events_dropped_total").increment(1);
            return;
        }
        s.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(event).is_err() {
            // Only after shutdown stopped the publisher.
            tracing::error!("kafka publisher stopped; event not recorded");
        }
    }

    fn accepting(&self) -> bool {
        let s = &self.shared;
        !s.stopped.load(Ordering::Relaxed)
            && s.spool_ok.load(Ordering::Relaxed)
            && s.backlog() < s.queue_limit
            && s.spool.get() < s.spool_max
    }
}

/// The publisher task's handle.
pub struct KafkaPublisher {
    task: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl KafkaPublisher {
    /// Opens the spool (recovering what a previous process left in it),
    /// creates the producer and starts the publisher, on the current
    /// Tokio runtime. Nothing is sent to the broker yet: an unreachable
    /// broker is not an error here (events spool until it answers).
    pub fn start(config: KafkaConfig) -> Result<(Self, KafkaSink), SinkError> {
        let client = config.client_config()?;
        let producer: FutureProducer = client.create()?;
        let spool = Spool::open(&config.spool_dir)?;
        let shared = Arc::new(Shared {
            queued: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            spool_ok: AtomicBool::new(true),
            stopped: AtomicBool::new(false),
            spool: spool.size(),
            spool_max: config.spool_max_bytes,
            queue_limit: config.queue_limit,
        });
        if !spool.is_empty() {
            tracing::info!(
                bytes = spool.len_bytes(),
                dir = %config.spool_dir.display(),
                "kafka spool holds events from before; draining them first"
            );
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let publisher = Publisher {
            producer,
            client,
            topic: config.topic.clone(),
            spool: Some(spool),
            inflight: VecDeque::new(),
            pending: Vec::new(),
            drain: None,
            drain_batch: DRAIN_BATCH,
            drain_after: Instant::now(),
            backoff: BACKOFF_MIN,
            spool_retry_after: Instant::now(),
            shared: shared.clone(),
            config,
        };
        let task = tokio::spawn(publisher.run(rx, stop.clone()));
        Ok((
            Self {
                task,
                shared: shared.clone(),
                stop,
            },
            KafkaSink { tx, shared },
        ))
    }

    /// Events accepted but neither confirmed by the broker nor spooled.
    pub fn backlog(&self) -> u64 {
        self.shared.backlog()
    }

    /// Bytes waiting in the spool.
    pub fn spool_bytes(&self) -> u64 {
        self.shared.spool.get()
    }

    /// Sheddable events dropped past the limits.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Stops taking events, delivers what it can within
    /// [`KafkaConfig::finish_timeout`], and leaves the rest in the spool
    /// (fsynced) for the next start.
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }

    /// Stops the publisher at once, as a crash would: events in memory are
    /// lost, the spool is left as it is on disk.
    #[cfg(test)]
    pub(crate) async fn crash(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// An event handed to the producer and not yet confirmed.
struct InFlight {
    sent: Instant,
    key: Vec<u8>,
    value: Vec<u8>,
    delivery: DeliveryFuture,
}

/// Spooled records being produced.
struct Drain {
    records: Vec<Record>,
    deliveries: Pin<Box<JoinAll<DeliveryFuture>>>,
}

/// What a delivery future answers.
type Delivered = <DeliveryFuture as std::future::Future>::Output;

struct Publisher {
    producer: FutureProducer,
    client: ClientConfig,
    topic: String,
    /// Taken while a blocking spool operation runs.
    spool: Option<Spool>,
    /// Direct mode's deliveries, in send order (empty while spooling).
    inflight: VecDeque<InFlight>,
    /// Events that must go to the spool and are not there yet (the spool
    /// failed), in order; they go before anything newer.
    pending: Vec<(Vec<u8>, Vec<u8>)>,
    drain: Option<Drain>,
    drain_batch: usize,
    drain_after: Instant,
    backoff: Duration,
    spool_retry_after: Instant,
    shared: Arc<Shared>,
    config: KafkaConfig,
}

enum Step {
    Events(usize),
    Front(Delivered),
    Drained(Vec<Delivered>),
    Tick,
    Stop,
}

impl Publisher {
    /// Direct mode: nothing waits in (or for) the spool.
    fn direct(&self) -> bool {
        self.shared.spool.get() == 0 && self.pending.is_empty() && self.drain.is_none()
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<LedgerEvent>, stop: CancellationToken) {
        let _stopped = StoppedGuard(self.shared.clone());
        let mut batch = Vec::with_capacity(BATCH);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rx_open = true;
        let mut deadline: Option<Instant> = None;
        let mut failed_while_stopping = false;
        loop {
            let step = tokio::select! {
                biased;
                r = front(&mut self.inflight) => Step::Front(r),
                r = drained(&mut self.drain) => Step::Drained(r),
                n = rx.recv_many(&mut batch, BATCH), if rx_open => Step::Events(n),
                _ = stop.cancelled(), if deadline.is_none() => Step::Stop,
                _ = tick.tick() => Step::Tick,
            };
            match step {
                Step::Events(0) => rx_open = false,
                Step::Events(_) => self.take(std::mem::take(&mut batch)).await,
                Step::Front(r) => self.confirm_front(r).await,
                Step::Drained(r) => {
                    if !self.drained_batch(r).await && deadline.is_some() {
                        failed_while_stopping = true;
                    }
                }
                Step::Stop => {
                    // Nothing new gets in; what is queued is still taken.
                    rx.close();
                    deadline = Some(Instant::now() + self.config.finish_timeout);
                }
                Step::Tick => {}
            }
            // Every turn, not only on ticks: a flood of events must not
            // keep a cut broker from being noticed.
            self.check_slow().await;
            if !self.pending.is_empty() && Instant::now() >= self.spool_retry_after {
                self.spool_pending().await;
            }
            self.start_drain().await;
            self.report();
            if let Some(deadline) = deadline {
                let idle = !rx_open && self.inflight.is_empty() && self.pending.is_empty();
                let spool_done = self.shared.spool.get() == 0 && self.drain.is_none();
                if idle && (spool_done || failed_while_stopping) || Instant::now() >= deadline {
                    break;
                }
            }
        }
        self.shutdown(&mut rx).await;
    }

    /// Takes events off the queue: produced directly, or spooled.
    async fn take(&mut self, events: Vec<LedgerEvent>) {
        let mut encoded = events
            .iter()
            .map(|e| (schema::key(e).to_vec(), schema::encode(e)))
            .collect::<Vec<_>>()
            .into_iter();
        if self.direct() {
            let mut refused = None;
            for (key, value) in encoded.by_ref() {
                let record = FutureRecord::to(&self.topic).key(&key).payload(&value);
                match self.producer.send_result(record) {
                    Ok(delivery) => self.inflight.push_back(InFlight {
                        sent: Instant::now(),
                        key,
                        value,
                        delivery,
                    }),
                    Err((e, _)) => {
                        tracing::warn!(error = %e, "kafka producer refused an event; spooling");
                        refused = Some((key, value));
                        break;
                    }
                }
            }
            // The producer refused one: it and everything unconfirmed
            // before and after it goes to the spool, in order.
            if let Some(refused) = refused {
                self.divert(std::iter::once(refused).chain(encoded).collect())
                    .await;
            }
        } else {
            self.pending.extend(encoded);
            self.spool_pending().await;
        }
    }

    /// The oldest delivery answered (and maybe some after it).
    async fn confirm_front(&mut self, mut r: Delivered) {
        let mut confirmed = 0;
        let failed = loop {
            if !matches!(r, Ok(Ok(_))) {
                break Some(r);
            }
            self.inflight.pop_front();
            confirmed += 1;
            // Later ones that already answered, without another turn of
            // the loop.
            match self
                .inflight
                .front_mut()
                .and_then(|f| (&mut f.delivery).now_or_never())
            {
                Some(next) => r = next,
                None => break None,
            }
        };
        self.shared.settle(confirmed);
        metrics::counter!("caracal_kafka_events_produced_total").increment(confirmed as u64);
        if let Some(r) = failed {
            let error = match r {
                Ok(Err((e, _))) => Some(e),
                _ => None,
            };
            metrics::counter!("caracal_kafka_delivery_failures_total").increment(1);
            tracing::warn!(
                error = error
                    .as_ref()
                    .map_or("producer gone".into(), |e| e.to_string()),
                "kafka delivery failed; spooling events until the broker answers"
            );
            self.divert(Vec::new()).await;
            self.renew_if_broken(error.as_ref()).await;
        }
    }

    /// Spools when the oldest delivery has waited too long.
    async fn check_slow(&mut self) {
        let slow = self
            .inflight
            .front()
            .is_some_and(|f| f.sent.elapsed() >= self.config.spool_after);
        if slow {
            tracing::warn!(
                waiting = self.inflight.len(),
                after = ?self.config.spool_after,
                "kafka broker slow or unreachable; spooling events until it answers"
            );
            self.divert(Vec::new()).await;
        }
    }

    /// Direct mode ends: every unconfirmed event, then `after`, goes to the
    /// spool in order (after what is pending already, which is older).
    async fn divert(&mut self, after: Vec<(Vec<u8>, Vec<u8>)>) {
        // Those not sent yet will be sent from the spool; those in flight
        // may still land (a duplicate the ledger writer drops).
        self.producer.purge(PurgeConfig::default().queue());
        let unconfirmed = self.inflight.drain(..).map(|f| (f.key, f.value));
        self.pending.extend(unconfirmed);
        self.pending.extend(after);
        self.spool_pending().await;
    }

    /// Appends `pending` to the spool and fsyncs; keeps them on failure.
    async fn spool_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.pending);
        let (records, result) = self
            .with_spool(move |spool| {
                let result = records
                    .iter()
                    .try_for_each(|(k, v)| spool.append(k, v))
                    .and_then(|()| spool.sync());
                (records, result)
            })
            .await;
        match result {
            Ok(()) => {
                self.shared.settle(records.len());
                self.shared.spool_ok.store(true, Ordering::Relaxed);
                metrics::counter!("caracal_kafka_events_spooled_total")
                    .increment(records.len() as u64);
            }
            Err(e) => {
                tracing::error!(error = %e, events = records.len(), "kafka spool write failed; keeping the events in memory and refusing new calls");
                self.shared.spool_ok.store(false, Ordering::Relaxed);
                self.pending = records;
                self.spool_retry_after = Instant::now() + BACKOFF_MAX;
            }
        }
    }

    /// Produces the next batch from the spool's head, unless one is being
    /// produced or the backoff after a failure is not over.
    async fn start_drain(&mut self) {
        if self.drain.is_some()
            || !self.inflight.is_empty()
            || self.shared.spool.get() == 0
            || Instant::now() < self.drain_after
        {
            return;
        }
        let n = self.drain_batch;
        let mut records = match self.with_spool(move |s| s.peek(n, DRAIN_BYTES)).await {
            Ok(records) => records,
            Err(e) => {
                tracing::error!(error = %e, "kafka spool read failed");
                self.drain_failed();
                return;
            }
        };
        let mut deliveries = Vec::with_capacity(records.len());
        for r in &records {
            let record = FutureRecord::to(&self.topic).key(&r.key).payload(&r.value);
            match self.producer.send_result(record) {
                Ok(d) => deliveries.push(d),
                Err(_) => break,
            }
        }
        records.truncate(deliveries.len());
        if records.is_empty() {
            self.drain_failed();
            return;
        }
        self.drain = Some(Drain {
            records,
            deliveries: Box::pin(join_all(deliveries)),
        });
    }

    /// A drained batch answered: the head moves past its confirmed prefix.
    /// Whether all of it was confirmed.
    async fn drained_batch(&mut self, results: Vec<Delivered>) -> bool {
        let drain = self.drain.take().expect("a drain was running");
        let confirmed = results
            .iter()
            .take_while(|r| matches!(r, Ok(Ok(_))))
            .count();
        if confirmed > 0 {
            let last = drain.records[confirmed - 1].clone();
            if let Err(e) = self.with_spool(move |s| s.ack(&last)).await {
                // Delivered but still spooled: delivered again later.
                tracing::error!(error = %e, "kafka spool ack failed");
            }
            metrics::counter!("caracal_kafka_events_produced_total").increment(confirmed as u64);
        }
        if confirmed == results.len() {
            if self.drain_batch < DRAIN_BATCH {
                tracing::info!("kafka broker answers again; draining the spool");
            }
            self.drain_batch = DRAIN_BATCH;
            self.backoff = BACKOFF_MIN;
            if self.shared.spool.get() == 0 && self.pending.is_empty() {
                tracing::info!("kafka spool drained; producing directly");
            }
            true
        } else {
            metrics::counter!("caracal_kafka_delivery_failures_total").increment(1);
            let error = match results.get(confirmed) {
                Some(Ok(Err((e, _)))) => Some(e),
                _ => None,
            };
            if self.drain_batch == DRAIN_BATCH {
                tracing::warn!(
                    ?error,
                    "kafka spool drain failed; retrying one event at a time"
                );
            } else {
                tracing::debug!(?error, "kafka spool drain failed");
            }
            // What is still queued behind the failure must not be sent
            // before it is (an epoch bump could let it through).
            self.producer.purge(PurgeConfig::default().queue());
            self.renew_if_broken(error).await;
            self.drain_failed();
            false
        }
    }

    /// Backs off, and probes with one record until the broker answers.
    fn drain_failed(&mut self) {
        self.drain_batch = 1;
        self.drain_after = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// Replaces the producer when its state is broken: a fatal error, or
    /// the broker refusing its producer id or epoch (which it can answer,
    /// for one, after a timed-out delivery made the producer bump its
    /// epoch). A new producer gets a new id and sends again.
    async fn renew_if_broken(&mut self, error: Option<&KafkaError>) {
        use rdkafka::types::RDKafkaErrorCode as C;
        let fatal = self.producer.client().fatal_error();
        let refused = error.and_then(KafkaError::rdkafka_error_code).filter(|c| {
            matches!(
                c,
                C::ProducerFenced
                    | C::InvalidProducerEpoch
                    | C::InvalidProducerIdMapping
                    | C::UnknownProducerId
                    | C::OutOfOrderSequenceNumber
                    | C::Fatal
            )
        });
        if fatal.is_none() && refused.is_none() {
            return;
        }
        tracing::warn!(
            ?fatal,
            ?refused,
            "kafka producer unusable; creating a new one"
        );
        match self.client.create::<FutureProducer>() {
            Ok(new) => {
                let old = std::mem::replace(&mut self.producer, new);
                // Dropping purges and flushes for up to half a second.
                let _ = tokio::task::spawn_blocking(move || drop(old)).await;
            }
            Err(e) => tracing::error!(error = %e, "kafka producer could not be created again"),
        }
    }

    /// Stops: whatever is not confirmed goes to the spool.
    async fn shutdown(mut self, rx: &mut mpsc::UnboundedReceiver<LedgerEvent>) {
        rx.close();
        let mut rest = Vec::new();
        while let Ok(e) = rx.try_recv() {
            rest.push((schema::key(&e).to_vec(), schema::encode(&e)));
        }
        // An unfinished drain batch stays in the spool (maybe delivered
        // twice); unconfirmed direct sends, and what was still queued,
        // join it.
        self.drain = None;
        self.producer.purge(PurgeConfig::default().queue());
        self.divert(rest).await;
        if !self.pending.is_empty() {
            tracing::error!(
                events = self.pending.len(),
                "kafka sink stopping with events neither delivered nor spooled; they are lost"
            );
        }
        self.report();
        // Dropping the producer flushes for up to half a second.
        let producer = self.producer;
        let _ = tokio::task::spawn_blocking(move || drop(producer)).await;
    }

    /// Runs `f` on the spool on a blocking thread.
    async fn with_spool<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Spool) -> T + Send + 'static,
    ) -> T {
        let mut spool = self.spool.take().expect("the spool is back after each use");
        let (spool, out) = tokio::task::spawn_blocking(move || {
            let out = f(&mut spool);
            (spool, out)
        })
        .await
        .expect("spool operation panicked");
        self.spool = Some(spool);
        out
    }

    fn report(&self) {
        metrics::gauge!("caracal_kafka_backlog").set(self.shared.backlog() as f64);
    }
}

/// The oldest direct delivery's answer (never, while there is none).
async fn front(inflight: &mut VecDeque<InFlight>) -> Delivered {
    match inflight.front_mut() {
        Some(f) => (&mut f.delivery).await,
        None => std::future::pending().await,
    }
}

/// The running drain batch's answers (never, while there is none).
async fn drained(drain: &mut Option<Drain>) -> Vec<Delivered> {
    match drain {
        Some(d) => d.deliveries.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Marks the publisher stopped however its task ends.
struct StoppedGuard(Arc<Shared>);

impl Drop for StoppedGuard {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Relaxed);
    }
}
