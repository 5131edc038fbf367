//! Rate limit: requests and tokens per minute of a principal with rate
//! limits, checked before its budgets (cheaper, and a rate refusal must
//! hold no budget). The admission travels with the call as a ticket that
//! is settled with the actual tokens; if a later step refuses the call,
//! dropping the ticket takes the admission back.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{BoxFuture, Either};
use http::Response;
use tower::{Layer, Service};

use super::call::{Call, Refusal};
use super::respond::Body;
use super::step::{take_ready, Answer};
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

#[derive(Clone)]
pub struct RateLayer {
    limiter: Arc<dyn RateLimiter>,
}

pub fn layer(limiter: Arc<dyn RateLimiter>) -> RateLayer {
    RateLayer { limiter }
}

impl<I> Layer<I> for RateLayer {
    type Service = Rate<I>;

    fn layer(&self, inner: I) -> Self::Service {
        Rate {
            limiter: self.limiter.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct Rate<I> {
    limiter: Arc<dyn RateLimiter>,
    inner: I,
}

impl<I> Service<Call> for Rate<I>
where
    I: Service<Call, Response = Response<Body>, Error = Refusal> + Clone + Send + 'static,
    I::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Refusal;
    type Future = Either<I::Future, BoxFuture<'static, Answer>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Refusal>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let Ok(principal) = call.ctx.principal() else {
            return Either::Left(self.inner.call(call));
        };
        let Some(plan) = call.ctx.snapshot.budgets.get(&principal.id).cloned() else {
            return Either::Left(self.inner.call(call));
        };
        if plan.rates.is_empty() {
            return Either::Left(self.inner.call(call));
        }
        let principal = principal.id.clone();
        let limiter = self.limiter.clone();
        let mut inner = take_ready(&mut self.inner);
        Either::Right(Box::pin(async move {
            let mut call = call;
            let tokens = call.ctx.charge.as_ref().map_or(0, |c| c.priced.tokens);
            let now = jiff::Timestamp::now();
            match limiter.admit(&principal, &plan.rates, tokens, now).await {
                Ok(ticket) => {
                    let ticket = Ticket::new(ticket, limiter);
                    match call.ctx.charge.as_mut() {
                        Some(charge) => charge.ticket = Some(ticket),
                        // Unreachable: the price step charges every call of
                        // a principal with a plan. Holding nothing, the
                        // ticket is released at once.
                        None => drop(ticket),
                    }
                    inner.call(call).await
                }
                Err(e) => Err(Refusal::new(denial(e), call)),
            }
        }))
    }
}
