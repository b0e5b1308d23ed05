//! Upstream connections: connect with a deadline, a keep-alive pool per origin, and Apache's
//! per-read/per-write `timeout` (not a whole-response deadline, so a multi-GB push that keeps
//! moving never times out).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use crate::config::Upstream;
use crate::metrics::Fnv;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Why an upstream exchange failed; `proxy::error_status` turns it into 502/503/504.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, io::Error),
    #[error("connection to {0} refused or failed: {1}")]
    Connect(String, io::Error),
    #[error("connecting to {0} timed out after {1:?}")]
    ConnectTimeout(String, Duration),
    #[error("no free connection to {0} within {1:?} (max reached)")]
    PoolExhausted(String, Duration),
    #[error("origin {0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("origin {0} closed the connection")]
    Closed(String),
    #[error("origin {0} failed: {1}")]
    Protocol(String, hyper::Error),
    #[error("origin {0} sent an invalid response: {1}")]
    Invalid(String, &'static str),
    #[error("origin {0}: {1}")]
    Io(String, io::Error),
}

/// Shared between a connection's I/O wrapper and whoever uses the connection.
#[derive(Debug)]
pub struct ConnState {
    /// Reads are expected (the request is fully sent): arm the read timeout.
    pub expect_read: AtomicBool,
    pub timeout: Duration,
    /// The origin answered and stopped reading the request body (see [`TimedIo`]): the
    /// connection is never reused.
    pub answered_early: AtomicBool,
}

/// A TCP stream that fails a read or write that waits longer than `timeout`.
///
/// An origin may answer before it has read the request body (a 401, 403 or 413, RFC 9110
/// §15.5) and close the connection; the kernel then resets it, and the next write of the body
/// fails. hyper would fail the whole exchange on that write, and the downstream would get a 502
/// in place of the origin's answer, which is already waiting in the socket. So when a write
/// fails that way with the origin's bytes ready to read, the rest of the body is thrown away
/// (writes "succeed") and the answer is read and delivered; the connection is not reused.
pub struct TimedIo {
    inner: TcpStream,
    state: Arc<ConnState>,
    read_timer: LazyTimer,
    write_timer: LazyTimer,
    /// The origin answered early and stopped reading: the body's bytes go nowhere.
    discard_writes: bool,
}

/// A wait deadline that costs nothing per I/O: progress only forgets when the wait started;
/// the one sleep per connection is re-armed when it fires for a deadline that has moved.
/// (Allocating a sleep per wait put two timer-wheel updates and an allocation on every
/// request.)
#[derive(Default)]
struct LazyTimer {
    since: Option<tokio::time::Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl LazyTimer {
    fn progress(&mut self) {
        self.since = None;
    }

    /// Whether the wait that is going on has lasted `timeout`; registers the waker if not.
    fn expired(&mut self, timeout: Duration, cx: &mut Context<'_>) -> bool {
        let now = tokio::time::Instant::now();
        let deadline = *self.since.get_or_insert(now) + timeout;
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline);
        }
        if sleep.as_mut().poll(cx).is_ready() && now < deadline {
            sleep.as_mut().reset(deadline);
            let _ = sleep.as_mut().poll(cx);
        }
        if now < deadline {
            return false;
        }
        self.since = None;
        true
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                self.read_timer.progress();
                Poll::Ready(r)
            }
            Poll::Pending => {
                if self.state.expect_read.load(Ordering::Acquire) {
                    let t = self.state.timeout;
                    if self.read_timer.expired(t, cx) {
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "origin read timed out")));
                    }
                } else {
                    self.read_timer.progress();
                }
                Poll::Pending
            }
        }
    }
}

impl TimedIo {
    /// A write that waits longer than `timeout` for the origin to take bytes fails.
    fn timed_write(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<usize>>, len: usize) -> Poll<io::Result<usize>> {
        match r {
            Poll::Ready(Err(e)) if matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) && self.answer_waiting() => {
                tracing::debug!("origin answered before reading the whole request body; discarding the rest of it");
                self.discard_writes = true;
                self.state.answered_early.store(true, Ordering::Release);
                self.write_timer.progress();
                Poll::Ready(Ok(len))
            }
            Poll::Ready(r) => {
                self.write_timer.progress();
                Poll::Ready(r)
            }
            Poll::Pending => {
                if self.write_timer.expired(self.state.timeout, cx) {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "origin write timed out")));
                }
                Poll::Pending
            }
        }
    }
}

impl TimedIo {
    /// Whether the origin has sent bytes not read yet: its answer, written before it closed.
    /// (Linux keeps what arrived before a reset readable.) A connection that died idle has
    /// nothing waiting, so its failure stays a failure, retried by the caller when safe.
    fn answer_waiting(&self) -> bool {
        answer_waiting(&self.inner)
    }
}

/// Whether the origin has sent bytes not read yet on `s`. Asked of the socket itself: tokio's
/// readiness may not have seen them arrive yet.
pub(crate) fn answer_waiting(s: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut probe = [0u8; 1];
    // SAFETY: recv writes at most one byte into `probe`, which outlives the call.
    let n = unsafe { libc::recv(s.as_raw_fd(), probe.as_mut_ptr().cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    n > 0
}

impl AsyncWrite for TimedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        if self.discard_writes {
            return Poll::Ready(Ok(b.len()));
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, b);
        self.timed_write(cx, r, b.len())
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        if self.discard_writes {
            return Poll::Ready(Ok(len));
        }
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.timed_write(cx, r, len)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.discard_writes {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct Idle {
    sender: http1::SendRequest<ProxyBody>,
    state: Arc<ConnState>,
    since: Instant,
}

#[derive(Hash, PartialEq, Eq, Clone, Debug)]
struct Key {
    host: String,
    port: u16,
    /// The gateway worker whose runtime drives the connection: a connection is reused by
    /// requests on that worker only, so no request waits on another thread's runtime.
    worker: usize,
}

/// Idle connections kept after a response, per origin. Default idle lifetime 60 s.
///
/// How many are kept follows the demand: at least [`IDLE_MIN`] per origin and worker (nginx's
/// usual `keepalive 64`), and as many as were in use at once since traffic last paused, up to
/// [`IDLE_MAX`]. A fixed cap below the concurrency (640 HTTP/2 streams on 64 connections, say)
/// closes connections whenever answers come back in a batch, and opens new ones for the next
/// requests: a connect, a close and a TIME_WAIT socket per request. When traffic pauses,
/// [`Pool::sweep`] closes what is past its lifetime and what is above the minimum.
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<Key, Slot<Idle>, Fnv>>,
    /// Connections of the HTTP/1 engine (`h1`): plain sockets, keyed by the origin URL, one
    /// table per gateway worker thread: a socket is used by the thread whose runtime polls it.
    raw_idle: [Mutex<HashMap<String, Slot<RawIdle>, Fnv>>; RAW_SHARDS],
    limits: Mutex<HashMap<Key, Arc<Semaphore>>>,
}

/// One origin's idle connections (on one worker), and how many of its connections are in use.
struct Slot<T> {
    idle: VecDeque<T>,
    busy: Arc<AtomicUsize>,
    /// The most in use at once since the last sweep.
    peak: usize,
    ttl: Duration,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot { idle: VecDeque::new(), busy: Arc::new(AtomicUsize::new(0)), peak: 0, ttl: DEFAULT_IDLE }
    }
}

impl<T: Aged> Slot<T> {
    /// Count one more connection in use.
    fn busy(&mut self) -> Busy {
        let now = self.busy.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak = self.peak.max(now);
        Busy(self.busy.clone())
    }

    /// Keep `c` for reuse if the demand says so; close the oldest if past `ttl`.
    fn keep(&mut self, c: T, ttl: Duration) {
        self.ttl = ttl;
        if self.idle.front().is_some_and(|o| o.since().elapsed() >= ttl) {
            self.idle.pop_front();
        }
        let cap = IDLE_MIN.max(self.peak).min(IDLE_MAX);
        while self.idle.len() >= cap {
            self.idle.pop_front();
        }
        self.idle.push_back(c);
    }

    /// Traffic paused: close what is past its lifetime and what is above `min` (or above what
    /// is in use now), oldest first.
    fn sweep(&mut self, min: usize) {
        while self.idle.front().is_some_and(|o| o.since().elapsed() >= self.ttl) {
            self.idle.pop_front();
        }
        self.peak = self.busy.load(Ordering::Relaxed);
        let cap = min.max(self.peak).min(IDLE_MAX);
        while self.idle.len() > cap {
            self.idle.pop_front();
        }
    }
}

trait Aged {
    fn since(&self) -> Instant;
}

impl Aged for Idle {
    fn since(&self) -> Instant {
        self.since
    }
}

impl Aged for RawIdle {
    fn since(&self) -> Instant {
        self.since
    }
}

/// A connection in use, counted in its origin's [`Slot`] until dropped.
struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct RawIdle {
    stream: TcpStream,
    since: Instant,
}

/// An origin connection of the HTTP/1 engine, checked out for one exchange.
pub struct RawConn {
    pub stream: TcpStream,
    pub reused: bool,
    /// A balancer node's count of requests in flight, while this exchange lasts.
    pub in_flight: Option<crate::balancer::InFlight>,
    _busy: Option<Busy>,
    _permit: Option<OwnedSemaphorePermit>,
}

/// A connection checked out for one exchange.
pub struct Conn {
    sender: http1::SendRequest<ProxyBody>,
    pub state: Arc<ConnState>,
    pub reused: bool,
    /// A balancer node's count of requests in flight, while this exchange lasts.
    pub in_flight: Option<crate::balancer::InFlight>,
    key: Key,
    _busy: Option<Busy>,
    _permit: Option<OwnedSemaphorePermit>,
}

const DEFAULT_IDLE: Duration = Duration::from_secs(60);
const RAW_SHARDS: usize = 16;
/// Idle connections always kept per origin and worker.
pub const IDLE_MIN: usize = 64;
/// Idle connections never exceeded per origin and worker.
pub const IDLE_MAX: usize = 1024;
/// Idle hyper connections (the HTTP/2 path) kept per origin and worker when traffic pauses.
pub const IDLE_AFTER_PAUSE: usize = 8;

impl Pool {
    pub fn new() -> Arc<Self> {
        Arc::new(Pool::default())
    }

    fn key(u: &Upstream) -> Key {
        Key { host: u.host.clone(), port: u.port, worker: 0 }
    }

    async fn permit(&self, u: &Upstream) -> Result<Option<OwnedSemaphorePermit>, UpstreamError> {
        if u.max == 0 {
            return Ok(None);
        }
        let sem = self.limits.lock().expect("pool").entry(Self::key(u)).or_insert_with(|| Arc::new(Semaphore::new(u.max))).clone();
        match tokio::time::timeout(u.timeout, sem.acquire_owned()).await {
            Ok(Ok(p)) => Ok(Some(p)),
            _ => Err(UpstreamError::PoolExhausted(u.url.clone(), u.timeout)),
        }
    }

    fn raw_shard(&self) -> &Mutex<HashMap<String, Slot<RawIdle>, Fnv>> {
        &self.raw_idle[crate::server::worker_index() % RAW_SHARDS]
    }

    /// A pooled plain connection if one is alive, else a new one (HTTP/1 engine).
    pub async fn checkout_raw(&self, u: &Upstream, allow_reuse: bool) -> Result<RawConn, UpstreamError> {
        let permit = self.permit(u).await?;
        if u.disable_reuse {
            let stream = Box::pin(connect_tcp(u)).await?;
            return Ok(RawConn { stream, reused: false, in_flight: None, _busy: None, _permit: permit });
        }
        let busy = {
            let ttl = u.ttl.unwrap_or(DEFAULT_IDLE);
            let mut idle = self.raw_shard().lock().expect("pool");
            let slot = match idle.get_mut(u.url.as_str()) {
                Some(s) => s,
                None => idle.entry(u.url.clone()).or_default(),
            };
            let busy = slot.busy();
            while allow_reuse && let Some(c) = slot.idle.pop_back() {
                // An idle origin connection must have nothing to say: EOF or stray bytes
                // mean it is closing (tokio answers from its readiness, usually without a
                // system call).
                let mut probe = [0u8; 1];
                let alive = matches!(c.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
                if alive && c.since.elapsed() < ttl {
                    return Ok(RawConn { stream: c.stream, reused: true, in_flight: None, _busy: Some(busy), _permit: permit });
                }
            }
            busy
        };
        let stream = Box::pin(connect_tcp(u)).await?;
        Ok(RawConn { stream, reused: false, in_flight: None, _busy: Some(busy), _permit: permit })
    }

    /// Return a plain connection whose exchange completed cleanly.
    pub fn checkin_raw(&self, c: RawConn, u: &Upstream) {
        if u.disable_reuse {
            return;
        }
        let mut idle = self.raw_shard().lock().expect("pool");
        let slot = match idle.get_mut(u.url.as_str()) {
            Some(s) => s,
            None => idle.entry(u.url.clone()).or_default(),
        };
        slot.keep(RawIdle { stream: c.stream, since: Instant::now() }, u.ttl.unwrap_or(DEFAULT_IDLE));
    }

    /// A pooled connection if one is alive, else a new one.
    pub async fn checkout(&self, u: &Upstream, allow_reuse: bool) -> Result<Conn, UpstreamError> {
        let key = Key { worker: crate::server::worker_index(), ..Self::key(u) };
        let permit = self.permit(u).await?;
        let mut busy = None;
        if !u.disable_reuse {
            let ttl = u.ttl.unwrap_or(DEFAULT_IDLE);
            let mut idle = self.idle.lock().expect("pool");
            let slot = match idle.get_mut(&key) {
                Some(s) => s,
                None => idle.entry(key.clone()).or_default(),
            };
            let b = slot.busy();
            while allow_reuse && let Some(c) = slot.idle.pop_back() {
                if c.since.elapsed() < ttl && !c.sender.is_closed() && c.sender.is_ready() {
                    c.state.expect_read.store(false, Ordering::Release);
                    return Ok(Conn { sender: c.sender, state: c.state, reused: true, in_flight: None, key, _busy: Some(b), _permit: permit });
                }
            }
            busy = Some(b);
        }
        // Boxed: connecting (resolve, connect, handshake) is a large future and the rare path;
        // inline it would enlarge every request's future, which hyper keeps per connection.
        let (sender, state) = Box::pin(connect(u)).await?;
        Ok(Conn { sender, state, reused: false, in_flight: None, key, _busy: busy, _permit: permit })
    }

    /// Return a connection whose exchange completed cleanly.
    pub fn checkin(&self, c: Conn, u: &Upstream) {
        if u.disable_reuse || c.sender.is_closed() || c.state.answered_early.load(Ordering::Acquire) {
            return;
        }
        c.state.expect_read.store(false, Ordering::Release);
        let mut idle = self.idle.lock().expect("pool");
        // A hyper connection keeps its task and buffers while idle, so only as many are kept
        // as the demand asks for (see `Pool`).
        idle.entry(c.key).or_default().keep(Idle { sender: c.sender, state: c.state, since: Instant::now() }, u.ttl.unwrap_or(DEFAULT_IDLE));
    }

    /// Traffic paused (`server::give_back_memory`): every origin's idle connections past their
    /// lifetime or above the minimum are closed, so a burst's connections do not stay for good.
    ///
    /// A plain connection of the HTTP/1 engine costs a socket; a pooled hyper connection (the
    /// HTTP/2 path) also keeps its task and buffers, and the few kept after a burst of hundreds
    /// hold on to heap pages scattered by the rest (measured: 128 of them kept 8 MiB resident
    /// after `h2load`). So at a pause only [`IDLE_AFTER_PAUSE`] of those stay per worker.
    pub fn sweep(&self) {
        for slot in self.idle.lock().expect("pool").values_mut() {
            slot.sweep(IDLE_AFTER_PAUSE);
        }
        for shard in &self.raw_idle {
            for slot in shard.lock().expect("pool").values_mut() {
                slot.sweep(IDLE_MIN);
            }
        }
    }

    /// Idle connections kept for `u` on the calling worker (HTTP/1 engine, hyper path).
    #[cfg(test)]
    pub(crate) fn idle_counts(&self, u: &Upstream) -> (usize, usize) {
        let raw = self.raw_shard().lock().expect("pool").get(u.url.as_str()).map_or(0, |s| s.idle.len());
        let key = Key { worker: crate::server::worker_index(), ..Self::key(u) };
        let hyper = self.idle.lock().expect("pool").get(&key).map_or(0, |s| s.idle.len());
        (raw, hyper)
    }
}

/// Resolve and connect within `connect_timeout`.
pub(crate) async fn connect_tcp(u: &Upstream) -> Result<TcpStream, UpstreamError> {
    let target = format!("{}:{}", u.host.trim_start_matches('[').trim_end_matches(']'), u.port);
    let fut = async {
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(&target).await.map_err(|e| UpstreamError::Resolve(target.clone(), e))?.collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no addresses");
        for a in addrs {
            let sock = if a.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(|e| UpstreamError::Connect(target.clone(), e))?;
            if u.tcp_keepalive {
                let _ = sock.set_keepalive(true);
            }
            match sock.connect(a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(UpstreamError::Connect(target.clone(), last))
    };
    let stream = match tokio::time::timeout(u.connect_timeout, fut).await {
        Ok(r) => r?,
        Err(_) => return Err(UpstreamError::ConnectTimeout(target, u.connect_timeout)),
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn connect(u: &Upstream) -> Result<(http1::SendRequest<ProxyBody>, Arc<ConnState>), UpstreamError> {
    let target = format!("{}:{}", u.host.trim_start_matches('[').trim_end_matches(']'), u.port);
    let stream = connect_tcp(u).await?;
    let state = Arc::new(ConnState { expect_read: AtomicBool::new(false), timeout: u.timeout, answered_early: AtomicBool::new(false) });
    let io = TimedIo { inner: stream, state: state.clone(), read_timer: LazyTimer::default(), write_timer: LazyTimer::default(), discard_writes: false };
    let (sender, conn) = http1::Builder::new()
        .preserve_header_case(false)
        .max_buf_size(256 * 1024)
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| UpstreamError::Protocol(target.clone(), e))?;
    tokio::spawn(async move {
        // `with_upgrades` so a 101 hands the origin connection over for a WebSocket tunnel.
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("origin connection ended: {e}");
        }
    });
    Ok((sender, state))
}

impl Conn {
    /// Send a request. On a reused connection that turns out dead before the request was
    /// written, hand the request back so the caller can retry on a fresh connection.
    pub async fn send(&mut self, req: Request<ProxyBody>) -> Result<Response<Incoming>, (UpstreamError, Option<Request<ProxyBody>>)> {
        // Built only on failure: a formatted string per request showed in profiles.
        let target = || format!("{}:{}", self.key.host, self.key.port);
        if self.sender.ready().await.is_err() {
            return Err((UpstreamError::Closed(target()), Some(req)));
        }
        match self.sender.try_send_request(req).await {
            Ok(r) => Ok(r),
            Err(mut e) => {
                let back = e.take_message();
                let err = e.into_error();
                let timed_out =
                    std::error::Error::source(&err).and_then(|s| s.downcast_ref::<io::Error>()).is_some_and(|io| io.kind() == io::ErrorKind::TimedOut);
                if timed_out {
                    return Err((UpstreamError::Timeout(target(), self.state.timeout), back));
                }
                Err((UpstreamError::Protocol(target(), err), back))
            }
        }
    }
}

/// Wraps the request body sent upstream: when it ends, reads from the origin are expected,
/// so the origin's silence starts counting against `timeout`.
pub struct SignalEnd<B> {
    pub inner: B,
    pub state: Arc<ConnState>,
}

impl<B: Body<Data = Bytes> + Unpin> Body for SignalEnd<B> {
    type Data = Bytes;
    type Error = B::Error;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) || (matches!(r, Poll::Ready(Some(Ok(_)))) && self.inner.is_end_stream()) {
            self.state.expect_read.store(true, Ordering::Release);
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Aging(Instant);
    impl Aged for Aging {
        fn since(&self) -> Instant {
            self.0
        }
    }

    #[test]
    fn idle_connections_kept_follow_the_connections_in_use() {
        let mut slot = Slot::<Aging>::default();
        let ttl = Duration::from_secs(60);
        // Never more than IDLE_MIN in use: IDLE_MIN are kept, the oldest go first.
        drop(slot.busy());
        for _ in 0..IDLE_MIN + 10 {
            slot.keep(Aging(Instant::now()), ttl);
        }
        assert_eq!(slot.idle.len(), IDLE_MIN);
        // 300 in use at once, all coming back in one batch: all kept, so the next 300 requests
        // find one each.
        let busy: Vec<Busy> = (0..300).map(|_| slot.busy()).collect();
        for b in busy {
            slot.keep(Aging(Instant::now()), ttl);
            drop(b);
        }
        assert_eq!(slot.idle.len(), 300);
        // Never more than IDLE_MAX, however many are in use.
        let more: Vec<Busy> = (0..IDLE_MAX + 100).map(|_| slot.busy()).collect();
        for _ in 0..IDLE_MAX + 50 {
            slot.keep(Aging(Instant::now()), ttl);
        }
        assert_eq!(slot.idle.len(), IDLE_MAX);
        drop(more);
        assert_eq!(slot.busy.load(Ordering::Relaxed), 0);
        // Traffic paused: back to the minimum, the newest kept.
        slot.sweep(IDLE_MIN);
        assert_eq!(slot.idle.len(), IDLE_MIN);
        slot.sweep(IDLE_AFTER_PAUSE);
        assert_eq!(slot.idle.len(), IDLE_AFTER_PAUSE);
        assert_eq!(slot.peak, 0);
    }

    #[test]
    fn a_sweep_keeps_what_is_in_use_now_and_closes_the_stale() {
        let mut slot = Slot::<Aging>::default();
        let busy: Vec<Busy> = (0..100).map(|_| slot.busy()).collect();
        let old = Instant::now() - Duration::from_secs(120);
        for _ in 0..10 {
            slot.keep(Aging(old), Duration::from_secs(600));
        }
        for _ in 0..90 {
            slot.keep(Aging(Instant::now()), Duration::from_secs(60));
        }
        slot.sweep(IDLE_MIN);
        assert_eq!(slot.idle.len(), 90, "the 10 past their lifetime are closed, the rest are within what is in use");
        drop(busy);
    }

    #[test]
    fn idle_connections_past_their_lifetime_are_closed_as_others_come_back() {
        let mut slot = Slot::<Aging>::default();
        let old = Instant::now() - Duration::from_secs(120);
        slot.keep(Aging(old), Duration::from_secs(600));
        slot.keep(Aging(old), Duration::from_secs(600));
        slot.keep(Aging(Instant::now()), Duration::from_secs(60));
        slot.keep(Aging(Instant::now()), Duration::from_secs(60));
        assert_eq!(slot.idle.len(), 2, "one stale connection closed per connection returned");
        assert!(slot.idle.iter().all(|c| c.0.elapsed() < Duration::from_secs(60)));
    }

    fn upstream(port: u16) -> Upstream {
        Upstream {
            url: format!("http://127.0.0.1:{port}/"),
            host: "127.0.0.1".into(),
            port,
            path: String::new(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
            retry: Duration::from_secs(60),
            tcp_keepalive: false,
            disable_reuse: false,
            ttl: None,
            max: 0,
            upgrade: None,
            authority: Upstream::authority_of("127.0.0.1", port).unwrap(),
        }
    }

    /// 300 exchanges at once, then 300 more: the second 300 reuse the first's connections
    /// (a fixed cap of 64 would have closed 236 of them and opened 236 new ones); when traffic
    /// pauses, the minimum stays.
    #[tokio::test]
    async fn a_burst_above_the_minimum_reuses_its_connections() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(s);
            }
        });
        let pool = Pool::new();
        let u = upstream(port);
        for round in 0..2 {
            let mut conns = Vec::new();
            for _ in 0..300 {
                conns.push(pool.checkout_raw(&u, true).await.unwrap());
            }
            assert_eq!(conns.iter().filter(|c| c.reused).count(), if round == 0 { 0 } else { 300 });
            for c in conns {
                pool.checkin_raw(c, &u);
            }
            assert_eq!(pool.idle_counts(&u).0, 300);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 300);
        pool.sweep();
        assert_eq!(pool.idle_counts(&u).0, IDLE_MIN);
    }
}
