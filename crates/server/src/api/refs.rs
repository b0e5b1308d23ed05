//! Creating and deleting branches and tags over REST: `POST …/branches` and `POST …/tags` of the
//! core API, `/rest/branch-utils/1.0` (create, delete with `endPoint` and `dryRun`, branches
//! containing a commit) and `/rest/git/1.0` (tags, lightweight or annotated), each also under
//! `latest`; and `…/default-branch`, the newer path beside `…/branches/default`.
//!
//! The rules (write access, branch permissions, compare-and-swap, the push event) are the
//! service's, [`crate::ref_changes`]; this renders them as Bitbucket does.

use axum::Router;
use axum::extract::Path;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::Value;
use trove_store::Permission;

use super::git::ref_json;
use super::{Api, ApiError, no_content, ok, paged, parse_body};
use crate::AppState;
use crate::pr_git::GitRepo;
use crate::ref_changes::{RefChanges, RefError};
use crate::repo_read::Reader;

/// The routes of `/rest/branch-utils/1.0` (full paths, as docs/openapi.json lists them).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const BRANCH_UTILS_ROUTES: &[(&[&str], &str)] = &[
    (&["POST", "DELETE"], "/rest/branch-utils/1.0/projects/{projectKey}/repos/{repositorySlug}/branches"),
    (&["GET"], "/rest/branch-utils/1.0/projects/{projectKey}/repos/{repositorySlug}/branches/info/{commitId}"),
];

/// The routes of `/rest/git/1.0` (full paths).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const GIT_ROUTES: &[(&[&str], &str)] = &[
    (&["POST"], "/rest/git/1.0/projects/{projectKey}/repos/{repositorySlug}/tags"),
    (&["DELETE"], "/rest/git/1.0/projects/{projectKey}/repos/{repositorySlug}/tags/{name}"),
];

/// The `branch-utils` and `git` families under the context path `ctx` (`latest` is rewritten to
/// `1.0` before routing: [`super::latest_alias`]).
pub(crate) fn routes(ctx: &str) -> Router<AppState> {
    let bu = |s: &str| format!("{ctx}/rest/branch-utils/1.0/projects/{{key}}/repos/{{slug}}{s}");
    let git = |s: &str| format!("{ctx}/rest/git/1.0/projects/{{key}}/repos/{{slug}}{s}");
    Router::new()
        .route(&bu("/branches"), post(create_branch_utils).delete(delete_branch))
        .route(&bu("/branches/info/{id}"), get(branch_info))
        .route(&git("/tags"), post(create_tag_git))
        .route(&git("/tags/{*name}"), axum::routing::delete(delete_tag))
}

impl From<RefError> for ApiError {
    fn from(e: RefError) -> Self {
        let message = e.to_string();
        match e {
            RefError::Invalid { context, message } => ApiError::invalid(context, message),
            RefError::NoStartPoint(_) => ApiError::invalid("startPoint", message),
            RefError::Exists(_) | RefError::IsDefault(_) => ApiError::invalid("name", message),
            RefError::Overlaps(..) => ApiError::Conflict { exception: "com.atlassian.bitbucket.repository.DuplicateRefException", message },
            RefError::Missing(full) => ApiError::NotFound {
                exception: if full.starts_with("refs/tags/") {
                    "com.atlassian.bitbucket.repository.NoSuchTagException"
                } else {
                    "com.atlassian.bitbucket.repository.NoSuchBranchException"
                },
                message,
            },
            RefError::Stale(..) => ApiError::Conflict { exception: "com.atlassian.bitbucket.repository.RefOutOfDateException", message },
            RefError::Restricted(_) => ApiError::Forbidden(message),
            RefError::Restrictions(e) if e.is_unavailable() => ApiError::DatabaseDown(e.to_string()),
            RefError::Restrictions(e) => ApiError::Internal(e.to_string()),
            RefError::Git(e) => ApiError::Internal(e.to_string()),
            RefError::Journal(_) => ApiError::Internal(message),
            RefError::Read(e) => ApiError::Read(e),
        }
    }
}

/// A JSON boolean, or stashy's `"true"`/`"false"` strings; absent is `default`.
fn flag(v: &Option<Value>, name: &str, default: bool) -> Result<bool, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(ApiError::invalid(name, format!("{name} must be true or false, not {other}."))),
    }
}

fn required<'a>(v: &'a Option<String>, name: &str, what: &str) -> Result<&'a str, ApiError> {
    v.as_deref().filter(|s| !s.trim().is_empty()).ok_or_else(|| ApiError::invalid(name, format!("The {what} is required.")))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateRef {
    name: Option<String>,
    start_point: Option<String>,
    message: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    force: Option<Value>,
}

/// The caller and the repository, with write access.
async fn writable(api: &Api, key: &str, slug: &str, what: &'static str) -> Result<trove_store::Repo, ApiError> {
    let (repo, _) = api.repo_async(key, slug, Permission::Write, what).await?;
    Ok(repo)
}

async fn create_branch(api: Api, key: String, slug: String, body: Result<Bytes, BytesRejection>, status: StatusCode) -> Result<Response, ApiError> {
    let repo = writable(&api, &key, &slug, "create branches in this repository").await?;
    let b: CreateRef = parse_body(body)?;
    let name = required(&b.name, "name", "branch name")?;
    let start = required(&b.start_point, "startPoint", "start point (a branch, tag or commit id)")?;
    let who = api.require_login()?;
    let made = RefChanges::new(&api.state, &repo, who).create_branch(name, start).await?;
    let head = Reader::new(&api.state, api.store().repo_path(&repo)).head().await?;
    Ok(ok(status, ref_json(&made, "BRANCH", head.as_deref())))
}

/// `POST /rest/api/1.0/…/branches` `{name, startPoint, message?}` → 200 with the branch.
pub(crate) async fn create_branch_core(api: Api, Path((key, slug)): Path<(String, String)>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    create_branch(api, key, slug, body, StatusCode::OK).await
}

/// `POST /rest/branch-utils/1.0/…/branches` `{name, startPoint}` → 201 with the branch.
async fn create_branch_utils(api: Api, Path((key, slug)): Path<(String, String)>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    create_branch(api, key, slug, body, StatusCode::CREATED).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteBranch {
    name: Option<String>,
    end_point: Option<String>,
    dry_run: Option<Value>,
}

/// `DELETE /rest/branch-utils/1.0/…/branches` `{name, endPoint?, dryRun?}` → 204.
async fn delete_branch(api: Api, Path((key, slug)): Path<(String, String)>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let repo = writable(&api, &key, &slug, "delete branches in this repository").await?;
    let b: DeleteBranch = parse_body(body)?;
    let name = required(&b.name, "name", "branch name")?;
    let dry_run = flag(&b.dry_run, "dryRun", false)?;
    let who = api.require_login()?;
    RefChanges::new(&api.state, &repo, who).delete_branch(name, b.end_point.as_deref(), dry_run).await?;
    Ok(no_content())
}

/// `GET /rest/branch-utils/1.0/…/branches/info/{commitId}`: a page of the branches containing
/// the commit.
async fn branch_info(api: Api, Path((key, slug, id)): Path<(String, String, String)>) -> Result<Response, ApiError> {
    let page = api.q.page()?;
    let (repo, _) = api.repo_async(&key, &slug, Permission::Read, "see this repository").await?;
    let reader = Reader::new(&api.state, api.store().repo_path(&repo));
    let refs = reader.refs().await?;
    if !crate::repo_read::is_hex_id(&id) {
        return Err(ApiError::invalid("commitId", format!("{id:?} is not a commit id.")));
    }
    let commit = reader.resolve(&refs, Some(&id)).await?.ok_or_else(|| ApiError::no_commit(&id))?.commit;
    let names = GitRepo::new(&api.state, api.store().repo_path(&repo)).branches_containing(&commit).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    let head = refs.head.as_deref();
    let values = refs.branches.iter().filter(|b| names.contains(&b.full)).map(|b| ref_json(b, "BRANCH", head)).collect();
    Ok(ok(StatusCode::OK, paged(values, page)))
}

async fn create_tag(api: Api, key: String, slug: String, body: Result<Bytes, BytesRejection>, git_family: bool) -> Result<Response, ApiError> {
    let repo = writable(&api, &key, &slug, "create tags in this repository").await?;
    let b: CreateRef = parse_body(body)?;
    let name = required(&b.name, "name", "tag name")?;
    let start = required(&b.start_point, "startPoint", "start point (a branch, tag or commit id)")?;
    let message = b.message.as_deref().filter(|m| !m.trim().is_empty());
    // The core API annotates when there is a message; /rest/git also takes `type`.
    let message = match b.kind.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None => message,
        Some("LIGHTWEIGHT") => None,
        Some("ANNOTATED") => Some(message.unwrap_or(name)),
        Some(other) => return Err(ApiError::invalid("type", format!("{other:?} is not a tag type; use ANNOTATED or LIGHTWEIGHT."))),
    };
    let force = flag(&b.force, "force", false)?;
    let who = api.require_login()?;
    let made = RefChanges::new(&api.state, &repo, who).create_tag(name, start, message, force).await?;
    Ok(ok(if git_family { StatusCode::CREATED } else { StatusCode::OK }, ref_json(&made, "TAG", None)))
}

/// `POST /rest/api/1.0/…/tags` `{name, startPoint, message?}` → 200 with the tag.
pub(crate) async fn create_tag_core(api: Api, Path((key, slug)): Path<(String, String)>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    create_tag(api, key, slug, body, false).await
}

/// `POST /rest/git/1.0/…/tags` `{name, startPoint, message?, type?, force?}` → 201 with the tag.
async fn create_tag_git(api: Api, Path((key, slug)): Path<(String, String)>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    create_tag(api, key, slug, body, true).await
}

/// `DELETE /rest/git/1.0/…/tags/{name}` → 204.
async fn delete_tag(api: Api, Path((key, slug, name)): Path<(String, String, String)>) -> Result<Response, ApiError> {
    let repo = writable(&api, &key, &slug, "delete tags in this repository").await?;
    let who = api.require_login()?;
    RefChanges::new(&api.state, &repo, who).delete_tag(&name).await?;
    Ok(no_content())
}
