//! Budgets: spend windows, rate limits, and reserve-before / settle-after
//! accounting over a counter seam (in-process here; Redis in the
//! distributed deployment, with the same semantics).

pub mod charge;
pub mod counters;
pub mod rate;
pub mod window;

use std::collections::HashMap;
use std::sync::Arc;

use charge::Plan;
use counters::{CounterId, Counters, Line};

use crate::policy::Policy;
use crate::store::{Store, StoreError};

/// The budgets and rate limits of every principal, from the active
/// policies (latest versions).
pub fn plans(policies: &[Policy]) -> HashMap<String, Arc<Plan>> {
    let mut plans: HashMap<String, Plan> = HashMap::new();
    for p in policies.iter().filter(|p| p.active) {
        let d = &p.definition;
        if d.budget.is_none() && d.rate.is_none() {
            continue;
        }
        let plan = plans.entry(p.principal_id.clone()).or_default();
        if let Some(b) = &d.budget {
            plan.lines.push(Line {
                id: CounterId::new(&p.id, &b.window),
                policy_version: p.version,
                limit: b.limit.amount,
                currency: b.limit.currency,
                spec: b.window.clone(),
            });
            plan.max_output_tokens = match plan.max_output_tokens {
                0 => b.max_output_tokens,
                n => n.min(b.max_output_tokens),
            };
        }
        if let Some(r) = &d.rate {
            plan.rates.push(*r);
        }
    }
    plans
        .into_iter()
        .map(|(k, mut v)| {
            if v.max_output_tokens == 0 {
                v.max_output_tokens = crate::policy::DEFAULT_MAX_OUTPUT_TOKENS;
            }
            (k, Arc::new(v))
        })
        .collect()
}

/// Primes the counters of budgets this process has not counted yet with
/// the spend the ledger recorded in their current windows (at start-up,
/// and when a budget is created or its window changed while running).
/// Spend in another currency than a budget's is not counted in it.
pub async fn prime(
    store: &Store,
    counters: &Counters,
    plans: &HashMap<String, Arc<Plan>>,
    now: jiff::Timestamp,
) -> Result<usize, StoreError> {
    let mut primed = 0;
    for (principal, plan) in plans {
        for line in &plan.lines {
            if counters.knows(&line.id) {
                continue;
            }
            let since = line
                .spec
                .current(now)
                .start
                .checked_sub(line.spec.bucket_width())
                .unwrap_or(jiff::Timestamp::MIN);
            let spend = store.spend_since(principal, since.as_millisecond()).await?;
            let currency = line.currency.as_str();
            let rows = spend
                .into_iter()
                .filter(|s| s.currency == currency)
                .filter_map(|s| {
                    jiff::Timestamp::from_millisecond(s.ts_ms)
                        .ok()
                        .map(|t| (t, s.amount))
                });
            if counters.prime(&line.id, &line.spec, rows) {
                primed += 1;
            }
        }
    }
    Ok(primed)
}
