//! The in-flight limit: at most `limits.max_in_flight` requests are
//! enforced or streamed at once, all connections together. Beyond it a
//! request is shed at once — `503 overloaded` with a JSON body and a
//! ledger row — rather than queued: a gateway that queues under overload
//! only adds latency to every call it will eventually fail.
//!
//! tower's `ConcurrencyLimit` releases its permit when the response
//! future resolves; here the permit moves into the response body, so a
//! stream holds its place until it ends (what memory actually tracks).

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready};
use http::Response;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

use super::call::{Call, Refusal};
use super::respond::Body;
use super::step::Answer;
use crate::error::{Code, Denial};

/// A request's place under the limit; also counted in the in-flight gauge.
pub struct InFlight {
    _permit: OwnedSemaphorePermit,
}

impl InFlight {
    fn new(permit: OwnedSemaphorePermit) -> Self {
        metrics::gauge!("caracal_gateway_requests_in_flight").increment(1.0);
        Self { _permit: permit }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("caracal_gateway_requests_in_flight").decrement(1.0);
    }
}

#[derive(Clone)]
pub struct OverloadLayer {
    slots: Arc<Semaphore>,
    limit: usize,
}

pub fn layer(limit: usize) -> OverloadLayer {
    OverloadLayer {
        slots: Arc::new(Semaphore::new(limit)),
        limit,
    }
}

impl<I> Layer<I> for OverloadLayer {
    type Service = Overload<I>;

    fn layer(&self, inner: I) -> Self::Service {
        Overload {
            slots: self.slots.clone(),
            limit: self.limit,
            inner,
        }
    }
}

#[derive(Clone)]
pub struct Overload<I> {
    slots: Arc<Semaphore>,
    limit: usize,
    inner: I,
}

impl<I> Service<Call> for Overload<I>
where
    I: Service<Call, Response = Response<Body>, Error = Refusal>,
{
    type Response = Response<Body>;
    type Error = Refusal;
    type Future = Either<I::Future, Ready<Answer>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Refusal>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut call: Call) -> Self::Future {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                call.ctx.in_flight = Some(InFlight::new(permit));
                Either::Left(self.inner.call(call))
            }
            Err(_) => {
                metrics::counter!("caracal_gateway_requests_shed_total").increment(1);
                let mut d = Denial::new(
                    Code::Overloaded,
                    format!(
                        "the gateway has {} requests in flight, its limit; retry shortly",
                        self.limit
                    ),
                );
                d.retry_after = Some(1);
                Either::Right(futures_util::future::ready(Err(Refusal::new(d, call))))
            }
        }
    }
}
