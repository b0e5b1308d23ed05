//! The delivery worker: claims due deliveries from the outbox (each webhook's oldest pending
//! event of each repository, so a repository's events arrive in order), POSTs them, and records
//! each attempt; retries with exponential backoff for a bounded time; pauses a failing webhook
//! (the circuit breaker). At least once: a delivery is marked delivered only after the receiver
//! answered 2xx, so a crash between the two sends it again; `X-Request-Id` is the same for every
//! attempt of one delivery, so a receiver can tell a repeat.
//!
//! One request (hyper's HTTP/1.1 client over a connection made here): the host is resolved and
//! every address checked against the network rules ([`super::NetworkRules`]) before connecting
//! to that very address, so a name that resolves somewhere else the second time (DNS
//! rebinding) gains nothing. `https` is verified against the system's roots and
//! `[webhooks] ca_file`, unless the webhook says `sslVerificationRequired: false`. A redirect
//! is not followed (the 3xx is the answer, a failure); at most 64 KiB of the answer is read.
//! Timeouts: `[webhooks] connect_timeout_secs` for DNS, TCP and TLS; `request_timeout_secs`
//! for the whole request.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use trove_store::{Attempt, Breaker, Claimed, Next, Outcome};

use super::NetworkRules;
use crate::AppState;
use crate::config::WebhookSettings;

/// The most of an answer read back (and the start of it kept).
pub(crate) const MAX_RESPONSE: usize = 64 * 1024;
/// How much of the answer is kept on the delivery's record.
const KEPT: usize = 2048;
/// How often a node looks for due deliveries when nothing woke it (other nodes' events, retry
/// times): once a second.
const POLL: Duration = Duration::from_secs(1);
/// Finished deliveries are kept this long (for `latest` and the statistics): 7 days.
const KEEP_FINISHED_MS: i64 = 7 * 24 * 3600 * 1000;

/// Where and how to send.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) secret: Option<String>,
    pub(crate) ssl_verify: bool,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
}

impl Target {
    pub(crate) fn of(h: &trove_store::NewWebhook) -> Target {
        Target { url: h.url.clone(), secret: h.secret.clone(), ssl_verify: h.ssl_verify, username: h.username.clone(), password: h.password.clone() }
    }
}

/// What one request found.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    pub(crate) outcome: Outcome,
    pub(crate) status: Option<u16>,
    /// The answer's body (at most [`MAX_RESPONSE`]), or what went wrong.
    pub(crate) body: String,
    pub(crate) error: Option<String>,
    pub(crate) duration_ms: i64,
    pub(crate) headers: Vec<(String, String)>,
}

impl Sent {
    fn error(e: String, started: Instant) -> Sent {
        Sent {
            outcome: Outcome::Error,
            status: None,
            body: String::new(),
            error: Some(e),
            duration_ms: started.elapsed().as_millis() as i64,
            headers: Vec::new(),
        }
    }

    /// What the delivery's record keeps: `HTTP 500: <start of the body>` or the error.
    pub(crate) fn summary(&self) -> String {
        let s = match (&self.error, self.status) {
            (Some(e), _) => e.clone(),
            (None, Some(st)) => format!("HTTP {st}: {}", self.body),
            (None, None) => String::new(),
        };
        s.chars().take(KEPT).collect()
    }
}

/// `sha256=<hex>`: HMAC-SHA256 of the raw body keyed by the secret, as Bitbucket signs.
pub(crate) fn signature(secret: &str, body: &[u8]) -> String {
    use hmac::{KeyInit as _, Mac as _};
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    m.update(body);
    let out = m.finalize().into_bytes();
    format!("sha256={}", out.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// A UUID (version 4 layout) from 16 bytes.
fn uuid(raw: [u8; 16]) -> String {
    let mut b = raw;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The delivery's `X-Request-Id`: the same for every attempt of it, different for every other.
pub(crate) fn request_id(c: &Claimed) -> String {
    use sha2::Digest as _;
    let d =
        sha2::Sha256::digest(format!("trove-webhook-delivery:{}:{}:{}:{}", c.delivery.id, c.delivery.event_id, c.webhook.id, c.webhook.created_at).as_bytes());
    let mut raw = [0u8; 16];
    raw.copy_from_slice(&d[..16]);
    uuid(raw)
}

/// A fresh random UUID (the test ping's).
pub(crate) fn random_request_id() -> String {
    use rand::Rng as _;
    let mut raw = [0u8; 16];
    trove_store::os_rng().fill_bytes(&mut raw);
    uuid(raw)
}

/// What follows a failed attempt number `attempts` (1 for the first): the next try after
/// `first_retry · 2^(attempts−1)` (at most `max_retry`), unless that is past `retry_for` after
/// the event.
pub(crate) fn after_failure(s: &WebhookSettings, attempts: i64, event_at: i64, now: i64) -> Next {
    let first = s.first_retry.as_millis() as i64;
    let exp = attempts.saturating_sub(1).clamp(0, 30) as u32;
    let delay = first.saturating_mul(1i64 << exp).min(s.max_retry.as_millis() as i64).max(0);
    let next = now.saturating_add(delay);
    if next > event_at.saturating_add(s.retry_for.as_millis() as i64) { Next::GiveUp } else { Next::RetryAt(next) }
}

/// Accepts any certificate (a webhook with `sslVerificationRequired: false`), still checking
/// the handshake's signatures.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The system's roots: `SSL_CERT_FILE`, else the usual bundle paths.
fn system_roots(store: &mut rustls::RootCertStore) {
    use rustls::pki_types::pem::PemObject as _;
    let candidates = std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"].map(std::path::PathBuf::from));
    for path in candidates {
        if let Ok(iter) = CertificateDer::pem_file_iter(&path) {
            let (added, _) = store.add_parsable_certificates(iter.flatten());
            if added > 0 {
                return;
            }
        }
    }
}

/// The two TLS configurations, made once per server.
pub(crate) struct Tls {
    verified: Arc<rustls::ClientConfig>,
    unverified: Arc<rustls::ClientConfig>,
}

fn tls<'a>(cell: &'a OnceLock<Tls>, settings: &WebhookSettings) -> &'a Tls {
    cell.get_or_init(|| {
        use rustls::pki_types::pem::PemObject as _;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        system_roots(&mut roots);
        if let Some(ca) = &settings.ca_file {
            match CertificateDer::pem_file_iter(ca) {
                Ok(iter) => {
                    let (added, _) = roots.add_parsable_certificates(iter.flatten());
                    tracing::info!(file = %ca.display(), certificates = added, "webhooks trust the certificates of [webhooks] ca_file");
                }
                Err(e) => tracing::error!(file = %ca.display(), error = %e, "cannot read [webhooks] ca_file; https webhooks trust the system's roots only"),
            }
        }
        let verified = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the provider's defaults")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let unverified = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the provider's defaults")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth();
        Tls { verified: Arc::new(verified), unverified: Arc::new(unverified) }
    })
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// The request target (`/path?query`) of a URL as written.
fn request_target(url: &str) -> String {
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let start = rest.find(['/', '?']).unwrap_or(rest.len());
    let t = &rest[start..];
    let t = &t[..t.find('#').unwrap_or(t.len())];
    if t.is_empty() {
        "/".into()
    } else if t.starts_with('?') {
        format!("/{t}")
    } else {
        t.to_owned()
    }
}

/// Resolves `host` and returns the addresses the rules allow, or why none is.
pub(crate) async fn allowed_addresses(rules: &NetworkRules, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port)).await.map_err(|e| format!("cannot resolve {bare}: {e}"))?.collect(),
    };
    let mut refused = None;
    let mut ok = Vec::new();
    for a in addrs {
        match rules.check(a.ip()) {
            Ok(()) => ok.push(a),
            Err(r) => refused = refused.or(Some(r)),
        }
    }
    match (ok.is_empty(), refused) {
        (false, _) => Ok(ok),
        (true, Some(r)) => Err(format!("{bare} resolves to {r}")),
        (true, None) => Err(format!("{bare} has no address")),
    }
}

/// Sends one POST now; never fails (a failure is the outcome).
pub(crate) async fn send(svc: &super::WebhookService, rules: &NetworkRules, target: &Target, event_key: &str, request_id: &str, body: &[u8]) -> Sent {
    let started = Instant::now();
    let settings = &svc.settings;
    let tls = tls(&svc.tls, settings);
    match tokio::time::timeout(settings.request_timeout, send_inner(settings, tls, rules, target, event_key, request_id, body, started)).await {
        Ok(sent) => sent,
        Err(_) => Sent::error(format!("no answer within {} s (request timeout)", settings.request_timeout.as_secs()), started),
    }
}

#[allow(clippy::too_many_arguments)]
async fn send_inner(
    settings: &WebhookSettings,
    tls: &Tls,
    rules: &NetworkRules,
    target: &Target,
    event_key: &str,
    request_id: &str,
    body: &[u8],
    started: Instant,
) -> Sent {
    let url = match trove_http::HttpUrl::parse(&target.url) {
        Ok(u) => u,
        Err(e) => return Sent::error(format!("the URL is not valid: {e}"), started),
    };
    let port = url.port_or_default();
    let connect = async {
        let addrs = allowed_addresses(rules, url.host(), port).await?;
        let mut last = String::new();
        for a in addrs {
            match tokio::net::TcpStream::connect(a).await {
                Ok(s) => return Ok((s, a)),
                Err(e) => last = format!("cannot connect to {a}: {e}"),
            }
        }
        Err(last)
    };
    let (tcp, addr) = match tokio::time::timeout(settings.connect_timeout, connect).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => return Sent::error(e, started),
        Err(_) => return Sent::error(format!("no connection within {} s (connect timeout)", settings.connect_timeout.as_secs()), started),
    };
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = if url.scheme() == "https" {
        let cfg = if target.ssl_verify { tls.verified.clone() } else { tls.unverified.clone() };
        let host = url.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        let name = match ServerName::try_from(host) {
            Ok(n) => n,
            Err(e) => return Sent::error(format!("the host is not a TLS server name: {e}"), started),
        };
        match tokio::time::timeout(settings.connect_timeout, tokio_rustls::TlsConnector::from(cfg).connect(name, tcp)).await {
            Ok(Ok(t)) => Box::new(t),
            Ok(Err(e)) => return Sent::error(format!("TLS with {addr} failed: {e}"), started),
            Err(_) => return Sent::error(format!("no TLS handshake within {} s (connect timeout)", settings.connect_timeout.as_secs()), started),
        }
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await {
        Ok(x) => x,
        Err(e) => return Sent::error(format!("HTTP with {addr} failed: {e}"), started),
    };
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = http::Request::post(request_target(&target.url))
        .header(http::header::HOST, url.authority())
        .header(http::header::CONTENT_TYPE, "application/json; charset=utf-8")
        .header(http::header::USER_AGENT, "Trove-Webhooks")
        .header("X-Event-Key", event_key)
        .header("X-Request-Id", request_id)
        .header(http::header::CONNECTION, "close");
    if let Some(secret) = target.secret.as_deref().filter(|s| !s.is_empty()) {
        req = req.header("X-Hub-Signature", signature(secret, body));
    }
    if let Some(user) = target.username.as_deref().filter(|u| !u.is_empty()) {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", target.password.as_deref().unwrap_or("")));
        req = req.header(http::header::AUTHORIZATION, format!("Basic {token}"));
    }
    let req = match req.body(Full::new(Bytes::copy_from_slice(body))) {
        Ok(r) => r,
        Err(e) => return Sent::error(format!("cannot build the request: {e}"), started),
    };
    let resp = match sender.send_request(req).await {
        Ok(r) => r,
        Err(e) => {
            driver.abort();
            return Sent::error(format!("HTTP with {addr} failed: {e}"), started);
        }
    };
    let status = resp.status();
    let headers = resp.headers().iter().map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect();
    let mut body = resp.into_body();
    let mut got = Vec::new();
    while got.len() < MAX_RESPONSE {
        match body.frame().await {
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    let room = MAX_RESPONSE - got.len();
                    got.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    driver.abort();
    let outcome = if status.is_success() { Outcome::Success } else { Outcome::Failure };
    Sent {
        outcome,
        status: Some(status.as_u16()),
        body: String::from_utf8_lossy(&got).into_owned(),
        error: None,
        duration_ms: started.elapsed().as_millis() as i64,
        headers,
    }
}

/// Starts the worker on the server's task tracker; it stops when the server closes.
pub(crate) fn start(state: &AppState) {
    let st = state.clone();
    state.tasks.spawn(run(st));
}

async fn run(state: AppState) {
    let settings = state.webhooks.settings.clone();
    let closing = state.tasks.closing().clone();
    let slots = Arc::new(tokio::sync::Semaphore::new(settings.max_concurrent));
    let node = state.node_id.as_str().to_owned();
    // A claim outlives any attempt: a node that died holding it is replaced after this.
    let lease = (settings.request_timeout.as_millis() as i64).saturating_mul(2).saturating_add(10_000);
    let mut pruned_at = 0i64;
    loop {
        if closing.is_cancelled() {
            break;
        }
        let free = slots.available_permits();
        let mut claimed = Vec::new();
        if free > 0 {
            let node = node.clone();
            let now = crate::pull_requests::now_ms();
            match state.store.run(move |s| s.claim_deliveries(&node, now, lease, free)).await {
                Ok(c) => claimed = c,
                Err(e) => tracing::warn!(error = %e, "cannot claim webhook deliveries; trying again shortly"),
            }
        }
        let got = claimed.len();
        for c in claimed {
            let Ok(permit) = slots.clone().acquire_owned().await else { break };
            let st = state.clone();
            state.tasks.spawn(async move {
                let stop = st.tasks.stop().clone();
                tokio::select! {
                    _ = deliver(&st, c) => {}
                    // Stopped mid-request: the claim expires and another attempt follows.
                    _ = stop.cancelled() => {}
                }
                drop(permit);
                st.webhooks.wake();
            });
        }
        let now = crate::pull_requests::now_ms();
        if now - pruned_at > 3600 * 1000 {
            pruned_at = now;
            let _ = state.store.run(move |s| s.prune_deliveries(now - KEEP_FINISHED_MS)).await;
        }
        if got == 0 || got == free {
            tokio::select! {
                _ = state.webhooks.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = closing.cancelled() => break,
            }
        }
    }
}

/// One attempt of a claimed delivery, recorded.
async fn deliver(state: &AppState, c: Claimed) {
    let settings = &state.webhooks.settings;
    let rules = match state.store.run(NetworkRules::load).await {
        Ok(r) => r,
        Err(e) => return tracing::warn!(error = %e, "cannot read the webhook network rules; the delivery waits for its claim to expire"),
    };
    let id = request_id(&c);
    let sent = send(&state.webhooks, &rules, &Target::of(&c.webhook.hook), &c.delivery.event_key, &id, c.payload.as_bytes()).await;
    let now = crate::pull_requests::now_ms();
    let next = match sent.outcome {
        Outcome::Success => Next::Done,
        _ => after_failure(settings, c.delivery.attempts + 1, c.delivery.event_at, now),
    };
    match sent.outcome {
        Outcome::Success => tracing::debug!(webhook = c.webhook.id, event = %c.delivery.event_key, delivery = c.delivery.id, "webhook delivered"),
        _ => tracing::info!(
            webhook = c.webhook.id, url = %c.webhook.hook.url, event = %c.delivery.event_key, delivery = c.delivery.id,
            attempt = c.delivery.attempts + 1, result = %sent.summary(), next = ?next, "webhook delivery failed"
        ),
    }
    let attempt = Attempt { at: now, outcome: sent.outcome, status: sent.status.map(i64::from), summary: sent.summary(), duration_ms: sent.duration_ms };
    let breaker = Breaker { threshold: i64::from(settings.breaker_failures), pause_until: now + settings.breaker_pause.as_millis() as i64 };
    let node = state.node_id.as_str().to_owned();
    let did = c.delivery.id;
    match state.store.run(move |s| s.finish_delivery(did, &node, &attempt, next, breaker)).await {
        Ok(true) => {}
        Ok(false) => tracing::warn!(delivery = did, "a webhook delivery's claim expired while it was sent; another attempt may repeat it"),
        Err(e) => tracing::warn!(error = %e, delivery = did, "cannot record a webhook delivery; it is sent again when its claim expires"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_bitbuckets_hmac_sha256_in_hex() {
        // RFC 4231 test case 2.
        assert_eq!(signature("Jefe", b"what do ya want for nothing?"), "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn request_targets_keep_the_path_and_query_and_drop_the_fragment() {
        assert_eq!(request_target("http://h"), "/");
        assert_eq!(request_target("http://h:8080/a/b?x=1#f"), "/a/b?x=1");
        assert_eq!(request_target("https://h?x"), "/?x");
        assert_eq!(request_target("http://[::1]:9/hook"), "/hook");
    }

    #[test]
    fn retries_back_off_exponentially_up_to_the_cap_and_stop_after_the_retry_time() {
        let s = WebhookSettings {
            first_retry: Duration::from_secs(5),
            max_retry: Duration::from_secs(60),
            retry_for: Duration::from_secs(3600),
            ..WebhookSettings::default()
        };
        assert_eq!(after_failure(&s, 1, 0, 0), Next::RetryAt(5_000));
        assert_eq!(after_failure(&s, 2, 0, 0), Next::RetryAt(10_000));
        assert_eq!(after_failure(&s, 4, 0, 0), Next::RetryAt(40_000));
        assert_eq!(after_failure(&s, 5, 0, 0), Next::RetryAt(60_000), "capped");
        assert_eq!(after_failure(&s, 500, 0, 0), Next::RetryAt(60_000), "no overflow");
        assert_eq!(after_failure(&s, 3, 0, 3_600_000 - 20_000), Next::RetryAt(3_600_000));
        assert_eq!(after_failure(&s, 3, 0, 3_600_000 - 19_999), Next::GiveUp);
        let once = WebhookSettings { retry_for: Duration::ZERO, ..s };
        assert_eq!(after_failure(&once, 1, 0, 0), Next::GiveUp, "0 tries once");
    }

    #[test]
    fn request_ids_are_uuids_stable_per_delivery() {
        let r = random_request_id();
        assert_eq!((r.len(), &r[14..15], r.matches('-').count()), (36, "4", 4));
        assert_ne!(random_request_id(), r);
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_a_refused_address_is_refused_before_connecting() {
        let rules = NetworkRules::default();
        let e = allowed_addresses(&rules, "localhost", 80).await.unwrap_err();
        assert!(e.contains("localhost resolves to") && e.contains("loopback"), "{e}");
        let e = allowed_addresses(&rules, "[::1]", 80).await.unwrap_err();
        assert!(e.contains("loopback"), "{e}");
        let mut open = NetworkRules::default();
        open.allow(super::super::parse_network("127.0.0.0/8").unwrap());
        assert_eq!(allowed_addresses(&open, "127.0.0.1", 80).await.unwrap(), ["127.0.0.1:80".parse().unwrap()]);
    }
}
