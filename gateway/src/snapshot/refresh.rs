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

/// What counters are primed with from a store: the per-minute aggregates
/// of the costs its ledger recorded (one row per minute and currency,
/// however many calls), or, while those hold a restored snapshot without
/// the events after it (`caracal snapshot restore` before `caracal replay
/// start` finished), the ledger's rows themselves: exact either way, so a
/// recovery neither refuses calls nor admits them on a lower figure.
pub(crate) async fn primed_from<S: LedgerStore + ?Sized>(
    store: &S,
    principal: &str,
    since_ms: i64,
) -> Result<Vec<crate::store::Spend>, SourceError> {
    match store.spend_by_minute_since(principal, since_ms).await {
        Err(crate::store::StoreError::Incomplete(why)) => {
            tracing::warn!(principal, "priming from the ledger's rows: {why}");
            Ok(store.spend_since(principal, since_ms).await?)
        }
        other => Ok(other?),
    }
}

/// A store is a spend history: see [`primed_from`].
impl SpendHistory for Arc<dyn Store> {
    fn spend_since(
        &self,
        principal: &str,
        since_ms: i64,
    ) -> crate::budget::counters::BoxFuture<Result<Vec<crate::store::Spend>, SourceError>> {
        let store = self.clone();
        let principal = principal.to_string();
        Box::pin(async move { primed_from(&*store, &principal, since_ms).await })
    }
}

/// The PostgreSQL store the ledger writers keep the aggregates of: what a
/// replica of the distributed deployment primes its counters from (see
/// [`primed_from`]).
impl SpendHistory for crate::store::PgStore {
    fn spend_since(
        &self,
        principal: &str,
        since_ms: i64,
    ) -> crate::budget::counters::BoxFuture<Result<Vec<crate::store::Spend>, SourceError>> {
        let store = self.clone();
        let principal = principal.to_string();
        Box::pin(async move { primed_from(&store, &principal, since_ms).await })
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
    /// The counters prime a counter they do not know themselves before
    /// reserving in it (Redis): priming at load is then only a head start,
    /// and a failure to prime (the ledger unreachable) must not keep a new
    /// state — a revocation, say — from being swapped in.
    pub counters_prime_lazily: bool,
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
        match self.prime(&snapshot.budgets, crate::clock::now()).await {
            Ok(0) => {}
            Ok(primed) => tracing::info!(primed, "budget counters primed from the ledger"),
            Err(e) if self.counters_prime_lazily => tracing::warn!(
                error = %e,
                "cannot prime budget counters now; each is primed before its first reservation"
            ),
            Err(e) => return Err(e),
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
        // A state is confirmed as of when its version was read, not when a
        // (slow) load finished: a change published meanwhile must not
        // stretch the staleness bound.
        let confirm = {
            let (fresh, confirmed_ms) = (fresh.clone(), confirmed_ms.clone());
            move |read_at_ms: u64| {
                confirmed_ms.fetch_max(read_at_ms, Ordering::Relaxed);
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
            let bound_ms = bound.as_millis() as u64;
            let stale = move || {
                (base.elapsed().as_millis() as u64)
                    .saturating_sub(confirmed_ms.load(Ordering::Relaxed))
                    > bound_ms
            };
            tokio::spawn(async move {
                loop {
                    if stale() {
                        fresh.store(false, Ordering::Relaxed);
                        // A confirmation that raced the check wins.
                        if !stale() {
                            fresh.store(true, Ordering::Relaxed);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        });
        tokio::spawn(async move {
            let _watchdog = AbortOnDrop(watchdog);
            loop {
                self.source.changed(interval).await;
                let read_at_ms = base.elapsed().as_millis() as u64;
                match self.source.version().await {
                    Ok(v) if v == cell.load().version => confirm(read_at_ms),
                    Ok(_) => match self.load().await {
                        Ok(s) => {
                            tracing::info!(version = s.version, "snapshot refreshed");
                            metrics::counter!("caracal_snapshot_reloads_total", "result" => "ok")
                                .increment(1);
                            metrics::gauge!("caracal_snapshot_version").set(s.version as f64);
                            cell.store(Arc::new(s));
                            confirm(read_at_ms);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::counters::InProcessCounters;
    use crate::budget::window::{Period, WindowSpec, WindowType};
    use crate::model::PrincipalKind;
    use crate::money::{Currency, Money};
    use crate::policy::{Budget, PolicyDefinition};
    use crate::snapshot::StoreSource;
    use crate::store::{Change, NewPrincipal, SqliteStore};

    /// A ledger that cannot be read.
    struct Unreachable;

    impl SpendHistory for Unreachable {
        fn spend_since(
            &self,
            _: &str,
            _: i64,
        ) -> crate::budget::counters::BoxFuture<Result<Vec<crate::store::Spend>, SourceError>>
        {
            Box::pin(std::future::ready(Err(SourceError(
                "ledger unreachable".into(),
            ))))
        }
    }

    /// With counters that prime themselves before reserving (Redis), a
    /// state whose new budget cannot be primed now is still loaded — a
    /// revocation in it must not wait for the ledger; with counters that
    /// rely on priming at load (in process), it is not.
    #[tokio::test]
    async fn priming_failures_block_loading_only_where_priming_is_needed_then() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("s.db")).await.unwrap());
        let (agent, _) = store
            .register_principal(NewPrincipal {
                kind: PrincipalKind::Agent,
                name: "a".into(),
                email: "a@example.com".into(),
            })
            .await
            .unwrap();
        let def = PolicyDefinition {
            budget: Some(Budget {
                limit: Money::new(1.into(), Currency::USD),
                window: WindowSpec::new(Period::Daily, WindowType::Calendar, "UTC").unwrap(),
                max_output_tokens: 64,
            }),
            ..PolicyDefinition::default()
        };
        let change = Change {
            changed_by: "test".into(),
            reason: "budget".into(),
        };
        store.create_policy(&agent.id, &def, &change).await.unwrap();
        let refresher = |lazily| Refresher {
            source: Arc::new(StoreSource::new(store.clone())),
            counters: Arc::new(InProcessCounters::default()),
            history: Arc::new(Unreachable),
            allowlist_default: AllowlistDefault::Deny,
            counters_prime_lazily: lazily,
        };
        assert!(refresher(true).load().await.is_ok());
        assert!(refresher(false).load().await.is_err());
    }
}
