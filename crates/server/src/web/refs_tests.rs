//! The branches and tags pages, the picker, the commit list's labels and graph, and the diffs
//! of commits and comparisons, through `app()` with `oneshot` (real git, no sockets).

use axum::body::Body;
use http::{Request, StatusCode, header};
use tower::ServiceExt as _;
use trove_store::{AuditQuery, GlobalPermission, Owner, Password, Permission, ProjectKey, Repo, RepoSlug, UserName};

use crate::{Server, ServerConfig, app};

const TP: &str = "/projects/TP/repos/test";

struct Fixture {
    _dir: tempfile::TempDir,
    server: Server,
    repo: Repo,
    work: tempfile::TempDir,
}

struct Resp {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Resp {
    fn location(&self) -> &str {
        self.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    fn show(&self) -> String {
        format!("{} {}", self.status, &self.body[..self.body.len().min(4000)])
    }
}

fn name(s: &str) -> UserName {
    UserName::parse(s).unwrap()
}

/// Users `reader` (read on TP), `writer` (write), `owner` (admin); TP/test with `main` (two
/// commits), `feature` (one commit on main's first, then a merge of main), `old` (main's first
/// commit), tags `v1` (lightweight, main's first) and `v2` (annotated, main's tip).
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::open(ServerConfig::new(dir.path())).unwrap();
    let s = server.store();
    for n in ["reader", "writer", "owner"] {
        s.create_user(&name(n), &Password::new(&format!("{n}-password")).unwrap(), GlobalPermission::LicensedUser).unwrap();
    }
    let tp = ProjectKey::parse("TP").unwrap();
    s.create_project(&tp, Some("Test Project"), false).unwrap();
    let repo = s.create_repo(&Owner::Project(tp.clone()), &RepoSlug::parse("test").unwrap(), false).unwrap();
    s.grant_project(&name("reader"), &tp, Permission::Read).unwrap();
    s.grant_project(&name("writer"), &tp, Permission::Write).unwrap();
    s.grant_project(&name("owner"), &tp, Permission::Admin).unwrap();
    let f = Fixture { _dir: dir, server, repo, work: tempfile::tempdir().unwrap() };
    f.git(&["init", "-q", "-b", "main"]);
    f.commit("README.md", "# Test\n", "Initial commit");
    f.git(&["branch", "old"]);
    f.git(&["tag", "v1"]);
    f.git(&["checkout", "-q", "-b", "feature"]);
    f.commit("f.txt", "feature\n", "Add the feature");
    f.git(&["checkout", "-q", "main"]);
    f.commit("src/lib.rs", "fn main() {\n    let x = 1;\n}\n", "Add lib");
    f.git(&["tag", "-a", "v2", "-m", "Release two"]);
    f.git(&["checkout", "-q", "feature"]);
    f.git(&["merge", "-q", "--no-edit", "main"]);
    f.git(&["checkout", "-q", "main"]);
    f.push(&["main", "feature", "old", "v1", "v2"]);
    f
}

impl Fixture {
    fn git(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .env_clear()
            .envs(trove_store::git_env(self.server.store().git_home()))
            .env("GIT_AUTHOR_NAME", "Ann Author")
            .env("GIT_AUTHOR_EMAIL", "ann@example.com")
            .env("GIT_COMMITTER_NAME", "Ann Author")
            .env("GIT_COMMITTER_EMAIL", "ann@example.com")
            .current_dir(self.work.path())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn commit(&self, file: &str, text: &str, message: &str) -> String {
        let path = self.work.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self.git(&["add", file]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    fn push(&self, refs: &[&str]) {
        let dir = self.server.store().repo_path(&self.repo);
        let mut args = vec!["push", "-q", "-f", dir.to_str().unwrap()];
        args.extend(refs);
        self.git(&args);
    }

    fn rev(&self, r: &str) -> String {
        self.git(&["rev-parse", r])
    }

    /// The server's copy of `full` (a full ref), if it exists.
    fn server_ref(&self, full: &str) -> Option<String> {
        let dir = self.server.store().repo_path(&self.repo);
        let out = std::process::Command::new("git").arg("--git-dir").arg(dir).args(["rev-parse", "--verify", "-q", full]).output().unwrap();
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn session(&self, user: &str) -> (String, String) {
        let u = self.server.store().user(&name(user)).unwrap().unwrap();
        let (id, csrf) = self.server.store().create_session(u.id, 3600).unwrap();
        (format!("{}={id}", super::super::SESSION_COOKIE), csrf)
    }

    async fn send(&self, method: &str, path: &str, cookie: Option<&str>, form: Option<&str>) -> Resp {
        let mut b = Request::builder().method(method).uri(path).header(header::HOST, "localhost:7990").header(header::ACCEPT, "text/html");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, c);
        }
        let req = match form {
            Some(f) => b.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(Body::from(f.to_owned())).unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        let resp = app(&self.server).oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 16 << 20).await.unwrap();
        Resp { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
    }

    async fn get_as(&self, user: &str, path: &str) -> Resp {
        let cookie = self.session(user).0;
        self.send("GET", path, Some(&cookie), None).await
    }

    async fn post_as(&self, user: &str, path: &str, form: &str) -> Resp {
        let (cookie, csrf) = self.session(user);
        self.send("POST", path, Some(&cookie), Some(&format!("{form}&csrf={csrf}"))).await
    }
}

/// The `<tr>` of the ref `name` on a branches or tags page.
fn row<'a>(body: &'a str, name: &str) -> &'a str {
    let at = body.find(&format!("data-ref=\"{name}\"")).unwrap_or_else(|| panic!("no row for {name}: {body}"));
    &body[at..at + body[at..].find("</tr>").unwrap()]
}

#[tokio::test]
async fn the_branches_page_says_ahead_and_behind_the_default_branch_with_the_last_commit() {
    let f = fixture();
    let r = f.get_as("reader", &format!("{TP}/branches")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.show());
    // main is the default (first, labelled, no counts); feature has its commit and the merge
    // ahead and nothing behind; old is one behind.
    let main = row(&r.body, "main");
    assert!(main.contains("default") && main.contains("Add lib") && main.contains("Ann Author") && main.contains("<time datetime="), "{main}");
    assert!(r.body.find("data-ref=\"main\"").unwrap() < r.body.find("data-ref=\"feature\"").unwrap(), "the default branch comes first");
    let feature = row(&r.body, "feature");
    assert!(feature.contains("td class=\"num behind\"><a") && feature.contains(">0</a></td><td class=\"num ahead\"><a"), "{feature}");
    assert!(feature.contains(">2</a></td>"), "feature is 2 ahead: {feature}");
    let old = row(&r.body, "old");
    assert!(old.contains(">1</a></td><td class=\"num ahead\"><a") && old.contains(">0</a></td>"), "old is 1 behind, 0 ahead: {old}");
    assert!(!r.body.contains("id=\"create-ref\""), "a reader gets no create form");
    assert!(!r.body.contains("name=\"action\" value=\"delete\""), "nor delete buttons");
    // The filter, case-insensitive, and paging's counts.
    let r = f.get_as("reader", &format!("{TP}/branches?filter=FEAT")).await;
    assert!(r.body.contains("data-ref=\"feature\"") && !r.body.contains("data-ref=\"main\"") && r.body.contains("1 branch matching"), "{}", r.show());
    let r = f.get_as("reader", &format!("{TP}/branches?filter=nothing-like-it")).await;
    assert!(r.body.contains("id=\"no-refs\""), "{}", r.show());
    // Tags: the annotated one with its message, newest first.
    let r = f.get_as("reader", &format!("{TP}/tags")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(row(&r.body, "v2").contains("Release two") && row(&r.body, "v2").contains(&f.rev("main")[..11]), "{}", r.show());
    assert!(row(&r.body, "v1").contains(&f.rev("old")[..11]));
}

#[tokio::test]
async fn branches_and_tags_are_created_and_deleted_with_write_permission_as_a_push_is() {
    let f = fixture();
    let branches = format!("{TP}/branches");
    // A reader may not; nor may a form without the session's token.
    let r = f.post_as("reader", &branches, "action=create&name=mine&startPoint=main").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.show());
    let (cookie, _) = f.session("writer");
    let r = f.send("POST", &branches, Some(&cookie), Some("action=create&name=mine&startPoint=main&csrf=stale")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(f.server_ref("refs/heads/mine"), None);
    // A writer creates from a tag, and it is there, on the page and audited as a push.
    let r = f.post_as("writer", &branches, "action=create&name=topic%2Fnew&startPoint=v1").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, format!("{branches}?done=branch-created&name=topic/new").as_str()), "{}", r.show());
    assert_eq!(f.server_ref("refs/heads/topic/new"), Some(f.rev("old")));
    let page = f.get_as("writer", r.location()).await;
    assert!(page.body.contains("Branch topic/new created.") && page.body.contains("data-ref=\"topic/new\""), "{}", page.show());
    assert!(row(&page.body, "topic/new").contains("value=\"delete\""), "a writer gets delete buttons");
    assert!(!row(&page.body, "main").contains("value=\"delete\""), "but not on the default branch");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (entries, _) = f.server.store().audit_entries(&AuditQuery { action: Some("repo.push".into()), limit: 50, ..AuditQuery::default() }).unwrap();
        if entries.iter().any(|e| e.actor == "writer" && e.details.contains("refs/heads/topic/new")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no push event for the branch made on the page: {entries:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Bad input is said beside the form, the name kept; nothing is made.
    let r = f.post_as("writer", &branches, "action=create&name=bad..name&startPoint=main").await;
    assert!(r.status == StatusCode::BAD_REQUEST && r.body.contains("not a valid branch name") && r.body.contains("value=\"bad..name\""), "{}", r.show());
    let r = f.post_as("writer", &branches, "action=create&name=feature&startPoint=main").await;
    assert!(r.status == StatusCode::CONFLICT && r.body.contains("already exists"), "{}", r.show());
    let r = f.post_as("writer", &branches, "action=create&name=x&startPoint=nope").await;
    assert!(r.status == StatusCode::BAD_REQUEST && r.body.contains("not a branch, tag or commit"), "{}", r.show());
    // The default branch is not deleted; a stale end point is refused and the branch stays.
    let r = f.post_as("writer", &branches, "action=delete&name=main").await;
    assert!(r.status == StatusCode::BAD_REQUEST && r.body.contains("default branch"), "{}", r.show());
    let r = f.post_as("writer", &branches, &format!("action=delete&name=topic%2Fnew&endPoint={}", f.rev("main"))).await;
    assert!(r.status == StatusCode::CONFLICT && f.server_ref("refs/heads/topic/new").is_some(), "{}", r.show());
    let r = f.post_as("writer", &branches, &format!("action=delete&name=topic%2Fnew&endPoint={}", f.rev("old"))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.show());
    assert_eq!(f.server_ref("refs/heads/topic/new"), None);
    // Tags: annotated with a message (tagged by the writer), deleted.
    let tags = format!("{TP}/tags");
    let r = f.post_as("writer", &tags, "action=create&name=v3&startPoint=feature&message=Three").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.show());
    let page = f.get_as("reader", &tags).await;
    assert!(row(&page.body, "v3").contains("Three"), "{}", page.show());
    assert_eq!(f.post_as("reader", &tags, "action=delete&name=v3").await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.post_as("writer", &tags, "action=delete&name=v3").await.status, StatusCode::SEE_OTHER);
    assert_eq!(f.server_ref("refs/tags/v3"), None);
}

#[tokio::test]
async fn a_branch_restriction_refuses_a_page_change_as_it_refuses_a_push() {
    let f = fixture();
    let settings = format!("{TP}/settings");
    // Deleting `old` is restricted, and creating `release/*` is read-only, for everyone.
    let r = f.post_as("owner", &settings, "action=restrict&type=no-deletes&matcher_type=BRANCH&matcher=old").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.show());
    let r = f.post_as("owner", &settings, "action=restrict&type=read-only&matcher_type=PATTERN&matcher=release%2F*").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.show());
    let branches = format!("{TP}/branches");
    let r = f.post_as("writer", &branches, &format!("action=delete&name=old&endPoint={}", f.rev("old"))).await;
    assert!(r.status == StatusCode::FORBIDDEN && r.body.contains("may not be deleted") && r.body.contains("was not deleted"), "{}", r.show());
    assert!(f.server_ref("refs/heads/old").is_some());
    let r = f.post_as("owner", &branches, "action=create&name=release%2F1&startPoint=main").await;
    assert!(r.status == StatusCode::FORBIDDEN && r.body.contains("read-only"), "{}", r.show());
    assert_eq!(f.server_ref("refs/heads/release/1"), None);
    // Unrestricted names still work.
    assert_eq!(f.post_as("writer", &branches, "action=create&name=free&startPoint=main").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn the_picker_lists_branches_and_tags_as_links_to_this_page_at_each() {
    let f = fixture();
    let r = f.get_as("reader", &format!("{TP}/browse/src?at=refs/heads/main")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.show());
    assert!(r.body.contains("id=\"ref-picker\""), "{}", r.show());
    assert!(r.body.contains(&format!("href=\"{TP}/browse/src?at=refs/heads/feature\"")), "{}", r.show());
    assert!(r.body.contains(&format!("href=\"{TP}/browse/src?at=refs/tags/v2\"")));
    assert!(r.body.contains(&format!("action=\"{TP}/branches\"")) && r.body.contains("data-ref-filter"), "the filter box searches the branches page");
    assert!(r.body.contains(&format!("<a href=\"{TP}/browse/src?at=refs/heads/main\" aria-current=\"true\">main")), "{}", r.show());
    let r = f.get_as("reader", &format!("{TP}/commits")).await;
    assert!(r.body.contains(&format!("href=\"{TP}/commits?at=refs/heads/old\"")), "{}", r.show());
    // A path the chosen ref lacks leads to its nearest folder there (the picker keeps paths).
    let r = f.get_as("reader", &format!("{TP}/browse/f.txt?at=refs/heads/main")).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, format!("{TP}/browse?at=refs/heads/main").as_str()));
    let r = f.get_as("reader", &format!("{TP}/browse/src/gone/x.rs?at=refs/heads/main")).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, format!("{TP}/browse/src?at=refs/heads/main").as_str()));
    assert_eq!(f.get_as("reader", &format!("{TP}/browse/f.txt")).await.status, StatusCode::NOT_FOUND, "without a ref asked for, still 404");
}

#[tokio::test]
async fn the_commit_list_labels_commits_and_draws_the_merge_in_two_lanes() {
    let f = fixture();
    let r = f.get_as("reader", &format!("{TP}/commits?until=refs/heads/feature")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.show());
    // The merge at feature's tip, main's tip (with v2), feature's own commit, then the root
    // (old, v1): labels on the commits they point at.
    let row_of = |id: &str| {
        let at = r.body.find(&format!("data-commit=\"{id}\"")).unwrap_or_else(|| panic!("no row for {id}"));
        r.body[at..at + r.body[at..].find("</tr>").unwrap()].to_owned()
    };
    let merge = row_of(&f.rev("feature"));
    assert!(merge.contains("ref-label branch\" title=\"Branch feature\"") && merge.contains("circle class=\"lane-0 merge\""), "{merge}");
    let main = row_of(&f.rev("main"));
    assert!(main.contains("ref-label branch default") && main.contains("ref-label tag\" title=\"Tag v2\""), "{main}");
    let root = row_of(&f.rev("old"));
    assert!(root.contains("title=\"Branch old\"") && root.contains("title=\"Tag v1\""), "{root}");
    // Two lanes: the merge's second parent opens lane 1, which joins lane 0 again at the root.
    assert!(merge.contains("width=\"28\""), "the graph is two lanes wide: {merge}");
    assert!(r.body.contains("class=\"lane-1\""), "{}", r.show());
    assert!(r.body.contains("<time datetime=\"") && r.body.contains(" UTC\">just now</time>"), "relative dates with the exact one");
}

#[tokio::test]
async fn commit_diffs_use_the_pull_request_view_with_its_toggles() {
    let f = fixture();
    f.git(&["checkout", "-q", "main"]);
    // Only whitespace changes in lib.rs; a.txt gets a real change.
    let tip = f.commit("src/lib.rs", "fn main() {\n        let x = 1;\n}\n", "Indent");
    f.push(&["main"]);
    let page = format!("{TP}/commits/{tip}");
    let r = f.get_as("reader", &page).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.show());
    assert!(r.body.contains("id=\"file-tree\"") && r.body.contains("data-path=\"src/lib.rs\"") && r.body.contains("id=\"view-split\""), "{}", r.show());
    assert!(r.body.contains("class=\"code add both\"") && r.body.contains("id=\"comments\""), "unified lines, and the commit's comments stay");
    let r = f.get_as("reader", &format!("{page}?view=split")).await;
    assert!(r.body.contains("table class=\"code pr-diff split\""), "{}", r.show());
    let r = f.get_as("reader", &format!("{page}?whitespace=ignore-all")).await;
    assert!(r.body.contains("No changes but whitespace."), "{}", r.show());
    assert!(r.body.contains("id=\"whitespace-toggle\"") && r.body.contains("Whitespace ignored"), "{}", r.show());
    // One file's section alone (what the page script loads), and more context for it.
    let r = f.get_as("reader", &format!("{page}?path=src/lib.rs&context=30&fragment=1")).await;
    assert!(r.status == StatusCode::OK && r.body.starts_with("<section class=\"pr-file\""), "{}", r.show());
    assert_eq!(f.get_as("reader", &format!("{page}?path=nope.txt")).await.status, StatusCode::NOT_FOUND);
    // The root commit diffs against the empty tree.
    let r = f.get_as("reader", &format!("{TP}/commits/{}", f.rev("old"))).await;
    assert!(r.status == StatusCode::OK && r.body.contains("data-path=\"README.md\""), "{}", r.show());
    // The compare page's diff is the same view, its links keeping the branches.
    let r = f.get_as("reader", &format!("{TP}/compare/diff?sourceBranch=feature&targetBranch=old")).await;
    assert!(r.body.contains("id=\"compare-diff\"") && r.body.contains("data-path=\"f.txt\"") && r.body.contains("id=\"file-tree\""), "{}", r.show());
    assert!(r.body.contains("sourceBranch=refs/heads/feature&amp;targetBranch=refs/heads/old&amp;view=split"), "{}", r.show());
}

#[tokio::test]
async fn the_commit_graph_of_a_5000_commit_history_draws_its_last_page() {
    let f = fixture();
    // 5,000 commits on `long` (with a merged side commit every 10th) through fast-import.
    let mut stream = String::new();
    let mut mark = 0;
    let mut prev = f.rev("main");
    let mut ts = 1_700_000_000;
    let mut main_marks = 0;
    while main_marks < 5_000 {
        ts += 60;
        let mut merge = None;
        if main_marks % 10 == 9 {
            mark += 1;
            stream.push_str(&format!("commit refs/heads/side\nmark :{mark}\ncommitter A <a@example.com> {ts} +0000\ndata 4\nside\nfrom {prev}\n\n"));
            merge = Some(mark);
            ts += 60;
        }
        mark += 1;
        stream.push_str(&format!("commit refs/heads/long\nmark :{mark}\ncommitter A <a@example.com> {ts} +0000\ndata 4\nmain\nfrom {prev}\n"));
        if let Some(m) = merge {
            stream.push_str(&format!("merge :{m}\n"));
        }
        stream.push('\n');
        prev = format!(":{mark}");
        main_marks += 1;
    }
    let dir = f.server.store().repo_path(&f.repo);
    let mut child =
        std::process::Command::new("git").arg("--git-dir").arg(&dir).args(["fast-import", "--quiet"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(stream.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    let count = |body: &str, what: &str| body.matches(what).count();
    let started = std::time::Instant::now();
    let r = f.get_as("reader", &format!("{TP}/commits?until=refs/heads/long")).await;
    let first = started.elapsed();
    assert_eq!(count(&r.body, "class=\"commit-row\""), 50, "{}", r.show());
    let started = std::time::Instant::now();
    let r = f.get_as("reader", &format!("{TP}/commits?until=refs/heads/long&start=5400")).await;
    let last = started.elapsed();
    // 5,500 commits on `long` and its merged side commits, plus main's two: the last page holds
    // the rest, each with its graph cell, the merges drawn.
    let rows = count(&r.body, "class=\"commit-row\"");
    assert!(rows > 0 && rows <= 50, "{rows} rows: {}", r.show());
    assert_eq!(count(&r.body, "<svg class=\"graph\""), rows, "a graph cell per row");
    assert!(count(&r.body, " merge\"") > 0, "the merges on the last page are drawn as merges");
    println!("commit list of a 5,500-commit history: first page {first:?}, page at 5,400 {last:?} (debug build, through app())");
}

#[tokio::test]
async fn the_commit_list_and_branches_show_builds_as_signs_from_the_statuses_rest_serves() {
    use trove_store::{BuildState, BuildStatus};
    let f = fixture();
    let status = |commit: String, key: &str, state| BuildStatus {
        repo: Some(f.repo.id),
        commit,
        key: key.into(),
        state,
        name: None,
        url: "https://ci.example.com/1".into(),
        description: None,
        build_number: None,
        duration_ms: None,
        parent: None,
        ref_name: None,
        test_results: None,
        created_at: 1,
        updated_at: 1,
    };
    let s = f.server.store();
    s.put_build_status(&status(f.rev("main"), "unit", BuildState::Successful)).unwrap();
    s.put_build_status(&status(f.rev("old"), "unit", BuildState::Successful)).unwrap();
    s.put_build_status(&status(f.rev("old"), "lint", BuildState::Failed)).unwrap();
    s.put_build_status(&status(f.rev("feature"), "unit", BuildState::InProgress)).unwrap();
    let r = f.get_as("reader", &format!("{TP}/commits?until=refs/heads/feature")).await;
    let sign = |id: &str| {
        let at = r.body.find(&format!("data-commit=\"{id}\"")).unwrap();
        let row = &r.body[at..at + r.body[at..].find("</tr>").unwrap()];
        let s = row.find("class=\"build-icon").map(|i| &row[i..i + row[i..].find("</a>").unwrap()]);
        s.map(str::to_owned)
    };
    let main = sign(&f.rev("main")).expect("main's commit has a sign");
    assert!(main.contains("build-successful") && main.ends_with('✓') && main.contains("1 of 1 passed"), "{main}");
    let old = sign(&f.rev("old")).unwrap();
    assert!(old.contains("build-failed") && old.ends_with('✗') && old.contains("1 of 2 passed"), "{old}");
    assert!(sign(&f.rev("feature")).unwrap().ends_with('●'));
    assert!(r.body.contains(&format!("href=\"{TP}/commits/{}#builds\"", f.rev("main"))));
    let r = f.get_as("reader", &format!("{TP}/branches")).await;
    assert!(row(&r.body, "old").contains("build-failed"), "{}", r.show());
}

#[tokio::test]
async fn a_large_file_in_a_commit_is_collapsed_behind_show_anyway() {
    let f = fixture();
    f.git(&["checkout", "-q", "main"]);
    let big: String = (0..2_100).map(|n| format!("line {n}\n")).collect();
    let tip = f.commit("big.txt", &big, "A big file");
    f.push(&["main"]);
    let page = format!("{TP}/commits/{tip}");
    let r = f.get_as("reader", &page).await;
    assert!(r.body.contains("2100 changed lines, so its diff is collapsed") && r.body.contains("class=\"show-anyway\""), "{}", r.show());
    let r = f.get_as("reader", &format!("{page}?path=big.txt&show=1&fragment=1")).await;
    assert!(r.status == StatusCode::OK && r.body.contains("line 2099"), "{}", r.show());
}
