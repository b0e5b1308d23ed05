//! Build status, required builds and Code Insights against a real server on 127.0.0.1, posted
//! with the real `curl` binary as CI scripts post them: the statuses and reports show on the
//! commit list, the commit page, the pull request list, overview and diff, and a required build
//! blocks the merge until it succeeds.

use std::process::Command;

use serde_json::{Value, json};

use crate::support::{TestServer, password};

/// `curl` as `who` (`None`: anonymous); the status code and the body.
fn curl(t: &TestServer, who: Option<&str>, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-sS", "-X", method, "-o", "-", "-w", "\n%{http_code}"]);
    if let Some(u) = who {
        c.args(["-u", &format!("{u}:{}", password(u))]);
    }
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "--data-binary", &b.to_string()]);
    }
    let out = c.arg(format!("{}{path}", t.root)).output().expect("curl must be installed");
    assert!(out.status.success(), "curl {method} {path}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

fn ok(t: &TestServer, who: Option<&str>, method: &str, path: &str, body: Option<Value>, want: u16) -> String {
    let (code, text) = curl(t, who, method, path, body.as_ref());
    assert_eq!(code, want, "{method} {path}: {text}");
    text
}

const R: &str = "/rest/api/1.0/projects/PUB/repos/open";

#[test]
fn statuses_and_insights_posted_with_curl_show_on_the_pages_and_required_builds_gate_the_merge() {
    let t = TestServer::start();
    // PUB/open is public: its pages answer anonymous curl.
    let (dir, _) = t.seed("scm/PUB/open.git", 2);
    t.git_ok(&dir, &["checkout", "-q", "-b", "feature"]);
    t.commit(&dir, "app.rs", "fn main() {\n    let x = 1;\n}\n");
    t.git_ok(&dir, &["push", "-q", "origin", "feature"]);
    let tip = t.git_ok(&dir, &["rev-parse", "HEAD"]);

    // An admin requires `ci` on every branch; the writer opens a pull request into main.
    let cond = json!({"buildParentKeys": ["ci"], "refMatcher": {"id": "ANY_REF_MATCHER_ID", "type": {"id": "ANY_REF"}}});
    ok(&t, Some("admin"), "POST", "/rest/required-builds/1.0/projects/PUB/repos/open/condition", Some(cond), 200);
    let pr: Value = serde_json::from_str(&ok(
        &t,
        Some("writer"),
        "POST",
        &format!("{R}/pull-requests"),
        Some(json!({"title": "Add the app", "fromRef": {"id": "refs/heads/feature"}, "toRef": {"id": "refs/heads/main"}})),
        201,
    ))
    .unwrap();
    let n = pr["id"].as_i64().unwrap();
    let merge = format!("{R}/pull-requests/{n}/merge");
    let status: Value = serde_json::from_str(&ok(&t, Some("writer"), "GET", &merge, None, 200)).unwrap();
    assert_eq!(status["canMerge"], false, "{status}");
    assert!(status["vetoes"][0]["detailedMessage"].as_str().unwrap().contains("The required build ci has not run"), "{status}");

    // Jenkins reports a build in progress, as Jenkins posts it (buildNumber a number).
    let running = json!({"key": "ci", "state": "INPROGRESS", "url": "https://jenkins.example/job/app/7/", "name": "App build", "buildNumber": 7});
    ok(&t, Some("writer"), "POST", &format!("{R}/commits/{tip}/builds"), Some(running), 204);
    let (code, _) = curl(&t, Some("writer"), "POST", &format!("{merge}?version={}", pr["version"]), None);
    assert_eq!(code, 409, "a running build does not let it merge");
    // A bad post is refused and changes nothing.
    let (code, text) = curl(
        &t,
        Some("writer"),
        "POST",
        &format!("/rest/build-status/1.0/commits/{}", &tip[..12]),
        Some(&json!({"key": "ci", "state": "SUCCESSFUL", "url": "https://x.example"})),
    );
    assert_eq!(code, 400, "{text}");

    // SonarQube posts a report and an annotation on the new line.
    let report = json!({"title": "SonarQube", "result": "FAIL", "data": [{"title": "Bugs", "type": "NUMBER", "value": 1}]});
    ok(&t, Some("writer"), "PUT", &format!("/rest/insights/1.0/projects/PUB/repos/open/commits/{tip}/reports/sonar"), Some(report), 200);
    let ann = json!({"annotations": [{"path": "app.rs", "line": 2, "message": "x is never read", "severity": "MEDIUM", "type": "CODE_SMELL"}]});
    ok(&t, Some("writer"), "POST", &format!("/rest/insights/1.0/projects/PUB/repos/open/commits/{tip}/reports/sonar/annotations"), Some(ann), 204);

    // The pages show them.
    let commits = ok(&t, None, "GET", "/projects/PUB/repos/open/commits?until=feature", None, 200);
    assert!(commits.contains("build-inprogress") && commits.contains("Builds in progress: 0 of 1 passed"), "the commit list shows the build");
    let commit = ok(&t, None, "GET", &format!("/projects/PUB/repos/open/commits/{tip}"), None, 200);
    assert!(commit.contains("App build") && commit.contains("https://jenkins.example/job/app/7/") && commit.contains("#7"), "the commit page links the build");
    let list = ok(&t, None, "GET", "/projects/PUB/repos/open/pull-requests", None, 200);
    assert!(list.contains("build-inprogress"), "the pull request list shows the build");
    let overview = ok(&t, None, "GET", &format!("/projects/PUB/repos/open/pull-requests/{n}/overview"), None, 200);
    assert!(overview.contains("App build") && overview.contains("Code Insights") && overview.contains("SonarQube"), "the overview shows builds and reports");
    assert!(overview.contains("The required build ci is INPROGRESS"), "the overview says why it cannot merge");
    let diff = ok(&t, None, "GET", &format!("/projects/PUB/repos/open/pull-requests/{n}/diff"), None, 200);
    assert!(diff.contains("x is never read"), "the diff shows the annotation");

    // The build succeeds (same key: replaced) and the pull request merges.
    let done =
        json!({"key": "ci", "state": "SUCCESSFUL", "url": "https://jenkins.example/job/app/7/", "name": "App build", "buildNumber": "7", "duration": 42000});
    ok(&t, Some("writer"), "POST", &format!("/rest/build-status/1.0/commits/{tip}"), Some(done), 204);
    let stats: Value = serde_json::from_str(&ok(&t, Some("writer"), "GET", &format!("/rest/build-status/1.0/commits/stats/{tip}"), None, 200)).unwrap();
    assert_eq!((stats["successful"].as_i64(), stats["inProgress"].as_i64()), (Some(1), Some(1)), "legacy and repository statuses are both there");
    let status: Value = serde_json::from_str(&ok(&t, Some("writer"), "GET", &merge, None, 200)).unwrap();
    assert_eq!(status["canMerge"], true, "{status}");
    ok(&t, Some("writer"), "POST", &format!("{merge}?version={}", pr["version"]), None, 200);
    assert_eq!(t.server_rev("PUB", "open", "refs/heads/main^2").as_deref(), Some(tip.as_str()), "main has the merge of the source tip");
}
