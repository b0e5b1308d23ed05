//! Search, the file finder, profiles and deleting users through `app()` with `oneshot` (no
//! sockets): nothing the caller may not read is ever listed or searched, bad input gets a
//! message, the code search's limits hold, and a deleted user's work keeps their name.

use axum::body::Body;
use http::{Request, StatusCode, header};
use tower::ServiceExt as _;
use trove_store::{GlobalPermission, Owner, Password, Permission, ProjectKey, RepoSlug, UserName};

use crate::code_search::{self, CodeQuery, Limits, Target};
use crate::{Server, ServerConfig, app};

struct Fixture {
    _dir: tempfile::TempDir,
    server: Server,
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
}

fn name(s: &str) -> UserName {
    UserName::parse(s).unwrap()
}

/// Users `admin` (SYS_ADMIN), `admin2` (ADMIN), `reader` (read on TP), `outsider`; private
/// project TP ("Test Project") with `test`, public project PUB with `open`, private project
/// SECRET with `hidden-test` that only administrators see. Each repository has `main` with
/// `src/lib.rs`, a README and a line holding `needle` (SECRET's says `needle secret`).
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::open(ServerConfig::new(dir.path())).unwrap();
    let s = server.store();
    for (n, g) in [
        ("admin", GlobalPermission::SysAdmin),
        ("admin2", GlobalPermission::Admin),
        ("reader", GlobalPermission::LicensedUser),
        ("outsider", GlobalPermission::LicensedUser),
    ] {
        s.create_user(&name(n), &Password::new(&format!("{n}-password")).unwrap(), g).unwrap();
    }
    for (key, pname, public, slug) in
        [("TP", "Test Project", false, "test"), ("PUB", "Public things", true, "open"), ("SECRET", "Secret", false, "hidden-test")]
    {
        let k = ProjectKey::parse(key).unwrap();
        s.create_project(&k, Some(pname), public).unwrap();
        let repo = s.create_repo(&Owner::Project(k), &RepoSlug::parse(slug).unwrap(), false).unwrap();
        let what = if key == "SECRET" { "needle secret" } else { "needle" };
        commit(&s.repo_path(&repo), &[("README.md", "# Readme\n".to_owned()), ("src/lib.rs", format!("fn main() {{}}\n// a {what} here\n"))]);
    }
    s.grant_project(&name("reader"), &ProjectKey::parse("TP").unwrap(), Permission::Read).unwrap();
    Fixture { _dir: dir, server }
}

fn git(work: &std::path::Path, args: &[&str]) -> String {
    let o = std::process::Command::new("git")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", work)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(["-c", "user.name=T", "-c", "user.email=t@example.com"])
        .current_dir(work)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

/// Commits `files` on `main` of the bare repository `bare` (a new root commit each time).
fn commit(bare: &std::path::Path, files: &[(&str, String)]) {
    let work = tempfile::tempdir().unwrap();
    git(work.path(), &["init", "-q", "-b", "main"]);
    for (p, text) in files {
        let path = work.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    git(work.path(), &["add", "."]);
    git(work.path(), &["commit", "-q", "-m", "files"]);
    git(work.path(), &["push", "-q", "-f", bare.to_str().unwrap(), "main"]);
}

impl Fixture {
    fn session(&self, user: &str) -> (String, String) {
        let u = self.server.store().user(&name(user)).unwrap().unwrap();
        let (id, csrf) = self.server.store().create_session(u.id, 3600).unwrap();
        (format!("{}={id}", crate::web::SESSION_COOKIE), csrf)
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

    async fn get_as(&self, user: Option<&str>, path: &str) -> Resp {
        let cookie = user.map(|u| self.session(u).0);
        self.send("GET", path, cookie.as_deref(), None).await
    }

    async fn post_as(&self, user: &str, path: &str, form: &str) -> Resp {
        let (cookie, csrf) = self.session(user);
        self.send("POST", path, Some(&cookie), Some(&format!("{form}&csrf={csrf}"))).await
    }

    fn repo(&self, key: &str, slug: &str) -> trove_store::Repo {
        self.server.store().repo(&Owner::parse(key).unwrap(), &RepoSlug::parse(slug).unwrap()).unwrap().unwrap()
    }
}

#[tokio::test]
async fn header_search_and_its_suggestions_list_only_what_the_caller_may_read() {
    let f = fixture();
    // (caller, repositories expected for "test", projects expected for "t")
    let cases: &[(Option<&str>, &[&str], &[&str])] = &[
        (None, &[], &["PUB"]),
        (Some("outsider"), &[], &["PUB"]),
        (Some("reader"), &["TP/test"], &["PUB", "TP"]),
        (Some("admin"), &["TP/test", "SECRET/hidden-test"], &["PUB", "SECRET", "TP"]),
    ];
    for (who, repos, projects) in cases {
        let page = f.get_as(*who, "/search?q=test").await;
        assert_eq!(page.status, StatusCode::OK, "{who:?}");
        for (path, slug) in [("TP/repos/test", "TP/test"), ("SECRET/repos/hidden-test", "SECRET/hidden-test")] {
            assert_eq!(page.body.contains(&format!("/projects/{path}/browse")), repos.contains(&slug), "{who:?} {slug}: {}", page.body);
        }
        let json = f.get_as(*who, "/search/suggest?q=t").await;
        assert_eq!(json.status, StatusCode::OK);
        assert!(json.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("application/json"));
        let v: serde_json::Value = serde_json::from_str(&json.body).unwrap();
        let mut keys: Vec<&str> = v["projects"].as_array().unwrap().iter().map(|p| p["key"].as_str().unwrap()).collect();
        keys.sort();
        assert_eq!(&keys, projects, "{who:?}");
        for r in v["repositories"].as_array().unwrap() {
            let slug = format!("{}/{}", r["project"].as_str().unwrap(), r["slug"].as_str().unwrap());
            assert!(slug == "PUB/open" || repos.contains(&slug.as_str()), "{who:?} was offered {slug}");
        }
    }
    // By project name too, and Bitbucket's address of the page.
    let by_name = f.get_as(Some("reader"), "/plugins/servlet/search?q=public+THINGS").await;
    assert!(by_name.body.contains("href=\"/projects/PUB\""), "{}", by_name.body);
    // Every page has the box; it is a plain GET form.
    let home = f.get_as(None, "/").await;
    assert!(home.body.contains("action=\"/search\"") && home.body.contains("data-suggest=\"/search/suggest\""), "{}", home.body);
    // An over-long query is a clear 400; an empty one the form.
    let long = f.get_as(Some("reader"), &format!("/search?q={}", "a".repeat(201))).await;
    assert_eq!(long.status, StatusCode::BAD_REQUEST);
    assert!(long.body.contains("too long"), "{}", long.body);
    assert_eq!(f.get_as(None, "/search").await.status, StatusCode::OK);
}

#[tokio::test]
async fn code_search_links_each_matching_line_and_never_searches_what_the_caller_cannot_read() {
    let f = fixture();
    let outsider = f.get_as(Some("outsider"), "/search?q=NEEDLE&type=code").await;
    assert_eq!(outsider.status, StatusCode::OK, "{}", outsider.body);
    assert!(outsider.body.contains("href=\"/projects/PUB/repos/open/browse/src/lib.rs?at=refs/heads/main#L2\""), "the line's link: {}", outsider.body);
    assert!(outsider.body.contains("<mark>needle</mark>"), "{}", outsider.body);
    assert!(!outsider.body.contains("/projects/TP/") && !outsider.body.contains("secret"), "{}", outsider.body);
    assert!(outsider.body.contains("1 matching line in 1 of 1 repository"), "{}", outsider.body);
    let reader = f.get_as(Some("reader"), "/search?q=needle&type=code").await;
    assert!(reader.body.contains("/projects/TP/repos/test/browse/src/lib.rs") && !reader.body.contains("secret"), "{}", reader.body);
    let admin = f.get_as(Some("admin"), "/search?q=needle+secret&type=code").await;
    assert!(admin.body.contains("/projects/SECRET/repos/hidden-test/browse/src/lib.rs"), "{}", admin.body);
    let anonymous = f.get_as(None, "/search?q=needle&type=code").await;
    assert!(anonymous.body.contains("/projects/PUB/repos/open/") && !anonymous.body.contains("/projects/TP/"), "{}", anonymous.body);
    let none = f.get_as(Some("reader"), "/search?q=nothing+like+this&type=code").await;
    assert!(none.body.contains("id=\"no-code\""), "{}", none.body);
}

#[tokio::test]
async fn code_search_answers_bad_input_with_a_message() {
    let f = fixture();
    for (q, status, says) in [
        ("x", StatusCode::BAD_REQUEST, "at least 2 characters"),
        (&"a".repeat(201), StatusCode::BAD_REQUEST, "at most 200"),
        ("a%07b", StatusCode::BAD_REQUEST, "control characters"),
        ("need.*le", StatusCode::OK, "Regular expressions are not supported"),
    ] {
        let r = f.get_as(Some("reader"), &format!("/search?q={q}&type=code")).await;
        assert_eq!(r.status, status, "{q}: {}", r.body);
        assert!(r.body.contains(says), "{q}: {}", r.body);
    }
    // An empty query is the form, not an error.
    let empty = f.get_as(Some("reader"), "/search?q=+&type=code").await;
    assert_eq!(empty.status, StatusCode::OK);
}

#[tokio::test]
async fn code_search_keeps_to_its_limits_and_gives_way_to_git_traffic() {
    let f = fixture();
    let state = f.server.shared.clone();
    let open = f.repo("PUB", "open");
    let many = (1..=12).map(|i| format!("needle {i}\n")).collect::<String>();
    let big = "needle\n".repeat(200_000);
    commit(&f.server.store().repo_path(&open), &[("a.txt", many.clone()), ("b.txt", many), ("big.txt", big)]);
    let q = CodeQuery::parse("needle").unwrap();
    let targets =
        |names: &[(&str, &str)]| names.iter().map(|(k, s)| Target { id: f.repo(k, s).id, dir: f.server.store().repo_path(&f.repo(k, s)) }).collect::<Vec<_>>();
    // At most `per_file` lines of a file; files over the size cap are left out and counted.
    let o = code_search::search(&state, &q, targets(&[("PUB", "open")]), Limits::default()).await;
    let paths: Vec<&str> = o.hits.iter().map(|h| h.path.as_str()).collect();
    assert_eq!(paths, ["a.txt"; 5].iter().chain(["b.txt"; 5].iter()).copied().collect::<Vec<_>>());
    assert_eq!((o.large_files, o.searched, o.more), (1, 1, false));
    // The result cap stops the search and says there is more.
    let o = code_search::search(&state, &q, targets(&[("PUB", "open"), ("TP", "test")]), Limits { max_results: 3, ..Limits::default() }).await;
    assert_eq!((o.hits.len(), o.more), (3, true));
    // Repositories past the cap are not searched, and counted.
    let o =
        code_search::search(&state, &q, targets(&[("TP", "test"), ("PUB", "open"), ("SECRET", "hidden-test")]), Limits { max_repos: 1, ..Limits::default() })
            .await;
    assert_eq!((o.searched, o.skipped), (1, 2));
    assert!(o.hits.iter().all(|h| h.repo_id == f.repo("TP", "test").id));
    // With every pack slot taken by clones and fetches, the search stops at once and says so.
    let all = state.packs.available_permits() as u32;
    let held = state.packs.clone().acquire_many_owned(all).await.unwrap();
    let o = code_search::search(&state, &q, targets(&[("TP", "test")]), Limits::default()).await;
    assert!(o.busy && o.hits.is_empty() && o.skipped == 1, "{o:?}");
    drop(held);
    let o = code_search::search(&state, &q, targets(&[("TP", "test")]), Limits::default()).await;
    assert!(!o.busy && o.hits.len() == 1, "{o:?}");
}

#[tokio::test]
async fn the_file_finder_lists_paths_at_a_revision_for_readers_only() {
    let f = fixture();
    let base = "/projects/TP/repos/test/find";
    let all = f.get_as(Some("reader"), base).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert!(all.body.contains("2 files.") && all.body.contains("href=\"/projects/TP/repos/test/browse/src/lib.rs?at=refs/heads/main\""), "{}", all.body);
    let found = f.get_as(Some("reader"), &format!("{base}?q=slb&at=refs/heads/main")).await;
    assert!(found.body.contains("1 file matches.") && found.body.contains("src/lib.rs"), "{}", found.body);
    let json = f.get_as(Some("reader"), &format!("{base}?format=json")).await;
    let v: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(v["files"], serde_json::json!(["README.md", "src/lib.rs"]));
    assert_eq!(f.get_as(Some("outsider"), base).await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.get_as(None, base).await.status, StatusCode::FOUND, "anonymous callers are asked to log in");
    assert_eq!(f.get_as(Some("reader"), &format!("{base}?at=refs/heads/nope")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.get_as(Some("reader"), &format!("{base}?at=--output=x")).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn profiles_show_the_display_name_and_only_readable_personal_repositories() {
    let f = fixture();
    let s = f.server.store();
    s.set_user_details(&name("reader"), Some("Rita Reader"), Some("rita@example.com")).unwrap();
    let owner = Owner::User(name("reader"));
    s.create_repo(&owner, &RepoSlug::parse("mine").unwrap(), false).unwrap();
    s.create_repo(&owner, &RepoSlug::parse("shared").unwrap(), true).unwrap();
    let page = f.get_as(Some("outsider"), "/users/reader").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Rita Reader") && page.body.contains(">RR<") && page.body.contains("rita@example.com"), "{}", page.body);
    assert!(page.body.contains("/repos/shared/browse") && !page.body.contains("/repos/mine/"), "{}", page.body);
    assert!(page.body.contains("id=\"no-recent-prs\""), "{}", page.body);
    let own = f.get_as(Some("reader"), "/users/reader").await;
    assert!(own.body.contains("/repos/mine/browse") && own.body.contains("Edit your profile"), "{}", own.body);
    assert_eq!(f.get_as(Some("reader"), "/users/nobody").await.status, StatusCode::NOT_FOUND);
    // Anonymous callers go to the personal project, as before; `/users/{name}/repos/…` still works.
    let anon = f.get_as(None, "/users/reader").await;
    assert_eq!((anon.status, anon.location()), (StatusCode::FOUND, "/projects/~reader"));
    let deep = f.get_as(Some("reader"), "/users/reader/repos/mine/browse").await;
    assert_eq!((deep.status, deep.location()), (StatusCode::FOUND, "/projects/~reader/repos/mine/browse"));
}

#[tokio::test]
async fn users_edit_their_own_details_and_administrators_anyones() {
    let f = fixture();
    let s = f.server.store();
    let r = f.post_as("reader", "/account", "action=details&displayName=+Rita+R.+&email=rita%40example.com").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/account?done=saved"), "{}", r.body);
    let u = s.user(&name("reader")).unwrap().unwrap();
    assert_eq!((u.display_name.as_str(), u.email.as_deref()), ("Rita R.", Some("rita@example.com")));
    let bad = f.post_as("reader", "/account", "action=details&displayName=Rita&email=not-an-address").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("is not an e-mail address"), "{}", bad.body);
    assert_eq!(s.user(&name("reader")).unwrap().unwrap().email.as_deref(), Some("rita@example.com"), "a bad form changes nothing");
    // An empty address removes it.
    f.post_as("reader", "/account", "action=details&displayName=Rita&email=").await;
    assert_eq!(s.user(&name("reader")).unwrap().unwrap().email, None);
    // Administrators edit anyone's on the user's page; others may not see it.
    let page = f.get_as(Some("admin2"), "/admin/users/view?name=reader").await;
    assert!(page.status == StatusCode::OK && page.body.contains("id=\"details-form\""), "{}", page.body);
    assert_eq!(f.get_as(Some("outsider"), "/admin/users/view?name=reader").await.status, StatusCode::FORBIDDEN);
    let r = f.post_as("admin2", "/admin/users/view?name=reader", "action=details&displayName=Reader+One&email=one%40example.com").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(s.user(&name("reader")).unwrap().unwrap().display_name, "Reader One");
    let (audit, _) = s.audit_entries(&Default::default()).unwrap();
    assert!(audit.iter().any(|e| e.action == "user.update" && e.actor == "admin2"), "{audit:?}");
}

#[tokio::test]
async fn deleting_a_user_keeps_their_work_and_name_and_ends_their_access() {
    let f = fixture();
    let s = f.server.store();
    s.set_user_details(&name("reader"), Some("Rita Reader"), None).unwrap();
    let personal = s.create_repo(&Owner::User(name("reader")), &RepoSlug::parse("mine").unwrap(), false).unwrap();
    commit(&s.repo_path(&personal), &[("x.txt", "x\n".to_owned())]);
    let token = s.create_token(&name("reader"), "ci", Permission::Read).unwrap();
    let (reader_cookie, _) = f.session("reader");
    // A comment of hers on a commit.
    let test = f.repo("TP", "test");
    let tip = git(&s.repo_path(&test), &["rev-parse", "main"]);
    let commit_page = format!("/projects/TP/repos/test/commits/{tip}");
    let r = f.post_as("reader", &commit_page, "action=comment&text=Looks+good").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // Refusals change nothing: a wrong confirmation, oneself, a SYS_ADMIN by an ADMIN.
    let wrong = f.post_as("admin2", "/admin/users/view?name=reader", "action=delete&confirm=rita").await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.body.contains("nothing was deleted"), "{}", wrong.body);
    let own = f.post_as("admin2", "/admin/users/view?name=admin2", "action=delete&confirm=admin2").await;
    assert!(own.status == StatusCode::BAD_REQUEST && own.body.contains("your own account"), "{}", own.body);
    let sys = f.post_as("admin2", "/admin/users/view?name=admin", "action=delete&confirm=admin").await;
    assert!(sys.status == StatusCode::BAD_REQUEST && sys.body.contains("system administrator"), "{}", sys.body);
    assert_eq!(f.post_as("outsider", "/admin/users/view?name=reader", "action=delete&confirm=reader").await.status, StatusCode::FORBIDDEN);
    assert!(s.user(&name("reader")).unwrap().is_some());
    // Deleted.
    let r = f.post_as("admin2", "/admin/users/view?name=reader", "action=delete&confirm=reader").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/admin/users?done=deleted"), "{}", r.body);
    assert!(s.user(&name("reader")).unwrap().is_none());
    // Her session and token no longer work.
    let after = f.send("GET", "/account", Some(&reader_cookie), None).await;
    assert_eq!(after.status, StatusCode::FOUND, "the session ended");
    assert!(s.verify_token(&token.secret, None).unwrap().is_none(), "the token went");
    // Her comment stays and names her.
    let page = f.get_as(Some("admin"), &commit_page).await;
    assert!(page.body.contains("Looks good") && page.body.contains("Rita Reader") && !page.body.contains("Deleted user"), "{}", page.body);
    // Her personal repository stays, for administrators.
    assert!(s.repo_path(&personal).is_dir());
    assert_eq!(f.get_as(Some("admin"), "/projects/~reader/repos/mine/browse").await.status, StatusCode::OK);
    assert_eq!(f.get_as(Some("outsider"), "/projects/~reader/repos/mine/browse").await.status, StatusCode::NOT_FOUND);
    // The audit log has the deletion; her profile is gone.
    let (audit, _) = s.audit_entries(&Default::default()).unwrap();
    assert!(audit.iter().any(|e| e.action == "user.delete" && e.target == "user:reader" && e.actor == "admin2"), "{audit:?}");
    assert_eq!(f.get_as(Some("admin"), "/users/reader").await.status, StatusCode::NOT_FOUND);
}

/// The figures in docs/benchmarks.md: code search, the name search and the file finder on the
/// benchmark repository (bench/gen_repo.py, 3,000 commits, 3,072 files), through `app()` in
/// whatever profile the test is built in. Prints timings; asserts only that results came. The
/// suite runs it on 300 commits; the figures are of 3,000:
///
/// `TROVE_SEARCH_BENCH_COMMITS=3000 cargo test -p trove-server --lib -- search_on_the_benchmark_repository --nocapture`
#[tokio::test]
async fn search_on_the_benchmark_repository() {
    let commits = std::env::var("TROVE_SEARCH_BENCH_COMMITS").unwrap_or_else(|_| "300".to_owned());
    let f = fixture();
    let repo = f.repo("PUB", "open");
    let bare = f.server.store().repo_path(&repo);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/gen_repo.py");
    let mut gen_ = std::process::Command::new("python3").args([script, commits.as_str()]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let st = std::process::Command::new("git")
        .args(["--git-dir", bare.to_str().unwrap(), "fast-import", "--quiet", "--force"])
        .stdin(gen_.stdout.take().unwrap())
        .status()
        .unwrap();
    assert!(st.success() && gen_.wait().unwrap().success());
    let time = |label: &str, d: std::time::Duration| println!("{label}: {:.1} ms", d.as_secs_f64() * 1000.0);
    for (label, path) in [
        ("code search, 'keepalive request' (first: tree listed)", "/search?q=keepalive+request&type=code"),
        ("code search, 'keepalive request' (again)", "/search?q=keepalive+request&type=code"),
        ("code search, 'handshake' (results capped at 100)", "/search?q=handshake&type=code"),
        ("code search, no match", "/search?q=no+such+text+anywhere&type=code"),
        ("name search, 'open'", "/search?q=open"),
        ("file finder page, 'f001'", "/projects/PUB/repos/open/find?q=f001"),
        ("file finder listing (JSON)", "/projects/PUB/repos/open/find?format=json"),
    ] {
        let mut runs = Vec::new();
        for _ in 0..5 {
            let t0 = std::time::Instant::now();
            let r = f.get_as(Some("admin"), path).await;
            runs.push(t0.elapsed());
            assert_eq!(r.status, StatusCode::OK, "{path}");
        }
        time(&format!("{label}, first"), runs[0]);
        runs.sort();
        time(&format!("{label}, median of 5"), runs[2]);
    }
    let r = f.get_as(Some("admin"), "/search?q=keepalive+request&type=code").await;
    assert!(r.body.contains("/projects/PUB/repos/open/browse/src/d"), "{}", &r.body[..r.body.len().min(3000)]);
}

/// REST: `PUT /users` changes the caller's own details, checked as the pages check them;
/// `DELETE /admin/users` keeps the personal repositories and the name.
#[tokio::test]
async fn rest_users_change_their_own_details_and_a_deletion_keeps_the_users_content() {
    use base64::Engine as _;
    let f = fixture();
    let rest = |method: &str, path: &str, user: &str, body: &str| {
        let auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{user}-password")));
        let req = Request::builder()
            .method(method)
            .uri(format!("/rest/api/1.0{path}"))
            .header(header::HOST, "localhost:7990")
            .header(header::AUTHORIZATION, auth)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let app = app(&f.server);
        async move {
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
            (status, serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default())
        }
    };
    let (status, v) = rest("PUT", "/users", "reader", r#"{"displayName":" Rita Reader ","email":"rita@example.com"}"#).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!((v["name"].as_str(), v["displayName"].as_str(), v["emailAddress"].as_str()), (Some("reader"), Some("Rita Reader"), Some("rita@example.com")));
    let (status, v) = rest("PUT", "/users", "reader", r#"{"email":"no at sign"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["errors"][0]["context"], "email", "{v}");
    let (status, _) = rest("PUT", "/users", "reader", r#"{"name":"outsider","displayName":"Not Me"}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "only one's own details");
    assert_eq!(f.server.store().user(&name("outsider")).unwrap().unwrap().display_name, "outsider");
    let (status, v) = rest("GET", "/users/reader", "outsider", "").await;
    assert_eq!((status, v["displayName"].as_str()), (StatusCode::OK, Some("Rita Reader")));
    // The deletion keeps the personal repository and the name.
    let mine = f.server.store().create_repo(&Owner::User(name("reader")), &RepoSlug::parse("mine").unwrap(), false).unwrap();
    let id = f.server.store().user(&name("reader")).unwrap().unwrap().id;
    let (status, v) = rest("DELETE", "/admin/users?name=reader", "admin", "").await;
    assert_eq!((status, v["name"].as_str()), (StatusCode::OK, Some("reader")));
    assert!(f.server.store().repo_path(&mine).is_dir());
    assert_eq!(f.server.store().deleted_user(id).unwrap().map(|d| d.display_name), Some("Rita Reader".to_owned()));
    let (status, _) = rest("GET", "/projects/~reader/repos/mine", "admin", "").await;
    assert_eq!(status, StatusCode::OK, "administrators still reach the personal repository");
}

/// REST code search (`POST /rest/search/latest/search`, Bitbucket's): the same permissions and
/// limits as the page, Bitbucket's shape, modifiers, paging, and a 400 for bad input.
#[tokio::test]
async fn rest_code_search_answers_in_bitbuckets_shape_for_what_the_caller_may_read() {
    use base64::Engine as _;
    let f = fixture();
    let search = |user: Option<&str>, body: &str| {
        let mut b = Request::builder()
            .method("POST")
            .uri("/rest/search/latest/search")
            .header(header::HOST, "localhost:7990")
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(u) = user {
            b = b.header(header::AUTHORIZATION, format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{u}-password"))));
        }
        let req = b.body(Body::from(body.to_owned())).unwrap();
        let app = app(&f.server);
        async move {
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
            (status, serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default())
        }
    };
    let slugs = |v: &serde_json::Value| {
        let mut s: Vec<String> = v["code"]["values"]
            .as_array()
            .unwrap_or_else(|| panic!("no code values: {v}"))
            .iter()
            .map(|x| format!("{}/{}", x["repository"]["project"]["key"].as_str().unwrap(), x["repository"]["slug"].as_str().unwrap()))
            .collect();
        s.sort();
        s
    };
    let (status, v) = search(Some("reader"), r#"{"query":"NEEDLE","entities":{"code":{}},"limits":{"primary":10,"secondary":10}}"#).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(slugs(&v), ["PUB/open", "TP/test"]);
    let hit = &v["code"]["values"][0];
    assert_eq!((hit["file"].as_str(), hit["hitCount"].as_i64()), (Some("src/lib.rs"), Some(1)));
    assert_eq!(hit["hitContexts"][0][0], serde_json::json!({"line": 2, "text": "// a <em>needle</em> here"}));
    assert_eq!((v["code"]["isLastPage"].as_bool(), v["code"]["count"].as_i64(), v["scope"]["type"].as_str()), (Some(true), Some(2), Some("GLOBAL")));
    // Anonymous callers are asked to log in (REST takes no anonymous posts); administrators
    // search everything.
    assert_eq!(search(None, r#"{"query":"needle"}"#).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(slugs(&search(Some("admin"), r#"{"query":"needle"}"#).await.1), ["PUB/open", "SECRET/hidden-test", "TP/test"]);
    assert_eq!(slugs(&search(Some("outsider"), r#"{"query":"needle secret"}"#).await.1), Vec::<String>::new());
    // Modifiers narrow; paging pages through files.
    assert_eq!(slugs(&search(Some("admin"), r#"{"query":"needle project:tp"}"#).await.1), ["TP/test"]);
    assert_eq!(slugs(&search(Some("admin"), r#"{"query":"repo:PUB/open needle"}"#).await.1), ["PUB/open"]);
    let (_, first) = search(Some("admin"), r#"{"query":"needle","entities":{"code":{"start":0,"limit":2}}}"#).await;
    assert_eq!(
        (first["code"]["values"].as_array().unwrap().len(), first["code"]["isLastPage"].as_bool(), first["code"]["nextStart"].as_i64()),
        (2, Some(false), Some(2))
    );
    let (_, rest) = search(Some("admin"), r#"{"query":"needle","entities":{"code":{"start":2,"limit":2}}}"#).await;
    assert_eq!((rest["code"]["values"].as_array().unwrap().len(), rest["code"]["isLastPage"].as_bool()), (1, Some(true)));
    // Bad input.
    for body in [r#"{"query":""}"#, r#"{"query":"x"}"#, r#"{"query":"project:TP"}"#, "{}"] {
        let (status, v) = search(Some("reader"), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["errors"][0]["context"], "query", "{body}: {v}");
    }
}
