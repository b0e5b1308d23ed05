//! Project and repository permissions: who has what (`…/permissions/users`), granting and
//! revoking, and a project's default permission for every licensed user
//! (`/projects/{key}/permissions/{perm}/all`). Trove has no groups: the group endpoints list
//! nothing and refuse changes.

use axum::extract::Path;
use axum::response::Response;
use http::StatusCode;
use serde_json::json;
use trove_store::{Owner, Permission, ProjectKey, User, UserName};

use super::{Api, ApiError, level_name, matches_filter, no_content, ok, paged, parse_level};

/// The users named by `?name=` (one or more), all checked before anything changes.
fn named_users(api: &Api) -> Result<Vec<User>, ApiError> {
    let names = api.q.all("name");
    if names.is_empty() {
        return Err(ApiError::invalid("name", "The query parameter name is required."));
    }
    let mut out = Vec::new();
    for raw in names {
        let name = UserName::parse(raw).map_err(|_| ApiError::no_user(raw))?;
        out.push(api.store().user(&name)?.ok_or_else(|| ApiError::no_user(raw))?);
    }
    Ok(out)
}

fn grants_page(api: &Api, prefix: &str, grants: Vec<(UserName, Permission)>) -> Result<Response, ApiError> {
    let page = api.q.page()?;
    let filter = api.q.get("filter");
    let mut values = Vec::new();
    for (name, perm) in grants {
        let Some(u) = api.store().user(&name)? else { continue };
        if matches_filter(filter, &[u.name.as_str(), &u.display_name]) {
            values.push(json!({"user": api.user_json(&u), "permission": level_name(prefix, perm)}));
        }
    }
    Ok(ok(StatusCode::OK, paged(values, page)))
}

fn project_key(owner: &Owner) -> Result<&ProjectKey, ApiError> {
    match owner {
        Owner::Project(k) => Ok(k),
        Owner::User(_) => Err(ApiError::invalid("projectKey", "Personal projects have no project permissions; grant them on the repositories.")),
    }
}

/// `GET /projects/{key}/permissions/users?filter=`. Needs project admin.
pub(crate) async fn project_users(api: Api, Path(key): Path<String>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let info = api.project(&key, Some(Permission::Admin), "see this project's permissions")?;
        grants_page(api, "PROJECT", api.store().project_permissions(&info.as_project())?)
    })
    .await
}

/// `PUT /projects/{key}/permissions/users?name=&permission=PROJECT_READ|WRITE|ADMIN` → 204.
pub(crate) async fn project_grant(api: Api, Path(key): Path<String>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let info = api.project(&key, Some(Permission::Admin), "change this project's permissions")?;
        let k = project_key(&info.owner)?;
        let perm = parse_level("PROJECT", api.q.required("permission")?)?;
        for u in named_users(api)? {
            api.store().grant_project(&u.name, k, perm)?;
        }
        Ok(no_content())
    })
    .await
}

/// `DELETE /projects/{key}/permissions/users?name=` → 204.
pub(crate) async fn project_revoke(api: Api, Path(key): Path<String>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let info = api.project(&key, Some(Permission::Admin), "change this project's permissions")?;
        project_key(&info.owner)?;
        for u in named_users(api)? {
            api.store().revoke_project(&u.name, &info.as_project())?;
        }
        Ok(no_content())
    })
    .await
}

/// `GET …/repos/{slug}/permissions/users?filter=`. Needs repository admin.
pub(crate) async fn repo_users(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let (repo, _) = api.repo(&key, &slug, Permission::Admin, "see this repository's permissions")?;
        grants_page(api, "REPO", api.store().repo_permissions(&repo)?)
    })
    .await
}

/// `PUT …/repos/{slug}/permissions/users?name=&permission=REPO_READ|WRITE|ADMIN` → 204.
pub(crate) async fn repo_grant(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let (repo, _) = api.repo(&key, &slug, Permission::Admin, "change this repository's permissions")?;
        let perm = parse_level("REPO", api.q.required("permission")?)?;
        for u in named_users(api)? {
            api.store().grant_repo(&u.name, &repo.owner, &repo.slug, perm)?;
        }
        Ok(no_content())
    })
    .await
}

/// `DELETE …/repos/{slug}/permissions/users?name=` → 204.
pub(crate) async fn repo_revoke(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let (repo, _) = api.repo(&key, &slug, Permission::Admin, "change this repository's permissions")?;
        for u in named_users(api)? {
            api.store().revoke_repo(&u.name, &repo)?;
        }
        Ok(no_content())
    })
    .await
}

/// `GET …/permissions/groups`: Trove has no groups, so nobody holds a permission through one.
pub(crate) async fn no_groups(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        api.require_login()?;
        Ok(ok(StatusCode::OK, paged(Vec::new(), api.q.page()?)))
    })
    .await
}

/// `PUT|DELETE …/permissions/groups?name=`: no group exists.
pub(crate) async fn group_change(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        api.require_login()?;
        let name = api.q.required("name")?;
        Err(ApiError::no_group(name))
    })
    .await
}

/// `GET /projects/{key}/permissions/{perm}/all` → `{"permitted": bool}`.
pub(crate) async fn default_get(api: Api, Path((key, perm)): Path<(String, String)>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let info = api.project(&key, Some(Permission::Admin), "see this project's permissions")?;
        let perm = parse_level("PROJECT", &perm)?;
        let permitted = info.default_permission.is_some_and(|d| d >= perm);
        Ok(ok(StatusCode::OK, json!({"permitted": permitted})))
    })
    .await
}

/// `DELETE /projects/{key}/permissions/{perm}/all` → 204: as `allow=false` (stashy's `revoke`).
pub(crate) async fn default_revoke(api: Api, Path((key, perm)): Path<(String, String)>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let info = api.project(&key, Some(Permission::Admin), "change this project's permissions")?;
        change_default(api, &info, &perm, false)
    })
    .await
}

/// `POST /projects/{key}/permissions/{perm}/all?allow=true|false` → 204. Allowing a level gives
/// it to every licensed user; disallowing it leaves the level below (so revoking PROJECT_WRITE
/// keeps PROJECT_READ, as Bitbucket's separate flags would).
pub(crate) async fn default_set(api: Api, Path((key, perm)): Path<(String, String)>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let info = api.project(&key, Some(Permission::Admin), "change this project's permissions")?;
        let allow = api.q.bool("allow")?.ok_or_else(|| ApiError::invalid("allow", "The query parameter allow (true or false) is required."))?;
        change_default(api, &info, &perm, allow)
    })
    .await
}

fn change_default(api: &Api, info: &trove_store::ProjectInfo, perm: &str, allow: bool) -> Result<Response, ApiError> {
    let k = project_key(&info.owner)?;
    let perm = parse_level("PROJECT", perm)?;
    let current = info.default_permission;
    let new = if allow {
        Some(current.map_or(perm, |c| c.max(perm)))
    } else if current.is_some_and(|c| c >= perm) {
        match perm {
            Permission::Read => None,
            Permission::Write => Some(Permission::Read),
            Permission::Admin => Some(Permission::Write),
        }
    } else {
        current
    };
    api.store().set_project_default_permission(k, new)?;
    Ok(no_content())
}
