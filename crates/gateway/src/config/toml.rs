//! The TOML front-end: Trove's own gateway config (documented key by key in docs/gateway.md).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{
    Balancer, BodyRate, ConfigError, ConnLimits, Diagnostics, GatewayConfig, HcMethod, HealthCheck, LbMethod, ListenerConfig, LogConfig, LogDest, Member,
    Origin, PassphraseSetting, ProxySection, ReverseRule, Route, TlsSite, Upstream, VhostAddr, Via, VirtualServer, split_origin_url,
};
use crate::access::{AccessPolicy, Order, parse_host_match};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGatewayConfig {
    #[serde(default)]
    gateway: RawGlobal,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    listen: Vec<RawListen>,
    #[serde(default)]
    server: Vec<RawServer>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    timeout: Option<u64>,
    keep_alive: Option<bool>,
    keep_alive_timeout: Option<u64>,
    max_keep_alive_requests: Option<u32>,
    header_read_timeout: Option<u64>,
    max_header_bytes: Option<usize>,
    body_read_timeout: Option<u64>,
    body_min_rate: Option<u64>,
    body_read_timeout_max: Option<u64>,
    admin_listen: Option<Spanned<String>>,
    drain_timeout: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    access: Option<String>,
    format: Option<String>,
    error: Option<String>,
    level: Option<String>,
    json: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    addr: Spanned<String>,
    #[serde(default)]
    tls: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    listen: Vec<Spanned<String>>,
    preserve_host: Option<bool>,
    forwarded_headers: Option<bool>,
    forwarded_proto: Option<bool>,
    #[serde(default)]
    trusted_downstream: Vec<Spanned<String>>,
    via: Option<String>,
    redirect_https: Option<Spanned<String>>,
    hsts: Option<u64>,
    #[serde(default)]
    route: Vec<RawRoute>,
    #[serde(default)]
    reverse: Vec<RawReverse>,
    #[serde(default)]
    cookie_path: Vec<[String; 2]>,
    #[serde(default)]
    cookie_domain: Vec<[String; 2]>,
    #[serde(default)]
    access: Vec<RawAccess>,
    tls: Option<RawTls>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path: Spanned<String>,
    upstream: Option<Spanned<String>>,
    /// Several nodes: URLs, or tables with `url` and the node's settings.
    upstreams: Option<Spanned<Vec<Spanned<RawMember>>>>,
    balance: Option<Spanned<String>>,
    health: Option<Spanned<RawHealth>>,
    retry: Option<u64>,
    max_attempts: Option<usize>,
    #[serde(default)]
    exclude: bool,
    connect_timeout: Option<f64>,
    timeout: Option<f64>,
    #[serde(default = "yes")]
    reverse: bool,
    #[serde(default)]
    disable_reuse: bool,
    #[serde(default)]
    max: usize,
    ttl: Option<u64>,
    #[serde(default)]
    tcp_keepalive: bool,
    #[serde(default)]
    nocanon: bool,
    #[serde(default)]
    noquery: bool,
    upgrade: Option<String>,
}

fn yes() -> bool {
    true
}

/// One entry of `upstreams`: a URL, or a table with the node's settings.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawMember {
    Url(String),
    Table(RawMemberTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMemberTable {
    url: String,
    #[serde(default = "one")]
    loadfactor: u32,
    #[serde(default)]
    drain: bool,
    #[serde(default)]
    standby: bool,
    #[serde(default)]
    disabled: bool,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    path: Option<String>,
    method: Option<String>,
    interval: Option<f64>,
    fails: Option<u32>,
    passes: Option<u32>,
    timeout: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReverse {
    path: String,
    upstream: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccess {
    #[serde(default = "star")]
    pattern: String,
    order: Option<Spanned<String>>,
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    #[serde(default)]
    deny: Vec<Spanned<String>>,
}

fn star() -> String {
    "*".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: Option<PathBuf>,
    chain: Option<PathBuf>,
    protocols: Option<String>,
    ciphers: Option<String>,
    passphrase_file: Option<PathBuf>,
    passphrase_env: Option<String>,
    passphrase_exec: Option<PathBuf>,
    #[serde(default)]
    passphrase_prompt: bool,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

pub fn load(path: &Path) -> Result<(GatewayConfig, Diagnostics), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read { path: path.to_path_buf(), source: e })?;
    Ok(parse_str(path, &text))
}

/// `max_keep_alive_requests` when a TOML config does not say: nginx's `keepalive_requests`
/// (raised from 100 to 1000 in nginx 1.19.10). Apache's 100 stays for httpd.conf, which must
/// behave as Apache does; on our own config, 100 meant a new connection (over HTTPS, a full
/// handshake) after every 100 requests of a busy client.
pub const MAX_KEEP_ALIVE_REQUESTS: u32 = 1000;

pub fn parse_str(path: &Path, text: &str) -> (GatewayConfig, Diagnostics) {
    let mut d = Diagnostics::default();
    let at = |off: usize| Origin { file: path.to_path_buf(), line: line_of(text, off) };
    let raw: RawGatewayConfig = match toml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let o = at(e.span().map(|s| s.start).unwrap_or(0));
            let msg = e.message().to_string();
            let (msg, fix) = if msg.contains("untagged enum RawMember") {
                (
                    "an entry of upstreams is neither a URL nor a table of url, loadfactor, drain, standby, disabled".to_string(),
                    "write each node as \"http://host:port/path\" or { url = \"http://host:port/path\", drain = true }",
                )
            } else if msg.contains("unknown field") {
                (msg, "check the spelling; docs/gateway.md lists every key")
            } else {
                (msg, "fix the value's type or syntax")
            };
            d.error(&o, msg, fix);
            RawGatewayConfig::default()
        }
    };
    let file_origin = Origin { file: path.to_path_buf(), line: 1 };
    let g = &raw.gateway;
    let defaults = ConnLimits::default();
    let limits = ConnLimits {
        timeout: g.timeout.map(Duration::from_secs).unwrap_or(defaults.timeout),
        keep_alive: g.keep_alive.unwrap_or(defaults.keep_alive),
        keep_alive_timeout: g.keep_alive_timeout.map(Duration::from_secs).unwrap_or(defaults.keep_alive_timeout),
        max_keep_alive_requests: g.max_keep_alive_requests.unwrap_or(MAX_KEEP_ALIVE_REQUESTS),
        header_read_timeout: g.header_read_timeout.map(Duration::from_secs).unwrap_or(defaults.header_read_timeout),
        max_header_bytes: g.max_header_bytes.unwrap_or(defaults.max_header_bytes),
        body_read: BodyRate {
            timeout: g.body_read_timeout.map(Duration::from_secs).unwrap_or(defaults.body_read.timeout),
            min_rate: g.body_min_rate.unwrap_or(defaults.body_read.min_rate),
            max_timeout: g.body_read_timeout_max.map(Duration::from_secs).unwrap_or(defaults.body_read.max_timeout),
        },
    };
    let admin_listen = g.admin_listen.as_ref().and_then(|a| match a.get_ref().parse::<SocketAddr>() {
        Ok(s) => Some(s),
        Err(_) => {
            d.error(&at(a.span().start), format!("admin_listen '{}' is not IP:port", a.get_ref()), "write for example admin_listen = \"127.0.0.1:9100\"");
            None
        }
    });
    let dest = |s: &str| match s {
        "stdout" => LogDest::Stdout,
        "stderr" => LogDest::Stderr,
        "off" => LogDest::Off,
        p => LogDest::File(PathBuf::from(p)),
    };
    let mut log = LogConfig::default();
    if let Some(a) = &raw.log.access {
        log.access = dest(a);
    }
    if let Some(e) = &raw.log.error {
        log.error = dest(e);
    }
    if let Some(f) = &raw.log.format {
        log.access_format = match f.as_str() {
            "combined" => super::COMBINED.into(),
            "common" => super::COMMON.into(),
            other => other.into(),
        };
        if let Err(e) = crate::log::check_format(&log.access_format) {
            d.error(&file_origin, format!("log.format: {e}"), "use 'combined', 'common' or Apache LogFormat codes");
        }
    }
    if let Some(l) = &raw.log.level {
        log.level = l.clone();
    }
    log.json = raw.log.json.unwrap_or(false);

    let mut listeners = Vec::new();
    for l in &raw.listen {
        let o = at(l.addr.span().start);
        match l.addr.get_ref().parse::<SocketAddr>() {
            Ok(a) => listeners.push(ListenerConfig { addr: a, tls: l.tls, origin: o }),
            Err(_) => d.error(
                &o,
                format!("listen address '{}' is not IP:port", l.addr.get_ref()),
                "write for example addr = \"127.0.0.1:8080\" (use port 0 to let the OS choose)",
            ),
        }
    }
    if listeners.is_empty() && !d.has_errors() {
        d.error(&file_origin, "no [[listen]] section: the gateway would accept nothing", "add [[listen]] with addr = \"127.0.0.1:8080\"");
    }

    let mut servers = Vec::new();
    let mut tls_sites = Vec::new();
    for s in &raw.server {
        let mut v = VirtualServer::new(file_origin.clone());
        v.server_name = s.names.first().map(|n| n.to_ascii_lowercase());
        v.aliases = s.names.iter().skip(1).map(|n| n.to_ascii_lowercase()).collect();
        for a in &s.listen {
            match a.get_ref().parse::<SocketAddr>() {
                Ok(sa) => v.addrs.push(VhostAddr { ip: if sa.ip().is_unspecified() { None } else { Some(sa.ip()) }, port: Some(sa.port()) }),
                Err(_) => d.error(&at(a.span().start), format!("server listen '{}' is not IP:port", a.get_ref()), "name one of the [[listen]] addresses"),
            }
        }
        v.preserve_host = s.preserve_host.unwrap_or(false);
        v.add_forwarded = s.forwarded_headers.unwrap_or(true);
        v.add_forwarded_proto = s.forwarded_proto.unwrap_or(true);
        for t in &s.trusted_downstream {
            match parse_net(t.get_ref()) {
                Some(n) => v.trusted_downstream.push(n),
                None => d.error(
                    &at(t.span().start),
                    format!("trusted_downstream '{}' is not an IP address or network", t.get_ref()),
                    "write an address or CIDR network, like \"10.0.0.5\" or \"10.0.0.0/8\"",
                ),
            }
        }
        v.via = match s.via.as_deref().unwrap_or("off") {
            "off" => Via::Off,
            "on" => Via::On,
            "full" => Via::Full,
            "block" => Via::Block,
            other => {
                d.error(&file_origin, format!("via = '{other}' is not one of off, on, full, block"), "write via = \"off\"");
                Via::Off
            }
        };
        if let Some(r) = &s.redirect_https {
            if !r.get_ref().starts_with("https://") || r.get_ref().ends_with('/') {
                d.error(
                    &at(r.span().start),
                    format!("redirect_https '{}' must be https://host[:port] without a trailing slash", r.get_ref()),
                    "write for example redirect_https = \"https://localhost:8443\"",
                );
            }
            v.redirect_https = Some(r.get_ref().clone());
        }
        v.hsts = s.hsts;
        for r in &s.route {
            let o = at(r.path.span().start);
            let path = r.path.get_ref().clone();
            if !path.starts_with('/') {
                d.error(&o, format!("route path '{path}' must start with '/'"), "write for example path = \"/stash\"");
                continue;
            }
            if r.exclude {
                v.routes.push(Route { path, upstream: None, nocanon: false, noquery: false, balancer: None, origin: o });
                continue;
            }
            let secs = |f: f64| Duration::from_secs_f64(f.max(0.0));
            let timeout = r.timeout.map(secs).unwrap_or(limits.timeout);
            let retry = r.retry.map(Duration::from_secs).unwrap_or(Duration::from_secs(60));
            let make_up = |url: &str, at_line: &Origin, d: &mut Diagnostics| -> Option<Upstream> {
                let (host, port, upath, authority) = match split_origin_url(url).and_then(|(h, p, path)| Upstream::authority_of(&h, p).map(|a| (h, p, path, a)))
                {
                    Ok(x) => x,
                    Err(e) => {
                        d.error(at_line, e, "write the origin as http://host:port/path");
                        return None;
                    }
                };
                if path.ends_with('/') != upath.ends_with('/') && !(upath.is_empty() && path == "/") {
                    d.warn(
                        at_line,
                        format!("route {path} → {url}: trailing slashes differ, so request paths will be glued wrongly"),
                        "end both with '/', or neither",
                    );
                }
                Some(Upstream {
                    url: url.to_string(),
                    authority,
                    host,
                    port,
                    path: upath,
                    connect_timeout: r.connect_timeout.map(secs).unwrap_or(timeout),
                    timeout,
                    retry,
                    tcp_keepalive: r.tcp_keepalive,
                    disable_reuse: r.disable_reuse,
                    ttl: r.ttl.map(Duration::from_secs),
                    max: r.max,
                    upgrade: Some(r.upgrade.clone().unwrap_or_else(|| "websocket".into()).to_ascii_lowercase()),
                })
            };
            let balanced = r.upstreams.is_some() || r.health.is_some() || r.balance.is_some() || r.max_attempts.is_some();
            if !balanced {
                let Some(url) = &r.upstream else {
                    d.error(&o, format!("route {path} has no upstream"), "add upstream = \"http://127.0.0.1:7990/…\", upstreams = [ … ], or exclude = true");
                    continue;
                };
                let Some(up) = make_up(url.get_ref(), &at(url.span().start), &mut d) else { continue };
                if r.reverse {
                    v.reverse.push(ReverseRule { public_path: path.clone(), origin_url: url.get_ref().clone() });
                }
                v.routes.push(Route { path, upstream: Some(up), nocanon: r.nocanon, noquery: r.noquery, balancer: None, origin: o });
                continue;
            }
            // Several nodes (or one with a health check): a balancer.
            let raw_members: Vec<(RawMemberTable, Origin)> = match (&r.upstream, &r.upstreams) {
                (Some(one), Some(_)) => {
                    d.error(
                        &at(one.span().start),
                        format!("route {path} has both upstream and upstreams"),
                        "keep one: upstream = \"URL\" for one origin, upstreams = [\"URL\", \"URL\"] for several nodes",
                    );
                    continue;
                }
                (None, None) => {
                    d.error(
                        &o,
                        format!("route {path} has balancing settings but no upstreams"),
                        "add upstreams = [\"http://127.0.0.1:7991/…\", \"http://127.0.0.1:7992/…\"]",
                    );
                    continue;
                }
                (Some(one), None) => {
                    vec![(RawMemberTable { url: one.get_ref().clone(), loadfactor: 1, drain: false, standby: false, disabled: false }, at(one.span().start))]
                }
                (None, Some(list)) => {
                    if list.get_ref().is_empty() {
                        d.error(
                            &at(list.span().start),
                            format!("route {path} has an empty upstreams list"),
                            "name at least one node: upstreams = [\"http://127.0.0.1:7991/…\"]",
                        );
                        continue;
                    }
                    list.get_ref()
                        .iter()
                        .map(|m| {
                            let t = match m.get_ref() {
                                RawMember::Url(u) => RawMemberTable { url: u.clone(), loadfactor: 1, drain: false, standby: false, disabled: false },
                                RawMember::Table(t) => RawMemberTable { url: t.url.clone(), ..*t },
                            };
                            (t, at(m.span().start))
                        })
                        .collect()
                }
            };
            let method = match r.balance.as_ref().map(|b| (b.get_ref().as_str(), b.span().start)) {
                None | Some(("byrequests", _)) => LbMethod::ByRequests,
                Some(("bybusyness", _)) => LbMethod::ByBusyness,
                Some((other, off)) => {
                    d.error(
                        &at(off),
                        format!("balance = \"{other}\" is not byrequests or bybusyness"),
                        "write balance = \"byrequests\" (the default) or balance = \"bybusyness\"",
                    );
                    LbMethod::ByRequests
                }
            };
            let health = match &r.health {
                None => None,
                Some(h) => {
                    let ho = at(h.span().start);
                    let h = h.get_ref();
                    let method = match h.method.as_deref().map(str::to_ascii_uppercase).as_deref() {
                        None | Some("GET") => HcMethod::Get,
                        Some("HEAD") => HcMethod::Head,
                        Some("OPTIONS") => HcMethod::Options,
                        Some("TCP") => HcMethod::Tcp,
                        Some(other) => {
                            d.error(&ho, format!("health method \"{other}\" is not GET, HEAD, OPTIONS or TCP"), "write method = \"GET\" (the default)");
                            HcMethod::Get
                        }
                    };
                    let hpath = h.path.clone().unwrap_or_else(|| "/".into());
                    if !hpath.starts_with('/') {
                        d.error(&ho, format!("health path '{hpath}' must start with '/'"), "write for example path = \"/stash/status\"");
                    }
                    let interval = h.interval.map(secs).unwrap_or(Duration::from_secs(30));
                    if interval.is_zero() {
                        d.error(&ho, "health interval = 0 would check without pause", "write interval = 10 (seconds; the default is 30)");
                    }
                    let (fails, passes) = (h.fails.unwrap_or(1), h.passes.unwrap_or(1));
                    if fails == 0 || passes == 0 {
                        d.error(
                            &ho,
                            "health fails and passes count checks in a row and must be at least 1",
                            "write fails = 3 and passes = 2, say (the defaults are 1)",
                        );
                    }
                    Some(HealthCheck {
                        method,
                        path: hpath,
                        interval,
                        passes: passes.max(1),
                        fails: fails.max(1),
                        timeout: h.timeout.map(secs).unwrap_or(timeout),
                    })
                }
            };
            let mut members = Vec::new();
            for (m, mo) in &raw_members {
                if !(1..=100).contains(&m.loadfactor) {
                    d.error(mo, format!("loadfactor {} of {} is not between 1 and 100", m.loadfactor, m.url), "write loadfactor = 1 (the default) up to 100");
                }
                let Some(up) = make_up(&m.url, mo, &mut d) else { continue };
                if r.reverse {
                    v.reverse.push(ReverseRule { public_path: path.clone(), origin_url: m.url.clone() });
                }
                members.push(Member {
                    upstream: up,
                    loadfactor: m.loadfactor.clamp(1, 100),
                    route: None,
                    hot_standby: m.standby,
                    disabled: m.disabled,
                    drain: m.drain,
                    health: health.clone(),
                });
            }
            if members.len() != raw_members.len() {
                continue;
            }
            let balancer = Balancer {
                name: format!("route {path} at {o}"),
                url: members[0].upstream.url.clone(),
                method,
                max_attempts: r.max_attempts.unwrap_or(members.len() - 1),
                members,
            };
            let up = balancer.members[0].upstream.clone();
            v.routes.push(Route { path, upstream: Some(up), nocanon: r.nocanon, noquery: r.noquery, balancer: Some(balancer), origin: o });
        }
        for r in &s.reverse {
            v.reverse.push(ReverseRule { public_path: r.path.clone(), origin_url: r.upstream.clone() });
        }
        v.cookie_paths = s.cookie_path.iter().map(|[a, b]| (a.clone(), b.clone())).collect();
        v.cookie_domains = s.cookie_domain.iter().map(|[a, b]| (a.clone(), b.clone())).collect();
        for a in &s.access {
            let mut p = AccessPolicy::default();
            if let Some(o) = &a.order {
                p.order = match o.get_ref().to_ascii_lowercase().as_str() {
                    "deny,allow" => Order::DenyAllow,
                    "allow,deny" => Order::AllowDeny,
                    "mutual-failure" => Order::MutualFailure,
                    other => {
                        d.error(
                            &at(o.span().start),
                            format!("order '{other}' is not deny,allow / allow,deny / mutual-failure"),
                            "write order = \"deny,allow\"",
                        );
                        Order::DenyAllow
                    }
                };
            }
            for (list, into) in [(&a.allow, &mut p.allow), (&a.deny, &mut p.deny)] {
                for item in list {
                    match parse_host_match(item.get_ref()) {
                        Ok(m) => into.push(m),
                        Err(e) => d.error(&at(item.span().start), e, "write an IP, partial IP, CIDR, network/netmask or \"all\""),
                    }
                }
            }
            v.proxy_access.push(ProxySection { pattern: a.pattern.clone(), policy: p });
        }
        if let Some(t) = &s.tls {
            let passphrase = if let Some(p) = &t.passphrase_file {
                PassphraseSetting::File(p.clone())
            } else if let Some(e) = &t.passphrase_env {
                PassphraseSetting::Env(e.clone())
            } else if let Some(x) = &t.passphrase_exec {
                PassphraseSetting::Exec(x.clone())
            } else if t.passphrase_prompt {
                PassphraseSetting::Builtin
            } else {
                PassphraseSetting::None
            };
            let mut names: Vec<String> = v.server_name.iter().cloned().collect();
            names.extend(v.aliases.iter().cloned());
            tls_sites.push(TlsSite {
                names,
                cert: t.cert.clone(),
                key: t.key.clone(),
                chain: t.chain.clone(),
                protocol: t.protocols.clone(),
                cipher_suite: t.ciphers.clone(),
                passphrase,
                origin: file_origin.clone(),
            });
            v.tls_site = Some(tls_sites.len() - 1);
        }
        servers.push(v);
    }
    if servers.is_empty() && !d.has_errors() {
        d.error(&file_origin, "no [[server]] section: nothing would be proxied", "add [[server]] with a [[server.route]]");
        servers.push(VirtualServer::new(file_origin.clone()));
    }
    if servers.is_empty() {
        servers.push(VirtualServer::new(file_origin.clone()));
    }
    let mut cfg = GatewayConfig {
        source: path.to_path_buf(),
        listeners,
        servers,
        limits,
        log,
        admin_listen,
        tls_sites,
        drain_timeout: g.drain_timeout.map(Duration::from_secs).unwrap_or(Duration::from_secs(30)),
    };
    super::validate(&mut cfg, &mut d);
    (cfg, d)
}

/// An address (`10.0.0.5`, a /32 or /128) or a CIDR network (`10.0.0.0/8`).
pub(crate) fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>().ok().or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listen_address_given_twice_is_an_error_at_its_second_place_in_either_reader() {
        let toml = "[[listen]]\naddr = \"127.0.0.1:8080\"\n\n[[listen]]\naddr = \"127.0.0.1:8080\"\n";
        let (cfg, d) = parse_str(Path::new("/etc/trove/gateway.toml"), toml);
        let e = d.items.iter().find(|i| i.message.contains("given twice")).expect("an error");
        assert!(e.severity == crate::Severity::Error && e.origin.line == 5, "{e:?}");
        assert_eq!(cfg.listeners.len(), 1);
        let (_, d) = crate::config::apache::parse_str(Path::new("/etc/apache2/apache2.conf"), "Listen 127.0.0.1:8080\nListen 127.0.0.1:8080\n");
        let e = d.items.iter().find(|i| i.message.contains("given twice")).expect("an error");
        assert!(e.severity == crate::Severity::Error && e.origin.line == 2, "{e:?}");
    }

    fn parse(t: &str) -> (GatewayConfig, Diagnostics) {
        parse_str(Path::new("gw.toml"), t)
    }

    #[test]
    fn the_seeds_setup_in_toml() {
        let (c, d) = parse(
            r#"
[[listen]]
addr = "127.0.0.1:8080"

[[server]]
names = ["mycompany.com"]

[[server.route]]
path = "/stash"
upstream = "http://localhost:7990/stash"
connect_timeout = 5
timeout = 300

[[server.access]]
allow = ["all"]
"#,
        );
        assert!(!d.has_errors(), "{:?}", d.items);
        let s = &c.servers[0];
        let u = s.routes[0].upstream.as_ref().unwrap();
        assert_eq!(u.connect_timeout, Duration::from_secs(5));
        assert_eq!(u.timeout, Duration::from_secs(300));
        assert_eq!(s.reverse[0].origin_url, "http://localhost:7990/stash");
        assert!(s.add_forwarded_proto);
        // nginx's keepalive_requests, not Apache's MaxKeepAliveRequests (httpd.conf keeps 100).
        assert_eq!(c.limits.max_keep_alive_requests, MAX_KEEP_ALIVE_REQUESTS);
        assert_eq!(ConnLimits::default().max_keep_alive_requests, 100);
    }

    #[test]
    fn body_rate_keys_and_their_defaults() {
        let (c, d) = parse(
            "[gateway]\nbody_read_timeout = 30\nbody_min_rate = 1000\nbody_read_timeout_max = 600\n[[listen]]\naddr = \"127.0.0.1:1\"\n[[server]]\n[[server.route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:2/\"\n",
        );
        let e: Vec<String> = d.errors().map(|e| e.to_string()).collect();
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(c.limits.body_read, BodyRate { timeout: Duration::from_secs(30), min_rate: 1000, max_timeout: Duration::from_secs(600) });
        let (c, _) = parse("[gateway]\nbody_read_timeout = 0\n");
        assert!(c.limits.body_read.deadline(tokio::time::Instant::now(), 0).is_none());
        let (c, _) = parse("");
        assert_eq!(c.limits.body_read, BodyRate { timeout: Duration::from_secs(20), min_rate: 500, max_timeout: Duration::ZERO });
    }

    #[test]
    fn unknown_key_names_the_line() {
        let (_, d) = parse("[[listen]]\naddr = \"127.0.0.1:1\"\n\n[[server]]\nnames = []\nbogus = 1\n");
        let e: Vec<String> = d.errors().map(|e| e.to_string()).collect();
        assert!(e[0].starts_with("gw.toml:6:"), "{e:?}");
        assert!(e[0].contains("unknown field"), "{e:?}");
    }

    #[test]
    fn bad_upstream_and_address_are_errors_with_lines() {
        let (_, d) = parse("[[listen]]\naddr = \"nope\"\n[[server]]\n[[server.route]]\npath = \"/\"\nupstream = \"https://x/\"\n");
        let e: Vec<String> = d.errors().map(|e| e.to_string()).collect();
        assert!(e.iter().any(|e| e.starts_with("gw.toml:2:") && e.contains("not IP:port")), "{e:?}");
        assert!(e.iter().any(|e| e.starts_with("gw.toml:6:") && e.contains("not supported")), "{e:?}");
    }
}

#[cfg(test)]
mod balancer_tests {
    use super::*;

    fn parse(t: &str) -> (GatewayConfig, Diagnostics) {
        parse_str(Path::new("gw.toml"), &format!("[[listen]]\naddr = \"127.0.0.1:1\"\n[[server]]\n[[server.route]]\npath = \"/stash\"\n{t}"))
    }

    fn errors(d: &Diagnostics) -> Vec<String> {
        d.errors().map(|e| e.to_string()).collect()
    }

    #[test]
    fn upstreams_balance_health_and_drain_are_read() {
        let (c, d) = parse(
            r#"upstreams = ["http://127.0.0.1:7991/stash", { url = "http://127.0.0.1:7992/stash", loadfactor = 2, drain = true }, { url = "http://127.0.0.1:7993/stash", standby = true, disabled = true }]
balance = "bybusyness"
retry = 5
max_attempts = 1
timeout = 30
[server.route.health]
path = "/stash/status"
method = "HEAD"
interval = 2.5
fails = 3
passes = 2
timeout = 1
"#,
        );
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        let r = &c.servers[0].routes[0];
        let b = r.balancer.as_ref().unwrap();
        assert_eq!((b.name.as_str(), b.method, b.max_attempts, b.members.len()), ("route /stash at gw.toml:5", LbMethod::ByBusyness, 1, 3));
        let [one, two, three] = &b.members[..] else { panic!() };
        assert_eq!(
            (one.loadfactor, one.drain, one.hot_standby, one.upstream.retry, one.upstream.timeout),
            (1, false, false, Duration::from_secs(5), Duration::from_secs(30))
        );
        assert_eq!((two.loadfactor, two.drain, two.upstream.port), (2, true, 7992));
        assert!(three.hot_standby && three.disabled);
        let h = one.health.as_ref().unwrap();
        assert_eq!(
            (h.method, h.path.as_str(), h.interval, h.fails, h.passes, h.timeout),
            (HcMethod::Head, "/stash/status", Duration::from_millis(2500), 3, 2, Duration::from_secs(1))
        );
        assert_eq!(two.health, one.health, "the route's check, for every node");
        assert_eq!(r.upstream.as_ref().unwrap().url, "http://127.0.0.1:7991/stash");
        assert_eq!(c.servers[0].reverse.len(), 3, "each node's URL maps back");
        // Defaults: byrequests, every other node a retry, no check, 60 s retry.
        let (c, d) = parse("upstreams = [\"http://a:1/stash\", \"http://b:2/stash\"]\n");
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        let b = c.servers[0].routes[0].balancer.as_ref().unwrap();
        assert_eq!(
            (b.method, b.max_attempts, b.members[0].health.is_none(), b.members[0].upstream.retry),
            (LbMethod::ByRequests, 1, true, Duration::from_secs(60))
        );
        // A health check on a single upstream makes a balancer of one.
        let (c, d) = parse("upstream = \"http://a:1/stash\"\n[server.route.health]\npath = \"/stash/status\"\n");
        assert!(errors(&d).is_empty(), "{:?}", errors(&d));
        let b = c.servers[0].routes[0].balancer.as_ref().unwrap();
        assert_eq!((b.members.len(), b.max_attempts, b.members[0].health.as_ref().unwrap().interval), (1, 0, Duration::from_secs(30)));
        assert!(c.render().contains("balancer route /stash at gw.toml:5 ByRequests max_attempts=0 nodes=[http://a:1/stash loadfactor=1 health=GET /stash/status every 30s fails=1 passes=1]"));
    }

    #[test]
    fn balancer_mistakes_are_errors_on_their_line() {
        let rows: &[(&str, &str)] = &[
            ("upstream = \"http://a:1/stash\"\nupstreams = [\"http://b:1/stash\"]\n", "gw.toml:6: error: route /stash has both upstream and upstreams"),
            ("upstreams = []\n", "gw.toml:6: error: route /stash has an empty upstreams list"),
            ("balance = \"byrequests\"\n", "gw.toml:5: error: route /stash has balancing settings but no upstreams"),
            ("upstreams = [\"http://a:1/stash\"]\nbalance = \"random\"\n", "gw.toml:7: error: balance = \"random\" is not byrequests or bybusyness"),
            (
                "upstreams = [\n  \"http://a:1/stash\",\n  \"https://b:1/stash\",\n]\n",
                "gw.toml:8: error: origin scheme of 'https://b:1/stash' is not supported",
            ),
            ("upstreams = [{ url = \"http://a:1/stash\", loadfactor = 0 }]\n", "gw.toml:6: error: loadfactor 0 of http://a:1/stash is not between 1 and 100"),
            ("upstreams = [{ url = \"http://a:1/stash\", weight = 2 }]\n", "gw.toml:6: error: an entry of upstreams is neither a URL nor a table"),
            ("upstreams = [\"http://a:1/stash\", \"http://b:1/git\"]\n", "gw.toml:5: error: the nodes of route /stash at gw.toml:5 have different paths"),
            (
                "upstreams = [\"http://a:1/stash\"]\n[server.route.health]\nmethod = \"PING\"\n",
                "gw.toml:7: error: health method \"PING\" is not GET, HEAD, OPTIONS or TCP",
            ),
            ("upstreams = [\"http://a:1/stash\"]\n[server.route.health]\npath = \"status\"\n", "gw.toml:7: error: health path 'status' must start with '/'"),
            ("upstreams = [\"http://a:1/stash\"]\n[server.route.health]\ninterval = 0\n", "gw.toml:7: error: health interval = 0"),
            ("upstreams = [\"http://a:1/stash\"]\n[server.route.health]\nfails = 0\n", "gw.toml:7: error: health fails and passes count checks in a row"),
            ("upstreams = [\"http://a:1/stash\"]\n[server.route.health]\nevery = 3\n", "gw.toml:8: error: unknown field `every`"),
        ];
        for (t, want) in rows {
            let (_, d) = parse(t);
            let e = errors(&d);
            assert!(e.iter().any(|e| e.starts_with(want)), "{t:?}: want {want:?}, got {e:?}");
            assert!(e.iter().all(|e| e.contains(" — ")), "every error says the fix: {e:?}");
        }
    }
}
