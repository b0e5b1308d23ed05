//! Everything that can go wrong serving a request, and the one place that turns it into an
//! HTTP status. Internal details go to the log; the response says only what the caller can act on.

use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// The `WWW-Authenticate` challenge git clients expect before they send credentials.
pub(crate) const CHALLENGE: &str = "Basic realm=\"Trove\"";

#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    /// No route: outside the context path, or a path we do not serve.
    #[error("no route")]
    NoRoute,
    /// No such repository, or the caller may not read it: the same answer for both, so a
    /// private repository's existence does not leak.
    #[error("repository not found")]
    NotFound,
    /// The repository was renamed or moved: a permanent redirect to `Location` (git follows it
    /// for the first request of a fetch or push, `http.followRedirects=initial`).
    #[error("repository moved to {0}")]
    Moved(String),
    #[error("authentication required")]
    AuthRequired,
    #[error("wrong user name, password or token")]
    BadCredentials,
    /// Too many distinct accounts failed from this address (password spraying).
    #[error("too many failed logins")]
    TooManyFailedLogins { retry_after: Duration },
    /// The account's password logins are locked after wrong passwords; `retry_after` is `None`
    /// when the lock lasts until cleared.
    #[error("account {user} is locked after failed logins")]
    AccountLocked { user: String, retry_after: Option<Duration> },
    /// `token`: the scope of the access token used, when the user could push but the token
    /// may not (the message then says so, not that the user lacks write).
    #[error("{user} may not push to {repo}")]
    PushForbidden { user: String, repo: String, token: Option<trove_store::TokenScope> },
    #[error("{0}")]
    ServiceForbidden(&'static str),
    #[error("request content type must be {expected}")]
    UnsupportedMediaType { expected: String },
    #[error("content encoding {0:?} is not supported")]
    UnsupportedEncoding(String),
    #[error("request body inflates to more than {limit} bytes")]
    RequestTooLarge { limit: u64 },
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Request bodies in memory are at their cap (`budget`): try again shortly.
    #[error("{0}")]
    Busy(#[from] crate::budget::Exhausted),
    /// The metadata database cannot be reached (PostgreSQL down or restarting): 503, and the
    /// next request tries again.
    #[error("database unavailable: {0}")]
    DatabaseDown(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl HttpError {
    /// A store failure: 503 when the database is unreachable, else 500.
    pub(crate) fn store(context: &str, e: trove_store::StoreError) -> HttpError {
        if e.is_unavailable() { HttpError::DatabaseDown(e.to_string()) } else { HttpError::Internal(format!("{context}: {e}")) }
    }
}

fn text(status: StatusCode, msg: String) -> Response {
    let mut r = Response::new(Body::from(msg));
    *r.status_mut() = status;
    // git prints text/plain error bodies to the user as `remote: …` (remote-curl.c
    // show_http_message), so every message here is written for a person at a terminal.
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        match self {
            HttpError::NoRoute => text(StatusCode::NOT_FOUND, "Not found.\n".into()),
            HttpError::NotFound => text(StatusCode::NOT_FOUND, "Repository not found, or you may not read it.\n".into()),
            HttpError::Moved(location) => {
                let mut r = text(StatusCode::MOVED_PERMANENTLY, format!("This repository has moved to {location}; update your remote.\n"));
                if let Ok(v) = HeaderValue::from_str(&location) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r
            }
            HttpError::AuthRequired | HttpError::BadCredentials => {
                let msg = if matches!(self, HttpError::AuthRequired) { "Authentication required.\n" } else { "Wrong user name, password or token.\n" };
                let mut r = text(StatusCode::UNAUTHORIZED, msg.into());
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
                r
            }
            HttpError::TooManyFailedLogins { retry_after } => {
                let secs = retry_after.as_secs().max(1);
                let mut r = text(StatusCode::TOO_MANY_REQUESTS, format!("Too many failed logins; try again in {secs} seconds.\n"));
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
                r
            }
            HttpError::AccountLocked { user, retry_after } => {
                let mut r = text(StatusCode::TOO_MANY_REQUESTS, format!("{}\n", locked_message(&user, retry_after)));
                if let Some(d) = retry_after {
                    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(d.as_secs().max(1)));
                }
                r
            }
            HttpError::PushForbidden { user, repo, token: None } => text(
                StatusCode::FORBIDDEN,
                format!("User {user} may not push to {repo}: write permission is required. Ask a project or repository administrator for it.\n"),
            ),
            HttpError::PushForbidden { user, repo, token: Some(scope) } => text(
                StatusCode::FORBIDDEN,
                format!(
                    "User {user} may push to {repo}, but not with this access token: it is a {scope} token, and pushing needs write. Use a token with write (or admin) scope, or your password.\n"
                ),
            ),
            HttpError::ServiceForbidden(msg) => text(StatusCode::FORBIDDEN, format!("{msg}\n")),
            HttpError::UnsupportedMediaType { expected } => text(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("Request content type must be {expected}.\n")),
            HttpError::UnsupportedEncoding(e) => {
                text(StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("Content-Encoding {e} is not supported; use gzip or none.\n"))
            }
            HttpError::RequestTooLarge { limit } => text(StatusCode::PAYLOAD_TOO_LARGE, format!("Request body inflates to more than {limit} bytes.\n")),
            HttpError::BadRequest(msg) => text(StatusCode::BAD_REQUEST, format!("{msg}\n")),
            HttpError::Busy(e) => {
                tracing::warn!(total = e.total, "request refused: request bodies in memory are at their cap (max_buffered_request_bytes)");
                let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "The server is busy reading other requests; try again in a few seconds.\n".into());
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                r
            }
            HttpError::DatabaseDown(detail) => {
                tracing::warn!(%detail, "request refused: the database is unavailable");
                let mut r =
                    text(StatusCode::SERVICE_UNAVAILABLE, "The database is unavailable; the request was not carried out. Try again in a few seconds.\n".into());
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                r
            }
            HttpError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                text(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error; the server log has details.\n".into())
            }
        }
    }
}

/// What a locked account's owner reads in git's `remote:` lines and REST error messages: what
/// happened and the three ways out.
pub(crate) fn locked_message(user: &str, retry_after: Option<Duration>) -> String {
    let how_long = match retry_after {
        Some(d) => format!("for another {} minutes", d.as_secs().div_ceil(60).max(1)),
        None => "until it is unlocked".to_owned(),
    };
    format!(
        "Too many failed logins for {user}: password logins over git and the REST API are paused {how_long}. \
         To unlock it now, sign in to the web UI once (the page asks for a short browser check); \
         or use a personal access token instead of the password; \
         or ask an administrator to clear it (`trove admin user unlock {user}`)."
    )
}

/// Errors opening or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] trove_store::StoreError),
    #[error("[database]: {0}")]
    Database(String),
    #[error("cannot run git ({binary}): {detail}; install git 2.31 or newer or set [git] binary in trove.toml")]
    Git { binary: String, detail: String },
    #[error(transparent)]
    NodeId(#[from] crate::node::NodeIdError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error(transparent)]
    HostKey(#[from] crate::ssh::HostKeyError),
    #[error("[pack_cache] dir {path}: {detail}")]
    PackCache { path: std::path::PathBuf, detail: String },
    #[error("server stopped: {0}")]
    Io(#[from] std::io::Error),
}
