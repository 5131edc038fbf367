//! Mandate: does a current mandate, under a current policy, cover this
//! call? An explicit `x-caracal-mandate` is judged alone; without one,
//! the principal's recorded mandates are (see [`crate::authority::decide`]).

use super::call::Call;
use super::step::{Step, StepLayer};
use crate::authority::decide::{self, Denied};
use crate::error::{Code, Denial};
use crate::model::Principal;
use crate::snapshot::Snapshot;

/// The header that presents one specific mandate (base_url requests and
/// requests inside a CONNECT tunnel). Like every `x-caracal-*` header it
/// never reaches the provider.
pub const MANDATE_HEADER: &str = "x-caracal-mandate";

/// The explicit mandate a request carries in [`MANDATE_HEADER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MandateArg<'a> {
    /// No header: the principal's recorded mandates are consulted.
    Absent,
    /// One header: exactly this mandate is judged (no fallback).
    Token(&'a str),
    /// A header that cannot be a token (repeated, not visible ASCII).
    Malformed(&'static str),
}

impl<'a> MandateArg<'a> {
    /// Reads [`MANDATE_HEADER`] from request headers.
    pub fn from_headers(headers: &'a http::HeaderMap) -> Self {
        let mut values = headers.get_all(MANDATE_HEADER).iter();
        let Some(value) = values.next() else {
            return Self::Absent;
        };
        if values.next().is_some() {
            return Self::Malformed("more than one x-caracal-mandate header");
        }
        match value.to_str() {
            Ok(v) => Self::Token(v.trim()),
            Err(_) => Self::Malformed("x-caracal-mandate is not visible ASCII"),
        }
    }
}

/// The data path's code for a mandate denial.
pub fn code(d: Denied) -> Code {
    match d {
        Denied::MandateMissing => Code::MandateMissing,
        Denied::MandateInvalid => Code::MandateInvalid,
        Denied::MandateExpired => Code::MandateExpired,
        Denied::MandateNotYetValid => Code::MandateNotYetValid,
        Denied::MandateRevoked => Code::MandateRevoked,
        Denied::MandateWrongPrincipal => Code::MandateWrongPrincipal,
        Denied::PolicyDisabled => Code::PolicyDisabled,
        Denied::ScopeExceeded => Code::ScopeExceeded,
    }
}

/// Decides the call for `principal` at unix time `now` with `skew`
/// seconds of clock tolerance. Returns the id of the mandate the call goes
/// ahead under; on a denial, the mandate it was refused for (if one was
/// judged) with the denial.
pub fn authorise(
    snap: &Snapshot,
    principal: &Principal,
    resource: &str,
    action: crate::model::Action,
    mandate: MandateArg<'_>,
    now: i64,
    skew: i64,
) -> Result<String, (Option<String>, Denial)> {
    let call = decide::Call {
        principal_id: Some(&principal.id),
        resource,
        action,
        // Only a refusal is ever printed; its reason is always recorded.
        explain: false,
    };
    let view = &snap.authority;
    let d = match mandate {
        MandateArg::Malformed(why) => return Err((None, Denial::new(Code::MandateInvalid, why))),
        MandateArg::Token(token) => decide::decide(Some(token), view, now, skew, &call),
        MandateArg::Absent => decide::decide_held(view, now, skew, &call),
    };
    let id = d.mandate_id().map(str::to_string);
    match (d.outcome, id) {
        (Ok(()), Some(id)) => Ok(id),
        (Ok(()), None) => Err((
            None,
            Denial::new(Code::MandateInvalid, "allowed without a mandate to name"),
        )),
        (Err(denied), id) => Err((
            id,
            Denial::new(code(denied), d.reasons.last().cloned().unwrap_or_default()),
        )),
    }
}

/// The mandate step.
pub struct Mandate {
    /// Clock skew tolerated on nbf/exp, seconds.
    pub skew: i64,
}

impl Step for Mandate {
    fn check(&self, call: &mut Call) -> Result<(), Denial> {
        let Call { req, ctx } = call;
        let principal = ctx.principal()?;
        let (_, operation) = ctx.route()?;
        let now = jiff::Timestamp::now().as_second();
        let arg = MandateArg::from_headers(req.headers());
        let decided = authorise(
            &ctx.snapshot,
            principal,
            &operation.resource,
            operation.action,
            arg,
            now,
            self.skew,
        );
        match decided {
            Ok(id) => {
                ctx.record.mandate_id = Some(id);
                Ok(())
            }
            Err((id, denial)) => {
                ctx.record.mandate_id = id;
                Err(denial)
            }
        }
    }
}

pub fn layer(skew: i64) -> StepLayer<Mandate> {
    StepLayer::new(Mandate { skew })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mandate_denial_keeps_its_wire_string_as_a_data_path_code() {
        for d in Denied::ALL {
            assert_eq!(code(*d).as_str(), d.as_str());
            assert!(code(*d).is_authority());
        }
    }
}
