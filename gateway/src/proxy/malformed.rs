//! Refusals of HTTP/1 requests that hyper's parser rejects (a malformed
//! request line or header, a header section or URI too long, an unknown
//! version) before any of the gateway's code sees them. hyper answers
//! those itself with a bare status and an empty body, then closes; this
//! I/O wrapper replaces that answer, on its way out, with the gateway's
//! JSON error shape and a stable code, and counts it in
//! `caracal_gateway_malformed_requests_total{status}`. There is no
//! principal or call to record, so no ledger row. (HTTP/2 framing errors
//! end the stream or connection; the protocol leaves no response to give.)
//!
//! hyper's own answer is recognised by its exact shape, in one write of
//! under 256 bytes: `HTTP/1.1 400|414|431 …`, then only `connection:
//! close`, `content-length: 0` and `date` headers. Nothing else the gateway
//! writes has it: its own refusals carry a JSON body, forwarded responses
//! carry `x-caracal-event-id`, and HTTP/2 writes larger payloads apart.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};

/// Wraps a connection's I/O; reads pass through.
pub struct Malformed<I> {
    inner: I,
    /// Replacement bytes not yet written, and how many bytes of the
    /// caller's buffer they stand for.
    pending: Option<(Vec<u8>, usize, usize)>,
    /// A replacement finished by a flush before its write returned: the
    /// retried write is answered with this count, not written again.
    answered: Option<usize>,
}

impl<I> Malformed<I> {
    pub fn new(inner: I) -> Self {
        Self {
            inner,
            pending: None,
            answered: None,
        }
    }
}

/// The gateway's answer in place of hyper's bare one, if `head` is one.
pub fn replacement(head: &[u8]) -> Option<(u16, Vec<u8>)> {
    // Cheap checks first: every response head passes through here.
    let status = head.get(9..12)?;
    if head.len() >= 256
        || !head.starts_with(b"HTTP/1.")
        || !matches!(status, b"400" | b"414" | b"431")
    {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    let rest = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))?;
    let status: u16 = rest.get(..3)?.parse().ok()?;
    let end = text.find("\r\n\r\n")?;
    if end + 4 != text.len() {
        return None;
    }
    let mut empty = false;
    for h in text[..end].split("\r\n").skip(1) {
        let name = h.split(':').next().unwrap_or("").to_ascii_lowercase();
        match name.as_str() {
            "content-length" => empty = h.eq_ignore_ascii_case("content-length: 0"),
            "connection" | "date" => {}
            _ => return None,
        }
    }
    let (code, reason, message) = match status {
        400 => (
            "bad_request",
            "Bad Request",
            "malformed HTTP request (request line or headers)",
        ),
        414 => (
            "bad_request",
            "URI Too Long",
            "the request target is too long",
        ),
        431 => (
            "headers_too_large",
            "Request Header Fields Too Large",
            "the request headers are too large",
        ),
        _ => return None,
    };
    if !empty {
        return None;
    }
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    let out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    Some((status, out.into_bytes()))
}

impl<I: Write + Unpin> Malformed<I> {
    /// Writes what is pending; `Ready(n)` once done, `n` being the bytes of
    /// the caller's buffer it stood for.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((bytes, done, stands_for)) = self.pending.as_mut() {
            if *done == bytes.len() {
                let n = *stands_for;
                self.pending = None;
                return Poll::Ready(Ok(n));
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]) {
                Poll::Ready(Ok(0)) => {
                    self.pending = None;
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => *done += n,
                Poll::Ready(Err(e)) => {
                    self.pending = None;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(0))
    }

    /// Whatever is pending written out, before a flush or a shutdown.
    fn drained(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.pending {
            None => Poll::Ready(Ok(())),
            Some(_) => self.drain(cx).map_ok(|n| self.answered = Some(n)),
        }
    }

    fn replace(&mut self, head: &[u8], stands_for: usize) -> bool {
        match replacement(head) {
            Some((status, bytes)) => {
                let label = match status {
                    414 => "414",
                    431 => "431",
                    _ => "400",
                };
                metrics::counter!("caracal_gateway_malformed_requests_total", "status" => label)
                    .increment(1);
                self.pending = Some((bytes, 0, stands_for));
                true
            }
            None => false,
        }
    }
}

impl<I: Read + Unpin> Read for Malformed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: Write + Unpin> Write for Malformed<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let Some(n) = this.answered.take() {
            return Poll::Ready(Ok(n));
        }
        if this.pending.is_some() || this.replace(buf, buf.len()) {
            return this.drain(cx);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if let Some(n) = this.answered.take() {
            return Poll::Ready(Ok(n));
        }
        if this.pending.is_some() {
            return this.drain(cx);
        }
        // hyper's bare answer is a head alone, in one slice.
        let mut nonempty = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(head), None) = (nonempty.next(), nonempty.next()) {
            if this.replace(head, total) {
                return this.drain(cx);
            }
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.drained(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.drained(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bare_error_answers_are_replaced() {
        let bare = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Mon, 30 Nov 2026 12:00:00 GMT\r\n\r\n";
        let (status, out) = replacement(bare).unwrap();
        assert_eq!(status, 400);
        let out = String::from_utf8(out).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"], "bad_request");
        let (status, out) = replacement(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(status, 431);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("headers_too_large"));
        for keep in [
            // A forwarded upstream refusal without a body keeps its own
            // (it carries the event id), as do statuses hyper never sends.
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-caracal-event-id: e\r\n\r\n"[..],
            b"HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-length: 0\r\n\r\n",
            // The gateway's own refusals carry a body.
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n",
            // Successes, other statuses, bodies after the head, partial heads.
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nextra",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            b"data: {\"x\":1}\n\n",
            b"\xff\xfe",
        ] {
            assert!(replacement(keep).is_none(), "{}", String::from_utf8_lossy(keep));
        }
    }
}
