//! The web UI in a real browser: headless Chromium (Debian's `chromium`) driven by
//! `playwright-core` (`crates/server/tests/ui`), directly against the server on 127.0.0.1.
//! The same flow runs through `trove up`'s HTTPS gateway under `/stash` in the cli tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{TestServer, password};

pub fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui")
}

/// `node flow.js` with `env`; panics with its output unless every step passed. Fails (never
/// skips) when node, Chromium or playwright-core is missing, saying how to install them.
pub fn run_flow(env: &[(&str, String)]) {
    let dir = ui_dir();
    assert!(Path::new("/usr/bin/chromium").exists(), "/usr/bin/chromium is missing: apt-get install chromium (scripts/test does)");
    assert!(dir.join("node_modules/playwright-core").is_dir(), "playwright-core is missing: run `npm ci` in {} (scripts/test does)", dir.display());
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("flow.js")).current_dir(&dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run node ({e}): install nodejs and npm (scripts/test does)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "browser flow failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.lines().last().is_some_and(|l| l.ends_with(" passed, 0 failed")), "{stdout}");
    println!("{stdout}");
}

/// Pushes the repository the flow browses: README.md (with raw HTML that must not pass
/// through), src/main.rs, tag v1.0, and a branch `feature` with FEATURE.txt.
pub fn sample_repo(t: &TestServer) {
    let dir = t.dir("sample");
    t.git_ok(&dir, &["init", "-q", "-b", "main"]);
    std::fs::write(dir.join("README.md"), "# Hello from Trove\n\nRaw HTML stays text: <script>alert(1)</script>\n\n* [a link](javascript:alert(1))\n").unwrap();
    t.git_ok(&dir, &["add", "README.md"]);
    t.git_ok(&dir, &["commit", "-q", "-m", "Add a README"]);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/main.rs"), "fn main() {\n    let greeting = \"hello\";\n    println!(\"{greeting}\");\n}\n").unwrap();
    t.git_ok(&dir, &["add", "src/main.rs"]);
    t.git_ok(&dir, &["commit", "-q", "-m", "Say hello\n\nThe first program."]);
    t.git_ok(&dir, &["tag", "v1.0"]);
    t.git_ok(&dir, &["checkout", "-q", "-b", "feature"]);
    std::fs::write(dir.join("FEATURE.txt"), "only on the feature branch\n").unwrap();
    t.git_ok(&dir, &["add", "FEATURE.txt"]);
    t.git_ok(&dir, &["commit", "-q", "-m", "Start a feature"]);
    t.git_ok(&dir, &["checkout", "-q", "main"]);
    t.git_ok(&dir, &["push", "-q", &t.url_as("writer", "scm/TP/test.git"), "main", "feature", "v1.0"]);
}

#[test]
fn the_seeds_admin_flow_and_browsing_work_in_headless_chromium() {
    let t = TestServer::start();
    sample_repo(&t);
    run_flow(&[
        ("TROVE_ROOT", t.root.clone()),
        ("TROVE_ADMIN", "admin".into()),
        ("TROVE_ADMIN_PASSWORD", password("admin")),
        ("TROVE_REPO", "TP/test".into()),
        ("TROVE_OTHER_BASE", "https://git.example.com:8443/bitbucket".into()),
    ]);
    // What the browser saved is what the server uses now.
    assert_eq!(t.server.store().base_url().unwrap().map(|b| b.as_str().to_owned()), Some(t.root.clone()));
}
