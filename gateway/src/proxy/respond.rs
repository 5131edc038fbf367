//! Response bodies and the JSON error responses every refusal uses.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};

use crate::error::Denial;
use crate::model::Mode;

/// Errors of bodies flowing through the gateway.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The one response body type of the data path.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

/// A JSON response with `status`.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The response for a refusal: status from the code, JSON body with the
/// stable `error` code, and `Proxy-Authenticate` / `WWW-Authenticate` when
/// credentials are what is missing.
pub fn denial(d: &Denial, mode: Mode) -> Response<Body> {
    let status = d.code.status(mode);
    let mut resp = json(status, &d.body());
    if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
        resp.headers_mut().insert(
            header::PROXY_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"caracal\""),
        );
    } else if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"caracal\""),
        );
    }
    if let Some(secs) = d.retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    resp
}
