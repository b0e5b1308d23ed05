//! The request body's deadline that grows with the bytes received, as Apache's mod_reqtimeout
//! `body=timeout,MinRate=rate`: what cuts a body trickled in to hold a connection open, never a
//! slow but steady upload.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use tokio::time::{Instant, Sleep};

use crate::config::BodyRate;
use crate::upstream::BoxError;

/// One request body's clock: when its first read began and how many bytes have arrived.
#[derive(Debug)]
pub(crate) struct BodyClock {
    rate: BodyRate,
    start: Option<Instant>,
    received: u64,
}

impl BodyClock {
    pub(crate) fn new(rate: BodyRate) -> Self {
        BodyClock { rate, start: None, received: 0 }
    }

    /// The deadline for the next read, starting the clock at the first call (the body's
    /// first read, after any `100 Continue`, as mod_reqtimeout starts its body stage when the
    /// body is first read). `None`: no body deadline is configured.
    pub(crate) fn deadline(&mut self) -> Option<Instant> {
        let start = *self.start.get_or_insert_with(Instant::now);
        self.rate.deadline(start, self.received)
    }

    /// `n` more bytes of the body arrived: the deadline moves by `n / min_rate` seconds. The
    /// clock starts here if these bytes came before any wait (a splice finding them queued).
    pub(crate) fn received(&mut self, n: u64) {
        self.start.get_or_insert_with(Instant::now);
        self.received = self.received.saturating_add(n);
    }

    /// Until when to wait for the next bytes: the earlier of the stall limit (`timeout`
    /// from now) and the body's deadline; and whether it is the body's deadline.
    pub(crate) fn wait_until(&mut self, stall: std::time::Duration) -> (Instant, bool) {
        let stall_at = Instant::now() + stall;
        match self.deadline() {
            Some(d) if d <= stall_at => (d, true),
            _ => (stall_at, false),
        }
    }
}

/// A request body read through hyper (HTTP/2 streams, and HTTP/1 on the hyper path) under the
/// same deadline: a frame still missing when the deadline passes ends the body with an error,
/// and `expired` tells the proxy path to answer `408` rather than blame the origin.
pub(crate) struct RatedBody<B> {
    inner: B,
    clock: BodyClock,
    sleep: Option<Pin<Box<Sleep>>>,
    expired: Arc<AtomicBool>,
}

impl<B> RatedBody<B> {
    pub(crate) fn new(inner: B, rate: BodyRate, expired: Arc<AtomicBool>) -> Self {
        RatedBody { inner, clock: BodyClock::new(rate), sleep: None, expired }
    }
}

impl<B> Body for RatedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.clock.received(d.len() as u64);
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let Some(deadline) = this.clock.deadline() else { return Poll::Pending };
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.deadline() != deadline {
                    sleep.as_mut().reset(deadline);
                }
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.expired.store(true, Ordering::Release);
                Poll::Ready(Some(Err(BODY_TOO_SLOW.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

/// Why a body is cut for its rate, for the log.
pub(crate) const BODY_TOO_SLOW: &str = "request body below the minimum rate (RequestReadTimeout body=, body_read_timeout and body_min_rate)";
