//! The REST API behind the HTTPS gateway under `/stash`, as the seed's set-up has it: `trove up
//! --public-url https://localhost:PORT/stash`, atlassian-python-api and stashy verifying TLS
//! with Trove's local CA, and git cloning from the clone URL the API hands out.
//!
//! The python comes from `TROVE_TEST_PYTHON` or `<workspace>/.venv/bin/python`; a missing python
//! or package fails the test.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::*;

fn python() -> PathBuf {
    let p = match std::env::var_os("TROVE_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
    };
    assert!(p.exists(), "python not found at {}; run `python3 -m venv .venv && .venv/bin/pip install -r .ci/requirements.txt`", p.display());
    p
}

const SCRIPT: &str = r#"
import sys
from atlassian import Bitbucket
import stashy

public, password, ca = sys.argv[1:4]
host = public.split("://", 1)[1]
bb = Bitbucket(url=public, username="admin", password=password, verify_ssl=ca)
assert bb.get("rest/api/1.0/application-properties")["displayName"] == "Bitbucket"
bb.create_project("TP", "Test Project")
r = bb.create_repo("TP", "Over TLS")
assert r["links"]["clone"][0] == {"href": "https://admin@" + host + "/scm/tp/over-tls.git", "name": "http"}, r["links"]
# trove up serves SSH too: its clone URL is on the public host, at the SSH port.
assert [l["name"] for l in r["links"]["clone"]] == ["http", "ssh"], r["links"]
ssh = r["links"]["clone"][1]["href"]
assert ssh.startswith("ssh://git@" + host.split(":")[0] + ":") and ssh.endswith("/tp/over-tls.git"), ssh
assert r["links"]["self"] == [{"href": public + "/projects/TP/repos/over-tls/browse"}], r["links"]
assert r["project"]["links"]["self"][0]["href"] == public + "/projects/TP"
s = stashy.connect(public, "admin", password, verify=ca)
assert [p["key"] for p in s.projects.list()] == ["TP"]
print(r["links"]["clone"][0]["href"])
print("OK")
"#;

#[test]
fn rest_links_are_the_public_https_urls_behind_the_gateway_and_git_clones_from_them() {
    let py = python();
    let work = tmp();
    let home = tmp();
    let (https, server) = (free_port(), free_port());
    let public = format!("https://localhost:{https}/stash");
    let data = work.path().join("d");
    let password = "admin-api-password-1";
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
    let ca = data.join("tls/ca.crt");

    let out = Command::new(&py)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("NO_PROXY", "*")
        .args(["-c", SCRIPT, &public, password, &path_str(&ca)])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let log = std::fs::read_to_string(work.path().join("up.log")).unwrap_or_default();
    assert!(out.status.success(), "python failed:\n{stdout}\n{}\n--- trove up log ---\n{log}", String::from_utf8_lossy(&out.stderr));
    let mut lines = stdout.lines();
    let href = lines.next().unwrap().to_owned();
    assert_eq!(lines.next(), Some("OK"));

    // The clone URL the API gave works as it is, with only the password added.
    let url = href.replacen("https://admin@", &format!("https://admin:{password}@"), 1);
    let o = git(work.path(), home.path(), &["-c", &format!("http.sslCAInfo={}", ca.display()), "clone", "-q", &url, "cloned"]);
    ok(&o, "git clone from the API's clone URL");
    assert!(work.path().join("cloned/.git").is_dir());
    up.signal_and_wait("TERM");
}
