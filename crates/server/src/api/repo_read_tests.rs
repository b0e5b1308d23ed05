//! Handler tests for reading a repository beyond browse and commits: the `latest` alias and
//! `/rest/capabilities`, changes, compare, diffs, a commit's pull requests, blame, last-modified
//! and archives, through `app()` with the fixture of [`super::tests`].

use http::StatusCode;
use serde_json::{Value, json};

use super::tests::{Fixture, basic, fixture};

const R: &str = "/projects/TP/repos/test";

#[tokio::test]
async fn latest_answers_as_the_version_in_every_family() {
    let f = fixture("/stash", None);
    let ids = f.seed();
    let auth = || Some(basic("reader", "reader-password"));
    for path in ["/projects/TP", "/projects/TP/repos/test/commits?limit=2", "/projects/TP/repos/test/branches"] {
        let one = f.raw("GET", &format!("/stash/rest/api/1.0{path}"), auth(), None).await;
        let latest = f.raw("GET", &format!("/stash/rest/api/latest{path}"), auth(), None).await;
        assert_eq!(one.status, StatusCode::OK, "{path}");
        assert_eq!((latest.status, latest.json()), (one.status, one.json()), "{path}");
    }
    let c = f.raw("GET", &format!("/stash/rest/api/latest{R}/commits/{}", ids[0]), auth(), None).await;
    assert_eq!(c.json()["id"], json!(ids[0]));
    // Branch permissions are version 2.0: `latest` is that one, not 1.0.
    let r = f.raw("GET", "/stash/rest/branch-permissions/latest/projects/TP/restrictions", Some(basic("owner", "owner-password")), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["values"].is_array());
    // Errors stay Bitbucket's; the query string survives the rewrite.
    let r = f.raw("GET", "/stash/rest/api/latest/projects?limit=x", auth(), None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.error().2, json!("limit"));
    let r = f.raw("GET", "/stash/rest/api/latest/no/such/thing", auth(), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.error().0.contains("/stash/rest/api/1.0/no/such/thing"), "{:?}", r.error());
}

#[tokio::test]
async fn capabilities_answer_anyone_with_the_application_and_links() {
    let f = fixture("/stash", Some("https://git.example.com/stash"));
    let r = f.raw("GET", "/stash/rest/capabilities", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/json;charset=UTF-8"));
    let v = r.json();
    assert_eq!(v["application"], "stash");
    assert_eq!(v["capabilities"]["webhooks"], "https://git.example.com/stash/rest/webhooks/latest/capabilities");
    assert_eq!(v["capabilities"]["build"], "https://git.example.com/stash/rest/api/latest/build/capabilities");
    assert_eq!(v["links"]["self"][0]["href"], "https://git.example.com/stash/rest/capabilities");
    // Wrong credentials do not matter here, as for the probe.
    assert_eq!(f.raw("GET", "/stash/rest/capabilities", Some(basic("admin", "wrong")), None).await.status, StatusCode::OK);
    // Where the webhooks link points answers, under `latest` too: the event keys.
    let w = f.raw("GET", "/stash/rest/webhooks/latest/capabilities", None, None).await;
    assert_eq!(w.status, StatusCode::OK);
    let events = w.json()["events"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert!(events.iter().any(|e| e == "repo:refs_changed") && events.iter().any(|e| e == "pr:opened"), "{events:?}");
    // And the build link.
    assert_eq!(f.raw("GET", "/stash/rest/api/latest/build/capabilities", Some(basic("admin", "admin-password")), None).await.status, StatusCode::OK);
}

/// The commits of [`history`], by name.
struct History {
    /// README.md, old.txt and `many/f00.txt` … `many/f29.txt` (32 files).
    c1: String,
    /// README.md's second line changed.
    c2: String,
    /// old.txt renamed to new.txt (main).
    c3: String,
    /// On `topic`, from c2: topic.txt added.
    c4: String,
}

/// Replaces TP/test's history with [`History`]'s commits: `main` at c3, `topic` at c4.
fn history(f: &Fixture) -> History {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    f.git(w, &["init", "-q", "-b", "main"]);
    let write = |name: &str, text: &str| {
        let p = w.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("README.md", "a\nb\nc\n");
    write("old.txt", "hello\nthis file moves\nbut keeps its lines\n");
    for i in 0..30 {
        write(&format!("many/f{i:02}.txt"), &format!("file {i}\n"));
    }
    f.git(w, &["add", "-A"]);
    f.git(w, &["commit", "-q", "-m", "first"]);
    let c1 = f.git(w, &["rev-parse", "HEAD"]);
    write("README.md", "a\nB\nc\n");
    f.git(w, &["commit", "-q", "-am", "second"]);
    let c2 = f.git(w, &["rev-parse", "HEAD"]);
    f.git(w, &["mv", "old.txt", "new.txt"]);
    f.git(w, &["commit", "-q", "-m", "rename"]);
    let c3 = f.git(w, &["rev-parse", "HEAD"]);
    f.git(w, &["checkout", "-q", "-b", "topic", &c2]);
    write("topic.txt", "topic\n");
    f.git(w, &["add", "topic.txt"]);
    f.git(w, &["commit", "-q", "-m", "topic"]);
    let c4 = f.git(w, &["rev-parse", "HEAD"]);
    let repo = f.server.store().repo(&trove_store::Owner::parse("TP").unwrap(), &trove_store::RepoSlug::parse("test").unwrap()).unwrap().unwrap();
    let dir = f.server.store().repo_path(&repo);
    f.git(w, &["push", "-q", "-f", dir.to_str().unwrap(), "main", "topic"]);
    History { c1, c2, c3, c4 }
}

fn paths(page: &Value) -> Vec<String> {
    page["values"].as_array().unwrap().iter().map(|c| c["path"]["toString"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_commits_changes_are_paged_against_its_parent_or_since() {
    let f = fixture("", None);
    let h = history(&f);
    // The root commit: every file added, against the empty tree; 32 files over two pages.
    let first = f.get(Some("reader"), &format!("{R}/commits/{}/changes", h.c1)).await;
    assert_eq!(first.status, StatusCode::OK);
    let v = first.json();
    assert_eq!((v["size"].as_u64(), v["isLastPage"].as_bool(), v["nextPageStart"].as_u64()), (Some(25), Some(false), Some(25)), "{v}");
    assert_eq!(v["toHash"], json!(h.c1));
    assert!(v["values"].as_array().unwrap().iter().all(|c| c["type"] == "ADD" && c["nodeType"] == "FILE"));
    let second = f.get(Some("reader"), &format!("{R}/commits/{}/changes?start=25", h.c1)).await.json();
    assert_eq!((second["size"].as_u64(), second["isLastPage"].as_bool()), (Some(7), Some(true)));
    assert!(second.get("nextPageStart").is_none());
    let mut all = paths(&v);
    all.extend(paths(&second));
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 32, "no file twice, none left out");
    // A commit against its parent; a branch name works as the id.
    let c = f.get(Some("reader"), &format!("{R}/commits/main/changes")).await.json();
    assert_eq!((c["fromHash"].as_str(), c["toHash"].as_str()), (Some(h.c2.as_str()), Some(h.c3.as_str())));
    let rename = &c["values"][0];
    assert_eq!(
        (rename["type"].as_str(), rename["path"]["toString"].as_str(), rename["srcPath"]["toString"].as_str()),
        (Some("MOVE"), Some("new.txt"), Some("old.txt"))
    );
    // `…/changes?since=&until=`.
    let r = f.get(Some("reader"), &format!("{R}/changes?since={}&until=main", h.c1)).await.json();
    assert_eq!(paths(&r), ["README.md", "new.txt"]);
    assert_eq!(r["values"][0]["type"], "MODIFY");
    let r = f.get(Some("reader"), &format!("{R}/changes?until={}", h.c2)).await.json();
    assert_eq!((paths(&r), r["fromHash"].as_str()), (vec!["README.md".to_owned()], Some(h.c1.as_str())), "since defaults to the parent");
    // Bad input and unknown commits.
    let r = f.get(Some("reader"), &format!("{R}/changes")).await;
    assert_eq!((r.status, r.error().2), (StatusCode::BAD_REQUEST, json!("until")));
    let r = f.get(Some("reader"), &format!("{R}/commits/0123456789abcdef/changes")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.error().1.contains("NoSuchCommit"));
    assert_eq!(f.get(Some("reader"), &format!("{R}/changes?until=main&since=nope")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.get(Some("reader"), &format!("{R}/changes?until=main&limit=-1")).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(f.get(Some("outsider"), &format!("{R}/changes?until=main")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.get(None, &format!("{R}/changes?until=main")).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn diffs_of_commits_and_ranges_have_bitbucket_shapes() {
    let f = fixture("", None);
    let h = history(&f);
    let d = f.get(Some("reader"), &format!("{R}/commits/{}/diff", h.c2)).await;
    assert_eq!(d.status, StatusCode::OK);
    let d = d.json();
    assert_eq!((d["fromHash"].as_str(), d["toHash"].as_str()), (Some(h.c1.as_str()), Some(h.c2.as_str())));
    assert_eq!((d["contextLines"].as_u64(), d["whitespace"].as_str(), d["truncated"].as_bool()), (Some(10), Some("SHOW"), Some(false)));
    let file = &d["diffs"][0];
    assert_eq!((file["source"]["toString"].as_str(), file["destination"]["toString"].as_str()), (Some("README.md"), Some("README.md")));
    let segs: Vec<(String, Vec<String>)> = file["hunks"][0]["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["type"].as_str().unwrap().to_owned(), s["lines"].as_array().unwrap().iter().map(|l| l["line"].as_str().unwrap().to_owned()).collect()))
        .collect();
    let want: Vec<(String, Vec<String>)> = [("CONTEXT", vec!["a"]), ("REMOVED", vec!["b"]), ("ADDED", vec!["B"]), ("CONTEXT", vec!["c"])]
        .into_iter()
        .map(|(t, l)| (t.to_owned(), l.into_iter().map(str::to_owned).collect()))
        .collect();
    assert_eq!(segs, want);
    let removed = &file["hunks"][0]["segments"][1]["lines"][0];
    assert_eq!((removed["source"].as_u64(), removed["destination"].as_u64()), (Some(2), Some(2)));
    // contextLines, and one path of a range.
    let d = f.get(Some("reader"), &format!("{R}/commits/{}/diff/README.md?contextLines=0", h.c2)).await.json();
    assert_eq!(d["contextLines"], 0);
    assert_eq!(d["diffs"][0]["hunks"][0]["segments"].as_array().unwrap().len(), 2, "no context lines");
    let d = f.get(Some("reader"), &format!("{R}/diff/README.md?since={}&until=main", h.c1)).await.json();
    assert_eq!(d["diffs"].as_array().unwrap().len(), 1);
    let d = f.get(Some("reader"), &format!("{R}/diff?since={}&until=main", h.c1)).await.json();
    assert_eq!(d["diffs"].as_array().unwrap().len(), 2, "README.md and the rename");
    // A rename's diff found from the new path with srcPath.
    let d = f.get(Some("reader"), &format!("{R}/commits/{}/diff/new.txt?srcPath=old.txt", h.c3)).await.json();
    assert_eq!((d["diffs"][0]["source"]["toString"].as_str(), d["diffs"][0]["destination"]["toString"].as_str()), (Some("old.txt"), Some("new.txt")));
    // The root commit's diff adds every file: source is null.
    let d = f.get(Some("reader"), &format!("{R}/commits/{}/diff/README.md", h.c1)).await.json();
    assert!(d["diffs"][0]["source"].is_null() && d["diffs"][0]["destination"]["toString"] == "README.md", "{d}");
    // Text when asked for.
    let r = f.raw("GET", &format!("/rest/api/1.0{R}/commits/{}/diff", h.c2), Some(basic("reader", "reader-password")), None).await;
    assert!(r.json()["diffs"].is_array());
    let mut req = http::Request::builder().uri(format!("/rest/api/1.0{R}/commits/{}/diff", h.c2)).header(http::header::ACCEPT, "text/plain");
    req = req.header(http::header::AUTHORIZATION, basic("reader", "reader-password"));
    let resp = tower::ServiceExt::oneshot(crate::app(&f.server), req.body(axum::body::Body::empty()).unwrap()).await.unwrap();
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    assert!(String::from_utf8_lossy(&text).contains("-b\n+B\n"));
    // Bad input.
    for (q, ctx) in [("contextLines=x", "contextLines"), ("whitespace=some", "whitespace")] {
        let r = f.get(Some("reader"), &format!("{R}/commits/{}/diff?{q}", h.c2)).await;
        assert_eq!((r.status, r.error().2), (StatusCode::BAD_REQUEST, json!(ctx)), "{q}");
    }
    let r = f.get(Some("reader"), &format!("{R}/diff/README.md")).await;
    assert_eq!((r.status, r.error().2), (StatusCode::BAD_REQUEST, json!("until")));
    assert_eq!(f.get(Some("reader"), &format!("{R}/commits/nope/diff")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.get(Some("reader"), &format!("{R}/diff/%2E%2E/x?until=main")).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn compare_shows_what_from_brings_since_it_left_to() {
    let f = fixture("", None);
    let h = history(&f);
    let c = f.get(Some("reader"), &format!("{R}/compare/commits?from=topic&to=main")).await.json();
    assert_eq!(c["values"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect::<Vec<_>>(), [h.c4.as_str()]);
    let c = f.get(Some("reader"), &format!("{R}/compare/commits?from=main&to={}&limit=1", h.c1)).await.json();
    assert_eq!((c["values"][0]["id"].as_str(), c["nextPageStart"].as_u64()), (Some(h.c3.as_str()), Some(1)));
    let c2 = f.get(Some("reader"), &format!("{R}/compare/commits?from=main&to={}&limit=1&start=1", h.c1)).await.json();
    assert_eq!((c2["values"][0]["id"].as_str(), c2["isLastPage"].as_bool()), (Some(h.c2.as_str()), Some(true)));
    // Changes and diff start at the merge base: main's rename is not topic's.
    let ch = f.get(Some("reader"), &format!("{R}/compare/changes?from=topic&to=main")).await.json();
    assert_eq!(paths(&ch), ["topic.txt"]);
    assert_eq!((ch["fromHash"].as_str(), ch["toHash"].as_str()), (Some(h.c2.as_str()), Some(h.c4.as_str())));
    let d = f.get(Some("reader"), &format!("{R}/compare/diff?from=topic")).await.json();
    assert_eq!(d["diffs"].as_array().unwrap().len(), 1, "`to` defaults to the default branch: {d}");
    let d = f.get(Some("reader"), &format!("{R}/compare/diff/topic.txt?from=refs/heads/topic&to=main&fromRepo=TP/test")).await.json();
    assert_eq!(d["diffs"][0]["destination"]["toString"], "topic.txt");
    // Bad input.
    let r = f.get(Some("reader"), &format!("{R}/compare/commits?to=main")).await;
    assert_eq!((r.status, r.error().2), (StatusCode::BAD_REQUEST, json!("from")));
    let r = f.get(Some("reader"), &format!("{R}/compare/changes?from=topic&fromRepo=PUB/open")).await;
    assert_eq!((r.status, r.error().2), (StatusCode::BAD_REQUEST, json!("fromRepo")));
    assert_eq!(f.get(Some("reader"), &format!("{R}/compare/diff?from=topic&to=nope")).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn commits_follow_a_file_through_renames_when_asked() {
    let f = fixture("", None);
    let h = history(&f);
    let ids = |v: Value| v["values"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(ids(f.get(Some("reader"), &format!("{R}/commits?path=new.txt")).await.json()), vec![h.c3.clone()]);
    assert_eq!(ids(f.get(Some("reader"), &format!("{R}/commits?path=new.txt&followRenames=true")).await.json()), [h.c3.clone(), h.c1.clone()]);
    let p = f.get(Some("reader"), &format!("{R}/commits?path=new.txt&followRenames=true&limit=1&start=1")).await.json();
    assert_eq!((ids(p.clone()), p["isLastPage"].as_bool()), (vec![h.c1.clone()], Some(true)));
    let r = f.get(Some("reader"), &format!("{R}/commits?path=new.txt&followRenames=yes")).await;
    assert_eq!((r.status, r.error().2), (StatusCode::BAD_REQUEST, json!("followRenames")));
}

#[tokio::test]
async fn a_commits_pull_requests_are_those_whose_commits_include_it() {
    let f = fixture("", None);
    let h = history(&f);
    let body = json!({"title": "Topic", "fromRef": {"id": "refs/heads/topic"}, "toRef": {"id": "refs/heads/main"}});
    let pr = f.as_(Some("owner"), "POST", &format!("{R}/pull-requests"), Some(body)).await;
    assert_eq!(pr.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&pr.body));
    let list = f.get(Some("reader"), &format!("{R}/commits/{}/pull-requests", h.c4)).await.json();
    assert_eq!((list["size"].as_u64(), list["values"][0]["id"].as_u64(), list["values"][0]["state"].as_str()), (Some(1), Some(1), Some("OPEN")));
    // Commits the target already has are in no pull request.
    for c in [&h.c1, &h.c2, &h.c3] {
        assert_eq!(f.get(Some("reader"), &format!("{R}/commits/{c}/pull-requests")).await.json()["size"], 0, "{c}");
    }
    // Once merged, it still contains the commit.
    let m = f.as_(Some("owner"), "POST", &format!("{R}/pull-requests/1/merge?version=0"), None).await;
    assert_eq!(m.status, StatusCode::OK, "{}", String::from_utf8_lossy(&m.body));
    let list = f.get(Some("reader"), &format!("/projects/TP/repos/test/commits/{}/pull-requests", h.c4)).await.json();
    assert_eq!(list["values"][0]["state"], "MERGED");
    assert_eq!(f.get(Some("reader"), &format!("{R}/commits/nope/pull-requests")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.get(Some("outsider"), &format!("{R}/commits/{}/pull-requests", h.c4)).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn browse_answers_the_type_the_size_and_blame() {
    let f = fixture("", None);
    let h = history(&f);
    for (path, t) in [("", "DIRECTORY"), ("/many", "DIRECTORY"), ("/README.md", "FILE"), ("/many/f01.txt", "FILE")] {
        let r = f.get(Some("reader"), &format!("{R}/browse{path}?type=true")).await;
        assert_eq!((r.status, r.json()), (StatusCode::OK, json!({"type": t})), "{path}");
    }
    let r = f.get(Some("reader"), &format!("{R}/browse/new.txt?type=true&at={}", h.c1)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "no new.txt before the rename");
    assert_eq!(f.get(Some("reader"), &format!("{R}/browse/old.txt?type=true&at={}", h.c1)).await.json(), json!({"type": "FILE"}));
    assert_eq!(f.get(Some("reader"), &format!("{R}/browse/README.md?size=true")).await.json(), json!({"size": 6}));
    let r = f.get(Some("reader"), &format!("{R}/browse?type=maybe")).await;
    assert_eq!((r.status, r.error().2), (StatusCode::BAD_REQUEST, json!("type")));
    // Blame: line 2 is c2's, lines 1 and 3 are c1's.
    let b = f.get(Some("reader"), &format!("{R}/browse/README.md?blame=true")).await.json();
    assert_eq!(b["lines"].as_array().unwrap().len(), 3);
    let spans: Vec<(String, u64, u64)> = b["blame"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["commitHash"].as_str().unwrap().to_owned(), s["lineNumber"].as_u64().unwrap(), s["spannedLines"].as_u64().unwrap()))
        .collect();
    assert_eq!(spans, [(h.c1.clone(), 1, 1), (h.c2.clone(), 2, 1), (h.c1.clone(), 3, 1)]);
    let first = &b["blame"][0];
    assert_eq!(
        (first["author"]["name"].as_str(), first["author"]["emailAddress"].as_str(), first["fileName"].as_str()),
        (Some("Ann Author"), Some("ann@example.com"), Some("README.md"))
    );
    assert_eq!(first["displayCommitHash"].as_str(), Some(&h.c1[..11]));
    assert!(first["authorTimestamp"].as_i64().unwrap() > 1_000_000_000_000, "milliseconds");
    // A page of lines has the blame of that page; noContent gives the blame alone.
    let p = f.get(Some("reader"), &format!("{R}/browse/README.md?blame=true&start=1&limit=1")).await.json();
    assert_eq!((p["lines"][0]["text"].as_str(), p["blame"].as_array().unwrap().len(), p["blame"][0]["lineNumber"].as_u64()), (Some("B"), 1, Some(2)));
    let only = f.get(Some("reader"), &format!("{R}/browse/README.md?blame=true&noContent=true&at={}", h.c1)).await.json();
    assert_eq!(only, json!([only[0].clone()]));
    assert_eq!((only[0]["commitId"].as_str(), only[0]["spannedLines"].as_u64()), (Some(h.c1.as_str()), Some(3)));
    // A renamed file's blame names the file as it was.
    let b = f.get(Some("reader"), &format!("{R}/browse/new.txt?blame=true")).await.json();
    assert_eq!(b["blame"][0]["fileName"], "old.txt");
}

#[tokio::test]
async fn last_modified_maps_each_child_to_its_newest_commit() {
    let f = fixture("", None);
    let h = history(&f);
    let r = f.get(Some("reader"), &format!("{R}/last-modified?at=main")).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    let files = v["files"].as_object().unwrap();
    let ids: Vec<(&str, &str)> = files.iter().map(|(k, c)| (k.as_str(), c["id"].as_str().unwrap())).collect();
    assert_eq!(ids, [("README.md", h.c2.as_str()), ("many", h.c1.as_str()), ("new.txt", h.c3.as_str())]);
    assert_eq!(v["latestCommit"]["id"], json!(h.c3));
    assert_eq!(files["README.md"]["message"], "second");
    // At an older commit, and below a directory.
    let v = f.get(Some("reader"), &format!("{R}/last-modified?at={}", h.c2)).await.json();
    assert_eq!(v["files"]["old.txt"]["id"], json!(h.c1));
    let v = f.get(Some("reader"), &format!("{R}/last-modified/many?at=topic")).await.json();
    assert_eq!((v["files"].as_object().unwrap().len(), v["latestCommit"]["id"].as_str()), (30, Some(h.c1.as_str())));
    // `at` is required; a file or a missing path is 404.
    let r = f.get(Some("reader"), &format!("{R}/last-modified")).await;
    assert_eq!((r.status, r.error().2), (StatusCode::BAD_REQUEST, json!("at")));
    assert_eq!(f.get(Some("reader"), &format!("{R}/last-modified/README.md?at=main")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.get(Some("reader"), &format!("{R}/last-modified/nope?at=main")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.get(Some("reader"), &format!("{R}/last-modified?at=nope")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.get(None, &format!("{R}/last-modified?at=main")).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_file_list_pages_at_a_revision() {
    let f = fixture("", None);
    let h = history(&f);
    let first = f.get(Some("reader"), &format!("{R}/files?at={}", h.c1)).await.json();
    assert_eq!((first["size"].as_u64(), first["nextPageStart"].as_u64()), (Some(25), Some(25)));
    let second = f.get(Some("reader"), &format!("{R}/files?at={}&start=25", h.c1)).await.json();
    assert_eq!((second["size"].as_u64(), second["isLastPage"].as_bool()), (Some(7), Some(true)));
    let all: Vec<Value> = first["values"].as_array().unwrap().iter().chain(second["values"].as_array().unwrap()).cloned().collect();
    assert!(all.contains(&json!("old.txt")) && !all.contains(&json!("new.txt")));
    let topic = f.get(Some("reader"), &format!("{R}/files/?at=topic&limit=100")).await.json();
    assert!(topic["values"].as_array().unwrap().contains(&json!("topic.txt")));
    assert_eq!(f.get(Some("reader"), &format!("{R}/files?at=nope")).await.status, StatusCode::NOT_FOUND);
}

/// `GET` as `reader` through `app()`: status, headers, and the body or the error that ended it.
async fn download(f: &Fixture, uri: &str) -> (StatusCode, http::HeaderMap, Result<Vec<u8>, String>) {
    let req = http::Request::builder()
        .uri(format!("/rest/api/1.0{R}{uri}"))
        .header(http::header::AUTHORIZATION, basic("reader", "reader-password"))
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(crate::app(&f.server), req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = axum::body::to_bytes(resp.into_body(), 64 << 20).await.map(|b| b.to_vec()).map_err(|e| e.to_string());
    (status, headers, body)
}

/// Lists an archive's entries with the system's own tools.
fn entries(bytes: &[u8], format: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("a.{format}"));
    std::fs::write(&file, bytes).unwrap();
    let out = match format {
        "zip" => std::process::Command::new("unzip").arg("-Z1").arg(&file).output().unwrap(),
        "tar" => std::process::Command::new("tar").arg("tf").arg(&file).output().unwrap(),
        _ => std::process::Command::new("tar").arg("tzf").arg(&file).output().unwrap(),
    };
    assert!(out.status.success(), "{format}: {}", String::from_utf8_lossy(&out.stderr));
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.ends_with('/')).map(str::to_owned).collect();
    names.sort();
    names
}

#[tokio::test]
async fn archives_come_in_every_format_named_as_bitbucket_names_them() {
    let f = fixture("", None);
    let h = history(&f);
    let (status, headers, body) = download(&f, "/archive").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/zip");
    let short = &h.c3[..11];
    assert_eq!(headers["content-disposition"].to_str().unwrap(), format!("attachment; filename=\"test-main@{short}.zip\""));
    let names = entries(&body.unwrap(), "zip");
    assert_eq!(names.len(), 32);
    assert!(names.contains(&"new.txt".to_owned()) && names.contains(&"many/f29.txt".to_owned()));
    for (format, ct) in [("tar", "application/x-tar"), ("tar.gz", "application/gzip"), ("tgz", "application/gzip")] {
        let (status, headers, body) = download(&f, &format!("/archive?format={format}&at=topic&prefix=proj&path=many&path=topic.txt")).await;
        assert_eq!((status, headers["content-type"].to_str().unwrap()), (StatusCode::OK, ct), "{format}");
        assert_eq!(headers["content-disposition"].to_str().unwrap(), format!("attachment; filename=\"test-topic@{}.{format}\"", &h.c4[..11]));
        let names = entries(&body.unwrap(), format);
        assert_eq!(names.len(), 31, "{format}: {names:?}");
        assert!(names.iter().all(|n| n.starts_with("proj/")) && names.contains(&"proj/topic.txt".to_owned()), "{names:?}");
    }
    // A commit id names no ref; a tag does; `filename` wins.
    let (_, headers, _) = download(&f, &format!("/archive?at={}&format=tar", h.c1)).await;
    assert_eq!(headers["content-disposition"].to_str().unwrap(), format!("attachment; filename=\"test@{}.tar\"", &h.c1[..11]));
    let (_, headers, body) = download(&f, &format!("/archive?at={}&filename=release.zip", h.c1)).await;
    assert_eq!(headers["content-disposition"], "attachment; filename=\"release.zip\"");
    assert!(entries(&body.unwrap(), "zip").contains(&"old.txt".to_owned()));
}

#[tokio::test]
async fn a_refused_archive_is_decided_before_the_first_byte() {
    let f = fixture("", None);
    history(&f);
    for (q, status, ctx) in [
        ("format=rar", StatusCode::BAD_REQUEST, Some("format")),
        ("format=", StatusCode::OK, None),
        ("prefix=../x", StatusCode::BAD_REQUEST, Some("prefix")),
        ("path=a/../b", StatusCode::BAD_REQUEST, Some("path")),
        ("filename=a%22b", StatusCode::BAD_REQUEST, Some("filename")),
        ("at=nope", StatusCode::NOT_FOUND, None),
        ("at=0123456789abcdef", StatusCode::NOT_FOUND, None),
        ("path=nope.txt", StatusCode::NOT_FOUND, None),
    ] {
        let r = f.get(Some("reader"), &format!("{R}/archive?{q}")).await;
        assert_eq!(r.status, status, "{q}");
        if let Some(ctx) = ctx {
            assert_eq!(r.error().2, json!(ctx), "{q}");
        } else if status != StatusCode::OK {
            r.error();
        }
    }
    assert_eq!(f.get(Some("outsider"), &format!("{R}/archive")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.get(None, &format!("{R}/archive")).await.status, StatusCode::UNAUTHORIZED);
    // An empty repository has nothing to archive.
    let r = f.get(Some("reader"), "/projects/PUB/repos/open/archive").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn git_failing_midway_aborts_the_archive_instead_of_ending_it() {
    let f = fixture("", None);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    f.git(w, &["init", "-q", "-b", "main"]);
    // Incompressible, so the first entry is written out before git reaches the second.
    let noise: Vec<u8> = (0..400_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(w.join("a.bin"), &noise).unwrap();
    std::fs::write(w.join("z.txt"), "the last file\n").unwrap();
    f.git(w, &["add", "-A"]);
    f.git(w, &["commit", "-q", "-m", "two files"]);
    let blob = f.git(w, &["rev-parse", "HEAD:z.txt"]);
    let repo = f.server.store().repo(&trove_store::Owner::parse("TP").unwrap(), &trove_store::RepoSlug::parse("test").unwrap()).unwrap().unwrap();
    let dir = f.server.store().repo_path(&repo);
    f.git(w, &["push", "-q", dir.to_str().unwrap(), "main"]);
    let loose = dir.join("objects").join(&blob[..2]).join(&blob[2..]);
    assert!(loose.exists(), "the push left z.txt's blob loose at {}", loose.display());
    std::fs::remove_file(&loose).unwrap();
    let (status, _, body) = download(&f, "/archive?format=tar").await;
    assert_eq!(status, StatusCode::OK, "git had started writing");
    assert!(body.is_err(), "a cut archive must not end like a whole one");
}
