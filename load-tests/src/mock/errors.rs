//! Error responses in each provider's wire format.

use http::{HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

use super::body::{json_response, MockBody};

/// Whose API a request addresses; decides error and model-list shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provider {
    OpenAi,
    Anthropic,
}

/// An error answer: status plus a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// The error as `provider` would send it; 429 carries `retry-after: 1`.
    pub(crate) fn into_response(self, provider: Provider) -> Response<MockBody> {
        let mut response = json_response(self.status, &self.body(provider));
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }

    fn body(&self, provider: Provider) -> Value {
        match provider {
            Provider::OpenAi => json!({
                "error": {
                    "message": self.message,
                    "type": openai_type(self.status),
                    "param": null,
                    "code": openai_code(self.status),
                }
            }),
            Provider::Anthropic => json!({
                "type": "error",
                "error": { "type": anthropic_type(self.status), "message": self.message },
            }),
        }
    }
}

fn openai_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    }
}

fn openai_code(status: StatusCode) -> Value {
    match status.as_u16() {
        401 => json!("invalid_api_key"),
        404 => json!("unknown_url"),
        429 => json!("rate_limit_exceeded"),
        _ => Value::Null,
    }
}

fn anthropic_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_the_provider() {
        let err = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "slow down");
        let openai = err.body(Provider::OpenAi);
        assert_eq!(openai["error"]["type"], "rate_limit_error");
        assert_eq!(openai["error"]["message"], "slow down");
        let anthropic = err.body(Provider::Anthropic);
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "rate_limit_error");
        let overloaded = ApiError::new(StatusCode::from_u16(529).unwrap(), "busy");
        assert_eq!(
            overloaded.body(Provider::Anthropic)["error"]["type"],
            "overloaded_error"
        );
    }
}
