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
    let cases: Vec<(&str, String, Vec<&str>, Expect)> = vec![
        ("anonymous", t.url(None, "scm/TP/test.git"), vec![], Expect::Fails("could not read Username")),
        ("reader", t.url_as("reader", "scm/TP/test.git"), vec![], Expect::Fails("remote: User reader may not push to TP/test")),
        ("read-only token", t.url(Some(("reader", &t.reader_token)), "scm/TP/test.git"), vec![], Expect::Fails("may not push")),
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

#[test]
fn repeated_failed_logins_are_refused_even_with_the_right_password() {
    let t = TestServer::start_with(|c| c.auth.max_failed_logins = 3);
    let path = "/scm/TP/test.git/info/refs?service=git-upload-pack";
    for _ in 0..3 {
        let r = t.http("GET", path, &[("Authorization", &basic("reader", "wrong-guess"))], b"");
        assert_eq!(r.status, 401);
    }
    let r = t.http("GET", path, &[("Authorization", &basic("reader", &password("reader")))], b"");
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    assert!(r.text().contains("Too many failed logins"));
    // The address is limited too, whoever it claims to be.
    let r = t.http("GET", path, &[("Authorization", &basic("writer", &password("writer")))], b"");
    assert_eq!(r.status, 429);
}
