//! Header rules on the proxy path, pure: what the origin is told (hop-by-hop removal,
//! X-Forwarded-*, RFC 7239 `Forwarded`, Host, Via, Max-Forwards) and what the downstream
//! gets back.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::{HeaderEdit, HeaderEditOp, Via};

/// RFC 9110 §7.6.1 hop-by-hop fields, plus the legacy ones Apache strips.
const HOP_BY_HOP: &[&str] =
    &["connection", "proxy-connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authenticate", "proxy-authorization"];

/// `HOP_BY_HOP` as parsed names, made once (parsing nine names per request showed in profiles).
fn hop_by_hop_names() -> &'static [HeaderName] {
    static NAMES: std::sync::OnceLock<Vec<HeaderName>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| HOP_BY_HOP.iter().map(|h| HeaderName::from_static(h)).collect())
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_SERVER: HeaderName = HeaderName::from_static("x-forwarded-server");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// Headers that say where a request came from or how it was sent, which only a trusted proxy
/// may set: removed from an untrusted downstream's request before the gateway adds its own.
const DOWNSTREAM_FORWARDING: [HeaderName; 12] = [
    header::FORWARDED,
    X_FORWARDED_FOR,
    X_FORWARDED_HOST,
    X_FORWARDED_SERVER,
    X_FORWARDED_PROTO,
    X_FORWARDED_PORT,
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-forwarded-ssl"),
    HeaderName::from_static("x-forwarded-scheme"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("true-client-ip"),
];

/// Append an address as text. IPv4 is written by hand: `Ipv4Addr`'s `Display` (padding
/// support, a formatter per octet) cost ~8% of the gateway's instructions per request when
/// called three times a request (X-Forwarded-For, Forwarded, the access log).
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if o >= 100 {
                    out.push((b'0' + o / 100) as char);
                }
                if o >= 10 {
                    out.push((b'0' + (o / 10) % 10) as char);
                }
                out.push((b'0' + o % 10) as char);
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// A `Connection` header field whose value is not a list of tokens (RFC 9110 §7.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed Connection header: its value must be a comma-separated list of tokens (RFC 9110 §7.6.1)")]
pub struct MalformedConnection;

/// A `Connection` header that names something not a token is malformed (Apache: 400).
pub fn connection_tokens(headers: &HeaderMap) -> Result<Vec<String>, MalformedConnection> {
    let mut out = Vec::new();
    for v in headers.get_all(header::CONNECTION) {
        let s = v.to_str().map_err(|_| MalformedConnection)?;
        for t in s.split(',') {
            let t = t.trim();
            if t.is_empty() {
                continue;
            }
            if !t.bytes().all(is_tchar) {
                return Err(MalformedConnection);
            }
            out.push(t.to_ascii_lowercase());
        }
    }
    Ok(out)
}

pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Remove hop-by-hop headers and those named in `Connection`. `keep_upgrade` keeps
/// `Upgrade` (and a `Connection: upgrade`) for a WebSocket handshake.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, named: &[String], keep_upgrade: bool) {
    // Most requests carry none of them: one pass over the names (cheap comparisons of known
    // headers) instead of nine hashed removals.
    if named.is_empty() && !keep_upgrade && !headers.keys().any(|k| hop_by_hop_names().contains(k)) {
        return;
    }
    for n in named {
        if keep_upgrade && n == "upgrade" {
            continue;
        }
        if let Ok(h) = HeaderName::from_bytes(n.as_bytes()) {
            headers.remove(h);
        }
    }
    for (h, name) in HOP_BY_HOP.iter().zip(hop_by_hop_names()) {
        if keep_upgrade && (*h == "upgrade" || *h == "connection") {
            continue;
        }
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Everything the request-side rules need to know about one request.
pub struct RequestFacts<'a> {
    pub peer: IpAddr,
    /// The downstream `Host` (or `:authority`) as sent.
    pub host: Option<&'a HeaderValue>,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The local port the request arrived on.
    pub local_port: u16,
    /// `ServerName` (or the machine's name).
    pub server_name: &'a str,
    /// The origin's `host[:port]` for the Host header when not preserving.
    pub upstream_authority: &'a HeaderValue,
}

pub struct RequestRules<'a> {
    /// The downstream is a proxy of ours (`trusted_downstream`): its forwarding headers are
    /// kept and ours appended. Otherwise they are removed first.
    pub downstream_trusted: bool,
    pub preserve_host: bool,
    pub add_forwarded: bool,
    pub add_forwarded_proto: bool,
    pub via: Via,
    pub edits: &'a [HeaderEdit],
}

fn append(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        append_value(headers, name, v);
    }
}

/// apr_table_mergen: join to the existing value with ", ". When the header is absent (the
/// usual case) `value` goes in as it is: no copy, one lookup.
fn append_value(headers: &mut HeaderMap, name: HeaderName, value: HeaderValue) {
    match headers.entry(name) {
        header::Entry::Vacant(e) => {
            e.insert(value);
        }
        header::Entry::Occupied(mut e) => {
            let prev = e.get().as_bytes();
            if prev.is_empty() {
                e.insert(value);
                return;
            }
            let mut merged = Vec::with_capacity(prev.len() + 2 + value.len());
            merged.extend_from_slice(prev);
            merged.extend_from_slice(b", ");
            merged.extend_from_slice(value.as_bytes());
            if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(merged)) {
                e.insert(v);
            }
        }
    }
}

/// Text made for a header (an address, a `Forwarded` element) as a value, without a copy.
fn owned_value(s: String) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(s)).ok()
}

/// The values of the headers we add that depend only on the connection (peer, local port,
/// scheme), the request's Host and the server name: the same request after request on a
/// keep-alive connection, so each worker thread keeps the last ones made in a small table and
/// shares them (a `HeaderValue` clone is a reference count): no formatting and no allocation
/// per request. The Host is kept as a copy, not a reference into a connection's read buffer.
struct Made {
    peer: IpAddr,
    local_port: u16,
    https: bool,
    host: Option<Box<[u8]>>,
    server_name: Box<str>,
    values: Values,
}

#[derive(Clone)]
struct Values {
    /// `X-Forwarded-For`'s element: the peer.
    for_: Option<HeaderValue>,
    /// `X-Forwarded-Port`.
    port: HeaderValue,
    /// RFC 7239 `Forwarded`'s element.
    forwarded: Option<HeaderValue>,
    /// `X-Forwarded-Server`.
    server: Option<HeaderValue>,
}

impl Made {
    fn of(facts: &RequestFacts<'_>) -> Made {
        let mut peer = String::with_capacity(16);
        push_ip(&mut peer, facts.peer);
        // RFC 7239 §4: quote IPv6 and host values that are not tokens.
        let mut elem = String::with_capacity(64);
        elem.push_str("for=");
        match facts.peer {
            IpAddr::V4(_) => push_ip(&mut elem, facts.peer),
            IpAddr::V6(v6) => {
                use std::fmt::Write;
                let _ = write!(elem, "\"[{v6}]\"");
            }
        }
        elem.push_str(";proto=");
        elem.push_str(facts.scheme);
        if let Some(h) = facts.host.and_then(|h| h.to_str().ok()) {
            if h.bytes().all(is_tchar) {
                elem.push_str(";host=");
                elem.push_str(h);
            } else if !h.contains(['"', '\\']) {
                elem.push_str(";host=\"");
                elem.push_str(h);
                elem.push('"');
            }
        }
        Made {
            peer: facts.peer,
            local_port: facts.local_port,
            https: facts.scheme == "https",
            host: facts.host.map(|h| h.as_bytes().into()),
            server_name: facts.server_name.into(),
            values: Values {
                for_: owned_value(peer),
                port: HeaderValue::from(facts.local_port),
                forwarded: owned_value(elem),
                server: HeaderValue::from_str(facts.server_name).ok(),
            },
        }
    }

    fn fits(&self, facts: &RequestFacts<'_>) -> bool {
        self.peer == facts.peer
            && self.local_port == facts.local_port
            && self.https == (facts.scheme == "https")
            && self.host.as_deref() == facts.host.map(HeaderValue::as_bytes)
            && *self.server_name == *facts.server_name
    }
}

/// The connection's header values (see [`Made`]), from the worker's table or made now.
fn made_values(facts: &RequestFacts<'_>) -> Values {
    const SLOTS: usize = 16;
    thread_local! {
        static MADE: std::cell::RefCell<[Option<Made>; SLOTS]> = const { std::cell::RefCell::new([const { None }; SLOTS]) };
    }
    let spread = match facts.peer {
        IpAddr::V4(v4) => u32::from(v4) as usize,
        IpAddr::V6(v6) => u128::from(v6) as usize,
    };
    let i = (spread ^ facts.local_port as usize) % SLOTS;
    MADE.with(|m| {
        let mut m = m.borrow_mut();
        match &m[i] {
            Some(made) if made.fits(facts) => made.values.clone(),
            _ => {
                let made = Made::of(facts);
                let values = made.values.clone();
                m[i] = Some(made);
                values
            }
        }
    })
}

/// Apply the request rules in Apache's order: hop-by-hop already stripped, then the proxy's
/// own headers (so `Connection: close, X-Forwarded-For` cannot remove ours; CVE-2022-31813).
pub fn apply_request_rules(headers: &mut HeaderMap, facts: &RequestFacts<'_>, rules: &RequestRules<'_>) {
    // RFC 7239 §8.1 (and mod_remoteip, nginx's real_ip_recursive): only proxies we trust may
    // say who the client was or what it asked for. A client's own `Forwarded: for=…` or
    // `X-Forwarded-Proto` would otherwise reach the origin looking like ours.
    if !rules.downstream_trusted {
        for name in DOWNSTREAM_FORWARDING {
            headers.remove(name);
        }
    }
    // Host.
    let host_value = if rules.preserve_host { facts.host.cloned() } else { Some(facts.upstream_authority.clone()) };
    if let Some(h) = host_value {
        headers.insert(header::HOST, h);
    }
    if rules.add_forwarded || rules.add_forwarded_proto {
        let made = made_values(facts);
        if rules.add_forwarded {
            if let Some(v) = made.for_ {
                append_value(headers, X_FORWARDED_FOR, v);
            }
            if let Some(h) = facts.host.filter(|h| h.to_str().is_ok()) {
                append_value(headers, X_FORWARDED_HOST, h.clone());
            }
            if let Some(v) = made.server {
                append_value(headers, X_FORWARDED_SERVER, v);
            }
        }
        if rules.add_forwarded_proto {
            // We are the edge: what a downstream claims about scheme and port is not believed.
            headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(if facts.scheme == "https" { "https" } else { "http" }));
            headers.insert(X_FORWARDED_PORT, made.port);
            if let Some(v) = made.forwarded {
                append_value(headers, header::FORWARDED, v);
            }
        }
    }
    match rules.via {
        Via::Off => {}
        Via::Block => {
            headers.remove(header::VIA);
        }
        Via::On | Via::Full => {
            let mut v = format!("1.1 {}:{}", facts.server_name, facts.local_port);
            if rules.via == Via::Full {
                v.push_str(concat!(" (trove/", env!("CARGO_PKG_VERSION"), ")"));
            }
            append(headers, header::VIA, &v);
        }
    }
    if let Some(mf) = headers.get(header::MAX_FORWARDS).and_then(|v| v.to_str().ok()).and_then(|s| s.trim().parse::<u64>().ok()) {
        headers.insert(header::MAX_FORWARDS, HeaderValue::from(mf.saturating_sub(1)));
    }
    apply_edits(headers, rules.edits);
}

/// mod_headers' set/unset/add/append, in order.
pub fn apply_edits(headers: &mut HeaderMap, edits: &[HeaderEdit]) {
    for e in edits {
        match e.op {
            HeaderEditOp::Set => {
                headers.insert(e.name.clone(), e.value.clone().expect("set has a value"));
            }
            HeaderEditOp::Unset => {
                headers.remove(&e.name);
            }
            HeaderEditOp::Add => {
                headers.append(e.name.clone(), e.value.clone().expect("add has a value"));
            }
            HeaderEditOp::Append => {
                if let Some(v) = e.value.as_ref().and_then(|v| v.to_str().ok()) {
                    append(headers, e.name.clone(), v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hm(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn ip_text_matches_display() {
        for ip in ["0.0.0.0", "127.0.0.1", "10.20.30.40", "255.255.255.255", "1.100.99.9", "::1", "fe80::1:2"] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut s = String::new();
            push_ip(&mut s, ip);
            assert_eq!(s, ip.to_string());
        }
    }

    #[test]
    fn connection_named_headers_are_removed_but_ours_are_added_after() {
        let mut h = hm(&[
            ("connection", "close, X-Forwarded-For, x-secret"),
            ("x-forwarded-for", "6.6.6.6"),
            ("x-secret", "1"),
            ("keep-alive", "5"),
            ("te", "trailers"),
            ("accept", "*/*"),
        ]);
        let named = connection_tokens(&h).unwrap();
        strip_hop_by_hop(&mut h, &named, false);
        let host = HeaderValue::from_static("public.example");
        let facts = RequestFacts {
            peer: "10.0.0.7".parse().unwrap(),
            host: Some(&host),
            scheme: "https",
            local_port: 443,
            server_name: "gw",
            upstream_authority: &HeaderValue::from_static("localhost:7990"),
        };
        let rules = RequestRules { downstream_trusted: false, preserve_host: false, add_forwarded: true, add_forwarded_proto: true, via: Via::Off, edits: &[] };
        apply_request_rules(&mut h, &facts, &rules);
        assert_eq!(h["x-forwarded-for"], "10.0.0.7");
        assert!(h.get("x-secret").is_none() && h.get("keep-alive").is_none() && h.get("te").is_none() && h.get("connection").is_none());
        assert_eq!(h["host"], "localhost:7990");
        assert_eq!(h["x-forwarded-host"], "public.example");
        assert_eq!(h["x-forwarded-server"], "gw");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-port"], "443");
        assert_eq!(h["forwarded"], "for=10.0.0.7;proto=https;host=public.example");
        assert_eq!(h["accept"], "*/*");
    }

    #[test]
    fn forwarded_headers_append_and_proto_replaces() {
        let mut h = hm(&[("x-forwarded-for", "1.1.1.1"), ("x-forwarded-proto", "https"), ("forwarded", "for=1.1.1.1")]);
        let host = HeaderValue::from_static("h:8080");
        let facts = RequestFacts {
            peer: "::1".parse().unwrap(),
            host: Some(&host),
            scheme: "http",
            local_port: 8080,
            server_name: "gw",
            upstream_authority: &HeaderValue::from_static("o"),
        };
        let rules = RequestRules { downstream_trusted: true, preserve_host: true, add_forwarded: true, add_forwarded_proto: true, via: Via::On, edits: &[] };
        apply_request_rules(&mut h, &facts, &rules);
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, ::1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["forwarded"], "for=1.1.1.1, for=\"[::1]\";proto=http;host=\"h:8080\"");
        assert_eq!(h["host"], "h:8080");
        assert_eq!(h["via"], "1.1 gw:8080");
    }

    /// The per-thread table of made values answers for the facts it was made for only.
    #[test]
    fn made_values_follow_peer_port_scheme_and_host() {
        let hosts = [HeaderValue::from_static("a.example"), HeaderValue::from_static("b.example:8443")];
        let rules = RequestRules { downstream_trusted: true, preserve_host: true, add_forwarded: true, add_forwarded_proto: true, via: Via::Off, edits: &[] };
        let origin = HeaderValue::from_static("o");
        // Twice over, so the second pass is answered from the table.
        for _ in 0..2 {
            for peer in ["10.0.0.1", "10.0.0.2", "10.0.0.17", "::1"] {
                for port in [80u16, 443, 8443] {
                    for scheme in ["http", "https"] {
                        for host in hosts.iter().map(Some).chain([None]) {
                            let facts =
                                RequestFacts { peer: peer.parse().unwrap(), host, scheme, local_port: port, server_name: "gw", upstream_authority: &origin };
                            let mut h = HeaderMap::new();
                            apply_request_rules(&mut h, &facts, &rules);
                            assert_eq!(h["x-forwarded-for"], peer);
                            assert_eq!(h["x-forwarded-port"], port.to_string().as_str());
                            let for_ = if peer.contains(':') { format!("\"[{peer}]\"") } else { peer.to_string() };
                            let host_part = match host.map(|h| h.to_str().unwrap()) {
                                Some(h) if h.contains(':') => format!(";host=\"{h}\""),
                                Some(h) => format!(";host={h}"),
                                None => String::new(),
                            };
                            assert_eq!(h["forwarded"], format!("for={for_};proto={scheme}{host_part}").as_str());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn switches_off_and_max_forwards() {
        let mut h = hm(&[("max-forwards", "3"), ("via", "1.0 x")]);
        let facts = RequestFacts {
            peer: "127.0.0.1".parse().unwrap(),
            host: None,
            scheme: "http",
            local_port: 80,
            server_name: "gw",
            upstream_authority: &HeaderValue::from_static("o:81"),
        };
        let rules =
            RequestRules { downstream_trusted: false, preserve_host: false, add_forwarded: false, add_forwarded_proto: false, via: Via::Block, edits: &[] };
        apply_request_rules(&mut h, &facts, &rules);
        assert!(h.get("x-forwarded-for").is_none() && h.get("forwarded").is_none() && h.get("via").is_none());
        assert_eq!(h["max-forwards"], "2");
    }

    #[test]
    fn malformed_connection_header_is_detected() {
        assert!(connection_tokens(&hm(&[("connection", "close, a b")])).is_err());
        assert_eq!(connection_tokens(&hm(&[("connection", "Keep-Alive, Upgrade")])).unwrap(), ["keep-alive", "upgrade"]);
    }
}
