//! The REST API under `<context path>/rest/api/1.0` (and Bitbucket's other families beside it:
//! `/rest/branch-permissions/2.0`, `/rest/build-status/1.0`, `/rest/required-builds/1.0`,
//! `/rest/insights/1.0`), compatible with Bitbucket Server 1.0 so the
//! scripts and tools written for Stash (stashy, atlassian-python-api, JIRA's application links)
//! keep working: its paged envelope, its error bodies, its JSON shapes and its permission rules.
//! Every family also answers under `latest` ([`latest_alias`], applied before routing).
//!
//! Requests are authenticated once, in [`authenticate`] (Basic with a password or token, or
//! Bearer), with the same rate limit as git; every response then gets the JSON content type
//! and `X-AUSERNAME`, and every error Bitbucket's body, in [`finish`]. Handlers refuse to reveal
//! what the caller may not see exactly as the git endpoints do: 401 for anonymous callers, 404
//! for everyone else. Links are built from the base URL.

mod archive;
mod audit;
mod branch_permissions;
#[cfg(test)]
mod branch_permissions_tests;
pub(crate) mod builds;
#[cfg(test)]
mod builds_tests;
mod commit_comments;
mod error;
mod git;
mod groups;
mod history;
mod permissions;
mod projects;
mod pull_requests;
mod refs;
#[cfg(test)]
mod refs_tests;
#[cfg(test)]
mod repo_read_tests;
mod repos;
mod search;
mod ssh_keys;
#[cfg(test)]
mod tests;
mod tokens;
#[cfg(test)]
mod tokens_tests;
mod users;
mod webhooks;

use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post, put};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use trove_store::{Authenticated, GlobalPermission, Owner, Permission, ProjectInfo, Repo, User};

pub(crate) use commit_comments::commit_comment_json_for_event;
pub(crate) use error::ApiError;
use error::{JSON, json_response};
pub(crate) use pull_requests::{Users as PrUsers, comment_json_for_event, participant_json_for_event, pr_json_for_event};
pub(crate) use webhooks::audit_details as webhook_audit_details;

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
    (&["GET"], "/projects/{projectKey}/permissions/groups/none"),
    (&["GET", "POST", "DELETE"], "/projects/{projectKey}/permissions/{permission}/all"),
    (&["GET", "POST"], "/projects/{projectKey}/repos"),
    (&["GET", "POST", "PUT", "DELETE"], "/projects/{projectKey}/repos/{repositorySlug}"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/forks"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/related"),
    (&["GET", "PUT", "DELETE"], "/projects/{projectKey}/repos/{repositorySlug}/permissions/users"),
    (&["GET", "PUT", "DELETE"], "/projects/{projectKey}/repos/{repositorySlug}/permissions/groups"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/permissions/groups/none"),
    (&["GET", "POST"], "/projects/{projectKey}/repos/{repositorySlug}/branches"),
    (&["GET", "PUT"], "/projects/{projectKey}/repos/{repositorySlug}/branches/default"),
    (&["GET", "POST"], "/projects/{projectKey}/repos/{repositorySlug}/tags"),
    (&["GET", "PUT"], "/projects/{projectKey}/repos/{repositorySlug}/default-branch"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/commits"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/commits/{commitId}"),
    (&["GET", "POST", "DELETE"], "/projects/{projectKey}/repos/{repositorySlug}/commits/{commitId}/builds"),
    (&["GET", "POST"], "/projects/{projectKey}/repos/{repositorySlug}/commits/{commitId}/comments"),
    (&["GET", "PUT", "DELETE"], "/projects/{projectKey}/repos/{repositorySlug}/commits/{commitId}/comments/{commentId}"),
    (&["GET"], "/build/capabilities"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/commits/{commitId}/changes"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/commits/{commitId}/diff"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/commits/{commitId}/diff/{path}"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/commits/{commitId}/pull-requests"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/changes"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/diff"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/diff/{path}"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/compare/commits"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/compare/changes"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/compare/diff"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/compare/diff/{path}"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/browse"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/browse/{path}"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/raw/{path}"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/files"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/files/{path}"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/archive"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/last-modified"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/last-modified/{path}"),
    (&["GET", "POST"], "/projects/{projectKey}/repos/{repositorySlug}/pull-requests"),
    (&["GET", "PUT", "DELETE"], "/projects/{projectKey}/repos/{repositorySlug}/pull-requests/{pullRequestId}"),
    (&["POST"], "/projects/{projectKey}/repos/{repositorySlug}/pull-requests/{pullRequestId}/decline"),
    (&["POST"], "/projects/{projectKey}/repos/{repositorySlug}/pull-requests/{pullRequestId}/reopen"),
    (&["GET", "POST"], "/projects/{projectKey}/repos/{repositorySlug}/pull-requests/{pullRequestId}/merge"),
    (&["GET", "POST"], "/projects/{projectKey}/repos/{repositorySlug}/pull-requests/{pullRequestId}/participants"),
    (&["PUT", "DELETE"], "/projects/{projectKey}/repos/{repositorySlug}/pull-requests/{pullRequestId}/participants/{userSlug}"),
    (&["POST", "DELETE"], "/projects/{projectKey}/repos/{repositorySlug}/pull-requests/{pullRequestId}/approve"),
    (&["POST", "DELETE"], "/projects/{projectKey}/repos/{repositorySlug}/pull-requests/{pullRequestId}/watch"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/pull-requests/{pullRequestId}/activities"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/pull-requests/{pullRequestId}/commits"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/pull-requests/{pullRequestId}/changes"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/pull-requests/{pullRequestId}/diff"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/pull-requests/{pullRequestId}/diff/{path}"),
    (&["GET", "POST"], "/projects/{projectKey}/repos/{repositorySlug}/pull-requests/{pullRequestId}/comments"),
    (&["GET", "PUT", "DELETE"], "/projects/{projectKey}/repos/{repositorySlug}/pull-requests/{pullRequestId}/comments/{commentId}"),
    (&["GET", "POST"], "/projects/{projectKey}/repos/{repositorySlug}/pull-requests/{pullRequestId}/blocker-comments"),
    (&["GET", "PUT", "DELETE"], "/projects/{projectKey}/repos/{repositorySlug}/pull-requests/{pullRequestId}/blocker-comments/{commentId}"),
    (&["GET", "POST"], "/projects/{projectKey}/repos/{repositorySlug}/settings/pull-requests"),
    (&["GET", "POST"], "/projects/{projectKey}/settings/pull-requests"),
    (&["GET", "POST"], "/projects/{projectKey}/settings/pull-requests/{scmId}"),
    (&["GET", "POST"], "/projects/{projectKey}/webhooks"),
    (&["POST"], "/projects/{projectKey}/webhooks/test"),
    (&["GET", "PUT", "DELETE"], "/projects/{projectKey}/webhooks/{webhookId}"),
    (&["GET"], "/projects/{projectKey}/webhooks/{webhookId}/latest"),
    (&["GET"], "/projects/{projectKey}/webhooks/{webhookId}/statistics"),
    (&["GET"], "/projects/{projectKey}/webhooks/{webhookId}/statistics/summary"),
    (&["GET", "POST"], "/projects/{projectKey}/repos/{repositorySlug}/webhooks"),
    (&["POST"], "/projects/{projectKey}/repos/{repositorySlug}/webhooks/test"),
    (&["GET", "PUT", "DELETE"], "/projects/{projectKey}/repos/{repositorySlug}/webhooks/{webhookId}"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/webhooks/{webhookId}/latest"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/webhooks/{webhookId}/statistics"),
    (&["GET"], "/projects/{projectKey}/repos/{repositorySlug}/webhooks/{webhookId}/statistics/summary"),
    (&["GET"], "/dashboard/pull-requests"),
    (&["GET"], "/inbox/pull-requests"),
    (&["GET"], "/inbox/pull-requests/count"),
    (&["GET"], "/repos"),
    (&["GET", "PUT"], "/users"),
    (&["GET"], "/users/{userSlug}"),
    (&["GET", "POST"], "/users/{userSlug}/repos"),
    (&["GET", "POST", "PUT", "DELETE"], "/users/{userSlug}/repos/{repositorySlug}"),
    (&["GET", "POST", "PUT", "DELETE"], "/admin/users"),
    (&["DELETE"], "/admin/users/captcha"),
    (&["POST"], "/admin/users/add-groups"),
    (&["POST"], "/admin/users/add-group"),
    (&["POST"], "/admin/users/remove-group"),
    (&["GET"], "/admin/users/more-members"),
    (&["GET"], "/admin/users/more-non-members"),
    (&["GET", "POST", "DELETE"], "/admin/groups"),
    (&["POST"], "/admin/groups/add-users"),
    (&["POST"], "/admin/groups/add-user"),
    (&["POST"], "/admin/groups/remove-user"),
    (&["GET"], "/admin/groups/more-members"),
    (&["GET"], "/admin/groups/more-non-members"),
    (&["GET"], "/groups"),
    (&["GET", "PUT", "DELETE"], "/admin/permissions/users"),
    (&["GET", "PUT", "DELETE"], "/admin/permissions/groups"),
    (&["GET"], "/admin/permissions/groups/none"),
    (&["GET"], "/admin/audit"),
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
        .route(
            &p("/projects/{key}/permissions/groups"),
            get(permissions::project_groups).put(permissions::project_group_grant).delete(permissions::project_group_revoke),
        )
        .route(&p("/projects/{key}/permissions/groups/none"), get(permissions::project_groups_none))
        .route(&p("/projects/{key}/permissions/{perm}/all"), get(permissions::default_get).post(permissions::default_set).delete(permissions::default_revoke))
        .route(&p("/projects/{key}/repos"), get(repos::list).post(repos::create))
        .route(&repo(""), get(repos::get).post(repos::fork).put(repos::update).delete(repos::delete))
        .route(&repo("/forks"), get(repos::forks))
        .route(&repo("/related"), get(repos::related))
        .route(&repo("/permissions/users"), get(permissions::repo_users).put(permissions::repo_grant).delete(permissions::repo_revoke))
        .route(&repo("/permissions/groups"), get(permissions::repo_groups).put(permissions::repo_group_grant).delete(permissions::repo_group_revoke))
        .route(&repo("/permissions/groups/none"), get(permissions::repo_groups_none))
        .route(&repo("/branches"), get(git::branches).post(refs::create_branch_core))
        .route(&repo("/branches/default"), get(git::default_branch).put(git::set_default_branch))
        .route(&repo("/tags"), get(git::tags).post(refs::create_tag_core))
        .route(&repo("/default-branch"), get(git::default_branch).put(git::set_default_branch))
        .route(&repo("/commits"), get(git::commits))
        .route(&repo("/commits/{id}"), get(git::commit))
        .route(&repo("/commits/{id}/builds"), get(builds::repo_get).post(builds::repo_post).delete(builds::repo_delete))
        .merge(commit_comments::routes(&repo))
        .route(&p("/build/capabilities"), get(builds::capabilities))
        .merge(history::routes(&repo))
        // stashy asks for `browse/` and `files/` with an empty path.
        .route(&repo("/browse"), get(git::browse_root))
        .route(&repo("/browse/"), get(git::browse_root))
        .route(&repo("/browse/{*path}"), get(git::browse_path))
        .route(&repo("/raw/{*path}"), get(git::raw))
        .route(&repo("/files"), get(git::files_root))
        .route(&repo("/files/"), get(git::files_root))
        .route(&repo("/files/{*path}"), get(git::files_path))
        .route(&repo("/archive"), get(archive::archive))
        .route(&repo("/last-modified"), get(git::last_modified_root))
        .route(&repo("/last-modified/{*path}"), get(git::last_modified_path))
        .route(&repo("/pull-requests"), get(pull_requests::list).post(pull_requests::create))
        .route(&repo("/pull-requests/{id}"), get(pull_requests::get).put(pull_requests::update).delete(pull_requests::delete))
        .route(&repo("/pull-requests/{id}/decline"), post(pull_requests::decline))
        .route(&repo("/pull-requests/{id}/reopen"), post(pull_requests::reopen))
        .route(&repo("/pull-requests/{id}/merge"), get(pull_requests::merge_status).post(pull_requests::merge))
        .route(&repo("/pull-requests/{id}/participants"), get(pull_requests::participants).post(pull_requests::add_participant))
        // stashy writes `participants/{user}/`, with the slash.
        .route(&repo("/pull-requests/{id}/participants/{user}"), put(pull_requests::set_status).delete(pull_requests::remove_participant))
        .route(&repo("/pull-requests/{id}/participants/{user}/"), put(pull_requests::set_status).delete(pull_requests::remove_participant))
        .route(&repo("/pull-requests/{id}/approve"), post(pull_requests::approve).delete(pull_requests::approve))
        .route(&repo("/pull-requests/{id}/watch"), post(pull_requests::watch).delete(pull_requests::watch))
        .route(&repo("/pull-requests/{id}/activities"), get(pull_requests::activities))
        .route(&repo("/pull-requests/{id}/commits"), get(pull_requests::commits))
        .route(&repo("/pull-requests/{id}/changes"), get(pull_requests::changes))
        .route(&repo("/pull-requests/{id}/diff"), get(pull_requests::diff))
        .route(&repo("/pull-requests/{id}/diff/{*path}"), get(pull_requests::diff_path))
        .route(&repo("/pull-requests/{id}/comments"), get(pull_requests::comment_list).post(pull_requests::comment_create))
        .route(
            &repo("/pull-requests/{id}/comments/{cid}"),
            get(pull_requests::comment_get).put(pull_requests::comment_update).delete(pull_requests::comment_delete),
        )
        .route(&repo("/pull-requests/{id}/blocker-comments"), get(pull_requests::blocker_list).post(pull_requests::blocker_create))
        .route(
            &repo("/pull-requests/{id}/blocker-comments/{cid}"),
            get(pull_requests::comment_get).put(pull_requests::comment_update).delete(pull_requests::comment_delete),
        )
        .route(&repo("/settings/pull-requests"), get(pull_requests::settings_get).post(pull_requests::settings_set))
        .route(&p("/projects/{key}/settings/pull-requests"), get(pull_requests::project_settings_get).post(pull_requests::project_settings_set))
        .route(&p("/projects/{key}/settings/pull-requests/{scm}"), get(pull_requests::project_settings_get_scm).post(pull_requests::project_settings_set_scm))
        .route(&p("/projects/{key}/webhooks"), get(webhooks::project_list).post(webhooks::project_create))
        .route(&p("/projects/{key}/webhooks/test"), post(webhooks::project_test))
        .route(&p("/projects/{key}/webhooks/{id}"), get(webhooks::project_get).put(webhooks::project_update).delete(webhooks::project_delete))
        .route(&p("/projects/{key}/webhooks/{id}/latest"), get(webhooks::project_latest))
        .route(&p("/projects/{key}/webhooks/{id}/statistics"), get(webhooks::project_statistics))
        .route(&p("/projects/{key}/webhooks/{id}/statistics/summary"), get(webhooks::project_summary))
        .route(&repo("/webhooks"), get(webhooks::repo_list).post(webhooks::repo_create))
        .route(&repo("/webhooks/test"), post(webhooks::repo_test))
        .route(&repo("/webhooks/{id}"), get(webhooks::repo_get).put(webhooks::repo_update).delete(webhooks::repo_delete))
        .route(&repo("/webhooks/{id}/latest"), get(webhooks::repo_latest))
        .route(&repo("/webhooks/{id}/statistics"), get(webhooks::repo_statistics))
        .route(&repo("/webhooks/{id}/statistics/summary"), get(webhooks::repo_summary))
        .route(&p("/dashboard/pull-requests"), get(pull_requests::dashboard))
        .route(&p("/inbox/pull-requests"), get(pull_requests::inbox))
        .route(&p("/inbox/pull-requests/count"), get(pull_requests::inbox_count))
        .route(&p("/repos"), get(repos::list_all))
        .route(&p("/users"), get(users::list).put(users::update_self))
        .route(&p("/users/{user}"), get(users::get))
        .route(&p("/users/{user}/repos"), get(repos::list_personal).post(repos::create_personal))
        .route(&p("/users/{user}/repos/{slug}"), get(repos::get_personal).post(repos::fork_personal).put(repos::update_personal).delete(repos::delete_personal))
        .route(&p("/admin/users"), get(users::admin_list).post(users::admin_create).put(users::admin_update).delete(users::admin_delete))
        .route(&p("/admin/users/captcha"), delete(users::clear_captcha))
        .route(&p("/admin/users/add-groups"), post(groups::add_groups))
        .route(&p("/admin/users/add-group"), post(groups::user_add_group))
        .route(&p("/admin/users/remove-group"), post(groups::user_remove_group))
        .route(&p("/admin/users/more-members"), get(groups::user_more_members))
        .route(&p("/admin/users/more-non-members"), get(groups::user_more_non_members))
        .route(&p("/admin/groups"), get(groups::list).post(groups::create).delete(groups::delete))
        .route(&p("/admin/groups/add-users"), post(groups::add_users))
        .route(&p("/admin/groups/add-user"), post(groups::add_user))
        .route(&p("/admin/groups/remove-user"), post(groups::remove_user))
        .route(&p("/admin/groups/more-members"), get(groups::more_members))
        .route(&p("/admin/groups/more-non-members"), get(groups::more_non_members))
        .route(&p("/groups"), get(groups::names))
        .route(&p("/admin/permissions/users"), get(users::global_list).put(users::global_grant).delete(users::global_revoke))
        .route(&p("/admin/permissions/groups"), get(groups::global_list).put(groups::global_grant).delete(groups::global_revoke))
        .route(&p("/admin/permissions/groups/none"), get(groups::global_none))
        .merge(branch_permissions::routes(ctx))
        .merge(builds::routes(ctx))
        .merge(refs::routes(ctx))
        .merge(tokens::routes(ctx))
        .merge(ssh_keys::routes(ctx))
        .merge(search::routes(ctx))
        .route(&p("/admin/audit"), get(audit::list))
        .route(&format!("{ctx}/rest/{{*rest}}"), any(no_route))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state, authenticate))
        // `HEAD /rest/` is stashy's start-up probe: answered at once, without checking credentials.
        .route(&format!("{ctx}/rest"), get(rest_root).post(rest_root))
        .route(&format!("{ctx}/rest/"), get(rest_root).post(rest_root))
        .route(&format!("{ctx}/rest/capabilities"), get(capabilities))
        .route(&format!("{ctx}/rest/webhooks/1.0/capabilities"), get(webhook_capabilities))
        .layer(middleware::map_response(finish))
}

/// REST families whose current version is not `1.0`, for the `latest` alias ([`latest_alias`]).
const FAMILY_VERSIONS: &[(&str, &str)] = &[("branch-permissions", "2.0")];

/// Bitbucket answers every REST family under `latest` as under its version (Atlassian's own
/// documentation writes `/rest/api/latest/…`): `{ctx}/rest/{family}/latest/…` becomes
/// `{ctx}/rest/{family}/{version}/…`, the version `1.0` unless [`FAMILY_VERSIONS`] names
/// another. `None` for any other path. [`crate::app`] rewrites before routing, so every family's
/// routes, present and future, get the alias without listing it.
pub(crate) fn latest_alias(ctx: &str, path: &str) -> Option<String> {
    let rest = path.strip_prefix(ctx)?.strip_prefix("/rest/")?;
    let (family, tail) = rest.split_once('/')?;
    let tail = tail.strip_prefix("latest").filter(|t| t.is_empty() || t.starts_with('/'))?;
    if family.is_empty() || family == "latest" {
        return None;
    }
    let version = FAMILY_VERSIONS.iter().find(|(f, _)| *f == family).map_or("1.0", |(_, v)| v);
    Some(format!("{ctx}/rest/{family}/{version}{tail}"))
}

/// `GET /rest/capabilities` (anyone): what Bitbucket's integrations (Jenkins' Bitbucket Server
/// Integration plugin) look up first; they insist on `application: stash` and follow the links.
async fn capabilities(State(state): State<AppState>, view: Option<axum::Extension<RequestView>>) -> Response {
    let base = view.map(|v| state.urls.base_url(&v.0)).unwrap_or_default();
    json_response(
        StatusCode::OK,
        &json!({
            "application": "stash",
            "buildDate": "1697764661289",
            "capabilities": {
                "webhooks": format!("{base}/rest/webhooks/latest/capabilities"),
                "build": format!("{base}/rest/api/latest/build/capabilities"),
            },
            "links": {"self": [{"href": format!("{base}/rest/capabilities")}]},
        }),
    )
}

/// `GET /rest/webhooks/1.0/capabilities` (anyone), where `/rest/capabilities` points: the event
/// keys a webhook may subscribe to (Jenkins' integration checks for `repo:refs_changed` and
/// `pr:*` before it creates its webhook).
async fn webhook_capabilities() -> Response {
    json_response(StatusCode::OK, &json!({"application": {"name": "Trove", "version": env!("CARGO_PKG_VERSION")}, "events": crate::webhooks::EVENT_KEYS}))
}

/// Who is calling; `None` for anonymous. Put in place by [`authenticate`].
#[derive(Clone)]
pub(crate) struct Caller(pub(crate) Option<Authenticated>);

/// Checks credentials once per request: wrong ones are a 401 even where anonymous access would
/// do, as Bitbucket answers; the caller's name goes back in `X-AUSERNAME`.
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let ip = req.extensions().get::<RequestView>().and_then(|v| v.client_ip);
    let header = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes().to_vec());
    let who = match crate::auth::authenticate(&state, header.as_deref(), ip, crate::auth::Channel::Rest).await {
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
    /// The request's path and query as received, for redirects.
    pub(crate) uri: http::Uri,
}

impl FromRequestParts<AppState> for Api {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let view = parts.extensions.get::<RequestView>().cloned().ok_or_else(|| ApiError::Internal("no request view".into()))?;
        let who = parts.extensions.get::<Caller>().cloned().ok_or_else(|| ApiError::Internal("no caller".into()))?.0;
        let Query(q) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::Invalid { context: None, message: format!("The query string is malformed: {e}.") })?;
        Ok(Api { state: state.clone(), view, who, q: Params(q), uri: parts.uri.clone() })
    }
}

impl Api {
    /// A context for rendering outside a request (webhook payloads): nobody calling, links from
    /// the base URL (set one: without it links name `http://localhost`).
    pub(crate) fn background(state: &AppState) -> Api {
        let view = RequestView { scheme: "http".into(), authority: "localhost".into(), client_ip: None, via_proxy: false };
        Api { state: state.clone(), view, who: None, q: Params(Vec::new()), uri: http::Uri::from_static("/") }
    }

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

    /// The audit log entry of a change this request made: the caller and their address (as
    /// the trusted proxies report it). Blocks: call it inside [`Api::blocking`].
    pub(crate) fn audit(&self, action: crate::audit::Action, target: &str, details: Value) {
        let actor = self.user().map(|u| u.name.as_str()).unwrap_or("anonymous");
        crate::audit::record(&self.state, actor, self.view.client_ip, action, target, details);
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

    /// The repository `key/slug` if the caller may read it and do `need` with it. One renamed or
    /// moved since is a permanent redirect (308, so the method and body go along) to this URL
    /// at its new place, for a caller who may read it there.
    pub(crate) fn repo(&self, key: &str, slug: &str, need: Permission, what: &str) -> Result<(Repo, ProjectInfo), ApiError> {
        let missing = || self.hidden(ApiError::no_repo(slug));
        let granted = match crate::access::repo(self.store(), self.who.as_ref(), key, slug, need) {
            Err(e @ (crate::access::AccessError::Anonymous(_) | crate::access::AccessError::Hidden(_))) => {
                if let Some(now) = crate::access::moved(self.store(), self.who.as_ref(), key, slug)?
                    && let Some(location) = self.moved_location(key, slug, &now)
                {
                    return Err(ApiError::Moved(location));
                }
                return Err(self.refused(e, || ApiError::no_repo(slug), what));
            }
            other => other.map_err(|e| self.refused(e, || ApiError::no_repo(slug), what))?,
        };
        let info = self.store().project_info(&granted.repo.owner)?.ok_or_else(missing)?;
        Ok((granted.repo, info))
    }

    /// This request's URL with its `projects/{key}/repos/{slug}` (or `users/{user}/repos/{slug}`)
    /// pointing at where `now` is.
    fn moved_location(&self, key: &str, slug: &str, now: &Repo) -> Option<String> {
        let path = crate::access::moved_path(self.uri.path(), key, slug, now)?;
        let query = self.uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        Some(format!("{}{path}{query}", self.view.origin()))
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

    /// `links.clone`: HTTP, and SSH when the SSH listener is on.
    pub(crate) fn clone_links(&self, repo: &Repo) -> Value {
        let mut links = vec![json!({"href": self.clone_href(repo), "name": "http"})];
        if let Some(ssh) = crate::ssh::clone_url(&self.state, &self.view, repo) {
            links.push(json!({"href": ssh, "name": "ssh"}));
        }
        Value::Array(links)
    }

    pub(crate) fn repo_json(&self, repo: &Repo, project: &ProjectInfo) -> Result<Value, ApiError> {
        let forkable = self.store().repo_forkable(repo)?;
        let page = match &repo.owner {
            Owner::Project(k) => format!("{}/projects/{k}/repos/{}/browse", self.base(), repo.slug),
            Owner::User(u) => format!("{}/users/{u}/repos/{}/browse", self.base(), repo.slug),
        };
        let description = self.store().repo_description(repo)?;
        let mut v = json!({
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
                "clone": self.clone_links(repo),
                "self": [{"href": page}],
            },
        });
        if let Some(d) = description {
            v["description"] = json!(d);
        }
        // A fork names its origin, whole, when the caller may read it (an origin's own origin
        // comes with it: the chain is as long as the fork hierarchy is deep).
        if let Some(origin) = self.store().repo_origin_id(repo)?.map(|id| self.store().repo_by_id(id)).transpose()?.flatten()
            && self.store().permission(self.who.as_ref(), &origin)?.is_some()
            && let Some(project) = self.store().project_info(&origin.owner)?
        {
            v["origin"] = self.repo_json(&origin, &project)?;
        }
        Ok(v)
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
    fn latest_becomes_the_family_version_and_nothing_else_is_rewritten() {
        for (ctx, path, want) in [
            ("", "/rest/api/latest/projects", Some("/rest/api/1.0/projects")),
            ("/stash", "/stash/rest/api/latest/projects/TP/repos", Some("/stash/rest/api/1.0/projects/TP/repos")),
            ("", "/rest/branch-permissions/latest/projects/TP/restrictions", Some("/rest/branch-permissions/2.0/projects/TP/restrictions")),
            ("", "/rest/build-status/latest/commits/abc", Some("/rest/build-status/1.0/commits/abc")),
            ("", "/rest/api/latest", Some("/rest/api/1.0")),
            ("", "/rest/api/1.0/projects", None),
            ("", "/rest/api/latestx/projects", None),
            ("", "/rest/latest/api", None),
            ("", "/projects/TP/repos/latest/browse", None),
            ("/stash", "/rest/api/latest/projects", None),
            ("", "/rest/api/1.0/projects/TP/repos/latest", None),
        ] {
            assert_eq!(latest_alias(ctx, path).as_deref(), want, "{ctx} {path}");
        }
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
