//! Handler tests for branch permissions over REST (`/rest/branch-permissions/2.0`), through
//! `app()` with `oneshot`: the object's shape, both scopes, bulk creation, filters and paging,
//! validation, who may manage restrictions, and the rule against locking everyone out.

use axum::body::Body;
use http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use trove_store::{GroupName, UserName};

use super::tests::{Fixture, Resp, basic, fixture};
use crate::app;

const BULK: &str = "application/vnd.atl.bitbucket.bulk+json";

/// A request below `/rest/branch-permissions/{version}` as fixture user `who`, with a body of
/// the given content type.
async fn send(f: &Fixture, who: Option<&str>, method: &str, path: &str, body: Option<(Value, &str)>) -> Resp {
    send_v(f, "2.0", who, method, path, body).await
}

async fn send_v(f: &Fixture, version: &str, who: Option<&str>, method: &str, path: &str, body: Option<(Value, &str)>) -> Resp {
    let mut b = Request::builder().method(method).uri(format!("/rest/branch-permissions/{version}{path}")).header(header::HOST, "localhost:7990");
    if let Some(u) = who {
        b = b.header(header::AUTHORIZATION, basic(u, &format!("{u}-password")));
    }
    let req = match body {
        Some((v, ct)) => b.header(header::CONTENT_TYPE, ct).body(Body::from(v.to_string())).unwrap(),
        None => b.body(Body::empty()).unwrap(),
    };
    let resp = app(&f.server).oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec();
    Resp { status, headers, body }
}

fn restriction(kind: &str, matcher_type: &str, id: &str) -> Value {
    json!({"type": kind, "matcher": {"id": id, "displayId": id, "type": {"id": matcher_type, "name": matcher_type}, "active": true}})
}

const PROJECT: &str = "/projects/TP/restrictions";
const REPO: &str = "/projects/TP/repos/test/restrictions";

#[tokio::test]
async fn restrictions_are_created_read_listed_and_deleted_at_both_scopes() {
    let f = fixture("", None);
    let s = f.server.store();
    s.insert_group(&GroupName::parse("Leads").unwrap()).unwrap();
    // As stashy sends it: matcher type as an object, users as slugs, keys as numbers.
    let mut body = restriction("pull-request-only", "BRANCH", "refs/heads/main");
    body["users"] = json!(["reader"]);
    body["groups"] = json!(["leads"]);
    body["accessKeys"] = json!([5]);
    let r = send(&f, Some("owner"), "POST", REPO, Some((body, "application/json"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let made = r.json();
    let repo_id = s.repo(&trove_store::Owner::parse("TP").unwrap(), &trove_store::RepoSlug::parse("test").unwrap()).unwrap().unwrap().id;
    assert_eq!(made["scope"], json!({"type": "REPOSITORY", "resourceId": repo_id}));
    assert_eq!(made["type"], "pull-request-only");
    assert_eq!(made["matcher"], json!({"id": "refs/heads/main", "displayId": "main", "type": {"id": "BRANCH", "name": "Branch"}, "active": true}));
    assert_eq!((made["users"][0]["name"].as_str(), made["users"][0]["slug"].as_str()), (Some("reader"), Some("reader")), "users as user objects");
    assert_eq!(made["groups"], json!(["Leads"]), "groups by name, as created");
    assert_eq!(made["accessKeys"], json!([{"key": {"id": 5}}]));
    let id = made["id"].as_i64().unwrap();

    // A project restriction, 9.x's field names, a category matcher.
    let mut body = restriction("no-deletes", "MODEL_CATEGORY", "release");
    body["userSlugs"] = json!(["owner"]);
    body["groupNames"] = json!([]);
    body["accessKeyIds"] = json!([]);
    let r = send(&f, Some("owner"), "POST", PROJECT, Some((body, "application/json"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let project = r.json();
    assert_eq!(project["scope"]["type"], "PROJECT");
    assert_eq!((project["matcher"]["id"].as_str(), project["matcher"]["displayId"].as_str()), (Some("RELEASE"), Some("Release")));
    let pid = project["id"].as_i64().unwrap();

    // Each scope lists and finds only its own; the other's id is not found there.
    let list = send(&f, Some("owner"), "GET", REPO, None).await.json();
    assert_eq!((list["size"].as_u64(), list["isLastPage"].as_bool(), list["values"][0]["id"].as_i64()), (Some(1), Some(true), Some(id)));
    assert_eq!(send(&f, Some("owner"), "GET", PROJECT, None).await.json()["values"][0]["id"].as_i64(), Some(pid));
    assert_eq!(send(&f, Some("owner"), "GET", &format!("{REPO}/{id}"), None).await.json(), made);
    assert_eq!(send(&f, Some("owner"), "GET", &format!("{PROJECT}/{pid}"), None).await.json(), project);
    for (path, status) in [(format!("{REPO}/{pid}"), 404), (format!("{PROJECT}/{id}"), 404), (format!("{REPO}/nine"), 404), (format!("{REPO}/999"), 404)] {
        let r = send(&f, Some("owner"), "GET", &path, None).await;
        assert_eq!(r.status.as_u16(), status, "{path}");
        assert!(r.error().1.contains("NoSuchRestriction"), "{path}");
    }
    assert_eq!(send(&f, Some("owner"), "DELETE", &format!("{REPO}/{pid}"), None).await.status, StatusCode::NOT_FOUND, "not through another scope");
    // `latest` is the same resource.
    assert_eq!(send_v(&f, "latest", Some("owner"), "GET", &format!("{REPO}/{id}"), None).await.json(), made);

    assert_eq!(send(&f, Some("owner"), "DELETE", &format!("{REPO}/{id}"), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(send(&f, Some("owner"), "GET", &format!("{REPO}/{id}"), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(send(&f, Some("owner"), "DELETE", &format!("{REPO}/{id}"), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(send(&f, Some("owner"), "GET", PROJECT, None).await.json()["size"], json!(1), "the project's is untouched");

    // Each change is an audit log entry, by the owner, naming the scope.
    let q = trove_store::AuditQuery { action: Some("branch-restriction.*".into()), oldest_first: true, limit: 10, ..Default::default() };
    let (entries, _) = s.audit_entries(&q).unwrap();
    let seen: Vec<(&str, &str, &str)> = entries.iter().map(|e| (e.actor.as_str(), e.action.as_str(), e.target.as_str())).collect();
    assert_eq!(
        seen,
        [
            ("owner", "branch-restriction.create", "repo:TP/test"),
            ("owner", "branch-restriction.create", "project:TP"),
            ("owner", "branch-restriction.delete", "repo:TP/test")
        ]
    );
}

#[tokio::test]
async fn a_list_is_created_whole_or_not_at_all_and_listings_filter_and_page() {
    let f = fixture("", None);
    let all = json!([
        restriction("read-only", "BRANCH", "main"),
        restriction("no-deletes", "PATTERN", "release/*"),
        restriction("fast-forward-only", "PATTERN", "release/*"),
        restriction("pull-request-only", "MODEL_BRANCH", "development"),
    ]);
    // One bad item: nothing is created.
    let mut bad = all.clone();
    bad.as_array_mut().unwrap().push(restriction("read-only", "BRANCH", "a b"));
    let r = send(&f, Some("owner"), "POST", &format!("{REPO}/"), Some((bad, BULK))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error().2, json!("matcher.id"));
    assert_eq!(send(&f, Some("owner"), "GET", REPO, None).await.json()["size"], json!(0));
    // As atlassian-python-api sends a list: `restrictions/`, the bulk content type.
    let r = send(&f, Some("owner"), "POST", &format!("{REPO}/"), Some((all, BULK))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let made = r.json();
    assert_eq!(made.as_array().map(Vec::len), Some(4), "a list answers a list");
    assert_eq!(made[0]["matcher"]["id"], "refs/heads/main");
    let ids = |v: &Value| v["values"].as_array().unwrap().iter().map(|r| r["matcher"]["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    let fr = &f;
    let get = |q: &str| {
        let path = format!("{REPO}/{q}");
        async move { send(fr, Some("owner"), "GET", &path, None).await }
    };
    assert_eq!(ids(&get("?type=read-only").await.json()), ["refs/heads/main"]);
    assert_eq!(ids(&get("?matcherType=PATTERN").await.json()), ["release/*", "release/*"]);
    assert_eq!(ids(&get("?matcherType=PATTERN&type=no-deletes").await.json()), ["release/*"]);
    assert_eq!(ids(&get("?matcherId=main").await.json()), ["refs/heads/main"], "by display id too");
    assert_eq!(ids(&get("?matcherId=refs/heads/main").await.json()), ["refs/heads/main"]);
    let page = get("?limit=3").await.json();
    assert_eq!((page["size"].as_u64(), page["nextPageStart"].as_u64()), (Some(3), Some(3)));
    let rest = get("?start=3&limit=3").await.json();
    assert_eq!((ids(&rest), rest["isLastPage"].as_bool()), (vec!["development".to_owned()], Some(true)));
    for q in ["?type=READ_ONLY", "?matcherType=ANY"] {
        assert_eq!(get(q).await.status, StatusCode::BAD_REQUEST, "{q}");
    }
}

#[tokio::test]
async fn invalid_restrictions_are_refused_naming_what_is_wrong() {
    let f = fixture("", None);
    let with = |mut v: Value, k: &str, x: Value| {
        v[k] = x;
        v
    };
    let main = restriction("read-only", "BRANCH", "main");
    for (body, context) in [
        (restriction("read-write", "BRANCH", "main"), "type"),
        (json!({"matcher": {"id": "main", "type": {"id": "BRANCH"}}}), "type"),
        (json!({"type": "read-only"}), "matcher"),
        (json!({"type": "read-only", "matcher": {"id": "main"}}), "matcher.type"),
        (restriction("read-only", "REGEX", "main"), "matcher.type"),
        (restriction("read-only", "BRANCH", ""), "matcher.id"),
        (restriction("read-only", "MODEL_CATEGORY", "CHORE"), "matcher.id"),
        (restriction("read-only", "MODEL_BRANCH", "staging"), "matcher.id"),
        (with(main.clone(), "users", json!(["nobody"])), "users"),
        (with(main.clone(), "users", json!("reader")), "users"),
        (with(main.clone(), "groups", json!(["no-such-group"])), "groups"),
        (with(main.clone(), "accessKeys", json!(["x"])), "accessKeys"),
        (with(main.clone(), "accessKeyIds", json!([0])), "accessKeyIds"),
    ] {
        let r = send(&f, Some("owner"), "POST", REPO, Some((body.clone(), "application/json"))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(r.error().2, json!(context), "{body}");
    }
    let r = send(&f, Some("owner"), "POST", REPO, Some((json!([]), BULK))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = send(&f, Some("owner"), "POST", REPO, Some((json!("read-only"), "application/json"))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(send(&f, Some("owner"), "GET", REPO, None).await.json()["size"], json!(0));
}

#[tokio::test]
async fn only_administrators_of_the_scope_manage_restrictions() {
    let f = fixture("", None);
    let body = || Some((restriction("no-deletes", "BRANCH", "main"), "application/json"));
    for path in [PROJECT, REPO] {
        assert_eq!(send(&f, None, "GET", path, None).await.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(send(&f, None, "POST", path, body()).await.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(send(&f, Some("outsider"), "GET", path, None).await.status, StatusCode::NOT_FOUND, "{path}: not even its existence");
        assert_eq!(send(&f, Some("reader"), "GET", path, None).await.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(send(&f, Some("reader"), "POST", path, body()).await.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(send(&f, Some("admin"), "POST", path, body()).await.status, StatusCode::OK, "{path}: a global admin administers every project");
    }
    let id = send(&f, Some("owner"), "GET", REPO, None).await.json()["values"][0]["id"].as_i64().unwrap();
    assert_eq!(send(&f, Some("reader"), "DELETE", &format!("{REPO}/{id}"), None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(send(&f, Some("reader"), "GET", &format!("{REPO}/{id}"), None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(send(&f, Some("owner"), "GET", "/projects/NOPE/restrictions", None).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_restriction_that_would_lock_out_every_administrator_is_refused_with_the_reason() {
    let f = fixture("", None);
    let s = f.server.store();
    for g in ["admins", "devs"] {
        s.insert_group(&GroupName::parse(g).unwrap()).unwrap();
    }
    s.add_group_member(&GroupName::parse("admins").unwrap(), &UserName::parse("owner").unwrap()).unwrap();
    s.add_group_member(&GroupName::parse("devs").unwrap(), &UserName::parse("reader").unwrap()).unwrap();
    let fr = &f;
    let post = |path: &'static str, body: Value| async move { send(fr, Some("owner"), "POST", path, Some((body, "application/json"))).await };
    for (kind, pattern) in [("read-only", "*"), ("read-only", "**"), ("pull-request-only", "heads/**")] {
        for path in [PROJECT, REPO] {
            let r = post(path, restriction(kind, "PATTERN", pattern)).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{kind} {pattern} at {path}");
            let (message, _, _) = r.error();
            assert!(message.contains("every branch") && message.contains("Exempt at least one user or group that administers"), "{message}");
            // Exempting someone who is not an administrator there does not help.
            let mut not_admin = restriction(kind, "PATTERN", pattern);
            not_admin["users"] = json!(["reader"]);
            not_admin["groups"] = json!(["devs"]);
            assert_eq!(post(path, not_admin).await.status, StatusCode::BAD_REQUEST, "{kind} {pattern} at {path}");
        }
    }
    // An administrator exempt, directly or through a group: accepted.
    let mut direct = restriction("read-only", "PATTERN", "*");
    direct["users"] = json!(["owner"]);
    assert_eq!(post(REPO, direct).await.status, StatusCode::OK);
    let mut via_group = restriction("pull-request-only", "PATTERN", "**");
    via_group["groups"] = json!(["admins"]);
    assert_eq!(post(PROJECT, via_group).await.status, StatusCode::OK);
    let mut global_admin = restriction("read-only", "PATTERN", "*");
    global_admin["users"] = json!(["admin"]);
    assert_eq!(post(PROJECT, global_admin).await.status, StatusCode::OK, "a global administrator administers the project");
    // Other types, or fewer branches, lock nobody out.
    assert_eq!(post(REPO, restriction("no-deletes", "PATTERN", "*")).await.status, StatusCode::OK);
    assert_eq!(post(REPO, restriction("fast-forward-only", "PATTERN", "**")).await.status, StatusCode::OK);
    assert_eq!(post(REPO, restriction("read-only", "BRANCH", "main")).await.status, StatusCode::OK);
    assert_eq!(post(REPO, restriction("pull-request-only", "PATTERN", "release/*")).await.status, StatusCode::OK);
}
