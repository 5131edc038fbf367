//! Budget reserve: the call's worst case is reserved in every window of
//! every budget of its principal at once, or the call is refused with
//! `402 budget_exceeded` naming the budget it did not fit in. The
//! reservation travels with the call and is settled with its ledger row.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::call::{Call, Refusal};
use super::step::{AsyncStep, AsyncStepLayer};
use crate::budget::charge::Reservation;
use crate::budget::counters::{Counters, Exceeded, NotReserved, ReservationId};
use crate::error::{Code, Denial};
use crate::money::fmt_amount;

/// The refusal of a reservation.
pub fn denial(e: NotReserved) -> Denial {
    match e {
        NotReserved::Exceeded(e) => exceeded(&e),
        NotReserved::Finished(id) => Denial::new(
            Code::Internal,
            format!("reservation {id} was already finished"),
        ),
        NotReserved::Unavailable(e) => Denial::new(Code::NotReady, e.to_string()),
    }
}

/// The `budget_exceeded` refusal: which policy, its limit, spent,
/// reserved, window and reset time, in the message and as JSON fields.
pub fn exceeded(e: &Exceeded) -> Denial {
    let s = &e.standing;
    let message = format!(
        "budget policy {} (version {}) allows {} {} per {} window; spent {}, reserved {}, \
         this call needs up to {}; the window resets at {}",
        e.policy_id,
        e.policy_version,
        fmt_amount(e.limit),
        e.currency,
        e.window,
        fmt_amount(s.spent),
        fmt_amount(s.reserved),
        fmt_amount(e.requested),
        s.resets_at
    );
    let mut d = Denial::new(Code::BudgetExceeded, message);
    let details = serde_json::json!({
        "policy_id": e.policy_id,
        "policy_version": e.policy_version,
        "limit": fmt_amount(e.limit),
        "currency": e.currency.as_str(),
        "spent": fmt_amount(s.spent),
        "reserved": fmt_amount(s.reserved),
        "requested": fmt_amount(e.requested),
        "window": e.window,
        "window_start": s.window_start.to_string(),
        "window_end": s.window_end.to_string(),
        "resets_at": s.resets_at.to_string(),
    });
    if let serde_json::Value::Object(map) = details {
        d.details = Some(map);
    }
    d
}

/// The budget step.
pub struct Budget {
    counters: Arc<dyn Counters>,
}

pub fn layer(counters: Arc<dyn Counters>) -> AsyncStepLayer<Budget> {
    AsyncStepLayer::new(Budget { counters })
}

/// The budgets of the call's principal, if it has any.
fn budgets(call: &Call) -> Option<Arc<crate::budget::charge::Plan>> {
    let principal = call.ctx.principal().ok()?;
    let plan = call.ctx.snapshot.budgets.get(&principal.id)?;
    (!plan.lines.is_empty()).then(|| plan.clone())
}

impl AsyncStep for Budget {
    fn applies(&self, call: &Call) -> bool {
        budgets(call).is_some()
    }

    fn run(self: Arc<Self>, mut call: Call) -> BoxFuture<'static, Result<Call, Refusal>> {
        Box::pin(async move {
            let (Some(plan), Ok(principal)) = (budgets(&call), call.ctx.principal()) else {
                return Ok(call);
            };
            let principal = principal.id.clone();
            let Some(amount) = call.ctx.charge.as_ref().map(|c| c.priced.estimate.amount) else {
                let d = Denial::new(
                    Code::Internal,
                    "a budgeted call reached its reservation unpriced",
                );
                return Err(Refusal::new(d, call));
            };
            let now = crate::clock::now();
            let id = ReservationId::new();
            match self
                .counters
                .reserve(&principal, id, &plan.lines, amount, now)
                .await
            {
                Ok(hold) => {
                    if let Some(charge) = call.ctx.charge.as_mut() {
                        charge.reservation = Some(Reservation::new(hold, self.counters.clone()));
                    }
                    Ok(call)
                }
                Err(e) => Err(Refusal::new(denial(e), call)),
            }
        })
    }
}
