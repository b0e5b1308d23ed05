//! The access matrix: one table of (caller, repository, permission needed) → answer, and every
//! surface that asks the access service (git smart HTTP, REST, web pages) rendering it against a
//! real server, so a surface that answers differently fails with the cell named.

use trove_store::{GlobalPermission, Owner, Password, Permission, ProjectKey, RepoSlug};

use super::support::{TestServer, basic, password, user};

/// What a caller is told: the access service's four answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Served (200).
    Allowed,
    /// Asked to log in: 401 from git and REST, a redirect to the login page from the web.
    Anonymous,
    /// 404: does not exist, or the caller may not read it.
    Hidden,
    /// 403: the caller may read it but not do this.
    Forbidden,
}

/// `A`llowed, `U`nauthenticated (log in), `H`idden, `F`orbidden.
fn answer(c: char) -> Answer {
    match c {
        'A' => Answer::Allowed,
        'U' => Answer::Anonymous,
        'H' => Answer::Hidden,
        'F' => Answer::Forbidden,
        other => panic!("unknown answer {other:?} in the table"),
    }
}

/// The repositories of the matrix, as `owner/slug`.
const PRIVATE: &str = "TP/test";
const PUBLIC_PROJECT: &str = "PUB/open";
const PUBLIC_REPO: &str = "TP/shown";
const PERSONAL: &str = "~owner/mine";
const PERSONAL_PUBLIC: &str = "~owner/shared";
const MISSING: &str = "TP/missing";
const MALFORMED: &str = "TP/-test";

/// Callers: fixture users with their passwords (and, on the web, a session), and tokens (no
/// web: pages take sessions only).
const CALLERS: &[&str] = &[
    "anonymous",
    "outsider",
    "reader",
    "writer",
    "padmin",
    "admin",
    "owner",
    "reader token (read)",
    "writer token (write)",
    "admin token (read)",
    "owner token (write)",
];

/// Per caller and repository, the answer when the request needs read, write and admin.
/// Fixture: `reader`/`writer` hold read/write on project TP, `writer` write on PUB, `padmin`
/// admin on TP, `admin` is SYS_ADMIN, `owner` owns the personal repositories; TP is private
/// with one public repository (`shown`), PUB is a public project.
#[rustfmt::skip]
const TABLE: &[(&str, &str, &str)] = &[
    ("anonymous", PRIVATE, "UUU"), ("anonymous", PUBLIC_PROJECT, "AUU"), ("anonymous", PUBLIC_REPO, "AUU"),
    ("anonymous", PERSONAL, "UUU"), ("anonymous", PERSONAL_PUBLIC, "AUU"), ("anonymous", MISSING, "UUU"), ("anonymous", MALFORMED, "UUU"),

    ("outsider", PRIVATE, "HHH"), ("outsider", PUBLIC_PROJECT, "AFF"), ("outsider", PUBLIC_REPO, "AFF"),
    ("outsider", PERSONAL, "HHH"), ("outsider", PERSONAL_PUBLIC, "AFF"), ("outsider", MISSING, "HHH"), ("outsider", MALFORMED, "HHH"),

    ("reader", PRIVATE, "AFF"), ("reader", PUBLIC_PROJECT, "AFF"), ("reader", PUBLIC_REPO, "AFF"),
    ("reader", PERSONAL, "HHH"), ("reader", PERSONAL_PUBLIC, "AFF"), ("reader", MISSING, "HHH"), ("reader", MALFORMED, "HHH"),

    ("writer", PRIVATE, "AAF"), ("writer", PUBLIC_PROJECT, "AAF"), ("writer", PUBLIC_REPO, "AAF"),
    ("writer", PERSONAL, "HHH"), ("writer", PERSONAL_PUBLIC, "AFF"), ("writer", MISSING, "HHH"), ("writer", MALFORMED, "HHH"),

    ("padmin", PRIVATE, "AAA"), ("padmin", PUBLIC_PROJECT, "AFF"), ("padmin", PUBLIC_REPO, "AAA"),
    ("padmin", PERSONAL, "HHH"), ("padmin", PERSONAL_PUBLIC, "AFF"), ("padmin", MISSING, "HHH"), ("padmin", MALFORMED, "HHH"),

    ("admin", PRIVATE, "AAA"), ("admin", PUBLIC_PROJECT, "AAA"), ("admin", PUBLIC_REPO, "AAA"),
    ("admin", PERSONAL, "AAA"), ("admin", PERSONAL_PUBLIC, "AAA"), ("admin", MISSING, "HHH"), ("admin", MALFORMED, "HHH"),

    ("owner", PRIVATE, "HHH"), ("owner", PUBLIC_PROJECT, "AFF"), ("owner", PUBLIC_REPO, "AFF"),
    ("owner", PERSONAL, "AAA"), ("owner", PERSONAL_PUBLIC, "AAA"), ("owner", MISSING, "HHH"), ("owner", MALFORMED, "HHH"),

    ("reader token (read)", PRIVATE, "AFF"), ("reader token (read)", PUBLIC_PROJECT, "AFF"), ("reader token (read)", PUBLIC_REPO, "AFF"),
    ("reader token (read)", PERSONAL, "HHH"), ("reader token (read)", PERSONAL_PUBLIC, "AFF"), ("reader token (read)", MISSING, "HHH"),
    ("reader token (read)", MALFORMED, "HHH"),

    ("writer token (write)", PRIVATE, "AAF"), ("writer token (write)", PUBLIC_PROJECT, "AAF"), ("writer token (write)", PUBLIC_REPO, "AAF"),
    ("writer token (write)", PERSONAL, "HHH"), ("writer token (write)", PERSONAL_PUBLIC, "AFF"), ("writer token (write)", MISSING, "HHH"),
    ("writer token (write)", MALFORMED, "HHH"),

    // A token's scope caps the SYS_ADMIN's permission, not what they may see.
    ("admin token (read)", PRIVATE, "AFF"), ("admin token (read)", PUBLIC_PROJECT, "AFF"), ("admin token (read)", PUBLIC_REPO, "AFF"),
    ("admin token (read)", PERSONAL, "AFF"), ("admin token (read)", PERSONAL_PUBLIC, "AFF"), ("admin token (read)", MISSING, "HHH"),
    ("admin token (read)", MALFORMED, "HHH"),

    ("owner token (write)", PRIVATE, "HHH"), ("owner token (write)", PUBLIC_PROJECT, "AFF"), ("owner token (write)", PUBLIC_REPO, "AFF"),
    ("owner token (write)", PERSONAL, "AAF"), ("owner token (write)", PERSONAL_PUBLIC, "AAF"), ("owner token (write)", MISSING, "HHH"),
    ("owner token (write)", MALFORMED, "HHH"),
];

/// Every request that asks the access service about one repository, with the permission it
/// needs (0 read, 1 write, 2 admin).
#[derive(Debug, Clone, Copy)]
enum Surface {
    GitFetch,
    GitPush,
    RestGet,
    RestPut,
    RestPermissions,
    RestForks,
    RestRelated,
    WebBrowse,
    WebSettings,
}

const SURFACES: &[Surface] = &[
    Surface::GitFetch,
    Surface::GitPush,
    Surface::RestGet,
    Surface::RestPut,
    Surface::RestPermissions,
    Surface::RestForks,
    Surface::RestRelated,
    Surface::WebBrowse,
    Surface::WebSettings,
];

impl Surface {
    fn need(self) -> usize {
        match self {
            Surface::GitFetch | Surface::RestGet | Surface::RestForks | Surface::RestRelated | Surface::WebBrowse => 0,
            Surface::GitPush => 1,
            Surface::RestPut | Surface::RestPermissions | Surface::WebSettings => 2,
        }
    }

    fn is_web(self) -> bool {
        matches!(self, Surface::WebBrowse | Surface::WebSettings)
    }

    /// `(method, path, body)` for the repository `owner/slug`.
    fn request(self, repo: &str) -> (&'static str, String, &'static [u8]) {
        let (owner, slug) = repo.split_once('/').unwrap();
        match self {
            Surface::GitFetch => ("GET", format!("/scm/{owner}/{slug}.git/info/refs?service=git-upload-pack"), b""),
            Surface::GitPush => ("GET", format!("/scm/{owner}/{slug}.git/info/refs?service=git-receive-pack"), b""),
            Surface::RestGet => ("GET", format!("/rest/api/1.0/projects/{owner}/repos/{slug}"), b""),
            Surface::RestPut => ("PUT", format!("/rest/api/1.0/projects/{owner}/repos/{slug}"), b"{}"),
            Surface::RestPermissions => ("GET", format!("/rest/api/1.0/projects/{owner}/repos/{slug}/permissions/users"), b""),
            Surface::RestForks => ("GET", format!("/rest/api/1.0/projects/{owner}/repos/{slug}/forks"), b""),
            Surface::RestRelated => ("GET", format!("/rest/api/1.0/projects/{owner}/repos/{slug}/related"), b""),
            Surface::WebBrowse => ("GET", format!("/projects/{owner}/repos/{slug}/browse"), b""),
            Surface::WebSettings => ("GET", format!("/projects/{owner}/repos/{slug}/settings"), b""),
        }
    }
}

/// How one caller authenticates: an `Authorization` header for git and REST, a session cookie
/// for the web (`None`: the caller has no web form, as tokens do not).
struct Credentials {
    header: Option<String>,
    cookie: Option<String>,
    web: bool,
}

fn fixture() -> (TestServer, Vec<(&'static str, Credentials)>) {
    let t = TestServer::start();
    let store = t.server.store();
    for name in ["padmin", "owner"] {
        store.create_user(&user(name), &Password::new(&password(name)).unwrap(), GlobalPermission::LicensedUser).unwrap();
    }
    let tp = ProjectKey::parse("TP").unwrap();
    store.grant_project(&user("padmin"), &tp, Permission::Admin).unwrap();
    store.create_repo(&Owner::Project(tp), &RepoSlug::parse("shown").unwrap(), true).unwrap();
    let personal = Owner::User(user("owner"));
    store.create_repo(&personal, &RepoSlug::parse("mine").unwrap(), false).unwrap();
    store.create_repo(&personal, &RepoSlug::parse("shared").unwrap(), true).unwrap();
    // Projects for the project matrix: PRIV (private, no public repository; `reader` holds read
    // on one of its repositories only, `padmin` administers it), DEF (every licensed user is
    // its admin by default), and `padmin`'s personal project with a private repository.
    let private = ProjectKey::parse("PRIV").unwrap();
    store.create_project(&private, None, false).unwrap();
    store.create_repo(&Owner::Project(private.clone()), &RepoSlug::parse("hidden").unwrap(), false).unwrap();
    store.grant_repo(&user("reader"), &Owner::Project(private.clone()), &RepoSlug::parse("hidden").unwrap(), Permission::Read).unwrap();
    store.grant_project(&user("padmin"), &private, Permission::Admin).unwrap();
    let by_default = ProjectKey::parse("DEF").unwrap();
    store.create_project(&by_default, None, false).unwrap();
    store.set_project_default_permission(&by_default, Some(Permission::Admin)).unwrap();
    store.create_repo(&Owner::User(user("padmin")), &RepoSlug::parse("notes").unwrap(), false).unwrap();
    let admin_token = store.create_token(&user("admin"), "ro", Permission::Read).unwrap().secret;
    let owner_token = store.create_token(&user("owner"), "ci", Permission::Write).unwrap().secret;

    let mut callers = Vec::new();
    for &name in CALLERS {
        let creds = match name {
            "anonymous" => Credentials { header: None, cookie: None, web: true },
            "reader token (read)" => Credentials { header: Some(basic("reader", &t.reader_token)), cookie: None, web: false },
            "writer token (write)" => Credentials { header: Some(basic("writer", &t.writer_token)), cookie: None, web: false },
            "admin token (read)" => Credentials { header: Some(basic("admin", &admin_token)), cookie: None, web: false },
            "owner token (write)" => Credentials { header: Some(basic("owner", &owner_token)), cookie: None, web: false },
            user_name => {
                let id = store.user(&user(user_name)).unwrap().unwrap().id;
                let (session, _csrf) = store.create_session(id, 3600).unwrap();
                Credentials { header: Some(basic(user_name, &password(user_name))), cookie: Some(format!("trove_session={session}")), web: true }
            }
        };
        callers.push((name, creds));
    }
    (t, callers)
}

/// What a surface answered, from the response (`web`: a page, which sends anonymous callers
/// to log in rather than answering 401).
fn observed(web: bool, status: u16, location: Option<&str>) -> Option<Answer> {
    match status {
        200 => Some(Answer::Allowed),
        401 if !web => Some(Answer::Anonymous),
        302 | 303 if web && location.is_some_and(|l| l.contains("/login?next=")) => Some(Answer::Anonymous),
        404 => Some(Answer::Hidden),
        403 => Some(Answer::Forbidden),
        _ => None,
    }
}

#[test]
fn every_surface_gives_every_caller_the_access_services_answer() {
    let (t, callers) = fixture();
    let repos = [PRIVATE, PUBLIC_PROJECT, PUBLIC_REPO, PERSONAL, PERSONAL_PUBLIC, MISSING, MALFORMED];
    // The table covers every caller and repository once.
    for (caller, _) in &callers {
        for repo in repos {
            let rows = TABLE.iter().filter(|(c, r, _)| c == caller && *r == repo).count();
            assert_eq!(rows, 1, "the table needs exactly one row for ({caller}, {repo})");
        }
    }
    let mut wrong = Vec::new();
    let mut checked = 0;
    for &(caller, repo, answers) in TABLE {
        let creds = &callers.iter().find(|(c, _)| *c == caller).unwrap_or_else(|| panic!("no caller {caller:?}")).1;
        let answers: Vec<Answer> = answers.chars().map(answer).collect();
        for &surface in SURFACES {
            if surface.is_web() && !creds.web {
                continue;
            }
            let want = answers[surface.need()];
            let (method, path, body) = surface.request(repo);
            let mut headers: Vec<(&str, &str)> = Vec::new();
            let auth = if surface.is_web() { None } else { creds.header.as_deref() };
            if let Some(a) = auth {
                headers.push(("Authorization", a));
            }
            if let (true, Some(c)) = (surface.is_web(), creds.cookie.as_deref()) {
                headers.push(("Cookie", c));
            }
            if !body.is_empty() {
                headers.push(("Content-Type", "application/json"));
            }
            let r = t.http(method, &path, &headers, body);
            checked += 1;
            let got = observed(surface.is_web(), r.status, r.header("location"));
            if got != Some(want) {
                wrong.push(format!(
                    "({caller}, {repo}, need {}) via {surface:?} {method} {path}: want {want:?}, got {} {:?}",
                    ["read", "write", "admin"][surface.need()],
                    r.status,
                    r.text().chars().take(120).collect::<String>()
                ));
            }
        }
    }
    assert!(checked > 400, "only {checked} cells were checked");
    assert!(wrong.is_empty(), "{} of {checked} cells disagree with the table:\n{}", wrong.len(), wrong.join("\n"));
}

/// Per caller and project, the answer when the request needs to see the project and when it
/// needs admin on the project itself. Fixture as for repositories, and: PRIV is private with
/// no public repository, `reader` reads one of its repositories and `padmin` administers it;
/// TP has a public repository, so everyone sees it; DEF gives every licensed user admin by
/// default; `~owner` has a public repository, `~padmin` only a private one; `~nobody` is no user.
#[rustfmt::skip]
const PROJECT_TABLE: &[(&str, &str, &str)] = &[
    ("anonymous", "PRIV", "UU"), ("anonymous", "PUB", "AU"), ("anonymous", "TP", "AU"), ("anonymous", "DEF", "UU"),
    ("anonymous", "~owner", "AU"), ("anonymous", "~padmin", "UU"), ("anonymous", "MISSING", "UU"), ("anonymous", "~nobody", "UU"),

    ("outsider", "PRIV", "HH"), ("outsider", "PUB", "AF"), ("outsider", "TP", "AF"), ("outsider", "DEF", "AA"),
    ("outsider", "~owner", "AF"), ("outsider", "~padmin", "HH"), ("outsider", "MISSING", "HH"), ("outsider", "~nobody", "HH"),

    ("reader", "PRIV", "AF"), ("reader", "PUB", "AF"), ("reader", "TP", "AF"), ("reader", "DEF", "AA"),
    ("reader", "~owner", "AF"), ("reader", "~padmin", "HH"), ("reader", "MISSING", "HH"), ("reader", "~nobody", "HH"),

    ("writer", "PRIV", "HH"), ("writer", "PUB", "AF"), ("writer", "TP", "AF"), ("writer", "DEF", "AA"),
    ("writer", "~owner", "AF"), ("writer", "~padmin", "HH"), ("writer", "MISSING", "HH"), ("writer", "~nobody", "HH"),

    ("padmin", "PRIV", "AA"), ("padmin", "PUB", "AF"), ("padmin", "TP", "AA"), ("padmin", "DEF", "AA"),
    ("padmin", "~owner", "AF"), ("padmin", "~padmin", "AA"), ("padmin", "MISSING", "HH"), ("padmin", "~nobody", "HH"),

    ("admin", "PRIV", "AA"), ("admin", "PUB", "AA"), ("admin", "TP", "AA"), ("admin", "DEF", "AA"),
    ("admin", "~owner", "AA"), ("admin", "~padmin", "AA"), ("admin", "MISSING", "HH"), ("admin", "~nobody", "HH"),

    ("owner", "PRIV", "HH"), ("owner", "PUB", "AF"), ("owner", "TP", "AF"), ("owner", "DEF", "AA"),
    ("owner", "~owner", "AA"), ("owner", "~padmin", "HH"), ("owner", "MISSING", "HH"), ("owner", "~nobody", "HH"),

    ("reader token (read)", "PRIV", "AF"), ("reader token (read)", "PUB", "AF"), ("reader token (read)", "TP", "AF"),
    ("reader token (read)", "DEF", "AF"), ("reader token (read)", "~owner", "AF"), ("reader token (read)", "~padmin", "HH"),
    ("reader token (read)", "MISSING", "HH"), ("reader token (read)", "~nobody", "HH"),

    ("writer token (write)", "PRIV", "HH"), ("writer token (write)", "PUB", "AF"), ("writer token (write)", "TP", "AF"),
    ("writer token (write)", "DEF", "AF"), ("writer token (write)", "~owner", "AF"), ("writer token (write)", "~padmin", "HH"),
    ("writer token (write)", "MISSING", "HH"), ("writer token (write)", "~nobody", "HH"),

    // The SYS_ADMIN's read-scoped token sees every project, as it reads every repository.
    ("admin token (read)", "PRIV", "AF"), ("admin token (read)", "PUB", "AF"), ("admin token (read)", "TP", "AF"),
    ("admin token (read)", "DEF", "AF"), ("admin token (read)", "~owner", "AF"), ("admin token (read)", "~padmin", "AF"),
    ("admin token (read)", "MISSING", "HH"), ("admin token (read)", "~nobody", "HH"),

    ("owner token (write)", "PRIV", "HH"), ("owner token (write)", "PUB", "AF"), ("owner token (write)", "TP", "AF"),
    ("owner token (write)", "DEF", "AF"), ("owner token (write)", "~owner", "AF"), ("owner token (write)", "~padmin", "HH"),
    ("owner token (write)", "MISSING", "HH"), ("owner token (write)", "~nobody", "HH"),
];

/// Every request that asks the access service about one project, with what it needs (0: to
/// see the project, 1: admin on it).
#[derive(Debug, Clone, Copy)]
enum ProjectSurface {
    RestGet,
    RestPermissions,
    WebPage,
    WebSettings,
}

impl ProjectSurface {
    fn need(self) -> usize {
        match self {
            ProjectSurface::RestGet | ProjectSurface::WebPage => 0,
            ProjectSurface::RestPermissions | ProjectSurface::WebSettings => 1,
        }
    }

    fn is_web(self) -> bool {
        matches!(self, ProjectSurface::WebPage | ProjectSurface::WebSettings)
    }

    fn path(self, key: &str) -> String {
        match self {
            ProjectSurface::RestGet => format!("/rest/api/1.0/projects/{key}"),
            ProjectSurface::RestPermissions => format!("/rest/api/1.0/projects/{key}/permissions/users"),
            ProjectSurface::WebPage => format!("/projects/{key}"),
            ProjectSurface::WebSettings => format!("/projects/{key}/settings"),
        }
    }
}

#[test]
fn every_surface_gives_every_caller_the_access_services_answer_about_projects() {
    let (t, callers) = fixture();
    let keys = ["PRIV", "PUB", "TP", "DEF", "~owner", "~padmin", "MISSING", "~nobody"];
    for (caller, _) in &callers {
        for key in keys {
            let rows = PROJECT_TABLE.iter().filter(|(c, k, _)| c == caller && *k == key).count();
            assert_eq!(rows, 1, "the table needs exactly one row for ({caller}, {key})");
        }
    }
    let surfaces = [ProjectSurface::RestGet, ProjectSurface::RestPermissions, ProjectSurface::WebPage, ProjectSurface::WebSettings];
    let mut wrong = Vec::new();
    let mut checked = 0;
    for &(caller, key, answers) in PROJECT_TABLE {
        let creds = &callers.iter().find(|(c, _)| *c == caller).unwrap_or_else(|| panic!("no caller {caller:?}")).1;
        let answers: Vec<Answer> = answers.chars().map(answer).collect();
        for surface in surfaces {
            if surface.is_web() && !creds.web {
                continue;
            }
            // A user's personal page is also their profile, which every logged-in caller may
            // open (it lists only what they may read): not a decision about the project.
            if matches!(surface, ProjectSurface::WebPage) && key.starts_with('~') && caller != "anonymous" {
                continue;
            }
            let want = answers[surface.need()];
            let path = surface.path(key);
            let mut headers: Vec<(&str, &str)> = Vec::new();
            match (surface.is_web(), creds.header.as_deref(), creds.cookie.as_deref()) {
                (false, Some(a), _) => headers.push(("Authorization", a)),
                (true, _, Some(c)) => headers.push(("Cookie", c)),
                _ => {}
            }
            let r = t.http("GET", &path, &headers, b"");
            checked += 1;
            if observed(surface.is_web(), r.status, r.header("location")) != Some(want) {
                wrong.push(format!(
                    "({caller}, {key}, need {}) via {surface:?} GET {path}: want {want:?}, got {} {:?}",
                    ["to see it", "admin"][surface.need()],
                    r.status,
                    r.text().chars().take(120).collect::<String>()
                ));
            }
        }
    }
    // The lists agree with the answers: a project is listed exactly when the caller may see it
    // (personal projects are listed under their users, not here).
    for (caller, creds) in &callers {
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = creds.header.as_deref() {
            headers.push(("Authorization", a));
        }
        let listed = t.http("GET", "/rest/api/1.0/projects?limit=1000", &headers, b"").text();
        let page = creds.web.then(|| {
            let cookie: Vec<(&str, &str)> = creds.cookie.as_deref().map(|c| vec![("Cookie", c)]).unwrap_or_default();
            t.http("GET", "/projects", &cookie, b"").text()
        });
        for &(_, key, answers) in PROJECT_TABLE.iter().filter(|(c, k, _)| c == caller && !k.starts_with('~')) {
            let sees = answer(answers.chars().next().unwrap()) == Answer::Allowed;
            checked += 1;
            if listed.contains(&format!("\"key\":\"{key}\"")) != sees {
                wrong.push(format!("({caller}, {key}) in GET /rest/api/1.0/projects: want listed={sees}"));
            }
            if let Some(page) = &page
                && page.contains(&format!("href=\"/projects/{key}\"")) != sees
            {
                wrong.push(format!("({caller}, {key}) on the web's project list: want listed={sees}"));
            }
        }
    }
    assert!(checked > 250, "only {checked} cells were checked");
    assert!(wrong.is_empty(), "{} of {checked} cells disagree with the table:\n{}", wrong.len(), wrong.join("\n"));
}

#[test]
fn a_member_clones_and_pushes_through_a_groups_project_permission_until_removed_from_the_group() {
    let t = TestServer::start();
    t.seed("scm/TP/test.git", 2);
    let store = t.server.store();
    let devs = trove_store::GroupName::parse("devs").unwrap();
    store.insert_group(&devs).unwrap();
    store.grant_group_project(&devs, &ProjectKey::parse("TP").unwrap(), Permission::Write).unwrap();
    // `outsider` holds no grant of their own: not yet a member, nothing.
    let url = t.url_as("outsider", "scm/TP/test.git");
    let home = t.dir("outsider");
    let err = t.git_fails(&home, &["clone", "-q", &url, "before"]);
    assert!(err.contains("not found") || err.contains("404"), "{err}");

    store.add_group_member(&devs, &user("outsider")).unwrap();
    t.git_ok(&home, &["clone", "-q", &url, "work"]);
    let work = home.join("work");
    let tip = t.commit(&work, "group.txt", "pushed through the group\n");
    t.git_ok(&work, &["push", "-q", "origin", "main"]);
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main").as_deref(), Some(tip.as_str()));

    // Out of the group, out of the repository, from the very next request.
    store.remove_group_member(&devs, &user("outsider")).unwrap();
    t.commit(&work, "late.txt", "too late\n");
    let err = t.git_fails(&work, &["push", "-q", "origin", "main"]);
    assert!(err.contains("not found") || err.contains("404"), "{err}");
    let err = t.git_fails(&work, &["fetch", "-q", "origin"]);
    assert!(err.contains("not found") || err.contains("404"), "{err}");
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main").as_deref(), Some(tip.as_str()), "nothing more was pushed");
}
