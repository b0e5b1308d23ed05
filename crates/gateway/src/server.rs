//! The running gateway: bound listeners, per-connection tasks (HTTP/1.1 and HTTP/2, plain or
//! TLS), reload without dropping connections, drain on shutdown, and the admin listener.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{ConnLimits, GatewayConfig};
use crate::guard::{ConnShared, Guarded, ReadTimeouts};
use crate::h1;
use crate::log::AccessLog;
use crate::metrics::Metrics;
use crate::proxy::{self, ConnInfo, Shared};
use crate::upstream::Pool;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen on {addr} (from {origin}): {source} — is another server using the port? pick another in Listen/listen")]
    Bind { addr: SocketAddr, origin: String, source: std::io::Error },
    #[error("{0}")]
    Log(String),
    #[error("listener {0} needs TLS but no certificate was configured for it")]
    NoTls(SocketAddr),
}

/// The live configuration, swapped whole on reload; each request reads the current one.
#[derive(Clone)]
pub struct Current(Arc<RwLock<Arc<Shared>>>);

impl Current {
    pub fn get(&self) -> Arc<Shared> {
        self.0.read().expect("current config").clone()
    }
    /// Apply a new config: routes, servers and logs change; listeners stay as bound, and
    /// connections in progress keep the config they started with.
    pub fn apply(&self, cfg: GatewayConfig) -> Result<(), GatewayError> {
        let old = self.get();
        let log = Arc::new(AccessLog::new(&cfg.log).map_err(GatewayError::Log)?);
        let balancers = crate::balancer::Balancers::build(&cfg, old.balancers.registry());
        let new = Shared {
            balancers,
            config: cfg,
            pool: old.pool.clone(),
            log,
            metrics: old.metrics.clone(),
            parked: old.parked.clone(),
            hostname: old.hostname.clone(),
            tunnels: old.tunnels.clone(),
        };
        *self.0.write().expect("current config") = Arc::new(new);
        Ok(())
    }
}

pub struct Gateway {
    current: Current,
    listeners: Vec<(TcpListener, bool)>,
    admin: Option<TcpListener>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Every connection is a descriptor, two when proxied: raise the soft limit on open files to
/// the hard limit, as Go's runtime does for Caddy (nginx asks for `worker_rlimit_nofile`). A
/// shell's usual soft limit of 1,024 would otherwise refuse connections (`accept failed: Too
/// many open files`) at about 500 proxied at once. Returns the soft limit before and after.
pub fn raise_open_files_limit() -> Option<(libc::rlim_t, libc::rlim_t)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur >= lim.rlim_max {
        return Some((before, before));
    }
    let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
    // SAFETY: setrlimit reads the struct we pass; raising the soft limit up to the hard one is
    // always allowed.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        tracing::warn!(
            "cannot raise the open-files limit from {before}: {}; about {} connections can be proxied at once (raise it with `ulimit -n` or LimitNOFILE= in a systemd unit)",
            std::io::Error::last_os_error(),
            before / 2
        );
        return Some((before, before));
    }
    tracing::info!("open-files limit raised from {before} to {} (the hard limit)", lim.rlim_max);
    Some((before, lim.rlim_max))
}

fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "localhost".into())
}

impl Gateway {
    /// Bind every listener now (so the caller learns ports chosen by the OS with port 0).
    pub async fn bind(cfg: GatewayConfig, tls: Option<Arc<rustls::ServerConfig>>) -> Result<Gateway, GatewayError> {
        raise_open_files_limit();
        let mut listeners = Vec::new();
        for l in &cfg.listeners {
            if l.tls && tls.is_none() {
                return Err(GatewayError::NoTls(l.addr));
            }
            let sock = bind_reuse(l.addr).map_err(|e| GatewayError::Bind { addr: l.addr, origin: l.origin.to_string(), source: e })?;
            listeners.push((sock, l.tls));
        }
        let admin = match cfg.admin_listen {
            Some(a) => Some(bind_reuse(a).map_err(|e| GatewayError::Bind { addr: a, origin: "admin_listen".into(), source: e })?),
            None => None,
        };
        let log = Arc::new(AccessLog::new(&cfg.log).map_err(GatewayError::Log)?);
        let shared = Shared {
            balancers: crate::balancer::Balancers::build(&cfg, Default::default()),
            config: cfg,
            pool: Pool::new(),
            log,
            metrics: Arc::new(Metrics::default()),
            parked: Default::default(),
            hostname: machine_hostname(),
            tunnels: Default::default(),
        };
        Ok(Gateway { current: Current(Arc::new(RwLock::new(Arc::new(shared)))), listeners, admin, tls: tls.map(tokio_rustls::TlsAcceptor::from) })
    }

    /// Addresses actually bound, in config order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter_map(|(l, _)| l.local_addr().ok()).collect()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn current(&self) -> Current {
        self.current.clone()
    }

    /// Serve until `shutdown` resolves, then stop accepting and drain in-flight requests for
    /// up to the config's `drain_timeout`.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let threads = worker_threads();
        let (active, mut mailboxes) = Active::new(threads);
        let active = Arc::new(active);
        let mut tasks = Vec::new();
        // Connections are served by one single-threaded runtime per core, as nginx's workers:
        // a connection, its origin socket and its timers stay on one thread, with no work
        // stealing and no cross-thread wake-ups. Every worker accepts from every listener.
        let mut listeners: Vec<(std::net::TcpListener, bool)> = Vec::new();
        for (l, tls) in self.listeners {
            let addr = l.local_addr().ok();
            match l.into_std() {
                Ok(l) => listeners.push((l, tls)),
                Err(e) => tracing::error!("cannot hand listener {addr:?} to the workers: {e}"),
            }
        }
        let (release_tx, release_rx) = watch::channel(false);
        let mut workers = Vec::new();
        for (n, mailbox) in (0..threads).zip(mailboxes.drain(..)) {
            let mut mine = Vec::new();
            for (l, tls) in &listeners {
                match l.try_clone() {
                    Ok(l) => mine.push((l, *tls)),
                    Err(e) => tracing::error!("cannot share a listener with worker {n}: {e}"),
                }
            }
            let w = Worker {
                n,
                listeners: mine,
                mailbox,
                current: self.current.clone(),
                tls: self.tls.clone(),
                active: active.clone(),
                stop: stop_rx.clone(),
                release: release_rx.clone(),
            };
            match std::thread::Builder::new().name(format!("trove-gw-{n}")).spawn(move || w.run()) {
                Ok(h) => workers.push(h),
                Err(e) => tracing::error!("cannot start gateway worker {n}: {e}"),
            }
        }
        drop(listeners);
        if let Some(admin) = self.admin {
            let current = self.current.clone();
            let mut stop = stop_rx.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let (stream, _) = tokio::select! {
                        a = admin.accept() => match a { Ok(x) => x, Err(_) => continue },
                        _ = stop.changed() => break,
                    };
                    let current = current.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req: Request<Incoming>| {
                            let shared = current.get();
                            async move {
                                let (status, body) = match req.uri().path() {
                                    "/metrics" => (StatusCode::OK, shared.metrics.render() + &crate::metrics::render_balancers(&shared.balancers)),
                                    "/healthz" => (StatusCode::OK, "ok\n".to_string()),
                                    _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
                                };
                                let mut r = Response::new(Full::new(Bytes::from(body)));
                                *r.status_mut() = status;
                                r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; version=0.0.4"));
                                Ok::<_, Infallible>(r)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                    });
                }
            }));
        }
        tasks.push(tokio::spawn(give_back_memory(self.current.clone(), stop_rx.clone())));
        let parked = self.current.get().parked.clone();
        let sweeper = tokio::spawn({
            let parked = parked.clone();
            async move { parked.sweep().await }
        });
        shutdown.await;
        let _ = stop_tx.send(true);
        parked.stop();
        tasks.push(sweeper);
        for t in tasks {
            let _ = t.await;
        }
        let drain = self.current.get().config.drain_timeout;
        let tunnels = self.current.get().tunnels.clone();
        let drained = async {
            loop {
                let notified = active.idle.notified();
                if active.count.load(Ordering::Acquire) == 0 {
                    break;
                }
                notified.await;
            }
            // Tunnels (WebSocket) outlive the connection task that opened them: wait for them too.
            tunnels.closed().await;
        };
        tokio::select! {
            _ = drained => tracing::info!("all connections drained"),
            _ = tokio::time::sleep(drain) => tracing::warn!(tunnels = tunnels.open(), "drain deadline of {drain:?} passed; closing remaining connections and tunnels"),
        }
        // Workers end now; what they still hold (connections past the drain deadline) closes.
        let _ = release_tx.send(true);
        let _ = tokio::task::spawn_blocking(move || workers.into_iter().for_each(|w| drop(w.join()))).await;
        // The access log is written in batches; what is gathered goes out before we return.
        self.current.get().log.flush();
    }
}

/// How many connection-serving threads: one per core, or `TROVE_GATEWAY_THREADS`.
fn worker_threads() -> usize {
    std::env::var("TROVE_GATEWAY_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

thread_local! {
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// This thread's worker number (0 outside the workers): per-worker state is kept apart.
pub(crate) fn worker_index() -> usize {
    WORKER.with(|w| w.get())
}

/// How often each worker's timer ticks (see `Worker::run`).
const TIMER_FLOOR: Duration = Duration::from_millis(250);

/// One connection-serving thread and its single-threaded runtime.
struct Worker {
    n: usize,
    listeners: Vec<(std::net::TcpListener, bool)>,
    /// Connections other workers accepted for this one.
    mailbox: tokio::sync::mpsc::UnboundedReceiver<Arrival>,
    current: Current,
    tls: Option<tokio_rustls::TlsAcceptor>,
    active: Arc<Active>,
    stop: watch::Receiver<bool>,
    /// Set once draining is over: the worker ends, closing what it still holds.
    release: watch::Receiver<bool>,
}

impl Worker {
    fn run(self) {
        WORKER.with(|w| w.set(self.n));
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return tracing::error!("gateway worker {}: cannot start its runtime: {e}", self.n),
        };
        let Worker { listeners, mut mailbox, current, tls, active, stop, mut release, .. } = self;
        rt.block_on(async move {
            let mut loops = Vec::new();
            loops.push(tokio::spawn({
                let (current, active, mut stop) = (current.clone(), active.clone(), stop.clone());
                async move {
                    loop {
                        let a = tokio::select! {
                            a = mailbox.recv() => match a { Some(a) => a, None => break },
                            _ = stop.changed() => break,
                        };
                        match tokio::net::TcpStream::from_std(a.stream) {
                            Ok(stream) => start_connection(stream, a.peer, current.clone(), a.acceptor, &active, &stop),
                            Err(e) => {
                                tracing::error!("gateway worker: cannot take a connection over: {e}");
                                active.dropped(worker_index());
                            }
                        }
                    }
                }
            }));
            // tokio's timer wakes its own thread through the eventfd (a write, and an epoll
            // round for nothing) whenever a timer is set to fire before the earliest one it
            // already holds; with no timer held, that is every request's first timeout after
            // each wait for events. A ticker keeps an earlier timer held at all times, so the
            // per-request timeouts (a second or more) never do.
            loops.push(tokio::spawn({
                let mut stop = stop.clone();
                async move {
                    loop {
                        tokio::select! {
                            _ = tokio::time::sleep(TIMER_FLOOR) => {}
                            _ = stop.changed() => break,
                        }
                    }
                }
            }));
            for (l, is_tls) in listeners {
                match TcpListener::from_std(l) {
                    Ok(l) => loops.push(tokio::spawn(accept_loop(l, current.clone(), if is_tls { tls.clone() } else { None }, active.clone(), stop.clone()))),
                    Err(e) => tracing::error!("gateway worker: cannot use a listener: {e}"),
                }
            }
            for l in loops {
                let _ = l.await;
            }
            let _ = release.wait_for(|r| *r).await;
        });
    }
}

/// Accept connections on one listener until the gateway stops.
async fn accept_loop(
    listener: TcpListener,
    current: Current,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    active: Arc<Active>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            // Another worker took it first.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::error!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let me = worker_index();
        let to = active.pick(me);
        let stream = if to == active.slot(me) { Some(stream) } else { active.pass(stream, peer, &acceptor, to, me) };
        if let Some(stream) = stream {
            start_connection(stream, peer, current.clone(), acceptor.clone(), &active, &stop);
        }
    }
}

/// Serve an accepted connection on the calling worker, counted until it ends.
fn start_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    current: Current,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    active: &Arc<Active>,
    stop: &watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().unwrap_or(peer);
    let stop = stop.clone();
    active.count.fetch_add(1, Ordering::AcqRel);
    let active = active.clone();
    match acceptor {
        None => spawn_plain_h1(stream, peer, local, current, stop, active),
        Some(acceptor) => {
            tokio::spawn(async move {
                serve_tls_connection(stream, peer, local, current, acceptor, stop).await;
                active.release();
            });
        }
    }
}

/// Hand freed heap pages back to the system (glibc's `malloc_trim`) when a burst of requests
/// has just ended: a burst leaves its buffers freed between long-lived connection tasks, where
/// glibc would otherwise keep them resident for good (nginx avoids this with per-request
/// pools). Not while requests flow: trimming holds the allocator's locks, which would show in
/// the latency, and under steady traffic the freed memory is soon used again. The origin
/// connections a burst opened above the pool's minimum are closed first (`Pool::sweep`).
async fn give_back_memory(current: Current, mut stop: watch::Receiver<bool>) {
    const TICK: Duration = Duration::from_millis(250);
    let mut seen = current.get().metrics.activity();
    let mut dirty = false;
    let mut swept = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => return,
        }
        let now = current.get().metrics.activity();
        let busy = now != seen;
        seen = now;
        if busy {
            dirty = true;
            swept = false;
            continue;
        }
        if !dirty {
            continue;
        }
        // The burst's extra origin connections go first; their tasks free their buffers on
        // their own workers, so the trim comes one quiet tick later.
        if !swept {
            current.get().pool.sweep();
            swept = true;
            continue;
        }
        dirty = false;
        swept = false;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        let _ = tokio::task::spawn_blocking(|| {
            // SAFETY: malloc_trim only walks glibc's own heap structures, under their locks.
            unsafe { libc::malloc_trim(0) };
        })
        .await;
    }
}

/// Open downstream connections, for draining.
#[derive(Default)]
struct Active {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
    /// Connections each worker serves (one cache line each, so the workers do not share one).
    per_worker: Box<[PerWorker]>,
    /// Each worker's mailbox for connections another worker accepted and passes on.
    mail: Box<[tokio::sync::mpsc::UnboundedSender<Arrival>]>,
}

#[derive(Default)]
#[repr(align(128))]
struct PerWorker(std::sync::atomic::AtomicUsize);

/// A connection accepted by one worker for another (see [`Active::pick`]).
struct Arrival {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
}

/// How many connections a worker may serve beyond the least loaded before it passes new ones
/// on.
const BALANCE_SLACK: usize = 2;

impl Active {
    /// For `n` workers; the receivers are the workers' mailboxes, in order.
    fn new(n: usize) -> (Active, Vec<tokio::sync::mpsc::UnboundedReceiver<Arrival>>) {
        let (tx, rx): (Vec<_>, Vec<_>) = (0..n).map(|_| tokio::sync::mpsc::unbounded_channel()).unzip();
        let active = Active { per_worker: (0..n).map(|_| PerWorker::default()).collect(), mail: tx.into(), ..Default::default() };
        (active, rx)
    }

    /// Which worker serves a connection worker `me` just accepted: `me`, unless it already
    /// serves more than `BALANCE_SLACK` connections beyond the least loaded worker, which then
    /// gets it. Every worker accepts from every listener and drains the backlog when woken, so
    /// without this one worker could take most of a burst of new connections (measured: 245
    /// against 53 ticks of CPU under `wrk -c64`), and its connections would wait on one core
    /// while the other idles. The chosen worker's count is taken now.
    fn pick(&self, me: usize) -> usize {
        let n = self.per_worker.len();
        if n == 0 {
            return me;
        }
        let me = self.slot(me);
        let load = |i: usize| self.per_worker[i].0.load(Ordering::Relaxed);
        let least = (0..n).min_by_key(|&i| load(i)).unwrap_or(me);
        let to = if load(me) > load(least) + BALANCE_SLACK { least } else { me };
        self.per_worker[to].0.fetch_add(1, Ordering::Relaxed);
        to
    }

    /// Worker `me`'s place in the counts.
    fn slot(&self, me: usize) -> usize {
        me % self.per_worker.len().max(1)
    }

    /// A connection counted for worker `from` is served by `to` after all.
    fn moved(&self, from: usize, to: usize) {
        self.dropped(from);
        if let Some(w) = self.per_worker.get(self.slot(to)) {
            w.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A connection counted for worker `w` was lost before it was served.
    fn dropped(&self, w: usize) {
        if let Some(w) = self.per_worker.get(self.slot(w)) {
            w.0.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Pass `stream`, accepted by worker `me`, to worker `to`: the stream leaves this runtime
    /// and joins the other's. If `to` has ended (shutdown), the stream comes back, counted for
    /// `me`, to be served here after all; `None` when it was passed on or lost.
    fn pass(
        &self,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        acceptor: &Option<tokio_rustls::TlsAcceptor>,
        to: usize,
        me: usize,
    ) -> Option<tokio::net::TcpStream> {
        let s = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!("cannot pass a connection on: {e}");
                self.dropped(to);
                return None;
            }
        };
        let back = self.mail[to].send(Arrival { stream: s, peer, acceptor: acceptor.clone() }).err()?;
        self.moved(to, me);
        match tokio::net::TcpStream::from_std(back.0.stream) {
            Ok(stream) => Some(stream),
            Err(e) => {
                tracing::debug!("cannot take a connection back: {e}");
                self.dropped(me);
                None
            }
        }
    }

    /// A connection ended on the calling worker.
    fn release(&self) {
        self.dropped(worker_index());
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}

/// The engine judges framing itself; its requests share one empty verdict queue.
fn no_verdicts() -> Arc<ConnShared> {
    static EMPTY: std::sync::OnceLock<Arc<ConnShared>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Default::default).clone()
}

/// Counts a connection in the metrics and in the drain count while it lives.
struct ConnGuard {
    metrics: Arc<crate::metrics::Metrics>,
    active: Arc<Active>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.metrics.open_connections.fetch_sub(1, Ordering::Relaxed);
        self.active.release();
    }
}

/// A plain connection on the HTTP/1 engine: the smallest task, since 10,000 idle connections
/// cost 10,000 of them. What the engine hands over goes on with hyper, boxed.
fn spawn_plain_h1(stream: tokio::net::TcpStream, peer: SocketAddr, local: SocketAddr, current: Current, stop: watch::Receiver<bool>, active: Arc<Active>) {
    tokio::spawn(plain_task(stream, peer, local, current, stop, active));
}

fn plain_task(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    current: Current,
    stop: watch::Receiver<bool>,
    active: Arc<Active>,
) -> impl Future<Output = ()> + Send + 'static {
    let metrics = current.get().metrics.clone();
    metrics.open_connections.fetch_add(1, Ordering::Relaxed);
    let info = ConnInfo { peer, local, tls: false, shared: no_verdicts() };
    let guard = ConnGuard { metrics, active };
    h1::serve_task(stream, info, current, stop, guard, hand_over_plain)
}

/// A plain connection the engine hands over goes on with hyper, boxed.
fn hand_over_plain(s: tokio::net::TcpStream, prefix: bytes::Bytes, info: ConnInfo, current: Current, mut stop: watch::Receiver<bool>) -> h1::Continue {
    Box::pin(async move {
        let limits = current.get().config.limits.clone();
        let ctx = ConnCtx { peer: info.peer, local: info.local, current, limits };
        ctx.serve(h1::Rewind::new(s, prefix), false, false, &mut stop).await;
    })
}

fn bind_reuse(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(4096)
}

/// A TLS connection: HTTP/2 when ALPN chose `h2`, else HTTP/1 on the engine (plain
/// connections go straight to `plain_task`).
async fn serve_tls_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    current: Current,
    acceptor: tokio_rustls::TlsAcceptor,
    mut stop: watch::Receiver<bool>,
) {
    let shared_cfg = current.get();
    let limits = shared_cfg.config.limits.clone();
    let metrics = shared_cfg.metrics.clone();
    drop(shared_cfg);
    metrics.open_connections.fetch_add(1, Ordering::Relaxed);
    let ctx = ConnCtx { peer, local, current, limits };
    // A task's memory is the size of its largest state, for as long as it lives: the TLS
    // path is boxed, so that only the plain engine's task stays small (`plain_task`).
    Box::pin(async move {
        match tokio::time::timeout(ctx.limits.header_read_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) if tls.get_ref().1.alpn_protocol() != Some(b"h2") => ctx.serve_h1(tls, true, &mut stop).await,
            Ok(Ok(tls)) => ctx.serve(tls, true, true, &mut stop).await,
            Ok(Err(e)) => tracing::info!(%peer, "TLS handshake failed: {e}"),
            Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
        }
    })
    .await;
    metrics.open_connections.fetch_sub(1, Ordering::Relaxed);
}

/// What serving one downstream connection needs, plain or TLS alike.
struct ConnCtx {
    peer: SocketAddr,
    local: SocketAddr,
    current: Current,
    limits: ConnLimits,
}

impl ConnCtx {
    /// HTTP/1 on the gateway's own engine; what it hands over goes on with hyper.
    async fn serve_h1<S: h1::DownIo>(self, stream: S, tls: bool, stop: &mut watch::Receiver<bool>) {
        let info = ConnInfo { peer: self.peer, local: self.local, tls, shared: no_verdicts() };
        match h1::serve(stream, &info, &self.current, stop).await {
            h1::Outcome::Done => {}
            h1::Outcome::Handover(s, prefix) => Box::pin(self.serve(h1::Rewind::new(s, prefix), tls, false, stop)).await,
        }
    }

    /// hyper's HTTP/2, and its HTTP/1.1 for the tunnel requests (`Upgrade`, CONNECT) the
    /// engine hands over, behind the framing guard. `h2_only` when the downstream chose `h2`
    /// by ALPN: then both sides must start with the HTTP/2 preface (RFC 9113 §3.2), and
    /// HTTP/1 bytes end the connection rather than reach hyper's HTTP/1.
    async fn serve<S>(self, stream: S, tls: bool, h2_only: bool, stop: &mut watch::Receiver<bool>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let limits = &self.limits;
        let timeouts = ReadTimeouts { header: limits.header_read_timeout, keep_alive: limits.keep_alive_timeout, body: limits.timeout };
        // The guard also holds the preface to `header_read_timeout`.
        let (io, conn_shared) = Guarded::new(stream, limits.max_header_bytes, timeouts);
        let info = Arc::new(ConnInfo { peer: self.peer, local: self.local, tls, shared: conn_shared });
        let current = self.current;
        let svc = service_fn(move |req| {
            let shared = current.get();
            let info = info.clone();
            // hyper keeps room for one of these futures in every connection, idle or not, so
            // the rare, large parts of the request path (connecting, pre-buffering a body)
            // are boxed where they happen. Boxing this whole future per request instead cost
            // ~1.5% CPU in glibc's malloc_consolidate (allocations over 1 KiB).
            async move { Ok::<_, Infallible>(proxy::handle(shared, info, req).await) }
        });
        if h2_only {
            // hyper-util's `auto` ignores `http2_only` with upgrades: hyper's own HTTP/2 builder.
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder.timer(TokioTimer::new()).max_concurrent_streams(256).keep_alive_interval(Some(Duration::from_secs(60)));
            drive(builder.serve_connection(TokioIo::new(io), svc), stop, self.peer).await;
            return;
        }
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // The guard enforces `header_read_timeout` on the raw bytes (408 and close); hyper's
            // own 30 s default would only add a timer per request and could cut in first.
            .header_read_timeout(None)
            .keep_alive(limits.keep_alive)
            .max_buf_size(limits.max_header_bytes.max(8192))
            .half_close(false);
        builder.http2().timer(TokioTimer::new()).max_concurrent_streams(256).keep_alive_interval(Some(Duration::from_secs(60)));
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
        drive(conn, stop, self.peer).await;
    }
}

/// Run a connection; on shutdown, let it finish the request in flight and close.
async fn drive<C, E>(conn: C, stop: &mut watch::Receiver<bool>, peer: SocketAddr)
where
    C: Future<Output = Result<(), E>> + GracefulConn,
    E: std::fmt::Display,
{
    let mut conn = std::pin::pin!(conn);
    let r = if *stop.borrow() {
        conn.as_mut().shutdown_gracefully();
        conn.await
    } else {
        tokio::select! {
            r = conn.as_mut() => r,
            _ = stop.changed() => {
                conn.as_mut().shutdown_gracefully();
                conn.await
            }
        }
    };
    if let Err(e) = r {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}

/// hyper-util's connection types' graceful shutdown, behind one name.
trait GracefulConn {
    fn shutdown_gracefully(self: std::pin::Pin<&mut Self>);
}

impl<I, S, E> GracefulConn for auto::UpgradeableConnection<'_, I, S, E>
where
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
    S::ResBody: hyper::body::Body + Send + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shutdown_gracefully(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, E, B> GracefulConn for hyper::server::conn::http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn shutdown_gracefully(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10,000 idle connections cost 10,000 of these tasks: keep an idle plain connection's
    /// future small. It was 1,088 bytes with tokio's readiness, sleep and watch futures in it
    /// and async fns' arguments stored twice; 424 with `parked` and `async move` blocks.
    #[tokio::test]
    async fn idle_plain_connection_task_is_small() {
        let text =
            "[[listen]]\naddr = \"127.0.0.1:0\"\n[[server]]\nnames = [\"localhost\"]\n[[server.route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:9/\"\n";
        let (cfg, diags) = crate::config::toml::parse_str(std::path::Path::new("t.toml"), text);
        assert!(!diags.has_errors());
        let gw = Gateway::bind(cfg, None).await.unwrap();
        let addr = gw.local_addrs()[0];
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (stream, peer) = gw.listeners[0].0.accept().await.unwrap();
        let (_tx, stop) = watch::channel(false);
        let size = std::mem::size_of_val(&plain_task(stream, peer, addr, gw.current(), stop, Arc::new(Active::default())));
        assert!(size <= 512, "an idle connection's task grew to {size} bytes");
    }

    /// The soft limit on open files ends at the hard limit.
    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        // Start low, as a login shell does (this test runs in a process of its own).
        let low = libc::rlimit { rlim_cur: 256.min(lim.rlim_max), rlim_max: lim.rlim_max };
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
        let (before, after) = raise_open_files_limit().unwrap();
        assert_eq!(before, low.rlim_cur);
        assert_eq!(after, lim.rlim_max);
        let mut now = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) }, 0);
        assert_eq!(now.rlim_cur, lim.rlim_max);
        assert_eq!(raise_open_files_limit().unwrap(), (after, after), "already at the hard limit: nothing to do");
    }

    /// A burst accepted by one worker ends spread over the workers.
    #[test]
    fn a_worker_ahead_passes_new_connections_to_the_least_loaded() {
        let (active, _mailboxes) = Active::new(2);
        let to: Vec<usize> = (0..40).map(|_| active.pick(0)).collect();
        let (w0, w1) = (active.per_worker[0].0.load(Ordering::Relaxed), active.per_worker[1].0.load(Ordering::Relaxed));
        assert_eq!(w0 + w1, 40);
        assert!(w0.abs_diff(w1) <= BALANCE_SLACK + 1, "{w0} vs {w1}");
        assert!(to[..=BALANCE_SLACK].iter().all(|&t| t == 0), "a worker keeps what it accepts while within the slack: {to:?}");
        // Worker 1's connections end: worker 0's next ones go to it again.
        for _ in 0..w1 {
            active.per_worker[1].0.fetch_sub(1, Ordering::Relaxed);
        }
        assert_eq!(active.pick(0), 1);
    }

    /// Connections one worker accepts and passes on are served by the other worker's runtime,
    /// plain and TLS alike, request after request.
    #[tokio::test]
    async fn passed_connections_are_served_by_the_other_worker() {
        let dir = tempfile::tempdir().unwrap();
        let crt = dir.path().join("c.crt");
        let key = dir.path().join("c.key");
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        std::fs::write(&crt, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let text = format!(
            "[[listen]]\naddr = \"127.0.0.1:0\"\n[[listen]]\naddr = \"127.0.0.1:0\"\ntls = true\n[[server]]\nnames = [\"localhost\"]\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            crt.display(),
            key.display()
        );
        let (cfg, diags) = crate::config::toml::parse_str(std::path::Path::new("t.toml"), &text);
        assert!(!diags.has_errors(), "{:?}", diags.items);
        let tls = crate::tls_setup::tls_for(&cfg).unwrap().unwrap();
        let gw = Gateway::bind(cfg, Some(tls.server_config)).await.unwrap();
        let addrs = gw.local_addrs();
        let (active, mut mailboxes) = Active::new(2);
        let active = Arc::new(active);
        // Worker 0 (this thread) is well ahead, so it passes every connection to worker 1.
        active.per_worker[0].0.store(100, Ordering::Relaxed);
        let (stop_tx, stop) = watch::channel(false);
        let (release_tx, release) = watch::channel(false);
        let worker1 = Worker {
            n: 1,
            listeners: Vec::new(),
            mailbox: mailboxes.pop().unwrap(),
            current: gw.current(),
            tls: gw.tls.clone(),
            active: active.clone(),
            stop: stop.clone(),
            release,
        };
        let worker1 = std::thread::spawn(move || worker1.run());
        let mut loops = Vec::new();
        for (l, is_tls) in gw.listeners {
            let acceptor = if is_tls { gw.tls.clone() } else { None };
            loops.push(tokio::spawn(accept_loop(l, gw.current.clone(), acceptor, active.clone(), stop.clone())));
        }
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ck.cert.der().clone()).unwrap();
        let client = tokio_rustls::TlsConnector::from(Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        ));
        async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: &mut S) -> String {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            s.write_all(b"GET /nowhere HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // The whole answer: its head, then Content-Length bytes.
            loop {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "connection closed early: {}", String::from_utf8_lossy(&got));
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text[..end]
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                        .unwrap_or(0);
                    if got.len() >= end + 4 + len {
                        return text[..end].lines().next().unwrap().to_string();
                    }
                }
            }
        }
        let mut plain = Vec::new();
        let mut secure = Vec::new();
        for _ in 0..8 {
            plain.push(tokio::net::TcpStream::connect(addrs[0]).await.unwrap());
            let s = tokio::net::TcpStream::connect(addrs[1]).await.unwrap();
            secure.push(client.connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), s).await.unwrap());
        }
        for _ in 0..2 {
            for s in &mut plain {
                assert!(exchange(s).await.starts_with("HTTP/1.1 404"));
            }
            for s in &mut secure {
                assert!(exchange(s).await.starts_with("HTTP/1.1 404"));
            }
        }
        // All 16 are counted on worker 1, none lost.
        assert_eq!(active.per_worker[1].0.load(Ordering::Relaxed), 16);
        drop((plain, secure));
        let _ = stop_tx.send(true);
        let _ = release_tx.send(true);
        for l in loops {
            l.await.unwrap();
        }
        tokio::task::spawn_blocking(move || worker1.join().unwrap()).await.unwrap();
    }
}
