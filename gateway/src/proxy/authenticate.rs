//! Authenticate: who is calling. First, so an unauthenticated caller
//! learns nothing else.

use std::sync::Arc;

use super::call::{Call, Caller};
use super::step::{Step, StepLayer};
use crate::error::{Code, Denial};
use crate::model::Principal;
use crate::snapshot::Snapshot;

/// The calling principal, from the credentials the request presented or
/// the tunnel it came through.
pub fn authenticate(snap: &Snapshot, caller: Caller) -> Result<Arc<Principal>, Denial> {
    let unauthenticated = |m: String| Denial::new(Code::Unauthenticated, m);
    match caller {
        Caller::Presented(Ok(Some(p))) => snap
            .authenticate(&p)
            .cloned()
            .map_err(|e| unauthenticated(e.0)),
        Caller::Presented(Ok(None)) => Err(unauthenticated(
            "no credentials: send Proxy-Authorization (proxy) or Authorization: Bearer (base_url) with a principal token".into(),
        )),
        Caller::Presented(Err(e)) => Err(unauthenticated(e.0)),
        Caller::Tunnel { principal_id } => snap
            .principal(&principal_id)
            .cloned()
            .ok_or_else(|| unauthenticated("the tunnel's principal no longer exists".into())),
    }
}

/// The authentication step.
pub struct Authenticate;

impl Step for Authenticate {
    fn check(&self, call: &mut Call) -> Result<(), Denial> {
        let ctx = &mut call.ctx;
        let caller = ctx.caller.take().unwrap_or(Caller::Presented(Ok(None)));
        let principal = authenticate(&ctx.snapshot, caller)?;
        ctx.record.principal_id = Some(principal.id.clone());
        ctx.principal = Some(principal);
        Ok(())
    }
}

pub fn layer() -> StepLayer<Authenticate> {
    StepLayer::new(Authenticate)
}
