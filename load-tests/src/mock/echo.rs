//! `ANY /_mock/echo/...`: describes the request it received, so tests can
//! see exactly what the gateway forwarded — and, with `x-mock-echo-headers`
//! and `x-mock-echo-chunk`, reflects it the way a hostile or careless
//! upstream would (request headers as response headers, the description
//! streamed in small chunks).

use bytes::Bytes;
use http::{HeaderName, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use serde_json::json;

use super::body::{json_response, ChannelBody, MockBody};
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
    let described = json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "version": format!("{:?}", parts.version),
        "headers": header_map(&parts.headers),
        "body_bytes": body_bytes,
    });
    let mut response = match chunk_size(&parts.headers) {
        None => json_response(StatusCode::OK, &described),
        Some(size) => streamed(described.to_string().into_bytes(), size),
    };
    // `x-mock-echo-headers`: every request header comes back as a response
    // header `x-echo-NAME` too (an upstream that reflects headers).
    if parts.headers.contains_key("x-mock-echo-headers") {
        for (name, value) in &parts.headers {
            if let Ok(name) = HeaderName::from_bytes(format!("x-echo-{name}").as_bytes()) {
                response.headers_mut().append(name, value.clone());
            }
        }
    }
    response
}

/// `x-mock-echo-chunk: N` (1..=65536): the description is streamed in
/// N-byte chunks, each its own frame.
fn chunk_size(headers: &http::HeaderMap) -> Option<usize> {
    headers
        .get("x-mock-echo-chunk")?
        .to_str()
        .ok()?
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=65536).contains(n))
}

fn streamed(bytes: Vec<u8>, size: usize) -> Response<MockBody> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        for chunk in bytes.chunks(size) {
            if tx.send(Bytes::copy_from_slice(chunk)).await.is_err() {
                return;
            }
            tokio::task::yield_now().await;
        }
    });
    let mut response = Response::new(ChannelBody::new(rx).boxed());
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
