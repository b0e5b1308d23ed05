//! Real handshakes over loopback against the rustls configuration trove builds.

use std::path::Path;

use trove_gateway::tls::{SiteIdentity, build_server_config};
use trove_tls::{
    Alpn, CertAuthority, KeyKind, PassphraseSource, TlsOptions, TlsWarning, issue, load_identity, make_ca, parse_ssl_cipher_suite, parse_ssl_protocol,
    write_pair,
};

use crate::common::{curl, git, s_client, serve, site, subject_line};

/// A Trove-made CA in `dir/ca` and a site certificate for `hosts` signed by it in `dir/<name>`.
fn ca_and_site(dir: &Path, ca: &CertAuthority, name: &str, hosts: &[&str], key: KeyKind) -> SiteIdentity {
    let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    let made = issue(ca, &hosts, &[], 30, key).unwrap();
    let (cert, key) = write_pair(&dir.join(name), "server.crt", "server.key", &made.cert_pem, &made.key_pem, false).unwrap();
    let identity = load_identity(&site(&hosts[0], &cert, &key, PassphraseSource::None)).unwrap();
    SiteIdentity { names: hosts, identity }
}

fn write_ca(dir: &Path) -> (CertAuthority, std::path::PathBuf) {
    let ca = make_ca("Trove test CA", 30).unwrap();
    let (ca_crt, _) = write_pair(&dir.join("ca"), "ca.crt", "ca.key", &ca.cert_pem, &ca.key_pem, false).unwrap();
    (ca, ca_crt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_trusts_a_trove_ca_for_the_right_host_and_refuses_a_wrong_one() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_crt) = write_ca(dir.path());
    let site = ca_and_site(dir.path(), &ca, "git", &["git.example.test"], KeyKind::EcdsaP256);
    let (config, warnings) = build_server_config(&[site], &TlsOptions::default()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let port = serve(config).await;

    let ok = curl(&[
        "--cacert".into(),
        ca_crt.display().to_string(),
        "--resolve".into(),
        format!("git.example.test:{port}:127.0.0.1"),
        "--http1.1".into(),
        format!("https://git.example.test:{port}/git/TP/test.git/info/refs"),
    ])
    .await;
    assert!(ok.status.success(), "curl failed: {}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "sni=git.example.test;alpn=http/1.1");

    // Same server, a name the certificate does not hold: verification must fail (curl exit 60).
    let wrong = curl(&[
        "--cacert".into(),
        ca_crt.display().to_string(),
        "--resolve".into(),
        format!("wrong.example.test:{port}:127.0.0.1"),
        format!("https://wrong.example.test:{port}/"),
    ])
    .await;
    assert_eq!(wrong.status.code(), Some(60), "stderr: {}", String::from_utf8_lossy(&wrong.stderr));
    assert!(wrong.stdout.is_empty());

    // Without our CA (no system bundle either: the env is cleared) the certificate is untrusted.
    let untrusted = curl(&[
        "--cacert".into(),
        "/dev/null".into(),
        "--resolve".into(),
        format!("git.example.test:{port}:127.0.0.1"),
        format!("https://git.example.test:{port}/"),
    ])
    .await;
    assert!(!untrusted.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_chooses_the_certificate_of_the_named_site_and_the_first_is_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_crt) = write_ca(dir.path());
    let a = ca_and_site(dir.path(), &ca, "a", &["a.example.test"], KeyKind::EcdsaP256);
    let b = ca_and_site(dir.path(), &ca, "b", &["b.example.test", "*.b.example.test"], KeyKind::Rsa2048);
    let (config, _) = build_server_config(&[a, b], &TlsOptions::default()).unwrap();
    let port = serve(config).await;

    for (name, want) in [
        ("a.example.test", "CN = a.example.test"),
        ("b.example.test", "CN = b.example.test"),
        ("www.b.example.test", "CN = b.example.test"),
        ("unknown.example.test", "CN = a.example.test"),
    ] {
        let (ok, out) = s_client(port, &["-servername", name]).await;
        assert!(ok, "{name}: {out}");
        assert_eq!(subject_line(&out), format!("subject={want}"), "{name}");
    }
    let (ok, out) = s_client(port, &["-noservername"]).await;
    assert!(ok, "{out}");
    assert_eq!(subject_line(&out), "subject=CN = a.example.test");

    // And a verifying client accepts the wildcard alias through SNI.
    let res = curl(&[
        "--cacert".into(),
        ca_crt.display().to_string(),
        "--resolve".into(),
        format!("www.b.example.test:{port}:127.0.0.1"),
        "--http1.1".into(),
        format!("https://www.b.example.test:{port}/"),
    ])
    .await;
    assert!(res.status.success(), "{}", String::from_utf8_lossy(&res.stderr));
    assert_eq!(String::from_utf8_lossy(&res.stdout), "sni=www.b.example.test;alpn=http/1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_negotiates_h2_when_offered_and_http11_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = write_ca(dir.path());
    let s = ca_and_site(dir.path(), &ca, "h", &["h.example.test"], KeyKind::EcdsaP256);
    let (config, _) = build_server_config(std::slice::from_ref(&s), &TlsOptions::default()).unwrap();
    let port = serve(config).await;
    let (ok, out) = s_client(port, &["-servername", "h.example.test", "-alpn", "h2,http/1.1"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("ALPN protocol: h2"), "{out}");
    let (_, out) = s_client(port, &["-servername", "h.example.test", "-alpn", "http/1.1"]).await;
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");

    let opts = TlsOptions { alpn: Alpn::Http11Only, ..TlsOptions::default() };
    let (config, _) = build_server_config(&[s], &opts).unwrap();
    let port = serve(config).await;
    let (_, out) = s_client(port, &["-servername", "h.example.test", "-alpn", "h2,http/1.1"]).await;
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tls12_and_tls13_with_aead_forward_secret_suites_are_offered() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = write_ca(dir.path());
    let s = ca_and_site(dir.path(), &ca, "p", &["p.example.test"], KeyKind::Rsa2048);
    let (config, _) = build_server_config(std::slice::from_ref(&s), &TlsOptions::default()).unwrap();
    let port = serve(config).await;

    let (ok, out) = s_client(port, &["-tls1_3"]).await;
    assert!(ok && out.contains("TLSv1.3"), "{out}");
    let (ok, out) = s_client(port, &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"]).await;
    assert!(ok && out.contains("ECDHE-RSA-AES128-GCM-SHA256"), "{out}");
    // The client is willing (security level 0); the server must say no.
    for args in [
        &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"][..],
        &["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"][..],
        &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA:AES128-GCM-SHA256:AES256-SHA"][..],
        &["-tls1_2", "-cipher", "DHE-RSA-AES128-GCM-SHA256"][..],
    ] {
        let (ok, out) = s_client(port, args).await;
        assert!(!ok, "{args:?} was accepted: {out}");
    }

    // Apache settings narrow what is offered.
    let (protocols, w) = parse_ssl_protocol("-all +TLSv1.3").unwrap();
    assert!(w.is_empty());
    let opts = TlsOptions { protocols, ..TlsOptions::default() };
    let (config, _) = build_server_config(std::slice::from_ref(&s), &opts).unwrap();
    let port = serve(config).await;
    let (ok, _) = s_client(port, &["-tls1_2"]).await;
    assert!(!ok, "TLS 1.2 accepted with SSLProtocol -all +TLSv1.3");
    let (ok, _) = s_client(port, &["-tls1_3"]).await;
    assert!(ok);

    let (ciphers, w) = parse_ssl_cipher_suite("ECDHE+CHACHA20:AES128-SHA").unwrap();
    assert!(matches!(&w[..], [TlsWarning::CipherNotSupported { name, .. }] if name == "AES128-SHA"), "{w:?}");
    let mut opts = TlsOptions::default();
    opts.apply_cipher_setting(ciphers);
    let (config, _) = build_server_config(&[s], &opts).unwrap();
    let port = serve(config).await;
    let (ok, out) = s_client(port, &["-tls1_2"]).await;
    assert!(ok && out.contains("ECDHE-RSA-CHACHA20-POLY1305"), "{out}");
    let (ok, _) = s_client(port, &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"]).await;
    assert!(!ok, "a suite left out by SSLCipherSuite was accepted");
}

#[test]
fn site_names_missing_from_the_certificate_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = write_ca(dir.path());
    let mut s = ca_and_site(dir.path(), &ca, "n", &["n.example.test"], KeyKind::EcdsaP256);
    s.names.push("other.example.test".into());
    let (_, warnings) = build_server_config(&[s], &TlsOptions::default()).unwrap();
    assert!(matches!(&warnings[..], [TlsWarning::NameNotInCertificate { site, .. }] if site == "other.example.test"), "{warnings:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_verifies_a_trove_ca_with_http_sslcainfo_and_needs_no_verify_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, ca_crt) = write_ca(dir.path());
    let site = ca_and_site(dir.path(), &ca, "git", &["git.example.test"], KeyKind::EcdsaP256);
    let (config, _) = build_server_config(&[site], &TlsOptions::default()).unwrap();
    let port = serve(config).await;
    let home = dir.path();
    let cainfo = format!("http.sslCAInfo={}", ca_crt.display());
    let good = format!("git.example.test:{port}:127.0.0.1");
    let url = format!("https://git.example.test:{port}/git/TP/test.git");

    // The safe way (docs/tls.md): trust the Trove CA, verification on.
    let out = git(home, &good, &["-c", &cainfo, "ls-remote", &url], &[]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Without the CA, git refuses the certificate, as in the seed...
    let out = git(home, &good, &["ls-remote", &url], &[("GIT_SSL_CAINFO", "/dev/null")]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("ssl") || err.contains("certificate"), "{err}");
    // ...and the seed's last resort works, as it says.
    let out = git(home, &good, &["ls-remote", &url], &[("GIT_SSL_NO_VERIFY", "true")]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A name the certificate does not hold fails even with the CA.
    let wrong = format!("wrong.example.test:{port}:127.0.0.1");
    let wrong_url = format!("https://wrong.example.test:{port}/git/TP/test.git");
    let out = git(home, &wrong, &["-c", &cainfo, "ls-remote", &wrong_url], &[]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("ssl") || err.contains("certificate") || err.contains("subject"), "{err}");
}
