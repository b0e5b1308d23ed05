//! Push: branches, tags, deletes, force, atomic, large chunked pushes, concurrency, interruption.

use std::io::Write as _;
use std::net::TcpStream;

use crate::support::{TestServer, basic, password, pkt, user};
use trove_store::{Owner, RepoSlug};

#[test]
fn push_creates_and_deletes_branches_and_tags() {
    let t = TestServer::start();
    let (work, tip) = t.seed("scm/TP/test.git", 2);
    t.git_ok(&work, &["branch", "feature"]);
    t.git_ok(&work, &["tag", "v1.0"]);
    t.git_ok(&work, &["tag", "-a", "-m", "annotated", "v1.1"]);
    t.git_ok(&work, &["push", "-q", "origin", "feature", "v1.0", "v1.1"]);
    assert_eq!(t.server_rev("TP", "test", "refs/heads/feature").unwrap(), tip);
    assert_eq!(t.server_rev("TP", "test", "refs/tags/v1.0").unwrap(), tip);
    assert_eq!(t.server_rev("TP", "test", "refs/tags/v1.1^{commit}").unwrap(), tip);

    t.git_ok(&work, &["push", "-q", "origin", "--delete", "feature", "v1.0"]);
    assert_eq!(t.server_rev("TP", "test", "refs/heads/feature"), None);
    assert_eq!(t.server_rev("TP", "test", "refs/tags/v1.0"), None);
    assert!(t.server_rev("TP", "test", "refs/tags/v1.1").is_some());
    t.fsck("TP", "test");
}

#[test]
fn non_fast_forward_push_is_refused_unless_forced() {
    let t = TestServer::start();
    let (work, _) = t.seed("scm/TP/test.git", 2);
    t.git_ok(&work, &["reset", "-q", "--hard", "HEAD~1"]);
    let rewritten = t.commit(&work, "other.txt", "rewritten history\n");
    let err = t.git_fails(&work, &["push", "origin", "main"]);
    assert!(err.contains("rejected"), "{err}");
    t.git_ok(&work, &["push", "-q", "--force", "origin", "main"]);
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main").unwrap(), rewritten);
    t.fsck("TP", "test");
}

#[test]
fn atomic_push_updates_all_refs_or_none() {
    let t = TestServer::start();
    let (work, tip) = t.seed("scm/TP/test.git", 2);
    t.git_ok(&work, &["branch", "side", "HEAD~1"]);
    t.git_ok(&work, &["reset", "-q", "--hard", "HEAD~1"]);
    t.commit(&work, "diverge.txt", "diverged\n");
    // `side` alone would be accepted; `main` is not a fast-forward, so with --atomic neither lands.
    let err = t.git_fails(&work, &["push", "--atomic", "origin", "main", "side"]);
    assert!(err.contains("rejected"), "{err}");
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main").unwrap(), tip);
    assert_eq!(t.server_rev("TP", "test", "refs/heads/side"), None);
}

/// Deterministic pseudo-random bytes (xorshift), incompressible enough to make a big pack.
pub(crate) fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn push_larger_than_the_post_buffer_streams_chunked_after_the_probe() {
    let t = TestServer::start();
    let work = t.work_repo("big", 1);
    std::fs::write(work.join("big.bin"), noise(3 << 20, 0x9e3779b97f4a7c15)).unwrap();
    t.git_ok(&work, &["add", "big.bin"]);
    t.git_ok(&work, &["commit", "-q", "-m", "big"]);
    let tip = t.git_ok(&work, &["rev-parse", "HEAD"]);
    let trace = t.home.path().join("curl-trace");
    let out = t
        .git_cmd(&work, &["push", &t.url_as("writer", "scm/TP/test.git"), "main"])
        .env("GIT_TRACE_CURL", &trace)
        .env("GIT_TRACE_CURL_NO_DATA", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let trace = std::fs::read_to_string(&trace).unwrap();
    assert!(trace.contains("Transfer-Encoding: chunked"), "the push body was chunked");
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main").unwrap(), tip);
    let dir = t.dir("verify");
    t.git_ok(&dir, &["clone", "-q", &t.url_as("reader", "scm/TP/test.git"), "c"]);
    assert_eq!(std::fs::read(dir.join("c/big.bin")).unwrap(), noise(3 << 20, 0x9e3779b97f4a7c15));
    t.fsck("TP", "test");
}

#[test]
fn reflog_records_the_pusher_as_committer() {
    let t = TestServer::start();
    t.seed("scm/TP/test.git", 1);
    let log = std::fs::read_to_string(t.repo_dir("TP", "test").join("logs/refs/heads/main")).unwrap();
    assert!(log.contains("writer <writer@http.127.0.0.1>"), "reflog: {log}");
}

#[test]
fn concurrent_pushes_update_each_ref_atomically_and_leave_the_repository_consistent() {
    let t = TestServer::start();
    let (_, base) = t.seed("scm/TP/test.git", 1);
    let n = 4;
    let mut clones = Vec::new();
    for i in 0..n {
        let dir = t.dir(&format!("racer{i}"));
        t.git_ok(&dir, &["clone", "-q", &t.url_as("writer", "scm/TP/test.git"), "c"]);
        let c = dir.join("c");
        let tip = t.commit(&c, &format!("racer{i}.txt"), &format!("racer {i}\n"));
        clones.push((c, tip));
    }
    let results: Vec<(bool, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = clones
            .iter()
            .enumerate()
            .map(|(i, (c, _))| {
                let t = &t;
                s.spawn(move || {
                    let own = t.git(c, &["push", "-q", "origin", &format!("HEAD:refs/heads/racer{i}")]).status.success();
                    let shared = t.git(c, &["push", "-q", "origin", "HEAD:refs/heads/race"]).status.success();
                    (own, shared)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (own, _)) in results.iter().enumerate() {
        assert!(own, "racer {i} pushes its own branch");
        assert_eq!(t.server_rev("TP", "test", &format!("refs/heads/racer{i}")).unwrap(), clones[i].1);
    }
    let winners: Vec<usize> = results.iter().enumerate().filter(|(_, r)| r.1).map(|(i, _)| i).collect();
    assert_eq!(winners.len(), 1, "exactly one push creates `race`: {results:?}");
    assert_eq!(t.server_rev("TP", "test", "refs/heads/race").unwrap(), clones[winners[0]].1);
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main").unwrap(), base);
    t.fsck("TP", "test");
}

#[test]
fn push_interrupted_mid_stream_leaves_the_repository_unchanged() {
    let t = TestServer::start();
    let (work, old) = t.seed("scm/TP/test.git", 1);
    std::fs::write(work.join("payload.bin"), noise(1 << 20, 42)).unwrap();
    t.git_ok(&work, &["add", "payload.bin"]);
    t.git_ok(&work, &["commit", "-q", "-m", "payload"]);
    let new = t.git_ok(&work, &["rev-parse", "HEAD"]);
    let mut pack_objects = t.git_cmd(&work, &["pack-objects", "--stdout", "--revs", "-q"]);
    pack_objects.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    let mut child = pack_objects.spawn().unwrap();
    child.stdin.take().unwrap().write_all(format!("{new}\n^{old}\n").as_bytes()).unwrap();
    let pack = child.wait_with_output().unwrap().stdout;
    assert!(pack.len() > 500_000, "pack is big: {}", pack.len());

    let mut body = pkt(&format!("{old} {new} refs/heads/main\0report-status side-band-64k agent=trove-test\n"));
    body.extend_from_slice(b"0000");
    body.extend_from_slice(&pack[..pack.len() / 2]);

    let before = t.server.git_processes_started();
    let path = "/scm/TP/test.git/git-receive-pack";
    let mut s = TcpStream::connect(t.addr).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/x-git-receive-pack-request\r\nTransfer-Encoding: chunked\r\n\r\n",
        t.addr,
        basic("writer", &password("writer"))
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(format!("{:x}\r\n", body.len()).as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    s.write_all(b"\r\n").unwrap();
    s.flush().unwrap();
    // The client goes away with half the pack sent.
    drop(s);
    t.wait_git_idle_after(before);

    assert_eq!(t.server_rev("TP", "test", "refs/heads/main").unwrap(), old);
    let dir = t.repo_dir("TP", "test");
    let has_new = t.git(&dir, &["cat-file", "-e", &new]).status.success();
    assert!(!has_new, "no object from the half pack is visible");
    let leftovers: Vec<_> =
        std::fs::read_dir(dir.join("objects")).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("incoming-")).collect();
    assert!(leftovers.is_empty(), "quarantine removed: {leftovers:?}");
    t.fsck("TP", "test");
    t.wait_metric("trove_server_git_operation_seconds_count{kind=\"receive-pack\",outcome=\"cancelled\"}", 1.0);
    // And the same push, complete, goes through afterwards.
    t.git_ok(&work, &["push", "-q", "origin", "main"]);
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main").unwrap(), new);
    // The seed's push and this one; the broken one was not counted as refused or failed.
    let text = t.wait_metric("trove_server_git_operation_seconds_count{kind=\"receive-pack\",outcome=\"ok\"}", 2.0);
    for other in ["refused", "failed"] {
        assert!(text.contains(&format!("trove_server_git_operation_seconds_count{{kind=\"receive-pack\",outcome=\"{other}\"}} 0\n")), "{text}");
    }
}

#[test]
fn personal_repositories_belong_to_their_owner() {
    let t = TestServer::start();
    t.server.store().create_repo(&Owner::User(user("writer")), &RepoSlug::parse("dots").unwrap(), false).unwrap();
    let work = t.work_repo("dots", 1);
    t.git_ok(&work, &["push", "-q", &t.url_as("writer", "scm/~writer/dots.git"), "main"]);
    let dir = t.dir("dots-clones");
    t.git_ok(&dir, &["clone", "-q", &t.url_as("writer", "scm/~WRITER/dots.git"), "mine"]);
    t.git_ok(&dir, &["clone", "-q", &t.url_as("admin", "scm/~writer/dots.git"), "admins"]);
    let err = t.git_fails(&dir, &["clone", &t.url_as("reader", "scm/~writer/dots.git"), "theirs"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn pushes_with_malformed_objects_are_refused_by_fsck() {
    let t = TestServer::start();
    let (work, tip) = t.seed("scm/TP/test.git", 1);
    let tree = t.git_ok(&work, &["rev-parse", "HEAD^{tree}"]);
    // An author line without the closing `>`: git itself would never write this commit.
    let commit = format!("tree {tree}\nparent {tip}\nauthor Bad <bad@example.com 1700000000 +0000\ncommitter Bad <bad@example.com> 1700000000 +0000\n\nbad\n");
    let mut hash = t.git_cmd(&work, &["hash-object", "-t", "commit", "-w", "--literally", "--stdin"]);
    hash.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    let mut child = hash.spawn().unwrap();
    child.stdin.take().unwrap().write_all(commit.as_bytes()).unwrap();
    let bad = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap().trim().to_owned();
    t.git_ok(&work, &["update-ref", "refs/heads/bad", &bad]);
    let err = t.git_fails(&work, &["push", "origin", "bad"]);
    assert!(err.contains("remote: error") || err.contains("unpack"), "{err}");
    assert_eq!(t.server_rev("TP", "test", "refs/heads/bad"), None);
    t.fsck("TP", "test");
}

#[test]
fn pushes_are_followed_by_background_commit_graph_maintenance_unless_disabled() {
    let chain = "objects/info/commit-graphs/commit-graph-chain";
    let t = TestServer::start();
    t.seed("scm/TP/test.git", 3);
    t.wait_maintenance();
    assert!(t.repo_dir("TP", "test").join(chain).is_file(), "commit-graph written after the push");
    let bitmaps = |t: &TestServer| {
        std::fs::read_dir(t.repo_dir("TP", "test").join("objects/pack"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".bitmap"))
            .count()
    };
    assert_eq!(bitmaps(&t), 1, "a reachability bitmap is written");

    let t = TestServer::start_with(|c| c.git.maintenance_after_push = false);
    t.seed("scm/TP/test.git", 3);
    t.wait_maintenance();
    assert!(!t.repo_dir("TP", "test").join(chain).exists(), "no maintenance when disabled");
    assert_eq!(bitmaps(&t), 0);
}

#[test]
fn gc_after_a_push_runs_in_the_foreground_so_nothing_is_left_running_when_maintenance_is_idle() {
    let t = TestServer::start();
    let (work, _) = t.seed("scm/TP/test.git", 3);
    t.wait_maintenance();
    // Every push keeps its pack, and a second pack makes `gc --auto` repack: it would detach
    // (gc.autoDetach) into a session of its own that neither maintenance's count nor shutdown
    // could see.
    let repo = t.repo_dir("TP", "test");
    t.git_ok(&repo, &["config", "receive.unpackLimit", "1"]);
    t.git_ok(&repo, &["config", "gc.autoPackLimit", "1"]);
    for i in 0..3 {
        t.commit(&work, &format!("more{i}.txt"), &format!("more {i}\n"));
        t.git_ok(&work, &["push", "-q", "origin", "main"]);
        t.wait_maintenance();
        let left = crate::shutdown::processes_in(&repo);
        assert!(left.is_empty(), "git still at work in the repository after maintenance went idle: {left:?}");
    }
    t.fsck("TP", "test");
}

#[test]
fn pushes_to_refs_reserved_for_pull_requests_are_refused_and_change_nothing() {
    let t = TestServer::start();
    let (work, tip) = t.seed("scm/TP/test.git", 1);
    let url = t.url_as("writer", "scm/TP/test.git");
    for target in ["main:refs/pull-requests/1/from", "main:refs/pull-requests/1/merge"] {
        let err = t.git_fails(&work, &["push", &url, target]);
        assert!(err.contains("reserved for pull request functionality"), "{err}");
    }
    // A push naming a reserved ref beside a branch is refused whole.
    t.commit(&work, "more.txt", "more");
    let err = t.git_fails(&work, &["push", &url, "main:main", "main:refs/pull-requests/2/from"]);
    assert!(err.contains("reserved"), "{err}");
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main").as_deref(), Some(tip.as_str()));
    assert_eq!(t.server_rev("TP", "test", "refs/pull-requests/1/from"), None);
    // Ordinary refs still take pushes.
    t.git_ok(&work, &["push", &url, "main:main", "main:refs/heads/feature/x", "main:refs/tags/v1"]);
}

/// `refs/pull-requests/*` are the server's: hidden from pushes (git refuses to create, move or
/// delete them, whatever the hook says), still advertised to fetches.
#[test]
fn pull_request_refs_are_hidden_from_pushes_and_fetchable() {
    let t = TestServer::start();
    let (work, tip) = t.seed("scm/TP/test.git", 1);
    let err = t.git_fails(&work, &["push", "origin", "HEAD:refs/pull-requests/1/from"]);
    assert!(err.contains("deny updating a hidden ref"), "{err}");
    assert_eq!(t.server_rev("TP", "test", "refs/pull-requests/1/from"), None);

    // The server writes one (as pr_git does): fetches see it, pushes neither see nor move it.
    let newer = t.commit(&work, "next.txt", "next");
    t.git_ok(&t.repo_dir("TP", "test"), &["update-ref", "refs/pull-requests/1/from", &tip]);
    let remote = t.git_ok(&work, &["ls-remote", "origin"]);
    assert!(remote.contains(&format!("{tip}\trefs/pull-requests/1/from")), "{remote}");
    let fetched = t.work_repo("fetcher", 0);
    t.git_ok(&fetched, &["fetch", "-q", &t.url_as("writer", "scm/TP/test.git"), "refs/pull-requests/1/from"]);
    assert_eq!(t.git_ok(&fetched, &["rev-parse", "FETCH_HEAD"]), tip);
    for refspec in ["HEAD:refs/pull-requests/1/from", "+HEAD:refs/pull-requests/1/from", ":refs/pull-requests/1/from"] {
        let err = t.git_fails(&work, &["push", "origin", refspec]);
        assert!(err.contains("hidden ref"), "{refspec}: {err}");
        assert_eq!(t.server_rev("TP", "test", "refs/pull-requests/1/from").as_deref(), Some(tip.as_str()), "{refspec}");
    }
    // Branches still take pushes.
    t.git_ok(&work, &["push", "-q", "origin", "HEAD:main"]);
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main"), Some(newer));
}

/// Every accepted push is one event with each ref's old and new id; a refused push is none.
#[test]
fn an_accepted_push_publishes_one_event_with_each_refs_old_and_new_id() {
    let t = TestServer::start();
    let mut events = t.server.push_events();
    let zero = "0".repeat(40);
    let (work, tip) = t.seed("scm/TP/test.git", 1);
    let url = t.url_as("writer", "scm/TP/test.git");
    let before = t.server.git_processes_started();
    t.git_ok(&work, &["push", "-q", &url, "main:refs/heads/feature", "main:refs/tags/v1"]);
    t.wait_git_idle_after(before);
    let seeded = events.try_recv().expect("the seeding push's event");
    assert_eq!(seeded.updates.len(), 1);
    assert_eq!(
        (seeded.updates[0].name.as_str(), seeded.updates[0].old.as_str(), seeded.updates[0].new.as_str()),
        ("refs/heads/main", zero.as_str(), tip.as_str())
    );
    assert_eq!((seeded.repo.as_str(), seeded.user.as_str()), ("TP/test", "writer"));
    let ev = events.try_recv().expect("one event for the second push");
    let mut got: Vec<(String, String, String)> = ev.updates.iter().map(|u| (u.name.clone(), u.old.clone(), u.new.clone())).collect();
    got.sort();
    let tag = t.server_rev("TP", "test", "refs/tags/v1").unwrap();
    assert_eq!(got, vec![("refs/heads/feature".to_string(), zero.clone(), tip.clone()), ("refs/tags/v1".to_string(), zero.clone(), tag)]);
    // A deletion is an update to zeros; a refused push publishes nothing.
    let before = t.server.git_processes_started();
    t.git_ok(&work, &["push", "-q", &url, ":refs/heads/feature"]);
    t.wait_git_idle_after(before);
    let del = events.try_recv().expect("the deletion's event");
    assert_eq!((del.updates[0].old.as_str(), del.updates[0].new.as_str()), (tip.as_str(), zero.as_str()));
    let before = t.server.git_processes_started();
    t.git_fails(&work, &["push", &url, "main:refs/pull-requests/1/from"]);
    t.wait_git_idle_after(before);
    assert!(events.try_recv().is_err(), "a refused push published an event");
}
