//! `limits.header_read_timeout` for HTTP/1.1, counted from the first byte of
//! a request head rather than from when the connection went idle.
//!
//! hyper starts its header read timer whenever a connection waits for a
//! request head, including an idle keep-alive connection between requests,
//! so with its own timer a keep-alive connection would be closed after
//! `header_read_timeout` (10 s) of idleness instead of `idle_timeout`, and a
//! client whose pool reuses it at that moment gets "connection closed
//! before message completed" for a request that was never read. Here the
//! connection's reads ([`Watched`]) tell its timer ([`HeadTimer`]) when the
//! next head starts to arrive: only then does the header read timeout run.
//! An idle connection is closed by the listener's idle timeout instead.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::task::AtomicWaker;
use hyper::rt::{Sleep, Timer};
use tokio::io::{AsyncRead, ReadBuf};

/// What a connection's reads and its header timer share.
#[derive(Debug)]
pub struct HeadClock {
    opened: Instant,
    /// A head is awaited (the timer is armed and no byte has come yet).
    armed: AtomicBool,
    /// When the awaited head's first byte was read: microseconds since
    /// `opened`, at least 1 (0: not yet).
    started_us: AtomicU64,
    waker: AtomicWaker,
}

impl HeadClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            armed: AtomicBool::new(false),
            started_us: AtomicU64::new(0),
            waker: AtomicWaker::new(),
        })
    }

    /// A head is awaited from now on.
    fn arm(&self) {
        self.started_us.store(0, Ordering::SeqCst);
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Bytes were read: if a head is awaited and this is its first byte,
    /// its clock starts now.
    fn read(&self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            // 0 means "not yet": a first byte in the connection's first
            // microsecond counts as at its first.
            let us = u64::try_from(self.opened.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.started_us.store(us.max(1), Ordering::SeqCst);
            self.waker.wake();
        }
    }

    /// When the awaited head's first byte was read, if it was.
    fn started(&self) -> Option<Instant> {
        match self.started_us.load(Ordering::SeqCst) {
            0 => None,
            us => Some(self.opened + Duration::from_micros(us)),
        }
    }
}

/// hyper's HTTP/1.1 timer for one connection (hyper uses it only for the
/// header read timeout).
#[derive(Debug, Clone)]
pub struct HeadTimer(pub Arc<HeadClock>);

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.0.arm();
        Box::pin(HeadSleep {
            clock: self.0.clone(),
            wait: duration,
            sleep: None,
        })
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        self.sleep(deadline.saturating_duration_since(Instant::now()))
    }
}

/// Sleeps `wait` from the first byte of the awaited head; never wakes
/// while no byte comes.
struct HeadSleep {
    clock: Arc<HeadClock>,
    wait: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.sleep.is_none() {
            self.clock.waker.register(cx.waker());
            let Some(start) = self.clock.started() else {
                return Poll::Pending;
            };
            let until = tokio::time::Instant::from_std(start + self.wait);
            self.sleep = Some(Box::pin(tokio::time::sleep_until(until)));
        }
        match self.sleep.as_mut() {
            Some(s) => s.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

impl Sleep for HeadSleep {}

/// A connection's stream, telling its [`HeadClock`] when bytes are read.
pub struct Watched<S> {
    inner: S,
    clock: Arc<HeadClock>,
}

impl<S> Watched<S> {
    pub fn new(inner: S, clock: Arc<HeadClock>) -> Self {
        Self { inner, clock }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.clock.read();
        }
        r
    }
}

write_through!(Watched);
