//! dulwich, a second and independent git implementation, clones from and pushes to the server.
//!
//! The python comes from `TROVE_TEST_PYTHON` or `<workspace>/.venv/bin/python` (CI builds that
//! venv from .ci/requirements.txt). A missing python or dulwich fails the test: a skipped
//! interoperability test is a test nobody notices is gone.

use std::path::PathBuf;
use std::process::Command;

use crate::support::{TestServer, password};

pub(crate) fn python() -> PathBuf {
    let p = match std::env::var_os("TROVE_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
    };
    assert!(
        p.exists(),
        "python for the dulwich tests not found at {}; create it with `python3 -m venv .venv && .venv/bin/pip install -r .ci/requirements.txt` \
         in the workspace, or set TROVE_TEST_PYTHON",
        p.display()
    );
    p
}

const SCRIPT: &str = r#"
import os, sys
from dulwich import porcelain
from dulwich.repo import Repo

url, user, pw, target = sys.argv[1:5]
repo = porcelain.clone(url, target, username=user, password=pw, checkout=True)
head_before = repo.head().decode()
with open(os.path.join(target, "from-dulwich.txt"), "w") as f:
    f.write("written by dulwich\n")
porcelain.add(repo, paths=[os.path.join(target, "from-dulwich.txt")])
sha = porcelain.commit(repo, message=b"commit from dulwich",
                       author=b"Dul Wich <dulwich@example.com>",
                       committer=b"Dul Wich <dulwich@example.com>")
porcelain.push(repo, url, b"refs/heads/main:refs/heads/main", username=user, password=pw)
porcelain.push(repo, url, b"refs/heads/main:refs/heads/dulwich-branch", username=user, password=pw)
print(head_before)
print(sha.decode() if isinstance(sha, bytes) else sha)
"#;

#[test]
fn dulwich_clones_and_pushes() {
    let py = python();
    let check = Command::new(&py).args(["-c", "import dulwich"]).output().unwrap();
    assert!(check.status.success(), "dulwich is not installed for {}: {}", py.display(), String::from_utf8_lossy(&check.stderr));

    let t = TestServer::start();
    let (_, tip) = t.seed("scm/TP/test.git", 2);
    let target = t.dir("dulwich").join("clone");
    let out = Command::new(&py)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", t.home.path())
        .args(["-c", SCRIPT, &t.url(None, "scm/TP/test.git"), "writer", &password("writer"), target.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "dulwich failed: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some(tip.as_str()), "dulwich cloned the right history");
    let pushed = lines.next().unwrap().to_owned();
    assert_eq!(t.server_rev("TP", "test", "refs/heads/main").unwrap(), pushed);
    assert_eq!(t.server_rev("TP", "test", "refs/heads/dulwich-branch").unwrap(), pushed);
    // And real git sees dulwich's commit.
    let dir = t.dir("git-after-dulwich");
    t.git_ok(&dir, &["clone", "-q", &t.url_as("reader", "scm/TP/test.git"), "c"]);
    assert_eq!(std::fs::read_to_string(dir.join("c/from-dulwich.txt")).unwrap(), "written by dulwich\n");
    t.fsck("TP", "test");
}

#[test]
fn dulwich_is_refused_a_push_without_write_permission() {
    let py = python();
    let t = TestServer::start();
    t.seed("scm/TP/test.git", 1);
    let target = t.dir("dulwich-ro").join("clone");
    let out = Command::new(&py)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", t.home.path())
        .args(["-c", SCRIPT, &t.url(None, "scm/TP/test.git"), "reader", &password("reader"), target.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a reader's push must fail");
    assert!(target.join(".git").exists(), "but the clone worked");
    assert_eq!(t.server_rev("TP", "test", "refs/heads/dulwich-branch"), None);
}
