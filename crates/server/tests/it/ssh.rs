//! Git over SSH with the real OpenSSH client (`/usr/bin/ssh`, strict host key checking against
//! a known_hosts file made from the server's host keys) and keys made by `ssh-keygen`; the keys
//! and access keys are added through the REST API.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{TestServer, basic, password};

fn start() -> TestServer {
    TestServer::start_with_ssh()
}

fn port(t: &TestServer) -> u16 {
    t.server.ssh_addr().expect("ssh is on").port()
}

/// A key made by `ssh-keygen` under the test's HOME: its private key file and public key text.
fn keygen(t: &TestServer, name: &str, kind: &str, bits: Option<u32>) -> (PathBuf, String) {
    let dir = t.dir("keys");
    let path = dir.join(name);
    let mut c = Command::new("ssh-keygen");
    c.args(["-q", "-N", "", "-C", name, "-t", kind, "-f"]).arg(&path);
    if let Some(b) = bits {
        c.args(["-b", &b.to_string()]);
    }
    let out = c.output().expect("ssh-keygen (openssh-client) is installed");
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    (path.clone(), std::fs::read_to_string(path.with_extension("pub")).unwrap().trim().to_owned())
}

/// known_hosts with the server's host keys, as `ssh-keyscan` would write them.
fn known_hosts(t: &TestServer) -> PathBuf {
    let path = t.home.path().join("known_hosts");
    let mut text = String::new();
    for f in ["ssh_host_ed25519_key.pub", "ssh_host_ecdsa_key.pub"] {
        let public = std::fs::read_to_string(t.data.path().join(f)).unwrap();
        text.push_str(&format!("[127.0.0.1]:{} {}\n", port(t), public.trim()));
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn ssh_command(t: &TestServer, key: &Path, extra: &str) -> String {
    format!(
        "ssh -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes -o GlobalKnownHostsFile=/dev/null -F /dev/null -p {} {extra}",
        key.display(),
        known_hosts(t).display(),
        port(t)
    )
}

/// git with GIT_SSH_COMMAND using `key`.
fn git_ssh(t: &TestServer, key: &Path, cwd: &Path, args: &[&str]) -> Output {
    let mut c = t.git_cmd(cwd, args);
    c.env("GIT_SSH_COMMAND", ssh_command(t, key, ""));
    c.output().unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed: {}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn fails(out: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{what} unexpectedly succeeded: {err}");
    err
}

fn url(t: &TestServer, path: &str) -> String {
    format!("ssh://git@127.0.0.1:{}/{path}", port(t))
}

fn rest(t: &TestServer, who: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let auth = basic(who, &password(who));
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let r = t.http(method, path, &[("Authorization", &auth), ("Content-Type", "application/json")], &bytes);
    let v = if r.body.is_empty() { Value::Null } else { serde_json::from_slice(&r.body).unwrap_or(Value::Null) };
    (r.status, v)
}

/// Adds `text` as `who`'s key; returns its id.
fn add_key(t: &TestServer, who: &str, text: &str) -> i64 {
    let (status, v) = rest(t, who, "POST", "/rest/ssh/1.0/keys", Some(json!({"text": text, "label": format!("{who}'s key")})));
    assert_eq!(status, 201, "{v}");
    v["id"].as_i64().unwrap()
}

#[test]
fn clone_fetch_and_push_over_ssh_in_protocol_v2_and_v0_run_the_same_push_path_as_http() {
    let t = start();
    let (_, tip) = t.seed("scm/TP/test.git", 3);
    let (key, text) = keygen(&t, "writer", "ed25519", None);
    add_key(&t, "writer", &text);

    // Protocol v2 (GIT_PROTOCOL through the env request), with the path as Bitbucket writes it.
    let out = {
        let mut c = t.git_cmd(t.home.path(), &["-c", "protocol.version=2", "clone", &url(&t, "tp/test.git"), "v2"]);
        c.env("GIT_SSH_COMMAND", ssh_command(&t, &key, "")).env("GIT_TRACE_PACKET", "1");
        c.output().unwrap()
    };
    ok(&out, "clone over ssh (v2)");
    assert!(String::from_utf8_lossy(&out.stderr).contains("< version 2"), "the server did not speak protocol v2");
    let v2 = t.home.path().join("v2");
    assert_eq!(t.git_ok(&v2, &["rev-parse", "HEAD"]), tip);

    // A push: the event, the reflog and the webhook path are the HTTP push's.
    let mut events = t.server.push_events();
    let new = t.commit(&v2, "over-ssh.txt", "pushed over ssh\n");
    ok(&git_ssh(&t, &key, &v2, &["push", "origin", "main"]), "push over ssh (v2)");
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main").unwrap(), new);
    let event = t.runtime().block_on(async { tokio::time::timeout(Duration::from_secs(30), events.recv()).await }).expect("a push event").unwrap();
    assert_eq!((event.repo.as_str(), event.user.as_str()), ("TP/test", "writer"));
    let log = std::fs::read_to_string(t.repo_dir("TP", "test").join("logs/refs/heads/main")).unwrap();
    assert!(log.lines().last().unwrap().contains("writer <writer@ssh.127.0.0.1>"), "reflog: {log}");

    // Protocol v0, and the other spellings of the path.
    let out = {
        let mut c = t.git_cmd(t.home.path(), &["-c", "protocol.version=0", "clone", &url(&t, "scm/TP/test.git"), "v0"]);
        c.env("GIT_SSH_COMMAND", ssh_command(&t, &key, ""));
        c.output().unwrap()
    };
    ok(&out, "clone over ssh (v0)");
    let v0 = t.home.path().join("v0");
    assert_eq!(t.git_ok(&v0, &["rev-parse", "HEAD"]), new);
    let newer = t.commit(&v0, "v0.txt", "pushed in v0\n");
    ok(&git_ssh(&t, &key, &v0, &["-c", "protocol.version=0", "push", "origin", "main"]), "push over ssh (v0)");
    ok(&git_ssh(&t, &key, &v2, &["fetch", "origin"]), "fetch over ssh");
    assert_eq!(t.git_ok(&v2, &["rev-parse", "origin/main"]), newer);
    // ls-remote over SSH and over HTTP agree.
    let over_ssh = ok(&git_ssh(&t, &key, t.home.path(), &["ls-remote", &url(&t, "/TP/test.git")]), "ls-remote over ssh");
    let over_http = t.git_ok(t.home.path(), &["ls-remote", &t.url_as("writer", "scm/TP/test.git")]);
    assert_eq!(over_ssh, over_http);
    // A push to refs/pull-requests/* is refused as over HTTP (the same hooks).
    fails(&git_ssh(&t, &key, &v2, &["push", "origin", "HEAD:refs/pull-requests/1/from"]), "push to refs/pull-requests");
    // git archive --remote (upload-archive).
    let out = git_ssh(&t, &key, t.home.path(), &["archive", "--remote", &url(&t, "TP/test.git"), "--format=tar", "main", "v0.txt"]);
    assert!(out.status.success() && out.stdout.windows(6).any(|w| w == b"v0.txt"), "archive: {}", String::from_utf8_lossy(&out.stderr));
    t.fsck("TP", "test");

    // The clone links name SSH too.
    let (_, repo) = rest(&t, "writer", "GET", "/rest/api/1.0/projects/TP/repos/test", None);
    let links: Vec<&str> = repo["links"]["clone"].as_array().unwrap().iter().filter(|l| l["name"] == "ssh").filter_map(|l| l["href"].as_str()).collect();
    assert_eq!(links, [format!("ssh://git@127.0.0.1:{}/tp/test.git", port(&t))]);
    // So does the repository page's clone box.
    let page = t.http("GET", "/projects/PUB/repos/open/browse", &[], b"").text();
    assert!(page.contains(&format!("ssh://git@127.0.0.1:{}/pub/open.git", port(&t))), "{page}");
}

#[test]
fn a_read_only_access_key_clones_but_cannot_push_and_a_write_key_pushes_with_exactly_its_grant() {
    let t = start();
    let (_, tip) = t.seed("scm/TP/test.git", 2);
    let (ro, ro_text) = keygen(&t, "ci-read", "ecdsa", None);
    let (status, v) =
        rest(&t, "admin", "POST", "/rest/keys/1.0/projects/TP/repos/test/ssh", Some(json!({"key": {"text": ro_text}, "permission": "REPO_READ"})));
    assert_eq!(status, 201, "{v}");
    assert_eq!((v["permission"].as_str(), v["repository"]["slug"].as_str(), v["key"]["label"].as_str()), (Some("REPO_READ"), Some("test"), Some("ci-read")));
    let ro_id = v["key"]["id"].as_i64().unwrap();
    // A repository administrator lists it; someone who may only write may not.
    let (status, list) = rest(&t, "admin", "GET", "/rest/keys/1.0/projects/TP/repos/test/ssh", None);
    assert_eq!((status, list["values"][0]["key"]["id"].as_i64()), (200, Some(ro_id)));
    assert_eq!(rest(&t, "writer", "GET", "/rest/keys/1.0/projects/TP/repos/test/ssh", None).0, 403);

    ok(&git_ssh(&t, &ro, t.home.path(), &["clone", &url(&t, "tp/test.git"), "ci"]), "clone with a read-only access key");
    let ci = t.home.path().join("ci");
    assert_eq!(t.git_ok(&ci, &["rev-parse", "HEAD"]), tip);
    t.commit(&ci, "ci.txt", "from ci\n");
    let err = fails(&git_ssh(&t, &ro, &ci, &["push", "origin", "main"]), "push with a read-only access key");
    assert!(err.contains("write permission is required"), "{err}");
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main").unwrap(), tip);
    // Exactly its grant: another repository, even a public one, is not found.
    let err = fails(&git_ssh(&t, &ro, t.home.path(), &["ls-remote", &url(&t, "PUB/open.git")]), "ls-remote elsewhere");
    assert!(err.contains("Repository not found"), "{err}");

    // A project's write key pushes to its repositories, as `~access-key-ID`.
    let (rw, rw_text) = keygen(&t, "deploy", "ed25519", None);
    let (status, v) =
        rest(&t, "admin", "POST", "/rest/keys/1.0/projects/TP/ssh", Some(json!({"key": {"text": rw_text, "label": "deploy"}, "permission": "PROJECT_WRITE"})));
    assert_eq!((status, v["permission"].as_str(), v["project"]["key"].as_str()), (201, Some("PROJECT_WRITE"), Some("TP")), "{v}");
    let rw_id = v["key"]["id"].as_i64().unwrap();
    let mut events = t.server.push_events();
    let out = {
        let mut c = t.git_cmd(&ci, &["push", "origin", "main"]);
        c.env("GIT_SSH_COMMAND", ssh_command(&t, &rw, ""));
        c.output().unwrap()
    };
    ok(&out, "push with a project write key");
    let event = t.runtime().block_on(async { tokio::time::timeout(Duration::from_secs(30), events.recv()).await }).expect("a push event").unwrap();
    assert_eq!(event.user, format!("~access-key-{rw_id}"));
    // Invalid permissions and keys are refused with the reason.
    let (status, v) = rest(&t, "admin", "POST", "/rest/keys/1.0/projects/TP/ssh", Some(json!({"key": {"text": rw_text}, "permission": "PROJECT_ADMIN"})));
    assert_eq!(status, 400, "{v}");
    // Removing the grant removes the key.
    assert_eq!(rest(&t, "admin", "DELETE", &format!("/rest/keys/1.0/projects/TP/repos/test/ssh/{ro_id}"), None).0, 204);
    assert_eq!(rest(&t, "admin", "DELETE", &format!("/rest/keys/1.0/projects/TP/repos/test/ssh/{ro_id}"), None).0, 404);
    let log = std::fs::read_to_string(t.data.path().join("audit.log")).unwrap();
    assert!(log.contains(&format!("repo:TP/test access-key:{ro_id}")) && log.contains("\"access-key.remove\""), "{log}");
    let err = fails(&git_ssh(&t, &ro, t.home.path(), &["ls-remote", &url(&t, "tp/test.git")]), "ls-remote with a removed access key");
    assert!(err.contains("Permission denied"), "{err}");
}

#[test]
fn user_keys_are_listed_unique_and_judged_and_a_revoked_key_is_refused_at_once() {
    let t = start();
    t.seed("scm/TP/test.git", 1);
    let (key, text) = keygen(&t, "reader", "ed25519", None);
    let id = add_key(&t, "reader", &text);
    let (status, list) = rest(&t, "reader", "GET", "/rest/ssh/1.0/keys", None);
    assert_eq!((status, list["values"][0]["id"].as_i64(), list["values"][0]["label"].as_str()), (200, Some(id), Some("reader's key")));
    // Unique across the server.
    let (status, v) = rest(&t, "writer", "POST", "/rest/ssh/1.0/keys", Some(json!({"text": text})));
    assert_eq!(status, 409, "{v}");
    // Weak keys, with the reason.
    let (_, weak) = keygen(&t, "weak", "rsa", Some(1024));
    let (status, v) = rest(&t, "reader", "POST", "/rest/ssh/1.0/keys", Some(json!({"text": weak})));
    assert_eq!(status, 400);
    assert!(v.to_string().contains("at least 2048 bits"), "{v}");
    let (status, v) = rest(&t, "reader", "POST", "/rest/ssh/1.0/keys", Some(json!({"text": "ssh-dss AAAAB3NzaC1kc3MAAACBAP"})));
    assert_eq!(status, 400, "{v}");
    // Administrators see others' keys with ?user=; others may not.
    let (status, v) = rest(&t, "admin", "GET", "/rest/ssh/1.0/keys?user=reader", None);
    assert_eq!((status, v["values"][0]["id"].as_i64()), (200, Some(id)));
    assert_eq!(rest(&t, "writer", "GET", "/rest/ssh/1.0/keys?user=reader", None).0, 403);

    ok(&git_ssh(&t, &key, t.home.path(), &["ls-remote", &url(&t, "tp/test.git")]), "ls-remote with the key");
    assert_eq!(rest(&t, "reader", "DELETE", &format!("/rest/ssh/1.0/keys/{id}"), None).0, 204);
    let err = fails(&git_ssh(&t, &key, t.home.path(), &["ls-remote", &url(&t, "tp/test.git")]), "ls-remote with a revoked key");
    assert!(err.contains("Permission denied (publickey)"), "{err}");
    // Both changes are in the audit log.
    let log = std::fs::read_to_string(t.data.path().join("audit.log")).unwrap();
    for want in ["\"ssh-key.add\"".to_owned(), "\"ssh-key.delete\"".to_owned(), format!("user:reader ssh-key:{id}")] {
        assert!(log.contains(&want), "{want} not in the audit log:\n{log}");
    }
}

#[test]
fn no_permission_and_no_repository_read_the_same_repository_not_found() {
    let t = start();
    t.seed("scm/TP/test.git", 1);
    let (key, text) = keygen(&t, "outsider", "ed25519", None);
    add_key(&t, "outsider", &text);
    let hidden = fails(&git_ssh(&t, &key, t.home.path(), &["ls-remote", &url(&t, "tp/test.git")]), "ls-remote without permission");
    let missing = fails(&git_ssh(&t, &key, t.home.path(), &["ls-remote", &url(&t, "tp/nothing.git")]), "ls-remote of nothing");
    let line = |s: &str| s.lines().find(|l| l.contains("not found")).map(str::to_owned);
    assert_eq!(line(&hidden), line(&missing));
    assert!(hidden.contains("Repository not found, or you may not read it."), "{hidden}");
    // The same words as the HTTP 404's body.
    let r = t.http("GET", "/scm/TP/test.git/info/refs?service=git-upload-pack", &[("Authorization", &basic("outsider", &password("outsider")))], b"");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("Repository not found, or you may not read it."), "{}", r.text());
    // A reader may read but not push: over SSH, as over HTTP, the reason is given.
    let (rk, rtext) = keygen(&t, "reader", "ed25519", None);
    add_key(&t, "reader", &rtext);
    ok(&git_ssh(&t, &rk, t.home.path(), &["clone", &url(&t, "tp/test.git"), "r"]), "clone as reader");
    let r = t.home.path().join("r");
    t.commit(&r, "x.txt", "x\n");
    let err = fails(&git_ssh(&t, &rk, &r, &["push", "origin", "main"]), "push as reader");
    assert!(err.contains("User reader may not push to TP/test"), "{err}");
}

fn ssh(t: &TestServer, key: &Path, args: &[&str]) -> Output {
    let cmd = ssh_command(t, key, "");
    let mut parts: Vec<&str> = cmd.split_whitespace().collect();
    let program = parts.remove(0);
    Command::new(program).args(parts).args(args).env("HOME", t.home.path()).stdin(std::process::Stdio::null()).output().unwrap()
}

#[test]
fn shells_ptys_commands_forwarding_and_subsystems_are_refused_with_a_message() {
    let t = start();
    let (key, text) = keygen(&t, "writer", "ed25519", None);
    add_key(&t, "writer", &text);
    for (what, args) in [
        ("a shell", vec!["-T", "git@127.0.0.1"]),
        ("a command", vec!["git@127.0.0.1", "cat /etc/passwd"]),
        ("a subsystem", vec!["-s", "git@127.0.0.1", "sftp"]),
    ] {
        let out = ssh(&t, &key, &args);
        assert!(!out.status.success(), "{what} was allowed");
        // With a terminal asked for, OpenSSH may show the server's stderr on its stdout.
        let err = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
        assert!(err.contains("Trove serves only git over SSH"), "{what}: {err}");
    }
    // A terminal: refused, and OpenSSH says so and gives up.
    let out = ssh(&t, &key, &["-tt", "git@127.0.0.1"]);
    assert!(!out.status.success(), "a pty was allowed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("PTY allocation request failed"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = ssh(&t, &key, &["-W", &t.addr.to_string(), "git@127.0.0.1"]);
    assert!(!out.status.success(), "stdio forwarding was allowed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("prohibited"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = ssh(&t, &key, &["-N", "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:1", "git@127.0.0.1"]);
    assert!(!out.status.success(), "remote forwarding was allowed");
}

#[test]
fn sha1_rsa_signatures_and_host_keys_are_refused_and_rsa_sha2_is_accepted() {
    let t = start();
    t.seed("scm/TP/test.git", 1);
    let (key, text) = keygen(&t, "writer-rsa", "rsa", Some(3072));
    add_key(&t, "writer", &text);
    ok(&git_ssh(&t, &key, t.home.path(), &["ls-remote", &url(&t, "tp/test.git")]), "ls-remote with an RSA key (rsa-sha2)");
    let sha1_user = {
        let mut c = t.git_cmd(t.home.path(), &["ls-remote", &url(&t, "tp/test.git")]);
        c.env("GIT_SSH_COMMAND", ssh_command(&t, &key, "-o PubkeyAcceptedAlgorithms=ssh-rsa"));
        c.output().unwrap()
    };
    fails(&sha1_user, "an ssh-rsa (SHA-1) signature");
    let sha1_host = {
        let mut c = t.git_cmd(t.home.path(), &["ls-remote", &url(&t, "tp/test.git")]);
        c.env("GIT_SSH_COMMAND", ssh_command(&t, &key, "-o HostKeyAlgorithms=ssh-rsa"));
        c.output().unwrap()
    };
    let err = fails(&sha1_host, "an ssh-rsa host key");
    assert!(err.contains("no matching host key type"), "{err}");
    let old_kex = {
        let mut c = t.git_cmd(t.home.path(), &["ls-remote", &url(&t, "tp/test.git")]);
        c.env("GIT_SSH_COMMAND", ssh_command(&t, &key, "-o KexAlgorithms=diffie-hellman-group14-sha1"));
        c.output().unwrap()
    };
    fails(&old_kex, "SHA-1 key exchange");
}

/// Processes whose command line names `dir`.
fn processes_on(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(&needle) && !cmd.contains("fsck") {
                found.push(cmd);
            }
        }
    }
    found
}

/// A push over SSH of a large commit whose client sends only the first 256 KiB and then holds
/// its input open, under way (receive-pack running, its quarantine made) when this returns:
/// the client (its own process group), the repository's directory and the tip before.
fn stalled_push(t: &TestServer) -> (std::process::Child, PathBuf, String) {
    let (work, tip) = t.seed("scm/TP/test.git", 1);
    let (key, text) = keygen(t, "writer", "ed25519", None);
    add_key(t, "writer", &text);
    // Incompressible content, so the pack is large.
    let mut blob = vec![0u8; 8 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in blob.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(work.join("big.bin"), &blob).unwrap();
    t.git_ok(&work, &["add", "big.bin"]);
    t.git_ok(&work, &["commit", "-q", "-m", "big"]);
    let wrapper = t.home.path().join("slow-ssh.sh");
    std::fs::write(&wrapper, format!("#!/bin/sh\n{{ head -c 262144; sleep 600; }} | {} \"$@\"\n", ssh_command(t, &key, ""))).unwrap();
    Command::new("chmod").arg("755").arg(&wrapper).status().unwrap();
    let repo = t.repo_dir("TP", "test");
    let started = t.server.git_processes_started();
    // ssh.variant: git would otherwise probe the wrapper with `-G`, which waits on its input.
    let mut push = t.git_cmd(&work, &["-c", "ssh.variant=ssh", "push", &url(t, "tp/test.git"), "main"]);
    push.env("GIT_SSH_COMMAND", wrapper.to_str().unwrap()).process_group(0);
    let child = push.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let quarantined =
            std::fs::read_dir(repo.join("objects")).unwrap().flatten().any(|e| e.file_name().to_string_lossy().starts_with("tmp_objdir-incoming"));
        if t.server.git_processes_started() > started && t.server.running_git_processes() > 0 && quarantined {
            break;
        }
        if Instant::now() >= deadline {
            kill_group(child.id());
            panic!("the push never got under way: running {}", t.server.running_git_processes());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, repo, tip)
}

/// No git process on `repo` (polled), the refs as they were, fsck clean, no quarantine left.
fn as_it_was(t: &TestServer, repo: &Path, tip: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while t.server.running_git_processes() != 0 || !processes_on(repo).is_empty() {
        assert!(Instant::now() < deadline, "git still runs after its client went away: {:?}", processes_on(repo));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main").unwrap(), tip, "the refs moved");
    t.git_ok(repo, &["fsck", "--strict", "--no-progress"]);
    let left: Vec<_> =
        std::fs::read_dir(repo.join("objects")).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("tmp_objdir")).collect();
    assert!(left.is_empty(), "the quarantine was left behind");
}

#[test]
fn a_client_killed_mid_push_leaves_the_repository_as_it_was_and_no_git_process() {
    let t = start();
    let (mut child, repo, tip) = stalled_push(&t);
    // SIGKILL to the client's whole process group (git, the wrapper, ssh).
    kill_group(child.id());
    let _ = child.wait();
    as_it_was(&t, &repo, &tip);
}

#[test]
fn stopping_the_server_mid_push_over_ssh_leaves_the_repository_as_it_was_and_no_git_process() {
    let mut t = start();
    let (mut child, repo, tip) = stalled_push(&t);
    t.stop(Duration::from_secs(60));
    as_it_was(&t, &repo, &tip);
    kill_group(child.id());
    let _ = child.wait();
}

fn kill_group(pgid: u32) {
    let status = Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).status().unwrap();
    assert!(status.success());
}

#[test]
fn connections_not_logged_in_are_capped_and_closed_after_the_login_grace_time() {
    use std::io::Read as _;
    let t = TestServer::start_with(|c| {
        let mut s = trove_server::ssh::SshSettings::new("127.0.0.1:0".parse().unwrap());
        s.login_grace = Duration::from_secs(1);
        s.max_unauthenticated = 1;
        c.ssh = Some(s);
    });
    t.seed("scm/TP/test.git", 1);
    let (key, text) = keygen(&t, "writer", "ed25519", None);
    add_key(&t, "writer", &text);
    let addr = t.server.ssh_addr().unwrap();
    // A connection that never logs in holds the one slot (the server has greeted it).
    let mut idle = std::net::TcpStream::connect(addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut banner = [0u8; 7];
    idle.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, b"SSH-2.0");
    // The next is closed at once, unanswered.
    let mut second = std::net::TcpStream::connect(addr).unwrap();
    second.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut buf = [0u8; 64];
    match second.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("a connection over the cap was served: {other:?}"),
    }
    // The silent one is closed after the login grace time.
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest);
    // Then the slot is free again: a client logs in (polled: the slot goes with the connection).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = git_ssh(&t, &key, t.home.path(), &["ls-remote", &url(&t, "tp/test.git")]);
        if out.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "no login after the idle connection went: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_host_key_readable_by_others_is_refused_at_start() {
    let data = tempfile::tempdir().unwrap();
    let mut config = trove_server::ServerConfig::new(data.path());
    config.ssh = Some(trove_server::ssh::SshSettings::new("127.0.0.1:0".parse().unwrap()));
    drop(trove_server::Server::open(config.clone()).unwrap());
    let key = data.path().join("ssh_host_ed25519_key");
    let meta = std::fs::metadata(&key).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "made readable by its owner only");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = trove_server::Server::open(config).err().expect("a too-open host key is refused").to_string();
    assert!(err.contains("can be read by group or others") && err.contains("chmod 600"), "{err}");
}

#[test]
fn branch_permissions_apply_to_access_keys_and_exempt_the_keys_they_name() {
    let t = start();
    let (work, tip) = t.seed("scm/TP/test.git", 1);
    let grant = |name: &str| {
        let (key, text) = keygen(&t, name, "ed25519", None);
        let (status, v) =
            rest(&t, "admin", "POST", "/rest/keys/1.0/projects/TP/repos/test/ssh", Some(json!({"key": {"text": text}, "permission": "REPO_WRITE"})));
        assert_eq!(status, 201, "{v}");
        (key, v["key"]["id"].as_i64().unwrap())
    };
    let (release, release_id) = grant("release-bot");
    let (other, _) = grant("other-bot");
    // main is read-only for everyone but the release bot's access key (its id, as Bitbucket's
    // `accessKeyIds`).
    let body = json!({"type": "read-only", "matcher": {"id": "refs/heads/main", "type": {"id": "BRANCH"}}, "accessKeyIds": [release_id]});
    let (status, v) = rest(&t, "admin", "POST", "/rest/branch-permissions/2.0/projects/TP/repos/test/restrictions", Some(body));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["accessKeys"][0]["key"]["id"].as_i64(), Some(release_id));
    t.commit(&work, "bot.txt", "from a bot\n");
    let url = url(&t, "tp/test.git");
    let err = fails(&git_ssh(&t, &other, &work, &["push", &url, "main"]), "push by a key the restriction does not exempt");
    assert!(err.contains("read-only"), "{err}");
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main").unwrap(), tip);
    ok(&git_ssh(&t, &release, &work, &["push", &url, "main"]), "push by the exempt access key");
    assert_ne!(t.server_rev("TP", "test", "refs/heads/main").unwrap(), tip);
}

#[test]
fn shallow_and_partial_clones_work_over_ssh() {
    let t = start();
    let (_, tip) = t.seed("scm/TP/test.git", 4);
    let (key, text) = keygen(&t, "reader", "ed25519", None);
    add_key(&t, "reader", &text);
    let u = url(&t, "tp/test.git");
    ok(&git_ssh(&t, &key, t.home.path(), &["clone", "--depth", "1", &u, "shallow"]), "shallow clone");
    let shallow = t.home.path().join("shallow");
    assert_eq!(t.git_ok(&shallow, &["rev-list", "--count", "HEAD"]), "1");
    assert_eq!(t.git_ok(&shallow, &["rev-parse", "HEAD"]), tip);
    ok(&git_ssh(&t, &key, t.home.path(), &["clone", "--filter=blob:none", "--no-checkout", &u, "partial"]), "partial clone");
    let partial = t.home.path().join("partial");
    assert_eq!(t.git_ok(&partial, &["config", "remote.origin.promisor"]), "true");
    // The blobs come later, on demand, over SSH too.
    ok(&git_ssh(&t, &key, &partial, &["checkout", "main"]), "checkout of a partial clone");
    assert!(partial.join("file3.txt").exists());
}

#[test]
fn an_address_trying_many_unknown_keys_is_held_off_like_one_spraying_passwords() {
    let t = TestServer::start_with(|c| {
        c.ssh = Some(trove_server::ssh::SshSettings::new("127.0.0.1:0".parse().unwrap()));
        c.auth.max_failed_accounts_per_address = 2;
    });
    t.seed("scm/TP/test.git", 1);
    let (good, text) = keygen(&t, "writer", "ed25519", None);
    add_key(&t, "writer", &text);
    ok(&git_ssh(&t, &good, t.home.path(), &["ls-remote", &url(&t, "tp/test.git")]), "ls-remote with a known key");
    for i in 0..3 {
        let (unknown, _) = keygen(&t, &format!("stranger{i}"), "ed25519", None);
        fails(&git_ssh(&t, &unknown, t.home.path(), &["ls-remote", &url(&t, "tp/test.git")]), "ls-remote with an unknown key");
    }
    let err = fails(&git_ssh(&t, &good, t.home.path(), &["ls-remote", &url(&t, "tp/test.git")]), "a known key from a held-off address");
    assert!(err.contains("Permission denied"), "{err}");
}

#[test]
fn a_50_mb_push_over_ssh_arrives_whole() {
    let t = start();
    let (work, _) = t.seed("scm/TP/test.git", 1);
    let (key, text) = keygen(&t, "writer", "ed25519", None);
    add_key(&t, "writer", &text);
    let mut blob = vec![0u8; 50 << 20];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for chunk in blob.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(work.join("big.bin"), &blob).unwrap();
    drop(blob);
    t.git_ok(&work, &["add", "big.bin"]);
    t.git_ok(&work, &["commit", "-q", "-m", "50 MB"]);
    let tip = t.git_ok(&work, &["rev-parse", "HEAD"]);
    ok(&git_ssh(&t, &key, &work, &["push", &url(&t, "tp/test.git"), "main"]), "50 MB push over ssh");
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main").unwrap(), tip);
    ok(&git_ssh(&t, &key, t.home.path(), &["clone", &url(&t, "tp/test.git"), "back"]), "clone it back");
    assert_eq!(std::fs::metadata(t.home.path().join("back/big.bin")).unwrap().len(), 50 << 20);
    t.fsck("TP", "test");
}

/// libgit2 (pygit2's wheel, with libssh2) clones and pushes over SSH with an ECDSA key; libgit2
/// checks the host key against `~/.ssh/known_hosts` and the client connects only when it matched,
/// so with a known_hosts that names another key it refuses to talk to the server.
#[test]
fn libgit2_clones_and_pushes_over_ssh_and_checks_the_host_key() {
    let t = start();
    let (_, tip) = t.seed("scm/TP/test.git", 2);
    let (key, text) = keygen(&t, "writer-ecdsa", "ecdsa", Some(256));
    add_key(&t, "writer", &text);
    let home = t.dir("pygit2-home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::copy(known_hosts(&t), home.join(".ssh/known_hosts")).unwrap();
    let run = |target: &str, home: &Path| {
        let out = Command::new(crate::dulwich::python())
            .args(["-c", PYGIT2_SSH, &url(&t, "tp/test.git"), key.with_extension("pub").to_str().unwrap(), key.to_str().unwrap()])
            .arg(t.dir(target))
            .env("HOME", home)
            .output()
            .unwrap();
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (stdout, stderr) = run("pygit2-clone", &home);
    assert!(stdout.starts_with("cloned "), "{stdout}\n{stderr}");
    let pushed = stdout.split_whitespace().nth(2).expect("the pushed commit").to_owned();
    assert!(stdout.contains(&format!("head {tip}")), "{stdout}");
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main").as_deref(), Some(pushed.as_str()), "libgit2's push landed");
    t.fsck("TP", "test");
    // A known_hosts naming another host key: libgit2 refuses before authenticating.
    let other = t.dir("pygit2-other");
    std::fs::create_dir_all(other.join(".ssh")).unwrap();
    let (_, stranger) = keygen(&t, "stranger-host", "ed25519", None);
    std::fs::write(other.join(".ssh/known_hosts"), format!("[127.0.0.1]:{} {stranger}\n", port(&t))).unwrap();
    let (stdout, stderr) = run("pygit2-refused", &other);
    assert!(stdout.starts_with("failed"), "a wrong host key was accepted: {stdout}\n{stderr}");
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main").as_deref(), Some(pushed.as_str()));
}

const PYGIT2_SSH: &str = r#"
import sys, pygit2
url, pub, priv, target = sys.argv[1:5]
assert pygit2.features & pygit2.enums.Feature.SSH, "this pygit2's libgit2 has no SSH"
class Callbacks(pygit2.RemoteCallbacks):
    def credentials(self, url, username_from_url, allowed_types):
        return pygit2.Keypair(username_from_url or "git", pub, priv, "")
    # libgit2 checks the SSH host key against ~/.ssh/known_hosts and says whether it matched:
    # connect only then (pygit2's default lets libgit2 go on either way).
    def certificate_check(self, certificate, valid, host):
        return bool(valid)
try:
    repo = pygit2.clone_repository(url, target, callbacks=Callbacks())
    head = repo.head.target
    open(target + "/libgit2.txt", "w").write("pushed by libgit2 over ssh\n")
    repo.index.add("libgit2.txt")
    repo.index.write()
    sig = pygit2.Signature("Writer", "writer@example.com")
    new = repo.create_commit("refs/heads/main", sig, sig, "over ssh from libgit2", repo.index.write_tree(), [head])
    repo.remotes["origin"].push(["refs/heads/main:refs/heads/main"], callbacks=Callbacks())
    print("cloned", "pushed", new, "head", head)
except Exception as e:
    print("failed", type(e).__name__, e)
"#;
