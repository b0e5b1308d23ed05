//! The request path through the gateway: validate, pick the virtual server and route, check
//! access, forward with streaming bodies, rewrite the response. HTTP status for every failure
//! is decided here, in `error_status`, and nowhere else.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;

use crate::balancer::{Balancers, Outcome, Picked};
use crate::config::{GatewayConfig, Upstream, VirtualServer};
use crate::forward::{self, RequestFacts, RequestRules};
use crate::guard::{ConnShared, Verdict};
use crate::log::{AccessLog, Entry};
use crate::metrics::Metrics;
use crate::reqtimeout::{BODY_TOO_SLOW, RatedBody};
use crate::rewrite::{self, PublicBase};
use crate::routing::{self, PathError};
use crate::upstream::{BoxError, Conn, Pool, ProxyBody, SignalEnd, UpstreamError};
use trove_http::linger::{HoldEnd, Linger};

/// Everything a request needs; swapped whole on reload.
pub struct Shared {
    pub config: GatewayConfig,
    pub pool: Arc<Pool>,
    pub log: Arc<AccessLog>,
    pub metrics: Arc<Metrics>,
    /// Idle keep-alive connections of the engine, waiting for their next request.
    pub(crate) parked: Arc<crate::parked::Parked>,
    /// The name used for X-Forwarded-Server and Via when no ServerName is set.
    pub hostname: String,
    /// WebSocket and other tunnels open now: they outlive the request that opened them, so
    /// draining waits for them too (kept across reloads).
    pub tunnels: Arc<Tunnels>,
    /// The balanced routes' nodes: which to choose, which are up (built with each config, the
    /// nodes' state kept across reloads).
    pub balancers: crate::balancer::Balancers,
}

/// Tunnels open now, for draining.
#[derive(Default)]
pub struct Tunnels {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

impl Tunnels {
    pub fn open(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Resolves once no tunnel is open.
    pub async fn closed(&self) {
        loop {
            let notified = self.idle.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Counts one tunnel while it lives.
struct TunnelGuard(Arc<Tunnels>);

impl TunnelGuard {
    fn new(t: &Arc<Tunnels>) -> Self {
        t.count.fetch_add(1, Ordering::AcqRel);
        TunnelGuard(t.clone())
    }
}

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Copies both ways until both sides have ended, or nothing has moved either way for `idle`
/// (the route's `timeout`, as mod_proxy_wstunnel uses `ProxyTimeout` for an idle tunnel): a
/// tunnel that is forgotten at both ends does not hold its connections for ever. An end seen on
/// one side is passed on as a half-close, as `copy_bidirectional` does.
async fn tunnel<D, U>(down: D, up: U, idle: std::time::Duration)
where
    D: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (mut dr, mut dw) = tokio::io::split(down);
    let (mut ur, mut uw) = tokio::io::split(up);
    let (mut db, mut ub) = (vec![0u8; 16 << 10], vec![0u8; 16 << 10]);
    let (mut down_open, mut up_open) = (true, true);
    while down_open || up_open {
        tokio::select! {
            r = dr.read(&mut db), if down_open => match r {
                Ok(0) | Err(_) => {
                    down_open = false;
                    let _ = uw.shutdown().await;
                }
                Ok(n) => if uw.write_all(&db[..n]).await.is_err() { return },
            },
            r = ur.read(&mut ub), if up_open => match r {
                Ok(0) | Err(_) => {
                    up_open = false;
                    let _ = dw.shutdown().await;
                }
                Ok(n) => if dw.write_all(&ub[..n]).await.is_err() { return },
            },
            _ = tokio::time::sleep(idle) => {
                tracing::debug!(?idle, "tunnel idle; closing it");
                return;
            }
        }
    }
}

/// Facts about the downstream connection a request arrived on.
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
    pub shared: Arc<ConnShared>,
}

/// Requests whose whole chunked body fits are sent with Content-Length (as Apache does for
/// bodies up to 16 KiB), so a malformed small chunked body never reaches the origin.
pub(crate) const PREBUFFER: usize = 16 * 1024;

/// A failure on the proxy path, with what was at fault.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The downstream sent something we refuse (400, 404, 405, 431, 501…).
    Downstream(StatusCode, &'static str),
    Denied,
    NoRoute,
    /// Every node of the route's balancer is down, draining or disabled (its name).
    NoNode(String),
    Upstream(UpstreamError),
}

/// The one place that maps failures to status codes (see docs/gateway.md for Apache's).
pub(crate) fn error_status(f: &Failure) -> StatusCode {
    match f {
        Failure::Downstream(s, _) => *s,
        Failure::Denied => StatusCode::FORBIDDEN,
        Failure::NoRoute => StatusCode::NOT_FOUND,
        // Apache: "AH01170: balancer://…: All workers are in error state", a 503.
        Failure::NoNode(_) => StatusCode::SERVICE_UNAVAILABLE,
        Failure::Upstream(e) => match e {
            // Apache: DNS failure is a 500 "Proxy Error".
            UpstreamError::Resolve(..) => StatusCode::INTERNAL_SERVER_ERROR,
            UpstreamError::Connect(..) | UpstreamError::ConnectTimeout(..) | UpstreamError::PoolExhausted(..) => StatusCode::SERVICE_UNAVAILABLE,
            // Apache answers 502 here; RFC 9110 §15.6.5 says 504, as nginx and Caddy do.
            UpstreamError::Timeout(..) => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::Closed(..) | UpstreamError::Protocol(..) | UpstreamError::Invalid(..) | UpstreamError::Io(..) => StatusCode::BAD_GATEWAY,
        },
    }
}

fn error_page(status: StatusCode, detail: Option<&str>) -> Bytes {
    let reason = status.canonical_reason().unwrap_or("Error");
    let what = match status.as_u16() {
        _ if detail.is_some() => detail.unwrap_or_default(),
        502 => "The proxy server received an invalid response from an upstream server.",
        503 => "The server is temporarily unable to service your request.",
        504 => "The upstream server did not answer in time.",
        403 => "You don't have permission to access this resource.",
        404 => "The requested URL was not found on this server.",
        400 => "Your browser sent a request that this server could not understand.",
        _ => reason,
    };
    Bytes::from(format!(
        "<!DOCTYPE html>\n<html><head><title>{} {reason}</title></head><body>\n<h1>{reason}</h1>\n<p>{what}</p>\n</body></html>\n",
        status.as_u16()
    ))
}

fn boxed<B>(b: B) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    b.map_err(Into::into).boxed_unsync()
}

/// Per-request bookkeeping carried into the response body so the access log line and metrics
/// are written when the body is done, with the bytes actually sent.
struct Done {
    entry: Entry,
    log: Arc<AccessLog>,
    metrics: Arc<Metrics>,
    conn_shared: Arc<ConnShared>,
    started: Instant,
    upstream_return: Option<(Conn, Upstream, Arc<Pool>)>,
}

/// The response body: counts bytes, and when finished logs, records metrics and returns the
/// origin connection to the pool.
pub struct Tracked {
    inner: ProxyBody,
    bytes: u64,
    ended: bool,
    done: Option<Done>,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    self.bytes += d.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.ended = true;
                }
            }
            Poll::Ready(None) => self.ended = true,
            _ => {}
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

impl Drop for Tracked {
    fn drop(&mut self) {
        let ended = self.ended || self.inner.is_end_stream();
        if let Some(mut d) = self.done.take() {
            d.entry.bytes = self.bytes;
            d.entry.elapsed = d.started.elapsed();
            d.metrics.record(&d.entry);
            d.log.write(&d.entry);
            d.conn_shared.in_flight.fetch_sub(1, Ordering::AcqRel);
            if let Some((conn, u, pool)) = d.upstream_return.take()
                && ended
            {
                pool.checkin(conn, &u);
            }
        }
    }
}

/// A request body whose first bytes were read ahead (see `PREBUFFER`).
struct Prefixed {
    prefix: Option<Bytes>,
    rest: RatedBody<Linger>,
}

impl Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(p) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }
}

/// Choose the virtual server for a request: by local address, then by Host (Apache's
/// name-based virtual hosting); the first candidate is the default.
pub fn select_server<'a>(cfg: &'a GatewayConfig, local: SocketAddr, host: Option<&str>) -> &'a VirtualServer {
    // Allocation-free: this runs on every request.
    let matches_addr = |v: &VirtualServer| v.addrs.iter().any(|a| a.ip.is_none_or(|ip| ip == local.ip()) && a.port.is_none_or(|p| p == local.port()));
    let by_addr = cfg.servers.iter().any(matches_addr);
    let candidates = || cfg.servers.iter().filter(move |v| if by_addr { matches_addr(v) } else { v.addrs.is_empty() });
    if let Some(h) = host {
        let name = strip_port(h).as_bytes();
        // `configured == name.to_ascii_lowercase()`, without making the lower-case copy.
        let is_lower_of =
            |configured: &[u8], name: &[u8]| configured.len() == name.len() && configured.iter().zip(name).all(|(c, n)| *c == n.to_ascii_lowercase());
        if let Some(v) = candidates().find(|v| {
            v.server_name.as_deref().is_some_and(|n| is_lower_of(n.as_bytes(), name))
                || v.aliases.iter().any(|a| {
                    is_lower_of(a.as_bytes(), name)
                        || (a.starts_with("*.") && name.len() >= a.len() - 1 && is_lower_of(&a.as_bytes()[1..], &name[name.len() - (a.len() - 1)..]))
                })
        }) {
            return v;
        }
    }
    candidates().next().unwrap_or_else(|| cfg.servers.last().expect("at least one server"))
}

fn strip_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h.split_once(']').map(|(a, _)| &h[..a.len() + 1]).unwrap_or(h);
    }
    h.rsplit_once(':').map(|(a, p)| if p.bytes().all(|b| b.is_ascii_digit()) { a } else { h }).unwrap_or(h)
}

/// RFC 9110 §7.2 host = uri-host [ ":" port ]; anything else is a 400.
fn valid_host(h: &str) -> bool {
    !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:[]~!$&'()*+,;=%".contains(&b)) && !h.starts_with(':')
}

fn failure_response(f: &Failure, close: bool) -> Response<ProxyBody> {
    let (parts, body) = failure_parts(f, close);
    Response::from_parts(parts, boxed(Full::new(body)))
}

/// The gateway's own answer for a failure: its status, and an Apache-like error page.
pub(crate) fn failure_parts(f: &Failure, close: bool) -> (http::response::Parts, Bytes) {
    let detail = match f {
        Failure::NoNode(_) => Some("No server node is available to answer: every node is down or being drained. Please try again shortly."),
        _ => None,
    };
    local_parts_with(error_status(f), detail, close)
}

/// The gateway's own answer for a failure: Apache-like error page.
pub(crate) fn local_parts(status: StatusCode, close: bool) -> (http::response::Parts, Bytes) {
    local_parts_with(status, None, close)
}

fn local_parts_with(status: StatusCode, detail: Option<&str>, close: bool) -> (http::response::Parts, Bytes) {
    let body = error_page(status, detail);
    let mut r = Response::new(());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    if close {
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r.headers_mut().insert(header::SERVER, HeaderValue::from_static("trove"));
    if status == StatusCode::METHOD_NOT_ALLOWED {
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"));
    }
    (r.into_parts().0, body)
}

/// Serve one downstream request.
pub async fn handle(shared: Arc<Shared>, conn: Arc<ConnInfo>, req: Request<Incoming>) -> Response<Tracked> {
    let (mut req, body_in) = req.into_parts();
    // Whatever path drops the body unread (a local answer, an origin's early one), an HTTP/2
    // stream is not reset under a downstream still sending (see `trove_http::linger`).
    let body_in = Linger::new(body_in, req.version == Version::HTTP_2);
    let body_over = body_in.over();
    let started = Instant::now();
    conn.shared.in_flight.fetch_add(1, Ordering::AcqRel);
    let served = conn.shared.served.fetch_add(1, Ordering::AcqRel) + 1;
    let cfg = &shared.config;
    let is_h2 = req.version == Version::HTTP_2;
    let host_hdr: Option<HeaderValue> =
        req.headers.get(header::HOST).cloned().or_else(|| if is_h2 { req.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()) } else { None });
    let vhost = select_server(cfg, conn.local, host_hdr.as_ref().and_then(|h| h.to_str().ok()));
    let server_name = vhost.server_name.clone().unwrap_or_else(|| shared.hostname.clone());
    let mut entry = Entry::start(&shared.log, &req, conn.peer.ip(), conn.local.port(), &server_name, SystemTime::now());

    let (mut resp, upstream_return, close) = match proxy(&shared, &conn, vhost, &mut req, body_in, host_hdr.as_ref(), &server_name, is_h2, &mut entry).await {
        Ok((resp, ret)) => (resp, ret, false),
        Err(f) => {
            log_failure(&f, conn.peer, &req.uri);
            let close = matches!(f, Failure::Downstream(..));
            (failure_response(&f, close), None, close)
        }
    };
    // HTTP/1 reaches hyper only in what the engine hands over: a request that may open a
    // tunnel (`Upgrade` or CONNECT). The guard stops inspecting after it, so when no tunnel
    // opened (RFC 9110 §7.8 lets an origin ignore `Upgrade`), the connection ends here rather
    // than carry requests whose framing nothing checked.
    let close = !is_h2 && (must_close(cfg, close, served) || resp.status() != StatusCode::SWITCHING_PROTOCOLS);
    final_headers(resp.headers_mut(), vhost, conn.tls, close);
    entry.finish_headers(&shared.log, &resp);
    let (parts, mut body) = resp.into_parts();
    if is_h2 && trove_http::linger::holds_end(parts.status) && !body_over.is_over() {
        body = boxed(HoldEnd::new(body, body_over));
    }
    let done = Done { entry, log: shared.log.clone(), metrics: shared.metrics.clone(), conn_shared: conn.shared.clone(), started, upstream_return };
    Response::from_parts(parts, Tracked { inner: body, bytes: 0, ended: false, done: Some(done) })
}

/// The error log line for a failed request.
pub(crate) fn log_failure(f: &Failure, peer: SocketAddr, uri: &Uri) {
    match f {
        Failure::Upstream(e) => tracing::error!(%peer, %uri, "proxy error: {e}"),
        Failure::Denied => tracing::error!(%peer, %uri, "AH01797: client denied by server configuration"),
        Failure::Downstream(_, why) => tracing::info!(%peer, "bad request: {why}"),
        Failure::NoRoute => tracing::debug!(%uri, "no route"),
        Failure::NoNode(b) => tracing::error!(%peer, %uri, "proxy error: no node of {b} is usable (every one is down, draining or disabled)"),
    }
}

/// MaxKeepAliveRequests, KeepAlive Off, or a refused request: close this HTTP/1 connection
/// after the response.
pub(crate) fn must_close(cfg: &GatewayConfig, refused: bool, served: u64) -> bool {
    let max = cfg.limits.max_keep_alive_requests;
    refused || !cfg.limits.keep_alive || (max > 0 && served >= max as u64)
}

/// The last touches on every response: `Connection: close`, the configured header edits, HSTS.
pub(crate) fn final_headers(h: &mut HeaderMap, vhost: &VirtualServer, tls: bool, close: bool) {
    if close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    forward::apply_edits(h, &vhost.response_headers);
    if tls
        && let Some(age) = vhost.hsts
        && let Ok(v) = HeaderValue::from_str(&format!("max-age={age}"))
    {
        h.insert(header::STRICT_TRANSPORT_SECURITY, v);
    }
}

type Proxied = (Response<ProxyBody>, Option<(Conn, Upstream, Arc<Pool>)>);

#[allow(clippy::too_many_arguments)]
async fn proxy(
    shared: &Arc<Shared>,
    conn: &ConnInfo,
    vhost: &VirtualServer,
    req: &mut http::request::Parts,
    body_in: Linger,
    host: Option<&HeaderValue>,
    server_name: &str,
    is_h2: bool,
    entry: &mut Entry,
) -> Result<Proxied, Failure> {
    // 1. Framing, judged on the raw head by the guard (HTTP/1 only).
    if !is_h2 {
        match conn.shared.next_verdict() {
            Some(Verdict::Ok) => {}
            Some(Verdict::Reject(s, why)) => return Err(Failure::Downstream(s, why)),
            None => return Err(Failure::Downstream(StatusCode::BAD_REQUEST, "request framing could not be verified")),
        }
    }
    let fwd = match prepare(conn, vhost, &shared.balancers, req, host, server_name, is_h2, entry)? {
        Prepared::Local(parts, body) => return Ok((Response::from_parts(parts, boxed(Full::new(body))), None)),
        Prepared::Forward(f) => f,
    };
    let Forward { up, mut node, mut headers, target, wants_upgrade, scheme } = fwd;
    let down_upgrade = if wants_upgrade { req.extensions.remove::<hyper::upgrade::OnUpgrade>() } else { None };
    if is_h2 {
        // An h2 request carries no Content-Length necessarily; let hyper frame it.
        headers.remove(header::TRANSFER_ENCODING);
    }

    // 7. Body: stream, except small chunked bodies which are sent with a length. Every read of
    // it is under the body deadline (mod_reqtimeout `body=`); `expired` tells a body cut for
    // its rate (408) from an origin's failure. Bodyless requests allocate nothing for it.
    let method = req.method.clone();
    let has_length = headers.contains_key(header::CONTENT_LENGTH);
    let mut expired: Option<Arc<AtomicBool>> = None;
    let too_slow = |expired: &Option<Arc<AtomicBool>>| {
        expired.as_ref().is_some_and(|e| e.load(Ordering::Acquire)).then_some(Failure::Downstream(StatusCode::REQUEST_TIMEOUT, BODY_TOO_SLOW))
    };
    let body: BodyPlan = if body_in.is_end_stream() {
        if !has_length && matches!(method, Method::POST | Method::PUT | Method::PATCH) {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
        BodyPlan::Empty
    } else {
        let flag = expired.insert(Arc::new(AtomicBool::new(false))).clone();
        let body_in = RatedBody::new(body_in, shared.config.limits.body_read, flag);
        if has_length {
            BodyPlan::Stream(Prefixed { prefix: None, rest: body_in })
        } else {
            // Boxed for the same reason as connecting: rare, and large inline.
            Box::pin(prebuffer(body_in, &mut headers))
                .await
                .map_err(|_| too_slow(&expired).unwrap_or(Failure::Downstream(StatusCode::BAD_REQUEST, "malformed request body")))?
        }
    };
    let target_uri: Uri = target.parse().map_err(|_| Failure::Downstream(StatusCode::BAD_REQUEST, "unforwardable path"))?;
    let build = |plan: BodyPlan, c: &Conn, method: Method, uri: Uri, headers: HeaderMap| -> Request<ProxyBody> {
        let state = c.state.clone();
        let body = match plan {
            BodyPlan::Empty => {
                state.expect_read.store(true, Ordering::Release);
                boxed(Empty::<Bytes>::new())
            }
            BodyPlan::Full(b) => boxed(SignalEnd { inner: Full::new(b), state }),
            BodyPlan::Stream(p) => boxed(SignalEnd { inner: p, state }),
        };
        let mut r = Request::new(body);
        *r.method_mut() = method;
        *r.uri_mut() = uri;
        *r.version_mut() = Version::HTTP_11;
        *r.headers_mut() = headers;
        r
    };
    let up_started = Instant::now();
    let mut up = up;
    let mut tried: Vec<usize> = Vec::new();
    // The first attempt sends the body as planned; a later one sends `again`: the request
    // handed back unsent, or a copy of a small idempotent one (`template`).
    let mut plan = Some((body, headers));
    let mut again: Option<Request<ProxyBody>> = None;
    let mut template: Option<(Method, Uri, HeaderMap, Option<Bytes>)> = None;
    let mut reuse = true;
    let (mut resp, conn_up) = loop {
        let mut conn_up = match shared.pool.checkout(up, reuse).await {
            Ok(c) => c,
            Err(e) => {
                // Nothing was sent: another node may take the request.
                if is_connect_failure(&e)
                    && let Some(p) = &node
                {
                    p.group.record(p.index, Outcome::ConnectFailed);
                    if let Some(next) = next_node(&mut node, &mut tried) {
                        up = next;
                        if let Some((_, h)) = plan.as_mut() {
                            set_upstream_host(h, vhost, up);
                        }
                        if let Some(r) = again.as_mut() {
                            set_upstream_host(r.headers_mut(), vhost, up);
                        }
                        reuse = true;
                        continue;
                    }
                }
                return Err(Failure::Upstream(e));
            }
        };
        conn_up.in_flight = node.as_mut().and_then(|p| p.in_flight.take());
        let request = match (plan.take(), again.take()) {
            (Some((body, headers)), _) => {
                // A copy for a retry is kept only where one may be made: after a failure on a
                // reused connection, or on a balancer's other node.
                if (conn_up.reused || node.is_some()) && matches!(body, BodyPlan::Empty | BodyPlan::Full(_)) {
                    template = Some((method.clone(), target_uri.clone(), headers.clone(), body.bytes()));
                }
                build(body, &conn_up, method.clone(), target_uri.clone(), headers)
            }
            (None, Some(r)) => {
                conn_up.state.expect_read.store(true, Ordering::Release);
                let (parts, body) = r.into_parts();
                Request::from_parts(parts, boxed(SignalEnd { inner: body, state: conn_up.state.clone() }))
            }
            (None, None) => unreachable!("every attempt has a request"),
        };
        match conn_up.send(request).await {
            Ok(r) => break (r, conn_up),
            Err((e, back)) => {
                if let Some(f) = too_slow(&expired) {
                    return Err(f);
                }
                // Sent again only when safe: the request never left, or it is idempotent, had
                // no streamed body and failed before any answer.
                let resend = back.or_else(|| {
                    template.as_ref().filter(|(m, ..)| is_idempotent(m)).map(|(m, u, h, b)| {
                        let mut r = Request::new(match b {
                            Some(b) => boxed(Full::new(b.clone())),
                            None => boxed(Empty::<Bytes>::new()),
                        });
                        *r.method_mut() = m.clone();
                        *r.uri_mut() = u.clone();
                        *r.headers_mut() = h.clone();
                        r
                    })
                });
                let Some(mut resend) = resend else {
                    if let Some(p) = &node {
                        p.group.record(p.index, Outcome::Failed);
                    }
                    return Err(Failure::Upstream(e));
                };
                if conn_up.reused {
                    // The origin closed its idle connection as we used it: once more, on a
                    // fresh connection to the same node.
                    tracing::debug!("retrying on a fresh origin connection after: {e}");
                    if let Some(p) = node.as_mut() {
                        p.in_flight = conn_up.in_flight.take();
                    }
                    again = Some(resend);
                    reuse = false;
                    continue;
                }
                if let Some(p) = &node {
                    p.group.record(p.index, Outcome::Failed);
                }
                let Some(next) = next_node(&mut node, &mut tried) else { return Err(Failure::Upstream(e)) };
                up = next;
                set_upstream_host(resend.headers_mut(), vhost, up);
                again = Some(resend);
                reuse = true;
            }
        }
    };
    if let Some(p) = &node {
        p.group.record(p.index, Outcome::Answered);
    }
    shared.metrics.observe_upstream(up_started.elapsed());
    entry.upstream = Some(crate::log::shared(&up.url));

    // 8. The response.
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(down) = down_upgrade {
            let up_upgrade = hyper::upgrade::on(&mut resp);
            let counted = TunnelGuard::new(&shared.tunnels);
            let idle = up.timeout;
            tokio::spawn(async move {
                let _counted = counted;
                match tokio::try_join!(down, up_upgrade) {
                    Ok((d, u)) => tunnel(hyper_util::rt::TokioIo::new(d), hyper_util::rt::TokioIo::new(u), idle).await,
                    Err(e) => tracing::debug!("upgrade failed: {e}"),
                }
            });
            let (parts, _) = resp.into_parts();
            return Ok((Response::from_parts(parts, boxed(Empty::<Bytes>::new())), None));
        }
        return Err(Failure::Upstream(UpstreamError::Closed(format!("{} answered 101 without an upgrade request", up.url))));
    }
    let (mut parts, body) = resp.into_parts();
    origin_response_headers(&mut parts.headers, vhost, host, conn, scheme, wants_upgrade);
    let keep = (parts, conn_up, up.clone(), shared.pool.clone());
    let (parts, conn_up, upc, pool) = keep;
    Ok((Response::from_parts(parts, boxed(body)), Some((conn_up, upc, pool))))
}

/// What `prepare` decided: answer here, or forward to an origin.
pub(crate) enum Prepared<'a> {
    Local(http::response::Parts, Bytes),
    Forward(Forward<'a>),
}

/// A request ready for its origin: the route's upstream, the target, the origin's headers.
pub(crate) struct Forward<'a> {
    pub up: &'a Upstream,
    /// The balancer's node `up` is, for a balanced route.
    pub node: Option<Picked<'a>>,
    pub headers: HeaderMap,
    pub target: String,
    pub wants_upgrade: bool,
    pub scheme: &'static str,
}

/// Steps 2-6 of the proxy path, the same for every protocol and engine: method and target
/// checks, Host, redirect, canonical path and route, access control, the origin's headers.
/// The request's headers are moved into the result.
#[allow(clippy::too_many_arguments)]
pub(crate) fn prepare<'a>(
    conn: &ConnInfo,
    vhost: &'a VirtualServer,
    balancers: &'a Balancers,
    req: &mut http::request::Parts,
    host: Option<&HeaderValue>,
    server_name: &str,
    is_h2: bool,
    entry: &mut Entry,
) -> Result<Prepared<'a>, Failure> {
    // 2. Method and request target. ProxyRequests Off: never a forward proxy.
    if req.method == Method::CONNECT {
        return Err(Failure::Downstream(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not served"));
    }
    let uri = req.uri.clone();
    if !is_h2 && let Some(s) = uri.scheme_str() {
        if !s.eq_ignore_ascii_case("http") && !s.eq_ignore_ascii_case("https") {
            return Err(Failure::Downstream(StatusCode::BAD_REQUEST, "absolute URI with a scheme other than http"));
        }
        if uri.authority().is_none_or(|a| a.host().is_empty()) {
            return Err(Failure::Downstream(StatusCode::BAD_REQUEST, "absolute URI without a host"));
        }
    }
    if let Some(h) = host.and_then(|h| h.to_str().ok()) {
        if !valid_host(h) {
            return Err(Failure::Downstream(StatusCode::BAD_REQUEST, "malformed Host"));
        }
    } else if host.is_some() {
        return Err(Failure::Downstream(StatusCode::BAD_REQUEST, "malformed Host"));
    }
    let raw_path = uri.path();
    if raw_path == "*" {
        if req.method == Method::OPTIONS {
            let mut r = Response::new(());
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH"));
            return Ok(Prepared::Local(r.into_parts().0, Bytes::new()));
        }
        return Err(Failure::Downstream(StatusCode::BAD_REQUEST, "'*' target is only for OPTIONS"));
    }
    // 3. HTTP → HTTPS redirect (Tomcat's redirectPort idea).
    if let Some(base) = &vhost.redirect_https {
        let loc = format!("{base}{}", uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
        let mut r = Response::new(());
        *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
        if let Ok(v) = HeaderValue::from_str(&loc) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        return Ok(Prepared::Local(r.into_parts().0, Bytes::new()));
    }
    // 4. Canonical path and route.
    let decoded = routing::canonical_path(raw_path).map_err(|e| match e {
        PathError::BadRequest => Failure::Downstream(StatusCode::BAD_REQUEST, "invalid URI path"),
        PathError::EncodedSlash => Failure::Downstream(StatusCode::NOT_FOUND, "encoded slash in path"),
    })?;
    let (route, matched) = routing::select(&vhost.routes, &decoded, raw_path).ok_or(Failure::NoRoute)?;
    let Some(up) = &route.upstream else { return Err(Failure::NoRoute) };
    entry.route = Some(crate::log::shared(&route.path));
    // Every node of a balancer has the same path (`config::validate`): one target for all.
    let target = routing::upstream_target(route, &up.path, &decoded, raw_path, matched, uri.query());
    // 5. Access control: the last <Proxy> section matching the origin URL (or, for a
    // balanced route, its balancer:// URL) decides.
    if !vhost.proxy_access.is_empty() {
        let origin_url = format!("http://{}:{}{}", up.host, up.port, target);
        let balancer_url = route.balancer.as_ref().map(|b| b.url.as_str());
        if let Some(sec) = vhost
            .proxy_access
            .iter()
            .rev()
            .find(|s| proxy_section_matches(&s.pattern, &origin_url, up) || balancer_url.is_some_and(|b| b.starts_with(s.pattern.as_str())))
            && !sec.policy.allows(conn.peer.ip())
        {
            return Err(Failure::Denied);
        }
    }
    // The node, for a balanced route.
    let (up, node) = match route.balancer.as_ref().map(|b| (b, balancers.group(b))) {
        Some((b, Some(g))) => match g.pick(&[]) {
            Some(p) => (p.upstream(), Some(p)),
            None => return Err(Failure::NoNode(b.name.clone())),
        },
        _ => (up, None),
    };
    // 6. Headers for the origin.
    let named = forward::connection_tokens(&req.headers).map_err(|_| Failure::Downstream(StatusCode::BAD_REQUEST, "malformed Connection header"))?;
    let wants_upgrade = !is_h2
        && named.iter().any(|t| t == "upgrade")
        && req.headers.get(header::UPGRADE).is_some_and(|u| match up.upgrade.as_deref() {
            Some("any") => true,
            Some(proto) => u.to_str().is_ok_and(|s| s.eq_ignore_ascii_case(proto)),
            None => false,
        });
    // The downstream's headers become the origin's; the request's own copy is not needed again.
    let mut headers: HeaderMap = std::mem::take(&mut req.headers);
    forward::strip_hop_by_hop(&mut headers, &named, wants_upgrade);
    // We answer 100-continue ourselves when the body is first read (hyper does).
    headers.remove(header::EXPECT);
    let scheme = if conn.tls { "https" } else { "http" };
    let facts = RequestFacts { peer: conn.peer.ip(), host, scheme, local_port: conn.local.port(), server_name, upstream_authority: &up.authority };
    let peer = conn.peer.ip();
    let peer = match peer {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(peer),
        v4 => v4,
    };
    let rules = RequestRules {
        downstream_trusted: vhost.trusted_downstream.iter().any(|n| n.contains(&peer)),
        preserve_host: vhost.preserve_host,
        add_forwarded: vhost.add_forwarded,
        add_forwarded_proto: vhost.add_forwarded_proto,
        via: vhost.via,
        edits: &vhost.request_headers,
    };
    forward::apply_request_rules(&mut headers, &facts, &rules);
    Ok(Prepared::Forward(Forward { up, node, headers, target, wants_upgrade, scheme }))
}

/// The next node for a request that failed on its node where sending it again is safe: not
/// one tried already, and not more than the balancer's `max_attempts` retries. `None` for a
/// single origin, or when no node is left.
pub(crate) fn next_node<'a>(node: &mut Option<Picked<'a>>, tried: &mut Vec<usize>) -> Option<&'a Upstream> {
    let p = node.as_ref()?;
    let group = p.group;
    if tried.len() >= group.cfg.max_attempts {
        return None;
    }
    tried.push(p.index);
    let next = group.pick(tried)?;
    group.retried(p.index);
    tracing::warn!("{}: retrying on node {} after node {} failed", group.cfg.name, next.upstream().url, p.upstream().url);
    let up = next.upstream();
    *node = Some(next);
    Some(up)
}

/// The origin's `Host` for another node (unless the downstream's is kept).
pub(crate) fn set_upstream_host(h: &mut HeaderMap, vhost: &VirtualServer, up: &Upstream) {
    if !vhost.preserve_host {
        h.insert(header::HOST, up.authority.clone());
    }
}

/// A failure to reach a node at all: nothing was sent, so another node may take the request.
pub(crate) fn is_connect_failure(e: &UpstreamError) -> bool {
    matches!(e, UpstreamError::Connect(..) | UpstreamError::ConnectTimeout(..) | UpstreamError::Resolve(..))
}

pub(crate) fn is_idempotent(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE)
}

enum BodyPlan {
    Empty,
    Full(Bytes),
    Stream(Prefixed),
}

impl BodyPlan {
    fn bytes(&self) -> Option<Bytes> {
        match self {
            BodyPlan::Full(b) => Some(b.clone()),
            _ => None,
        }
    }
}

async fn prebuffer(mut body: RatedBody<Linger>, headers: &mut HeaderMap) -> Result<BodyPlan, BoxError> {
    let mut buf = BytesMut::new();
    loop {
        match body.frame().await {
            None => {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(buf.len()));
                return Ok(BodyPlan::Full(buf.freeze()));
            }
            Some(Err(e)) => return Err(e),
            Some(Ok(f)) => {
                if let Ok(d) = f.into_data() {
                    buf.extend_from_slice(&d);
                }
                if buf.len() > PREBUFFER {
                    return Ok(BodyPlan::Stream(Prefixed { prefix: Some(buf.freeze()), rest: body }));
                }
            }
        }
    }
}

fn proxy_section_matches(pattern: &str, origin_url: &str, up: &Upstream) -> bool {
    if pattern == "*" {
        return true;
    }
    let p = pattern.strip_prefix("proxy:").unwrap_or(pattern);
    if p.contains(['*', '?']) {
        return crate::config::apache::wildcard_match(p, origin_url);
    }
    // Apache compares against the worker URL as written too (`http://localhost:7990/`).
    origin_url.starts_with(p) || up.url.starts_with(p) || format!("{}{}", up.url.trim_end_matches('/'), "/").starts_with(p)
}

/// The origin's response headers as the downstream gets them: hop-by-hop fields removed,
/// ProxyPassReverse and cookie rewriting applied.
pub(crate) fn origin_response_headers(
    h: &mut HeaderMap,
    vhost: &VirtualServer,
    host: Option<&HeaderValue>,
    conn: &ConnInfo,
    scheme: &str,
    wants_upgrade: bool,
) {
    let resp_named = forward::connection_tokens(h).unwrap_or_default();
    forward::strip_hop_by_hop(h, &resp_named, false);
    if wants_upgrade {
        // The origin refused the upgrade; the guard stopped inspecting, so do not keep the
        // connection.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    rewrite_response_headers(h, vhost, host, conn, scheme);
}

fn rewrite_response_headers(h: &mut HeaderMap, vhost: &VirtualServer, host: Option<&HeaderValue>, conn: &ConnInfo, scheme: &str) {
    let reversible = [header::LOCATION, header::CONTENT_LOCATION, http::HeaderName::from_static("uri")];
    if !vhost.reverse.is_empty() && reversible.iter().any(|n| h.contains_key(n)) {
        // ap_construct_url with UseCanonicalName Off: the downstream Host as sent (a default
        // port dropped); without a Host, the server name. Apache does not add the port the
        // request arrived on when Host carries none, and neither do we.
        let host_s = host.and_then(|h| h.to_str().ok()).unwrap_or("");
        let default_port = if scheme == "https" { 443 } else { 80 };
        let authority = if host_s.is_empty() {
            vhost.server_name.clone().unwrap_or_else(|| conn.local.ip().to_string())
        } else if strip_port(host_s).len() != host_s.len() {
            let port: Option<u16> = host_s[strip_port(host_s).len() + 1..].parse().ok();
            if port == Some(default_port) { strip_port(host_s).to_string() } else { host_s.to_string() }
        } else {
            host_s.to_string()
        };
        let base = PublicBase { scheme, authority: &authority };
        for name in reversible {
            if let Some(v) = h.get(&name).and_then(|v| v.to_str().ok())
                && let Some(new) = rewrite::reverse_map(&vhost.reverse, v, &base)
                && let Ok(nv) = HeaderValue::from_str(&new)
            {
                h.insert(name, nv);
            }
        }
    }
    if !vhost.cookie_paths.is_empty() || !vhost.cookie_domains.is_empty() {
        let cookies: Vec<HeaderValue> = h.get_all(header::SET_COOKIE).iter().cloned().collect();
        if !cookies.is_empty() {
            h.remove(header::SET_COOKIE);
            for c in cookies {
                let out = c
                    .to_str()
                    .ok()
                    .and_then(|s| rewrite::rewrite_cookie(s, &vhost.cookie_paths, &vhost.cookie_domains))
                    .and_then(|s| HeaderValue::from_str(&s).ok())
                    .unwrap_or(c);
                h.append(header::SET_COOKIE, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_for_each_failure() {
        let rows: Vec<(Failure, u16)> = vec![
            (Failure::Downstream(StatusCode::BAD_REQUEST, "x"), 400),
            (Failure::Denied, 403),
            (Failure::NoRoute, 404),
            (Failure::Upstream(UpstreamError::Connect("o".into(), std::io::Error::from(std::io::ErrorKind::ConnectionRefused))), 503),
            (Failure::Upstream(UpstreamError::ConnectTimeout("o".into(), std::time::Duration::from_secs(1))), 503),
            (Failure::Upstream(UpstreamError::Timeout("o".into(), std::time::Duration::from_secs(1))), 504),
            (Failure::Upstream(UpstreamError::Closed("o".into())), 502),
        ];
        for (f, want) in rows {
            assert_eq!(error_status(&f).as_u16(), want, "{f:?}");
        }
    }

    #[test]
    fn host_validation() {
        for ok in ["a", "example.com:8443", "[::1]:80", "127.0.0.1"] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in ["", "a b", "a/b", "a@b", ":80"] {
            assert!(!valid_host(bad), "{bad}");
        }
    }
}
