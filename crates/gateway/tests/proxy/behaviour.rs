//! What the gateway does for well-formed traffic: routing, headers, rewriting, errors,
//! streaming, keep-alive, upgrades, access control.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::origin::Origin;
use crate::*;

fn seed_conf(o: &Origin, extra: &str) -> String {
    format!(
        "Listen 127.0.0.1:0\nServerName gw.test\nProxyRequests Off\n<Proxy *>\n  Order Deny,Allow\n  Allow from all\n</Proxy>\n\
         ProxyPass /static !\n\
         ProxyPass /stash http://{a}/stash connectiontimeout=5 timeout=2\n\
         ProxyPassReverse /stash http://{a}/stash\n\
         ProxyPassReverseCookiePath /internal /stash\n\
         ProxyPassReverseCookieDomain backend.local public.example\n{extra}",
        a = o.addr
    )
}

#[tokio::test]
async fn routes_by_prefix_and_appends_path_and_query() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    let r = get(gw.addr, "/stash/scm/TP/test.git/info/refs?service=git-upload-pack", "X-Test-Id: a\r\n").await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = o.by_id("a");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/stash/scm/TP/test.git/info/refs?service=git-upload-pack");
    // Outside the prefix, look-alike prefix, and exclusions: 404, never forwarded.
    for p in ["/other", "/stashx/y", "/static/x"] {
        let r = get(gw.addr, p, "X-Test-Id: b\r\n").await;
        assert_eq!(r.status, 404, "{p}");
    }
    assert!(o.by_id("b").is_empty());
}

/// Every shape a client might use to speak for a proxy (RFC 7239 §8.1): from a downstream that
/// is no trusted proxy, none of it reaches the origin; the origin sees only the gateway's own.
#[tokio::test]
async fn an_untrusted_downstream_cannot_speak_for_a_proxy() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    let spoofs: &[&str] = &[
        "Forwarded: for=198.51.100.1;proto=https;host=evil.example",
        "Forwarded: for=198.51.100.1, for=198.51.100.2;host=evil.example",
        "FORWARDED: For=\"[2001:db8::1]:4711\";Proto=HTTPS",
        "Forwarded: for=_hidden;host=evil.example",
        "Forwarded: for=unknown",
        "X-Forwarded-For: 198.51.100.1, 198.51.100.2",
        "x-forwarded-for: 198.51.100.3\r\nX-Forwarded-For: 198.51.100.4",
        "X-Forwarded-Host: evil.example",
        "X-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\nX-Forwarded-Ssl: on",
        "X-Real-IP: 198.51.100.1",
        "X-Forwarded-Prefix: /evil",
        "True-Client-IP: 198.51.100.1\r\nX-Client-IP: 198.51.100.1",
    ];
    for (i, spoof) in spoofs.iter().enumerate() {
        let id = format!("spoof{i}");
        let r = get(gw.addr, "/stash/x", &format!("X-Test-Id: {id}\r\n{spoof}\r\n")).await;
        assert_eq!(r.status, 200, "{spoof}");
        let seen = &o.by_id(&id)[0];
        let head = seen.raw_head.to_ascii_lowercase();
        for bad in ["198.51.100", "2001:db8", "evil.example", "_hidden", "unknown", "https", "x-real-ip", "x-forwarded-ssl", "x-forwarded-prefix", "client-ip"]
        {
            assert!(!head.contains(bad), "{spoof:?} reached the origin as {bad:?}:\n{}", seen.raw_head);
        }
        assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"), "{spoof}");
        assert_eq!(seen.header("forwarded"), Some("for=127.0.0.1;proto=http;host=public.example"), "{spoof}");
    }
}

/// A proxy in front of the gateway that is listed (mod_remoteip's RemoteIPInternalProxy, TOML
/// `trusted_downstream`) keeps its forwarding headers, and the gateway appends its own.
#[tokio::test]
async fn a_trusted_downstream_proxys_forwarding_headers_are_kept_and_appended_to() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, "LoadModule remoteip_module modules/mod_remoteip.so\nRemoteIPInternalProxy 127.0.0.0/8\n"))).await;
    let r = get(gw.addr, "/stash/x", "X-Test-Id: t\r\nX-Forwarded-For: 198.51.100.1\r\nForwarded: for=198.51.100.1;proto=https\r\n").await;
    assert_eq!(r.status, 200);
    let seen = &o.by_id("t")[0];
    assert_eq!(seen.header("x-forwarded-for"), Some("198.51.100.1, 127.0.0.1"));
    assert_eq!(seen.header("forwarded"), Some("for=198.51.100.1;proto=https, for=127.0.0.1;proto=http;host=public.example"));
}

#[tokio::test]
async fn origin_sees_host_forwarded_headers_and_no_hop_by_hop() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    let r = get(
        gw.addr,
        "/stash/x",
        "X-Test-Id: h\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nConnection: X-Secret\r\nX-Secret: 1\r\nTE: trailers\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    let seen = &o.by_id("h")[0];
    assert_eq!(seen.header("host"), Some(o.addr.to_string().as_str()));
    // The downstream is no proxy of ours: what it said about forwarding is dropped, not extended.
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-host"), Some("public.example"));
    assert_eq!(seen.header("x-forwarded-server"), Some("gw.test"));
    // Ours, not the downstream's claim.
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-port"), Some(gw.addr.port().to_string().as_str()));
    assert!(seen.header("forwarded").unwrap().starts_with("for=127.0.0.1;proto=http;host=public.example"));
    assert!(seen.header("x-secret").is_none() && seen.header("te").is_none());
    assert!(seen.raw_head.starts_with("GET /stash/x HTTP/1.1\r\n"));
}

#[tokio::test]
async fn preserve_host_sends_the_downstream_host() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, "ProxyPreserveHost On\n"))).await;
    get(gw.addr, "/stash/x", "X-Test-Id: p\r\n").await;
    assert_eq!(o.by_id("p")[0].header("host"), Some("public.example"));
}

#[tokio::test]
async fn location_and_cookies_are_rewritten_to_the_public_url() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    let to = format!("http://{}/stash/projects?x=1", o.addr);
    let r = get(gw.addr, &format!("/stash/redirect?to={to}"), "").await;
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("http://public.example/stash/projects?x=1"));
    assert_eq!(r.header("content-location"), r.header("location"));
    // A look-alike host is not rewritten.
    let evil = format!("http://{}.evil.com/stash/x", o.addr);
    let r = get(gw.addr, &format!("/stash/redirect?to={evil}"), "").await;
    assert_eq!(r.header("location"), Some(evil.as_str()));
    let r = get(gw.addr, "/stash/cookie", "").await;
    let cookies: Vec<&str> = r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie")).map(|(_, v)| v.as_str()).collect();
    assert_eq!(cookies, ["s=1; Path=/stash; Domain=public.example; HttpOnly", "t=2; path=/other"]);
}

#[tokio::test]
async fn response_hop_by_hop_headers_are_removed() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    let r = get(gw.addr, "/stash/hop", "").await;
    assert!(r.header("x-private").is_none() && r.header("keep-alive").is_none());
    assert_eq!(r.header("server"), Some("test-origin"));
}

#[tokio::test]
async fn refused_connection_is_503_and_silent_origin_is_504() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let o = Origin::start().await;
    let conf = format!("Listen 127.0.0.1:0\nProxyPass /dead http://{dead_addr}/dead\nProxyPass /stash http://{}/stash timeout=1\n", o.addr);
    let gw = start(parse_apache(&conf)).await;
    assert_eq!(get(gw.addr, "/dead/x", "").await.status, 503);
    assert_eq!(get(gw.addr, "/stash/slow", "").await.status, 504);
    assert_eq!(get(gw.addr, "/stash/close", "").await.status, 502);
    assert_eq!(get(gw.addr, "/stash/badheader", "").await.status, 502);
}

#[tokio::test]
async fn connect_timeout_is_503() {
    // A loopback listener that never accepts, with its backlog filled: further SYNs are
    // dropped, so connecting hangs until the connect timeout.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let l = sock.listen(0).unwrap();
    let full = l.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_millis(200), s.connect(full)).await {
            fillers.push(c);
        }
    }
    let conf = format!("Listen 127.0.0.1:0\nProxyPass / http://{full}/ connectiontimeout=300ms\n");
    let gw = start(parse_apache(&conf)).await;
    let r = get(gw.addr, "/x", "").await;
    assert!(r.status == 503, "{r:?}");
}

#[tokio::test]
async fn access_rules_deny_with_403_and_never_forward() {
    let o = Origin::start().await;
    let conf = format!("Listen 127.0.0.1:0\nProxyPass / http://{}/\n<Proxy *>\nOrder Allow,Deny\nAllow from 10.0.0.0/8\n</Proxy>\n", o.addr);
    let gw = start(parse_apache(&conf)).await;
    assert_eq!(get(gw.addr, "/x", "X-Test-Id: d\r\n").await.status, 403);
    assert!(o.by_id("d").is_empty());
    let conf = format!(
        "Listen 127.0.0.1:0\nProxyPass / http://{}/\n<Proxy *>\n<RequireAll>\nRequire all granted\nRequire not ip 127.0.0.1\n</RequireAll>\n</Proxy>\n",
        o.addr
    );
    let gw = start(parse_apache(&conf)).await;
    assert_eq!(get(gw.addr, "/x", "").await.status, 403);
    let conf = format!("Listen 127.0.0.1:0\nProxyPass / http://{}/\n<Proxy *>\nRequire ip 127.0.0.1\n</Proxy>\n", o.addr);
    let gw = start(parse_apache(&conf)).await;
    assert_eq!(get(gw.addr, "/x", "").await.status, 200);
}

#[tokio::test]
async fn bodies_stream_both_ways_with_the_right_framing() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    // Content-Length body passes with its length.
    let req = b"POST /stash/p HTTP/1.1\r\nHost: a\r\nX-Test-Id: cl\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    assert_eq!(raw(gw.addr, req).await[0].status, 200);
    let seen = &o.by_id("cl")[0];
    assert_eq!(seen.body, b"hello");
    assert_eq!(seen.header("content-length"), Some("5"));
    // A small chunked body goes with a Content-Length (as Apache does up to 16 KiB).
    let req = b"POST /stash/p HTTP/1.1\r\nHost: a\r\nX-Test-Id: ch\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    assert_eq!(raw(gw.addr, req).await[0].status, 200);
    let seen = &o.by_id("ch")[0];
    assert_eq!((seen.body.as_slice(), seen.chunked, seen.header("content-length")), (&b"hello"[..], false, Some("5")));
    // A large chunked body streams chunked.
    let mut req = b"POST /stash/p HTTP/1.1\r\nHost: a\r\nX-Test-Id: big\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..64 {
        req.extend_from_slice(b"400\r\n");
        req.extend_from_slice(&[b'z'; 1024]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(raw(gw.addr, &req).await[0].status, 200);
    let seen = &o.by_id("big")[0];
    assert_eq!(seen.body.len(), 64 * 1024);
    assert!(seen.chunked);
    // A large response streams back whole.
    let r = get(gw.addr, "/stash/big/3000000", "").await;
    assert_eq!(r.body.len(), 3_000_000);
    // HEAD gets headers only.
    let r = raw(gw.addr, b"HEAD /stash/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
    assert_eq!(r[0].status, 200);
    assert!(r[0].body.is_empty());
}

#[tokio::test]
async fn expect_100_continue_is_answered_and_the_body_forwarded() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"PUT /stash/e HTTP/1.1\r\nHost: a\r\nX-Test-Id: ex\r\nContent-Length: 4\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"), "{:?}", String::from_utf8_lossy(&buf[..n]));
    s.write_all(b"data").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(String::from_utf8_lossy(&rest).contains("200"));
    assert_eq!(o.by_id("ex")[0].body, b"data");
}

#[tokio::test]
async fn keep_alive_reuses_and_max_keepalive_requests_closes() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, "MaxKeepAliveRequests 2\n"))).await;
    let two = b"GET /stash/1 HTTP/1.1\r\nHost: a\r\n\r\nGET /stash/2 HTTP/1.1\r\nHost: a\r\n\r\nGET /stash/3 HTTP/1.1\r\nHost: a\r\n\r\n";
    let r = raw(gw.addr, two).await;
    assert_eq!(r.len(), 2, "third request not served after MaxKeepAliveRequests");
    assert_eq!(r[1].header("connection"), Some("close"));
}

#[tokio::test]
async fn slow_request_head_gets_408_and_idle_connection_closes() {
    let o = Origin::start().await;
    let mut cfg = parse_apache(&seed_conf(&o, ""));
    cfg.limits.header_read_timeout = Duration::from_millis(300);
    cfg.limits.keep_alive_timeout = Duration::from_millis(300);
    let gw = start(cfg).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /stash/x HTTP/1.1\r\nHost: a\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.expect("closed by the gateway");
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408"), "{:?}", String::from_utf8_lossy(&buf));
    // Idle after a response: closed quietly.
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /stash/x HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.expect("idle connection closed");
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn websocket_upgrade_is_tunnelled() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /stash/ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"), "{:?}", String::from_utf8_lossy(&buf[..n]));
    s.write_all(b"ping").await.unwrap();
    let mut got = vec![0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(&got, b"echo:ping");
}

/// A tunnel nobody uses is closed after the route's `timeout` (here 2 s), as
/// mod_proxy_wstunnel closes an idle one, instead of holding two connections for ever.
#[tokio::test]
async fn an_idle_websocket_tunnel_is_closed_after_the_routes_timeout() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /stash/ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
    // Nothing is sent either way: the gateway ends the tunnel (a generous bound, so a tunnel
    // kept for ever fails rather than hangs the suite).
    let n = tokio::time::timeout(Duration::from_secs(60), s.read(&mut buf)).await.expect("the idle tunnel was never closed").unwrap_or(0);
    assert_eq!(n, 0, "the tunnel stayed open");
}

/// Stopping the gateway waits for an open tunnel as for a request in flight (within the drain
/// deadline), and is done once the tunnel ends.
#[tokio::test]
async fn draining_waits_for_an_open_tunnel() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /stash/ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
    let addr = gw.addr;
    let mut gw = gw;
    gw.request_stop();
    // Still working while the gateway drains.
    s.write_all(b"ping").await.unwrap();
    let mut got = vec![0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(&got, b"echo:ping");
    // Given half a second, it is still draining (it can only err towards passing on a slow
    // machine, never fail a correct gateway).
    assert!(tokio::time::timeout(Duration::from_millis(500), &mut gw.task).await.is_err(), "the gateway stopped under an open tunnel");
    drop(s);
    tokio::time::timeout(Duration::from_secs(30), &mut gw.task).await.expect("the gateway did not stop once the tunnel ended").unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still accepting after the stop");
}

/// The same over TLS: the engine hands the upgrade over inside the TLS session.
#[tokio::test]
async fn websocket_upgrade_is_tunnelled_over_tls() {
    let o = Origin::start().await;
    let (gw, ca) = start_seed_tls(&o).await;
    let mut s = crate::connect_tls(gw.addr, &ca).await;
    s.write_all(b"GET /stash/ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"), "{:?}", String::from_utf8_lossy(&buf[..n]));
    s.write_all(b"ping").await.unwrap();
    let mut got = vec![0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(&got, b"echo:ping");
}

/// The seed's configuration on a TLS listener offering `h2` and `http/1.1` by ALPN, as the
/// gateway's own TLS set-up does; and the certificate to trust.
async fn start_seed_tls(o: &Origin) -> (Running, String) {
    let (tls, ca) = crate::test_tls(&[b"h2", b"http/1.1"]);
    let mut cfg = parse_apache(&seed_conf(o, ""));
    for l in &mut cfg.listeners {
        l.tls = true;
    }
    (start_tls(cfg, Some(tls)).await, ca)
}

/// A downstream that chose `h2` by ALPN must speak HTTP/2 (RFC 9113 §3.2): HTTP/1.1 sent
/// there is not served (hyper's HTTP/1 serves only the tunnel requests the engine hands
/// over), and reaches no origin.
#[tokio::test]
async fn http1_after_choosing_h2_by_alpn_is_not_served() {
    let o = Origin::start().await;
    let (gw, ca) = start_seed_tls(&o).await;
    let mut s = crate::connect_tls_alpn(gw.addr, &ca, &[b"h2"]).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    s.write_all(b"GET /stash/x HTTP/1.1\r\nHost: a\r\nX-Test-Id: h1-in-h2\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await.expect("the gateway closes the connection");
    assert!(parse_responses(&buf).is_empty(), "answered in HTTP/1: {:?}", String::from_utf8_lossy(&buf));
    assert!(o.by_id("h1-in-h2").is_empty(), "the origin saw the request");
    // The same listener serves HTTP/1.1 to a downstream that chose it.
    let mut s = crate::connect_tls_alpn(gw.addr, &ca, &[b"http/1.1"]).await;
    s.write_all(b"GET /stash/x HTTP/1.1\r\nHost: a\r\nX-Test-Id: h1\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert_eq!(parse_responses(&buf).first().map(|r| r.status), Some(200), "{:?}", String::from_utf8_lossy(&buf));
}

/// A request that could have opened a tunnel but did not (a protocol the route does not
/// upgrade to, or an origin that ignores `Upgrade`) is answered, and the connection closes:
/// what the downstream sends after it is never served on that connection.
#[tokio::test]
async fn a_request_after_an_upgrade_that_did_not_happen_is_not_served() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    for (name, upgrade) in [("not-upgradable", "Upgrade: foo\r\nConnection: Upgrade\r\n"), ("origin-ignores", "Upgrade: websocket\r\nConnection: Upgrade\r\n")]
    {
        o.clear();
        let req = format!("GET /stash/x HTTP/1.1\r\nHost: a\r\nX-Test-Id: first\r\n{upgrade}\r\nGET /stash/y HTTP/1.1\r\nHost: a\r\nX-Test-Id: second\r\n\r\n");
        let r = raw(gw.addr, req.as_bytes()).await;
        assert_eq!(r.iter().map(|r| r.status).collect::<Vec<_>>(), [200], "{name}: {r:?}");
        assert_eq!(r[0].header("connection"), Some("close"), "{name}");
        assert_eq!(o.by_id("first").len(), 1, "{name}");
        assert!(o.by_id("second").is_empty(), "{name}: the origin saw the second request");
    }
}

#[tokio::test]
async fn absolute_form_and_connect_never_reach_another_host() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    let r = raw(gw.addr, b"GET http://evil.example/stash/x HTTP/1.1\r\nHost: evil.example\r\nX-Test-Id: abs\r\nConnection: close\r\n\r\n").await;
    assert_eq!(r[0].status, 200);
    assert_eq!(o.by_id("abs")[0].target, "/stash/x");
    let r = raw(gw.addr, b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n").await;
    assert_eq!(r[0].status, 405);
    assert!(r[0].header("allow").is_some());
    let r = raw(gw.addr, b"GET ftp://evil.example/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
    assert_eq!(r[0].status, 400);
}

#[tokio::test]
async fn paths_are_canonicalised_like_apache() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    let r = get(gw.addr, "/stash/%41%7e%22/x/../y?q=%41", "X-Test-Id: c\r\n").await;
    assert_eq!(r.status, 200);
    assert_eq!(o.by_id("c")[0].target, "/stash/A~%22/y?q=%41");
    assert_eq!(get(gw.addr, "/stash/a%2Fb", "").await.status, 404);
    assert_eq!(get(gw.addr, "/stash/%2e%2e/%2e%2e/etc", "").await.status, 400);
    // CVE-2023-25690 / CVE-2024-38473: decoded CR LF ? # are re-encoded.
    let r = get(gw.addr, "/stash/a%0d%0aX-Injected:%20yes%3Fz", "X-Test-Id: inj\r\n").await;
    assert_eq!(r.status, 200);
    let seen = &o.by_id("inj")[0];
    assert!(seen.header("x-injected").is_none());
    assert_eq!(seen.target, "/stash/a%0D%0AX-Injected:%20yes%3Fz");
    // CVE-2021-40438: a unix: socket path in the query is just a query.
    let r = get(gw.addr, "/stash/q?unix:AAAA|http://internal/", "X-Test-Id: unix\r\n").await;
    assert_eq!(r.status, 200);
    assert_eq!(o.by_id("unix")[0].target, "/stash/q?unix:AAAA|http://internal/");
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "-H", "X-Test-Id: h2", "-o", "/dev/null", "-w", "%{http_code} %{http_version}"])
        .arg(format!("http://{}/stash/h2", gw.addr))
        .output()
        .await
        .expect("curl must be installed");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200 2");
    assert_eq!(o.by_id("h2")[0].target, "/stash/h2");
}

#[tokio::test]
async fn toml_config_routes_the_same_way() {
    let o = Origin::start().await;
    let t = format!(
        "[[listen]]\naddr = \"127.0.0.1:0\"\n[[server]]\nnames = [\"gw.test\"]\n[[server.route]]\npath = \"/stash\"\nupstream = \"http://{}/stash\"\ntimeout = 5\n",
        o.addr
    );
    let gw = start(parse_toml(&t)).await;
    let r = get(gw.addr, "/stash/t", "X-Test-Id: toml\r\n").await;
    assert_eq!(r.status, 200);
    assert_eq!(o.by_id("toml")[0].target, "/stash/t");
}

#[tokio::test]
async fn metrics_listener_counts_requests() {
    let o = Origin::start().await;
    let mut cfg = parse_apache(&seed_conf(&o, ""));
    cfg.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let gw = Gateway::bind(cfg, None).await.unwrap();
    let addr = gw.local_addrs()[0];
    let admin = gw.admin_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(gw.serve(async {
        let _ = rx.await;
    }));
    get(addr, "/stash/m", "").await;
    let m = raw(admin, b"GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
    let body = m[0].body_str();
    assert!(body.contains("trove_gateway_requests_total{route=\"/stash\",status=\"200\"} 1"), "{body}");
    assert!(body.contains("trove_gateway_upstream_response_seconds_count 1"), "{body}");
    let _ = tx.send(());
}

#[tokio::test]
async fn close_delimited_responses_arrive_whole() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    let r = get(gw.addr, "/stash/eof", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 100_000);
}

#[tokio::test]
async fn a_post_whose_body_was_sent_is_not_retried() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    // Warm a pooled connection, then POST to a path where the origin hangs up.
    let two = b"GET /stash/warm HTTP/1.1\r\nHost: a\r\n\r\nPOST /stash/close HTTP/1.1\r\nHost: a\r\nX-Test-Id: post\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody";
    let r = raw(gw.addr, two).await;
    assert_eq!(r[1].status, 502);
    assert_eq!(o.by_id("post").len(), 1, "a POST must reach the origin once");
}

fn vm_hwm_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_chunked_upload_streams_with_flat_memory() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    let before = vm_hwm_kib();
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /stash/sink HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").await.unwrap();
    let chunk = vec![b'p'; 256 * 1024];
    let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
    frame.extend_from_slice(&chunk);
    frame.extend_from_slice(b"\r\n");
    const TOTAL: usize = 128 << 20;
    for _ in 0..TOTAL / chunk.len() {
        s.write_all(&frame).await.unwrap();
    }
    s.write_all(b"0\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), s.read_to_end(&mut buf)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(&format!("len={TOTAL}")), "{text}");
    let grown = vm_hwm_kib().saturating_sub(before);
    // 128 MiB went through; the whole process (test client, gateway, origin) grew far less.
    assert!(grown < 24 * 1024, "peak memory grew by {grown} KiB while streaming 128 MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_upload_with_a_length_arrives_whole_and_the_next_request_after_it_is_served() {
    // Large enough for the engine to splice it socket to socket.
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    const TOTAL: usize = 5 << 20;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(format!("POST /stash/upload HTTP/1.1\r\nHost: a\r\nX-Test-Id: big-cl\r\nContent-Length: {TOTAL}\r\n\r\n").as_bytes()).await.unwrap();
    let body = vec![b'u'; TOTAL];
    s.write_all(&body).await.unwrap();
    // Pipelined right behind the body: it must not be swallowed into the upload.
    s.write_all(b"GET /stash/after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut buf)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(&format!("len={TOTAL}")), "{text}");
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    let got = o.by_id("big-cl");
    assert_eq!(got.len(), 1);
    assert!(got[0].body.len() == TOTAL && got[0].body.iter().all(|b| *b == b'u'), "the origin got {} bytes", got[0].body.len());
}

/// A chunked upload in chunks of `sizes` (of `pattern` bytes, the first with an extension),
/// each size line written on its own before its data, then a trailer and `after`.
async fn chunked_upload(addr: std::net::SocketAddr, id: &str, sizes: &[usize], after: &[u8]) -> (Vec<crate::Resp>, Vec<u8>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("POST /stash/up HTTP/1.1\r\nHost: a\r\nX-Test-Id: {id}\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes()).await.unwrap();
    let data = crate::origin::pattern(sizes.iter().sum());
    let mut at = 0;
    for (i, n) in sizes.iter().enumerate() {
        let ext = if i == 0 { ";ext=1" } else { "" };
        s.write_all(format!("{n:x}{ext}\r\n").as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        s.write_all(&data[at..at + n]).await.unwrap();
        s.write_all(b"\r\n").await.unwrap();
        at += n;
    }
    s.write_all(b"0\r\nx-trailer: t\r\n\r\n").await.unwrap();
    s.write_all(after).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf)).await.unwrap().unwrap();
    (parse_responses(&buf), data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_upload_of_large_chunks_arrives_whole_and_framed_and_the_next_request_is_served() {
    // Chunks from 32 KiB on are spliced past what the gateway has read; around them, small
    // chunks, one byte, and a chunk the size of the threshold ± 1.
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    let sizes = [100 * 1024, 32 * 1024 - 1, 1, 32 * 1024 + 1, 200 * 1024, 40 * 1024, 10, 64 * 1024, 64 * 1024];
    let (r, data) = chunked_upload(gw.addr, "big-chunks", &sizes, b"GET /stash/after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
    assert_eq!(r.iter().map(|r| r.status).collect::<Vec<_>>(), [200, 200], "{r:?}");
    assert!(r[0].body_str().contains(&format!("len={}", data.len())), "{}", r[0].body_str());
    let got = o.by_id("big-chunks");
    assert_eq!(got.len(), 1);
    assert!(got[0].chunked);
    assert!(got[0].body == data, "the origin got {} bytes, not the {} sent in order", got[0].body.len(), data.len());
    // The origin connection went back to the pool in a clean state: more requests on it work.
    for _ in 0..3 {
        assert_eq!(get(gw.addr, "/stash/again", "").await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_upload_cut_short_inside_a_large_chunk_is_answered_400_and_never_completes_at_the_origin() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /stash/up HTTP/1.1\r\nHost: a\r\nX-Test-Id: cut\r\nTransfer-Encoding: chunked\r\n\r\n").await.unwrap();
    // One whole large chunk, then one that promises 100 KiB and brings 50.
    s.write_all(format!("{:x}\r\n", 64 * 1024).as_bytes()).await.unwrap();
    s.write_all(&vec![b'a'; 64 * 1024]).await.unwrap();
    s.write_all(format!("\r\n{:x}\r\n", 100 * 1024).as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.write_all(&vec![b'b'; 50 * 1024]).await.unwrap();
    s.shutdown().await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await.unwrap().unwrap();
    let r = parse_responses(&buf);
    assert_eq!(r.first().map(|r| r.status), Some(400), "{r:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(o.by_id("cut").is_empty(), "the origin saw a complete request from a cut-short upload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_response_of_large_chunks_arrives_whole_in_either_framing() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    let total = 1_000_003;
    for chunk in [100_000, 32 * 1024, 7_000] {
        let want = crate::origin::pattern(total);
        // HTTP/1.1: chunked on, twice on one connection (the origin connection is reused).
        let path = format!("/stash/chunked-big/{total}/{chunk}");
        let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\nGET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let r = raw(gw.addr, req.as_bytes()).await;
        assert_eq!(r.len(), 2, "chunks of {chunk}");
        for r in &r {
            assert_eq!((r.status, r.header("transfer-encoding")), (200, Some("chunked")));
            assert!(r.body == want, "chunks of {chunk}: {} bytes, not the {total} sent in order", r.body.len());
        }
        // HTTP/1.0: the body unframed, to the close.
        let r = raw(gw.addr, format!("GET {path} HTTP/1.0\r\nHost: a\r\n\r\n").as_bytes()).await;
        assert_eq!(r[0].status, 200);
        assert!(r[0].body == want, "HTTP/1.0, chunks of {chunk}: {} bytes {:?}", r[0].body.len(), r[0].headers);
    }
}

/// This process's write-like system calls so far (`write`, not `send`: sockets' data does not
/// count, an eventfd wake does).
fn write_syscalls() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap();
    io.lines().find_map(|l| l.strip_prefix("syscw: ")).unwrap().trim().parse().unwrap()
}

#[tokio::test]
async fn proxied_requests_do_not_make_a_worker_wake_itself_through_its_eventfd() {
    // tokio's timer writes the worker's eventfd when a timeout is set earlier than every timer
    // it holds; without the workers' ticker, that was each request's first timeout after each
    // wait for events: a system call and an empty round of epoll per request.
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut one = async || {
        s.write_all(b"GET /stash/x HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed");
            got.extend_from_slice(&buf[..n]);
            let r = parse_responses(&got);
            if r.first().is_some_and(|r| r.body_str().starts_with("ok GET /stash/x")) {
                return;
            }
        }
    };
    one().await;
    let before = write_syscalls();
    // 90: the connection's 100th request is its last (MaxKeepAliveRequests).
    for _ in 0..90 {
        one().await;
    }
    let writes = write_syscalls() - before;
    assert!(writes < 20, "{writes} write system calls for 90 proxied requests");
}

#[tokio::test]
async fn an_origin_going_silent_mid_body_never_looks_like_a_complete_answer() {
    // Close-delimited from the origin, chunked to the client: the timeout must cut the
    // connection, not end the chunked body cleanly.
    let o = Origin::start().await;
    let conf = format!("Listen 127.0.0.1:0\nProxyPass /stash http://{}/stash timeout=1\n", o.addr);
    let gw = start(parse_apache(&conf)).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /stash/stall-mid-body HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await.expect("the gateway closes the connection");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("partial-"), "{text}");
    assert!(!text.ends_with("0\r\n\r\n"), "a truncated body was terminated as if complete: {text:?}");
}

#[tokio::test]
async fn a_local_answer_to_a_client_waiting_for_100_continue_comes_at_once_and_closes() {
    let o = Origin::start().await;
    let gw = start(parse_apache(&seed_conf(&o, ""))).await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    // The body is held back, as curl does, until a 100 Continue that must not come.
    s.write_all(b"OPTIONS * HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.expect("answered and closed without the body").unwrap();
    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(!text.contains("100 continue"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
}
