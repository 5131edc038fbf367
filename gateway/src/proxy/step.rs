//! The shape of an enforcement layer: a [`Step`] is a synchronous check of
//! the call against its snapshot (a thin adapter over a pure function);
//! [`StepLayer`] makes it a tower layer that refuses with the step's
//! denial or passes the call on, without boxing anything.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready};
use http::Response;
use tower::{Layer, Service};

use super::call::{Call, Refusal};
use super::respond::Body;
use crate::error::Denial;

/// What every enforcement service answers.
pub type Answer = Result<Response<Body>, Refusal>;

/// One synchronous enforcement step.
pub trait Step: Send + Sync + 'static {
    /// Passes the call (adding to its context), or refuses it.
    fn check(&self, call: &mut Call) -> Result<(), Denial>;
}

/// The layer of a [`Step`].
pub struct StepLayer<S>(Arc<S>);

impl<S> StepLayer<S> {
    pub fn new(step: S) -> Self {
        StepLayer(Arc::new(step))
    }
}

impl<S> Clone for StepLayer<S> {
    fn clone(&self) -> Self {
        StepLayer(self.0.clone())
    }
}

impl<S, I> Layer<I> for StepLayer<S> {
    type Service = StepService<S, I>;

    fn layer(&self, inner: I) -> Self::Service {
        StepService {
            step: self.0.clone(),
            inner,
        }
    }
}

/// A [`Step`] in front of the rest of the stack.
pub struct StepService<S, I> {
    step: Arc<S>,
    inner: I,
}

impl<S, I: Clone> Clone for StepService<S, I> {
    fn clone(&self) -> Self {
        StepService {
            step: self.step.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<S, I> Service<Call> for StepService<S, I>
where
    S: Step,
    I: Service<Call, Response = Response<Body>, Error = Refusal>,
{
    type Response = Response<Body>;
    type Error = Refusal;
    type Future = Either<I::Future, Ready<Answer>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Refusal>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut call: Call) -> Self::Future {
        match self.step.check(&mut call) {
            Ok(()) => Either::Left(self.inner.call(call)),
            Err(d) => Either::Right(futures_util::future::ready(Err(Refusal::new(d, call)))),
        }
    }
}

/// Takes the ready inner service out for an async call, leaving a clone
/// (tower's rule: the service that was polled ready is the one called).
pub fn take_ready<I: Clone>(inner: &mut I) -> I {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}
