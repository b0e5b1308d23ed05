//! The web UI: server-rendered pages at Bitbucket Server's URLs (`/login`, `/projects/{KEY}`,
//! `/projects/{KEY}/repos/{slug}/browse`, `/admin/server-settings`, …), all under the context
//! path, with a session cookie, a CSRF token in every form, and no external assets.
//!
//! Links and redirects are path-absolute (`{context path}/…`), so the pages work whatever host
//! and scheme the browser used, behind the gateway or not; only clone URLs use the base URL,
//! because they are copied out of the browser. Templates are `maud` macros, checked at compile
//! time.

mod account;
mod admin;
mod branch_permissions;
mod builds;
mod commit_list;
mod file_view;
mod highlight;
mod markdown;
mod pr_diff;
mod profile;
mod pull_requests;
mod refs;
mod repo;
mod search;
#[cfg(test)]
mod tests;
mod view;
mod webhooks;

pub(crate) use profile::check_details;
pub(crate) use view::utc as format_utc;

use std::collections::HashMap;

use axum::Router;
use axum::extract::{FromRequestParts, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use trove_store::{Authenticated, GlobalPermission, Session, StoreError, User};

use crate::AppState;
use crate::public_url::RequestView;

/// The session cookie. `Path` is the context path, so two Trove servers under different
/// context paths on one host keep separate sessions.
pub(crate) const SESSION_COOKIE: &str = "trove_session";
/// The double-submit cookie that protects the login form (there is no session yet to bind a
/// CSRF token to).
const LOGIN_CSRF_COOKIE: &str = "trove_login_csrf";
/// How long a session lasts after logging in. Default 12 hours; there is no "remember me".
const SESSION_TTL_SECS: i64 = 12 * 3600;

/// The web UI's routes, all under the context path `ctx` (empty or `/stash`).
pub(crate) fn router(ctx: &str, state: AppState) -> Router<AppState> {
    let r = |p: &str| format!("{ctx}{p}");
    let repo = |p: &str| format!("{ctx}/projects/{{key}}/repos/{{slug}}{p}");
    let ctx_owned = ctx.to_owned();
    Router::new()
        .route(&r("/"), get(repo::dashboard))
        .route(&r("/projects"), get(repo::dashboard))
        .route(&r("/static/trove.css"), get(view::css))
        .route(&r("/static/trove.js"), get(view::js))
        .route(&r("/login"), get(account::login_page).post(account::login))
        .route(&r("/logout"), post(account::logout))
        .route(&r("/account"), get(account::account_page).post(account::account_post))
        .route(&r("/projects/{key}"), get(repo::project_page).post(repo::create_repo))
        .route(&r("/projects/{key}/settings"), get(repo::project_settings).post(repo::project_settings_post))
        .route(&repo(""), get(repo::repo_root))
        .route(&repo("/browse"), get(repo::browse_root))
        .route(&repo("/browse/{*path}"), get(repo::browse_path))
        .route(&repo("/raw/{*path}"), get(repo::raw))
        .route(&repo("/commits"), get(repo::commits))
        .route(&repo("/commits/{id}"), get(repo::commit).post(repo::commit_post))
        // Branches and tags (refs.rs).
        .route(&repo("/branches"), get(refs::branches).post(refs::branches_post))
        .route(&repo("/tags"), get(refs::tags).post(refs::tags_post))
        .route(&repo("/settings"), get(repo::repo_settings).post(repo::repo_settings_post))
        .route(&repo("/fork"), get(repo::fork_page).post(repo::fork_post))
        // Pull requests (web/pull_requests.rs); the diff tab is pr_diff.rs's.
        .route(&r("/dashboard"), get(repo::dashboard))
        .route(&repo("/pull-requests"), get(pull_requests::list).post(pull_requests::create_post))
        .route(&repo("/pull-requests/{id}"), get(pull_requests::pr_root))
        .route(&repo("/pull-requests/{id}/overview"), get(pull_requests::overview).post(pull_requests::overview_post))
        .route(&repo("/pull-requests/{id}/commits"), get(pull_requests::commits))
        .route(&repo("/compare"), get(pull_requests::compare))
        .route(&repo("/compare/commits"), get(pull_requests::compare_commits))
        .route(&repo("/compare/diff"), get(pull_requests::compare_diff))
        // A pull request's diff and its line comments (pr_diff.rs).
        .route(&repo("/pull-requests/{id}/diff"), get(pr_diff::diff_page))
        .route(&repo("/pull-requests/{id}/diff/comment"), post(pr_diff::comment_post))
        // Search and the file finder (search.rs), profiles and one user's administration
        // (profile.rs); `/users/{user}/…` still leads into the personal project.
        .route(&r("/search"), get(search::search_page))
        .route(&r("/plugins/servlet/search"), get(search::search_page))
        .route(&r("/search/suggest"), get(search::suggest))
        .route(&repo("/find"), get(search::finder))
        .route(&r("/admin/users/view"), get(profile::admin_user).post(profile::admin_user_post))
        .route(&r("/users/{user}"), get(profile::profile))
        .route(&r("/users/{user}/{*rest}"), get(repo::user_alias))
        .route(&r("/admin"), get(admin::index))
        .route(&r("/admin/server-settings"), get(admin::server_settings).post(admin::server_settings_post))
        .route(&r("/admin/users"), get(admin::users).post(admin::users_post))
        .route(&r("/admin/groups"), get(admin::groups).post(admin::groups_post))
        .route(&r("/admin/groups/members"), get(admin::group_members).post(admin::group_members_post))
        .route(&r("/admin/projects"), get(admin::projects).post(admin::projects_post))
        .route(&r("/admin/audit"), get(admin::audit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), same_origin_posts))
        .layer(axum::middleware::from_fn(move |req: Request, next: Next| {
            let (ctx, state) = (ctx_owned.clone(), state.clone());
            async move {
                // The Cookie headers are kept (reference counts) and parsed only for an error page.
                let cookies: Vec<HeaderValue> = req.headers().get_all(header::COOKIE).iter().cloned().collect();
                let resp = next.run(req).await;
                let wanted = if resp.extensions().get::<ErrorPage>().is_some() { cookies_of(&cookies).remove(SESSION_COOKIE) } else { None };
                let session = match wanted {
                    Some(id) => lookup_session(&state, id).await,
                    None => None,
                };
                finish(&ctx, resp, session.as_ref())
            }
        }))
}

/// The signed-in session of a request whose answer is an error page (read only then: other
/// pages have their `Web` already), so that the page's header shows who is signed in, and
/// Administration and Log out, as every other page does.
async fn lookup_session(state: &AppState, id: String) -> Option<Session> {
    state.store.run(move |s| s.session(&id)).await.ok().flatten().filter(|s| s.user.may_log_in())
}

/// Defence in depth beside the CSRF token: a form post that a browser says came from another
/// site is refused before it is read (OWASP CSRF cheat sheet, "verifying origin with standard
/// headers"). `Sec-Fetch-Site` decides when the browser sends it; else `Origin` must be the
/// request's own origin or the base URL's; a post with neither (old browsers, scripts) still
/// needs the token.
async fn same_origin_posts(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() == http::Method::POST
        && let Some(view) = req.extensions().get::<RequestView>()
        && !same_origin(req.headers(), view, &state.urls.base_url(view))
    {
        tracing::info!(origin = ?req.headers().get(header::ORIGIN), site = ?req.headers().get("sec-fetch-site"), "cross-site form post refused");
        return WebError::Csrf.into_response();
    }
    next.run(req).await
}

/// Whether a post's `Sec-Fetch-Site`/`Origin` allow it (see [`same_origin_posts`]).
fn same_origin(headers: &HeaderMap, view: &RequestView, base_url: &str) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let base_origin = base_url.split('/').take(3).collect::<Vec<_>>().join("/");
    origin != "null" && (origin.eq_ignore_ascii_case(&view.origin()) || origin.eq_ignore_ascii_case(&base_origin))
}

/// `fallback` for the whole server: browsers get the 404 page, git and scripts plain text.
pub(crate) async fn fallback(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let wants_html = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    if !wants_html {
        return crate::error::HttpError::NoRoute.into_response();
    }
    let session = match parse_cookies(&headers).remove(SESSION_COOKIE) {
        Some(id) => lookup_session(&state, id).await,
        None => None,
    };
    finish(state.urls.context_path().as_str(), WebError::NotFound.into_response(), session.as_ref())
}

/// Turns an error marker into its page and adds the headers every page gets: no caching of
/// pages that may hold private data (the seed warns about mod_cache serving one user's page
/// to another), a CSP that allows only our own CSS and script (and the script's fetches of
/// our own page fragments, `connect-src`), and no framing.
fn finish(ctx: &str, mut resp: Response, session: Option<&Session>) -> Response {
    if let Some(e) = resp.extensions_mut().remove::<ErrorPage>() {
        let mut page = view::error_page(ctx, session, e.status, &e.title, &e.detail);
        if let Some(v) = resp.headers().get(header::RETRY_AFTER) {
            page.headers_mut().insert(header::RETRY_AFTER, v.clone());
        }
        resp = page;
    }
    let h = resp.headers_mut();
    let is_html = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/html"));
    if is_html {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            ),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

/// What a handler can fail with; [`finish`] renders it as a page in the same look.
#[derive(Debug)]
pub(crate) enum WebError {
    NotFound,
    Forbidden,
    /// Anonymous on a page that needs a login: redirect to `/login?next=…`.
    LoginRequired {
        next: String,
    },
    BadRequest(String),
    /// A form without the right CSRF token (an old tab, or another site posting).
    Csrf,
    TooManyFailedLogins(std::time::Duration),
    /// A form larger than any of ours.
    TooLarge,
    /// Request bodies in memory are at their cap.
    Busy,
    /// Reading the repository failed, or its answer was over a cap ([`crate::repo_read`]).
    Read(crate::repo_read::ReadError),
    /// The metadata database cannot be reached: 503.
    DatabaseDown(String),
    Internal(String),
    /// The repository was renamed or moved: 301 to this page at its new place.
    Moved(String),
}

impl From<crate::repo_read::ReadError> for WebError {
    fn from(e: crate::repo_read::ReadError) -> Self {
        WebError::Read(e)
    }
}

#[derive(Clone)]
struct ErrorPage {
    status: StatusCode,
    title: String,
    detail: String,
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() { WebError::DatabaseDown(e.to_string()) } else { WebError::Internal(e.to_string()) }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, title, detail) = match self {
            WebError::Moved(location) => {
                let mut r = StatusCode::MOVED_PERMANENTLY.into_response();
                if let Ok(v) = HeaderValue::from_str(&location) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                return r;
            }
            WebError::LoginRequired { next } => {
                let mut r = StatusCode::FOUND.into_response();
                if let Ok(v) = HeaderValue::from_str(&next) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                return r;
            }
            WebError::NotFound => (StatusCode::NOT_FOUND, "Page not found", "It does not exist, or you may not see it.".to_owned()),
            WebError::Forbidden => (StatusCode::FORBIDDEN, "Access denied", "You do not have permission to see this page.".to_owned()),
            WebError::BadRequest(msg) => (StatusCode::BAD_REQUEST, "Bad request", msg),
            WebError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "Form too large", format!("A form may send at most {FORM_LIMIT} bytes.")),
            WebError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "Busy", "The server is busy reading other requests; try again in a few seconds.".to_owned()),
            WebError::DatabaseDown(detail) => {
                tracing::warn!(%detail, "page refused: the database is unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Database unavailable",
                    "The database is unavailable; the request was not carried out. Try again in a few seconds.".to_owned(),
                )
            }
            WebError::Csrf => (
                StatusCode::FORBIDDEN,
                "Form expired",
                "The form was not sent from this site's current page. Go back, reload the page and try again.".to_owned(),
            ),
            WebError::TooManyFailedLogins(wait) => {
                let secs = wait.as_secs().max(1);
                let mut r = StatusCode::TOO_MANY_REQUESTS.into_response();
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
                r.extensions_mut().insert(ErrorPage {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    title: "Too many failed logins".into(),
                    detail: format!("Try again in {secs} seconds."),
                });
                return r;
            }
            WebError::Read(crate::repo_read::ReadError::TooLarge { .. }) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "Too large to show", "This is too large to show here; download the file with Raw instead.".to_owned())
            }
            WebError::Read(e @ crate::repo_read::ReadError::TimedOut { .. }) => {
                tracing::warn!(detail = %e, "repository read stopped at its time limit");
                (StatusCode::SERVICE_UNAVAILABLE, "Busy", "Reading the repository took too long and was stopped; try again in a few seconds.".to_owned())
            }
            WebError::Read(e) => {
                tracing::error!(detail = %e, "internal error in the web UI");
                (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The server log has the details.".to_owned())
            }
            WebError::Internal(detail) => {
                tracing::error!(%detail, "internal error in the web UI");
                (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The server log has the details.".to_owned())
            }
        };
        let mut r = status.into_response();
        r.extensions_mut().insert(ErrorPage { status, title: title.to_owned(), detail });
        r
    }
}

pub(crate) type WebResult = Result<Response, WebError>;

/// The 500 page for a request whose handler failed outright (a panic): no details.
pub(crate) fn internal_error_page(ctx: &str) -> Response {
    view::error_page(ctx, None, StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The server log has the details.")
}

/// One page request: the server, how the request looked, and who is logged in.
#[derive(Clone)]
pub(crate) struct Web {
    pub(crate) state: AppState,
    pub(crate) view: RequestView,
    pub(crate) session: Option<Session>,
    session_id: Option<String>,
    /// The request's path and query, for `/login?next=`.
    here: String,
    cookies: HashMap<String, String>,
}

impl FromRequestParts<AppState> for Web {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let view = parts.extensions.get::<RequestView>().cloned().ok_or_else(|| WebError::Internal("no request view".into()))?;
        let cookies = parse_cookies(&parts.headers);
        let session_id = cookies.get(SESSION_COOKIE).cloned();
        let session = match &session_id {
            Some(id) => {
                let id = id.clone();
                state.store.run(move |s| s.session(&id)).await?.filter(|s| s.user.may_log_in())
            }
            None => None,
        };
        let here = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
        Ok(Web { state: state.clone(), view, session, session_id, here, cookies })
    }
}

impl Web {
    /// Runs the synchronous part of a page (store lookups, permission decisions, rendering) on
    /// the store's blocking pool ([`trove_store::Store::run`]), so no page ever holds an async
    /// worker thread while SQLite or argon2 works.
    pub(crate) async fn blocking<T: Send + 'static>(self, f: impl FnOnce(&Web) -> T + Send + 'static) -> T {
        let store = self.state.store.clone();
        store.run(move |_| f(&self)).await
    }

    pub(crate) fn user(&self) -> Option<&User> {
        self.session.as_ref().map(|s| &s.user)
    }

    /// The audit log entry of a change this page made: the signed-in user and their address
    /// (as the trusted proxies report it). Blocks: call it inside [`Web::blocking`].
    pub(crate) fn audit(&self, action: crate::audit::Action, target: &str, details: serde_json::Value) {
        let actor = self.user().map(|u| u.name.as_str()).unwrap_or("anonymous");
        crate::audit::record(&self.state, actor, self.view.client_ip, action, target, details);
    }

    pub(crate) fn is_admin(&self) -> bool {
        is_admin(self.user())
    }

    /// The caller as the permission rules see them (a session is never token-capped).
    pub(crate) fn who(&self) -> Option<Authenticated> {
        self.user().map(|u| Authenticated { user: u.clone(), token_scope: None })
    }

    pub(crate) fn ctx(&self) -> &str {
        self.state.urls.context_path().as_str()
    }

    /// A path-absolute link under the context path.
    pub(crate) fn link(&self, path: &str) -> String {
        format!("{}{path}", self.ctx())
    }

    pub(crate) fn csrf(&self) -> &str {
        self.session.as_ref().map(|s| s.csrf.as_str()).unwrap_or("")
    }

    pub(crate) fn require_user(&self) -> Result<&User, WebError> {
        self.user().ok_or_else(|| WebError::LoginRequired { next: format!("{}/login?next={}", self.ctx(), url_encode(&self.here)) })
    }

    /// The refusal of a repository page at `key/slug`, or, when the repository was renamed or
    /// moved and the caller may read it at its new place, a permanent redirect there. Blocks.
    pub(crate) fn repo_refusal(
        &self,
        key: &str,
        slug: &str,
        e: crate::access::AccessError,
        refused: impl FnOnce(crate::access::AccessError) -> WebError,
    ) -> WebError {
        use crate::access::AccessError;
        if matches!(e, AccessError::Anonymous(_) | AccessError::Hidden(_)) {
            let who = self.who();
            match crate::access::moved(&self.state.store, who.as_ref(), key, slug) {
                Ok(Some(now)) => {
                    let (path, query) = self.here.split_once('?').map_or((self.here.as_str(), None), |(p, q)| (p, Some(q)));
                    if let Some(p) = crate::access::moved_path(path, key, slug, &now) {
                        return WebError::Moved(format!("{p}{}", query.map(|q| format!("?{q}")).unwrap_or_default()));
                    }
                }
                Ok(None) => {}
                Err(e) => return e.into(),
            }
        }
        refused(e)
    }

    /// Global administrators only: anonymous callers are sent to log in, others get 403.
    pub(crate) fn require_admin(&self) -> Result<&User, WebError> {
        let u = self.require_user()?;
        if is_admin(Some(u)) { Ok(u) } else { Err(WebError::Forbidden) }
    }

    /// Checks a form's CSRF token against the session's (constant time).
    pub(crate) fn check_csrf(&self, form: &Form) -> Result<&User, WebError> {
        let Some(s) = &self.session else { return Err(WebError::Csrf) };
        if !constant_time_eq(form.get("csrf").as_bytes(), s.csrf.as_bytes()) {
            return Err(WebError::Csrf);
        }
        Ok(&s.user)
    }

    /// `Secure` on cookies when the public URL is https: behind the gateway the server itself
    /// speaks plain HTTP, so the base URL (or the forwarded scheme) decides, not the socket.
    pub(crate) fn secure(&self) -> bool {
        self.state.urls.base_url(&self.view).starts_with("https://")
    }

    /// The value of the request's cookie `name`.
    pub(crate) fn cookie_value(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub(crate) fn cookie(&self, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
        let path = if self.ctx().is_empty() { "/" } else { self.ctx() };
        let mut c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax");
        if let Some(a) = max_age {
            c.push_str(&format!("; Max-Age={a}"));
        }
        if self.secure() {
            c.push_str("; Secure");
        }
        HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
    }
}

pub(crate) fn is_admin(u: Option<&User>) -> bool {
    matches!(u.and_then(|u| u.global), Some(GlobalPermission::Admin | GlobalPermission::SysAdmin))
}

/// Form fields by name; a missing field reads as empty (an unchecked checkbox).
pub(crate) struct Form(pub(crate) HashMap<String, String>);

impl Form {
    pub(crate) fn get(&self, k: &str) -> &str {
        self.0.get(k).map(String::as_str).unwrap_or("")
    }
}

/// The most a form may send: our forms are a few fields. Larger is 413 before it is read.
const FORM_LIMIT: u64 = 64 << 10;

impl axum::extract::FromRequest<AppState> for Form {
    type Rejection = WebError;
    async fn from_request(req: Request, state: &AppState) -> Result<Self, WebError> {
        let len = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if len.is_some_and(|n| n > FORM_LIMIT) {
            return Err(WebError::TooLarge);
        }
        // Counted against the one budget for bodies in memory before it is read.
        let mut held = crate::budget::BodyBudget::none();
        state.bodies.take(&mut held, len.unwrap_or(FORM_LIMIT)).map_err(|_| WebError::Busy)?;
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, FORM_LIMIT as usize).await.map_err(|_| WebError::TooLarge)?;
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        let axum::Form(map) = axum::Form::<HashMap<String, String>>::from_request(req, state)
            .await
            .map_err(|e| WebError::BadRequest(format!("the form could not be read: {e}")))?;
        Ok(Form(map))
    }
}

fn parse_cookies(headers: &HeaderMap) -> HashMap<String, String> {
    cookies_of(headers.get_all(header::COOKIE))
}

/// Cookies by name from `Cookie` header values (HTTP/2 clients send one header per cookie); the
/// first of a name wins.
fn cookies_of<'a>(values: impl IntoIterator<Item = &'a HeaderValue>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for v in values {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            if let Some((k, val)) = pair.trim().split_once('=') {
                out.entry(k.trim().to_owned()).or_insert_with(|| val.trim().to_owned());
            }
        }
    }
    out
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && !a.is_empty() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `/`.
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `303 See Other` to a path under the context path (the answer to a successful POST).
pub(crate) fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// A `next=` target is followed only when it is a path on this server under the context path:
/// anything else (`//evil.example`, `https://…`, `/\evil`) would be an open redirect.
pub(crate) fn safe_next(ctx: &str, next: &str) -> Option<String> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control())
        && (next == ctx || ctx.is_empty() || next.starts_with(&format!("{ctx}/")) || next.starts_with(&format!("{ctx}?")));
    ok.then(|| next.to_owned())
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn next_targets_stay_on_this_server_under_the_context_path() {
        let cases = [
            ("", "/projects/TP", true),
            ("", "//evil.example/x", false),
            ("", "https://evil.example/", false),
            ("", "/\\evil.example", false),
            ("/stash", "/stash/admin", true),
            ("/stash", "/stashed/admin", false),
            ("/stash", "/admin", false),
            ("", "relative", false),
        ];
        for (ctx, next, ok) in cases {
            assert_eq!(safe_next(ctx, next).is_some(), ok, "{ctx} {next}");
        }
    }

    #[test]
    fn cookies_parse_and_csrf_compares_only_equal_nonempty_tokens() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; trove_session=abc".parse().unwrap());
        h.append(header::COOKIE, "b=2".parse().unwrap());
        let c = parse_cookies(&h);
        assert_eq!(c.get("trove_session").map(String::as_str), Some("abc"));
        assert_eq!(c.get("b").map(String::as_str), Some("2"));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"", b""));
        assert_eq!(url_encode("/a b?c=d&e"), "/a%20b%3Fc%3Dd%26e");
    }
}
