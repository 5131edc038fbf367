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

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::call::Call;
use super::concurrency::PrincipalSlot;
use super::step::{Step, StepLayer};
use crate::error::{Code, Denial};

/// A request's place under the limit; also counted in the in-flight gauge.
/// It carries the request's place under its principal's limit too, so
/// both end together, with the response body.
pub struct InFlight {
    _permit: OwnedSemaphorePermit,
    _principal: Option<PrincipalSlot>,
}

impl InFlight {
    fn new(permit: OwnedSemaphorePermit) -> Self {
        metrics::gauge!("caracal_gateway_requests_in_flight").increment(1.0);
        Self {
            _permit: permit,
            _principal: None,
        }
    }

    /// Holds the request's place under its principal's limit as long as
    /// this one.
    pub fn hold(&mut self, slot: PrincipalSlot) {
        self._principal = Some(slot);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("caracal_gateway_requests_in_flight").decrement(1.0);
    }
}

/// The in-flight limit step.
pub struct Overload {
    slots: Arc<Semaphore>,
    limit: usize,
}

pub fn layer(limit: usize) -> StepLayer<Overload> {
    StepLayer::new(Overload {
        slots: Arc::new(Semaphore::new(limit)),
        limit,
    })
}

impl Step for Overload {
    fn check(&self, call: &mut Call) -> Result<(), Denial> {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            metrics::counter!("caracal_gateway_requests_shed_total").increment(1);
            let mut d = Denial::new(
                Code::Overloaded,
                format!(
                    "the gateway has {} requests in flight, its limit; retry shortly",
                    self.limit
                ),
            );
            d.retry_after = Some(1);
            return Err(d);
        };
        call.ctx.in_flight = Some(InFlight::new(permit));
        Ok(())
    }
}
