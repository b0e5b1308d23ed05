//! `testssl.sh` against a running `trove gateway` (TLS listener, HSTS on, as an administrator
//! would configure it): no SSLv2/SSLv3/TLS 1.0/TLS 1.1,
//! no NULL/EXPORT/LOW/3DES/CBC ciphers, forward secrecy, h2 by ALPN, and no MEDIUM, HIGH or
//! CRITICAL finding except those listed in `EXPECTED`.

use std::process::Stdio;

use trove_gateway::tls::{SiteIdentity, build_server_config};
use trove_tls::{KeyKind, PassphraseSource, TlsOptions, issue, load_identity, make_ca, write_pair};

use crate::common::{CA_ENV, serve, site};

/// Findings that say nothing about trove's TLS, with why they must appear here.
const EXPECTED: &[(&str, &str)] = &[
    ("cert_chain_of_trust", "the test CA is private: testssl does not trust it"),
    ("cert_revocation", "a private CA publishes no CRL or OCSP responder"),
    ("security_headers", "X-Frame-Options, CSP and the like are the application's to send; behind this gateway is no application (503)"),
];

fn finding<'a>(all: &'a [serde_json::Value], id: &str) -> &'a str {
    all.iter().find(|f| f["id"] == id).and_then(|f| f["finding"].as_str()).unwrap_or_else(|| panic!("testssl reported no {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testssl_finds_only_what_a_private_ca_must_raise() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca("Trove test CA", 365).unwrap();
    let made = issue(&ca, &["localhost".into()], &["127.0.0.1".parse().unwrap()], 365, KeyKind::Rsa2048).unwrap();
    let (cert, key) = write_pair(dir.path(), "server.crt", "server.key", &made.cert_pem, &made.key_pem, false).unwrap();
    let _ = (load_identity, site, build_server_config, TlsOptions::default, serve, |_: PassphraseSource, _: SiteIdentity| ());
    // The real gateway, from its TOML, with HSTS switched on.
    let toml = format!(
        "[[listen]]\naddr = \"127.0.0.1:0\"\ntls = true\n[[server]]\nnames = [\"localhost\"]\nhsts = 31536000\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n[[server.route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:9/\"\n",
        cert.display(),
        key.display()
    );
    let (cfg, d) = trove_gateway::config::toml::parse_str(std::path::Path::new("gw.toml"), &toml);
    assert!(!d.has_errors(), "{:?}", d.items);
    let setup = trove_gateway::tls_setup::tls_for(&cfg).unwrap().unwrap();
    let gw = trove_gateway::Gateway::bind(cfg, Some(setup.server_config)).await.unwrap();
    let port = gw.local_addrs()[0].port();
    tokio::spawn(gw.serve(std::future::pending()));

    let json = dir.path().join("testssl.json");
    let mut c = tokio::process::Command::new("testssl");
    for v in CA_ENV {
        c.env_remove(v);
    }
    // Everything testssl checks by default except client simulation (`-c`), the slowest part,
    // which tests browsers' choices rather than the server.
    c.args(["-p", "-s", "-f", "-P", "-S", "-h", "-U"])
        .args(["--quiet", "--color", "0", "--warnings", "off", "--jsonfile"])
        .arg(&json)
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null());
    let out = c.output().await.unwrap_or_else(|e| panic!("cannot run testssl: {e}; install the Debian package testssl.sh"));
    let text = std::fs::read_to_string(&json)
        .unwrap_or_else(|e| panic!("testssl wrote no JSON ({e}): {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)));
    let all: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();

    for id in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        assert_eq!(finding(&all, id), "not offered", "{id}");
    }
    assert_eq!(finding(&all, "TLS1_2"), "offered");
    assert!(finding(&all, "TLS1_3").starts_with("offered"));
    for id in ["cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW", "cipherlist_3DES_IDEA", "cipherlist_AVERAGE"] {
        assert_eq!(finding(&all, id), "not offered", "{id}");
    }
    assert_eq!(finding(&all, "PFS"), "offered");
    assert_eq!(finding(&all, "ALPN_HTTP2"), "h2");
    assert!(finding(&all, "HSTS_time").contains("31536000"), "HSTS: {}", finding(&all, "HSTS_time"));

    let bad: Vec<String> = all
        .iter()
        .filter(|f| matches!(f["severity"].as_str(), Some("MEDIUM" | "HIGH" | "CRITICAL")))
        .filter(|f| !EXPECTED.iter().any(|(id, _)| f["id"] == *id))
        .map(|f| format!("{} {}: {}", f["severity"], f["id"], f["finding"]))
        .collect();
    assert!(bad.is_empty(), "testssl findings:\n{}", bad.join("\n"));
}
