//! The [`EventSink`] contract: emitting never blocks; every event accepted
//! is delivered to the ledger exactly once (a re-emitted event id is
//! delivered once), whatever the concurrency; a healthy sink accepts.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::budget::counters::BoxFuture;
use crate::ledger::{Decision, EventKind, EventSink, LedgerEvent, Mode, Retention};

/// A sink under test, and a way to read what it delivered.
pub trait Harness: Send + Sync + 'static {
    fn sink(&self) -> Arc<dyn EventSink>;
    /// Every event delivered so far.
    fn delivered(&self) -> BoxFuture<Vec<LedgerEvent>>;
}

fn event(n: usize) -> LedgerEvent {
    let mut e = LedgerEvent::new(
        EventKind::Call,
        Mode::BaseUrl,
        Decision::Allow,
        crate::ledger::EventCode::OK,
    );
    e.principal_id = Some(format!("agent-{}", n % 7));
    e.request_bytes = n as u64;
    e
}

/// Waits until `n` events were delivered (at most 10 s), and returns them.
async fn delivered_n<H: Harness>(h: &H, n: usize) -> Vec<LedgerEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = h.delivered().await;
        if got.len() >= n || tokio::time::Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every accepted event is delivered exactly once, also when emitted from
/// many tasks at once.
pub async fn every_event_is_delivered_once<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    assert!(h.sink().accepting(), "a fresh sink accepts");
    let mut tasks = Vec::new();
    let mut ids = HashSet::new();
    let mut batches = Vec::new();
    for t in 0..4 {
        let batch: Vec<LedgerEvent> = (0..125).map(|i| event(t * 125 + i)).collect();
        ids.extend(batch.iter().map(|e| e.id.clone()));
        batches.push(batch);
    }
    for batch in batches {
        let sink = h.sink();
        tasks.push(tokio::spawn(async move {
            for e in batch {
                sink.emit(e, Retention::Keep);
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let got = delivered_n(&h, 500).await;
    assert_eq!(got.len(), 500, "delivered");
    let got_ids: HashSet<String> = got.iter().map(|e| e.id.clone()).collect();
    assert_eq!(got_ids.len(), 500, "each once");
    assert_eq!(got_ids, ids);
}

/// A re-emitted event (a retry) is delivered once, with its fields.
pub async fn a_re_emitted_event_is_delivered_once<H: Harness, F: Future<Output = H>>(
    make: impl Fn() -> F,
) {
    let h = make().await;
    let e = event(42);
    h.sink().emit(e.clone(), Retention::Keep);
    h.sink().emit(e.clone(), Retention::Keep);
    let marker = event(43);
    h.sink().emit(marker.clone(), Retention::Keep);
    let got = delivered_n(&h, 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got = if got.len() < 3 {
        h.delivered().await
    } else {
        got
    };
    assert_eq!(got.iter().filter(|g| g.id == e.id).count(), 1, "{got:?}");
    let stored = got.iter().find(|g| g.id == e.id).expect("delivered");
    assert_eq!(stored, &e);
    assert!(got.iter().any(|g| g.id == marker.id));
}

/// Instantiates every case of the event-sink suite: `$make` is an
/// expression of type `Fn() -> impl Future<Output = impl Harness>`.
#[macro_export]
macro_rules! event_sink_conformance {
    ($make:expr) => {
        $crate::conformance_cases!(event_sink, $make;
            every_event_is_delivered_once,
            a_re_emitted_event_is_delivered_once,
        );
    };
}
