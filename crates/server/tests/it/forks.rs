//! Forks against a real server: forking over REST into a personal and another project, the
//! fork cloned with real git (the origin's refs), pushes to either staying apart, the origin's
//! maintenance, an aggressive gc and its deletion leaving the fork whole (`git fsck`), the
//! permissions, paging of `…/forks`, and the unmodified Python clients (stashy,
//! atlassian-python-api).

use std::os::unix::fs::MetadataExt as _;

use serde_json::{Value, json};
use trove_store::{Owner, Permission, ProjectKey};

use crate::support::{TestServer, rest, user};

const TEST: &str = "/rest/api/1.0/projects/TP/repos/test";

fn message(v: &Value) -> &str {
    v["errors"][0]["message"].as_str().unwrap_or("")
}

/// `ref → id` as `git ls-remote` over HTTP shows them to `who`, without `HEAD`.
fn ls_remote(t: &TestServer, who: &str, path: &str) -> Vec<(String, String)> {
    let out = t.git_ok(t.home.path(), &["ls-remote", &t.url_as(who, path)]);
    let mut refs: Vec<_> = out.lines().filter_map(|l| l.split_once('\t')).filter(|(_, r)| *r != "HEAD").map(|(id, r)| (r.to_owned(), id.to_owned())).collect();
    refs.sort();
    refs
}

/// A project `key` that `who` administers.
fn project_for(t: &TestServer, key: &str, who: &str) {
    let k = ProjectKey::parse(key).unwrap();
    t.server.store().create_project(&k, None, false).unwrap();
    t.server.store().grant_project(&user(who), &k, Permission::Admin).unwrap();
}

#[test]
fn a_fork_has_the_origins_refs_names_its_origin_and_pushes_to_either_stay_apart() {
    let t = TestServer::start();
    let (work, tip) = t.seed("scm/TP/test.git", 3);
    t.git_ok(&work, &["tag", "-a", "v1", "-m", "release 1"]);
    t.git_ok(&work, &["push", "-q", "origin", "v1", "main:side"]);
    project_for(&t, "OT", "writer");

    // No body: the caller's personal project (made now), the origin's name.
    let (s, fork) = rest(&t, Some("writer"), "POST", TEST, None);
    assert_eq!(s, 201, "{fork}");
    assert_eq!((fork["slug"].as_str(), fork["name"].as_str(), fork["project"]["key"].as_str()), (Some("test"), Some("test"), Some("~WRITER")));
    assert_eq!((fork["public"].as_bool(), fork["forkable"].as_bool()), (Some(false), Some(true)));
    assert_eq!((fork["origin"]["slug"].as_str(), fork["origin"]["project"]["key"].as_str()), (Some("test"), Some("TP")), "{fork}");
    assert!(fork["links"]["clone"][0]["href"].as_str().unwrap().ends_with("/scm/~writer/test.git"), "{fork}");
    // `origin` on every later GET, and the origin is no fork.
    let (s, again) = rest(&t, Some("writer"), "GET", "/rest/api/1.0/projects/~writer/repos/test", None);
    assert_eq!((s, again["origin"]["id"].clone()), (200, fork["origin"]["id"].clone()));
    let (_, origin) = rest(&t, Some("writer"), "GET", TEST, None);
    assert!(origin.get("origin").is_none(), "{origin}");
    // Into another project, with a name.
    let (s, other) = rest(&t, Some("writer"), "POST", TEST, Some(json!({"name": "Other Fork", "project": {"key": "OT"}})));
    assert_eq!((s, other["slug"].as_str(), other["project"]["key"].as_str()), (201, Some("other-fork"), Some("OT")), "{other}");
    // The same place again: Bitbucket's conflict, nothing changed.
    let (s, v) = rest(&t, Some("writer"), "POST", TEST, Some(json!({"project": {"key": "~writer"}})));
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["errors"][0]["exceptionName"], "com.atlassian.bitbucket.repository.DuplicateRepositoryNameException");

    // The forks have the origin's branches and tags (annotated tag objects included), and its
    // default branch.
    let origin_refs = ls_remote(&t, "writer", "scm/TP/test.git");
    // main, side, v1 and v1 peeled (`v1^{}`).
    assert_eq!(origin_refs.len(), 4, "{origin_refs:?}");
    assert_eq!(ls_remote(&t, "writer", "scm/~writer/test.git"), origin_refs);
    assert_eq!(ls_remote(&t, "writer", "scm/OT/other-fork.git"), origin_refs);
    let dir = t.dir("clones");
    t.git_ok(&dir, &["clone", "-q", &t.url_as("writer", "scm/~writer/test.git"), "fork"]);
    let clone = dir.join("fork");
    assert_eq!(t.git_ok(&clone, &["rev-parse", "HEAD"]), tip);
    assert_eq!(t.git_ok(&clone, &["symbolic-ref", "--short", "HEAD"]), "main");
    assert_eq!(t.git_ok(&clone, &["cat-file", "-t", "v1"]), "tag");

    // A push to the fork stays in the fork...
    let forked = t.commit(&clone, "fork.txt", "only in the fork\n");
    t.git_ok(&clone, &["push", "-q", "origin", "main", "main:fork-only"]);
    assert_eq!(t.server_rev("~writer", "test", "main").as_deref(), Some(forked.as_str()));
    assert_eq!(ls_remote(&t, "writer", "scm/TP/test.git"), origin_refs, "the origin is untouched");
    assert!(t.git(&t.repo_dir("TP", "test"), &["cat-file", "-e", &forked]).status.code() != Some(0), "the fork's objects are not in the origin");
    // ...and one to the origin stays in the origin.
    let moved = t.commit(&work, "origin.txt", "only in the origin\n");
    t.git_ok(&work, &["push", "-q", "origin", "main"]);
    assert_eq!(t.server_rev("~writer", "test", "main").as_deref(), Some(forked.as_str()), "fork syncing is off");
    assert_eq!(t.server_rev("OT", "other-fork", "main").as_deref(), Some(tip.as_str()));
    assert_eq!(t.server_rev("TP", "test", "main").as_deref(), Some(moved.as_str()));
    for (o, s) in [("TP", "test"), ("~writer", "test"), ("OT", "other-fork")] {
        t.fsck(o, s);
    }

    // The origin lists both forks; each fork relates to the origin and the other fork.
    let (s, forks) = rest(&t, Some("writer"), "GET", &format!("{TEST}/forks"), None);
    assert_eq!(s, 200);
    let slugs: Vec<_> =
        forks["values"].as_array().unwrap().iter().map(|r| format!("{}/{}", r["project"]["key"].as_str().unwrap(), r["slug"].as_str().unwrap())).collect();
    assert_eq!(slugs, ["~WRITER/test", "OT/other-fork"]);
    let (_, related) = rest(&t, Some("writer"), "GET", "/rest/api/1.0/projects/OT/repos/other-fork/related", None);
    let ids: Vec<_> = related["values"].as_array().unwrap().iter().map(|r| r["id"].clone()).collect();
    assert_eq!(ids, [origin["id"].clone(), fork["id"].clone()], "{related}");
    // A fork of a fork names its own origin, whose JSON names the first origin.
    let (s, deeper) = rest(&t, Some("writer"), "POST", "/rest/api/1.0/projects/~writer/repos/test", Some(json!({"name": "deeper"})));
    assert_eq!(s, 201, "{deeper}");
    assert_eq!((deeper["origin"]["id"].clone(), deeper["origin"]["origin"]["id"].clone()), (fork["id"].clone(), origin["id"].clone()));
    let (_, forks) = rest(&t, Some("writer"), "GET", &format!("{TEST}/forks"), None);
    assert_eq!(forks["size"], 2, "only the direct forks: {forks}");
}

#[test]
fn the_origins_maintenance_gc_and_deletion_leave_its_forks_whole() {
    let t = TestServer::start();
    let (work, old_tip) = t.seed("scm/TP/test.git", 5);
    t.wait_maintenance();
    let (s, v) = rest(&t, Some("writer"), "POST", TEST, None);
    assert_eq!(s, 201, "{v}");
    let (s, v) = rest(&t, Some("admin"), "POST", TEST, Some(json!({"name": "second", "project": {"key": "PUB"}})));
    assert_eq!(s, 201, "{v}");
    // The fork shares the origin's pack files on disk (hard links) rather than copying them.
    let packs = |dir: std::path::PathBuf| -> Vec<(String, u64)> {
        std::fs::read_dir(dir.join("objects/pack"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".pack"))
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().nlink()))
            .collect()
    };
    let fork_packs = packs(t.repo_dir("~writer", "test"));
    assert!(!fork_packs.is_empty() && fork_packs.iter().all(|(_, links)| *links >= 2), "shared: {fork_packs:?}");
    assert!(!t.repo_dir("~writer", "test").join("objects/info/alternates").exists(), "no alternates");

    // The origin forgets its history (a force push of an unrelated one), its maintenance runs,
    // and then the most aggressive gc there is: every unreachable object pruned at once.
    t.git_ok(&work, &["checkout", "-q", "--orphan", "fresh"]);
    t.commit(&work, "new.txt", "a new history\n");
    t.git_ok(&work, &["push", "-q", "--force", "origin", "fresh:main"]);
    t.wait_maintenance();
    let origin_dir = t.repo_dir("TP", "test");
    t.git_ok(
        &origin_dir,
        &["-c", "gc.reflogExpire=now", "-c", "gc.reflogExpireUnreachable=now", "reflog", "expire", "--all", "--expire=now", "--expire-unreachable=now"],
    );
    t.git_ok(&origin_dir, &["gc", "--prune=now", "--quiet"]);
    assert!(t.git(&origin_dir, &["cat-file", "-e", &old_tip]).status.code() != Some(0), "the origin really lost the old history");
    t.fsck("~writer", "test");
    let dir = t.dir("clones");
    t.git_ok(&dir, &["clone", "-q", &t.url_as("writer", "scm/~writer/test.git"), "after-gc"]);
    assert_eq!(t.git_ok(&dir.join("after-gc"), &["rev-parse", "HEAD"]), old_tip);
    assert_eq!(t.git_ok(&dir.join("after-gc"), &["rev-list", "--count", "HEAD"]), "5");

    // The fork's own maintenance (after a push) keeps it whole too.
    let clone = dir.join("after-gc");
    t.commit(&clone, "more.txt", "more\n");
    t.git_ok(&clone, &["push", "-q", "origin", "main"]);
    t.fsck("~writer", "test");

    // Deleting the origin (as Bitbucket: allowed with forks) leaves the forks whole; they no
    // longer name an origin but stay related to each other.
    let (s, v) = rest(&t, Some("admin"), "DELETE", TEST, None);
    assert_eq!(s, 202, "{v}");
    assert!(!origin_dir.exists(), "the origin's directory is gone, not kept for its forks");
    t.fsck("~writer", "test");
    t.fsck("PUB", "second");
    let (s, fork) = rest(&t, Some("writer"), "GET", "/rest/api/1.0/projects/~writer/repos/test", None);
    assert_eq!(s, 200);
    assert!(fork.get("origin").is_none(), "{fork}");
    let (_, related) = rest(&t, Some("writer"), "GET", "/rest/api/1.0/projects/~writer/repos/test/related", None);
    assert_eq!(related["values"][0]["slug"], "second", "{related}");
    t.git_ok(&dir, &["clone", "-q", &t.url_as("writer", "scm/PUB/second.git"), "after-delete"]);
    assert_eq!(t.git_ok(&dir.join("after-delete"), &["rev-parse", "HEAD"]), old_tip);
}

#[test]
fn forking_needs_read_on_the_origin_forkable_and_the_right_to_create_in_the_target() {
    let t = TestServer::start();
    t.seed("scm/TP/test.git", 1);
    // Nobody logged in; someone who may not see the origin; an unknown origin.
    assert_eq!(rest(&t, None, "POST", TEST, None).0, 401);
    let (s, v) = rest(&t, Some("outsider"), "POST", TEST, None);
    assert_eq!((s, message(&v)), (404, "Repository test does not exist."), "{v}");
    assert_eq!(rest(&t, Some("writer"), "POST", "/rest/api/1.0/projects/TP/repos/nothing", None).0, 404);
    // A reader may fork into their own project, not into the origin's (needs PROJECT_ADMIN).
    let (s, v) = rest(&t, Some("reader"), "POST", TEST, Some(json!({"project": {"key": "TP"}, "name": "mine"})));
    assert_eq!(s, 403, "{v}");
    let (s, v) = rest(&t, Some("reader"), "POST", TEST, Some(json!({"project": {"key": "NOPE"}})));
    assert_eq!((s, message(&v)), (404, "Project NOPE does not exist."), "{v}");
    let (s, v) = rest(&t, Some("reader"), "POST", TEST, Some(json!({"project": {"key": "~writer"}})));
    assert!(s == 403 || s == 404, "not into someone else's personal project: {v}");
    assert_eq!(rest(&t, Some("reader"), "POST", TEST, Some(json!({"project": {"key": "~reader"}}))).0, 201);
    // Bad input is refused before anything is made.
    let (s, v) = rest(&t, Some("writer"), "POST", TEST, Some(json!({"name": "!!!"})));
    assert_eq!((s, v["errors"][0]["context"].as_str()), (400, Some("name")), "{v}");
    assert_eq!(rest(&t, Some("writer"), "POST", TEST, Some(json!({"name": 5}))).0, 400);

    // Forking off: refused, with the way back; the flag is Bitbucket's `forkable`.
    let (s, v) = rest(&t, Some("admin"), "PUT", TEST, Some(json!({"forkable": false})));
    assert_eq!((s, v["forkable"].as_bool()), (200, Some(false)));
    let (s, v) = rest(&t, Some("writer"), "POST", TEST, None);
    assert_eq!(s, 400, "{v}");
    assert!(message(&v).contains("forking is disabled") && message(&v).contains("forkable"), "{v}");
    assert!(t.server.store().repo(&Owner::parse("~writer").unwrap(), &trove_store::RepoSlug::parse("test").unwrap()).unwrap().is_none());
    rest(&t, Some("admin"), "PUT", TEST, Some(json!({"forkable": true})));
    assert_eq!(rest(&t, Some("writer"), "POST", TEST, None).0, 201);

    // `…/forks` lists only what the caller may read; `origin` only when they may read it.
    let (s, v) = rest(&t, Some("admin"), "POST", "/rest/api/1.0/projects/PUB/repos/open", None);
    assert_eq!(s, 201, "{v}");
    let (s, v) = rest(&t, Some("outsider"), "POST", "/rest/api/1.0/projects/PUB/repos/open", Some(json!({"name": "outsiders"})));
    assert_eq!(s, 201, "{v}");
    let (_, v) = rest(&t, Some("reader"), "GET", "/rest/api/1.0/projects/PUB/repos/open/forks", None);
    assert_eq!(v["size"], 0, "private forks of others are not listed: {v}");
    let (_, v) = rest(&t, Some("admin"), "GET", "/rest/api/1.0/projects/PUB/repos/open/forks", None);
    assert_eq!(v["size"], 2, "{v}");
    let (_, v) = rest(&t, Some("writer"), "GET", &format!("{TEST}/forks"), None);
    assert_eq!(v["size"], 1, "writer sees their own fork, not reader's: {v}");
    t.server
        .store()
        .grant_repo(&user("outsider"), &Owner::parse("~reader").unwrap(), &trove_store::RepoSlug::parse("test").unwrap(), Permission::Read)
        .unwrap();
    let (s, v) = rest(&t, Some("outsider"), "GET", "/rest/api/1.0/projects/~reader/repos/test", None);
    assert_eq!(s, 200);
    assert!(v.get("origin").is_none(), "an origin the caller may not read is not shown: {v}");
    let (_, v) = rest(&t, Some("outsider"), "GET", "/rest/api/1.0/projects/~reader/repos/test/related", None);
    assert_eq!(v["size"], 0, "{v}");
    assert_eq!(rest(&t, Some("outsider"), "GET", &format!("{TEST}/forks"), None).0, 404);
}

#[test]
fn forks_page_past_the_first_page() {
    let t = TestServer::start();
    t.seed("scm/PUB/open.git", 1);
    let store = t.server.store();
    let fk = ProjectKey::parse("FK").unwrap();
    store.create_project(&fk, None, false).unwrap();
    for i in 0..27 {
        let (s, v) =
            rest(&t, Some("admin"), "POST", "/rest/api/1.0/projects/PUB/repos/open", Some(json!({"name": format!("f{i:02}"), "project": {"key": "FK"}})));
        assert_eq!(s, 201, "{v}");
    }
    let (_, first) = rest(&t, Some("admin"), "GET", "/rest/api/1.0/projects/PUB/repos/open/forks", None);
    assert_eq!((first["size"].as_u64(), first["isLastPage"].as_bool(), first["nextPageStart"].as_u64()), (Some(25), Some(false), Some(25)), "{first}");
    assert_eq!(first["values"][0]["slug"], "f00");
    let (_, rest_page) = rest(&t, Some("admin"), "GET", "/rest/api/1.0/projects/PUB/repos/open/forks?start=25", None);
    assert_eq!((rest_page["size"].as_u64(), rest_page["isLastPage"].as_bool()), (Some(2), Some(true)), "{rest_page}");
    assert_eq!((rest_page["values"][0]["slug"].as_str(), rest_page["values"][1]["slug"].as_str()), (Some("f25"), Some("f26")));
    let (_, related) = rest(&t, Some("admin"), "GET", "/rest/api/1.0/projects/FK/repos/f03/related?limit=10&start=20", None);
    assert_eq!((related["size"].as_u64(), related["isLastPage"].as_bool()), (Some(7), Some(true)), "the origin and 26 other forks: {related}");
}

const CLIENTS: &str = r#"
import sys
import stashy
from atlassian import Bitbucket

root = sys.argv[1]

# atlassian-python-api 5.x: fork_repository (into the same project) and
# fork_repository_new_project.
bb = Bitbucket(url=root, username="admin", password="admin-password")
f = bb.fork_repository("TP", "test", "Same Project Fork")
assert f["slug"] == "same-project-fork" and f["project"]["key"] == "TP", f
assert f["origin"]["slug"] == "test" and f["origin"]["project"]["key"] == "TP", f
f = bb.fork_repository_new_project("TP", "test", "OT", "Elsewhere")
assert f["slug"] == "elsewhere" and f["project"]["key"] == "OT" and f["origin"]["slug"] == "test", f
assert bb.get_repo("OT", "elsewhere")["origin"]["slug"] == "test"
# Forking off, then on, through atlassian's own calls for the flag.
bb.disable_repo_forking("TP", "test")
assert bb.get_repo_forkable("TP", "test") is False
try:
    bb.fork_repository_new_project("TP", "test", "OT", "Refused")
    raise SystemExit("forked a repository with forking disabled")
except Exception as e:
    assert "forking is disabled" in str(e), e
bb.enable_repo_forking("TP", "test")

# stashy: fork() with no arguments (the caller's personal project), with a name and project,
# and forks().
s = stashy.connect(root, "writer", "writer-password")
f = s.projects["TP"].repos["test"].fork()
assert f["project"]["key"] == "~WRITER" and f["slug"] == "test" and f["origin"]["slug"] == "test", f
f = s.projects["TP"].repos["test"].fork("Writer Two", "~writer")
assert f["slug"] == "writer-two", f
admin = stashy.connect(root, "admin", "admin-password")
forks = sorted(r["project"]["key"] + "/" + r["slug"] for r in admin.projects["TP"].repos["test"].forks())
assert forks == ["OT/elsewhere", "TP/same-project-fork", "~WRITER/test", "~WRITER/writer-two"], forks
mine = [r["slug"] for r in s.projects["TP"].repos["test"].forks()]
assert sorted(mine) == ["same-project-fork", "test", "writer-two"], mine
print("OK")
"#;

#[test]
fn stashy_and_atlassian_python_api_fork_and_list_forks_unmodified() {
    let t = TestServer::start();
    t.seed("scm/TP/test.git", 2);
    project_for(&t, "OT", "admin");
    crate::api_clients::run(&t, CLIENTS);
    // What the clients made is real: the forks clone with the origin's history.
    let tip = t.server_rev("TP", "test", "main").unwrap();
    for (o, s) in [("TP", "same-project-fork"), ("OT", "elsewhere"), ("~writer", "test"), ("~writer", "writer-two")] {
        assert_eq!(t.server_rev(o, s, "main").as_deref(), Some(tip.as_str()), "{o}/{s}");
        t.fsck(o, s);
    }
}

#[test]
fn in_data_center_mode_a_fork_made_on_one_node_lives_on_shared_storage_and_serves_from_another() {
    let pg = trove_store::pgtest::TestPg::start();
    let url = pg.database();
    let shared = tempfile::tempdir().unwrap();
    let node = |first: bool| {
        let (url, shared) = (url.clone(), shared.path().to_owned());
        TestServer::start_node(
            move |c| {
                c.database = Some(trove_server::DatabaseSettings::new(&url).unwrap());
                c.repositories = Some(shared);
            },
            first,
        )
    };
    let a = node(true);
    let b = node(false);
    let (_work, tip) = a.seed("scm/TP/test.git", 2);
    let (s, v) = rest(&a, Some("writer"), "POST", TEST, None);
    assert_eq!(s, 201, "{v}");
    // On the shared storage, beside its origin, sharing its packs; nothing in a node's own data
    // directory.
    let fork_dir = a.repo_dir("~writer", "test");
    assert_eq!(fork_dir.parent(), Some(shared.path()), "{}", fork_dir.display());
    assert!(std::fs::read_dir(a.data.path().join("repositories")).map(|d| d.count()).unwrap_or(0) == 0);
    // The other node serves it, with its origin.
    let (s, v) = rest(&b, Some("writer"), "GET", "/rest/api/1.0/projects/~writer/repos/test", None);
    assert_eq!((s, v["origin"]["slug"].as_str()), (200, Some("test")), "{v}");
    let (_, forks) = rest(&b, Some("writer"), "GET", &format!("{TEST}/forks"), None);
    assert_eq!(forks["size"], 1, "{forks}");
    let dir = b.dir("clones");
    b.git_ok(&dir, &["clone", "-q", &b.url_as("writer", "scm/~writer/test.git"), "fork"]);
    assert_eq!(b.git_ok(&dir.join("fork"), &["rev-parse", "HEAD"]), tip);
    b.fsck("~writer", "test");
}
