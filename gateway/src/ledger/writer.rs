//! The embedded ledger writer: an unbounded in-process queue drained by one
//! task that inserts events in batches (one transaction per batch). Events
//! are never dropped: on shutdown the queue is drained before the writer
//! returns, and a failed batch is retried until it lands.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{EventSink, LedgerEvent};
use crate::store::Store;

const BATCH: usize = 512;

/// The sending side, handed to the data path.
#[derive(Clone)]
pub struct EmbeddedSink {
    tx: mpsc::UnboundedSender<LedgerEvent>,
    queued: Arc<AtomicU64>,
}

impl EventSink for EmbeddedSink {
    fn emit(&self, event: LedgerEvent) {
        self.queued.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(event).is_err() {
            // Only after shutdown has drained the writer; nothing can be written any more.
            tracing::error!("ledger writer stopped; event not recorded");
        }
    }
}

/// The writer task's handle.
pub struct LedgerWriter {
    task: tokio::task::JoinHandle<()>,
    healthy: Arc<AtomicBool>,
    queued: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

impl LedgerWriter {
    /// Starts the writer; drop every sink clone and call [`Self::finish`] to stop.
    pub fn start(store: Store) -> (Self, EmbeddedSink) {
        let (tx, rx) = mpsc::unbounded_channel();
        let healthy = Arc::new(AtomicBool::new(true));
        let queued = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(store, rx, healthy.clone(), written.clone()));
        (
            Self {
                task,
                healthy,
                queued: queued.clone(),
                written,
            },
            EmbeddedSink { tx, queued },
        )
    }

    /// False while the last batch failed to write (it is being retried).
    pub fn healthy(&self) -> Arc<AtomicBool> {
        self.healthy.clone()
    }

    /// Events accepted but not yet written.
    pub fn backlog(&self) -> u64 {
        self.queued
            .load(Ordering::Relaxed)
            .saturating_sub(self.written.load(Ordering::Relaxed))
    }

    /// Waits until every queued event is written. All sinks must be dropped first.
    pub async fn finish(self) {
        let _ = self.task.await;
    }
}

async fn run(
    store: Store,
    mut rx: mpsc::UnboundedReceiver<LedgerEvent>,
    healthy: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let mut delay = Duration::from_millis(50);
        loop {
            match store.insert_ledger_events(&batch).await {
                Ok(()) => {
                    healthy.store(true, Ordering::Relaxed);
                    written.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    metrics::counter!("caracal_ledger_events_written_total")
                        .increment(batch.len() as u64);
                    break;
                }
                Err(e) => {
                    healthy.store(false, Ordering::Relaxed);
                    tracing::error!(error = %e, events = batch.len(), "ledger batch failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        batch.clear();
    }
}
