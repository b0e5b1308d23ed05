//! Criterion benchmarks of the gateway's pure per-request functions: route selection and path
//! canonicalisation, the origin target, header rules, ProxyPassReverse, and the framing guard.
//! `cargo bench -p trove-gateway` (the end-to-end figures are `bench/run`'s).

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use trove_gateway::GatewayConfig;
use trove_gateway::config::Via;
use trove_gateway::forward::{self, RequestFacts, RequestRules};
use trove_gateway::guard::{ConnShared, Inspector};
use trove_gateway::rewrite::{self, PublicBase};
use trove_gateway::routing;

/// A seed-like config: a few routes before the catch-all, as an installation grows them.
fn config() -> GatewayConfig {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("gateway.toml");
    std::fs::write(
        &p,
        r#"
[[listen]]
addr = "127.0.0.1:0"

[[server]]
names = ["git.example.com"]

[[server.route]]
path = "/status"
upstream = "http://127.0.0.1:7991/status"

[[server.route]]
path = "/static"
exclude = true

[[server.route]]
path = "/rest/api"
upstream = "http://127.0.0.1:7990/stash/rest/api"

[[server.route]]
path = "/stash"
upstream = "http://127.0.0.1:7990/stash"
connect_timeout = 5
timeout = 300
"#,
    )
    .unwrap();
    let (cfg, diags) = trove_gateway::config::load(&p).unwrap();
    assert!(!diags.has_errors());
    cfg
}

const PATH: &str = "/stash/scm/tp/test.git/info/refs";
const PATH_ESCAPED: &str = "/stash/scm/tp/%74est.git/./objects/../info/refs";

fn routing_benches(c: &mut Criterion) {
    let cfg = config();
    let routes = &cfg.servers[0].routes;
    c.bench_function("routing::canonical_path plain", |b| b.iter(|| routing::canonical_path(black_box(PATH)).unwrap()));
    c.bench_function("routing::canonical_path escaped + dot-segments", |b| b.iter(|| routing::canonical_path(black_box(PATH_ESCAPED)).unwrap()));
    let decoded = routing::canonical_path(PATH).unwrap();
    c.bench_function("routing::select 4th of 4 routes", |b| b.iter(|| routing::select(black_box(routes), black_box(&decoded), PATH).unwrap().1));
    let (route, matched) = routing::select(routes, &decoded, PATH).unwrap();
    let up = route.upstream.as_ref().unwrap();
    c.bench_function("routing::upstream_target", |b| {
        b.iter(|| routing::upstream_target(route, &up.path, black_box(&decoded), PATH, matched, Some("service=git-upload-pack")))
    });
}

fn rewrite_benches(c: &mut Criterion) {
    let cfg = config();
    let rules = &cfg.servers[0].reverse;
    let base = PublicBase { scheme: "https", authority: "git.example.com" };
    c.bench_function("rewrite::reverse_map hit", |b| {
        b.iter(|| rewrite::reverse_map(black_box(rules), black_box("http://127.0.0.1:7990/stash/projects/TP/repos/test/browse"), &base).unwrap())
    });
    c.bench_function("rewrite::reverse_map miss", |b| b.iter(|| rewrite::reverse_map(black_box(rules), black_box("https://elsewhere.example/x"), &base)));
}

fn request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("git.example.com"));
    h.insert("user-agent", HeaderValue::from_static("git/2.47.3"));
    h.insert("accept", HeaderValue::from_static("*/*"));
    h.insert("accept-encoding", HeaderValue::from_static("deflate, gzip, br, zstd"));
    h.insert("git-protocol", HeaderValue::from_static("version=2"));
    h.insert("authorization", HeaderValue::from_static("Basic YWRtaW46c2VjcmV0"));
    h.insert("connection", HeaderValue::from_static("keep-alive"));
    h
}

fn forward_benches(c: &mut Criterion) {
    let host = HeaderValue::from_static("git.example.com");
    let peer: IpAddr = "192.0.2.7".parse().unwrap();
    let origin = HeaderValue::from_static("127.0.0.1:7990");
    let facts = RequestFacts { peer, host: Some(&host), scheme: "https", local_port: 443, server_name: "git.example.com", upstream_authority: &origin };
    // No `trusted_downstream` (the default): incoming forwarding headers are dropped, ours added.
    let rules = RequestRules { downstream_trusted: false, preserve_host: false, add_forwarded: true, add_forwarded_proto: true, via: Via::Off, edits: &[] };
    let template = request_headers();
    c.bench_function("forward::strip_hop_by_hop + apply_request_rules", |b| {
        b.iter(|| {
            let mut h = template.clone();
            let named = forward::connection_tokens(&h).unwrap();
            forward::strip_hop_by_hop(&mut h, &named, false);
            forward::apply_request_rules(&mut h, black_box(&facts), &rules);
            h
        })
    });
}

fn guard_benches(c: &mut Criterion) {
    let get = b"GET /stash/scm/tp/test.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: git.example.com\r\nUser-Agent: git/2.47.3\r\nAccept: */*\r\nAccept-Encoding: deflate, gzip\r\nGit-Protocol: version=2\r\n\r\n";
    c.bench_function("guard::Inspector::feed one GET head", |b| {
        let shared = Arc::new(ConnShared::default());
        let mut i = Inspector::new(65536, shared.clone());
        b.iter(|| {
            i.feed(black_box(get));
            shared.next_verdict().unwrap()
        })
    });
    let mut chunked = b"POST /stash/scm/tp/test.git/git-receive-pack HTTP/1.1\r\nHost: git.example.com\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..16 {
        chunked.extend_from_slice(b"4000\r\n");
        chunked.extend_from_slice(&[b'p'; 0x4000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    c.bench_function("guard::Inspector::feed 256 KiB chunked body in 16 KiB reads", |b| {
        let shared = Arc::new(ConnShared::default());
        let mut i = Inspector::new(65536, shared.clone());
        b.iter(|| {
            for part in chunked.chunks(16 * 1024) {
                i.feed(black_box(part));
            }
            shared.next_verdict().unwrap()
        })
    });
}

criterion_group!(benches, routing_benches, rewrite_benches, forward_benches, guard_benches);
criterion_main!(benches);
