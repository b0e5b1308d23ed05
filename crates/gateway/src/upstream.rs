//! Upstream connections: connect with a deadline, a keep-alive pool per origin, and Apache's
//! per-read/per-write `timeout` (not a whole-response deadline, so a multi-GB push that keeps
//! moving never times out).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
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
}

/// A TCP stream that fails a read or write that waits longer than `timeout`.
pub struct TimedIo {
    inner: TcpStream,
    state: Arc<ConnState>,
    read_timer: LazyTimer,
    write_timer: LazyTimer,
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
    fn timed_write(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match r {
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

impl AsyncWrite for TimedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, b);
        self.timed_write(cx, r)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.timed_write(cx, r)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
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
#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<Key, Vec<Idle>>>,
    /// Connections of the HTTP/1 engine (`h1`): plain sockets, keyed by the origin URL, one
    /// table per gateway worker thread: a socket is used by the thread whose runtime polls it.
    raw_idle: [Mutex<HashMap<String, Vec<RawIdle>>>; RAW_SHARDS],
    limits: Mutex<HashMap<Key, Arc<Semaphore>>>,
}

struct RawIdle {
    stream: TcpStream,
    since: Instant,
}

/// An origin connection of the HTTP/1 engine, checked out for one exchange.
pub struct RawConn {
    pub stream: TcpStream,
    pub reused: bool,
    _permit: Option<OwnedSemaphorePermit>,
}

/// A connection checked out for one exchange.
pub struct Conn {
    sender: http1::SendRequest<ProxyBody>,
    pub state: Arc<ConnState>,
    pub reused: bool,
    key: Key,
    _permit: Option<OwnedSemaphorePermit>,
}

const DEFAULT_IDLE: Duration = Duration::from_secs(60);
const RAW_SHARDS: usize = 16;

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

    fn raw_shard(&self) -> &Mutex<HashMap<String, Vec<RawIdle>>> {
        &self.raw_idle[crate::server::worker_index() % RAW_SHARDS]
    }

    /// A pooled plain connection if one is alive, else a new one (HTTP/1 engine).
    pub async fn checkout_raw(&self, u: &Upstream, allow_reuse: bool) -> Result<RawConn, UpstreamError> {
        let permit = self.permit(u).await?;
        if allow_reuse && !u.disable_reuse {
            let ttl = u.ttl.unwrap_or(DEFAULT_IDLE);
            let mut idle = self.raw_shard().lock().expect("pool");
            if let Some(list) = idle.get_mut(u.url.as_str()) {
                while let Some(c) = list.pop() {
                    // An idle origin connection must have nothing to say: EOF or stray bytes
                    // mean it is closing (tokio answers from its readiness, usually without a
                    // system call).
                    let mut probe = [0u8; 1];
                    let alive = matches!(c.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
                    if alive && c.since.elapsed() < ttl {
                        return Ok(RawConn { stream: c.stream, reused: true, _permit: permit });
                    }
                }
            }
        }
        let stream = Box::pin(connect_tcp(u)).await?;
        Ok(RawConn { stream, reused: false, _permit: permit })
    }

    /// Return a plain connection whose exchange completed cleanly.
    pub fn checkin_raw(&self, c: RawConn, u: &Upstream) {
        if u.disable_reuse {
            return;
        }
        let mut idle = self.raw_shard().lock().expect("pool");
        let list = match idle.get_mut(u.url.as_str()) {
            Some(l) => l,
            None => idle.entry(u.url.clone()).or_default(),
        };
        if list.len() >= 256 {
            list.remove(0);
        }
        list.push(RawIdle { stream: c.stream, since: Instant::now() });
    }

    /// A pooled connection if one is alive, else a new one.
    pub async fn checkout(&self, u: &Upstream, allow_reuse: bool) -> Result<Conn, UpstreamError> {
        let key = Key { worker: crate::server::worker_index(), ..Self::key(u) };
        let permit = self.permit(u).await?;
        if allow_reuse && !u.disable_reuse {
            let ttl = u.ttl.unwrap_or(DEFAULT_IDLE);
            let mut idle = self.idle.lock().expect("pool");
            if let Some(list) = idle.get_mut(&key) {
                while let Some(c) = list.pop() {
                    if c.since.elapsed() < ttl && !c.sender.is_closed() && c.sender.is_ready() {
                        c.state.expect_read.store(false, Ordering::Release);
                        return Ok(Conn { sender: c.sender, state: c.state, reused: true, key, _permit: permit });
                    }
                }
            }
        }
        // Boxed: connecting (resolve, connect, handshake) is a large future and the rare path;
        // inline it would enlarge every request's future, which hyper keeps per connection.
        let (sender, state) = Box::pin(connect(u)).await?;
        Ok(Conn { sender, state, reused: false, key, _permit: permit })
    }

    /// Return a connection whose exchange completed cleanly.
    pub fn checkin(&self, c: Conn, u: &Upstream) {
        if u.disable_reuse || c.sender.is_closed() {
            return;
        }
        c.state.expect_read.store(false, Ordering::Release);
        let mut idle = self.idle.lock().expect("pool");
        let list = idle.entry(c.key).or_default();
        // Bound the idle list; the oldest go first. A hyper connection keeps its task and
        // buffers while idle (~40 KiB), so fewer are kept than plain ones (nginx's usual
        // `keepalive 64`).
        if list.len() >= 64 {
            list.remove(0);
        }
        list.push(Idle { sender: c.sender, state: c.state, since: Instant::now() });
    }
}

/// Resolve and connect within `connect_timeout`.
async fn connect_tcp(u: &Upstream) -> Result<TcpStream, UpstreamError> {
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
    let state = Arc::new(ConnState { expect_read: AtomicBool::new(false), timeout: u.timeout });
    let io = TimedIo { inner: stream, state: state.clone(), read_timer: LazyTimer::default(), write_timer: LazyTimer::default() };
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
