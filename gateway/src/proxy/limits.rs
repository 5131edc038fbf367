//! Request limits and readiness, before anything reads the request:
//! headers over `limits.max_header_bytes` and declared bodies over
//! `limits.max_request_body_bytes` are refused with their own codes (a
//! streamed body is capped as it is forwarded); and no call is taken on
//! while the ledger cannot promise to record it (fail closed).
//!
//! tower-http's `RequestBodyLimitLayer` does not fit here: its refusals
//! are plain-text 413s without a ledger row, and the gateway's come with
//! a stable JSON code and one.

use std::sync::Arc;

use super::call::Call;
use super::step::{Step, StepLayer};
use crate::error::{Code, Denial};
use crate::ledger::EventSink;

/// The size limits step.
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_request_body_bytes: u64,
}

impl Step for Limits {
    fn check(&self, call: &mut Call) -> Result<(), Denial> {
        let req = &call.req;
        let header_bytes: usize = req
            .headers()
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>()
            + req.uri().path_and_query().map_or(0, |p| p.as_str().len())
            + req.uri().authority().map_or(0, |a| a.as_str().len());
        if header_bytes > self.max_header_bytes {
            return Err(Denial::new(
                Code::HeadersTooLarge,
                format!("request headers exceed {} bytes", self.max_header_bytes),
            ));
        }
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_request_body_bytes) {
            return Err(Denial::new(
                Code::BodyTooLarge,
                format!("request body exceeds {} bytes", self.max_request_body_bytes),
            ));
        }
        Ok(())
    }
}

pub fn layer(limits: &caracal_config::Limits) -> StepLayer<Limits> {
    StepLayer::new(Limits {
        max_header_bytes: limits.max_header_bytes,
        max_request_body_bytes: limits.max_request_body_bytes,
    })
}

/// The readiness step: the ledger can record the call, and (in the
/// distributed deployment) the enforcement state deciding it is confirmed
/// current within the staleness bound.
pub struct Recordable {
    pub sink: Arc<dyn EventSink>,
    pub current: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Step for Recordable {
    fn check(&self, _: &mut Call) -> Result<(), Denial> {
        if !self.sink.accepting() {
            return Err(Denial::new(
                Code::NotReady,
                "the ledger cannot record calls right now; try again shortly",
            ));
        }
        if let Some(current) = &self.current {
            if !current.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(Denial::new(
                    Code::NotReady,
                    "this gateway cannot confirm its enforcement state is current (see /health); \
                     try again shortly",
                ));
            }
        }
        Ok(())
    }
}

pub fn recordable(
    sink: Arc<dyn EventSink>,
    current: Option<Arc<std::sync::atomic::AtomicBool>>,
) -> StepLayer<Recordable> {
    StepLayer::new(Recordable { sink, current })
}
