//! Memory before login: bodies are not read for callers who may not send them, and all bodies
//! held in memory at once share one cap (`max_buffered_request_bytes`), past which requests get
//! 503 instead of the process growing.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::TestServer;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|n| n.parse().ok()).unwrap();
    kb * 1024
}

/// Sends a request head and `sent` bytes of a body that claims `claimed`; leaves it open.
fn unfinished(t: &TestServer, head: &str, claimed: usize, sent: usize) -> TcpStream {
    let mut s = TcpStream::connect(t.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "{head}Content-Length: {claimed}\r\nHost: x\r\n\r\n").unwrap();
    let chunk = vec![b'0'; 64 << 10];
    let mut left = sent;
    while left > 0 {
        let n = left.min(chunk.len());
        // The server may answer and close before reading it all (that is the point).
        if s.write_all(&chunk[..n]).is_err() {
            break;
        }
        left -= n;
    }
    s
}

fn status_of(s: &mut TcpStream) -> Option<u16> {
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_thousand_anonymous_unfinished_rest_bodies_are_refused_unread_and_hold_no_memory() {
    let t = TestServer::start();
    let before = rss_bytes();
    let mut conns: Vec<TcpStream> =
        (0..1000).map(|_| unfinished(&t, "POST /rest/api/1.0/projects HTTP/1.1\r\nContent-Type: application/json\r\n", 1 << 20, 16 << 10)).collect();
    for s in &mut conns {
        assert_eq!(status_of(s), Some(401), "an anonymous change is answered before its body is read");
    }
    let grown = rss_bytes().saturating_sub(before);
    // The bound docs/server.md gives: well under the 256 MiB the clients sent.
    assert!(grown < 96 << 20, "1000 unfinished anonymous bodies grew the process by {} MiB", grown >> 20);
}

#[test]
fn bodies_held_in_memory_share_one_cap_and_past_it_requests_get_503_until_memory_is_free() {
    let t = TestServer::start_with(|c| c.max_buffered_request_bytes = 8 << 20);
    let fetch = "POST /scm/PUB/open.git/git-upload-pack HTTP/1.1\r\nContent-Type: application/x-git-upload-pack-request\r\n";
    // Three anonymous fetches (a public repository) each hold 2 MiB of an unfinished 60 MiB body.
    let mut holders: Vec<TcpStream> = (0..3).map(|_| unfinished(&t, fetch, 60 << 20, 2 << 20)).collect();
    std::thread::sleep(Duration::from_millis(500));
    for h in &mut holders {
        h.set_nonblocking(true).unwrap();
        let mut b = [0u8; 64];
        assert!(h.read(&mut b).is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock), "a holder within the cap was answered");
    }
    // A fourth that sends 3 MiB more passes the cap.
    let mut next = unfinished(&t, fetch, 60 << 20, 3 << 20);
    assert_eq!(status_of(&mut next), Some(503), "past the cap the server answers 503 rather than grow");
    drop(holders);
    // Once the holders are gone their memory is free: a real fetch works.
    let dir = t.dir("after");
    let mut ok = false;
    for _ in 0..50 {
        if t.git(&dir, &["ls-remote", &t.url(None, "scm/PUB/open.git")]).status.success() {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ok, "fetches keep failing after the held bodies went away");
    let r = t.http("POST", "/scm/PUB/open.git/git-upload-pack", &[("Content-Type", "application/x-git-upload-pack-request")], b"0000");
    assert_ne!(r.status, 503);
}
