//! Branch permissions over REST, as Bitbucket Server 8 serves them under
//! `/rest/branch-permissions/2.0` (and `latest`): restrictions on a project
//! (`/projects/{key}/restrictions`, PROJECT_ADMIN) and on a repository
//! (`/projects/{key}/repos/{slug}/restrictions`, REPO_ADMIN), listed, created one at a time or in
//! bulk, read and deleted by id. There is no update: clients (stashy) delete and create again.
//!
//! Requests name exempt users by slug, groups by name and access keys by numeric id (9.x's
//! `userSlugs`, `groupNames` and `accessKeyIds` too, and user or key objects); responses show
//! users as user objects. A listing and an id answer only for the scope of the path: a project's
//! restriction is not found under one of its repositories, though it is in force there. Parsing
//! and rendering only: what is refused, and who may not be locked out, is
//! [`crate::branch_permissions`]'s.

use axum::Router;
use axum::extract::Path;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};
use trove_store::{GroupName, Matcher, MatcherType, NewRestriction, Permission, ProjectInfo, Repo, Restriction, RestrictionScope, RestrictionType, UserName};

use super::{Api, ApiError, no_content, ok, paged, parse_body};
use crate::AppState;
use crate::audit::Action;
use crate::branch_permissions::{ScopeOf, lockout};

/// Every route, as `(methods, path below /rest/branch-permissions/2.0)`, for the OpenAPI test
/// (docs/openapi.json documents them with that server). Each also answers under `latest`, and
/// with a trailing `/` after `restrictions` (atlassian-python-api writes `restrictions/`).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const ROUTES: &[(&[&str], &str)] = &[
    (&["GET", "POST"], "/projects/{projectKey}/restrictions"),
    (&["GET", "DELETE"], "/projects/{projectKey}/restrictions/{id}"),
    (&["GET", "POST"], "/projects/{projectKey}/repos/{repositorySlug}/restrictions"),
    (&["GET", "DELETE"], "/projects/{projectKey}/repos/{repositorySlug}/restrictions/{id}"),
];

/// The base the OpenAPI description gives these routes.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const SERVER: &str = "/rest/branch-permissions/2.0";

/// The routes under the context path `ctx`; [`super::router`] puts its layers over them.
pub(crate) fn routes(ctx: &str) -> Router<AppState> {
    // `latest` is rewritten to `2.0` before routing (`super::latest_alias`).
    let p = |s: &str| format!("{ctx}/rest/branch-permissions/2.0/projects/{{key}}{s}");
    Router::new()
        .route(&p("/restrictions"), get(project_list).post(project_create))
        .route(&p("/restrictions/"), get(project_list).post(project_create))
        .route(&p("/restrictions/{id}"), get(project_get).delete(project_delete))
        .route(&p("/repos/{slug}/restrictions"), get(repo_list).post(repo_create))
        .route(&p("/repos/{slug}/restrictions/"), get(repo_list).post(repo_create))
        .route(&p("/repos/{slug}/restrictions/{id}"), get(repo_get).delete(repo_delete))
}

/// What a path names: a project, or a repository (with its project).
enum Target {
    Project(ProjectInfo),
    Repo(Repo),
}

impl Target {
    fn scope(&self) -> RestrictionScope {
        match self {
            Target::Project(p) => RestrictionScope::Project(p.id),
            Target::Repo(r) => RestrictionScope::Repository(r.id),
        }
    }

    fn of(&self) -> ScopeOf<'_> {
        match self {
            Target::Project(p) => ScopeOf::Project(p),
            Target::Repo(r) => ScopeOf::Repository(r),
        }
    }
}

/// The project or repository of the path, if the caller administers it.
fn target(api: &Api, key: &str, slug: Option<&str>) -> Result<Target, ApiError> {
    match slug {
        None => Ok(Target::Project(api.project(key, Some(Permission::Admin), "manage this project's branch permissions")?)),
        Some(slug) => Ok(Target::Repo(api.repo(key, slug, Permission::Admin, "manage this repository's branch permissions")?.0)),
    }
}

fn no_restriction(id: &str) -> ApiError {
    ApiError::NotFound {
        exception: "com.atlassian.bitbucket.ref.restriction.NoSuchRestrictionException",
        message: format!("Restriction {id} does not exist here; list this project's or repository's restrictions for their ids."),
    }
}

/// A restriction as Bitbucket shows it (`RestRefRestriction`).
fn restriction_json(api: &Api, r: &Restriction) -> Result<Value, ApiError> {
    let mut users = Vec::new();
    for id in &r.users {
        if let Some(u) = api.store().user_by_id(*id)? {
            users.push(api.user_json(&u));
        }
    }
    Ok(json!({
        "id": r.id,
        "scope": {"type": r.scope.type_name(), "resourceId": r.scope.resource_id()},
        "type": r.kind.as_str(),
        "matcher": {
            "id": r.matcher.id(),
            "displayId": r.matcher.display_id(),
            "type": {"id": r.matcher.kind().as_str(), "name": r.matcher.kind().name()},
            "active": true,
        },
        "users": users,
        "groups": r.groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
        "accessKeys": r.access_keys.iter().map(|k| json!({"key": {"id": k}})).collect::<Vec<_>>(),
    }))
}

/// `GET …/restrictions?type=&matcherType=&matcherId=&start=&limit=` → page, by id.
fn list(api: &Api, target: &Target) -> Result<Response, ApiError> {
    let page = api.q.page()?;
    let kind = match api.q.get("type").filter(|t| !t.is_empty()) {
        Some(t) => Some(RestrictionType::parse(t).ok_or_else(|| bad_type("type", t))?),
        None => None,
    };
    let matcher_type = match api.q.get("matcherType").filter(|t| !t.is_empty()) {
        Some(t) => Some(MatcherType::parse(t).ok_or_else(|| bad_matcher_type("matcherType", t))?),
        None => None,
    };
    let matcher_id = api.q.get("matcherId").filter(|m| !m.is_empty());
    let mut values = Vec::new();
    for r in api.store().scope_restrictions(target.scope())? {
        let keep = kind.is_none_or(|k| k == r.kind)
            && matcher_type.is_none_or(|t| t == r.matcher.kind())
            && matcher_id.is_none_or(|m| m == r.matcher.id() || m == r.matcher.display_id());
        if keep {
            values.push(restriction_json(api, &r)?);
        }
    }
    Ok(ok(StatusCode::OK, paged(values, page)))
}

fn bad_type(context: &str, t: &str) -> ApiError {
    ApiError::invalid(context, format!("{t:?} is not a restriction type; use one of read-only, no-deletes, fast-forward-only or pull-request-only."))
}

fn bad_matcher_type(context: &str, t: &str) -> ApiError {
    ApiError::invalid(context, format!("{t:?} is not a matcher type; use one of BRANCH, PATTERN, MODEL_CATEGORY or MODEL_BRANCH."))
}

/// The strings of a list field that may also hold objects (`users` as slugs or user objects).
fn names(v: Option<&Value>, context: &str, keys: &[&str]) -> Result<Vec<String>, ApiError> {
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(Vec::new()) };
    let items = v.as_array().ok_or_else(|| ApiError::invalid(context, format!("{context} must be a list.")))?;
    items
        .iter()
        .map(|item| {
            let s = match item {
                Value::String(s) => Some(s.as_str()),
                Value::Object(o) => keys.iter().find_map(|k| o.get(*k).and_then(Value::as_str)),
                _ => None,
            };
            s.map(str::to_owned).ok_or_else(|| ApiError::invalid(context, format!("Each of {context} must be a name (a string), not {item}.")))
        })
        .collect()
}

/// Access key ids: numbers, numeric strings, or key objects (`{"key":{"id":5}}`, `{"id":5}`).
fn key_ids(v: Option<&Value>, context: &str) -> Result<Vec<i64>, ApiError> {
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(Vec::new()) };
    let items = v.as_array().ok_or_else(|| ApiError::invalid(context, format!("{context} must be a list of access key ids.")))?;
    items
        .iter()
        .map(|item| {
            let id = match item {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.parse().ok(),
                Value::Object(o) => o.get("key").and_then(|k| k.get("id")).or_else(|| o.get("id")).and_then(|i| i.as_i64()),
                _ => None,
            };
            id.filter(|i| *i > 0).ok_or_else(|| ApiError::invalid(context, format!("Each of {context} must be an access key's numeric id, not {item}.")))
        })
        .collect()
}

/// One restriction of a request body, checked in full (the users and groups it exempts exist).
fn parse_request(api: &Api, target: &Target, v: &Value) -> Result<NewRestriction, ApiError> {
    let o = v.as_object().ok_or_else(|| ApiError::Malformed(format!("A restriction must be a JSON object, not {v}.")))?;
    let t = o
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("type", "The restriction type is required: read-only, no-deletes, fast-forward-only or pull-request-only."))?;
    let kind = RestrictionType::parse(t).ok_or_else(|| bad_type("type", t))?;
    let m = o
        .get("matcher")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::invalid("matcher", "The matcher is required, as {\"id\": \"refs/heads/main\", \"type\": {\"id\": \"BRANCH\"}}."))?;
    let mt = match m.get("type") {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Object(t)) => t.get("id").and_then(Value::as_str).unwrap_or(""),
        _ => "",
    };
    if mt.is_empty() {
        return Err(ApiError::invalid("matcher.type", "The matcher type is required: BRANCH, PATTERN, MODEL_CATEGORY or MODEL_BRANCH."));
    }
    let mt = MatcherType::parse(mt).ok_or_else(|| bad_matcher_type("matcher.type", mt))?;
    let id = m.get("id").and_then(Value::as_str).unwrap_or("");
    let matcher = Matcher::new(mt, id).map_err(|e| ApiError::invalid("matcher.id", capitalised(&e.to_string())))?;
    let mut users = Vec::new();
    let mut slugs = names(o.get("users"), "users", &["slug", "name"])?;
    slugs.extend(names(o.get("userSlugs"), "userSlugs", &[])?);
    for slug in slugs {
        let missing = || ApiError::invalid("users", format!("User {slug} does not exist; name users by their slug (user name)."));
        let name = UserName::parse(&slug).map_err(|_| missing())?;
        users.push(api.store().user(&name)?.ok_or_else(missing)?.id);
    }
    let mut groups = Vec::new();
    let mut group_names = names(o.get("groups"), "groups", &["name"])?;
    group_names.extend(names(o.get("groupNames"), "groupNames", &[])?);
    for raw in group_names {
        let missing = || ApiError::invalid("groups", format!("Group {raw} does not exist; name groups by their name."));
        let name = GroupName::parse(&raw).map_err(|_| missing())?;
        groups.push(api.store().group(&name)?.ok_or_else(missing)?.id);
    }
    let mut access_keys = key_ids(o.get("accessKeys"), "accessKeys")?;
    access_keys.extend(key_ids(o.get("accessKeyIds"), "accessKeyIds")?);
    Ok(NewRestriction { scope: target.scope(), kind, matcher, users, groups, access_keys })
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect::<String>() + ".",
        None => String::new(),
    }
}

/// `POST …/restrictions` with one object → 200 with it; with a list (atlassian-python-api sends
/// it as `application/vnd.atl.bitbucket.bulk+json`) → 200 with the list. All are checked before
/// any is created, and created together or not at all.
fn create(api: &Api, target: &Target, body: Value) -> Result<Response, ApiError> {
    let (items, bulk) = match &body {
        Value::Array(items) => (items.iter().collect::<Vec<_>>(), true),
        one => (vec![one], false),
    };
    if items.is_empty() {
        return Err(ApiError::invalid("restrictions", "The list of restrictions to create is empty."));
    }
    let mut new = Vec::with_capacity(items.len());
    for item in items {
        let n = parse_request(api, target, item)?;
        if let Some(reason) = lockout(api.store(), target.of(), &n)? {
            return Err(ApiError::invalid("users", reason));
        }
        new.push(n);
    }
    let made = api.store().insert_restrictions(&new)?;
    let mut out = made.iter().map(|r| restriction_json(api, r)).collect::<Result<Vec<_>, _>>()?;
    for json in &out {
        api.audit(Action::RestrictionCreate, &target.of().audit_target(), json.clone());
    }
    Ok(if bulk { ok(StatusCode::OK, Value::Array(out)) } else { ok(StatusCode::OK, out.remove(0)) })
}

/// The restriction `raw` of this scope; another scope's is not found.
fn find(api: &Api, target: &Target, raw: &str) -> Result<Restriction, ApiError> {
    let id: i64 = raw.parse().map_err(|_| no_restriction(raw))?;
    api.store().restriction(id)?.filter(|r| r.scope == target.scope()).ok_or_else(|| no_restriction(raw))
}

pub(crate) async fn project_list(api: Api, Path(key): Path<String>) -> Result<Response, ApiError> {
    api.blocking(move |api| list(api, &target(api, &key, None)?)).await
}

pub(crate) async fn project_create(api: Api, Path(key): Path<String>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let t = target(api, &key, None)?;
        create(api, &t, parse_body(body)?)
    })
    .await
}

pub(crate) async fn project_get(api: Api, Path((key, id)): Path<(String, String)>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let t = target(api, &key, None)?;
        Ok(ok(StatusCode::OK, restriction_json(api, &find(api, &t, &id)?)?))
    })
    .await
}

pub(crate) async fn project_delete(api: Api, Path((key, id)): Path<(String, String)>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let t = target(api, &key, None)?;
        let r = find(api, &t, &id)?;
        let json = restriction_json(api, &r)?;
        api.store().delete_restriction(r.id)?;
        api.audit(Action::RestrictionDelete, &t.of().audit_target(), json);
        Ok(no_content())
    })
    .await
}

pub(crate) async fn repo_list(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    api.blocking(move |api| list(api, &target(api, &key, Some(&slug))?)).await
}

pub(crate) async fn repo_create(api: Api, Path((key, slug)): Path<(String, String)>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let t = target(api, &key, Some(&slug))?;
        create(api, &t, parse_body(body)?)
    })
    .await
}

pub(crate) async fn repo_get(api: Api, Path((key, slug, id)): Path<(String, String, String)>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let t = target(api, &key, Some(&slug))?;
        Ok(ok(StatusCode::OK, restriction_json(api, &find(api, &t, &id)?)?))
    })
    .await
}

pub(crate) async fn repo_delete(api: Api, Path((key, slug, id)): Path<(String, String, String)>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let t = target(api, &key, Some(&slug))?;
        let r = find(api, &t, &id)?;
        let json = restriction_json(api, &r)?;
        api.store().delete_restriction(r.id)?;
        api.audit(Action::RestrictionDelete, &t.of().audit_target(), json);
        Ok(no_content())
    })
    .await
}
