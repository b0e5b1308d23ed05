//! trove-server: the Git server (smart HTTP, REST, web UI) that knows it lives behind a proxy.
//!
//! [`Server::open`] validates a [`ServerConfig`], opens the data directory and checks git;
//! [`app`] builds the axum router (so handler tests need no socket); [`Server::serve`] and
//! [`run`] put it on a listener. `trove server` and `trove up` both go through these.

mod access;
mod advert;
mod api;
pub mod audit;
mod auth;
mod branch_permissions;
mod budget;
mod builds;
mod challenge;
mod code_search;
mod commit_comments;
mod config;
mod error;
pub mod events;
mod git_http;
mod git_service;
mod hooks;
mod maintenance;
mod metrics;
mod node;
mod pack_cache;
mod pktline;
mod pr_git;
pub mod public_url;
mod pull_requests;
mod ref_changes;
mod ref_list;
mod repo_details;
mod repo_read;
pub mod ssh;
mod tasks;
mod web;
pub mod webhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use http::{HeaderValue, header};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use trove_http::linger;
use trove_store::Store;

pub use challenge::solve as solve_login_challenge;
pub use config::{
    AuditSettings, AuthSettings, ConfigError, DATABASE_PASSWORD_ENV, DEFAULT_DATA_DIR, DEFAULT_LISTEN, DatabaseSettings, GitSettings, RawConfig, ServerConfig,
    WebhookSettings, url_has_password,
};
pub use error::ServerError;
pub use git_service::{GitError, Service as GitService};
pub use node::{BadNodeId, NodeId, NodeIdError};
pub use pack_cache::PackCacheSettings;
pub use public_url::{Connector, PublicUrlSettings, PublicUrls, RequestView, Scheme};

/// A Unix time as `2026-12-02 17:18 UTC`, as the web UI shows dates.
pub fn format_unix_utc(ts: i64) -> String {
    web::format_utc(ts)
}

/// State shared by every request.
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) urls: PublicUrls,
    pub(crate) limiter: auth::LoginLimiter,
    pub(crate) packs: Arc<Semaphore>,
    pub(crate) git: GitSettings,
    pub(crate) maintenance: Arc<maintenance::Maintenance>,
    /// Ref advertisements git gave, kept while the repository's refs stay as they were.
    pub(crate) adverts: advert::Adverts,
    /// Outputs of git reads that name only object ids (immutable), for the pages and REST.
    pub(crate) object_reads: repo_read::ObjectReads,
    /// git upload-pack/receive-pack processes serving requests right now.
    pub(crate) running: std::sync::atomic::AtomicUsize,
    /// git upload-pack/receive-pack processes started since the server opened.
    pub(crate) started: std::sync::atomic::AtomicU64,
    /// What happened to repositories (accepted pushes), for maintenance, rescoping and the audit log.
    pub(crate) events: events::Events,
    /// The cap on request bodies held in memory at once.
    pub(crate) bodies: budget::BodyBudget,
    /// Every background task (git feeders and supervisors, maintenance), awaited on shutdown.
    pub(crate) tasks: tasks::Tasks,
    /// Settings another process may change in the database (`trove admin settings base-url`,
    /// another node): followed within a second, without a restart.
    pub(crate) settings_sync: SettingsSync,
    /// This node's id (`[cluster] node_id`, or the one kept in the data directory).
    pub(crate) node_id: NodeId,
    pub(crate) metrics: Arc<metrics::Metrics>,
    /// Serialises changes to one repository's pull requests on this node.
    pub(crate) prs: pull_requests::Locks,
    /// The audit log (`audit::record` writes through it).
    pub(crate) audit: Arc<audit::AuditLog>,
    /// `[audit] retention_days`: the daily pruning's horizon; 0 keeps everything.
    pub(crate) audit_retention_days: u32,
    /// Webhook delivery: the worker's wake-up and `[webhooks]` settings.
    pub(crate) webhooks: webhooks::WebhookService,
    /// The SSH listener's public side, for clone URLs and the UI; `None` without `[ssh]`.
    pub(crate) ssh: Option<SshPublic>,
    /// Clone answers kept on this node's disk (`[pack_cache]`); `None` when turned off.
    pub(crate) pack_cache: Option<Arc<pack_cache::PackCache>>,
}

/// The SSH listener as `Server::open` binds it: the socket, its settings and the host keys.
type SshListener = (std::net::TcpListener, ssh::SshSettings, Vec<russh::keys::PrivateKey>);

/// What the UI and REST say about the SSH listener.
#[derive(Debug, Clone)]
pub(crate) struct SshPublic {
    /// `[ssh] base_url`, if set.
    pub(crate) base_url: Option<String>,
    /// The port clients connect to (the listener's, resolved).
    pub(crate) port: u16,
    /// `(algorithm, SHA256:…)` of each host key.
    pub(crate) fingerprints: Vec<(String, String)>,
}

/// Follows settings that other processes write to the database. The store's `data_version`
/// (SQLite's `PRAGMA data_version`, on a connection of its own) changes only when something
/// commits, so the check on each request is one cheap statement that never waits behind a
/// write, and the settings are read again only after a commit: a base URL set with `trove
/// admin` (or on another node) is in force for the next request.
pub(crate) struct SettingsSync {
    /// The base URL came from trove.toml, which wins over the database.
    base_url_from_config: bool,
    data_version: std::sync::atomic::AtomicI64,
}

impl SettingsSync {
    async fn follow(&self, store: &Store, urls: &PublicUrls) {
        use std::sync::atomic::Ordering::Relaxed;
        let version = match store.data_version() {
            Ok(v) => v,
            Err(e) => return tracing::warn!(error = %e, "cannot check the database for changed settings"),
        };
        if self.data_version.swap(version, Relaxed) == version || self.base_url_from_config {
            return;
        }
        match store.run(|s| s.base_url()).await {
            Ok(base) if base != urls.configured_base_url() => {
                tracing::info!(base_url = base.as_ref().map(|b| b.as_str()).unwrap_or("(none)"), "base URL changed in the database; in force now");
                urls.set_base_url(base);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the base URL from the database"),
        }
    }
}

pub(crate) type AppState = Arc<Shared>;

/// An opened server: configuration validated, data directory open, git found.
#[derive(Clone)]
pub struct Server {
    shared: AppState,
    listen: SocketAddr,
    drain_timeout: std::time::Duration,
    /// The metrics listener, bound by `open` (so a bad address fails the start) and served by
    /// `serve`.
    metrics_listener: Arc<std::sync::Mutex<Option<std::net::TcpListener>>>,
    metrics_addr: Option<SocketAddr>,
    /// The SSH listener with its settings and host keys, bound by `open`, served by `serve`.
    ssh_listener: Arc<std::sync::Mutex<Option<SshListener>>>,
    ssh_addr: Option<SocketAddr>,
}

/// The store the configuration names: SQLite in the data directory, or PostgreSQL, with the
/// repositories in the data directory or on shared storage. `trove admin --config` opens the
/// same way.
pub fn open_store(config: &ServerConfig) -> Result<Store, ServerError> {
    let database = match &config.database {
        Some(db) => {
            let password = db.password().map_err(ServerError::Database)?;
            Some(trove_store::PgOptions { url: db.url.clone(), password, pool_size: db.pool_size, timeout: db.timeout })
        }
        None => None,
    };
    Ok(Store::open_with(&trove_store::StoreOptions {
        data_dir: config.data_dir.clone(),
        repositories: config.repositories.clone(),
        database,
        git_binary: config.git.binary.clone(),
    })?)
}

/// The pack cache `[pack_cache]` asks for, its directory made and emptied; `None` when it is
/// off. It must be on this node's own disk: a directory under the shared repositories would be
/// emptied by every node that starts.
fn open_pack_cache(config: &ServerConfig) -> Result<Option<Arc<pack_cache::PackCache>>, ServerError> {
    let settings = &config.pack_cache;
    if !settings.enabled {
        return Ok(None);
    }
    let dir = settings.dir.clone().unwrap_or_else(|| config.data_dir.join("pack-cache"));
    if let Some(shared) = &config.repositories
        && dir.starts_with(shared)
    {
        return Err(ServerError::PackCache {
            path: dir,
            detail: "is under [storage] repositories, which other nodes share; choose a directory on this node's local disk".into(),
        });
    }
    let cache = pack_cache::PackCache::open(dir.clone(), settings.max_bytes, settings.max_age)
        .map_err(|e| ServerError::PackCache { path: dir, detail: format!("{e}; make it writable, or set enabled = false") })?;
    Ok(Some(Arc::new(cache)))
}

impl Server {
    /// Opens the data directory (applying migrations), merges the settings stored there with
    /// the configuration (the configuration wins), and checks that git runs.
    pub fn open(config: ServerConfig) -> Result<Server, ServerError> {
        let store = open_store(&config)?;
        let version = std::process::Command::new(&config.git.binary)
            .env_clear()
            .envs(trove_store::git_env(store.git_home()))
            .arg("--version")
            .output()
            .map_err(|e| ServerError::Git { binary: config.git.binary.display().to_string(), detail: e.to_string() })?;
        if !version.status.success() {
            return Err(ServerError::Git {
                binary: config.git.binary.display().to_string(),
                detail: String::from_utf8_lossy(&version.stderr).trim().to_owned(),
            });
        }
        tracing::debug!(version = %String::from_utf8_lossy(&version.stdout).trim(), "found git");
        hooks::install(store.git_home()).map_err(|e| ServerError::Git {
            binary: config.git.binary.display().to_string(),
            detail: format!("cannot write the push hooks into {}: {e}", store.git_home().display()),
        })?;
        let pack_cache = open_pack_cache(&config)?;
        let node_id = match config.node_id {
            Some(id) => id,
            None => NodeId::load_or_create(&config.data_dir)?,
        };
        let metrics = Arc::new(metrics::Metrics::new(node_id.clone()));
        let (metrics_listener, metrics_addr) = match config.metrics_listen {
            Some(addr) => {
                let bound = std::net::TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l));
                let l = bound.map_err(|source| ServerError::Bind { addr, source })?;
                let local = l.local_addr()?;
                (Some(l), Some(local))
            }
            None => (None, None),
        };
        let (ssh_listener, ssh_public) = match &config.ssh {
            Some(settings) => {
                let keys = ssh::load_or_create_host_keys(&config.data_dir)?;
                let addr = settings.listen;
                let bound = std::net::TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l));
                let l = bound.map_err(|source| ServerError::Bind { addr, source })?;
                let port = l.local_addr()?.port();
                let public = SshPublic { base_url: settings.base_url.clone(), port, fingerprints: ssh::fingerprints(&keys) };
                (Some((l, settings.clone(), keys)), Some(public))
            }
            None => (None, None),
        };
        let ssh_addr = match &ssh_listener {
            Some((l, _, _)) => Some(l.local_addr()?),
            None => None,
        };
        let base_url_from_config = config.base_url.is_some();
        let drain_timeout = config.drain_timeout;
        let (data_version, stored_base_url, stored_context_path) =
            store.sync(|s| Ok::<_, trove_store::StoreError>((s.data_version()?, s.base_url()?, s.context_path()?)))?;
        let base_url = match config.base_url {
            Some(b) => Some(b),
            None => stored_base_url,
        };
        let context_path = match config.context_path {
            Some(c) => c,
            None => stored_context_path.unwrap_or_default(),
        };
        if let Some(b) = &base_url
            && b.path() != context_path.as_str()
        {
            tracing::warn!(
                base_url = %b,
                context_path = %context_path,
                "the base URL's path differs from the context path; that is right only when the proxy rewrites paths (ProxyPass /x http://…/y)"
            );
        }
        let urls = PublicUrls::new(PublicUrlSettings { base_url, context_path, connector: config.connector, trusted_proxies: config.trusted_proxies });
        let tasks = tasks::Tasks::new();
        let maintenance = Arc::new(maintenance::Maintenance::new(
            tasks.clone(),
            config.git.maintenance_after_push,
            config.git.max_concurrent_maintenance,
            config.git.binary.clone(),
            trove_store::git_env(store.git_home()),
            metrics.clone(),
        ));
        // Nodes sharing repositories take a lease before maintaining one (never two repacks of
        // one repository at once); one node alone has no one to wait for.
        if config.repositories.is_some() || config.database.is_some() {
            maintenance.share(store.clone(), node_id.as_str().to_owned());
        }
        let adverts = advert::Adverts::new(&config.git.binary, store.git_home());
        let audit = Arc::new(audit::AuditLog::new(store.data_dir()));
        let shared = Shared {
            adverts,
            object_reads: repo_read::ObjectReads::default(),
            limiter: auth::LoginLimiter::new(&config.auth),
            packs: Arc::new(Semaphore::new(config.git.max_concurrent_packs)),
            git: config.git,
            store,
            urls,
            maintenance,
            running: std::sync::atomic::AtomicUsize::new(0),
            started: std::sync::atomic::AtomicU64::new(0),
            bodies: budget::BodyBudget::new(config.max_buffered_request_bytes),
            events: events::Events::new(),
            tasks,
            settings_sync: SettingsSync { base_url_from_config, data_version: std::sync::atomic::AtomicI64::new(data_version) },
            node_id,
            metrics,
            prs: pull_requests::Locks::default(),
            audit,
            audit_retention_days: config.audit.retention_days,
            webhooks: webhooks::WebhookService::new(config.webhooks),
            ssh: ssh_public,
            pack_cache,
        };
        // Maintenance follows accepted pushes.
        let m = shared.maintenance.clone();
        shared.events.subscribe(move |ev| m.after_push(ev.repo_id, ev.path.clone()));
        // So does the audit log (its entry written on the blocking pool).
        shared.events.subscribe(audit::push_recorder(shared.audit.clone(), shared.store.clone(), shared.tasks.clone()));
        let shared = Arc::new(shared);
        // So do the open pull requests whose branches a push moved (held weakly: the bus is
        // part of what it would keep alive).
        let weak = Arc::downgrade(&shared);
        shared.events.subscribe(move |ev| {
            if let Some(state) = weak.upgrade() {
                pull_requests::after_push(state, ev.clone());
            }
        });
        Ok(Server {
            shared,
            listen: config.listen,
            drain_timeout,
            metrics_listener: Arc::new(std::sync::Mutex::new(metrics_listener)),
            metrics_addr,
            ssh_listener: Arc::new(std::sync::Mutex::new(ssh_listener)),
            ssh_addr,
        })
    }

    /// This node's id, as `/status`, the logs and the metrics show it.
    pub fn node_id(&self) -> &NodeId {
        &self.shared.node_id
    }

    /// The metrics listener's address (`[metrics] listen`, its port resolved), if there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The SSH listener's address (`[ssh] listen`, its port resolved), if SSH is on.
    pub fn ssh_addr(&self) -> Option<SocketAddr> {
        self.ssh_addr
    }

    /// `(algorithm, SHA256:…)` of each SSH host key, if SSH is on.
    pub fn ssh_fingerprints(&self) -> Vec<(String, String)> {
        self.shared.ssh.as_ref().map(|s| s.fingerprints.clone()).unwrap_or_default()
    }

    /// The Prometheus text the metrics listener serves.
    pub fn render_metrics(&self) -> String {
        let s = &self.shared;
        s.metrics.render(&metrics::Gauges {
            git_running: self.running_git_processes(),
            git_started: self.git_processes_started(),
            body_bytes_in_use: s.bodies.in_use(),
            body_bytes_cap: s.bodies.total,
            pool: s.store.pool_stats(),
            object_reads: s.object_reads.stats(),
            pack_cache: s.pack_cache.as_ref().map(|c| c.stats()),
        })
    }

    /// Every accepted push from now on, with the refs it moved (for tests and in-process
    /// listeners).
    pub fn push_events(&self) -> tokio::sync::broadcast::Receiver<std::sync::Arc<events::PushEvent>> {
        self.shared.events.receiver()
    }

    /// The data directory's store, for administration in-process.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The public URL settings in effect (base URL, context path, connector, trusted proxies).
    pub fn public_urls(&self) -> &PublicUrls {
        &self.shared.urls
    }

    /// The configured listen address (what [`run`] binds).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// The first `(request URL, base URL)` mismatch seen on a proxied request, if any.
    pub fn base_url_mismatch(&self) -> Option<(String, String)> {
        self.shared.urls.mismatch()
    }

    /// How many git upload-pack/receive-pack processes are serving requests right now.
    pub fn running_git_processes(&self) -> usize {
        self.shared.running.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How many git upload-pack/receive-pack processes have been started for requests so far.
    pub fn git_processes_started(&self) -> u64 {
        self.shared.started.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves once no background maintenance is running (for tests and orderly shutdown).
    pub async fn maintenance_idle(&self) {
        self.shared.maintenance.idle().await
    }

    /// Serves on `listener` until `shutdown` resolves, then stops accepting, asks every open
    /// connection to finish its current request, and waits for them.
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
        // Every line logged while serving (requests, git, maintenance) carries the node id.
        let span = tracing::info_span!("server", node_id = %self.shared.node_id);
        tracing::Instrument::instrument(self.serve_in_span(listener, shutdown, span.clone()), span).await
    }

    async fn serve_in_span(&self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static, span: tracing::Span) -> Result<(), ServerError> {
        let addr = listener.local_addr()?;
        tracing::info!(
            %addr,
            context_path = %self.shared.urls.context_path(),
            base_url = self.shared.urls.settings().base_url.as_ref().map(|b| b.as_str()).unwrap_or("(from each request)"),
            "trove server listening"
        );
        let router = app(self);
        audit::start_pruning(&self.shared);
        // Pushes a crash left in the journal reach the outbox before anything new happens.
        webhooks::recover_pushes(&self.shared).await;
        webhooks::delivery::start(&self.shared);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let metrics_listener = self.metrics_listener.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(l) = metrics_listener {
            let l = TcpListener::from_std(l)?;
            tracing::info!(addr = %l.local_addr()?, "metrics listening");
            self.shared.tasks.spawn(serve_metrics(self.clone(), l, stop_rx.clone()));
        }
        let ssh_listener = self.ssh_listener.lock().unwrap_or_else(|e| e.into_inner()).take();
        let ssh_stop = tasks::Cancel::new();
        let ssh_task = match ssh_listener {
            Some((l, settings, keys)) => {
                let l = TcpListener::from_std(l)?;
                let fingerprints: Vec<String> = ssh::fingerprints(&keys).into_iter().map(|(a, f)| format!("{a} {f}")).collect();
                tracing::info!(addr = %l.local_addr()?, host_keys = %fingerprints.join(", "), "ssh listening");
                Some(tokio::spawn(tracing::Instrument::instrument(ssh::serve(self.shared.clone(), l, settings, keys, ssh_stop.clone()), span.clone())))
            }
            None => None,
        };
        let mut conns = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(x) => x,
                        Err(e) => {
                            // Out of file descriptors and the like: back off instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    conns.spawn(tracing::Instrument::instrument(serve_connection(router.clone(), stream, peer, stop_rx.clone(), span.clone()), span.clone()));
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        let _ = stop_tx.send(true);
        // SSH stops accepting too; its connections end now (an SSH session has no "after this
        // request": its git processes see their input end, and a push not yet in refuses itself).
        ssh_stop.cancel();
        if let Some(t) = ssh_task {
            let _ = t.await;
        }
        // Requests in flight get the drain time to finish; then their connections are closed,
        // which ends their git processes (a push's receive-pack sees its input end and refuses
        // the pack before moving any ref; an upload-pack's output breaks).
        let drain = self.drain_timeout;
        let deadline = tokio::time::Instant::now() + drain;
        if tokio::time::timeout_at(deadline, async { while conns.join_next().await.is_some() {} }).await.is_err() {
            tracing::warn!(open = conns.len(), seconds = drain.as_secs(), "requests still in flight after the drain timeout; closing them");
            conns.abort_all();
            while conns.join_next().await.is_some() {}
        }
        self.stop_background(deadline).await;
        Ok(())
    }

    /// Waits for the background tasks (git feeders and supervisors, maintenance) until
    /// `deadline`, then stops the git processes still running (SIGTERM to each process group,
    /// SIGKILL after a grace) and waits for their supervisors to reap them, so that no git
    /// process outlives the server. Once called, git processes started later are stopped at once.
    async fn stop_background(&self, deadline: tokio::time::Instant) {
        let tasks = &self.shared.tasks;
        tasks.close();
        // A git process whose client just went away gets a moment to refuse its pack itself,
        // even when the connections took the whole drain time.
        let deadline = deadline.max(tokio::time::Instant::now() + STOP_GRACE);
        if tokio::time::timeout_at(deadline, tasks.wait()).await.is_ok() {
            return;
        }
        tracing::warn!(
            tasks = tasks.len(),
            git = self.running_git_processes(),
            "background work still running after the drain timeout; stopping its git processes"
        );
        tasks.stop().cancel();
        if tokio::time::timeout(STOP_WAIT, tasks.wait()).await.is_err() {
            tracing::error!(tasks = tasks.len(), git = self.running_git_processes(), "background tasks did not end after their git processes were stopped");
        }
    }

    /// Runs `git upload-pack` or `git receive-pack` as one session over a byte stream, as SSH
    /// does (no `--stateless-rpc`): `input` (the client's bytes) goes to git's stdin and git's
    /// stdout to `output` until git exits; returns git's exit status. The caller is the adapter:
    /// it has authenticated the caller and decided access (`receive-pack` needs `who`). After a
    /// push, the push event is published as for HTTP.
    pub async fn git_session<R, W>(&self, session: GitSession<'_>, input: R, output: W) -> Result<std::process::ExitStatus, GitError>
    where
        R: tokio::io::AsyncRead + Unpin + Send + 'static,
        W: tokio::io::AsyncWrite + Unpin,
    {
        let state = &self.shared;
        let call = git_service::Call {
            service: session.service,
            repo_id: session.repo.id,
            repo: session.repo.display_path(),
            path: state.store.repo_path(session.repo),
            protocol: session.protocol.filter(|p| pktline::valid_git_protocol(p)).map(str::to_owned),
            pusher: session.who.map(|a| git_service::Pusher::new(a, session.client_ip, "ssh")),
        };
        git_service::session(state, call, input, output).await
    }
}

/// After the connections are closed on shutdown, the least time background git processes get
/// to end on their own before they are stopped.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// How long shutdown waits for stopped git processes to be reaped.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// One git session over a byte stream ([`Server::git_session`]): which service, on which
/// repository, for whom.
pub struct GitSession<'a> {
    pub service: GitService,
    pub repo: &'a trove_store::Repo,
    /// Who asked; required for `git-receive-pack` (their name goes into the reflog and the push
    /// event).
    pub who: Option<&'a trove_store::Authenticated>,
    /// The client's address, for the reflog when the user has no e-mail address.
    pub client_ip: Option<std::net::IpAddr>,
    /// The client's `GIT_PROTOCOL` (`version=2`); an invalid value is dropped, as over HTTP.
    pub protocol: Option<&'a str>,
}

/// How long a client may take to send a request's headers (slowloris protection). hyper only
/// enforces this with a timer set on the builder.
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs hyper's tasks (HTTP/2 streams) in the server's span, so their log lines carry the node id.
#[derive(Clone)]
struct SpanExecutor(tracing::Span);

impl<F> hyper::rt::Executor<F> for SpanExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(tracing::Instrument::instrument(fut, self.0.clone()));
    }
}

/// The metrics listener: `GET /metrics` (Prometheus text) and `/healthz`, on HTTP/1.1, until
/// the server stops. Its own listener rather than a path on the main one: behind a proxy on the
/// same host every request comes from loopback, so "loopback only" there would be everyone.
async fn serve_metrics(server: Server, listener: TcpListener, mut stop: tokio::sync::watch::Receiver<bool>) {
    use hyper_util::rt::TokioIo;
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let stream = tokio::select! {
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let server = server.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (status, body) = match req.uri().path() {
                    "/metrics" => (http::StatusCode::OK, server.render_metrics()),
                    "/healthz" => (http::StatusCode::OK, "ok\n".to_owned()),
                    _ => (http::StatusCode::NOT_FOUND, "not found\n".to_owned()),
                };
                let mut r = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
                *r.status_mut() = status;
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(trove_http::prometheus::CONTENT_TYPE));
                std::future::ready(Ok::<_, std::convert::Infallible>(r))
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
    // Answers take no time; an idle keep-alive scraper connection is simply closed.
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

async fn serve_connection(router: Router, stream: tokio::net::TcpStream, peer: SocketAddr, mut stop: tokio::sync::watch::Receiver<bool>, span: tracing::Span) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let svc = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        // HTTP/2: a body a handler leaves unread is read to its end after the answer, and the
        // answer's end waits for the body's, so that a client still sending neither has its
        // stream reset nor misses the end (see `trove_http::linger`). HTTP/1.1 needs none of this: hyper
        // reads or closes what is left there.
        let (parts, body) = req.into_parts();
        let h2 = parts.version == http::Version::HTTP_2 && !hyper::body::Body::is_end_stream(&body);
        let (req, over) = if h2 {
            let body = linger::Linger::new(body, true);
            let over = body.over();
            (http::Request::from_parts(parts, axum::body::Body::new(body)), Some(over))
        } else {
            (http::Request::from_parts(parts, axum::body::Body::new(body)), None)
        };
        async move {
            // Router is always ready; `call` alone is what axum::serve does too.
            let resp = tower::Service::call(&mut router, req).await?;
            Ok::<_, std::convert::Infallible>(match over {
                Some(over) if linger::holds_end(resp.status()) && !over.is_over() => resp.map(|b| axum::body::Body::new(linger::HoldEnd::new(b, over))),
                _ => resp,
            })
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(SpanExecutor(span));
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Opens the server described by `config`, binds its listen address and serves until
/// `shutdown` resolves.
pub async fn run(config: ServerConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
    let server = Server::open(config)?;
    let addr = server.listen;
    let listener = TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
    server.serve(listener, shutdown).await
}

/// The router: every route lives under the context path; anything else is 404.
pub fn app(server: &Server) -> Router {
    let state = server.shared.clone();
    let ctx = state.urls.context_path().as_str().to_owned();
    // The web UI owns `{ctx}/` (the dashboard) and the Bitbucket page URLs.
    let mut router = web::router(&ctx, state.clone()).merge(api::router(&ctx, state.clone())).route(&format!("{ctx}/status"), get(status));
    if !ctx.is_empty() {
        // `https://host/` and `https://host/stash` both lead to the dashboard under the context
        // path, as Tomcat's ROOT does for Stash behind `ProxyPass /stash`.
        router = router.route(&ctx, get(context_root)).route("/", get(context_root));
    }
    for prefix in ["scm", "git"] {
        let base = format!("{ctx}/{prefix}/{{owner}}/{{repo}}");
        router = router
            .route(&format!("{base}/info/refs"), get(git_http::info_refs))
            .route(&format!("{base}/git-upload-pack"), post(git_http::upload_pack))
            .route(&format!("{base}/git-receive-pack"), post(git_http::receive_pack))
            .route(&base, get(git_http::repo_page));
    }
    let routed = router
        .fallback(web::fallback)
        .layer(middleware::from_fn_with_state(state.clone(), catch_panics))
        .layer(middleware::from_fn_with_state(state.clone(), observe_request))
        .with_state(state);
    // `/rest/{family}/latest/…` is rewritten to the family's version before routing (a layer on
    // the router would run after it), so every REST family answers under `latest`.
    Router::new().fallback(move |mut req: Request| {
        let mut routed = routed.clone();
        if let Some(path) = api::latest_alias(&ctx, req.uri().path()) {
            let mut parts = req.uri().clone().into_parts();
            let pq = match req.uri().query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            if let Ok(pq) = http::uri::PathAndQuery::try_from(pq) {
                parts.path_and_query = Some(pq);
                if let Ok(uri) = http::Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                }
            }
        }
        async move { tower::Service::call(&mut routed, req).await }
    })
}

/// A handler that panics answers 500 (the error page for browsers, Bitbucket's error shape under
/// `/rest`) instead of dropping the connection; the panic goes to the log, never to the caller.
/// `catch_unwind` on the same task keeps cancellation as it was: a caller that leaves still
/// drops the handler (and the git process it may be running).
async fn catch_panics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    use futures_util::FutureExt as _;
    let rest = req.uri().path().starts_with(&format!("{}/rest/", state.urls.context_path().as_str()));
    match std::panic::AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(r) => r,
        Err(_) => {
            tracing::error!("a request handler panicked; answered 500 (the panic message is above)");
            let ctx = state.urls.context_path().as_str().to_owned();
            if rest {
                let body = r#"{"errors":[{"context":null,"message":"An internal error occurred; the server log has the details.","exceptionName":"com.atlassian.bitbucket.ServerException"}]}"#;
                let mut r = Response::new(axum::body::Body::from(body));
                *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json;charset=UTF-8"));
                r
            } else {
                web::internal_error_page(&ctx)
            }
        }
    }
}

/// Works out how the request looked to its sender (trusted proxies, connector settings), warns
/// once if that differs from the base URL, and hands the view to the handlers.
async fn observe_request(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    state.settings_sync.follow(&state.store, &state.urls).await;
    let view = public_url::view(state.urls.settings(), peer, req.headers());
    state.urls.observe(&view);
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    // The route template, never the raw path, so the metrics stay as few as the routes.
    let route = match req.extensions().get::<axum::extract::MatchedPath>() {
        Some(m) => {
            let ctx = state.urls.context_path().as_str();
            let r = m.as_str();
            match r.strip_prefix(ctx) {
                Some(rest) if !ctx.is_empty() => if rest.is_empty() { "/" } else { rest }.to_owned(),
                _ => r.to_owned(),
            }
        }
        None => "-".to_owned(),
    };
    let client = view.client_ip;
    let started = std::time::Instant::now();
    req.extensions_mut().insert(view);
    let resp = next.run(req).await;
    state.metrics.request(&route, resp.status().as_u16(), started.elapsed());
    // The access log: one line per request, with the client address as trusted proxies
    // reported it. For streamed git responses this is when the headers go out.
    tracing::info!(
        target: "trove::access",
        %method,
        %path,
        status = resp.status().as_u16(),
        client = client.map(|c| c.to_string()).as_deref().unwrap_or("-"),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    resp
}

/// `GET /status`, as Bitbucket answers it: for load balancers and `trove up`'s health checks.
async fn status(State(state): State<AppState>) -> Response {
    // `state` first, as before; a node id needs no escaping (valid by construction).
    let body = format!("{{\"state\":\"RUNNING\",\"nodeId\":\"{}\"}}", state.node_id);
    let mut r = Response::new(axum::body::Body::from(body));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// `GET /stash` → `/stash/`, as Tomcat does for a context root, built from the base URL.
async fn context_root(State(state): State<AppState>, axum::Extension(view): axum::Extension<RequestView>) -> Response {
    git_http::redirect(&format!("{}/", state.urls.base_url(&view)))
}

#[cfg(test)]
mod panic_tests {
    use axum::body::Body;
    use http::{Request, StatusCode};
    use tower::ServiceExt as _;

    use super::*;

    async fn boom() -> &'static str {
        // A bug the handler did not see coming, with a detail that must not reach the caller.
        panic!("handler bug with /secret/detail")
    }

    fn router(dir: &std::path::Path) -> Router {
        let server = Server::open(ServerConfig::new(dir)).unwrap();
        Router::new()
            .route("/boom", get(boom))
            .route("/rest/api/1.0/boom", get(boom))
            .layer(middleware::from_fn_with_state(server.shared.clone(), catch_panics))
            .with_state(server.shared.clone())
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_500_page_without_details() {
        let dir = tempfile::tempdir().unwrap();
        let r = router(dir.path()).oneshot(Request::get("/boom").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains("Something went wrong") && !body.contains("/secret/detail"), "{body}");
    }

    #[tokio::test]
    async fn a_panicking_rest_handler_answers_in_bitbuckets_error_shape() {
        let dir = tempfile::tempdir().unwrap();
        let r = router(dir.path()).oneshot(Request::get("/rest/api/1.0/boom").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json;charset=UTF-8");
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["errors"][0]["message"].as_str().unwrap().contains("internal error"));
    }
}

#[cfg(test)]
mod pack_cache_tests {
    use super::*;

    #[test]
    fn the_pack_cache_is_on_local_disk_and_refused_on_the_shared_repositories() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::new(dir.path().join("data"));
        config.repositories = Some(dir.path().join("shared"));
        config.pack_cache.dir = Some(dir.path().join("shared/cache"));
        let err = open_pack_cache(&config).err().expect("refused").to_string();
        assert!(err.contains("shared/cache") && err.contains("local disk"), "{err}");
        config.pack_cache.dir = None;
        open_pack_cache(&config).unwrap().expect("on by default");
        assert!(dir.path().join("data/pack-cache").is_dir(), "in the node's own data directory");
        config.pack_cache.enabled = false;
        assert!(open_pack_cache(&config).unwrap().is_none());
    }
}
