//! Request-smuggling suite (RFC 9112 §6, §11.2 and Apache's advisories): raw byte requests
//! whose framing is ambiguous or malformed. Each must be refused with the given status, and
//! nothing smuggled (a request for `/smuggled`) may ever reach the origin.

use crate::origin::Origin;
use crate::*;

/// (name, raw bytes, expected first status, may the first request reach the origin?)
fn cases() -> Vec<(&'static str, Vec<u8>, u16, bool)> {
    let s = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let v = |x: String| x.into_bytes();
    vec![
        ("cl-then-te", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{s}")), 400, false),
        ("te-then-cl", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n{s}")), 400, false),
        (
            "cl-zero-te",
            v(format!("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n{s}")),
            400,
            false,
        ),
        ("duplicate-cl-same", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc{s}")), 400, false),
        ("duplicate-cl-different", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc{s}")), 400, false),
        ("cl-list", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc{s}")), 400, false),
        ("cl-plus", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc{s}")), 400, false),
        ("cl-negative", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n{s}")), 400, false),
        ("cl-hex", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\nabc{s}")), 400, false),
        ("cl-inner-space", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\nabc{s}")), 400, false),
        ("cl-huge", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n{s}")), 400, false),
        ("te-unknown-then-chunked", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n{s}")), 501, false),
        ("te-chunked-not-final", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n{s}")), 400, false),
        ("te-lookalike", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{s}")), 400, false),
        ("te-twice-in-one", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n{s}")), 400, false),
        ("te-two-lines", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{s}")), 400, false),
        ("te-vertical-tab", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n{s}")), 400, false),
        ("te-obs-fold", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n{s}")), 400, false),
        ("te-space-before-colon", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n{s}")), 400, false),
        ("te-in-http10", v(format!("POST /p HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{s}")), 400, false),
        ("te-empty-coding", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n{s}")), 400, false),
        ("missing-host", v(format!("GET /p HTTP/1.1\r\n\r\n{s}")), 400, false),
        ("two-hosts", v(format!("GET /p HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n{s}")), 400, false),
        ("host-with-slash", v(format!("GET /p HTTP/1.1\r\nHost: a/b\r\n\r\n{s}")), 400, false),
        ("nul-in-value", v(format!("GET /p HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n{s}")), 400, false),
        ("bare-cr-in-value", v(format!("GET /p HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n{s}")), 400, false),
        ("space-in-target", v(format!("GET /p q HTTP/1.1\r\nHost: a\r\n\r\n{s}")), 400, false),
        ("bad-chunk-size", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n{s}")), 400, false),
        (
            "chunk-size-overflow",
            v(format!("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nhello\r\n0\r\n\r\n{s}")),
            400,
            false,
        ),
        ("chunk-missing-crlf", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n{s}")), 400, false),
        ("chunk-size-lf-only", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n{s}")), 400, false),
        // RFC 9112 §7.1.1: chunk extensions are tokens or quoted strings.
        ("chunk-ext-not-token", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;bad[=x\r\nhello\r\n0\r\n\r\n{s}")), 400, false),
        (
            "chunk-ext-not-token-in-second-chunk",
            v(format!("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;a=b]\r\nabc\r\n0\r\n\r\n{s}")),
            400,
            false,
        ),
        ("chunk-ext-no-name", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;=x\r\nhello\r\n0\r\n\r\n{s}")), 400, false),
        ("chunk-ext-open-quote", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"x\r\nhello\r\n0\r\n\r\n{s}")), 400, false),
        ("chunk-negative", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n{s}")), 400, false),
        ("unix-absolute-uri", v(format!("GET unix:/run/x.sock|http://a/ HTTP/1.1\r\nHost: a\r\n\r\n{s}")), 400, false),
        ("connect", v(format!("CONNECT internal:22 HTTP/1.1\r\nHost: internal:22\r\n\r\n{s}")), 405, false),
        ("huge-header", v(format!("GET /p HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n{s}", "a".repeat(100_000))), 431, false),
        ("malformed-connection", v(format!("GET /p HTTP/1.1\r\nHost: a\r\nConnection: close, a b\r\n\r\n{s}")), 400, false),
        (
            "pipelined-good-then-cl-te",
            v(format!("GET /p HTTP/1.1\r\nHost: a\r\n\r\nPOST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{s}")),
            200,
            true,
        ),
        // A request that may open a tunnel goes to hyper's HTTP/1 with the rest of the
        // connection (`h1::parse_request`); when no tunnel opens, what follows is not served.
        (
            "unknown-upgrade-then-cl-te",
            v(format!(
                "GET /p HTTP/1.1\r\nHost: a\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\nPOST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{s}"
            )),
            200,
            true,
        ),
        (
            "ignored-websocket-upgrade-then-te-cl",
            v(format!(
                "GET /p HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nPOST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n{s}"
            )),
            200,
            true,
        ),
        (
            "h2c-upgrade-then-pipelined",
            v(format!(
                "GET /p HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n{s}"
            )),
            200,
            true,
        ),
        ("upgrade-without-connection-then-pipelined", v(format!("GET /p HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n{s}")), 200, true),
        ("underscore-te-is-not-te", v(format!("POST /p HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n0\r\n\r\n{s}")), 200, true),
    ]
}

#[tokio::test]
async fn ambiguous_requests_are_refused_and_nothing_is_smuggled() {
    let o = Origin::start().await;
    let conf = format!("Listen 127.0.0.1:0\nProxyPass / http://{}/\n", o.addr);
    let gw = start(parse_apache(&conf)).await;
    let all = cases();
    assert!(all.len() >= 30);
    let mut failures = Vec::new();
    for (name, bytes, want, may_forward) in all {
        o.clear();
        let resps = raw(gw.addr, &bytes).await;
        let first = resps.first().map(|r| r.status).unwrap_or(0);
        if first != want {
            failures.push(format!("{name}: first status {first}, want {want}"));
        }
        let seen = o.all();
        if seen.iter().any(|r| r.target.contains("smuggled") || String::from_utf8_lossy(&r.body).contains("smuggled")) {
            failures.push(format!("{name}: /smuggled reached the origin"));
        }
        if !may_forward && !seen.is_empty() {
            failures.push(format!("{name}: refused request was forwarded: {:?}", seen.iter().map(|r| &r.raw_head).collect::<Vec<_>>()));
        }
        if may_forward && resps.iter().skip(1).any(|r| r.status == 200) {
            failures.push(format!("{name}: a request after the bad one was answered 200"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn connection_header_cannot_strip_our_forwarded_for() {
    // CVE-2022-31813.
    let o = Origin::start().await;
    let conf = format!("Listen 127.0.0.1:0\nProxyPass / http://{}/\n", o.addr);
    let gw = start(parse_apache(&conf)).await;
    let r = raw(gw.addr, b"GET /p HTTP/1.1\r\nHost: a\r\nX-Test-Id: x\r\nConnection: close, X-Forwarded-For, X-Forwarded-Host\r\n\r\n").await;
    assert_eq!(r[0].status, 200);
    let seen = &o.by_id("x")[0];
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-host"), Some("a"));
}

#[tokio::test]
async fn invalid_chunk_extension_is_400_and_never_reaches_the_origin() {
    let o = Origin::start().await;
    let conf = format!("Listen 127.0.0.1:0\nProxyPass / http://{}/\n", o.addr);
    let gw = start(parse_apache(&conf)).await;
    let req = |ext: &str, id: &str| {
        format!("POST /p HTTP/1.1\r\nHost: a\r\nX-Test-Id: {id}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5{ext}\r\nhello\r\n0\r\n\r\n")
    };
    // `[` is not a token character (RFC 9112 §7.1.1).
    let r = raw(gw.addr, req(";bad[=x", "bad").as_bytes()).await;
    assert_eq!(r.first().map(|r| r.status), Some(400), "{r:?}");
    assert!(o.by_id("bad").is_empty(), "the origin saw {:?}", o.by_id("bad"));
    // The same with well-formed extensions (a token, a quoted string holding `[`) goes through.
    let r = raw(gw.addr, req(r#";good=x;q="[y]""#, "good").as_bytes()).await;
    assert_eq!(r.first().map(|r| r.status), Some(200), "{r:?}");
    let seen = o.by_id("good");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, b"hello");
}
