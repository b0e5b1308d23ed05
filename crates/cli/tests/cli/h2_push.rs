//! `git push` over HTTP/2 through `trove up`'s gateway, many at once: every push finishes.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::*;

/// How long one push may take before it counts as hung (a 3 MB push takes about a second).
const PUSH_DEADLINE: Duration = Duration::from_secs(300);

/// `trove up` on free ports in `dir`; the guard and the admin password it printed.
fn start_up(dir: &std::path::Path) -> (Guard, u16, String) {
    let (https, http, server) = (free_port(), free_port(), free_port());
    let mut cmd = trove();
    cmd.current_dir(dir)
        .args(["up", "--https", &format!("127.0.0.1:{https}"), "--http", &format!("127.0.0.1:{http}"), "--server", &format!("127.0.0.1:{server}")])
        .args(["--ssh", &format!("127.0.0.1:{}", crate::free_port())])
        .env_remove("TROVE_ADMIN_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let mut guard = Guard(Some(child));
    wait_port(https, guard.child(), "trove up");
    let mut password = None;
    let mut r = BufReader::new(out);
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap() == 0 {
            break;
        }
        // "  Admin login:  admin / PASSWORD   (shown once; ...)"
        if let Some(rest) = l.trim_start().strip_prefix("Admin login:") {
            password = rest.split_whitespace().nth(2).map(str::to_string);
        }
        if l.starts_with("Data: ") {
            break;
        }
    }
    std::thread::spawn(move || std::io::copy(&mut r, &mut std::io::sink()));
    (guard, https, password.expect("trove up printed the admin password"))
}

/// `len` bytes that do not compress (xorshift), different for each `seed`.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A push that hangs fails the suite instead of hanging it: each of 50 concurrent 3 MB
/// pushes over HTTP/2 has `PUSH_DEADLINE` to finish, then it is killed and counted. (The
/// issue: 4 of 30 pairs of such pushes never returned, the server's `unpack-objects` waiting
/// for pack data and the client waiting for the server.)
#[test]
fn fifty_concurrent_pushes_over_http2_through_the_gateway_all_finish() {
    let work = tmp();
    let home = tmp();
    let (mut up, https, password) = start_up(work.path());
    let data = work.path().join("trove-data");
    let admin = |args: &[&str]| {
        let o = trove().args(["admin", "--data", data.to_str().unwrap()]).args(args).output().unwrap();
        ok(&o, &format!("trove admin {args:?}"));
    };
    admin(&["project", "add", "TP"]);
    admin(&["repo", "add", "TP/soak"]);
    let ca = data.join("tls/ca.crt");
    let url = format!("https://admin:{password}@localhost:{https}/scm/tp/soak.git");
    const N: usize = 50;
    let mut pushes = Vec::new();
    for i in 0..N {
        let wc = work.path().join(format!("w{i}"));
        ok(&git(work.path(), home.path(), &["init", "-q", "-b", "main", wc.to_str().unwrap()]), "init");
        std::fs::write(wc.join("blob"), noise(i as u64 + 1, 3_000_000)).unwrap();
        ok(&git(&wc, home.path(), &["add", "blob"]), "add");
        ok(&git(&wc, home.path(), &["commit", "-q", "-m", &format!("push {i}")]), "commit");
        let mut c = std::process::Command::new("git");
        c.current_dir(&wc).args([
            "-c",
            "http.version=HTTP/2",
            "-c",
            &format!("http.sslCAInfo={}", ca.display()),
            "push",
            "-q",
            &url,
            &format!("HEAD:refs/heads/p{i}"),
        ]);
        clean_git_env(&mut c, home.path());
        // A group of its own: a hung push is killed with its remote helper and pack-objects.
        c.process_group(0).stdout(Stdio::null()).stderr(Stdio::piped());
        pushes.push(c.spawn().expect("git must be installed"));
    }
    let started = Instant::now();
    let mut failed = Vec::new();
    let mut hung = 0;
    for (i, mut p) in pushes.into_iter().enumerate() {
        let status = loop {
            if let Some(st) = p.try_wait().unwrap() {
                break Some(st);
            }
            if started.elapsed() > PUSH_DEADLINE {
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        match status {
            Some(st) if st.success() => {}
            Some(st) => {
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(p.stderr.as_mut().unwrap(), &mut err);
                failed.push(format!("push {i}: {st}: {}", err.trim()));
            }
            None => {
                hung += 1;
                let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{}", p.id())]).status();
                let _ = p.wait();
                failed.push(format!("push {i}: still running after {PUSH_DEADLINE:?}"));
            }
        }
    }
    assert!(failed.is_empty(), "{} of {N} pushes failed ({hung} hung): {failed:#?}", failed.len());
    // Every branch arrived.
    let refs = ok(&git(work.path(), home.path(), &["-c", &format!("http.sslCAInfo={}", ca.display()), "ls-remote", &url]), "ls-remote");
    for i in 0..N {
        assert!(refs.contains(&format!("refs/heads/p{i}\n")), "p{i} missing from {refs}");
    }
    up.signal_and_wait("TERM");
}
