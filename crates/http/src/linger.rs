//! Lingering reads for HTTP/2: a request body that was answered without being read (the
//! gateway's local 404 or 403, an origin's early 401 or 413, a server handler's 404) is read to
//! its end and thrown away before the stream closes, so the sender (the gateway's downstream,
//! the server's client) gets the whole answer.
//!
//! RFC 9113 §8.1 lets a server answer before the request body is complete and then end the
//! stream with RST_STREAM(NO_ERROR), which h2 does as soon as the last handle on the stream is
//! dropped. Senders still sending treat that reset as a failure of the whole
//! exchange: curl 7.88 (Debian 12's, and so git's) drops the answer it already received
//! ("Stream error in the HTTP/2 framing layer") in 3-40% of tries. Reading what the sender
//! still sends, as nginx (`ngx_http_discard_request_body`) and Apache's lingering close do,
//! lets the stream end normally; the reset is sent only if the sender goes on past
//! [`LINGER_TOTAL`] or falls silent for [`LINGER_IDLE`] (Apache's `MAX_SECS_TO_LINGER` and
//! `SECONDS_TO_LINGER`).
//!
//! And the answer's end waits for the request body's ([`HoldEnd`]): curl 7.88 never finishes
//! an exchange whose answer ended (END_STREAM) while it was still sending, if nothing else
//! comes after its own END_STREAM; it waits until killed. That is how `git push` over HTTP/2
//! could hang: `git-receive-pack` answers as soon as it has the pack, which can be
//! before the sender has sent the last of its body. Apache and nginx never answer before
//! the whole body is in, so they never meet it.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// The longest an unread request body is read for after the answer (Apache: 30 s).
pub const LINGER_TOTAL: Duration = Duration::from_secs(30);
/// The longest a lingering read waits for the sender's next bytes (Apache: 2 s).
pub const LINGER_IDLE: Duration = Duration::from_secs(2);

/// A request body that, when dropped before its end on an HTTP/2 stream, is read to its end in
/// the background (see the module's documentation). HTTP/1.1 bodies are left to hyper, which
/// reads or closes what is left.
pub struct Linger {
    inner: Option<Incoming>,
    linger: bool,
    over: Arc<BodyOver>,
}

impl Linger {
    pub fn new(body: Incoming, h2: bool) -> Linger {
        let over = Arc::new(BodyOver::default());
        if body.is_end_stream() {
            over.set();
        }
        Linger { inner: Some(body), linger: h2, over }
    }

    /// Told when this body is over: read to its end, failed, or given up on.
    pub fn over(&self) -> Arc<BodyOver> {
        self.over.clone()
    }
}

/// Whether a request body is over, with a waker for [`HoldEnd`].
#[derive(Default)]
pub struct BodyOver {
    over: AtomicBool,
    waker: AtomicWaker,
}

impl BodyOver {
    fn set(&self) {
        self.over.store(true, Ordering::Release);
        self.waker.wake();
    }

    pub fn is_over(&self) -> bool {
        self.over.load(Ordering::Acquire)
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_over() {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.is_over() { Poll::Ready(()) } else { Poll::Pending }
    }
}

/// Whether an answer's end waits for the request body ([`HoldEnd`]): a success with a body.
/// From 300 up, curl stops sending at the head and ends its stream at once, short of any
/// Content-Length it gave, which h2 answers with RST_STREAM(PROTOCOL_ERROR) (RFC 9113
/// §8.1.1): the answer must be whole before that, and with the sender stopping there is
/// nothing to wait for.
pub fn holds_end(status: http::StatusCode) -> bool {
    status.is_success() && status != http::StatusCode::NO_CONTENT
}

/// An HTTP/2 answer whose end (END_STREAM) waits until the request body is over (see the
/// module's documentation); its head and data go out as they come.
pub struct HoldEnd<B> {
    inner: B,
    inner_done: bool,
    over: Arc<BodyOver>,
}

impl<B> HoldEnd<B> {
    pub fn new(inner: B, over: Arc<BodyOver>) -> HoldEnd<B> {
        HoldEnd { inner, inner_done: false, over }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for HoldEnd<B> {
    type Data = Bytes;
    type Error = B::Error;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if !self.inner_done {
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(None) => self.inner_done = true,
                other => return other,
            }
        }
        self.over.poll(cx).map(|()| None)
    }
    fn is_end_stream(&self) -> bool {
        (self.inner_done || self.inner.is_end_stream()) && self.over.is_over()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Body for Linger {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let Some(b) = self.inner.as_mut() else { return Poll::Ready(None) };
        let r = Pin::new(&mut *b).poll_frame(cx);
        if matches!(r, Poll::Ready(None | Some(Err(_)))) || (r.is_ready() && b.is_end_stream()) {
            self.over.set();
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(Body::size_hint).unwrap_or_default()
    }
}

impl Drop for Linger {
    fn drop(&mut self) {
        if self.linger
            && let Some(body) = self.inner.take().filter(|b| !b.is_end_stream())
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(discard(body, self.over.clone()));
        } else {
            self.over.set();
        }
    }
}

/// Read `body` to its end, or until the sender stays silent or sends for too long;
/// dropping it then lets h2 reset the stream (NO_ERROR once the answer is sent).
async fn discard(mut body: Incoming, over: Arc<BodyOver>) {
    let all = tokio::time::sleep(LINGER_TOTAL);
    tokio::pin!(all);
    loop {
        tokio::select! {
            frame = tokio::time::timeout(LINGER_IDLE, body.frame()) => match frame {
                Ok(Some(Ok(_))) => {}
                // The end, an error (a reset from the sender) or silence.
                _ => break,
            },
            _ = &mut all => break,
        }
    }
    // The end of the answer goes out after the end of the request body (or its reset) has
    // been read: the sender has something to read after its own END_STREAM.
    drop(body);
    over.set();
}
