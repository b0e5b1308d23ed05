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
    let (https, server) = (free_port(), free_port());
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
            .args(["server", "--data", data.to_str().unwrap(), "--listen", &format!("127.0.0.1:{server}")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    wait_port(server, s.child(), "trove server");
    let gw_conf = dir.path().join("gateway.conf");
    Setup { ca: tls.join("ca.crt"), tls, data, https, server, _server: s, _gateway: None, gw_conf, _dir: dir }
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
    for name in ["server", "proxy", "base-url", "context-path", "redirect", "proxy-reverse", "certificate", "caching", "git"] {
        assert!(checks.iter().any(|c| c["name"] == name && c["outcome"] == "pass"), "{name} did not pass: {checks:#?}");
    }
}

#[test]
fn a_wrong_base_url_fails_only_the_base_url_check() {
    let mut s = setup("/stash", "/stash");
    s.gateway("/stash", "/stash", true, "");
    // Changed after the server started: the running server still redirects right, the
    // stored setting (what the next start uses) is wrong.
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
    assert_eq!(failed(checks), ["base-url"], "{checks:#?}");
    assert!(fix_of(checks, "base-url").contains(&format!("settings base-url https://localhost:{}/stash", s.https)));
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
    let leaf = p.signed_by(&leaf_key, &ca, &ca_key).unwrap();
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
