//! Handler tests for branches and tags made and removed over REST (core API, `branch-utils`,
//! `/rest/git`), through `app()` with `oneshot`: shapes and statuses, write access and branch
//! permissions, compare-and-swap on `endPoint`, bad input, paging, and the push event each
//! change sends.

use http::StatusCode;
use serde_json::{Value, json};
use trove_store::{Owner, Permission, ProjectKey, RepoSlug, UserName};

use super::tests::{Fixture, Resp, basic, fixture};

const CORE: &str = "/rest/api/1.0/projects/TP/repos/test";
const BU: &str = "/rest/branch-utils/1.0/projects/TP/repos/test";
const GIT: &str = "/rest/git/1.0/projects/TP/repos/test";

/// The fixture, seeded, with `writer` (write on TP).
fn writable() -> (Fixture, Vec<String>) {
    let f = fixture("", None);
    let ids = f.seed();
    let s = f.server.store();
    let writer = UserName::parse("writer").unwrap();
    s.create_user(&writer, &trove_store::Password::new("writer-password").unwrap(), trove_store::GlobalPermission::LicensedUser).unwrap();
    s.set_user_details(&writer, Some("Wendy Writer"), Some("writer@example.com")).unwrap();
    s.grant_project(&writer, &ProjectKey::parse("TP").unwrap(), Permission::Write).unwrap();
    (f, ids)
}

async fn call(f: &Fixture, who: Option<&str>, method: &str, uri: &str, body: Option<Value>) -> Resp {
    f.raw(method, uri, who.map(|u| basic(u, &format!("{u}-password"))), body.map(|b| b.to_string().into_bytes())).await
}

/// `refname objectname` of every branch and tag in TP/test, as git sees them.
fn refs(f: &Fixture) -> Vec<(String, String)> {
    let repo = f.server.store().repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("test").unwrap()).unwrap().unwrap();
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(f.server.store().repo_path(&repo))
        .args(["for-each-ref", "--format=%(refname) %(objectname) %(objecttype)", "refs/heads", "refs/tags"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut p = l.split(' ');
            (p.next().unwrap().to_owned(), format!("{} {}", p.next().unwrap(), p.next().unwrap()))
        })
        .collect()
}

fn has(f: &Fixture, name: &str) -> Option<String> {
    refs(f).into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

#[tokio::test]
async fn branches_are_created_from_a_start_point_in_both_apis_and_sent_as_pushes() {
    let (f, ids) = writable();
    let mut events = f.server.push_events();
    let r = call(&f, Some("writer"), "POST", &format!("{CORE}/branches"), Some(json!({"name": "topic", "startPoint": "feature", "message": "m"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json(),
        json!({"id": "refs/heads/topic", "displayId": "topic", "type": "BRANCH", "latestCommit": ids[1], "latestChangeset": ids[1], "isDefault": false})
    );
    assert_eq!(has(&f, "refs/heads/topic").as_deref(), Some(format!("{} commit", ids[1]).as_str()));
    let ev = events.try_recv().expect("the branch creation is a push event");
    assert_eq!((ev.user.as_str(), ev.repo.as_str()), ("writer", "TP/test"));
    assert_eq!(ev.updates, [crate::events::RefUpdate { name: "refs/heads/topic".into(), old: "0".repeat(40), new: ids[1].clone() }]);

    // branch-utils: 201, from a commit id, a full ref name.
    let r = call(&f, Some("writer"), "POST", &format!("{BU}/branches"), Some(json!({"name": "refs/heads/release/1", "startPoint": ids[0]}))).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!((r.json()["id"].as_str(), r.json()["latestCommit"].as_str()), (Some("refs/heads/release/1"), Some(ids[0].as_str())));
    // And under `latest`.
    let r = call(&f, Some("writer"), "POST", "/rest/branch-utils/latest/projects/TP/repos/test/branches", Some(json!({"name": "l", "startPoint": "v1"}))).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json()["latestCommit"], ids[0], "a tag start point is its commit");
    assert!(events.try_recv().is_ok() && events.try_recv().is_ok());
}

#[tokio::test]
async fn creating_a_branch_refuses_bad_input_and_changes_nothing() {
    let (f, _) = writable();
    let before = refs(&f);
    let uri = format!("{BU}/branches");
    for (body, status, context) in [
        (json!({"startPoint": "main"}), StatusCode::BAD_REQUEST, "name"),
        (json!({"name": "x"}), StatusCode::BAD_REQUEST, "startPoint"),
        (json!({"name": "a..b", "startPoint": "main"}), StatusCode::BAD_REQUEST, "name"),
        (json!({"name": "-x", "startPoint": "main"}), StatusCode::BAD_REQUEST, "name"),
        (json!({"name": "x", "startPoint": "nope"}), StatusCode::BAD_REQUEST, "startPoint"),
        (json!({"name": "x", "startPoint": "--all"}), StatusCode::BAD_REQUEST, "startPoint"),
        (json!({"name": "main", "startPoint": "feature"}), StatusCode::BAD_REQUEST, "name"),
    ] {
        let r = call(&f, Some("writer"), "POST", &uri, Some(body.clone())).await;
        assert_eq!(r.status, status, "{body}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.error().2, json!(context), "{body}");
    }
    // A name that is a directory of an existing branch, or under one: 409.
    let r = call(&f, Some("writer"), "POST", &uri, Some(json!({"name": "main/x", "startPoint": "main"}))).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.error().0.contains("refs/heads/main exists"), "{}", r.error().0);
    let r = f.raw("POST", &uri, Some(basic("writer", "writer-password")), Some(b"{not json".to_vec())).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(refs(&f), before);
}

#[tokio::test]
async fn ref_changes_need_write_access() {
    let (f, _) = writable();
    let before = refs(&f);
    let branch = json!({"name": "x", "startPoint": "main"});
    for (who, status) in [(None, StatusCode::UNAUTHORIZED), (Some("reader"), StatusCode::FORBIDDEN), (Some("outsider"), StatusCode::NOT_FOUND)] {
        for (method, uri, body) in [
            ("POST", format!("{CORE}/branches"), Some(branch.clone())),
            ("POST", format!("{BU}/branches"), Some(branch.clone())),
            ("DELETE", format!("{BU}/branches"), Some(json!({"name": "feature"}))),
            ("POST", format!("{CORE}/tags"), Some(branch.clone())),
            ("POST", format!("{GIT}/tags"), Some(branch.clone())),
            ("DELETE", format!("{GIT}/tags/v1"), None),
        ] {
            let r = call(&f, who, method, &uri, body).await;
            assert_eq!(r.status, status, "{who:?} {method} {uri}");
            r.error();
        }
    }
    // A read-only token of a user who may write is refused too.
    let token = f.server.store().create_token(&UserName::parse("writer").unwrap(), "ci", Permission::Read).unwrap().secret;
    let r = f.raw("POST", &format!("{BU}/branches"), Some(format!("Bearer {token}")), Some(branch.to_string().into_bytes())).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(refs(&f), before);
}

#[tokio::test]
async fn branch_permissions_refuse_ref_changes_as_they_refuse_pushes() {
    let (f, ids) = writable();
    let restrict = |kind: &str, pattern: &str| json!({"type": kind, "matcher": {"id": pattern, "displayId": pattern, "type": {"id": "PATTERN", "name": "Pattern"}, "active": true}});
    for body in [restrict("read-only", "release/*"), restrict("no-deletes", "feature"), restrict("read-only", "v1*")] {
        let r = call(&f, Some("owner"), "POST", "/rest/branch-permissions/2.0/projects/TP/repos/test/restrictions", Some(body)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    }
    let before = refs(&f);
    let r = call(&f, Some("writer"), "POST", &format!("{BU}/branches"), Some(json!({"name": "release/2", "startPoint": "main"}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        r.error().0,
        "Branch refs/heads/release/2 is read-only: it may not be created, changed or deleted. Check your branch permissions configuration with the project administrator."
    );
    let r = call(&f, Some("writer"), "DELETE", &format!("{BU}/branches"), Some(json!({"name": "feature"}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.error().0.starts_with("Branch refs/heads/feature may not be deleted."));
    // Even a dry run says so.
    let r = call(&f, Some("writer"), "DELETE", &format!("{BU}/branches"), Some(json!({"name": "feature", "dryRun": true}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(&f, Some("writer"), "DELETE", &format!("{GIT}/tags/v1"), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.error().0.starts_with("Tag refs/tags/v1 is read-only"));
    let r = call(&f, Some("writer"), "POST", &format!("{GIT}/tags"), Some(json!({"name": "v1.1", "startPoint": "main"}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(refs(&f), before);
    // What no restriction covers still works.
    let r = call(&f, Some("writer"), "POST", &format!("{BU}/branches"), Some(json!({"name": "other", "startPoint": ids[2]}))).await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_branch_delete_with_a_stale_end_point_changes_nothing() {
    let (f, ids) = writable();
    let mut events = f.server.push_events();
    let uri = format!("{BU}/branches");
    // feature is at ids[1]; the caller thinks it is at ids[0].
    let r = call(&f, Some("writer"), "DELETE", &uri, Some(json!({"name": "feature", "endPoint": ids[0]}))).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.error().0.contains("was changed since you read it"), "{}", r.error().0);
    assert_eq!(has(&f, "refs/heads/feature"), Some(format!("{} commit", ids[1])));
    // A dry run checks and keeps the branch (stashy sends the flag as a string).
    let r = call(&f, Some("writer"), "DELETE", &uri, Some(json!({"name": "feature", "endPoint": ids[1], "dryRun": "true"}))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(has(&f, "refs/heads/feature").is_some());
    assert!(events.try_recv().is_err(), "nothing changed, nothing published");
    // The right end point (abbreviated) deletes it.
    let r = call(&f, Some("writer"), "DELETE", &uri, Some(json!({"name": "feature", "endPoint": &ids[1][..12], "dryRun": "false"}))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(has(&f, "refs/heads/feature").is_none());
    let ev = events.try_recv().unwrap();
    assert_eq!(ev.updates, [crate::events::RefUpdate { name: "refs/heads/feature".into(), old: ids[1].clone(), new: "0".repeat(40) }]);
    // Gone now: 404; the default branch: 400.
    let r = call(&f, Some("writer"), "DELETE", &uri, Some(json!({"name": "feature"}))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.error().1.contains("NoSuchBranch"));
    let r = call(&f, Some("writer"), "DELETE", &uri, Some(json!({"name": "refs/heads/main"}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.error().0.contains("default branch"));
    assert!(has(&f, "refs/heads/main").is_some());
    let r = call(&f, Some("writer"), "DELETE", &uri, Some(json!({"name": "main", "dryRun": 3}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error().2, json!("dryRun"));
}

#[tokio::test]
async fn tags_are_lightweight_or_annotated_by_the_caller_and_deleted() {
    let (f, ids) = writable();
    let mut events = f.server.push_events();
    // Core API: lightweight without a message, 200.
    let r = call(&f, Some("writer"), "POST", &format!("{CORE}/tags"), Some(json!({"name": "light", "startPoint": "feature"}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json(),
        json!({"id": "refs/tags/light", "displayId": "light", "type": "TAG", "latestCommit": ids[1], "latestChangeset": ids[1], "hash": null})
    );
    assert_eq!(has(&f, "refs/tags/light"), Some(format!("{} commit", ids[1])));
    // /rest/git: annotated with a message, 201, tagged by the caller.
    let r = call(
        &f,
        Some("writer"),
        "POST",
        &format!("{GIT}/tags"),
        Some(json!({"name": "v2", "startPoint": "main", "message": "version 2", "type": "ANNOTATED"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let tag = r.json()["hash"].as_str().unwrap().to_owned();
    assert_eq!(has(&f, "refs/tags/v2"), Some(format!("{tag} tag")));
    assert_eq!(r.json()["latestCommit"], ids[2]);
    let repo = f.server.store().repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("test").unwrap()).unwrap().unwrap();
    let body = std::process::Command::new("git").arg("--git-dir").arg(f.server.store().repo_path(&repo)).args(["cat-file", "tag", &tag]).output().unwrap();
    let body = String::from_utf8_lossy(&body.stdout).into_owned();
    assert!(body.contains(&format!("object {}\ntype commit\ntag v2\ntagger Wendy Writer <writer@example.com> ", ids[2])), "{body}");
    assert!(body.ends_with("\n\nversion 2\n"), "{body}");
    // LIGHTWEIGHT wins over a message; an existing tag is 400 unless forced.
    let r = call(&f, Some("writer"), "POST", &format!("{GIT}/tags"), Some(json!({"name": "v2", "startPoint": "main", "type": "LIGHTWEIGHT"}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call(
        &f,
        Some("writer"),
        "POST",
        &format!("{GIT}/tags"),
        Some(json!({"name": "v2", "startPoint": "feature", "type": "LIGHTWEIGHT", "message": "x", "force": "true"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(has(&f, "refs/tags/v2"), Some(format!("{} commit", ids[1])));
    let r = call(&f, Some("writer"), "POST", &format!("{GIT}/tags"), Some(json!({"name": "v3", "startPoint": "main", "type": "SIGNED"}))).await;
    assert_eq!((r.status, r.error().2), (StatusCode::BAD_REQUEST, json!("type")));
    // Delete, then 404.
    let r = call(&f, Some("writer"), "DELETE", &format!("{GIT}/tags/light"), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(has(&f, "refs/tags/light").is_none());
    let r = call(&f, Some("writer"), "DELETE", &format!("{GIT}/tags/light"), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.error().1.contains("NoSuchTag"));
    let names: Vec<String> = std::iter::from_fn(|| events.try_recv().ok()).map(|e| e.updates[0].name.clone()).collect();
    assert_eq!(names, ["refs/tags/light", "refs/tags/v2", "refs/tags/v2", "refs/tags/light"]);
}

#[tokio::test]
async fn branch_info_lists_the_branches_containing_a_commit_page_by_page() {
    let (f, ids) = writable();
    for i in 0..30 {
        let r = call(&f, Some("writer"), "POST", &format!("{BU}/branches"), Some(json!({"name": format!("b{i:02}"), "startPoint": ids[0]}))).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let r = call(&f, Some("reader"), "GET", &format!("{BU}/branches/info/{}", ids[0]), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let page = r.json();
    // 30 new ones, main and feature.
    assert_eq!((page["size"].as_u64(), page["isLastPage"].as_bool(), page["nextPageStart"].as_u64()), (Some(25), Some(false), Some(25)));
    let r = call(&f, Some("reader"), "GET", &format!("{BU}/branches/info/{}?start=25", ids[0]), None).await;
    let page = r.json();
    assert_eq!((page["size"].as_u64(), page["isLastPage"].as_bool()), (Some(7), Some(true)));
    let r = call(&f, Some("reader"), "GET", &format!("{BU}/branches/info/{}", ids[2]), None).await;
    let names: Vec<String> = r.json()["values"].as_array().unwrap().iter().map(|v| v["displayId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["main"]);
    let r = call(&f, Some("reader"), "GET", &format!("{BU}/branches/info/{}", "0".repeat(40)), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = call(&f, Some("reader"), "GET", &format!("{BU}/branches/info/main"), None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = call(&f, Some("outsider"), "GET", &format!("{BU}/branches/info/{}", ids[0]), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_default_branch_answers_at_its_newer_path_too() {
    let (f, _) = writable();
    let r = call(&f, Some("reader"), "GET", &format!("{CORE}/default-branch"), None).await;
    assert_eq!((r.status, r.json()["id"].as_str()), (StatusCode::OK, Some("refs/heads/main")));
    let r = call(&f, Some("writer"), "PUT", &format!("{CORE}/default-branch"), Some(json!({"id": "refs/heads/feature"}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "needs repository admin");
    let r = call(&f, Some("owner"), "PUT", &format!("{CORE}/default-branch"), Some(json!({"id": "refs/heads/feature"}))).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = call(&f, Some("reader"), "GET", &format!("{CORE}/branches/default"), None).await;
    assert_eq!(r.json()["id"], "refs/heads/feature");
}

/// Every route of the two families answers (not "no such resource", not 405), in 1.0 and latest.
#[tokio::test]
async fn every_branch_utils_and_git_route_is_routed() {
    let f = fixture("", None);
    f.seed();
    for (methods, path) in super::refs::BRANCH_UTILS_ROUTES.iter().chain(super::refs::GIT_ROUTES) {
        let concrete = path.replace("{projectKey}", "TP").replace("{repositorySlug}", "test").replace("{commitId}", "0123abcd").replace("{name}", "v1");
        for version in ["1.0", "latest"] {
            let uri = concrete.replace("/1.0/", &format!("/{version}/"));
            for m in *methods {
                let r = call(&f, None, m, &uri, None).await;
                assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{m} {uri}");
            }
        }
    }
}

#[tokio::test]
async fn a_repository_keeps_its_description_moves_and_its_old_urls_redirect() {
    let (f, ids) = writable();
    let s = f.server.store();
    s.create_project(&ProjectKey::parse("NEW").unwrap(), None, false).unwrap();
    s.grant_project(&UserName::parse("owner").unwrap(), &ProjectKey::parse("NEW").unwrap(), Permission::Admin).unwrap();
    s.grant_project(&UserName::parse("writer").unwrap(), &ProjectKey::parse("NEW").unwrap(), Permission::Write).unwrap();
    // A description is stored, returned, and kept by a PUT without one.
    let r = call(&f, Some("owner"), "PUT", CORE, Some(json!({"description": "The test repository"}))).await;
    assert_eq!((r.status, r.json()["description"].as_str()), (StatusCode::OK, Some("The test repository")));
    let r = call(&f, Some("owner"), "PUT", CORE, Some(json!({"forkable": false}))).await;
    assert_eq!(r.json()["description"], "The test repository");
    let r = call(&f, Some("owner"), "PUT", CORE, Some(json!({"description": "x\u{0}y"}))).await;
    assert_eq!((r.status, r.error().2), (StatusCode::BAD_REQUEST, json!("description")));
    // Moving needs admin on the target project.
    let r = call(&f, Some("owner"), "PUT", CORE, Some(json!({"project": {"key": "PUB"}}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(&f, Some("owner"), "PUT", CORE, Some(json!({"project": {"key": "NOPE"}}))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Rename and move at once.
    let r = call(&f, Some("owner"), "PUT", CORE, Some(json!({"name": "Moved Here", "project": {"key": "NEW"}}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!((v["slug"].as_str(), v["project"]["key"].as_str(), v["description"].as_str()), (Some("moved-here"), Some("NEW"), Some("The test repository")));
    // The old REST URLs redirect (308: method and body go along), query and tail kept.
    let r = call(&f, Some("writer"), "GET", &format!("{CORE}/commits?until=main&limit=1"), None).await;
    assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(r.headers.get("location").unwrap(), "http://localhost:7990/rest/api/1.0/projects/NEW/repos/moved-here/commits?until=main&limit=1");
    let r = call(&f, Some("writer"), "POST", "/rest/branch-utils/1.0/projects/tp/repos/TEST/branches", Some(json!({"name": "x", "startPoint": "main"}))).await;
    assert_eq!(r.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(r.headers.get("location").unwrap(), "http://localhost:7990/rest/branch-utils/1.0/projects/NEW/repos/moved-here/branches");
    // Only for those who may read it there: others see no repository (the reader could read it
    // in TP, not in NEW), anonymous callers must log in.
    assert_eq!(call(&f, Some("reader"), "GET", CORE, None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&f, Some("outsider"), "GET", CORE, None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&f, None, "GET", CORE, None).await.status, StatusCode::UNAUTHORIZED);
    // The new place answers, with the same history.
    let r = call(&f, Some("writer"), "GET", "/rest/api/1.0/projects/NEW/repos/moved-here/commits?limit=1", None).await;
    assert_eq!(r.json()["values"][0]["id"], ids[2]);
    // git over HTTP: the old clone URL redirects permanently to the new one.
    let r = f.raw("GET", "/scm/TP/test.git/info/refs?service=git-upload-pack", Some(basic("writer", "writer-password")), None).await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.headers.get("location").unwrap(), "http://localhost:7990/scm/new/moved-here.git/info/refs?service=git-upload-pack");
    // The web pages too: a public repository moved (and made public) is redirected for anyone.
    let r = call(&f, Some("admin"), "PUT", "/rest/api/1.0/projects/PUB/repos/open", Some(json!({"public": true, "project": {"key": "NEW"}}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let r = f.raw("GET", "/projects/pub/repos/open/browse?at=main", None, None).await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(r.headers.get("location").unwrap(), "/projects/NEW/repos/open/browse?at=main");
    let r = f.raw("GET", "/projects/NEW/repos/open/browse", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
}
