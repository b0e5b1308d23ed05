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

fn python() -> PathBuf {
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
fn run(t: &TestServer, script: &str) -> String {
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
