//! Handler tests: every page's permission rules, CSRF, sessions and the login limit, through
//! `app()` with `oneshot` (no sockets).

use axum::body::Body;
use http::{Request, StatusCode, header};
use sha2::Digest as _;
use tower::ServiceExt as _;
use trove_store::{GlobalPermission, Owner, Password, Permission, ProjectKey, RepoSlug, UserName};

use crate::{Server, ServerConfig, app};

struct Fixture {
    _dir: tempfile::TempDir,
    server: Server,
    ctx: String,
}

fn name(s: &str) -> UserName {
    UserName::parse(s).unwrap()
}

/// Users `admin` (SYS_ADMIN), `reader` (read on TP), `owner` (admin on TP), `outsider`;
/// private project TP with `test`, public project PUB with `open`.
fn fixture(ctx: &str, base_url: Option<&str>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path());
    if !ctx.is_empty() {
        config.context_path = Some(trove_store::ContextPath::parse(ctx).unwrap());
    }
    config.base_url = base_url.map(|b| trove_store::BaseUrl::parse(b).unwrap());
    config.auth.max_failed_logins = 3;
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

impl Fixture {
    /// A session for `user` (no login round trip): `(cookie header, csrf)`.
    fn session(&self, user: &str) -> (String, String) {
        let u = self.server.store().user(&name(user)).unwrap().unwrap();
        let (id, csrf) = self.server.store().create_session(u.id, 3600).unwrap();
        (format!("{}={id}", super::SESSION_COOKIE), csrf)
    }

    async fn send(&self, method: &str, path: &str, cookie: Option<&str>, form: Option<&str>) -> Resp {
        self.send_with(method, path, cookie, form, &[]).await
    }

    async fn send_with(&self, method: &str, path: &str, cookie: Option<&str>, form: Option<&str>, extra: &[(&str, &str)]) -> Resp {
        let mut b =
            Request::builder().method(method).uri(format!("{}{path}", self.ctx)).header(header::HOST, "localhost:7990").header(header::ACCEPT, "text/html");
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
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

    /// POSTs a form as `user` with their session's CSRF token appended.
    async fn post_as(&self, user: &str, path: &str, form: &str) -> Resp {
        let (cookie, csrf) = self.session(user);
        self.send("POST", path, Some(&cookie), Some(&format!("{form}&csrf={csrf}"))).await
    }
}

#[tokio::test]
async fn every_page_follows_the_permission_rules() {
    let f = fixture("", None);
    use StatusCode as S;
    // (path, anonymous, outsider, reader, owner (TP admin), admin)
    let login = S::FOUND;
    let cases: &[(&str, [S; 5])] = &[
        ("/", [S::OK; 5]),
        ("/projects", [S::OK; 5]),
        ("/login", [S::OK, S::SEE_OTHER, S::SEE_OTHER, S::SEE_OTHER, S::SEE_OTHER]),
        ("/account", [login, S::OK, S::OK, S::OK, S::OK]),
        ("/projects/PUB", [S::OK; 5]),
        ("/projects/PUB/repos/open/browse", [S::OK; 5]),
        ("/projects/PUB/repos/open/settings", [login, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN, S::OK]),
        ("/projects/TP", [login, S::NOT_FOUND, S::OK, S::OK, S::OK]),
        ("/projects/TP/settings", [login, S::NOT_FOUND, S::FORBIDDEN, S::OK, S::OK]),
        ("/projects/TP/repos/test", [login, S::NOT_FOUND, S::FOUND, S::FOUND, S::FOUND]),
        ("/projects/TP/repos/test/browse", [login, S::NOT_FOUND, S::OK, S::OK, S::OK]),
        ("/projects/TP/repos/test/commits", [login, S::NOT_FOUND, S::OK, S::OK, S::OK]),
        ("/projects/TP/repos/test/settings", [login, S::NOT_FOUND, S::FORBIDDEN, S::OK, S::OK]),
        ("/projects/TP/repos/test/raw/README.md", [login, S::NOT_FOUND, S::NOT_FOUND, S::NOT_FOUND, S::NOT_FOUND]),
        ("/projects/TP/repos/nope/browse", [login, S::NOT_FOUND, S::NOT_FOUND, S::NOT_FOUND, S::NOT_FOUND]),
        ("/projects/NOPE", [login, S::NOT_FOUND, S::NOT_FOUND, S::NOT_FOUND, S::NOT_FOUND]),
        ("/admin", [login, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN, S::OK]),
        ("/admin/server-settings", [login, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN, S::OK]),
        ("/admin/users", [login, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN, S::OK]),
        ("/admin/projects", [login, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN, S::OK]),
        ("/admin/groups", [login, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN, S::OK]),
        ("/admin/audit", [login, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN, S::OK]),
        ("/admin/groups/members?group=nope", [login, S::FORBIDDEN, S::FORBIDDEN, S::FORBIDDEN, S::NOT_FOUND]),
        ("/no/such/page", [S::NOT_FOUND; 5]),
    ];
    let users = [None, Some("outsider"), Some("reader"), Some("owner"), Some("admin")];
    for (path, want) in cases {
        for (user, want) in users.iter().zip(want) {
            let r = f.get_as(*user, path).await;
            assert_eq!(r.status, *want, "GET {path} as {user:?}: {}", &r.body[..r.body.len().min(400)]);
            if r.status == S::FOUND && user.is_none() {
                assert!(r.location().starts_with("/login?next="), "{path}: {}", r.location());
            }
            if matches!(r.status, S::NOT_FOUND | S::FORBIDDEN) {
                assert!(r.body.contains("<!DOCTYPE html>") && r.body.contains("trove.css"), "error pages share the look: {path}");
            }
        }
    }
}

#[tokio::test]
async fn personal_repositories_are_their_owners_and_bitbuckets_user_urls_lead_to_them() {
    let f = fixture("/stash", None);
    f.server.store().create_repo(&Owner::User(name("owner")), &RepoSlug::parse("dots").unwrap(), false).unwrap();
    let r = f.get_as(Some("owner"), "/users/owner/repos/dots/browse?at=refs/heads/main").await;
    assert_eq!((r.status, r.location()), (StatusCode::FOUND, "/stash/projects/~owner/repos/dots/browse?at=refs/heads/main"));
    assert_eq!(f.get_as(Some("owner"), "/projects/~owner/repos/dots/browse").await.status, StatusCode::OK);
    assert_eq!(f.get_as(Some("owner"), "/projects/~owner/repos/dots/settings").await.status, StatusCode::OK);
    assert_eq!(f.get_as(Some("outsider"), "/projects/~owner/repos/dots/browse").await.status, StatusCode::NOT_FOUND);
    let page = f.get_as(Some("outsider"), "/projects/~owner").await;
    assert_eq!(page.status, StatusCode::OK, "a user's page is there for every logged-in caller");
    assert!(!page.body.contains("dots"), "but lists only what the caller may read");
    assert_eq!(f.get_as(Some("owner"), "/users/no%0Aone").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn forms_need_the_sessions_csrf_token_and_the_right_permission() {
    let f = fixture("", None);
    // No token, or another session's token: refused even for an administrator.
    let (cookie, _) = f.session("admin");
    let r = f.send("POST", "/admin/projects", Some(&cookie), Some("key=NEW")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let (_, other_csrf) = f.session("admin");
    let r = f.send("POST", "/admin/projects", Some(&cookie), Some(&format!("key=NEW&csrf={other_csrf}"))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("Form expired"));
    // Non-admins cannot use admin forms even with a valid token.
    for (path, form) in [
        ("/admin/projects", "key=NEW"),
        ("/admin/users", "action=create&user=eve&password=eve-password"),
        ("/admin/server-settings", "base_url=https://evil.example"),
    ] {
        assert_eq!(f.post_as("reader", path, form).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(f.post_as("reader", "/projects/TP", "slug=new").await.status, StatusCode::FORBIDDEN, "read is not project admin");
    assert_eq!(f.post_as("outsider", "/projects/TP/repos/test/settings", "action=visibility&public=1").await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.post_as("reader", "/projects/TP/repos/test/settings", "action=visibility&public=1").await.status, StatusCode::FORBIDDEN);
    // The project admin creates a repository; the admin creates a project.
    let r = f.post_as("owner", "/projects/TP", "slug=created&public=1").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/projects/TP/repos/created/browse"));
    let r = f.post_as("admin", "/admin/projects", "key=NEW&name=New+one").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/projects/NEW?done=created"));
    let r = f.post_as("admin", "/admin/projects", "key=NEW").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // Deleting needs the name typed.
    let r = f.post_as("owner", "/projects/TP/repos/created/settings", "action=delete&confirm=wrong").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = f.post_as("owner", "/projects/TP/repos/created/settings", "action=delete&confirm=created").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(f.server.store().repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("created").unwrap()).unwrap().is_none());
    // Grants through the settings page take effect.
    let r = f.post_as("owner", "/projects/TP/settings", "action=grant&user=outsider&permission=read").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(f.get_as(Some("outsider"), "/projects/TP/repos/test/browse").await.status, StatusCode::OK);
    let r = f.post_as("owner", "/projects/TP/settings", "action=grant&user=ghost&permission=read").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn saving_the_base_url_changes_clone_urls_at_once_and_bad_ones_are_refused() {
    let f = fixture("/stash", Some("http://localhost:7990/stash"));
    let page = f.get_as(Some("reader"), "/projects/TP/repos/test/browse").await;
    assert!(page.body.contains("http://reader@localhost:7990/stash/scm/tp/test.git"), "{}", page.body);
    for bad in ["ftp://x.example", "https://", "https://a.example:99999/stash", "https://a.example/st ash", "https://user@a.example"] {
        let r = f.post_as("admin", "/admin/server-settings", &format!("base_url={}", super::url_encode(bad))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(r.body.contains("is invalid"), "{bad}: {}", r.body);
    }
    let r = f.post_as("admin", "/admin/server-settings", "base_url=https%3A%2F%2Fgit.example.com%2Fstash").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/stash/admin/server-settings?done=saved"));
    let page = f.get_as(Some("reader"), "/projects/TP/repos/test/browse").await;
    assert!(page.body.contains("https://reader@git.example.com/stash/scm/tp/test.git"), "{}", page.body);
    assert_eq!(f.server.store().base_url().unwrap().unwrap().as_str(), "https://git.example.com/stash");
    let settings = f.get_as(Some("admin"), "/admin/server-settings").await;
    assert!(settings.body.contains("http://localhost:7990/stash") && settings.body.contains("id=\"mismatch\""), "the request URL and the mismatch are shown");
    // Cookies are Secure now that the base URL is https.
    let r = f.get_as(None, "/login").await;
    let c = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(c.contains("Secure") && c.contains("Path=/stash"), "{c}");
}

#[tokio::test]
async fn logging_in_sets_a_strict_cookie_and_failures_are_rate_limited() {
    let f = fixture("/stash", None);
    let r = f.get_as(None, "/login?next=/stash/projects/TP").await;
    assert_eq!(r.status, StatusCode::OK);
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_owned();
    let token = set.split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
    let login_cookie = format!("trove_login_csrf={token}");
    // Without the form's token: refused.
    let r = f.send("POST", "/login", Some(&login_cookie), Some("username=admin&password=admin-password&csrf=wrong")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Right password: a session cookie that scripts cannot read, scoped to the context path.
    let form = format!("username=reader&password=reader-password&csrf={token}&next=%2Fstash%2Fprojects%2FTP");
    let r = f.send("POST", "/login", Some(&login_cookie), Some(&form)).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/stash/projects/TP"));
    let session = r.headers.get_all(header::SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).find(|c| c.starts_with("trove_session=")).unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/stash"] {
        assert!(session.contains(attr), "{session}");
    }
    assert!(!session.contains("Secure"), "plain http base: {session}");
    let cookie = session.split(';').next().unwrap().to_owned();
    assert_eq!(f.send("GET", "/projects/TP", Some(&cookie), None).await.status, StatusCode::OK);
    // An open redirect in next= is ignored.
    let r =
        f.send("POST", "/login", Some(&login_cookie), Some(&format!("username=reader&password=reader-password&csrf={token}&next=%2F%2Fevil.example"))).await;
    assert_eq!(r.location(), "/stash/");
    // Wrong passwords: 401 until the limit; then the account is locked and the form comes
    // back with the challenge, even for the right password.
    for _ in 0..3 {
        let r = f.send("POST", "/login", Some(&login_cookie), Some(&format!("username=owner&password=wrong-password&csrf={token}"))).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.body.contains("Wrong username or password"));
    }
    let r = f.send("POST", "/login", Some(&login_cookie), Some(&format!("username=owner&password=owner-password&csrf={token}"))).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.body.contains("locked after too many failed logins"), "{}", r.body);
    assert!(f.server.store().login_lock(&name("owner"), &trove_store::LoginPolicy { max_failures: 3, ..Default::default() }).unwrap().is_some());
    // Another account, from the same address, is not affected.
    let r = f.send("POST", "/login", Some(&login_cookie), Some(&format!("username=reader&password=reader-password&csrf={token}"))).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "one account's failures locked out another");
}

/// The `challenge` value of a locked-account login form.
fn challenge_of(body: &str) -> String {
    body.split("name=\"challenge\" value=\"").nth(1).and_then(|s| s.split('"').next()).expect("a challenge in the form").to_owned()
}

#[tokio::test]
async fn a_locked_account_signs_in_on_the_web_by_solving_the_challenge_which_unlocks_git_too() {
    let f = fixture("", None);
    let r = f.get_as(None, "/login").await;
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_owned();
    let token = set.split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
    let cookie = format!("trove_login_csrf={token}");
    for _ in 0..3 {
        assert_eq!(
            f.send("POST", "/login", Some(&cookie), Some(&format!("username=owner&password=wrong-password&csrf={token}"))).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let locked = f.send("POST", "/login", Some(&cookie), Some(&format!("username=owner&password=owner-password&csrf={token}"))).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(locked.body.contains("data-pow-bits=\"18\""), "{}", locked.body);
    let challenge = challenge_of(&locked.body);
    let enc = |s: &str| s.replace('.', "%2E");
    // An unsolved or foreign challenge is refused with a fresh one; the lock stays.
    let r = f
        .send("POST", "/login", Some(&cookie), Some(&format!("username=owner&password=owner-password&csrf={token}&challenge={}&nonce=1", enc(&challenge))))
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.body.contains("not solved") && challenge_of(&r.body) != challenge, "{}", r.body);
    let nonce = crate::solve_login_challenge(&challenge, 18);
    // Solved, but the wrong password: still locked, and the challenge is spent.
    let r = f
        .send("POST", "/login", Some(&cookie), Some(&format!("username=owner&password=wrong-again&csrf={token}&challenge={}&nonce={nonce}", enc(&challenge))))
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.body.contains("stays locked"), "{}", r.body);
    let r = f
        .send(
            "POST",
            "/login",
            Some(&cookie),
            Some(&format!("username=owner&password=owner-password&csrf={token}&challenge={}&nonce={nonce}", enc(&challenge))),
        )
        .await;
    assert!(r.body.contains("already used"), "a challenge was accepted twice: {}", r.body);
    let challenge = challenge_of(&r.body);
    let nonce = crate::solve_login_challenge(&challenge, 18);
    let r = f
        .send(
            "POST",
            "/login",
            Some(&cookie),
            Some(&format!("username=owner&password=owner-password&csrf={token}&challenge={}&nonce={nonce}", enc(&challenge))),
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let policy = trove_store::LoginPolicy { max_failures: 3, ..Default::default() };
    assert!(f.server.store().login_lock(&name("owner"), &policy).unwrap().is_none(), "the web sign-in unlocked the account");
}

#[tokio::test]
async fn a_repository_made_in_the_ui_takes_a_name_and_gets_bitbuckets_slug() {
    let f = fixture("", None);
    let r = f.post_as("owner", "/projects/TP", "name=My+Repo").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/projects/TP/repos/my-repo/browse"));
    let repo = f.server.store().repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("my-repo").unwrap()).unwrap().unwrap();
    assert_eq!(repo.name, "My Repo");
    assert_eq!(f.post_as("owner", "/projects/TP", "name=My+repo").await.status, StatusCode::CONFLICT, "the same slug again");
    assert_eq!(f.post_as("owner", "/projects/TP", "name=%21%21%21").await.status, StatusCode::BAD_REQUEST, "no valid slug");
}

#[tokio::test]
async fn a_users_page_exists_before_their_first_personal_repository() {
    let f = fixture("", None);
    // REST gives `<base>/users/reader` as the user's `links.self`: their profile, which links
    // to the personal project.
    let r = f.get_as(Some("outsider"), "/users/reader").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("href=\"/projects/~reader\""), "{}", r.body);
    let r = f.get_as(Some("outsider"), "/projects/~reader").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("reader"));
    assert_eq!(f.get_as(Some("outsider"), "/projects/~ghost").await.status, StatusCode::NOT_FOUND);
    // Their own page offers to create a repository, which makes the personal project.
    assert!(f.get_as(Some("reader"), "/projects/~reader").await.body.contains("Create repository"));
    let r = f.post_as("reader", "/projects/~reader", "name=dots").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/projects/~reader/repos/dots/browse"));
}

#[tokio::test]
async fn form_posts_a_browser_says_came_from_another_site_are_refused_despite_a_valid_token() {
    let f = fixture("", None);
    let (cookie, csrf) = f.session("owner");
    let form = format!("name=from-elsewhere&csrf={csrf}");
    for extra in [
        &[("sec-fetch-site", "cross-site")][..],
        &[("sec-fetch-site", "same-site")][..],
        &[("origin", "https://evil.example")][..],
        &[("origin", "null")][..],
        &[("origin", "http://localhost:7991")][..],
    ] {
        let r = f.send_with("POST", "/projects/TP", Some(&cookie), Some(&form), extra).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{extra:?}");
    }
    assert!(f.server.store().repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("from-elsewhere").unwrap()).unwrap().is_none());
    // The same form from our own pages: Sec-Fetch-Site same-origin, or our Origin, or neither.
    for (i, extra) in [&[("sec-fetch-site", "same-origin")][..], &[("origin", "http://localhost:7990")][..], &[][..]].into_iter().enumerate() {
        let r = f.send_with("POST", "/projects/TP", Some(&cookie), Some(&format!("name=mine-{i}&csrf={csrf}")), extra).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{extra:?}");
    }
    // The login form too: a cross-site login is refused before any password is checked.
    let r = f.send_with("POST", "/login", None, Some("username=owner&password=owner-password&csrf=x"), &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn pages_have_no_inline_styles_so_the_strict_csp_holds() {
    let f = fixture("", None);
    f.server.store().create_repo(&Owner::User(name("owner")), &RepoSlug::parse("dots").unwrap(), false).unwrap();
    for (who, path) in [
        (Some("owner"), "/account"),
        (Some("owner"), "/projects/TP/settings"),
        (Some("owner"), "/projects/TP/repos/test/settings"),
        (Some("admin"), "/admin/server-settings"),
        (Some("admin"), "/admin/users"),
        (Some("admin"), "/admin/audit"),
        (None, "/login"),
    ] {
        let r = f.get_as(who, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(!r.body.contains(" style="), "{path} has an inline style the CSP (style-src 'self') blocks:\n{}", r.body);
    }
}

#[tokio::test]
async fn administrators_see_locked_accounts_and_clear_them() {
    let f = fixture("", None);
    let policy = trove_store::LoginPolicy { max_failures: 3, ..Default::default() };
    for _ in 0..3 {
        f.server.store().check_password("owner", "wrong-password", &policy, false).unwrap();
    }
    let page = f.get_as(Some("admin"), "/admin/users").await;
    let row = page.body.split("data-user=\"owner\"").nth(1).unwrap().split("</tr>").next().unwrap().to_owned();
    assert!(row.contains("locked") && row.contains("value=\"unlock\""), "{row}");
    let other = page.body.split("data-user=\"reader\"").nth(1).unwrap().split("</tr>").next().unwrap().to_owned();
    assert!(!other.contains("locked"), "{other}");
    let r = f.post_as("admin", "/admin/users", "action=unlock&user=owner").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/admin/users?done=unlocked"));
    assert!(f.server.store().login_lock(&name("owner"), &policy).unwrap().is_none());
    // Resetting the password clears a lock too.
    for _ in 0..3 {
        f.server.store().check_password("owner", "wrong-password", &policy, false).unwrap();
    }
    assert_eq!(f.post_as("admin", "/admin/users", "action=reset-password&user=owner&password=brand-new-password").await.status, StatusCode::SEE_OTHER);
    assert!(f.server.store().login_lock(&name("owner"), &policy).unwrap().is_none());
}

#[test]
fn the_pages_script_computes_the_same_sha_256_as_the_server_checks() {
    // The solver runs in the browser; run the same file under Node and compare with Rust's
    // SHA-256 on the challenge's shape, across the one-block/two-block boundary.
    let script = std::env::temp_dir().join(format!("trove-js-{}.js", std::process::id()));
    std::fs::write(&script, super::view::JS).unwrap();
    let inputs: Vec<String> =
        vec![String::new(), "abc".into(), "x".repeat(55), "y".repeat(56), format!("1700000000.{}.{}:123456", "a".repeat(24), "f".repeat(64))];
    let driver = format!(
        "global.document = {{ addEventListener() {{}} }}; const f = require({:?}); for (const s of {}) console.log(f(s).map(x => (x >>> 0).toString(16).padStart(8, '0')).join(''));",
        script.display().to_string(),
        serde_json::to_string(&inputs).unwrap()
    );
    let out = std::process::Command::new("node").args(["-e", &driver]).output().expect("node runs (scripts/test installs nodejs)");
    let _ = std::fs::remove_file(&script);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect();
    let want: Vec<String> = inputs.iter().map(|s| sha2::Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn tokens_do_not_log_a_browser_in() {
    let f = fixture("", None);
    let r = f.get_as(None, "/login").await;
    let set = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_owned();
    let token = set.split(';').next().unwrap().split_once('=').unwrap().1.to_owned();
    let login_cookie = format!("trove_login_csrf={token}");
    let t = f.server.store().create_token(&name("admin"), "x", Permission::Read).unwrap();
    let r = f.send("POST", "/login", Some(&login_cookie), Some(&format!("username=admin&password={}&csrf={token}", t.secret))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A refused login all the same, in the audit log (never with the token).
    let log = f.server.store().audit_entries(&trove_store::AuditQuery::default()).unwrap().0;
    assert_eq!(log.len(), 1);
    assert_eq!((log[0].actor.as_str(), log[0].action.as_str(), log[0].target.as_str()), ("admin", "login.failure", "user:admin"));
    assert!(log[0].details.contains("\"web\"") && !log[0].details.contains(&t.secret));
}

#[tokio::test]
async fn logout_and_disabling_end_sessions() {
    let f = fixture("", None);
    let (cookie, csrf) = f.session("reader");
    assert_eq!(f.send("GET", "/account", Some(&cookie), None).await.status, StatusCode::OK);
    let r = f.send("POST", "/logout", Some(&cookie), Some(&format!("csrf={csrf}"))).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/login"));
    assert!(r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(f.send("GET", "/account", Some(&cookie), None).await.status, StatusCode::FOUND, "the old cookie is dead");
    let (cookie, _) = f.session("reader");
    let r = f.post_as("admin", "/admin/users", "action=disable&user=reader").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(f.send("GET", "/account", Some(&cookie), None).await.status, StatusCode::FOUND);
    assert!(f.server.store().verify_password("reader", "reader-password").unwrap().is_none());
    // Admins cannot disable themselves; they can create users and make them admin.
    assert_eq!(f.post_as("admin", "/admin/users", "action=disable&user=admin").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(f.post_as("admin", "/admin/users", "action=create&user=newbie&password=short").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(f.post_as("admin", "/admin/users", "action=create&user=newbie&password=newbie-password").await.status, StatusCode::SEE_OTHER);
    assert_eq!(f.post_as("admin", "/admin/users", "action=make-admin&user=newbie").await.status, StatusCode::SEE_OTHER);
    assert_eq!(f.get_as(Some("newbie"), "/admin").await.status, StatusCode::OK);
}

#[tokio::test]
async fn tokens_are_shown_once_and_revoked_by_their_owner_only() {
    let f = fixture("", None);
    let (session, csrf) = f.session("reader");
    let r = f.send("POST", "/account", Some(&session), Some(&format!("action=create-token&name=laptop&scope=read&csrf={csrf}"))).await;
    // Post/redirect/get: the answer is a redirect carrying the new token to the page that shows
    // it, so reloading that page makes no second token.
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/account?done=token-created#new-token"));
    let carried = r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().split(';').next().unwrap().to_owned();
    assert!(carried.starts_with("trove_new_token=") && r.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().contains("HttpOnly"), "{carried}");
    let shown = f.send("GET", "/account?done=token-created", Some(&format!("{session}; {carried}")), None).await;
    let secret = shown.body.split("value=\"trv_").nth(1).map(|s| format!("trv_{}", s.split('"').next().unwrap())).expect("secret shown");
    assert!(f.server.store().verify_token(&secret, Some("reader")).unwrap().is_some());
    let cleared = shown.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap();
    assert!(cleared.starts_with("trove_new_token=;") && cleared.contains("Max-Age=0"), "the page clears what it showed: {cleared}");
    let page = f.send("GET", "/account?done=token-created", Some(&session), None).await;
    assert!(page.body.contains("laptop") && !page.body.contains(&secret), "listed, never shown again");
    let reader = f.server.store().user(&name("reader")).unwrap().unwrap();
    assert_eq!(f.server.store().tokens(&reader).unwrap().len(), 1, "reloading made no second token");
    let id = f.server.store().tokens(&f.server.store().user(&name("reader")).unwrap().unwrap()).unwrap()[0].id;
    assert_eq!(f.post_as("outsider", "/account", &format!("action=revoke-token&id={id}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.post_as("reader", "/account", &format!("action=revoke-token&id={id}")).await.status, StatusCode::SEE_OTHER);
    assert!(f.server.store().verify_token(&secret, None).unwrap().is_none());
    // Password change needs the current one.
    let r = f.post_as("reader", "/account", "action=password&current=nope&new=another-password&confirm=another-password").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = f.post_as("reader", "/account", "action=password&current=reader-password&new=another-password&confirm=another-password").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(f.server.store().verify_password("reader", "another-password").unwrap().is_some());
}

#[tokio::test]
async fn ssh_keys_are_added_listed_judged_and_deleted_on_the_account_page() {
    let f = fixture("", None);
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl reader@laptop";
    let form = |text: &str| format!("action=add-key&label=&text={}", text.replace(' ', "+").replace('@', "%40"));
    assert_eq!(f.post_as("reader", "/account", &form(key)).await.status, StatusCode::SEE_OTHER);
    let page = f.get_as(Some("reader"), "/account").await;
    assert!(page.body.contains("reader@laptop") && page.body.contains("SHA256:"), "listed with its label and fingerprint");
    let r = f.post_as("outsider", "/account", &form(key)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("already in use"), "unique across the server");
    let r = f.post_as("reader", "/account", &form("ssh-rsa AAAA")).await;
    assert!(r.status == StatusCode::BAD_REQUEST && r.body.contains("not an OpenSSH public key"), "{}", r.body);
    let id = f.server.store().user_ssh_keys(f.server.store().user(&name("reader")).unwrap().unwrap().id).unwrap()[0].id;
    assert_eq!(f.post_as("outsider", "/account", &format!("action=delete-key&id={id}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.post_as("reader", "/account", &format!("action=delete-key&id={id}")).await.status, StatusCode::SEE_OTHER);
    assert!(!f.get_as(Some("reader"), "/account").await.body.contains("reader@laptop"));
}

#[tokio::test]
async fn pages_carry_security_headers_and_git_clients_still_get_plain_404s() {
    let f = fixture("", None);
    let r = f.get_as(Some("reader"), "/projects/TP").await;
    for h in [header::CONTENT_SECURITY_POLICY, header::X_FRAME_OPTIONS, header::X_CONTENT_TYPE_OPTIONS] {
        assert!(r.headers.contains_key(&h), "{h}");
    }
    assert_eq!(r.headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
    let req = Request::builder().uri("/no/such").body(Body::empty()).unwrap();
    let resp = app(&f.server).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.headers().get(header::CONTENT_TYPE).unwrap().to_str().unwrap().starts_with("text/plain"));
    let css = f.get_as(None, "/static/trove.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers.get(header::CONTENT_TYPE).unwrap().to_str().unwrap().starts_with("text/css"));
}

/// Commits a README and `src/lib.rs` on `main` straight into the fixture's `TP/test` on disk.
/// `git` in the work tree `work`, with a throwaway identity and no user or system config; its
/// output, trimmed. Fails the test when git fails.
fn work_git(work: &std::path::Path, args: &[&str]) -> String {
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

/// A work tree cloned from TP/test (after [`push_locally`]), to commit and push more.
fn clone_test(f: &Fixture) -> tempfile::TempDir {
    let repo = f.server.store().repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("test").unwrap()).unwrap().unwrap();
    let work = tempfile::tempdir().unwrap();
    work_git(work.path(), &["clone", "-q", f.server.store().repo_path(&repo).to_str().unwrap(), "."]);
    work
}

fn push_locally(f: &Fixture) -> String {
    let repo = f.server.store().repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("test").unwrap()).unwrap().unwrap();
    let bare = f.server.store().repo_path(&repo);
    let work = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| work_git(work.path(), args);
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(work.path().join("README.md"), "# Title\n\n<b>bold?</b>\n").unwrap();
    std::fs::create_dir(work.path().join("src")).unwrap();
    std::fs::write(work.path().join("src/lib.rs"), "<html><script>alert(1)</script>\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "first"]);
    git(&["push", "-q", bare.to_str().unwrap(), "main"]);
    git(&["rev-parse", "HEAD"])
}

#[tokio::test]
async fn browsing_takes_only_the_repositorys_refs_hex_ids_and_plain_paths() {
    let f = fixture("", None);
    let tip = push_locally(&f);
    let base = "/projects/TP/repos/test";
    for (path, want) in [
        (format!("{base}/browse"), StatusCode::OK),
        (format!("{base}/browse?at=refs/heads/main"), StatusCode::OK),
        (format!("{base}/browse?at=refs/heads/main"), StatusCode::OK),
        (format!("{base}/browse?at={}", &tip[..10]), StatusCode::OK),
        (format!("{base}/browse/src"), StatusCode::OK),
        (format!("{base}/browse/src/lib.rs"), StatusCode::OK),
        (format!("{base}/browse?at=--output=/tmp/x"), StatusCode::NOT_FOUND),
        (format!("{base}/browse?at=HEAD~1"), StatusCode::NOT_FOUND),
        (format!("{base}/browse?at=refs/heads/nope"), StatusCode::NOT_FOUND),
        (format!("{base}/browse/src/%2E%2E/README.md"), StatusCode::NOT_FOUND),
        (format!("{base}/browse/nope.txt"), StatusCode::NOT_FOUND),
        (format!("{base}/commits/{tip}"), StatusCode::OK),
        (format!("{base}/commits/{}", "0".repeat(40)), StatusCode::NOT_FOUND),
        (format!("{base}/commits/--all"), StatusCode::NOT_FOUND),
        (format!("{base}/commits?until=--all"), StatusCode::NOT_FOUND),
        (format!("{base}/raw/src"), StatusCode::NOT_FOUND),
    ] {
        let r = f.get_as(Some("reader"), &path).await;
        assert_eq!(r.status, want, "{path}");
    }
    let page = f.get_as(Some("reader"), &format!("{base}/browse")).await;
    assert!(page.body.contains("<h1>Title</h1>") && page.body.contains("&lt;b&gt;bold?&lt;/b&gt;"), "{}", page.body);
    let file = f.get_as(Some("reader"), &format!("{base}/browse/src/lib.rs")).await;
    assert!(file.body.contains("&lt;script&gt;") && !file.body.contains("<script>alert"), "file contents are escaped");
    let raw = f.get_as(Some("reader"), &format!("{base}/raw/src/lib.rs?at=refs/heads/main")).await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(raw.body, "<html><script>alert(1)</script>\n");
    assert_eq!(raw.headers.get(header::CONTENT_TYPE).unwrap(), "text/plain; charset=utf-8");
    assert!(raw.headers.get(header::CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap().starts_with("sandbox"));
    let commit = f.get_as(Some("reader"), &format!("{base}/commits/{tip}")).await;
    // The pull request's diff view, its lines highlighted (Markdown's heading).
    assert!(commit.body.contains("class=\"code add both\"") && commit.body.contains("<span class=h># Title</span>"), "{}", commit.body);
}

#[tokio::test]
async fn internal_errors_are_a_page_without_details() {
    use axum::response::IntoResponse as _;
    let r = super::finish("/stash", super::WebError::Internal("database /secret/path is locked".into()).into_response(), None);
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("Something went wrong") && body.contains("/stash/static/trove.css"));
    assert!(!body.contains("/secret/path"));
}

#[tokio::test]
async fn administrators_make_groups_fill_them_and_confirm_deleting_one_that_grants_permissions() {
    let f = fixture("", None);
    let r = f.post_as("admin", "/admin/groups", "action=create&group=Devs").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/admin/groups/members?group=Devs&done=created"));
    let r = f.post_as("admin", "/admin/groups", "action=create&group=devs").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("already exists"), "{}", r.body);
    assert_eq!(f.post_as("owner", "/admin/groups", "action=create&group=other").await.status, StatusCode::FORBIDDEN);

    let members = "/admin/groups/members";
    assert_eq!(f.post_as("admin", members, "action=add&group=devs&user=outsider").await.status, StatusCode::SEE_OTHER);
    assert_eq!(f.post_as("admin", members, "action=add&group=devs&user=nobody").await.status, StatusCode::BAD_REQUEST);
    let page = f.get_as(Some("admin"), "/admin/groups/members?group=DEVS").await;
    assert!(page.body.contains("Group Devs") && page.body.contains("data-user=\"outsider\""), "{}", page.body);
    // A group's ADMIN makes its member an administrator of the web pages too.
    assert_eq!(f.get_as(Some("outsider"), "/admin").await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.post_as("admin", members, "action=global&group=devs&permission=ADMIN").await.status, StatusCode::SEE_OTHER);
    assert_eq!(f.get_as(Some("outsider"), "/admin").await.status, StatusCode::OK);
    let users = f.get_as(Some("admin"), "/admin/users").await.body;
    assert!(users.contains("ADMIN (group)"), "the users' page tells a group's permission from the user's own");
    // ... and may not leave the group that makes them one.
    let r = f.post_as("outsider", members, "action=remove&group=devs&user=outsider").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("lower your own permission"), "{}", r.body);

    // A group that grants something is deleted only with its name typed.
    let r = f.post_as("admin", "/admin/groups", "action=delete&group=devs").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("type Devs to confirm"), "{}", r.body);
    assert_eq!(f.post_as("admin", "/admin/groups", "action=delete&group=devs&confirm=Devs").await.status, StatusCode::SEE_OTHER);
    assert_eq!(f.get_as(Some("outsider"), "/admin").await.status, StatusCode::FORBIDDEN);
    // One that grants nothing needs no confirmation.
    assert_eq!(f.post_as("admin", "/admin/groups", "action=create&group=empty").await.status, StatusCode::SEE_OTHER);
    assert_eq!(f.post_as("admin", "/admin/groups", "action=delete&group=empty").await.status, StatusCode::SEE_OTHER);
    assert!(f.server.store().groups().unwrap().is_empty());
}

#[tokio::test]
async fn the_settings_pages_grant_and_revoke_group_permissions() {
    let f = fixture("", None);
    let s = f.server.store();
    for (g, member) in [("devs", "outsider"), ("leads", "reader")] {
        let g = trove_store::GroupName::parse(g).unwrap();
        s.insert_group(&g).unwrap();
        s.add_group_member(&g, &name(member)).unwrap();
    }
    assert_eq!(f.get_as(Some("outsider"), "/projects/TP").await.status, StatusCode::NOT_FOUND);
    let r = f.post_as("owner", "/projects/TP/settings", "action=grant-group&group=devs&permission=read").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/projects/TP/settings?done=granted"));
    assert_eq!(f.get_as(Some("outsider"), "/projects/TP").await.status, StatusCode::OK);
    assert!(f.get_as(Some("owner"), "/projects/TP/settings").await.body.contains("data-group=\"devs\""));
    assert_eq!(f.post_as("owner", "/projects/TP/settings", "action=grant-group&group=nope&permission=read").await.status, StatusCode::BAD_REQUEST);

    let r = f.post_as("owner", "/projects/TP/repos/test/settings", "action=grant-group&group=devs&permission=admin").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(f.get_as(Some("outsider"), "/projects/TP/repos/test/settings").await.status, StatusCode::OK, "admin through the group");
    assert!(f.get_as(Some("owner"), "/projects/TP/repos/test/settings").await.body.contains("data-group=\"devs\""));
    assert_eq!(f.post_as("owner", "/projects/TP/repos/test/settings", "action=revoke-group&group=devs").await.status, StatusCode::SEE_OTHER);
    assert_eq!(f.post_as("owner", "/projects/TP/settings", "action=revoke-group&group=devs").await.status, StatusCode::SEE_OTHER);
    assert_eq!(f.get_as(Some("outsider"), "/projects/TP").await.status, StatusCode::NOT_FOUND);

    // A project administrator only through `leads` may not revoke it.
    assert_eq!(f.post_as("admin", "/projects/TP/settings", "action=grant-group&group=leads&permission=admin").await.status, StatusCode::SEE_OTHER);
    let r = f.post_as("reader", "/projects/TP/settings", "action=revoke-group&group=leads").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.body.contains("lower your own permission"), "{}", r.body);
}

#[tokio::test]
async fn branch_restrictions_are_added_listed_and_deleted_on_the_settings_pages() {
    let f = fixture("", None);
    let repo_page = "/projects/TP/repos/test/settings";
    let r = f.post_as("owner", repo_page, "action=restrict&type=pull-request-only&matcher_type=BRANCH&matcher=main&users=reader&groups=").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/projects/TP/repos/test/settings?done=restricted"));
    let page = f.get_as(Some("owner"), repo_page).await;
    assert!(page.body.contains("id=\"branch-restrictions\"") && page.body.contains("pull-request-only"), "{}", page.body);
    assert!(page.body.contains("<code>main</code>") && page.body.contains("<td>reader</td>"), "{}", page.body);
    // Allowed on a branch that does not exist yet, and shown as such.
    assert!(page.body.contains("matches no branch or tag now"), "{}", page.body);
    // The rule against locking everyone out, and unknown names, as over REST.
    let r = f.post_as("owner", "/projects/TP/settings", "action=restrict&type=read-only&matcher_type=PATTERN&matcher=*").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("every branch"), "{}", r.body);
    let r = f.post_as("owner", repo_page, "action=restrict&type=no-deletes&matcher_type=BRANCH&matcher=main&users=ghost").await;
    assert!(r.status == StatusCode::BAD_REQUEST && r.body.contains("user ghost does not exist"), "{}", r.body);
    let r = f.post_as("owner", repo_page, "action=restrict&type=no-deletes&matcher_type=MODEL_CATEGORY&matcher=CHORE").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // With an administrator exempt, a project restriction on every branch is fine, and the
    // repository's page says one more applies there.
    let r = f.post_as("owner", "/projects/TP/settings", "action=restrict&type=read-only&matcher_type=PATTERN&matcher=*&users=owner").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/projects/TP/settings?done=restricted"));
    assert!(f.get_as(Some("owner"), repo_page).await.body.contains("1 more from the project"));
    let s = f.server.store();
    let repo = s.repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("test").unwrap()).unwrap().unwrap();
    let all = s.restrictions_in_force(&repo).unwrap();
    let (project_one, repo_one) = (all[0].id, all[1].id);
    // Only its own scope's restriction is deleted from a page, and only by an administrator.
    assert_eq!(f.post_as("owner", repo_page, &format!("action=unrestrict&id={project_one}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.post_as("reader", repo_page, &format!("action=unrestrict&id={repo_one}")).await.status, StatusCode::FORBIDDEN);
    let r = f.post_as("owner", repo_page, &format!("action=unrestrict&id={repo_one}")).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/projects/TP/repos/test/settings?done=unrestricted"));
    assert_eq!(s.restrictions_in_force(&repo).unwrap().len(), 1);
}

#[tokio::test]
async fn the_audit_log_page_lists_changes_newest_first_with_the_rest_apis_filters_and_pages() {
    let f = fixture("/stash", None);
    // Changes made on these pages are entries, with the signed-in administrator as the actor.
    for i in 0..55 {
        let r = f.post_as("admin", "/admin/groups", &format!("action=create&group=team{i:02}")).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
    }
    let r = f.post_as("admin", "/admin/users", "action=disable&user=reader").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = f.get_as(Some("admin"), "/admin/audit").await;
    assert_eq!(page.status, StatusCode::OK);
    let rows = |body: &str| body.matches("<tr data-id=").count();
    assert_eq!(rows(&page.body), 50, "a page of 50");
    let first = page.body.find("user.update").expect("the newest entry");
    assert!(first < page.body.find("group.create").unwrap(), "newest first");
    assert!(page.body.contains("user:reader") && page.body.contains("{&quot;active&quot;:false}"), "target and details shown");
    assert!(page.body.contains("href=\"/stash/admin/audit?start=50\""), "a link to the older ones");
    let older = f.get_as(Some("admin"), "/admin/audit?start=50").await;
    assert_eq!(rows(&older.body), 6);
    assert!(older.body.contains("href=\"/stash/admin/audit?start=0\"") && !older.body.contains("id=\"older\""));
    // The filters, kept in the paging links; a bad time is said, not ignored.
    let only = f.get_as(Some("admin"), "/admin/audit?action=group.*&target=TEAM0").await;
    assert_eq!(rows(&only.body), 10, "team00 to team09");
    assert!(only.body.contains("value=\"group.*\"") && !only.body.contains("user:reader"));
    let none = f.get_as(Some("admin"), "/admin/audit?actor=reader").await;
    assert!(none.body.contains("No entries."));
    let future = f.get_as(Some("admin"), "/admin/audit?from=2999-01-01").await;
    assert!(future.body.contains("No entries."));
    let bad = f.get_as(Some("admin"), "/admin/audit?from=last+week").await;
    assert_eq!(bad.status, StatusCode::OK);
    assert!(bad.body.contains("is not a date"), "{}", bad.body);
    let many = f.get_as(Some("admin"), "/admin/audit?action=group.create").await;
    assert!(many.body.contains("href=\"/stash/admin/audit?start=50&amp;action=group.create\""), "filters stay on the next page");
    // Reachable from the administration's tabs.
    assert!(f.get_as(Some("admin"), "/admin").await.body.contains("href=\"/stash/admin/audit\""));
}

#[tokio::test]
async fn webhooks_are_added_tested_edited_and_deleted_on_the_settings_pages_within_the_network_rules() {
    let f = fixture("", None);
    let repo_page = "/projects/TP/repos/test/settings";
    // A receiver on loopback that answers 202.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            use std::io::{Read as _, Write as _};
            let mut buf = [0u8; 65536];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 4\r\nConnection: close\r\n\r\nseen");
        }
    });
    let add = format!("action=webhook-create&name=ci&url=http%3A%2F%2F127.0.0.1%3A{port}%2Fhook&event%3Arepo%3Arefs_changed=1&active=1&ssl_verify=1&secret=s");
    // Loopback is refused until an administrator allows it on the server settings page.
    let r = f.post_as("owner", repo_page, &add).await;
    assert!(r.status == StatusCode::BAD_REQUEST && r.body.contains("loopback") && r.body.contains("webhook-allow"), "{}", r.body);
    assert_eq!(f.post_as("owner", "/admin/server-settings", "action=webhook-networks&allow=127.0.0.0%2F8&deny=").await.status, StatusCode::FORBIDDEN);
    let r = f.post_as("admin", "/admin/server-settings", "action=webhook-networks&allow=nonsense&deny=").await;
    assert!(r.status == StatusCode::BAD_REQUEST && r.body.contains("CIDR"), "{}", r.body);
    let r = f.post_as("admin", "/admin/server-settings", "action=webhook-networks&allow=127.0.0.0%2F8&deny=10.9.0.0%2F16").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let settings = f.get_as(Some("admin"), "/admin/server-settings").await;
    assert!(settings.body.contains("127.0.0.0/8") && settings.body.contains("10.9.0.0/16"), "{}", settings.body);
    let r = f.post_as("owner", repo_page, &add).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/projects/TP/repos/test/settings?done=webhook-created#webhooks"));
    let r = f.post_as("owner", repo_page, "action=webhook-create&name=ci&url=http%3A%2F%2F127.0.0.1%2F&active=1").await;
    assert!(r.status == StatusCode::BAD_REQUEST && r.body.contains("at least one event"), "{}", r.body);
    let page = f.get_as(Some("owner"), repo_page).await;
    assert!(page.body.contains("id=\"webhook-list\"") && page.body.contains(&format!("http://127.0.0.1:{port}/hook")), "{}", page.body);
    assert!(page.body.contains("none yet"), "{}", page.body);
    let s = f.server.store();
    let repo = s.repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("test").unwrap()).unwrap().unwrap();
    let hook = s.webhooks(repo.project_id, Some(repo.id)).unwrap().remove(0);
    assert_eq!((hook.hook.events.clone(), hook.hook.secret.as_deref()), (vec!["repo:refs_changed".to_string()], Some("s")));
    // The test button sends a ping now and shows the answer.
    let r = f.post_as("owner", repo_page, &format!("action=webhook-test&id={}", hook.id)).await;
    assert!(r.status == StatusCode::OK && r.body.contains("Test of ci: SUCCESS") && r.body.contains("HTTP 202: seen"), "{}", r.body);
    // Edit: renamed, inactive, the secret kept (an empty field keeps it).
    let edit = format!("action=webhook-update&id={}&name=renamed&url=http%3A%2F%2F127.0.0.1%3A{port}%2Fhook&event%3Apr%3Aopened=1&secret=", hook.id);
    assert_eq!(f.post_as("owner", repo_page, &edit).await.status, StatusCode::SEE_OTHER);
    let edited = s.webhook(hook.id).unwrap().unwrap();
    assert_eq!((edited.hook.name.as_str(), edited.hook.active, edited.hook.secret.as_deref()), ("renamed", false, Some("s")));
    assert_eq!(edited.hook.events, ["pr:opened"]);
    // Only an administrator of this scope deletes it.
    assert_eq!(f.post_as("owner", "/projects/TP/settings", &format!("action=webhook-delete&id={}", hook.id)).await.status, StatusCode::NOT_FOUND);
    assert_eq!(f.post_as("reader", repo_page, &format!("action=webhook-delete&id={}", hook.id)).await.status, StatusCode::FORBIDDEN);
    let r = f.post_as("owner", repo_page, &format!("action=webhook-delete&id={}", hook.id)).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/projects/TP/repos/test/settings?done=webhook-deleted#webhooks"));
    assert!(s.webhook(hook.id).unwrap().is_none());
    // The project's page has its own section.
    assert!(f.get_as(Some("owner"), "/projects/TP/settings").await.body.contains("id=\"add-webhook\""));
}

#[tokio::test]
async fn required_builds_are_added_and_deleted_on_the_repository_settings_page_with_errors_said() {
    let f = fixture("", None);
    let repo_page = "/projects/TP/repos/test/settings";
    let s = f.server.store();
    let repo = s.repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("test").unwrap()).unwrap().unwrap();
    let page = f.get_as(Some("owner"), repo_page).await;
    assert!(page.body.contains("id=\"required-build-add\"") && page.body.contains("No build is required."), "{}", page.body);
    // Bad input is said and changes nothing.
    for (form, says) in [
        ("action=required-build-add&keys=+&matcher_type=ANY_REF&matcher=&exempt_type=", "at least one build key"),
        ("action=required-build-add&keys=ci&matcher_type=BRANCH&matcher=&exempt_type=", "name the branch"),
        ("action=required-build-add&keys=ci&matcher_type=NOPE&matcher=x&exempt_type=", "not a matcher type"),
        ("action=required-build-add&keys=ci&matcher_type=ANY_REF&matcher=&exempt_type=PATTERN&exempt=", "exemption"),
    ] {
        let r = f.post_as("owner", repo_page, form).await;
        assert!(r.status == StatusCode::BAD_REQUEST && r.body.contains(says), "{form}: {}", r.body);
    }
    assert!(s.required_builds(repo.id).unwrap().is_empty());
    // A reader may not.
    let add = "action=required-build-add&keys=ci%2Fbuild%2C+lint&matcher_type=BRANCH&matcher=main&exempt_type=PATTERN&exempt=release%2F*";
    assert_eq!(f.post_as("reader", repo_page, add).await.status, StatusCode::FORBIDDEN);
    let r = f.post_as("owner", repo_page, add).await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/projects/TP/repos/test/settings?done=saved#required-builds"));
    let all = s.required_builds(repo.id).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].condition.build_parent_keys, ["ci/build", "lint"]);
    assert_eq!((all[0].condition.ref_matcher.id(), all[0].condition.exempt_ref_matcher.as_ref().map(|m| m.id())), ("refs/heads/main", Some("release/*")));
    let page = f.get_as(Some("owner"), repo_page).await;
    assert!(page.body.contains("<code>ci/build</code>") && page.body.contains(&format!("data-condition=\"{}\"", all[0].id)), "{}", page.body);
    // The audit log has it, as a change of the pull-request settings.
    let audit = f.get_as(Some("admin"), "/admin/audit?action=pull-request-settings.update").await;
    assert!(audit.body.contains("requiredBuild"), "{}", audit.body);
    // Deleted only from its own repository's page.
    let del = format!("action=required-build-delete&id={}", all[0].id);
    assert_eq!(f.post_as("owner", "/projects/TP/settings", &del).await.status, StatusCode::BAD_REQUEST);
    let r = f.post_as("owner", repo_page, &del).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(s.required_builds(repo.id).unwrap().is_empty());
    assert_eq!(f.post_as("owner", repo_page, &del).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn commit_comments_are_made_replied_edited_and_deleted_on_the_commit_page() {
    let f = fixture("", None);
    let tip = push_locally(&f);
    let page_path = format!("/projects/TP/repos/test/commits/{tip}");
    let s = f.server.store();
    let repo = s.repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("test").unwrap()).unwrap().unwrap();
    let page = f.get_as(Some("reader"), &page_path).await;
    assert!(page.body.contains("No comments on this commit.") && page.body.contains("id=\"comment-form\""), "{}", page.body);
    // A reader comments; Markdown is rendered and HTML escaped.
    let r = f.post_as("reader", &page_path, "action=comment&text=Why+**this**%3F+%3Cscript%3E").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let all = s.commit_comments(repo.id, &tip).unwrap();
    assert_eq!(all.len(), 1);
    let root = all[0].id;
    assert_eq!(r.location(), format!("{page_path}#comment-{root}"));
    let page = f.get_as(Some("reader"), &page_path).await;
    assert!(
        page.body.contains("<strong>this</strong>") && !page.body.contains("<script>") && page.body.contains(&format!("id=\"comment-{root}\"")),
        "{}",
        page.body
    );
    // The owner replies; the root cannot go while the reply stands.
    assert_eq!(f.post_as("owner", &page_path, &format!("action=comment&parent={root}&text=Because")).await.status, StatusCode::SEE_OTHER);
    let reply = s.commit_comments(repo.id, &tip).unwrap()[1].clone();
    assert_eq!(reply.parent_id, Some(root));
    let r = f.post_as("reader", &page_path, &format!("action=comment-delete&comment={root}&version=0")).await;
    assert!(r.status == StatusCode::CONFLICT && r.body.contains("has replies"), "{}", r.body);
    // Only the author edits; a stale version is said.
    assert_eq!(f.post_as("reader", &page_path, &format!("action=comment-edit&comment={}&version=0&text=x", reply.id)).await.status, StatusCode::FORBIDDEN);
    let r = f.post_as("owner", &page_path, &format!("action=comment-edit&comment={}&version=7&text=x", reply.id)).await;
    assert!(r.status == StatusCode::CONFLICT && r.body.contains("out-of-date"), "{}", r.body);
    assert_eq!(
        f.post_as("owner", &page_path, &format!("action=comment-edit&comment={}&version=0&text=Because+it+is", reply.id)).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(s.commit_comment(reply.id).unwrap().unwrap().text, "Because it is");
    // Empty text is refused with the reason; nothing is made.
    let r = f.post_as("reader", &page_path, "action=comment&text=+++").await;
    assert!(r.status == StatusCode::BAD_REQUEST && r.body.contains("needs some text"), "{}", r.body);
    // The owner (a repository administrator) deletes the reader's comment once the reply is gone.
    assert_eq!(f.post_as("owner", &page_path, &format!("action=comment-delete&comment={}&version=1", reply.id)).await.status, StatusCode::SEE_OTHER);
    assert_eq!(f.post_as("owner", &page_path, &format!("action=comment-delete&comment={root}&version=0")).await.status, StatusCode::SEE_OTHER);
    assert!(s.commit_comments(repo.id, &tip).unwrap().is_empty());
}

#[tokio::test]
async fn error_pages_show_the_signed_in_user_as_every_other_page_does() {
    let f = fixture("/stash", None);
    let (admin, _) = f.session("admin");
    let (reader, reader_csrf) = f.session("reader");
    // A page that does not exist (a route's 404, and the fallback's), a page one may not see
    // (403), and an expired form (403).
    for (cookie, path, form, status) in [
        (&reader, "/projects/NOPE", None, StatusCode::NOT_FOUND),
        (&reader, "/no/such/page", None, StatusCode::NOT_FOUND),
        (&reader, "/projects/TP/repos/test/settings", None, StatusCode::FORBIDDEN),
        (&reader, "/account", Some("action=name&csrf=stale"), StatusCode::FORBIDDEN),
    ] {
        let r = f.send(if form.is_some() { "POST" } else { "GET" }, path, Some(cookie.as_str()), form).await;
        assert_eq!(r.status, status, "{path}");
        assert!(r.body.contains(">reader<") && r.body.contains("Log out") && !r.body.contains(">Log in<"), "{path}: {}", r.body);
        assert!(r.body.contains(&format!("value=\"{reader_csrf}\"")), "{path}: Log out carries the session's token");
        assert!(!r.body.contains("/stash/admin\""), "{path}: no Administration for a reader");
    }
    let r = f.send("GET", "/no/such/page", Some(admin.as_str()), None).await;
    assert!(r.status == StatusCode::NOT_FOUND && r.body.contains("href=\"/stash/admin\""), "{}", r.body);
    // Anonymous, or with a session that has ended: Log in.
    for cookie in [None, Some(format!("{}=gone", super::SESSION_COOKIE))] {
        let r = f.send("GET", "/no/such/page", cookie.as_deref(), None).await;
        assert!(r.status == StatusCode::NOT_FOUND && r.body.contains(">Log in<") && !r.body.contains("Log out"), "{}", r.body);
    }
}

#[tokio::test]
async fn the_commit_page_shows_non_ascii_names_as_they_are_and_binary_files_as_binary() {
    let f = fixture("", None);
    push_locally(&f);
    let work = clone_test(&f);
    let git = |args: &[&str]| work_git(work.path(), args);
    std::fs::write(work.path().join("n\u{f6}tes.md"), "caf\u{e9}\n").unwrap();
    std::fs::write(work.path().join("logo.bin"), [0u8, 159, 146, 150, 0, 1, 2, 255]).unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "notes and a logo"]);
    git(&["push", "-q", "origin", "main"]);
    let tip = git(&["rev-parse", "HEAD"]);
    let page = f.get_as(Some("reader"), &format!("/projects/TP/repos/test/commits/{tip}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("n\u{f6}tes.md") && !page.body.contains("\\303"), "{}", page.body);
    let logo = page.body.find("logo.bin").expect("the binary file is listed");
    assert!(page.body[logo..].contains("binary"), "{}", &page.body[logo..]);
    assert!(!page.body[logo..page.body[logo..].find("</div>").map_or(page.body.len(), |e| logo + e)].contains("+0"), "no +0 for a binary file");
}

#[tokio::test]
async fn the_fork_page_forks_into_a_chosen_project_and_the_fork_says_where_it_came_from() {
    let f = fixture("", None);
    let tip = push_locally(&f);
    // The form offers the caller's personal project first, then projects they administer.
    let r = f.get_as(Some("owner"), "/projects/TP/repos/test/fork").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mine = r.body.find("<option value=\"~owner\"").expect("the personal project is offered");
    let tp = r.body.find("<option value=\"TP\"").expect("an administered project is offered");
    assert!(mine < tp && !r.body.contains("value=\"PUB\""), "{}", r.body);
    // Every repository page links to it, for a logged-in caller only.
    assert!(f.get_as(Some("reader"), "/projects/TP/repos/test/browse").await.body.contains("id=\"nav-fork\""));
    assert!(!f.get_as(None, "/projects/PUB/repos/open/browse").await.body.contains("nav-fork"));
    assert_eq!(f.get_as(None, "/projects/PUB/repos/open/fork").await.status, StatusCode::FOUND, "anonymous: log in first");

    let r = f.post_as("owner", "/projects/TP/repos/test/fork", "project=%7Eowner&name=My+Fork").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/projects/~owner/repos/my-fork/browse"), "{}", r.body);
    let fork = f.server.store().repo(&Owner::parse("~owner").unwrap(), &RepoSlug::parse("my-fork").unwrap()).unwrap().unwrap();
    assert_eq!(fork.name, "My Fork");
    let page = f.get_as(Some("owner"), "/projects/~owner/repos/my-fork/browse").await;
    assert!(page.body.contains("id=\"forked-from\"") && page.body.contains("href=\"/projects/TP/repos/test/browse\""), "{}", page.body);
    assert!(page.body.contains("README.md"), "the fork has the origin's files");
    let git = |dir: &std::path::Path, rev: &str| {
        let o = std::process::Command::new("git").arg("--git-dir").arg(dir).args(["rev-parse", rev]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    assert_eq!(git(&f.server.store().repo_path(&fork), "main"), tip);
    // The origin is not "forked from" anything.
    assert!(!f.get_as(Some("owner"), "/projects/TP/repos/test/browse").await.body.contains("forked-from"));

    // The same name again, a project the caller may not create in, and a disabled origin.
    assert_eq!(f.post_as("owner", "/projects/TP/repos/test/fork", "project=%7Eowner&name=My+Fork").await.status, StatusCode::CONFLICT);
    assert_eq!(f.post_as("reader", "/projects/TP/repos/test/fork", "project=TP&name=Other").await.status, StatusCode::FORBIDDEN);
    assert_eq!(f.post_as("outsider", "/projects/TP/repos/test/fork", "project=%7Eoutsider&name=x").await.status, StatusCode::NOT_FOUND);
    let test = f.server.store().repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("test").unwrap()).unwrap().unwrap();
    f.server.store().update_repo(&test, &trove_store::RepoUpdate { forkable: Some(false), ..Default::default() }).unwrap();
    assert!(f.get_as(Some("owner"), "/projects/TP/repos/test/fork").await.body.contains("id=\"fork-disabled\""));
    assert_eq!(f.post_as("owner", "/projects/TP/repos/test/fork", "project=%7Eowner&name=Again").await.status, StatusCode::BAD_REQUEST);
    assert!(f.server.store().repo(&Owner::parse("~owner").unwrap(), &RepoSlug::parse("again").unwrap()).unwrap().is_none());
}

#[tokio::test]
async fn readme_links_and_images_resolve_against_the_readmes_folder_and_images_are_served_as_images() {
    let f = fixture("", None);
    push_locally(&f);
    let work = clone_test(&f);
    let git = |args: &[&str]| work_git(work.path(), args);
    std::fs::create_dir_all(work.path().join("docs/img")).unwrap();
    std::fs::write(work.path().join("README.md"), "# Top\n\n[Guide](docs/guide.md) ![Logo](docs/img/logo.png)\n").unwrap();
    std::fs::write(work.path().join("docs/README.md"), "# Docs\n\n[Guide](guide.md#install) [Home](../README.md) ![Logo](img/logo.png)\n").unwrap();
    std::fs::write(work.path().join("docs/guide.md"), "guide\n").unwrap();
    std::fs::write(work.path().join("docs/img/logo.png"), b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap();
    std::fs::write(work.path().join("docs/img/icon.svg"), "<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "docs"]);
    git(&["push", "-q", "origin", "main"]);
    let base = "/projects/TP/repos/test";
    let root = f.get_as(Some("reader"), &format!("{base}/browse")).await;
    assert!(root.body.contains("<title>test - Trove</title>"), "no empty segment in the title");
    assert!(root.body.contains(&format!("href=\"{base}/browse/docs/guide.md?at=refs/heads/main\"")), "{}", root.body);
    assert!(root.body.contains(&format!("src=\"{base}/raw/docs/img/logo.png?at=refs/heads/main\"")), "{}", root.body);
    let docs = f.get_as(Some("reader"), &format!("{base}/browse/docs")).await;
    assert!(docs.body.contains("<title>docs - test - Trove</title>"), "the folder, then the repository");
    for want in [
        format!("href=\"{base}/browse/docs/guide.md?at=refs/heads/main#install\""),
        format!("href=\"{base}/browse/README.md?at=refs/heads/main\""),
        format!("src=\"{base}/raw/docs/img/logo.png?at=refs/heads/main\""),
    ] {
        assert!(docs.body.contains(&want), "{want} missing: {}", docs.body);
    }
    // Every link the two READMEs make answers.
    for path in ["/browse/docs/guide.md?at=refs/heads/main", "/browse/README.md?at=refs/heads/main", "/raw/docs/img/logo.png?at=refs/heads/main"] {
        assert_eq!(f.get_as(Some("reader"), &format!("{base}{path}")).await.status, StatusCode::OK, "{path}");
    }
    let png = f.get_as(Some("reader"), &format!("{base}/raw/docs/img/logo.png?at=refs/heads/main")).await;
    assert_eq!(png.headers.get(header::CONTENT_TYPE).unwrap(), "image/png");
    let svg = f.get_as(Some("reader"), &format!("{base}/raw/docs/img/icon.svg?at=refs/heads/main")).await;
    assert_eq!(svg.headers.get(header::CONTENT_TYPE).unwrap(), "image/svg+xml");
    assert!(svg.headers.get(header::CONTENT_SECURITY_POLICY).unwrap().to_str().unwrap().starts_with("sandbox"), "an SVG's script never runs");
    assert_eq!(svg.headers.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff");
}

#[tokio::test]
async fn the_repository_settings_page_renames_describes_and_sets_the_default_branch() {
    let f = fixture("", None);
    let tip = push_locally(&f);
    let s = f.server.store();
    let repo = s.repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("test").unwrap()).unwrap().unwrap();
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git").arg("--git-dir").arg(s.repo_path(&repo)).args(args).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    git(&["branch", "develop", &tip]);
    let page = f.get_as(Some("owner"), "/projects/TP/repos/test/settings").await;
    assert!(page.body.contains("id=\"repo-details\"") && page.body.contains("<option value=\"develop\">"), "{}", page.body);
    // Bad input is said, nothing changes.
    for (form, says) in [
        ("action=details&name=+&description=&default_branch=main", "must not be empty"),
        ("action=details&name=test&description=&default_branch=bad..name", "not a valid branch name"),
    ] {
        let r = f.post_as("owner", "/projects/TP/repos/test/settings", form).await;
        assert!(r.status == StatusCode::BAD_REQUEST && r.body.contains(says), "{form}: {}", r.body);
    }
    s.create_repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("taken").unwrap(), false).unwrap();
    let r = f.post_as("owner", "/projects/TP/repos/test/settings", "action=details&name=Taken&description=&default_branch=main").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(git(&["symbolic-ref", "HEAD"]), "refs/heads/main");
    assert_eq!(
        f.post_as("reader", "/projects/TP/repos/test/settings", "action=details&name=x&description=&default_branch=main").await.status,
        StatusCode::FORBIDDEN
    );
    // Rename, describe, and make develop the default, in one save.
    let r = f.post_as("owner", "/projects/TP/repos/test/settings", "action=details&name=Shiny+Tool&description=Builds+things&default_branch=develop").await;
    assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/projects/TP/repos/shiny-tool/settings?done=saved#details"), "{}", r.body);
    let renamed = s.repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("shiny-tool").unwrap()).unwrap().unwrap();
    assert_eq!((renamed.id, renamed.name.as_str()), (repo.id, "Shiny Tool"));
    assert_eq!(s.repo_description(&renamed).unwrap().as_deref(), Some("Builds things"));
    assert_eq!(git(&["symbolic-ref", "HEAD"]), "refs/heads/develop");
    // The old URL redirects to the new one.
    let old = f.get_as(Some("reader"), "/projects/TP/repos/test/browse").await;
    assert!(old.status.is_redirection() && old.location().contains("/projects/TP/repos/shiny-tool"), "{:?} {}", old.status, old.location());
    // The audit log has the change.
    let audit = f.get_as(Some("admin"), "/admin/audit?action=repo.update").await;
    assert!(audit.body.contains("shiny-tool") && audit.body.contains("defaultBranch"), "{}", audit.body);
}
