//! The git service's session mode (as SSH will use it) under a real git client: a test listener
//! speaks a one-line header, then hands the stream to `Server::git_session`; a relay script
//! stands in for `ssh` (GIT_SSH_COMMAND).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncBufReadExt as _;
use trove_server::{GitService, GitSession};
use trove_store::{Authenticated, Owner, RepoSlug};

use crate::support::{TestServer, user};

/// A stand-in for `ssh`: connects to `port`, sends the command git gave it (the last argument)
/// and the client's GIT_PROTOCOL on one line, then relays stdin and stdout.
pub(crate) const RELAY: &str = r#"
import os, socket, sys, threading
s = socket.create_connection(("127.0.0.1", int(os.environ["TROVE_TEST_GIT_PORT"])))
s.sendall((sys.argv[-1] + "\t" + os.environ.get("GIT_PROTOCOL", "") + "\n").encode())
def up():
    while True:
        d = os.read(0, 65536)
        if not d:
            break
        s.sendall(d)
    s.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
while True:
    d = s.recv(65536)
    if not d:
        break
    os.write(1, d)
"#;

/// The sessions that ended: (command, GIT_PROTOCOL, exit code).
pub(crate) type Ended = Arc<Mutex<Vec<(String, String, Option<i32>)>>>;

/// Serves git sessions as `writer` on 127.0.0.1:0: one line `git-upload-pack '/TP/test.git'`
/// TAB `GIT_PROTOCOL`, then the session. Returns the port and the (command, protocol, exit code)
/// of each session that ended.
pub(crate) fn listen(t: &TestServer) -> (u16, Ended) {
    let server = t.server.clone();
    let ended = Ended::default();
    let seen = ended.clone();
    let listener = t.runtime().block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    t.runtime().spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (server, seen) = (server.clone(), seen.clone());
            tokio::spawn(async move {
                let (rd, wr) = stream.into_split();
                let mut rd = tokio::io::BufReader::new(rd);
                let mut line = String::new();
                rd.read_line(&mut line).await.unwrap();
                let (command, protocol) = line.trim_end_matches('\n').split_once('\t').unwrap();
                let (service, path) = command.split_once(' ').unwrap();
                let path = path.trim_matches('\'').trim_start_matches('/');
                let (owner, slug) = path.split_once('/').unwrap();
                // As an SSH adapter will: the lookups on the store's blocking pool, never on this
                // async worker.
                let (owner, slug) = (Owner::parse(owner).unwrap(), RepoSlug::parse(slug.trim_end_matches(".git")).unwrap());
                let (repo, who) = server
                    .store()
                    .run(move |store| {
                        let repo = store.repo(&owner, &slug).unwrap().unwrap();
                        (repo, Authenticated { user: store.user(&user("writer")).unwrap().unwrap(), token_scope: None })
                    })
                    .await;
                let session = GitSession {
                    service: GitService::from_name(service).unwrap(),
                    repo: &repo,
                    who: Some(&who),
                    client_ip: None,
                    protocol: Some(protocol).filter(|p| !p.is_empty()),
                };
                let status = server.git_session(session, rd, wr).await.unwrap();
                seen.lock().unwrap().push((command.to_owned(), protocol.to_owned(), status.code()));
            });
        }
    });
    (port, ended)
}

#[test]
fn a_real_git_client_clones_and_pushes_through_a_session_and_the_push_event_fires() {
    let t = TestServer::start();
    let (_, tip) = t.seed("scm/TP/test.git", 3);
    t.wait_maintenance();
    let (port, ended) = listen(&t);
    let relay = t.home.path().join("relay.py");
    std::fs::write(&relay, RELAY).unwrap();
    let ssh = format!("python3 {}", relay.display());
    let git = |cwd: &std::path::Path, args: &[&str]| {
        let mut c = t.git_cmd(cwd, args);
        c.env("GIT_SSH_COMMAND", &ssh).env("TROVE_TEST_GIT_PORT", port.to_string());
        c
    };

    let out = git(t.home.path(), &["-c", "ssh.variant=ssh", "-c", "protocol.version=2", "clone", "ssh://git@trove/TP/test.git", "viassh"])
        .env("GIT_TRACE_PACKET", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "clone over the session failed: {}", String::from_utf8_lossy(&out.stderr));
    let trace = String::from_utf8_lossy(&out.stderr);
    assert!(trace.contains("< version 2"), "the client asked for protocol v2 and upload-pack did not speak it:\n{trace}");
    let clone = t.home.path().join("viassh");
    assert_eq!(t.git_ok(&clone, &["rev-parse", "HEAD"]), tip);
    assert_eq!(std::fs::read_to_string(clone.join("file2.txt")).unwrap(), "content 2 of seed-scm-TP-test-git\n");

    let mut events = t.server.push_events();
    let new = t.commit(&clone, "over-ssh.txt", "pushed through a session\n");
    let out = git(&clone, &["-c", "ssh.variant=ssh", "push", "origin", "main"]).output().unwrap();
    assert!(out.status.success(), "push over the session failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main").unwrap(), new);
    let event = t.runtime().block_on(async { tokio::time::timeout(Duration::from_secs(30), events.recv()).await }).expect("a push event").unwrap();
    assert_eq!((event.repo.as_str(), event.user.as_str()), ("TP/test", "writer"));
    assert_eq!(event.updates.len(), 1);
    assert_eq!((event.updates[0].name.as_str(), event.updates[0].old.as_str(), event.updates[0].new.as_str()), ("refs/heads/main", tip.as_str(), new.as_str()));
    // The reflog names the pusher, as over HTTP.
    let log = std::fs::read_to_string(t.repo_dir("TP", "test").join("logs/refs/heads/main")).unwrap();
    assert!(log.lines().last().unwrap().contains("writer <writer@ssh>"), "reflog: {log}");

    let ended = ended.lock().unwrap().clone();
    assert_eq!(
        ended,
        [
            ("git-upload-pack '/TP/test.git'".to_owned(), "version=2".to_owned(), Some(0)),
            ("git-receive-pack '/TP/test.git'".to_owned(), String::new(), Some(0)),
        ]
    );
    t.fsck("TP", "test");

    // Counted by the git service like HTTP's: the session's clone and push, and a push git
    // refuses (its report follows the ref advertisement in a session's output).
    let out = git(&clone, &["-c", "ssh.variant=ssh", "push", "origin", "HEAD:refs/pull-requests/1/from"]).output().unwrap();
    assert!(!out.status.success(), "a push to refs/pull-requests/* went through");
    t.wait_metric("trove_server_git_operation_seconds_count{kind=\"upload-pack\",outcome=\"ok\"}", 1.0);
    t.wait_metric("trove_server_git_operation_seconds_count{kind=\"receive-pack\",outcome=\"refused\"}", 1.0);
    let text = t.wait_metric("trove_server_git_operation_seconds_count{kind=\"receive-pack\",outcome=\"ok\"}", 2.0);
    for zero in ["upload-pack\",outcome=\"failed", "upload-pack\",outcome=\"cancelled", "receive-pack\",outcome=\"failed", "receive-pack\",outcome=\"cancelled"]
    {
        assert!(text.contains(&format!("trove_server_git_operation_seconds_count{{kind=\"{zero}\"}} 0\n")), "{zero}:\n{text}");
    }
    assert!(!text.contains("trove_server_git_sent_bytes_total{kind=\"upload-pack\"} 0\n"), "{text}");
}
