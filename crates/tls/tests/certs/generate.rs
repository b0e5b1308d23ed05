//! Certificates made by trove, checked by `openssl` itself.

use trove_tls::{CertInfo, KeyKind, KeyType, TlsError, csr, issue, load_certificates, make_ca, self_signed, write_pair};

use crate::common::{chmod, openssl};

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn self_signed_certificates_verify_for_their_names_with_keys_at_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, want) in [(KeyKind::EcdsaP256, KeyType::EcdsaP256), (KeyKind::Rsa2048, KeyType::Rsa(2048)), (KeyKind::Rsa3072, KeyType::Rsa(3072))] {
        let out = dir.path().join(kind.to_string());
        let made = self_signed(&["git.example.test".into()], &["127.0.0.1".parse().unwrap()], 30, kind).unwrap();
        let (cert, key) = write_pair(&out, "server.crt", "server.key", &made.cert_pem, &made.key_pem, false).unwrap();
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&cert), 0o644);
        let info = CertInfo::from_der(&load_certificates(&cert, trove_tls::FileRole::Certificate).unwrap()[0]).unwrap();
        assert_eq!(info.key_type, want);
        assert_eq!(info.dns_names, vec!["git.example.test"]);
        assert_eq!(info.ip_addresses, vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]);
        let c = cert.to_str().unwrap();
        let v = openssl(dir.path(), &["verify", "-CAfile", c, "-verify_hostname", "git.example.test", c]);
        assert!(String::from_utf8_lossy(&v.stdout).contains("OK"));
        openssl(dir.path(), &["verify", "-CAfile", c, "-verify_ip", "127.0.0.1", c]);
        // openssl reads the key and agrees it belongs to the certificate.
        let k = openssl(dir.path(), &["pkey", "-in", key.to_str().unwrap(), "-pubout"]);
        let p = openssl(dir.path(), &["x509", "-in", c, "-noout", "-pubkey"]);
        assert_eq!(k.stdout, p.stdout);
    }
}

#[test]
fn certificates_issued_by_a_trove_ca_verify_only_for_their_host() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca("Trove test CA", 30).unwrap();
    let (ca_crt, ca_key) = write_pair(&dir.path().join("ca"), "ca.crt", "ca.key", &ca.cert_pem, &ca.key_pem, false).unwrap();
    assert_eq!(mode(&ca_key), 0o600);
    // Through the files on disk, as `trove cert issue --ca DIR` does.
    let loaded = trove_tls::load_ca(&dir.path().join("ca")).unwrap();
    let made = issue(&loaded, &["git.example.test".into(), "*.git.example.test".into()], &[], 30, KeyKind::EcdsaP256).unwrap();
    let (cert, _) = write_pair(&dir.path().join("site"), "server.crt", "server.key", &made.cert_pem, &made.key_pem, false).unwrap();
    let (ca_s, cert_s) = (ca_crt.to_str().unwrap(), cert.to_str().unwrap());
    openssl(dir.path(), &["verify", "-CAfile", ca_s, "-verify_hostname", "git.example.test", "-purpose", "sslserver", cert_s]);
    openssl(dir.path(), &["verify", "-CAfile", ca_s, "-verify_hostname", "x.git.example.test", cert_s]);
    let wrong = std::process::Command::new("openssl")
        .args(["verify", "-CAfile", ca_s, "-verify_hostname", "other.example.test", cert_s])
        .output()
        .expect("openssl is needed");
    assert!(!wrong.status.success());
    let info = CertInfo::from_der(&load_certificates(&ca_crt, trove_tls::FileRole::Certificate).unwrap()[0]).unwrap();
    assert!(info.is_ca && info.self_signed);
}

#[test]
fn certificates_issued_by_an_openssl_ca_name_it_as_openssl_wrote_it_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    std::fs::create_dir(&ca_dir).unwrap();
    // An RSA CA whose subject mixes string types (countryName is a PrintableString, the rest
    // UTF8String) and carries a non-ASCII name: the leaf's issuer must be these exact bytes.
    openssl(&ca_dir, &["genrsa", "-out", "ca.key", "2048"]);
    chmod(&ca_dir.join("ca.key"), 0o600);
    let subj = "/C=DE/O=Bücher GmbH/OU=IT/CN=Bücher Root CA";
    openssl(&ca_dir, &["req", "-x509", "-new", "-utf8", "-key", "ca.key", "-subj", subj, "-days", "30", "-out", "ca.crt"]);
    let loaded = trove_tls::load_ca(&ca_dir).unwrap();
    let made = issue(&loaded, &["git.example.test".into()], &[], 30, KeyKind::EcdsaP256).unwrap();
    let (cert, _) = write_pair(&dir.path().join("site"), "server.crt", "server.key", &made.cert_pem, &made.key_pem, false).unwrap();
    let (ca_s, cert_s) = (ca_dir.join("ca.crt"), cert.to_str().unwrap().to_string());
    openssl(dir.path(), &["verify", "-CAfile", ca_s.to_str().unwrap(), "-verify_hostname", "git.example.test", "-purpose", "sslserver", &cert_s]);
    // Byte for byte, string types included (openssl's own comparison would forgive a change).
    let der = |path: &std::path::Path| load_certificates(path, trove_tls::FileRole::Certificate).unwrap().remove(0);
    let (ca_der, leaf_der) = (der(&ca_s), der(&cert));
    use x509_parser::prelude::FromDer;
    let (_, ca_x509) = x509_parser::certificate::X509Certificate::from_der(&ca_der).unwrap();
    let (_, leaf_x509) = x509_parser::certificate::X509Certificate::from_der(&leaf_der).unwrap();
    assert_eq!(leaf_x509.issuer().as_raw(), ca_x509.subject().as_raw());
    // The leaf's authority key identifier is the CA's subject key identifier, as openssl made it.
    let ext = |file: &str, name: &str| {
        let out = openssl(dir.path(), &["x509", "-in", file, "-noout", "-ext", name]);
        String::from_utf8_lossy(&out.stdout).lines().nth(1).unwrap_or("").trim().trim_start_matches("keyid:").to_string()
    };
    let ski = ext(ca_s.to_str().unwrap(), "subjectKeyIdentifier");
    assert!(!ski.is_empty());
    assert_eq!(ext(&cert_s, "authorityKeyIdentifier"), ski);
}

#[test]
fn signing_requests_are_made_for_openssl_keys_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    for (i, args) in [
        &["genrsa", "-traditional", "-out", "k0.pem", "2048"][..],
        &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "k1.pem"][..],
        &["genpkey", "-algorithm", "ed25519", "-out", "k2.pem"][..],
        &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", "k3.pem"][..],
    ]
    .iter()
    .enumerate()
    {
        openssl(dir.path(), args);
        let key_pem = std::fs::read_to_string(dir.path().join(format!("k{i}.pem"))).unwrap();
        let request = csr(&key_pem, &["git.example.test".into(), "www.example.test".into()]).unwrap();
        let path = dir.path().join(format!("r{i}.csr"));
        std::fs::write(&path, &request).unwrap();
        let out = openssl(dir.path(), &["req", "-in", path.to_str().unwrap(), "-noout", "-verify", "-text"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("DNS:git.example.test, DNS:www.example.test"), "{text}");
        assert!(text.contains("CN = git.example.test"), "{text}");
    }
    // The seed's key size cannot get a request.
    openssl(dir.path(), &["genrsa", "-traditional", "-out", "weak.pem", "1024"]);
    let weak = std::fs::read_to_string(dir.path().join("weak.pem")).unwrap();
    assert!(matches!(csr(&weak, &["x.example.test".into()]), Err(TlsError::WeakRsaKey { bits: 1024, .. })));
}

#[test]
fn writing_refuses_to_overwrite_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let made = self_signed(&["a.example.test".into()], &[], 1, KeyKind::EcdsaP256).unwrap();
    write_pair(dir.path(), "server.crt", "server.key", &made.cert_pem, &made.key_pem, false).unwrap();
    match write_pair(dir.path(), "server.crt", "server.key", &made.cert_pem, &made.key_pem, false) {
        Err(e @ TlsError::AlreadyExists { .. }) => assert!(e.to_string().contains("--force"), "{e}"),
        other => panic!("{:?}", other.err()),
    }
    // Forcing over a key someone made world-readable puts it back to 0600.
    let key = dir.path().join("server.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    write_pair(dir.path(), "server.crt", "server.key", &made.cert_pem, &made.key_pem, true).unwrap();
    assert_eq!(mode(&key), 0o600);
}

#[test]
fn certificates_need_a_valid_name() {
    assert!(matches!(self_signed(&[], &[], 1, KeyKind::EcdsaP256), Err(TlsError::NoNames)));
    assert!(matches!(self_signed(&["bad name".into()], &[], 1, KeyKind::EcdsaP256), Err(TlsError::InvalidHost { .. })));
}
