//! The REST API under `<context path>/rest/api/1.0`, compatible with Bitbucket Server 1.0 so the
//! scripts and tools written for Stash (stashy, atlassian-python-api, JIRA's application links)
//! keep working: its paged envelope, its error bodies, its JSON shapes and its permission rules.
//!
//! Requests are authenticated once, in [`authenticate`] (Basic with a password or token, or
//! Bearer), with the same rate limit as git; every response then gets the JSON content type
//! and `X-AUSERNAME`, and every error Bitbucket's body, in [`finish`]. Handlers refuse to reveal
//! what the caller may not see exactly as the git endpoints do: 401 for anonymous callers, 404
//! for everyone else. Links are built from the base URL.

mod error;
mod git;
mod permissions;
mod projects;
mod repos;
#[cfg(test)]
mod tests;
mod users;

use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use trove_store::{Authenticated, GlobalPermission, Owner, Permission, ProjectInfo, Repo, User};

pub(crate) use error::ApiError;
use error::{JSON, json_response};

use crate::AppState;
use crate::public_url::RequestView;

/// Largest request body the API reads. Default 1 MiB: every body it takes is a small JSON object.
pub(crate) const BODY_LIMIT: usize = 1 << 20;
/// Page size when `limit` is not given (Bitbucket's default).
pub(crate) const DEFAULT_LIMIT: usize = 25;
/// Largest page served; a larger `limit` is cut to this (Bitbucket caps pages the same way).
pub(crate) const MAX_LIMIT: usize = 1000;

/// Every route the API serves, as `(methods, path below /rest/api/1.0)`. The OpenAPI
/// description in docs/openapi.json is checked against this list by a test, and [`router`] is
/// built from the same paths.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const ROUTES: &[(&[&str], &str)] = &[
    (&["GET"], "/application-properties"),
    (&["GET", "POST"], "/projects"),
    (&["GET", "PUT", "DELETE"], "/projects/{projectKey}"),
    (&["GET", "PUT", "DELETE"], "/projects/{projectKey}/permissions/users"),
    (&["GET", "PUT", "DELETE"], "/projects/{projectKey}/permissions/groups"),
    (&["GET", "POST", "DELETE"], "/projects/{projectKey}/permissions/{permission}/all"),
    (&["GET", "POST"], "/projects/{projectKey}/repos"),
    (&["GET", "PUT", "DELETE"], "/projects/{projectKey}/repos/{repositorySlug}"),
    (&["GET", "PUT", "DELETE"], "/projects/{projectKey}/repos/{repositorySlug}/permissions/users"),
    (&["GET", "PUT", "DELETE"], "/projects/{projectKey}/repos/{repositorySlug}/permissions/groups"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/branches"),
    (&["GET", "PUT"], "/projects/{projectKey}/repos/{repositorySlug}/branches/default"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/tags"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/commits"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/commits/{commitId}"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/browse"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/browse/{path}"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/raw/{path}"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/files"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/files/{path}"),
    (&["GET"], "/repos"),
    (&["GET"], "/users"),
    (&["GET"], "/users/{userSlug}"),
    (&["GET", "POST"], "/users/{userSlug}/repos"),
    (&["GET", "PUT", "DELETE"], "/users/{userSlug}/repos/{repositorySlug}"),
    (&["GET", "POST", "PUT", "DELETE"], "/admin/users"),
    (&["DELETE"], "/admin/users/captcha"),
    (&["GET", "PUT", "DELETE"], "/admin/permissions/users"),
    (&["GET"], "/admin/permissions/groups"),
];

/// The API's routes under the context path `ctx`. `state` is for the authentication layer.
pub(crate) fn router(ctx: &str, state: AppState) -> Router<AppState> {
    let p = |s: &str| format!("{ctx}/rest/api/1.0{s}");
    let repo = |s: &str| format!("{ctx}/rest/api/1.0/projects/{{key}}/repos/{{slug}}{s}");
    Router::new()
        .route(&p("/application-properties"), get(application_properties))
        .route(&p("/projects"), get(projects::list).post(projects::create))
        .route(&p("/projects/{key}"), get(projects::get).put(projects::update).delete(projects::delete))
        .route(&p("/projects/{key}/permissions/users"), get(permissions::project_users).put(permissions::project_grant).delete(permissions::project_revoke))
        .route(&p("/projects/{key}/permissions/groups"), get(permissions::no_groups).put(permissions::group_change).delete(permissions::group_change))
        .route(&p("/projects/{key}/permissions/{perm}/all"), get(permissions::default_get).post(permissions::default_set).delete(permissions::default_revoke))
        .route(&p("/projects/{key}/repos"), get(repos::list).post(repos::create))
        .route(&repo(""), get(repos::get).put(repos::update).delete(repos::delete))
        .route(&repo("/permissions/users"), get(permissions::repo_users).put(permissions::repo_grant).delete(permissions::repo_revoke))
        .route(&repo("/permissions/groups"), get(permissions::no_groups).put(permissions::group_change).delete(permissions::group_change))
        .route(&repo("/branches"), get(git::branches))
        .route(&repo("/branches/default"), get(git::default_branch).put(git::set_default_branch))
        .route(&repo("/tags"), get(git::tags))
        .route(&repo("/commits"), get(git::commits))
        .route(&repo("/commits/{id}"), get(git::commit))
        // stashy asks for `browse/` and `files/` with an empty path.
        .route(&repo("/browse"), get(git::browse_root))
        .route(&repo("/browse/"), get(git::browse_root))
        .route(&repo("/browse/{*path}"), get(git::browse_path))
        .route(&repo("/raw/{*path}"), get(git::raw))
        .route(&repo("/files"), get(git::files_root))
        .route(&repo("/files/"), get(git::files_root))
        .route(&repo("/files/{*path}"), get(git::files_path))
        .route(&p("/repos"), get(repos::list_all))
        .route(&p("/users"), get(users::list))
        .route(&p("/users/{user}"), get(users::get))
        .route(&p("/users/{user}/repos"), get(repos::list_personal).post(repos::create_personal))
        .route(&p("/users/{user}/repos/{slug}"), get(repos::get_personal).put(repos::update_personal).delete(repos::delete_personal))
        .route(&p("/admin/users"), get(users::admin_list).post(users::admin_create).put(users::admin_update).delete(users::admin_delete))
        .route(&p("/admin/users/captcha"), delete(users::clear_captcha))
        .route(&p("/admin/permissions/users"), get(users::global_list).put(users::global_grant).delete(users::global_revoke))
        .route(&p("/admin/permissions/groups"), get(permissions::no_groups))
        .route(&format!("{ctx}/rest/{{*rest}}"), any(no_route))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state, authenticate))
        // `HEAD /rest/` is stashy's start-up probe: answered at once, without checking credentials.
        .route(&format!("{ctx}/rest"), get(rest_root).post(rest_root))
        .route(&format!("{ctx}/rest/"), get(rest_root).post(rest_root))
        .layer(middleware::map_response(finish))
}

/// Who is calling; `None` for anonymous. Put in place by [`authenticate`].
#[derive(Clone)]
pub(crate) struct Caller(pub(crate) Option<Authenticated>);

/// Checks credentials once per request: wrong ones are a 401 even where anonymous access would
/// do, as Bitbucket answers; the caller's name goes back in `X-AUSERNAME`.
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let ip = req.extensions().get::<RequestView>().and_then(|v| v.client_ip);
    let header = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes().to_vec());
    let who = match crate::auth::authenticate(&state.store, &state.limiter, header.as_deref(), ip).await {
        Ok(who) => who,
        Err(e) => return ApiError::from(e).into_response(),
    };
    // Every change needs a login: an anonymous one is answered before its body is read, so
    // anonymous clients cannot make the server hold bodies.
    let changes = !matches!(*req.method(), http::Method::GET | http::Method::HEAD | http::Method::OPTIONS);
    if changes && who.is_none() {
        return ApiError::AuthRequired.into_response();
    }
    // What the body may take (its length, or the route's cap), from the one budget for bodies
    // held in memory, before a byte of it is read.
    let mut held = crate::budget::BodyBudget::none();
    if changes {
        let len = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        let chunked = req.headers().contains_key(header::TRANSFER_ENCODING);
        let need = match len {
            Some(n) => n.min(BODY_LIMIT as u64 + 1),
            None if chunked => BODY_LIMIT as u64,
            None => 0,
        };
        if let Err(e) = state.bodies.take(&mut held, need) {
            return ApiError::from(crate::error::HttpError::Busy(e)).into_response();
        }
    }
    let name = who.as_ref().and_then(|a| HeaderValue::from_str(a.user.name.as_str()).ok());
    req.extensions_mut().insert(Caller(who));
    let mut resp = next.run(req).await;
    drop(held);
    if let Some(n) = name {
        resp.headers_mut().insert("x-ausername", n);
    }
    resp
}

/// Marks a response whose body is a file, not JSON ([`git::raw`]); [`finish`] leaves it alone.
#[derive(Clone, Copy)]
pub(crate) struct RawFile;

/// Every API response is JSON with Bitbucket's content type, and every error has Bitbucket's
/// body, including the ones axum makes itself (405, body too large).
async fn finish(mut resp: Response) -> Response {
    if resp.extensions().get::<RawFile>().is_some() {
        return resp;
    }
    let is_json = resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| v == JSON);
    if !is_json && resp.status().as_u16() >= 400 {
        let err = match resp.status() {
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(BODY_LIMIT),
            StatusCode::NOT_FOUND => ApiError::NoRoute("this path".into()),
            s if s.is_client_error() => ApiError::Malformed(format!("The request was refused ({s}).")),
            s => ApiError::Internal(format!("unexpected {s} from a REST handler")),
        };
        let mut new = err.into_response();
        *new.status_mut() = resp.status();
        for name in ["x-ausername", "allow"] {
            if let Some(v) = resp.headers().get(name) {
                new.headers_mut().insert(name, v.clone());
            }
        }
        return new;
    }
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    resp
}

async fn no_route(uri: http::Uri) -> ApiError {
    ApiError::NoRoute(uri.path().to_owned())
}

/// `GET|HEAD /rest/`: a quick answer for clients that probe the server.
async fn rest_root() -> Response {
    json_response(StatusCode::OK, &json!({"api": "rest/api/1.0"}))
}

/// `GET /application-properties`: who we are, in Bitbucket's words (all strings).
async fn application_properties() -> Response {
    json_response(StatusCode::OK, &json!({"version": "8.15.0", "buildNumber": "8015000", "buildDate": "1697764661289", "displayName": "Bitbucket"}))
}

/// Query parameters, in order; a name may repeat (`?name=a&name=b`).
#[derive(Clone)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    /// A required parameter: missing or empty is a 400 naming it.
    pub(crate) fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name).filter(|v| !v.is_empty()).ok_or_else(|| ApiError::invalid(name, format!("The query parameter {name} is required.")))
    }

    pub(crate) fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(ApiError::invalid(name, format!("The query parameter {name} must be true or false, not {v:?}."))),
        }
    }

    /// `start` and `limit`: `start` defaults to 0, `limit` to 25 and is cut to 1000.
    pub(crate) fn page(&self) -> Result<PageReq, ApiError> {
        let num = |name: &str, default: usize| -> Result<usize, ApiError> {
            match self.get(name) {
                None | Some("") => Ok(default),
                Some(v) => v
                    .parse::<usize>()
                    .map_err(|_| ApiError::invalid(name, format!("The query parameter {name} must be a whole number of 0 or more, not {v:?}."))),
            }
        };
        let start = num("start", 0)?;
        let limit = match num("limit", DEFAULT_LIMIT)? {
            0 => DEFAULT_LIMIT,
            l => l.min(MAX_LIMIT),
        };
        Ok(PageReq { start, limit })
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct PageReq {
    pub(crate) start: usize,
    pub(crate) limit: usize,
}

/// Bitbucket's paged envelope over the whole list `all`: `nextPageStart` only when there is a
/// next page.
pub(crate) fn paged(all: Vec<Value>, page: PageReq) -> Value {
    let total = all.len();
    let values: Vec<Value> = all.into_iter().skip(page.start).take(page.limit).collect();
    let last = page.start.saturating_add(page.limit) >= total;
    envelope(values, page, last)
}

/// The envelope for one page already cut out; `last` says whether more follow.
pub(crate) fn envelope(values: Vec<Value>, page: PageReq, last: bool) -> Value {
    let size = values.len();
    let mut v = json!({"size": size, "limit": page.limit, "isLastPage": last, "values": values, "start": page.start});
    if !last {
        v["nextPageStart"] = json!(page.start + size);
    }
    v
}

/// One REST request: the server, how the request looked, who is calling, and the query.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) state: AppState,
    pub(crate) view: RequestView,
    pub(crate) who: Option<Authenticated>,
    pub(crate) q: Params,
}

impl FromRequestParts<AppState> for Api {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let view = parts.extensions.get::<RequestView>().cloned().ok_or_else(|| ApiError::Internal("no request view".into()))?;
        let who = parts.extensions.get::<Caller>().cloned().ok_or_else(|| ApiError::Internal("no caller".into()))?.0;
        let Query(q) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::Invalid { context: None, message: format!("The query string is malformed: {e}.") })?;
        Ok(Api { state: state.clone(), view, who, q: Params(q) })
    }
}

impl Api {
    /// Runs the synchronous part of a handler (store lookups, permission decisions, JSON) on
    /// the store's blocking pool ([`trove_store::Store::run`]), so no REST request ever holds
    /// an async worker thread while SQLite or argon2 works.
    pub(crate) async fn blocking<T: Send + 'static>(self, f: impl FnOnce(&Api) -> T + Send + 'static) -> T {
        let store = self.state.store.clone();
        store.run(move |_| f(&self)).await
    }

    pub(crate) fn store(&self) -> &trove_store::Store {
        &self.state.store
    }

    pub(crate) fn base(&self) -> String {
        self.state.urls.base_url(&self.view)
    }

    pub(crate) fn user(&self) -> Option<&User> {
        self.who.as_ref().map(|a| &a.user)
    }

    /// What a token allows at most; administration needs a token with admin scope.
    pub(crate) fn cap_allows(&self, need: Permission) -> bool {
        self.who.as_ref().is_some_and(|a| a.token_scope.is_none_or(|cap| cap >= need))
    }

    pub(crate) fn global(&self) -> Option<GlobalPermission> {
        self.user().and_then(|u| u.global)
    }

    /// A global ADMIN or SYS_ADMIN, not limited by a token's scope.
    pub(crate) fn is_admin(&self) -> bool {
        matches!(self.global(), Some(GlobalPermission::Admin | GlobalPermission::SysAdmin)) && self.cap_allows(Permission::Admin)
    }

    pub(crate) fn require_login(&self) -> Result<&Authenticated, ApiError> {
        self.who.as_ref().ok_or(ApiError::AuthRequired)
    }

    pub(crate) fn require_admin(&self, what: &str) -> Result<&Authenticated, ApiError> {
        let who = self.require_login()?;
        if self.is_admin() { Ok(who) } else { Err(ApiError::forbidden(what)) }
    }

    /// What to say when the caller may not see something: log in (401) or, for a caller who
    /// has, the same "does not exist" as for something that does not.
    pub(crate) fn hidden(&self, not_found: ApiError) -> ApiError {
        if self.who.is_none() { ApiError::AuthRequired } else { not_found }
    }

    /// The project `key` if the caller may see it, and, with `need`, do that much on it: the
    /// access service decides, this renders its answer.
    pub(crate) fn project(&self, key: &str, need: Option<Permission>, what: &str) -> Result<ProjectInfo, ApiError> {
        crate::access::project(self.store(), self.who.as_ref(), key, need).map(|a| a.project).map_err(|e| self.refused(e, || ApiError::no_project(key), what))
    }

    /// The repository `key/slug` if the caller may read it and do `need` with it.
    pub(crate) fn repo(&self, key: &str, slug: &str, need: Permission, what: &str) -> Result<(Repo, ProjectInfo), ApiError> {
        let missing = || self.hidden(ApiError::no_repo(slug));
        let granted = crate::access::repo(self.store(), self.who.as_ref(), key, slug, need).map_err(|e| self.refused(e, || ApiError::no_repo(slug), what))?;
        let info = self.store().project_info(&granted.repo.owner)?.ok_or_else(missing)?;
        Ok((granted.repo, info))
    }

    /// [`Api::repo`] from async code: the lookup runs on the store's blocking pool.
    pub(crate) async fn repo_async(&self, key: &str, slug: &str, need: Permission, what: &'static str) -> Result<(Repo, ProjectInfo), ApiError> {
        let (key, slug) = (key.to_owned(), slug.to_owned());
        self.clone().blocking(move |api| api.repo(&key, &slug, need, what)).await
    }

    /// Renders the access service's refusal: 401, Bitbucket's "does not exist" 404, or a 403
    /// saying what the caller may not do.
    pub(crate) fn refused(&self, e: crate::access::AccessError, not_found: impl FnOnce() -> ApiError, what: &str) -> ApiError {
        use crate::access::AccessError;
        match e {
            AccessError::Anonymous(_) => ApiError::AuthRequired,
            AccessError::Hidden(_) => not_found(),
            AccessError::Forbidden(_) => ApiError::forbidden(what),
            AccessError::Store(e) => e.into(),
        }
    }

    // ---- JSON shapes ----

    pub(crate) fn user_json(&self, u: &User) -> Value {
        let mut v = json!({
            "name": u.name.as_str(),
            "id": u.id,
            "displayName": u.display_name,
            "active": u.active,
            "slug": u.name.as_str(),
            "type": "NORMAL",
            "links": {"self": [{"href": format!("{}/users/{}", self.base(), u.name)}]},
        });
        if let Some(e) = &u.email {
            v["emailAddress"] = json!(e);
        }
        v
    }

    /// A project's key as Bitbucket shows it: `TP`, or `~ALICE` for a personal project.
    fn project_key(owner: &Owner) -> String {
        owner.to_string().to_ascii_uppercase()
    }

    pub(crate) fn project_json(&self, p: &ProjectInfo) -> Value {
        let (kind, href) = match &p.owner {
            Owner::Project(k) => ("NORMAL", format!("{}/projects/{k}", self.base())),
            Owner::User(u) => ("PERSONAL", format!("{}/users/{u}", self.base())),
        };
        let mut v = json!({
            "key": Self::project_key(&p.owner),
            "id": p.id,
            "name": p.name,
            "public": p.public,
            "type": kind,
            "links": {"self": [{"href": href}]},
        });
        if let Some(d) = &p.description {
            v["description"] = json!(d);
        }
        v
    }

    /// The http clone URL with the caller's name in it, as Bitbucket shows it to them.
    pub(crate) fn clone_href(&self, repo: &Repo) -> String {
        let url = self.state.urls.clone_url(&self.view, &repo.owner, &repo.slug);
        match (self.user(), url.split_once("://")) {
            (Some(u), Some((scheme, rest))) => format!("{scheme}://{}@{rest}", u.name.as_str().replace('@', "%40")),
            _ => url,
        }
    }

    pub(crate) fn repo_json(&self, repo: &Repo, project: &ProjectInfo) -> Result<Value, ApiError> {
        let forkable = self.store().repo_forkable(repo)?;
        let page = match &repo.owner {
            Owner::Project(k) => format!("{}/projects/{k}/repos/{}/browse", self.base(), repo.slug),
            Owner::User(u) => format!("{}/users/{u}/repos/{}/browse", self.base(), repo.slug),
        };
        Ok(json!({
            "slug": repo.slug.as_str(),
            "id": repo.id,
            "name": repo.name,
            "scmId": "git",
            "state": "AVAILABLE",
            "statusMessage": "Available",
            "forkable": forkable,
            "project": self.project_json(project),
            "public": repo.public,
            "links": {
                "clone": [{"href": self.clone_href(repo), "name": "http"}],
                "self": [{"href": page}],
            },
        }))
    }
}

/// Reads a JSON body: too large is 413, missing or malformed is 400; nothing is changed
/// before the body has parsed.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(BODY_LIMIT)
        } else {
            ApiError::Malformed(format!("The request body could not be read: {e}."))
        }
    })?;
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::Malformed("The request needs a JSON body.".into()));
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::Malformed(format!("The request body is not valid JSON for this resource: {e}.")))
}

/// Like [`parse_body`], but an empty body is an empty object.
pub(crate) fn parse_optional_body<T: serde::de::DeserializeOwned + Default>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    match &body {
        Ok(b) if b.iter().all(|c| c.is_ascii_whitespace()) => Ok(T::default()),
        _ => parse_body(body),
    }
}

/// Bitbucket's slug for a repository name: lower case, and every run of characters a slug may
/// not have becomes one `-` ("TEST REPO" → "test-repo").
pub(crate) fn slugify(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// The JSON a 201/200 handler returns.
pub(crate) fn ok(status: StatusCode, v: Value) -> Response {
    json_response(status, &v)
}

/// 204 No Content (the JSON content type is added by [`finish`]).
pub(crate) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// `permission=PROJECT_READ|PROJECT_WRITE|PROJECT_ADMIN` (or `REPO_…` with `prefix = "REPO"`).
pub(crate) fn parse_level(prefix: &str, value: &str) -> Result<Permission, ApiError> {
    let bad = || ApiError::invalid("permission", format!("{value:?} is not a permission here; use one of {prefix}_READ, {prefix}_WRITE or {prefix}_ADMIN."));
    let rest = value.strip_prefix(prefix).and_then(|r| r.strip_prefix('_')).ok_or_else(bad)?;
    match rest {
        "READ" => Ok(Permission::Read),
        "WRITE" => Ok(Permission::Write),
        "ADMIN" => Ok(Permission::Admin),
        _ => Err(bad()),
    }
}

pub(crate) fn level_name(prefix: &str, p: Permission) -> String {
    format!("{prefix}_{}", p.as_str().to_ascii_uppercase())
}

/// Case-insensitive substring filter for `?filter=`.
pub(crate) fn matches_filter(filter: Option<&str>, fields: &[&str]) -> bool {
    match filter {
        None | Some("") => true,
        Some(f) => {
            let f = f.to_lowercase();
            fields.iter().any(|s| s.to_lowercase().contains(&f))
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn names_become_bitbucket_slugs() {
        for (name, slug) in [("TEST REPO", "test-repo"), ("My.Repo_1", "my.repo_1"), ("  a  b  ", "a-b"), ("Ünï code!", "n-code"), ("--x--", "x")] {
            assert_eq!(slugify(name), slug, "{name:?}");
        }
    }

    #[test]
    fn the_envelope_has_next_page_start_exactly_when_a_page_follows() {
        let all: Vec<Value> = (0..30).map(|i| json!(i)).collect();
        let first = paged(all.clone(), PageReq { start: 0, limit: 25 });
        assert_eq!((first["size"].as_u64(), first["isLastPage"].as_bool(), first["nextPageStart"].as_u64()), (Some(25), Some(false), Some(25)));
        let second = paged(all.clone(), PageReq { start: 25, limit: 25 });
        assert_eq!((second["size"].as_u64(), second["isLastPage"].as_bool()), (Some(5), Some(true)));
        assert!(second.get("nextPageStart").is_none());
        let exact = paged(all.clone(), PageReq { start: 0, limit: 30 });
        assert!(exact.get("nextPageStart").is_none() && exact["isLastPage"] == json!(true));
        let past = paged(all, PageReq { start: 100, limit: 25 });
        assert_eq!((past["size"].as_u64(), past["isLastPage"].as_bool()), (Some(0), Some(true)));
    }

    #[test]
    fn permission_levels_parse_only_their_own_prefix() {
        assert_eq!(parse_level("PROJECT", "PROJECT_WRITE").unwrap(), Permission::Write);
        assert_eq!(parse_level("REPO", "REPO_ADMIN").unwrap(), Permission::Admin);
        for bad in ["REPO_READ", "project_read", "PROJECT_", "PROJECT_OWNER", "read", ""] {
            assert!(parse_level("PROJECT", bad).is_err(), "{bad:?}");
        }
    }
}
