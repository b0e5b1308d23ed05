//! Loading keys in every form `openssl` writes, and each refusal with its own error.

use std::path::Path;

use trove_tls::{KeyType, PassphraseSource, TlsError, TlsWarning, load_identity, load_private_key};

use crate::common::{PASS, chmod, openssl, openssl_cert_for, pass_file, site};

/// One key form: how openssl makes it, whether it is encrypted, what PEM it must look like.
struct Form {
    name: &'static str,
    /// openssl invocations; `KEY` is replaced by the key file name.
    make: &'static [&'static [&'static str]],
    encrypted: bool,
    pem_marker: &'static str,
    kind: KeyType,
}

const FORMS: &[Form] = &[
    Form {
        name: "genrsa -des3 (OpenSSL 3: encrypted PKCS#8, PBES2 3DES)",
        make: &[&["genrsa", "-des3", "-passout", "pass:PASS", "-out", "KEY", "2048"]],
        encrypted: true,
        pem_marker: "BEGIN ENCRYPTED PRIVATE KEY",
        kind: KeyType::Rsa(2048),
    },
    Form {
        name: "genrsa -aes256",
        make: &[&["genrsa", "-aes256", "-passout", "pass:PASS", "-out", "KEY", "2048"]],
        encrypted: true,
        pem_marker: "BEGIN ENCRYPTED PRIVATE KEY",
        kind: KeyType::Rsa(2048),
    },
    Form {
        name: "genrsa -traditional (PKCS#1, plain)",
        make: &[&["genrsa", "-traditional", "-out", "KEY", "2048"]],
        encrypted: false,
        pem_marker: "BEGIN RSA PRIVATE KEY",
        kind: KeyType::Rsa(2048),
    },
    Form {
        name: "genrsa -traditional -des3 (legacy Proc-Type, DES-EDE3-CBC)",
        make: &[&["genrsa", "-traditional", "-des3", "-passout", "pass:PASS", "-out", "KEY", "2048"]],
        encrypted: true,
        pem_marker: "DEK-Info: DES-EDE3-CBC",
        kind: KeyType::Rsa(2048),
    },
    Form {
        name: "genrsa -traditional -aes128 (legacy Proc-Type, AES-128-CBC)",
        make: &[&["genrsa", "-traditional", "-aes128", "-passout", "pass:PASS", "-out", "KEY", "2048"]],
        encrypted: true,
        pem_marker: "DEK-Info: AES-128-CBC",
        kind: KeyType::Rsa(2048),
    },
    Form {
        name: "genrsa -traditional -aes256 (legacy Proc-Type, AES-256-CBC)",
        make: &[&["genrsa", "-traditional", "-aes256", "-passout", "pass:PASS", "-out", "KEY", "3072"]],
        encrypted: true,
        pem_marker: "DEK-Info: AES-256-CBC",
        kind: KeyType::Rsa(3072),
    },
    Form {
        name: "pkcs8 -topk8 -nocrypt",
        make: &[&["genrsa", "-traditional", "-out", "KEY.src", "2048"], &["pkcs8", "-topk8", "-nocrypt", "-in", "KEY.src", "-out", "KEY"]],
        encrypted: false,
        pem_marker: "BEGIN PRIVATE KEY",
        kind: KeyType::Rsa(2048),
    },
    Form {
        name: "pkcs8 -topk8 (default PBES2 AES-256-CBC)",
        make: &[&["genrsa", "-traditional", "-out", "KEY.src", "2048"], &["pkcs8", "-topk8", "-in", "KEY.src", "-passout", "pass:PASS", "-out", "KEY"]],
        encrypted: true,
        pem_marker: "BEGIN ENCRYPTED PRIVATE KEY",
        kind: KeyType::Rsa(2048),
    },
    Form {
        name: "pkcs8 -topk8 -v2 des3 -v2prf hmacWithSHA1 (older OpenSSL defaults)",
        make: &[
            &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "KEY.src"],
            &["pkcs8", "-topk8", "-v2", "des3", "-v2prf", "hmacWithSHA1", "-in", "KEY.src", "-passout", "pass:PASS", "-out", "KEY"],
        ],
        encrypted: true,
        pem_marker: "BEGIN ENCRYPTED PRIVATE KEY",
        kind: KeyType::EcdsaP256,
    },
    Form {
        name: "pkcs8 -topk8 -scrypt",
        make: &[
            &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "KEY.src"],
            &["pkcs8", "-topk8", "-scrypt", "-in", "KEY.src", "-passout", "pass:PASS", "-out", "KEY"],
        ],
        encrypted: true,
        pem_marker: "BEGIN ENCRYPTED PRIVATE KEY",
        kind: KeyType::EcdsaP256,
    },
    Form {
        name: "ecparam -genkey P-256 (SEC1)",
        make: &[&["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "KEY"]],
        encrypted: false,
        pem_marker: "BEGIN EC PRIVATE KEY",
        kind: KeyType::EcdsaP256,
    },
    Form {
        name: "ecparam -genkey P-384 (SEC1, with parameters block)",
        make: &[&["ecparam", "-name", "secp384r1", "-genkey", "-out", "KEY"]],
        encrypted: false,
        pem_marker: "BEGIN EC PRIVATE KEY",
        kind: KeyType::EcdsaP384,
    },
    Form {
        name: "ec -des3 (legacy encrypted SEC1)",
        make: &[
            &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "KEY.src"],
            &["ec", "-in", "KEY.src", "-des3", "-passout", "pass:PASS", "-out", "KEY"],
        ],
        encrypted: true,
        pem_marker: "BEGIN EC PRIVATE KEY",
        kind: KeyType::EcdsaP256,
    },
    Form {
        name: "genpkey ed25519",
        make: &[&["genpkey", "-algorithm", "ed25519", "-out", "KEY"]],
        encrypted: false,
        pem_marker: "BEGIN PRIVATE KEY",
        kind: KeyType::Ed25519,
    },
    Form {
        name: "genpkey ed25519 -aes256",
        make: &[&["genpkey", "-algorithm", "ed25519", "-aes256", "-pass", "pass:PASS", "-out", "KEY"]],
        encrypted: true,
        pem_marker: "BEGIN ENCRYPTED PRIVATE KEY",
        kind: KeyType::Ed25519,
    },
];

/// Makes the key of `form` as `key<i>.pem` (mode 0600) and a certificate for it.
fn make(dir: &Path, i: usize, form: &Form) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = format!("key{i}.pem");
    for step in form.make {
        let args: Vec<String> = step.iter().map(|a| a.replace("KEY", &key).replace("pass:PASS", &format!("pass:{PASS}"))).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        openssl(dir, &args);
    }
    let key_path = dir.join(&key);
    chmod(&key_path, 0o600);
    let text = std::fs::read_to_string(&key_path).unwrap();
    assert!(text.contains(form.pem_marker), "{}: expected {:?} in\n{text}", form.name, form.pem_marker);
    let cert = openssl_cert_for(dir, &key, &format!("cert{i}.pem"), form.encrypted.then_some(PASS), "localhost");
    (cert, key_path)
}

#[test]
fn keys_in_every_openssl_form_load_with_the_right_passphrase_and_fail_with_a_wrong_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = pass_file(dir.path(), PASS);
    let bad = pass_file(dir.path(), "wrong horse");
    for (i, form) in FORMS.iter().enumerate() {
        let (cert, key) = make(dir.path(), i, form);
        let identity = load_identity(&site("localhost", &cert, &key, good.clone())).unwrap_or_else(|e| panic!("{}: {e}", form.name));
        assert_eq!(identity.key_type, form.kind, "{}", form.name);
        assert!(identity.warnings.is_empty(), "{}: {:?}", form.name, identity.warnings);
        assert_eq!(identity.chain.len(), 1);

        if form.encrypted {
            match load_identity(&site("localhost", &cert, &key, bad.clone())) {
                Err(TlsError::WrongPassphrase { path, .. }) => assert_eq!(path, key, "{}", form.name),
                other => panic!("{}: wrong passphrase gave {other:?}", form.name),
            }
            match load_identity(&site("localhost", &cert, &key, PassphraseSource::None)) {
                Err(TlsError::PassphraseNeeded { path }) => assert_eq!(path, key, "{}", form.name),
                other => panic!("{}: no passphrase gave {other:?}", form.name),
            }
        } else {
            // A passphrase configured for a plain key is simply not needed.
            load_identity(&site("localhost", &cert, &key, bad.clone())).unwrap_or_else(|e| panic!("{}: {e}", form.name));
        }
    }
}

#[test]
fn passphrase_comes_from_an_exec_program_called_with_server_port_and_rsa() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make(dir.path(), 0, &FORMS[0]);
    let args_file = dir.path().join("args.txt");
    let program = dir.path().join("askpass.sh");
    std::fs::write(&program, format!("#!/bin/sh\necho \"$@\" > '{}'\necho '{PASS}'\n", args_file.display())).unwrap();
    chmod(&program, 0o755);
    let mut cfg = site("git.example.test", &cert, &key, PassphraseSource::Exec(program.clone()));
    cfg.port = 8443;
    load_identity(&cfg).unwrap();
    assert_eq!(std::fs::read_to_string(&args_file).unwrap().trim(), "git.example.test:8443 RSA");

    let failing = dir.path().join("fail.sh");
    std::fs::write(&failing, "#!/bin/sh\nexit 3\n").unwrap();
    chmod(&failing, 0o755);
    cfg.passphrase = PassphraseSource::Exec(failing);
    assert!(matches!(load_identity(&cfg), Err(TlsError::PassphraseUnavailable { .. })));
}

#[test]
fn passphrase_comes_from_an_environment_variable() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make(dir.path(), 3, &FORMS[3]);
    let var = "TROVE_TEST_TLS_PASSPHRASE_ENV_1";
    // SAFETY: the variable name is unique to this test; nothing else reads or writes it.
    unsafe { std::env::set_var(var, PASS) };
    load_identity(&site("localhost", &cert, &key, PassphraseSource::Env(var.into()))).unwrap();
    let unset = "TROVE_TEST_TLS_PASSPHRASE_UNSET";
    match load_identity(&site("localhost", &cert, &key, PassphraseSource::Env(unset.into()))) {
        Err(e @ TlsError::PassphraseUnavailable { .. }) => assert!(e.to_string().contains(unset), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn passphrase_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make(dir.path(), 0, &FORMS[0]);
    let source = pass_file(dir.path(), PASS);
    let PassphraseSource::File(p) = &source else { unreachable!() };
    chmod(p, 0o644);
    assert!(matches!(load_identity(&site("localhost", &cert, &key, source)), Err(TlsError::TooOpen { .. })));
}

#[test]
fn seed_1024_bit_key_is_refused_with_the_command_that_makes_a_good_one() {
    let dir = tempfile::tempdir().unwrap();
    // Exactly the seed's step 8(c), non-interactively.
    openssl(dir.path(), &["genrsa", "-des3", "-passout", &format!("pass:{PASS}"), "-out", "server.key", "1024"]);
    chmod(&dir.path().join("server.key"), 0o600);
    let cert = openssl_cert_for(dir.path(), "server.key", "server.crt", Some(PASS), "localhost");
    let key = dir.path().join("server.key");
    let err = load_identity(&site("localhost", &cert, &key, pass_file(dir.path(), PASS))).unwrap_err();
    let TlsError::WeakRsaKey { bits, .. } = &err else { panic!("{err:?}") };
    assert_eq!(*bits, 1024);
    let msg = err.to_string();
    assert!(msg.contains("openssl genrsa -aes256 -out server.key 3072"), "{msg}");
    assert!(msg.contains("trove cert self-signed"), "{msg}");
    assert!(msg.contains("1024"), "{msg}");

    // The key on its own is refused too, after decryption.
    match load_private_key(&key, &pass_file(dir.path(), PASS), "localhost", 443) {
        Err(TlsError::WeakRsaKey { path, bits: 1024 }) => assert_eq!(path, key),
        other => panic!("{other:?}"),
    }
}

#[test]
fn key_of_another_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_a, _) = make(dir.path(), 10, &FORMS[10]);
    let (_, key_b) = make(dir.path(), 11, &FORMS[10]);
    match load_identity(&site("localhost", &cert_a, &key_b, PassphraseSource::None)) {
        Err(e @ TlsError::KeyMismatch { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&*key_b.to_string_lossy()) && msg.contains(&*cert_a.to_string_lossy()), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    // Same for RSA keys of the same size.
    let (cert_r, _) = make(dir.path(), 12, &FORMS[2]);
    let (_, key_r) = make(dir.path(), 13, &FORMS[2]);
    assert!(matches!(load_identity(&site("localhost", &cert_r, &key_r, PassphraseSource::None)), Err(TlsError::KeyMismatch { .. })));
}

#[test]
fn key_readable_by_group_or_others_is_refused_with_chmod_advice() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make(dir.path(), 10, &FORMS[10]);
    for mode in [0o644, 0o640, 0o604, 0o660] {
        chmod(&key, mode);
        match load_identity(&site("localhost", &cert, &key, PassphraseSource::None)) {
            Err(e @ TlsError::TooOpen { .. }) => {
                assert!(e.to_string().contains(&format!("chmod 600 {}", key.display())), "{e}")
            }
            other => panic!("mode {mode:o}: {other:?}"),
        }
    }
    chmod(&key, 0o400);
    load_identity(&site("localhost", &cert, &key, PassphraseSource::None)).unwrap();
}

#[test]
fn missing_and_unreadable_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make(dir.path(), 10, &FORMS[10]);
    let nowhere = dir.path().join("nowhere.pem");
    match load_identity(&site("localhost", &nowhere, &key, PassphraseSource::None)) {
        Err(e @ TlsError::MissingFile { .. }) => assert!(e.to_string().contains("nowhere.pem"), "{e}"),
        other => panic!("{other:?}"),
    }
    match load_identity(&site("localhost", &cert, &nowhere, PassphraseSource::None)) {
        Err(TlsError::MissingFile { path, .. }) => assert_eq!(path, nowhere),
        other => panic!("{other:?}"),
    }
    // A directory where a file should be cannot be read (root reads any file, so no chmod test).
    let a_dir = dir.path().join("adir");
    std::fs::create_dir(&a_dir).unwrap();
    match load_identity(&site("localhost", &a_dir, &key, PassphraseSource::None)) {
        Err(TlsError::UnreadableFile { path, .. }) => assert_eq!(path, a_dir),
        other => panic!("{other:?}"),
    }
}

#[test]
fn files_without_a_certificate_or_a_key_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make(dir.path(), 10, &FORMS[10]);
    // The key file given as the certificate, and the other way round.
    match load_identity(&site("localhost", &key, &key, PassphraseSource::None)) {
        Err(TlsError::NoCertificate { path }) => assert_eq!(path, key),
        other => panic!("{other:?}"),
    }
    let cert_copy = dir.path().join("cert-as-key.pem");
    std::fs::copy(&cert, &cert_copy).unwrap();
    chmod(&cert_copy, 0o600);
    match load_identity(&site("localhost", &cert, &cert_copy, PassphraseSource::None)) {
        Err(TlsError::NoKey { path }) => assert_eq!(path, cert_copy),
        other => panic!("{other:?}"),
    }
}

/// A certificate for `key_pem` valid from `from` to `to` (Unix seconds), made with rcgen.
fn cert_with_validity(dir: &Path, from: i64, to: i64) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = time::OffsetDateTime::from_unix_timestamp(from).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(to).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let cert_path = dir.join(format!("cert-{from}.pem"));
    let key_path = dir.join(format!("key-{from}.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    chmod(&key_path, 0o600);
    (cert_path, key_path)
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn expired_certificate_loads_with_a_loud_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_with_validity(dir.path(), now() - 400 * 86_400, now() - 30 * 86_400);
    let identity = load_identity(&site("localhost", &cert, &key, PassphraseSource::None)).unwrap();
    match &identity.warnings[..] {
        [w @ TlsWarning::CertificateExpired { path, .. }] => {
            assert_eq!(path, &cert);
            assert!(w.to_string().contains("EXPIRED"), "{w}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn not_yet_valid_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_with_validity(dir.path(), now() + 10 * 86_400, now() + 400 * 86_400);
    match load_identity(&site("localhost", &cert, &key, PassphraseSource::None)) {
        Err(TlsError::NotYetValid { path, .. }) => assert_eq!(path, cert),
        other => panic!("{other:?}"),
    }
}

#[test]
fn chain_file_is_served_after_the_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let ca = trove_tls::make_ca("Test CA", 30).unwrap();
    let made = trove_tls::issue(&ca, &["localhost".into()], &[], 30, Default::default()).unwrap();
    let (cert, key) = trove_tls::write_pair(dir.path(), "server.crt", "server.key", &made.cert_pem, &made.key_pem, false).unwrap();
    std::fs::write(dir.path().join("chain.pem"), &ca.cert_pem).unwrap();
    let mut cfg = site("localhost", &cert, &key, PassphraseSource::None);
    cfg.chain = Some(dir.path().join("chain.pem"));
    let identity = load_identity(&cfg).unwrap();
    assert_eq!(identity.chain.len(), 2);
    assert!(identity.leaf.subject.contains("localhost"));

    // Leaf then chain in one file (`SSLCertificateFile` as Apache 2.4.8+ prefers) works the same.
    std::fs::write(&cert, format!("{}{}", made.cert_pem, ca.cert_pem)).unwrap();
    cfg.chain = None;
    assert_eq!(load_identity(&cfg).unwrap().chain.len(), 2);
}

/// Runs in a child of this test binary started by `setsid`, which has no controlling terminal,
/// as under systemd: `builtin` must fail at once with a clear message, never wait for input.
#[test]
fn builtin_prompt_without_a_terminal_fails_at_once_instead_of_hanging() {
    const NAME: &str = "keys::builtin_prompt_without_a_terminal_fails_at_once_instead_of_hanging";
    if let Some(dir) = std::env::var_os("TROVE_TLS_TEST_NO_TTY_DIR") {
        let dir = Path::new(&dir);
        let (cert, key) = (dir.join("cert0.pem"), dir.join("key0.pem"));
        match load_identity(&site("localhost", &cert, &key, PassphraseSource::Builtin)) {
            Err(e @ TlsError::PassphraseUnavailable { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("no terminal") && msg.contains("exec:"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    make(dir.path(), 0, &FORMS[0]);
    let out = std::process::Command::new("setsid")
        .arg("--wait")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
        .env("TROVE_TLS_TEST_NO_TTY_DIR", dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("setsid (util-linux) is needed");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the child did not run the test: {text}");
}

#[test]
fn expired_chain_certificate_gives_a_warning_naming_the_chain_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Old Intermediate");
    ca_params.not_before = time::OffsetDateTime::from_unix_timestamp(now() - 800 * 86_400).unwrap();
    ca_params.not_after = time::OffsetDateTime::from_unix_timestamp(now() - 86_400).unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&leaf_key, &rcgen::Issuer::from_params(&ca_params, &ca_key)).unwrap();
    let (cert, key, chain) = (dir.path().join("leaf.pem"), dir.path().join("leaf.key"), dir.path().join("chain.pem"));
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    chmod(&key, 0o600);
    std::fs::write(&chain, ca.pem()).unwrap();
    let mut cfg = site("localhost", &cert, &key, PassphraseSource::None);
    cfg.chain = Some(chain.clone());
    let identity = load_identity(&cfg).unwrap();
    match &identity.warnings[..] {
        [w @ TlsWarning::CertificateExpired { path, .. }] => {
            assert_eq!(path, &chain);
            assert!(w.to_string().contains("Old Intermediate"), "{w}");
        }
        other => panic!("{other:?}"),
    }
    // A damaged chain file is refused, naming it.
    std::fs::write(&chain, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    match load_identity(&cfg) {
        Err(TlsError::BadCertificate { path, index: 1, .. }) => assert_eq!(path, chain),
        other => panic!("{other:?}"),
    }
}
