//! The data path's one error vocabulary: every refusal or failure a caller
//! can see has a stable machine-readable code, an HTTP status and a metric
//! label, decided here by exhaustive matches.

use std::fmt;

use crate::model::{Decision, Mode};

crate::wire_enum! {
    /// Stable error codes of the data path. The string forms are part of the
    /// public contract (JSON `error` field, ledger `code`, metric label).
    pub enum Code as "error code" {
        /// No credentials, or credentials that identify no principal.
        Unauthenticated => "unauthenticated",
        /// The request itself is malformed (bad CONNECT target, bad path, …).
        BadRequest => "bad_request",
        /// Request headers exceed the configured limit.
        HeadersTooLarge => "headers_too_large",
        /// Request body exceeds the configured limit.
        BodyTooLarge => "body_too_large",
        /// The host or base_url prefix names no configured provider.
        ProviderUnknown => "provider_unknown",
        /// The request matches no catalog entry of its provider.
        OperationUnknown => "operation_unknown",
        /// The URL matches none of the principal's allowlist patterns.
        ResourceNotAllowed => "resource_not_allowed",
        /// The destination is a private, loopback, link-local or metadata address.
        DestinationForbidden => "destination_forbidden",
        /// No mandate presented, and the principal holds none.
        MandateMissing => "mandate_missing",
        /// The presented mandate does not verify, or is not recorded.
        MandateInvalid => "mandate_invalid",
        /// The mandate is past its expiry (with the clock skew).
        MandateExpired => "mandate_expired",
        /// The mandate is not valid yet (with the clock skew).
        MandateNotYetValid => "mandate_not_yet_valid",
        /// The mandate or an ancestor is revoked.
        MandateRevoked => "mandate_revoked",
        /// The mandate was issued to another principal.
        MandateWrongPrincipal => "mandate_wrong_principal",
        /// The policy the mandate was issued under is disabled.
        PolicyDisabled => "policy_disabled",
        /// Neither the mandate's scope nor its policy's covers the call.
        ScopeExceeded => "scope_exceeded",
        /// The call's worst-case cost does not fit in a budget of the principal.
        BudgetExceeded => "budget_exceeded",
        /// The call cannot be priced (unknown model, no price for the
        /// resource, or a price in another currency than the budget's).
        PriceUnknown => "price_unknown",
        /// The request names a model, but the gateway cannot bound the
        /// output its operation generates (no output limit it knows).
        OutputUnbounded => "output_unbounded",
        /// The request brings in input its body does not carry, and the
        /// model has no context window in the pricebook to bound it.
        InputUnbounded => "input_unbounded",
        /// The request enables a provider-run tool without a bound on its uses.
        ToolUnbounded => "tool_unbounded",
        /// A rate limit of the principal is reached; retry after `Retry-After`.
        RateLimited => "rate_limited",
        /// The Host of a request inside a tunnel differs from the tunnel's host.
        HostMismatch => "host_mismatch",
        /// The provider could not be reached or failed mid-response.
        UpstreamUnavailable => "upstream_unavailable",
        /// The provider did not answer in time.
        UpstreamTimeout => "upstream_timeout",
        /// The gateway cannot currently prove anything (not ready).
        NotReady => "not_ready",
        /// Too many requests are in flight; this one was shed at once.
        Overloaded => "overloaded",
        /// A bug or an unexpected local failure.
        Internal => "internal",
        /// The client went away before the provider answered (ledger only).
        ClientCancelled => "client_cancelled",
    }
}

impl Code {
    /// HTTP status of the refusal. Proxy requests (CONNECT, absolute-form)
    /// get 407 rather than 401 for authentication failures.
    pub fn status(self, mode: Mode) -> http::StatusCode {
        use http::StatusCode as S;
        let proxy = match mode {
            Mode::Proxy | Mode::HttpProxy => true,
            Mode::BaseUrl | Mode::Cli => false,
        };
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
            Self::PriceUnknown
            | Self::OutputUnbounded
            | Self::InputUnbounded
            | Self::ToolUnbounded => S::FORBIDDEN,
            Self::RateLimited => S::TOO_MANY_REQUESTS,
            Self::HostMismatch => S::MISDIRECTED_REQUEST,
            Self::UpstreamUnavailable => S::BAD_GATEWAY,
            Self::UpstreamTimeout => S::GATEWAY_TIMEOUT,
            Self::NotReady | Self::Overloaded => S::SERVICE_UNAVAILABLE,
            Self::Internal => S::INTERNAL_SERVER_ERROR,
            // Never sent: there is nobody left to send it to (nginx's 499).
            Self::ClientCancelled => S::from_u16(499).unwrap_or(S::BAD_REQUEST),
        }
    }

    /// The ledger decision of a refusal with this code: `deny` for a
    /// policy decision, `error` for a failure.
    pub fn decision(self) -> Decision {
        match self {
            Self::Unauthenticated
            | Self::BadRequest
            | Self::HeadersTooLarge
            | Self::BodyTooLarge
            | Self::ProviderUnknown
            | Self::OperationUnknown
            | Self::ResourceNotAllowed
            | Self::DestinationForbidden
            | Self::HostMismatch
            | Self::MandateMissing
            | Self::MandateInvalid
            | Self::MandateExpired
            | Self::MandateNotYetValid
            | Self::MandateRevoked
            | Self::MandateWrongPrincipal
            | Self::PolicyDisabled
            | Self::ScopeExceeded
            | Self::BudgetExceeded
            | Self::PriceUnknown
            | Self::OutputUnbounded
            | Self::InputUnbounded
            | Self::ToolUnbounded
            | Self::RateLimited => Decision::Deny,
            Self::UpstreamUnavailable
            | Self::UpstreamTimeout
            | Self::NotReady
            | Self::Overloaded
            | Self::Internal
            | Self::ClientCancelled => Decision::Error,
        }
    }

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
