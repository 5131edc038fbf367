//! The embedded ledger writer: an in-process queue drained by one task that
//! inserts events in batches (one transaction per batch); a failed batch is
//! retried until it lands.
//!
//! The queue is bounded in two steps. Past [`SOFT_LIMIT`] queued events (or
//! while the last batch failed) the sink reports that it is not accepting,
//! and the data path refuses new calls with `not_ready`: no call is
//! forwarded that could not be recorded. Past [`HARD_LIMIT`], refusal rows
//! (which cost nobody anything) are dropped and counted, so a flood of
//! refused requests during an outage cannot exhaust memory; rows of
//! forwarded calls are never dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{EventSink, LedgerEvent};
use crate::store::Store;

const BATCH: usize = 512;
/// Queued events above which new calls are refused.
pub const SOFT_LIMIT: u64 = 50_000;
/// Queued events above which refusal rows are dropped.
pub const HARD_LIMIT: u64 = 500_000;

/// Counters shared by the sink and the writer task.
#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    written: AtomicU64,
    healthy: AtomicBool,
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
    fn emit(&self, event: LedgerEvent) {
        if event.decision == "deny" && self.counters.backlog() >= HARD_LIMIT {
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
        self.counters.healthy.load(Ordering::Relaxed) && self.counters.backlog() < SOFT_LIMIT
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
    /// Starts the writer. Stop it with [`Self::finish`].
    pub fn start(store: Store) -> (Self, EmbeddedSink) {
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters {
            healthy: AtomicBool::new(true),
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

    /// Stops taking events and writes every event already queued.
    pub async fn finish(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn run(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<LedgerEvent>,
    counters: Arc<Counters>,
    healthy: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
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
    }
}
