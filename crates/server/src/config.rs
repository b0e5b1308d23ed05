//! `trove.toml`: parsed into [`RawConfig`] exactly as written, then validated into
//! [`ServerConfig`], once. docs/server.md documents every key and its default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use trove_store::{BaseUrl, ContextPath};

use crate::node::NodeId;
use crate::public_url::{Connector, Scheme};

/// Default listen address: Stash's port, loopback only until an administrator says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7990";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "trove-data";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Toml { path: PathBuf, source: toml::de::Error },
    #[error("{path}: `{key}`: {message}")]
    Invalid { path: PathBuf, key: &'static str, message: String },
    /// As `Invalid`, where the line is known (keys read with their position).
    #[error("{path}:{line}: `{key}`: {message}")]
    InvalidAt { path: PathBuf, line: usize, key: &'static str, message: String },
}

/// How to reach PostgreSQL. The password comes from `password_file` or the environment
/// (`TROVE_DATABASE_PASSWORD`), never from a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    pub url: String,
    pub password_file: Option<PathBuf>,
    pub pool_size: usize,
    pub timeout: Duration,
}

/// The environment variable that may hold the database password.
pub const DATABASE_PASSWORD_ENV: &str = "TROVE_DATABASE_PASSWORD";

impl DatabaseSettings {
    pub fn new(url: &str) -> Result<DatabaseSettings, String> {
        check_database_url(url)?;
        Ok(DatabaseSettings { url: url.to_owned(), password_file: None, pool_size: 16, timeout: Duration::from_secs(5) })
    }

    /// The password: the file's first line, else `TROVE_DATABASE_PASSWORD`, else none (the URL's,
    /// or trust/peer authentication). A file others may read is refused, as TLS keys are.
    pub fn password(&self) -> Result<Option<String>, String> {
        if let Some(f) = &self.password_file {
            use std::os::unix::fs::PermissionsExt as _;
            let meta = std::fs::metadata(f).map_err(|e| format!("cannot read the database password file {}: {e}", f.display()))?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(format!(
                    "the database password file {} may be read by other users (mode {:o}); run `chmod 600 {}`",
                    f.display(),
                    meta.permissions().mode() & 0o777,
                    f.display()
                ));
            }
            let text = std::fs::read_to_string(f).map_err(|e| format!("cannot read the database password file {}: {e}", f.display()))?;
            return Ok(Some(text.lines().next().unwrap_or("").to_owned()));
        }
        Ok(std::env::var(DATABASE_PASSWORD_ENV).ok().filter(|p| !p.is_empty()))
    }
}

/// A PostgreSQL URL, checked before anything connects: `postgres://user@host[:port]/dbname`.
pub fn check_database_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("postgres://").or_else(|| url.strip_prefix("postgresql://")) else {
        return Err(format!("{url:?} is not a PostgreSQL URL; write postgres://user@host:5432/dbname"));
    };
    let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.rsplit_once('@').map_or(authority, |(_, h)| h).is_empty() {
        return Err(format!("{url:?} names no host; write postgres://user@host:5432/dbname"));
    }
    if db.split('?').next().unwrap_or("").is_empty() {
        return Err(format!("{url:?} names no database; write postgres://user@host:5432/dbname"));
    }
    Ok(())
}

/// Whether a URL carries a password (`postgres://user:secret@host/db`): refused on command lines,
/// where `ps` shows it to every user of the machine.
pub fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    authority.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// `trove.toml` as written. Unknown keys are refused, so a typo is an error, not a silent default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub base_url: Option<String>,
    pub context_path: Option<String>,
    pub proxy_name: Option<String>,
    pub proxy_port: Option<u16>,
    pub scheme: Option<String>,
    pub secure: Option<bool>,
    pub trusted_proxies: Option<Vec<String>>,
    pub max_buffered_request_bytes: Option<u64>,
    pub drain_timeout_secs: Option<u64>,
    #[serde(default)]
    pub git: RawGit,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub cluster: RawCluster,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub database: RawDatabase,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub audit: RawAudit,
    #[serde(default)]
    pub webhooks: RawWebhooks,
    #[serde(default)]
    pub ssh: RawSsh,
    #[serde(default)]
    pub pack_cache: RawPackCache,
}

/// `[pack_cache]`: clone answers kept on this node's disk (docs/server.md, "Pack cache").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPackCache {
    pub enabled: Option<bool>,
    pub dir: Option<PathBuf>,
    pub max_bytes: Option<u64>,
    pub max_age_secs: Option<u64>,
}

/// `[ssh]`: git over SSH (docs/server.md, "SSH"). Off unless `listen` is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSsh {
    pub listen: Option<String>,
    pub base_url: Option<String>,
    pub login_grace_secs: Option<u64>,
    pub max_auth_attempts: Option<usize>,
    pub max_unauthenticated: Option<usize>,
    pub idle_timeout_secs: Option<u64>,
}

/// `[webhooks]`: delivery of webhook events (docs/server.md, "Webhooks").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhooks {
    pub connect_timeout_secs: Option<u64>,
    pub request_timeout_secs: Option<u64>,
    pub retry_for_secs: Option<u64>,
    pub first_retry_secs: Option<u64>,
    pub max_retry_secs: Option<u64>,
    pub breaker_failures: Option<u32>,
    pub breaker_pause_secs: Option<u64>,
    pub ca_file: Option<PathBuf>,
    pub max_concurrent_deliveries: Option<usize>,
}

/// `[audit]`: the audit log (docs/server.md, "Audit log").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub retention_days: Option<u32>,
}

/// `[cluster]`: this node among others (Data Center mode).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub node_id: Option<toml::Spanned<String>>,
}

/// `[metrics]`: where Prometheus scrapes this node.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<toml::Spanned<String>>,
}

/// `[database]`: PostgreSQL for Data Center mode (docs/cluster.md); absent, SQLite in `data_dir`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    pub url: Option<String>,
    pub password_file: Option<PathBuf>,
    pub pool_size: Option<usize>,
    pub connect_timeout_secs: Option<u64>,
}

/// `[storage]`: where the bare repositories live.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    pub repositories: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGit {
    pub binary: Option<PathBuf>,
    pub max_concurrent_packs: Option<usize>,
    pub max_inflated_request_bytes: Option<u64>,
    pub maintenance_after_push: Option<bool>,
    pub max_concurrent_maintenance: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub max_failed_logins: Option<u32>,
    pub failed_login_window_secs: Option<u64>,
    pub lock_secs: Option<u64>,
    pub max_failed_accounts_per_address: Option<u32>,
    pub challenge_bits: Option<u32>,
}

/// Git-serving settings.
#[derive(Debug, Clone)]
pub struct GitSettings {
    /// The git executable. Default `git` (looked up on `PATH`).
    pub binary: PathBuf,
    /// Upper bound on `git upload-pack` processes generating packs at once; more requests wait
    /// their turn. Default: twice the number of CPUs. `0` is refused.
    pub max_concurrent_packs: usize,
    /// Cap on a fetch request body (wants and haves; after inflation when gzip-encoded) and on
    /// any gzip-encoded body; larger bodies get 413. Default 64 MiB, far more than any real
    /// negotiation. Push bodies without encoding are streamed and not capped.
    pub max_inflated_request_bytes: u64,
    /// Run `git commit-graph write` and `git gc --auto` in the background after each push.
    /// Default `true`.
    pub maintenance_after_push: bool,
    /// Maintenance runs (repack, commit-graph, `gc --auto`) at once across repositories; more
    /// wait their turn. Default: half the CPUs, at least 1. `0` is refused.
    pub max_concurrent_maintenance: usize,
}

/// Login settings: the failed-login policy (docs/server.md, "Failed logins").
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Wrong passwords in succession for one account (each within the window of the previous)
    /// that lock the account's password logins over git and REST. An empty password (git's
    /// first try) is not counted, a success resets the count, tokens are never locked, and the
    /// web sign-in stays open behind a challenge. Default 10; `0` disables locking.
    pub max_failed_logins: u32,
    /// A failure longer than this after the previous one starts the count again; also the
    /// window of the address limit. Default 300 seconds.
    pub failed_login_window: Duration,
    /// How long a lock lasts unless a web sign-in or an administrator clears it sooner.
    /// Default 900 seconds; `0` means until cleared.
    pub lock: Duration,
    /// Distinct accounts that one address may fail to log in to within the window before its
    /// password logins wait for the window to end (password spraying). Default 50; `0`
    /// disables the address limit.
    pub max_failed_accounts_per_address: u32,
    /// Work of the web sign-in's challenge for a locked account, in leading zero bits of a
    /// SHA-256 (each bit doubles it). Default 18, about a second in a browser; 8 to 24.
    pub challenge_bits: u32,
}

/// The audit log's settings (docs/server.md, "Audit log").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    /// Entries older than this many days are deleted from the database once a day (the
    /// `audit.log` file is never pruned: rotate it like any log). Default 90; `0` keeps every
    /// entry forever.
    pub retention_days: u32,
}

/// How webhook events are delivered (docs/server.md, "Webhooks").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// How long connecting (DNS, TCP, TLS) may take. Default 10 seconds.
    pub connect_timeout: Duration,
    /// How long a whole request may take, connecting and reading the answer included.
    /// Default 30 seconds.
    pub request_timeout: Duration,
    /// How long after the event a failing delivery is retried before it is given up (FAILED).
    /// Default 1 hour; `0` tries once.
    pub retry_for: Duration,
    /// The first retry's delay; each next one doubles, up to `max_retry`. Default 5 seconds.
    pub first_retry: Duration,
    /// The longest delay between two attempts. Default 10 minutes.
    pub max_retry: Duration,
    /// The circuit breaker: after this many failed attempts in a row a webhook pauses for
    /// `breaker_pause` (its deliveries wait; none is dropped). Default 5; `0` never pauses.
    pub breaker_failures: u32,
    /// Default 5 minutes.
    pub breaker_pause: Duration,
    /// Certificates (PEM) trusted for `https` receivers besides the system's roots (a CI server
    /// with its own CA). Default none.
    pub ca_file: Option<PathBuf>,
    /// Deliveries in flight at once on this node (each webhook still gets a repository's events
    /// one at a time). Default 8.
    pub max_concurrent: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            retry_for: Duration::from_secs(3600),
            first_retry: Duration::from_secs(5),
            max_retry: Duration::from_secs(600),
            breaker_failures: 5,
            breaker_pause: Duration::from_secs(300),
            ca_file: None,
            max_concurrent: 8,
        }
    }
}

/// The validated server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Overrides the base URL stored in the data directory (`trove admin settings base-url`).
    pub base_url: Option<BaseUrl>,
    /// Overrides the context path stored in the data directory.
    pub context_path: Option<ContextPath>,
    pub connector: Connector,
    pub trusted_proxies: Vec<IpNet>,
    /// Memory that request bodies read whole (REST JSON, web forms, fetch negotiations) may
    /// hold at once, across all requests; past it, requests get 503 rather than the process
    /// growing. Pushes stream and do not count. Default 256 MiB; `0` disables the cap.
    pub max_buffered_request_bytes: u64,
    /// On stop, how long requests in flight (a clone, a push) may take to finish before their
    /// connections are closed and their git processes end. Default 30 seconds; `0` closes at once.
    pub drain_timeout: Duration,
    pub git: GitSettings,
    pub auth: AuthSettings,
    /// This node's id (`[cluster] node_id`), shown in `/status`, the logs and the metrics.
    /// Default `None`: an id made on first start and kept in `<data_dir>/node-id`.
    pub node_id: Option<NodeId>,
    /// Address of the metrics listener (`[metrics] listen`), serving `/metrics` (Prometheus)
    /// and `/healthz`. Default `None`: no metrics listener.
    pub metrics_listen: Option<SocketAddr>,
    /// PostgreSQL (Data Center mode); `None`: SQLite in `data_dir`.
    pub database: Option<DatabaseSettings>,
    /// Shared repository storage; `None`: `<data_dir>/repositories`.
    pub repositories: Option<PathBuf>,
    pub audit: AuditSettings,
    pub webhooks: WebhookSettings,
    /// The SSH listener (`[ssh]`, `--ssh`). Default `None`: no SSH.
    pub ssh: Option<crate::ssh::SshSettings>,
    /// The pack cache (`[pack_cache]`): on by default, in `<data_dir>/pack-cache`.
    pub pack_cache: crate::pack_cache::PackCacheSettings,
}

impl ServerConfig {
    /// Defaults for everything, with the given data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        ServerConfig {
            listen: DEFAULT_LISTEN.parse().expect("valid default"),
            data_dir: data_dir.into(),
            base_url: None,
            context_path: None,
            connector: Connector::default(),
            trusted_proxies: Vec::new(),
            max_buffered_request_bytes: 256 << 20,
            drain_timeout: Duration::from_secs(30),
            git: GitSettings {
                binary: PathBuf::from("git"),
                max_concurrent_packs: cpus * 2,
                max_inflated_request_bytes: 64 << 20,
                maintenance_after_push: true,
                max_concurrent_maintenance: (cpus / 2).max(1),
            },
            auth: AuthSettings {
                max_failed_logins: 10,
                failed_login_window: Duration::from_secs(300),
                lock: Duration::from_secs(900),
                max_failed_accounts_per_address: 50,
                challenge_bits: 18,
            },
            node_id: None,
            metrics_listen: None,
            database: None,
            repositories: None,
            audit: AuditSettings { retention_days: 90 },
            webhooks: WebhookSettings::default(),
            ssh: None,
            pack_cache: crate::pack_cache::PackCacheSettings::default(),
        }
    }

    /// Reads and validates a `trove.toml`. A relative `data_dir` is taken relative to the file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_toml_str(&text, path)
    }

    /// Parses and validates TOML text; `path` names the file in errors and anchors a relative
    /// `data_dir`.
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Toml { path: path.to_owned(), source })?;
        Self::from_raw_text(raw, path, Some(text))
    }

    /// Validates settings parsed elsewhere; errors name the key but no line.
    pub fn from_raw(raw: RawConfig, path: &Path) -> Result<Self, ConfigError> {
        Self::from_raw_text(raw, path, None)
    }

    fn from_raw_text(raw: RawConfig, path: &Path, text: Option<&str>) -> Result<Self, ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid { path: path.to_owned(), key, message };
        // A key read with its position is refused with its line, when the text is at hand.
        let invalid_at = |key: &'static str, span: std::ops::Range<usize>, message: String| match text {
            Some(t) => ConfigError::InvalidAt { path: path.to_owned(), line: line_of(t, span.start), key, message },
            None => invalid(key, message),
        };
        let base_dir = path.parent().unwrap_or(Path::new("."));
        let mut c =
            ServerConfig::new(raw.data_dir.map(|d| if d.is_relative() { base_dir.join(d) } else { d }).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)));
        if let Some(l) = raw.listen {
            c.listen = l.parse().map_err(|_| invalid("listen", format!("{l:?} is not an address:port like 127.0.0.1:7990")))?;
        }
        if let Some(b) = raw.base_url {
            c.base_url = Some(BaseUrl::parse(&b).map_err(|e| invalid("base_url", e.to_string()))?);
        }
        if let Some(p) = raw.context_path {
            c.context_path = Some(ContextPath::parse(&p).map_err(|e| invalid("context_path", e.to_string()))?);
        }
        if let Some(name) = raw.proxy_name {
            if name.is_empty() || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '[' | ']' | ':')) {
                return Err(invalid("proxy_name", format!("{name:?} is not a host name")));
            }
            c.connector.proxy_name = Some(name.to_ascii_lowercase());
        }
        if let Some(p) = raw.proxy_port {
            if p == 0 {
                return Err(invalid("proxy_port", "0 is not a port; leave the key out to use the request's port".into()));
            }
            c.connector.proxy_port = Some(p);
        }
        if let Some(s) = raw.scheme {
            c.connector.scheme = Some(match s.to_ascii_lowercase().as_str() {
                "http" => Scheme::Http,
                "https" => Scheme::Https,
                _ => return Err(invalid("scheme", format!("{s:?} is not `http` or `https`"))),
            });
        }
        c.connector.secure = raw.secure.unwrap_or(false);
        for t in raw.trusted_proxies.unwrap_or_default() {
            let net = t
                .parse::<IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| invalid("trusted_proxies", format!("{t:?} is not an IP address or CIDR like 10.0.0.0/8")))?;
            c.trusted_proxies.push(net);
        }
        if let Some(b) = raw.git.binary {
            c.git.binary = b;
        }
        if let Some(n) = raw.git.max_concurrent_packs {
            if n == 0 {
                return Err(invalid("git.max_concurrent_packs", "0 would refuse every clone; use at least 1".into()));
            }
            c.git.max_concurrent_packs = n;
        }
        if let Some(n) = raw.git.max_inflated_request_bytes {
            c.git.max_inflated_request_bytes = n;
        }
        if let Some(m) = raw.git.maintenance_after_push {
            c.git.maintenance_after_push = m;
        }
        if let Some(n) = raw.git.max_concurrent_maintenance {
            if n == 0 {
                return Err(invalid("git.max_concurrent_maintenance", "must be at least 1; set maintenance_after_push = false to turn maintenance off".into()));
            }
            c.git.max_concurrent_maintenance = n;
        }
        if let Some(n) = raw.max_buffered_request_bytes {
            c.max_buffered_request_bytes = n;
        }
        if let Some(s) = raw.drain_timeout_secs {
            c.drain_timeout = Duration::from_secs(s);
        }
        if let Some(n) = raw.auth.max_failed_logins {
            c.auth.max_failed_logins = n;
        }
        if let Some(s) = raw.auth.failed_login_window_secs {
            if s == 0 {
                return Err(invalid("auth.failed_login_window_secs", "must be at least 1; set max_failed_logins = 0 to disable".into()));
            }
            c.auth.failed_login_window = Duration::from_secs(s);
        }
        if let Some(s) = raw.auth.lock_secs {
            c.auth.lock = Duration::from_secs(s);
        }
        if let Some(n) = raw.auth.max_failed_accounts_per_address {
            c.auth.max_failed_accounts_per_address = n;
        }
        if let Some(b) = raw.auth.challenge_bits {
            if !(8..=24).contains(&b) {
                return Err(invalid("auth.challenge_bits", format!("{b} is out of range; choose 8 to 24 (18 takes about a second in a browser)")));
            }
            c.auth.challenge_bits = b;
        }
        if let Some(id) = raw.cluster.node_id {
            c.node_id = Some(NodeId::parse(id.get_ref()).map_err(|e| invalid_at("cluster.node_id", id.span(), e.to_string()))?);
        }
        if let Some(l) = raw.metrics.listen {
            let addr = l.get_ref().parse().map_err(|_| {
                invalid_at("metrics.listen", l.span(), format!("{:?} is not an address:port; write for example listen = \"127.0.0.1:9102\"", l.get_ref()))
            })?;
            c.metrics_listen = Some(addr);
        }
        let ssh_tuning = raw.ssh.base_url.is_some()
            || raw.ssh.login_grace_secs.is_some()
            || raw.ssh.max_auth_attempts.is_some()
            || raw.ssh.max_unauthenticated.is_some()
            || raw.ssh.idle_timeout_secs.is_some();
        match raw.ssh.listen {
            Some(l) => {
                let addr = l.parse().map_err(|_| invalid("ssh.listen", format!("{l:?} is not an address:port like 0.0.0.0:7999")))?;
                let mut s = crate::ssh::SshSettings::new(addr);
                if let Some(b) = raw.ssh.base_url {
                    s.base_url = Some(crate::ssh::parse_ssh_base_url(&b).map_err(|m| invalid("ssh.base_url", m))?);
                }
                if let Some(g) = raw.ssh.login_grace_secs {
                    if g == 0 {
                        return Err(invalid("ssh.login_grace_secs", "must be at least 1".into()));
                    }
                    s.login_grace = Duration::from_secs(g);
                }
                if let Some(n) = raw.ssh.max_auth_attempts {
                    if n == 0 {
                        return Err(invalid("ssh.max_auth_attempts", "0 would refuse every login; use at least 1".into()));
                    }
                    s.max_auth_attempts = n;
                }
                if let Some(n) = raw.ssh.max_unauthenticated {
                    if n == 0 {
                        return Err(invalid("ssh.max_unauthenticated", "0 would refuse every connection; use at least 1".into()));
                    }
                    s.max_unauthenticated = n;
                }
                if let Some(t) = raw.ssh.idle_timeout_secs {
                    s.idle_timeout = (t > 0).then(|| Duration::from_secs(t));
                }
                c.ssh = Some(s);
            }
            None if ssh_tuning => {
                return Err(invalid("ssh.listen", "the [ssh] settings need `listen` (for example listen = \"0.0.0.0:7999\") to turn SSH on".into()));
            }
            None => {}
        }
        let anchored = |p: PathBuf| if p.is_relative() { base_dir.join(p) } else { p };
        if let Some(url) = raw.database.url {
            let mut db = DatabaseSettings::new(&url).map_err(|m| invalid("database.url", m))?;
            db.password_file = raw.database.password_file.map(anchored);
            if let Some(n) = raw.database.pool_size {
                if n == 0 {
                    return Err(invalid("database.pool_size", "must be at least 1".into()));
                }
                db.pool_size = n;
            }
            if let Some(s) = raw.database.connect_timeout_secs {
                db.timeout = Duration::from_secs(s.max(1));
            }
            c.database = Some(db);
        } else if raw.database.password_file.is_some() || raw.database.pool_size.is_some() || raw.database.connect_timeout_secs.is_some() {
            return Err(invalid(
                "database.url",
                "[database] has settings but no url; add url = \"postgres://user@host:5432/dbname\", or remove the section to use SQLite".into(),
            ));
        }
        c.repositories = raw.storage.repositories.map(anchored);
        let w = &raw.webhooks;
        let secs = |v: Option<u64>, default: Duration| v.map_or(default, Duration::from_secs);
        c.webhooks.connect_timeout = secs(w.connect_timeout_secs, c.webhooks.connect_timeout);
        c.webhooks.request_timeout = secs(w.request_timeout_secs, c.webhooks.request_timeout);
        c.webhooks.retry_for = secs(w.retry_for_secs, c.webhooks.retry_for);
        c.webhooks.first_retry = secs(w.first_retry_secs, c.webhooks.first_retry);
        c.webhooks.max_retry = secs(w.max_retry_secs, c.webhooks.max_retry);
        c.webhooks.breaker_pause = secs(w.breaker_pause_secs, c.webhooks.breaker_pause);
        if let Some(n) = w.breaker_failures {
            c.webhooks.breaker_failures = n;
        }
        if let Some(n) = w.max_concurrent_deliveries {
            if n == 0 {
                return Err(invalid("webhooks.max_concurrent_deliveries", "must be at least 1".into()));
            }
            c.webhooks.max_concurrent = n;
        }
        if c.webhooks.connect_timeout.is_zero() || c.webhooks.request_timeout.is_zero() {
            return Err(invalid("webhooks.request_timeout_secs", "timeouts must be at least 1 second".into()));
        }
        if let Some(ca) = &w.ca_file {
            c.webhooks.ca_file = Some(base_dir.join(ca));
        }
        if let Some(d) = raw.audit.retention_days {
            c.audit.retention_days = d;
        }
        let pc = raw.pack_cache;
        if let Some(e) = pc.enabled {
            c.pack_cache.enabled = e;
        }
        c.pack_cache.dir = pc.dir.map(anchored);
        if let Some(n) = pc.max_bytes {
            if n == 0 {
                return Err(invalid("pack_cache.max_bytes", "0 would keep nothing; set enabled = false to turn the pack cache off".into()));
            }
            c.pack_cache.max_bytes = n;
        }
        if let Some(a) = pc.max_age_secs {
            c.pack_cache.max_age = (a > 0).then(|| Duration::from_secs(a));
        }
        Ok(c)
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServerConfig, ConfigError> {
        ServerConfig::from_toml_str(text, Path::new("/etc/trove/trove.toml"))
    }

    #[test]
    fn database_and_storage_are_read_anchored_and_checked() {
        let c = parse(
            r#"
            [database]
            url = "postgres://trove@db.internal:5432/trove"
            password_file = "db-password"
            pool_size = 4
            connect_timeout_secs = 2
            [storage]
            repositories = "/mnt/shared/repositories"
            "#,
        )
        .unwrap();
        let db = c.database.unwrap();
        assert_eq!(db.url, "postgres://trove@db.internal:5432/trove");
        assert_eq!(db.password_file.as_deref(), Some(Path::new("/etc/trove/db-password")), "relative to the file");
        assert_eq!((db.pool_size, db.timeout), (4, Duration::from_secs(2)));
        assert_eq!(c.repositories.as_deref(), Some(Path::new("/mnt/shared/repositories")));
        assert!(parse("").unwrap().database.is_none(), "SQLite unless configured");
        for (text, key, says) in [
            ("[database]\nurl = \"mysql://x@h/db\"", "database.url", "not a PostgreSQL URL"),
            ("[database]\nurl = \"postgres://trove@db\"", "database.url", "names no database"),
            ("[database]\nurl = \"postgres:///trove\"", "database.url", "names no host"),
            ("[database]\nurl = \"postgres://t@h/d\"\npool_size = 0", "database.pool_size", "at least 1"),
            ("[database]\npool_size = 4", "database.url", "no url"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(says), "{text}: {e}");
        }
        assert!(url_has_password("postgres://trove:secret@db/trove"));
        assert!(!url_has_password("postgres://trove@db/trove"));
        assert!(!url_has_password("postgres://db:5432/trove"));
    }

    #[test]
    fn an_empty_file_gives_the_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:7990");
        assert_eq!(c.data_dir, PathBuf::from("trove-data"));
        assert!(c.base_url.is_none() && c.context_path.is_none());
        assert_eq!(c.connector, Connector::default());
        assert_eq!(c.auth.max_failed_logins, 10);
        assert_eq!(c.git.max_inflated_request_bytes, 64 << 20);
        assert!(c.git.maintenance_after_push);
        assert_eq!(c.audit.retention_days, 90);
    }

    #[test]
    fn the_pack_cache_is_on_by_default_and_its_keys_are_read_and_checked() {
        let d = parse("").unwrap().pack_cache;
        assert!(d.enabled && d.dir.is_none());
        assert_eq!((d.max_bytes, d.max_age), (2 << 30, Some(Duration::from_secs(3600))));
        let c = parse("[pack_cache]\nenabled = false\ndir = \"cache\"\nmax_bytes = 1000\nmax_age_secs = 0\n").unwrap().pack_cache;
        assert!(!c.enabled);
        assert_eq!(c.dir.as_deref(), Some(Path::new("/etc/trove/cache")), "relative to the file");
        assert_eq!((c.max_bytes, c.max_age), (1000, None), "0 keeps answers until evicted");
        let e = parse("[pack_cache]\nmax_bytes = 0\n").unwrap_err().to_string();
        assert!(e.contains("pack_cache.max_bytes") && e.contains("enabled = false"), "{e}");
        let e = parse("[pack_cache]\nsize = 3\n").unwrap_err().to_string();
        assert!(e.contains("size"), "{e}");
    }

    #[test]
    fn audit_retention_is_read_and_zero_keeps_everything() {
        assert_eq!(parse("[audit]\nretention_days = 0\n").unwrap().audit.retention_days, 0);
        assert_eq!(parse("[audit]\nretention_days = 365\n").unwrap().audit.retention_days, 365);
        let e = parse("[audit]\nretention_days = -1\n").unwrap_err().to_string();
        assert!(e.contains("retention_days"), "{e}");
        let e = parse("[audit]\nretention = 3\n").unwrap_err().to_string();
        assert!(e.contains("retention"), "{e}");
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            r#"
            listen = "0.0.0.0:7991"
            data_dir = "data"
            base_url = "https://mycompany.com/stash/"
            context_path = "/stash"
            proxy_name = "MyCompany.com"
            proxy_port = 443
            scheme = "https"
            secure = true
            trusted_proxies = ["127.0.0.1", "10.0.0.0/8", "::1"]
            [git]
            binary = "/usr/bin/git"
            max_concurrent_packs = 3
            max_inflated_request_bytes = 1000
            maintenance_after_push = false
            [auth]
            max_failed_logins = 0
            failed_login_window_secs = 60
            "#,
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:7991");
        assert_eq!(c.data_dir, PathBuf::from("/etc/trove/data"));
        assert_eq!(c.base_url.unwrap().as_str(), "https://mycompany.com/stash");
        assert_eq!(c.context_path.unwrap().as_str(), "/stash");
        assert_eq!(c.connector.proxy_name.as_deref(), Some("mycompany.com"));
        assert_eq!(c.connector.proxy_port, Some(443));
        assert_eq!(c.connector.scheme, Some(Scheme::Https));
        assert!(c.connector.secure);
        assert_eq!(c.trusted_proxies.len(), 3);
        assert_eq!(c.git.binary, PathBuf::from("/usr/bin/git"));
        assert_eq!(c.git.max_concurrent_packs, 3);
        assert_eq!(c.git.max_inflated_request_bytes, 1000);
        assert!(!c.git.maintenance_after_push);
        assert_eq!(c.auth.max_failed_logins, 0);
        assert_eq!(c.auth.failed_login_window, Duration::from_secs(60));
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        let cases: &[(&str, &str)] = &[
            ("listen = \"7990\"", "listen"),
            ("base_url = \"mycompany.com\"", "base_url"),
            ("context_path = \"stash\"", "context_path"),
            ("proxy_name = \"a b\"", "proxy_name"),
            ("proxy_port = 0", "proxy_port"),
            ("scheme = \"ftp\"", "scheme"),
            ("trusted_proxies = [\"everyone\"]", "trusted_proxies"),
            ("[git]\nmax_concurrent_packs = 0", "git.max_concurrent_packs"),
            ("[auth]\nfailed_login_window_secs = 0", "auth.failed_login_window_secs"),
            ("lisen = \"x\"", "lisen"),
            ("proxy_port = 70000", "proxy_port"),
        ];
        for (text, key) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text:?} gave {err}");
            assert!(err.contains("/etc/trove/trove.toml"), "{err}");
        }
    }

    #[test]
    fn ssh_is_off_unless_listen_is_set_and_its_limits_are_checked() {
        assert!(parse("").unwrap().ssh.is_none(), "off by default");
        let c = parse("[ssh]\nlisten = \"0.0.0.0:7999\"\nbase_url = \"ssh://git@git.example.com:7999/\"\nlogin_grace_secs = 10\nmax_auth_attempts = 3\nmax_unauthenticated = 5\nidle_timeout_secs = 0\n").unwrap();
        let s = c.ssh.unwrap();
        assert_eq!(s.listen.to_string(), "0.0.0.0:7999");
        assert_eq!(s.base_url.as_deref(), Some("ssh://git@git.example.com:7999"));
        assert_eq!((s.login_grace.as_secs(), s.max_auth_attempts, s.max_unauthenticated, s.idle_timeout), (10, 3, 5, None));
        let d = parse("[ssh]\nlisten = \"127.0.0.1:7999\"\n").unwrap().ssh.unwrap();
        assert_eq!((d.login_grace.as_secs(), d.max_auth_attempts, d.max_unauthenticated, d.idle_timeout.map(|t| t.as_secs())), (30, 6, 64, Some(600)));
        for (text, want) in [
            ("[ssh]\nmax_auth_attempts = 3\n", "need `listen`"),
            ("[ssh]\nlisten = \"7999\"\n", "is not an address:port"),
            ("[ssh]\nlisten = \"127.0.0.1:7999\"\nmax_auth_attempts = 0\n", "0 would refuse every login"),
            ("[ssh]\nlisten = \"127.0.0.1:7999\"\nbase_url = \"https://x\"\n", "must start with ssh://"),
            ("[ssh]\nlisten = \"127.0.0.1:7999\"\nport = 22\n", "unknown field"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn node_id_and_metrics_listener_are_read_and_refused_with_file_and_line() {
        let c = parse("[cluster]\nnode_id = \"dc1-node-2\"\n[metrics]\nlisten = \"127.0.0.1:9102\"\n").unwrap();
        assert_eq!(c.node_id.unwrap().as_str(), "dc1-node-2");
        assert_eq!(c.metrics_listen.unwrap().to_string(), "127.0.0.1:9102");
        let c = parse("").unwrap();
        assert!(c.node_id.is_none() && c.metrics_listen.is_none(), "both off by default");
        let cases: &[(&str, &str)] = &[
            ("listen = \"127.0.0.1:7990\"\n\n[cluster]\nnode_id = \"node 2\"\n", "/etc/trove/trove.toml:4: `cluster.node_id`: \"node 2\" is not a node id"),
            ("[cluster]\nnode_id = \"\"\n", "/etc/trove/trove.toml:2: `cluster.node_id`"),
            ("[metrics]\n\nlisten = \"9102\"\n", "/etc/trove/trove.toml:3: `metrics.listen`: \"9102\" is not an address:port"),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.starts_with(want), "{text:?} gave {err}");
        }
    }

    #[test]
    fn the_example_in_docs_server_md_is_valid_and_mentions_every_key() {
        let doc = include_str!("../../../docs/server.md");
        let section = doc.split("## trove.toml").nth(1).expect("docs/server.md has a trove.toml section");
        let example = section.split("```toml").nth(1).and_then(|s| s.split("```").next()).expect("a toml example");
        parse(example).unwrap();
        let keys = [
            "listen",
            "data_dir",
            "base_url",
            "context_path",
            "proxy_name",
            "proxy_port",
            "scheme",
            "secure",
            "trusted_proxies",
            "max_buffered_request_bytes",
            "drain_timeout_secs",
            "[git]",
            "binary",
            "max_concurrent_packs",
            "max_inflated_request_bytes",
            "maintenance_after_push",
            "max_concurrent_maintenance",
            "[auth]",
            "max_failed_logins",
            "failed_login_window_secs",
            "lock_secs",
            "max_failed_accounts_per_address",
            "challenge_bits",
            "[cluster]",
            "node_id",
            "[metrics]",
            "[audit]",
            "retention_days",
            "[pack_cache]",
            "enabled",
            "max_bytes",
            "max_age_secs",
        ];
        for key in keys {
            assert!(example.contains(key), "docs/server.md's example lacks {key}");
        }
    }
}
