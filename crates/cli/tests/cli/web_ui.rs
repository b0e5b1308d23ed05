//! The web UI as the seed's administrator meets it: `trove up --public-url
//! https://localhost:PORT/stash`, headless Chromium trusting Trove's local CA (through an NSS
//! database in its HOME, as a person would import it), every page through the HTTPS gateway
//! under `/stash`. The same flow (`crates/server/tests/ui/flow.js`) also runs directly against
//! the server in the server's tests. This run saves the screenshots in `docs/screenshots/` when `TROVE_UPDATE_SCREENSHOTS` is set.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::*;

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/tests/ui")
}

/// An NSS database under `home` that trusts `ca` for TLS servers: what Chromium on Linux
/// reads from `~/.pki/nssdb`.
fn trust_ca_in_nssdb(home: &Path, ca: &Path) {
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db_arg = format!("sql:{}", db.display());
    let run = |args: &[&str]| {
        let o = Command::new("certutil")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run certutil ({e}): apt-get install libnss3-tools (scripts/test does)"));
        ok(&o, &format!("certutil {args:?}"));
    };
    run(&["-N", "-d", &db_arg, "--empty-password"]);
    run(&["-A", "-d", &db_arg, "-n", "Trove local CA", "-t", "C,,", "-i", &path_str(ca)]);
}

#[test]
fn the_web_ui_works_through_the_https_gateway_under_stash_in_headless_chromium() {
    let dir = ui_dir();
    assert!(Path::new("/usr/bin/chromium").exists(), "/usr/bin/chromium is missing: apt-get install chromium (scripts/test does)");
    assert!(dir.join("node_modules/playwright-core").is_dir(), "playwright-core is missing: run `npm ci` in {} (scripts/test does)", dir.display());
    let work = tmp();
    let home = tmp();
    let chrome_home = tmp();
    let (https, server) = (free_port(), free_port());
    let public = format!("https://localhost:{https}/stash");
    let data = work.path().join("d");
    let password = "admin-web-password-1";
    let log = std::fs::File::create(work.path().join("up.log")).unwrap();
    let mut cmd = trove();
    cmd.current_dir(work.path())
        .args(["up", "--data", &path_str(&data), "--public-url", &public, "--https", &format!("127.0.0.1:{https}"), "--http", "off"])
        .args(["--ssh", &format!("127.0.0.1:{}", crate::free_port())])
        .args(["--server", &format!("127.0.0.1:{server}")])
        .env("TROVE_ADMIN_PASSWORD", password)
        .stdout(Stdio::null())
        .stderr(log);
    let mut up = Guard(Some(cmd.spawn().unwrap()));
    wait_port(https, up.child(), "trove up");
    let admin = |args: &[&str]| {
        let o = trove().args(["admin", "--data", &path_str(&data)]).args(args).output().unwrap();
        ok(&o, &format!("trove admin {args:?}"));
    };
    admin(&["project", "add", "TP"]);
    admin(&["repo", "add", "TP/test"]);

    // The repository the flow browses, pushed with real git over HTTPS, verifying with the CA.
    let ca = data.join("tls/ca.crt");
    let wc = work.path().join("sample");
    std::fs::create_dir_all(wc.join("src")).unwrap();
    let g = |args: &[&str]| ok(&git(&wc, home.path(), args), &format!("git {args:?}"));
    g(&["init", "-q", "-b", "main"]);
    std::fs::write(wc.join("README.md"), "# Hello from Trove\n\nRaw HTML stays text: <script>alert(1)</script>\n").unwrap();
    g(&["add", "README.md"]);
    g(&["commit", "-q", "-m", "Add a README"]);
    std::fs::write(wc.join("src/main.rs"), "fn main() {\n    let greeting = \"hello\";\n    println!(\"{greeting}\");\n}\n").unwrap();
    g(&["add", "src/main.rs"]);
    g(&["commit", "-q", "-m", "Say hello"]);
    g(&["tag", "v1.0"]);
    g(&["checkout", "-q", "-b", "feature"]);
    std::fs::write(wc.join("FEATURE.txt"), "only on the feature branch\n").unwrap();
    g(&["add", "FEATURE.txt"]);
    g(&["commit", "-q", "-m", "Start a feature"]);
    g(&["checkout", "-q", "main"]);
    let url = format!("https://admin:{password}@localhost:{https}/stash/scm/tp/test.git");
    g(&["-c", &format!("http.sslCAInfo={}", ca.display()), "push", "-q", &url, "main", "feature", "v1.0"]);

    trust_ca_in_nssdb(chrome_home.path(), &ca);
    // The README's screenshots are refreshed on request only, so a test run leaves the tree
    // clean: TROVE_UPDATE_SCREENSHOTS=1 scripts/test.
    let shots = if std::env::var_os("TROVE_UPDATE_SCREENSHOTS").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
    } else {
        work.path().join("screenshots")
    };
    let out = Command::new("node")
        .arg(dir.join("flow.js"))
        .current_dir(&dir)
        .env("TROVE_ROOT", &public)
        .env("TROVE_ADMIN", "admin")
        .env("TROVE_ADMIN_PASSWORD", password)
        .env("TROVE_REPO", "TP/test")
        .env("TROVE_OTHER_BASE", "http://trove.internal:7990/stash")
        .env("TROVE_CHROME_HOME", chrome_home.path())
        .env("TROVE_SCREENSHOTS", &shots)
        .output()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): install nodejs and npm (scripts/test does)"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let server_log = std::fs::read_to_string(work.path().join("up.log")).unwrap_or_default();
    let tail: String = server_log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(
        out.status.success(),
        "browser flow failed ({}):\n{stdout}\n{}\n--- trove up log (tail) ---\n{tail}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.lines().last().is_some_and(|l| l.ends_with(" passed, 0 failed")), "{stdout}");
    println!("{stdout}");
    // The base URL the browser saved back is the public one, and git agrees.
    let o = git(work.path(), home.path(), &["-c", &format!("http.sslCAInfo={}", ca.display()), "ls-remote", &url]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("refs/heads/feature"), "{}", String::from_utf8_lossy(&o.stderr));
    up.signal_and_wait("TERM");
}
