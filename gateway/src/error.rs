//! The data path's one error vocabulary: every refusal or failure a caller
//! can see has a stable machine-readable code, an HTTP status and a metric
//! label, decided here by exhaustive matches.

use std::fmt;

/// Stable error codes of the data path. The string forms are part of the
/// public contract (JSON `error` field, ledger `code`, metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// No credentials, or credentials that identify no principal.
    Unauthenticated,
    /// The request itself is malformed (bad CONNECT target, bad path, …).
    BadRequest,
    /// Request headers exceed the configured limit.
    HeadersTooLarge,
    /// Request body exceeds the configured limit.
    BodyTooLarge,
    /// The host or base_url prefix names no configured provider.
    ProviderUnknown,
    /// The request matches no catalog entry of its provider.
    OperationUnknown,
    /// The URL matches none of the principal's allowlist patterns.
    ResourceNotAllowed,
    /// The destination is a private, loopback, link-local or metadata address.
    DestinationForbidden,
    /// No mandate presented, and the principal holds none.
    MandateMissing,
    /// The presented mandate does not verify, or is not recorded.
    MandateInvalid,
    /// The mandate is past its expiry (with the clock skew).
    MandateExpired,
    /// The mandate is not valid yet (with the clock skew).
    MandateNotYetValid,
    /// The mandate or an ancestor is revoked.
    MandateRevoked,
    /// The mandate was issued to another principal.
    MandateWrongPrincipal,
    /// The policy the mandate was issued under is disabled.
    PolicyDisabled,
    /// Neither the mandate's scope nor its policy's covers the call.
    ScopeExceeded,
    /// The call's worst-case cost does not fit in a budget of the principal.
    BudgetExceeded,
    /// The call cannot be priced (unknown model, no price for the
    /// resource, or a price in another currency than the budget's).
    PriceUnknown,
    /// A rate limit of the principal is reached; retry after `Retry-After`.
    RateLimited,
    /// The Host of a request inside a tunnel differs from the tunnel's host.
    HostMismatch,
    /// The provider could not be reached or failed mid-response.
    UpstreamUnavailable,
    /// The provider did not answer in time.
    UpstreamTimeout,
    /// The gateway cannot currently prove anything (not ready).
    NotReady,
    /// A bug or an unexpected local failure.
    Internal,
    /// The client went away before the provider answered (ledger only).
    ClientCancelled,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::BadRequest => "bad_request",
            Self::HeadersTooLarge => "headers_too_large",
            Self::BodyTooLarge => "body_too_large",
            Self::ProviderUnknown => "provider_unknown",
            Self::OperationUnknown => "operation_unknown",
            Self::ResourceNotAllowed => "resource_not_allowed",
            Self::DestinationForbidden => "destination_forbidden",
            Self::MandateMissing => "mandate_missing",
            Self::MandateInvalid => "mandate_invalid",
            Self::MandateExpired => "mandate_expired",
            Self::MandateNotYetValid => "mandate_not_yet_valid",
            Self::MandateRevoked => "mandate_revoked",
            Self::MandateWrongPrincipal => "mandate_wrong_principal",
            Self::PolicyDisabled => "policy_disabled",
            Self::ScopeExceeded => "scope_exceeded",
            Self::BudgetExceeded => "budget_exceeded",
            Self::PriceUnknown => "price_unknown",
            Self::RateLimited => "rate_limited",
            Self::HostMismatch => "host_mismatch",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::NotReady => "not_ready",
            Self::Internal => "internal",
            Self::ClientCancelled => "client_cancelled",
        }
    }

    /// HTTP status of the refusal. `proxy` selects 407 over 401 for
    /// authentication failures on proxy requests.
    pub fn status(self, proxy: bool) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Self::Unauthenticated if proxy => S::PROXY_AUTHENTICATION_REQUIRED,
            Self::Unauthenticated => S::UNAUTHORIZED,
            Self::BadRequest => S::BAD_REQUEST,
            Self::HeadersTooLarge => S::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::BodyTooLarge => S::PAYLOAD_TOO_LARGE,
            Self::ProviderUnknown => S::FORBIDDEN,
            Self::OperationUnknown => S::FORBIDDEN,
            Self::ResourceNotAllowed => S::FORBIDDEN,
            Self::DestinationForbidden => S::FORBIDDEN,
            Self::MandateMissing
            | Self::MandateInvalid
            | Self::MandateExpired
            | Self::MandateNotYetValid
            | Self::MandateRevoked
            | Self::MandateWrongPrincipal
            | Self::PolicyDisabled
            | Self::ScopeExceeded => S::FORBIDDEN,
            Self::BudgetExceeded => S::PAYMENT_REQUIRED,
            Self::PriceUnknown => S::FORBIDDEN,
            Self::RateLimited => S::TOO_MANY_REQUESTS,
            Self::HostMismatch => S::MISDIRECTED_REQUEST,
            Self::UpstreamUnavailable => S::BAD_GATEWAY,
            Self::UpstreamTimeout => S::GATEWAY_TIMEOUT,
            Self::NotReady => S::SERVICE_UNAVAILABLE,
            Self::Internal => S::INTERNAL_SERVER_ERROR,
            // Never sent: there is nobody left to send it to (nginx's 499).
            Self::ClientCancelled => S::from_u16(499).unwrap_or(S::BAD_REQUEST),
        }
    }

    /// Whether this is a policy decision (deny) rather than a failure.
    pub fn is_denial(self) -> bool {
        match self {
            Self::Unauthenticated
            | Self::BadRequest
            | Self::HeadersTooLarge
            | Self::BodyTooLarge
            | Self::ProviderUnknown
            | Self::OperationUnknown
            | Self::ResourceNotAllowed
            | Self::DestinationForbidden
            | Self::HostMismatch => true,
            Self::MandateMissing
            | Self::MandateInvalid
            | Self::MandateExpired
            | Self::MandateNotYetValid
            | Self::MandateRevoked
            | Self::MandateWrongPrincipal
            | Self::PolicyDisabled
            | Self::ScopeExceeded => true,
            Self::BudgetExceeded | Self::PriceUnknown | Self::RateLimited => true,
            Self::UpstreamUnavailable
            | Self::UpstreamTimeout
            | Self::NotReady
            | Self::Internal
            | Self::ClientCancelled => false,
        }
    }
}

impl Code {
    /// Whether the authority step (mandates and policies) refused: such
    /// refusals are also recorded as authority events.
    pub fn is_authority(self) -> bool {
        matches!(
            self,
            Self::MandateMissing
                | Self::MandateInvalid
                | Self::MandateExpired
                | Self::MandateNotYetValid
                | Self::MandateRevoked
                | Self::MandateWrongPrincipal
                | Self::PolicyDisabled
                | Self::ScopeExceeded
        )
    }

    /// The code of a denial by [`crate::authority::decide`].
    pub fn from_decision(code: &str) -> Code {
        use crate::authority::decide as d;
        match code {
            d::MANDATE_MISSING => Self::MandateMissing,
            d::MANDATE_EXPIRED => Self::MandateExpired,
            d::MANDATE_NOT_YET_VALID => Self::MandateNotYetValid,
            d::MANDATE_REVOKED => Self::MandateRevoked,
            d::MANDATE_WRONG_PRINCIPAL => Self::MandateWrongPrincipal,
            d::POLICY_DISABLED => Self::PolicyDisabled,
            d::SCOPE_EXCEEDED => Self::ScopeExceeded,
            // Invalid, and anything unexpected: refusing is the safe side.
            _ => Self::MandateInvalid,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: the code and a message for the human reading it, with
/// optional machine-readable details and a retry hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub code: Code,
    pub message: String,
    /// Extra fields of the JSON body (e.g. a budget's limit and window).
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
    /// Seconds until a retry can succeed (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl Denial {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// The JSON body sent to the caller: `error`, `message`, then details.
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        body.insert("error".into(), self.code.as_str().into());
        body.insert("message".into(), self.message.clone().into());
        if let Some(details) = &self.details {
            for (k, v) in details {
                body.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        if let Some(secs) = self.retry_after {
            body.entry("retry_after_secs").or_insert(secs.into());
        }
        serde_json::Value::Object(body)
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Denial {}
