//! The REST API's errors and the one place that turns them into a status and Bitbucket's error
//! body, `{"errors":[{"context","message","exceptionName"}]}`.
//!
//! Clients key on the status (stashy raises `NotFoundException` for 404, `AuthenticationException`
//! for 401) and show the `message` (atlassian-python-api joins them into its `HTTPError`), so each
//! message is written for a person and says what to do about it.

use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use trove_store::StoreError;

use crate::error::{CHALLENGE, HttpError};
use crate::repo_read::ReadError;

/// `Content-Type` of every REST response: atlassian-python-api reads a 401 body only when the
/// header is exactly this.
pub(crate) const JSON: &str = "application/json;charset=UTF-8";

const VALIDATION: &str = "com.atlassian.bitbucket.validation.ArgumentValidationException";

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("Authentication is required: log in with a user name and password, or an access token.")]
    AuthRequired,
    #[error("Authentication failed: wrong user name, password or token.")]
    BadCredentials,
    #[error("Too many failed logins.")]
    TooManyFailedLogins(Duration),
    #[error("{}", crate::error::locked_message(user, *retry_after))]
    AccountLocked { user: String, retry_after: Option<Duration> },
    /// The caller may see the thing but not do this with it.
    #[error("{0}")]
    Forbidden(String),
    /// Does not exist, or the caller may not see it (the same answer, so nothing leaks).
    #[error("{message}")]
    NotFound { exception: &'static str, message: String },
    /// A field or parameter is missing or invalid; `context` names it.
    #[error("{message}")]
    Invalid { context: Option<String>, message: String },
    /// The body is not the JSON we expect.
    #[error("{0}")]
    Malformed(String),
    #[error("The request body is larger than {0} bytes; send a smaller one.")]
    TooLarge(usize),
    /// Already exists, or conflicts with the current state.
    #[error("{message}")]
    Conflict { exception: &'static str, message: String },
    #[error("No REST resource answers at {0}; see docs/api.md for what is served.")]
    NoRoute(String),
    /// The repository was renamed or moved: 308 to the same resource at its new place.
    #[error("This repository has moved to {0}.")]
    Moved(String),
    #[error("Method not allowed.")]
    MethodNotAllowed,
    #[error("The server is busy reading other requests; try again in a few seconds.")]
    Busy,
    /// Reading the repository failed, or its answer was over a cap ([`crate::repo_read`]).
    #[error("{0}")]
    Read(#[from] crate::repo_read::ReadError),
    /// The metadata database cannot be reached: 503.
    #[error("database unavailable: {0}")]
    DatabaseDown(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub(crate) fn invalid(context: &str, message: impl Into<String>) -> ApiError {
        ApiError::Invalid { context: Some(context.to_owned()), message: message.into() }
    }

    pub(crate) fn no_project(key: &str) -> ApiError {
        ApiError::NotFound { exception: "com.atlassian.bitbucket.project.NoSuchProjectException", message: format!("Project {key} does not exist.") }
    }

    pub(crate) fn no_repo(slug: &str) -> ApiError {
        ApiError::NotFound { exception: "com.atlassian.bitbucket.repository.NoSuchRepositoryException", message: format!("Repository {slug} does not exist.") }
    }

    pub(crate) fn no_user(name: &str) -> ApiError {
        ApiError::NotFound { exception: "com.atlassian.bitbucket.user.NoSuchUserException", message: format!("User {name} does not exist.") }
    }

    pub(crate) fn no_group(name: &str) -> ApiError {
        ApiError::NotFound { exception: "com.atlassian.bitbucket.user.NoSuchGroupException", message: format!("Group {name} does not exist.") }
    }

    /// A change that would lower the caller's own permission (Bitbucket answers 409 for most,
    /// 403 for some; the caller picks).
    pub(crate) fn lowers_own(what: &str) -> ApiError {
        ApiError::Conflict {
            exception: "com.atlassian.bitbucket.permission.PermissionAdminException",
            message: format!("You cannot {what}: it would lower your own permission. Ask another administrator."),
        }
    }

    pub(crate) fn no_commit(rev: &str) -> ApiError {
        ApiError::NotFound {
            exception: "com.atlassian.bitbucket.commit.NoSuchCommitException",
            message: format!("Commit {rev} does not exist in this repository."),
        }
    }

    pub(crate) fn no_path(path: &str, rev: &str) -> ApiError {
        ApiError::NotFound {
            exception: "com.atlassian.bitbucket.content.NoSuchPathException",
            message: format!("The path \"{path}\" does not exist at revision \"{rev}\"."),
        }
    }

    pub(crate) fn forbidden(what: &str) -> ApiError {
        ApiError::Forbidden(format!("You are not permitted to {what}."))
    }

    fn parts(&self) -> (StatusCode, Option<String>, String, &'static str) {
        let msg = self.to_string();
        match self {
            ApiError::AuthRequired => (StatusCode::UNAUTHORIZED, None, msg, "com.atlassian.bitbucket.auth.AuthenticationRequiredException"),
            ApiError::BadCredentials => (StatusCode::UNAUTHORIZED, None, msg, "com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException"),
            ApiError::TooManyFailedLogins(d) => (
                StatusCode::TOO_MANY_REQUESTS,
                None,
                format!("Too many failed logins; try again in {} seconds.", d.as_secs().max(1)),
                "com.atlassian.bitbucket.auth.LoginRateLimitedException",
            ),
            // Bitbucket's name for "this account must pass the CAPTCHA on the login page first".
            ApiError::AccountLocked { .. } => (StatusCode::TOO_MANY_REQUESTS, None, msg, "com.atlassian.bitbucket.auth.CaptchaRequiredAuthenticationException"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, None, msg, "com.atlassian.bitbucket.AuthorisationException"),
            ApiError::NotFound { exception, .. } => (StatusCode::NOT_FOUND, None, msg, exception),
            ApiError::Invalid { context, .. } => (StatusCode::BAD_REQUEST, context.clone(), msg, VALIDATION),
            ApiError::Malformed(_) => (StatusCode::BAD_REQUEST, None, msg, "com.atlassian.bitbucket.rest.exception.UnmarshalException"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, None, msg, VALIDATION),
            ApiError::Conflict { exception, .. } => (StatusCode::CONFLICT, None, msg, exception),
            ApiError::NoRoute(_) => (StatusCode::NOT_FOUND, None, msg, "com.sun.jersey.api.NotFoundException"),
            ApiError::Moved(_) => (StatusCode::PERMANENT_REDIRECT, None, msg, "com.atlassian.bitbucket.repository.RepositoryMovedException"),
            ApiError::Busy => (StatusCode::SERVICE_UNAVAILABLE, None, msg, "com.atlassian.bitbucket.ServiceUnavailableException"),
            ApiError::DatabaseDown(detail) => {
                tracing::warn!(%detail, "REST request refused: the database is unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "The database is unavailable; the request was not carried out. Try again in a few seconds.".into(),
                    "com.atlassian.bitbucket.ServiceUnavailableException",
                )
            }
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                None,
                "This method is not allowed on this resource; see docs/api.md for what is served.".into(),
                "com.sun.jersey.api.MethodNotAllowedException",
            ),
            ApiError::Read(ReadError::TooLarge { .. }) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                "The answer is too large to show; ask for a smaller page, or download the file with /raw.".into(),
                "com.atlassian.bitbucket.content.ContentTooLargeException",
            ),
            ApiError::Read(ReadError::TimedOut { .. }) => {
                tracing::warn!(detail = %msg, "repository read stopped at its time limit");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    None,
                    "Reading the repository took too long and was stopped; try again in a few seconds.".into(),
                    "com.atlassian.bitbucket.ServiceUnavailableException",
                )
            }
            ApiError::Read(_) | ApiError::Internal(_) => {
                let detail = msg;
                tracing::error!(%detail, "internal error in the REST API");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    None,
                    "Internal server error; the server log has details.".into(),
                    "com.atlassian.bitbucket.ServiceException",
                )
            }
        }
    }
}

/// A JSON response with the REST API's content type.
pub(crate) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut r = Response::new(Body::from(value.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    r
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, context, message, exception) = self.parts();
        let body = serde_json::json!({"errors": [{"context": context, "message": message, "exceptionName": exception}]});
        let mut r = json_response(status, &body);
        match self {
            ApiError::AuthRequired | ApiError::BadCredentials => {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
            }
            ApiError::TooManyFailedLogins(d) | ApiError::AccountLocked { retry_after: Some(d), .. } => {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(d.as_secs().max(1)));
            }
            ApiError::Moved(location) => {
                if let Ok(v) = HeaderValue::from_str(&location) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
            }
            ApiError::Busy | ApiError::DatabaseDown(_) => {
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        r
    }
}

impl From<HttpError> for ApiError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::AuthRequired => ApiError::AuthRequired,
            HttpError::BadCredentials => ApiError::BadCredentials,
            HttpError::TooManyFailedLogins { retry_after } => ApiError::TooManyFailedLogins(retry_after),
            HttpError::AccountLocked { user, retry_after } => ApiError::AccountLocked { user, retry_after },
            HttpError::Busy(e) => {
                tracing::warn!(total = e.total, "REST request refused: request bodies in memory are at their cap (max_buffered_request_bytes)");
                ApiError::Busy
            }
            HttpError::DatabaseDown(d) => ApiError::DatabaseDown(d),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NoSuchUser(n) => ApiError::no_user(&n),
            StoreError::NoSuchProject(k) => ApiError::no_project(&k),
            StoreError::NoSuchRepo(r) => ApiError::no_repo(&r),
            StoreError::UserExists(n) => ApiError::Conflict {
                exception: "com.atlassian.bitbucket.user.DuplicateUserException",
                message: format!("A user named {n} already exists; choose another name."),
            },
            StoreError::ProjectExists(k) => ApiError::Conflict {
                exception: "com.atlassian.bitbucket.project.DuplicateProjectKeyException",
                message: format!("Project key {k} is already taken; choose another key."),
            },
            StoreError::NoSuchGroup(g) => ApiError::no_group(&g),
            StoreError::GroupExists(g) => ApiError::Conflict {
                exception: "com.atlassian.bitbucket.user.DuplicateGroupException",
                message: format!("A group named {g} already exists (group names ignore case); choose another name."),
            },
            StoreError::RepoExists(r) => ApiError::Conflict {
                exception: "com.atlassian.bitbucket.repository.DuplicateRepositoryNameException",
                message: format!("Repository {r} already exists; choose another name."),
            },
            StoreError::DuplicatePr(n) => ApiError::Conflict {
                exception: "com.atlassian.bitbucket.pull.DuplicatePullRequestException",
                message: format!("Only one pull request may be open for a given source and target branch: pull request #{n} already is."),
            },
            StoreError::Password(p) => ApiError::invalid("password", p.to_string()),
            StoreError::Name(n) => ApiError::Invalid { context: None, message: n.to_string() },
            other if other.is_unavailable() => ApiError::DatabaseDown(other.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::repo_details::Invalid> for ApiError {
    fn from(e: crate::repo_details::Invalid) -> Self {
        ApiError::invalid(e.context, e.message)
    }
}
