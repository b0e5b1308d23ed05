//! `trove doctor` against a real server and gateway: healthy first, then one thing broken at a
//! time, and exactly that check must fail, with its fix.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::*;

struct Setup {
    _dir: tempfile::TempDir,
    data: PathBuf,
    ca: PathBuf,
    tls: PathBuf,
    https: u16,
    server: u16,
    /// `trove server --ssh` on this port.
    ssh: u16,
    _server: Guard,
    _gateway: Option<Guard>,
    gw_conf: PathBuf,
}

const PW: &str = "doctor-password-1";

fn admin(data: &Path, args: &[&str]) {
    let mut c = trove();
    c.args(["admin", "--data", data.to_str().unwrap()]).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut ch = c.spawn().unwrap();
    std::io::Write::write_all(ch.stdin.as_mut().unwrap(), format!("{PW}\n").as_bytes()).unwrap();
    ok(&ch.wait_with_output().unwrap(), &format!("trove admin {args:?}"));
}

/// Server (context path `server_ctx`) and its data; certificates from a Trove CA.
fn setup(server_ctx: &str, public_ctx: &str) -> Setup {
    let dir = tmp();
    let data = dir.path().join("data");
    let (https, server, ssh) = (free_port(), free_port(), free_port());
    admin(&data, &["init"]);
    admin(&data, &["user", "add", "admin", "--admin", "--password-stdin"]);
    admin(&data, &["project", "add", "TP"]);
    admin(&data, &["repo", "add", "TP/test"]);
    admin(&data, &["settings", "base-url", &format!("https://localhost:{https}{public_ctx}")]);
    if !server_ctx.is_empty() {
        admin(&data, &["settings", "context-path", server_ctx]);
    }
    let tls = dir.path().join("tls");
    ok(&trove().args(["cert", "ca", "--out", tls.to_str().unwrap()]).output().unwrap(), "cert ca");
    ok(
        &trove()
            .args(["cert", "issue", "--ca", tls.to_str().unwrap(), "--host", "localhost", "--ip", "127.0.0.1", "--out", tls.to_str().unwrap()])
            .output()
            .unwrap(),
        "cert issue",
    );
    let mut s = Guard(Some(
        trove()
            .args(["server", "--data", data.to_str().unwrap(), "--listen", &format!("127.0.0.1:{server}"), "--ssh", &format!("127.0.0.1:{ssh}")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    wait_port(server, s.child(), "trove server");
    wait_port(ssh, s.child(), "trove server's ssh");
    let gw_conf = dir.path().join("gateway.conf");
    Setup { ca: tls.join("ca.crt"), tls, data, https, server, ssh, _server: s, _gateway: None, gw_conf, _dir: dir }
}

impl Setup {
    /// An Apache-format gateway: `public_ctx` → the server's `server_ctx`, plus `extra` lines.
    fn gateway(&mut self, public_ctx: &str, server_ctx: &str, reverse: bool, extra: &str) {
        let p = if public_ctx.is_empty() { "/" } else { public_ctx };
        let t = if server_ctx.is_empty() && public_ctx.is_empty() {
            format!("http://127.0.0.1:{}/", self.server)
        } else if server_ctx.is_empty() {
            format!("http://127.0.0.1:{}", self.server)
        } else {
            format!("http://127.0.0.1:{}{server_ctx}", self.server)
        };
        let conf = format!(
            "Listen 127.0.0.1:{https}\n<VirtualHost *:{https}>\nServerName localhost\nSSLEngine on\nSSLCertificateFile {crt}\nSSLCertificateKeyFile {key}\nProxyPass {p} {t}\n{rev}{extra}</VirtualHost>\n",
            https = self.https,
            crt = self.tls.join("server.crt").display(),
            key = self.tls.join("server.key").display(),
            rev = if reverse { format!("ProxyPassReverse {p} {t}\n") } else { String::new() },
        );
        std::fs::write(&self.gw_conf, conf).unwrap();
        let mut g =
            Guard(Some(trove().args(["gateway", "--config", self.gw_conf.to_str().unwrap()]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()));
        wait_port(self.https, g.child(), "trove gateway");
        self._gateway = Some(g);
    }

    fn doctor(&self, public_ctx: &str, server_ctx: &str, with_repo: bool) -> (bool, Vec<serde_json::Value>) {
        let mut c = trove();
        c.args([
            "doctor",
            "--json",
            "--url",
            &format!("https://localhost:{}{public_ctx}", self.https),
            "--server",
            &format!("http://127.0.0.1:{}{server_ctx}", self.server),
        ])
        .args(["--ca", self.ca.to_str().unwrap(), "--gateway-config", self.gw_conf.to_str().unwrap()])
        .args(["--ssh", &format!("127.0.0.1:{}", self.ssh)])
        .env("TROVE_PASSWORD", PW);
        if with_repo {
            c.args(["--user", "admin", "--repo", "TP/test"]);
        }
        let out = c.output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
        assert_eq!(out.status.success(), v["ok"].as_bool().unwrap(), "exit code follows the result");
        (v["ok"].as_bool().unwrap(), v["checks"].as_array().unwrap().clone())
    }
}

fn failed(checks: &[serde_json::Value]) -> Vec<String> {
    checks.iter().filter(|c| c["outcome"] == "fail").map(|c| c["name"].as_str().unwrap().to_string()).collect()
}

fn fix_of(checks: &[serde_json::Value], name: &str) -> String {
    checks.iter().find(|c| c["name"] == name).and_then(|c| c["fix"].as_str()).unwrap_or("").to_string()
}

#[test]
fn a_healthy_setup_passes_every_check() {
    let mut s = setup("/stash", "/stash");
    s.gateway("/stash", "/stash", true, "");
    let (ok, checks) = s.doctor("/stash", "/stash", true);
    assert!(ok, "{checks:#?}");
    // "ssh": the listener trove up started, presenting the host keys of the data directory.
    for name in ["server", "proxy", "base-url", "context-path", "redirect", "proxy-reverse", "certificate", "caching", "git", "ssh"] {
        assert!(checks.iter().any(|c| c["name"] == name && c["outcome"] == "pass"), "{name} did not pass: {checks:#?}");
    }
}

#[test]
fn a_wrong_base_url_fails_the_base_url_check_and_the_redirects_it_makes() {
    let mut s = setup("/stash", "/stash");
    s.gateway("/stash", "/stash", true, "");
    // Changed while the server runs: it is in force at once, so the server's redirects follow
    // it too.
    admin(&s.data, &["settings", "base-url", "https://wrong.example:9999/stash"]);
    let mut c = trove();
    c.args([
        "doctor",
        "--json",
        "--data",
        s.data.to_str().unwrap(),
        "--url",
        &format!("https://localhost:{}/stash", s.https),
        "--server",
        &format!("http://127.0.0.1:{}/stash", s.server),
    ])
    .args(["--ca", s.ca.to_str().unwrap(), "--gateway-config", s.gw_conf.to_str().unwrap(), "--user", "admin", "--repo", "TP/test"])
    .env("TROVE_PASSWORD", PW);
    let out = c.output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(failed(checks), ["base-url", "redirect"], "{checks:#?}");
    assert!(fix_of(checks, "base-url").contains(&format!("settings base-url https://localhost:{}/stash", s.https)));
    assert!(!fix_of(checks, "base-url").contains("restart"), "a base URL needs no restart any more");
}

#[test]
fn a_context_path_only_the_proxy_has_fails_only_the_context_path_check() {
    // The proxy serves /stash but hands requests to a server living at the root.
    let mut s = setup("", "/stash");
    s.gateway("/stash", "", true, "");
    let (ok, checks) = s.doctor("/stash", "", true);
    assert!(!ok);
    assert_eq!(failed(&checks), ["context-path"], "{checks:#?}");
    assert!(fix_of(&checks, "context-path").contains("context-path /stash"));
}

#[test]
fn a_missing_proxypassreverse_fails_only_that_check() {
    let mut s = setup("/stash", "/stash");
    s.gateway("/stash", "/stash", false, "");
    let (_, checks) = s.doctor("/stash", "/stash", true);
    assert_eq!(failed(&checks), ["proxy-reverse"], "{checks:#?}");
    assert!(fix_of(&checks, "proxy-reverse").contains("ProxyPassReverse"));
}

#[test]
fn a_caching_header_fails_only_the_caching_check() {
    let mut s = setup("/stash", "/stash");
    s.gateway("/stash", "/stash", true, "Header set Cache-Control \"public, max-age=3600\"\n");
    let (_, checks) = s.doctor("/stash", "/stash", true);
    assert_eq!(failed(&checks), ["caching"], "{checks:#?}");
    assert!(fix_of(&checks, "caching").contains("mod_cache"));
}

#[test]
fn an_expired_certificate_fails_only_the_certificate_check() {
    let mut s = setup("/stash", "/stash");
    // An expired leaf from a CA of the test's own.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(vec![]).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let leaf = p.signed_by(&leaf_key, &rcgen::Issuer::from_params(&ca_params, &ca_key)).unwrap();
    std::fs::write(s.tls.join("server.crt"), leaf.pem()).unwrap();
    std::fs::write(s.tls.join("server.key"), leaf_key.serialize_pem()).unwrap();
    std::fs::write(&s.ca, ca.pem()).unwrap();
    s.gateway("/stash", "/stash", true, "");
    // Without --repo: git itself would refuse the expired certificate too.
    let (_, checks) = s.doctor("/stash", "/stash", false);
    assert_eq!(failed(&checks), ["certificate"], "{checks:#?}");
    let detail = checks.iter().find(|c| c["name"] == "certificate").unwrap()["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("expired"), "{detail}");
    assert!(fix_of(&checks, "certificate").contains("renew"));
}

/// `trove doctor ARGS` in `cwd` with the test password; returns (ok, checks).
fn run_doctor(cwd: &Path, args: &[&str]) -> (bool, Vec<serde_json::Value>) {
    let out = trove().current_dir(cwd).arg("doctor").arg("--json").args(args).env("TROVE_PASSWORD", PW).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
    assert_eq!(out.status.success(), v["ok"].as_bool().unwrap(), "exit code follows the result");
    (v["ok"].as_bool().unwrap(), v["checks"].as_array().unwrap().clone())
}

fn check<'a>(checks: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    checks.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no {name} check: {checks:#?}"))
}

fn detail_of(checks: &[serde_json::Value], name: &str) -> String {
    check(checks, name)["detail"].as_str().unwrap_or("").to_string()
}

/// A `trove up` in `cwd` (data in `cwd/trove-data` unless `extra` has --data), on free ports,
/// no plain-HTTP listener, the admin password `PW`.
struct Up {
    guard: Guard,
    https: u16,
    server: u16,
}

fn start_up(cwd: &Path, extra: &[&str], https: u16, server: u16) -> Up {
    let mut g = Guard(Some(
        trove()
            .current_dir(cwd)
            .args(["up", "--https", &format!("127.0.0.1:{https}"), "--server", &format!("127.0.0.1:{server}"), "--http", "off"])
            .args(["--ssh", &format!("127.0.0.1:{}", crate::free_port())])
            .args(extra)
            .env("TROVE_ADMIN_PASSWORD", PW)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    wait_port(https, g.child(), "trove up");
    wait_port(server, g.child(), "trove up's server");
    // The ports are bound before `trove up` commits its settings; its first answer comes after.
    wait_answer(server);
    Up { guard: g, https, server }
}

/// Waits until `GET /status` on the port answers at all.
fn wait_answer(port: u16) {
    use std::io::{Read as _, Write as _};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let _ = write!(s, "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            let mut buf = [0u8; 12];
            if s.read(&mut buf).is_ok_and(|n| n >= 12) {
                return;
            }
        }
        assert!(std::time::Instant::now() < deadline, "trove up never answered on {port}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn the_context_path_check_fails_when_the_server_serves_another_one() {
    // The server lives under /other; the proxy and both URLs given to the doctor say /stash.
    let mut s = setup("/other", "/stash");
    s.gateway("/stash", "/stash", true, "");
    let (ok, checks) = s.doctor("/stash", "/stash", true);
    assert!(!ok);
    assert_eq!(check(&checks, "context-path")["outcome"], "fail", "{checks:#?}");
    assert!(detail_of(&checks, "context-path").contains("the server lives under '/other'"), "{checks:#?}");
    assert!(fix_of(&checks, "context-path").contains("context-path /stash"), "{checks:#?}");
}

#[test]
fn a_repo_given_that_makes_no_redirect_is_named_not_asked_for() {
    // At the root only a repository's URL makes the server redirect; this one does not exist.
    let mut s = setup("", "");
    s.gateway("", "", true, "");
    let (public, server) = (format!("https://localhost:{}", s.https), format!("http://127.0.0.1:{}", s.server));
    let dir = s.data.clone();
    let args = ["--url", &public, "--server", &server, "--ca", s.ca.to_str().unwrap(), "--user", "admin", "--repo", "TP/nope"];
    let (_, checks) = run_doctor(&dir, &args);
    for name in ["redirect", "base-url"] {
        let d = detail_of(&checks, name);
        assert!(!d.contains("give --repo"), "{name}: {checks:#?}");
    }
    assert!(detail_of(&checks, "redirect").contains("/scm/tp/nope.git answered 404"), "{checks:#?}");
    assert!(fix_of(&checks, "redirect").contains("--repo TP/nope"), "{checks:#?}");
}

#[test]
fn a_404_for_the_repository_is_not_a_caching_failure() {
    let mut s = setup("/stash", "/stash");
    s.gateway("/stash", "/stash", true, "");
    let (public, server) = (format!("https://localhost:{}/stash", s.https), format!("http://127.0.0.1:{}/stash", s.server));
    let args = ["--url", &public, "--server", &server, "--ca", s.ca.to_str().unwrap(), "--user", "admin", "--repo", "TP/nope"];
    let (_, checks) = run_doctor(&s.data, &args);
    // Only git fails, with the fix that helps; caching was not checked, and says why.
    assert_eq!(failed(&checks), ["git"], "{checks:#?}");
    assert!(fix_of(&checks, "git").contains("--repo TP/nope"), "{checks:#?}");
    assert_eq!(check(&checks, "caching")["outcome"], "skip", "{checks:#?}");
    assert!(detail_of(&checks, "caching").contains("answered 404"), "{checks:#?}");
}

#[test]
fn with_trove_up_stopped_one_failure_says_nothing_answers_and_how_to_start_it() {
    let dir = tmp();
    let data = dir.path().join("d");
    let mut up = start_up(dir.path(), &["--data", data.to_str().unwrap()], free_port(), free_port());
    up.guard.signal_and_wait("TERM");
    let (ok, checks) = run_doctor(dir.path(), &["--data", data.to_str().unwrap(), "--user", "admin", "--repo", "TP/test"]);
    assert!(!ok);
    assert_eq!(checks.len(), 1, "one check, not one failure per check: {checks:#?}");
    assert_eq!(failed(&checks), ["server"]);
    let d = detail_of(&checks, "server");
    assert!(d.contains(&format!("nothing answers at 127.0.0.1:{}", up.server)) && d.contains(&format!("localhost:{}", up.https)), "{d}");
    assert_eq!(fix_of(&checks, "server"), format!("start it with: trove up --data {}", data.display()));
}

#[test]
fn with_server_and_gateway_stopped_one_failure_names_the_commands_that_start_them() {
    let mut s = setup("/stash", "/stash");
    s.gateway("/stash", "/stash", true, "");
    s._server.signal_and_wait("TERM");
    s._gateway.as_mut().unwrap().signal_and_wait("TERM");
    let (ok, checks) = s.doctor("/stash", "/stash", true);
    assert!(!ok);
    assert_eq!(failed(&checks), ["server"], "{checks:#?}");
    assert_eq!(checks.len(), 1, "{checks:#?}");
    let fix = fix_of(&checks, "server");
    assert!(fix.contains(&format!("trove server --data DIR --listen 127.0.0.1:{}", s.server)), "{fix}");
    assert!(fix.contains(&format!("trove gateway --config {}", s.gw_conf.display())), "{fix}");
}

#[test]
fn for_a_trove_up_installation_the_fix_is_the_trove_up_command_that_fixes_it() {
    let dir = tmp();
    let data = dir.path().join("d");
    let (https, server) = (free_port(), free_port());
    let mut up = start_up(dir.path(), &["--data", data.to_str().unwrap()], https, server);
    // People reach it as https://127.0.0.1:PORT/git, not as the https://localhost:PORT it was
    // started with.
    let public = format!("https://127.0.0.1:{https}/git");
    let (ok, checks) = run_doctor(dir.path(), &["--data", data.to_str().unwrap(), "--url", &public]);
    assert!(!ok);
    let fix = format!("trove up --data {} --public-url {public}", data.display());
    for name in ["base-url", "context-path"] {
        assert_eq!(check(&checks, name)["outcome"], "fail", "{checks:#?}");
        assert!(fix_of(&checks, name).contains(&fix), "{name}: {checks:#?}");
        assert!(!fix_of(&checks, name).contains("trove admin"), "{name}: {checks:#?}");
    }
    // Run the printed command: then every check passes.
    up.guard.signal_and_wait("TERM");
    let _up = start_up(dir.path(), &["--data", data.to_str().unwrap(), "--public-url", &public], https, server);
    let (ok, checks) = run_doctor(dir.path(), &["--data", data.to_str().unwrap(), "--url", &public]);
    assert!(ok, "{checks:#?}");
}

#[test]
fn without_flags_it_reads_trove_data_in_the_working_directory() {
    let dir = tmp();
    let _up = start_up(dir.path(), &[], free_port(), free_port());
    assert!(dir.path().join("trove-data/up.toml").exists());
    let (ok, checks) = run_doctor(dir.path(), &[]);
    assert!(ok, "{checks:#?}");
    for name in ["server", "proxy", "base-url", "context-path", "certificate"] {
        assert_eq!(check(&checks, name)["outcome"], "pass", "{name}: {checks:#?}");
    }
}

#[test]
fn a_name_that_does_not_resolve_yet_is_checked_with_resolve() {
    // `.invalid` never resolves (RFC 6761 §6.4).
    let dir = tmp();
    let data = dir.path().join("d");
    let https = free_port();
    let public = format!("https://git.doctor.invalid:{https}/stash");
    let _up = start_up(dir.path(), &["--data", data.to_str().unwrap(), "--public-url", &public], https, free_port());
    for args in [&["project", "add", "TP"][..], &["repo", "add", "TP/test"]] {
        ok(&trove().args(["admin", "--data", data.to_str().unwrap()]).args(args).output().unwrap(), "trove admin");
    }
    let (ok, checks) = run_doctor(dir.path(), &["--data", data.to_str().unwrap()]);
    assert!(!ok);
    assert_eq!(failed(&checks), ["proxy"], "{checks:#?}");
    assert!(fix_of(&checks, "proxy").contains("--resolve git.doctor.invalid:"), "{checks:#?}");
    // With --resolve every check passes, git's ls-remote included.
    let (ok, checks) =
        run_doctor(dir.path(), &["--data", data.to_str().unwrap(), "--resolve", "git.doctor.invalid:127.0.0.1", "--user", "admin", "--repo", "TP/test"]);
    assert!(ok, "{checks:#?}");
    assert_eq!(check(&checks, "git")["outcome"], "pass", "{checks:#?}");
}

#[test]
fn the_trove_up_fix_also_resets_a_base_url_changed_with_trove_admin() {
    let dir = tmp();
    let data = dir.path().join("d");
    let (https, server) = (free_port(), free_port());
    let public = format!("https://localhost:{https}");
    let mut up = start_up(dir.path(), &["--data", data.to_str().unwrap()], https, server);
    ok(&trove().args(["admin", "--data", data.to_str().unwrap(), "settings", "base-url", "https://wrong.example"]).output().unwrap(), "trove admin");
    let (_, checks) = run_doctor(dir.path(), &["--data", data.to_str().unwrap()]);
    assert_eq!(failed(&checks), ["base-url"], "{checks:#?}");
    assert!(fix_of(&checks, "base-url").contains(&format!("trove up --data {} --public-url {public}", data.display())), "{checks:#?}");
    up.guard.signal_and_wait("TERM");
    let _up = start_up(dir.path(), &["--data", data.to_str().unwrap(), "--public-url", &public], https, server);
    let (ok, checks) = run_doctor(dir.path(), &["--data", data.to_str().unwrap()]);
    assert!(ok, "{checks:#?}");
}
