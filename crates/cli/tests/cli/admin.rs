//! `trove admin` on a data directory, also while `trove server` runs on it.

use std::io::{Read as _, Write as _};
use std::process::Stdio;

use crate::{Guard, free_port, ok, path_str, tmp, trove, wait_port};

fn admin(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    trove().arg("admin").arg("--data").arg(data).args(args).stdin(Stdio::null()).output().unwrap()
}

#[test]
fn admin_refuses_a_data_directory_that_does_not_exist_or_holds_no_installation() {
    let dir = tmp();
    let missing = dir.path().join("trove-data");
    let out = admin(&missing, &["project", "add", "TP"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("does not exist") && err.contains(&path_str(&missing)) && err.contains("trove up"), "{err}");
    assert!(!missing.exists(), "a missing data directory was created");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = admin(&empty, &["user", "locks"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no Trove installation"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0, "files were written into a directory that is not an installation");
    // `init` is the one command whose point is to create one; twice is refused.
    ok(&admin(&missing, &["init"]), "init");
    ok(&admin(&missing, &["project", "add", "TP"]), "project add after init");
    assert!(!admin(&missing, &["init"]).status.success(), "init over an installation");
}

fn get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn a_base_url_set_by_trove_admin_takes_effect_on_the_running_server_without_a_restart() {
    let dir = tmp();
    let data = dir.path().join("data");
    let port = free_port();
    let mut server = Guard(Some(
        trove()
            .args(["server", "--data", &path_str(&data), "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    wait_port(port, server.child(), "trove server");
    ok(&admin(&data, &["project", "add", "TP", "--public"]), "project add");
    let out = ok(&admin(&data, &["repo", "add", "TP/test"]), "repo add");
    assert!(out.contains("created repository TP/test"), "results go to stdout: {out}");
    let path = "/rest/api/1.0/projects/TP/repos/test";
    assert!(get(port, path).contains(&format!("http://127.0.0.1:{port}/scm/tp/test.git")), "before: links follow the request");
    ok(&admin(&data, &["settings", "base-url", "https://git.example.com/stash"]), "settings base-url");
    // The very next request uses it.
    let body = get(port, path);
    assert!(body.contains("https://git.example.com/stash/scm/tp/test.git"), "the running server still ignores the new base URL: {body}");
    assert!(server.child().try_wait().unwrap().is_none(), "the server restarted or stopped");
}

#[test]
fn repo_add_makes_the_repository_with_the_git_given_by_git_flag() {
    let dir = tmp();
    let data = dir.path().join("data");
    ok(&admin(&data, &["init"]), "init");
    ok(&admin(&data, &["project", "add", "TP"]), "project add");
    let log = dir.path().join("git-calls");
    let wrapper = dir.path().join("my-git");
    // Records each call's subcommand, then is the real git.
    std::fs::write(&wrapper, format!("#!/bin/sh\necho \"$1\" >> {}\nexec git \"$@\"\n", log.display())).unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    ok(&admin(&data, &["--git", &path_str(&wrapper), "repo", "add", "TP/made"]), "repo add --git");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "init\n");
    let out = admin(&data, &["--git", "/nonexistent/git", "repo", "add", "TP/never"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("/nonexistent/git") && err.contains("--git"), "{err}");
}

#[test]
fn an_installation_copied_to_postgres_is_administered_through_the_server_configuration() {
    let pg = trove_store::pgtest::TestPg::start();
    let url = pg.database();
    let dir = tmp();
    let data = dir.path().join("trove-data");
    ok(&admin(&data, &["init"]), "init");
    ok(&admin(&data, &["project", "add", "TP"]), "project add");
    ok(&admin(&data, &["settings", "base-url", "https://git.example.com"]), "base-url");
    let copied = admin(&data, &["db", "copy", "--to", &url]);
    ok(&copied, "db copy");
    let out = String::from_utf8_lossy(&copied.stdout);
    assert!(out.contains("projects") && out.contains("settings"), "{out}");
    // A second copy into the same database is refused and changes nothing.
    let again = admin(&data, &["db", "copy", "--to", &url]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"), "{}", String::from_utf8_lossy(&again.stderr));
    // `--config` works on what a node's configuration names: here PostgreSQL, no SQLite file.
    let node = dir.path().join("node1");
    let cfg = dir.path().join("node1.toml");
    std::fs::write(&cfg, format!("data_dir = \"{}\"\n[database]\nurl = \"{url}\"\n", path_str(&node))).unwrap();
    let show = trove().args(["admin", "--config"]).arg(&cfg).args(["settings", "show"]).stdin(Stdio::null()).output().unwrap();
    ok(&show, "settings show through --config");
    assert!(String::from_utf8_lossy(&show.stdout).contains("https://git.example.com"), "{}", String::from_utf8_lossy(&show.stdout));
    ok(&trove().args(["admin", "--config"]).arg(&cfg).args(["project", "add", "DC"]).stdin(Stdio::null()).output().unwrap(), "project add through --config");
    assert!(!node.join("trove.db").exists(), "--config on PostgreSQL made a SQLite database");
    // Passwords stay off command lines.
    let pw = admin(&data, &["db", "copy", "--to", "postgres://trove:secret@127.0.0.1:1/x"]);
    assert!(!pw.status.success() && String::from_utf8_lossy(&pw.stderr).contains("ps"), "{}", String::from_utf8_lossy(&pw.stderr));
    let srv = trove().args(["server", "--database", "postgres://trove:secret@127.0.0.1:1/x", "--data"]).arg(&data).stdin(Stdio::null()).output().unwrap();
    assert!(!srv.status.success() && String::from_utf8_lossy(&srv.stderr).contains("TROVE_DATABASE_PASSWORD"), "{}", String::from_utf8_lossy(&srv.stderr));
}

#[test]
fn groups_are_made_filled_and_granted_from_the_command_line() {
    let dir = tmp();
    let data = dir.path().join("data");
    ok(&admin(&data, &["init"]), "init");
    let mut add = trove()
        .arg("admin")
        .arg("--data")
        .arg(&data)
        .args(["user", "add", "alice", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(add.stdin.take().unwrap(), "alice-password").unwrap();
    ok(&add.wait_with_output().unwrap(), "user add");
    ok(&admin(&data, &["project", "add", "TP"]), "project add");
    ok(&admin(&data, &["repo", "add", "TP/test"]), "repo add");

    assert!(ok(&admin(&data, &["group", "add", "Developers"]), "group add").contains("created group Developers"));
    let dup = admin(&data, &["group", "add", "developers"]);
    assert!(!dup.status.success() && String::from_utf8_lossy(&dup.stderr).contains("already exists"), "{dup:?}");
    ok(&admin(&data, &["group", "add-user", "developers", "alice"]), "group add-user");
    ok(&admin(&data, &["group", "grant", "developers", "TP", "write"]), "group grant project");
    ok(&admin(&data, &["group", "grant", "developers", "TP/test", "admin"]), "group grant repository");
    ok(&admin(&data, &["group", "global", "developers", "PROJECT_CREATE"]), "group global");
    assert_eq!(ok(&admin(&data, &["group", "list"]), "group list"), "Developers\tPROJECT_CREATE\t1 member\n");
    assert_eq!(ok(&admin(&data, &["group", "members", "DEVELOPERS"]), "group members"), "alice\n");
    let out = ok(&admin(&data, &["user", "global", "alice", "none"]), "user global none");
    assert!(out.contains("PROJECT_CREATE through a group"), "{out}");
    {
        // What the commands made is what the server decides with.
        let store = trove_store::Store::open(&data).unwrap();
        let who = trove_store::Authenticated { user: store.user(&trove_store::UserName::parse("alice").unwrap()).unwrap().unwrap(), token_scope: None };
        let repo = store.repo(&trove_store::Owner::parse("TP").unwrap(), &trove_store::RepoSlug::parse("test").unwrap()).unwrap().unwrap();
        assert_eq!(store.permission(Some(&who), &repo).unwrap(), Some(trove_store::Permission::Admin));
        assert!(store.verify_password("alice", "alice-password").unwrap().is_some(), "the group's global permission lets alice log in");
    }
    ok(&admin(&data, &["group", "revoke", "developers", "TP/test"]), "group revoke repository");
    ok(&admin(&data, &["group", "revoke", "developers", "TP"]), "group revoke project");
    ok(&admin(&data, &["group", "remove-user", "developers", "alice"]), "group remove-user");
    assert_eq!(ok(&admin(&data, &["group", "members", "developers"]), "group members"), "");
    let missing = admin(&data, &["group", "add-user", "nope", "alice"]);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success() && err.contains("group nope does not exist") && err.contains("trove admin group add nope"), "{err}");
    ok(&admin(&data, &["group", "delete", "developers"]), "group delete");
    assert!(ok(&admin(&data, &["group", "list"]), "group list").starts_with("no groups"));
}

#[test]
fn every_change_made_with_trove_admin_is_in_the_audit_log_as_the_os_user() {
    let dir = tmp();
    let data = dir.path().join("data");
    ok(&admin(&data, &["init"]), "init");
    let mut add = trove()
        .arg("admin")
        .arg("--data")
        .arg(&data)
        .args(["user", "add", "alice", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(add.stdin.take().unwrap(), "alice-password").unwrap();
    ok(&add.wait_with_output().unwrap(), "user add");
    for args in [
        &["user", "global", "alice", "PROJECT_CREATE"][..],
        &["group", "add", "devs"],
        &["group", "add-user", "devs", "alice"],
        &["group", "global", "devs", "LICENSED_USER"],
        &["project", "add", "TP"],
        &["repo", "add", "TP/test"],
        &["grant", "alice", "TP/test", "write"],
        &["group", "grant", "devs", "TP", "read"],
        &["group", "revoke", "devs", "TP"],
        &["group", "remove-user", "devs", "alice"],
        &["group", "delete", "devs"],
        &["token", "add", "alice", "--label", "ci", "--scope", "read"],
        &["settings", "base-url", "https://git.example.com"],
        &["settings", "context-path", "/"],
    ] {
        ok(&admin(&data, args), &args.join(" "));
    }
    let whoami = std::process::Command::new("id").arg("-un").output().unwrap();
    let actor = format!("cli:{}", String::from_utf8_lossy(&whoami.stdout).trim());
    let want = [
        ("user.create", "user:alice"),
        ("permission.grant", "global user:alice"),
        ("group.create", "group:devs"),
        ("group.member.add", "group:devs user:alice"),
        ("permission.grant", "global group:devs"),
        ("project.create", "project:TP"),
        ("repo.create", "repo:TP/test"),
        ("permission.grant", "repo:TP/test user:alice"),
        ("permission.grant", "project:TP group:devs"),
        ("permission.revoke", "project:TP group:devs"),
        ("group.member.remove", "group:devs user:alice"),
        ("group.delete", "group:devs"),
        ("token.create", "user:alice token:1"),
        ("settings.update", "setting:base_url"),
        ("settings.update", "setting:context_path"),
    ];
    // The file the server writes too...
    let file = std::fs::read_to_string(data.join("audit.log")).unwrap();
    let lines: Vec<serde_json::Value> = file.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let got: Vec<(&str, &str)> = lines.iter().map(|l| (l["action"].as_str().unwrap(), l["target"].as_str().unwrap())).collect();
    assert_eq!(got, want);
    for l in &lines {
        assert_eq!((l["actor"].as_str(), l["address"].as_str()), (Some(actor.as_str()), None), "{l}");
    }
    assert_eq!(lines[13]["details"], serde_json::json!({"from": null, "to": "https://git.example.com"}));
    assert!(!file.contains("alice-password") && !file.contains("trv_"), "a secret in the audit log");
    // ...and the database, which the server's page and REST endpoint read.
    let store = trove_store::Store::open(&data).unwrap();
    let rows = store.audit_entries(&trove_store::AuditQuery { oldest_first: true, limit: 100, ..Default::default() }).unwrap().0;
    let got: Vec<(&str, &str)> = rows.iter().map(|e| (e.action.as_str(), e.target.as_str())).collect();
    assert_eq!(got, want);
}
