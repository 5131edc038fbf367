//! Response bodies (whole JSON or channel-fed streams) and bounded request
//! body reading.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use serde_json::Value;
use tokio::sync::mpsc;

use super::errors::ApiError;

/// The body type of every mock response.
pub(crate) type MockBody = BoxBody<Bytes, Infallible>;

/// Largest request body the provider endpoints accept.
pub(crate) const MAX_REQUEST_BODY: usize = 32 * 1024 * 1024;

/// `value` serialized as a JSON response with `status`.
pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response<MockBody> {
    let bytes = Bytes::from(value.to_string());
    let mut response = Response::new(Full::new(bytes).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A body that yields each chunk as soon as it is sent on the channel and
/// ends when every sender is gone.
pub(crate) struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    pub(crate) fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        Self { rx }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

/// Reads a whole request body of at most `limit` bytes: 413 if larger,
/// 400 if the client breaks off.
pub(crate) async fn read_limited<B>(body: B, limit: usize) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds {limit} bytes"),
        )),
        Err(error) => Err(ApiError::bad_request(format!(
            "could not read request body: {error}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn oversized_body_is_413() {
        let body = Full::new(Bytes::from_static(b"0123456789"));
        let err = read_limited(body, 4).await.unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn channel_body_yields_chunks_in_order_then_ends() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Bytes::from_static(b"a")).await.unwrap();
        tx.send(Bytes::from_static(b"b")).await.unwrap();
        drop(tx);
        let all = ChannelBody::new(rx).collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"ab");
    }
}
