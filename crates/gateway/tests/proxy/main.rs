//! Gateway integration tests on loopback: a real origin, the gateway started in-process on
//! port 0, raw HTTP/1.1 bytes from the test. `differential` runs the same configs through a
//! real Apache 2.4; `sendfile` fetches large files from real nginx and Apache through the gateway.

mod balancer;
mod behaviour;
mod differential;
mod early_answers;
mod origin;
mod sendfile;
mod slow_body;
mod smuggling;
mod streaming;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use trove_gateway::config::{apache, toml as tomlcfg};
use trove_gateway::{Gateway, GatewayConfig};

pub struct Running {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Running {
    /// Asks the gateway to stop (it then drains) without waiting.
    pub fn request_stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let t = std::mem::replace(&mut self.task, tokio::spawn(async {}));
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
}

pub fn parse_apache(text: &str) -> GatewayConfig {
    let (cfg, d) = apache::parse_str(Path::new("test.conf"), text);
    let errs: Vec<String> = d.errors().map(|e| e.to_string()).collect();
    assert!(errs.is_empty(), "config errors: {errs:?}");
    cfg
}

pub fn parse_toml(text: &str) -> GatewayConfig {
    let (cfg, d) = tomlcfg::parse_str(Path::new("test.toml"), text);
    let errs: Vec<String> = d.errors().map(|e| e.to_string()).collect();
    assert!(errs.is_empty(), "config errors: {errs:?}");
    cfg
}

pub async fn start(cfg: GatewayConfig) -> Running {
    start_tls(cfg, None).await
}

pub async fn start_tls(cfg: GatewayConfig, tls: Option<std::sync::Arc<rustls::ServerConfig>>) -> Running {
    let gw = Gateway::bind(cfg, tls).await.expect("bind gateway");
    let addr = gw.local_addrs()[0];
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        gw.serve(async {
            let _ = rx.await;
        })
        .await
    });
    Running { addr, stop: Some(tx), task }
}

/// A parsed response as the downstream saw it.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send raw bytes, read until the peer closes (or 10 s), and parse every response in order.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> Vec<Resp> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    parse_responses(&buf)
}

/// The same over TLS, trusting `ca_pem`, with SNI `localhost`.
pub async fn raw_tls(addr: SocketAddr, ca_pem: &str, bytes: &[u8]) -> Vec<Resp> {
    let mut s = connect_tls(addr, ca_pem).await;
    s.write_all(bytes).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    parse_responses(&buf)
}

/// A TLS connection to `addr`, trusting `ca_pem`, with SNI `localhost` and no ALPN (HTTP/1.1).
pub async fn connect_tls(addr: SocketAddr, ca_pem: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
    connect_tls_alpn(addr, ca_pem, &[]).await
}

/// The same, offering the ALPN protocols `alpn`.
pub async fn connect_tls_alpn(addr: SocketAddr, ca_pem: &str, alpn: &[&[u8]]) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut cfg = cfg;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg)).connect(name, tcp).await.expect("TLS handshake")
}

/// A TLS set-up for the gateway with a self-signed `localhost` certificate, offering the
/// ALPN protocols `alpn`, and that certificate's PEM for the downstream to trust.
pub fn test_tls(alpn: &[&[u8]]) -> (std::sync::Arc<rustls::ServerConfig>, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let mut cfg = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (std::sync::Arc::new(cfg), ck.cert.pem())
}

pub fn parse_responses(mut buf: &[u8]) -> Vec<Resp> {
    let mut out = Vec::new();
    loop {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut hs);
        let Ok(httparse::Status::Complete(n)) = r.parse(buf) else { break };
        let status = r.code.unwrap_or(0);
        let headers: Vec<(String, String)> = r.headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned())).collect();
        buf = &buf[n..];
        if status < 200 && status != 101 {
            continue;
        }
        let get = |k: &str| headers.iter().find(|(a, _)| a.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if let Some(cl) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            let take = cl.min(buf.len());
            body = buf[..take].to_vec();
            buf = &buf[take..];
        } else if get("transfer-encoding").is_some() {
            while let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
                let size = usize::from_str_radix(std::str::from_utf8(&buf[..p]).unwrap_or("0").split(';').next().unwrap().trim(), 16).unwrap_or(0);
                buf = &buf[p + 2..];
                if size == 0 {
                    if let Some(e) = buf.windows(2).position(|w| w == b"\r\n") {
                        buf = &buf[e + 2..];
                    }
                    break;
                }
                let take = size.min(buf.len());
                body.extend_from_slice(&buf[..take]);
                if buf.len() >= take + 2 {
                    assert_eq!(&buf[take..take + 2], b"\r\n", "chunk data not followed by CRLF");
                }
                buf = &buf[(take + 2).min(buf.len())..];
            }
        } else if status != 204 && status != 304 && status != 101 {
            body = buf.to_vec();
            buf = &[];
        }
        out.push(Resp { status, headers, body });
        if status == 101 {
            out.push(Resp { status: 0, headers: vec![], body: buf.to_vec() });
            break;
        }
    }
    out
}

/// One request with `Connection: close`.
pub async fn get(addr: SocketAddr, path: &str, extra: &str) -> Resp {
    let req = format!("GET {path} HTTP/1.1\r\nHost: public.example\r\n{extra}Connection: close\r\n\r\n");
    raw(addr, req.as_bytes()).await.into_iter().next().unwrap_or_else(|| panic!("no response to {path}"))
}
