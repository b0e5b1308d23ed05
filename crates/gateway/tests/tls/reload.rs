//! Reloading certificates (what SIGHUP does): new handshakes get the new files, a bad new file
//! keeps the old certificate, and connections already made carry on.

use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trove_gateway::tls::ReloadableCerts;
use trove_tls::{KeyKind, TlsError, TlsOptions, TlsSiteConfig, issue, make_ca, write_pair};

use crate::common::{s_client, serve, subject_line};

async fn request(tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> String {
    tls.write_all(b"GET / HTTP/1.1\r\nHost: r.example.test\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&buf).contains("alpn=") {
        let n = tls.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed early");
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn issuer_line(out: &str) -> String {
    out.lines().find(|l| l.starts_with("issuer=")).unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_serves_new_files_keeps_the_old_on_error_and_leaves_connections_alone() {
    let dir = tempfile::tempdir().unwrap();
    let site_dir = dir.path().join("site");
    let hosts = vec!["r.example.test".to_string()];
    let ca_one = make_ca("First CA", 30).unwrap();
    let ca_two = make_ca("Second CA", 30).unwrap();
    let one = issue(&ca_one, &hosts, &[], 30, KeyKind::EcdsaP256).unwrap();
    let (cert, key) = write_pair(&site_dir, "server.crt", "server.key", &one.cert_pem, &one.key_pem, false).unwrap();

    let (certs, warnings) = ReloadableCerts::load(vec![TlsSiteConfig::new("r.example.test", 443, &cert, &key)]).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let config = certs.server_config(&TlsOptions::default()).unwrap();
    let port = serve(config).await;

    let (ok, out) = s_client(port, &["-servername", "r.example.test"]).await;
    assert!(ok, "{out}");
    assert_eq!(issuer_line(&out), "issuer=CN = First CA, O = Trove local CA");

    // A connection made before the reload, by a client that trusts only the first CA.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_one.cert_pem.as_bytes()).unwrap()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut early = tokio_rustls::TlsConnector::from(Arc::new(client)).connect("r.example.test".try_into().unwrap(), tcp).await.unwrap();
    assert!(request(&mut early).await.contains("sni=r.example.test"));

    // New files, signed by another CA: new handshakes see them.
    let two = issue(&ca_two, &hosts, &[], 30, KeyKind::Rsa2048).unwrap();
    write_pair(&site_dir, "server.crt", "server.key", &two.cert_pem, &two.key_pem, true).unwrap();
    certs.reload().unwrap();
    let (ok, out) = s_client(port, &["-servername", "r.example.test"]).await;
    assert!(ok, "{out}");
    assert_eq!(issuer_line(&out), "issuer=CN = Second CA, O = Trove local CA");
    assert_eq!(subject_line(&out), "subject=CN = r.example.test");

    // The early connection still works on its old session.
    assert!(request(&mut early).await.contains("sni=r.example.test"));

    // A key that does not match: reload fails, the second certificate stays in service.
    let stray = issue(&ca_one, &hosts, &[], 30, KeyKind::EcdsaP256).unwrap();
    write_pair(&site_dir, "ignored.crt", "server.key", &stray.cert_pem, &stray.key_pem, true).unwrap();
    assert!(matches!(certs.reload(), Err(TlsError::KeyMismatch { .. })));
    let (ok, out) = s_client(port, &["-servername", "r.example.test"]).await;
    assert!(ok, "{out}");
    assert_eq!(issuer_line(&out), "issuer=CN = Second CA, O = Trove local CA");

    // A missing certificate file: same.
    std::fs::remove_file(&cert).unwrap();
    assert!(matches!(certs.reload(), Err(TlsError::MissingFile { .. })));
    let (ok, out) = s_client(port, &["-servername", "r.example.test"]).await;
    assert!(ok && issuer_line(&out).contains("Second CA"), "{out}");

    // Put a good pair back: reload succeeds again.
    write_pair(&site_dir, "server.crt", "server.key", &one.cert_pem, &one.key_pem, true).unwrap();
    certs.reload().unwrap();
    let (_, out) = s_client(port, &["-servername", "r.example.test"]).await;
    assert!(issuer_line(&out).contains("First CA"), "{out}");
}
