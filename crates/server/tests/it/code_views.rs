//! Reading code in headless Chromium (issue 25): the highlighted file view with line anchors,
//! blame, the file's history across a rename, a rendered Markdown file and image previews, each
//! checked for CSP violations, axe-core findings and a 390 px screen (`tests/ui/code.js`).

use std::path::{Path, PathBuf};

use crate::support::{TestServer, password};
use crate::web_ui::run_script;

/// A 1×1 PNG.
const PNG: &[u8] = b"\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\x0d\x49\x44\x41\x54\x78\xda\x63\xfc\xcf\xc0\x50\x0f\x00\x04\x85\x01\x80\x84\xa9\x8c\x21\x00\x00\x00\x00\x49\x45\x4e\x44\xae\x42\x60\x82";

/// `main`: hello.rs ("Say hello"), renamed to src/main.rs, changed ("Greet louder"; 12 lines,
/// the last one long), then docs: guide.md linking setup.md, logo.png and icon.svg.
fn code_repo(t: &TestServer) {
    let dir = t.dir("code-sample");
    t.git_ok(&dir, &["init", "-q", "-b", "main"]);
    let body = |greeting: &str| {
        format!(
            "// Greets.\nfn main() {{\n    let greeting = \"{greeting}\";\n    println!(\"{{greeting}}\");\n}}\n\nstruct Config {{\n    loud: bool,\n    times: u32,\n}}\n\nconst BANNER: &str = \"{}\";\n",
            "=".repeat(400)
        )
    };
    std::fs::write(dir.join("hello.rs"), body("hello")).unwrap();
    t.git_ok(&dir, &["add", "."]);
    t.git_ok(&dir, &["commit", "-q", "-m", "Say hello"]);
    std::fs::create_dir_all(dir.join("src")).unwrap();
    t.git_ok(&dir, &["mv", "hello.rs", "src/main.rs"]);
    t.git_ok(&dir, &["commit", "-q", "-m", "Rename hello.rs to src/main.rs"]);
    std::fs::write(dir.join("src/main.rs"), body("HELLO")).unwrap();
    t.git_ok(&dir, &["commit", "-q", "-am", "Greet louder"]);
    std::fs::create_dir_all(dir.join("docs")).unwrap();
    std::fs::write(dir.join("docs/guide.md"), "# Guide\n\nRead [the setup](setup.md) first.\n\n```rust\nfn main() {}\n```\n").unwrap();
    std::fs::write(dir.join("docs/setup.md"), "# Setup\n").unwrap();
    std::fs::write(dir.join("docs/logo.png"), PNG).unwrap();
    std::fs::write(
        dir.join("docs/icon.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"40\" height=\"40\"><circle cx=\"20\" cy=\"20\" r=\"18\" fill=\"#0052cc\"/><script>alert(1)</script></svg>\n",
    )
    .unwrap();
    t.git_ok(&dir, &["add", "."]);
    t.git_ok(&dir, &["commit", "-q", "-m", "Add docs"]);
    t.git_ok(&dir, &["push", "-q", &t.url_as("writer", "scm/TP/test.git"), "main"]);
}

/// `TROVE_SCREENSHOTS`, `docs/screenshots` with `TROVE_UPDATE_SCREENSHOTS`, else a directory of
/// the test's own (taken anyway, and thrown away).
fn screenshots(t: &TestServer) -> PathBuf {
    if let Some(dir) = std::env::var_os("TROVE_SCREENSHOTS") {
        PathBuf::from(dir)
    } else if std::env::var_os("TROVE_UPDATE_SCREENSHOTS").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
    } else {
        t.dir("screenshots")
    }
}

#[test]
fn highlighting_line_ranges_blame_history_markdown_and_images_work_in_headless_chromium() {
    let t = TestServer::start();
    code_repo(&t);
    let shots = screenshots(&t);
    std::fs::create_dir_all(&shots).unwrap();
    run_script(
        "code.js",
        &[
            ("TROVE_ROOT", t.root.clone()),
            ("TROVE_REPO", "TP/test".into()),
            ("TROVE_ADMIN", "admin".into()),
            ("TROVE_ADMIN_PASSWORD", password("admin")),
            ("TROVE_SCREENSHOTS", shots.to_string_lossy().into_owned()),
        ],
    );
    for name in ["file-view.png", "blame.png", "file-history.png", "markdown-view.png", "image-preview.png"] {
        assert!(shots.join(name).is_file(), "{name} was taken");
    }
}
