//! Helpers: running curl, `openssl s_client` and git against a tiny TLS server.

use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trove_tls::{PassphraseSource, TlsSiteConfig};

/// Environment variables this machine presets that would make a child trust the system bundle
/// (or ignore our CA); every child that verifies certificates runs without them.
pub const CA_ENV: &[&str] =
    &["SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "GIT_SSL_CAINFO", "GIT_SSL_NO_VERIFY", "NIX_SSL_CERT_FILE"];

pub fn site(name: &str, cert: &Path, key: &Path, pass: PassphraseSource) -> TlsSiteConfig {
    let mut s = TlsSiteConfig::new(name, 443, cert, key);
    s.passphrase = pass;
    s
}

/// A tokio TLS server on 127.0.0.1:0 answering every HTTP/1.1 request with
/// `sni=<name>;alpn=<proto>`. Returns the port. Lives as long as the runtime.
pub async fn serve(config: Arc<rustls::ServerConfig>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let (_, conn) = tls.get_ref();
                let body = format!(
                    "sni={};alpn={}",
                    conn.server_name().unwrap_or("-"),
                    conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or("-".into())
                );
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = tls.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                        let resp = if head.starts_with(b"GET ") && String::from_utf8_lossy(&head).contains("/info/refs?service=git-upload-pack") {
                            // An empty repository's smart-HTTP advertisement (gitprotocol-http(5)), so
                            // that `git ls-remote` succeeds once TLS has.
                            let adv = format!("001e# service=git-upload-pack\n0000003e{} capabilities^{{}}\0\n0000", "0".repeat(40));
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/x-git-upload-pack-advertisement\r\nCache-Control: no-cache\r\n\r\n{adv}",
                                adv.len()
                            )
                        } else {
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n{body}", body.len())
                        };
                        if tls.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

/// `curl` with our CA only; returns the output (status not checked).
pub async fn curl(args: &[String]) -> Output {
    let mut c = tokio::process::Command::new("curl");
    for v in CA_ENV {
        c.env_remove(v);
    }
    c.args(["-sS", "--max-time", "20"]).args(args).stdin(Stdio::null());
    c.output().await.unwrap_or_else(|e| panic!("cannot run curl: {e}; these tests need it installed (apt-get install curl)"))
}

/// `openssl s_client` against 127.0.0.1:`port` with extra args; returns (success, stdout+stderr).
pub async fn s_client(port: u16, extra: &[&str]) -> (bool, String) {
    let mut c = tokio::process::Command::new("openssl");
    for v in CA_ENV {
        c.env_remove(v);
    }
    c.arg("s_client").arg("-connect").arg(format!("127.0.0.1:{port}")).args(extra).stdin(Stdio::null());
    let out = c.output().await.unwrap_or_else(|e| panic!("cannot run openssl: {e}; these tests need it installed"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The `subject=` line s_client prints for the server's certificate.
pub fn subject_line(s_client_output: &str) -> String {
    s_client_output.lines().find(|l| l.starts_with("subject=")).unwrap_or("").to_string()
}

/// `git` with a private HOME and no system config, our CA variables cleared, and
/// `http.curloptResolve` pointing `host:port` at loopback (like curl's `--resolve`).
pub async fn git(home: &Path, resolve: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = tokio::process::Command::new("git");
    for v in CA_ENV {
        c.env_remove(v);
    }
    c.env("HOME", home).env("GIT_CONFIG_NOSYSTEM", "1").env("GIT_TERMINAL_PROMPT", "0");
    c.envs(env.iter().copied());
    // The test server speaks HTTP/1.1 only; git would otherwise negotiate h2 through ALPN.
    c.args(["-c", "http.version=HTTP/1.1"]);
    c.arg("-c").arg(format!("http.curloptResolve={resolve}")).args(args).stdin(Stdio::null());
    c.output().await.unwrap_or_else(|e| panic!("cannot run git: {e}; these tests need it installed"))
}
