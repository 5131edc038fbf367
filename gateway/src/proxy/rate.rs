//! Rate limit: requests and tokens per minute of a principal with rate
//! limits, checked before its budgets (cheaper, and a rate refusal must
//! hold no budget). The admission travels with the call as a ticket that
//! is settled with the actual tokens; if a later step refuses the call,
//! dropping the ticket takes the admission back.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::call::{Call, Refusal};
use super::step::{AsyncStep, AsyncStepLayer};
use crate::budget::charge::Ticket;
use crate::budget::rate::{NotAdmitted, RateLimited, RateLimiter};
use crate::error::{Code, Denial};

/// The `rate_limited` refusal (or `not_ready` when the limiter cannot
/// answer).
pub fn denial(e: NotAdmitted) -> Denial {
    match e {
        NotAdmitted::Limited(r) => limited(r),
        NotAdmitted::Unavailable(e) => Denial::new(Code::NotReady, e.to_string()),
    }
}

fn limited(r: RateLimited) -> Denial {
    let mut d = Denial::new(Code::RateLimited, r.to_string());
    // A call that can never fit gets no retry hint.
    d.retry_after = r
        .retry_after()
        .map(|w| u64::try_from(w.as_secs()).unwrap_or(1).max(1));
    d
}

/// The rate-limit step.
pub struct Rate {
    limiter: Arc<dyn RateLimiter>,
}

pub fn layer(limiter: Arc<dyn RateLimiter>) -> AsyncStepLayer<Rate> {
    AsyncStepLayer::new(Rate { limiter })
}

/// The rate limits of the call's principal, if it has any.
fn rates(call: &Call) -> Option<Arc<crate::budget::charge::Plan>> {
    let principal = call.ctx.principal().ok()?;
    let plan = call.ctx.snapshot.budgets.get(&principal.id)?;
    (!plan.rates.is_empty()).then(|| plan.clone())
}

impl AsyncStep for Rate {
    fn applies(&self, call: &Call) -> bool {
        rates(call).is_some()
    }

    fn run(self: Arc<Self>, mut call: Call) -> BoxFuture<'static, Result<Call, Refusal>> {
        Box::pin(async move {
            let (Some(plan), Ok(principal)) = (rates(&call), call.ctx.principal()) else {
                return Ok(call);
            };
            let principal = principal.id.clone();
            let tokens = call.ctx.charge.as_ref().map_or(0, |c| c.priced.tokens);
            let now = crate::clock::now();
            match self
                .limiter
                .admit(&principal, &plan.rates, tokens, now)
                .await
            {
                Ok(ticket) => {
                    let ticket = Ticket::new(ticket, self.limiter.clone());
                    match call.ctx.charge.as_mut() {
                        Some(charge) => charge.ticket = Some(ticket),
                        // Unreachable: the price step charges every call of
                        // a principal with a plan. Holding nothing, the
                        // ticket is released at once.
                        None => drop(ticket),
                    }
                    Ok(call)
                }
                Err(e) => Err(Refusal::new(denial(e), call)),
            }
        })
    }
}
