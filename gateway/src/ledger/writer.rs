//! The embedded ledger writer: an in-process queue drained by one task that
//! inserts events in batches (one transaction per batch); a failed batch is
//! retried until it lands.
//!
//! The queue is bounded in two steps. Past its soft limit ([`SOFT_LIMIT`]
//! by default) queued events (or while the last batch failed) the sink
//! reports that it is not accepting, and the data path refuses new calls
//! with `not_ready`: no call is forwarded that could not be recorded. Past
//! its hard limit ([`HARD_LIMIT`]), events emitted with
//! [`Retention::Shed`] (refusals of calls that reached no provider, which
//! cost nobody anything) are dropped and counted, so a flood of refused
//! requests during an outage cannot exhaust memory; rows of forwarded calls
//! and authority changes are never dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{EventSink, LedgerEvent, Retention};
use crate::store::Store;

/// Most events one transaction writes. Under light load a batch holds what
/// arrived within [`LINGER`]; when the writer falls behind, it takes up to
/// this many at once, and larger batches cost less per row: each page a
/// batch dirties (a principal's last index leaf, its spend aggregate) is
/// written to the WAL once per transaction, whatever the number of rows in
/// it. Measured with the embedded ledger benchmark (1000 principals): 512
/// a batch ~40 k rows/s, 2048 ~54 k, 8192 ~75 k.
const BATCH: usize = 8192;
/// How long a batch that is not full waits for more events before it is
/// written: one transaction per few milliseconds instead of one per call
/// under load (each is a hand-off to SQLite's thread and a WAL commit).
/// Rows are durable at most this much later; none is lost meanwhile.
const LINGER: Duration = Duration::from_millis(2);
/// Room for events the batch keeps between batches.
const KEPT_ROOM: usize = 256;
/// Queued events above which new calls are refused.
pub const SOFT_LIMIT: u64 = 50_000;
/// Queued events above which refusal rows are dropped.
pub const HARD_LIMIT: u64 = 500_000;

/// The backlog limits of a writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Queued events above which new calls are refused.
    pub soft: u64,
    /// Queued events above which sheddable events are dropped.
    pub hard: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            soft: SOFT_LIMIT,
            hard: HARD_LIMIT,
        }
    }
}

/// Counters shared by the sink and the writer task.
#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    healthy: AtomicBool,
    limits: Limits,
}

impl Counters {
    fn backlog(&self) -> u64 {
        self.queued
            .load(Ordering::Relaxed)
            .saturating_sub(self.written.load(Ordering::Relaxed))
    }
}

/// The sending side, handed to the data path.
#[derive(Clone)]
pub struct EmbeddedSink {
    tx: mpsc::UnboundedSender<LedgerEvent>,
    counters: Arc<Counters>,
}

impl EventSink for EmbeddedSink {
    fn emit(&self, event: LedgerEvent, retention: Retention) {
        if retention == Retention::Shed && self.counters.backlog() >= self.counters.limits.hard {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("caracal_ledger_events_dropped_total").increment(1);
            return;
        }
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(event).is_err() {
            // Only after shutdown has closed the writer.
            tracing::error!("ledger writer stopped; event not recorded");
        }
    }

    fn accepting(&self) -> bool {
        self.counters.healthy.load(Ordering::Relaxed)
            && self.counters.backlog() < self.counters.limits.soft
    }
}

/// The writer task's handle.
pub struct LedgerWriter {
    task: tokio::task::JoinHandle<()>,
    counters: Arc<Counters>,
    stop: CancellationToken,
    healthy: Arc<AtomicBool>,
}

impl LedgerWriter {
    /// Starts the writer over `store` with the default limits. Stop it
    /// with [`Self::finish`].
    pub fn start(store: Arc<dyn Store>) -> (Self, EmbeddedSink) {
        Self::start_with(store, Limits::default())
    }

    /// Starts the writer with `limits`.
    pub fn start_with(store: Arc<dyn Store>, limits: Limits) -> (Self, EmbeddedSink) {
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters {
            healthy: AtomicBool::new(true),
            limits,
            ..Default::default()
        });
        let stop = CancellationToken::new();
        let healthy = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn(run(
            store,
            rx,
            counters.clone(),
            healthy.clone(),
            stop.clone(),
        ));
        (
            Self {
                task,
                counters: counters.clone(),
                stop,
                healthy,
            },
            EmbeddedSink { tx, counters },
        )
    }

    /// Readiness guard: false while the last batch failed to write.
    pub fn healthy(&self) -> Arc<AtomicBool> {
        self.healthy.clone()
    }

    /// Events accepted but not yet written.
    pub fn backlog(&self) -> u64 {
        self.counters.backlog()
    }

    /// Events dropped past the hard limit.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Stops taking events and writes every event already queued.
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<LedgerEvent>,
    counters: Arc<Counters>,
    healthy: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut batch = Vec::new();
    loop {
        let received = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => n,
            _ = stop.cancelled() => {
                // Nothing new gets in; what is queued still gets written.
                rx.close();
                rx.recv_many(&mut batch, BATCH).await
            }
        };
        if received == 0 {
            return;
        }
        if batch.len() < BATCH && !stop.is_cancelled() {
            let _ = tokio::time::timeout(LINGER, async {
                while batch.len() < BATCH {
                    let room = BATCH - batch.len();
                    if rx.recv_many(&mut batch, room).await == 0 {
                        break;
                    }
                }
            })
            .await;
        }
        let mut delay = Duration::from_millis(50);
        loop {
            match store.insert_ledger_events(&batch).await {
                Ok(()) => {
                    counters.healthy.store(true, Ordering::Relaxed);
                    healthy.store(true, Ordering::Relaxed);
                    counters
                        .written
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    metrics::counter!("caracal_ledger_events_written_total")
                        .increment(batch.len() as u64);
                    break;
                }
                Err(e) => {
                    counters.healthy.store(false, Ordering::Relaxed);
                    healthy.store(false, Ordering::Relaxed);
                    tracing::error!(error = %e, events = batch.len(), "ledger batch failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        metrics::gauge!("caracal_ledger_backlog").set(counters.backlog() as f64);
        batch.clear();
        // The room a backlog's large batch took is given back.
        batch.shrink_to(KEPT_ROOM);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::budget::counters::BoxFuture;
    use crate::ledger::{Decision, EventKind, Mode};
    use crate::store::{LedgerFilter, LedgerStore, SqliteStore};

    /// The embedded sink over a fresh SQLite store.
    struct Embedded {
        _dir: tempfile::TempDir,
        store: SqliteStore,
        sink: Arc<EmbeddedSink>,
        _writer: LedgerWriter,
    }

    impl crate::conformance::event_sink::Harness for Embedded {
        fn sink(&self) -> Arc<dyn EventSink> {
            self.sink.clone()
        }

        fn delivered(&self) -> BoxFuture<Vec<LedgerEvent>> {
            let store = self.store.clone();
            Box::pin(async move {
                store
                    .query_ledger(&LedgerFilter::default())
                    .await
                    .expect("query")
            })
        }
    }

    async fn embedded() -> Embedded {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("ledger.db"))
            .await
            .expect("store");
        let (writer, sink) = LedgerWriter::start(Arc::new(store.clone()));
        Embedded {
            _dir: dir,
            store,
            sink: Arc::new(sink),
            _writer: writer,
        }
    }

    crate::event_sink_conformance!(embedded);

    fn refusal() -> LedgerEvent {
        // The flood the hard limit exists for: `not_ready` refusals, which
        // are recorded with decision `error`, not `deny`.
        LedgerEvent::new(
            EventKind::Call,
            Mode::BaseUrl,
            Decision::Error,
            crate::error::Code::NotReady,
        )
    }

    #[tokio::test]
    async fn past_the_hard_limit_refusals_are_shed_and_forwarded_calls_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("ledger.db"))
            .await
            .expect("store");
        // A closed store fails every batch: nothing drains, the backlog grows.
        store.close().await;
        let limits = Limits { soft: 5, hard: 10 };
        let (writer, sink) = LedgerWriter::start_with(Arc::new(store), limits);
        for _ in 0..100 {
            sink.emit(refusal(), Retention::Shed);
        }
        assert_eq!(writer.backlog(), 10, "refusals stop at the hard limit");
        assert_eq!(writer.dropped(), 90);
        assert!(
            !sink.accepting(),
            "past the soft limit nothing new is taken on"
        );
        let mut call = refusal();
        call.decision = Decision::Allow;
        call.code = crate::ledger::EventCode::OK;
        for _ in 0..5 {
            sink.emit(call.clone(), Retention::Keep);
        }
        assert_eq!(writer.backlog(), 15, "forwarded calls are never dropped");
        assert_eq!(writer.dropped(), 90);
        writer.stop.cancel();
        writer.task.abort();
    }
}
