//! Project and repository permissions: which users and groups have what
//! (`…/permissions/users`, `…/permissions/groups`), granting and revoking, and a project's
//! default permission for every licensed user (`/projects/{key}/permissions/{perm}/all`).
//!
//! As Bitbucket, a change to a group's grant may not lower the caller's own permission (an
//! administrator only through that group): 403 for a `PUT`, 409 for a `DELETE`, as its
//! reference answers.

use axum::extract::Path;
use axum::response::Response;
use http::StatusCode;
use serde_json::json;
use trove_store::{Group, Owner, Permission, ProjectKey, User, UserName};

use super::{Api, ApiError, groups, level_name, matches_filter, no_content, ok, paged, parse_level};
use crate::access;
use crate::audit::{Action, target};

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
            api.audit(
                Action::PermissionGrant,
                &format!("{} {}", target::project(&info.owner), target::user(&u.name)),
                json!({"permission": level_name("PROJECT", perm)}),
            );
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
            api.audit(Action::PermissionRevoke, &format!("{} {}", target::project(&info.owner), target::user(&u.name)), json!({}));
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
            api.audit(Action::PermissionGrant, &format!("{} {}", target::repo(&repo), target::user(&u.name)), json!({"permission": level_name("REPO", perm)}));
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
            api.audit(Action::PermissionRevoke, &format!("{} {}", target::repo(&repo), target::user(&u.name)), json!({}));
        }
        Ok(no_content())
    })
    .await
}

fn group_grants_page(api: &Api, prefix: &str, grants: Vec<(Group, Permission)>) -> Result<Response, ApiError> {
    let filter = api.q.get("filter");
    let values = grants
        .iter()
        .filter(|(g, _)| matches_filter(filter, &[g.name.as_str()]))
        .map(|(g, p)| json!({"group": {"name": g.name.as_str()}, "permission": level_name(prefix, *p)}))
        .collect();
    Ok(ok(StatusCode::OK, paged(values, api.q.page()?)))
}

/// The groups whose names match `?filter=` and hold none of `granted`: the `…/groups/none` pages.
fn groups_without(api: &Api, granted: Vec<(Group, Permission)>) -> Result<Response, ApiError> {
    let filter = api.q.get("filter");
    let with: std::collections::HashSet<i64> = granted.iter().map(|(g, _)| g.id).collect();
    let values = api.store().groups()?.iter().filter(|g| !with.contains(&g.id) && matches_filter(filter, &[g.name.as_str()])).map(groups::group_json).collect();
    Ok(ok(StatusCode::OK, paged(values, api.q.page()?)))
}

/// `GET /projects/{key}/permissions/groups?filter=` → page of `{group: {name}, permission}`.
/// Needs project admin.
pub(crate) async fn project_groups(api: Api, Path(key): Path<String>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let info = api.project(&key, Some(Permission::Admin), "see this project's permissions")?;
        group_grants_page(api, "PROJECT", api.store().project_group_permissions(&info.as_project())?)
    })
    .await
}

/// `GET /projects/{key}/permissions/groups/none?filter=` → page of the groups without a grant on
/// the project.
pub(crate) async fn project_groups_none(api: Api, Path(key): Path<String>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let info = api.project(&key, Some(Permission::Admin), "see this project's permissions")?;
        groups_without(api, api.store().project_group_permissions(&info.as_project())?)
    })
    .await
}

/// `PUT /projects/{key}/permissions/groups?name=&permission=PROJECT_READ|WRITE|ADMIN` → 204;
/// `name` may repeat. 403 when demoting a group would lower the caller's own permission on the
/// project (Bitbucket's answer for this one).
pub(crate) async fn project_group_grant(api: Api, Path(key): Path<String>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let info = api.project(&key, Some(Permission::Admin), "change this project's permissions")?;
        let who = api.require_login()?;
        let k = project_key(&info.owner)?;
        let perm = parse_level("PROJECT", api.q.required("permission")?)?;
        let groups = groups::named_groups(api)?;
        for g in &groups {
            if access::lowers_own_project_permission(api.store(), who, &info, g.id, Some(perm))? {
                return Err(ApiError::Forbidden(format!(
                    "You cannot give group {} {}: it would lower your own permission on this project. Ask another administrator.",
                    g.name,
                    level_name("PROJECT", perm)
                )));
            }
        }
        for g in groups {
            api.store().grant_group_project(&g.name, k, perm)?;
            api.audit(
                Action::PermissionGrant,
                &format!("{} {}", target::project(&info.owner), target::group(&g.name)),
                json!({"permission": level_name("PROJECT", perm)}),
            );
        }
        Ok(no_content())
    })
    .await
}

/// `DELETE /projects/{key}/permissions/groups?name=` → 204; 409 when it would lower the caller's
/// own permission on the project.
pub(crate) async fn project_group_revoke(api: Api, Path(key): Path<String>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let info = api.project(&key, Some(Permission::Admin), "change this project's permissions")?;
        let who = api.require_login()?;
        project_key(&info.owner)?;
        let groups = groups::named_groups(api)?;
        for g in &groups {
            if access::lowers_own_project_permission(api.store(), who, &info, g.id, None)? {
                return Err(ApiError::lowers_own("revoke this group's permission on the project"));
            }
        }
        for g in groups {
            api.store().revoke_group_project(&g.name, &info.as_project())?;
            api.audit(Action::PermissionRevoke, &format!("{} {}", target::project(&info.owner), target::group(&g.name)), json!({}));
        }
        Ok(no_content())
    })
    .await
}

/// `GET …/repos/{slug}/permissions/groups?filter=`. Needs repository admin.
pub(crate) async fn repo_groups(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let (repo, _) = api.repo(&key, &slug, Permission::Admin, "see this repository's permissions")?;
        group_grants_page(api, "REPO", api.store().repo_group_permissions(&repo)?)
    })
    .await
}

/// `GET …/repos/{slug}/permissions/groups/none?filter=`.
pub(crate) async fn repo_groups_none(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let (repo, _) = api.repo(&key, &slug, Permission::Admin, "see this repository's permissions")?;
        groups_without(api, api.store().repo_group_permissions(&repo)?)
    })
    .await
}

/// `PUT …/repos/{slug}/permissions/groups?name=&permission=REPO_READ|WRITE|ADMIN` → 204; 403
/// when it would lower the caller's own permission on the repository.
pub(crate) async fn repo_group_grant(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let (repo, _) = api.repo(&key, &slug, Permission::Admin, "change this repository's permissions")?;
        let who = api.require_login()?;
        let perm = parse_level("REPO", api.q.required("permission")?)?;
        let groups = groups::named_groups(api)?;
        for g in &groups {
            if access::lowers_own_repo_permission(api.store(), who, &repo, g.id, Some(perm))? {
                return Err(ApiError::Forbidden(format!(
                    "You cannot give group {} {}: it would lower your own permission on this repository. Ask another administrator.",
                    g.name,
                    level_name("REPO", perm)
                )));
            }
        }
        for g in groups {
            api.store().grant_group_repo(&g.name, &repo.owner, &repo.slug, perm)?;
            api.audit(Action::PermissionGrant, &format!("{} {}", target::repo(&repo), target::group(&g.name)), json!({"permission": level_name("REPO", perm)}));
        }
        Ok(no_content())
    })
    .await
}

/// `DELETE …/repos/{slug}/permissions/groups?name=` → 204; 409 when it would lower the caller's
/// own permission on the repository.
pub(crate) async fn repo_group_revoke(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let (repo, _) = api.repo(&key, &slug, Permission::Admin, "change this repository's permissions")?;
        let who = api.require_login()?;
        let groups = groups::named_groups(api)?;
        for g in &groups {
            if access::lowers_own_repo_permission(api.store(), who, &repo, g.id, None)? {
                return Err(ApiError::lowers_own("revoke this group's permission on the repository"));
            }
        }
        for g in groups {
            api.store().revoke_group_repo(&g.name, &repo)?;
            api.audit(Action::PermissionRevoke, &format!("{} {}", target::repo(&repo), target::group(&g.name)), json!({}));
        }
        Ok(no_content())
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
    if new != current {
        let action = if allow { Action::PermissionGrant } else { Action::PermissionRevoke };
        let name = |p: Option<Permission>| p.map(|p| level_name("PROJECT", p));
        api.audit(action, &format!("{} everyone", target::project(&info.owner)), json!({"permission": name(new), "previous": name(current)}));
    }
    Ok(no_content())
}
