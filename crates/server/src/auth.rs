//! Who is calling: `Authorization` header parsing, credential checks against the store, and the
//! failed-login policy: per-account locks (kept in the store) and a per-address limit on
//! distinct accounts. Every check of credentials, won or lost, is an audit log entry
//! (`login.success`, `login.failure`) naming the surface and the client's address.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use trove_store::{Authenticated, LoginPolicy, PasswordCheck, Store};

use crate::Shared;
use crate::audit::{Action, AuditLog, target};
use crate::challenge::Challenges;
use crate::config::AuthSettings;

use crate::error::HttpError;

/// Where credentials were given, as the audit log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channel {
    Rest,
    Git,
    Web,
}

impl Channel {
    fn as_str(self) -> &'static str {
        match self {
            Channel::Rest => "rest",
            Channel::Git => "git",
            Channel::Web => "web",
        }
    }
}

/// One check of credentials, as its audit entry describes it.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    addr: Option<IpAddr>,
    channel: Channel,
    /// `password`, `token`, or `header` (credentials that did not even parse).
    method: &'static str,
    /// The id of the token of ours that was tried (never its secret).
    token: Option<i64>,
}

/// One login's audit entry: `actor` as authenticated, or the name tried (`anonymous` when none
/// was given); `why` for a failure.
fn audit_login(audit: &AuditLog, store: &Store, actor: &str, attempt: Attempt, why: Option<&str>) {
    let Attempt { addr, channel, method, token } = attempt;
    let mut details = json!({"channel": channel.as_str(), "method": method});
    if let Some(id) = token {
        details["tokenId"] = json!(id);
    }
    let (action, target) = match why {
        None => {
            // Web sign-ins are always written; credentials sent with every REST or git request
            // are written once per window for the same user, method, token and address.
            if channel != Channel::Web {
                let key = format!("{actor}\0{}\0{method}\0{token:?}\0{addr:?}", channel.as_str());
                if !audit.first_login_in_window(key, crate::audit::now_ms()) {
                    return;
                }
            }
            (Action::LoginSuccess, target::user(actor))
        }
        Some(reason) => {
            details["reason"] = json!(reason);
            let target = match (actor, token) {
                ("anonymous", Some(id)) => format!("token:{id}"),
                ("anonymous", None) => "-".to_owned(),
                (name, _) => target::user(name),
            };
            (Action::LoginFailure, target)
        }
    };
    audit.record(store, actor, addr, action, &target, details);
}

/// The id in a token of ours (`trv_<id>_<secret>`), for the audit log; the secret never.
fn token_id(secret: &str) -> Option<i64> {
    secret.strip_prefix("trv_")?.split_once('_')?.0.parse().ok()
}

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

/// The failed-login policy's in-process half: the argon2 queue, the address-wide limit and the
/// web sign-in's challenge. Per-account counts and locks live in the store
/// (`trove_store::LoginPolicy`), so every process and `trove admin` see the same.
pub(crate) struct LoginLimiter {
    /// Bounds concurrent argon2 checks: each takes ~19 MiB and a core for a while, so a burst
    /// of logins must queue rather than exhaust memory on the blocking thread pool.
    hashing: tokio::sync::Semaphore,
    pub(crate) policy: LoginPolicy,
    /// Distinct accounts one address may fail to log in to within `window` before its password
    /// logins wait for the window to end. `0` disables the address limit.
    max_accounts_per_address: usize,
    window: Duration,
    pub(crate) challenges: Challenges,
}

impl LoginLimiter {
    pub(crate) fn new(settings: &AuthSettings) -> Self {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let window = settings.failed_login_window;
        Self {
            hashing: tokio::sync::Semaphore::new(cpus),
            policy: LoginPolicy { max_failures: settings.max_failed_logins, window_secs: window.as_secs() as i64, lock_secs: settings.lock.as_secs() as i64 },
            max_accounts_per_address: settings.max_failed_accounts_per_address as usize,
            window,
            challenges: Challenges::new(settings.challenge_bits),
        }
    }

    /// How long until password logins from `addr` may try again (at `now`, Unix seconds), or
    /// `None` if they may now. The failures are in the store, so every node counts them.
    pub(crate) fn address_blocked_at(&self, store: &Store, addr: Option<IpAddr>, now: i64) -> Result<Option<Duration>, trove_store::StoreError> {
        blocked_at(self.max_accounts_per_address, self.window, store, addr, now)
    }

    pub(crate) fn record_address_failure_at(&self, store: &Store, user: &str, addr: Option<IpAddr>, now: i64) -> Result<(), trove_store::StoreError> {
        record_at(self.max_accounts_per_address, self.window, store, user, addr, now)
    }
}

fn blocked_at(max: usize, window: Duration, store: &Store, addr: Option<IpAddr>, now: i64) -> Result<Option<Duration>, trove_store::StoreError> {
    let Some(addr) = addr else { return Ok(None) };
    if max == 0 {
        return Ok(None);
    }
    let window = window.as_secs() as i64;
    let (accounts, oldest) = store.address_failures(&addr.to_string(), now, window)?;
    if (accounts as usize) < max {
        return Ok(None);
    }
    // Until the oldest counted failure leaves the window.
    Ok(Some(Duration::from_secs((oldest.unwrap_or(now) + window - now).max(1) as u64)))
}

fn record_at(max: usize, window: Duration, store: &Store, user: &str, addr: Option<IpAddr>, now: i64) -> Result<(), trove_store::StoreError> {
    let Some(addr) = addr else { return Ok(()) };
    if max == 0 {
        return Ok(());
    }
    store.record_address_failure(&addr.to_string(), user, now, window.as_secs() as i64)
}

/// Checks the request's credentials. `Ok(None)` when there are none; an error when they are
/// wrong (401), the account is locked or the address is limited (429).
pub(crate) async fn authenticate(state: &Shared, header: Option<&[u8]>, addr: Option<IpAddr>, channel: Channel) -> Result<Option<Authenticated>, HttpError> {
    let Some(header) = header else { return Ok(None) };
    let creds = match parse_authorization(header) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "unusable authorization header");
            let (audit, why) = (state.audit.clone(), format!("unreadable credentials: {e}"));
            let attempt = Attempt { addr, channel, method: "header", token: None };
            state.store.run(move |s| audit_login(&audit, s, "anonymous", attempt, Some(&why))).await;
            return Err(HttpError::BadCredentials);
        }
    };
    match creds {
        // git sends the user name from the URL (`https://dev@host/…`) with an empty password
        // first, and asks for the password only after a 401: that is no guess, so it is
        // neither counted, nor hashed, nor an entry in the audit log.
        Credentials::Basic { secret, .. } if secret.is_empty() => Err(HttpError::BadCredentials),
        // Tokens are 256 random bits: guessing one is hopeless, so they are never locked or
        // limited, and CI that uses them keeps working whatever happens to the password.
        Credentials::Basic { user, secret } if Store::looks_like_token(&secret) => check_token(state, secret, Some(user), addr, channel).await,
        Credentials::Bearer(token) => check_token(state, token, None, addr, channel).await,
        Credentials::Basic { user, secret } => password_login(state, &user, secret, addr, false, channel).await.map(Some),
    }
}

async fn check_token(state: &Shared, token: String, user: Option<String>, addr: Option<IpAddr>, channel: Channel) -> Result<Option<Authenticated>, HttpError> {
    let _permit = state.limiter.hashing.acquire().await.map_err(|e| HttpError::Internal(format!("credential check queue: {e}")))?;
    let audit = state.audit.clone();
    let found = state
        .store
        .run(move |s| {
            let found = s.verify_token(&token, user.as_deref())?;
            let attempt = Attempt { addr, channel, method: "token", token: token_id(&token) };
            match &found {
                Some(a) => audit_login(&audit, s, a.user.name.as_str(), attempt, None),
                None => audit_login(&audit, s, user.as_deref().unwrap_or("anonymous"), attempt, Some("wrong or revoked token")),
            }
            Ok(found)
        })
        .await
        .map_err(|e| HttpError::store("credential check", e))?;
    match found {
        Some(a) => Ok(Some(a)),
        None => {
            tracing::info!("failed login with a token");
            Err(HttpError::BadCredentials)
        }
    }
}

/// A password login under the lock policy; `passed_challenge` when the web sign-in's challenge
/// was solved, which lets a locked account's right password in (and unlocks it).
pub(crate) async fn password_login(
    state: &Shared,
    user: &str,
    secret: String,
    addr: Option<IpAddr>,
    passed_challenge: bool,
    channel: Channel,
) -> Result<Authenticated, HttpError> {
    let limiter = &state.limiter;
    let policy = limiter.policy;
    let (max, window) = (limiter.max_accounts_per_address, limiter.window);
    let _permit = limiter.hashing.acquire().await.map_err(|e| HttpError::Internal(format!("credential check queue: {e}")))?;
    let name = user.to_owned();
    let audit = state.audit.clone();
    // One trip to the blocking pool (argon2 is deliberately slow, and the address limit is in the
    // store): the address limit, the password, a wrong one counted for the address, the entry.
    let result = state
        .store
        .run(move |s| {
            let attempt = Attempt { addr, channel, method: "password", token: None };
            let said = |why: Option<&str>| audit_login(&audit, s, &name, attempt, why);
            if let Some(wait) = blocked_at(max, window, s, addr, now_unix())? {
                said(Some("too many failed logins from this address"));
                return Ok(Err(wait));
            }
            let check = s.check_password(&name, &secret, &policy, passed_challenge)?;
            if let PasswordCheck::Wrong = check
                && let Err(e) = record_at(max, window, s, &name, addr, now_unix())
            {
                tracing::warn!(error = %e, "cannot count a failed login for its address");
            }
            match &check {
                PasswordCheck::Ok(u) => audit_login(&audit, s, u.name.as_str(), attempt, None),
                PasswordCheck::Wrong => said(Some("wrong user name or password")),
                PasswordCheck::Locked(_) => said(Some("account locked after failed logins")),
            }
            Ok(Ok(check))
        })
        .await
        .map_err(|e| HttpError::store("credential check", e))?;
    let result = match result {
        Ok(check) => check,
        Err(retry_after) => return Err(HttpError::TooManyFailedLogins { retry_after }),
    };
    match result {
        PasswordCheck::Ok(user) => Ok(Authenticated { user, token_scope: None }),
        PasswordCheck::Wrong => {
            tracing::info!(user, addr = ?addr, "failed login");
            Err(HttpError::BadCredentials)
        }
        PasswordCheck::Locked(lock) => {
            tracing::info!(user, addr = ?addr, failures = lock.failures, "login to a locked account refused");
            let retry_after = lock.until.map(|until| Duration::from_secs((until - now_unix()).max(1) as u64));
            Err(HttpError::AccountLocked { user: lock.user.to_string(), retry_after })
        }
    }
}

pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
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

    fn settings(max_accounts: u32) -> AuthSettings {
        AuthSettings { max_failed_accounts_per_address: max_accounts, ..crate::ServerConfig::new("unused").auth }
    }

    #[test]
    fn an_address_is_limited_by_distinct_accounts_not_by_one_accounts_retries() {
        // Kept in the store, so every node of a cluster counts the same failures.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t0 = now_unix();
        let l = LoginLimiter::new(&AuthSettings { failed_login_window: Duration::from_secs(300), ..settings(3) });
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let fail = |l: &LoginLimiter, user: &str, addr: IpAddr| l.record_address_failure_at(&store, user, Some(addr), t0).unwrap();
        let blocked = |l: &LoginLimiter, addr: IpAddr, at: i64| l.address_blocked_at(&store, Some(addr), at).unwrap();
        for _ in 0..1000 {
            fail(&l, "alice", a);
        }
        assert_eq!(blocked(&l, a, t0), None, "one account's stale password, retried without end");
        fail(&l, "Bob", a);
        fail(&l, "bob", a);
        assert_eq!(blocked(&l, a, t0), None, "names compare without case");
        fail(&l, "carol", a);
        assert!(blocked(&l, a, t0).is_some(), "three accounts from one address");
        assert_eq!(blocked(&l, b, t0), None, "another address");
        assert_eq!(blocked(&l, a, t0 + 300), None, "the window ends");
        let off = LoginLimiter::new(&settings(0));
        for i in 0..100 {
            fail(&off, &format!("user{i}"), b);
        }
        assert_eq!(blocked(&off, b, t0), None, "0 disables the address limit");
    }
}
