//! Clone and fetch: protocol v0 and v2, shallow, partial, public repositories.

use crate::support::TestServer;

#[test]
fn clone_over_protocol_v0_and_v2_gets_the_pushed_history() {
    let t = TestServer::start();
    let (_, tip) = t.seed("scm/TP/test.git", 3);
    for version in ["0", "1", "2"] {
        let dir = t.dir(&format!("v{version}"));
        let out = t
            .git_cmd(&dir, &["-c", &format!("protocol.version={version}"), "clone", &t.url_as("reader", "scm/tp/test.git"), "c"])
            .env("GIT_TRACE_PACKET", "1")
            .output()
            .unwrap();
        let trace = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "clone v{version}: {trace}");
        assert_eq!(t.git_ok(&dir.join("c"), &["rev-parse", "HEAD"]), tip);
        assert_eq!(t.git_ok(&dir.join("c"), &["rev-list", "--count", "HEAD"]), "3");
        let spoke_v2 = trace.contains("git< version 2");
        assert_eq!(spoke_v2, version == "2", "v{version} negotiation, trace:\n{trace}");
        let spoke_v1 = trace.contains("git< version 1");
        assert_eq!(spoke_v1, version == "1", "v{version} negotiation, trace:\n{trace}");
    }
}

#[test]
fn clone_works_on_the_git_prefix_and_without_dot_git() {
    let t = TestServer::start();
    let (_, tip) = t.seed("scm/TP/test.git", 1);
    let dir = t.dir("alt");
    t.git_ok(&dir, &["clone", "-q", &t.url_as("reader", "git/TP/test.git"), "a"]);
    t.git_ok(&dir, &["clone", "-q", &t.url_as("reader", "scm/tp/test"), "b"]);
    assert_eq!(t.git_ok(&dir.join("a"), &["rev-parse", "HEAD"]), tip);
    assert_eq!(t.git_ok(&dir.join("b"), &["rev-parse", "HEAD"]), tip);
}

#[test]
fn fetch_brings_new_commits_into_an_existing_clone() {
    let t = TestServer::start();
    let (work, _) = t.seed("scm/TP/test.git", 1);
    let dir = t.dir("fetcher");
    t.git_ok(&dir, &["clone", "-q", &t.url_as("reader", "scm/TP/test.git"), "c"]);
    let new_tip = t.commit(&work, "more.txt", "more\n");
    t.git_ok(&work, &["push", "-q", "origin", "main"]);
    for version in ["0", "2"] {
        t.git_ok(&dir.join("c"), &["-c", &format!("protocol.version={version}"), "fetch", "-q", "origin"]);
        assert_eq!(t.git_ok(&dir.join("c"), &["rev-parse", "origin/main"]), new_tip);
    }
}

#[test]
fn shallow_clone_gets_only_the_requested_depth_and_can_deepen() {
    let t = TestServer::start();
    let (_, tip) = t.seed("scm/TP/test.git", 5);
    let dir = t.dir("shallow");
    t.git_ok(&dir, &["clone", "-q", "--depth=1", &t.url_as("reader", "scm/TP/test.git"), "c"]);
    let c = dir.join("c");
    assert_eq!(t.git_ok(&c, &["rev-parse", "HEAD"]), tip);
    assert_eq!(t.git_ok(&c, &["rev-list", "--count", "HEAD"]), "1");
    assert_eq!(t.git_ok(&c, &["rev-parse", "--is-shallow-repository"]), "true");
    t.git_ok(&c, &["fetch", "-q", "--deepen=2"]);
    assert_eq!(t.git_ok(&c, &["rev-list", "--count", "HEAD"]), "3");
}

#[test]
fn partial_clone_without_blobs_fetches_them_on_demand() {
    let t = TestServer::start();
    let (_, tip) = t.seed("scm/TP/test.git", 4);
    let dir = t.dir("partial");
    t.git_ok(&dir, &["clone", "-q", "--no-checkout", "--filter=blob:none", &t.url_as("reader", "scm/TP/test.git"), "c"]);
    let c = dir.join("c");
    let missing = t.git_ok(&c, &["rev-list", "--objects", "--all", "--missing=print"]);
    let missing_blobs = missing.lines().filter(|l| l.starts_with('?')).count();
    assert_eq!(missing_blobs, 4, "all four blobs are left out:\n{missing}");
    assert_eq!(t.git_ok(&c, &["config", "remote.origin.promisor"]), "true");
    // Checking out makes git fetch the missing blobs from the server (another upload-pack).
    t.git_ok(&c, &["checkout", "-q", "main"]);
    assert_eq!(std::fs::read_to_string(c.join("file3.txt")).unwrap(), "content 3 of seed-scm-TP-test-git\n");
    assert_eq!(t.git_ok(&c, &["rev-parse", "HEAD"]), tip);
}

#[test]
fn public_repositories_clone_anonymously_but_do_not_accept_anonymous_pushes() {
    let t = TestServer::start();
    let (_, tip) = t.seed("scm/PUB/open.git", 2);
    let dir = t.dir("anon");
    t.git_ok(&dir, &["clone", "-q", &t.url(None, "scm/pub/open.git"), "c"]);
    let c = dir.join("c");
    assert_eq!(t.git_ok(&c, &["rev-parse", "HEAD"]), tip);
    t.commit(&c, "anon.txt", "x\n");
    let err = t.git_fails(&c, &["push", "origin", "main"]);
    assert!(err.contains("could not read Username") || err.contains("Authentication failed"), "{err}");
    assert_eq!(t.server_rev("PUB", "open", "refs/heads/main").unwrap(), tip);
}

#[test]
fn cloning_an_empty_repository_warns_but_succeeds() {
    let t = TestServer::start();
    let dir = t.dir("empty");
    let out = t.git(&dir, &["clone", &t.url_as("reader", "scm/TP/test.git"), "c"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty repository"));
}

#[test]
fn clones_beyond_the_pack_concurrency_bound_wait_their_turn_and_all_succeed() {
    let t = TestServer::start_with(|c| c.git.max_concurrent_packs = 1);
    let (_, tip) = t.seed("scm/TP/test.git", 3);
    let tips: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let t = &t;
                s.spawn(move || {
                    let dir = t.dir(&format!("queue{i}"));
                    t.git_ok(&dir, &["clone", "-q", &t.url_as("reader", "scm/TP/test.git"), "c"]);
                    t.git_ok(&dir.join("c"), &["rev-parse", "HEAD"])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(tips.iter().all(|x| *x == tip), "{tips:?}");
}

#[test]
fn an_abandoned_clone_does_not_leave_git_running() {
    use std::io::{Read as _, Write as _};
    let t = TestServer::start();
    let work = t.work_repo("abandon", 1);
    // Enough incompressible data that the pack cannot fit in the pipe and socket buffers.
    let mut seed = 0x2545f4914f6cdd1d_u64;
    let data: Vec<u8> = (0..(8 << 20) / 8)
        .flat_map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed.to_le_bytes()
        })
        .collect();
    std::fs::write(work.join("big.bin"), data).unwrap();
    t.git_ok(&work, &["add", "big.bin"]);
    t.git_ok(&work, &["commit", "-q", "-m", "big"]);
    let tip = t.git_ok(&work, &["rev-parse", "HEAD"]);
    t.git_ok(&work, &["push", "-q", &t.url_as("writer", "scm/TP/test.git"), "main"]);
    t.wait_maintenance();

    let mut body = crate::support::pkt(&format!("want {tip} side-band-64k\n"));
    body.extend_from_slice(b"0000");
    body.extend_from_slice(&crate::support::pkt("done\n"));
    let before = t.server.git_processes_started();
    let mut s = std::net::TcpStream::connect(t.addr).unwrap();
    let head = format!(
        "POST /scm/TP/test.git/git-upload-pack HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/x-git-upload-pack-request\r\nContent-Length: {}\r\n\r\n",
        t.addr,
        crate::support::basic("reader", &crate::support::password("reader")),
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut first = [0u8; 1024];
    let n = s.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"), "the pack started");
    drop(s);
    t.wait_git_idle_after(before);
    assert_eq!(t.server.running_git_processes(), 0);
}

#[test]
fn a_stalled_fetch_request_does_not_hold_a_pack_slot() {
    use std::io::Write as _;
    let t = TestServer::start_with(|c| c.git.max_concurrent_packs = 1);
    let (_, tip) = t.seed("scm/PUB/open.git", 1);
    // Half a request that promises more and never sends it.
    let mut stalled = std::net::TcpStream::connect(t.addr).unwrap();
    let head = format!(
        "POST /scm/PUB/open.git/git-upload-pack HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-git-upload-pack-request\r\nContent-Length: 100000\r\n\r\n",
        t.addr
    );
    stalled.write_all(head.as_bytes()).unwrap();
    stalled.write_all(&crate::support::pkt(&format!("want {tip}\n"))).unwrap();
    stalled.flush().unwrap();
    // The one slot is free: this clone goes through. (The low-speed limit only turns a
    // regression into a failure instead of a hang.)
    let dir = t.dir("unblocked");
    t.git_ok(&dir, &["-c", "http.lowSpeedLimit=1", "-c", "http.lowSpeedTime=60", "clone", "-q", &t.url(None, "scm/PUB/open.git"), "c"]);
    assert_eq!(t.git_ok(&dir.join("c"), &["rev-parse", "HEAD"]), tip);
    drop(stalled);
}
