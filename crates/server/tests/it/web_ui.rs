//! The web UI in a real browser: headless Chromium (Debian's `chromium`) driven by
//! `playwright-core` (`crates/server/tests/ui`), directly against the server on 127.0.0.1.
//! The same flow runs through `trove up`'s HTTPS gateway under `/stash` in the cli tests; the
//! pull-request flow (`pull_requests.js`) runs here, then git checks what the browser did.

use std::path::{Path, PathBuf};
use std::process::Command;

use trove_store::{GlobalPermission, Owner, Password, Permission, PrQuery, PrState, ProjectKey, RepoSlug};

use crate::support::{TestServer, basic, password, user};

pub fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui")
}

/// `node flow.js` with `env`; panics with its output unless every step passed.
pub fn run_flow(env: &[(&str, String)]) {
    run_script("flow.js", env);
}

/// `node {script}` (in `crates/server/tests/ui`) with `env`; panics with its output unless
/// every step passed. Fails (never skips) when node, Chromium, playwright-core or axe-core is
/// missing, saying how to install them.
pub fn run_script(script: &str, env: &[(&str, String)]) {
    let dir = ui_dir();
    assert!(Path::new("/usr/bin/chromium").exists(), "/usr/bin/chromium is missing: apt-get install chromium (scripts/test does)");
    for module in ["playwright-core", "axe-core"] {
        assert!(dir.join("node_modules").join(module).is_dir(), "{module} is missing: run `npm ci` in {} (scripts/test does)", dir.display());
    }
    let mut cmd = Command::new("node");
    cmd.arg(dir.join(script)).current_dir(&dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run node ({e}): install nodejs and npm (scripts/test does)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "browser flow {script} failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.lines().last().is_some_and(|l| l.ends_with(" passed, 0 failed")), "{stdout}");
    println!("{stdout}");
}

/// Pushes the repository the flow browses: README.md (with raw HTML that must not pass
/// through), src/main.rs, tag v1.0, and a branch `feature` with FEATURE.txt.
pub fn sample_repo(t: &TestServer) {
    let dir = t.dir("sample");
    t.git_ok(&dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("README.md"), "# Hello from Trove\n\nRaw HTML stays text: <script>alert(1)</script>\n\n* [a link](javascript:alert(1))\n").unwrap();
    t.git_ok(&dir, &["add", "README.md"]);
    t.git_ok(&dir, &["commit", "-q", "-m", "Add a README"]);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/main.rs"), "fn main() {\n    let greeting = \"hello\";\n    println!(\"{greeting}\");\n}\n").unwrap();
    t.git_ok(&dir, &["add", "src/main.rs"]);
    t.git_ok(&dir, &["commit", "-q", "-m", "Say hello\n\nThe first program."]);
    t.git_ok(&dir, &["tag", "v1.0"]);
    t.git_ok(&dir, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(dir.join("FEATURE.txt"), "only on the feature branch\n").unwrap();
    t.git_ok(&dir, &["add", "FEATURE.txt"]);
    t.git_ok(&dir, &["commit", "-q", "-m", "Start a feature"]);
    t.git_ok(&dir, &["checkout", "-q", "main"]);
    t.git_ok(&dir, &["push", "-q", &t.url_as("writer", "scm/TP/test.git"), "main", "feature", "v1.0"]);
}

#[test]
fn the_seeds_admin_flow_and_browsing_work_in_headless_chromium() {
    let t = TestServer::start();
    sample_repo(&t);
    run_flow(&[
        ("TROVE_ROOT", t.root.clone()),
        ("TROVE_ADMIN", "admin".into()),
        ("TROVE_ADMIN_PASSWORD", password("admin")),
        ("TROVE_REPO", "TP/test".into()),
        ("TROVE_OTHER_BASE", "https://git.example.com:8443/bitbucket".into()),
    ]);
    // What the browser saved is what the server uses now.
    assert_eq!(t.server.store().base_url().unwrap().map(|b| b.as_str().to_owned()), Some(t.root.clone()));
}

/// Where the pull-request flow saves its screenshots: `TROVE_SCREENSHOTS` when set, `docs/screenshots`
/// with `TROVE_UPDATE_SCREENSHOTS` (as the cli test's flow), else a directory of the test's own
/// (taken anyway, so that taking them is tested, and thrown away).
fn screenshots(t: &TestServer) -> PathBuf {
    if let Some(dir) = std::env::var_os("TROVE_SCREENSHOTS") {
        PathBuf::from(dir)
    } else if std::env::var_os("TROVE_UPDATE_SCREENSHOTS").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
    } else {
        t.dir("screenshots")
    }
}

/// The pull-request flow's repository, pushed by alice: `main` with src/main.rs; `feature/shout`
/// changing its line 3 in one commit (subject and body: the create form's proposal); `docs`
/// adding docs/greeting.md. Returns the tips of the two branches.
fn pull_request_repo(t: &TestServer) -> (String, String) {
    let dir = t.dir("pr-sample");
    t.git_ok(&dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("README.md"), "# Greeter\n\nSays hello.\n").unwrap();
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/main.rs"), "fn main() {\n    let greeting = \"hello\";\n    println!(\"{greeting}\");\n}\n").unwrap();
    t.git_ok(&dir, &["add", "."]);
    t.git_ok(&dir, &["commit", "-q", "-m", "Say hello"]);
    t.git_ok(&dir, &["checkout", "-q", "-b", "feature/shout"]);
    std::fs::write(
        dir.join("src/main.rs"),
        "fn main() {\n    let greeting = \"hello\";\n    let loud = greeting.to_uppercase();\n    println!(\"{loud}\");\n}\n",
    )
    .unwrap();
    t.git_ok(&dir, &["commit", "-q", "-am", "Shout the greeting\n\nUpper case, so that it is heard."]);
    t.git_ok(&dir, &["checkout", "-q", "-b", "docs", "main"]);
    std::fs::create_dir_all(dir.join("docs")).unwrap();
    std::fs::write(dir.join("docs/greeting.md"), "# Greeting\n\nThe program says hello,\nin lower case.\n").unwrap();
    t.git_ok(&dir, &["add", "docs"]);
    t.git_ok(&dir, &["commit", "-q", "-m", "Document the greeting"]);
    t.git_ok(&dir, &["push", "-q", &t.url_as("alice", "scm/TP/test.git"), "main", "feature/shout", "docs"]);
    (t.git_ok(&dir, &["rev-parse", "feature/shout"]), t.git_ok(&dir, &["rev-parse", "docs"]))
}

#[test]
fn two_people_open_review_and_merge_a_pull_request_in_headless_chromium_with_pointer_and_keyboard() {
    let t = TestServer::start();
    let store = t.server.store();
    let tp = ProjectKey::parse("TP").unwrap();
    for (name, display) in [("alice", "Alice Liddell"), ("bob", "Bob Dylan")] {
        store.create_user(&user(name), &Password::new(&password(name)).unwrap(), GlobalPermission::LicensedUser).unwrap();
        store.set_user_details(&user(name), Some(display), Some(&format!("{name}@example.com"))).unwrap();
        store.grant_project(&user(name), &tp, Permission::Write).unwrap();
    }
    let (shout, docs) = pull_request_repo(&t);
    // Squash is not enabled by default; a repository admin turns it on (REST only).
    let auth = basic("admin", &password("admin"));
    let body = r#"{"mergeConfig":{"defaultStrategy":{"id":"no-ff"},"strategies":[{"id":"no-ff","enabled":true},{"id":"squash","enabled":true}]}}"#;
    let r = t.http(
        "POST",
        "/rest/api/1.0/projects/TP/repos/test/settings/pull-requests",
        &[("Authorization", auth.as_str()), ("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    run_script(
        "pull_requests.js",
        &[
            ("TROVE_ROOT", t.root.clone()),
            ("TROVE_REPO", "TP/test".into()),
            ("TROVE_ALICE", "alice".into()),
            ("TROVE_ALICE_PASSWORD", password("alice")),
            ("TROVE_BOB", "bob".into()),
            ("TROVE_BOB_PASSWORD", password("bob")),
            ("TROVE_BRANCH", "feature/shout".into()),
            ("TROVE_KEYS_BRANCH", "docs".into()),
            ("TROVE_GIT_URL", t.url_as("alice", "scm/TP/test.git")),
            ("TROVE_GIT_HOME", t.home.path().display().to_string()),
            ("TROVE_SCREENSHOTS", screenshots(&t).display().to_string()),
        ],
    );

    // What the browser did, as git sees it in the server's repository.
    let repo = store.repo(&Owner::Project(tp), &RepoSlug::parse("test").unwrap()).unwrap().unwrap();
    let (merged, _) = store.prs(&PrQuery { repo_id: Some(repo.id), states: vec![PrState::Merged], limit: 10, ..PrQuery::default() }).unwrap();
    assert_eq!(merged.len(), 2, "both pull requests are merged");
    let by_ref = |r: &str| merged.iter().find(|p| p.from_ref == format!("refs/heads/{r}")).unwrap_or_else(|| panic!("no merged pull request from {r}"));
    let bare = t.repo_dir("TP", "test");
    let git = |args: &[&str]| t.git_ok(&bare, args);
    // The first: squashed into one commit of one parent, with alice's fix in it, on main; her
    // branch is gone, and the fix (a commit the browser flow pushed) was the pull request's tip.
    let squash = by_ref("feature/shout").merge_commit.clone().expect("a merge commit");
    let parents = git(&["rev-list", "--parents", "-n", "1", &squash]);
    assert_eq!(parents.split(' ').count(), 2, "one parent: {parents}");
    assert_eq!(git(&["show", &format!("{squash}:src/main.rs")]).lines().next(), Some("// Says hello, loudly."));
    assert!(git(&["show", &format!("{squash}:src/main.rs")]).contains("let loud = greeting.to_uppercase();"));
    assert_eq!(t.server_rev("TP", "test", "refs/heads/feature/shout"), None, "the source branch was deleted");
    let fix = by_ref("feature/shout").from_hash.clone();
    assert_ne!(fix, shout, "the pull request was rescoped to alice's fix");
    assert_eq!(git(&["rev-parse", &format!("{fix}^")]), shout);
    // The second (keyboard, the default no-ff): a merge commit of two parents, the branch gone.
    let merge = by_ref("docs").merge_commit.clone().expect("a merge commit");
    let parents = git(&["rev-list", "--parents", "-n", "1", &merge]);
    assert_eq!(parents.split(' ').collect::<Vec<_>>()[1..], [squash.as_str(), docs.as_str()], "main then docs");
    assert_eq!(git(&["rev-parse", "refs/heads/main"]), merge, "main is at the last merge");
    assert_eq!(t.server_rev("TP", "test", "refs/heads/docs"), None);
    t.fsck("TP", "test");
}

/// The repository of the branches, tags and commit-graph flow (`refs.js`), pushed by `writer`:
/// `main` with a merge of `topic` and then "Indent and fix" (src/lib.rs reindented only,
/// notes.txt's line 15 changed); `topic` (merged); `feature/ui` (one commit on main before the
/// last); tag `v1.0` on the first commit.
fn refs_repo(t: &TestServer) {
    let dir = t.dir("refs-sample");
    let git = |args: &[&str]| t.git_ok(&dir, args);
    git(&["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/lib.rs"), "pub fn answer() -> u32 {\n    42\n}\n").unwrap();
    let notes: Vec<String> = (1..=30).map(|n| format!("note {n}")).collect();
    std::fs::write(dir.join("notes.txt"), notes.join("\n") + "\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "Start"]);
    git(&["tag", "v1.0"]);
    git(&["checkout", "-q", "-b", "topic"]);
    std::fs::write(dir.join("topic.txt"), "on topic\n").unwrap();
    git(&["add", "topic.txt"]);
    git(&["commit", "-q", "-m", "Work on the topic"]);
    git(&["checkout", "-q", "main"]);
    std::fs::write(dir.join("main.txt"), "on main\n").unwrap();
    git(&["add", "main.txt"]);
    git(&["commit", "-q", "-m", "Work on main"]);
    git(&["merge", "-q", "--no-ff", "--no-edit", "topic"]);
    git(&["checkout", "-q", "-b", "feature/ui"]);
    std::fs::write(dir.join("ui.txt"), "a new screen\n").unwrap();
    git(&["add", "ui.txt"]);
    git(&["commit", "-q", "-m", "Sketch the new screen"]);
    git(&["checkout", "-q", "main"]);
    std::fs::write(dir.join("src/lib.rs"), "pub fn answer() -> u32 {\n        42\n}\n").unwrap();
    let mut notes = notes;
    notes[14] = "note fifteen".into();
    std::fs::write(dir.join("notes.txt"), notes.join("\n") + "\n").unwrap();
    git(&["commit", "-q", "-am", "Indent and fix"]);
    git(&["push", "-q", &t.url_as("writer", "scm/TP/test.git"), "main", "topic", "feature/ui", "v1.0"]);
}

#[test]
fn branches_tags_the_picker_the_commit_graph_and_commit_diffs_work_in_headless_chromium() {
    let t = TestServer::start();
    refs_repo(&t);
    run_script(
        "refs.js",
        &[
            ("TROVE_ROOT", t.root.clone()),
            ("TROVE_USER", "writer".into()),
            ("TROVE_USER_PASSWORD", password("writer")),
            ("TROVE_REPO", "TP/test".into()),
            ("TROVE_SCREENSHOTS", screenshots(&t).display().to_string()),
        ],
    );
    // What the browser did, as git sees it: the tag made and the branch made and deleted.
    assert!(t.server_rev("TP", "test", "refs/tags/v2.0").is_some(), "the tag made in the browser");
    assert_eq!(t.server_rev("TP", "test", "refs/heads/hotfix/from-tag"), None, "the branch deleted in the browser");
    assert!(t.server_rev("TP", "test", "refs/heads/topic").is_some(), "the delete that was dismissed");
    t.fsck("TP", "test");
}

/// Every page an administrator reaches from the home page (a repository with a README, a
/// branch, a tag, an open pull request with a comment, a commit comment, a group, a webhook and
/// a branch restriction, so their pages are there to reach): no broken link, no CSP violation,
/// no critical or serious axe-core finding, nothing wider than a 390 px phone screen.
#[test]
fn every_page_from_home_answers_fits_a_phone_keeps_the_csp_and_passes_axe() {
    let t = TestServer::start();
    sample_repo(&t);
    let auth = basic("admin", &password("admin"));
    let call = |method: &str, path: &str, body: &str| {
        let r = t.http(method, path, &[("Authorization", auth.as_str()), ("Content-Type", "application/json")], body.as_bytes());
        assert!(r.status < 300, "{method} {path}: {} {}", r.status, r.text());
    };
    let r = "/rest/api/1.0/projects/TP/repos/test";
    call("POST", &format!("{r}/pull-requests"), r#"{"title":"Start a feature","fromRef":{"id":"refs/heads/feature"},"toRef":{"id":"refs/heads/main"}}"#);
    call("POST", &format!("{r}/pull-requests/1/comments"), r#"{"text":"Looks **good**"}"#);
    call("POST", &format!("{r}/commits/main/comments"), r#"{"text":"A note on this commit"}"#);
    call("POST", "/rest/api/1.0/admin/groups?name=developers", "");
    call("POST", "/rest/branch-permissions/2.0/projects/TP/repos/test/restrictions", r#"{"type":"no-deletes","matcher":{"id":"main","type":{"id":"BRANCH"}}}"#);
    run_script(
        "crawl.js",
        &[("TROVE_ROOT", t.root.clone()), ("TROVE_ADMIN", "admin".into()), ("TROVE_ADMIN_PASSWORD", password("admin")), ("TROVE_CRAWL_MAX", "250".into())],
    );
}
