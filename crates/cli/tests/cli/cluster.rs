//! Data Center mode end to end: three `trove server` processes on one real PostgreSQL (started by
//! the test) and one shared repository directory, behind one `trove gateway` balancing over them;
//! one node is killed with SIGKILL while clones and pushes run through the gateway.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::{Guard, free_port, git, ok, path_str, tmp, trove, wait_port};

const PASSWORD: &str = "admin-password-1";

fn start(cfg: &Path, log: &Path, port: u16, what: &str) -> Guard {
    let log = std::fs::File::create(log).unwrap();
    let mut g = Guard(Some(trove().arg(what).arg("--config").arg(cfg).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log).spawn().unwrap()));
    wait_port(port, g.child(), what);
    g
}

fn get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Runs `f` until it succeeds, at most `n` times: what a CI job does with a clone cut by a
/// node that died under it. Returns the attempts it took.
fn with_retries(n: usize, mut f: impl FnMut() -> std::process::Output) -> (usize, std::process::Output) {
    let mut last = f();
    let mut tries = 1;
    while !last.status.success() && tries < n {
        std::thread::sleep(Duration::from_millis(200));
        last = f();
        tries += 1;
    }
    (tries, last)
}

#[test]
fn three_nodes_behind_the_gateway_survive_one_killed_under_clones_and_pushes() {
    let pg = trove_store::pgtest::TestPg::start();
    let url = pg.database();
    let dir = tmp();
    let shared = dir.path().join("shared");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let cfg = |n: usize| -> PathBuf {
        let p = dir.path().join(format!("node{n}.toml"));
        std::fs::write(
            &p,
            format!(
                "listen = \"127.0.0.1:{}\"\ndata_dir = \"{}\"\ntrusted_proxies = [\"127.0.0.1\"]\ndrain_timeout_secs = 2\n[cluster]\nnode_id = \"node-{n}\"\n[database]\nurl = \"{url}\"\n[storage]\nrepositories = \"{}\"\n",
                ports[n - 1],
                path_str(&dir.path().join(format!("data{n}"))),
                path_str(&shared)
            ),
        )
        .unwrap();
        p
    };
    let cfgs: Vec<PathBuf> = (1..=3).map(cfg).collect();
    // The administrator and the repository, through a node's configuration (no node runs yet).
    let mut add = trove()
        .args(["admin", "--config"])
        .arg(&cfgs[0])
        .args(["user", "add", "admin", "--admin", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        writeln!(add.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    }
    ok(&add.wait_with_output().unwrap(), "user add");
    for args in [&["project", "add", "TP"][..], &["repo", "add", "TP/test"][..]] {
        ok(&trove().args(["admin", "--config"]).arg(&cfgs[0]).args(args).stdin(Stdio::null()).output().unwrap(), "admin");
    }
    let mut nodes: Vec<Guard> = (0..3).map(|i| start(&cfgs[i], &dir.path().join(format!("node{}.log", i + 1)), ports[i], "server")).collect();

    let gw_port = free_port();
    let gw_cfg = dir.path().join("gateway.toml");
    let upstreams: Vec<String> = ports.iter().map(|p| format!("\"http://127.0.0.1:{p}\"")).collect();
    std::fs::write(
        &gw_cfg,
        format!(
            "[[listen]]\naddr = \"127.0.0.1:{gw_port}\"\n[[server]]\nlisten = [\"127.0.0.1:{gw_port}\"]\n[[server.route]]\npath = \"/\"\nupstreams = [{}]\nbalance = \"bybusyness\"\n[server.route.health]\npath = \"/status\"\ninterval = 1\nfails = 1\npasses = 1\n",
            upstreams.join(", ")
        ),
    )
    .unwrap();
    let _gw = start(&gw_cfg, &dir.path().join("gateway.log"), gw_port, "gateway");
    let remote = format!("http://admin:{PASSWORD}@127.0.0.1:{gw_port}/scm/tp/test.git");

    // Something worth cloning: a few hundred commits and some megabytes.
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let work = dir.path().join("work");
    ok(&git(dir.path(), &home, &["init", "-q", "-b", "main", &path_str(&work)]), "init");
    for i in 0..40 {
        let blob: String = (0..50_000).map(|j| char::from(b'a' + ((i * 7 + j * 13) % 26) as u8)).collect();
        std::fs::write(work.join(format!("f{i}.txt")), blob).unwrap();
        ok(&git(&work, &home, &["add", "."]), "add");
        ok(&git(&work, &home, &["commit", "-q", "-m", &format!("c{i}")]), "commit");
    }
    ok(&git(&work, &home, &["push", "-q", &remote, "main"]), "seed push");

    // 20 clones and 10 pushes at once; node 2 dies under them.
    let clones: Vec<_> = (0..20)
        .map(|i| {
            let (remote, base, home) = (remote.clone(), dir.path().to_owned(), home.clone());
            std::thread::spawn(move || {
                with_retries(3, || {
                    let to = base.join(format!("clone{i}-{}", Instant::now().elapsed().as_nanos()));
                    git(&base, &home, &["clone", "-q", &remote, &path_str(&to)])
                })
            })
        })
        .collect();
    let pushes: Vec<_> = (0..10)
        .map(|i| {
            let (remote, base, home) = (remote.clone(), dir.path().to_owned(), home.clone());
            let src = work.clone();
            std::thread::spawn(move || {
                let w = base.join(format!("pusher{i}"));
                ok(&git(&base, &home, &["clone", "-q", "--no-checkout", &path_str(&src), &path_str(&w)]), "local clone");
                std::fs::write(w.join(format!("p{i}.txt")), format!("push {i}\n").repeat(20_000)).unwrap();
                ok(&git(&w, &home, &["add", "."]), "add");
                ok(&git(&w, &home, &["commit", "-q", "-m", &format!("push {i}")]), "commit");
                let tip = ok(&git(&w, &home, &["rev-parse", "HEAD"]), "rev-parse").trim().to_owned();
                let branch = format!("HEAD:refs/heads/b{i}");
                let first = git(&w, &home, &["push", "-q", &remote, &branch]);
                let (_, again) =
                    if first.status.success() { (1, first.clone()) } else { with_retries(3, || git(&w, &home, &["push", "-q", &remote, &branch])) };
                (i, tip, first, again)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    nodes[1].signal_and_wait("KILL");

    let mut retried = 0;
    for c in clones {
        let (tries, out) = c.join().unwrap();
        assert!(out.status.success(), "a clone failed even after {tries} tries: {}", String::from_utf8_lossy(&out.stderr));
        retried += usize::from(tries > 1);
    }
    let bare = shared.join("1");
    for p in pushes {
        let (i, tip, first, again) = p.join().unwrap();
        if !first.status.success() {
            // Failed with a message the developer can act on, and pushed again.
            assert!(!String::from_utf8_lossy(&first.stderr).trim().is_empty(), "push {i} failed without a message");
        }
        assert!(again.status.success(), "push {i} could not be pushed again: {}", String::from_utf8_lossy(&again.stderr));
        let on_server = ok(&git(&bare, &home, &["rev-parse", &format!("refs/heads/b{i}")]), "rev-parse on the server");
        assert_eq!(on_server.trim(), tip, "push {i} landed something else than what was pushed");
    }
    ok(&git(&bare, &home, &["fsck", "--strict", "--no-progress"]), "fsck of the shared repository");
    eprintln!("clones that needed a retry after the kill: {retried} of 20");

    // The gateway routes around the dead node: every request is answered, by the other two.
    for _ in 0..20 {
        let r = get(gw_port, "/status").expect("the gateway answers");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(!r.contains("node-2"), "a request went to the dead node: {r}");
    }
    // Back after a restart: the gateway sends it requests again.
    nodes[1] = start(&cfgs[1], &dir.path().join("node2-again.log"), ports[1], "server");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if get(gw_port, "/status").is_some_and(|r| r.contains("\"node-2\"")) {
            break;
        }
        assert!(Instant::now() < deadline, "the gateway never sent a request to the restarted node");
        std::thread::sleep(Duration::from_millis(100));
    }
}
