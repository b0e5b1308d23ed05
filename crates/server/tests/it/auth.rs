//! The auth matrix for clone and push, tokens, the HTTP answers git relies on, and the
//! failed-login limit.

use crate::support::{TestServer, basic, password};

enum Expect {
    Ok,
    /// Fails, and git's stderr contains this.
    Fails(&'static str),
}

#[test]
fn clone_auth_matrix() {
    let t = TestServer::start();
    t.seed("scm/TP/test.git", 1);
    let bearer = format!("http.extraHeader=Authorization: Bearer {}", t.reader_token);
    let cases: Vec<(&str, String, Vec<&str>, Expect)> = vec![
        ("anonymous", t.url(None, "scm/TP/test.git"), vec![], Expect::Fails("could not read Username")),
        ("reader", t.url_as("reader", "scm/TP/test.git"), vec![], Expect::Ok),
        ("writer", t.url_as("writer", "scm/TP/test.git"), vec![], Expect::Ok),
        ("admin", t.url_as("admin", "scm/TP/test.git"), vec![], Expect::Ok),
        ("outsider", t.url_as("outsider", "scm/TP/test.git"), vec![], Expect::Fails("not found")),
        ("writer token as password", t.url(Some(("writer", &t.writer_token)), "scm/TP/test.git"), vec![], Expect::Ok),
        ("token of another user", t.url(Some(("admin", &t.writer_token)), "scm/TP/test.git"), vec![], Expect::Fails("Authentication failed")),
        ("bearer token", t.url(None, "scm/TP/test.git"), vec!["-c", &bearer], Expect::Ok),
        ("wrong password", t.url(Some(("reader", "not-the-password")), "scm/TP/test.git"), vec![], Expect::Fails("Authentication failed")),
        ("unknown user", t.url(Some(("ghost", "ghost-password")), "scm/TP/test.git"), vec![], Expect::Fails("Authentication failed")),
        ("missing repository", t.url_as("admin", "scm/TP/nope.git"), vec![], Expect::Fails("not found")),
    ];
    for (i, (who, url, pre, expect)) in cases.into_iter().enumerate() {
        let dir = t.dir(&format!("clone-{i}"));
        let mut args = pre.clone();
        args.extend(["clone", url.as_str(), "c"]);
        let out = t.git(&dir, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        match expect {
            Expect::Ok => assert!(out.status.success(), "{who}: {err}"),
            Expect::Fails(msg) => {
                assert!(!out.status.success(), "{who} must not clone");
                assert!(err.contains(msg), "{who}: expected {msg:?} in {err}");
            }
        }
    }
}

#[test]
fn push_auth_matrix() {
    let t = TestServer::start();
    let (work, _) = t.seed("scm/TP/test.git", 1);
    let bearer = format!("http.extraHeader=Authorization: Bearer {}", t.writer_token);
    let writer_read_token = t.server.store().create_token(&crate::support::user("writer"), "ro", trove_store::Permission::Read).unwrap().secret;
    let cases: Vec<(&str, String, Vec<&str>, Expect)> = vec![
        ("anonymous", t.url(None, "scm/TP/test.git"), vec![], Expect::Fails("could not read Username")),
        ("reader", t.url_as("reader", "scm/TP/test.git"), vec![], Expect::Fails("remote: User reader may not push to TP/test")),
        // The reader lacks write whatever the token: that is what they are told.
        (
            "read-only token",
            t.url(Some(("reader", &t.reader_token)), "scm/TP/test.git"),
            vec![],
            Expect::Fails("may not push to TP/test: write permission is required"),
        ),
        // The writer may push, but not with a read-only token: the token is named as the cause.
        (
            "writer's read-only token",
            t.url(Some(("writer", &writer_read_token)), "scm/TP/test.git"),
            vec![],
            Expect::Fails("remote: User writer may push to TP/test, but not with this access token: it is a read token"),
        ),
        ("outsider", t.url_as("outsider", "scm/TP/test.git"), vec![], Expect::Fails("not found")),
        ("wrong password", t.url(Some(("writer", "nope-nope-nope")), "scm/TP/test.git"), vec![], Expect::Fails("Authentication failed")),
        ("writer", t.url_as("writer", "scm/TP/test.git"), vec![], Expect::Ok),
        ("admin", t.url_as("admin", "scm/TP/test.git"), vec![], Expect::Ok),
        ("writer token", t.url(Some(("writer", &t.writer_token)), "scm/TP/test.git"), vec![], Expect::Ok),
        ("bearer token", t.url(None, "scm/TP/test.git"), vec!["-c", &bearer], Expect::Ok),
    ];
    for (i, (who, url, pre, expect)) in cases.into_iter().enumerate() {
        let branch = format!("refs/heads/by-{i}");
        let refspec = format!("HEAD:{branch}");
        let mut args = pre.clone();
        args.extend(["push", url.as_str(), refspec.as_str()]);
        let out = t.git(&work, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        let landed = t.server_rev("TP", "test", &branch).is_some();
        match expect {
            Expect::Ok => assert!(out.status.success() && landed, "{who}: {err}"),
            Expect::Fails(msg) => {
                assert!(!out.status.success() && !landed, "{who} must not push");
                assert!(err.contains(msg), "{who}: expected {msg:?} in {err}");
            }
        }
    }
}

#[test]
fn anonymous_requests_for_private_repositories_get_a_basic_challenge() {
    let t = TestServer::start();
    for path in ["/scm/TP/test.git/info/refs?service=git-upload-pack", "/scm/TP/missing.git/info/refs?service=git-upload-pack"] {
        let r = t.http("GET", path, &[], b"");
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"Trove\""));
    }
}

#[test]
fn unreadable_and_missing_repositories_look_the_same() {
    let t = TestServer::start();
    let auth = basic("outsider", &password("outsider"));
    let a = t.http("GET", "/scm/TP/test.git/info/refs?service=git-upload-pack", &[("Authorization", &auth)], b"");
    let b = t.http("GET", "/scm/TP/missing.git/info/refs?service=git-upload-pack", &[("Authorization", &auth)], b"");
    let c = t.http("GET", "/scm/NOPE/test.git/info/refs?service=git-upload-pack", &[("Authorization", &auth)], b"");
    assert_eq!((a.status, b.status, c.status), (404, 404, 404));
    assert_eq!(a.body, b.body);
    assert_eq!(a.body, c.body);
}

#[test]
fn receive_pack_advertisement_needs_write_permission() {
    let t = TestServer::start();
    let path = "/scm/TP/test.git/info/refs?service=git-receive-pack";
    let r = t.http("GET", path, &[("Authorization", &basic("reader", &password("reader")))], b"");
    assert_eq!(r.status, 403);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert!(r.text().contains("may not push to TP/test"), "{}", r.text());
    let r = t.http("GET", path, &[("Authorization", &basic("writer", &password("writer")))], b"");
    assert_eq!(r.status, 200);
    let r = t.http("GET", path, &[("Authorization", &format!("Bearer {}", t.writer_token))], b"");
    assert_eq!(r.status, 200);
}

/// git as people use it: the user name in the URL (as the README, the UI and REST `links.clone`
/// give it) and the password from a credential helper. git first sends the name with an empty
/// password and sends the password only after the 401; that first try is no guess.
#[test]
fn honest_git_use_with_user_urls_never_locks_anyone_out() {
    let t = TestServer::start();
    t.seed("scm/TP/test.git", 1);
    let url = t.url(None, "scm/TP/test.git").replace("http://", "http://reader@");
    let helper = format!("credential.helper=!f() {{ echo username=reader; echo password={}; }}; f", password("reader"));
    let dir = t.dir("ls");
    for i in 0..200 {
        let out = t.git(&dir, &["-c", &helper, "ls-remote", &url]);
        assert!(out.status.success(), "ls-remote {i} refused: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn wrong_passwords_lock_only_that_account_and_an_administrator_clears_it() {
    let t = TestServer::start();
    let path = "/scm/TP/test.git/info/refs?service=git-upload-pack";
    let get = |user: &str, secret: &str| t.http("GET", path, &[("Authorization", &basic(user, secret))], b"");
    let statuses: Vec<u16> = (0..20).map(|_| get("reader", "wrong-guess").status).collect();
    assert_eq!(&statuses[..10], &[401; 10], "the first ten are checked");
    assert_eq!(&statuses[10..], &[429; 10], "then the account is locked: {statuses:?}");
    let r = get("reader", &password("reader"));
    assert_eq!(r.status, 429, "the right password waits too");
    assert!(r.header("retry-after").is_some_and(|s| s.parse::<u64>().unwrap() > 0));
    let msg = r.text();
    for hint in ["Too many failed logins for reader", "sign in to the web UI", "personal access token", "trove admin user unlock reader"] {
        assert!(msg.contains(hint), "{hint:?} not in {msg}");
    }
    // Nobody else is locked out: another account from the same address, and reader's token.
    assert_eq!(get("writer", &password("writer")).status, 200, "one account's failures locked out another");
    assert_eq!(get("reader", &t.reader_token).status, 200, "a token was locked");
    let r = t.http("GET", path, &[("Authorization", &format!("Bearer {}", t.reader_token))], b"");
    assert_eq!(r.status, 200);
    // An administrator sees the lock and clears it, as in Bitbucket (REST "captcha").
    let admin = basic("admin", &password("admin"));
    let r = t.http("GET", "/rest/api/1.0/admin/users?filter=reader", &[("Authorization", &admin)], b"");
    assert!(r.text().contains("\"locked\":true"), "{}", r.text());
    let r = t.http("DELETE", "/rest/api/1.0/admin/users/captcha?name=reader", &[("Authorization", &basic("writer", &password("writer")))], b"");
    assert_eq!(r.status, 403, "only administrators clear locks");
    let r = t.http("DELETE", "/rest/api/1.0/admin/users/captcha?name=reader", &[("Authorization", &admin)], b"");
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(get("reader", &password("reader")).status, 200);
}

#[test]
fn an_empty_password_is_answered_401_without_counting() {
    let t = TestServer::start_with(|c| c.auth.max_failed_logins = 2);
    let path = "/scm/TP/test.git/info/refs?service=git-upload-pack";
    for _ in 0..50 {
        let r = t.http("GET", path, &[("Authorization", &basic("reader", ""))], b"");
        assert_eq!(r.status, 401);
        assert!(r.header("www-authenticate").is_some(), "git needs the challenge to ask for the password");
    }
    assert_eq!(t.http("GET", path, &[("Authorization", &basic("reader", &password("reader")))], b"").status, 200);
}

#[test]
fn password_spraying_from_one_address_is_limited_by_distinct_accounts() {
    let t = TestServer::start_with(|c| c.auth.max_failed_accounts_per_address = 5);
    let path = "/scm/TP/test.git/info/refs?service=git-upload-pack";
    for i in 0..5 {
        assert_eq!(t.http("GET", path, &[("Authorization", &basic(&format!("someone{i}"), "Winter2026!"))], b"").status, 401);
    }
    let r = t.http("GET", path, &[("Authorization", &basic("reader", &password("reader")))], b"");
    assert_eq!(r.status, 429, "the sixth account from the address waits");
    assert!(r.text().contains("Too many failed logins"));
    let r = t.http("GET", path, &[("Authorization", &format!("Bearer {}", t.reader_token))], b"");
    assert_eq!(r.status, 200, "tokens are never limited");
}

/// libgit2 asks its credential callback again after every 401, without limit. With a wrong
/// password it must stop once the account locks, and lock no other account.
#[test]
fn libgit2_retrying_a_wrong_password_stops_at_the_lock_and_locks_no_one_else() {
    let t = TestServer::start();
    t.seed("scm/TP/test.git", 1);
    let url = t.url(None, "scm/TP/test.git");
    let target = t.dir("libgit2").join("clone");
    let out = std::process::Command::new(crate::dulwich::python())
        .args(["-c", LIBGIT2_SCRIPT, &url, "writer", "stale-ci-password", target.to_str().unwrap()])
        .env_remove("GIT_SSL_CAINFO")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let tries: u32 = stdout.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(u32::MAX);
    assert!(stdout.starts_with("failed") && tries <= 12, "libgit2 went on retrying: {stdout}");
    let out = std::process::Command::new(crate::dulwich::python())
        .args(["-c", LIBGIT2_SCRIPT, &url, "reader", &password("reader"), t.dir("libgit2-reader").join("clone").to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("cloned"), "another account was locked out: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}

const LIBGIT2_SCRIPT: &str = r#"
import sys, pygit2
url, user, pw, target = sys.argv[1:5]
calls = [0]
class Callbacks(pygit2.RemoteCallbacks):
    def credentials(self, url, username_from_url, allowed_types):
        calls[0] += 1
        if calls[0] > 1000:
            raise RuntimeError("asked for credentials 1000 times")
        return pygit2.UserPass(user, pw)
try:
    pygit2.clone_repository(url, target, callbacks=Callbacks())
    print("cloned", calls[0])
except Exception as e:
    print("failed", calls[0], e)
"#;
