//! `ANY /_mock/echo/...`: describes the request it received, so tests can
//! see exactly what the gateway forwarded.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use serde_json::json;

use super::body::{json_response, MockBody};
use super::errors::{ApiError, Provider};
use super::record::header_map;

/// Streams the whole body through (counting bytes, keeping none) and
/// answers `{method, path, query, version, headers, body_bytes}`.
pub(crate) async fn echo<B>(req: Request<B>) -> Response<MockBody>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    let (parts, body) = req.into_parts();
    let mut body = std::pin::pin!(body);
    let mut body_bytes: u64 = 0;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    body_bytes += data.len() as u64;
                }
            }
            Err(error) => {
                let message = format!("could not read request body: {error}");
                return ApiError::bad_request(message).into_response(Provider::OpenAi);
            }
        }
    }
    json_response(
        StatusCode::OK,
        &json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "version": format!("{:?}", parts.version),
            "headers": header_map(&parts.headers),
            "body_bytes": body_bytes,
        }),
    )
}
