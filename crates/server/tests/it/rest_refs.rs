//! Branches and tags made and removed over REST, seen through real git over HTTP: `git
//! ls-remote` shows every ref made and none removed, a branch delete with a stale `endPoint`
//! (a push moved the branch) changes nothing, and the REST change is a push for pull requests
//! and the audit log.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{TestServer, basic, password};

fn rest(t: &TestServer, who: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = basic(who, &password(who));
    let mut headers = vec![("Authorization", auth.as_str())];
    if !text.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    let r = t.http(method, path, &headers, text.as_bytes());
    let v = if r.body.is_empty() { Value::Null } else { serde_json::from_slice(&r.body).unwrap_or(Value::Null) };
    (r.status, v)
}

/// `ref → id` as `git ls-remote` over HTTP shows them.
fn ls_remote(t: &TestServer) -> Vec<(String, String)> {
    let out = t.git_ok(t.home.path(), &["ls-remote", &t.url_as("reader", "scm/TP/test.git")]);
    out.lines().filter_map(|l| l.split_once('\t')).filter(|(_, r)| *r != "HEAD").map(|(id, r)| (r.to_owned(), id.to_owned())).collect()
}

fn remote(t: &TestServer, name: &str) -> Option<String> {
    ls_remote(t).into_iter().find(|(r, _)| r == name).map(|(_, id)| id)
}

const BU: &str = "/rest/branch-utils/1.0/projects/TP/repos/test/branches";
const GIT_TAGS: &str = "/rest/git/1.0/projects/TP/repos/test/tags";
const CORE: &str = "/rest/api/1.0/projects/TP/repos/test";

#[test]
fn git_sees_every_ref_made_or_removed_over_rest_and_a_stale_end_point_changes_nothing() {
    let t = TestServer::start();
    let (work, tip) = t.seed("scm/TP/test.git", 3);
    let first = t.git_ok(&work, &["rev-parse", "HEAD~2"]);

    let (s, v) = rest(&t, "writer", "POST", BU, Some(json!({"name": "topic", "startPoint": "main"})));
    assert_eq!(s, 201, "{v}");
    let (s, _) = rest(&t, "writer", "POST", &format!("{CORE}/branches"), Some(json!({"name": "old", "startPoint": first})));
    assert_eq!(s, 200);
    let (s, v) = rest(&t, "writer", "POST", GIT_TAGS, Some(json!({"name": "v1", "startPoint": "main", "message": "release 1"})));
    assert_eq!(s, 201, "{v}");
    let tag = v["hash"].as_str().unwrap().to_owned();
    let (s, _) = rest(&t, "writer", "POST", &format!("{CORE}/tags"), Some(json!({"name": "light", "startPoint": first})));
    assert_eq!(s, 200);
    let refs = ls_remote(&t);
    for (name, id) in [("refs/heads/topic", &tip), ("refs/heads/old", &first), ("refs/tags/v1", &tag), ("refs/tags/v1^{}", &tip), ("refs/tags/light", &first)] {
        assert!(refs.contains(&(name.to_owned(), id.clone())), "{name} at {id} missing from {refs:?}");
    }
    // A clone gets the annotated tag with its tagger and message.
    t.git_ok(&work, &["fetch", "-q", "origin", "refs/tags/v1:refs/tags/v1"]);
    let body = t.git_ok(&work, &["cat-file", "tag", "v1"]);
    assert!(body.contains("\ntagger writer <writer@trove.invalid> ") && body.ends_with("release 1"), "{body}");

    // Someone pushes to topic: whoever still thinks it is at `tip` is stale.
    t.git_ok(&work, &["checkout", "-q", "-b", "topic"]);
    let pushed = t.commit(&work, "more.txt", "more\n");
    t.git_ok(&work, &["push", "-q", "origin", "topic"]);
    let (s, v) = rest(&t, "writer", "DELETE", BU, Some(json!({"name": "topic", "endPoint": tip})));
    assert_eq!(s, 409, "{v}");
    assert_eq!(remote(&t, "refs/heads/topic").as_deref(), Some(pushed.as_str()), "a stale endPoint changes nothing");
    let (s, _) = rest(&t, "writer", "DELETE", BU, Some(json!({"name": "topic", "endPoint": pushed})));
    assert_eq!(s, 204);
    let (s, _) = rest(&t, "writer", "DELETE", BU, Some(json!({"name": "old"})));
    assert_eq!(s, 204);
    for name in ["v1", "light"] {
        let (s, _) = rest(&t, "writer", "DELETE", &format!("{GIT_TAGS}/{name}"), None);
        assert_eq!(s, 204);
    }
    let refs = ls_remote(&t);
    assert_eq!(refs, [("refs/heads/main".to_owned(), tip.clone())], "only main is left");
    t.fsck("TP", "test");
}

/// Polls `GET path` as admin until `done` holds (the push bus's listeners run in the background).
fn wait_for(t: &TestServer, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, v) = rest(t, "admin", "GET", path, None);
        if s == 200 && done(&v) {
            return v;
        }
        assert!(Instant::now() < until, "{path} never got there: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_branch_deleted_over_rest_is_a_push_for_pull_requests_and_the_audit_log() {
    let t = TestServer::start();
    let (work, _) = t.seed("scm/TP/test.git", 2);
    t.git_ok(&work, &["checkout", "-q", "-b", "feature"]);
    t.commit(&work, "f.txt", "f\n");
    t.git_ok(&work, &["push", "-q", "origin", "feature"]);
    let (s, pr) = rest(
        &t,
        "writer",
        "POST",
        &format!("{CORE}/pull-requests"),
        Some(json!({"title": "Feature", "fromRef": {"id": "refs/heads/feature"}, "toRef": {"id": "refs/heads/main"}})),
    );
    assert_eq!(s, 201, "{pr}");
    let (s, _) = rest(&t, "writer", "DELETE", BU, Some(json!({"name": "feature"})));
    assert_eq!(s, 204);
    let id = pr["id"].as_i64().unwrap();
    let done = wait_for(&t, &format!("{CORE}/pull-requests/{id}"), |v| v["state"] != "OPEN");
    assert_eq!(done["state"], "DECLINED", "a pull request whose branch was deleted is declined, as after a push");
    let audit = wait_for(&t, "/rest/api/1.0/admin/audit?action=repo.push&actor=writer", |v| {
        v["values"].as_array().is_some_and(|a| a.iter().any(|e| e["details"].to_string().contains("refs/heads/feature")))
    });
    assert!(audit["values"][0]["target"].as_str().unwrap_or("").contains("TP/test"), "{audit}");
}
