//! The audit log against a real server: a scripted run of more than 200 administrative actions
//! (REST for most, the web pages for what REST does not offer: tokens, the base URL, sign-in),
//! failed and successful logins over REST, git and the web, and a push; the log read back through
//! REST, the database and `audit.log` must hold each, in order, nothing missing and nothing more.
//! Then the retention: the daily task prunes what is older.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use trove_store::{AuditEntry, AuditQuery, NewAuditEntry};

use crate::support::{RawResponse, TestServer, basic, password};

/// What the trusted proxy (the test, from 127.0.0.1) says the client was.
const CLIENT: &str = "203.0.113.7";

/// One expected entry; `many`: one or more in a row (git retries and sends several requests).
struct Want {
    actor: String,
    action: &'static str,
    target: String,
    many: bool,
}

struct Script<'a> {
    t: &'a TestServer,
    want: Vec<Want>,
    /// Users whose REST password login was written already: the same login again within the
    /// window writes no entry.
    logged_in: std::collections::HashSet<String>,
}

fn form_encode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

fn cookie(r: &RawResponse, name: &str) -> Option<String> {
    r.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie")).find_map(|(_, v)| {
        let first = v.split(';').next()?;
        let (k, val) = first.split_once('=')?;
        (k.trim() == name && !val.is_empty()).then(|| val.to_owned())
    })
}

impl Script<'_> {
    fn expect(&mut self, actor: &str, action: &'static str, target: impl Into<String>) {
        self.want.push(Want { actor: actor.into(), action, target: target.into(), many: false });
    }

    fn expect_many(&mut self, actor: &str, action: &'static str, target: impl Into<String>) {
        self.want.push(Want { actor: actor.into(), action, target: target.into(), many: true });
    }

    fn send(&self, method: &str, path: &str, auth: Option<String>, body: Option<Value>) -> (u16, Value) {
        let text = body.map(|b| b.to_string()).unwrap_or_default();
        let mut headers = vec![("X-Forwarded-For", CLIENT.to_owned())];
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        if !text.is_empty() {
            headers.push(("Content-Type", "application/json".into()));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = self.t.http(method, &format!("/rest/api/1.0{path}"), &headers, text.as_bytes());
        let v = if r.body.is_empty() { Value::Null } else { serde_json::from_slice(&r.body).unwrap_or(Value::Null) };
        (r.status, v)
    }

    /// One REST call as `who` (password login, so a `login.success` comes first the first time),
    /// then the entries it must write.
    fn rest(&mut self, method: &str, path: &str, who: &str, body: Option<Value>, status: u16, entries: &[(&'static str, String)]) -> Value {
        let (s, v) = self.send(method, path, Some(basic(who, &password(who))), body);
        assert_eq!(s, status, "{method} {path} as {who}: {v:#}");
        if self.logged_in.insert(who.to_owned()) {
            self.expect(who, "login.success", format!("user:{who}"));
        }
        for (action, target) in entries {
            self.expect(who, action, target.clone());
        }
        v
    }

    fn admin(&mut self, method: &str, path: &str, body: Option<Value>, status: u16, entries: &[(&'static str, String)]) -> Value {
        self.rest(method, path, "admin", body, status, entries)
    }

    fn web(&self, method: &str, path: &str, cookies: &str, form: Option<String>) -> RawResponse {
        let mut headers = vec![("X-Forwarded-For", CLIENT.to_owned()), ("Accept", "text/html".to_owned())];
        if !cookies.is_empty() {
            headers.push(("Cookie", cookies.to_owned()));
        }
        if form.is_some() {
            headers.push(("Content-Type", "application/x-www-form-urlencoded".into()));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.t.http(method, path, &headers, form.unwrap_or_default().as_bytes())
    }

    /// Signs in on the login page; the session cookie, or `None` when refused.
    fn web_login(&mut self, user: &str, pass: &str) -> Option<String> {
        let page = self.web("GET", "/login", "", None);
        let csrf = cookie(&page, "trove_login_csrf").expect("the login form's cookie");
        let form = format!("username={}&password={}&csrf={csrf}", form_encode(user), form_encode(pass));
        let r = self.web("POST", "/login", &format!("trove_login_csrf={csrf}"), Some(form));
        cookie(&r, "trove_session").map(|s| format!("trove_session={s}"))
    }

    /// The CSRF token of the signed-in session, from a page's form.
    fn csrf(&self, session: &str) -> String {
        let page = self.web("GET", "/account", session, None).text();
        let at = page.find("name=\"csrf\" value=\"").expect("a form with the CSRF token") + "name=\"csrf\" value=\"".len();
        page[at..].split('"').next().unwrap().to_owned()
    }
}

fn entries(t: &TestServer, after: i64) -> Vec<AuditEntry> {
    let all = t.server.store().audit_entries(&AuditQuery { oldest_first: true, limit: 100_000, ..AuditQuery::default() }).unwrap().0;
    all.into_iter().filter(|e| e.id > after).collect()
}

fn details(e: &AuditEntry) -> Value {
    serde_json::from_str(&e.details).unwrap()
}

/// Matches `got` against `want` in order: each `Want` one entry, or (`many`) one or more in a row.
fn check(got: &[AuditEntry], want: &[Want]) {
    let mut i = 0;
    let show = |e: &AuditEntry| format!("#{} {} {} {} {}", e.id, e.actor, e.action, e.target, e.details);
    let is = |e: &AuditEntry, w: &Want| e.actor == w.actor && e.action == w.action && e.target == w.target;
    for (n, w) in want.iter().enumerate() {
        let e = got.get(i).unwrap_or_else(|| panic!("entry {n} ({} {} {}) is missing; the log ends after {i}", w.actor, w.action, w.target));
        assert!(is(e, w), "entry {n}: wanted {} {} {}, got {}", w.actor, w.action, w.target, show(e));
        i += 1;
        while w.many && got.get(i).is_some_and(|e| is(e, w)) {
            i += 1;
        }
    }
    assert_eq!(i, got.len(), "entries nobody asked for: {:#?}", got[i..].iter().map(show).collect::<Vec<_>>());
}

/// Waits until the entries after `after` include `action` (a push's is written when git is done).
fn wait_for(t: &TestServer, after: i64, action: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !entries(t, after).iter().any(|e| e.action == action) {
        assert!(Instant::now() < deadline, "no {action} entry was written");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_hundred_administrative_actions_logins_and_a_push_are_each_recorded_in_order_in_the_database_rest_and_the_file() {
    let t = TestServer::start_with(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]);
    assert!(entries(&t, 0).is_empty(), "the fixture is made through the store, not audited");
    let mut s = Script { t: &t, want: Vec::new(), logged_in: Default::default() };
    let users: Vec<String> = (0..40).map(|i| format!("user{i:02}")).collect();
    let groups: Vec<String> = (0..12).map(|i| format!("team{i:02}")).collect();

    // Users: created, some renamed, some made project creators.
    for u in &users {
        let path = format!("/admin/users?name={u}&password={}&displayName=U&emailAddress={u}%40example.com", password(u));
        s.admin("POST", &path, None, 204, &[("user.create", format!("user:{u}"))]);
    }
    for u in &users[..10] {
        s.admin("PUT", "/admin/users", Some(json!({"name": u, "displayName": format!("User {u}")})), 200, &[("user.update", format!("user:{u}"))]);
    }
    for u in &users[..5] {
        s.admin("PUT", &format!("/admin/permissions/users?name={u}&permission=PROJECT_CREATE"), None, 204, &[("permission.grant", format!("global user:{u}"))]);
    }
    s.admin("DELETE", &format!("/admin/permissions/users?name={}", users[4]), None, 204, &[("permission.revoke", format!("global user:{}", users[4]))]);

    // Groups and memberships, one entry per member added.
    for g in &groups {
        s.admin("POST", &format!("/admin/groups?name={g}"), None, 200, &[("group.create", format!("group:{g}"))]);
    }
    for (i, g) in groups.iter().enumerate() {
        let members: Vec<&String> = users.iter().skip(i * 3).take(4).collect();
        let added: Vec<(&str, String)> = members.iter().map(|u| ("group.member.add", format!("group:{g} user:{u}"))).collect();
        s.admin("POST", "/admin/groups/add-users", Some(json!({"group": g, "users": members})), 200, &added);
    }
    for g in &groups[..4] {
        let u = &users[groups.iter().position(|x| x == g).unwrap() * 3];
        s.admin(
            "POST",
            "/admin/groups/remove-user",
            Some(json!({"context": g, "itemName": u})),
            200,
            &[("group.member.remove", format!("group:{g} user:{u}"))],
        );
    }
    s.admin(
        "PUT",
        &format!("/admin/permissions/groups?name={}&permission=PROJECT_CREATE", groups[0]),
        None,
        204,
        &[("permission.grant", format!("global group:{}", groups[0]))],
    );
    s.admin("DELETE", &format!("/admin/permissions/groups?name={}", groups[0]), None, 204, &[("permission.revoke", format!("global group:{}", groups[0]))]);

    // Projects with grants at every level, and repositories.
    let keys = ["AA", "BB", "CC", "DD", "EE"];
    for k in keys {
        s.admin("POST", "/projects", Some(json!({"key": k, "name": format!("Project {k}")})), 201, &[("project.create", format!("project:{k}"))]);
    }
    // A project creator's own project: made, and its creator made its admin.
    s.rest(
        "POST",
        "/projects",
        &users[0],
        Some(json!({"key": "MINE", "name": "Mine"})),
        201,
        &[("project.create", "project:MINE".into()), ("permission.grant", format!("project:MINE user:{}", users[0]))],
    );
    for k in &keys[..2] {
        s.admin("PUT", &format!("/projects/{k}"), Some(json!({"description": "changed"})), 200, &[("project.update", format!("project:{k}"))]);
    }
    for (i, k) in keys.iter().enumerate() {
        for u in &users[10 + i * 2..12 + i * 2] {
            s.admin(
                "PUT",
                &format!("/projects/{k}/permissions/users?name={u}&permission=PROJECT_WRITE"),
                None,
                204,
                &[("permission.grant", format!("project:{k} user:{u}"))],
            );
        }
        let g = &groups[i];
        s.admin(
            "PUT",
            &format!("/projects/{k}/permissions/groups?name={g}&permission=PROJECT_READ"),
            None,
            204,
            &[("permission.grant", format!("project:{k} group:{g}"))],
        );
    }
    s.admin(
        "DELETE",
        &format!("/projects/AA/permissions/users?name={}", users[10]),
        None,
        204,
        &[("permission.revoke", format!("project:AA user:{}", users[10]))],
    );
    s.admin(
        "DELETE",
        &format!("/projects/AA/permissions/groups?name={}", groups[0]),
        None,
        204,
        &[("permission.revoke", format!("project:AA group:{}", groups[0]))],
    );
    s.admin("POST", "/projects/BB/permissions/PROJECT_READ/all?allow=true", None, 204, &[("permission.grant", "project:BB everyone".into())]);
    s.admin("POST", "/projects/BB/permissions/PROJECT_READ/all?allow=false", None, 204, &[("permission.revoke", "project:BB everyone".into())]);
    for k in keys {
        for n in 1..=3 {
            s.admin("POST", &format!("/projects/{k}/repos"), Some(json!({"name": format!("Repo {n}")})), 201, &[("repo.create", format!("repo:{k}/repo-{n}"))]);
        }
    }
    for k in keys {
        s.admin("PUT", &format!("/projects/{k}/repos/repo-3"), Some(json!({"name": "Renamed"})), 200, &[("repo.update", format!("repo:{k}/repo-3"))]);
        let u = &users[30];
        s.admin(
            "PUT",
            &format!("/projects/{k}/repos/repo-1/permissions/users?name={u}&permission=REPO_WRITE"),
            None,
            204,
            &[("permission.grant", format!("repo:{k}/repo-1 user:{u}"))],
        );
        let g = &groups[6];
        s.admin(
            "PUT",
            &format!("/projects/{k}/repos/repo-1/permissions/groups?name={g}&permission=REPO_ADMIN"),
            None,
            204,
            &[("permission.grant", format!("repo:{k}/repo-1 group:{g}"))],
        );
    }
    s.admin(
        "DELETE",
        &format!("/projects/CC/repos/repo-1/permissions/users?name={}", users[30]),
        None,
        204,
        &[("permission.revoke", format!("repo:CC/repo-1 user:{}", users[30]))],
    );
    s.admin(
        "DELETE",
        &format!("/projects/CC/repos/repo-1/permissions/groups?name={}", groups[6]),
        None,
        204,
        &[("permission.revoke", format!("repo:CC/repo-1 group:{}", groups[6]))],
    );
    // Pull-request settings at both levels.
    s.admin(
        "POST",
        "/projects/AA/settings/pull-requests",
        Some(json!({"requiredApprovers": 1})),
        200,
        &[("pull-request-settings.update", "project:AA".into())],
    );
    s.admin(
        "POST",
        "/projects/AA/repos/repo-1/settings/pull-requests",
        Some(json!({"requiredNoNeedsWork": true})),
        200,
        &[("pull-request-settings.update", "repo:AA/repo-1".into())],
    );

    // Deletions: two projects with their repositories, groups, users.
    for k in ["DD", "EE"] {
        for slug in ["repo-1", "repo-2", "renamed"] {
            s.admin("DELETE", &format!("/projects/{k}/repos/{slug}"), None, 202, &[("repo.delete", format!("repo:{k}/{slug}"))]);
        }
        s.admin("DELETE", &format!("/projects/{k}"), None, 204, &[("project.delete", format!("project:{k}"))]);
    }
    for g in &groups[9..] {
        s.admin("DELETE", &format!("/admin/groups?name={g}"), None, 200, &[("group.delete", format!("group:{g}"))]);
    }
    for u in &users[36..] {
        s.admin("DELETE", &format!("/admin/users?name={u}"), None, 200, &[("user.delete", format!("user:{u}"))]);
    }

    // Logins over REST: wrong passwords, an unknown user, a bad token, a good token, a refusal.
    for u in &users[..3] {
        let (st, _) = s.send("GET", "/users", Some(basic(u, "wrong-password")), None);
        assert_eq!(st, 401);
        s.expect(u, "login.failure", format!("user:{u}"));
    }
    assert_eq!(s.send("GET", "/users", Some(basic("nobody", "whatever-it-is")), None).0, 401);
    s.expect("nobody", "login.failure", "user:nobody");
    let fake = format!("Bearer trv_999_{}", "A".repeat(43));
    assert_eq!(s.send("GET", "/users", Some(fake), None).0, 401);
    s.expect("anonymous", "login.failure", "token:999");
    assert_eq!(s.send("GET", "/users", Some(format!("Bearer {}", t.writer_token)), None).0, 200);
    s.expect("writer", "login.success", "user:writer");
    assert_eq!(s.send("GET", "/admin/audit", Some(basic("reader", &password("reader"))), None).0, 403, "the audit log is for administrators");
    s.expect("reader", "login.success", "user:reader");
    assert_eq!(s.send("GET", "/admin/audit", None, None).0, 401);

    // git: a wrong password, then a push (writer's logins, then the push with its ref).
    let work = t.work_repo("audit-push", 2);
    let wrong = t.url(Some(("writer", "not-the-password")), "scm/TP/test.git");
    t.git_fails(&work, &["ls-remote", &wrong]);
    s.expect_many("writer", "login.failure", "user:writer");
    let before_push = entries(&t, 0).last().map_or(0, |e| e.id);
    t.git_ok(&work, &["push", "-q", &t.url_as("writer", "scm/TP/test.git"), "main"]);
    wait_for(&t, before_push, "repo.push");
    s.expect_many("writer", "login.success", "user:writer");
    s.expect("writer", "repo.push", "repo:TP/test");

    // The web: a wrong password, a sign-in, a token made and revoked, the base URL, sign-out.
    assert!(s.web_login("admin", "wrong-password").is_none());
    s.expect("admin", "login.failure", "user:admin");
    let session = s.web_login("admin", &password("admin")).expect("signed in");
    s.expect("admin", "login.success", "user:admin");
    let csrf = s.csrf(&session);
    let r = s.web("POST", "/account", &session, Some(format!("action=create-token&name=ci&scope=read&csrf={csrf}")));
    assert_eq!(r.status, 303, "{}", r.text());
    let admin = t.server.store().user(&crate::support::user("admin")).unwrap().unwrap();
    let token = t.server.store().tokens(&admin).unwrap()[0].id;
    s.expect("admin", "token.create", format!("user:admin token:{token}"));
    let r = s.web("POST", "/account", &session, Some(format!("action=revoke-token&id={token}&csrf={csrf}")));
    assert_eq!(r.status, 303);
    s.expect("admin", "token.revoke", format!("user:admin token:{token}"));
    let base = form_encode(&format!("http://{}", t.addr));
    let r = s.web("POST", "/admin/server-settings", &session, Some(format!("base_url={base}&csrf={csrf}")));
    assert_eq!(r.status, 303, "{}", r.text());
    s.expect("admin", "settings.update", "setting:base_url");
    assert_eq!(s.web("POST", "/logout", &session, Some(format!("csrf={csrf}"))).status, 303);
    s.expect("admin", "logout", "user:admin");

    // Everything, in order, nothing more: in the database...
    let got = entries(&t, 0);
    check(&got, &s.want);
    let changes = got.iter().filter(|e| !e.action.starts_with("login.") && e.action != "logout").count();
    assert!(changes >= 200, "only {changes} administrative entries");
    // ...with the address the trusted proxy gave (git came straight from 127.0.0.1; a push's
    // event carries none) and what each did.
    for e in &got {
        let want = match (e.action.as_str(), details(e)["channel"].as_str()) {
            ("repo.push", _) => None,
            (_, Some("git")) => Some("127.0.0.1"),
            _ => Some(CLIENT),
        };
        assert_eq!(e.address.as_deref(), want, "#{} {} {}", e.id, e.action, e.target);
    }
    let push = got.iter().find(|e| e.action == "repo.push").unwrap();
    let tip = t.git_ok(&work, &["rev-parse", "main"]);
    assert_eq!(details(push)["refs"], json!([{"ref": "refs/heads/main", "old": "0".repeat(40), "new": tip}]));
    let failed = got.iter().find(|e| e.action == "login.failure" && e.target == "token:999").unwrap();
    assert!(!failed.details.contains("AAAA"), "a token's secret in the log: {}", failed.details);
    let created = got.iter().find(|e| e.action == "user.create").unwrap();
    assert!(!created.details.contains(&password(&users[0])), "a password in the log");
    let rename = got.iter().find(|e| e.action == "repo.update").unwrap();
    assert_eq!(details(rename)["slug"], json!({"from": "repo-3", "to": "renamed"}));
    let web_login = got.iter().rev().find(|e| e.action == "login.success" && e.actor == "admin").unwrap();
    assert_eq!(details(web_login), json!({"channel": "web", "method": "password"}));

    // ...in audit.log, the same entries as JSON lines...
    let file = std::fs::read_to_string(t.server.store().data_dir().join("audit.log")).unwrap();
    let lines: Vec<Value> = file.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), got.len());
    for (l, e) in lines.iter().zip(&got) {
        assert_eq!(l["time"], trove_server::audit::iso8601(e.at), "#{}", e.id);
        assert_eq!(
            (l["actor"].as_str(), l["action"].as_str(), l["target"].as_str()),
            (Some(e.actor.as_str()), Some(e.action.as_str()), Some(e.target.as_str()))
        );
        assert_eq!(l["address"].as_str(), e.address.as_deref());
        assert_eq!(l["details"], details(e));
    }

    // ...and through REST, oldest first a page at a time (the admin's REST login was written
    // already, within the window: the reads add no entry).
    let mut start = 0;
    let mut read: Vec<Value> = Vec::new();
    loop {
        let (st, page) = s.send("GET", &format!("/admin/audit?order=OLDEST&start={start}&limit=100"), Some(basic("admin", &password("admin"))), None);
        assert_eq!(st, 200, "{page:#}");
        read.extend(page["values"].as_array().unwrap().iter().cloned());
        if page["isLastPage"] == true {
            break;
        }
        start = page["nextPageStart"].as_u64().unwrap() as usize;
    }
    assert_eq!(read.len(), got.len());
    for (v, e) in read.iter().zip(&got) {
        assert_eq!((v["id"].as_i64(), v["timestamp"].as_i64()), (Some(e.id), Some(e.at)));
        assert_eq!(
            (v["actor"].as_str(), v["action"].as_str(), v["target"].as_str()),
            (Some(e.actor.as_str()), Some(e.action.as_str()), Some(e.target.as_str()))
        );
        assert_eq!(v["details"], details(e));
    }
    // Newest first by default, and the filters.
    let auth = || Some(basic("admin", &password("admin")));
    let newest = s.send("GET", "/admin/audit?limit=1", auth(), None).1;
    let last = got.last().unwrap();
    assert_eq!((newest["values"][0]["id"].as_i64(), newest["isLastPage"].as_bool()), (Some(last.id), Some(false)));
    let ids = |q: &str| -> Vec<i64> {
        let (st, v) = s.send("GET", &format!("/admin/audit?order=OLDEST&limit=1000&{q}"), auth(), None);
        assert_eq!(st, 200, "{q}: {v:#}");
        v["values"].as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect()
    };
    let of = |f: &dyn Fn(&AuditEntry) -> bool| -> Vec<i64> { got.iter().filter(|e| f(e)).map(|e| e.id).collect() };
    assert_eq!(ids("action=group.*"), of(&|e| e.action.starts_with("group.")));
    assert_eq!(ids(&format!("actor={}", users[0])), of(&|e| e.actor == users[0]));
    assert_eq!(ids("target=USER30"), of(&|e| e.target.contains("user30")));
    assert_eq!(ids("action=repo.delete&target=dd/"), of(&|e| e.action == "repo.delete" && e.target.contains("DD/")));
    let (first, last) = (got[10].at, got[20].at);
    let between = ids(&format!("from={first}&to={last}&actor=admin"));
    assert_eq!(between, of(&|e| e.at >= first && e.at <= last && e.actor == "admin"));
    let (st, e) = s.send("GET", "/admin/audit?from=yesterday", auth(), None);
    assert_eq!((st, e["errors"][0]["context"].as_str()), (400, Some("from")));
}

#[test]
fn the_daily_task_prunes_entries_past_the_retention_and_zero_keeps_them() {
    let old = |days: i64, target: &str| NewAuditEntry {
        at: now_ms() - days * 24 * 3600 * 1000,
        actor: "admin".into(),
        address: None,
        action: "user.create".into(),
        target: target.into(),
        details: "{}".into(),
    };
    // Entries already in the database when the server starts: the task's first round, at start,
    // deletes those older than 30 days and says so.
    let t = TestServer::start_with(|c| {
        c.audit.retention_days = 30;
        let store = trove_server::open_store(c).unwrap();
        for (days, target) in [(400, "user:ancient"), (31, "user:old"), (29, "user:recent")] {
            store.append_audit(&old(days, target)).unwrap();
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let targets: Vec<String> = entries(&t, 0).into_iter().map(|e| e.target).collect();
        if targets == ["user:recent", "audit"] {
            break;
        }
        assert!(Instant::now() < deadline, "not pruned: {targets:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let said = entries(&t, 0).pop().unwrap();
    assert_eq!((said.actor.as_str(), said.action.as_str(), details(&said)["deleted"].as_i64()), ("system", "audit.prune", Some(2)));

    // retention_days = 0: nothing is ever deleted.
    let t = TestServer::start_with(|c| {
        c.audit.retention_days = 0;
        let store = trove_server::open_store(c).unwrap();
        store.append_audit(&old(4000, "user:kept")).unwrap();
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(entries(&t, 0).into_iter().map(|e| e.target).collect::<Vec<_>>(), ["user:kept"]);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn a_login_repeated_within_the_window_is_written_once_and_every_failure_and_web_sign_in_always() {
    let t = TestServer::start_with(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]);
    let mut s = Script { t: &t, want: Vec::new(), logged_in: Default::default() };
    let from = |addr: &str, auth: String| {
        let r = t.http("GET", "/rest/api/1.0/users", &[("X-Forwarded-For", addr), ("Authorization", auth.as_str())], b"");
        r.status
    };
    // The same user, method and address three times: one entry.
    for _ in 0..3 {
        assert_eq!(from(CLIENT, basic("writer", &password("writer"))), 200);
    }
    s.expect("writer", "login.success", "user:writer");
    // A token is another method: one entry for it, however often it is used.
    for _ in 0..3 {
        assert_eq!(from(CLIENT, format!("Bearer {}", t.writer_token)), 200);
    }
    s.expect("writer", "login.success", "user:writer");
    // Another address: another entry.
    assert_eq!(from("198.51.100.9", basic("writer", &password("writer"))), 200);
    s.expect("writer", "login.success", "user:writer");
    // Failures: every one.
    for _ in 0..2 {
        assert_eq!(from(CLIENT, basic("writer", "not-the-password")), 401);
        s.expect("writer", "login.failure", "user:writer");
    }
    // Web sign-ins: every one.
    for _ in 0..2 {
        assert!(s.web_login("reader", &password("reader")).is_some());
        s.expect("reader", "login.success", "user:reader");
    }
    let got = entries(&t, 0);
    check(&got, &s.want);
    let methods: Vec<(String, String)> =
        got.iter().map(details).map(|d| (d["channel"].as_str().unwrap_or("").to_owned(), d["method"].as_str().unwrap_or("").to_owned())).collect();
    assert_eq!(methods[..3], [("rest".into(), "password".into()), ("rest".into(), "token".into()), ("rest".into(), "password".into())]);
    assert_eq!(got[2].address.as_deref(), Some("198.51.100.9"));
}
