//! Lingering reads for HTTP/2: a downstream's request body that the gateway answered without
//! reading (a local 404 or 403, an origin's early 401 or 413) is read to its end and thrown
//! away before the stream closes, so the downstream gets the whole answer.
//!
//! RFC 9113 §8.1 lets a server answer before the request body is complete and then end the
//! stream with RST_STREAM(NO_ERROR), which h2 does as soon as the last handle on the stream is
//! dropped. Downstreams that are still sending treat that reset as a failure of the whole
//! exchange: curl 7.88 (Debian 12's, and so git's) drops the answer it already received
//! ("Stream error in the HTTP/2 framing layer") in 3-40% of tries. Reading what the downstream
//! still sends, as nginx (`ngx_http_discard_request_body`) and Apache's lingering close do,
//! lets the stream end normally; the reset is sent only if the downstream goes on past
//! [`LINGER_TOTAL`] or falls silent for [`LINGER_IDLE`] (Apache's `MAX_SECS_TO_LINGER` and
//! `SECONDS_TO_LINGER`).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// The longest an unread request body is read for after the answer (Apache: 30 s).
pub(crate) const LINGER_TOTAL: Duration = Duration::from_secs(30);
/// The longest a lingering read waits for the downstream's next bytes (Apache: 2 s).
pub(crate) const LINGER_IDLE: Duration = Duration::from_secs(2);

/// A request body that, when dropped before its end on an HTTP/2 stream, is read to its end in
/// the background (see the module's documentation). HTTP/1.1 bodies are left to hyper, which
/// reads or closes what is left.
pub struct Linger {
    inner: Option<Incoming>,
    linger: bool,
}

impl Linger {
    pub(crate) fn new(body: Incoming, h2: bool) -> Linger {
        Linger { inner: Some(body), linger: h2 }
    }
}

impl Body for Linger {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.inner.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
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
            rt.spawn(discard(body));
        }
    }
}

/// Read `body` to its end, or until the downstream stays silent or sends for too long;
/// dropping it then lets h2 reset the stream (NO_ERROR once the answer is sent).
async fn discard(mut body: Incoming) {
    let all = tokio::time::sleep(LINGER_TOTAL);
    tokio::pin!(all);
    loop {
        tokio::select! {
            frame = tokio::time::timeout(LINGER_IDLE, body.frame()) => match frame {
                Ok(Some(Ok(_))) => {}
                // The end, an error (a reset from the downstream) or silence.
                _ => return,
            },
            _ = &mut all => return,
        }
    }
}
