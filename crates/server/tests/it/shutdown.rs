//! Stopping the server with a push in flight: the stop does not wait on a stalled client for
//! ever, the push is refused cleanly (the repository as it was), and no git process is left.

use std::io::Write as _;
use std::time::Duration;

use trove_server::{Server, ServerConfig};
use trove_store::{GlobalPermission, Owner, Password, ProjectKey, RepoSlug, UserName};

use crate::support::{basic, pkt};

fn git_processes_for(path: &std::path::Path) -> Vec<String> {
    let needle = path.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("receive-pack") && c.contains(&needle))
        .collect()
}

#[test]
fn stopping_with_a_stalled_push_in_flight_refuses_it_cleanly_within_the_drain_timeout() {
    let data = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(data.path());
    config.drain_timeout = Duration::from_secs(1);
    let server = Server::open(config).unwrap();
    let s = server.store();
    let name = UserName::parse("writer").unwrap();
    s.create_user(&name, &Password::new("writer-password").unwrap(), GlobalPermission::SysAdmin).unwrap();
    let key = ProjectKey::parse("TP").unwrap();
    s.create_project(&key, None, false).unwrap();
    let repo = s.create_repo(&Owner::Project(key), &RepoSlug::parse("test").unwrap(), false).unwrap();
    let repo_path = s.repo_path(&repo);

    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let srv = server.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            srv.serve(listener, async move {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
        });
    });
    let addr = addr_rx.recv().unwrap();

    // A push that sends its command and the start of a pack, then stalls.
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    let zero = "0".repeat(40);
    let mut body = pkt(&format!("{zero} {} refs/heads/main\0report-status\n", "1".repeat(40)));
    body.extend_from_slice(b"0000PACK\0\0\0\x02\0\0\0\x05");
    write!(
        c,
        "POST /scm/TP/test.git/git-receive-pack HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Type: application/x-git-receive-pack-request\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        basic("writer", "writer-password"),
        body.len()
    )
    .unwrap();
    c.write_all(&body).unwrap();
    c.write_all(b"\r\n").unwrap();
    c.flush().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server.running_git_processes() == 0 {
        assert!(std::time::Instant::now() < deadline, "the push never started git");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Stop. The server must return (a hang here fails the test by its own timeout), having
    // given the stalled push its drain time and then refused it.
    stop_tx.send(()).unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = thread.join();
        let _ = done_tx.send(());
    });
    assert!(done_rx.recv_timeout(Duration::from_secs(120)).is_ok(), "the server never stopped with a stalled push in flight");
    assert_eq!(server.running_git_processes(), 0, "a git process still counted as running");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !git_processes_for(&repo_path).is_empty() {
        assert!(std::time::Instant::now() < deadline, "git receive-pack left running: {:?}", git_processes_for(&repo_path));
        std::thread::sleep(Duration::from_millis(50));
    }
    let refs = std::process::Command::new("git").arg("--git-dir").arg(&repo_path).args(["for-each-ref"]).output().unwrap();
    assert!(refs.stdout.is_empty(), "the refused push moved a ref: {}", String::from_utf8_lossy(&refs.stdout));
    let fsck = std::process::Command::new("git").arg("--git-dir").arg(&repo_path).args(["fsck", "--no-dangling"]).output().unwrap();
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stderr));
    drop(c);
}

/// Processes other than this test's own that are still at work in `dir`: a command line naming
/// it, or a working directory inside it (a hook git started runs in the repository).
pub(crate) fn processes_in(dir: &std::path::Path) -> Vec<String> {
    let me = std::process::id().to_string();
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()) && e.file_name() != me.as_str())
        .filter_map(|e| {
            let cmdline = String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).ok()?).replace('\0', " ");
            let cwd = std::fs::read_link(e.path().join("cwd")).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
            (cmdline.contains(&needle) || cwd.starts_with(&needle)).then(|| format!("{}: {cmdline} (in {cwd})", e.file_name().to_string_lossy()))
        })
        .collect()
}

/// This process's children (the server runs in it, so its git processes are ours), zombies
/// included: a process killed but never reaped is left behind too.
fn children() -> Vec<String> {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            // `pid (comm) state ppid …`; comm may hold spaces, so read after its last ')'.
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            rest.split_whitespace().nth(1) == Some(me.as_str())
        })
        .collect()
}

#[test]
fn stopping_with_a_real_push_in_flight_finishes_or_refuses_it_and_leaves_no_git_process() {
    let mut t = crate::support::TestServer::start_with(|c| c.drain_timeout = Duration::from_secs(1));
    // The push's pre-receive hook says it started, then takes far longer than the drain time.
    let started = t.home.path().join("pre-receive-started");
    let hook = t.server.store().git_home().join("hooks").join("pre-receive");
    std::fs::write(&hook, format!("#!/bin/sh\ncat > /dev/null\ntouch {}\nsleep 60\nexit 0\n", started.display())).unwrap();
    let work = t.work_repo("big", 1);
    std::fs::write(work.join("big.bin"), crate::push::noise(8 << 20, 0x2545f4914f6cdd1d)).unwrap();
    t.git_ok(&work, &["add", "big.bin"]);
    t.git_ok(&work, &["commit", "-q", "-m", "big"]);
    let tip = t.git_ok(&work, &["rev-parse", "HEAD"]);
    let mut push = t.git_cmd(&work, &["push", &t.url_as("writer", "scm/TP/test.git"), "main"]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !started.exists() {
        assert!(std::time::Instant::now() < deadline, "the push never reached its pre-receive hook");
        assert!(push.try_wait().unwrap().is_none(), "the push ended before the server was asked to stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(t.server.running_git_processes(), 1);

    t.stop(Duration::from_secs(60));
    assert_eq!(t.server.running_git_processes(), 0, "a git process still counted as running");
    // The client sees its connection end and gives up.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while push.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "git push never ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = push.wait_with_output().unwrap();
    let repo = t.repo_dir("TP", "test");
    match t.server_rev("TP", "test", "refs/heads/main") {
        None => assert!(!out.status.success(), "the push reported success but moved no ref"),
        Some(moved) => assert_eq!(moved, tip, "the push moved main to something else"),
    }
    let fsck = t.git(&repo, &["fsck", "--strict", "--no-progress", "--no-dangling"]);
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stderr));
    let left = processes_in(t.data.path());
    assert!(left.is_empty(), "processes outlived the server: {left:?}");
    let left = children();
    assert!(left.is_empty(), "children of the server left behind: {left:?}");
}
