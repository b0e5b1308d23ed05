//! Branch permissions against a real server and the real `git` CLI: a matrix of restriction
//! types × push kinds × who pushes (not exempt, exempt by name, exempt through a group, a global
//! administrator, who is not exempt automatically), each cell as Bitbucket answers it; a refused
//! push leaves every ref as it was and tells the pusher which restriction refused what; and a
//! pull-request merge, which may move a pull-request-only branch that a push may not.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};
use trove_store::{
    GlobalPermission, GroupName, Matcher, MatcherType, NewRestriction, Owner, Password, Permission, ProjectKey, RepoSlug, RestrictionScope, RestrictionType,
};

use crate::support::{TestServer, basic, password, user};

const RULE: &str = "----------------------------------------------------";
const CHECK: &str = "Check your branch permissions configuration with the project administrator.";

/// How a push changes a ref covered by the restriction (pattern `prot*`).
#[derive(Debug, Clone, Copy)]
enum Push {
    /// `prot-x` moves to a descendant.
    FastForward,
    /// `prot-x` moves to a commit that is not a descendant (`+`).
    Force,
    /// `prot-x` is deleted.
    Delete,
    /// `prot-new` is created.
    Create,
    /// Tag `prot-tag` is created (patterns cover tags too).
    Tag,
}

const PUSHES: [Push; 5] = [Push::FastForward, Push::Force, Push::Delete, Push::Create, Push::Tag];

impl Push {
    fn refspec(self, ff: &str, other: &str) -> (String, &'static str) {
        match self {
            Push::FastForward => (format!("{ff}:refs/heads/prot-x"), "refs/heads/prot-x"),
            Push::Force => (format!("+{other}:refs/heads/prot-x"), "refs/heads/prot-x"),
            Push::Delete => (":refs/heads/prot-x".to_owned(), "refs/heads/prot-x"),
            Push::Create => (format!("{ff}:refs/heads/prot-new"), "refs/heads/prot-new"),
            Push::Tag => (format!("{ff}:refs/tags/prot-tag"), "refs/tags/prot-tag"),
        }
    }
}

/// Per restriction type, what a push that is not exempt may do, in [`PUSHES`] order
/// (fast-forward, force, delete, create, tag), and what the refusal says after the ref's name.
/// Bitbucket: read-only prevents all changes (creating included); no-deletes only deleting;
/// fast-forward-only only rewriting history; pull-request-only every change but a merge.
#[rustfmt::skip]
const TABLE: &[(RestrictionType, [bool; 5], &str)] = &[
    (RestrictionType::ReadOnly,        [false, false, false, false, false], "is read-only: it may not be created, changed or deleted."),
    (RestrictionType::NoDeletes,       [true,  true,  false, true,  true ], "may not be deleted."),
    (RestrictionType::FastForwardOnly, [true,  false, true,  true,  true ], "may not be rewritten: only fast-forward changes are allowed."),
    (RestrictionType::PullRequestOnly, [false, false, false, false, false], "can only be modified through pull requests."),
];

/// Who pushes, and whether the restriction exempts them.
const PUSHERS: [(&str, bool); 4] = [("writer", false), ("exempt", true), ("member", true), ("admin", false)];

/// Every ref of the server's repository, name → id.
fn refs(t: &TestServer, dir: &Path) -> BTreeMap<String, String> {
    t.git_ok(dir, &["for-each-ref", "--format=%(refname) %(objectname)"])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, id)| (n.to_owned(), id.to_owned()))
        .collect()
}

/// Puts the server's repository back to `want`, behind the server's back (no hooks run).
fn restore(t: &TestServer, dir: &Path, want: &BTreeMap<String, String>) {
    for name in refs(t, dir).keys().filter(|n| !want.contains_key(*n)) {
        t.git_ok(dir, &["update-ref", "-d", name]);
    }
    for (name, id) in want {
        t.git_ok(dir, &["update-ref", name, id]);
    }
}

/// Users `exempt` (exempt by name) and `member` (of the exempt group `releasers`), both with
/// write on TP like `writer`.
fn pushers(t: &TestServer) {
    let s = t.server.store();
    let tp = ProjectKey::parse("TP").unwrap();
    for n in ["exempt", "member"] {
        s.create_user(&user(n), &Password::new(&password(n)).unwrap(), GlobalPermission::LicensedUser).unwrap();
        s.grant_project(&user(n), &tp, Permission::Write).unwrap();
    }
    s.insert_group(&GroupName::parse("releasers").unwrap()).unwrap();
    s.add_group_member(&GroupName::parse("releasers").unwrap(), &user("member")).unwrap();
}

#[test]
fn each_restriction_refuses_exactly_bitbuckets_pushes_for_everyone_it_does_not_exempt() {
    let t = TestServer::start();
    pushers(&t);
    let s = t.server.store();
    let owner = Owner::parse("TP").unwrap();
    let releasers = s.group(&GroupName::parse("releasers").unwrap()).unwrap().unwrap().id;
    let exempt = s.user(&user("exempt")).unwrap().unwrap().id;
    for (kind, allowed, tail) in TABLE {
        // A repository per type: `main` and `prot-x` at A (B follows A; C branches off before A).
        let slug = format!("r-{kind}");
        let repo = s.create_repo(&owner, &RepoSlug::parse(&slug).unwrap(), false).unwrap();
        let path = format!("scm/TP/{slug}.git");
        let work = t.work_repo(&format!("work-{kind}"), 2);
        let base = t.git_ok(&work, &["rev-parse", "HEAD~1"]);
        t.git_ok(&work, &["push", "-q", &t.url_as("writer", &path), "main", "main:refs/heads/prot-x"]);
        let b = t.commit(&work, "b.txt", "b\n");
        t.git_ok(&work, &["checkout", "-q", "-b", "other", &base]);
        let c = t.commit(&work, "c.txt", "c\n");
        let matcher = Matcher::new(MatcherType::Pattern, "prot*").unwrap();
        let scope = RestrictionScope::Repository(repo.id);
        s.insert_restrictions(&[NewRestriction { scope, kind: *kind, matcher, users: vec![exempt], groups: vec![releasers], access_keys: vec![] }]).unwrap();
        let dir = t.repo_dir("TP", &slug);
        let before = refs(&t, &dir);
        for (who, is_exempt) in PUSHERS {
            for (i, push) in PUSHES.into_iter().enumerate() {
                let cell = format!("{kind} × {push:?} × {who}");
                let (refspec, full) = push.refspec(&b, &c);
                let out = t.git(&work, &["push", "--porcelain", &t.url_as(who, &path), &refspec]);
                let stderr = String::from_utf8_lossy(&out.stderr);
                if is_exempt || allowed[i] {
                    assert!(out.status.success(), "{cell}: refused\n{stderr}");
                    let now = refs(&t, &dir);
                    let want = match push {
                        Push::Delete => None,
                        Push::Force => Some(c.as_str()),
                        _ => Some(b.as_str()),
                    };
                    assert_eq!(now.get(full).map(String::as_str), want, "{cell}: the ref did not move as pushed");
                    restore(&t, &dir, &before);
                } else {
                    assert!(!out.status.success(), "{cell}: accepted");
                    assert_eq!(refs(&t, &dir), before, "{cell}: a refused push changed the repository");
                    let word = if full.starts_with("refs/tags/") { "Tag" } else { "Branch" };
                    let message = format!("remote: {word} {full} {tail}");
                    assert!(stderr.contains(&message), "{cell}: no {message:?} in\n{stderr}");
                    assert!(
                        stderr.contains(&format!("remote: {RULE}")) && stderr.contains(&format!("remote: {CHECK}")),
                        "{cell}: not Bitbucket's message\n{stderr}"
                    );
                    assert!(String::from_utf8_lossy(&out.stdout).contains("pre-receive hook declined"), "{cell}: {}", String::from_utf8_lossy(&out.stdout));
                }
            }
        }
        t.fsck("TP", &slug);
    }
}

#[test]
fn a_push_with_one_refused_ref_moves_none_and_names_each_refusal() {
    let t = TestServer::start();
    let (work, tip) = t.seed("scm/TP/test.git", 2);
    t.git_ok(&work, &["push", "-q", "origin", "main:refs/heads/develop", "main:refs/heads/free"]);
    let s = t.server.store();
    let repo = s.repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("test").unwrap()).unwrap().unwrap();
    let project = s.project_info(&Owner::parse("TP").unwrap()).unwrap().unwrap();
    let new = |scope, kind, m: Matcher| NewRestriction { scope, kind, matcher: m, users: vec![], groups: vec![], access_keys: vec![] };
    s.insert_restrictions(&[
        // A project restriction is in force in each of its repositories; development is HEAD.
        new(RestrictionScope::Project(project.id), RestrictionType::PullRequestOnly, Matcher::new(MatcherType::ModelBranch, "development").unwrap()),
        new(RestrictionScope::Repository(repo.id), RestrictionType::NoDeletes, Matcher::new(MatcherType::Branch, "develop").unwrap()),
    ])
    .unwrap();
    let dir = t.repo_dir("TP", "test");
    let before = refs(&t, &dir);
    let next = t.commit(&work, "n.txt", "n\n");
    let err = t.git_fails(&work, &["push", "--atomic", "origin", "main", "main:free", ":develop"]);
    assert_eq!(refs(&t, &dir), before, "nothing moved");
    // One block: a rule, a line per refusal (in the order git gave the refs), Bitbucket's advice,
    // a rule.
    let lines: Vec<&str> = err.lines().filter_map(|l| l.strip_prefix("remote: ")).map(str::trim_end).collect();
    let at = lines.iter().position(|l| *l == RULE).unwrap_or_else(|| panic!("no rule in\n{err}"));
    let mut refusals = lines[at + 1..at + 3].to_vec();
    refusals.sort_unstable();
    assert_eq!(refusals, ["Branch refs/heads/develop may not be deleted.", "Branch refs/heads/main can only be modified through pull requests."], "{err}");
    assert_eq!(lines[at + 3..at + 5], [CHECK, RULE], "{err}");
    // Without --atomic too: the hook refuses the whole push.
    let err = t.git_fails(&work, &["push", "origin", "main:free", ":develop"]);
    assert!(err.contains("may not be deleted"), "{err}");
    assert_eq!(refs(&t, &dir), before, "nothing moved");
    // The branch no restriction covers moves on its own.
    t.git_ok(&work, &["push", "-q", "origin", "main:free"]);
    assert_eq!(t.server_rev("TP", "test", "refs/heads/free").as_deref(), Some(next.as_str()));
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main").as_deref(), Some(tip.as_str()));
}

const R: &str = "/rest/api/1.0/projects/TP/repos/test";
const BP: &str = "/rest/branch-permissions/2.0/projects/TP/repos/test/restrictions";

/// One REST call as `who`; the status and the JSON body (`Null` if none).
fn call(t: &TestServer, method: &str, path: &str, who: &str, body: Option<Value>) -> (u16, Value) {
    let auth = basic(who, &password(who));
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    let mut headers = vec![("Authorization", auth.as_str())];
    if !text.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    let r = t.http(method, path, &headers, text.as_bytes());
    let v = if r.body.is_empty() { Value::Null } else { serde_json::from_slice(&r.body).unwrap_or_else(|_| Value::String(r.text())) };
    (r.status, v)
}

fn ok(t: &TestServer, method: &str, path: &str, who: &str, body: Option<Value>, want: u16) -> Value {
    let (status, v) = call(t, method, path, who, body);
    assert_eq!(status, want, "{method} {path} as {who}: {v:#}");
    v
}

fn restrict(t: &TestServer, kind: &str, branch: &str, exempt: &[&str]) -> i64 {
    let body = json!({"type": kind, "matcher": {"id": format!("refs/heads/{branch}"), "type": {"id": "BRANCH"}}, "users": exempt});
    ok(t, "POST", BP, "admin", Some(body), 200)["id"].as_i64().unwrap()
}

fn open_pr(t: &TestServer, from: &str) -> i64 {
    let r = |b: &str| json!({"id": format!("refs/heads/{b}"), "repository": {"slug": "test", "project": {"key": "TP"}}});
    ok(t, "POST", &format!("{R}/pull-requests"), "writer", Some(json!({"title": from, "fromRef": r(from), "toRef": r("main")})), 201)["id"].as_i64().unwrap()
}

#[test]
fn a_pull_request_merges_into_a_branch_no_push_may_change_and_read_only_vetoes_it() {
    let t = TestServer::start();
    pushers(&t);
    let (work, _) = t.seed("scm/TP/test.git", 2);
    for b in ["feature", "second"] {
        t.git_ok(&work, &["checkout", "-q", "-b", b, "main"]);
        t.commit(&work, &format!("{b}.txt"), "x\n");
        t.git_ok(&work, &["push", "-q", "origin", b]);
    }
    restrict(&t, "pull-request-only", "main", &[]);
    let no_deletes = restrict(&t, "no-deletes", "feature", &[]);

    // A direct push is refused; the same change through a pull request merges.
    let err = t.git_fails(&work, &["push", "origin", "feature:main"]);
    assert!(err.contains("Branch refs/heads/main can only be modified through pull requests."), "{err}");
    let one = open_pr(&t, "feature");
    let status = ok(&t, "GET", &format!("{R}/pull-requests/{one}/merge"), "writer", None, 200);
    assert_eq!((status["canMerge"].as_bool(), status["vetoes"].as_array().map(Vec::len)), (Some(true), Some(0)), "{status}");
    // The merge asks to delete the source, which no-deletes protects: kept, and the merge stands.
    let merged = ok(&t, "POST", &format!("{R}/pull-requests/{one}/merge"), "writer", Some(json!({"deleteSourceRef": true})), 200);
    assert_eq!(merged["state"], "MERGED");
    let main = t.server_rev("TP", "test", "refs/heads/main").unwrap();
    assert_eq!(merged["properties"]["mergeCommit"]["id"].as_str(), Some(main.as_str()));
    assert!(t.server_rev("TP", "test", "refs/heads/feature").is_some(), "no-deletes kept the source branch");
    ok(&t, "DELETE", &format!("{BP}/{no_deletes}"), "admin", None, 204);

    // read-only on main: the merge check names the restriction for everyone it does not exempt,
    // global administrators included, and a merge is refused (409) with main unchanged.
    let ro = restrict(&t, "read-only", "main", &["exempt"]);
    let two = open_pr(&t, "second");
    for who in ["writer", "admin"] {
        let status = ok(&t, "GET", &format!("{R}/pull-requests/{two}/merge"), who, None, 200);
        assert_eq!(status["canMerge"], false, "{who}: {status}");
        assert_eq!(status["vetoes"][0]["summaryMessage"], "Branch restriction", "{status}");
        let detail = status["vetoes"][0]["detailedMessage"].as_str().unwrap();
        assert!(detail.contains("Branch refs/heads/main is read-only"), "{detail}");
    }
    let (code, body) = call(&t, "POST", &format!("{R}/pull-requests/{two}/merge"), "writer", None);
    assert_eq!(code, 409, "{body}");
    assert!(body["errors"][0]["exceptionName"].as_str().unwrap().contains("MergeVetoed"), "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("Branch restriction"), "{body}");
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main").as_deref(), Some(main.as_str()));
    // The exempt user may merge it; the source goes, as nothing protects it.
    let status = ok(&t, "GET", &format!("{R}/pull-requests/{two}/merge"), "exempt", None, 200);
    assert_eq!(status["canMerge"], true, "{status}");
    let merged = ok(&t, "POST", &format!("{R}/pull-requests/{two}/merge"), "exempt", Some(json!({"deleteSourceRef": true})), 200);
    assert_eq!(merged["state"], "MERGED");
    assert!(t.server_rev("TP", "test", "refs/heads/second").is_none(), "the source was deleted");
    ok(&t, "DELETE", &format!("{BP}/{ro}"), "admin", None, 204);
    // Still pull-request-only: a push is refused.
    let err = t.git_fails(&work, &["push", "origin", "+second:main"]);
    assert!(err.contains("can only be modified through pull requests"), "{err}");
}

#[test]
fn a_push_through_a_git_session_as_ssh_runs_it_obeys_the_same_restrictions() {
    let t = TestServer::start();
    let (_, tip) = t.seed("scm/TP/test.git", 2);
    let s = t.server.store();
    let repo = s.repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("test").unwrap()).unwrap().unwrap();
    let matcher = Matcher::new(MatcherType::Branch, "main").unwrap();
    s.insert_restrictions(&[NewRestriction {
        scope: RestrictionScope::Repository(repo.id),
        kind: RestrictionType::PullRequestOnly,
        matcher,
        users: vec![],
        groups: vec![],
        access_keys: vec![],
    }])
    .unwrap();
    let (port, _) = crate::git_session::listen(&t);
    let relay = t.home.path().join("relay.py");
    std::fs::write(&relay, crate::git_session::RELAY).unwrap();
    let git = |cwd: &Path, args: &[&str]| {
        let mut c = t.git_cmd(cwd, args);
        c.env("GIT_SSH_COMMAND", format!("python3 {}", relay.display())).env("TROVE_TEST_GIT_PORT", port.to_string());
        c.output().unwrap()
    };
    let out = git(t.home.path(), &["-c", "ssh.variant=ssh", "clone", "-q", "ssh://git@trove/TP/test.git", "viassh"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let clone = t.home.path().join("viassh");
    t.commit(&clone, "x.txt", "x\n");
    let out = git(&clone, &["-c", "ssh.variant=ssh", "push", "origin", "main"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("remote: Branch refs/heads/main can only be modified through pull requests."), "{err}");
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main").as_deref(), Some(tip.as_str()));
    let out = git(&clone, &["-c", "ssh.variant=ssh", "push", "origin", "main:other"]);
    assert!(out.status.success(), "a branch no restriction covers: {}", String::from_utf8_lossy(&out.stderr));
}
