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
use trove_gateway::tls::CertInfo;

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
    /// Read what `trove up` set up here: public URL, server address, CA, gateway config.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// A repository to try `git ls-remote` on, as KEY/slug.
    #[arg(long, value_name = "KEY/SLUG")]
    repo: Option<String>,
    /// The gateway config to lint (default: the one in --data).
    #[arg(long, value_name = "FILE")]
    gateway_config: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
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
    fn parse(s: &str) -> anyhow::Result<Url> {
        let (scheme, rest) = s.split_once("://").with_context(|| format!("{s:?} is not a URL like https://host[:port][/path]"))?;
        let scheme = scheme.to_ascii_lowercase();
        anyhow::ensure!(scheme == "http" || scheme == "https", "{s:?}: only http and https URLs");
        let (auth, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let default = if scheme == "https" { 443 } else { 80 };
        let (host, port) = match auth.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || auth.starts_with('[') => match p.parse::<u16>() {
                Ok(p) => (h.to_string(), p),
                Err(_) => (auth.to_string(), default),
            },
            _ => (auth.to_string(), default),
        };
        Ok(Url { scheme, host: host.to_ascii_lowercase(), port, path: path.trim_end_matches('/').to_string() })
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

/// One HTTP/1.1 request, headers only read back (the body is not needed by any check).
async fn fetch(u: &Url, method: &str, path: &str, extra: &[(String, String)]) -> anyhow::Result<Resp> {
    let addr = format!("{}:{}", u.host.trim_start_matches('[').trim_end_matches(']'), u.port);
    let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(&addr))
        .await
        .with_context(|| format!("connecting to {addr} timed out"))?
        .with_context(|| format!("cannot connect to {addr}"))?;
    let seen: Arc<Mutex<Vec<CertificateDer<'static>>>> = Arc::default();
    let mut stream: Box<dyn Io> = if u.scheme == "https" {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Recorder { seen: seen.clone(), provider }))
            .with_no_client_auth();
        let name = ServerName::try_from(u.host.trim_start_matches('[').trim_end_matches(']').to_string()).context("bad host name")?;
        let tls = tokio::time::timeout(Duration::from_secs(5), tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp))
            .await
            .context("TLS handshake timed out")?
            .context("TLS handshake failed")?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let host = if u.default_port() { u.host.clone() } else { format!("{}:{}", u.host, u.port) };
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: trove-doctor\r\nConnection: close\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let head_len = loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut tmp)).await.context("no answer within 10 s")??;
        if n == 0 {
            anyhow::bail!("connection closed without a response");
        }
        buf.extend_from_slice(&tmp[..n]);
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut hs);
        if let httparse::Status::Complete(n) = r.parse(&buf).context("malformed response")? {
            let headers = r.headers.iter().map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned())).collect();
            let status = r.code.unwrap_or(0);
            let _ = n;
            let certs = seen.lock().unwrap().clone();
            return Ok(Resp { status, headers, certs });
        }
        if buf.len() > 65536 {
            break buf.len();
        }
    };
    anyhow::bail!("response head larger than {head_len} bytes")
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

    async fn run(&mut self) {
        let ctx = self.public.path.clone();
        // 1. The server answers directly (the seed: "works when running directly from Tomcat").
        let direct_status = format!("{}/status", self.server.path);
        match fetch(&self.server, "GET", &direct_status, &[]).await {
            Ok(r) if r.status == 200 => {
                self.add("server", Outcome::Pass, format!("the server answers directly at {}{direct_status}", self.server.origin()), None)
            }
            Ok(r) => self.add(
                "server",
                Outcome::Fail,
                format!("{}{direct_status} answered {}", self.server.origin(), r.status),
                Some("check the server's context path: `trove admin settings context-path` must match the path of --server".into()),
            ),
            Err(e) => self.add(
                "server",
                Outcome::Fail,
                format!("{}: {e:#}", self.server.origin()),
                Some("start the server (`trove server` or `trove up`) or fix --server".into()),
            ),
        }
        // 2. Through the proxy.
        let public_status = format!("{ctx}/status");
        match fetch(&self.public, "GET", &public_status, &[]).await {
            Ok(r) if r.status == 200 => {
                self.add("proxy", Outcome::Pass, format!("the public URL answers through the proxy: {}{public_status}", self.public.origin()), None)
            }
            Ok(r) => self.add(
                "proxy",
                Outcome::Fail,
                format!("{}{public_status} answered {} through the proxy", self.public.origin(), r.status),
                Some(format!(
                    "the proxy must route {ctx}/ to the server's {}/ (ProxyPass {} http://SERVER{})",
                    self.server.path,
                    if ctx.is_empty() { "/" } else { &ctx },
                    self.server.path
                )),
            ),
            Err(e) => self.add(
                "proxy",
                Outcome::Fail,
                format!("{}: {e:#}", self.public.origin()),
                Some("start the gateway, or check --url (scheme, host, port)".into()),
            ),
        }
        // 3. Base URL and context path, as the server reports them in the redirects it makes.
        let base_from_server = match self.redirect_probe(&self.server.clone()).await {
            Some((_, loc)) => self.base_from_location(&loc),
            None => None,
        };
        let stored = self
            .data
            .as_ref()
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
                    let data = self.data.as_ref().map(|d| d.display().to_string()).unwrap_or_else(|| "DIR".into());
                    self.add(
                        "base-url",
                        Outcome::Fail,
                        format!("the server's base URL {b} differs from the public URL {}: {}", self.public.to_string_full(), what.join(", ")),
                        Some(format!("trove admin --data {data} settings base-url {}  (the seed's Step 2)", self.public.to_string_full())),
                    );
                }
                Err(e) => self.add(
                    "base-url",
                    Outcome::Fail,
                    format!("the server's base URL {b:?} is unusable: {e}"),
                    Some("set it: trove admin settings base-url https://…".into()),
                ),
            },
            None if self.data.is_some() => self.add(
                "base-url",
                Outcome::Fail,
                "the server has no base URL, so it guesses links from each request".to_string(),
                Some(format!("trove admin --data DIR settings base-url {}", self.public.to_string_full())),
            ),
            None => self.add(
                "base-url",
                Outcome::Skip,
                "the server made no redirect to learn its base URL from; give --repo KEY/slug or --data DIR".to_string(),
                None,
            ),
        }
        if self.server.path == self.public.path {
            self.add("context-path", Outcome::Pass, format!("server and proxy agree on the context path '{}'", if ctx.is_empty() { "/" } else { &ctx }), None);
        } else {
            self.add(
                "context-path",
                Outcome::Fail,
                format!("the proxy serves '{}' but the server lives under '{}'", self.public.path, self.server.path),
                Some(format!(
                    "use the same path on both sides: ProxyPass {0} http://SERVER{0} and `trove admin settings context-path {0}` (the seed's Steps 3 and 5)",
                    if ctx.is_empty() { "/" } else { &ctx }
                )),
            );
        }
        // 4. A redirect made by the server comes back through the proxy with a public Location.
        match self.redirect_probe(&self.public.clone()).await {
            Some((path, loc)) => {
                let abs = if loc.starts_with('/') { format!("{}{loc}", self.public.origin()) } else { loc.clone() };
                if abs.starts_with(&self.public.to_string_full()) {
                    self.add("redirect", Outcome::Pass, format!("a redirect from the server ({path}) comes back through the proxy as {loc}"), None);
                } else {
                    self.add(
                        "redirect",
                        Outcome::Fail,
                        format!("a redirect through the proxy ({path}) points at {loc}, not at {}", self.public.to_string_full()),
                        Some("set the base URL to the public URL, and rewrite Location at the proxy (ProxyPassReverse, or reverse = true on the route)".into()),
                    );
                }
            }
            None => self.add("redirect", Outcome::Skip, "no redirect to inspect; give --repo KEY/slug".to_string(), None),
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
            self.check_certificate().await;
        }
        // 7. Caching: authenticated answers and cookies must not be cacheable, and no cache sits between.
        self.check_caching().await;
        // 8. git ls-remote through the public URL.
        self.check_git().await;
    }

    /// Ask `base` for something the server answers with a redirect: a repository's clone URL
    /// opened in a browser, else the bare context path. Returns the path asked and Location.
    async fn redirect_probe(&self, base: &Url) -> Option<(String, String)> {
        let mut tries = Vec::new();
        if let Some(repo) = &self.repo {
            tries.push(format!("{}/scm/{}.git", base.path, repo.to_ascii_lowercase()));
        }
        if !base.path.is_empty() {
            tries.push(base.path.clone());
        }
        let mut headers = self.basic();
        headers.push(("Accept".into(), "text/html".into()));
        for p in tries {
            if let Ok(r) = fetch(base, "GET", &p, &headers).await
                && (300..400).contains(&r.status)
                && let Some(l) = r.header("location")
            {
                return Some((p, l.to_string()));
            }
        }
        None
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
        let r = match fetch(&self.public, "HEAD", &format!("{}/status", self.public.path), &[]).await {
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
            problems.push(format!("expired on {}", trove_gateway::tls::format_time(info.not_after)));
        } else if info.not_after - t < 14 * 86400 {
            problems.push(format!("expires soon, on {}", trove_gateway::tls::format_time(info.not_after)));
        }
        if info.is_not_yet_valid_at(t) {
            problems.push(format!("not valid before {}", trove_gateway::tls::format_time(info.not_before)));
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
                    trove_gateway::tls::format_time(info.not_after),
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
                    format!("issue one that names {host}: trove cert issue --ca CA_DIR --host {host} --out DIR")
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
        let first = fetch(&self.public, "GET", &path, &auth).await;
        let second = fetch(&self.public, "GET", &path, &auth).await;
        match (first, second) {
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
                    "git does not trust the certificate: see the certificate check's fix"
                } else if err.contains("401") || err.contains("Authentication") || err.contains("could not read Username") {
                    "give --user NAME and TROVE_PASSWORD for a user who may read the repository"
                } else {
                    "check that the repository exists and that the proxy passes /scm/ through"
                };
                self.add("git", Outcome::Fail, format!("git ls-remote {url} failed: {err}"), Some(fix.into()));
            }
            Ok(Err(e)) => self.add("git", Outcome::Fail, format!("cannot run git: {e}"), Some("install git".into())),
            Err(_) => self.add("git", Outcome::Fail, "git ls-remote took more than 30 s".to_string(), Some("check the proxy's timeouts".into())),
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let state = match &args.data {
        Some(d) => UpState::load(d)?,
        None => None,
    };
    let public = args.url.clone().or_else(|| state.as_ref().map(|s| s.public_url.clone())).context("give --url PUBLIC_URL (or --data DIR of a `trove up`)")?;
    let public = Url::parse(&public)?;
    let server = match (&args.server, &state) {
        (Some(s), _) => Url::parse(s)?,
        (None, Some(st)) => Url::parse(&format!("http://{}{}", st.server, public.path))?,
        (None, None) => anyhow::bail!("give --server URL of the Trove server (e.g. http://127.0.0.1:7990), or --data DIR"),
    };
    let ca = args.ca.clone().or_else(|| args.data.as_ref().map(|d| d.join("tls/ca.crt")).filter(|p| p.exists()));
    let gateway_config = args.gateway_config.clone().or_else(|| args.data.as_ref().map(|d| d.join(GATEWAY_FILE)).filter(|p| p.exists()));
    let auth = match &args.user {
        Some(u) => Some((u.clone(), std::env::var("TROVE_PASSWORD").context("--user needs the password in TROVE_PASSWORD (never on the command line)")?)),
        None => None,
    };
    let mut doc = Doctor { public, server, ca, auth, repo: args.repo.clone(), gateway_config, data: args.data.clone(), checks: Vec::new() };
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
}
