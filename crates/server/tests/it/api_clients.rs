//! The REST API against the real Python clients that talk to Stash and Bitbucket Server:
//! `stashy` and `atlassian-python-api` (from PyPI, in the venv .ci/requirements.txt describes),
//! against a real server on 127.0.0.1 under the context path `/stash`.
//!
//! The python comes from `TROVE_TEST_PYTHON` or `<workspace>/.venv/bin/python`. A missing python
//! or package fails the test: a skipped interoperability test is a test nobody notices is gone.

use std::path::PathBuf;
use std::process::Command;

use trove_store::ContextPath;

use crate::support::TestServer;

pub(crate) fn python() -> PathBuf {
    let p = match std::env::var_os("TROVE_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
    };
    assert!(
        p.exists(),
        "python for the REST client tests not found at {}; create it with `python3 -m venv .venv && .venv/bin/pip install -r .ci/requirements.txt` \
         in the workspace, or set TROVE_TEST_PYTHON",
        p.display()
    );
    let check = Command::new(&p).args(["-c", "import stashy, atlassian"]).output().unwrap();
    assert!(
        check.status.success(),
        "stashy and atlassian-python-api are not installed for {}; run `.venv/bin/pip install -r .ci/requirements.txt`: {}",
        p.display(),
        String::from_utf8_lossy(&check.stderr)
    );
    p
}

/// Runs `script` with the server's root URL as its argument; panics with its output unless it
/// exits 0. Each script prints `OK` last, so a script that stops early cannot pass.
pub(crate) fn run(t: &TestServer, script: &str) -> String {
    let out = Command::new(python())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", t.home.path())
        // No proxy may come between the clients and 127.0.0.1.
        .env("NO_PROXY", "*")
        .args(["-c", script, &t.root])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "python failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.trim_end().ends_with("OK"), "the script did not finish:\n{stdout}");
    stdout
}

fn server() -> TestServer {
    let t = TestServer::start_with(|c| c.context_path = Some(ContextPath::parse("/stash").unwrap()));
    t.seed("scm/TP/test.git", 3);
    t
}

const STASHY: &str = r#"
import sys
import stashy
from stashy.errors import NotFoundException, AuthenticationException, GenericException

root = sys.argv[1]
host_root = root.replace("http://", "http://admin@")
s = stashy.connect(root, "admin", "admin-password")

# Projects, across more than one page (25 per page).
for i in range(30):
    p = s.projects.create("ST%02d" % i, "Stashy %d" % i, "made by stashy")
    assert p["key"] == "ST%02d" % i, p
keys = [p["key"] for p in s.projects.list()]
assert len(keys) == 32 and "TP" in keys and "ST29" in keys, keys
assert s.projects["ST07"].get()["description"] == "made by stashy"

# Repositories, across pages; Bitbucket's slugs.
for i in range(26):
    s.projects["ST00"].repos.create("Repo %d" % i)
r = s.projects["ST00"].repos.create("TEST REPO")
assert r["slug"] == "test-repo" and r["name"] == "TEST REPO", r
slugs = [r["slug"] for r in s.projects["ST00"].repos.list()]
assert len(slugs) == 27 and "repo-25" in slugs, slugs
assert len([r for r in s.repos.list()]) >= 29

# Clone and web links from the base URL (here: what the request says), user embedded.
r = s.projects["ST00"].repos["test-repo"].get()
http = [l["href"] for l in r["links"]["clone"] if l["name"] == "http"]
assert http == [host_root + "/scm/st00/test-repo.git"], http
assert r["links"]["self"][0]["href"] == root + "/projects/ST00/repos/test-repo/browse", r["links"]

# Rename and delete.
s.projects["ST00"].repos["repo-0"].update("Renamed Zero")
assert s.projects["ST00"].repos["renamed-zero"].get()["name"] == "Renamed Zero"
s.projects["ST00"].repos["renamed-zero"].delete()
try:
    s.projects["ST00"].repos["renamed-zero"].get()
    raise SystemExit("a deleted repository was found")
except NotFoundException as e:
    assert "does not exist" in str(e), e

# Project and repository permissions: grant, list, revoke.
outsider = stashy.connect(root, "outsider", "outsider-password")
try:
    outsider.projects["ST01"].get()
    raise SystemExit("outsider saw a private project")
except NotFoundException as e:
    assert str(e) == "Project ST01 does not exist.", e
s.projects["ST01"].permissions.users.grant("outsider", "PROJECT_READ")
assert [(u["user"]["name"], u["permission"]) for u in s.projects["ST01"].permissions.users] == [("outsider", "PROJECT_READ")]
assert outsider.projects["ST01"].get()["key"] == "ST01"
s.projects["ST01"].permissions.users.revoke("outsider")
try:
    outsider.projects["ST01"].get()
    raise SystemExit("revoked permission still works")
except NotFoundException:
    pass
s.projects["TP"].repos["test"].permissions.users.grant("outsider", "REPO_WRITE")
assert [u["permission"] for u in s.projects["TP"].repos["test"].permissions.users] == ["REPO_WRITE"]
assert outsider.projects["TP"].repos["test"].get()["slug"] == "test"
s.projects["TP"].repos["test"].permissions.users.revoke("outsider")
s.projects["ST02"].permissions.grant("PROJECT_READ")
assert outsider.projects["ST02"].get()["key"] == "ST02"
s.projects["ST02"].permissions.revoke("PROJECT_READ")
try:
    outsider.projects["ST02"].get()
    raise SystemExit("revoked default permission still works")
except NotFoundException:
    pass

# Users: create, find, log in, delete.
s.admin.users.add("pyuser", "pyuser-password", "Py User", "py@example.com")
assert [u["name"] for u in s.admin.users.all()].count("pyuser") == 1
py = stashy.connect(root, "pyuser", "pyuser-password")
assert [p["key"] for p in py.projects.list()] == ["PUB"], "a new user sees only public projects"
s.admin.permissions.users.grant("pyuser", "PROJECT_CREATE")
assert py.projects.create("PY", "Made by pyuser")["key"] == "PY"
s.admin.users.delete("pyuser")
try:
    py.projects.list()
    raise SystemExit("a deleted user could log in")
except AuthenticationException:
    pass

# Errors as stashy raises them.
try:
    s.projects.create("ST00", "again")
    raise SystemExit("duplicate key accepted")
except GenericException as e:
    assert str(e).startswith("409:") and "already taken" in str(e), e
try:
    s.projects["TP"].repos.create("..")
    raise SystemExit("bad name accepted")
except GenericException as e:
    assert str(e).startswith("400:"), e
try:
    stashy.connect(root, "admin", "wrong").projects.list()
    raise SystemExit("wrong password accepted")
except AuthenticationException:
    pass
try:
    outsider.admin.users.add("x1", "longenough", "X", "x@example.com")
    raise SystemExit("non-admin created a user")
except GenericException as e:
    assert str(e).startswith("403:"), e

# Reading the repository.
repo = s.projects["TP"].repos["test"]
assert [b["displayId"] for b in repo.branches()] == ["main"]
assert repo.default_branch["id"] == "refs/heads/main"
commits = list(repo.commits("main"))
assert len(commits) == 3 and commits[-1]["message"] == "change file0.txt", commits
assert sorted(repo.files()) == ["file0.txt", "file1.txt", "file2.txt"]
lines = list(repo.browse("file1.txt"))
assert lines == [{"text": "content 1 of seed-scm-TP-test-git"}], lines
assert repo.get_commit(commits[0]["id"])["id"] == commits[0]["id"]

# Clean up as stashy does: repositories first, then the project.
for r in list(s.projects["ST00"].repos.list()):
    s.projects["ST00"].repos[r["slug"]].delete()
s.projects["ST00"].delete()
try:
    s.projects["ST00"].get()
    raise SystemExit("deleted project still there")
except NotFoundException:
    pass
print("OK")
"#;

#[test]
fn stashy_manages_projects_repositories_permissions_and_users() {
    let t = server();
    run(&t, STASHY);
    // What stashy did is what the store holds.
    assert!(t.server.store().user(&trove_store::UserName::parse("pyuser").unwrap()).unwrap().is_none());
    assert_eq!(t.server.store().visible_projects(None, true).unwrap().iter().filter(|p| p.owner.to_string().starts_with("ST")).count(), 29);
}

const ATLASSIAN: &str = r#"
import sys
from atlassian import Bitbucket
from requests import HTTPError

root = sys.argv[1]
bb = Bitbucket(url=root, username="admin", password="admin-password")

# Projects and repositories, across more than one page.
bb.create_project("AT", "Atlassian", "made by atlassian-python-api")
for i in range(27):
    bb.create_project("AP%02d" % i, "Page %d" % i)
assert len(list(bb.project_list())) == 30
r = bb.create_repo("AT", "My Repo")
assert r["slug"] == "my-repo", r
for i in range(26):
    bb.create_repo("AT", "r%02d" % i)
slugs = [r["slug"] for r in bb.repo_list("AT")]
assert len(slugs) == 27 and slugs[0] == "my-repo", slugs
assert bb.project_exists("AT") and not bb.project_exists("NOPE")
assert bb.repo_exists("AT", "my-repo") and not bb.repo_exists("AT", "nope")

# Clone links: the requesting user's name, lower-cased key, the context path.
r = bb.get_repo("AT", "my-repo")
assert r["links"]["clone"] == [{"href": root.replace("http://", "http://admin@") + "/scm/at/my-repo.git", "name": "http"}], r["links"]
reader = Bitbucket(url=root, username="reader", password="reader-password")
assert reader.get_repo("TP", "test")["links"]["clone"][0]["href"] == root.replace("http://", "http://reader@") + "/scm/tp/test.git"

# Permissions: grant, list, revoke.
bb.project_grant_user_permissions("AT", "reader", "PROJECT_WRITE")
assert [(u["user"]["name"], u["permission"]) for u in bb.project_users("AT")] == [("reader", "PROJECT_WRITE")]
assert reader.project("AT")["key"] == "AT"
bb.project_remove_user_permissions("AT", "reader")
assert list(bb.project_users("AT")) == []
bb.repo_grant_user_permissions("AT", "my-repo", "outsider", "REPO_READ")
assert [u["user"]["name"] for u in bb.repo_users("AT", "my-repo")] == ["outsider"]
bb.repo_remove_user_permissions("AT", "my-repo", "outsider")
assert list(bb.repo_users("AT", "my-repo")) == []

# Users: create and delete through the library's own request methods.
bb.post("rest/api/1.0/admin/users", params={"name": "atuser", "password": "atuser-password", "displayName": "At User", "emailAddress": "at@example.com", "addToDefaultGroup": "true", "notify": "false"})
assert [u["displayName"] for u in bb.get_users_info("atuser")] == ["At User"]
assert [u["name"] for u in bb.get_users("atuser")["values"]] == ["atuser"]
bb.delete("rest/api/1.0/admin/users", params={"name": "atuser"})
assert list(bb.get_users_info("atuser")) == []

# Personal repositories through /users/~user/repos.
bb.create_repo("~admin", "Dots")
assert bb.get_repo("~admin", "dots")["links"]["clone"][0]["href"].endswith("/scm/~admin/dots.git")
assert [r["slug"] for r in bb.repo_list("~admin")] == ["dots"]

# Errors as atlassian-python-api raises them: HTTPError with Bitbucket's message.
def fails(status, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except HTTPError as e:
        assert e.response.status_code == status, (status, e.response.status_code, str(e))
        assert e.response.headers["Content-Type"] == "application/json;charset=UTF-8"
        return str(e)
    raise SystemExit("no error from %s" % fn.__name__)

assert "already taken" in fails(409, bb.create_project, "AT", "Again")
assert "already exists" in fails(409, bb.create_repo, "AT", "My Repo")
assert "does not exist" in fails(404, bb.get_repo, "AT", "nope")
assert "key" in fails(400, bb.create_project, "1BAD", "Bad")
assert "PROJECT_READ" in fails(400, bb.project_grant_user_permissions, "AT", "reader", "OWNER")
assert "nobody" in fails(404, bb.project_grant_user_permissions, "AT", "nobody", "PROJECT_READ")
msg = fails(401, Bitbucket(url=root, username="admin", password="wrong").project, "AT")
assert msg != "Unauthorized (401)" and "password" in msg, msg
outsider = Bitbucket(url=root, username="outsider", password="outsider-password")
assert "not permitted" in fails(403, outsider.post, "rest/api/1.0/admin/users", params={"name": "x2", "password": "longenough"})

# Reading the repository.
assert [b["displayId"] for b in bb.get_branches("TP", "test")] == ["main"]
assert bb.get_default_branch("TP", "test")["displayId"] == "main"
commits = list(bb.get_commits("TP", "test", limit=2))
assert len(commits) == 3, commits
assert bb.get_commit_info("TP", "test", commits[0]["id"])["message"] == "change file2.txt"
assert bb.get_content_of_file("TP", "test", "file0.txt") == b"content 0 of seed-scm-TP-test-git\n"
assert sorted(bb.get_file_list("TP", "test")) == ["file0.txt", "file1.txt", "file2.txt"]
assert list(bb.get_tags("TP", "test")) == []
bb.set_default_branch("TP", "test", "refs/heads/main")

# Deleting: repositories, then the project.
for slug in slugs:
    bb.delete_repo("AT", slug)
assert not bb.repo_exists("AT", "my-repo")
bb.delete("rest/api/1.0/projects/AT")
assert not bb.project_exists("AT")
print("OK")
"#;

#[test]
fn atlassian_python_api_manages_projects_repositories_permissions_and_users() {
    let t = server();
    run(&t, ATLASSIAN);
    assert!(t.server.store().project_info(&trove_store::Owner::parse("AT").unwrap()).unwrap().is_none());
    let dots = t.server.store().repo(&trove_store::Owner::parse("~admin").unwrap(), &trove_store::RepoSlug::parse("dots").unwrap()).unwrap();
    assert!(dots.is_some_and(|r| t.server.store().repo_path(&r).join("HEAD").is_file()));
}

/// TP/test with `main` and a `feature` branch one commit ahead that changes `a.txt`.
fn pull_request_fixture(t: &TestServer) {
    let (dir, _) = t.seed("scm/TP/test.git", 2);
    t.commit(&dir, "a.txt", "one\ntwo\n");
    t.git_ok(&dir, &["push", "-q", "origin", "main"]);
    t.git_ok(&dir, &["checkout", "-q", "-b", "feature"]);
    t.commit(&dir, "a.txt", "one\nTWO\n");
    t.git_ok(&dir, &["push", "-q", "origin", "feature"]);
    t.git_ok(&dir, &["checkout", "-q", "-b", "second", "main"]);
    t.commit(&dir, "b.txt", "b\n");
    t.git_ok(&dir, &["push", "-q", "origin", "second"]);
}

const STASHY_PULL_REQUESTS: &str = r#"
import sys
import stashy
from stashy.errors import GenericException

root = sys.argv[1]
w = stashy.connect(root, "writer", "writer-password")
r = stashy.connect(root, "reader", "reader-password")
prs = w.projects["TP"].repos["test"].pull_requests

pr = prs.create("Add TWO", "feature", "main", description="Upper case.", reviewers=["reader"])
assert pr["id"] == 1 and pr["state"] == "OPEN" and pr["reviewers"][0]["user"]["name"] == "reader", pr
assert [p["id"] for p in prs.all()] == [1]
assert [p["id"] for p in prs.all(state="ALL", order="OLDEST")] == [1]
assert [p["id"] for p in prs.all(author="writer")] == [1]
assert list(prs.all(author="reader")) == []

one = prs[1]
assert one.get()["title"] == "Add TWO"
one.update(one.get()["version"], title="Add TWO, upper case")
assert one.get()["title"] == "Add TWO, upper case"

rp = r.projects["TP"].repos["test"].pull_requests[1]
status = lambda: one.get()["reviewers"][0]["status"]
assert rp.approve() and status() == "APPROVED"
assert rp.needswork() and status() == "NEEDS_WORK"
assert rp.unapprove() and status() == "UNAPPROVED"
assert rp.approve() and one.get()["reviewers"][0]["approved"] is True
rp.watch()
rp.unwatch()

# stashy's comment() answers only whether it worked.
assert rp.comment("General remark")
assert rp.comment("On the changed line", srcPath="a.txt", fileLine=2, lineType="ADDED", fileType="TO")
by_text = {x["text"]: x for x in rp.comments()}
c, line = by_text["General remark"], by_text["On the changed line"]
assert line["anchor"]["path"] == "a.txt" and line["anchor"]["line"] == 2, line
assert [x["text"] for x in rp.comments(srcPath="a.txt")] == ["On the changed line"]
assert one.comment("A reply", parentCommentId=line["id"])
texts = [x["text"] for x in rp.comments()]
assert "General remark" in texts and "On the changed line" in texts, texts
rp.delete_comment(c["id"], c["version"])
assert "General remark" not in [x["text"] for x in rp.comments()]

assert [ch["path"]["toString"] for ch in rp.changes()] == ["a.txt"]
assert len(list(rp.commits())) == 1
d = rp.diff()
assert d.diffs and d.context_lines == 10 and d.whitespace == "SHOW", (d.context_lines, d.whitespace)
acts = [a["action"] for a in rp.activities()]
assert acts[-1] == "OPENED" and "APPROVED" in acts and "COMMENTED" in acts, acts

info = one.merge_info()
assert info["canMerge"] is True and info["outcome"] == "CLEAN", info
assert one.can_merge() is True
merged = one.merge(one.get()["version"])
assert merged["state"] == "MERGED", merged
try:
    one.decline(merged["version"])
    raise SystemExit("declining a merged pull request must fail")
except GenericException:
    pass

two = prs.create("Second", "second", "main")
assert prs[two["id"]].decline()
assert prs[two["id"]].get()["state"] == "DECLINED"
assert prs[two["id"]].reopen()["state"] == "OPEN"

print("OK")
"#;

#[test]
fn stashy_opens_reviews_comments_on_and_merges_pull_requests() {
    let t = TestServer::start_with(|c| c.context_path = Some(ContextPath::parse("/stash").unwrap()));
    pull_request_fixture(&t);
    run(&t, STASHY_PULL_REQUESTS);
    // git agrees with what stashy was told.
    let main = t.server_rev("TP", "test", "refs/heads/main").unwrap();
    let msg = t.git_ok(&t.repo_dir("TP", "test"), &["log", "-1", "--format=%s", &main]);
    assert_eq!(msg, "Merge pull request #1 in TP/test from feature to main");
}

const ATLASSIAN_PULL_REQUESTS: &str = r#"
import sys
from atlassian import Bitbucket
from requests import HTTPError

root = sys.argv[1]
w = Bitbucket(url=root, username="writer", password="writer-password")
r = Bitbucket(url=root, username="reader", password="reader-password")
admin = Bitbucket(url=root, username="admin", password="admin-password")

pr = w.open_pull_request("TP", "test", "TP", "test", "feature", "main", "Add TWO", "Upper case.", reviewers="reader")
assert pr["id"] == 1, pr
pr2 = w.create_pull_request("TP", "test", {
    "title": "Second", "fromRef": {"id": "refs/heads/second", "repository": {"slug": "test", "project": {"key": "TP"}}},
    "toRef": {"id": "refs/heads/main", "repository": {"slug": "test", "project": {"key": "TP"}}}})
assert pr2["id"] == 2, pr2
assert [p["id"] for p in w.get_pull_requests("TP", "test")] == [2, 1]
assert [p["id"] for p in w.get_pull_requests("TP", "test", order="oldest")] == [1, 2]
assert w.get_pull_request("TP", "test", 1)["title"] == "Add TWO"

got = w.get_pull_request("TP", "test", 1)
w.update_pull_request("TP", "test", 1, {"version": got["version"], "title": "Renamed", "description": "New words"})
assert w.get_pull_request("TP", "test", 1)["description"] == "New words"

assert r.change_reviewed_status("TP", "test", 1, "APPROVED", "reader")["status"] == "APPROVED"
assert [p["user"]["name"] for p in w.get_pull_requests_participants("TP", "test", 1)] == ["writer", "reader"]
c = r.add_pull_request_comment("TP", "test", 1, "Nice")
c2 = w.add_pull_request_comment("TP", "test", 1, "Thanks", parent_id=c["id"])
assert r.get_pull_request_comment("TP", "test", 1, c["id"])["comments"][0]["id"] == c2["id"]
e = r.update_pull_request_comment("TP", "test", 1, c["id"], "Very nice", c["version"])
assert e["text"] == "Very nice" and e["version"] == 1, e
w.delete_pull_request_comment("TP", "test", 1, c2["id"], c2["version"])

acts = [a["action"] for a in w.get_pull_requests_activities("TP", "test", 1)]
assert acts[-1] == "OPENED" and "APPROVED" in acts, acts
assert [ch["path"]["toString"] for ch in w.get_pull_requests_changes("TP", "test", 1)] == ["a.txt"]
assert len(list(w.get_pull_requests_commits("TP", "test", 1))) == 1
assert w.is_pull_request_can_be_merged("TP", "test", 1)["canMerge"] is True

dash = list(r.get_dashboard_pull_requests(role="REVIEWER"))
assert [p["id"] for p in dash] == [1], dash
# (atlassian's check_inbox_* call /inbox/… without /rest/api/1.0, which Bitbucket does not
# serve either; the inbox is tested over HTTP in tests/it/pull_requests.rs.)

s = admin.get_pull_request_settings("TP", "test")
assert s["mergeConfig"]["defaultStrategy"]["id"] == "no-ff", s
s = admin.set_pull_request_settings("TP", "test", {"mergeConfig": {"defaultStrategy": {"id": "squash"}, "strategies": [{"id": "no-ff", "enabled": True}, {"id": "squash", "enabled": True}]}, "requiredApprovers": 1})
assert s["mergeConfig"]["defaultStrategy"]["id"] == "squash" and s["requiredApprovers"] == 1, s

v = w.get_pull_request("TP", "test", 1)["version"]
m = w.merge_pull_request("TP", "test", 1, "Squashed by the client", pr_version=v)
assert m["state"] == "MERGED", m

v2 = w.get_pull_request("TP", "test", 2)["version"]
assert w.decline_pull_request("TP", "test", 2, v2)["state"] == "DECLINED"
v2 = w.get_pull_request("TP", "test", 2)["version"]
assert w.reopen_pull_request("TP", "test", 2, v2)["state"] == "OPEN"
v2 = w.get_pull_request("TP", "test", 2)["version"]
w.delete_pull_request("TP", "test", 2, v2)
try:
    w.get_pull_request("TP", "test", 2)
    raise SystemExit("a deleted pull request must be gone")
except HTTPError as e:
    assert e.response.status_code == 404
print("OK")
"#;

#[test]
fn atlassian_python_api_opens_reviews_and_merges_pull_requests() {
    let t = TestServer::start();
    pull_request_fixture(&t);
    run(&t, ATLASSIAN_PULL_REQUESTS);
    let repo = t.repo_dir("TP", "test");
    let main = t.server_rev("TP", "test", "refs/heads/main").unwrap();
    let log = t.git_ok(&repo, &["log", "-1", "--format=%P%n%B", &main]);
    let mut lines = log.lines();
    assert_eq!(lines.next().unwrap().split(' ').count(), 1, "squash: one parent");
    assert!(log.contains("Pull request #1: Renamed") && log.contains("Squashed by the client"), "{log}");
}

const STASHY_GROUPS: &str = r#"
import sys
import stashy
from stashy.errors import NotFoundException, GenericException

root = sys.argv[1]
s = stashy.connect(root, "admin", "admin-password")
outsider = stashy.connect(root, "outsider", "outsider-password")

# Groups: add, list (filtered), refuse a duplicate whatever its case.
g = s.admin.groups.add("developers")
assert g == {"name": "developers", "deletable": True}, g
s.admin.groups.add("Ops")
assert [x["name"] for x in s.admin.groups.list()] == ["developers", "Ops"]
assert [x["name"] for x in s.admin.groups.list(filter="PS")] == ["Ops"]
try:
    s.admin.groups.add("DEVELOPERS")
    raise SystemExit("a duplicate group was made")
except GenericException as e:
    assert str(e).startswith("409:"), e

# Members, from both sides.
assert s.admin.groups.add_user("developers", "outsider")
assert s.admin.users.add_group("reader", "developers")
assert [u["name"] for u in s.admin.groups.more_members("developers")] == ["outsider", "reader"]
assert [u["name"] for u in s.admin.groups.more_non_members("developers", filter="adm")] == ["admin"]
assert [x["name"] for x in s.admin.users.more_members("outsider")] == ["developers"]
assert [x["name"] for x in s.admin.users.more_non_members("outsider")] == ["Ops"]
assert s.admin.users.remove_group("reader", "developers")
assert [u["name"] for u in s.admin.groups.more_members("developers")] == ["outsider"]
try:
    s.admin.groups.add_user("nope", "outsider")
    raise SystemExit("added to a group that does not exist")
except NotFoundException as e:
    assert "nope" in str(e), e

# A group's project permission reaches its member, and goes with the grant.
try:
    outsider.projects["TP"].get()
    raise SystemExit("outsider saw a private project")
except NotFoundException:
    pass
assert s.projects["TP"].permissions.groups.grant("developers", "PROJECT_WRITE")
assert [(x["group"]["name"], x["permission"]) for x in s.projects["TP"].permissions.groups] == [("developers", "PROJECT_WRITE")]
assert [x["name"] for x in s.projects["TP"].permissions.groups.none()] == ["Ops"]
assert outsider.projects["TP"].get()["key"] == "TP"
assert s.projects["TP"].permissions.revoke_from_group("developers")
try:
    outsider.projects["TP"].get()
    raise SystemExit("a revoked group grant still works")
except NotFoundException:
    pass

# The same on a repository.
repo = s.projects["TP"].repos["test"]
assert repo.permissions.groups.grant("developers", "REPO_READ")
assert [(x["group"]["name"], x["permission"]) for x in repo.permissions.groups] == [("developers", "REPO_READ")]
assert outsider.projects["TP"].repos["test"].get()["slug"] == "test"
assert repo.repo_permissions.revoke_from_group("developers")
assert list(repo.permissions.groups) == []

# A group's global ADMIN makes its members administrators.
try:
    outsider.admin.users.list()
    raise SystemExit("a licensed user listed the users' administration")
except GenericException as e:
    assert str(e).startswith("403:"), e
assert s.admin.permissions.groups.grant("developers", "ADMIN")
assert [(x["group"]["name"], x["permission"]) for x in s.admin.permissions.groups] == [("developers", "ADMIN")]
assert [x["name"] for x in s.admin.permissions.groups.none()] == ["Ops"]
assert len(outsider.admin.users.list()) == 4
# ... who may not take it from themselves.
try:
    outsider.admin.permissions.groups.revoke("developers")
    raise SystemExit("an administrator lowered their own permission")
except GenericException as e:
    assert str(e).startswith("409:"), e
assert s.admin.permissions.groups.revoke("developers")

# Deleting.
assert s.admin.groups.remove_user("developers", "outsider")
assert s.admin.groups.delete("Ops")
assert [x["name"] for x in s.admin.groups.list()] == ["developers"]
try:
    s.admin.groups.delete("Ops")
    raise SystemExit("a deleted group was deleted again")
except NotFoundException:
    pass
print("OK")
"#;

#[test]
fn stashy_manages_groups_their_members_and_their_permissions() {
    let t = server();
    run(&t, STASHY_GROUPS);
    let store = t.server.store();
    assert_eq!(store.groups().unwrap().iter().map(|g| g.name.to_string()).collect::<Vec<_>>(), ["developers"]);
}

const ATLASSIAN_GROUPS: &str = r#"
import sys
from atlassian import Bitbucket
from atlassian.bitbucket.server import Server
from requests import HTTPError

root = sys.argv[1]
bb = Bitbucket(url=root, username="admin", password="admin-password")

# atlassian-python-api has no call to create a group or add members: its request methods do.
for name in ["atgroup", "other"]:
    assert bb.post("rest/api/1.0/admin/groups", params={"name": name}) == {"name": name, "deletable": True}
assert list(bb.get_groups()) == ["atgroup", "other"]
assert list(bb.get_groups("AT")) == ["atgroup"]
bb.post("rest/api/1.0/admin/groups/add-users", data={"group": "atgroup", "users": ["reader", "outsider"]})
assert [u["name"] for u in bb.group_members("atgroup")] == ["outsider", "reader"]
assert list(bb.group_members("other")) == []

# Project and repository group permissions.
outsider = Bitbucket(url=root, username="outsider", password="outsider-password")
bb.project_grant_group_permissions("TP", "atgroup", "PROJECT_ADMIN")
assert [(g["group"]["name"], g["permission"]) for g in bb.project_groups("TP")] == [("atgroup", "PROJECT_ADMIN")]
assert bb.project_groups_with_administrator_permissions("TP") == ["atgroup"]
assert outsider.project("TP")["key"] == "TP"
# A member administers the project now, and may not revoke the grant they administer by.
try:
    outsider.project_remove_group_permissions("TP", "atgroup")
    raise SystemExit("a project administrator lowered their own permission")
except HTTPError as e:
    assert e.response.status_code == 409, e
bb.project_remove_group_permissions("TP", "atgroup")
assert list(bb.project_groups("TP")) == []

bb.repo_grant_group_permissions("TP", "test", "atgroup", "REPO_ADMIN")
assert [(g["group"]["name"], g["permission"]) for g in bb.repo_groups("TP", "test")] == [("atgroup", "REPO_ADMIN")]
assert bb.repo_groups_with_administrator_permissions("TP", "test") == ["atgroup"]
admins = sorted(u["name"] for u in bb.repo_users_with_administrator_permissions("TP", "test"))
assert admins == ["outsider", "reader"], admins
bb.repo_remove_group_permissions("TP", "test", "atgroup", None)
assert list(bb.repo_groups("TP", "test")) == []

# Global permissions through the Server classes.
server = Server(root, username="admin", password="admin-password")
# (`groups.project_create` and its siblings fail inside the library, which lacks the helper they
# call; `add` is what they would send.)
server.groups.add("other", "PROJECT_CREATE")
got = [(g.name, g.permission) for g in server.groups.each()]
assert got == [("other", "PROJECT_CREATE")], got
assert [g.name for g in server.groups.each_none()] == ["atgroup"]
server.groups.get("other").delete()
assert list(server.groups.each()) == []

# Errors: unknown groups are 404, bad permissions 400.
def fails(status, fn, *args):
    try:
        fn(*args)
    except HTTPError as e:
        assert e.response.status_code == status, (status, e.response.status_code, str(e))
        return str(e)
    raise SystemExit("no error from %s" % fn.__name__)

assert "nope" in fails(404, bb.project_grant_group_permissions, "TP", "nope", "PROJECT_READ")
assert "PROJECT_READ" in fails(400, bb.project_grant_group_permissions, "TP", "atgroup", "OWNER")
bb.delete("rest/api/1.0/admin/groups", params={"name": "other"})
assert list(bb.get_groups()) == ["atgroup"]
print("OK")
"#;

#[test]
fn atlassian_python_api_manages_groups_and_their_permissions() {
    let t = server();
    run(&t, ATLASSIAN_GROUPS);
    let store = t.server.store();
    let g = store.group(&trove_store::GroupName::parse("atgroup").unwrap()).unwrap().unwrap();
    assert_eq!(store.group_members(&g).unwrap().len(), 2);
}

const STASHY_BRANCH_PERMISSIONS: &str = r#"
import sys
import stashy
from stashy.branch_permissions import Matcher, RestrictionType
from stashy.errors import GenericException

root = sys.argv[1]
s = stashy.connect(root, "admin", "admin-password")
s.admin.groups.add("leads")
rs = s.projects["TP"].repos["test"].branch_permissions.restrictions

r = rs.create("refs/heads/main", users=["reader"], groups=["leads"], keys=[7],
              restriction_type=RestrictionType.PULL_REQUEST, matcher_type=Matcher.BRANCH)
assert r["type"] == "pull-request-only" and r["scope"]["type"] == "REPOSITORY", r
assert r["matcher"]["displayId"] == "main" and r["matcher"]["type"]["id"] == "BRANCH", r
assert [u["name"] for u in r["users"]] == ["reader"] and r["groups"] == ["leads"], r
assert r["accessKeys"] == [{"key": {"id": 7}}], r
ff = rs.create("release/*", restriction_type=RestrictionType.FAST_FORWARD)
assert ff["matcher"]["type"]["id"] == "PATTERN", ff
assert sorted(x["id"] for x in rs.all()) == sorted([r["id"], ff["id"]])
assert rs[str(r["id"])].get()["id"] == r["id"]

# stashy's update is a delete and a create.
moved = rs[str(ff["id"])].update("hotfix", restriction_type=RestrictionType.NO_DELETES, matcher_type=Matcher.MODEL_CATEGORY)
assert moved["id"] != ff["id"] and moved["matcher"]["id"] == "HOTFIX" and moved["type"] == "no-deletes", moved
try:
    rs[str(ff["id"])].get()
    raise SystemExit("the old restriction is still there")
except stashy.errors.NotFoundException:
    pass
assert rs[str(moved["id"])].delete()
assert [x["id"] for x in rs.all()] == [r["id"]]

# A project's restrictions, and the lock-out rule: read-only on every branch needs an exempt
# administrator.
ps = s.projects["TP"].branch_permissions.restrictions
try:
    ps.create("*", restriction_type=RestrictionType.READ_ONLY)
    raise SystemExit("a restriction locking everyone out was accepted")
except GenericException as e:
    assert str(e).startswith("400:") and "every branch" in str(e), e
p = ps.create("*", users=["admin"], restriction_type=RestrictionType.READ_ONLY)
assert p["scope"]["type"] == "PROJECT" and [x["id"] for x in ps.all()] == [p["id"]], p
assert ps[str(p["id"])].delete()
assert list(ps.all()) == []
print("OK")
"#;

/// A push to `main` of TP/test as writer, with a new commit; stderr when refused.
fn push_to_main(t: &TestServer) -> Result<(), String> {
    let dir = t.dir("push-main");
    if !dir.join(".git").exists() {
        t.git_ok(&dir, &["clone", "-q", &t.url_as("writer", "scm/TP/test.git"), "."]);
    }
    t.commit(&dir, "pushed.txt", &format!("{:?}\n", std::time::SystemTime::now()));
    let out = t.git(&dir, &["push", "origin", "HEAD:main"]);
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

#[test]
fn stashy_manages_branch_restrictions_and_pushes_obey_them() {
    let t = server();
    run(&t, STASHY_BRANCH_PERMISSIONS);
    // What stashy left, pull-request-only on main, refuses a push that is not exempt.
    let err = push_to_main(&t).unwrap_err();
    assert!(err.contains("Branch refs/heads/main can only be modified through pull requests."), "{err}");
}

const ATLASSIAN_BRANCH_PERMISSIONS: &str = r#"
import sys
from atlassian import Bitbucket
from requests import HTTPError

root = sys.argv[1]
bb = Bitbucket(url=root, username="admin", password="admin-password")
bb.post("rest/api/1.0/admin/groups", params={"name": "leads"})

one = bb.set_branches_permissions("TP", matcher_type="branch", matcher_value="refs/heads/main", permission_type="read-only",
                                  repository_slug="test", except_users=["reader"], except_groups=["leads"])
assert one["type"] == "read-only" and one["matcher"]["id"] == "refs/heads/main", one
assert [u["slug"] for u in one["users"]] == ["reader"] and one["groups"] == ["leads"], one

# Several at once, as the library sends them (application/vnd.atl.bitbucket.bulk+json).
many = bb.set_branches_permissions("TP", repository_slug="test", multiple_permissions=[
    {"type": "no-deletes", "matcher": {"id": "develop", "type": {"id": "BRANCH"}}, "users": [], "groups": [], "accessKeys": []},
    {"type": "fast-forward-only", "matcher": {"id": "FEATURE", "type": {"id": "MODEL_CATEGORY"}}, "users": [], "groups": [], "accessKeys": []},
])
assert [m["type"] for m in many] == ["no-deletes", "fast-forward-only"], many
assert many[0]["matcher"]["id"] == "refs/heads/develop", many

page = bb.get_branches_permissions("TP", None, repository_slug="test")
assert page["size"] == 3 and page["isLastPage"], page
assert bb.get_branches_permissions("TP", one["id"], repository_slug="test")["id"] == one["id"]
assert sorted(r["id"] for r in bb.all_branches_permissions("TP", None, repository_slug="test")) == sorted([one["id"]] + [m["id"] for m in many])
for m in many:
    bb.delete_branch_permission("TP", m["id"], repository_slug="test")
assert [r["id"] for r in bb.all_branches_permissions("TP", None, repository_slug="test")] == [one["id"]]

# A project restriction; a bad one is a 400 with Bitbucket's error body.
p = bb.set_branches_permissions("TP", matcher_type="pattern", matcher_value="release/*", permission_type="pull-request-only")
assert p["scope"]["type"] == "PROJECT", p
assert [r["id"] for r in bb.all_branches_permissions("TP", None)] == [p["id"]]
try:
    bb.set_branches_permissions("TP", matcher_type="model_category", matcher_value="CHORE", permission_type="no-deletes")
    raise SystemExit("an unknown category was accepted")
except HTTPError as e:
    assert e.response.status_code == 400 and "CHORE" in str(e), e
bb.delete_branch_permission("TP", p["id"])
assert list(bb.all_branches_permissions("TP", None)) == []
print("OK")
"#;

#[test]
fn atlassian_python_api_manages_branch_restrictions_and_pushes_obey_them() {
    let t = server();
    run(&t, ATLASSIAN_BRANCH_PERMISSIONS);
    // What the script left, read-only on main exempting reader and `leads`, refuses writer.
    let err = push_to_main(&t).unwrap_err();
    assert!(err.contains("Branch refs/heads/main is read-only"), "{err}");
    let store = t.server.store();
    let repo = store.repo(&trove_store::Owner::parse("TP").unwrap(), &trove_store::RepoSlug::parse("test").unwrap()).unwrap().unwrap();
    assert_eq!(store.restrictions_in_force(&repo).unwrap().len(), 1);
}

const WEBHOOKS: &str = r#"
import sys
import stashy
from atlassian import Bitbucket

root = sys.argv[1]
s = stashy.connect(root, "admin", "admin-password")
hooks = s.projects["TP"].repos["test"].webhooks
h = hooks.create("stashy-hook", "http://192.0.2.10/hook", events=["repo:refs_changed", "pr:opened"])
assert h["name"] == "stashy-hook" and h["events"] == ["repo:refs_changed", "pr:opened"] and h["active"] is True, h
assert [x["id"] for x in hooks.list()] == [h["id"]]
assert hooks[str(h["id"])].get()["url"] == "http://192.0.2.10/hook"

bb = Bitbucket(url=root, username="admin", password="admin-password")
w = bb.create_webhook("TP", "test", "at-hook", ["pr:merged"], "http://192.0.2.10/at", True, secret="s3cret")
assert w["configuration"]["secret"] == "s3cret" and w["scopeType"] == "repository", w
assert [x["name"] for x in bb.get_webhooks("TP", "test", event="pr:merged")] == ["at-hook"]
assert bb.get_webhook("TP", "test", w["id"])["events"] == ["pr:merged"]
u = bb.update_webhook("TP", "test", w["id"], name="renamed", active=False)
assert u["name"] == "renamed" and u["active"] is False and u["configuration"]["secret"] == "s3cret", u
stats = list(bb.get_webhooks("TP", "test", statistics=True))
assert all("statistics" in x for x in stats), stats
bb.delete_webhook("TP", "test", w["id"])
assert [x["name"] for x in bb.get_webhooks("TP", "test")] == ["stashy-hook"]
try:
    bb.create_webhook("TP", "test", "bad", ["pr:merged"], "http://127.0.0.1:1/", True)
    raise SystemExit("a loopback webhook was created")
except Exception as e:
    assert "loopback" in str(e), e
print("OK")
"#;

#[test]
fn stashy_and_atlassian_python_api_manage_webhooks() {
    let t = server();
    run(&t, WEBHOOKS);
    let s = t.server.store();
    let repo = s.repo(&trove_store::Owner::parse("TP").unwrap(), &trove_store::RepoSlug::parse("test").unwrap()).unwrap().unwrap();
    let left: Vec<String> = s.webhooks(repo.project_id, Some(repo.id)).unwrap().into_iter().map(|w| w.hook.name).collect();
    assert_eq!(left, ["stashy-hook"]);
}

/// stashy's `build(sha).set/get` (the legacy build-status endpoint) and atlassian-python-api's
/// `get_associated_build_statuses` and Code Insights methods, against the server's real commits.
#[test]
fn stashy_and_atlassian_python_api_report_builds_and_code_insights() {
    let t = server();
    run(&t, BUILDS);
}

const BUILDS: &str = r#"
import sys
import stashy
from atlassian import Bitbucket
from requests import HTTPError

root = sys.argv[1]
s = stashy.connect(root, "writer", "writer-password")
commits = [c["id"] for c in s.projects["TP"].repos["test"].commits("main")]
sha = commits[0]

# stashy posts legacy statuses; a later one with the same key replaces the first.
assert s.build(sha).set("INPROGRESS", "ci", "CI", "https://ci.example/1")
assert s.build(sha).set("SUCCESSFUL", "ci", "CI", "https://ci.example/1", "green")
assert s.build(sha).set("FAILED", "lint", "Lint", "https://ci.example/2")
got = s.build(sha).get()
by_key = {b["key"]: b for b in got["values"]}
assert sorted(by_key) == ["ci", "lint"], got
assert by_key["ci"]["state"] == "SUCCESSFUL" and by_key["ci"]["description"] == "green", by_key

bb = Bitbucket(url=root, username="writer", password="writer-password")
statuses = bb.get_associated_build_statuses(sha)
assert sorted(v["state"] for v in statuses["values"]) == ["FAILED", "SUCCESSFUL"], statuses

# Code Insights: a report, its annotations, then gone with them.
bb.create_code_insights_report("TP", "test", sha, "sonar", "SonarQube", details="1 bug", result="FAIL",
                               data=[{"title": "Bugs", "type": "NUMBER", "value": 1}])
report = bb.get_code_insights_report("TP", "test", sha, "sonar")
assert report["title"] == "SonarQube" and report["result"] == "FAIL" and report["data"][0]["value"] == 1, report
bb.add_code_insights_annotations_to_report("TP", "test", sha, "sonar",
    [{"path": "README.md", "line": 1, "message": "Typo", "severity": "LOW", "externalId": "t1"}])
anns = bb.get(f"rest/insights/1.0/projects/TP/repos/test/commits/{sha}/reports/sonar/annotations")
assert anns["totalCount"] == 1 and anns["annotations"][0]["message"] == "Typo", anns
# Bad input is Bitbucket's 400.
try:
    bb.create_code_insights_report("TP", "test", sha, "bad", "x" * 451)
    raise SystemExit("a too long title was accepted")
except HTTPError as e:
    assert e.response.status_code == 400, e
bb.delete_code_insights_report("TP", "test", sha, "sonar")
try:
    bb.get_code_insights_report("TP", "test", sha, "sonar")
    raise SystemExit("a deleted report was found")
except HTTPError as e:
    assert e.response.status_code == 404, e
print("OK")
"#;

/// TP/test with `main` (file0..file2.txt) and `feature` one commit ahead: file1.txt changed,
/// notes.txt added.
fn history_fixture() -> TestServer {
    let t = TestServer::start_with(|c| c.context_path = Some(ContextPath::parse("/stash").unwrap()));
    let (dir, _) = t.seed("scm/TP/test.git", 3);
    t.git_ok(&dir, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(dir.join("notes.txt"), "notes\n").unwrap();
    t.git_ok(&dir, &["add", "notes.txt"]);
    t.commit(&dir, "file1.txt", "content 1 changed on feature\n");
    t.git_ok(&dir, &["push", "-q", "origin", "feature"]);
    t
}

const STASHY_HISTORY: &str = r#"
import sys, io, stashy
root = sys.argv[1]
s = stashy.connect(root, "reader", "reader-password")
repo = s.projects["TP"].repos["test"]
commits = list(repo.commits("main"))
newest, oldest = commits[0]["id"], commits[-1]["id"]
# A commit's changes (against its parent), and a range's.
assert [c["path"]["toString"] for c in repo.changes(newest)] == ["file2.txt"]
assert sorted(c["path"]["toString"] for c in repo.changes(newest, since=oldest)) == ["file1.txt", "file2.txt"]
assert all(c["type"] == "ADD" for c in repo.changes(newest, since=oldest))
# compare/diff: what feature brings into main.
d = repo.diff("feature", "main")
assert sorted((f["destination"] or {}).get("toString") for f in d["diffs"]) == ["file1.txt", "notes.txt"], d
seg = [s["type"] for s in d["diffs"][0]["hunks"][0]["segments"]]
assert "ADDED" in seg, d
# browse: the type, blame, and at.
assert repo.browse("file1.txt", type=True) == {"type": "FILE"}
assert repo.browse("", type=True) == {"type": "DIRECTORY"}
assert list(repo.browse("file1.txt", at="feature")) == [{"text": "content 1 changed on feature"}]
assert list(repo.browse("file1.txt", blame=True)) == [{"text": "content 1 of seed-scm-TP-test-git"}]
assert sorted(repo.files(at="feature")) == ["file0.txt", "file1.txt", "file2.txt", "notes.txt"]
print("OK")
"#;

#[test]
fn stashy_reads_changes_compare_diff_and_browse() {
    let t = history_fixture();
    run(&t, STASHY_HISTORY);
}

const ATLASSIAN_HISTORY: &str = r#"
import sys, io, zipfile, tarfile
from atlassian import Bitbucket
root = sys.argv[1]
bb = Bitbucket(url=root, username="reader", password="reader-password")
commits = list(bb.get_commits("TP", "test", hash_newest="main"))
newest, oldest = commits[0]["id"], commits[-1]["id"]
ch = bb.get_commit_changes("TP", "test", commit_id=newest)
assert [c["path"]["toString"] for c in ch["values"]] == ["file2.txt"], ch
# The changelog (compare/commits): feature's one commit, across pages of one.
log = list(bb.get_changelog("TP", "test", "feature", "main", limit=1))
assert len(log) == 1 and log[0]["message"] == "change file1.txt", log
log = list(bb.get_changelog("TP", "test", "feature", oldest, limit=1))
assert len(log) == 3, log
# get_diff reads compare/diff/{path}'s `diffs`.
diffs = bb.get_diff("TP", "test", "file1.txt", "feature", "main")
assert len(diffs) == 1 and diffs[0]["destination"]["toString"] == "file1.txt", diffs
lines = [l["line"] for s in diffs[0]["hunks"][0]["segments"] for l in s["lines"]]
assert lines == ["content 1 of seed-scm-TP-test-git", "content 1 changed on feature"], lines
# The pull requests of a commit: none yet.
assert bb.get_pull_requests_contain_commit("TP", "test", newest) == []
# The file list at a ref, paged.
files = sorted(bb.get_file_list("TP", "test", query="feature", limit=2))
assert files == ["file0.txt", "file1.txt", "file2.txt", "notes.txt"], files
# Archives, streamed to a file object.
buf = io.BytesIO()
bb.download_repo_archive("TP", "test", buf, at="feature", format="zip", prefix="repo")
z = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
assert z.testzip() is None
assert sorted(n for n in z.namelist() if not n.endswith("/")) == ["repo/file0.txt", "repo/file1.txt", "repo/file2.txt", "repo/notes.txt"], z.namelist()
buf = io.BytesIO()
bb.download_repo_archive("TP", "test", buf, format="tar.gz", path="file1.txt")
t = tarfile.open(fileobj=io.BytesIO(buf.getvalue()), mode="r:gz")
assert [m.name for m in t.getmembers() if m.isfile()] == ["file1.txt"]
assert t.extractfile("file1.txt").read() == b"content 1 of seed-scm-TP-test-git\n"
print("OK")
"#;

#[test]
fn atlassian_python_api_reads_changes_the_changelog_diffs_files_and_archives() {
    let t = history_fixture();
    run(&t, ATLASSIAN_HISTORY);
}

const STASHY_REFS: &str = r#"
import sys
import stashy
from stashy.errors import GenericException, NotFoundException

root = sys.argv[1]
s = stashy.connect(root, "writer", "writer-password")
repo = s.projects["TP"].repos["test"]
main = [b for b in repo.branches() if b["displayId"] == "main"][0]["latestCommit"]

assert repo.create_branch("topic", "main")
assert repo.create_branch("refs/heads/release/1", main)
names = sorted(b["displayId"] for b in repo.branches())
assert names == ["main", "release/1", "topic"], names
info = repo.get_branch_info(main)
assert sorted(b["displayId"] for b in info["values"]) == ["main", "release/1", "topic"], info

# stashy's tags are annotated, 'no message', forced.
assert repo.create_tag("v1", "main")
t = [t for t in repo.tags() if t["displayId"] == "v1"][0]
assert t["latestCommit"] == main and t["hash"] and t["hash"] != main, t
assert repo.create_tag("v1", "refs/heads/topic", message="again")
assert repo.delete_tag("v1")
assert [t["displayId"] for t in repo.tags()] == []
try:
    repo.delete_tag("v1")
    raise SystemExit("deleting a missing tag passed")
except NotFoundException:
    pass

assert repo.delete_branch("topic")
try:
    repo.delete_branch("main")
    raise SystemExit("deleting the default branch passed")
except GenericException as e:
    assert str(e).startswith("400:") and "default branch" in str(e), e
assert sorted(b["displayId"] for b in repo.branches()) == ["main", "release/1"]
print("OK")
"#;

/// `ref → id` of TP/test as `git ls-remote` sees them over HTTP.
fn remote_refs(t: &TestServer) -> Vec<String> {
    let out = t.git_ok(t.home.path(), &["ls-remote", &t.url_as("reader", "scm/TP/test.git")]);
    out.lines().filter_map(|l| l.split_once('\t')).map(|(_, r)| r.to_owned()).filter(|r| r != "HEAD").collect()
}

#[test]
fn stashy_creates_and_deletes_branches_and_tags_that_git_sees() {
    let t = server();
    run(&t, STASHY_REFS);
    assert_eq!(remote_refs(&t), ["refs/heads/main", "refs/heads/release/1"]);
}

const ATLASSIAN_REFS: &str = r#"
import sys
from atlassian import Bitbucket
from requests import HTTPError

root = sys.argv[1]
bb = Bitbucket(url=root, username="writer", password="writer-password")
main = bb.get_default_branch("TP", "test")["latestCommit"]

b = bb.create_branch("TP", "test", "topic", "main")
assert b["id"] == "refs/heads/topic" and b["latestCommit"] == main and b["isDefault"] is False, b
bb.create_branch("TP", "test", "doomed", main, message="to be deleted")
t = bb.set_tag("TP", "test", "v1", main, description="release 1")
assert t["id"] == "refs/tags/v1" and t["latestCommit"] == main and t["hash"], t
t = bb.set_tag("TP", "test", "light", "topic")
assert t["hash"] is None, t
try:
    bb.set_tag("TP", "test", "light", "topic")
    raise SystemExit("a second tag of the same name passed")
except HTTPError as e:
    assert e.response.status_code == 400, e

# A stale endPoint changes nothing; the right one deletes.
try:
    bb.delete_branch("TP", "test", "doomed", end_point="0" * 40)
    raise SystemExit("a stale endPoint deleted the branch")
except HTTPError as e:
    assert e.response.status_code == 409, e
assert "doomed" in [b["displayId"] for b in bb.get_branches("TP", "test")]
bb.delete_branch("TP", "test", "doomed", end_point=main)
bb.delete_tag("TP", "test", "light")
assert sorted(b["displayId"] for b in bb.get_branches("TP", "test")) == ["main", "topic"]
assert [t["displayId"] for t in bb.get_tags("TP", "test")] == ["v1"]
print("OK")
"#;

#[test]
fn atlassian_python_api_creates_and_deletes_branches_and_tags_that_git_sees() {
    let t = server();
    run(&t, ATLASSIAN_REFS);
    assert_eq!(remote_refs(&t), ["refs/heads/main", "refs/heads/topic", "refs/tags/v1", "refs/tags/v1^{}"]);
}

const ATLASSIAN_TOKENS: &str = r#"
import sys
from atlassian import Bitbucket
from requests import HTTPError

root = sys.argv[1]
bb = Bitbucket(url=root, username="writer", password="writer-password")
made = bb.put("rest/access-tokens/1.0/users/writer", data={"name": "ci", "permissions": ["PROJECT_READ", "REPO_WRITE"], "expiryDays": 30})
assert made["name"] == "ci" and made["expiryDays"] == 30 and made["permissions"] == ["PROJECT_WRITE", "REPO_WRITE"], made
secret, tid = made["token"], made["id"]
listed = bb.get("rest/access-tokens/1.0/users/writer")
# The fixture gave writer a token already.
assert [t["id"] for t in listed["values"]][-1] == tid and all("token" not in t for t in listed["values"]), listed

# The token as Bearer, through the client's own token support: it may write.
tb = Bitbucket(url=root, token=secret)
b = tb.create_branch("TP", "test", "by-token", "main")
assert b["id"] == "refs/heads/by-token", b
# It may not mint another token.
try:
    tb.put("rest/access-tokens/1.0/users/writer", data={"name": "more", "permissions": ["REPO_ADMIN"]})
    raise SystemExit("a token minted a token")
except HTTPError as e:
    assert e.response.status_code == 403, e
bb.delete("rest/access-tokens/1.0/users/writer/" + tid)
try:
    list(tb.get_branches("TP", "test"))
    raise SystemExit("a revoked token still works")
except HTTPError as e:
    assert e.response.status_code == 401, e
print("OK")
"#;

#[test]
fn atlassian_python_api_makes_uses_and_revokes_a_personal_access_token() {
    let t = server();
    run(&t, ATLASSIAN_TOKENS);
    assert!(remote_refs(&t).contains(&"refs/heads/by-token".to_owned()));
}

const CLIENTS_MOVE: &str = r#"
import sys
import stashy
from atlassian import Bitbucket

root = sys.argv[1]
s = stashy.connect(root, "admin", "admin-password")
bb = Bitbucket(url=root, username="admin", password="admin-password")
s.projects.create("NEW", "New home")

# atlassian-python-api: a description that stays, then a rename.
r = bb.update_repo("TP", "test", description="The test repository")
assert r["description"] == "The test repository", r
r = bb.update_repo("TP", "test", name="Renamed")
assert r["slug"] == "renamed" and r["description"] == "The test repository", r
# stashy: a move to another project with a new name.
r = s.projects["TP"].repos["renamed"].move("NEW", name="Moved")
assert r["slug"] == "moved" and r["project"]["key"] == "NEW" and r["description"] == "The test repository", r
# Old URLs still lead there: requests follows the REST redirect.
assert s.projects["TP"].repos["test"].get()["slug"] == "moved"
assert bb.get_repo("TP", "renamed")["project"]["key"] == "NEW"
print("OK")
"#;

#[test]
fn stashy_and_atlassian_rename_and_move_a_repository_and_git_follows_the_old_url() {
    let t = server();
    let tip = t.server_rev("TP", "test", "refs/heads/main").unwrap();
    run(&t, CLIENTS_MOVE);
    assert_eq!(t.server_rev("NEW", "moved", "refs/heads/main").as_deref(), Some(tip.as_str()));
    // git clones and pushes through the old URL: it follows the permanent redirect.
    t.server.store().grant_project(&crate::support::user("writer"), &trove_store::ProjectKey::parse("NEW").unwrap(), trove_store::Permission::Write).unwrap();
    let dir = t.dir("old-url");
    let old = t.url_as("writer", "scm/TP/test.git");
    let out = t.git(&dir, &["clone", &old, "."]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("redirecting to"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(t.git_ok(&dir, &["rev-parse", "HEAD"]), tip);
    let pushed = t.commit(&dir, "after-move.txt", "x\n");
    t.git_ok(&dir, &["push", "-q", "origin", "HEAD:main"]);
    assert_eq!(t.server_rev("NEW", "moved", "refs/heads/main"), Some(pushed));
}
