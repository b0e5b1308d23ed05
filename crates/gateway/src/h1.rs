//! The HTTP/1.1 engine: the gateway's own request loop for HTTP/1 connections, in the style
//! of nginx and HAProxy. One task per downstream connection reads a request head, judges its
//! framing (the same rules as `guard`), runs the same proxy rules (`proxy::prepare`), talks to
//! a pooled plain origin connection itself and streams the answer back. No second task, no
//! channel, no per-request body objects.
//!
//! An idle keep-alive connection holds no buffer: it waits for readability, then borrows one.
//! That is what keeps 10,000 idle connections small.
//!
//! What the engine does not do it hands over, with the bytes already read, to the hyper path
//! (`server::ConnCtx`): HTTP/2 with prior knowledge, upgrades (WebSocket, h2c) and CONNECT.

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, timeout, timeout_at};

use crate::balancer::Outcome as NodeOutcome;
use crate::config::{ConnLimits, Upstream, VirtualServer};
use crate::guard::{self, Framing, Verdict};
use crate::log::Entry;
use crate::parked;
use crate::proxy::{self, ConnInfo, Failure, Forward, Prepared, Shared};
use crate::reqtimeout::{BODY_TOO_SLOW, BodyClock};
use crate::server::Current;
use crate::upstream::{RawConn, UpstreamError};

/// A downstream connection the engine can serve. Idle, it waits to be readable holding no
/// buffer (`parked::Ready`).
pub(crate) trait DownIo: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static + parked::Ready {
    /// The plain socket, for splicing large bodies (none under TLS).
    fn tcp(&self) -> Option<&TcpStream>;
}

impl parked::Ready for TcpStream {
    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_read_ready(cx)
    }
}

impl DownIo for TcpStream {
    fn tcp(&self) -> Option<&TcpStream> {
        Some(self)
    }
}

impl parked::Ready for tokio_rustls::server::TlsStream<TcpStream> {
    fn poll_ready(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // rustls may hold decrypted bytes already; the read itself waits.
        Poll::Ready(Ok(()))
    }
}

impl DownIo for tokio_rustls::server::TlsStream<TcpStream> {
    fn tcp(&self) -> Option<&TcpStream> {
        None
    }
}

/// How a connection left the engine.
pub(crate) enum Outcome<S> {
    Done,
    /// Continue on the hyper path with these bytes first.
    Handover(S, Bytes),
}

/// A stream with bytes already read put back in front (for the hand-over to hyper).
pub(crate) struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    pub(crate) fn new(inner: S, prefix: Bytes) -> Self {
        Rewind { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, b)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Read buffers for request heads, kept per worker thread while their connections idle.
const READ_BUF: usize = 8 * 1024;
/// Reads of bodies use larger buffers: fewer system calls per MiB.
const BODY_BUF: usize = 64 * 1024;
/// A chunk with at least this much data still to come (beyond what the buffer holds) is
/// spliced between plain sockets; the next chunk's size line is then read with a read of at
/// most `CHUNK_HEAD_READ`, so that its data stays in the kernel too.
const SPLICE_CHUNK: u64 = 32 * 1024;
const CHUNK_HEAD_READ: u64 = 512;
/// Largest origin response head.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

thread_local! {
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// Put `v` back in a per-thread pool of at most 32.
fn keep<T>(pool: &'static std::thread::LocalKey<RefCell<Vec<T>>>, v: T) {
    pool.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < 32 {
            p.push(v);
        }
    });
}

fn take_buffer() -> BytesMut {
    SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_else(|| BytesMut::with_capacity(READ_BUF))
}

/// Give an empty buffer back for another connection (idle connections hold none).
fn give_buffer(buf: &mut BytesMut) {
    let mut b = std::mem::take(buf);
    b.clear();
    // Heads were split off the front; once their header values are gone this takes the whole
    // allocation back without allocating.
    b.reserve(READ_BUF);
    // Only head-sized buffers are kept: a body's 64 KiB ones would make the pool, not the
    // connections, the gateway's memory after a large transfer.
    if b.capacity() >= READ_BUF && b.capacity() <= 2 * READ_BUF {
        keep(&SPARE, b);
    }
}

thread_local! {
    static SPARE_VECS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A scratch vector for serialising heads (allocations over 1 KiB are the expensive kind in
/// glibc's malloc: they consolidate its fast bins).
fn take_vec() -> Vec<u8> {
    SPARE_VECS.with(|s| s.borrow_mut().pop()).unwrap_or_else(|| Vec::with_capacity(4096))
}

fn give_vec(mut v: Vec<u8>) {
    if v.capacity() <= 16 * 1024 {
        v.clear();
        keep(&SPARE_VECS, v);
    }
}

thread_local! {
    static SPARE_MAPS: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
    static SPARE_FIELDS: RefCell<Vec<Vec<Field>>> = const { RefCell::new(Vec::new()) };
}

/// A parsed header field: its name and where its value lies in the head.
type Field = (HeaderName, usize, usize);

/// A header map with room for `n` fields, reused: a request's two maps and their field lists
/// were six allocations, two of them over 1 KiB (the kind that makes glibc consolidate).
fn take_map(n: usize) -> HeaderMap {
    let mut m = SPARE_MAPS.with(|s| s.borrow_mut().pop()).unwrap_or_default();
    m.reserve(n);
    m
}

fn give_map(mut m: HeaderMap) {
    if m.capacity() <= 128 {
        m.clear();
        keep(&SPARE_MAPS, m);
    }
}

fn take_fields(n: usize) -> Vec<Field> {
    let mut v = SPARE_FIELDS.with(|s| s.borrow_mut().pop()).unwrap_or_default();
    v.reserve(n);
    v
}

fn give_fields(mut v: Vec<Field>) {
    if v.capacity() <= 256 {
        v.clear();
        keep(&SPARE_FIELDS, v);
    }
}

/// A (reused) header map of `fields`, whose values share `head`'s bytes, with room for
/// `extra` more; `None` if a value is not a valid header value. The field list goes back.
fn fields_to_map(head: &Bytes, mut fields: Vec<Field>, extra: usize) -> Option<HeaderMap> {
    let mut headers = take_map(fields.len() + extra);
    let mut bad = false;
    for (name, at, len) in fields.drain(..) {
        match HeaderValue::from_maybe_shared(head.slice(at..at + len)) {
            Ok(v) => _ = headers.append(name, v),
            Err(_) => bad = true,
        }
    }
    give_fields(fields);
    (!bad).then_some(headers)
}

/// A boxed future, for what continues elsewhere.
pub(crate) type Continue = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What continues a connection the engine hands over (on the hyper path).
pub(crate) type Handover<S> = fn(S, Bytes, ConnInfo, Current, watch::Receiver<bool>) -> Continue;

/// A whole plain connection as one task: the engine, then `handover` for what it hands on;
/// `guard` is dropped at the end. An `async move` block rather than an `async fn`: an async
/// fn moves its arguments into locals, and the task would keep room for both copies.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub(crate) fn serve_task<S: DownIo, G: Send>(
    io: S,
    conn: ConnInfo,
    current: Current,
    mut stop: watch::Receiver<bool>,
    guard: G,
    handover: Handover<S>,
) -> impl Future<Output = ()> + Send {
    async move {
        if let Outcome::Handover(io, prefix) = serve(io, &conn, &current, &mut stop).await {
            handover(io, prefix, conn, current, stop).await;
        }
        drop(guard);
    }
}

/// Serve HTTP/1 requests on `io` until the connection ends or needs the hyper path. Not an
/// `async fn`, for the same reason as `serve_task`.
#[allow(clippy::manual_async_fn)]
pub(crate) fn serve<'a, S: DownIo>(
    mut io: S,
    conn: &'a ConnInfo,
    current: &'a Current,
    stop: &'a mut watch::Receiver<bool>,
) -> impl Future<Output = Outcome<S>> + Send + 'a {
    async move {
        let mut buf = BytesMut::new();
        let mut served = 0u64;
        loop {
            let (idle_deadline, parked) = {
                let shared = current.get();
                let limits = &shared.config.limits;
                (Instant::now() + if served == 0 { limits.header_read_timeout } else { limits.keep_alive_timeout }, shared.parked.clone())
            };
            if buf.is_empty() {
                // Idle: parked with no buffer, no timer and no future of its own (`parked`).
                if parked.wait(&io, idle_deadline).await != parked::Idle::Readable {
                    return Outcome::Done;
                }
            }
            drop(parked);
            // Boxed: a request's state is large and lives only while it is in flight; inline,
            // every idle connection's task would keep room for it.
            match Box::pin(one_request(&mut io, &mut buf, conn, current, &mut served, idle_deadline, stop)).await {
                Next::Continue => {}
                Next::Done => return Outcome::Done,
                Next::Handover => return Outcome::Handover(io, buf.freeze()),
            }
            if buf.is_empty() {
                give_buffer(&mut buf);
            }
        }
    }
}

enum Next {
    Continue,
    Done,
    Handover,
}

/// Read, judge and serve one request.
async fn one_request<S: DownIo>(
    io: &mut S,
    buf: &mut BytesMut,
    conn: &ConnInfo,
    current: &Current,
    served: &mut u64,
    idle_deadline: Instant,
    stop: &mut watch::Receiver<bool>,
) -> Next {
    let shared = current.get();
    let limits = &shared.config.limits;
    let end = match read_head(io, buf, *served == 0, limits, idle_deadline, stop).await {
        Head::Complete(end) => end,
        Head::Closed => return Next::Done,
        Head::H2 => return Next::Handover,
        Head::TooLarge => {
            let _ = write_local_only(io, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, limits.timeout).await;
            return Next::Done;
        }
        Head::TimedOut => {
            let _ = timeout(limits.timeout, async {
                io.write_all(guard::TIMEOUT_408).await?;
                io.flush().await
            })
            .await;
            return Next::Done;
        }
    };
    let req = match parse_request(buf, end) {
        Parsed::Request(r) => r,
        Parsed::Handover => return Next::Handover,
        Parsed::Bad(status) => {
            let _ = write_local_only(io, status, limits.timeout).await;
            return Next::Done;
        }
    };
    *served += 1;
    let stopping = *stop.borrow();
    match exchange(&shared, conn, io, buf, req, *served, stopping).await {
        Kept::Yes => {}
        Kept::No => {
            let _ = timeout(Duration::from_secs(1), io.shutdown()).await;
            return Next::Done;
        }
        Kept::Linger => {
            lingering_close(io).await;
            return Next::Done;
        }
    }
    Next::Continue
}

enum Head {
    Complete(usize),
    Closed,
    H2,
    TooLarge,
    TimedOut,
}

/// The end of a request head: after the first empty line (CRLF or a bare LF, as httparse).
fn find_head_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = b[i..].iter().position(|&c| c == b'\n') {
        let at = i + p + 1;
        match b.get(at) {
            Some(b'\n') => return Some(at + 1),
            Some(b'\r') if b.get(at + 1) == Some(&b'\n') => return Some(at + 2),
            Some(_) => i = at,
            None => return None,
        }
    }
    None
}

async fn read_head<S: DownIo>(
    io: &mut S,
    buf: &mut BytesMut,
    first: bool,
    limits: &ConnLimits,
    idle_deadline: Instant,
    stop: &mut watch::Receiver<bool>,
) -> Head {
    let mut head_deadline: Option<Instant> = None;
    loop {
        // Empty lines before a request line are allowed (RFC 9112 §2.2).
        let skip = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
        buf.advance(skip);
        if !buf.is_empty() {
            let found = if first && H2_PREFACE_START.iter().zip(buf.iter()).all(|(a, b)| a == b) {
                if buf.len() >= guard::H2_PREFACE.len() && buf.starts_with(guard::H2_PREFACE) {
                    return Head::H2;
                }
                // Not all of the preface yet?
                if guard::H2_PREFACE.starts_with(&buf[..buf.len().min(guard::H2_PREFACE.len())]) { None } else { find_head_end(buf) }
            } else {
                find_head_end(buf)
            };
            if let Some(end) = found {
                return if end > limits.max_header_bytes { Head::TooLarge } else { Head::Complete(end) };
            }
            if buf.len() > limits.max_header_bytes {
                return Head::TooLarge;
            }
            head_deadline.get_or_insert_with(|| Instant::now() + limits.header_read_timeout);
        } else if *stop.borrow() {
            return Head::Closed;
        }
        let deadline = head_deadline.unwrap_or(idle_deadline);
        if buf.capacity() == 0 {
            *buf = take_buffer();
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(READ_BUF);
        }
        let waiting = buf.is_empty();
        let r = tokio::select! {
            r = timeout_at(deadline, io.read_buf(buf)) => r,
            _ = stop.changed(), if waiting => return Head::Closed,
        };
        match r {
            Err(_) => return if head_deadline.is_some() { Head::TimedOut } else { Head::Closed },
            Ok(Ok(0)) | Ok(Err(_)) => return Head::Closed,
            Ok(Ok(_)) => {}
        }
    }
}

const H2_PREFACE_START: &[u8] = b"PRI ";

/// One parsed request head.
struct ParsedRequest {
    parts: http::request::Parts,
    framing: Framing,
    verdict: Verdict,
    expect_continue: bool,
    /// `Connection: close` (HTTP/1.1) or no `Connection: keep-alive` (HTTP/1.0).
    client_close: bool,
}

// Returned once per request head and matched at once: boxing the large variant would add an
// allocation to every request to save a few hundred bytes of stack for a moment.
#[allow(clippy::large_enum_variant)]
enum Parsed {
    Request(ParsedRequest),
    Handover,
    Bad(StatusCode),
}

/// Parse the head at the front of `buf` (its `end` found): consumes it unless the request
/// goes to the hyper path. Header values share the head's bytes (no copy).
fn parse_request(buf: &mut BytesMut, end: usize) -> Parsed {
    let mut hdrs = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut hdrs);
    match req.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(n)) if n == end => {}
        Err(httparse::Error::TooManyHeaders) => return Parsed::Bad(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        _ => return Parsed::Bad(StatusCode::BAD_REQUEST),
    }
    let (verdict, framing) = guard::judge_parsed(&req);
    if verdict == Verdict::Ok && framing == Framing::Tunnel {
        return Parsed::Handover;
    }
    let Ok(method) = Method::from_bytes(req.method.unwrap_or("").as_bytes()) else { return Parsed::Bad(StatusCode::BAD_REQUEST) };
    let version = if req.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let base = buf.as_ptr() as usize;
    let path = req.path.unwrap_or("");
    let path_at = (path.as_ptr() as usize - base, path.len());
    let mut fields = take_fields(req.headers.len());
    let mut expect_continue = false;
    let (mut close, mut keep_alive) = (false, false);
    for h in req.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            give_fields(fields);
            return Parsed::Bad(StatusCode::BAD_REQUEST);
        };
        if name == header::EXPECT {
            expect_continue |= h.value.eq_ignore_ascii_case(b"100-continue");
        } else if name == header::CONNECTION {
            for t in h.value.split(|&b| b == b',') {
                let t = t.trim_ascii();
                close |= t.eq_ignore_ascii_case(b"close");
                keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        fields.push((name, h.value.as_ptr() as usize - base, h.value.len()));
    }
    let head = buf.split_to(end).freeze();
    let Ok(uri) = Uri::from_maybe_shared(head.slice(path_at.0..path_at.0 + path_at.1)) else {
        give_fields(fields);
        return Parsed::Bad(StatusCode::BAD_REQUEST);
    };
    // Room for what forwarding adds (X-Forwarded-*, Forwarded, Via): no growth, no rehash.
    let Some(headers) = fields_to_map(&head, fields, 8) else { return Parsed::Bad(StatusCode::BAD_REQUEST) };
    let mut parts = Request::new(()).into_parts().0;
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = headers;
    let client_close = if version == Version::HTTP_10 { !keep_alive } else { close };
    Parsed::Request(ParsedRequest { parts, framing, verdict, expect_continue, client_close })
}

/// How the origin frames its response body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OriginBody {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// What answers a request.
enum Answer<'a> {
    Local(http::response::Parts, Bytes),
    Origin(OriginAnswer<'a>),
}

struct OriginAnswer<'a> {
    status: StatusCode,
    headers: HeaderMap,
    body: OriginBody,
    conn: RawConn,
    buf: BytesMut,
    up: &'a Upstream,
    /// The origin keeps the connection after this response.
    keep: bool,
}

/// Serve one request; whether the downstream connection stays open.
async fn exchange<S: DownIo>(shared: &Shared, conn: &ConnInfo, io: &mut S, buf: &mut BytesMut, req: ParsedRequest, served: u64, stopping: bool) -> Kept {
    let started = std::time::Instant::now();
    let ParsedRequest { mut parts, framing, verdict, expect_continue, client_close } = req;
    let cfg = &shared.config;
    let host = parts.headers.get(header::HOST).cloned();
    let vhost = proxy::select_server(cfg, conn.local, host.as_ref().and_then(|h| h.to_str().ok()));
    let server_name = vhost.server_name.as_deref().unwrap_or(&shared.hostname);
    let mut entry = Entry::start(&shared.log, &parts, conn.peer.ip(), conn.local.port(), server_name, SystemTime::now());
    let is_head = parts.method == Method::HEAD;
    let http10 = parts.version == Version::HTTP_10;
    let mut ctx = Exchange {
        shared,
        conn,
        vhost,
        framing,
        expect_continue,
        sent_continue: false,
        must_close: false,
        linger: false,
        limits: &cfg.limits,
        body_clock: BodyClock::new(cfg.limits.body_read),
    };
    let answer = ctx.run(verdict, &mut parts, host.as_ref(), server_name, io, buf, &mut entry).await;
    let (status, mut headers, body, refused) = match answer {
        Ok(Answer::Local(p, b)) => {
            let mut h = p.headers;
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(b.len()));
            (p.status, h, Body::Local(b), false)
        }
        Ok(Answer::Origin(OriginAnswer { status, headers, body, conn: up_conn, buf: up_buf, up, keep })) => {
            (status, headers, Body::Origin(OriginRest { body, conn: up_conn, buf: up_buf, up, keep }), false)
        }
        Err(f) => {
            proxy::log_failure(&f, conn.peer, &parts.uri);
            let refused = matches!(f, Failure::Downstream(..));
            let (p, b) = proxy::failure_parts(&f, refused);
            let mut h = p.headers;
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(b.len()));
            (p.status, h, Body::Local(b), refused)
        }
    };
    // The downstream's framing: a length we know, else chunked for HTTP/1.1, else the close.
    let origin_body = match &body {
        Body::Origin(o) => Some(o.body),
        Body::Local(_) => None,
    };
    let chunked_out = matches!(origin_body, Some(OriginBody::Chunked | OriginBody::UntilClose)) && !http10 && !is_head;
    let close_delimited = matches!(origin_body, Some(OriginBody::Chunked | OriginBody::UntilClose)) && http10 && !is_head;
    if chunked_out {
        headers.remove(header::CONTENT_LENGTH);
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
    } else if close_delimited {
        headers.remove(header::CONTENT_LENGTH);
    }
    let close = stopping || client_close || close_delimited || ctx.must_close || proxy::must_close(cfg, refused, served);
    proxy::final_headers(&mut headers, vhost, conn.tls, close);
    if http10 && !close {
        headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    }
    if !headers.contains_key(header::DATE) {
        headers.insert(header::DATE, http_date());
    }
    entry.finish_head(&shared.log, status, &headers);
    let mut out = take_vec();
    write_status_and_headers(&mut out, status, &headers);
    // The response head's values share the origin read buffer: let it go before that buffer
    // is given back.
    give_map(headers);
    let limits = &cfg.limits;
    let sent = match body {
        Body::Local(b) => {
            if !is_head {
                out.extend_from_slice(&b);
            }
            let n = if is_head { 0 } else { b.len() as u64 };
            let r = write_down(io, &out, limits.timeout).await.map(|_| n).map_err(|_| ());
            give_vec(out);
            r
        }
        Body::Origin(o) => {
            let kind = if is_head { OriginBody::None } else { o.body };
            copy_response(io, out, kind, chunked_out, o.conn, o.buf, o.up, o.keep, shared, limits).await
        }
    };
    let flushed = match sent {
        Ok(_) => timeout(limits.timeout, io.flush()).await.is_ok_and(|r| r.is_ok()),
        Err(_) => false,
    };
    entry.bytes = *sent.as_ref().unwrap_or(&0);
    entry.elapsed = started.elapsed();
    shared.metrics.record(&entry);
    shared.log.write(&entry);
    if ctx.linger {
        return Kept::Linger;
    }
    if sent.is_ok() && flushed && !close { Kept::Yes } else { Kept::No }
}

/// Whether a downstream connection goes on after an exchange.
#[derive(PartialEq)]
enum Kept {
    Yes,
    No,
    /// No, and the downstream may still be sending a body nobody read.
    Linger,
}

/// Apache's lingering close (`ap_lingering_close`): after the answer and our FIN, read and
/// discard what the downstream still sends, for up to 30 s and while it sends something every
/// 2 s. Closing with its bytes unread would reset the connection, and a reset makes the
/// downstream's kernel discard our answer before it is read (RFC 9112 §9.6).
async fn lingering_close<S: DownIo>(io: &mut S) {
    let _ = timeout(Duration::from_secs(1), io.shutdown()).await;
    let all = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(all);
    let mut sink = [0u8; 16 * 1024];
    loop {
        tokio::select! {
            r = timeout(Duration::from_secs(2), io.read(&mut sink)) => match r {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            },
            _ = &mut all => return,
        }
    }
}

enum Body<'a> {
    Local(Bytes),
    Origin(OriginRest<'a>),
}

struct OriginRest<'a> {
    body: OriginBody,
    conn: RawConn,
    buf: BytesMut,
    up: &'a Upstream,
    keep: bool,
}

/// Write `out`, then the origin's body in the downstream's framing; give the origin
/// connection back when its response was read whole. The body bytes sent, or `Err` when
/// the exchange broke (the downstream connection must then close).
#[allow(clippy::too_many_arguments)]
async fn copy_response<S: DownIo>(
    io: &mut S,
    mut out: Vec<u8>,
    kind: OriginBody,
    chunked_out: bool,
    mut up_conn: RawConn,
    mut up_buf: BytesMut,
    up: &Upstream,
    keep: bool,
    shared: &Shared,
    limits: &ConnLimits,
) -> Result<u64, ()> {
    let mut sent = 0u64;
    // Small bodies go in the same write as the head.
    const COALESCE: usize = 16 * 1024;
    match kind {
        OriginBody::None => {
            write_down(io, &out, limits.timeout).await.map_err(|_| ())?;
        }
        OriginBody::Length(mut left) => {
            loop {
                let take = (left.min(up_buf.len() as u64)) as usize;
                if take > 0 {
                    if out.len() + take <= COALESCE {
                        out.extend_from_slice(&up_buf[..take]);
                    } else {
                        if !out.is_empty() {
                            write_down(io, &out, limits.timeout).await.map_err(|_| ())?;
                            out.clear();
                        }
                        write_down(io, &up_buf[..take], limits.timeout).await.map_err(|_| ())?;
                    }
                    up_buf.advance(take);
                    left -= take as u64;
                    sent += take as u64;
                }
                if left == 0 {
                    break;
                }
                if !out.is_empty() {
                    write_down(io, &out, limits.timeout).await.map_err(|_| ())?;
                    out.clear();
                }
                if left >= crate::splice::MIN
                    && let Some(tcp) = io.tcp()
                {
                    // Large and plain: the rest goes origin → client inside the kernel.
                    let pipe = crate::splice::Pipe::new().map_err(|e| tracing::debug!("pipe: {e}"))?;
                    crate::splice::copy(&pipe, &up_conn.stream, tcp, left, up.timeout, limits.timeout, None)
                        .await
                        .map_err(|e| tracing::debug!("origin {}: body splice stopped: {e:?}", up.url))?;
                    sent += left;
                    break;
                }
                if !read_origin(&mut up_conn, &mut up_buf, up, left, false).await? {
                    tracing::debug!("origin {} closed {left} bytes before the end of its response", up.url);
                    return Err(());
                }
            }
            if !out.is_empty() {
                write_down(io, &out, limits.timeout).await.map_err(|_| ())?;
            }
        }
        OriginBody::Chunked | OriginBody::UntilClose => {
            let mut chunks = Chunks::default();
            let mut pipe = None;
            let mut small_read = false;
            loop {
                let piece = if kind == OriginBody::Chunked {
                    chunks.next(&mut up_buf).map_err(|why| tracing::debug!("origin {}: {why}", up.url))?
                } else if up_buf.is_empty() {
                    Piece::More
                } else {
                    Piece::Data(up_buf.len())
                };
                // The rest of a large chunk goes origin → plain client inside the kernel,
                // announced by one size line for the whole of it.
                let rest = chunks.left_in_chunk();
                if rest >= SPLICE_CHUNK && io.tcp().is_some() {
                    let n = if let Piece::Data(n) = piece { n } else { 0 };
                    let mut line = [0u8; 20];
                    let size = if chunked_out { chunk_size_line(&mut line, n + rest as usize) } else { &[] };
                    let mut parts = [IoSlice::new(&out), IoSlice::new(size), IoSlice::new(&up_buf[..n])];
                    write_all_vectored(io, &mut parts, limits.timeout).await.map_err(|_| ())?;
                    out.clear();
                    up_buf.advance(n);
                    let pipe = match &pipe {
                        Some(p) => p,
                        None => pipe.insert(crate::splice::Pipe::new().map_err(|e| tracing::debug!("pipe: {e}"))?),
                    };
                    let tcp = io.tcp().expect("a plain downstream");
                    crate::splice::copy(pipe, &up_conn.stream, tcp, rest, up.timeout, limits.timeout, None)
                        .await
                        .map_err(|e| tracing::debug!("origin {}: chunk splice stopped: {e:?}", up.url))?;
                    chunks.skip_chunk_rest();
                    sent += n as u64 + rest;
                    if chunked_out {
                        out.extend_from_slice(b"\r\n");
                    }
                    small_read = true;
                    continue;
                }
                match piece {
                    Piece::Data(n) => {
                        let mut size_line = [0u8; 20];
                        let size_line = chunk_size_line(&mut size_line, n);
                        if out.len() + n + 32 <= COALESCE {
                            if chunked_out {
                                out.extend_from_slice(size_line);
                            }
                            out.extend_from_slice(&up_buf[..n]);
                            if chunked_out {
                                out.extend_from_slice(b"\r\n");
                            }
                        } else {
                            if !out.is_empty() {
                                write_down(io, &out, limits.timeout).await.map_err(|_| ())?;
                                out.clear();
                            }
                            if chunked_out {
                                let mut parts = [IoSlice::new(size_line), IoSlice::new(&up_buf[..n]), IoSlice::new(b"\r\n")];
                                write_all_vectored(io, &mut parts, limits.timeout).await.map_err(|_| ())?;
                            } else {
                                write_down(io, &up_buf[..n], limits.timeout).await.map_err(|_| ())?;
                            }
                        }
                        up_buf.advance(n);
                        sent += n as u64;
                        small_read = false;
                    }
                    Piece::End => break,
                    Piece::More => {
                        if !out.is_empty() {
                            write_down(io, &out, limits.timeout).await.map_err(|_| ())?;
                            out.clear();
                        }
                        // Only a clean EOF ends a close-delimited body; a reset or a
                        // timeout must not look like a complete answer downstream.
                        match read_origin(&mut up_conn, &mut up_buf, up, BODY_BUF as u64, small_read).await? {
                            true => {}
                            false if kind == OriginBody::UntilClose => break,
                            false => return Err(()),
                        }
                    }
                }
            }
            if chunked_out {
                out.extend_from_slice(b"0\r\n\r\n");
            }
            if !out.is_empty() {
                write_down(io, &out, limits.timeout).await.map_err(|_| ())?;
            }
        }
    }
    give_vec(out);
    // The whole response was read: the origin connection can serve another request, unless
    // the origin sent more than it framed.
    if keep && kind != OriginBody::UntilClose && up_buf.is_empty() {
        shared.pool.checkin_raw(up_conn, up);
        give_buffer(&mut up_buf);
    }
    Ok(sent)
}

/// Read more of an origin's response body (about `want` bytes; with `small`, at most
/// `CHUNK_HEAD_READ`): `Ok(true)` for bytes, `Ok(false)` at EOF, `Err` on a failure or the
/// origin's `timeout`.
async fn read_origin(c: &mut RawConn, buf: &mut BytesMut, up: &Upstream, want: u64, small: bool) -> Result<bool, ()> {
    if buf.capacity() - buf.len() < 4096 {
        let room = (want as usize).clamp(4096, BODY_BUF);
        buf.reserve(room);
    }
    let read = async { if small { (&mut c.stream).take(CHUNK_HEAD_READ).read_buf(buf).await } else { c.stream.read_buf(buf).await } };
    match timeout(up.timeout, read).await {
        Ok(Ok(n)) if n > 0 => Ok(true),
        Ok(Ok(_)) => Ok(false),
        Ok(Err(e)) => {
            tracing::debug!("origin {} read failed: {e}", up.url);
            Err(())
        }
        Err(_) => {
            tracing::error!("origin {} did not send more of its response within {:?}", up.url, up.timeout);
            Err(())
        }
    }
}

async fn write_down<S: DownIo>(io: &mut S, b: &[u8], t: Duration) -> io::Result<()> {
    match timeout(t, io.write_all(b)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "downstream write timed out")),
    }
}

async fn write_all_vectored<W: AsyncWrite + Unpin>(w: &mut W, mut bufs: &mut [IoSlice<'_>], t: Duration) -> io::Result<()> {
    // Empty parts up front are dropped: all empty is nothing to write, not a zero write.
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        let n = match timeout(t, w.write_vectored(bufs)).await {
            Ok(r) => r?,
            Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}

/// `1a2b\r\n` for a chunk of `n` bytes.
fn chunk_size_line(out: &mut [u8; 20], n: usize) -> &[u8] {
    let digits = format_hex(n, out);
    out[digits] = b'\r';
    out[digits + 1] = b'\n';
    &out[..digits + 2]
}

fn format_hex(mut n: usize, out: &mut [u8; 20]) -> usize {
    let mut tmp = [0u8; 16];
    let mut i = 0;
    loop {
        tmp[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        i += 1;
        if n == 0 {
            break;
        }
    }
    for j in 0..i {
        out[j] = tmp[i - 1 - j];
    }
    i
}

/// One request's trip to the origin.
struct Exchange<'a> {
    shared: &'a Shared,
    conn: &'a ConnInfo,
    vhost: &'a VirtualServer,
    framing: Framing,
    expect_continue: bool,
    sent_continue: bool,
    /// The connection cannot go on after this answer (a body was left unread).
    must_close: bool,
    /// The origin answered before taking the whole body, which the downstream may still be
    /// sending: read what it sends after the answer before closing (lingering close).
    linger: bool,
    limits: &'a ConnLimits,
    /// The request body's deadline (mod_reqtimeout `body=`), on every read of the body.
    body_clock: BodyClock,
}

/// The request body, as it will be sent.
enum Plan {
    Empty,
    /// All of it is here (a small body): it can be sent again on a retry.
    Full(Bytes),
    /// A body of this length, streamed from the downstream.
    Length(u64),
    /// A chunked body streamed on; its first decoded bytes, and the decoder's state.
    Chunked(Bytes, Chunks),
}

/// Why sending to the origin failed.
enum SendFail {
    /// The origin's fault, and whether a fresh connection may be tried.
    Up(UpstreamError, bool),
    Down(StatusCode, &'static str),
}

impl<'a> Exchange<'a> {
    #[allow(clippy::too_many_arguments)]
    async fn run<S: DownIo>(
        &mut self,
        verdict: Verdict,
        parts: &mut http::request::Parts,
        host: Option<&HeaderValue>,
        server_name: &str,
        io: &mut S,
        buf: &mut BytesMut,
        entry: &mut Entry,
    ) -> Result<Answer<'a>, Failure> {
        if let Verdict::Reject(s, why) = verdict {
            return Err(Failure::Downstream(s, why));
        }
        let fwd = match proxy::prepare(self.conn, self.vhost, &self.shared.balancers, parts, host, server_name, false, entry)? {
            Prepared::Local(p, b) => {
                // The request's body, if any, is not wanted: skip it to keep the connection.
                self.discard_body(io, buf).await?;
                return Ok(Answer::Local(p, b));
            }
            Prepared::Forward(f) => f,
        };
        let Forward { up, mut node, mut headers, target, scheme, .. } = fwd;
        if target.parse::<Uri>().is_err() {
            return Err(Failure::Downstream(StatusCode::BAD_REQUEST, "unforwardable path"));
        }
        // The body: small chunked bodies are sent with a length, as Apache does.
        let mut plan = match self.framing {
            Framing::None | Framing::Tunnel => {
                if !headers.contains_key(header::CONTENT_LENGTH) && matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
                }
                Plan::Empty
            }
            Framing::Length(n) if (buf.len() as u64) >= n => Plan::Full(buf.split_to(n as usize).freeze()),
            Framing::Length(n) => Plan::Length(n),
            Framing::Chunked => {
                let plan = Box::pin(self.prebuffer(io, buf)).await?;
                match &plan {
                    Plan::Full(b) => {
                        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(b.len()));
                    }
                    _ => {
                        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
                    }
                }
                plan
            }
        };
        let request_head = |headers: &HeaderMap| {
            let mut head = take_vec();
            head.extend_from_slice(parts.method.as_str().as_bytes());
            head.push(b' ');
            head.extend_from_slice(target.as_bytes());
            head.extend_from_slice(b" HTTP/1.1\r\n");
            write_fields(&mut head, headers);
            head
        };
        let mut head = request_head(&headers);
        // A balanced route keeps the headers, to send the request to another node (with that
        // node's Host) when that is safe.
        let mut kept_headers = if node.is_some() {
            Some(headers)
        } else {
            give_map(headers);
            None
        };
        let idempotent = proxy::is_idempotent(&parts.method);
        let up_started = std::time::Instant::now();
        let mut up = up;
        let mut tried: Vec<usize> = Vec::new();
        let mut up_conn = loop {
            match self.shared.pool.checkout_raw(up, true).await {
                Ok(c) => break c,
                Err(e) => {
                    // Nothing was sent: another node may take the request.
                    if proxy::is_connect_failure(&e)
                        && let Some(p) = &node
                    {
                        p.group.record(p.index, NodeOutcome::ConnectFailed);
                        if let Some(next) = proxy::next_node(&mut node, &mut tried) {
                            up = next;
                            if let Some(h) = kept_headers.as_mut() {
                                proxy::set_upstream_host(h, self.vhost, up);
                                give_vec(std::mem::replace(&mut head, request_head(h)));
                            }
                            continue;
                        }
                    }
                    return Err(Failure::Upstream(e));
                }
            }
        };
        up_conn.in_flight = node.as_mut().and_then(|p| p.in_flight.take());
        let mut up_buf = take_buffer();
        let resp = loop {
            match self.send(&mut up_conn, &mut up_buf, &head, &mut plan, io, buf, up, idempotent, parts.method == Method::HEAD).await {
                Ok(r) => break r,
                Err(SendFail::Down(s, why)) => return Err(Failure::Downstream(s, why)),
                Err(SendFail::Up(e, retryable)) => {
                    // Only after a failure on a reused connection, before any answer, and with
                    // a body we still have: the origin had closed its idle connection.
                    if up_conn.reused && retryable {
                        tracing::debug!("retrying on a fresh origin connection after: {e}");
                        let in_flight = up_conn.in_flight.take();
                        up_conn = self.shared.pool.checkout_raw(up, false).await.map_err(Failure::Upstream)?;
                        up_conn.in_flight = in_flight;
                        up_buf.clear();
                        continue;
                    }
                    if let Some(p) = &node {
                        p.group.record(p.index, NodeOutcome::Failed);
                    }
                    // On another node, under the same rule: nothing of the body is lost and no
                    // answer had begun (a push whose pack is streaming is never sent twice).
                    let next = if retryable { proxy::next_node(&mut node, &mut tried) } else { None };
                    let (Some(next), Some(h)) = (next, kept_headers.as_mut()) else { return Err(Failure::Upstream(e)) };
                    up = next;
                    proxy::set_upstream_host(h, self.vhost, up);
                    give_vec(std::mem::replace(&mut head, request_head(h)));
                    up_conn = loop {
                        match self.shared.pool.checkout_raw(up, true).await {
                            Ok(c) => break c,
                            Err(e) => {
                                let p = node.as_ref().expect("a balanced route");
                                p.group.record(p.index, NodeOutcome::ConnectFailed);
                                if !proxy::is_connect_failure(&e) {
                                    return Err(Failure::Upstream(e));
                                }
                                let Some(next) = proxy::next_node(&mut node, &mut tried) else { return Err(Failure::Upstream(e)) };
                                up = next;
                                proxy::set_upstream_host(h, self.vhost, up);
                                give_vec(std::mem::replace(&mut head, request_head(h)));
                            }
                        }
                    };
                    up_conn.in_flight = node.as_mut().and_then(|p| p.in_flight.take());
                    up_buf.clear();
                }
            }
        };
        if let Some(p) = &node {
            p.group.record(p.index, NodeOutcome::Answered);
        }
        if let Some(h) = kept_headers {
            give_map(h);
        }
        give_vec(head);
        self.shared.metrics.observe_upstream(up_started.elapsed());
        entry.upstream = Some(crate::log::shared(&up.url));
        let RespHead { status, mut headers, body, keep } = resp;
        proxy::origin_response_headers(&mut headers, self.vhost, host, self.conn, scheme, false);
        Ok(Answer::Origin(OriginAnswer { status, headers, body, conn: up_conn, buf: up_buf, up, keep }))
    }

    /// `100 Continue` to a client that waits for it, once, before its body is read.
    async fn send_continue<S: DownIo>(&mut self, io: &mut S) -> Result<(), SendFail> {
        if self.expect_continue && !self.sent_continue {
            self.sent_continue = true;
            let w = async {
                io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
                io.flush().await
            };
            if !matches!(timeout(self.limits.timeout, w).await, Ok(Ok(()))) {
                return Err(SendFail::Down(StatusCode::BAD_REQUEST, "client went away"));
            }
        }
        Ok(())
    }

    /// Read more of the request body from the downstream; `small`: at most `CHUNK_HEAD_READ`
    /// bytes (a chunk's size line, whose data is to be spliced).
    async fn read_down<S: DownIo>(&mut self, io: &mut S, buf: &mut BytesMut, small: bool) -> Result<(), SendFail> {
        self.send_continue(io).await?;
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(BODY_BUF);
        }
        let read = async { if small { (&mut *io).take(CHUNK_HEAD_READ).read_buf(buf).await } else { io.read_buf(buf).await } };
        // Each read waits at most `timeout` (a stall), and never past the body's deadline,
        // which every byte received pushes further (a trickle below the minimum rate).
        let (until, rate_deadline) = self.body_clock.wait_until(self.limits.timeout);
        match timeout_at(until, read).await {
            Ok(Ok(n)) if n > 0 => {
                self.body_clock.received(n as u64);
                Ok(())
            }
            Ok(_) => Err(SendFail::Down(StatusCode::BAD_REQUEST, "request body cut short")),
            Err(_) if rate_deadline => Err(SendFail::Down(StatusCode::REQUEST_TIMEOUT, BODY_TOO_SLOW)),
            Err(_) => Err(SendFail::Down(StatusCode::REQUEST_TIMEOUT, "request body read timed out")),
        }
    }

    /// Read a chunked body up to `PREBUFFER`: all of it (sent with a length) or its start.
    async fn prebuffer<S: DownIo>(&mut self, io: &mut S, buf: &mut BytesMut) -> Result<Plan, Failure> {
        let mut chunks = Chunks::default();
        let mut data = BytesMut::new();
        let bad = |f: SendFail| match f {
            SendFail::Down(s, why) => Failure::Downstream(s, why),
            SendFail::Up(e, _) => Failure::Upstream(e),
        };
        loop {
            match chunks.next(buf).map_err(|why| Failure::Downstream(StatusCode::BAD_REQUEST, why))? {
                Piece::Data(n) => {
                    data.extend_from_slice(&buf[..n]);
                    buf.advance(n);
                    if data.len() > proxy::PREBUFFER {
                        return Ok(Plan::Chunked(data.freeze(), chunks));
                    }
                }
                Piece::End => return Ok(Plan::Full(data.freeze())),
                Piece::More => self.read_down(io, buf, false).await.map_err(bad)?,
            }
        }
    }

    /// Skip a request body nobody will read (a local answer), so the connection can go on.
    async fn discard_body<S: DownIo>(&mut self, io: &mut S, buf: &mut BytesMut) -> Result<(), Failure> {
        let bad = |f: SendFail| match f {
            SendFail::Down(s, why) => Failure::Downstream(s, why),
            SendFail::Up(e, _) => Failure::Upstream(e),
        };
        if self.expect_continue && !self.sent_continue && buf.is_empty() && matches!(self.framing, Framing::Length(_) | Framing::Chunked) {
            // The client holds its body back until a 100 Continue: answer now and close
            // rather than invite a body only to throw it away (RFC 9110 §10.1.1).
            self.must_close = true;
            return Ok(());
        }
        match self.framing {
            Framing::None | Framing::Tunnel => Ok(()),
            Framing::Length(mut n) => {
                // Do not invite a body we will throw away.
                self.sent_continue = true;
                loop {
                    let take = n.min(buf.len() as u64) as usize;
                    buf.advance(take);
                    n -= take as u64;
                    if n == 0 {
                        return Ok(());
                    }
                    self.read_down(io, buf, false).await.map_err(bad)?;
                }
            }
            Framing::Chunked => {
                self.sent_continue = true;
                let mut chunks = Chunks::default();
                loop {
                    match chunks.next(buf).map_err(|why| Failure::Downstream(StatusCode::BAD_REQUEST, why))? {
                        Piece::Data(n) => buf.advance(n),
                        Piece::End => return Ok(()),
                        Piece::More => self.read_down(io, buf, false).await.map_err(bad)?,
                    }
                }
            }
        }
    }

    /// Send the request (head and body) on `c` and read the response head.
    #[allow(clippy::too_many_arguments)]
    async fn send<S: DownIo>(
        &mut self,
        c: &mut RawConn,
        up_buf: &mut BytesMut,
        head: &[u8],
        plan: &mut Plan,
        io: &mut S,
        buf: &mut BytesMut,
        up: &Upstream,
        idempotent: bool,
        head_method: bool,
    ) -> Result<RespHead, SendFail> {
        let t = up.timeout;
        let up_err = |e: io::Error, retryable: bool| up_fail(up, e, retryable);
        // A body we still hold can be sent again; a streamed one cannot, once begun.
        let resendable = matches!(plan, Plan::Empty | Plan::Full(_));
        match plan {
            Plan::Empty => write_up(&mut c.stream, head, t).await.map_err(|e| up_err(e, true))?,
            Plan::Full(b) => {
                let mut parts = [IoSlice::new(head), IoSlice::new(b)];
                write_all_vectored(&mut c.stream, &mut parts, t).await.map_err(|e| up_err(e, true))?;
            }
            Plan::Length(n) => {
                if let Err(e) = write_up(&mut c.stream, head, t).await {
                    return self.after_write_error(c, up_buf, up, e, true, idempotent, head_method).await;
                }
                let mut left = *n;
                while left > 0 {
                    if buf.is_empty() && left >= crate::splice::MIN && io.tcp().is_some() {
                        // Large and plain: the rest goes client → origin inside the kernel.
                        self.send_continue(io).await?;
                        let pipe = crate::splice::Pipe::new().map_err(|e| up_err(e, false))?;
                        let tcp = io.tcp().expect("plain");
                        return match crate::splice::copy(&pipe, tcp, &c.stream, left, self.limits.timeout, t, Some(&mut self.body_clock)).await {
                            Ok(()) => self.read_response_head(c, up_buf, up, false, idempotent, head_method).await,
                            Err(crate::splice::SpliceError::Sink(e)) => self.after_write_error(c, up_buf, up, e, false, idempotent, head_method).await,
                            Err(e) => Err(spliced_body_fail(up, e)),
                        };
                    }
                    if buf.is_empty() {
                        self.read_down(io, buf, false).await?;
                    }
                    let take = left.min(buf.len() as u64) as usize;
                    if let Err(e) = write_up(&mut c.stream, &buf[..take], t).await {
                        return self.after_write_error(c, up_buf, up, e, false, idempotent, head_method).await;
                    }
                    buf.advance(take);
                    left -= take as u64;
                }
            }
            Plan::Chunked(prefix, chunks) => {
                let mut line = [0u8; 20];
                let size = chunk_size_line(&mut line, prefix.len());
                let mut parts = [IoSlice::new(head), IoSlice::new(size), IoSlice::new(prefix), IoSlice::new(b"\r\n")];
                if let Err(e) = write_all_vectored(&mut c.stream, &mut parts, t).await {
                    return self.after_write_error(c, up_buf, up, e, true, idempotent, head_method).await;
                }
                let mut pipe = None;
                // The CRLF that ends a spliced chunk, sent with the next write.
                let mut crlf: &[u8] = b"";
                let mut small_read = false;
                loop {
                    let n = match chunks.next(buf).map_err(|why| SendFail::Down(StatusCode::BAD_REQUEST, why))? {
                        Piece::Data(n) => n,
                        Piece::End => break,
                        Piece::More => 0,
                    };
                    // The rest of a large chunk from a plain client goes client → origin
                    // inside the kernel, announced by one size line for the whole of it.
                    let rest = chunks.left_in_chunk();
                    let splice_from = if rest >= SPLICE_CHUNK { io.tcp() } else { None };
                    if n == 0 && splice_from.is_none() {
                        self.read_down(io, buf, small_read).await?;
                        continue;
                    }
                    let whole = n + splice_from.map_or(0, |_| rest as usize);
                    let mut line = [0u8; 20];
                    let size = chunk_size_line(&mut line, whole);
                    let end: &[u8] = if splice_from.is_some() { b"" } else { b"\r\n" };
                    let mut parts = [IoSlice::new(crlf), IoSlice::new(size), IoSlice::new(&buf[..n]), IoSlice::new(end)];
                    if let Err(e) = write_all_vectored(&mut c.stream, &mut parts, t).await {
                        return self.after_write_error(c, up_buf, up, e, false, idempotent, head_method).await;
                    }
                    buf.advance(n);
                    (crlf, small_read) = (b"", false);
                    if let Some(tcp) = splice_from {
                        let pipe = match &pipe {
                            Some(p) => p,
                            None => pipe.insert(crate::splice::Pipe::new().map_err(|e| up_err(e, false))?),
                        };
                        match crate::splice::copy(pipe, tcp, &c.stream, rest, self.limits.timeout, t, Some(&mut self.body_clock)).await {
                            Ok(()) => {}
                            Err(crate::splice::SpliceError::Sink(e)) => {
                                return self.after_write_error(c, up_buf, up, e, false, idempotent, head_method).await;
                            }
                            Err(e) => return Err(spliced_body_fail(up, e)),
                        }
                        chunks.skip_chunk_rest();
                        (crlf, small_read) = (b"\r\n", true);
                    }
                }
                let mut parts = [IoSlice::new(crlf), IoSlice::new(b"0\r\n\r\n")];
                if let Err(e) = write_all_vectored(&mut c.stream, &mut parts, t).await {
                    return self.after_write_error(c, up_buf, up, e, false, idempotent, head_method).await;
                }
            }
        }
        self.read_response_head(c, up_buf, up, resendable, idempotent, head_method).await
    }

    /// A write of the request to the origin failed. An origin may answer before it has read
    /// the body (a 401, 403 or 413, RFC 9110 §15.5) and close on the rest; the kernel then
    /// resets the connection and our next write fails, with the answer already waiting in
    /// the socket. That answer is read and delivered (nginx answers 502 here), the origin
    /// connection is not reused, and the downstream's, whose body was not all read, closes
    /// after a lingering close. Any other failure is the origin's (502, or 504 on a timeout).
    #[allow(clippy::too_many_arguments)]
    async fn after_write_error(
        &mut self,
        c: &mut RawConn,
        up_buf: &mut BytesMut,
        up: &Upstream,
        e: io::Error,
        retryable: bool,
        idempotent: bool,
        head_method: bool,
    ) -> Result<RespHead, SendFail> {
        if !(matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) && crate::upstream::answer_waiting(&c.stream)) {
            return Err(up_fail(up, e, retryable));
        }
        tracing::debug!("origin answered before reading the whole request body; delivering its answer");
        self.must_close = true;
        self.linger = true;
        let mut r = self.read_response_head(c, up_buf, up, false, idempotent, head_method).await?;
        r.keep = false;
        Ok(r)
    }

    /// Read the origin's response head; informational answers (100, 103) are skipped.
    async fn read_response_head(
        &mut self,
        c: &mut RawConn,
        up_buf: &mut BytesMut,
        up: &Upstream,
        resendable: bool,
        idempotent: bool,
        head_method: bool,
    ) -> Result<RespHead, SendFail> {
        let t = up.timeout;
        let target = || origin_name(up);
        let up_err = |e: io::Error, retryable: bool| up_fail(up, e, retryable);
        loop {
            if let Some(end) = find_head_end(up_buf) {
                match parse_response(up_buf, end, head_method) {
                    Ok(Some(r)) => return Ok(r),
                    Ok(None) => continue,
                    Err(why) => return Err(SendFail::Up(UpstreamError::Invalid(target(), why), false)),
                }
            }
            if up_buf.len() > MAX_RESPONSE_HEAD {
                return Err(SendFail::Up(UpstreamError::Invalid(target(), "response head too large"), false));
            }
            if up_buf.capacity() - up_buf.len() < 2048 {
                up_buf.reserve(READ_BUF);
            }
            match timeout(t, c.stream.read_buf(up_buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(Ok(_)) => {
                    // Closed before answering: on a reused connection this is the race with
                    // the origin's idle close; retried only when repeating is safe.
                    return Err(SendFail::Up(UpstreamError::Closed(target()), up_buf.is_empty() && resendable && idempotent));
                }
                Ok(Err(e)) => return Err(up_err(e, up_buf.is_empty() && resendable && idempotent)),
                Err(_) => return Err(SendFail::Up(UpstreamError::Timeout(target(), t), false)),
            }
        }
    }
}

/// `host:port` of an origin, for errors (built only when one happens).
fn origin_name(up: &Upstream) -> String {
    format!("{}:{}", up.host, up.port)
}

/// An I/O failure with the origin: a timeout (504, never retried) or a broken connection
/// (502, retried on a fresh connection when `retryable`).
fn up_fail(up: &Upstream, e: io::Error, retryable: bool) -> SendFail {
    if e.kind() == io::ErrorKind::TimedOut {
        SendFail::Up(UpstreamError::Timeout(origin_name(up), up.timeout), false)
    } else {
        SendFail::Up(UpstreamError::Io(origin_name(up), e), retryable)
    }
}

/// A request body splice that stopped: the client's fault (cut short, too slow) or the origin's.
fn spliced_body_fail(up: &Upstream, e: crate::splice::SpliceError) -> SendFail {
    match e {
        crate::splice::SpliceError::TooSlow => SendFail::Down(StatusCode::REQUEST_TIMEOUT, BODY_TOO_SLOW),
        crate::splice::SpliceError::Source(e) if e.kind() == io::ErrorKind::TimedOut => {
            SendFail::Down(StatusCode::REQUEST_TIMEOUT, "request body read timed out")
        }
        crate::splice::SpliceError::Source(_) => SendFail::Down(StatusCode::BAD_REQUEST, "request body cut short"),
        crate::splice::SpliceError::Sink(e) => up_fail(up, e, false),
    }
}

async fn write_up(s: &mut TcpStream, b: &[u8], t: Duration) -> io::Result<()> {
    match timeout(t, s.write_all(b)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "origin write timed out")),
    }
}

struct RespHead {
    status: StatusCode,
    headers: HeaderMap,
    body: OriginBody,
    keep: bool,
}

/// Parse the origin's response head at the front of `buf`. `Ok(None)`: an informational
/// response, consumed.
fn parse_response(buf: &mut BytesMut, end: usize, head_method: bool) -> Result<Option<RespHead>, &'static str> {
    let mut hdrs = [httparse::EMPTY_HEADER; 128];
    let mut resp = httparse::Response::new(&mut hdrs);
    match resp.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(n)) if n == end => {}
        _ => return Err("malformed response head"),
    }
    let code = resp.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| "invalid status code")?;
    if status.is_informational() {
        if code == 101 {
            return Err("101 Switching Protocols without an upgrade request");
        }
        buf.advance(end);
        return Ok(None);
    }
    let http10 = resp.version == Some(0);
    let base = buf.as_ptr() as usize;
    let mut fields = take_fields(resp.headers.len());
    let (mut close, mut keep_alive, mut chunked, mut te) = (false, false, false, false);
    let mut length: Option<u64> = None;
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| "invalid header name")?;
        if name == header::CONNECTION {
            for t in h.value.split(|&b| b == b',') {
                let t = t.trim_ascii();
                close |= t.eq_ignore_ascii_case(b"close");
                keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name == header::TRANSFER_ENCODING {
            te = true;
            // The final coding decides (RFC 9112 §6.3).
            chunked = h.value.rsplit(|&b| b == b',').next().is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name == header::CONTENT_LENGTH {
            let v = h.value.trim_ascii();
            if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
                return Err("malformed Content-Length");
            }
            let n: u64 = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()).ok_or("malformed Content-Length")?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting Content-Length");
            }
            length = Some(n);
        }
        fields.push((name, h.value.as_ptr() as usize - base, h.value.len()));
    }
    let no_body = head_method || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let body = if no_body {
        OriginBody::None
    } else if te {
        if chunked { OriginBody::Chunked } else { OriginBody::UntilClose }
    } else if let Some(n) = length {
        if n == 0 { OriginBody::None } else { OriginBody::Length(n) }
    } else {
        OriginBody::UntilClose
    };
    // A response with both framings is not trusted with the connection afterwards.
    let keep = !(te && length.is_some()) && if http10 { keep_alive } else { !close };
    let head = buf.split_to(end).freeze();
    let mut headers = fields_to_map(&head, fields, 4).ok_or("invalid header value")?;
    if te {
        headers.remove(header::CONTENT_LENGTH);
    }
    Ok(Some(RespHead { status, headers, body, keep }))
}

fn write_status_and_headers(out: &mut Vec<u8>, status: StatusCode, headers: &HeaderMap) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    write_fields(out, headers);
}

/// Header fields and the empty line that ends a head.
fn write_fields(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (n, v) in headers.iter() {
        out.extend_from_slice(n.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A local error answer on a connection about to close (no request to log).
async fn write_local_only<S: DownIo>(io: &mut S, status: StatusCode, t: Duration) -> io::Result<()> {
    let (p, body) = proxy::local_parts(status, true);
    let mut h = p.headers;
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    h.insert(header::DATE, http_date());
    let mut out = Vec::with_capacity(512 + body.len());
    write_status_and_headers(&mut out, status, &h);
    out.extend_from_slice(&body);
    write_down(io, &out, t).await?;
    timeout(t, io.flush()).await.unwrap_or(Ok(()))
}

/// The `Date` value, formatted once a second per thread.
fn http_date() -> HeaderValue {
    thread_local! {
        static CACHE: RefCell<(u64, Option<HeaderValue>)> = const { RefCell::new((0, None)) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs || c.1.is_none() {
            let v = HeaderValue::from_str(&httpdate::fmt_http_date(now)).unwrap_or(HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
            *c = (secs, Some(v));
        }
        c.1.clone().expect("date")
    })
}

/// A chunked-body decoder working on the front of a buffer (RFC 9112 §7.1), strict like the
/// guard: hex sizes, CRLF after each chunk; trailers are read and dropped.
#[derive(Default, Debug)]
pub(crate) struct Chunks {
    state: ChunkState,
}

#[derive(Default, Debug, Clone, Copy)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    /// This many bytes at the front of the buffer are data: the caller uses and consumes them.
    Data(usize),
    End,
    More,
}

impl Chunks {
    /// Bytes of the current chunk's data not yet handed out (0 outside chunk data).
    pub(crate) fn left_in_chunk(&self) -> u64 {
        if let ChunkState::Data(n) = self.state { n } else { 0 }
    }

    /// The caller moved the rest of the current chunk's data itself (spliced it).
    fn skip_chunk_rest(&mut self) {
        if let ChunkState::Data(_) = self.state {
            self.state = ChunkState::DataEnd;
        }
    }

    pub(crate) fn next(&mut self, buf: &mut BytesMut) -> Result<Piece, &'static str> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(pos) = buf.iter().position(|&b| b == b'\n') else {
                        return if buf.len() > 4096 { Err("chunk size line too long") } else { Ok(Piece::More) };
                    };
                    let n = guard::parse_chunk_size(&buf[..=pos]).ok_or("malformed chunk size")?;
                    buf.advance(pos + 1);
                    self.state = if n == 0 { ChunkState::Trailers } else { ChunkState::Data(n) };
                }
                ChunkState::Data(n) => {
                    if buf.is_empty() {
                        return Ok(Piece::More);
                    }
                    let take = n.min(buf.len() as u64);
                    self.state = if take == n { ChunkState::DataEnd } else { ChunkState::Data(n - take) };
                    return Ok(Piece::Data(take as usize));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Piece::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err("chunk data not followed by CRLF");
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(pos) = buf.iter().position(|&b| b == b'\n') else {
                        return if buf.len() > 8192 { Err("trailer section too long") } else { Ok(Piece::More) };
                    };
                    if pos == 0 || buf[pos - 1] != b'\r' {
                        return Err("trailer line not ended by CRLF");
                    }
                    let empty = pos == 1;
                    buf.advance(pos + 1);
                    if empty {
                        self.state = ChunkState::Done;
                        return Ok(Piece::End);
                    }
                }
                ChunkState::Done => return Ok(Piece::End),
            }
        }
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8], split: usize) -> Result<(Vec<u8>, Vec<u8>), &'static str> {
        let mut c = Chunks::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut rest = input;
        loop {
            match c.next(&mut buf)? {
                Piece::Data(n) => {
                    out.extend_from_slice(&buf[..n]);
                    buf.advance(n);
                }
                Piece::End => return Ok((out, [&buf[..], rest].concat())),
                Piece::More => {
                    if rest.is_empty() {
                        return Err("eof");
                    }
                    let k = split.min(rest.len());
                    buf.extend_from_slice(&rest[..k]);
                    rest = &rest[k..];
                }
            }
        }
    }

    #[test]
    fn chunked_decoding_table() {
        type Want = Result<(&'static [u8], &'static [u8]), ()>;
        let rows: &[(&[u8], Want)] = &[
            (b"5\r\nhello\r\n0\r\n\r\n", Ok((b"hello", b""))),
            (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET", Ok((b"hello world", b"GET"))),
            (b"5;ext=1\r\nhello\r\n0\r\nX-T: y\r\n\r\n", Ok((b"hello", b""))),
            (b"5\r\nhelloXX0\r\n\r\n", Err(())),
            (b"zz\r\nhello\r\n0\r\n\r\n", Err(())),
            (b"5;bad[=x\r\nhello\r\n0\r\n\r\n", Err(())),
            (b"5;ok=\"[x]\"\r\nhello\r\n0\r\n\r\n", Ok((b"hello", b""))),
            (b"5\nhello\r\n0\r\n\r\n", Err(())),
            (b"0\r\nX: y\n\r\n", Err(())),
        ];
        for (input, want) in rows {
            for split in [1, 3, 1000] {
                let got = decode(input, split);
                match want {
                    Ok((data, rest)) => {
                        let (d, r) = got.unwrap_or_else(|e| panic!("{input:?} split {split}: {e}"));
                        assert_eq!((&d[..], &r[..]), (*data, *rest), "{input:?} split {split}");
                    }
                    Err(()) => assert!(got.is_err(), "{input:?} split {split}: {got:?}"),
                }
            }
        }
    }

    #[test]
    fn head_end_table() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest"), Some(27));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\nHost: a\n\nrest"), Some(24));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n\r"), None);
    }

    #[test]
    fn chunk_size_lines() {
        let mut b = [0u8; 20];
        assert_eq!(chunk_size_line(&mut b, 0), b"0\r\n");
        assert_eq!(chunk_size_line(&mut b, 26), b"1a\r\n");
        assert_eq!(chunk_size_line(&mut b, 65536), b"10000\r\n");
    }

    #[test]
    fn response_framing_table() {
        type Want = Result<(u16, OriginBody, bool), ()>;
        let rows: &[(&str, bool, Want)] = &[
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, Ok((200, OriginBody::Length(5), true))),
            ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, Ok((200, OriginBody::Chunked, true))),
            ("HTTP/1.1 200 OK\r\n\r\n", false, Ok((200, OriginBody::UntilClose, true))),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, Ok((200, OriginBody::None, true))),
            ("HTTP/1.1 204 No Content\r\n\r\n", false, Ok((204, OriginBody::None, true))),
            ("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", false, Ok((304, OriginBody::None, true))),
            ("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", false, Ok((200, OriginBody::Length(5), false))),
            ("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\n", false, Ok((200, OriginBody::Length(5), true))),
            ("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\n", false, Ok((200, OriginBody::Length(5), false))),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", false, Ok((200, OriginBody::Chunked, false))),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", false, Err(())),
            ("HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", false, Err(())),
            ("HTTP/1.1 101 Switching Protocols\r\n\r\n", false, Err(())),
        ];
        for (head, is_head, want) in rows {
            let mut buf = BytesMut::from(head.as_bytes());
            let end = find_head_end(&buf).expect("end");
            let got = parse_response(&mut buf, end, *is_head);
            match (got, want) {
                (Ok(Some(r)), Ok((s, b, k))) => assert_eq!((r.status.as_u16(), r.body, r.keep), (*s, *b, *k), "{head:?}"),
                (Err(_), Err(())) => {}
                (g, w) => panic!("{head:?}: got {:?}, want {w:?}", g.map(|o| o.map(|r| (r.status, r.body, r.keep)))),
            }
        }
        let mut buf = BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"[..]);
        let end = find_head_end(&buf).expect("end");
        assert!(matches!(parse_response(&mut buf, end, false), Ok(None)));
        assert_eq!(&buf[..], b"HTTP/1.1 200 OK\r\n\r\n");
    }
}
