//! One validated gateway model, compiled from either front-end (our TOML or Apache httpd.conf).
//!
//! Front-ends produce `Diagnostics` (errors, warnings, notes, each with file and line) and a
//! `GatewayConfig`; a config with any error is never run.

pub mod apache;
mod apache_modules;
pub mod toml;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::access::AccessPolicy;

/// Where a setting came from, for messages: `file:line`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Note,
    /// A directive of a module trove does not implement that cannot change a proxied request,
    /// listed once (file, line of its first use, module, count); shown when the gateway starts.
    Ignored,
    Warning,
    Error,
}

/// One finding about a config file: what is wrong and how to fix it.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub severity: Severity,
    pub origin: Origin,
    pub message: String,
    pub fix: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Note => "note",
            Severity::Ignored => "ignored",
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{}: {sev}: {}", self.origin, self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, " — {fix}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, severity: Severity, origin: &Origin, message: impl Into<String>, fix: Option<String>) {
        self.items.push(Diagnostic { severity, origin: origin.clone(), message: message.into(), fix });
    }
    pub fn error(&mut self, origin: &Origin, message: impl Into<String>, fix: impl Into<String>) {
        self.push(Severity::Error, origin, message, Some(fix.into()));
    }
    pub fn warn(&mut self, origin: &Origin, message: impl Into<String>, fix: impl Into<String>) {
        self.push(Severity::Warning, origin, message, Some(fix.into()));
    }
    pub fn note(&mut self, origin: &Origin, message: impl Into<String>) {
        self.push(Severity::Note, origin, message, None);
    }
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.severity == Severity::Error)
    }
}

/// Failure to produce a runnable config: every error found, not only the first.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}", .diagnostics.errors().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid { diagnostics: Diagnostics },
}

/// The validated model the runtime uses.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub source: PathBuf,
    pub listeners: Vec<ListenerConfig>,
    /// Virtual servers in config order; for an address, the first that listens there is the default.
    pub servers: Vec<VirtualServer>,
    pub limits: ConnLimits,
    pub log: LogConfig,
    /// Optional admin listener serving `/metrics` (Prometheus text format). `None` disables it.
    pub admin_listen: Option<SocketAddr>,
    pub tls_sites: Vec<TlsSite>,
    /// Seconds SIGTERM waits for in-flight requests before closing. Default 30.
    pub drain_timeout: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ListenerConfig {
    pub addr: SocketAddr,
    /// `true` when any virtual server on this address has TLS on.
    pub tls: bool,
    pub origin: Origin,
}

/// Connection-level settings (Apache `Timeout`, `KeepAlive*`, plus a header read timeout).
#[derive(Clone, Debug, PartialEq)]
pub struct ConnLimits {
    /// Apache `Timeout`: default for upstream I/O when neither `timeout=` nor `ProxyTimeout` is set. Default 60 s.
    pub timeout: Duration,
    /// Apache `KeepAlive`. Default on.
    pub keep_alive: bool,
    /// Apache `KeepAliveTimeout`: idle time between requests on a connection. Default 5 s.
    pub keep_alive_timeout: Duration,
    /// Apache `MaxKeepAliveRequests`; `0` means unlimited. Default 100.
    pub max_keep_alive_requests: u32,
    /// Time a downstream has to send a complete request head; then 408 and close. Default 20 s
    /// (Apache's mod_reqtimeout `header=20-40`).
    pub header_read_timeout: Duration,
    /// Largest request head accepted; larger gets 431. Default 64 KiB.
    pub max_header_bytes: usize,
    /// The request body's deadline and minimum rate (Apache's mod_reqtimeout `body=`).
    /// Default `body=20,MinRate=500`, Apache's own default.
    pub body_read: BodyRate,
}

/// A deadline for receiving a request body that grows with the bytes received, as Apache's
/// mod_reqtimeout `body=timeout[-maxtimeout][,MinRate=rate]`
/// (<https://httpd.apache.org/docs/2.4/mod/mod_reqtimeout.html>): the body has `timeout` to
/// start with, and every `min_rate` bytes received add one second, up to `max_timeout`. A slow
/// but steady upload (a multi-GB git push at any rate above `min_rate`) is never cut; a body
/// that trickles below the rate is, with `408` (or a close, once the response has begun).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyRate {
    /// Time allowed before the extensions. `0` turns the body deadline off (only the stall
    /// limit, `timeout`, applies). Default 20 s.
    pub timeout: Duration,
    /// Bytes per second that keep the deadline moving: each `min_rate` bytes add 1 s. `0`
    /// means no extension: `timeout` is then the time for the whole body. Default 500.
    pub min_rate: u64,
    /// Upper bound on the extended deadline, counted from the body's start. `0` means none
    /// (Apache's default: only `LimitRequestBody` bounds a fast body). Default none.
    pub max_timeout: Duration,
}

impl Default for BodyRate {
    fn default() -> Self {
        BodyRate { timeout: Duration::from_secs(20), min_rate: 500, max_timeout: Duration::ZERO }
    }
}

impl BodyRate {
    /// The deadline of a body that started at `start` and of which `received` bytes have
    /// arrived; `None` when off. As mod_reqtimeout's `extend_timeout`, the extension is
    /// `received / min_rate` seconds, fractions included.
    pub fn deadline(&self, start: tokio::time::Instant, received: u64) -> Option<tokio::time::Instant> {
        if self.timeout.is_zero() {
            return None;
        }
        let extra = if self.min_rate == 0 {
            Duration::ZERO
        } else {
            Duration::from_micros((received as u128 * 1_000_000 / self.min_rate as u128).min(u64::MAX as u128) as u64)
        };
        let mut allowed = self.timeout.saturating_add(extra);
        if !self.max_timeout.is_zero() {
            allowed = allowed.min(self.max_timeout.max(self.timeout));
        }
        // Far enough to be "never" without overflowing `Instant`.
        Some(start.checked_add(allowed).unwrap_or_else(|| start + Duration::from_secs(100 * 365 * 86_400)))
    }
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            timeout: Duration::from_secs(60),
            keep_alive: true,
            keep_alive_timeout: Duration::from_secs(5),
            max_keep_alive_requests: 100,
            header_read_timeout: Duration::from_secs(20),
            max_header_bytes: 64 * 1024,
            body_read: BodyRate::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum LogDest {
    Stderr,
    Stdout,
    File(PathBuf),
    Off,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// Access log destination. Default stdout.
    pub access: LogDest,
    /// Apache `LogFormat` string. Default `combined`.
    pub access_format: String,
    /// Error log destination. Default stderr.
    pub error: LogDest,
    /// Apache `LogLevel`. Default `warn`.
    pub level: String,
    /// `--log-format json`: one JSON object per access-log line instead of `access_format`.
    pub json: bool,
}

pub const COMBINED: &str = "%h %l %u %t \"%r\" %>s %O \"%{Referer}i\" \"%{User-Agent}i\"";
pub const COMMON: &str = "%h %l %u %t \"%r\" %>s %O";

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { access: LogDest::Stdout, access_format: COMBINED.to_string(), error: LogDest::Stderr, level: "warn".into(), json: false }
    }
}

/// `ProxyVia`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Off,
    On,
    Full,
    Block,
}

/// A virtual server: Apache's main server or one `<VirtualHost>`.
#[derive(Clone, Debug)]
pub struct VirtualServer {
    /// Addresses this server answers on; empty = every listener (the main server).
    pub addrs: Vec<VhostAddr>,
    pub server_name: Option<String>,
    pub aliases: Vec<String>,
    pub routes: Vec<Route>,
    pub reverse: Vec<ReverseRule>,
    pub cookie_paths: Vec<(String, String)>,
    pub cookie_domains: Vec<(String, String)>,
    /// `ProxyPreserveHost`. Default off: the origin sees its own host:port.
    pub preserve_host: bool,
    /// `ProxyAddHeaders`. Default on: X-Forwarded-For/Host/Server.
    pub add_forwarded: bool,
    /// Trove's addition, default on: X-Forwarded-Proto, X-Forwarded-Port and RFC 7239 `Forwarded`.
    pub add_forwarded_proto: bool,
    /// Downstream addresses whose own forwarding headers (`Forwarded`, `X-Forwarded-*`,
    /// `X-Real-IP`) are kept and appended to, because they are proxies of ours (mod_remoteip's
    /// `RemoteIPTrustedProxy`, nginx's `set_real_ip_from`). From anyone else those headers are
    /// removed before ours are added (RFC 7239 §8.1): a client cannot speak for a proxy. Default
    /// empty: nobody in front of the gateway is believed.
    pub trusted_downstream: Vec<ipnet::IpNet>,
    pub via: Via,
    /// `<Proxy …>` sections in order.
    pub proxy_access: Vec<ProxySection>,
    /// Request header edits (mod_headers `RequestHeader set|unset|append|add`).
    pub request_headers: Vec<HeaderEdit>,
    /// Response header edits (mod_headers `Header [always] set|unset|append|add`).
    pub response_headers: Vec<HeaderEdit>,
    /// TLS: index into `GatewayConfig::tls_sites` when `SSLEngine on`.
    pub tls_site: Option<usize>,
    /// Answer every request with a 301 to this https base (scheme://host[:port]). Default off.
    pub redirect_https: Option<String>,
    /// `Strict-Transport-Security` max-age in seconds on TLS responses; `None` (default) sends none.
    pub hsts: Option<u64>,
    pub origin: Origin,
}

impl VirtualServer {
    pub fn new(origin: Origin) -> Self {
        VirtualServer {
            addrs: vec![],
            server_name: None,
            aliases: vec![],
            routes: vec![],
            reverse: vec![],
            cookie_paths: vec![],
            cookie_domains: vec![],
            preserve_host: false,
            add_forwarded: true,
            add_forwarded_proto: true,
            trusted_downstream: vec![],
            via: Via::Off,
            proxy_access: vec![],
            request_headers: vec![],
            response_headers: vec![],
            tls_site: None,
            redirect_https: None,
            hsts: None,
            origin,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct VhostAddr {
    /// `None` for `*` / `_default_`.
    pub ip: Option<std::net::IpAddr>,
    /// `None` for any port.
    pub port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum HeaderEditOp {
    Set,
    Unset,
    Append,
    Add,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HeaderEdit {
    pub op: HeaderEditOp,
    pub name: http::HeaderName,
    pub value: Option<http::HeaderValue>,
}

/// A `<Proxy pattern>` section: the access rules for origin URLs it matches.
#[derive(Clone, Debug)]
pub struct ProxySection {
    /// `*` wildcard pattern or a URL prefix.
    pub pattern: String,
    pub policy: AccessPolicy,
}

/// One `ProxyPass`.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    /// The local path prefix, as written.
    pub path: String,
    /// `None` for `ProxyPass /path !` (exclusion).
    pub upstream: Option<Upstream>,
    /// `nocanon`: send the raw remainder instead of the canonicalised one.
    pub nocanon: bool,
    /// `noquery`: drop the query string.
    pub noquery: bool,
    /// Several nodes behind this route (Apache's `balancer://`, TOML `upstreams`); `upstream`
    /// is then the first member's, for what only needs one (access sections, the rendering).
    /// `None` (the default) for one origin.
    pub balancer: Option<Balancer>,
    pub origin: Origin,
}

/// Several upstream nodes serving one route, as mod_proxy_balancer runs them
/// (<https://httpd.apache.org/docs/2.4/mod/mod_proxy_balancer.html>).
#[derive(Clone, Debug, PartialEq)]
pub struct Balancer {
    /// `balancer://mycluster` (httpd.conf) or `route /stash at gw.toml:12` (TOML): names the
    /// balancer in logs and metrics, and keeps its nodes' health across a reload.
    pub name: String,
    /// The URL the route names (`balancer://mycluster/stash`), matched by `<Proxy>` sections.
    pub url: String,
    /// `lbmethod`. Default byrequests.
    pub method: LbMethod,
    pub members: Vec<Member>,
    /// `maxattempts`: how many other nodes a request may be retried on when that is safe.
    /// Default: the number of members less one.
    pub max_attempts: usize,
}

/// How a balancer chooses a node for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LbMethod {
    /// Weighted round robin by `loadfactor` (mod_lbmethod_byrequests).
    ByRequests,
    /// The node with the fewest requests in flight; ties by requests (mod_lbmethod_bybusyness).
    ByBusyness,
}

/// One node of a balancer (`BalancerMember`, one entry of TOML `upstreams`).
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// Where the node is, with the route's path joined (every member has the same path).
    pub upstream: Upstream,
    /// `loadfactor` 1-100: its share of the requests under byrequests. Default 1.
    pub loadfactor: u32,
    /// `route`: the node's name in sticky sessions (accepted; trove keeps no sticky sessions).
    pub route: Option<String>,
    /// `status=+H`: used only while no other node is usable. Default off.
    pub hot_standby: bool,
    /// `status=+D`: never used. Default off.
    pub disabled: bool,
    /// `status=+N` / TOML `drain = true`: no new requests; those in flight finish. Default off.
    pub drain: bool,
    /// Active health check; `None` (the default): none, and a failed connect keeps the node
    /// out for `upstream.retry`.
    pub health: Option<HealthCheck>,
}

/// An active health check of one node (mod_proxy_hcheck's `hc*` parameters).
#[derive(Clone, Debug, PartialEq)]
pub struct HealthCheck {
    /// `hcmethod`: `GET`, `HEAD`, `OPTIONS` (a 2xx or 3xx answer passes) or `TCP` (a connect).
    pub method: HcMethod,
    /// `hcuri`: the path asked, as sent. Default `/`.
    pub path: String,
    /// `hcinterval`: time between checks. Default 30 s.
    pub interval: Duration,
    /// `hcpasses`: consecutive passes that bring a node that is down back. Default 1.
    pub passes: u32,
    /// `hcfails`: consecutive failures that take a node down. Default 1.
    pub fails: u32,
    /// Time one check may take, connect included. Default the node's `timeout`.
    pub timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HcMethod {
    Tcp,
    Get,
    Head,
    Options,
}

impl HcMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HcMethod::Tcp => "TCP",
            HcMethod::Get => "GET",
            HcMethod::Head => "HEAD",
            HcMethod::Options => "OPTIONS",
        }
    }
}

/// Where and how to reach an origin (one Apache "worker").
#[derive(Clone, Debug, PartialEq)]
pub struct Upstream {
    /// The URL as written, e.g. `http://localhost:7990/stash`.
    pub url: String,
    pub host: String,
    pub port: u16,
    /// Path part of the URL (may be empty).
    pub path: String,
    /// `connectiontimeout`: default = `timeout`.
    pub connect_timeout: Duration,
    /// `timeout`: per read/write with the origin. Default `ProxyTimeout`, else `Timeout`.
    pub timeout: Duration,
    /// `retry`: how long a balancer node whose connect failed is left out (when it has no
    /// active health check); `0` means it is tried again on the next request. Default 60 s.
    /// A single origin is tried on every request whatever this says.
    pub retry: Duration,
    /// `keepalive`: TCP SO_KEEPALIVE on origin connections. Default off.
    pub tcp_keepalive: bool,
    /// `disablereuse`: a new origin connection per request. Default off.
    pub disable_reuse: bool,
    /// `ttl`: idle pooled connections older than this are closed. `None` = no limit (default 60 s in practice).
    pub ttl: Option<Duration>,
    /// `max`: most connections to this origin at once; `0` = unlimited (default).
    pub max: usize,
    /// `upgrade=websocket|ANY`: tunnel after 101. Default websocket (Apache needs it set; we allow it).
    pub upgrade: Option<String>,
    /// `host` or `host:port` (without `:80`): the origin's `Host` unless the downstream's is
    /// kept. Made once here, so a request only takes a reference to it.
    pub authority: http::HeaderValue,
}

impl Upstream {
    /// The `Host` header for an origin (`host` as `split_origin_url` gives it: an IPv6
    /// address keeps its brackets).
    pub fn authority_of(host: &str, port: u16) -> Result<http::HeaderValue, String> {
        let a = if port == 80 { host.to_string() } else { format!("{host}:{port}") };
        http::HeaderValue::from_maybe_shared(bytes::Bytes::from(a)).map_err(|_| format!("origin host '{host}' cannot be a Host header"))
    }
}

/// One `ProxyPassReverse public origin`.
#[derive(Clone, Debug, PartialEq)]
pub struct ReverseRule {
    pub public_path: String,
    pub origin_url: String,
}

/// TLS material for one or more virtual servers (parsed; loading is the tls module's job).
#[derive(Clone, Debug, PartialEq)]
pub struct TlsSite {
    pub names: Vec<String>,
    pub cert: PathBuf,
    pub key: Option<PathBuf>,
    pub chain: Option<PathBuf>,
    pub protocol: Option<String>,
    pub cipher_suite: Option<String>,
    pub passphrase: PassphraseSetting,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq)]
pub enum PassphraseSetting {
    None,
    Builtin,
    Exec(PathBuf),
    File(PathBuf),
    Env(String),
}

/// Parse a config file by its extension (`.toml` → TOML, anything else → Apache httpd.conf).
pub fn load(path: &Path) -> Result<(GatewayConfig, Diagnostics), ConfigError> {
    let is_toml = path.extension().is_some_and(|e| e == "toml");
    let (cfg, diags) = if is_toml { toml::load(path)? } else { apache::load(path)? };
    if diags.has_errors() {
        return Err(ConfigError::Invalid { diagnostics: diags });
    }
    Ok((cfg, diags))
}

/// Invariants of the model, checked once after either reader, so that TOML and httpd.conf
/// cannot differ in what they let through: a listener address given twice is an error at its
/// second place (the second one is dropped, so the rest can still be checked); port 0 (the OS
/// chooses) may be given any number of times.
pub(crate) fn validate(cfg: &mut GatewayConfig, d: &mut Diagnostics) {
    let mut seen: Vec<SocketAddr> = Vec::new();
    cfg.listeners.retain(|l| {
        // Port 0 asks the OS for a free port each time: two of them are two listeners.
        if l.addr.port() != 0 && seen.contains(&l.addr) {
            d.error(
                &l.origin,
                format!("the listen address {} is given twice", l.addr),
                "remove the second one (one listener serves every site on its address)",
            );
            return false;
        }
        seen.push(l.addr);
        true
    });
    // A balancer's nodes answer the same paths: a retry on another node sends the same
    // request target, and only `Host` changes.
    for v in &mut cfg.servers {
        v.routes.retain(|r| {
            let Some(b) = &r.balancer else { return true };
            if b.members.is_empty() {
                d.error(
                    &r.origin,
                    format!("route {} goes to {}, which has no members", r.path, b.name),
                    "add BalancerMember lines (or upstreams) naming its nodes",
                );
                return false;
            }
            let first = &b.members[0].upstream;
            if let Some(m) = b.members.iter().find(|m| m.upstream.path != first.path) {
                d.error(
                    &r.origin,
                    format!(
                        "the nodes of {} have different paths ({} and {}), so a request retried on another node would change",
                        b.name, first.url, m.upstream.url
                    ),
                    "give every node the same path (write the nodes as http://host:port and the path once in the route)",
                );
                return false;
            }
            true
        });
    }
}

/// Parse a duration as Apache writes it: seconds, or with an `ms` suffix.
pub(crate) fn parse_apache_duration(s: &str) -> Option<Duration> {
    if let Some(ms) = s.strip_suffix("ms") {
        return ms.parse::<u64>().ok().map(Duration::from_millis);
    }
    let s = s.strip_suffix('s').unwrap_or(s);
    s.parse::<u64>().ok().map(Duration::from_secs)
}

/// Split `http://host[:port][/path]` into (host, port, path). Only `http` origins are supported.
pub(crate) fn split_origin_url(url: &str) -> Result<(String, u16, String), String> {
    use trove_http::{HttpUrl, UrlError};
    let u = HttpUrl::parse(url).map_err(|e| match e {
        UrlError::Whitespace | UrlError::NoScheme => format!("'{url}' is not an absolute http:// URL"),
        UrlError::Scheme => format!("origin scheme of '{url}' is not supported; use http:// (TLS to the origin is not needed on loopback, as the seed notes)"),
        UrlError::Userinfo | UrlError::NoHost | UrlError::Host => format!("origin URL '{url}' has no usable host"),
        UrlError::Ipv6Unclosed => format!("bad IPv6 literal in '{url}'"),
        UrlError::AfterIpv6 => format!("bad authority in '{url}'"),
        UrlError::Port => format!("bad port in '{url}'"),
    })?;
    if u.scheme() != "http" {
        return Err(format!("origin scheme of '{url}' is not supported; use http:// (TLS to the origin is not needed on loopback, as the seed notes)"));
    }
    if u.has_query() {
        return Err(format!("origin URL '{url}' may not carry a query"));
    }
    Ok((u.host().to_owned(), u.port_or_default(), u.path().to_owned()))
}

impl GatewayConfig {
    /// A readable normalised rendering, printed by `trove gateway --check`.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "# normalised from {}", self.source.display());
        for l in &self.listeners {
            let _ = writeln!(s, "listen {}{}", l.addr, if l.tls { " tls" } else { "" });
        }
        let _ = writeln!(
            s,
            "timeout {}s keepalive {} keepalive_timeout {}s max_keepalive_requests {} header_read_timeout {}s body_read_timeout {}s body_min_rate {} body_read_timeout_max {}s",
            self.limits.timeout.as_secs(),
            if self.limits.keep_alive { "on" } else { "off" },
            self.limits.keep_alive_timeout.as_secs(),
            self.limits.max_keep_alive_requests,
            self.limits.header_read_timeout.as_secs(),
            self.limits.body_read.timeout.as_secs(),
            self.limits.body_read.min_rate,
            self.limits.body_read.max_timeout.as_secs()
        );
        for (i, v) in self.servers.iter().enumerate() {
            let addrs: Vec<String> = v
                .addrs
                .iter()
                .map(|a| {
                    format!("{}:{}", a.ip.map(|i| i.to_string()).unwrap_or_else(|| "*".into()), a.port.map(|p| p.to_string()).unwrap_or_else(|| "*".into()))
                })
                .collect();
            let _ = writeln!(
                s,
                "server #{i} ({}) name={} aliases={:?} addrs=[{}] tls={} preserve_host={} add_forwarded={} forwarded_proto={} via={:?}",
                v.origin,
                v.server_name.as_deref().unwrap_or("-"),
                v.aliases,
                addrs.join(", "),
                v.tls_site.is_some(),
                v.preserve_host,
                v.add_forwarded,
                v.add_forwarded_proto,
                v.via
            );
            for r in &v.routes {
                match &r.upstream {
                    Some(u) => {
                        if let Some(b) = &r.balancer {
                            let nodes: Vec<String> = b
                                .members
                                .iter()
                                .map(|m| {
                                    let mut n = format!("{} loadfactor={}", m.upstream.url, m.loadfactor);
                                    for (on, flag) in [(m.hot_standby, " standby"), (m.disabled, " disabled"), (m.drain, " drain")] {
                                        if on {
                                            n.push_str(flag);
                                        }
                                    }
                                    if let Some(h) = &m.health {
                                        n.push_str(&format!(
                                            " health={} {} every {}s fails={} passes={}",
                                            h.method.as_str(),
                                            h.path,
                                            h.interval.as_secs(),
                                            h.fails,
                                            h.passes
                                        ));
                                    }
                                    n
                                })
                                .collect();
                            let _ = writeln!(s, "  balancer {} {:?} max_attempts={} nodes=[{}]", b.name, b.method, b.max_attempts, nodes.join(", "));
                        }
                        let _ = writeln!(
                            s,
                            "  route {} -> {} connect_timeout={}ms timeout={}ms reuse={} max={}{}{}",
                            r.path,
                            u.url,
                            u.connect_timeout.as_millis(),
                            u.timeout.as_millis(),
                            !u.disable_reuse,
                            u.max,
                            if r.nocanon { " nocanon" } else { "" },
                            if r.noquery { " noquery" } else { "" }
                        );
                    }
                    None => {
                        let _ = writeln!(s, "  route {} -> ! (not proxied)", r.path);
                    }
                }
            }
            for rr in &v.reverse {
                let _ = writeln!(s, "  reverse {} <- {}", rr.public_path, rr.origin_url);
            }
            for (a, b) in &v.cookie_paths {
                let _ = writeln!(s, "  cookie-path {a} -> {b}");
            }
            for (a, b) in &v.cookie_domains {
                let _ = writeln!(s, "  cookie-domain {a} -> {b}");
            }
            for p in &v.proxy_access {
                let _ = writeln!(s, "  access <Proxy {}> {}", p.pattern, p.policy.describe());
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_deadline_table() {
        let start = tokio::time::Instant::now();
        let s = Duration::from_secs;
        let rate = |t: u64, r: u64, m: u64| BodyRate { timeout: s(t), min_rate: r, max_timeout: s(m) };
        // (setting, bytes received, time allowed from the start; None = no deadline)
        let rows: &[(BodyRate, u64, Option<Duration>)] = &[
            (rate(20, 500, 0), 0, Some(s(20))),
            (rate(20, 500, 0), 500, Some(s(21))),
            (rate(20, 500, 0), 250, Some(Duration::from_millis(20_500))),
            (rate(20, 500, 0), 5_000_000_000, Some(s(10_000_020))),
            (rate(20, 0, 0), 1_000_000, Some(s(20))),
            (rate(10, 1000, 30), 5_000, Some(s(15))),
            (rate(10, 1000, 30), 50_000, Some(s(30))),
            (rate(0, 500, 0), 0, None),
            (rate(0, 500, 30), 1_000, None),
        ];
        for (r, received, want) in rows {
            assert_eq!(r.deadline(start, *received).map(|d| d - start), *want, "{r:?} after {received} bytes");
        }
        // No overflow: an absurd extension is just far away.
        assert!(rate(1, 1, 0).deadline(start, u64::MAX).is_some_and(|d| d - start > s(1_000_000_000)));
    }

    #[test]
    fn origin_authority_brackets_ipv6_and_drops_port_80() {
        let a = |url: &str| {
            let (h, p, _) = split_origin_url(url).unwrap();
            Upstream::authority_of(&h, p).unwrap()
        };
        assert_eq!(a("http://localhost:7990/stash"), "localhost:7990");
        assert_eq!(a("http://origin.example/"), "origin.example");
        assert_eq!(a("http://[::1]:7990/"), "[::1]:7990");
        assert_eq!(a("http://[::1]/"), "[::1]");
    }

    #[test]
    fn origin_url_edge_cases_and_their_messages() {
        type Split = (&'static str, u16, &'static str);
        let cases: &[(&str, Result<Split, &str>)] = &[
            ("http://localhost:7990/stash", Ok(("localhost", 7990, "/stash"))),
            ("http://localhost:7990/stash/", Ok(("localhost", 7990, "/stash/"))),
            ("http://b:29000", Ok(("b", 29000, ""))),
            ("http://Origin.Example:80/", Ok(("origin.example", 80, "/"))),
            ("HTTP://origin.example", Ok(("origin.example", 80, ""))),
            ("http://[::1]:7990/x", Ok(("[::1]", 7990, "/x"))),
            ("http://[0:0::1]", Ok(("[::1]", 80, ""))),
            ("http://127.0.0.1:7990/a%2Fb", Ok(("127.0.0.1", 7990, "/a%2Fb"))),
            ("http://h/x#frag", Ok(("h", 80, "/x"))),
            ("localhost:7990", Err("'localhost:7990' is not an absolute http:// URL")),
            ("/stash", Err("'/stash' is not an absolute http:// URL")),
            ("http://a b", Err("'http://a b' is not an absolute http:// URL")),
            ("https://h", Err("origin scheme of 'https://h' is not supported; use http:// (TLS to the origin is not needed on loopback, as the seed notes)")),
            ("ws://h", Err("origin scheme of 'ws://h' is not supported; use http:// (TLS to the origin is not needed on loopback, as the seed notes)")),
            ("http://h/x?y=1", Err("origin URL 'http://h/x?y=1' may not carry a query")),
            ("http://", Err("origin URL 'http://' has no usable host")),
            ("http:///x", Err("origin URL 'http:///x' has no usable host")),
            ("http://u@h", Err("origin URL 'http://u@h' has no usable host")),
            ("http://a<b", Err("origin URL 'http://a<b' has no usable host")),
            ("http://[::1", Err("bad IPv6 literal in 'http://[::1'")),
            ("http://[::1]x", Err("bad authority in 'http://[::1]x'")),
            ("http://h:x", Err("bad port in 'http://h:x'")),
            ("http://h:", Err("bad port in 'http://h:'")),
            ("http://h:70000", Err("bad port in 'http://h:70000'")),
            ("http://[::1]:", Err("bad port in 'http://[::1]:'")),
        ];
        for (input, want) in cases {
            let got = split_origin_url(input);
            let got = got.as_ref().map(|(h, p, path)| (h.as_str(), *p, path.as_str())).map_err(String::as_str);
            assert_eq!(got, want.as_ref().map(|w| *w).map_err(|e| *e), "input {input:?}");
        }
    }
}
