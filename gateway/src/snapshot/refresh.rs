//! Keeping the snapshot current: load it from a [`SnapshotSource`], prime
//! the budget counters it introduces, and swap in a new one whenever the
//! source's version changes. The last good snapshot stays in use when a
//! rebuild fails, and the `snapshot` health guard says whether it is
//! confirmed current.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use caracal_config::AllowlistDefault;

use super::{Snapshot, SnapshotCell, SnapshotSource, SourceError};
use crate::budget::charge::Plan;
use crate::budget::counters::Counters;
use crate::store::{LedgerStore, Store};

/// Where counters learn the spend recorded before they counted it.
pub trait SpendHistory: Send + Sync + 'static {
    /// The costs recorded for `principal` at or after `since_ms` (unix
    /// milliseconds), with their times and currencies.
    fn spend_since(
        &self,
        principal: &str,
        since_ms: i64,
    ) -> crate::budget::counters::BoxFuture<Result<Vec<crate::store::Spend>, SourceError>>;
}

/// A store is a spend history: the costs its ledger recorded.
impl SpendHistory for Arc<dyn Store> {
    fn spend_since(
        &self,
        principal: &str,
        since_ms: i64,
    ) -> crate::budget::counters::BoxFuture<Result<Vec<crate::store::Spend>, SourceError>> {
        let store = self.clone();
        let principal = principal.to_string();
        Box::pin(async move { Ok(LedgerStore::spend_since(&*store, &principal, since_ms).await?) })
    }
}

/// The per-minute spend aggregates of a PostgreSQL store, which the
/// ledger writers maintain: what a replica of the distributed deployment
/// primes its counters from (one row per minute and currency instead of
/// one per call).
#[derive(Debug, Clone)]
pub struct AggregatedHistory(pub crate::store::PgStore);

impl SpendHistory for AggregatedHistory {
    fn spend_since(
        &self,
        principal: &str,
        since_ms: i64,
    ) -> crate::budget::counters::BoxFuture<Result<Vec<crate::store::Spend>, SourceError>> {
        let store = self.0.clone();
        let principal = principal.to_string();
        Box::pin(async move { Ok(store.spend_aggregated_since(&principal, since_ms).await?) })
    }
}

/// The spend `history` recorded for `principal` that can count in
/// `line`'s window at `now` (from one bucket before the window starts), in
/// the line's currency: what a counter not counted yet is primed with.
/// Spend in another currency than a budget's is not counted in it.
pub async fn spend_in_window(
    history: &dyn SpendHistory,
    principal: &str,
    line: &crate::budget::counters::Line,
    now: jiff::Timestamp,
) -> Result<Vec<(jiff::Timestamp, crate::money::Decimal)>, SourceError> {
    let since = line
        .spec
        .current(now)
        .start
        .checked_sub(line.spec.bucket_width())
        .unwrap_or(jiff::Timestamp::MIN);
    let spend = history
        .spend_since(principal, since.as_millisecond())
        .await?;
    let currency = line.currency.as_str();
    Ok(spend
        .into_iter()
        .filter(|s| s.currency == currency)
        .filter_map(|s| {
            jiff::Timestamp::from_millisecond(s.ts_ms)
                .ok()
                .map(|t| (t, s.amount))
        })
        .collect())
}

/// Aborts the task it holds when dropped (the refresher's watchdog ends
/// with the refresher).
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.abort();
        }
    }
}

/// What the refresher needs.
#[derive(Clone)]
pub struct Refresher {
    pub source: Arc<dyn SnapshotSource>,
    pub counters: Arc<dyn Counters>,
    pub history: Arc<dyn SpendHistory>,
    pub allowlist_default: AllowlistDefault,
}

impl Refresher {
    /// Loads a snapshot and primes the budget counters it introduces from
    /// the recorded spend, before anything can reserve in them.
    pub async fn load(&self) -> Result<Snapshot, SourceError> {
        let rows = self.source.load().await?;
        let (snapshot, warnings) = Snapshot::build(rows, self.allowlist_default);
        for w in warnings {
            tracing::warn!(version = snapshot.version, "{w}");
        }
        let primed = self
            .prime(&snapshot.budgets, jiff::Timestamp::now())
            .await?;
        if primed > 0 {
            tracing::info!(primed, "budget counters primed from the ledger");
        }
        Ok(snapshot)
    }

    /// Primes the counters of budgets not counted yet with the spend the
    /// ledger recorded in their current windows (at start-up, and when a
    /// budget is created or its window changed while running). Spend in
    /// another currency than a budget's is not counted in it.
    pub async fn prime(
        &self,
        plans: &HashMap<String, Arc<Plan>>,
        now: jiff::Timestamp,
    ) -> Result<usize, SourceError> {
        let unavailable = |e: crate::budget::counters::CounterError| SourceError(e.to_string());
        let mut primed = 0;
        for (principal, plan) in plans {
            for line in &plan.lines {
                if self
                    .counters
                    .knows(principal, &line.id)
                    .await
                    .map_err(unavailable)?
                {
                    continue;
                }
                let rows = spend_in_window(&*self.history, principal, line, now).await?;
                if self
                    .counters
                    .prime(principal, &line.id, &line.spec, rows)
                    .await
                    .map_err(unavailable)?
                {
                    primed += 1;
                }
            }
        }
        Ok(primed)
    }

    /// Swaps in a new snapshot whenever the source's version changes, at
    /// the latest every `interval`. `fresh` says whether the snapshot in
    /// use is confirmed current: without `max_staleness` it is false as
    /// soon as the source cannot be read; with it, once the snapshot has
    /// gone unconfirmed for longer than that (a watchdog checks every
    /// 100 ms, whatever the source is doing).
    pub fn spawn(
        self,
        cell: SnapshotCell,
        interval: Duration,
        fresh: Arc<AtomicBool>,
        max_staleness: Option<Duration>,
    ) -> tokio::task::JoinHandle<()> {
        let base = std::time::Instant::now();
        let confirmed_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let confirm = {
            let (fresh, confirmed_ms) = (fresh.clone(), confirmed_ms.clone());
            move || {
                confirmed_ms.store(base.elapsed().as_millis() as u64, Ordering::Relaxed);
                fresh.store(true, Ordering::Relaxed);
            }
        };
        let unconfirmed = {
            let fresh = fresh.clone();
            move || {
                if max_staleness.is_none() {
                    fresh.store(false, Ordering::Relaxed);
                }
            }
        };
        let watchdog = max_staleness.map(|bound| {
            let (fresh, confirmed_ms) = (fresh.clone(), confirmed_ms.clone());
            tokio::spawn(async move {
                loop {
                    let since = base.elapsed().as_millis() as u64
                        - confirmed_ms
                            .load(Ordering::Relaxed)
                            .min(base.elapsed().as_millis() as u64);
                    if since > bound.as_millis() as u64 {
                        fresh.store(false, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        });
        tokio::spawn(async move {
            let _watchdog = AbortOnDrop(watchdog);
            loop {
                self.source.changed(interval).await;
                match self.source.version().await {
                    Ok(v) if v == cell.load().version => confirm(),
                    Ok(_) => match self.load().await {
                        Ok(s) => {
                            tracing::info!(version = s.version, "snapshot refreshed");
                            metrics::counter!("caracal_snapshot_reloads_total", "result" => "ok")
                                .increment(1);
                            metrics::gauge!("caracal_snapshot_version").set(s.version as f64);
                            cell.store(Arc::new(s));
                            confirm();
                        }
                        Err(e) => {
                            metrics::counter!("caracal_snapshot_reloads_total", "result" => "error")
                                .increment(1);
                            tracing::error!(error = %e, "snapshot refresh failed; keeping the last good snapshot");
                            unconfirmed();
                        }
                    },
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the state version");
                        unconfirmed();
                    }
                }
            }
        })
    }
}
