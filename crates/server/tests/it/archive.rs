//! `…/archive` over a real socket: the downloads open with `unzip -t` and `tar tzf`, the body
//! ends with chunked encoding's last chunk, and a client that leaves mid-download stops the
//! `git archive` behind it.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{TestServer, basic, parse_response, password};

const ARCHIVE: &str = "/rest/api/1.0/projects/TP/repos/test/archive";

fn request(t: &TestServer, query: &str) -> TcpStream {
    let mut s = TcpStream::connect(t.addr).unwrap();
    let auth = basic("reader", &password("reader"));
    let req = format!("GET {ARCHIVE}{query} HTTP/1.1\r\nHost: {}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n", t.addr);
    s.write_all(req.as_bytes()).unwrap();
    s
}

/// `bytes` pseudo-random bytes: git's deflate cannot shrink them.
fn noise(bytes: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn check(tool: &str, args: &[&str], file: &Path) -> String {
    let out = std::process::Command::new(tool).args(args).arg(file).output().unwrap_or_else(|e| panic!("{tool}: {e} (scripts/test installs it)"));
    assert!(out.status.success(), "{tool} {args:?} refused the download: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn archives_download_over_a_socket_whole_and_open_with_unzip_and_tar() {
    let t = TestServer::start();
    let (dir, tip) = t.seed("scm/TP/test.git", 3);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/blob.bin"), noise(3 << 20, 7)).unwrap();
    t.git_ok(&dir, &["add", "-A"]);
    t.git_ok(&dir, &["commit", "-q", "-m", "data"]);
    t.git_ok(&dir, &["push", "-q", "origin", "main"]);
    let tip2 = t.git_ok(&dir, &["rev-parse", "HEAD"]);
    assert_ne!(tip, tip2);
    let out = t.dir("downloads");
    for (format, tool, args, name) in [
        ("zip", "unzip", &["-t"][..], format!("test-main@{}.zip", &tip2[..11])),
        ("tar.gz", "tar", &["tzf"][..], format!("test-main@{}.tar.gz", &tip2[..11])),
        ("tgz", "tar", &["tzf"][..], format!("test-main@{}.tgz", &tip2[..11])),
    ] {
        let mut s = request(&t, &format!("?format={format}"));
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        assert!(raw.ends_with(b"0\r\n\r\n"), "{format}: the body ends with the last chunk");
        let r = parse_response(&raw);
        assert_eq!(r.status, 200, "{format}: {}", r.text());
        assert_eq!(r.header("content-disposition"), Some(format!("attachment; filename=\"{name}\"").as_str()));
        let file = out.join(&name);
        std::fs::write(&file, &r.body).unwrap();
        let listing = check(tool, args, &file);
        assert!(listing.contains("data/blob.bin") && listing.contains("file0.txt"), "{format}: {listing}");
        assert!(r.body.len() > 3 << 20, "{format}: the 3 MB file is in it");
    }
    // A refused one is an ordinary JSON error, not a broken download.
    let mut s = request(&t, "?format=7z");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let r = parse_response(&raw);
    assert_eq!((r.status, r.header("content-type")), (400, Some("application/json;charset=UTF-8")));
}

/// The `git archive` children of this process reading `repo`.
fn archivers(repo: &Path) -> Vec<u32> {
    let me = std::process::id();
    let needle = format!("--git-dir={}", repo.display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // `pid (comm) state ppid …`: comm may hold spaces, so split after its `)`.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(me) {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmd.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        // A zombie (reaped later) has no command line and is no longer running.
        if args.iter().any(|a| a == &needle) && args.iter().any(|a| a == "archive") && !stat.contains(") Z ") {
            found.push(pid);
        }
    }
    found
}

#[test]
fn a_client_leaving_mid_download_stops_git_archive() {
    let t = TestServer::start();
    let (dir, _) = t.seed("scm/TP/test.git", 1);
    // Far more than the socket and pipe buffers hold, so git is still writing when we leave.
    std::fs::write(dir.join("big.bin"), noise(64 << 20, 11)).unwrap();
    t.git_ok(&dir, &["add", "-A"]);
    t.git_ok(&dir, &["commit", "-q", "-m", "big"]);
    t.git_ok(&dir, &["push", "-q", "origin", "main"]);
    let repo = t.repo_dir("TP", "test");
    let mut s = request(&t, "?format=tar");
    let mut head = vec![0u8; 64 << 10];
    let mut got = 0;
    while got < head.len() {
        let n = s.read(&mut head[got..]).unwrap();
        assert!(n > 0, "the download ended early");
        got += n;
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head[..200]));
    assert_eq!(archivers(&repo).len(), 1, "git archive is running while the client reads");
    drop(s);
    // Waits (generously) for the server to notice; no timing is asserted.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !archivers(&repo).is_empty() {
        assert!(Instant::now() < deadline, "git archive {:?} still runs after its client left", archivers(&repo));
        std::thread::sleep(Duration::from_millis(50));
    }
}
