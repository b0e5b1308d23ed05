//! Handler tests for build status, required builds and Code Insights over REST, through `app()`
//! with `oneshot`: the shapes clients read, replace semantics, who may do what, every bad input
//! Bitbucket refuses with a 400, and required builds as a merge check.

use http::StatusCode;
use serde_json::{Value, json};

use super::tests::{Fixture, Resp, basic, fixture};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

async fn call(f: &Fixture, who: Option<&str>, method: &str, uri: &str, body: Option<Value>) -> Resp {
    f.raw(method, uri, who.map(|u| basic(u, &format!("{u}-password"))), body.map(|b| b.to_string().into_bytes())).await
}

fn repo_builds(sha: &str) -> String {
    format!("/rest/api/1.0/projects/TP/repos/test/commits/{sha}/builds")
}

fn build(key: &str, state: &str) -> Value {
    json!({"key": key, "state": state, "url": format!("https://ci.example/{key}"), "name": format!("{key} job")})
}

#[tokio::test]
async fn legacy_statuses_replace_by_key_list_and_count_and_are_seen_in_the_repository() {
    let f = fixture("", None);
    let legacy = format!("/rest/build-status/1.0/commits/{SHA}");
    let r =
        call(&f, Some("reader"), "POST", &legacy, Some(json!({"state": "INPROGRESS", "key": "ci", "url": "https://ci.example/1", "description": "building"})))
            .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", String::from_utf8_lossy(&r.body));
    // Same key: replaced. Upper-case SHA is the same commit.
    let r = call(
        &f,
        Some("reader"),
        "POST",
        &legacy.to_uppercase().replace("/REST/BUILD-STATUS/1.0/COMMITS", "/rest/build-status/1.0/commits"),
        Some(build("ci", "SUCCESSFUL")),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(call(&f, Some("reader"), "POST", &legacy, Some(build("lint", "FAILED"))).await.status, StatusCode::NO_CONTENT);
    let page = call(&f, Some("outsider"), "GET", &legacy, None).await.json();
    assert_eq!(page["size"], 2);
    let ci = page["values"].as_array().unwrap().iter().find(|v| v["key"] == "ci").unwrap().clone();
    assert_eq!((ci["state"].as_str(), ci["name"].as_str(), ci["url"].as_str()), (Some("SUCCESSFUL"), Some("ci job"), Some("https://ci.example/ci")));
    assert!(ci["dateAdded"].as_i64().unwrap() > 0);
    let stats = call(&f, Some("reader"), "GET", &format!("/rest/build-status/latest/commits/stats/{SHA}"), None).await.json();
    assert_eq!(stats, json!({"successful": 1, "failed": 1, "inProgress": 0, "cancelled": 0, "unknown": 0}));
    let other = "f".repeat(40);
    let many = call(&f, Some("reader"), "POST", "/rest/build-status/1.0/commits/stats", Some(json!([SHA, other]))).await.json();
    assert_eq!(many[SHA]["successful"], 1);
    assert_eq!(many[other.as_str()]["failed"], 0);
    // The repository sees the legacy statuses.
    let r = call(&f, Some("reader"), "GET", &format!("{}?key=lint", repo_builds(SHA)), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["state"], "FAILED");
    // A login is needed.
    assert_eq!(call(&f, None, "GET", &legacy, None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&f, None, "POST", &legacy, Some(build("x", "FAILED"))).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn repository_statuses_take_every_field_and_are_hidden_from_who_cannot_read_the_repository() {
    let f = fixture("", None);
    let body = json!({
        "key": "jenkins", "state": "SUCCESSFUL", "url": "https://jenkins.example/job/1/", "name": "Jenkins #1", "description": "ok",
        "buildNumber": 17, "duration": 61000, "parent": "job", "ref": "refs/heads/main",
        "testResults": {"successful": 10, "failed": 0, "skipped": 2},
    });
    let r = call(&f, Some("reader"), "POST", &repo_builds(SHA), Some(body)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", String::from_utf8_lossy(&r.body));
    let got = call(&f, Some("reader"), "GET", &format!("{}?key=jenkins", repo_builds(SHA)), None).await.json();
    assert_eq!(got["buildNumber"], "17", "Jenkins' number comes back as Bitbucket's string");
    assert_eq!((got["duration"].as_i64(), got["parent"].as_str(), got["ref"].as_str()), (Some(61000), Some("job"), Some("refs/heads/main")));
    assert_eq!(got["testResults"], json!({"successful": 10, "failed": 0, "skipped": 2}));
    assert!(got["createdDate"].as_i64().unwrap() <= got["updatedDate"].as_i64().unwrap());
    // Through the legacy endpoint: seen by a reader of the repository, not by an outsider.
    let legacy = format!("/rest/build-status/1.0/commits/{SHA}");
    assert_eq!(call(&f, Some("reader"), "GET", &legacy, None).await.json()["size"], 1);
    assert_eq!(call(&f, Some("outsider"), "GET", &legacy, None).await.json()["size"], 0);
    // Outsiders can neither post nor read in the repository.
    assert_eq!(call(&f, Some("outsider"), "POST", &repo_builds(SHA), Some(build("x", "FAILED"))).await.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&f, Some("outsider"), "GET", &format!("{}?key=jenkins", repo_builds(SHA)), None).await.status, StatusCode::NOT_FOUND);
    // Deleting needs repository admin.
    let del = format!("{}?key=jenkins", repo_builds(SHA));
    assert_eq!(call(&f, Some("reader"), "DELETE", &del, None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(call(&f, Some("owner"), "DELETE", &del, None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(call(&f, Some("owner"), "DELETE", &del, None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&f, Some("reader"), "GET", &del, None).await.status, StatusCode::NOT_FOUND);
    let caps = call(&f, None, "GET", "/rest/api/1.0/build/capabilities", None).await.json();
    assert_eq!(caps, json!({"buildStatus": ["richBuildStatus"]}));
}

#[tokio::test]
async fn bad_build_statuses_are_400_naming_the_field_and_nothing_is_stored() {
    let f = fixture("", None);
    let long = "k".repeat(256);
    let cases: Vec<(String, Value, &str)> = vec![
        ("/rest/build-status/1.0/commits/abc123".into(), build("ci", "SUCCESSFUL"), "commitId"),
        (repo_builds(&"g".repeat(40)), build("ci", "SUCCESSFUL"), "commitId"),
        (repo_builds(SHA), json!({"state": "SUCCESSFUL", "url": "https://x.example"}), "key"),
        (repo_builds(SHA), json!({"key": "ci", "url": "https://x.example"}), "state"),
        (repo_builds(SHA), json!({"key": "ci", "state": "PASSED", "url": "https://x.example"}), "state"),
        (repo_builds(SHA), json!({"key": "ci", "state": "successful", "url": "https://x.example"}), "state"),
        (repo_builds(SHA), json!({"key": "ci", "state": "FAILED"}), "url"),
        (repo_builds(SHA), json!({"key": "ci", "state": "FAILED", "url": "javascript:alert(1)"}), "url"),
        (repo_builds(SHA), json!({"key": "ci", "state": "FAILED", "url": format!("https://x.example/{}", "u".repeat(450))}), "url"),
        (repo_builds(SHA), json!({"key": long, "state": "FAILED", "url": "https://x.example"}), "key"),
        (format!("/rest/build-status/1.0/commits/{SHA}"), json!({"key": "ci", "state": "FAILED", "url": "https://x.example", "name": long}), "name"),
        (repo_builds(SHA), json!({"key": "ci", "state": "FAILED", "url": "https://x.example", "duration": -1}), "duration"),
        (repo_builds(SHA), json!({"key": "ci", "state": "FAILED", "url": "https://x.example", "buildNumber": [1]}), "buildNumber"),
        (repo_builds(SHA), json!({"key": "ci", "state": "FAILED", "url": "https://x.example", "testResults": {"failed": "two"}}), "failed"),
        (repo_builds(SHA), json!({"key": 5, "state": "FAILED", "url": "https://x.example"}), "key"),
    ];
    for (uri, body, field) in cases {
        let r = call(&f, Some("reader"), "POST", &uri, Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri} {body}");
        assert_eq!(r.error().2, json!(field), "{uri} {body}: {:?}", r.error());
    }
    let r = call(&f, Some("reader"), "POST", &repo_builds(SHA), None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "no body");
    let r = call(&f, Some("reader"), "GET", &repo_builds(SHA), None).await;
    assert_eq!((r.status, r.error().2), (StatusCode::BAD_REQUEST, json!("key")), "GET needs ?key=");
    let r = call(&f, Some("reader"), "POST", "/rest/build-status/1.0/commits/stats", Some(json!(["nope"]))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(call(&f, Some("reader"), "GET", &format!("/rest/build-status/1.0/commits/{SHA}"), None).await.json()["size"], 0, "nothing stored");
}

const CONDITIONS: &str = "/rest/required-builds/1.0/projects/TP/repos/test/conditions";
const CONDITION: &str = "/rest/required-builds/1.0/projects/TP/repos/test/condition";

#[tokio::test]
async fn required_build_conditions_are_managed_by_repository_admins_with_bitbuckets_matchers() {
    let f = fixture("", None);
    let body = json!({"buildParentKeys": ["ci", "lint"], "refMatcher": {"id": "ANY_REF_MATCHER_ID", "type": {"id": "ANY_REF"}}, "exemptRefMatcher": {"id": "release/*", "type": {"id": "PATTERN"}}});
    assert_eq!(call(&f, Some("reader"), "POST", CONDITION, Some(body.clone())).await.status, StatusCode::FORBIDDEN);
    let r = call(&f, Some("owner"), "POST", CONDITION, Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let made = r.json();
    assert_eq!(made["buildParentKeys"], json!(["ci", "lint"]));
    assert_eq!(made["refMatcher"]["type"], json!({"id": "ANY_REF", "name": "Any branch"}));
    assert_eq!(made["exemptRefMatcher"]["id"], "release/*");
    let id = made["id"].as_i64().unwrap();
    let list = call(&f, Some("reader"), "GET", CONDITIONS, None).await.json();
    assert_eq!(list["values"][0]["id"], id);
    let r = call(
        &f,
        Some("owner"),
        "PUT",
        &format!("{CONDITION}/{id}"),
        Some(json!({"buildParentKeys": ["ci"], "refMatcher": {"id": "main", "type": {"id": "BRANCH"}}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!((r.json()["refMatcher"]["id"].as_str(), r.json().get("exemptRefMatcher")), (Some("refs/heads/main"), None));
    // Another repository's condition is not found here.
    let other = call(
        &f,
        Some("admin"),
        "POST",
        "/rest/required-builds/latest/projects/PUB/repos/open/condition",
        Some(json!({"buildParentKeys": ["x"], "refMatcher": {"id": "ANY_REF_MATCHER_ID", "type": {"id": "ANY_REF"}}})),
    )
    .await
    .json();
    assert_eq!(call(&f, Some("owner"), "DELETE", &format!("{CONDITION}/{}", other["id"]), None).await.status, StatusCode::NOT_FOUND);
    for (body, field) in [
        (json!({"refMatcher": {"id": "x", "type": {"id": "BRANCH"}}}), "buildParentKeys"),
        (json!({"buildParentKeys": [], "refMatcher": {"id": "x", "type": {"id": "BRANCH"}}}), "buildParentKeys"),
        (json!({"buildParentKeys": ["a\nb"], "refMatcher": {"id": "x", "type": {"id": "BRANCH"}}}), "buildParentKeys"),
        (json!({"buildParentKeys": ["ci"]}), "refMatcher"),
        (json!({"buildParentKeys": ["ci"], "refMatcher": {"id": "x", "type": {"id": "TAG"}}}), "refMatcher.type"),
        (json!({"buildParentKeys": ["ci"], "refMatcher": {"id": "", "type": {"id": "BRANCH"}}}), "refMatcher.id"),
        (
            json!({"buildParentKeys": ["ci"], "refMatcher": {"id": "x", "type": "BRANCH"}, "exemptRefMatcher": {"id": "NOPE", "type": "MODEL_CATEGORY"}}),
            "exemptRefMatcher.id",
        ),
    ] {
        let r = call(&f, Some("owner"), "POST", CONDITION, Some(body.clone())).await;
        assert_eq!((r.status, r.error().2), (StatusCode::BAD_REQUEST, json!(field)), "{body}");
    }
    assert_eq!(call(&f, Some("owner"), "DELETE", &format!("{CONDITION}/{id}"), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(call(&f, Some("owner"), "DELETE", &format!("{CONDITION}/{id}"), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&f, Some("outsider"), "GET", CONDITIONS, None).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn required_builds_and_the_minimum_of_successful_builds_veto_a_merge_until_the_source_tip_has_them() {
    let f = fixture("", None);
    f.seed();
    let pr = call(
        &f,
        Some("owner"),
        "POST",
        "/rest/api/1.0/projects/TP/repos/test/pull-requests",
        Some(json!({"title": "Catch up", "fromRef": {"id": "refs/heads/main"}, "toRef": {"id": "refs/heads/feature"}})),
    )
    .await;
    assert_eq!(pr.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&pr.body));
    let pr = pr.json();
    let tip = pr["fromRef"]["latestCommit"].as_str().unwrap().to_owned();
    let merge = format!("/rest/api/1.0/projects/TP/repos/test/pull-requests/{}/merge", pr["id"]);
    let vetoes = |r: Value| -> Vec<String> { r["vetoes"].as_array().unwrap().iter().map(|v| v["detailedMessage"].as_str().unwrap().to_owned()).collect() };
    assert!(vetoes(call(&f, Some("owner"), "GET", &merge, None).await.json()).is_empty());

    // A condition on the target for `ci`; one that exempts the target does not count.
    let cond = json!({"buildParentKeys": ["ci"], "refMatcher": {"id": "feature", "type": {"id": "BRANCH"}}});
    assert_eq!(call(&f, Some("owner"), "POST", CONDITION, Some(cond)).await.status, StatusCode::OK);
    let exempt = json!({"buildParentKeys": ["never"], "refMatcher": {"id": "ANY_REF_MATCHER_ID", "type": {"id": "ANY_REF"}}, "exemptRefMatcher": {"id": "feat*", "type": {"id": "PATTERN"}}});
    assert_eq!(call(&f, Some("owner"), "POST", CONDITION, Some(exempt)).await.status, StatusCode::OK);
    let status = call(&f, Some("owner"), "GET", &merge, None).await.json();
    assert_eq!(status["canMerge"], false);
    let v = vetoes(status);
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("The required build ci has not run on the latest commit of main"), "{v:?}");
    assert_eq!(call(&f, Some("owner"), "POST", &format!("{merge}?version={}", pr["version"]), None).await.status, StatusCode::CONFLICT);

    // A failed build, then a successful one of another commit: still vetoed.
    assert_eq!(call(&f, Some("reader"), "POST", &repo_builds(&tip), Some(build("ci", "FAILED"))).await.status, StatusCode::NO_CONTENT);
    assert!(vetoes(call(&f, Some("owner"), "GET", &merge, None).await.json())[0].contains("ci is FAILED"));
    assert_eq!(call(&f, Some("reader"), "POST", &repo_builds(SHA), Some(build("ci", "SUCCESSFUL"))).await.status, StatusCode::NO_CONTENT);
    assert_eq!(vetoes(call(&f, Some("owner"), "GET", &merge, None).await.json()).len(), 1);
    // Legacy success on the tip replaces nothing of the repository's, but is newer: it counts.
    assert_eq!(
        call(&f, Some("reader"), "POST", &format!("/rest/build-status/1.0/commits/{tip}"), Some(build("ci", "SUCCESSFUL"))).await.status,
        StatusCode::NO_CONTENT
    );
    assert!(vetoes(call(&f, Some("owner"), "GET", &merge, None).await.json()).is_empty());

    // The minimum-builds setting counts successful builds on the tip.
    let r = call(&f, Some("owner"), "POST", "/rest/api/1.0/projects/TP/repos/test/settings/pull-requests", Some(json!({"requiredSuccessfulBuilds": 2}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let v = vetoes(call(&f, Some("owner"), "GET", &merge, None).await.json());
    assert!(v.len() == 1 && v[0].contains("minimum of 2 successful builds"), "{v:?}");
    assert_eq!(call(&f, Some("reader"), "POST", &repo_builds(&tip), Some(build("lint", "SUCCESSFUL"))).await.status, StatusCode::NO_CONTENT);
    let status = call(&f, Some("owner"), "GET", &merge, None).await.json();
    assert_eq!(status["canMerge"], true, "{status}");
}

fn insights(sha: &str) -> String {
    format!("/rest/insights/1.0/projects/TP/repos/test/commits/{sha}")
}

#[tokio::test]
async fn insight_reports_and_annotations_round_trip_with_their_permissions_and_limits() {
    let f = fixture("", None);
    let ids = f.seed();
    let c = ids.last().unwrap().clone();
    let base = insights(&c);
    let report = json!({
        "title": "SonarQube", "details": "Quality gate", "result": "FAIL", "reporter": "Sonar", "link": "https://sonar.example/p",
        "data": [
            {"title": "Bugs", "type": "NUMBER", "value": 2},
            {"title": "Coverage", "type": "PERCENTAGE", "value": 81.5},
            {"title": "Gate", "type": "BOOLEAN", "value": false},
            {"title": "Report", "type": "LINK", "value": {"linktext": "open", "href": "https://sonar.example/r"}},
            {"title": "Took", "type": "DURATION", "value": 3000},
            {"title": "Note", "value": "plain"},
        ],
    });
    let r = call(&f, Some("reader"), "PUT", &format!("{base}/reports/sonar"), Some(report.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let got = r.json();
    assert_eq!((got["key"].as_str(), got["result"].as_str(), got["data"].as_array().map(Vec::len)), (Some("sonar"), Some("FAIL"), Some(6)));
    // Only the creator replaces it; an administrator may delete it.
    assert_eq!(call(&f, Some("owner"), "PUT", &format!("{base}/reports/sonar"), Some(report.clone())).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        call(&f, Some("reader"), "PUT", &format!("{base}/reports/sonar"), Some(json!({"title": "Sonar 2", "result": "PASS"}))).await.status,
        StatusCode::OK
    );
    assert_eq!(call(&f, Some("reader"), "GET", &format!("{base}/reports/sonar"), None).await.json()["title"], "Sonar 2");
    assert_eq!(call(&f, Some("reader"), "GET", &format!("{base}/reports"), None).await.json()["size"], 1);

    let anns = json!({"annotations": [
        {"path": "README.md", "line": 1, "message": "Typo", "severity": "LOW", "type": "CODE_SMELL", "externalId": "t1"},
        {"path": "src/lib.rs", "line": 0, "message": "File-level", "severity": "HIGH", "type": "BUG", "link": "https://sonar.example/i"},
    ]});
    assert_eq!(call(&f, Some("reader"), "POST", &format!("{base}/reports/sonar/annotations"), Some(anns)).await.status, StatusCode::NO_CONTENT);
    let r = call(
        &f,
        Some("reader"),
        "PUT",
        &format!("{base}/reports/sonar/annotations/t1"),
        Some(json!({"path": "README.md", "line": 2, "message": "Typo, moved", "severity": "MEDIUM"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let got = call(&f, Some("reader"), "GET", &format!("{base}/reports/sonar/annotations"), None).await.json();
    assert_eq!(got["totalCount"], 2);
    assert_eq!(
        got["annotations"][0],
        json!({"reportKey": "sonar", "path": "README.md", "line": 2, "message": "Typo, moved", "severity": "MEDIUM", "externalId": "t1"})
    );
    assert_eq!(call(&f, Some("reader"), "GET", &format!("{base}/annotations?severity=HIGH"), None).await.json()["totalCount"], 1);
    // Someone else (not an admin) may not touch them.
    let outsider_in = call(&f, Some("outsider"), "GET", &format!("{base}/reports"), None).await;
    assert_eq!(outsider_in.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&f, Some("admin"), "DELETE", &format!("{base}/reports/sonar/annotations?externalId=t1"), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(call(&f, Some("reader"), "GET", &format!("{base}/annotations"), None).await.json()["totalCount"], 1);
    // Over the limit: refused whole.
    let many: Vec<Value> = (0..1000).map(|i| json!({"message": format!("m{i}"), "severity": "LOW"})).collect();
    let r = call(&f, Some("reader"), "POST", &format!("{base}/reports/sonar/annotations"), Some(json!({"annotations": many}))).await;
    assert_eq!((r.status, r.error().2), (StatusCode::BAD_REQUEST, json!("annotations")));
    assert_eq!(call(&f, Some("reader"), "GET", &format!("{base}/annotations"), None).await.json()["totalCount"], 1);
    assert_eq!(call(&f, Some("owner"), "DELETE", &format!("{base}/reports/sonar"), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(call(&f, Some("reader"), "GET", &format!("{base}/reports/sonar"), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&f, Some("reader"), "GET", &format!("{base}/annotations"), None).await.json()["totalCount"], 0);
}

#[tokio::test]
async fn bad_reports_and_annotations_are_400_naming_the_field() {
    let f = fixture("", None);
    let ids = f.seed();
    let base = insights(&ids[0]);
    let r = call(&f, Some("reader"), "PUT", &format!("{}/reports/k", insights(SHA)), Some(json!({"title": "t"}))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "a commit not in the repository");
    let r = call(&f, Some("reader"), "PUT", &format!("{}/reports/k", insights("abc")), Some(json!({"title": "t"}))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let seven: Vec<Value> = (0..7).map(|i| json!({"title": format!("d{i}"), "value": i})).collect();
    for (body, field) in [
        (json!({}), "title"),
        (json!({"title": "t".repeat(451)}), "title"),
        (json!({"title": "t", "details": "d".repeat(2001)}), "details"),
        (json!({"title": "t", "result": "OK"}), "result"),
        (json!({"title": "t", "data": seven}), "data"),
        (json!({"title": "t", "data": [{"title": "x", "type": "NUMBER", "value": "two"}]}), "data.value"),
        (json!({"title": "t", "data": [{"title": "x", "type": "PERCENTAGE", "value": 120}]}), "data.value"),
        (json!({"title": "t", "data": [{"title": "x", "type": "LINK", "value": {"href": "javascript:x"}}]}), "data.value"),
        (json!({"title": "t", "data": [{"title": "x", "type": "COLOUR", "value": 1}]}), "data.type"),
        (json!({"title": "t", "data": [{"value": 1}]}), "data.title"),
        (json!({"title": "t", "logoUrl": "data:image/png;base64,AAAA"}), "logoUrl"),
    ] {
        let r = call(&f, Some("reader"), "PUT", &format!("{base}/reports/k"), Some(body.clone())).await;
        assert_eq!((r.status, r.error().2), (StatusCode::BAD_REQUEST, json!(field)), "{body}");
    }
    assert_eq!(call(&f, Some("reader"), "GET", &format!("{base}/reports"), None).await.json()["size"], 0);
    assert_eq!(call(&f, Some("reader"), "PUT", &format!("{base}/reports/k"), Some(json!({"title": "t"}))).await.status, StatusCode::OK);
    for (a, field) in [
        (json!({"severity": "LOW"}), "message"),
        (json!({"message": "m"}), "severity"),
        (json!({"message": "m", "severity": "CRITICAL"}), "severity"),
        (json!({"message": "m", "severity": "LOW", "type": "STYLE"}), "type"),
        (json!({"message": "m", "severity": "LOW", "line": -3}), "line"),
        (json!({"message": "m", "severity": "LOW", "path": "../etc/passwd"}), "path"),
    ] {
        let r = call(&f, Some("reader"), "POST", &format!("{base}/reports/k/annotations"), Some(json!({"annotations": [a.clone()]}))).await;
        assert_eq!((r.status, r.error().2), (StatusCode::BAD_REQUEST, json!(field)), "{a}");
    }
    let r = call(&f, Some("reader"), "POST", &format!("{base}/reports/nope/annotations"), Some(json!({"annotations": []}))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "annotations of a report that does not exist");
}

/// Every route of these families is routed, under `1.0` and `latest`.
#[tokio::test]
async fn every_builds_route_is_routed_under_both_versions() {
    let f = fixture("", None);
    let families = [
        (super::builds::BUILD_STATUS_ROUTES, "build-status"),
        (super::builds::REQUIRED_BUILDS_ROUTES, "required-builds"),
        (super::builds::INSIGHTS_ROUTES, "insights"),
    ];
    for (routes, family) in families {
        for (methods, path) in routes {
            let concrete = path
                .replace("{projectKey}", "TP")
                .replace("{repositorySlug}", "test")
                .replace("{commitId}", SHA)
                .replace("{id}", "1")
                .replace("{key}", "k")
                .replace("{externalId}", "e");
            for version in ["1.0", "latest"] {
                let uri = format!("/rest/{family}/{version}{concrete}");
                for m in *methods {
                    let r = call(&f, Some("admin"), m, &uri, if *m == "GET" || *m == "DELETE" { None } else { Some(json!({})) }).await;
                    assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{m} {uri}");
                    if r.status == StatusCode::NOT_FOUND {
                        assert!(!r.error().1.contains("jersey") && !r.error().0.contains("No REST resource"), "{m} {uri} is not routed");
                    }
                }
            }
        }
    }
}
