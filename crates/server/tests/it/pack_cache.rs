//! The pack cache against real git: a push between two clones is never answered with the old
//! pack, identical clones share one git run, a reader that goes away mid-stream breaks no other,
//! the disk bound holds across many repositories, shallow and partial clones go through it.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use trove_store::{Owner, ProjectKey, RepoSlug};

use crate::support::{TestServer, basic, password, pkt};

/// The value of a metric series (labels as written), 0 when absent.
fn metric(t: &TestServer, series: &str) -> f64 {
    let text = t.server.render_metrics();
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
}

fn cache(t: &TestServer, result: &str) -> f64 {
    metric(t, &format!("trove_server_pack_cache_requests_total{{result=\"{result}\"}}"))
}

/// Polls until `done` holds, or panics after a minute with `what`.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Incompressible bytes, so that a pack with them cannot fit in pipe and socket buffers.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len / 8)
        .flat_map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed.to_le_bytes()
        })
        .collect()
}

/// Pushes a first commit, then one with 20 MiB of noise, to TP/test; returns (first, tip).
fn big_repo(t: &TestServer) -> (String, String) {
    let (work, first) = t.seed("scm/TP/test.git", 1);
    std::fs::write(work.join("big.bin"), noise(20 << 20, 0x2545f4914f6cdd1d)).unwrap();
    t.git_ok(&work, &["add", "big.bin"]);
    t.git_ok(&work, &["commit", "-q", "-m", "big"]);
    let tip = t.git_ok(&work, &["rev-parse", "HEAD"]);
    t.git_ok(&work, &["push", "-q", "origin", "main"]);
    t.wait_maintenance();
    (first, tip)
}

/// Sends a protocol v0 fetch request for `tip` on TP/test as reader; returns the connection.
fn fetch_request(t: &TestServer, body: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(t.addr).unwrap();
    let head = format!(
        "POST /scm/TP/test.git/git-upload-pack HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/x-git-upload-pack-request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        t.addr,
        basic("reader", &password("reader")),
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    s
}

fn v0_fetch(tip: &str, have: Option<&str>) -> Vec<u8> {
    let mut body = pkt(&format!("want {tip} side-band-64k ofs-delta\n"));
    body.extend_from_slice(b"0000");
    if let Some(h) = have {
        body.extend_from_slice(&pkt(&format!("have {h}\n")));
    }
    body.extend_from_slice(&pkt("done\n"));
    body
}

/// Holds the only pack slot (`max_concurrent_packs = 1`): a fetch with a `have` (never cached)
/// whose 20 MiB answer is never read, so its git blocks writing. Dropping the connection frees it.
fn hold_the_pack_slot(t: &TestServer, first: &str, tip: &str) -> TcpStream {
    let mut s = fetch_request(t, &v0_fetch(tip, Some(first)));
    let mut head = [0u8; 512];
    let n = s.read(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"), "the holding fetch started");
    wait_until("the holding fetch's git never ran", || t.server.running_git_processes() >= 1);
    assert_eq!(cache(t, "bypass"), 1.0, "a fetch with a have is not cached");
    s
}

/// The pack in a side-band-64k upload-pack answer (NAK, then channel 1), checked by the real
/// `git index-pack` into a fresh repository, which must then have `tip` and pass fsck.
fn check_pack(t: &TestServer, answer: &[u8], tip: &str, name: &str) {
    let mut rest = answer;
    let mut pack = Vec::new();
    while rest.len() >= 4 {
        let len = usize::from_str_radix(std::str::from_utf8(&rest[..4]).unwrap(), 16).unwrap();
        if len == 0 {
            break;
        }
        let payload = &rest[4..len];
        if payload.first() == Some(&1) {
            pack.extend_from_slice(&payload[1..]);
        }
        rest = &rest[len..];
    }
    let repo = t.dir(name);
    t.git_ok(&repo, &["init", "-q", "--bare"]);
    let mut index =
        t.git_cmd(&repo, &["index-pack", "--stdin", "--strict"]).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    index.stdin.take().unwrap().write_all(&pack).unwrap();
    let out = index.wait_with_output().unwrap();
    assert!(out.status.success(), "{name}: index-pack refused the pack");
    t.git_ok(&repo, &["update-ref", "refs/heads/main", tip]);
    t.git_ok(&repo, &["fsck", "--strict", "--no-progress"]);
}

/// Reads an HTTP response to its end and returns its (dechunked) body.
fn read_body(mut s: TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let r = crate::support::parse_response(&raw);
    assert_eq!(r.status, 200);
    r.body
}

#[test]
fn a_push_between_two_clones_is_never_answered_with_the_cached_pack() {
    let t = TestServer::start();
    let (work, first) = t.seed("scm/TP/test.git", 2);
    let url = t.url_as("reader", "scm/TP/test.git");
    let clone = |name: &str, version: &str| {
        let dir = t.dir(name);
        t.git_ok(&dir, &["-c", &format!("protocol.version={version}"), "clone", "-q", &url, "c"]);
        t.git_ok(&dir.join("c"), &["fsck", "--strict", "--no-progress"]);
        t.git_ok(&dir.join("c"), &["rev-parse", "HEAD"])
    };
    for version in ["0", "2"] {
        let misses = cache(&t, "miss");
        assert_eq!(clone(&format!("a{version}"), version), first);
        assert_eq!(cache(&t, "miss"), misses + 1.0, "v{version}: the first clone runs git");
        let (hits, started) = (cache(&t, "hit"), t.server.git_processes_started());
        assert_eq!(clone(&format!("b{version}"), version), first);
        assert_eq!(cache(&t, "hit"), hits + 1.0, "v{version}: the same clone again is answered from the cache");
        assert_eq!(t.server.git_processes_started(), started, "v{version}: and starts no git at all");
    }

    let new_tip = t.commit(&work, "more.txt", "more\n");
    t.git_ok(&work, &["push", "-q", "origin", "main"]);
    t.wait_maintenance();
    for version in ["0", "2"] {
        let (misses, hits) = (cache(&t, "miss"), cache(&t, "hit"));
        assert_eq!(clone(&format!("c{version}"), version), new_tip, "v{version}: the clone after the push has the pushed commit");
        assert_eq!(cache(&t, "miss"), misses + 1.0, "v{version}: the push changed the key");
        assert_eq!(cache(&t, "hit"), hits, "v{version}: nothing stale was served");
    }
    // Deleting a branch changes the key too: a clone of what is left is fresh.
    t.git_ok(&work, &["push", "-q", "origin", "HEAD:refs/heads/topic"]);
    let hits = cache(&t, "hit");
    // (A new branch at the same commit: the refs differ, so this is a miss.)
    let dir = t.dir("d");
    t.git_ok(&dir, &["clone", "-q", &url, "c"]);
    assert_eq!(t.git_ok(&dir.join("c"), &["branch", "-r"]).lines().count(), 3, "origin/HEAD, main, topic");
    t.git_ok(&work, &["push", "-q", "origin", ":refs/heads/topic"]);
    let dir = t.dir("e");
    t.git_ok(&dir, &["clone", "-q", &url, "c"]);
    assert!(!t.git_ok(&dir.join("c"), &["branch", "-r"]).contains("topic"), "the deleted branch is not served");
    assert_eq!(t.git_ok(&dir.join("c"), &["rev-parse", "HEAD"]), new_tip);
    assert_eq!(cache(&t, "hit"), hits + 1.0, "the refs are as they were before the branch: that answer is right again");
}

#[test]
fn a_replayed_request_for_a_deleted_branch_is_refused_by_git_not_answered_from_the_cache() {
    // A fresh clone after a push asks for other wants anyway; the ref state in the key is what
    // keeps the same request, replayed after the refs changed, from getting the old answer.
    let t = TestServer::start();
    let (work, _) = t.seed("scm/TP/test.git", 1);
    let secret = t.commit(&work, "secret.txt", "secret\n");
    t.git_ok(&work, &["push", "-q", "origin", "HEAD:refs/heads/secret"]);
    t.wait_maintenance();
    let body = v0_fetch(&secret, None);
    let first = read_body(fetch_request(&t, &body));
    check_pack(&t, &first, &secret, "before");
    assert_eq!(read_body(fetch_request(&t, &body)), first, "the same request is answered the same");
    assert_eq!(cache(&t, "hit"), 1.0, "from the cache");

    t.git_ok(&work, &["push", "-q", "origin", ":refs/heads/secret"]);
    t.wait_maintenance();
    let after = read_body(fetch_request(&t, &body));
    let text = String::from_utf8_lossy(&after);
    assert!(text.contains("not our ref"), "git refuses a want no ref points at any more: {text}");
    assert_eq!(cache(&t, "hit"), 1.0, "nothing was served from the cache");
    assert_eq!(cache(&t, "miss"), 2.0);
}

#[test]
fn concurrent_identical_clones_share_one_git_run_and_are_all_fsck_clean() {
    let t = TestServer::start_with(|c| c.git.max_concurrent_packs = 1);
    let (first, tip) = big_repo(&t);
    let holder = hold_the_pack_slot(&t, &first, &tip);
    let ok_runs = metric(&t, "trove_server_git_operation_seconds_count{kind=\"upload-pack\",outcome=\"ok\"}");
    const N: usize = 6;
    let url = t.url_as("reader", "scm/TP/test.git");
    std::thread::scope(|s| {
        let clones: Vec<_> = (0..N)
            .map(|i| {
                let (t, url) = (&t, &url);
                s.spawn(move || {
                    let dir = t.dir(&format!("storm{i}"));
                    t.git_ok(&dir, &["clone", "-q", url, "c"]);
                    t.git_ok(&dir.join("c"), &["fsck", "--strict", "--no-progress"]);
                    t.git_ok(&dir.join("c"), &["rev-parse", "HEAD"])
                })
            })
            .collect();
        // Every clone asked while git could not start: one started the run, the rest joined it.
        wait_until("the clones never all joined one run", || cache(&t, "miss") == 1.0 && cache(&t, "shared") == (N - 1) as f64);
        drop(holder);
        for c in clones {
            assert_eq!(c.join().unwrap(), tip);
        }
    });
    assert_eq!(cache(&t, "hit"), 0.0);
    t.wait_metric("trove_server_git_operation_seconds_count{kind=\"upload-pack\",outcome=\"ok\"}", ok_runs + 1.0);
    assert!(metric(&t, "trove_server_pack_cache_sent_bytes_total") > (N * (20 << 20)) as f64, "every clone read the pack from the cache");
}

#[test]
fn a_reader_that_goes_away_mid_stream_does_not_break_the_other_readers() {
    let t = TestServer::start_with(|c| c.git.max_concurrent_packs = 1);
    let (first, tip) = big_repo(&t);
    let holder = hold_the_pack_slot(&t, &first, &tip);
    let body = v0_fetch(&tip, None);
    let mut quitter = fetch_request(&t, &body);
    let readers: Vec<TcpStream> = (0..2).map(|_| fetch_request(&t, &body)).collect();
    wait_until("the three readers never joined one run", || cache(&t, "miss") == 1.0 && cache(&t, "shared") == 2.0);
    drop(holder);
    std::thread::scope(|s| {
        let handles: Vec<_> = readers.into_iter().map(|r| s.spawn(move || read_body(r))).collect();
        // The quitter reads its head and the start of the pack, then goes away.
        let mut got = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        while got.len() < 64 * 1024 {
            let n = quitter.read(&mut buf).unwrap();
            assert!(n > 0, "the answer ended early");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 200"));
        drop(quitter);
        for (i, h) in handles.into_iter().enumerate() {
            let answer = h.join().unwrap();
            assert!(answer.len() > 20 << 20, "reader {i} got the whole pack");
            check_pack(&t, &answer, &tip, &format!("reader{i}"));
        }
    });
    // The run itself finished and was kept: the same request again is a hit.
    t.wait_metric("trove_server_pack_cache_entries", 1.0);
    let answer = read_body(fetch_request(&t, &body));
    assert_eq!(cache(&t, "hit"), 1.0);
    check_pack(&t, &answer, &tip, "later");
}

#[test]
fn the_cache_stays_within_its_disk_bound_across_twenty_repositories() {
    const BOUND: u64 = 256 * 1024;
    let t = TestServer::start_with(|c| c.pack_cache.max_bytes = BOUND);
    let dir = t.data.path().join("pack-cache");
    let on_disk = || -> u64 {
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".upload-pack"))
            .map(|e| e.metadata().unwrap().len())
            .sum()
    };
    let tp = ProjectKey::parse("TP").unwrap();
    let mut tips = Vec::new();
    for i in 0..20 {
        let slug = format!("r{i}");
        t.server.store().create_repo(&Owner::Project(tp.clone()), &RepoSlug::parse(&slug).unwrap(), false).unwrap();
        let work = t.work_repo(&format!("w{i}"), 1);
        // About 64 KiB of pack per repository: four fit, twenty do not.
        std::fs::write(work.join("noise.bin"), noise(64 * 1024, 0x9e3779b97f4a7c15 ^ i as u64)).unwrap();
        t.git_ok(&work, &["add", "noise.bin"]);
        t.git_ok(&work, &["commit", "-q", "-m", "noise"]);
        t.git_ok(&work, &["push", "-q", &t.url_as("writer", &format!("scm/TP/{slug}.git")), "main"]);
        tips.push(t.git_ok(&work, &["rev-parse", "HEAD"]));
        let c = t.dir(&format!("c{i}"));
        t.git_ok(&c, &["clone", "-q", &t.url_as("reader", &format!("scm/TP/{slug}.git")), "c"]);
        assert_eq!(t.git_ok(&c.join("c"), &["rev-parse", "HEAD"]), tips[i]);
        let counted = metric(&t, "trove_server_pack_cache_bytes") as u64;
        let real = on_disk();
        assert!(counted <= BOUND && real <= BOUND, "after {} repositories: {counted} counted, {real} on disk, bound {BOUND}", i + 1);
        assert_eq!(counted, real, "the count is what is on disk");
    }
    assert_eq!(cache(&t, "miss"), 20.0);
    assert!(metric(&t, "trove_server_pack_cache_evictions_total") >= 15.0, "most of the twenty were evicted");
    assert!(metric(&t, "trove_server_pack_cache_entries") <= 4.0);
    assert_eq!(metric(&t, "trove_server_pack_cache_limit_bytes"), BOUND as f64);
    // The first repository's answer was evicted: cloning it again runs git again, correctly.
    let c = t.dir("again");
    t.git_ok(&c, &["clone", "-q", &t.url_as("reader", "scm/TP/r0.git"), "c"]);
    assert_eq!(t.git_ok(&c.join("c"), &["rev-parse", "HEAD"]), tips[0]);
    assert_eq!(cache(&t, "miss"), 21.0);
    assert!(on_disk() <= BOUND);
}

#[test]
fn shallow_and_partial_clones_go_through_the_cache() {
    let t = TestServer::start();
    let (_, tip) = t.seed("scm/TP/test.git", 5);
    let url = t.url_as("reader", "scm/TP/test.git");
    for version in ["0", "2"] {
        for n in 0..2 {
            let dir = t.dir(&format!("shallow{version}-{n}"));
            t.git_ok(&dir, &["-c", &format!("protocol.version={version}"), "clone", "-q", "--depth", "1", &url, "c"]);
            let c = dir.join("c");
            assert_eq!(t.git_ok(&c, &["rev-parse", "HEAD"]), tip);
            assert_eq!(t.git_ok(&c, &["rev-list", "--count", "HEAD"]), "1");
            assert_eq!(t.git_ok(&c, &["rev-parse", "--is-shallow-repository"]), "true");
            t.git_ok(&c, &["fsck", "--no-progress"]);
        }
    }
    let hits = cache(&t, "hit");
    assert!(hits >= 2.0, "the second shallow clone of each protocol was a hit ({hits})");
    for n in 0..2 {
        let dir = t.dir(&format!("partial{n}"));
        t.git_ok(&dir, &["clone", "-q", "--no-checkout", "--filter=blob:none", &url, "c"]);
        let c = dir.join("c");
        let missing = t.git_ok(&c, &["rev-list", "--objects", "--all", "--missing=print"]);
        assert_eq!(missing.lines().filter(|l| l.starts_with('?')).count(), 5, "no blobs came:\n{missing}");
        t.git_ok(&c, &["checkout", "-q", "main"]);
        assert_eq!(t.git_ok(&c, &["rev-parse", "HEAD"]), tip);
        assert!(c.join("file4.txt").exists());
    }
    assert!(cache(&t, "hit") >= hits + 1.0, "the second partial clone was a hit");
}

#[test]
fn with_the_cache_off_every_clone_runs_git_and_no_file_is_written() {
    let t = TestServer::start_with(|c| c.pack_cache.enabled = false);
    let (_, tip) = t.seed("scm/TP/test.git", 2);
    let ok = "trove_server_git_operation_seconds_count{kind=\"upload-pack\",outcome=\"ok\"}";
    for n in 0..2 {
        let dir = t.dir(&format!("off{n}"));
        t.git_ok(&dir, &["clone", "-q", &t.url_as("reader", "scm/TP/test.git"), "c"]);
        assert_eq!(t.git_ok(&dir.join("c"), &["rev-parse", "HEAD"]), tip);
        t.wait_metric(ok, (n + 1) as f64);
    }
    assert!(!t.server.render_metrics().contains("trove_server_pack_cache"));
    assert!(!Path::new(&t.data.path().join("pack-cache")).exists());
}
