//! Helpers: running openssl, making key and certificate files.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use trove_tls::{PassphraseSource, TlsSiteConfig};

pub const PASS: &str = "correct horse";

/// Environment variables this machine presets that would make a child trust the system bundle
/// (or ignore our CA); every child that verifies certificates runs without them.
pub const CA_ENV: &[&str] =
    &["SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "GIT_SSL_CAINFO", "GIT_SSL_NO_VERIFY", "NIX_SSL_CERT_FILE"];

fn tool(name: &str) -> Command {
    let mut c = Command::new(name);
    for v in CA_ENV {
        c.env_remove(v);
    }
    c
}

fn run_checked(mut cmd: Command, what: &str) -> Output {
    let out =
        cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {what}: {e}; these tests need it installed (apt-get install openssl curl)"));
    assert!(out.status.success(), "{what} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    out
}

/// Runs `openssl ARGS` in `dir`; panics (failing the test) if openssl is missing or fails.
pub fn openssl(dir: &Path, args: &[&str]) -> Output {
    let mut c = tool("openssl");
    c.current_dir(dir).args(args);
    run_checked(c, &format!("openssl {}", args.join(" ")))
}

pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A self-signed certificate for `localhost` made by `openssl req -x509` with the key `key`.
pub fn openssl_cert_for(dir: &Path, key: &str, cert: &str, pass: Option<&str>, cn: &str) -> PathBuf {
    let passin = pass.map(|p| format!("pass:{p}"));
    let subj = format!("/CN={cn}");
    let mut args = vec!["req", "-x509", "-new", "-key", key, "-subj", &subj, "-addext", "subjectAltName=DNS:localhost", "-days", "30", "-out", cert];
    if let Some(p) = &passin {
        args.push("-passin");
        args.push(p);
    }
    openssl(dir, &args);
    dir.join(cert)
}

/// Writes `PASS` to a 0600 file and returns a `File` passphrase source for it.
pub fn pass_file(dir: &Path, pass: &str) -> PassphraseSource {
    let p = dir.join(format!("pass-{}.txt", pass.replace(' ', "_")));
    std::fs::write(&p, format!("{pass}\n")).unwrap();
    chmod(&p, 0o600);
    PassphraseSource::File(p)
}

pub fn site(name: &str, cert: &Path, key: &Path, pass: PassphraseSource) -> TlsSiteConfig {
    let mut s = TlsSiteConfig::new(name, 443, cert, key);
    s.passphrase = pass;
    s
}
