//! Pull requests against a real server: the REST API as Bitbucket Server 8 serves it, merges
//! checked with git itself, rescoping by real pushes, the `refs/pull-requests/*` refs fetched by
//! real git, and a merge racing a push to its target.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::{TestServer, basic, password};

const R: &str = "/rest/api/1.0/projects/TP/repos/test";

/// One REST call as `who` (a fixture user); the status and the JSON body (`Null` if none).
fn call(t: &TestServer, method: &str, path: &str, who: &str, body: Option<Value>) -> (u16, Value) {
    let auth = basic(who, &password(who));
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    let mut headers = vec![("Authorization", auth.as_str())];
    if !text.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    let ctx = t.root.trim_start_matches("http://").split_once('/').map(|(_, p)| format!("/{p}")).unwrap_or_default();
    let r = t.http(method, &format!("{ctx}{path}"), &headers, text.as_bytes());
    let v = if r.body.is_empty() { Value::Null } else { serde_json::from_slice(&r.body).unwrap_or_else(|_| Value::String(r.text())) };
    (r.status, v)
}

fn ok(t: &TestServer, method: &str, path: &str, who: &str, body: Option<Value>, want: u16) -> Value {
    let (status, v) = call(t, method, path, who, body);
    assert_eq!(status, want, "{method} {path} as {who}: {v:#}");
    v
}

fn branch_ref(name: &str) -> Value {
    json!({"id": format!("refs/heads/{name}"), "repository": {"slug": "test", "project": {"key": "TP"}}})
}

/// TP/test with `main` (3 commits) and `feature` (one more commit changing `a.txt`); returns
/// the work directory.
fn repo_with_feature(t: &TestServer) -> PathBuf {
    let (dir, _) = t.seed("scm/TP/test.git", 3);
    t.commit(&dir, "a.txt", "one\ntwo\nthree\n");
    t.git_ok(&dir, &["push", "-q", "origin", "main"]);
    t.git_ok(&dir, &["checkout", "-q", "-b", "feature"]);
    t.commit(&dir, "a.txt", "one\nTWO\nthree\nfour\n");
    t.git_ok(&dir, &["push", "-q", "origin", "feature"]);
    t.git_ok(&dir, &["checkout", "-q", "main"]);
    dir
}

fn open_pr(t: &TestServer, from: &str, to: &str, reviewers: &[&str]) -> Value {
    let body = json!({
        "title": format!("Merge {from}"),
        "description": "Does a *thing*.",
        "fromRef": branch_ref(from),
        "toRef": branch_ref(to),
        "reviewers": reviewers.iter().map(|r| json!({"user": {"name": r}})).collect::<Vec<_>>(),
    });
    ok(t, "POST", &format!("{R}/pull-requests"), "writer", Some(body), 201)
}

fn rev(t: &TestServer, dir: &Path, r: &str) -> String {
    t.git_ok(dir, &["rev-parse", r])
}

#[test]
fn a_pull_request_is_opened_reviewed_commented_and_merged_with_bitbucket_shapes() {
    let t = TestServer::start();
    let dir = repo_with_feature(&t);
    let pr = open_pr(&t, "feature", "main", &["reader"]);
    assert_eq!(pr["id"], 1);
    assert_eq!(pr["version"], 0);
    assert_eq!(pr["state"], "OPEN");
    assert_eq!(pr["open"], true);
    assert_eq!(pr["fromRef"]["displayId"], "feature");
    assert_eq!(pr["toRef"]["latestCommit"].as_str().unwrap(), rev(&t, &dir, "main"));
    assert_eq!(pr["author"]["user"]["name"], "writer");
    assert_eq!(pr["author"]["role"], "AUTHOR");
    assert_eq!(pr["reviewers"][0]["user"]["name"], "reader");
    assert_eq!(pr["reviewers"][0]["status"], "UNAPPROVED");
    assert!(pr["links"]["self"][0]["href"].as_str().unwrap().ends_with("/projects/TP/repos/test/pull-requests/1"));

    // Listed, and got.
    let list = ok(&t, "GET", &format!("{R}/pull-requests"), "reader", None, 200);
    assert_eq!(list["size"], 1);
    assert_eq!(list["isLastPage"], true);
    assert_eq!(ok(&t, "GET", &format!("{R}/pull-requests/1"), "reader", None, 200)["title"], "Merge feature");

    // A stale version is refused and changes nothing; the current one works.
    let (s, e) = call(&t, "PUT", &format!("{R}/pull-requests/1"), "writer", Some(json!({"version": 7, "title": "x"})));
    assert_eq!(s, 409, "{e}");
    assert_eq!(e["errors"][0]["exceptionName"], "com.atlassian.bitbucket.pull.PullRequestOutOfDateException");
    let up = ok(&t, "PUT", &format!("{R}/pull-requests/1"), "writer", Some(json!({"version": 0, "title": "Better title"})), 200);
    assert_eq!((up["title"].as_str(), up["version"].as_i64()), (Some("Better title"), Some(1)));

    // The reviewer approves (stashy's spelling), the author cannot.
    let p = ok(&t, "PUT", &format!("{R}/pull-requests/1/participants/reader/"), "reader", Some(json!({"approved": true, "status": "approved"})), 200);
    assert_eq!((p["status"].as_str(), p["approved"].as_bool()), (Some("APPROVED"), Some(true)));
    let (s, _) = call(&t, "PUT", &format!("{R}/pull-requests/1/participants/writer"), "writer", Some(json!({"status": "APPROVED"})));
    assert_eq!(s, 400);

    // Comments: general, on a line, a reply; a line not in the diff is refused.
    let c = ok(&t, "POST", &format!("{R}/pull-requests/1/comments"), "reader", Some(json!({"text": "Looks good"})), 201);
    assert_eq!((c["version"].as_i64(), c["severity"].as_str()), (Some(0), Some("NORMAL")));
    let line = ok(
        &t,
        "POST",
        &format!("{R}/pull-requests/1/comments"),
        "reader",
        Some(json!({"text": "Why upper case?", "anchor": {"path": "a.txt", "line": 2, "lineType": "ADDED", "fileType": "TO"}})),
        201,
    );
    assert_eq!(line["anchor"]["path"], "a.txt");
    assert_eq!(line["anchor"]["line"], 2);
    let (s, e) = call(
        &t,
        "POST",
        &format!("{R}/pull-requests/1/comments"),
        "reader",
        Some(json!({"text": "?", "anchor": {"path": "a.txt", "line": 99, "lineType": "ADDED", "fileType": "TO"}})),
    );
    assert_eq!(s, 400, "{e}");
    let reply = ok(&t, "POST", &format!("{R}/pull-requests/1/comments"), "writer", Some(json!({"text": "Emphasis", "parent": {"id": line["id"]}})), 201);
    let thread = ok(&t, "GET", &format!("{R}/pull-requests/1/comments/{}", line["id"]), "reader", None, 200);
    assert_eq!(thread["comments"][0]["id"], reply["id"]);
    // Deleting a comment with replies is refused; an edit with a stale version too.
    let (s, _) = call(&t, "DELETE", &format!("{R}/pull-requests/1/comments/{}?version=0", line["id"]), "reader", None);
    assert_eq!(s, 409);
    let (s, _) = call(&t, "PUT", &format!("{R}/pull-requests/1/comments/{}", c["id"]), "reader", Some(json!({"version": 3, "text": "edited"})));
    assert_eq!(s, 409);
    let edited = ok(&t, "PUT", &format!("{R}/pull-requests/1/comments/{}", c["id"]), "reader", Some(json!({"version": 0, "text": "edited"})), 200);
    assert_eq!((edited["text"].as_str(), edited["version"].as_i64()), (Some("edited"), Some(1)));
    // Someone else's text is not theirs to edit.
    let (s, _) = call(&t, "PUT", &format!("{R}/pull-requests/1/comments/{}", c["id"]), "writer", Some(json!({"version": 1, "text": "mine now"})));
    assert_eq!(s, 403);

    // The diff in Bitbucket's JSON.
    let diff = ok(&t, "GET", &format!("{R}/pull-requests/1/diff"), "reader", None, 200);
    assert_eq!(diff["diffs"][0]["destination"]["toString"], "a.txt");
    let segs = &diff["diffs"][0]["hunks"][0]["segments"];
    assert!(segs.as_array().unwrap().iter().any(|s| s["type"] == "ADDED" && s["lines"][0]["line"] == "TWO"), "{segs:#}");
    let changes = ok(&t, "GET", &format!("{R}/pull-requests/1/changes"), "reader", None, 200);
    assert_eq!((changes["values"][0]["path"]["toString"].as_str(), changes["values"][0]["type"].as_str()), (Some("a.txt"), Some("MODIFY")));
    let commits = ok(&t, "GET", &format!("{R}/pull-requests/1/commits"), "reader", None, 200);
    assert_eq!(commits["values"][0]["id"].as_str().unwrap(), rev(&t, &dir, "feature"));

    // Merge: the reader may not, the writer may.
    let status = ok(&t, "GET", &format!("{R}/pull-requests/1/merge"), "reader", None, 200);
    assert_eq!((status["canMerge"].as_bool(), status["outcome"].as_str()), (Some(true), Some("CLEAN")));
    let (s, _) = call(&t, "POST", &format!("{R}/pull-requests/1/merge?version=2"), "reader", None);
    assert_eq!(s, 403);
    let current = ok(&t, "GET", &format!("{R}/pull-requests/1"), "writer", None, 200)["version"].as_i64().unwrap();
    let merged = ok(&t, "POST", &format!("{R}/pull-requests/1/merge?version={current}"), "writer", None, 200);
    assert_eq!(merged["state"], "MERGED");
    assert!(merged["closedDate"].as_i64().is_some());

    // git agrees: main is a merge commit of the old main and feature, with Bitbucket's message.
    let main = t.server_rev("TP", "test", "refs/heads/main").unwrap();
    assert_eq!(merged["properties"]["mergeCommit"]["id"].as_str().unwrap(), main);
    let repo = t.repo_dir("TP", "test");
    let parents = t.git_ok(&repo, &["rev-list", "--parents", "-n1", &main]);
    assert_eq!(parents.split(' ').skip(1).collect::<Vec<_>>(), [rev(&t, &dir, "main"), rev(&t, &dir, "feature")]);
    let msg = t.git_ok(&repo, &["log", "-1", "--format=%B%n%an", &main]);
    assert!(msg.starts_with("Merge pull request #1 in TP/test from feature to main"), "{msg}");
    assert!(msg.contains("Does a *thing*."), "{msg}");
    t.fsck("TP", "test");

    // The activity log, newest first.
    let acts = ok(&t, "GET", &format!("{R}/pull-requests/1/activities"), "reader", None, 200);
    let actions: Vec<&str> = acts["values"].as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(actions.first(), Some(&"MERGED"));
    assert_eq!(actions.last(), Some(&"OPENED"));
    for a in ["APPROVED", "COMMENTED", "UPDATED"] {
        assert!(actions.contains(&a), "{actions:?}");
    }
    // Merged is final.
    let (s, _) = call(&t, "POST", &format!("{R}/pull-requests/1/decline"), "writer", None);
    assert_eq!(s, 409);
}

#[test]
fn bad_pull_requests_get_bitbucket_errors_and_change_nothing() {
    let t = TestServer::start();
    repo_with_feature(&t);
    let path = format!("{R}/pull-requests");
    let cases = [
        (json!({"title": "x", "fromRef": branch_ref("nope"), "toRef": branch_ref("main")}), 409, "NoSuchBranchException"),
        (json!({"title": "x", "fromRef": branch_ref("main"), "toRef": branch_ref("main")}), 409, "InvalidPullRequestTargetException"),
        (json!({"title": "  ", "fromRef": branch_ref("feature"), "toRef": branch_ref("main")}), 400, "ArgumentValidationException"),
        (json!({"title": "x", "fromRef": branch_ref("main"), "toRef": branch_ref("feature")}), 409, "EmptyPullRequestException"),
        (
            json!({"title": "x", "fromRef": branch_ref("feature"), "toRef": branch_ref("main"), "reviewers": [{"user": {"name": "outsider"}}]}),
            409,
            "InvalidPullRequestReviewersException",
        ),
        (
            json!({"title": "x", "fromRef": branch_ref("feature"), "toRef": branch_ref("main"), "reviewers": [{"user": {"name": "writer"}}]}),
            409,
            "InvalidPullRequestReviewersException",
        ),
        (
            json!({"title": "x", "fromRef": branch_ref("feature"), "toRef": branch_ref("main"), "reviewers": [{"user": {"name": "ghost"}}]}),
            409,
            "InvalidPullRequestReviewersException",
        ),
    ];
    for (body, status, exception) in cases {
        let (s, e) = call(&t, "POST", &path, "writer", Some(body.clone()));
        assert_eq!(s, status, "{body}: {e}");
        assert!(e["errors"][0]["exceptionName"].as_str().unwrap().ends_with(exception), "{body}: {e}");
    }
    let (s, _) = call(&t, "POST", &path, "writer", Some(json!("not an object")));
    assert_eq!(s, 400);
    assert_eq!(ok(&t, "GET", &format!("{path}?state=ALL"), "writer", None, 200)["size"], 0, "nothing was created");

    // A duplicate names the one that exists.
    open_pr(&t, "feature", "main", &[]);
    let (s, e) = call(&t, "POST", &path, "writer", Some(json!({"title": "again", "fromRef": branch_ref("feature"), "toRef": branch_ref("main")})));
    assert_eq!(s, 409);
    assert!(e["errors"][0]["message"].as_str().unwrap().contains("#1"), "{e}");

    // Who sees what: anonymous 401, an outsider 404, an unknown pull request 404.
    let r = t.http("GET", &format!("{path}/1"), &[], b"");
    assert_eq!(r.status, 401);
    assert_eq!(call(&t, "GET", &format!("{path}/1"), "outsider", None).0, 404);
    assert_eq!(call(&t, "GET", &format!("{path}/2"), "writer", None).0, 404);
    assert_eq!(call(&t, "GET", &format!("{path}/abc"), "writer", None).0, 404);
    // Only the author or an admin deletes; a reader is refused.
    assert_eq!(call(&t, "DELETE", &format!("{path}/1"), "reader", Some(json!({"version": 0}))).0, 403);
    assert_eq!(call(&t, "DELETE", &format!("{path}/1"), "writer", Some(json!({"version": 0}))).0, 204);
    assert_eq!(call(&t, "GET", &format!("{path}/1"), "writer", None).0, 404);
    // Numbers are not reused.
    assert_eq!(open_pr(&t, "feature", "main", &[])["id"], 2);
}

#[test]
fn pull_request_refs_are_fetchable_and_follow_pushes_and_cannot_be_pushed() {
    let t = TestServer::start();
    let dir = repo_with_feature(&t);
    open_pr(&t, "feature", "main", &["reader"]);
    let from = rev(&t, &dir, "feature");
    let ls = t.git_ok(&dir, &["ls-remote", "origin"]);
    assert!(ls.contains(&format!("{from}\trefs/pull-requests/1/from")), "{ls}");
    assert!(ls.contains("refs/pull-requests/1/merge"), "{ls}");
    t.git_ok(&dir, &["fetch", "-q", "origin", "+refs/pull-requests/1/*:refs/remotes/pr/1/*"]);
    let merge = rev(&t, &dir, "refs/remotes/pr/1/merge");
    let parents = t.git_ok(&dir, &["rev-list", "--parents", "-n1", &merge]);
    assert!(parents.contains(&from) && parents.contains(&rev(&t, &dir, "main")), "{parents}");
    // A client may not write them.
    let err = t.git_fails(&dir, &["push", "origin", "main:refs/pull-requests/1/from"]);
    assert!(err.contains("hidden") || err.contains("rejected") || err.contains("denied"), "{err}");
    assert_eq!(t.server_rev("TP", "test", "refs/pull-requests/1/from").as_deref(), Some(from.as_str()));

    // A push to the source rescopes: new version, RESCOPED with the added commit, refs moved;
    // approvals reset when the repository asks for it.
    ok(&t, "POST", &format!("{R}/settings/pull-requests"), "admin", Some(json!({"unapproveOnUpdate": true})), 200);
    ok(&t, "PUT", &format!("{R}/pull-requests/1/participants/reader"), "reader", Some(json!({"status": "APPROVED"})), 200);
    t.git_ok(&dir, &["checkout", "-q", "feature"]);
    let added = t.commit(&dir, "b.txt", "b\n");
    t.git_ok(&dir, &["push", "-q", "origin", "feature"]);
    let pr = wait_for(&t, "/pull-requests/1", |pr| pr["fromRef"]["latestCommit"] == added.as_str());
    assert_eq!(pr["reviewers"][0]["status"], "UNAPPROVED", "{pr:#}");
    assert_eq!(t.server_rev("TP", "test", "refs/pull-requests/1/from").as_deref(), Some(added.as_str()));
    let acts = ok(&t, "GET", &format!("{R}/pull-requests/1/activities"), "reader", None, 200);
    let rescoped = acts["values"].as_array().unwrap().iter().find(|a| a["action"] == "RESCOPED").expect("a RESCOPED activity");
    assert_eq!(rescoped["added"]["commits"][0]["id"].as_str(), Some(added.as_str()));
    assert_eq!(rescoped["previousFromHash"].as_str().unwrap(), from);

    // Pushing the source into the target by hand marks it merged, and its refs go.
    t.git_ok(&dir, &["checkout", "-q", "main"]);
    t.git_ok(&dir, &["merge", "-q", "--no-edit", "feature"]);
    t.git_ok(&dir, &["push", "-q", "origin", "main"]);
    wait_for(&t, "/pull-requests/1", |pr| pr["state"] == "MERGED");
    // The refs go after the state is written (both follow the push): wait for them too.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while t.server_rev("TP", "test", "refs/pull-requests/1/from").is_some() {
        assert!(std::time::Instant::now() < deadline, "refs/pull-requests/1/from never went");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(t.server_rev("TP", "test", "refs/pull-requests/1/merge"), None);
}

/// Polls a pull request until `done` says so (rescoping runs after the push has answered).
fn wait_for(t: &TestServer, tail: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let pr = ok(t, "GET", &format!("{R}{tail}"), "writer", None, 200);
        if done(&pr) {
            return pr;
        }
        assert!(std::time::Instant::now() < deadline, "never happened: {pr:#}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn every_merge_strategy_makes_the_history_bitbucket_makes_and_a_conflict_is_a_veto() {
    let t = TestServer::start();
    let (dir, _) = t.seed("scm/TP/test.git", 1);
    let all = ["no-ff", "ff", "ff-only", "squash", "squash-ff-only", "rebase-no-ff", "rebase-ff-only"];
    let strategies: Vec<Value> = all.iter().map(|s| json!({"id": s, "enabled": true})).collect();
    let s = ok(
        &t,
        "POST",
        &format!("{R}/settings/pull-requests"),
        "admin",
        Some(json!({"mergeConfig": {"strategies": strategies, "defaultStrategy": {"id": "no-ff"}}})),
        200,
    );
    assert_eq!(s["mergeConfig"]["type"], "REPOSITORY");
    // The reader may read the settings but not change them; no enabled strategy is a 400.
    assert_eq!(call(&t, "GET", &format!("{R}/settings/pull-requests"), "reader", None).0, 200);
    assert_eq!(call(&t, "POST", &format!("{R}/settings/pull-requests"), "reader", Some(json!({"requiredApprovers": 1}))).0, 403);
    assert_eq!(call(&t, "POST", &format!("{R}/settings/pull-requests"), "admin", Some(json!({"mergeConfig": {"strategies": []}}))).0, 400);

    for (i, strategy) in all.iter().enumerate() {
        let branch = format!("topic-{i}");
        t.git_ok(&dir, &["fetch", "-q", "origin"]);
        t.git_ok(&dir, &["checkout", "-q", "-B", "main", "origin/main"]);
        t.git_ok(&dir, &["checkout", "-q", "-b", &branch]);
        t.commit(&dir, &format!("t{i}.txt"), "topic\n");
        t.commit(&dir, &format!("t{i}b.txt"), "topic b\n");
        t.git_ok(&dir, &["push", "-q", "origin", &branch]);
        let diverged = strategy.contains("only") && !strategy.starts_with("rebase");
        if *strategy != "ff" && !diverged {
            // The target gets a commit of its own, so only a real merge (or a rebase) joins them.
            t.git_ok(&dir, &["checkout", "-q", "main"]);
            t.commit(&dir, &format!("m{i}.txt"), "main\n");
            t.git_ok(&dir, &["push", "-q", "origin", "main"]);
        }
        let target_before = t.server_rev("TP", "test", "refs/heads/main").unwrap();
        let source = t.server_rev("TP", "test", &format!("refs/heads/{branch}")).unwrap();
        let pr = open_pr(&t, &branch, "main", &[]);
        let n = pr["id"].as_i64().unwrap();
        let merged = ok(&t, "POST", &format!("{R}/pull-requests/{n}/merge"), "writer", Some(json!({"strategyId": strategy})), 200);
        assert_eq!(merged["state"], "MERGED", "{strategy}");
        let repo = t.repo_dir("TP", "test");
        let tip = t.server_rev("TP", "test", "refs/heads/main").unwrap();
        let parents: Vec<String> = t.git_ok(&repo, &["rev-list", "--parents", "-n1", &tip]).split(' ').skip(1).map(str::to_owned).collect();
        let subject = t.git_ok(&repo, &["log", "-1", "--format=%s", &tip]);
        // The files of both sides are in the result, whatever the strategy.
        let files = t.git_ok(&repo, &["ls-tree", "--name-only", &tip]);
        assert!(files.contains(&format!("t{i}.txt")) && files.contains(&format!("t{i}b.txt")), "{strategy}: {files}");
        match *strategy {
            "no-ff" => {
                assert_eq!(parents, [target_before.clone(), source.clone()], "{strategy}");
                assert!(subject.starts_with(&format!("Merge pull request #{n} in TP/test from {branch} to main")), "{subject}");
            }
            "ff" | "ff-only" => assert_eq!(tip, source, "{strategy} fast-forwards"),
            "squash" | "squash-ff-only" => {
                assert_eq!(parents, std::slice::from_ref(&target_before), "{strategy}: one parent");
                assert!(subject.starts_with(&format!("Pull request #{n}: Merge {branch}")), "{subject}");
            }
            "rebase-no-ff" => {
                assert_eq!(parents.len(), 2, "{strategy}");
                assert_eq!(parents[0], target_before, "{strategy}");
                assert_ne!(parents[1], source, "{strategy}: the source was rebased");
            }
            "rebase-ff-only" => {
                assert_eq!(parents.len(), 1, "{strategy}");
                assert_eq!(t.git_ok(&repo, &["rev-parse", &format!("{tip}~2")]), target_before, "{strategy}: two rebased commits on the target");
            }
            _ => unreachable!(),
        }
        t.fsck("TP", "test");
    }

    // A conflict: both sides change the same line; merge status says so, the merge is refused
    // and main does not move.
    t.git_ok(&dir, &["fetch", "-q", "origin"]);
    t.git_ok(&dir, &["checkout", "-q", "-B", "main", "origin/main"]);
    t.git_ok(&dir, &["checkout", "-q", "-b", "clash"]);
    t.commit(&dir, "file0.txt", "theirs\n");
    t.git_ok(&dir, &["push", "-q", "origin", "clash"]);
    t.git_ok(&dir, &["checkout", "-q", "main"]);
    t.commit(&dir, "file0.txt", "ours\n");
    t.git_ok(&dir, &["push", "-q", "origin", "main"]);
    let before = t.server_rev("TP", "test", "refs/heads/main").unwrap();
    let pr = open_pr(&t, "clash", "main", &[]);
    let n = pr["id"].as_i64().unwrap();
    let status = ok(&t, "GET", &format!("{R}/pull-requests/{n}/merge"), "writer", None, 200);
    assert_eq!((status["canMerge"].as_bool(), status["conflicted"].as_bool(), status["outcome"].as_str()), (Some(false), Some(true), Some("CONFLICTED")));
    assert!(status["vetoes"][0]["detailedMessage"].as_str().unwrap().contains("file0.txt"), "{status}");
    let (s, e) = call(&t, "POST", &format!("{R}/pull-requests/{n}/merge"), "writer", None);
    assert_eq!(s, 409, "{e}");
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main").unwrap(), before);
    assert!(t.git_ok(&dir, &["ls-remote", "origin"]).contains(&format!("refs/pull-requests/{n}/from")));
    assert!(!t.git_ok(&dir, &["ls-remote", "origin"]).contains(&format!("refs/pull-requests/{n}/merge")), "no merge ref on a conflict");

    // Required approvals are a veto too.
    ok(&t, "POST", &format!("{R}/settings/pull-requests"), "admin", Some(json!({"requiredApprovers": 1})), 200);
    t.git_ok(&dir, &["checkout", "-q", "-b", "needs-review"]);
    t.commit(&dir, "r.txt", "r\n");
    t.git_ok(&dir, &["push", "-q", "origin", "needs-review"]);
    let pr = open_pr(&t, "needs-review", "main", &["reader"]);
    let n = pr["id"].as_i64().unwrap();
    let status = ok(&t, "GET", &format!("{R}/pull-requests/{n}/merge"), "writer", None, 200);
    assert_eq!(status["canMerge"], false, "{status}");
    assert_eq!(call(&t, "POST", &format!("{R}/pull-requests/{n}/merge"), "writer", None).0, 409);
    ok(&t, "POST", &format!("{R}/pull-requests/{n}/approve"), "reader", None, 200);
    assert_eq!(ok(&t, "GET", &format!("{R}/pull-requests/{n}/merge"), "writer", None, 200)["canMerge"], true);
    ok(&t, "POST", &format!("{R}/pull-requests/{n}/merge"), "writer", None, 200);
}

#[test]
fn a_push_racing_a_merge_never_loses_either_and_the_loser_is_told() {
    let t = TestServer::start();
    let (dir, _) = t.seed("scm/TP/test.git", 1);
    let mut merge_won = 0;
    for i in 0..20 {
        t.git_ok(&dir, &["fetch", "-q", "origin"]);
        t.git_ok(&dir, &["checkout", "-q", "-B", "main", "origin/main"]);
        t.git_ok(&dir, &["checkout", "-q", "-b", &format!("race-{i}")]);
        t.commit(&dir, &format!("race{i}.txt"), "x\n");
        t.git_ok(&dir, &["push", "-q", "origin", &format!("race-{i}")]);
        t.git_ok(&dir, &["checkout", "-q", "main"]);
        let pushed = t.commit(&dir, &format!("direct{i}.txt"), "y\n");
        let n = open_pr(&t, &format!("race-{i}"), "main", &[])["id"].as_i64().unwrap();
        let before = t.server_rev("TP", "test", "refs/heads/main").unwrap();
        let (merge, push) = std::thread::scope(|s| {
            let m = s.spawn(|| call(&t, "POST", &format!("{R}/pull-requests/{n}/merge"), "writer", None));
            let p = s.spawn(|| t.git(&dir, &["push", "origin", "main"]));
            (m.join().unwrap(), p.join().unwrap())
        });
        let tip = t.server_rev("TP", "test", "refs/heads/main").unwrap();
        let repo = t.repo_dir("TP", "test");
        match (merge.0, push.status.success()) {
            (200, false) => {
                merge_won += 1;
                let err = String::from_utf8_lossy(&push.stderr);
                assert!(err.contains("rejected") || err.contains("fetch first") || err.contains("non-fast-forward"), "the push was told: {err}");
                assert_ne!(tip, before);
                assert_eq!(merge.1["properties"]["mergeCommit"]["id"].as_str(), Some(tip.as_str()));
            }
            (409, true) => {
                assert_eq!(tip, pushed, "the push's commit is the tip");
                let msg = merge.1["errors"][0]["message"].as_str().unwrap();
                assert!(msg.contains("changed by someone else") || msg.contains("out-of-date") || msg.contains("version"), "the merge was told: {msg}");
                // The pull request is still open and can merge now.
                ok(&t, "POST", &format!("{R}/pull-requests/{n}/merge"), "writer", None, 200);
            }
            (200, true) => {
                // The push got in first and the merge then went on top of it: both are there.
                let tip_parents = t.git_ok(&repo, &["rev-list", "--parents", "-n1", &tip]);
                assert!(tip_parents.contains(&pushed), "the merge is on top of the push: {tip_parents}");
            }
            other => panic!("iteration {i}: merge {} {:?}, push {:?}: {}", other.0, merge.1, push.status, String::from_utf8_lossy(&push.stderr)),
        }
        // Nothing was lost: git's own check, and the pull request is merged in the end.
        assert_eq!(ok(&t, "GET", &format!("{R}/pull-requests/{n}"), "writer", None, 200)["state"], "MERGED");
        t.git_ok(&repo, &["fsck", "--strict", "--no-progress"]);
        t.git_ok(&dir, &["fetch", "-q", "origin"]);
        t.git_ok(&dir, &["merge-base", "--is-ancestor", &format!("origin/race-{i}"), "origin/main"]);
    }
    eprintln!("the merge won {merge_won} of 20 races");
}

#[test]
fn the_dashboard_and_inbox_list_what_waits_on_the_signed_in_user() {
    let t = TestServer::start();
    repo_with_feature(&t);
    open_pr(&t, "feature", "main", &["reader"]);
    let dash = ok(&t, "GET", "/rest/api/1.0/dashboard/pull-requests?role=REVIEWER", "reader", None, 200);
    assert_eq!(dash["size"], 1);
    assert_eq!(ok(&t, "GET", "/rest/api/1.0/dashboard/pull-requests?role=AUTHOR", "reader", None, 200)["size"], 0);
    assert_eq!(ok(&t, "GET", "/rest/api/1.0/dashboard/pull-requests?role=AUTHOR", "writer", None, 200)["size"], 1);
    assert_eq!(ok(&t, "GET", "/rest/api/1.0/inbox/pull-requests/count", "reader", None, 200)["count"], 1);
    ok(&t, "PUT", &format!("{R}/pull-requests/1/participants/reader"), "reader", Some(json!({"status": "NEEDS_WORK"})), 200);
    assert_eq!(ok(&t, "GET", "/rest/api/1.0/inbox/pull-requests/count", "reader", None, 200)["count"], 0);
    assert_eq!(ok(&t, "GET", "/rest/api/1.0/dashboard/pull-requests?participantStatus=NEEDS_WORK", "reader", None, 200)["size"], 1);
    // Anonymous callers have no dashboard; an outsider sees nothing of TP.
    assert_eq!(t.http("GET", "/rest/api/1.0/dashboard/pull-requests", &[], b"").status, 401);
    assert_eq!(ok(&t, "GET", "/rest/api/1.0/dashboard/pull-requests", "outsider", None, 200)["size"], 0);
}

#[test]
fn line_comments_follow_their_line_through_a_rescope_or_are_orphaned() {
    let t = TestServer::start();
    let (dir, _) = t.seed("scm/TP/test.git", 1);
    t.commit(&dir, "c.txt", "a\nb\nc\nd\ne\n");
    t.git_ok(&dir, &["push", "-q", "origin", "main"]);
    t.git_ok(&dir, &["checkout", "-q", "-b", "feature"]);
    t.commit(&dir, "c.txt", "a\nb\nKEEP\nc\nd\nGOES\ne\n");
    t.git_ok(&dir, &["push", "-q", "origin", "feature"]);
    open_pr(&t, "feature", "main", &["reader"]);
    let anchor = |line: u32| json!({"path": "c.txt", "line": line, "lineType": "ADDED", "fileType": "TO"});
    let keep = ok(&t, "POST", &format!("{R}/pull-requests/1/comments"), "reader", Some(json!({"text": "keep", "anchor": anchor(3)})), 201);
    let goes = ok(&t, "POST", &format!("{R}/pull-requests/1/comments"), "reader", Some(json!({"text": "goes", "anchor": anchor(6)})), 201);
    let general = ok(&t, "POST", &format!("{R}/pull-requests/1/comments"), "reader", Some(json!({"text": "general"})), 201);

    // Two lines are added above KEEP, and GOES is taken out again.
    t.commit(&dir, "c.txt", "new1\nnew2\na\nb\nKEEP\nc\nd\ne\n");
    t.git_ok(&dir, &["push", "-q", "origin", "feature"]);
    let head = rev(&t, &dir, "feature");
    wait_for(&t, "/pull-requests/1", |pr| pr["fromRef"]["latestCommit"] == head.as_str());
    let got = |c: &Value| ok(&t, "GET", &format!("{R}/pull-requests/1/comments/{}", c["id"]), "reader", None, 200);
    let k = got(&keep);
    assert_eq!((k["anchor"]["line"].as_u64(), k["anchor"]["orphaned"].as_bool()), (Some(5), Some(false)), "{k:#}");
    assert_eq!(got(&goes)["anchor"]["orphaned"], true);
    assert!(got(&general).get("anchor").is_none());
    // Listing: active ones by default, the orphaned on request.
    let texts = |q: &str| -> Vec<String> {
        ok(&t, "GET", &format!("{R}/pull-requests/1/comments?path=c.txt{q}"), "reader", None, 200)["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["text"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(texts(""), ["keep"]);
    assert_eq!(texts("&anchorState=ORPHANED"), ["goes"]);
    assert_eq!(texts("&anchorState=ALL"), ["keep", "goes"]);

    // The diff's options: no context, one path, the raw text; then a merge that deletes the
    // source branch.
    let d = ok(&t, "GET", &format!("{R}/pull-requests/1/diff/c.txt?contextLines=0"), "reader", None, 200);
    assert_eq!(d["contextLines"], 0);
    let kinds: Vec<&str> =
        d["diffs"][0]["hunks"].as_array().unwrap().iter().flat_map(|h| h["segments"].as_array().unwrap()).map(|s| s["type"].as_str().unwrap()).collect();
    assert!(kinds.iter().all(|k| *k == "ADDED"), "{kinds:?}");
    let raw = t.http("GET", &format!("{R}/pull-requests/1/diff"), &[("Authorization", &basic("reader", &password("reader"))), ("Accept", "text/plain")], b"");
    assert_eq!(raw.status, 200);
    assert!(raw.text().starts_with("diff --git a/c.txt b/c.txt"), "{}", raw.text());
    assert_eq!(call(&t, "GET", &format!("{R}/pull-requests/1/diff?whitespace=bogus"), "reader", None).0, 400);
    ok(&t, "POST", &format!("{R}/pull-requests/1/merge"), "writer", Some(json!({"deleteSourceRef": true})), 200);
    assert_eq!(t.server_rev("TP", "test", "refs/heads/feature"), None, "the source branch was deleted");
}

/// A branch `name` with one commit off main, and a pull request from it reviewed by `reader` and
/// `admin`; its number.
fn reviewed_topic(t: &TestServer, dir: &Path, name: &str) -> i64 {
    t.git_ok(dir, &["fetch", "-q", "origin"]);
    t.git_ok(dir, &["checkout", "-q", "-B", name, "origin/main"]);
    t.commit(dir, &format!("{name}.txt"), "topic\n");
    t.git_ok(dir, &["push", "-q", "origin", name]);
    open_pr(t, name, "main", &["reader", "admin"])["id"].as_i64().unwrap()
}

/// GET …/merge names the veto and POST …/merge refuses with it (and moves nothing).
fn vetoed(t: &TestServer, n: i64, summary: &str) {
    let status = ok(t, "GET", &format!("{R}/pull-requests/{n}/merge"), "writer", None, 200);
    assert_eq!(status["canMerge"], false, "{status:#}");
    let summaries: Vec<&str> = status["vetoes"].as_array().unwrap().iter().filter_map(|v| v["summaryMessage"].as_str()).collect();
    assert_eq!(summaries, [summary], "{status:#}");
    assert!(status["vetoes"][0]["detailedMessage"].as_str().is_some_and(|d| !d.is_empty()));
    let before = t.server_rev("TP", "test", "refs/heads/main");
    let (s, e) = call(t, "POST", &format!("{R}/pull-requests/{n}/merge"), "writer", None);
    assert_eq!(s, 409, "{e:#}");
    assert_eq!(e["errors"][0]["exceptionName"], "com.atlassian.bitbucket.pull.PullRequestMergeVetoedException");
    assert!(e["errors"][0]["message"].as_str().unwrap().contains(summary), "{e:#}");
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main"), before);
}

fn mergeable(t: &TestServer, n: i64) {
    let status = ok(t, "GET", &format!("{R}/pull-requests/{n}/merge"), "writer", None, 200);
    assert_eq!((status["canMerge"].as_bool(), status["vetoes"].as_array().map(Vec::len)), (Some(true), Some(0)), "{status:#}");
}

fn review(t: &TestServer, n: i64, who: &str, status: &str) {
    ok(t, "PUT", &format!("{R}/pull-requests/{n}/participants/{who}"), who, Some(json!({ "status": status })), 200);
}

/// Each merge check, one at a time, set where `settings` points (a project's or a repository's
/// settings): its veto while it stands, none once it is met, and the merge goes through.
fn each_merge_check_vetoes_until_met(t: &TestServer, dir: &Path, settings: &str, scope: &str) {
    let off = json!({"requiredApprovers": 0, "requiredAllApprovers": false, "requiredNoNeedsWork": false, "requiredAllTasksComplete": false});
    let set = |check: Value| {
        let mut body = off.clone();
        body.as_object_mut().unwrap().extend(check.as_object().unwrap().clone());
        let s = ok(t, "POST", settings, "admin", Some(body), 200);
        assert_eq!(s["mergeConfig"]["type"], scope, "{s:#}");
        assert_eq!(ok(t, "GET", &format!("{R}/settings/pull-requests"), "reader", None, 200)["mergeConfig"]["type"], scope, "what the repository uses");
    };
    let tag = scope.to_ascii_lowercase();

    // Minimum approvals: one of the two reviewers.
    set(json!({"requiredApprovers": 1}));
    let n = reviewed_topic(t, dir, &format!("{tag}-approvals"));
    vetoed(t, n, "Not all required reviewers have approved yet");
    review(t, n, "reader", "APPROVED");
    mergeable(t, n);
    ok(t, "POST", &format!("{R}/pull-requests/{n}/merge"), "writer", None, 200);

    // Every reviewer: one approval is not enough.
    set(json!({"requiredAllApprovers": true}));
    let n = reviewed_topic(t, dir, &format!("{tag}-all"));
    review(t, n, "reader", "APPROVED");
    vetoed(t, n, "Not all reviewers have approved yet");
    review(t, n, "admin", "APPROVED");
    mergeable(t, n);
    ok(t, "POST", &format!("{R}/pull-requests/{n}/merge"), "writer", None, 200);

    // No NEEDS_WORK: one reviewer's is enough to stop it, and names them.
    set(json!({"requiredNoNeedsWork": true}));
    let n = reviewed_topic(t, dir, &format!("{tag}-needs-work"));
    mergeable(t, n);
    review(t, n, "reader", "NEEDS_WORK");
    vetoed(t, n, "Requires all reviewers to not have a Needs work status");
    let status = ok(t, "GET", &format!("{R}/pull-requests/{n}/merge"), "writer", None, 200);
    assert!(status["vetoes"][0]["detailedMessage"].as_str().unwrap().contains("reader"), "{status:#}");
    review(t, n, "reader", "UNAPPROVED");
    mergeable(t, n);
    ok(t, "POST", &format!("{R}/pull-requests/{n}/merge"), "writer", None, 200);

    // Tasks: an open one stops it; resolved, it merges.
    set(json!({"requiredAllTasksComplete": true}));
    let n = reviewed_topic(t, dir, &format!("{tag}-tasks"));
    let task = ok(t, "POST", &format!("{R}/pull-requests/{n}/comments"), "reader", Some(json!({"text": "Add a test", "severity": "BLOCKER"})), 201);
    vetoed(t, n, "Not all tasks have been resolved");
    let id = task["id"].as_i64().unwrap();
    ok(t, "PUT", &format!("{R}/pull-requests/{n}/comments/{id}"), "writer", Some(json!({"version": task["version"], "state": "RESOLVED"})), 200);
    mergeable(t, n);
    ok(t, "POST", &format!("{R}/pull-requests/{n}/merge"), "writer", None, 200);
}

#[test]
fn each_merge_check_vetoes_at_the_project_and_at_the_repository_and_a_repository_of_its_own_overrides_its_project() {
    let t = TestServer::start();
    let (dir, _) = t.seed("scm/TP/test.git", 1);
    let project = "/rest/api/1.0/projects/TP/settings/pull-requests";
    // Before anything is saved: the defaults, everywhere.
    assert_eq!(ok(&t, "GET", project, "reader", None, 200)["mergeConfig"]["type"], "DEFAULT");
    assert_eq!(ok(&t, "GET", &format!("{R}/settings/pull-requests"), "reader", None, 200)["mergeConfig"]["type"], "DEFAULT");
    // Project settings take a project admin; the longer path with the SCM is the same resource.
    assert_eq!(call(&t, "POST", project, "writer", Some(json!({"requiredApprovers": 1}))).0, 403);
    assert_eq!(call(&t, "GET", project, "outsider", None).0, 404);
    assert_eq!(call(&t, "GET", &format!("{project}/hg"), "reader", None).0, 400);
    assert_eq!(call(&t, "POST", project, "admin", Some(json!({"mergeConfig": {"strategies": []}}))).0, 400);

    each_merge_check_vetoes_until_met(&t, &dir, project, "PROJECT");
    let read = ok(&t, "GET", &format!("{project}/git"), "reader", None, 200);
    assert_eq!((read["mergeConfig"]["type"].as_str(), read["requiredAllTasksComplete"].as_bool()), (Some("PROJECT"), Some(true)));

    // The repository's first save starts from the project's settings and stands on its own.
    let own = ok(&t, "POST", &format!("{R}/settings/pull-requests"), "admin", Some(json!({"requiredApprovers": 2})), 200);
    assert_eq!(own["mergeConfig"]["type"], "REPOSITORY");
    assert_eq!((own["requiredApprovers"].as_i64(), own["requiredAllTasksComplete"].as_bool()), (Some(2), Some(true)), "{own:#}");
    ok(&t, "POST", project, "admin", Some(json!({"requiredAllTasksComplete": false, "requiredNoNeedsWork": true})), 200);
    let own = ok(&t, "GET", &format!("{R}/settings/pull-requests"), "reader", None, 200);
    assert_eq!(
        (own["requiredAllTasksComplete"].as_bool(), own["requiredNoNeedsWork"].as_bool()),
        (Some(true), Some(false)),
        "the project's change does not reach it"
    );
    // Another repository of the project still uses the project's.
    ok(&t, "POST", "/rest/api/1.0/projects/TP/repos", "admin", Some(json!({"name": "second"})), 201);
    let second = ok(&t, "GET", "/rest/api/1.0/projects/TP/repos/second/settings/pull-requests", "admin", None, 200);
    assert_eq!((second["mergeConfig"]["type"].as_str(), second["requiredNoNeedsWork"].as_bool()), (Some("PROJECT"), Some(true)));

    each_merge_check_vetoes_until_met(&t, &dir, &format!("{R}/settings/pull-requests"), "REPOSITORY");
}
