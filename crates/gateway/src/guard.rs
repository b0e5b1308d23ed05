//! Request-framing guard: reads every HTTP/1 request head on a connection before hyper does
//! and decides whether its framing is unambiguous (RFC 9112 §6). hyper alone accepts some
//! shapes an origin could read differently (it drops `Content-Length` when
//! `Transfer-Encoding` is present); the gateway refuses them instead of forwarding.
//!
//! The guard follows message framing (Content-Length and chunked bodies) to find each next
//! head, and hands one `Verdict` per request head, in order, to the request handler.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What the guard decided about one request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Reject(StatusCode, &'static str),
}

#[derive(Debug)]
enum State {
    Head(Vec<u8>),
    Body(u64),
    ChunkSize(Vec<u8>),
    ChunkData(u64),
    ChunkDataEnd(u8),
    Trailers(Vec<u8>),
    /// HTTP/2, a tunnel after an upgrade, or framing we could not follow: nothing more is
    /// inspected and later HTTP/1 requests find no verdict (the handler then refuses them).
    Passthrough,
}

/// Per-connection state shared by the guard, the request handler and the response bodies.
#[derive(Default, Debug)]
pub struct ConnShared {
    verdicts: Mutex<VecDeque<Verdict>>,
    h2: AtomicBool,
    /// Requests whose response body is not finished yet.
    pub in_flight: AtomicUsize,
    /// Requests started on this connection.
    pub served: AtomicU64,
}

impl ConnShared {
    /// The verdict for the next HTTP/1 request; `None` means the guard lost track (refuse).
    pub fn next_verdict(&self) -> Option<Verdict> {
        self.verdicts.lock().expect("verdicts").pop_front()
    }
    /// Whether the connection turned out to be HTTP/2 (prior knowledge).
    pub fn is_h2(&self) -> bool {
        self.h2.load(Ordering::Acquire)
    }
    fn push(&self, v: Verdict) {
        self.verdicts.lock().expect("verdicts").push_back(v);
    }
    fn set_h2(&self) {
        self.h2.store(true, Ordering::Release);
    }
}

pub type Verdicts = Arc<ConnShared>;

/// The pure state machine: feed it the bytes read from the downstream, in order.
#[derive(Debug)]
pub struct Inspector {
    state: State,
    max_head: usize,
    verdicts: Verdicts,
    first: bool,
    /// A malformed chunk size line was found: where it starts in the data last fed (0 if it
    /// began in an earlier feed). `Guarded` stops the stream there.
    malformed_chunk: Option<usize>,
}

pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl Inspector {
    pub fn new(max_head: usize, verdicts: Verdicts) -> Self {
        Inspector { state: State::Head(Vec::new()), max_head, verdicts, first: true, malformed_chunk: None }
    }

    /// Where a malformed chunk size line starts in the data last fed, once.
    pub fn take_malformed_chunk(&mut self) -> Option<usize> {
        self.malformed_chunk.take()
    }

    pub fn feed(&mut self, mut data: &[u8]) {
        let total = data.len();
        while !data.is_empty() {
            match &mut self.state {
                State::Passthrough => return,
                State::Head(buf) => {
                    // Leading CRLFs between requests are allowed (RFC 9112 §2.2).
                    if buf.is_empty() {
                        let skip = data.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
                        data = &data[skip..];
                        if data.is_empty() {
                            return;
                        }
                    }
                    let start = buf.len();
                    buf.extend_from_slice(data);
                    if self.first && buf.len() >= H2_PREFACE.len().min(buf.len()) && H2_PREFACE.starts_with(&buf[..buf.len().min(H2_PREFACE.len())]) {
                        if buf.len() >= H2_PREFACE.len() {
                            self.verdicts.set_h2();
                            self.state = State::Passthrough;
                            return;
                        }
                        return;
                    }
                    let search_from = start.saturating_sub(3);
                    let Some(end) = find_head_end(&buf[search_from..]).map(|e| e + search_from) else {
                        if buf.len() > self.max_head {
                            self.verdicts.push(Verdict::Reject(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large"));
                            self.state = State::Passthrough;
                        }
                        return;
                    };
                    self.first = false;
                    let consumed_here = end - start;
                    let head = std::mem::take(buf);
                    let (verdict, next) = judge(&head[..end]);
                    self.verdicts.push(verdict);
                    self.state = next;
                    data = &data[consumed_here..];
                }
                State::Body(n) => {
                    let take = (*n).min(data.len() as u64) as usize;
                    *n -= take as u64;
                    data = &data[take..];
                    if *n == 0 {
                        self.state = State::Head(Vec::new());
                    }
                }
                State::ChunkSize(line) => {
                    let starts_at = if line.is_empty() { total - data.len() } else { 0 };
                    let Some(pos) = data.iter().position(|&b| b == b'\n') else {
                        line.extend_from_slice(data);
                        if line.len() > 4096 {
                            self.state = State::Passthrough;
                        }
                        return;
                    };
                    line.extend_from_slice(&data[..=pos]);
                    data = &data[pos + 1..];
                    match parse_chunk_size(line) {
                        Some(0) => self.state = State::Trailers(Vec::new()),
                        Some(n) => self.state = State::ChunkData(n),
                        None => {
                            self.malformed_chunk = Some(starts_at);
                            self.state = State::Passthrough;
                        }
                    }
                }
                State::ChunkData(n) => {
                    let take = (*n).min(data.len() as u64) as usize;
                    *n -= take as u64;
                    data = &data[take..];
                    if *n == 0 {
                        self.state = State::ChunkDataEnd(0);
                    }
                }
                State::ChunkDataEnd(seen) => {
                    let want: &[u8] = b"\r\n";
                    if data[0] != want[*seen as usize] {
                        self.state = State::Passthrough;
                        return;
                    }
                    *seen += 1;
                    data = &data[1..];
                    if *seen == 2 {
                        self.state = State::ChunkSize(Vec::new());
                    }
                }
                State::Trailers(line) => {
                    let Some(pos) = data.iter().position(|&b| b == b'\n') else {
                        line.extend_from_slice(data);
                        if line.len() > self.max_head {
                            self.state = State::Passthrough;
                        }
                        return;
                    };
                    line.extend_from_slice(&data[..=pos]);
                    data = &data[pos + 1..];
                    if line.as_slice() == b"\r\n" {
                        self.state = State::Head(Vec::new());
                    } else {
                        line.clear();
                    }
                }
            }
        }
    }
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// `1a;ext=v\r\n` → 26. Strict: hex digits only, at most 16, CRLF terminated, and any chunk
/// extensions well-formed (RFC 9112 §7.1.1): a line an origin could split differently (a
/// stray `[`, a bare `=`, an unterminated quote) is refused like a bad size, not passed on.
pub(crate) fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r\n")?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 || !valid_chunk_ext(&line[digits..]) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(&line[..digits]).ok()?, 16).ok()
}

/// `chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`, with
/// `chunk-ext-name = token` and `chunk-ext-val = token / quoted-string` (RFC 9112 §7.1.1,
/// RFC 9110 §5.6.2 and §5.6.4). Whitespace (BWS) is also allowed after the last element, as
/// Apache and hyper allow it after the size.
fn valid_chunk_ext(mut s: &[u8]) -> bool {
    fn skip_bws(s: &mut &[u8]) {
        while let [b' ' | b'\t', rest @ ..] = *s {
            *s = rest;
        }
    }
    fn token(s: &mut &[u8]) -> bool {
        let n = s.iter().take_while(|&&b| is_tchar(b)).count();
        *s = &s[n..];
        n > 0
    }
    fn quoted(s: &mut &[u8]) -> bool {
        let [b'"', rest @ ..] = *s else { return false };
        let mut i = 0;
        while i < rest.len() {
            match rest[i] {
                b'"' => {
                    *s = &rest[i + 1..];
                    return true;
                }
                // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                b'\\' => match rest.get(i + 1) {
                    Some(&c) if c == b'\t' || c == b' ' || (0x21..=0x7e).contains(&c) || c >= 0x80 => i += 2,
                    _ => return false,
                },
                // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
                c if c == b'\t' || c == b' ' || c == 0x21 || (0x23..=0x7e).contains(&c) || c >= 0x80 => i += 1,
                _ => return false,
            }
        }
        false
    }
    loop {
        skip_bws(&mut s);
        match s {
            [] => return true,
            [b';', rest @ ..] => s = rest,
            _ => return false,
        }
        skip_bws(&mut s);
        if !token(&mut s) {
            return false;
        }
        skip_bws(&mut s);
        if let [b'=', rest @ ..] = s {
            s = rest;
            skip_bws(&mut s);
            if !(if s.first() == Some(&b'"') { quoted(&mut s) } else { token(&mut s) }) {
                return false;
            }
        }
    }
}

/// `tchar` (RFC 9110 §5.6.2): the characters of a token.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// How a judged request's body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    None,
    Length(u64),
    Chunked,
    /// An upgrade or CONNECT: what follows may be a tunnel.
    Tunnel,
}

/// Judge one complete head (request line + fields + blank line).
fn judge(head: &[u8]) -> (Verdict, State) {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    let bad = |why| (Verdict::Reject(StatusCode::BAD_REQUEST, why), State::Passthrough);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return bad("incomplete request head"),
        Err(httparse::Error::TooManyHeaders) => {
            return (Verdict::Reject(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "too many header fields"), State::Passthrough);
        }
        Err(_) => return bad("malformed request head"),
    }
    match judge_parsed(&req) {
        (v @ Verdict::Reject(..), _) => (v, State::Passthrough),
        (v, Framing::None) => (v, State::Head(Vec::new())),
        (v, Framing::Length(n)) => (v, State::Body(n)),
        (v, Framing::Chunked) => (v, State::ChunkSize(Vec::new())),
        (v, Framing::Tunnel) => (v, State::Passthrough),
    }
}

/// The framing rules on a parsed head (RFC 9112 §6): one verdict and the body's framing.
pub(crate) fn judge_parsed(req: &httparse::Request<'_, '_>) -> (Verdict, Framing) {
    let bad = |why| (Verdict::Reject(StatusCode::BAD_REQUEST, why), Framing::None);
    let http11 = req.version == Some(1);
    let mut hosts = 0;
    let mut cl: Option<&[u8]> = None;
    let mut cls = 0;
    let mut tes = 0;
    let mut upgrade = false;
    for h in req.headers.iter() {
        let v = h.value;
        if v.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n') {
            return bad("control character in a header value");
        }
        if h.name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if h.name.eq_ignore_ascii_case("content-length") {
            cls += 1;
            cl = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            tes += 1;
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    if http11 && hosts == 0 {
        return bad("HTTP/1.1 request without Host");
    }
    if hosts > 1 {
        return bad("more than one Host header");
    }
    if tes > 0 && cls > 0 {
        return bad("both Content-Length and Transfer-Encoding");
    }
    let framing = if tes > 0 {
        if !http11 {
            return bad("Transfer-Encoding in an HTTP/1.0 request");
        }
        let codings: Vec<String> = req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
            .flat_map(|h| h.value.split(|&b| b == b','))
            .map(|c| String::from_utf8_lossy(c).trim().to_ascii_lowercase())
            .collect();
        let chunked = codings.iter().filter(|c| *c == "chunked").count();
        if codings.iter().any(|c| c.is_empty()) {
            return bad("empty transfer coding");
        }
        if codings.iter().any(|c| c != "chunked") {
            if codings.last().map(String::as_str) != Some("chunked") {
                return bad("chunked is not the final transfer coding");
            }
            return (Verdict::Reject(StatusCode::NOT_IMPLEMENTED, "transfer coding not implemented"), Framing::None);
        }
        if chunked != 1 {
            return bad("chunked applied more than once");
        }
        Framing::Chunked
    } else if let Some(v) = cl {
        if cls > 1 {
            return bad("more than one Content-Length");
        }
        if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
            return bad("malformed Content-Length");
        }
        let n: u64 = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
        if n == 0 { Framing::None } else { Framing::Length(n) }
    } else {
        Framing::None
    };
    if upgrade || req.method == Some("CONNECT") {
        // What follows may be a tunnel; the handler closes the connection if it is not.
        return (Verdict::Ok, Framing::Tunnel);
    }
    (Verdict::Ok, framing)
}

/// Timeouts the guard enforces on reads from the downstream.
#[derive(Clone, Copy, Debug)]
pub struct ReadTimeouts {
    /// A started request head must be complete within this: else 408 and close.
    pub header: Duration,
    /// Idle time allowed between requests (KeepAliveTimeout): then close quietly.
    pub keep_alive: Duration,
    /// A stalled request body read: then the connection fails (Apache `Timeout`).
    pub body: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum TimerKind {
    Head,
    Idle,
    Body,
}

/// A downstream stream whose reads pass through an `Inspector`, with Apache-like read
/// timeouts (mod_reqtimeout's header timeout, KeepAliveTimeout, Timeout).
pub struct Guarded<T> {
    inner: T,
    inspector: Inspector,
    shared: Arc<ConnShared>,
    timeouts: ReadTimeouts,
    /// The running deadline: which kind, and since when.
    timer: Option<(TimerKind, Instant)>,
    /// One sleep per connection, re-armed lazily: progress only clears `timer` (no timer-wheel
    /// work per request); when the sleep fires early for a moved deadline it is reset then.
    sleep: Option<Pin<Box<Sleep>>>,
    timed_out: bool,
    /// A malformed chunk line was seen: reads fail from here on (hyper does not check chunk
    /// extensions, RFC 9112 §7.1.1, so the body must end before it reaches hyper).
    malformed: bool,
}

impl<T> Guarded<T> {
    pub fn new(inner: T, max_head: usize, timeouts: ReadTimeouts) -> (Self, Arc<ConnShared>) {
        let shared = Arc::new(ConnShared::default());
        let g = Guarded {
            inner,
            inspector: Inspector::new(max_head, shared.clone()),
            shared: shared.clone(),
            timeouts,
            timer: None,
            sleep: None,
            timed_out: false,
            malformed: false,
        };
        (g, shared)
    }

    fn timer_kind(&self) -> Option<TimerKind> {
        match &self.inspector.state {
            State::Head(buf) if !buf.is_empty() => Some(TimerKind::Head),
            State::Head(_) if self.shared.in_flight.load(Ordering::Acquire) == 0 => Some(TimerKind::Idle),
            State::Body(_) | State::ChunkSize(_) | State::ChunkData(_) | State::ChunkDataEnd(_) | State::Trailers(_) => Some(TimerKind::Body),
            _ => None,
        }
    }
}

pub(crate) const TIMEOUT_408: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 33\r\n\r\nrequest head not received in time";

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.timed_out {
            return Poll::Ready(Ok(()));
        }
        if self.malformed {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "malformed chunk size line")));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        match r {
            Poll::Ready(Ok(())) => {
                let this = &mut *self;
                let new = &buf.filled()[before..];
                if !new.is_empty() {
                    this.inspector.feed(new);
                    if let Some(at) = this.inspector.take_malformed_chunk() {
                        // What came before the bad line goes on (the head, good chunks); the
                        // body then fails, and the request is answered 400, never forwarded.
                        this.malformed = true;
                        buf.set_filled(before + at);
                        if at == 0 {
                            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "malformed chunk size line")));
                        }
                        return Poll::Ready(Ok(()));
                    }
                    // Progress resets the idle and body timers; the head deadline stands.
                    if !matches!(this.timer, Some((TimerKind::Head, _))) || this.timer_kind() != Some(TimerKind::Head) {
                        this.timer = None;
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let this = &mut *self;
                let Some(kind) = this.timer_kind() else {
                    this.timer = None;
                    return Poll::Pending;
                };
                let served = this.shared.served.load(Ordering::Acquire);
                let dur = match kind {
                    TimerKind::Head => this.timeouts.header,
                    TimerKind::Idle if served == 0 => this.timeouts.header,
                    TimerKind::Idle => this.timeouts.keep_alive,
                    TimerKind::Body => this.timeouts.body,
                };
                let since = match this.timer {
                    Some((k, since)) if k == kind => since,
                    _ => {
                        let now = Instant::now();
                        this.timer = Some((kind, now));
                        now
                    }
                };
                let deadline = since + dur;
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.deadline() > deadline {
                    sleep.as_mut().reset(deadline);
                }
                if sleep.as_mut().poll(cx).is_ready() && Instant::now() < deadline {
                    // Armed for an earlier deadline that progress has since moved: re-arm
                    // (this poll registers the waker for the new deadline).
                    sleep.as_mut().reset(deadline);
                    let _ = sleep.as_mut().poll(cx);
                }
                if Instant::now() < deadline {
                    return Poll::Pending;
                }
                this.timer = None;
                match kind {
                    TimerKind::Head => {
                        // Best effort: the downstream is told why before the close.
                        let _ = Pin::new(&mut this.inner).poll_write(cx, TIMEOUT_408);
                        let _ = Pin::new(&mut this.inner).poll_flush(cx);
                        this.timed_out = true;
                        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "request head timeout")))
                    }
                    TimerKind::Idle => {
                        this.timed_out = true;
                        Poll::Ready(Ok(()))
                    }
                    TimerKind::Body => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "request body read timeout"))),
                }
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, b)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Vec<Verdict> {
        let v = Arc::new(ConnShared::default());
        let mut i = Inspector::new(8192, v.clone());
        // Feed byte by byte too, to exercise split reads.
        i.feed(bytes);
        let mut out = vec![];
        while let Some(x) = v.next_verdict() {
            out.push(x);
        }
        let v2 = Arc::new(ConnShared::default());
        let mut i2 = Inspector::new(8192, v2.clone());
        for b in bytes {
            i2.feed(std::slice::from_ref(b));
        }
        let mut out2 = vec![];
        while let Some(x) = v2.next_verdict() {
            out2.push(x);
        }
        assert_eq!(out, out2, "split reads agree");
        out
    }

    fn st(v: &Verdict) -> u16 {
        match v {
            Verdict::Ok => 200,
            Verdict::Reject(s, _) => s.as_u16(),
        }
    }

    #[test]
    fn framing_table() {
        let rows: &[(&str, &[u16])] = &[
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", &[200]),
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n", &[200, 200]),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: a\r\n\r\n", &[200, 200]),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX: y\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &[200, 200]),
            ("GET / HTTP/1.1\r\n\r\n", &[400]),
            ("GET / HTTP/1.0\r\n\r\n", &[200]),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", &[400]),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", &[400]),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", &[400]),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", &[400]),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", &[400]),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", &[400]),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", &[400]),
            ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", &[400]),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &[501]),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", &[400]),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", &[400]),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", &[400]),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", &[400]),
            ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n", &[400]),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", &[400]),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", &[400]),
            ("GET / HTTP/1.1\r\nHost : a\r\n\r\n", &[400]),
            ("GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n", &[400]),
        ];
        for (req, want) in rows {
            let got: Vec<u16> = run(req.as_bytes()).iter().map(st).collect();
            assert_eq!(&got, want, "{req:?}");
        }
    }

    #[test]
    fn h2_preface_switches_to_passthrough() {
        let v = Arc::new(ConnShared::default());
        let mut i = Inspector::new(8192, v.clone());
        i.feed(H2_PREFACE);
        i.feed(b"GET / HTTP/1.1\r\n\r\n");
        assert!(v.is_h2());
        assert_eq!(v.next_verdict(), None);
    }

    #[test]
    fn bad_chunk_size_stops_inspection_so_later_requests_are_refused() {
        let got = run(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(got, vec![Verdict::Ok]);
    }

    #[test]
    fn a_malformed_chunk_line_is_located_where_it_starts() {
        let head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
        let bad = b"3;a=b]\r\nabc\r\n0\r\n\r\n";
        let mut i = Inspector::new(8192, Arc::new(ConnShared::default()));
        i.feed(&[&head[..], &bad[..]].concat());
        assert_eq!(i.take_malformed_chunk(), Some(head.len()));
        assert_eq!(i.take_malformed_chunk(), None);
        // Begun in an earlier read: it starts at 0 of the read that completes it.
        let mut i = Inspector::new(8192, Arc::new(ConnShared::default()));
        i.feed(&[&head[..], &bad[..4]].concat());
        assert_eq!(i.take_malformed_chunk(), None);
        i.feed(&bad[4..]);
        assert_eq!(i.take_malformed_chunk(), Some(0));
        // Well-formed extensions are not.
        let mut i = Inspector::new(8192, Arc::new(ConnShared::default()));
        i.feed(&[&head[..], b"3;a=b\r\nabc\r\n0\r\n\r\n"].concat());
        assert_eq!(i.take_malformed_chunk(), None);
    }

    #[test]
    fn chunk_size_table() {
        let rows: &[(&[u8], Option<u64>)] = &[
            (b"5\r\n", Some(5)),
            (b"1a;x=y\r\n", Some(26)),
            (b"0\r\n", Some(0)),
            (b"\r\n", None),
            (b"5\n", None),
            (b"-5\r\n", None),
            (b"11111111111111111\r\n", None),
            (b"ffffffffffffffff\r\n", Some(u64::MAX)),
            (b"5 \r\n", Some(5)),
            (b"5\t;x\r\n", Some(5)),
            (b"5;ext\r\n", Some(5)),
            (b"5;a=b;c;d=e\r\n", Some(5)),
            (b"5 ; a = b ; c\r\n", Some(5)),
            (b"5;a=\"x y;z\\\"q\"\r\n", Some(5)),
            (b"5;a=\"\"\r\n", Some(5)),
            (b"5;a=\"caf\xc3\xa9\"\r\n", Some(5)),
            // Not token characters (RFC 9112 §7.1.1): refused, not forwarded.
            (b"5;bad[=x\r\n", None),
            (b"5;a=x]\r\n", None),
            (b"5;a=b c\r\n", None),
            (b"5;a/b\r\n", None),
            (b"5;a=\x01\r\n", None),
            (b"5;a=\"\x7f\"\r\n", None),
            (b"5;\xc3\xa9\r\n", None),
            // Missing parts.
            (b"5;\r\n", None),
            (b"5;;a\r\n", None),
            (b"5;=x\r\n", None),
            (b"5;a=\r\n", None),
            (b"5;a=\"open\r\n", None),
            (b"5;a=\"x\"y\r\n", None),
            (b"5;a=\"x\\\r\n", None),
            (b"5x\r\n", None),
            (b"5 6\r\n", None),
            (b" 5\r\n", None),
            (b"5\r\r\n", None),
        ];
        for (l, want) in rows {
            assert_eq!(parse_chunk_size(l), *want, "{l:?}");
        }
    }

    /// Property tests shared with the engine's decoder (`h1::proptests`): valid chunked
    /// encodings built from random bytes, chunk sizes and extensions (RFC 9112 §7.1).
    pub(crate) mod chunked {
        use proptest::prelude::*;

        /// `token` (RFC 9110 §5.6.2).
        pub(crate) fn token() -> impl Strategy<Value = String> {
            "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,8}"
        }

        /// `chunk-ext` (RFC 9112 §7.1.1): `;name`, `;name=token` or `;name="quoted"`, with
        /// optional whitespace around the separators.
        pub(crate) fn chunk_ext() -> impl Strategy<Value = String> {
            let val =
                prop_oneof![Just(String::new()), token().prop_map(|t| format!("={t}")), "([ \t!#-\\[\\]-~]|\\\\[ -~]){0,8}".prop_map(|q| format!("=\"{q}\"")),];
            prop::collection::vec((" ?", token(), " ?", val), 0..3)
                .prop_map(|exts| exts.into_iter().map(|(a, name, b, v)| format!("{a};{b}{name}{v}")).collect())
        }

        /// One chunked body for `data`: random cuts, upper or lower case hex sizes, leading
        /// zeros, extensions and trailer fields.
        pub(crate) fn encoding() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
            (prop::collection::vec(any::<u8>(), 0..2000), prop::collection::vec(1usize..300, 1..20)).prop_flat_map(|(data, cuts)| {
                let mut pieces = Vec::new();
                let mut at = 0;
                for c in cuts {
                    if at >= data.len() {
                        break;
                    }
                    let end = (at + c).min(data.len());
                    pieces.push(data[at..end].to_vec());
                    at = end;
                }
                if at < data.len() {
                    pieces.push(data[at..].to_vec());
                }
                let n = pieces.len();
                (
                    Just(data),
                    Just(pieces),
                    prop::collection::vec((chunk_ext(), any::<bool>(), 0usize..3), n + 1),
                    prop::collection::vec((token(), "[!-~]{0,10}"), 0..3),
                )
                    .prop_map(|(data, pieces, exts, trailers)| {
                        let mut wire = Vec::new();
                        let size_line = |wire: &mut Vec<u8>, len: usize, (ext, upper, zeros): &(String, bool, usize)| {
                            let hex = if *upper { format!("{len:X}") } else { format!("{len:x}") };
                            wire.extend_from_slice(format!("{}{hex}{ext}\r\n", "0".repeat(*zeros)).as_bytes());
                        };
                        for (p, e) in pieces.iter().zip(&exts) {
                            size_line(&mut wire, p.len(), e);
                            wire.extend_from_slice(p);
                            wire.extend_from_slice(b"\r\n");
                        }
                        size_line(&mut wire, 0, &exts[pieces.len()]);
                        for (name, value) in trailers {
                            wire.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
                        }
                        wire.extend_from_slice(b"\r\n");
                        (data, wire)
                    })
            })
        }
    }

    mod props {
        use super::chunked::{chunk_ext, encoding};
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Any size with any well-formed extensions reads back as the size.
            #[test]
            fn a_valid_chunk_size_line_reads_back(n in any::<u64>(), ext in chunk_ext(), upper in any::<bool>()) {
                let hex = if upper { format!("{n:X}") } else { format!("{n:x}") };
                prop_assert_eq!(parse_chunk_size(format!("{hex}{ext}\r\n").as_bytes()), Some(n));
            }

            /// Arbitrary bytes never panic the size-line parser.
            #[test]
            fn chunk_size_lines_never_panic(line in prop::collection::vec(any::<u8>(), 0..64)) {
                let _ = parse_chunk_size(&line);
            }

            /// A valid chunked body, however it is cut into reads, frames exactly one request
            /// and leaves the guard at the next head: the request after it is judged too.
            #[test]
            fn the_guard_follows_any_valid_chunked_body((_, wire) in encoding(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6)) {
                let mut stream = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                stream.extend_from_slice(&wire);
                stream.extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
                let v = Arc::new(ConnShared::default());
                let mut i = Inspector::new(8192, v.clone());
                let mut at: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
                at.push(0);
                at.push(stream.len());
                at.sort_unstable();
                for w in at.windows(2) {
                    i.feed(&stream[w[0]..w[1]]);
                    prop_assert_eq!(i.take_malformed_chunk(), None);
                }
                prop_assert_eq!(v.next_verdict(), Some(Verdict::Ok));
                prop_assert_eq!(v.next_verdict(), Some(Verdict::Ok));
                prop_assert_eq!(v.next_verdict(), None);
            }

            /// Arbitrary bytes after a chunked head, fed in any cuts, never panic the guard.
            #[test]
            fn the_guard_never_panics_on_arbitrary_bodies(body in prop::collection::vec(any::<u8>(), 0..600), cut in 1usize..64) {
                let v = Arc::new(ConnShared::default());
                let mut i = Inspector::new(8192, v.clone());
                i.feed(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
                for piece in body.chunks(cut) {
                    i.feed(piece);
                    let _ = i.take_malformed_chunk();
                }
                while v.next_verdict().is_some() {}
            }

            /// Arbitrary bytes from the first byte of a connection never panic the guard.
            #[test]
            fn the_guard_never_panics_on_arbitrary_connections(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
                let v = Arc::new(ConnShared::default());
                Inspector::new(8192, v.clone()).feed(&bytes);
                while v.next_verdict().is_some() {}
            }
        }
    }
}
