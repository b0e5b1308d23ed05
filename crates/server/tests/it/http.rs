//! The smart-HTTP details git clients rely on but rarely exercise: the advertisement format,
//! the probe, content types, gzip bodies, and names that must never reach the disk.

use std::io::Write as _;

use crate::support::{TestServer, basic, password, pkt};

fn reader() -> String {
    basic("reader", &password("reader"))
}

#[test]
fn advertisement_has_the_service_preamble_and_no_cache_headers() {
    let t = TestServer::start();
    let (_, tip) = t.seed("scm/TP/test.git", 1);
    let r = t.http("GET", "/scm/TP/test.git/info/refs?service=git-upload-pack", &[("Authorization", &reader())], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-git-upload-pack-advertisement"));
    assert_eq!(r.header("cache-control"), Some("no-cache, max-age=0, must-revalidate"));
    assert_eq!(r.header("expires"), Some("Fri, 01 Jan 1980 00:00:00 GMT"));
    assert_eq!(r.header("pragma"), Some("no-cache"));
    let body = r.text();
    assert!(body.starts_with("001e# service=git-upload-pack\n0000"), "{body}");
    assert!(body.contains(&format!("{tip} refs/heads/main")), "{body}");
}

#[test]
fn protocol_v2_advertisement_leaves_out_the_preamble_and_invalid_versions_are_ignored() {
    let t = TestServer::start();
    let path = "/scm/TP/test.git/info/refs?service=git-upload-pack";
    let r = t.http("GET", path, &[("Authorization", &reader()), ("Git-Protocol", "version=2")], b"");
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("000eversion 2\n"), "{}", r.text());
    let r = t.http("GET", path, &[("Authorization", &reader()), ("Git-Protocol", "version=2;x")], b"");
    assert!(r.text().starts_with("001e# service=git-upload-pack\n"), "{}", r.text());
}

#[test]
fn dumb_http_and_unknown_services_are_refused() {
    let t = TestServer::start();
    for q in ["", "?service=git-upload-archive", "?service=foo"] {
        let r = t.http("GET", &format!("/scm/TP/test.git/info/refs{q}"), &[("Authorization", &reader())], b"");
        assert_eq!(r.status, 403, "{q}");
    }
}

#[test]
fn the_probe_is_answered_without_running_git() {
    let t = TestServer::start();
    let before = t.server.git_processes_started();
    let r = t.http(
        "POST",
        "/scm/TP/test.git/git-receive-pack",
        &[("Authorization", &basic("writer", &password("writer"))), ("Content-Type", "application/x-git-receive-pack-request")],
        b"0000",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-git-receive-pack-result"));
    assert!(r.body.is_empty());
    assert_eq!(t.server.git_processes_started(), before);
    // Without write permission the probe gets the same answer as the push would.
    let r = t.http(
        "POST",
        "/scm/TP/test.git/git-receive-pack",
        &[("Authorization", &reader()), ("Content-Type", "application/x-git-receive-pack-request")],
        b"0000",
    );
    assert_eq!(r.status, 403);
}

#[test]
fn requests_with_the_wrong_content_type_get_415() {
    let t = TestServer::start();
    for ct in [None, Some("application/x-git-receive-pack-request"), Some("text/plain")] {
        let mut h = vec![("Authorization", reader())];
        if let Some(ct) = ct {
            h.push(("Content-Type", ct.to_owned()));
        }
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = t.http("POST", "/scm/TP/test.git/git-upload-pack", &h, b"0000");
        assert_eq!(r.status, 415, "{ct:?}");
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn ls_refs_request() -> Vec<u8> {
    let mut body = pkt("command=ls-refs\n");
    body.extend_from_slice(b"0001");
    body.extend_from_slice(&pkt("peel\n"));
    body.extend_from_slice(b"0000");
    body
}

#[test]
fn gzip_request_bodies_are_inflated() {
    let t = TestServer::start();
    let (_, tip) = t.seed("scm/TP/test.git", 1);
    let r = t.http(
        "POST",
        "/scm/TP/test.git/git-upload-pack",
        &[("Authorization", &reader()), ("Content-Type", "application/x-git-upload-pack-request"), ("Content-Encoding", "gzip"), ("Git-Protocol", "version=2")],
        &gzip(&ls_refs_request()),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-git-upload-pack-result"));
    assert!(r.text().contains(&format!("{tip} refs/heads/main")), "{}", r.text());
}

#[test]
fn gzip_bodies_that_inflate_past_the_cap_get_413() {
    let t = TestServer::start_with(|c| c.git.max_inflated_request_bytes = 4096);
    let mut big = ls_refs_request();
    big.extend(std::iter::repeat_n(b'0', 10_000));
    let r = t.http(
        "POST",
        "/scm/TP/test.git/git-upload-pack",
        &[("Authorization", &reader()), ("Content-Type", "application/x-git-upload-pack-request"), ("Content-Encoding", "gzip")],
        &gzip(&big),
    );
    assert_eq!(r.status, 413);
    let r = t.http(
        "POST",
        "/scm/TP/test.git/git-upload-pack",
        &[("Authorization", &reader()), ("Content-Type", "application/x-git-upload-pack-request"), ("Content-Encoding", "br")],
        b"xx",
    );
    assert_eq!(r.status, 415);
}

#[test]
fn names_that_could_escape_the_data_directory_are_404() {
    let t = TestServer::start();
    let admin = basic("admin", &password("admin"));
    for path in [
        "/scm/TP/..%2F..%2Fetc.git/info/refs?service=git-upload-pack",
        "/scm/TP/...git/info/refs?service=git-upload-pack",
        "/scm/TP/-test.git/info/refs?service=git-upload-pack",
        "/scm/..%2FTP/test.git/info/refs?service=git-upload-pack",
        "/scm/TP/..%2F1.git/info/refs?service=git-upload-pack",
        "/scm/~..%2Fadmin/test.git/info/refs?service=git-upload-pack",
        "/scm/TP/test.git/../../../etc/passwd",
        "/scm/TP/a%00b.git/info/refs?service=git-upload-pack",
        "/scm/TP/a%FFb.git/info/refs?service=git-upload-pack",
        "/scm/TP%/test.git/info/refs?service=git-upload-pack",
    ] {
        let r = t.http("GET", path, &[("Authorization", &admin)], b"");
        assert_eq!(r.status, 404, "{path}: {}", r.text());
    }
}

#[test]
fn bad_names_are_refused_when_creating_repositories() {
    let t = TestServer::start();
    for bad in ["..", "-x", "a/b", "x.git", ".hidden", ""] {
        assert!(trove_store::RepoSlug::parse(bad).is_err(), "{bad:?}");
    }
    for bad in ["1TP", "T-P", "~x", ""] {
        assert!(trove_store::ProjectKey::parse(bad).is_err(), "{bad:?}");
    }
    // Nothing was created on disk by any of that.
    let entries: Vec<_> = std::fs::read_dir(t.data.path().join("repositories")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries.len(), 2, "only the fixture's two repositories: {entries:?}");
}

#[test]
fn status_answers_running() {
    let t = TestServer::start();
    let r = t.http("GET", "/status", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), format!("{{\"state\":\"RUNNING\",\"nodeId\":\"{}\"}}", t.server.node_id()));
}

#[test]
fn serve_returns_after_shutdown_once_open_connections_finish() {
    let data = tempfile::tempdir().unwrap();
    let server = trove_server::Server::open(trove_server::ServerConfig::new(data.path())).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn({
            let server = server.clone();
            async move {
                server
                    .serve(listener, async move {
                        let _ = stopped.await;
                    })
                    .await
            }
        });
        let r = tokio::task::spawn_blocking(move || crate::support::http(addr, "GET", "/status", &[], b"")).await.unwrap();
        assert_eq!(r.status, 200);
        stop.send(()).unwrap();
        serving.await.unwrap().unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the listener is closed");
    });
}
