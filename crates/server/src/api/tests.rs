//! Handler tests for the REST API through `app()` with `oneshot` (no sockets): every endpoint's
//! success and failure paths, the envelope, the error shape, and the permission rules.

use axum::body::Body;
use base64::Engine as _;
use http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use trove_store::{GlobalPermission, Owner, Password, Permission, ProjectKey, RepoSlug, UserName};

use crate::{Server, ServerConfig, app};

pub(super) struct Fixture {
    _dir: tempfile::TempDir,
    pub(super) server: Server,
    ctx: String,
}

pub(super) struct Resp {
    pub(super) status: StatusCode,
    pub(super) headers: http::HeaderMap,
    pub(super) body: Vec<u8>,
}

impl Resp {
    pub(super) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The first error's `(message, exceptionName, context)`, after checking Bitbucket's shape.
    pub(super) fn error(&self) -> (String, String, Value) {
        assert_eq!(self.header("content-type"), Some("application/json;charset=UTF-8"));
        let v = self.json();
        let e = &v["errors"][0];
        assert!(e["message"].is_string() && e["exceptionName"].is_string() && e.get("context").is_some(), "error shape: {v}");
        (e["message"].as_str().unwrap().to_owned(), e["exceptionName"].as_str().unwrap().to_owned(), e["context"].clone())
    }

    fn exception(&self) -> String {
        self.error().1
    }
}

fn name(s: &str) -> UserName {
    UserName::parse(s).unwrap()
}

/// Users `admin` (SYS_ADMIN), `reader` (read on TP), `owner` (admin on TP), `outsider`;
/// private project TP with `test`, public project PUB with `open`.
pub(super) fn fixture(ctx: &str, base_url: Option<&str>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path());
    if !ctx.is_empty() {
        config.context_path = Some(trove_store::ContextPath::parse(ctx).unwrap());
    }
    config.base_url = base_url.map(|b| trove_store::BaseUrl::parse(b).unwrap());
    let server = Server::open(config).unwrap();
    let s = server.store();
    for (n, g) in [
        ("admin", GlobalPermission::SysAdmin),
        ("reader", GlobalPermission::LicensedUser),
        ("owner", GlobalPermission::LicensedUser),
        ("outsider", GlobalPermission::LicensedUser),
    ] {
        s.create_user(&name(n), &Password::new(&format!("{n}-password")).unwrap(), g).unwrap();
    }
    let tp = ProjectKey::parse("TP").unwrap();
    s.create_project(&tp, Some("Test Project"), false).unwrap();
    s.create_repo(&Owner::Project(tp.clone()), &RepoSlug::parse("test").unwrap(), false).unwrap();
    s.grant_project(&name("reader"), &tp, Permission::Read).unwrap();
    s.grant_project(&name("owner"), &tp, Permission::Admin).unwrap();
    let pubk = ProjectKey::parse("PUB").unwrap();
    s.create_project(&pubk, None, true).unwrap();
    s.create_repo(&Owner::Project(pubk), &RepoSlug::parse("open").unwrap(), false).unwrap();
    Fixture { _dir: dir, server, ctx: ctx.to_owned() }
}

pub(super) fn basic(user: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}")))
}

impl Fixture {
    async fn send(&self, method: &str, path: &str, auth: Option<String>, body: Option<Vec<u8>>) -> Resp {
        let uri = format!("{}/rest/api/1.0{path}", self.ctx);
        self.raw(method, &uri, auth, body).await
    }

    pub(super) async fn raw(&self, method: &str, uri: &str, auth: Option<String>, body: Option<Vec<u8>>) -> Resp {
        let mut b = Request::builder().method(method).uri(uri).header(header::HOST, "localhost:7990");
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        let req = match body {
            Some(body) => b.header(header::CONTENT_TYPE, "application/json").body(Body::from(body)).unwrap(),
            None => b.body(Body::empty()).unwrap(),
        };
        let resp = app(&self.server).oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), 64 << 20).await.unwrap().to_vec();
        Resp { status, headers, body }
    }

    /// A request as fixture user `who` (`None`: anonymous) with an optional JSON body.
    pub(super) async fn as_(&self, who: Option<&str>, method: &str, path: &str, body: Option<Value>) -> Resp {
        let auth = who.map(|u| basic(u, &format!("{u}-password")));
        self.send(method, path, auth, body.map(|b| b.to_string().into_bytes())).await
    }

    pub(super) async fn get(&self, who: Option<&str>, path: &str) -> Resp {
        self.as_(who, "GET", path, None).await
    }

    pub(super) fn git(&self, cwd: &std::path::Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .env_clear()
            .envs(trove_store::git_env(self.server.store().git_home()))
            .env("GIT_AUTHOR_NAME", "Ann Author")
            .env("GIT_AUTHOR_EMAIL", "ann@example.com")
            .env("GIT_COMMITTER_NAME", "Ann Author")
            .env("GIT_COMMITTER_EMAIL", "ann@example.com")
            .current_dir(cwd)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Pushes three commits on `main` (README.md, src/lib.rs, docs/a.txt), a `feature` branch
    /// and an annotated tag `v1` to TP/test; returns the commit ids, oldest first.
    pub(super) fn seed(&self) -> Vec<String> {
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        self.git(w, &["init", "-q", "-b", "main"]);
        let mut ids = Vec::new();
        for (file, content) in [("README.md", "# Test\nline two\nline three\n"), ("src/lib.rs", "pub fn f() {}\n"), ("docs/a.txt", "a\n")] {
            let p = w.join(file);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
            self.git(w, &["add", file]);
            self.git(w, &["commit", "-q", "-m", &format!("add {file}")]);
            ids.push(self.git(w, &["rev-parse", "HEAD"]));
        }
        self.git(w, &["branch", "feature", &ids[1]]);
        self.git(w, &["tag", "-a", "v1", "-m", "version 1", &ids[0]]);
        let repo = self.server.store().repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("test").unwrap()).unwrap().unwrap();
        let dir = self.server.store().repo_path(&repo);
        self.git(w, &["push", "-q", dir.to_str().unwrap(), "main", "feature", "v1"]);
        ids
    }
}

#[tokio::test]
async fn application_properties_and_the_rest_probe_answer_anyone_as_json() {
    let f = fixture("/stash", None);
    let r = f.get(None, "/application-properties").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/json;charset=UTF-8"));
    assert_eq!(r.json(), json!({"version": "8.15.0", "buildNumber": "8015000", "buildDate": "1697764661289", "displayName": "Bitbucket"}));
    for (method, uri) in [("HEAD", "/stash/rest/"), ("GET", "/stash/rest"), ("HEAD", "/stash/rest/")] {
        // Even wrong credentials do not delay or fail the probe.
        let r = f.raw(method, uri, Some(basic("admin", "wrong")), None).await;
        assert_eq!(r.status, StatusCode::OK, "{method} {uri}");
        assert_eq!(r.header("content-type"), Some("application/json;charset=UTF-8"));
    }
    assert_eq!(f.raw("GET", "/rest/api/1.0/application-properties", None, None).await.status, StatusCode::NOT_FOUND, "outside the context path");
}

#[tokio::test]
async fn unknown_resources_and_methods_get_bitbucket_errors() {
    let f = fixture("", None);
    let r = f.get(Some("admin"), "/no/such/thing").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    r.error();
    let r = f.as_(Some("admin"), "PATCH", "/projects", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.exception().contains("MethodNotAllowed"));
    let r = f.raw("GET", "/rest/other", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    r.error();
}

#[tokio::test]
async fn credentials_are_checked_and_the_user_is_named_in_x_ausername() {
    let f = fixture("", None);
    let r = f.get(Some("reader"), "/projects/TP").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-ausername"), Some("reader"));
    let r = f.send("GET", "/projects/PUB", Some(basic("reader", "wrong")), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.header("www-authenticate").is_some());
    assert!(r.exception().contains("IncorrectPassword"));
    assert!(r.header("x-ausername").is_none());
    // A token works as Bearer and as a Basic password; its scope caps what it may do.
    let token = f.server.store().create_token(&name("owner"), "ci", Permission::Read).unwrap().secret;
    let r = f.send("GET", "/projects/TP", Some(format!("Bearer {token}")), None).await;
    assert_eq!((r.status, r.header("x-ausername")), (StatusCode::OK, Some("owner")));
    let body = json!({"name": "made by token"}).to_string().into_bytes();
    let r = f.send("POST", "/projects/TP/repos", Some(basic("owner", &token)), Some(body)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a read token cannot create repositories");
    assert!(r.exception().contains("AuthorisationException"));
}

#[tokio::test]
async fn private_projects_are_401_for_anonymous_and_404_for_outsiders() {
    let f = fixture("", None);
    for path in ["/projects/TP", "/projects/TP/repos", "/projects/TP/repos/test", "/projects/TP/repos/test/branches", "/projects/NOPE"] {
        let r = f.get(None, path).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "anonymous {path}");
        assert_eq!(r.header("content-type"), Some("application/json;charset=UTF-8"));
        assert!(r.header("www-authenticate").is_some());
        let r = f.get(Some("outsider"), path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "outsider {path}");
        let ex = r.exception();
        assert!(ex.ends_with("NoSuchProjectException") || ex.ends_with("NoSuchRepositoryException"), "{path}: {ex}");
    }
    assert_eq!(
        f.get(Some("outsider"), "/projects/TP/repos/test").await.error().0,
        f.get(Some("outsider"), "/projects/TP/repos/nope").await.error().0.replace("nope", "test")
    );
    assert_eq!(f.get(None, "/projects/PUB").await.status, StatusCode::OK);
    assert_eq!(f.get(None, "/projects/PUB/repos/open").await.status, StatusCode::OK);
    let keys = |r: Resp| r.json()["values"].as_array().unwrap().iter().map(|p| p["key"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(keys(f.get(None, "/projects").await), ["PUB"]);
    assert_eq!(keys(f.get(Some("outsider"), "/projects").await), ["PUB"]);
    assert_eq!(keys(f.get(Some("reader"), "/projects").await), ["PUB", "TP"]);
    let slugs = |r: Resp| r.json()["values"].as_array().unwrap().iter().map(|p| p["slug"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(slugs(f.get(Some("outsider"), "/repos").await), ["open"]);
    assert_eq!(slugs(f.get(Some("admin"), "/repos").await), ["open", "test"]);
    assert_eq!(slugs(f.get(Some("admin"), "/repos?name=TES").await), ["test"]);
}

#[tokio::test]
async fn projects_page_with_next_page_start_only_before_the_last_page() {
    let f = fixture("", None);
    for i in 0..30 {
        let r = f.as_(Some("admin"), "POST", "/projects", Some(json!({"key": format!("P{i:02}"), "name": format!("Project {i}")}))).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let first = f.get(Some("admin"), "/projects").await.json();
    assert_eq!((first["size"].clone(), first["limit"].clone(), first["start"].clone()), (json!(25), json!(25), json!(0)));
    assert_eq!((first["isLastPage"].clone(), first["nextPageStart"].clone()), (json!(false), json!(25)));
    let second = f.get(Some("admin"), "/projects?start=25").await.json();
    assert_eq!((second["size"].clone(), second["isLastPage"].clone()), (json!(7), json!(true)));
    assert!(second.get("nextPageStart").is_none());
    let capped = f.get(Some("admin"), "/projects?limit=100000").await.json();
    assert_eq!(capped["limit"], json!(1000));
    for bad in ["/projects?limit=abc", "/projects?start=-1"] {
        let r = f.get(Some("admin"), bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.exception().ends_with("ArgumentValidationException"));
    }
    let filtered = f.get(Some("admin"), "/projects?name=project%201").await.json();
    assert_eq!(filtered["size"], json!(11), "Project 1 and 10-19");
}

#[tokio::test]
async fn creating_projects_validates_everything_and_changes_nothing_on_error() {
    let f = fixture("", None);
    let count = |f: &Fixture| f.server.store().visible_projects(None, true).unwrap().len();
    let before = count(&f);
    let cases: Vec<(Option<&str>, Vec<u8>, StatusCode, &str)> = vec![
        (Some("admin"), br#"{"name":"No key"}"#.to_vec(), StatusCode::BAD_REQUEST, "key"),
        (Some("admin"), br#"{"key":"1BAD","name":"x"}"#.to_vec(), StatusCode::BAD_REQUEST, "key"),
        (Some("admin"), br#"{"key":"OK"}"#.to_vec(), StatusCode::BAD_REQUEST, "name"),
        (Some("admin"), br#"{"key":"OK","name":"   "}"#.to_vec(), StatusCode::BAD_REQUEST, "name"),
        (Some("admin"), br#"{"key":"OK","name":"x""#.to_vec(), StatusCode::BAD_REQUEST, ""),
        (Some("admin"), br#"{"key":5,"name":"x"}"#.to_vec(), StatusCode::BAD_REQUEST, ""),
        (Some("admin"), Vec::new(), StatusCode::BAD_REQUEST, ""),
        (Some("admin"), br#"{"key":"TP","name":"dup"}"#.to_vec(), StatusCode::CONFLICT, ""),
        (Some("admin"), br#"{"key":"tp","name":"dup"}"#.to_vec(), StatusCode::CONFLICT, ""),
        (Some("outsider"), br#"{"key":"MINE","name":"x"}"#.to_vec(), StatusCode::FORBIDDEN, ""),
        (None, br#"{"key":"ANON","name":"x"}"#.to_vec(), StatusCode::UNAUTHORIZED, ""),
    ];
    for (who, body, want, context) in cases {
        let auth = who.map(|u| basic(u, &format!("{u}-password")));
        let r = f.send("POST", "/projects", auth, Some(body.clone())).await;
        assert_eq!(r.status, want, "{}", String::from_utf8_lossy(&body));
        let (_, _, ctx) = r.error();
        if !context.is_empty() {
            assert_eq!(ctx, json!(context), "{}", String::from_utf8_lossy(&body));
        }
    }
    let big = format!(r#"{{"key":"BIG","name":"x","description":"{}"}}"#, "a".repeat(super::BODY_LIMIT + 10));
    let r = f.send("POST", "/projects", Some(basic("admin", "admin-password")), Some(big.into_bytes())).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    r.error();
    assert_eq!(count(&f), before, "nothing was created");

    let r = f.as_(Some("admin"), "POST", "/projects", Some(json!({"key": "plat", "name": "Platform", "description": "the platform"}))).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let v = r.json();
    assert_eq!(
        (v["key"].as_str(), v["name"].as_str(), v["description"].as_str(), v["type"].as_str()),
        (Some("PLAT"), Some("Platform"), Some("the platform"), Some("NORMAL"))
    );
    assert_eq!(v["links"]["self"][0]["href"], "http://localhost:7990/projects/PLAT");
    // A PROJECT_CREATE user may create projects and administers what they create.
    f.server.store().set_global_permission(&name("outsider"), Some(GlobalPermission::ProjectCreate)).unwrap();
    assert_eq!(f.as_(Some("outsider"), "POST", "/projects", Some(json!({"key": "MINE", "name": "Mine"}))).await.status, StatusCode::CREATED);
    assert_eq!(f.as_(Some("outsider"), "POST", "/projects/MINE/repos", Some(json!({"name": "r"}))).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn projects_update_and_delete_need_project_admin() {
    let f = fixture("", None);
    let up = json!({"name": "Renamed", "description": "new words", "public": true});
    assert_eq!(f.as_(Some("reader"), "PUT", "/projects/TP", Some(up.clone())).await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.as_(Some("outsider"), "PUT", "/projects/TP", Some(up.clone())).await.status, StatusCode::NOT_FOUND);
    let r = f.as_(Some("owner"), "PUT", "/projects/TP", Some(up)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!((r.json()["name"].as_str(), r.json()["public"].as_bool()), (Some("Renamed"), Some(true)));
    assert_eq!(f.get(None, "/projects/TP").await.status, StatusCode::OK, "now public");
    let r = f.as_(Some("owner"), "PUT", "/projects/TP", Some(json!({"key": "PUB"}))).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = f.as_(Some("owner"), "PUT", "/projects/TP", Some(json!({"key": "NEWKEY"}))).await;
    assert_eq!((r.status, r.json()["key"].as_str()), (StatusCode::OK, Some("NEWKEY")));
    assert_eq!(f.get(Some("owner"), "/projects/TP").await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.get(Some("owner"), "/projects/NEWKEY/repos/test").await.status, StatusCode::OK, "repositories move with the key");
    let r = f.as_(Some("owner"), "DELETE", "/projects/NEWKEY", None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "a project with repositories is not deleted");
    assert_eq!(f.as_(Some("reader"), "DELETE", "/projects/NEWKEY/repos/test", None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.as_(Some("owner"), "DELETE", "/projects/NEWKEY/repos/test", None).await.status, StatusCode::ACCEPTED);
    let r = f.as_(Some("owner"), "DELETE", "/projects/NEWKEY", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.header("content-type"), Some("application/json;charset=UTF-8"));
    assert_eq!(f.get(Some("admin"), "/projects/NEWKEY").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn repositories_get_slugs_from_names_and_links_from_the_base_url() {
    let f = fixture("/stash", Some("https://git.example.com/stash"));
    let r = f.as_(Some("owner"), "POST", "/projects/TP/repos", Some(json!({"name": "TEST REPO", "scmId": "git", "forkable": false}))).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let v = r.json();
    assert_eq!((v["slug"].as_str(), v["name"].as_str(), v["forkable"].as_bool()), (Some("test-repo"), Some("TEST REPO"), Some(false)));
    assert_eq!((v["scmId"].as_str(), v["state"].as_str(), v["project"]["key"].as_str()), (Some("git"), Some("AVAILABLE"), Some("TP")));
    assert_eq!(v["links"]["clone"][0], json!({"href": "https://owner@git.example.com/stash/scm/tp/test-repo.git", "name": "http"}));
    assert_eq!(v["links"]["self"][0]["href"], "https://git.example.com/stash/projects/TP/repos/test-repo/browse");
    let r = f.get(Some("reader"), "/projects/TP/repos/test-repo").await;
    assert_eq!(r.json()["links"]["clone"][0]["href"], "https://reader@git.example.com/stash/scm/tp/test-repo.git", "the caller's own name");
    let r = f.get(None, "/projects/PUB/repos/open").await;
    assert_eq!(r.json()["links"]["clone"][0]["href"], "https://git.example.com/stash/scm/pub/open.git", "no name for anonymous");
    let dir = f.server.store().repo_path(&f.server.store().repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("test-repo").unwrap()).unwrap().unwrap());
    assert!(dir.join("HEAD").is_file(), "a bare repository on disk");

    for (body, want) in [
        (json!({"name": "TEST REPO"}), StatusCode::CONFLICT),
        (json!({"name": "test-repo"}), StatusCode::CONFLICT),
        (json!({"scmId": "git"}), StatusCode::BAD_REQUEST),
        (json!({"name": "x", "scmId": "hg"}), StatusCode::BAD_REQUEST),
        (json!({"name": "..."}), StatusCode::BAD_REQUEST),
        (json!({"name": "a.git"}), StatusCode::BAD_REQUEST),
        (json!({"name": "x".repeat(200)}), StatusCode::BAD_REQUEST),
    ] {
        let r = f.as_(Some("owner"), "POST", "/projects/TP/repos", Some(body.clone())).await;
        assert_eq!(r.status, want, "{body}");
        r.error();
    }
    assert_eq!(f.as_(Some("reader"), "POST", "/projects/TP/repos", Some(json!({"name": "r"}))).await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.as_(Some("outsider"), "POST", "/projects/TP/repos", Some(json!({"name": "r"}))).await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.get(Some("admin"), "/projects/TP/repos").await.json()["size"], json!(2), "nothing else was created");

    // Rename: a new name is a new slug; the directory stays (it is named by id).
    let r = f.as_(Some("owner"), "PUT", "/projects/TP/repos/test-repo", Some(json!({"name": "Other Name", "forkable": true}))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!((r.json()["slug"].as_str(), r.json()["forkable"].as_bool()), (Some("other-name"), Some(true)));
    assert_eq!(f.as_(Some("owner"), "PUT", "/projects/TP/repos/other-name", Some(json!({"name": "test"}))).await.status, StatusCode::CONFLICT);
    // Moving needs admin on the target project too.
    assert_eq!(f.as_(Some("owner"), "PUT", "/projects/TP/repos/other-name", Some(json!({"project": {"key": "PUB"}}))).await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.as_(Some("reader"), "PUT", "/projects/TP/repos/other-name", Some(json!({"name": "x"}))).await.status, StatusCode::FORBIDDEN);
    assert!(dir.is_dir());
    let r = f.as_(Some("owner"), "DELETE", "/projects/TP/repos/other-name", None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(!dir.exists(), "the directory is removed");
    assert!(!std::fs::read_dir(dir.parent().unwrap()).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().starts_with(".deleted")), "nothing left aside");
    assert_eq!(f.get(Some("owner"), "/projects/TP/repos/other-name").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn personal_repositories_belong_to_their_user() {
    let f = fixture("", None);
    let r = f.as_(Some("reader"), "POST", "/projects/~reader/repos", Some(json!({"name": "Dots"}))).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let v = r.json();
    assert_eq!((v["project"]["key"].as_str(), v["project"]["type"].as_str()), (Some("~READER"), Some("PERSONAL")));
    assert_eq!(v["links"]["clone"][0]["href"], "http://reader@localhost:7990/scm/~reader/dots.git");
    assert_eq!(v["links"]["self"][0]["href"], "http://localhost:7990/users/reader/repos/dots/browse");
    assert_eq!(f.as_(Some("outsider"), "POST", "/projects/~reader/repos", Some(json!({"name": "x"}))).await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.as_(Some("admin"), "POST", "/projects/~nobody/repos", Some(json!({"name": "x"}))).await.status, StatusCode::NOT_FOUND);
    let token = f.server.store().create_token(&name("reader"), "rw", Permission::Write).unwrap().secret;
    let body = json!({"name": "by-token"}).to_string().into_bytes();
    let r = f.send("POST", "/projects/~reader/repos", Some(format!("Bearer {token}")), Some(body)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a write token does not administer even its owner's personal project");
    for path in ["/users/~reader/repos", "/users/reader/repos"] {
        let r = f.get(Some("reader"), path).await;
        assert_eq!(r.json()["values"][0]["slug"], "dots", "{path}");
        assert_eq!(f.get(Some("outsider"), path).await.json()["size"], json!(0), "{path}: private to others");
    }
    assert_eq!(f.get(Some("reader"), "/users/nobody/repos").await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.get(Some("reader"), "/projects/~READER/repos/dots").await.status, StatusCode::OK, "the key as the API shows it");
    assert_eq!(f.get(Some("outsider"), "/projects/~reader/repos/dots").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn users_are_listed_for_logged_in_callers_and_administered_by_admins() {
    let f = fixture("", None);
    assert_eq!(f.get(None, "/users").await.status, StatusCode::UNAUTHORIZED);
    let r = f.get(Some("reader"), "/users?filter=OUT").await.json();
    assert_eq!((r["size"].clone(), r["values"][0]["name"].clone(), r["values"][0]["type"].clone()), (json!(1), json!("outsider"), json!("NORMAL")));
    assert_eq!(f.get(Some("reader"), "/users/owner").await.json()["slug"], "owner");
    assert!(f.get(Some("reader"), "/users/nobody").await.exception().ends_with("NoSuchUserException"));

    let create = "/admin/users?name=newbie&password=newbie-password&displayName=New%20Bie&emailAddress=new%40example.com&addToDefaultGroup=true";
    assert_eq!(f.as_(Some("owner"), "POST", create, None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.as_(None, "POST", create, None).await.status, StatusCode::UNAUTHORIZED);
    for (bad, context) in [
        ("/admin/users?password=longenough", "name"),
        ("/admin/users?name=-x&password=longenough", "name"),
        ("/admin/users?name=nopw", "password"),
        ("/admin/users?name=shortpw&password=short", "password"),
        ("/admin/users?name=mail&password=longenough&emailAddress=nope", "emailAddress"),
        ("/admin/users?name=bool&password=longenough&addToDefaultGroup=maybe", "addToDefaultGroup"),
    ] {
        let r = f.as_(Some("admin"), "POST", bad, None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(r.error().2, json!(context), "{bad}");
    }
    assert_eq!(f.server.store().users().unwrap().len(), 4, "no user was created");
    assert_eq!(f.as_(Some("admin"), "POST", create, None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(f.as_(Some("admin"), "POST", create, None).await.status, StatusCode::CONFLICT);
    let me = f.get(Some("newbie"), "/users/newbie").await;
    assert_eq!(me.status, StatusCode::OK, "the new user may log in");
    assert_eq!((me.json()["displayName"].as_str(), me.json()["emailAddress"].as_str()), (Some("New Bie"), Some("new@example.com")));
    let listed = f.get(Some("admin"), "/admin/users?filter=newbie").await.json();
    assert_eq!(listed["values"][0]["deletable"], json!(true));

    assert_eq!(f.as_(Some("owner"), "DELETE", "/admin/users?name=newbie", None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.as_(Some("admin"), "DELETE", "/admin/users?name=admin", None).await.status, StatusCode::BAD_REQUEST, "not yourself");
    assert_eq!(f.as_(Some("admin"), "DELETE", "/admin/users?name=nobody", None).await.status, StatusCode::NOT_FOUND);
    let r = f.as_(Some("admin"), "DELETE", "/admin/users?name=newbie", None).await;
    assert_eq!((r.status, r.json()["name"].as_str()), (StatusCode::OK, Some("newbie")));
    assert_eq!(f.get(Some("admin"), "/users/newbie").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn global_permissions_are_listed_granted_and_revoked_by_admins() {
    let f = fixture("", None);
    let r = f.get(Some("admin"), "/admin/permissions/users").await.json();
    assert_eq!(r["size"], json!(4));
    assert_eq!(f.get(Some("reader"), "/admin/permissions/users").await.status, StatusCode::FORBIDDEN);
    let r = f.as_(Some("admin"), "PUT", "/admin/permissions/users?name=outsider&permission=PROJECT_OWNER", None).await;
    assert_eq!((r.status, r.error().2), (StatusCode::BAD_REQUEST, json!("permission")));
    assert_eq!(f.as_(Some("admin"), "PUT", "/admin/permissions/users?name=nobody&permission=ADMIN", None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.as_(Some("admin"), "PUT", "/admin/permissions/users?name=outsider&permission=ADMIN", None).await.status, StatusCode::NO_CONTENT);
    let r = f.get(Some("admin"), "/admin/permissions/users?filter=outsider").await.json();
    assert_eq!(r["values"][0]["permission"], "ADMIN");
    // An ADMIN is not a SYS_ADMIN: it may not touch SYS_ADMIN, nor change itself.
    assert_eq!(f.as_(Some("outsider"), "PUT", "/admin/permissions/users?name=reader&permission=SYS_ADMIN", None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.as_(Some("outsider"), "DELETE", "/admin/permissions/users?name=admin", None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.as_(Some("outsider"), "DELETE", "/admin/permissions/users?name=outsider", None).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(f.get(Some("outsider"), "/projects/TP").await.status, StatusCode::OK, "admins see every project");
    assert_eq!(f.as_(Some("admin"), "DELETE", "/admin/permissions/users?name=reader", None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(f.get(Some("reader"), "/projects/TP").await.status, StatusCode::UNAUTHORIZED, "without a global permission no login");
    assert_eq!(f.get(Some("admin"), "/admin/permissions/groups").await.json()["size"], json!(0));
}

#[tokio::test]
async fn project_and_repository_permissions_are_granted_listed_and_revoked() {
    let f = fixture("", None);
    let perms = "/projects/TP/permissions/users";
    let r = f.get(Some("owner"), perms).await.json();
    let got: Vec<(String, String)> =
        r["values"].as_array().unwrap().iter().map(|v| (v["user"]["name"].as_str().unwrap().into(), v["permission"].as_str().unwrap().into())).collect();
    assert_eq!(got, [("owner".to_owned(), "PROJECT_ADMIN".to_owned()), ("reader".into(), "PROJECT_READ".into())]);
    assert_eq!(f.get(Some("reader"), perms).await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.get(Some("outsider"), perms).await.status, StatusCode::NOT_FOUND);
    for (q, want) in [
        ("?name=outsider&permission=REPO_READ", StatusCode::BAD_REQUEST),
        ("?name=outsider&permission=PROJECT_OWNER", StatusCode::BAD_REQUEST),
        ("?name=outsider", StatusCode::BAD_REQUEST),
        ("?permission=PROJECT_READ", StatusCode::BAD_REQUEST),
        ("?name=nobody&permission=PROJECT_READ", StatusCode::NOT_FOUND),
        ("?name=outsider&name=nobody&permission=PROJECT_READ", StatusCode::NOT_FOUND),
    ] {
        let r = f.as_(Some("owner"), "PUT", &format!("{perms}{q}"), None).await;
        assert_eq!(r.status, want, "{q}");
        r.error();
    }
    assert_eq!(f.get(Some("outsider"), "/projects/TP").await.status, StatusCode::NOT_FOUND, "a failed grant changes nothing");
    assert_eq!(f.as_(Some("reader"), "PUT", &format!("{perms}?name=outsider&permission=PROJECT_READ"), None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.as_(Some("owner"), "PUT", &format!("{perms}?name=outsider&permission=PROJECT_WRITE"), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(f.get(Some("outsider"), "/projects/TP/repos/test").await.status, StatusCode::OK);
    assert_eq!(f.as_(Some("owner"), "DELETE", &format!("{perms}?name=outsider"), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(f.get(Some("outsider"), "/projects/TP/repos/test").await.status, StatusCode::NOT_FOUND);

    let rperms = "/projects/TP/repos/test/permissions/users";
    assert_eq!(f.as_(Some("owner"), "PUT", &format!("{rperms}?name=outsider&permission=PROJECT_READ"), None).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(f.as_(Some("reader"), "PUT", &format!("{rperms}?name=outsider&permission=REPO_READ"), None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.as_(Some("owner"), "PUT", &format!("{rperms}?name=outsider&permission=REPO_ADMIN"), None).await.status, StatusCode::NO_CONTENT);
    let r = f.get(Some("outsider"), rperms).await.json();
    assert_eq!((r["values"][0]["user"]["name"].as_str(), r["values"][0]["permission"].as_str()), (Some("outsider"), Some("REPO_ADMIN")));
    assert_eq!(f.get(Some("outsider"), "/projects/TP").await.status, StatusCode::OK, "a repository grant shows the project");
    assert_eq!(f.get(Some("outsider"), perms).await.status, StatusCode::FORBIDDEN, "but not its permissions");
    assert_eq!(f.as_(Some("owner"), "DELETE", &format!("{rperms}?name=outsider"), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(f.get(Some("outsider"), "/projects/TP/repos/test").await.status, StatusCode::NOT_FOUND);

    assert_eq!(f.get(Some("owner"), "/projects/TP/permissions/groups").await.json()["size"], json!(0));
    let r = f.as_(Some("owner"), "PUT", "/projects/TP/repos/test/permissions/groups?name=devs&permission=REPO_READ", None).await;
    assert!(r.exception().ends_with("NoSuchGroupException"));
}

#[tokio::test]
async fn the_project_default_permission_reaches_every_licensed_user() {
    let f = fixture("", None);
    let all = "/projects/TP/permissions/PROJECT_WRITE/all";
    assert_eq!(f.get(Some("owner"), all).await.json(), json!({"permitted": false}));
    assert_eq!(f.as_(Some("owner"), "POST", all, None).await.error().2, json!("allow"));
    assert_eq!(f.as_(Some("owner"), "POST", &format!("{all}?allow=perhaps"), None).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(f.as_(Some("owner"), "POST", "/projects/TP/permissions/REPO_WRITE/all?allow=true", None).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(f.as_(Some("reader"), "POST", &format!("{all}?allow=true"), None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.get(Some("outsider"), "/projects/TP").await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.as_(Some("owner"), "POST", &format!("{all}?allow=true"), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(f.get(Some("owner"), all).await.json(), json!({"permitted": true}));
    assert_eq!(f.get(Some("owner"), "/projects/TP/permissions/PROJECT_READ/all").await.json(), json!({"permitted": true}));
    let repo = f.server.store().repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("test").unwrap()).unwrap().unwrap();
    let outsider = trove_store::Authenticated { user: f.server.store().user(&name("outsider")).unwrap().unwrap(), token_scope: None };
    assert_eq!(f.server.store().permission(Some(&outsider), &repo).unwrap(), Some(Permission::Write));
    assert_eq!(f.get(Some("outsider"), "/projects/TP").await.status, StatusCode::OK);
    assert_eq!(f.get(None, "/projects/TP").await.status, StatusCode::UNAUTHORIZED, "not public");
    assert_eq!(f.as_(Some("owner"), "POST", &format!("{all}?allow=false"), None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(f.server.store().permission(Some(&outsider), &repo).unwrap(), Some(Permission::Read), "write revoked, read kept");
    assert_eq!(f.as_(Some("owner"), "POST", "/projects/TP/permissions/PROJECT_READ/all?allow=false", None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(f.get(Some("outsider"), "/projects/TP").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn branches_tags_and_commits_come_from_the_repository() {
    let f = fixture("", None);
    let empty = f.get(Some("reader"), "/projects/TP/repos/test/commits").await.json();
    assert_eq!((empty["size"].clone(), empty["isLastPage"].clone()), (json!(0), json!(true)));
    assert!(f.get(Some("reader"), "/projects/TP/repos/test/branches/default").await.exception().ends_with("NoDefaultBranchException"));
    let ids = f.seed();
    let b = f.get(Some("reader"), "/projects/TP/repos/test/branches").await.json();
    assert_eq!(b["size"], json!(2));
    assert_eq!(
        b["values"][0],
        json!({"id": "refs/heads/main", "displayId": "main", "type": "BRANCH", "latestCommit": ids[2], "latestChangeset": ids[2], "isDefault": true})
    );
    assert_eq!((b["values"][1]["displayId"].as_str(), b["values"][1]["latestCommit"].as_str()), (Some("feature"), Some(ids[1].as_str())));
    assert_eq!(f.get(Some("reader"), "/projects/TP/repos/test/branches?filterText=feat").await.json()["size"], json!(1));
    assert_eq!(f.get(Some("reader"), "/projects/TP/repos/test/branches?orderBy=RANDOM").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(f.get(Some("reader"), "/projects/TP/repos/test/branches/default").await.json()["displayId"], "main");
    let t = f.get(Some("reader"), "/projects/TP/repos/test/tags").await.json();
    assert_eq!(
        (t["values"][0]["id"].as_str(), t["values"][0]["latestCommit"].as_str(), t["values"][0]["type"].as_str()),
        (Some("refs/tags/v1"), Some(ids[0].as_str()), Some("TAG"))
    );
    assert!(t["values"][0]["hash"].as_str().is_some_and(|h| h != ids[0]), "annotated: the tag object");

    let c = f.get(Some("reader"), "/projects/TP/repos/test/commits?limit=2").await.json();
    assert_eq!((c["size"].clone(), c["isLastPage"].clone(), c["nextPageStart"].clone()), (json!(2), json!(false), json!(2)));
    assert_eq!((c["values"][0]["id"].as_str(), c["values"][1]["id"].as_str()), (Some(ids[2].as_str()), Some(ids[1].as_str())));
    assert_eq!(c["values"][0]["author"], json!({"name": "Ann Author", "emailAddress": "ann@example.com"}));
    assert_eq!(c["values"][0]["parents"][0]["id"], json!(ids[1]));
    let c = f.get(Some("reader"), "/projects/TP/repos/test/commits?limit=2&start=2").await.json();
    assert_eq!((c["size"].clone(), c["isLastPage"].clone()), (json!(1), json!(true)));
    assert!(c.get("nextPageStart").is_none());
    let c = f.get(Some("reader"), "/projects/TP/repos/test/commits?until=feature&path=src").await.json();
    assert_eq!(c["values"].as_array().unwrap().iter().map(|v| v["id"].clone()).collect::<Vec<_>>(), [json!(ids[1])]);
    let c = f.get(Some("reader"), &format!("/projects/TP/repos/test/commits?since={}", ids[0])).await.json();
    assert_eq!(c["size"], json!(2));
    let one = f.get(Some("reader"), &format!("/projects/TP/repos/test/commits/{}", &ids[1][..12])).await.json();
    assert_eq!((one["id"].as_str(), one["message"].as_str()), (Some(ids[1].as_str()), Some("add src/lib.rs")));
    assert_eq!(f.get(Some("reader"), "/projects/TP/repos/test/commits/v1").await.json()["id"], json!(ids[0]));
    // Revisions that are not refs or hex ids are refused, never passed to git as options.
    for bad in ["/commits/--all", "/commits/deadbeef", "/commits/HEAD~1", "/commits?until=--output=/tmp/x", "/commits?since=nope", "/browse?at=--all"] {
        let r = f.get(Some("reader"), &format!("/projects/TP/repos/test{bad}")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{bad}");
        assert!(r.exception().ends_with("NoSuchCommitException"), "{bad}");
    }
    assert_eq!(f.get(Some("reader"), "/projects/TP/repos/test/commits?path=../x").await.status, StatusCode::BAD_REQUEST);

    assert_eq!(
        f.as_(Some("reader"), "PUT", "/projects/TP/repos/test/branches/default", Some(json!({"id": "refs/heads/feature"}))).await.status,
        StatusCode::FORBIDDEN
    );
    for bad in [json!({"id": "refs/heads/-x"}), json!({"id": "a..b"}), json!({})] {
        assert_eq!(f.as_(Some("owner"), "PUT", "/projects/TP/repos/test/branches/default", Some(bad.clone())).await.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(
        f.as_(Some("owner"), "PUT", "/projects/TP/repos/test/branches/default", Some(json!({"id": "refs/heads/feature"}))).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(f.get(Some("reader"), "/projects/TP/repos/test/branches/default").await.json()["latestCommit"], json!(ids[1]));
    assert_eq!(f.get(Some("outsider"), "/projects/TP/repos/test/commits").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn browse_and_raw_show_trees_and_files_at_a_revision() {
    let f = fixture("", None);
    let ids = f.seed();
    let root = f.get(Some("reader"), "/projects/TP/repos/test/browse").await.json();
    let names: Vec<(String, String)> = root["children"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["path"]["name"].as_str().unwrap().into(), c["type"].as_str().unwrap().into()))
        .collect();
    assert_eq!(names, [("docs".to_owned(), "DIRECTORY".to_owned()), ("src".into(), "DIRECTORY".into()), ("README.md".into(), "FILE".into())]);
    assert_eq!(root["revision"], "refs/heads/main");
    let at_first = f.get(Some("reader"), &format!("/projects/TP/repos/test/browse?at={}", ids[0])).await.json();
    assert_eq!(at_first["children"]["size"], json!(1));
    let src = f.get(Some("reader"), "/projects/TP/repos/test/browse/src?at=refs/heads/feature").await.json();
    assert_eq!(src["children"]["values"][0]["path"]["toString"], "lib.rs");
    assert_eq!(src["path"]["components"], json!(["src"]));
    let file = f.get(Some("reader"), "/projects/TP/repos/test/browse/README.md?limit=2").await.json();
    assert_eq!(file["lines"], json!([{"text": "# Test"}, {"text": "line two"}]));
    assert_eq!((file["isLastPage"].clone(), file["nextPageStart"].clone()), (json!(false), json!(2)));
    let r = f.get(Some("reader"), "/projects/TP/repos/test/browse/nope.txt").await;
    assert!(r.exception().ends_with("NoSuchPathException"));
    assert_eq!(f.get(Some("reader"), "/projects/TP/repos/test/browse/docs/a.txt?at=feature").await.status, StatusCode::NOT_FOUND);

    let raw = f.get(Some("reader"), "/projects/TP/repos/test/raw/README.md").await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(raw.body, b"# Test\nline two\nline three\n");
    assert_eq!(raw.header("content-type"), Some("text/plain;charset=UTF-8"));
    assert_eq!(raw.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(raw.header("x-ausername"), Some("reader"));
    assert_eq!(f.get(Some("reader"), "/projects/TP/repos/test/raw/src").await.status, StatusCode::NOT_FOUND, "a directory has no raw form");
    assert_eq!(f.get(Some("reader"), "/projects/TP/repos/test/raw/src/lib.rs?at=v1").await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.get(Some("outsider"), "/projects/TP/repos/test/raw/README.md").await.status, StatusCode::NOT_FOUND);
    let r = f.get(None, "/projects/TP/repos/test/raw/README.md").await;
    assert_eq!((r.status, r.header("content-type")), (StatusCode::UNAUTHORIZED, Some("application/json;charset=UTF-8")));
    let r = f.get(Some("reader"), "/projects/TP/repos/test/raw/src/%2E%2E/README.md").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "no `..` in paths");
}

/// The OpenAPI description documents every route, and every documented path is served. Paths
/// of another family than `/rest/api/1.0` (branch permissions) name their own server.
#[test]
fn the_openapi_description_matches_the_routes() {
    let doc: Value = serde_json::from_str(include_str!("../../../../docs/openapi.json")).expect("docs/openapi.json is JSON");
    let paths = doc["paths"].as_object().expect("paths");
    let mut served = std::collections::BTreeSet::new();
    let families = [
        (super::ROUTES, None),
        (super::branch_permissions::ROUTES, Some(super::branch_permissions::SERVER)),
        (super::builds::BUILD_STATUS_ROUTES, Some(super::builds::BUILD_STATUS_SERVER)),
        (super::builds::REQUIRED_BUILDS_ROUTES, Some(super::builds::REQUIRED_BUILDS_SERVER)),
        (super::builds::INSIGHTS_ROUTES, Some(super::builds::INSIGHTS_SERVER)),
        // Full paths: their tails are also core API paths.
        (super::refs::BRANCH_UTILS_ROUTES, Some("")),
        (super::refs::GIT_ROUTES, Some("")),
        (super::tokens::ROUTES, Some("")),
        (super::ssh_keys::ROUTES, Some("")),
        (super::search::ROUTES, Some("")),
    ];
    for (routes, server) in families {
        for (methods, path) in routes {
            let documented = paths.get(*path).unwrap_or_else(|| panic!("{path} is served but not documented in docs/openapi.json"));
            assert_eq!(documented["servers"][0]["url"].as_str(), server, "{path}: the server it is documented under");
            for m in *methods {
                assert!(documented.get(m.to_ascii_lowercase()).is_some(), "{m} {path} is served but not documented");
                served.insert(format!("{m} {path}"));
            }
        }
    }
    for (path, item) in paths {
        for m in item.as_object().unwrap().keys().filter(|k| ["get", "put", "post", "delete", "head", "patch"].contains(&k.as_str())) {
            let key = format!("{} {path}", m.to_ascii_uppercase());
            assert!(served.contains(&key), "{key} is documented but not served");
        }
    }
    assert_eq!(doc["servers"][0]["url"], "/rest/api/1.0");
}

/// ROUTES (the list the OpenAPI test checks) and the router agree: every listed method and
/// path answers with something other than "no such resource" or 405.
#[tokio::test]
async fn every_listed_route_is_routed() {
    let f = fixture("", None);
    f.seed();
    for (methods, path) in super::ROUTES {
        let concrete = path
            .replace("{projectKey}", "TP")
            .replace("{repositorySlug}", "test")
            .replace("{permission}", "PROJECT_READ")
            .replace("{commitId}", "main")
            .replace("{path}", "README.md")
            .replace("{userSlug}", "~reader")
            .replace("{scmId}", "git");
        for m in *methods {
            // Reads as admin; writes as an anonymous caller, which is refused before anything changes.
            let who = if *m == "GET" { Some("admin") } else { None };
            let r = f.as_(who, m, &concrete, None).await;
            assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{m} {concrete}");
            if r.status == StatusCode::NOT_FOUND {
                assert!(!r.exception().contains("jersey"), "{m} {concrete} is not routed");
            }
        }
    }
    for (methods, path) in super::branch_permissions::ROUTES {
        let concrete = path.replace("{projectKey}", "TP").replace("{repositorySlug}", "test").replace("{id}", "1");
        for version in ["2.0", "latest"] {
            let uri = format!("/rest/branch-permissions/{version}{concrete}");
            for m in *methods {
                let auth = (*m == "GET").then(|| basic("admin", "admin-password"));
                let r = f.raw(m, &uri, auth, None).await;
                assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{m} {uri}");
                if r.status == StatusCode::NOT_FOUND {
                    assert!(!r.exception().contains("jersey"), "{m} {uri} is not routed");
                }
            }
        }
    }
}

#[tokio::test]
async fn personal_repositories_answer_under_users_too() {
    let f = fixture("", None);
    let r = f.as_(Some("reader"), "POST", "/users/~reader/repos", Some(json!({"name": "Notes"}))).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(f.get(Some("reader"), "/users/~reader/repos/notes").await.json()["slug"], "notes");
    assert_eq!(f.get(Some("reader"), "/users/reader/repos/notes").await.json()["project"]["key"], "~READER");
    assert_eq!(f.get(Some("outsider"), "/users/~reader/repos/notes").await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.as_(Some("outsider"), "POST", "/users/~reader/repos", Some(json!({"name": "x"}))).await.status, StatusCode::NOT_FOUND);
    let r = f.as_(Some("reader"), "PUT", "/users/~reader/repos/notes", Some(json!({"name": "Journal"}))).await;
    assert_eq!(r.json()["slug"], "journal");
    assert_eq!(f.as_(Some("outsider"), "DELETE", "/users/~reader/repos/journal", None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.as_(Some("reader"), "DELETE", "/users/~reader/repos/journal", None).await.status, StatusCode::ACCEPTED);
    assert_eq!(f.get(Some("reader"), "/users/~reader/repos").await.json()["size"], json!(0));
}

#[tokio::test]
async fn the_default_permission_is_revoked_by_delete_as_stashy_does() {
    let f = fixture("", None);
    assert_eq!(f.as_(Some("owner"), "POST", "/projects/TP/permissions/PROJECT_READ/all?allow=True", None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(f.get(Some("outsider"), "/projects/TP").await.status, StatusCode::OK);
    assert_eq!(f.as_(Some("reader"), "DELETE", "/projects/TP/permissions/PROJECT_READ/all", None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.as_(Some("owner"), "DELETE", "/projects/TP/permissions/PROJECT_READ/all?allow=False", None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(f.get(Some("outsider"), "/projects/TP").await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.as_(Some("owner"), "DELETE", "/projects/TP/permissions/READ/all", None).await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn files_lists_every_path_below_a_directory() {
    let f = fixture("", None);
    f.seed();
    let all = f.get(Some("reader"), "/projects/TP/repos/test/files").await.json();
    assert_eq!(all["values"], json!(["README.md", "docs/a.txt", "src/lib.rs"]));
    let src = f.get(Some("reader"), "/projects/TP/repos/test/files/src?at=feature").await.json();
    assert_eq!(src["values"], json!(["lib.rs"]));
    assert_eq!(f.get(Some("reader"), "/projects/TP/repos/test/files/README.md").await.status, StatusCode::NOT_FOUND, "a file is not a directory");
    assert_eq!(f.get(Some("outsider"), "/projects/TP/repos/test/files").await.status, StatusCode::NOT_FOUND);
}

/// Commits 100,000 paths (`d000/f00000.txt` … `d099/f99999.txt`, one blob) straight into TP/test
/// on `main` with `update-index --index-info` and `commit-tree`: seconds, no work tree.
fn seed_huge_tree(f: &Fixture) -> std::path::PathBuf {
    use std::io::Write as _;
    let repo = f.server.store().repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("test").unwrap()).unwrap().unwrap();
    let dir = f.server.store().repo_path(&repo);
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let run = |args: &[&str], input: &[u8]| -> String {
        let mut c = std::process::Command::new("git");
        c.env_clear().envs(trove_store::git_env(f.server.store().git_home())).env("GIT_DIR", &dir).env("GIT_INDEX_FILE", &index);
        c.env("GIT_AUTHOR_NAME", "Ann")
            .env("GIT_AUTHOR_EMAIL", "ann@example.com")
            .env("GIT_COMMITTER_NAME", "Ann")
            .env("GIT_COMMITTER_EMAIL", "ann@example.com");
        c.args(args).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let blob = run(&["hash-object", "-w", "--stdin"], b"same content\n");
    let list: String = (0..100_000).map(|i| format!("100644 {blob}\td{:03}/f{i:05}.txt\n", i / 1000)).collect();
    run(&["update-index", "--add", "--index-info"], list.as_bytes());
    let tree = run(&["write-tree"], b"");
    let commit = run(&["commit-tree", &tree, "-m", "many files"], b"");
    run(&["update-ref", "refs/heads/main", &commit], b"");
    dir
}

#[tokio::test]
async fn files_of_a_repository_with_100000_files_page_without_reading_the_whole_tree() {
    let f = fixture("", None);
    let dir = seed_huge_tree(&f);
    let name = |i: usize| format!("d{:03}/f{i:05}.txt", i / 1000);
    // What the whole listing weighs: `git ls-tree -r -z --name-only` prints each path and a NUL.
    let whole: usize = (0..100_000).map(|i| name(i).len() + 1).sum();
    let read_for = |dir: &std::path::Path| {
        let log = crate::repo_read::FILES_READ.lock().unwrap();
        log.iter().rev().find(|(d, _)| d == dir).map(|(_, n)| *n).expect("files read the tree")
    };

    let first = f.get(Some("reader"), "/projects/TP/repos/test/files?limit=25").await.json();
    assert_eq!(first["values"], json!((0..25).map(name).collect::<Vec<_>>()));
    assert_eq!((first["size"].clone(), first["isLastPage"].clone(), first["nextPageStart"].clone()), (json!(25), json!(false), json!(25)));
    let read = read_for(&dir);
    assert!(read * 20 < whole as u64, "the first page read {read} of {whole} bytes");

    let second = f.get(Some("reader"), "/projects/TP/repos/test/files?start=25&limit=25").await.json();
    assert_eq!((second["values"][0].clone(), second["start"].clone()), (json!(name(25)), json!(25)));
    let middle = f.get(Some("reader"), "/projects/TP/repos/test/files?start=1000&limit=3").await.json();
    assert_eq!(middle["values"], json!([name(1000), name(1001), name(1002)]));
    assert!(read_for(&dir) * 20 < whole as u64, "a page near the start reads little");

    // The page that ends exactly at the last file is the last page; so is a short one.
    let end = f.get(Some("reader"), "/projects/TP/repos/test/files?start=99975&limit=25").await.json();
    assert_eq!((end["size"].clone(), end["isLastPage"].clone(), end["values"][24].clone()), (json!(25), json!(true), json!(name(99_999))));
    assert!(end.get("nextPageStart").is_none(), "{end}");
    let short = f.get(Some("reader"), "/projects/TP/repos/test/files?start=99990&limit=25").await.json();
    assert_eq!((short["size"].clone(), short["isLastPage"].clone()), (json!(10), json!(true)));
    let past = f.get(Some("reader"), "/projects/TP/repos/test/files?start=200000").await.json();
    assert_eq!((past["size"].clone(), past["isLastPage"].clone()), (json!(0), json!(true)));
    let before_end = f.get(Some("reader"), "/projects/TP/repos/test/files?start=99974&limit=25").await.json();
    assert_eq!((before_end["isLastPage"].clone(), before_end["nextPageStart"].clone()), (json!(false), json!(99_999)));

    // Below a directory, paths are relative to it.
    let sub = f.get(Some("reader"), "/projects/TP/repos/test/files/d099?limit=1000").await.json();
    assert_eq!((sub["size"].clone(), sub["isLastPage"].clone(), sub["values"][0].clone()), (json!(1000), json!(true), json!("f99000.txt")));
}

#[tokio::test]
async fn repositories_created_over_rest_are_made_with_the_configured_git() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("git-calls");
    let wrapper = dir.path().join("my-git");
    // Records each call's subcommand, then is the real git.
    std::fs::write(&wrapper, format!("#!/bin/sh\necho \"$1\" >> {}\nexec git \"$@\"\n", log.display())).unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut config = ServerConfig::new(dir.path().join("data"));
    config.git.binary = wrapper;
    let server = Server::open(config).unwrap();
    server.store().create_user(&name("admin"), &Password::new("admin-password").unwrap(), GlobalPermission::SysAdmin).unwrap();
    server.store().create_project(&ProjectKey::parse("TP").unwrap(), None, false).unwrap();
    let f = Fixture { _dir: dir, server, ctx: String::new() };
    let made = f.as_(Some("admin"), "POST", "/projects/TP/repos", Some(json!({"name": "made"}))).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&made.body));
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(calls.lines().any(|l| l == "init"), "git init ran through the configured binary: {calls:?}");
}

#[test]
fn repository_reads_over_their_caps_are_413_and_503_in_bitbucket_shape() {
    use crate::repo_read::ReadError;
    use axum::response::IntoResponse as _;
    let too_large = super::ApiError::from(ReadError::TooLarge { command: "ls-tree".into(), limit: 16 << 20 }).into_response();
    assert_eq!(too_large.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let slow = super::ApiError::from(ReadError::TimedOut { command: "log".into(), limit: std::time::Duration::from_secs(30) }).into_response();
    assert_eq!(slow.status(), StatusCode::SERVICE_UNAVAILABLE);
    let web = crate::web::WebError::from(ReadError::TooLarge { command: "cat-file".into(), limit: 16 << 20 }).into_response();
    assert_eq!(web.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn admins_change_user_details() {
    let f = fixture("", None);
    let r =
        f.as_(Some("admin"), "PUT", "/admin/users", Some(json!({"name": "reader", "displayName": "Rita Reader", "emailAddress": "rita@example.com"}))).await;
    assert_eq!(
        (r.status, r.json()["displayName"].as_str(), r.json()["emailAddress"].as_str()),
        (StatusCode::OK, Some("Rita Reader"), Some("rita@example.com"))
    );
    assert_eq!(f.as_(Some("owner"), "PUT", "/admin/users", Some(json!({"name": "reader", "displayName": "x"}))).await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.as_(Some("admin"), "PUT", "/admin/users", Some(json!({"name": "nobody"}))).await.status, StatusCode::NOT_FOUND);
    let r = f.as_(Some("admin"), "PUT", "/admin/users", Some(json!({"name": "reader", "emailAddress": "no at sign"}))).await;
    assert_eq!((r.status, r.error().2), (StatusCode::BAD_REQUEST, json!("emailAddress")));
    assert_eq!(f.get(Some("reader"), "/users/reader").await.json()["emailAddress"], "rita@example.com", "the refused change changed nothing");
    // Bitbucket's own field name, `email`, too; the display name is kept when not given.
    let r = f.as_(Some("admin"), "PUT", "/admin/users", Some(json!({"name": "reader", "email": "rr@example.com"}))).await;
    assert_eq!((r.status, r.json()["emailAddress"].as_str(), r.json()["displayName"].as_str()), (StatusCode::OK, Some("rr@example.com"), Some("Rita Reader")));
    let u = f.get(Some("outsider"), "/users/reader").await.json();
    assert_eq!((u["displayName"].as_str(), u["emailAddress"].as_str(), u["slug"].as_str()), (Some("Rita Reader"), Some("rr@example.com"), Some("reader")));
}

#[tokio::test]
async fn repeated_failed_logins_are_429_with_retry_after_in_bitbucket_shape() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path());
    config.auth.max_failed_logins = 2;
    let server = Server::open(config).unwrap();
    server.store().create_user(&name("alice"), &Password::new("alice-password").unwrap(), GlobalPermission::LicensedUser).unwrap();
    let f = Fixture { _dir: dir, server, ctx: String::new() };
    for _ in 0..2 {
        assert_eq!(f.send("GET", "/users", Some(basic("alice", "wrong")), None).await.status, StatusCode::UNAUTHORIZED);
    }
    let r = f.send("GET", "/users", Some(basic("alice", "alice-password")), None).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "even the right password waits");
    assert!(r.header("retry-after").is_some_and(|s| s.parse::<u64>().unwrap() > 0));
    assert!(r.error().0.starts_with("Too many failed logins"));
}

// ---- groups ----

/// `POST /admin/groups?name=` as admin, checked.
async fn make_group(f: &Fixture, name: &str) {
    let r = f.as_(Some("admin"), "POST", &format!("/admin/groups?name={name}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
}

async fn add_members(f: &Fixture, group: &str, users: &[&str]) {
    let r = f.as_(Some("admin"), "POST", "/admin/groups/add-users", Some(json!({"group": group, "users": users}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
}

fn names_of(page: &Value, field: &str) -> Vec<String> {
    page["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| if field.is_empty() { v.as_str().unwrap().to_owned() } else { v[field].as_str().unwrap().to_owned() })
        .collect()
}

#[tokio::test]
async fn groups_are_created_and_deleted_by_admins_and_listed_for_everyone_logged_in() {
    let f = fixture("", None);
    let r = f.as_(Some("outsider"), "POST", "/admin/groups?name=devs", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = f.as_(Some("admin"), "POST", "/admin/groups?name=Developers", None).await;
    assert_eq!((r.status, r.json()), (StatusCode::OK, json!({"name": "Developers", "deletable": true})));
    let r = f.as_(Some("admin"), "POST", "/admin/groups?name=developers", None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "names ignore case");
    assert!(r.error().0.contains("already exists"), "{:?}", r.error());
    assert_eq!(f.as_(Some("admin"), "POST", "/admin/groups?name=%20spaced", None).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(f.as_(Some("admin"), "POST", "/admin/groups", None).await.error().2, json!("name"));
    make_group(&f, "ops").await;
    let page = f.get(Some("reader"), "/admin/groups").await.json();
    assert_eq!(names_of(&page, "name"), ["Developers", "ops"]);
    assert_eq!(names_of(&f.get(Some("reader"), "/admin/groups?filter=DEV").await.json(), "name"), ["Developers"]);
    assert_eq!(names_of(&f.get(Some("outsider"), "/groups").await.json(), ""), ["Developers", "ops"], "plain strings");
    assert_eq!(f.get(None, "/groups").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(f.as_(Some("admin"), "DELETE", "/admin/groups?name=nope", None).await.exception(), "com.atlassian.bitbucket.user.NoSuchGroupException");
    assert_eq!(f.as_(Some("owner"), "DELETE", "/admin/groups?name=ops", None).await.status, StatusCode::FORBIDDEN);
    let r = f.as_(Some("admin"), "DELETE", "/admin/groups?name=DEVELOPERS", None).await;
    assert_eq!((r.status, r.json()["name"].clone()), (StatusCode::OK, json!("Developers")));
    assert_eq!(names_of(&f.get(Some("reader"), "/groups").await.json(), ""), ["ops"]);
}

#[tokio::test]
async fn members_are_added_listed_and_removed_through_every_shape_bitbucket_has() {
    let f = fixture("", None);
    let f = &f;
    make_group(f, "dev").await;
    make_group(f, "ops").await;
    add_members(f, "dev", &["reader", "owner"]).await;
    // A user that does not exist: 404, and nobody was added.
    let r = f.as_(Some("admin"), "POST", "/admin/groups/add-users", Some(json!({"group": "ops", "users": ["reader", "nobody"]}))).await;
    assert_eq!(r.exception(), "com.atlassian.bitbucket.user.NoSuchUserException");
    assert_eq!(f.get(Some("reader"), "/admin/groups/more-members?context=ops").await.json()["size"], json!(0));
    let r = f.as_(Some("admin"), "POST", "/admin/groups/add-users", Some(json!({"group": "nope", "users": ["reader"]}))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = f.as_(Some("outsider"), "POST", "/admin/groups/add-users", Some(json!({"group": "dev", "users": ["outsider"]}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(f.as_(Some("admin"), "POST", "/admin/groups/add-users", Some(json!({"users": ["reader"]}))).await.error().2, json!("group"));

    let members = |q: &'static str| async move { names_of(&f.get(Some("outsider"), q).await.json(), "name") };
    assert_eq!(members("/admin/groups/more-members?context=dev").await, ["owner", "reader"]);
    assert_eq!(members("/admin/groups/more-members?context=DEV&filter=read").await, ["reader"]);
    assert_eq!(members("/admin/groups/more-non-members?context=dev").await, ["admin", "outsider"]);
    assert_eq!(f.get(Some("reader"), "/admin/groups/more-members?context=nope").await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.get(Some("reader"), "/admin/groups/more-members").await.error().2, json!("context"));

    let r = f.as_(Some("admin"), "POST", "/admin/users/add-groups", Some(json!({"user": "outsider", "groups": ["ops", "dev"]}))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(members("/admin/users/more-members?context=outsider").await, ["dev", "ops"]);
    let post = |path: &'static str, body: Value| async move { f.as_(Some("admin"), "POST", path, Some(body)).await.status };
    // The older pickers: `context` is the group under /admin/groups, the user under /admin/users.
    assert_eq!(post("/admin/groups/remove-user", json!({"context": "ops", "itemName": "outsider"})).await, StatusCode::OK);
    assert_eq!(members("/admin/users/more-members?context=outsider").await, ["dev"]);
    assert_eq!(members("/admin/users/more-non-members?context=outsider").await, ["ops"]);
    assert_eq!(post("/admin/groups/add-user", json!({"context": "ops", "itemName": "admin"})).await, StatusCode::OK);
    assert_eq!(post("/admin/users/remove-group", json!({"context": "outsider", "itemName": "dev"})).await, StatusCode::OK);
    assert_eq!(post("/admin/users/add-group", json!({"context": "reader", "itemName": "ops"})).await, StatusCode::OK);
    assert_eq!(members("/admin/groups/more-members?context=ops").await, ["admin", "reader"]);
    assert_eq!(members("/admin/users/more-members?context=outsider").await, Vec::<String>::new());
    assert_eq!(post("/admin/users/add-group", json!({"context": "reader", "itemName": "nope"})).await, StatusCode::NOT_FOUND);
    assert_eq!(post("/admin/users/add-group", json!({"context": "reader"})).await, StatusCode::BAD_REQUEST);
    // Deleting a user takes their memberships with them.
    assert_eq!(f.as_(Some("admin"), "DELETE", "/admin/users?name=reader", None).await.status, StatusCode::OK);
    assert_eq!(members("/admin/groups/more-members?context=ops").await, ["admin"]);
}

#[tokio::test]
async fn a_groups_permissions_reach_its_members_at_every_level() {
    let f = fixture("", None);
    let f = &f;
    make_group(f, "dev").await;
    make_group(f, "ops").await;
    add_members(f, "dev", &["outsider"]).await;
    assert_eq!(f.get(Some("outsider"), "/projects/TP").await.status, StatusCode::NOT_FOUND);

    // Project: granted by a project admin, listed, and reaching the member.
    let r = f.as_(Some("owner"), "PUT", "/projects/TP/permissions/groups?name=dev&permission=PROJECT_READ", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(f.get(Some("outsider"), "/projects/TP").await.status, StatusCode::OK);
    assert_eq!(f.get(Some("outsider"), "/projects/TP/repos/test").await.status, StatusCode::OK);
    let page = f.get(Some("owner"), "/projects/TP/permissions/groups").await.json();
    assert_eq!(page["values"], json!([{"group": {"name": "dev"}, "permission": "PROJECT_READ"}]));
    assert_eq!(names_of(&f.get(Some("owner"), "/projects/TP/permissions/groups/none").await.json(), "name"), ["ops"]);
    assert_eq!(f.get(Some("owner"), "/projects/TP/permissions/groups?filter=zzz").await.json()["size"], json!(0));
    assert_eq!(f.get(Some("reader"), "/projects/TP/permissions/groups").await.status, StatusCode::FORBIDDEN);
    let put = |who: &'static str, path: &'static str| async move { f.as_(Some(who), "PUT", path, None).await };
    assert_eq!(put("owner", "/projects/TP/permissions/groups?name=dev&permission=REPO_READ").await.error().2, json!("permission"));
    assert_eq!(put("owner", "/projects/TP/permissions/groups?name=nope&permission=PROJECT_READ").await.status, StatusCode::NOT_FOUND);
    assert_eq!(put("reader", "/projects/TP/permissions/groups?name=dev&permission=PROJECT_ADMIN").await.status, StatusCode::FORBIDDEN);

    // Repository: a group's grant on the repository itself.
    let store = f.server.store();
    let repo = store.repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("test").unwrap()).unwrap().unwrap();
    let perm_of = |n: &str| {
        let who = trove_store::Authenticated { user: store.user(&name(n)).unwrap().unwrap(), token_scope: None };
        store.permission(Some(&who), &repo).unwrap()
    };
    assert_eq!(perm_of("outsider"), Some(Permission::Read));
    assert_eq!(put("owner", "/projects/TP/repos/test/permissions/groups?name=dev&permission=REPO_WRITE").await.status, StatusCode::NO_CONTENT);
    assert_eq!(perm_of("outsider"), Some(Permission::Write));
    let page = f.get(Some("owner"), "/projects/TP/repos/test/permissions/groups").await.json();
    assert_eq!(page["values"], json!([{"group": {"name": "dev"}, "permission": "REPO_WRITE"}]));
    assert_eq!(names_of(&f.get(Some("owner"), "/projects/TP/repos/test/permissions/groups/none").await.json(), "name"), ["ops"]);
    assert_eq!(f.as_(Some("owner"), "DELETE", "/projects/TP/repos/test/permissions/groups?name=dev", None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(f.as_(Some("owner"), "DELETE", "/projects/TP/permissions/groups?name=dev", None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(perm_of("outsider"), None);

    // Global: a group's ADMIN makes its members administrators.
    assert_eq!(f.get(Some("outsider"), "/admin/users").await.status, StatusCode::FORBIDDEN);
    assert_eq!(put("owner", "/admin/permissions/groups?name=dev&permission=ADMIN").await.status, StatusCode::FORBIDDEN);
    assert_eq!(put("admin", "/admin/permissions/groups?name=dev&permission=OWNER").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(put("admin", "/admin/permissions/groups?name=dev&name=nope&permission=ADMIN").await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.get(Some("outsider"), "/admin/users").await.status, StatusCode::FORBIDDEN, "a failed grant changed nothing");
    assert_eq!(put("admin", "/admin/permissions/groups?name=dev&permission=ADMIN").await.status, StatusCode::NO_CONTENT);
    assert_eq!(f.get(Some("outsider"), "/admin/users").await.status, StatusCode::OK);
    assert_eq!(perm_of("outsider"), Some(Permission::Admin), "an administrator administers every repository");
    assert_eq!(f.get(Some("admin"), "/admin/permissions/groups").await.json()["values"], json!([{"group": {"name": "dev"}, "permission": "ADMIN"}]));
    assert_eq!(names_of(&f.get(Some("admin"), "/admin/permissions/groups/none").await.json(), "name"), ["ops"]);
    // The users' list shows what each user holds themselves.
    let users = f.get(Some("admin"), "/admin/permissions/users?filter=outsider").await.json();
    assert_eq!(users["values"][0]["permission"], json!("LICENSED_USER"));
    assert_eq!(f.as_(Some("admin"), "DELETE", "/admin/permissions/groups?name=dev", None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(f.get(Some("outsider"), "/admin/users").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn group_changes_that_would_lower_the_callers_own_permission_or_reach_above_it_are_refused() {
    let f = fixture("", None);
    let f = &f;
    for g in ["leads", "root", "tpadmins", "radmins", "extra"] {
        make_group(f, g).await;
    }
    // outsider administers only through `leads`.
    add_members(f, "leads", &["outsider"]).await;
    let call = |who: &'static str, method: &'static str, path: &'static str| async move { f.as_(Some(who), method, path, None).await.status };
    assert_eq!(call("admin", "PUT", "/admin/permissions/groups?name=leads&permission=ADMIN").await, StatusCode::NO_CONTENT);
    assert_eq!(call("admin", "PUT", "/admin/permissions/groups?name=root&permission=SYS_ADMIN").await, StatusCode::NO_CONTENT);
    assert_eq!(call("outsider", "DELETE", "/admin/permissions/groups?name=leads").await, StatusCode::CONFLICT);
    assert_eq!(call("outsider", "PUT", "/admin/permissions/groups?name=leads&permission=PROJECT_CREATE").await, StatusCode::CONFLICT);
    assert_eq!(call("outsider", "DELETE", "/admin/groups?name=leads").await, StatusCode::CONFLICT);
    let leave = f.as_(Some("outsider"), "POST", "/admin/groups/remove-user", Some(json!({"context": "leads", "itemName": "outsider"}))).await;
    assert_eq!(leave.status, StatusCode::CONFLICT, "{:?}", leave.error());
    assert!(leave.error().0.contains("lower your own permission"), "{:?}", leave.error());
    // Above the caller: a SYS_ADMIN group, or granting SYS_ADMIN.
    assert_eq!(call("outsider", "PUT", "/admin/permissions/groups?name=extra&permission=SYS_ADMIN").await, StatusCode::FORBIDDEN);
    assert_eq!(call("outsider", "DELETE", "/admin/groups?name=root").await, StatusCode::FORBIDDEN);
    assert_eq!(call("outsider", "DELETE", "/admin/permissions/groups?name=root").await, StatusCode::FORBIDDEN);
    let join = f.as_(Some("outsider"), "POST", "/admin/groups/add-user", Some(json!({"context": "root", "itemName": "outsider"}))).await;
    assert_eq!(join.status, StatusCode::FORBIDDEN);
    // What does not lower them is allowed.
    assert_eq!(call("outsider", "PUT", "/admin/permissions/groups?name=extra&permission=ADMIN").await, StatusCode::NO_CONTENT);
    assert_eq!(call("outsider", "PUT", "/admin/permissions/groups?name=leads&permission=ADMIN").await, StatusCode::NO_CONTENT);

    // A project administrator only through `tpadmins`: 403 for a PUT, 409 for a DELETE.
    add_members(f, "tpadmins", &["reader"]).await;
    add_members(f, "radmins", &["reader"]).await;
    assert_eq!(call("admin", "PUT", "/projects/TP/permissions/groups?name=tpadmins&permission=PROJECT_ADMIN").await, StatusCode::NO_CONTENT);
    assert_eq!(call("reader", "PUT", "/projects/TP/permissions/groups?name=tpadmins&permission=PROJECT_WRITE").await, StatusCode::FORBIDDEN);
    assert_eq!(call("reader", "DELETE", "/projects/TP/permissions/groups?name=tpadmins").await, StatusCode::CONFLICT);
    assert_eq!(call("reader", "PUT", "/projects/TP/permissions/groups?name=extra&permission=PROJECT_WRITE").await, StatusCode::NO_CONTENT);
    // The same on the repository, once the project grant no longer makes them admin.
    assert_eq!(call("admin", "PUT", "/projects/TP/repos/test/permissions/groups?name=radmins&permission=REPO_ADMIN").await, StatusCode::NO_CONTENT);
    assert_eq!(call("admin", "DELETE", "/projects/TP/permissions/groups?name=tpadmins").await, StatusCode::NO_CONTENT);
    assert_eq!(call("reader", "PUT", "/projects/TP/repos/test/permissions/groups?name=radmins&permission=REPO_READ").await, StatusCode::FORBIDDEN);
    assert_eq!(call("reader", "DELETE", "/projects/TP/repos/test/permissions/groups?name=radmins").await, StatusCode::CONFLICT);
    // An administrator with a grant of their own loses nothing.
    assert_eq!(call("owner", "DELETE", "/projects/TP/repos/test/permissions/groups?name=radmins").await, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_audit_log_is_for_administrators_and_its_parameters_are_checked() {
    let f = fixture("", None);
    assert_eq!(f.get(None, "/admin/audit").await.status, StatusCode::UNAUTHORIZED);
    let r = f.get(Some("owner"), "/admin/audit").await;
    assert_eq!((r.status, r.exception()), (StatusCode::FORBIDDEN, "com.atlassian.bitbucket.AuthorisationException".to_owned()));
    // An admin-scoped token of an administrator reads it; a read-scoped one does not.
    let s = f.server.store();
    let read = s.create_token(&name("admin"), "ro", Permission::Read).unwrap().secret;
    let admin = s.create_token(&name("admin"), "full", Permission::Admin).unwrap().secret;
    assert_eq!(f.send("GET", "/admin/audit", Some(format!("Bearer {read}")), None).await.status, StatusCode::FORBIDDEN);
    let r = f.send("GET", "/admin/audit?order=OLDEST", Some(format!("Bearer {admin}")), None).await;
    assert_eq!(r.status, StatusCode::OK);
    // The refused reads were logins too: the owner's password, the read-scoped token.
    let v = r.json();
    let seen: Vec<(&str, &str)> = v["values"].as_array().unwrap().iter().map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap())).collect();
    assert_eq!(seen, [("owner", "login.success"), ("admin", "login.success"), ("admin", "login.success")]);
    let e = &v["values"][1];
    assert_eq!((e["target"].as_str(), e["details"]["method"].as_str(), e["details"]["channel"].as_str()), (Some("user:admin"), Some("token"), Some("rest")));
    assert!(e["time"].as_str().unwrap().ends_with('Z') && e["timestamp"].is_i64() && e["id"].is_i64());
    for (q, context) in [("order=SIDEWAYS", "order"), ("from=soon", "from"), ("to=2026-13-01", "to"), ("from=2026-02-02&to=2026-02-01", "from")] {
        let r = f.get(Some("admin"), &format!("/admin/audit?{q}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(r.error().2, json!(context), "{q}");
    }
}
