//! How a request looked to its sender, and the URLs we show back: the base URL, the context
//! path, Tomcat-style connector settings and trusted proxies.
//!
//! Three sources can say what URL a request was sent to, in this order of authority:
//! 1. the connector settings (`proxy_name`, `proxy_port`, `scheme`, `secure`), which the
//!    administrator wrote down, exactly like Tomcat's `<Connector proxyName=… proxyPort=…>`;
//! 2. `Forwarded` (RFC 7239) or, if absent, `X-Forwarded-Host/Proto/Port/For`, but only when the
//!    peer is in `trusted_proxies` (anyone can send these headers; believing them from anyone is
//!    how Host-header poisoning of generated links happens);
//! 3. the request's own `Host` header and the listener.
//!
//! Generated URLs never use these when a `base_url` is set: the base URL is authoritative, as
//! Bitbucket's "Base URL" server setting is. When a request arrives through a proxy under a
//! different URL, we log one warning naming both, because that mismatch is the usual reason
//! clone URLs point at the wrong place.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, RwLock};

use http::HeaderMap;
use ipnet::IpNet;
use trove_store::{BaseUrl, ContextPath, normalize_origin};

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Tomcat connector attributes, for administrators who set them (Tomcat HTTP Connector
/// reference: proxyName, proxyPort, scheme, secure). `None` means "not set": the value comes
/// from trusted forwarding headers or the request itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Connector {
    pub proxy_name: Option<String>,
    pub proxy_port: Option<u16>,
    pub scheme: Option<Scheme>,
    /// Whether requests count as having arrived over TLS. With `scheme` unset, `true` implies
    /// `https`. Default `false`.
    pub secure: bool,
}

impl Connector {
    fn is_set(&self) -> bool {
        self.proxy_name.is_some() || self.proxy_port.is_some() || self.scheme.is_some() || self.secure
    }
}

/// Everything that decides public URLs.
#[derive(Debug, Clone, Default)]
pub struct PublicUrlSettings {
    pub base_url: Option<BaseUrl>,
    pub context_path: ContextPath,
    pub connector: Connector,
    pub trusted_proxies: Vec<IpNet>,
}

/// What we believe about one request's public side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestView {
    pub scheme: String,
    /// `host[:port]`.
    pub authority: String,
    /// The original client's address: the peer, or what trusted proxies said it was.
    pub client_ip: Option<IpAddr>,
    /// Whether a proxy is involved: forwarding headers from a trusted peer, or connector
    /// settings that say so.
    pub via_proxy: bool,
}

impl RequestView {
    /// `scheme://authority` with default ports left out.
    pub fn origin(&self) -> String {
        normalize_origin(&self.scheme, &self.authority)
    }
}

fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical_ip(ip);
    trusted.iter().any(|net| net.contains(&ip))
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`, seen on dual-stack listeners) compare as IPv4.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// One element of a `Forwarded` header (RFC 7239 §4).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ForwardedElement {
    pub(crate) for_: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) proto: Option<String>,
}

/// Parses all `Forwarded` header lines into elements, in order (first = farthest from us).
/// Malformed pairs are skipped rather than failing the request.
pub(crate) fn parse_forwarded(headers: &HeaderMap) -> Vec<ForwardedElement> {
    let mut out = Vec::new();
    for value in headers.get_all(http::header::FORWARDED) {
        let Ok(value) = value.to_str() else { continue };
        for element in split_outside_quotes(value, ',') {
            let mut e = ForwardedElement::default();
            for pair in split_outside_quotes(element, ';') {
                let Some((k, v)) = pair.split_once('=') else { continue };
                let v = v.trim();
                let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v).to_owned();
                match k.trim().to_ascii_lowercase().as_str() {
                    "for" => e.for_ = Some(v),
                    "host" => e.host = Some(v),
                    "proto" => e.proto = Some(v.to_ascii_lowercase()),
                    _ => {}
                }
            }
            out.push(e);
        }
    }
    out
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(s[start..].trim());
    parts.retain(|p| !p.is_empty());
    parts
}

/// Parses a node from `for=` or `X-Forwarded-For`: `192.0.2.1`, `192.0.2.1:80`,
/// `[2001:db8::1]:4711`, `2001:db8::1`. Obfuscated identifiers (`_hidden`, `unknown`) are `None`.
pub(crate) fn parse_node(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    let inner = s.strip_prefix('[')?.split(']').next()?;
    inner.parse().ok()
}

/// The last value of a forwarding header, over all its lines: the one our peer (a trusted
/// proxy) added or set. Values further left were written by whoever was before it, which may
/// be the client itself (RFC 7239 §8.1; the same reading as nginx's `real_ip_recursive`).
fn last_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let v = headers.get_all(name).iter().next_back()?.to_str().ok()?;
    v.rsplit(',').next().map(str::trim).filter(|s| !s.is_empty())
}

/// Derives the request's public view. Pure: everything it needs is passed in.
pub fn view(settings: &PublicUrlSettings, peer: Option<SocketAddr>, headers: &HeaderMap) -> RequestView {
    let peer_ip = peer.map(|p| canonical_ip(p.ip()));
    let trusted_peer = peer_ip.is_some_and(|ip| is_trusted(&settings.trusted_proxies, ip));

    let mut client_ip = peer_ip;
    let mut fwd_proto: Option<String> = None;
    let mut fwd_host: Option<String> = None;
    let mut fwd_port: Option<String> = None;
    let mut forwarded_seen = false;

    if trusted_peer {
        let elements = parse_forwarded(headers);
        if !elements.is_empty() {
            forwarded_seen = true;
            // Walk from the element our peer added towards the client, past every proxy we
            // trust; the first untrusted hop is the client, and the element that names it was
            // written by the edge proxy, whose host/proto describe the public request.
            let mut chosen = elements.last().cloned().unwrap_or_default();
            for e in elements.iter().rev() {
                chosen = e.clone();
                let node = e.for_.as_deref().and_then(parse_node);
                match node {
                    Some(ip) if is_trusted(&settings.trusted_proxies, ip) => continue,
                    _ => break,
                }
            }
            if let Some(ip) = chosen.for_.as_deref().and_then(parse_node) {
                client_ip = Some(canonical_ip(ip));
            }
            fwd_proto = chosen.proto;
            fwd_host = chosen.host;
        } else {
            let xff: Vec<&str> = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
            if !xff.is_empty() {
                forwarded_seen = true;
                let hops: Vec<Option<IpAddr>> = xff.iter().flat_map(|v| v.split(',')).map(parse_node).collect();
                for hop in hops.iter().rev() {
                    match hop {
                        Some(ip) if is_trusted(&settings.trusted_proxies, *ip) => {
                            client_ip = Some(canonical_ip(*ip));
                            continue;
                        }
                        Some(ip) => {
                            client_ip = Some(canonical_ip(*ip));
                            break;
                        }
                        None => break,
                    }
                }
            }
            fwd_proto = last_value(headers, "x-forwarded-proto").map(str::to_ascii_lowercase);
            fwd_host = last_value(headers, "x-forwarded-host").map(str::to_owned);
            fwd_port = last_value(headers, "x-forwarded-port").map(str::to_owned);
            forwarded_seen |= fwd_proto.is_some() || fwd_host.is_some() || fwd_port.is_some();
        }
    }
    let fwd_proto = fwd_proto.filter(|p| p == "http" || p == "https");
    let fwd_host = fwd_host.filter(|h| valid_authority(h));
    let fwd_port = fwd_port.and_then(|p| p.parse::<u16>().ok());

    let c = &settings.connector;
    let scheme = c.scheme.map(|s| s.as_str().to_owned()).or_else(|| c.secure.then(|| "https".to_owned())).or(fwd_proto).unwrap_or_else(|| "http".to_owned());

    let own_host = headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).filter(|h| valid_authority(h)).map(str::to_owned);
    let (host, host_port) = match (&c.proxy_name, fwd_host, own_host) {
        (Some(name), _, _) => (name.clone(), None),
        (None, Some(h), _) | (None, None, Some(h)) => split_host_port(&h),
        // No Host header (HTTP/1.0 without one): nothing says what name was used.
        (None, None, None) => ("localhost".to_owned(), None),
    };
    let port = c.proxy_port.or(fwd_port).or(if c.proxy_name.is_some() { None } else { host_port });
    let authority = match port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    };
    RequestView { scheme, authority, client_ip, via_proxy: forwarded_seen || c.is_set() }
}

fn valid_authority(s: &str) -> bool {
    !s.is_empty() && s.len() <= 255 && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'))
}

fn split_host_port(s: &str) -> (String, Option<u16>) {
    let lower = s.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix('[')
        && let Some((h, after)) = rest.split_once(']')
    {
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return (format!("[{h}]"), port);
    }
    match lower.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h.to_owned(), Some(port)),
            Err(_) => (lower.clone(), None),
        },
        _ => (lower, None),
    }
}

/// Public URLs for one running server, and the once-only mismatch warning.
pub struct PublicUrls {
    settings: PublicUrlSettings,
    /// The base URL in force: `settings.base_url` at start, then whatever the administrator
    /// saves in Server settings, which takes effect for the next request.
    base: RwLock<Option<BaseUrl>>,
    mismatch: Mutex<Option<(String, String)>>,
}

impl PublicUrls {
    pub fn new(settings: PublicUrlSettings) -> Self {
        Self { base: RwLock::new(settings.base_url.clone()), settings, mismatch: Mutex::new(None) }
    }

    /// The settings as the server started with them; the base URL may have changed since
    /// (see [`PublicUrls::configured_base_url`]).
    pub fn settings(&self) -> &PublicUrlSettings {
        &self.settings
    }

    /// The base URL in force now, if one is set.
    pub fn configured_base_url(&self) -> Option<BaseUrl> {
        self.base.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the base URL for every later request (`None`: follow each request), and
    /// forgets a recorded mismatch so a new one is reported.
    pub fn set_base_url(&self, base: Option<BaseUrl>) {
        *self.base.write().unwrap_or_else(|e| e.into_inner()) = base;
        *self.mismatch.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn context_path(&self) -> &ContextPath {
        &self.settings.context_path
    }

    /// The URL the request itself was sent to, context path included.
    pub fn request_url(&self, view: &RequestView) -> String {
        format!("{}{}", view.origin(), self.settings.context_path)
    }

    /// The base URL for generated links: the configured one, else what the request says.
    pub fn base_url(&self, view: &RequestView) -> String {
        match &*self.base.read().unwrap_or_else(|e| e.into_inner()) {
            Some(b) => b.as_str().to_owned(),
            None => self.request_url(view),
        }
    }

    /// `<base URL>/scm/<key>/<slug>.git`; Bitbucket shows the project key in lower case there.
    pub fn clone_url(&self, view: &RequestView, owner: &trove_store::Owner, slug: &trove_store::RepoSlug) -> String {
        format!("{}/scm/{}/{}.git", self.base_url(view), owner.to_string().to_ascii_lowercase(), slug)
    }

    /// Compares a proxied request's URL with `base_url` and warns the first time they differ.
    pub fn observe(&self, view: &RequestView) {
        if !view.via_proxy {
            return;
        }
        let Some(base) = self.configured_base_url() else { return };
        let seen = self.request_url(view);
        let expected = format!("{}{}", base.normalized_origin(), base.path());
        if seen == expected {
            return;
        }
        let mut slot = self.mismatch.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            tracing::warn!(
                request_url = %seen,
                base_url = %base,
                "requests arrive through a proxy as {seen} but base_url is {base}; clone URLs and links use base_url. \
                 If {seen} is the public URL, set base_url to it; otherwise make the proxy send the public host and scheme \
                 (ProxyPreserveHost On, X-Forwarded-Proto) or set proxy_name/proxy_port/scheme in trove.toml"
            );
            *slot = Some((seen, base.as_str().to_owned()));
        }
    }

    /// The first mismatch seen, as `(request URL, base URL)`, for `trove doctor` and tests.
    pub fn mismatch(&self) -> Option<(String, String)> {
        self.mismatch.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    fn settings(trusted: &[&str], connector: Connector) -> PublicUrlSettings {
        PublicUrlSettings {
            base_url: None,
            context_path: ContextPath::default(),
            connector,
            trusted_proxies: trusted.iter().map(|t| t.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn request_views_believe_forwarding_headers_only_from_trusted_peers() {
        let proxy: SocketAddr = "10.0.0.5:40000".parse().unwrap();
        let stranger: SocketAddr = "203.0.113.9:40000".parse().unwrap();
        let trusted = ["10.0.0.0/8"];
        type Case<'a> = (&'a str, PublicUrlSettings, SocketAddr, HeaderMap, (&'a str, &'a str, &'a str, bool));
        let cases: Vec<Case> = vec![
            (
                "direct",
                settings(&trusted, Connector::default()),
                stranger,
                headers(&[("host", "localhost:7990")]),
                ("http", "localhost:7990", "203.0.113.9", false),
            ),
            (
                "untrusted peer's X-Forwarded-* are ignored",
                settings(&trusted, Connector::default()),
                stranger,
                headers(&[("host", "localhost:7990"), ("x-forwarded-host", "evil.example"), ("x-forwarded-proto", "https"), ("x-forwarded-for", "1.2.3.4")]),
                ("http", "localhost:7990", "203.0.113.9", false),
            ),
            (
                "trusted peer's X-Forwarded-*",
                settings(&trusted, Connector::default()),
                proxy,
                headers(&[
                    ("host", "localhost:7990"),
                    ("x-forwarded-host", "mycompany.com"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-for", "198.51.100.7"),
                ]),
                ("https", "mycompany.com", "198.51.100.7", true),
            ),
            (
                "X-Forwarded-For chain skips trusted hops from the right",
                settings(&trusted, Connector::default()),
                proxy,
                headers(&[("host", "x"), ("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.1.1")]),
                ("http", "x", "198.51.100.7", true),
            ),
            (
                "X-Forwarded-Port overrides the host's port",
                settings(&trusted, Connector::default()),
                proxy,
                headers(&[("host", "x"), ("x-forwarded-host", "mycompany.com:8443"), ("x-forwarded-port", "443"), ("x-forwarded-proto", "https")]),
                ("https", "mycompany.com:443", "10.0.0.5", true),
            ),
            (
                "Forwarded wins over X-Forwarded-*",
                settings(&trusted, Connector::default()),
                proxy,
                headers(&[("host", "x"), ("forwarded", "for=\"[2001:db8::1]:4711\";proto=https;host=mycompany.com"), ("x-forwarded-host", "other")]),
                ("https", "mycompany.com", "2001:db8::1", true),
            ),
            (
                "Forwarded chain: the edge proxy's element describes the public request",
                settings(&trusted, Connector::default()),
                proxy,
                headers(&[("host", "x"), ("forwarded", "for=192.0.2.60;proto=https;host=public.example, for=10.9.9.9;proto=http;host=inner")]),
                ("https", "public.example", "192.0.2.60", true),
            ),
            (
                "a client's own X-Forwarded-* before the proxy's are not believed",
                settings(&trusted, Connector::default()),
                proxy,
                headers(&[
                    ("host", "x"),
                    ("x-forwarded-host", "evil.example, mycompany.com"),
                    ("x-forwarded-proto", "http"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-for", "6.6.6.6"),
                    ("x-forwarded-for", "198.51.100.7"),
                ]),
                ("https", "mycompany.com", "198.51.100.7", true),
            ),
            (
                "a Forwarded chain stops at the first untrusted hop, whatever is left of it",
                settings(&trusted, Connector::default()),
                proxy,
                headers(&[("host", "x"), ("forwarded", "for=10.0.0.1;host=evil.example;proto=http, for=198.51.100.7;proto=https;host=mycompany.com")]),
                ("https", "mycompany.com", "198.51.100.7", true),
            ),
            (
                "an obfuscated hop is where trust ends",
                settings(&trusted, Connector::default()),
                proxy,
                headers(&[("host", "x"), ("forwarded", "for=198.51.100.1;host=evil.example, for=_hidden;proto=https;host=mycompany.com")]),
                ("https", "mycompany.com", "10.0.0.5", true),
            ),
            (
                "connector settings win over everything",
                settings(&trusted, Connector { proxy_name: Some("mycompany.com".into()), proxy_port: Some(443), scheme: Some(Scheme::Https), secure: true }),
                proxy,
                headers(&[("host", "localhost:7990"), ("x-forwarded-host", "other.example"), ("x-forwarded-proto", "http")]),
                ("https", "mycompany.com:443", "10.0.0.5", true),
            ),
            (
                "secure alone implies https",
                settings(&[], Connector { secure: true, ..Default::default() }),
                stranger,
                headers(&[("host", "a.example")]),
                ("https", "a.example", "203.0.113.9", true),
            ),
            (
                "junk in forwarded host is ignored",
                settings(&trusted, Connector::default()),
                proxy,
                headers(&[("host", "localhost"), ("x-forwarded-host", "evil.example/path?x")]),
                ("http", "localhost", "10.0.0.5", true),
            ),
        ];
        for (name, s, peer, h, (scheme, authority, client, via)) in cases {
            let v = view(&s, Some(peer), &h);
            assert_eq!(
                (v.scheme.as_str(), v.authority.as_str(), v.client_ip.map(|i| i.to_string()).as_deref(), v.via_proxy),
                (scheme, authority, Some(client), via),
                "{name}"
            );
        }
    }

    #[test]
    fn forwarded_headers_parse_quoted_and_multiple_elements() {
        let h = headers(&[("forwarded", "for=192.0.2.43, for=\"[2001:db8:cafe::17]\";proto=HTTPS;by=x"), ("forwarded", "for=unknown;host=\"a,b\"")]);
        let e = parse_forwarded(&h);
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].for_.as_deref(), Some("192.0.2.43"));
        assert_eq!(e[1].proto.as_deref(), Some("https"));
        assert_eq!(e[2].host.as_deref(), Some("a,b"));
        let nodes: &[(&str, Option<&str>)] = &[
            ("192.0.2.1", Some("192.0.2.1")),
            ("192.0.2.1:80", Some("192.0.2.1")),
            ("[2001:db8::1]:4711", Some("2001:db8::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("unknown", None),
            ("_hidden", None),
        ];
        for (input, want) in nodes {
            assert_eq!(parse_node(input).map(|i| i.to_string()).as_deref(), *want, "{input}");
        }
    }

    #[test]
    fn base_url_is_authoritative_and_a_proxied_mismatch_is_recorded_once() {
        let mut s = settings(&["127.0.0.1/32"], Connector::default());
        s.context_path = ContextPath::parse("/stash").unwrap();
        s.base_url = Some(BaseUrl::parse("https://mycompany.com/stash").unwrap());
        let urls = PublicUrls::new(s);
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let direct = view(urls.settings(), Some(peer), &headers(&[("host", "localhost:7990")]));
        urls.observe(&direct);
        assert_eq!(urls.mismatch(), None, "direct requests are not compared");
        let good = view(
            urls.settings(),
            Some(peer),
            &headers(&[("host", "x"), ("x-forwarded-host", "mycompany.com"), ("x-forwarded-proto", "https"), ("x-forwarded-port", "443")]),
        );
        urls.observe(&good);
        assert_eq!(urls.mismatch(), None, "same URL, default port spelled out");
        let bad = view(urls.settings(), Some(peer), &headers(&[("host", "x"), ("x-forwarded-host", "mycompany.com"), ("x-forwarded-proto", "http")]));
        urls.observe(&bad);
        assert_eq!(urls.mismatch(), Some(("http://mycompany.com/stash".into(), "https://mycompany.com/stash".into())));
        assert_eq!(urls.base_url(&bad), "https://mycompany.com/stash");
        assert_eq!(
            urls.clone_url(&bad, &trove_store::Owner::parse("TP").unwrap(), &trove_store::RepoSlug::parse("test").unwrap()),
            "https://mycompany.com/stash/scm/tp/test.git"
        );
    }

    #[test]
    fn without_base_url_links_follow_the_request() {
        let mut s = settings(&[], Connector::default());
        s.context_path = ContextPath::parse("/stash").unwrap();
        let urls = PublicUrls::new(s);
        let v = view(urls.settings(), None, &headers(&[("host", "Localhost:7990")]));
        assert_eq!(urls.base_url(&v), "http://localhost:7990/stash");
        let v = view(urls.settings(), None, &HeaderMap::new());
        assert_eq!(urls.base_url(&v), "http://localhost/stash");
    }
}
