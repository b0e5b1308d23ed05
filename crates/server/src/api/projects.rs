//! Projects: list, get, create, update, delete (`/projects`, `/projects/{key}`).

use axum::extract::Path;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use trove_store::{GlobalPermission, Owner, Permission, ProjectKey, ProjectUpdate};

use super::{Api, ApiError, matches_filter, no_content, ok, paged, parse_body, parse_optional_body};
use crate::audit::{Action, target};

/// Longest project name or description we store.
const MAX_TEXT: usize = 4096;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProjectBody {
    key: Option<String>,
    name: Option<String>,
    /// `Some(None)` is an explicit `null`, which clears the description.
    #[serde(default, deserialize_with = "explicit_null")]
    description: Option<Option<String>>,
    public: Option<bool>,
}

/// Tells a field that is absent (`None`) from one that is `null` (`Some(None)`).
fn explicit_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn check_text(field: &str, value: &str) -> Result<(), ApiError> {
    if value.len() > MAX_TEXT {
        return Err(ApiError::invalid(field, format!("The {field} is longer than {MAX_TEXT} bytes.")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r') {
        return Err(ApiError::invalid(field, format!("The {field} has control characters.")));
    }
    Ok(())
}

fn parse_key(raw: &str) -> Result<ProjectKey, ApiError> {
    ProjectKey::parse(raw).map_err(|e| ApiError::invalid("key", format!("{e}.")))
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::invalid("name", "The project name must not be empty."));
    }
    check_text("name", name)
}

/// `GET /projects?name=&permission=`: the projects the caller may see (personal projects are
/// listed under their users).
pub(crate) async fn list(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let page = api.q.page()?;
        let name = api.q.get("name");
        let need = api.q.get("permission").map(|p| super::parse_level("PROJECT", p)).transpose()?;
        let mut values = Vec::new();
        for p in api.store().visible_projects(api.user(), crate::access::sees_everything(api.who.as_ref()))? {
            if !matches!(p.owner, Owner::Project(_)) || !matches_filter(name, &[&p.name]) {
                continue;
            }
            let Some(info) = api.store().project_info(&p.owner)? else { continue };
            if let Some(need) = need
                && api.store().project_permission(api.who.as_ref(), &info)?.is_none_or(|have| have < need)
            {
                continue;
            }
            values.push(api.project_json(&info));
        }
        Ok(ok(StatusCode::OK, paged(values, page)))
    })
    .await
}

/// `GET /projects/{key}`.
pub(crate) async fn get(api: Api, Path(key): Path<String>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let info = api.project(&key, None, "see this project")?;
        Ok(ok(StatusCode::OK, api.project_json(&info)))
    })
    .await
}

/// `POST /projects` `{key, name, description, public}` → 201. Needs PROJECT_CREATE.
pub(crate) async fn create(api: Api, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        api.require_login()?;
        let may = matches!(api.global(), Some(GlobalPermission::ProjectCreate | GlobalPermission::Admin | GlobalPermission::SysAdmin))
            && api.cap_allows(Permission::Admin);
        if !may {
            return Err(ApiError::forbidden("create projects: the PROJECT_CREATE global permission is required"));
        }
        let b: ProjectBody = parse_body(body)?;
        let key = parse_key(b.key.as_deref().ok_or_else(|| ApiError::invalid("key", "The project key is required."))?)?;
        let name = b.name.ok_or_else(|| ApiError::invalid("name", "The project name is required."))?;
        check_name(&name)?;
        let description = b.description.flatten();
        if let Some(d) = &description {
            check_text("description", d)?;
        }
        let info = api.store().create_project_described(&key, name.trim(), description.as_deref(), b.public.unwrap_or(false))?;
        api.audit(Action::ProjectCreate, &target::project(&info.owner), serde_json::json!({"name": info.name, "public": info.public}));
        // The creator administers what they created, as in Bitbucket.
        if let Some(a) = &api.who
            && !api.is_admin()
        {
            api.store().grant_project(&a.user.name, &key, Permission::Admin)?;
            let grant = format!("{} {}", target::project(&info.owner), target::user(&a.user.name));
            api.audit(Action::PermissionGrant, &grant, serde_json::json!({"permission": "PROJECT_ADMIN", "why": "creator"}));
        }
        Ok(ok(StatusCode::CREATED, api.project_json(&info)))
    })
    .await
}

/// `PUT /projects/{key}` `{key?, name?, description?, public?}`. Needs project admin.
pub(crate) async fn update(api: Api, Path(key): Path<String>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let info = api.project(&key, Some(Permission::Admin), "change this project")?;
        let Owner::Project(current) = &info.owner else {
            return Err(ApiError::invalid("key", "Personal projects cannot be changed; they belong to their user."));
        };
        let b: ProjectBody = parse_optional_body(body)?;
        let new_key = b.key.as_deref().map(parse_key).transpose()?;
        if let Some(n) = &b.name {
            check_name(n)?;
        }
        if let Some(Some(d)) = &b.description {
            check_text("description", d)?;
        }
        let update = ProjectUpdate { key: new_key, name: b.name.map(|n| n.trim().to_owned()), description: b.description, public: b.public };
        let before = info.clone();
        let events = crate::webhooks::project_modified(api, &before, &update)?;
        let info = api.store().update_project_with_events(current, &update, &events)?;
        if !events.is_empty() {
            api.state.webhooks.wake();
        }
        let mut changed = serde_json::json!({});
        if before.owner != info.owner {
            changed["key"] = serde_json::json!({"from": before.owner.to_string(), "to": info.owner.to_string()});
        }
        if before.name != info.name {
            changed["name"] = serde_json::json!({"from": before.name, "to": info.name});
        }
        if before.description != info.description {
            changed["description"] = serde_json::json!({"from": before.description, "to": info.description});
        }
        if before.public != info.public {
            changed["public"] = serde_json::json!(info.public);
        }
        api.audit(Action::ProjectUpdate, &target::project(&before.owner), changed);
        Ok(ok(StatusCode::OK, api.project_json(&info)))
    })
    .await
}

/// `DELETE /projects/{key}` → 204. As in Bitbucket, a project that still has repositories is
/// not deleted (409): delete them first.
pub(crate) async fn delete(api: Api, Path(key): Path<String>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let info = api.project(&key, Some(Permission::Admin), "delete this project")?;
        let Owner::Project(k) = &info.owner else {
            return Err(ApiError::invalid("key", "Personal projects cannot be deleted; delete the user instead."));
        };
        let repos = api.store().project_repos(&info.as_project())?;
        if !repos.is_empty() {
            return Err(ApiError::Conflict {
                exception: "com.atlassian.bitbucket.IntegrityException",
                message: format!("Project {k} cannot be deleted because it has {} repositories; delete them first.", repos.len()),
            });
        }
        api.store().delete_project(k)?;
        api.audit(Action::ProjectDelete, &target::project(&info.owner), serde_json::json!({"name": info.name}));
        Ok(no_content())
    })
    .await
}
