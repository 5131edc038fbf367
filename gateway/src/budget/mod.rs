//! Budgets: spend windows, rate limits, and reserve-before / settle-after
//! accounting over the counter and rate-limit seams (in process here;
//! Redis in the distributed deployment, with the same semantics). Pure:
//! nothing here does I/O, and the clock is a parameter.

pub mod charge;
pub mod counters;
pub mod rate;
pub mod window;

use std::collections::HashMap;
use std::sync::Arc;

use charge::Plan;
use counters::{CounterId, Line};

use crate::policy::Policy;

/// The in-flight limit of every principal whose active policies set one
/// (the smallest).
pub fn in_flight_limits(policies: &[Policy]) -> HashMap<String, u32> {
    let mut limits: HashMap<String, u32> = HashMap::new();
    for p in policies.iter().filter(|p| p.active) {
        if let Some(n) = p.definition.max_in_flight {
            limits
                .entry(p.principal_id.clone())
                .and_modify(|m| *m = (*m).min(n))
                .or_insert(n);
        }
    }
    limits
}

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
