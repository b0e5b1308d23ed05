//! `trove doctor`: the seed's troubleshooting list, automated. Each check says ✔ or ✘ and,
//! when something is wrong, what to do about it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trove_http::{HttpUrl, UrlError};
use trove_tls::CertInfo;

use crate::cmd_up::{GATEWAY_FILE, UpState};

#[derive(clap::Args)]
pub struct Args {
    /// The public URL people use (through the proxy), e.g. https://git.mycompany.com/stash.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// The Trove server directly, e.g. http://127.0.0.1:7990.
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// A user for the authenticated checks; the password comes from TROVE_PASSWORD.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// A private CA certificate that signed the server certificate (not a failure then).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// The data directory: what `trove up` set up there (public URL, server address, CA,
    /// gateway config) and the stored base URL. Default ./trove-data when it exists.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// A repository to try `git ls-remote` on, as KEY/slug.
    #[arg(long, value_name = "KEY/SLUG")]
    repo: Option<String>,
    /// The gateway config to lint (default: the one in --data).
    #[arg(long, value_name = "FILE")]
    gateway_config: Option<PathBuf>,
    /// Connect to ADDR (an IP address) for HOST, as curl's --resolve does, for a name that
    /// does not resolve yet; git gets it too. Repeatable.
    #[arg(long, value_name = "HOST:ADDR")]
    resolve: Vec<String>,
    /// The SSH listener, HOST:PORT (default: the one `trove up` set up in --data, if any).
    #[arg(long, value_name = "HOST:PORT")]
    ssh: Option<String>,
    /// A private key for `git ls-remote` over SSH of --repo (the key must be a user's or an
    /// access key on the server).
    #[arg(long, value_name = "FILE")]
    ssh_key: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// `HOST:ADDR` of `--resolve` → (host, address).
fn parse_resolve(s: &str) -> anyhow::Result<(String, std::net::IpAddr)> {
    let bad = || anyhow::anyhow!("--resolve {s:?}: give HOST:ADDR, a host name and the IP address to use for it, e.g. git.example.com:127.0.0.1");
    let (host, addr) = s.split_once(':').ok_or_else(bad)?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_ascii_lowercase(), addr))
}

/// Why a request got no HTTP answer at all: the cases where the fix is to start something or
/// to say where it is, rather than to change what answers.
#[derive(Debug)]
enum Unreachable {
    /// The host name does not resolve (yet): `--resolve` helps.
    Unresolved { host: String, detail: String },
    /// Nothing accepts connections at the address: start it.
    NoAnswer { addr: String, detail: String },
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreachable::Unresolved { host, detail } => write!(f, "the name {host} does not resolve: {detail}"),
            Unreachable::NoAnswer { addr, detail } => write!(f, "nothing answers at {addr}: {detail}"),
        }
    }
}

impl std::error::Error for Unreachable {}

fn unreachable<T>(r: &anyhow::Result<T>) -> Option<&Unreachable> {
    r.as_ref().err().and_then(|e| e.downcast_ref::<Unreachable>())
}

#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Pass,
    Fail,
    Skip,
}

#[derive(Serialize, Debug)]
struct Check {
    name: &'static str,
    outcome: Outcome,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

#[derive(Clone, Debug)]
struct Url {
    scheme: String,
    host: String,
    port: u16,
    /// Without a trailing slash; empty for the root.
    path: String,
}

impl Url {
    /// Parsed by the one URL type ([`HttpUrl`]); the path loses its trailing slashes.
    fn parse(s: &str) -> anyhow::Result<Url> {
        let u = HttpUrl::parse(s).map_err(|e| match e {
            UrlError::Scheme => anyhow::anyhow!("{s:?}: only http and https URLs"),
            _ => anyhow::anyhow!("{s:?} is not a URL like https://host[:port][/path]"),
        })?;
        Ok(Url { scheme: u.scheme().to_string(), host: u.host().to_string(), port: u.port_or_default(), path: u.path().trim_end_matches('/').to_string() })
    }
    fn default_port(&self) -> bool {
        self.port == if self.scheme == "https" { 443 } else { 80 }
    }
    fn origin(&self) -> String {
        if self.default_port() { format!("{}://{}", self.scheme, self.host) } else { format!("{}://{}:{}", self.scheme, self.host, self.port) }
    }
    fn to_string_full(&self) -> String {
        format!("{}{}", self.origin(), self.path)
    }
    fn same(&self, o: &Url) -> bool {
        self.scheme == o.scheme && self.host == o.host && self.port == o.port && self.path == o.path
    }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    certs: Vec<CertificateDer<'static>>,
    /// The start of the body, when asked for (`body_limit`).
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, n: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.as_str())
    }
}

/// Accepts any certificate but remembers the chain, so the doctor can judge it itself.
#[derive(Debug)]
struct Recorder {
    seen: Arc<Mutex<Vec<CertificateDer<'static>>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end: &CertificateDer<'_>,
        inter: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut v = self.seen.lock().unwrap();
        v.clear();
        v.push(end.clone().into_owned());
        v.extend(inter.iter().map(|c| c.clone().into_owned()));
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.provider.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// Where to connect: `--resolve` entries first, then the system's resolver.
#[derive(Default)]
struct Net {
    resolve: Vec<(String, std::net::IpAddr)>,
}

impl Net {
    fn resolved(&self, host: &str) -> Option<std::net::IpAddr> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.resolve.iter().find(|(h, _)| h.eq_ignore_ascii_case(host)).map(|(_, a)| *a)
    }

    /// One HTTP/1.1 request; the head is read back, and up to `body_limit` bytes of the body.
    async fn fetch(&self, u: &Url, method: &str, path: &str, extra: &[(String, String)], body_limit: usize) -> anyhow::Result<Resp> {
        let host = u.host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<std::net::SocketAddr> = match self.resolved(host) {
            Some(ip) => vec![std::net::SocketAddr::new(ip, u.port)],
            None => match tokio::net::lookup_host((host, u.port)).await {
                Ok(a) => a.collect(),
                Err(e) => return Err(Unreachable::Unresolved { host: host.to_string(), detail: e.to_string() }.into()),
            },
        };
        let shown = format!("{}:{}", u.host, u.port);
        let tcp = match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&addrs[..])).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Err(Unreachable::NoAnswer { addr: shown, detail: e.to_string() }.into()),
            Err(_) => return Err(Unreachable::NoAnswer { addr: shown, detail: "no connection within 5 s".into() }.into()),
        };
        let seen: Arc<Mutex<Vec<CertificateDer<'static>>>> = Arc::default();
        let mut stream: Box<dyn Io> = if u.scheme == "https" {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Recorder { seen: seen.clone(), provider }))
                .with_no_client_auth();
            let name = ServerName::try_from(host.to_string()).context("bad host name")?;
            let tls = tokio::time::timeout(Duration::from_secs(5), tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp))
                .await
                .context("TLS handshake timed out")?
                .context("TLS handshake failed")?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let host_header = if u.default_port() { u.host.clone() } else { format!("{}:{}", u.host, u.port) };
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: trove-doctor\r\nConnection: close\r\n");
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        let mut tmp = [0u8; 8192];
        loop {
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut tmp)).await.context("no answer within 10 s")??;
            if n == 0 {
                anyhow::bail!("connection closed without a response");
            }
            buf.extend_from_slice(&tmp[..n]);
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut hs);
            if let httparse::Status::Complete(head) = r.parse(&buf).context("malformed response")? {
                let headers = r.headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned())).collect();
                let status = r.code.unwrap_or(0);
                let mut body = buf[head..].to_vec();
                // `Connection: close`: the body ends when the connection does.
                while body.len() < body_limit {
                    match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut tmp)).await {
                        Ok(Ok(n)) if n > 0 => body.extend_from_slice(&tmp[..n]),
                        _ => break,
                    }
                }
                body.truncate(body_limit);
                let certs = seen.lock().unwrap().clone();
                return Ok(Resp { status, headers, certs, body });
            }
            if buf.len() > 65536 {
                anyhow::bail!("response head larger than {} bytes", buf.len());
            }
        }
    }
}

/// The context path a Trove server's own pages use: every page links its stylesheet as
/// `CTX/static/trove.css` (crates/server/src/web/view.rs), the 404 page included.
fn context_path_in_page(html: &str) -> Option<String> {
    let end = html.find("/static/trove.css\"")?;
    let start = html[..end].rfind("href=\"")? + "href=\"".len();
    let ctx = &html[start..end];
    (ctx.is_empty() || (ctx.starts_with('/') && !ctx.contains(['"', '<', '>', ' ']))).then(|| ctx.to_string())
}

fn load_roots(ca: Option<&Path>) -> anyhow::Result<rustls::RootCertStore> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let file = match ca {
        Some(p) => p.to_path_buf(),
        None => PathBuf::from(std::env::var("SSL_CERT_FILE").unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".into())),
    };
    for c in CertificateDer::pem_file_iter(&file).with_context(|| format!("cannot read CA file {}", file.display()))? {
        let _ = roots.add(c.with_context(|| format!("bad certificate in {}", file.display()))?);
    }
    Ok(roots)
}

fn verify_chain(chain: &[CertificateDer<'static>], host: &str, ca: Option<&Path>) -> anyhow::Result<()> {
    let roots = load_roots(ca)?;
    let v = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::new(rustls::crypto::aws_lc_rs::default_provider())).build()?;
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string())?;
    v.verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now()).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

struct Doctor {
    public: Url,
    server: Url,
    ca: Option<PathBuf>,
    auth: Option<(String, String)>,
    repo: Option<String>,
    gateway_config: Option<PathBuf>,
    data: Option<PathBuf>,
    /// Set when the data directory is a `trove up` installation: fixes are then the `trove up`
    /// command that makes them, not the settings `trove up` would overwrite.
    up: Option<UpState>,
    net: Net,
    /// The context path the running server answers under, once learned from it.
    server_ctx: Option<String>,
    /// The public URL's `/status` answered 200 through the proxy: later failures are then
    /// about the repository, not about the route to the server.
    proxy_ok: bool,
    /// The SSH listener to check, `(host, port)`.
    ssh: Option<(String, u16)>,
    ssh_key: Option<PathBuf>,
    checks: Vec<Check>,
}

impl Doctor {
    fn add(&mut self, name: &'static str, outcome: Outcome, detail: impl Into<String>, fix: Option<String>) {
        self.checks.push(Check { name, outcome, detail: detail.into(), fix });
    }

    fn basic(&self) -> Vec<(String, String)> {
        use base64::Engine;
        match &self.auth {
            Some((u, p)) => vec![("Authorization".into(), format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))))],
            None => vec![],
        }
    }

    fn data_shown(&self) -> String {
        self.data.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "DIR".into())
    }

    fn shown_path(p: &str) -> &str {
        if p.is_empty() { "/" } else { p }
    }

    /// For a `trove up` installation, the one command that makes the public URL right
    /// everywhere: base URL, context path, the certificate's names and the gateway's route.
    fn up_fix(&self) -> Option<String> {
        self.up.as_ref().map(|_| {
            format!(
                "stop `trove up` and start it again with the public URL: trove up --data {} --public-url {}  (it sets the base URL and context path from it, issues a certificate for its host and routes the gateway to match)",
                self.data_shown(),
                self.public.to_string_full()
            )
        })
    }

    /// The command that starts what does not answer.
    fn start_server_cmd(&self) -> String {
        if self.up.is_some() {
            return format!("trove up --data {}", self.data_shown());
        }
        format!("trove server --data {} --listen {}:{}", self.data_shown(), self.server.host, self.server.port)
    }

    fn start_gateway_cmd(&self) -> String {
        if self.up.is_some() {
            return format!("trove up --data {}", self.data_shown());
        }
        match &self.gateway_config {
            Some(c) => format!("trove gateway --config {}", c.display()),
            None => "trove gateway --config FILE (or start the proxy in front of the server: apachectl start)".into(),
        }
    }

    async fn run(&mut self) {
        let ctx = self.public.path.clone();
        let direct_status = format!("{}/status", self.server.path);
        let public_status = format!("{ctx}/status");
        let direct = self.net.fetch(&self.server, "GET", &direct_status, &[], 0).await;
        let proxied = self.net.fetch(&self.public, "GET", &public_status, &[], 0).await;
        // Everything stopped: that is the one thing to say, with the command that starts it;
        // every other check would fail for the same reason and point elsewhere.
        if let (Some(Unreachable::NoAnswer { addr: s, .. }), Some(Unreachable::NoAnswer { addr: p, .. })) = (unreachable(&direct), unreachable(&proxied)) {
            let start =
                if self.up.is_some() { self.start_server_cmd() } else { format!("{}, and the gateway: {}", self.start_server_cmd(), self.start_gateway_cmd()) };
            self.add(
                "server",
                Outcome::Fail,
                format!("nothing answers at {s} (the server) nor at {p} (the public URL {}): nothing checked", self.public.to_string_full()),
                Some(format!("start it with: {start}")),
            );
            return;
        }
        let server_up = unreachable(&direct).is_none();
        let public_up = unreachable(&proxied).is_none();

        // 1. The server answers directly (the seed: "works when running directly from Tomcat"),
        //    and under which context path.
        match direct {
            Ok(r) if r.status == 200 => {
                self.server_ctx = Some(self.server.path.clone());
                self.add("server", Outcome::Pass, format!("the server answers directly at {}{direct_status}", self.server.origin()), None)
            }
            Ok(r) => match self.learn_context_path().await {
                Some(c) => {
                    self.add(
                        "server",
                        Outcome::Pass,
                        format!(
                            "the server answers directly at {}{c}/status: its context path is '{}', not '{}' (see the context-path check)",
                            self.server.origin(),
                            Self::shown_path(&c),
                            Self::shown_path(&self.server.path)
                        ),
                        None,
                    );
                    self.server_ctx = Some(c);
                }
                None => self.add(
                    "server",
                    Outcome::Fail,
                    format!(
                        "{}{direct_status} answered {}, and nothing there names a Trove context path: is it the Trove server?",
                        self.server.origin(),
                        r.status
                    ),
                    Some("give --server the Trove server's own address, e.g. http://127.0.0.1:7990".into()),
                ),
            },
            Err(e) => {
                let fix = match e.downcast_ref::<Unreachable>() {
                    Some(Unreachable::NoAnswer { .. }) => format!("start it with: {}  (or give --server its address)", self.start_server_cmd()),
                    Some(Unreachable::Unresolved { host, .. }) => format!("give --resolve {host}:IP, or --server with an address that resolves"),
                    None => "give --server the Trove server's own address, plain http (e.g. http://127.0.0.1:7990)".into(),
                };
                self.add("server", Outcome::Fail, format!("{}: {e:#}", self.server.origin()), Some(fix))
            }
        }
        // 2. Through the proxy.
        match proxied {
            Ok(r) if r.status == 200 => {
                self.proxy_ok = true;
                self.add("proxy", Outcome::Pass, format!("the public URL answers through the proxy: {}{public_status}", self.public.origin()), None)
            }
            Ok(r) => {
                let target = self.server_ctx.clone().unwrap_or_else(|| self.server.path.clone());
                let fix = if !server_up {
                    "the proxy answers but the server does not: start the server (see the server check)".to_string()
                } else if let (Some(up), Some(fix)) = (&self.up, self.up_fix()) {
                    if Url::parse(&up.public_url).is_ok_and(|u| u.same(&self.public)) {
                        format!(
                            "{}/{GATEWAY_FILE} does not route {}/ to the server: move it aside and restart `trove up --data {}`, which writes a fresh one",
                            self.data_shown(),
                            ctx,
                            self.data_shown()
                        )
                    } else {
                        fix
                    }
                } else {
                    format!(
                        "the proxy must route {ctx}/ to the server's {target}/ (ProxyPass {} http://{}:{}{target})",
                        Self::shown_path(&ctx),
                        self.server.host,
                        self.server.port
                    )
                };
                self.add("proxy", Outcome::Fail, format!("{}{public_status} answered {} through the proxy", self.public.origin(), r.status), Some(fix))
            }
            Err(e) => {
                let fix = match e.downcast_ref::<Unreachable>() {
                    Some(Unreachable::Unresolved { host, .. }) => {
                        format!("until DNS has the name, give --resolve {host}:IP with the gateway's address (e.g. --resolve {host}:127.0.0.1 on its machine)")
                    }
                    Some(Unreachable::NoAnswer { .. }) => format!("start the gateway: {}; or check --url (scheme, host, port)", self.start_gateway_cmd()),
                    None => "check the gateway's TLS set-up (trove gateway --check CONFIG) and --url (scheme, host, port)".into(),
                };
                self.add("proxy", Outcome::Fail, format!("{}: {e:#}", self.public.origin()), Some(fix))
            }
        }
        // 3. Base URL and context path, as the server reports them in the redirects it makes.
        let probe = if server_up { self.redirect_probe(&self.server.clone()).await } else { Err("the server does not answer".to_string()) };
        let base_from_server = match &probe {
            Ok((_, loc)) => self.base_from_location(loc),
            Err(_) => None,
        };
        let stored = self
            .data
            .as_ref()
            .filter(|d| d.join("trove.db").exists())
            .and_then(|d| trove_store::Store::open(d).ok())
            .and_then(|s| s.base_url().ok().flatten())
            .map(|b| b.as_str().trim_end_matches('/').to_string());
        match stored.or(base_from_server) {
            Some(b) => match Url::parse(&b) {
                Ok(bu) if bu.same(&self.public) => self.add("base-url", Outcome::Pass, format!("the base URL is the public URL: {b}"), None),
                Ok(bu) => {
                    let mut what = Vec::new();
                    if bu.scheme != self.public.scheme {
                        what.push(format!("scheme {} ≠ {}", bu.scheme, self.public.scheme));
                    }
                    if bu.host != self.public.host {
                        what.push(format!("host {} ≠ {}", bu.host, self.public.host));
                    }
                    if bu.port != self.public.port {
                        what.push(format!("port {} ≠ {}", bu.port, self.public.port));
                    }
                    if bu.path != self.public.path {
                        what.push(format!("context path '{}' ≠ '{}'", bu.path, self.public.path));
                    }
                    let fix = self.up_fix().unwrap_or_else(|| {
                        format!(
                            "trove admin --data {} settings base-url {} (the seed's Step 2; the running server uses it at once)",
                            self.data_shown(),
                            self.public.to_string_full()
                        )
                    });
                    self.add(
                        "base-url",
                        Outcome::Fail,
                        format!("the server's base URL {b} differs from the public URL {}: {}", self.public.to_string_full(), what.join(", ")),
                        Some(fix),
                    );
                }
                Err(e) => self.add(
                    "base-url",
                    Outcome::Fail,
                    format!("the server's base URL {b:?} is unusable: {e}"),
                    Some(
                        self.up_fix().unwrap_or_else(|| format!("trove admin --data {} settings base-url {}", self.data_shown(), self.public.to_string_full())),
                    ),
                ),
            },
            None if self.data.is_some() => self.add(
                "base-url",
                Outcome::Fail,
                "the server has no base URL, so it guesses links from each request".to_string(),
                Some(self.up_fix().unwrap_or_else(|| format!("trove admin --data {} settings base-url {}", self.data_shown(), self.public.to_string_full()))),
            ),
            None => {
                let why = probe.err().unwrap_or_default();
                self.add(
                    "base-url",
                    Outcome::Skip,
                    format!("no base URL to compare: none stored (no --data DIR) and none learned from a redirect ({why})"),
                    None,
                )
            }
        }
        // The context path the server really answers under, not the one --server names.
        match self.server_ctx.clone() {
            Some(c) if c == ctx => {
                self.add("context-path", Outcome::Pass, format!("server and proxy agree on the context path '{}'", Self::shown_path(&ctx)), None)
            }
            Some(c) => {
                let fix = self.up_fix().unwrap_or_else(|| {
                    format!(
                        "use the same path on both sides: ProxyPass {0} http://SERVER{0} and `trove admin --data {1} settings context-path {0}`, then restart the server (the seed's Steps 3 and 5)",
                        Self::shown_path(&ctx),
                        self.data_shown()
                    )
                });
                self.add(
                    "context-path",
                    Outcome::Fail,
                    format!("the proxy serves '{}' but the server lives under '{}'", Self::shown_path(&ctx), Self::shown_path(&c)),
                    Some(fix),
                );
            }
            None => self.add("context-path", Outcome::Skip, "the server's context path is unknown: the server does not answer (see the server check)", None),
        }
        // 4. A redirect made by the server comes back through the proxy with a public Location.
        if !public_up {
            self.add("redirect", Outcome::Skip, "not checked: the public URL does not answer (see the proxy check)", None);
        } else {
            match self.redirect_probe(&self.public.clone()).await {
                Ok((path, loc)) => {
                    let abs = if loc.starts_with('/') { format!("{}{loc}", self.public.origin()) } else { loc.clone() };
                    if abs.starts_with(&self.public.to_string_full()) {
                        self.add("redirect", Outcome::Pass, format!("a redirect from the server ({path}) comes back through the proxy as {loc}"), None);
                    } else {
                        let fix = self.up_fix().unwrap_or_else(|| {
                            "set the base URL to the public URL, and rewrite Location at the proxy (ProxyPassReverse, or reverse = true on the route)".into()
                        });
                        self.add(
                            "redirect",
                            Outcome::Fail,
                            format!("a redirect through the proxy ({path}) points at {loc}, not at {}", self.public.to_string_full()),
                            Some(fix),
                        );
                    }
                }
                Err(why) => {
                    let fix = if !self.proxy_ok {
                        Some("the public URL does not reach the server: see the proxy check".to_string())
                    } else {
                        self.repo.as_ref().map(|r| format!("check --repo {r}: the KEY/slug of a repository that exists and that --user may read"))
                    };
                    self.add("redirect", Outcome::Skip, format!("no redirect to inspect: {why}"), fix)
                }
            }
        }
        // 5. The gateway config: every route rewrites Location back.
        if let Some(p) = self.gateway_config.clone() {
            match trove_gateway::config::load(&p) {
                Ok((cfg, _)) => {
                    let missing: Vec<String> = cfg
                        .servers
                        .iter()
                        .flat_map(|s| {
                            s.routes
                                .iter()
                                .filter(|r| r.upstream.is_some())
                                .filter(move |r| !s.reverse.iter().any(|rr| rr.public_path == r.path))
                                .map(|r| r.path.clone())
                        })
                        .collect();
                    if missing.is_empty() {
                        self.add("proxy-reverse", Outcome::Pass, format!("every route in {} rewrites Location back (ProxyPassReverse)", p.display()), None);
                    } else {
                        self.add(
                            "proxy-reverse",
                            Outcome::Fail,
                            format!("routes {} in {} do not rewrite Location back", missing.join(", "), p.display()),
                            Some("add `ProxyPassReverse PATH URL` (Apache) or remove `reverse = false` (TOML) for them (the seed's Step 5)".into()),
                        );
                    }
                }
                Err(e) => self.add(
                    "proxy-reverse",
                    Outcome::Fail,
                    format!("{} does not load: {e}", p.display()),
                    Some(format!("run `trove gateway --check {}`", p.display())),
                ),
            }
        }
        // 6. The certificate.
        if self.public.scheme == "https" {
            if public_up {
                self.check_certificate().await;
            } else {
                self.add("certificate", Outcome::Skip, "not checked: the public URL does not answer (see the proxy check)", None);
            }
        }
        if !public_up {
            self.add("caching", Outcome::Skip, "not checked: the public URL does not answer (see the proxy check)", None);
            self.add("git", Outcome::Skip, "not checked: the public URL does not answer (see the proxy check)", None);
            return;
        }
        // 7. Caching: authenticated answers and cookies must not be cacheable, and no cache sits between.
        self.check_caching().await;
        // 8. git ls-remote through the public URL.
        self.check_git().await;
        // 9. SSH: the port, the host keys, and git ls-remote over it.
        self.check_ssh().await;
    }

    /// The SSH listener answers as an SSH server, with the host keys the data directory holds,
    /// and (with --ssh-key and --repo) `git ls-remote` works over it.
    async fn check_ssh(&mut self) {
        let Some((host, port)) = self.ssh.clone() else {
            self.add("ssh", Outcome::Skip, "give --ssh HOST:PORT to check git over SSH", None);
            return;
        };
        let banner = async {
            let mut s = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            let mut buf = vec![0u8; 64];
            let n = s.read(&mut buf).await?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_owned())
        };
        match tokio::time::timeout(Duration::from_secs(10), banner).await {
            Ok(Ok(b)) if b.starts_with("SSH-2.0-") => {}
            Ok(Ok(b)) => {
                self.add(
                    "ssh",
                    Outcome::Fail,
                    format!("{host}:{port} answers, but not as an SSH server ({b:?})"),
                    Some("give --ssh the address of [ssh] listen".into()),
                );
                return;
            }
            Ok(Err(e)) => {
                self.add(
                    "ssh",
                    Outcome::Fail,
                    format!("nothing answers SSH at {host}:{port}: {e}"),
                    Some("turn SSH on ([ssh] listen, --ssh ADDR) or give --ssh its address".into()),
                );
                return;
            }
            Err(_) => {
                self.add(
                    "ssh",
                    Outcome::Fail,
                    format!("{host}:{port} did not greet within 10 s"),
                    Some("check firewalls between here and the SSH listener".into()),
                );
                return;
            }
        }
        // The host keys it presents against those in the data directory, by ssh-keyscan.
        let local: Vec<String> = ["ssh_host_ed25519_key.pub", "ssh_host_ecdsa_key.pub"]
            .iter()
            .filter_map(|f| self.data.as_ref().and_then(|d| std::fs::read_to_string(d.join(f)).ok()))
            .filter_map(|t| t.split_whitespace().nth(1).map(str::to_owned))
            .collect();
        let scan = tokio::process::Command::new("ssh-keyscan").args(["-p", &port.to_string(), "-t", "ed25519,ecdsa", &host]).output().await;
        let presented: Vec<String> = match &scan {
            Ok(o) => String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
                .collect(),
            Err(_) => Vec::new(),
        };
        if scan.is_err() {
            self.add("ssh", Outcome::Pass, format!("an SSH server answers at {host}:{port} (install openssh-client to check its host keys)"), None);
        } else if local.is_empty() {
            self.add(
                "ssh",
                Outcome::Pass,
                format!("an SSH server answers at {host}:{port} with {} host key(s); give --data to compare them with the server's", presented.len()),
                None,
            );
        } else if !presented.is_empty() && presented.iter().all(|k| local.contains(k)) {
            self.add("ssh", Outcome::Pass, format!("the SSH server at {host}:{port} presents the host keys in the data directory"), None);
        } else {
            self.add(
                "ssh",
                Outcome::Fail,
                format!("the SSH server at {host}:{port} presents host keys other than those in the data directory"),
                Some("is another SSH server on that port? clients will see a changed host key".into()),
            );
            return;
        }
        let (Some(key), Some(repo)) = (self.ssh_key.clone(), self.repo.clone()) else {
            self.add("git-ssh", Outcome::Skip, "give --ssh-key FILE and --repo KEY/slug to try git ls-remote over SSH", None);
            return;
        };
        let dir = std::env::temp_dir().join(format!("trove-doctor-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let known = dir.join("known_hosts");
        let hosts = scan.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        let _ = std::fs::write(&known, hosts);
        let url = format!("ssh://git@{host}:{port}/{}.git", repo.to_ascii_lowercase());
        let ssh =
            format!("ssh -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes -o BatchMode=yes", key.display(), known.display());
        let out = tokio::process::Command::new("git").args(["ls-remote", &url]).env("GIT_SSH_COMMAND", ssh).output().await;
        let _ = std::fs::remove_dir_all(&dir);
        match out {
            Ok(o) if o.status.success() => {
                let refs = String::from_utf8_lossy(&o.stdout).lines().count();
                self.add("git-ssh", Outcome::Pass, format!("git ls-remote {url} works ({refs} refs)"), None);
            }
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
                let fix = if err.contains("Permission denied") {
                    "add the key's .pub on the account page (or as an access key of the repository)".to_string()
                } else {
                    format!("check --repo {repo}: a repository the key may read")
                };
                self.add("git-ssh", Outcome::Fail, format!("git ls-remote {url} failed: {err}"), Some(fix));
            }
            Err(e) => self.add("git-ssh", Outcome::Fail, format!("cannot run git: {e}"), Some("install git".into())),
        }
    }

    /// The context path the server at `--server`'s origin answers under, from one of its pages,
    /// confirmed by its `/status`; `None` when it shows no Trove page.
    async fn learn_context_path(&self) -> Option<String> {
        let headers = [("Accept".to_string(), "text/html".to_string())];
        let page = self.net.fetch(&self.server, "GET", "/trove-doctor/no-such-page", &headers, 256 * 1024).await.ok()?;
        let ctx = context_path_in_page(&String::from_utf8_lossy(&page.body))?;
        let status = self.net.fetch(&self.server, "GET", &format!("{ctx}/status"), &[], 0).await.ok()?;
        (status.status == 200).then_some(ctx)
    }

    /// Ask `base` for something the server answers with a redirect: a repository's clone URL
    /// opened in a browser, else the bare context path. Returns the path asked and Location,
    /// or what each try answered instead.
    async fn redirect_probe(&self, base: &Url) -> Result<(String, String), String> {
        let mut tries = Vec::new();
        if let Some(repo) = &self.repo {
            tries.push(format!("{}/scm/{}.git", base.path, repo.to_ascii_lowercase()));
        }
        if !base.path.is_empty() {
            tries.push(base.path.clone());
        }
        if tries.is_empty() {
            return Err("give --repo KEY/slug: at the root, only a repository's URL makes the server redirect".into());
        }
        let mut headers = self.basic();
        headers.push(("Accept".into(), "text/html".into()));
        let mut answers = Vec::new();
        for p in tries {
            match self.net.fetch(base, "GET", &p, &headers, 0).await {
                Ok(r) if (300..400).contains(&r.status) && r.header("location").is_some() => {
                    return Ok((p, r.header("location").unwrap_or_default().to_string()));
                }
                Ok(r) => answers.push(format!("GET {p} answered {}", r.status)),
                Err(e) => answers.push(format!("GET {p}: {e:#}")),
            }
        }
        Err(answers.join("; "))
    }

    /// `<base>/projects/KEY/repos/slug/browse` or `<base>/` → `<base>`.
    fn base_from_location(&self, loc: &str) -> Option<String> {
        if let Some(i) = loc.find("/projects/") {
            return Some(loc[..i].to_string());
        }
        if loc.contains("://") {
            return Some(loc.trim_end_matches('/').to_string());
        }
        None
    }

    async fn check_certificate(&mut self) {
        let r = match self.net.fetch(&self.public, "HEAD", &format!("{}/status", self.public.path), &[], 0).await {
            Ok(r) => r,
            Err(e) => {
                self.add("certificate", Outcome::Fail, format!("{e:#}"), Some("check the gateway's TLS set-up: trove gateway --check CONFIG".into()));
                return;
            }
        };
        let Some(leaf) = r.certs.first() else {
            self.add("certificate", Outcome::Fail, "no certificate was presented", None);
            return;
        };
        let info = match CertInfo::from_der(leaf.as_ref()) {
            Ok(i) => i,
            Err(e) => {
                self.add("certificate", Outcome::Fail, format!("unreadable certificate: {e}"), None);
                return;
            }
        };
        let host = self.public.host.trim_start_matches('[').trim_end_matches(']').to_string();
        let mut problems = Vec::new();
        let t = now();
        if info.is_expired_at(t) {
            problems.push(format!("expired on {}", trove_tls::format_time(info.not_after)));
        } else if info.not_after - t < 14 * 86400 {
            problems.push(format!("expires soon, on {}", trove_tls::format_time(info.not_after)));
        }
        if info.is_not_yet_valid_at(t) {
            problems.push(format!("not valid before {}", trove_tls::format_time(info.not_before)));
        }
        if !info.covers(&host) {
            problems.push(format!("does not name {host} (it names {})", info.names().join(", ")));
        }
        if let Some(r) = info.key_type.refusal() {
            problems.push(r);
        }
        let verified = verify_chain(&r.certs, &host, self.ca.as_deref());
        let trust_fix = format!(
            "make git trust it (safe): git clone -c http.sslCAInfo=/path/to/ca.crt {}/…, or for every repository of this server: git config --global http.{}/.sslCAInfo /path/to/ca.crt. Last resort (the seed's, unsafe): GIT_SSL_NO_VERIFY=true",
            self.public.to_string_full(),
            self.public.origin()
        );
        match (problems.is_empty(), verified) {
            (true, Ok(())) => self.add(
                "certificate",
                Outcome::Pass,
                format!(
                    "certificate for {} ({}, {}) valid until {}{}",
                    info.names().join(", "),
                    info.key_type,
                    if self.ca.is_some() { "signed by the given CA" } else { "trusted by the system" },
                    trove_tls::format_time(info.not_after),
                    ""
                ),
                None,
            ),
            (true, Err(e)) => {
                let why = if info.self_signed { "self-signed".to_string() } else { format!("not trusted: {e}") };
                self.add(
                    "certificate",
                    Outcome::Fail,
                    format!("the certificate for {} is {why}", info.names().join(", ")),
                    Some(format!("{trust_fix}; or pass --ca if a private CA signed it")),
                );
            }
            (false, _) => {
                let fix = if problems.iter().any(|p| p.contains("expire")) {
                    "renew it: trove cert issue --ca CA_DIR --host NAME --out DIR (or restart `trove up`, which renews its own), then SIGHUP the gateway"
                        .to_string()
                } else if problems.iter().any(|p| p.contains("does not name")) {
                    self.up_fix().unwrap_or_else(|| format!("issue one that names {host}: trove cert issue --ca CA_DIR --host {host} --out DIR"))
                } else {
                    "make a new key and certificate: trove cert self-signed --host NAME --out DIR".to_string()
                };
                self.add("certificate", Outcome::Fail, format!("certificate problem: {}", problems.join("; ")), Some(fix));
            }
        }
    }

    async fn check_caching(&mut self) {
        let Some(repo) = self.repo.clone() else {
            self.add(
                "caching",
                Outcome::Skip,
                "give --repo KEY/slug (and --user with TROVE_PASSWORD) to check that authenticated answers are not cacheable",
                None,
            );
            return;
        };
        let path = format!("{}/scm/{}.git/info/refs?service=git-upload-pack", self.public.path, repo.to_ascii_lowercase());
        let auth = self.basic();
        let first = self.net.fetch(&self.public, "GET", &path, &auth, 0).await;
        let second = self.net.fetch(&self.public, "GET", &path, &auth, 0).await;
        match (first, second) {
            // Only a successful answer holds what a cache must not keep; a 401 or 404 says
            // nothing about how answers are cached (RFC 9111 §3: caching is per response).
            (Ok(a), Ok(b)) if a.status != 200 || b.status != 200 => {
                let status = if a.status != 200 { a.status } else { b.status };
                let why = match status {
                    _ if !self.proxy_ok => "the public URL does not reach the server (see the proxy check)".to_string(),
                    401 => "the repository needs a login: give --user NAME (the password in TROVE_PASSWORD)".to_string(),
                    404 => format!("the repository {repo} does not exist, or --user may not read it"),
                    s => format!("it answered {s}"),
                };
                self.add("caching", Outcome::Skip, format!("not checked: GET {path} answered {status}, not 200: {why}"), None);
            }
            (Ok(a), Ok(b)) => {
                let cc = a.header("cache-control").unwrap_or("").to_ascii_lowercase();
                let private = cc.contains("no-store") || cc.contains("no-cache") || cc.contains("private") || cc.contains("max-age=0");
                let cache_signs: Vec<String> = ["age", "x-cache", "x-cache-lookup", "cf-cache-status", "x-varnish"]
                    .iter()
                    .filter_map(|h| b.header(h).map(|v| format!("{h}: {v}")))
                    .chain(
                        b.header("via")
                            .filter(|v| v.to_ascii_lowercase().contains("cache") || v.to_ascii_lowercase().contains("varnish"))
                            .map(|v| format!("via: {v}")),
                    )
                    .collect();
                let public_cc = cc.contains("public")
                    || cc.contains("s-maxage")
                    || cc.split(',').any(|p| p.trim().strip_prefix("max-age=").and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n > 0));
                if cache_signs.is_empty() && private && !public_cc {
                    self.add(
                        "caching",
                        Outcome::Pass,
                        format!("authenticated answers are not cacheable (Cache-Control: {cc}) and no cache answers in between"),
                        None,
                    );
                } else {
                    let mut what = Vec::new();
                    if !private || public_cc {
                        what.push(format!("an authenticated answer is cacheable (Cache-Control: {})", if cc.is_empty() { "none" } else { &cc }));
                    }
                    if !cache_signs.is_empty() {
                        what.push(format!("a cache answered: {}", cache_signs.join(", ")));
                    }
                    self.add("caching", Outcome::Fail, what.join("; "), Some("remove response caching from the proxy (the seed warns that mod_cache hijacks sessions): disable mod_cache / CacheEnable, and do not set Cache-Control on proxied responses".into()));
                }
            }
            (Err(e), _) | (_, Err(e)) => self.add("caching", Outcome::Skip, format!("{e:#}"), None),
        }
    }

    async fn check_git(&mut self) {
        let Some(repo) = self.repo.clone() else {
            self.add("git", Outcome::Skip, "give --repo KEY/slug to try git ls-remote through the public URL", None);
            return;
        };
        let url = format!("{}/scm/{}.git", self.public.to_string_full(), repo.to_ascii_lowercase());
        let mut cmd = tokio::process::Command::new("git");
        cmd.arg("-c").arg("credential.helper=").arg("-c").arg("core.askPass=");
        if let Some(ca) = &self.ca {
            cmd.arg("-c").arg(format!("http.sslCAInfo={}", ca.display()));
        }
        if let Some((_, v)) = self.basic().first() {
            cmd.arg("-c").arg(format!("http.extraHeader=Authorization: {v}"));
        }
        // curl's resolve list, as git passes it on (git 2.37+): HOST:PORT:ADDR.
        if let Some(ip) = self.net.resolved(&self.public.host) {
            let addr = if ip.is_ipv6() { format!("[{ip}]") } else { ip.to_string() };
            cmd.arg("-c").arg(format!("http.curloptResolve={}:{}:{addr}", self.public.host.trim_start_matches('[').trim_end_matches(']'), self.public.port));
        }
        cmd.arg("ls-remote").arg(&url).env("GIT_TERMINAL_PROMPT", "0").env_remove("GIT_SSL_NO_VERIFY");
        if self.ca.is_some() {
            cmd.env_remove("GIT_SSL_CAINFO");
        }
        match tokio::time::timeout(Duration::from_secs(30), cmd.output()).await {
            Ok(Ok(o)) if o.status.success() => {
                let refs = String::from_utf8_lossy(&o.stdout).lines().count();
                self.add("git", Outcome::Pass, format!("git ls-remote {url} works ({refs} refs)"), None);
            }
            Ok(Ok(o)) => {
                let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
                let fix = if err.contains("certificate") || err.contains("SSL") {
                    "git does not trust the certificate: see the certificate check's fix".to_string()
                // "returned error: 401", not any "401": the URL's port may hold those digits.
                } else if err.contains("error: 401") || err.contains("Authentication") || err.contains("could not read Username") {
                    "give --user NAME and TROVE_PASSWORD for a user who may read the repository".to_string()
                } else if !self.proxy_ok {
                    "the public URL does not reach the server: see the proxy check".to_string()
                } else if err.contains("not found") {
                    format!("check --repo {repo}: the KEY/slug of a repository that exists and that --user may read")
                } else {
                    "check that the repository exists and that the proxy passes /scm/ through".to_string()
                };
                self.add("git", Outcome::Fail, format!("git ls-remote {url} failed: {err}"), Some(fix));
            }
            Ok(Err(e)) => self.add("git", Outcome::Fail, format!("cannot run git: {e}"), Some("install git".into())),
            Err(_) => self.add("git", Outcome::Fail, "git ls-remote took more than 30 s".to_string(), Some("check the proxy's timeouts".into())),
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Like the other commands: ./trove-data unless --data says otherwise.
    let data = match &args.data {
        Some(d) if !d.is_dir() => anyhow::bail!("--data {}: no such directory; give the data directory of `trove up` or `trove server`", d.display()),
        Some(d) => Some(d.clone()),
        None => Some(PathBuf::from(trove_server::DEFAULT_DATA_DIR)).filter(|d| d.is_dir()),
    };
    let state = match &data {
        Some(d) => UpState::load(d)?,
        None => None,
    };
    let stored_base = data
        .as_ref()
        .filter(|d| d.join("trove.db").exists())
        .and_then(|d| trove_store::Store::open(d).ok())
        .and_then(|s| s.base_url().ok().flatten())
        .map(|b| b.as_str().trim_end_matches('/').to_string());
    let public = match (&args.url, &state) {
        (Some(u), _) => u.clone(),
        (None, Some(st)) => st.public_url.clone(),
        (None, None) => stored_base.clone().with_context(|| match &data {
            Some(d) => format!("give --url PUBLIC_URL: {} has no `trove up` settings and no base URL", d.display()),
            None => "give --url PUBLIC_URL and --server URL, or --data DIR (there is no ./trove-data here)".to_string(),
        })?,
    };
    let public = Url::parse(&public)?;
    let server = match (&args.server, &state, &data) {
        (Some(s), _, _) => Url::parse(s)?,
        (None, Some(st), _) => Url::parse(&format!("http://{}{}", st.server, public.path))?,
        // A `trove server` data directory: its default address.
        (None, None, Some(_)) => Url::parse(&format!("http://{}{}", trove_server::DEFAULT_LISTEN, public.path))?,
        (None, None, None) => anyhow::bail!("give --server URL of the Trove server (e.g. http://127.0.0.1:7990), or --data DIR"),
    };
    let ca = args.ca.clone().or_else(|| data.as_ref().map(|d| d.join("tls/ca.crt")).filter(|p| p.exists()));
    let gateway_config = args.gateway_config.clone().or_else(|| data.as_ref().map(|d| d.join(GATEWAY_FILE)).filter(|p| p.exists()));
    let auth = match &args.user {
        Some(u) => Some((u.clone(), std::env::var("TROVE_PASSWORD").context("--user needs the password in TROVE_PASSWORD (never on the command line)")?)),
        None => None,
    };
    let ssh = match (&args.ssh, &state) {
        (Some(s), _) => {
            let (h, p) = s.rsplit_once(':').with_context(|| format!("--ssh {s:?} is not HOST:PORT"))?;
            Some((h.trim_start_matches('[').trim_end_matches(']').to_owned(), p.parse().with_context(|| format!("--ssh {s:?}: bad port"))?))
        }
        (None, Some(st)) if st.ssh != "off" => st.ssh.rsplit_once(':').and_then(|(h, p)| Some((h.to_owned(), p.parse().ok()?))),
        _ => None,
    };
    let net = Net { resolve: args.resolve.iter().map(|r| parse_resolve(r)).collect::<anyhow::Result<_>>()? };
    let mut doc = Doctor {
        public,
        server,
        ca,
        auth,
        repo: args.repo.clone(),
        gateway_config,
        data,
        up: state,
        net,
        server_ctx: None,
        proxy_ok: false,
        ssh,
        ssh_key: args.ssh_key.clone(),
        checks: Vec::new(),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(doc.run());
    let failed = doc.checks.iter().filter(|c| c.outcome == Outcome::Fail).count();
    if args.json {
        println!("{}", serde_json::json!({ "ok": failed == 0, "checks": doc.checks }));
    } else {
        for c in &doc.checks {
            let mark = match c.outcome {
                Outcome::Pass => "✔",
                Outcome::Fail => "✘",
                Outcome::Skip => "·",
            };
            println!("{mark} {:<14} {}", c.name, c.detail);
            if let Some(f) = &c.fix {
                println!("    fix: {f}");
            }
        }
        println!();
        if failed == 0 {
            println!("All checks passed.");
        } else {
            println!("{failed} check{} failed.", if failed == 1 { "" } else { "s" });
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_compare_by_scheme_host_port_and_path() {
        let a = Url::parse("https://Git.Example.com/stash/").unwrap();
        let b = Url::parse("https://git.example.com:443/stash").unwrap();
        assert!(a.same(&b));
        assert!(!a.same(&Url::parse("http://git.example.com/stash").unwrap()));
        assert!(!a.same(&Url::parse("https://git.example.com:8443/stash").unwrap()));
        assert!(!a.same(&Url::parse("https://git.example.com/").unwrap()));
        assert_eq!(Url::parse("http://127.0.0.1:7990").unwrap().to_string_full(), "http://127.0.0.1:7990");
        assert!(Url::parse("ftp://x").is_err());
    }

    #[test]
    fn url_edge_cases_and_their_messages() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("HTTPS://Git.Example.com:443/stash//", Ok("https://git.example.com/stash")),
            ("https://git.example.com:8443", Ok("https://git.example.com:8443")),
            ("http://git.example.com:80/", Ok("http://git.example.com")),
            ("http://[::1]:7990/stash", Ok("http://[::1]:7990/stash")),
            ("http://[::1]", Ok("http://[::1]")),
            ("http://h/a%20b", Ok("http://h/a%20b")),
            ("http://h/x?y", Ok("http://h/x")),
            ("git.example.com/stash", Err(r#""git.example.com/stash" is not a URL like https://host[:port][/path]"#)),
            ("ftp://h", Err(r#""ftp://h": only http and https URLs"#)),
            ("https://u@h", Err(r#""https://u@h" is not a URL like https://host[:port][/path]"#)),
            ("https://h:99999", Err(r#""https://h:99999" is not a URL like https://host[:port][/path]"#)),
            ("https://h x", Err(r#""https://h x" is not a URL like https://host[:port][/path]"#)),
            ("https://", Err(r#""https://" is not a URL like https://host[:port][/path]"#)),
            ("http://[::1", Err(r#""http://[::1" is not a URL like https://host[:port][/path]"#)),
        ];
        for (input, want) in cases {
            let got = Url::parse(input).map(|u| u.to_string_full()).map_err(|e| e.to_string());
            assert_eq!(got.as_deref().map_err(String::as_str), want.as_ref().map(|w| *w).map_err(|e| *e), "input {input:?}");
        }
        let u = Url::parse("https://h:8443/x/").unwrap();
        assert_eq!((u.scheme.as_str(), u.host.as_str(), u.port, u.path.as_str()), ("https", "h", 8443, "/x"));
    }

    #[test]
    fn resolve_takes_a_host_and_an_ip_address() {
        assert_eq!(parse_resolve("Git.Example.com:127.0.0.1").unwrap(), ("git.example.com".to_string(), "127.0.0.1".parse().unwrap()));
        assert_eq!(parse_resolve("git.example.com:[::1]").unwrap().1, "::1".parse::<std::net::IpAddr>().unwrap());
        assert_eq!(parse_resolve("git.example.com:::1").unwrap().1, "::1".parse::<std::net::IpAddr>().unwrap());
        for bad in ["git.example.com", "git.example.com:", ":127.0.0.1", "git.example.com:8443:127.0.0.1", "git.example.com:localhost"] {
            assert!(parse_resolve(bad).unwrap_err().to_string().contains("give HOST:ADDR"), "{bad}");
        }
    }

    #[test]
    fn the_context_path_is_read_from_a_pages_stylesheet_link() {
        let page = |ctx: &str| format!("<head><link rel=\"stylesheet\" href=\"{ctx}/static/trove.css\"><script src=\"{ctx}/static/trove.js\"></script>");
        assert_eq!(context_path_in_page(&page("/stash")).as_deref(), Some("/stash"));
        assert_eq!(context_path_in_page(&page("/a/b")).as_deref(), Some("/a/b"));
        assert_eq!(context_path_in_page(&page("")).as_deref(), Some(""));
        assert_eq!(context_path_in_page("<html>not ours</html>"), None);
        assert_eq!(context_path_in_page(&page("https://cdn.example")), None);
    }
}
