//! Who is calling: `Authorization` header parsing, credential checks against the store, and the
//! failed-login rate limit (per user and per address).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use trove_store::{Authenticated, Store};

use crate::error::HttpError;

/// Credentials as a client sent them, not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credentials {
    /// `Basic base64(user:secret)`; the secret is a password or a personal access token.
    Basic { user: String, secret: String },
    /// `Bearer <token>`.
    Bearer(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthHeaderError {
    #[error("authorization scheme is neither Basic nor Bearer")]
    UnknownScheme,
    #[error("basic credentials are not valid base64")]
    BadBase64,
    #[error("basic credentials are not UTF-8")]
    NotUtf8,
    #[error("basic credentials have no `:` between user and password")]
    NoColon,
    #[error("credentials are empty")]
    Empty,
}

/// Parses an `Authorization` header value (RFC 7617 Basic, RFC 6750 Bearer). The scheme is
/// case-insensitive; the user name is everything before the first `:` (RFC 7617 §2).
pub(crate) fn parse_authorization(value: &[u8]) -> Result<Credentials, AuthHeaderError> {
    let value = std::str::from_utf8(value).map_err(|_| AuthHeaderError::NotUtf8)?.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    let known = scheme.eq_ignore_ascii_case("basic") || scheme.eq_ignore_ascii_case("bearer");
    if !known {
        return Err(AuthHeaderError::UnknownScheme);
    }
    if rest.is_empty() {
        return Err(AuthHeaderError::Empty);
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD.decode(rest).map_err(|_| AuthHeaderError::BadBase64)?;
        let text = String::from_utf8(raw).map_err(|_| AuthHeaderError::NotUtf8)?;
        let (user, secret) = text.split_once(':').ok_or(AuthHeaderError::NoColon)?;
        if user.is_empty() {
            return Err(AuthHeaderError::Empty);
        }
        Ok(Credentials::Basic { user: user.to_owned(), secret: secret.to_owned() })
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Ok(Credentials::Bearer(rest.to_owned()))
    } else {
        Err(AuthHeaderError::UnknownScheme)
    }
}

/// Counts failed logins in a fixed window per user name and per client address; once either
/// reaches the limit, further attempts are refused without checking the password until the
/// window ends, so guessing costs the attacker time and us no argon2 work.
pub(crate) struct LoginLimiter {
    /// Bounds concurrent argon2 checks: each takes ~19 MiB and a core for a while, so a burst
    /// of logins must queue rather than exhaust memory on the blocking thread pool.
    hashing: tokio::sync::Semaphore,
    max_failures: u32,
    window: Duration,
    by_user: Mutex<HashMap<String, Window>>,
    by_addr: Mutex<HashMap<IpAddr, Window>>,
}

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

/// Entries kept before old windows are swept, so a flood of made-up user names cannot grow the
/// maps without bound.
const SWEEP_AT: usize = 10_000;

impl LoginLimiter {
    /// `max_failures = 0` disables the limit.
    pub(crate) fn new(max_failures: u32, window: Duration) -> Self {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        Self { hashing: tokio::sync::Semaphore::new(cpus), max_failures, window, by_user: Mutex::default(), by_addr: Mutex::default() }
    }

    /// How long until `user`/`addr` may try again, or `None` if they may try now.
    pub(crate) fn blocked_for(&self, user: Option<&str>, addr: Option<IpAddr>, now: Instant) -> Option<Duration> {
        if self.max_failures == 0 {
            return None;
        }
        let check = |w: Option<&Window>| {
            w.filter(|w| w.failures >= self.max_failures && now.duration_since(w.start) < self.window).map(|w| self.window - now.duration_since(w.start))
        };
        let u = user.and_then(|u| check(lock(&self.by_user).get(&u.to_ascii_lowercase())));
        let a = addr.and_then(|a| check(lock(&self.by_addr).get(&a)));
        u.max(a)
    }

    pub(crate) fn record_failure(&self, user: Option<&str>, addr: Option<IpAddr>, now: Instant) {
        if self.max_failures == 0 {
            return;
        }
        let bump = |w: &mut Window| {
            if now.duration_since(w.start) >= self.window {
                *w = Window { start: now, failures: 0 };
            }
            w.failures += 1;
        };
        if let Some(u) = user {
            let mut map = lock(&self.by_user);
            sweep(&mut map, now, self.window);
            bump(map.entry(u.to_ascii_lowercase()).or_insert(Window { start: now, failures: 0 }));
        }
        if let Some(a) = addr {
            let mut map = lock(&self.by_addr);
            sweep(&mut map, now, self.window);
            bump(map.entry(a).or_insert(Window { start: now, failures: 0 }));
        }
    }

    /// A successful login clears the user's count (not the address's: one valid account must
    /// not reset the limit for guessing others from the same address).
    pub(crate) fn record_success(&self, user: &str) {
        lock(&self.by_user).remove(&user.to_ascii_lowercase());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn sweep<K>(map: &mut HashMap<K, Window>, now: Instant, window: Duration) {
    if map.len() >= SWEEP_AT {
        map.retain(|_, w| now.duration_since(w.start) < window);
    }
}

/// Checks the request's credentials. `Ok(None)` when there are none; an error when they are
/// wrong (401) or the caller is rate-limited (429).
pub(crate) async fn authenticate(
    store: &Store,
    limiter: &LoginLimiter,
    header: Option<&[u8]>,
    addr: Option<IpAddr>,
) -> Result<Option<Authenticated>, HttpError> {
    let Some(header) = header else { return Ok(None) };
    let creds = parse_authorization(header).map_err(|e| {
        tracing::debug!(error = %e, "unusable authorization header");
        HttpError::BadCredentials
    })?;
    let user_for_limit = match &creds {
        Credentials::Basic { user, .. } => Some(user.clone()),
        Credentials::Bearer(_) => None,
    };
    if let Some(wait) = limiter.blocked_for(user_for_limit.as_deref(), addr, Instant::now()) {
        return Err(HttpError::TooManyFailedLogins { retry_after: wait });
    }
    let store = store.clone();
    let _permit = limiter.hashing.acquire().await.map_err(|e| HttpError::Internal(format!("credential check queue: {e}")))?;
    // argon2 is deliberately slow: keep it off the async worker threads.
    let result = tokio::task::spawn_blocking(move || match creds {
        Credentials::Basic { user, secret } if Store::looks_like_token(&secret) => store.verify_token(&secret, Some(&user)),
        Credentials::Basic { user, secret } => Ok(store.verify_password(&user, &secret)?.map(|user| Authenticated { user, token_scope: None })),
        Credentials::Bearer(token) => store.verify_token(&token, None),
    })
    .await
    .map_err(|e| HttpError::Internal(format!("credential check panicked: {e}")))?
    .map_err(|e| HttpError::Internal(format!("credential check: {e}")))?;
    match result {
        Some(a) => {
            limiter.record_success(a.user.name.as_str());
            Ok(Some(a))
        }
        None => {
            tracing::info!(user = user_for_limit.as_deref().unwrap_or("<bearer>"), addr = ?addr, "failed login");
            limiter.record_failure(user_for_limit.as_deref(), addr, Instant::now());
            Err(HttpError::BadCredentials)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn authorization_headers_parse_into_credentials() {
        let basic = |u: &str, p: &str| Ok(Credentials::Basic { user: u.into(), secret: p.into() });
        let cases: Vec<(String, Result<Credentials, AuthHeaderError>)> = vec![
            (format!("Basic {}", b64("alice:secret")), basic("alice", "secret")),
            (format!("basic {}", b64("alice:se:cr:et")), basic("alice", "se:cr:et")),
            (format!("BASIC  {} ", b64("alice:")), basic("alice", "")),
            (format!("Basic {}", b64("alice")), Err(AuthHeaderError::NoColon)),
            (format!("Basic {}", b64(":pw")), Err(AuthHeaderError::Empty)),
            ("Basic !!!".into(), Err(AuthHeaderError::BadBase64)),
            ("Basic".into(), Err(AuthHeaderError::Empty)),
            ("Bearer trv_1_abc".into(), Ok(Credentials::Bearer("trv_1_abc".into()))),
            ("bearer  tok ".into(), Ok(Credentials::Bearer("tok".into()))),
            ("Bearer ".into(), Err(AuthHeaderError::Empty)),
            ("Digest abc".into(), Err(AuthHeaderError::UnknownScheme)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_authorization(input.as_bytes()), want, "input {input:?}");
        }
        let not_utf8 = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode([0xff, b':', b'x']));
        assert_eq!(parse_authorization(not_utf8.as_bytes()), Err(AuthHeaderError::NotUtf8));
    }

    #[test]
    fn failed_logins_block_the_user_and_the_address_until_the_window_ends() {
        let t0 = Instant::now();
        let window = Duration::from_secs(300);
        let l = LoginLimiter::new(3, window);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..2 {
            l.record_failure(Some("alice"), Some(a), t0);
        }
        assert_eq!(l.blocked_for(Some("alice"), Some(a), t0), None, "two failures are allowed");
        l.record_failure(Some("Alice"), Some(a), t0);
        assert!(l.blocked_for(Some("alice"), Some(b), t0).is_some(), "user is blocked from any address");
        assert!(l.blocked_for(Some("bob"), Some(a), t0).is_some(), "address is blocked for any user");
        assert_eq!(l.blocked_for(Some("bob"), Some(b), t0), None);
        let later = t0 + window;
        assert_eq!(l.blocked_for(Some("alice"), Some(a), later), None, "the window ends");
        l.record_failure(Some("alice"), Some(a), later);
        assert_eq!(l.blocked_for(Some("alice"), Some(a), later), None, "a new window starts from zero");
    }

    #[test]
    fn success_clears_the_user_but_not_the_address_and_zero_disables() {
        let t0 = Instant::now();
        let l = LoginLimiter::new(2, Duration::from_secs(60));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        l.record_failure(Some("alice"), Some(a), t0);
        l.record_failure(Some("carol"), Some(a), t0);
        l.record_success("alice");
        assert!(l.blocked_for(Some("alice"), None, t0).is_none());
        assert!(l.blocked_for(None, Some(a), t0).is_some());
        let off = LoginLimiter::new(0, Duration::from_secs(60));
        for _ in 0..100 {
            off.record_failure(Some("alice"), Some(a), t0);
        }
        assert!(off.blocked_for(Some("alice"), Some(a), t0).is_none());
    }
}
