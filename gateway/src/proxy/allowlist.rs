//! Allowlist: where may this principal go at all? Over the canonical URL
//! the route step built (no query string).

use super::call::Call;
use super::step::{Step, StepLayer};
use crate::error::{Code, Denial};

/// The allowlist step.
pub struct Allowlist;

impl Step for Allowlist {
    fn check(&self, call: &mut Call) -> Result<(), Denial> {
        let ctx = &call.ctx;
        let principal = ctx.principal()?;
        let url = ctx.record.url.as_deref().unwrap_or_default();
        ctx.snapshot
            .allowlists
            .check(&principal.id, url)
            .map(|_| ())
            .map_err(|e| Denial::new(Code::ResourceNotAllowed, e.0))
    }
}

pub fn layer() -> StepLayer<Allowlist> {
    StepLayer::new(Allowlist)
}
