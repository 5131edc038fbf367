//! The shape of an enforcement layer: a [`Step`] is a synchronous check of
//! the call against its snapshot (a thin adapter over a pure function);
//! [`StepLayer`] makes it a tower layer that refuses with the step's
//! denial or passes the call on, without boxing anything. An
//! [`AsyncStep`] is the same for steps that wait (a body, a seam), boxed
//! only for the calls it applies to.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{BoxFuture, Either, Ready};
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

/// One asynchronous enforcement step (it reads a body, or asks a seam
/// that may answer over the network).
pub trait AsyncStep: Send + Sync + 'static {
    /// Whether the step has anything to do for this call; a call it does
    /// not apply to passes on without a boxed future.
    fn applies(&self, call: &Call) -> bool;

    /// The step: the call, to go on (with what the step added), or its
    /// refusal.
    fn run(self: Arc<Self>, call: Call) -> BoxFuture<'static, Result<Call, Refusal>>;
}

/// The layer of an [`AsyncStep`].
pub struct AsyncStepLayer<S>(Arc<S>);

impl<S> AsyncStepLayer<S> {
    pub fn new(step: S) -> Self {
        AsyncStepLayer(Arc::new(step))
    }
}

impl<S> Clone for AsyncStepLayer<S> {
    fn clone(&self) -> Self {
        AsyncStepLayer(self.0.clone())
    }
}

impl<S, I> Layer<I> for AsyncStepLayer<S> {
    type Service = AsyncStepService<S, I>;

    fn layer(&self, inner: I) -> Self::Service {
        AsyncStepService {
            step: self.0.clone(),
            inner,
        }
    }
}

/// An [`AsyncStep`] in front of the rest of the stack.
pub struct AsyncStepService<S, I> {
    step: Arc<S>,
    inner: I,
}

impl<S, I: Clone> Clone for AsyncStepService<S, I> {
    fn clone(&self) -> Self {
        AsyncStepService {
            step: self.step.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<S, I> Service<Call> for AsyncStepService<S, I>
where
    S: AsyncStep,
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
        if !self.step.applies(&call) {
            return Either::Left(self.inner.call(call));
        }
        let step = self.step.clone();
        let mut inner = take_ready(&mut self.inner);
        Either::Right(Box::pin(async move {
            let call = step.run(call).await?;
            inner.call(call).await
        }))
    }
}
