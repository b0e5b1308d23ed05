//! Groups (`/admin/groups`, `/groups`), their members (`/admin/groups/add-users`,
//! `/admin/users/add-groups`, the older one-at-a-time `add-user`/`remove-user` and
//! `add-group`/`remove-group`, and the `more-members`/`more-non-members` pickers) and their global
//! permissions (`/admin/permissions/groups`).
//!
//! Changes need a global ADMIN; reading groups and their members needs a login, as in Bitbucket.
//! What a change may not do (touch a group above the caller, lower the caller's own permission)
//! is decided by the access service ([`crate::access::group_global_change`]).

use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};
use trove_store::{GlobalPermission, Group, GroupName, User, UserName};

use super::{Api, ApiError, matches_filter, no_content, ok, paged, parse_body};
use crate::access::{self, GroupRefusal};
use crate::audit::{Action, target};

/// A group as Bitbucket shows it (`RestDetailedGroup`). Every group may be deleted: Trove's
/// groups all live in its own directory.
pub(crate) fn group_json(g: &Group) -> Value {
    json!({"name": g.name.as_str(), "deletable": true})
}

/// The group a request names; a name no group could have is one that does not exist.
pub(crate) fn find_group(api: &Api, raw: &str) -> Result<Group, ApiError> {
    let name = GroupName::parse(raw).map_err(|_| ApiError::no_group(raw))?;
    api.store().group(&name)?.ok_or_else(|| ApiError::no_group(raw))
}

fn find_user(api: &Api, raw: &str) -> Result<User, ApiError> {
    let name = UserName::parse(raw).map_err(|_| ApiError::no_user(raw))?;
    api.store().user(&name)?.ok_or_else(|| ApiError::no_user(raw))
}

/// Renders a refused group change: 403 for a group or level above the caller, `lowers` (409 in
/// most places) for a change that would lower the caller's own permission.
pub(crate) fn refused(e: GroupRefusal, what: &str, lowers: fn(&str) -> ApiError) -> ApiError {
    match e {
        GroupRefusal::AboveCaller(thing) => ApiError::Forbidden(format!("You are not permitted to {what}: {thing} is above your own global permission.")),
        GroupRefusal::LowersCaller => lowers(what),
        GroupRefusal::Store(e) => e.into(),
    }
}

/// The groups whose names contain `?filter=` (ignoring case), by name.
fn filtered_groups(api: &Api) -> Result<Vec<Group>, ApiError> {
    let filter = api.q.get("filter");
    Ok(api.store().groups()?.into_iter().filter(|g| matches_filter(filter, &[g.name.as_str()])).collect())
}

fn user_matches(api: &Api, u: &User) -> bool {
    matches_filter(api.q.get("filter"), &[u.name.as_str(), &u.display_name, u.email.as_deref().unwrap_or("")])
}

/// `GET /admin/groups?filter=` → page of `{name, deletable}`.
pub(crate) async fn list(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        api.require_login()?;
        let values = filtered_groups(api)?.iter().map(group_json).collect();
        Ok(ok(StatusCode::OK, paged(values, api.q.page()?)))
    })
    .await
}

/// `GET /groups?filter=` → page of group names, plain strings.
pub(crate) async fn names(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        api.require_login()?;
        let values = filtered_groups(api)?.iter().map(|g| json!(g.name.as_str())).collect();
        Ok(ok(StatusCode::OK, paged(values, api.q.page()?)))
    })
    .await
}

/// `POST /admin/groups?name=` (no body) → 200 with the group; 409 when the name is taken,
/// ignoring case.
pub(crate) async fn create(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        api.require_admin("create groups")?;
        let name = GroupName::parse(api.q.required("name")?).map_err(|e| ApiError::invalid("name", format!("{e}.")))?;
        let g = api.store().insert_group(&name)?;
        api.audit(Action::GroupCreate, &target::group(&g.name), json!({}));
        Ok(ok(StatusCode::OK, group_json(&g)))
    })
    .await
}

/// `DELETE /admin/groups?name=` → 200 with the deleted group, its memberships and grants gone.
/// 403 for a group above the caller, 409 when the caller would lose their own global
/// permission with it.
pub(crate) async fn delete(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let who = api.require_admin("delete groups")?;
        let g = find_group(api, api.q.required("name")?)?;
        access::group_global_change(api.store(), who, &g, None).map_err(|e| refused(e, "delete this group", ApiError::lowers_own))?;
        api.store().delete_group(&g.name)?;
        api.audit(Action::GroupDelete, &target::group(&g.name), json!({"global": g.global.map(|p| p.as_str())}));
        Ok(ok(StatusCode::OK, group_json(&g)))
    })
    .await
}

/// Adds (or removes) each `(group, user)` pair: every name is checked, and every change allowed,
/// before anything changes. 200 with no body, as Bitbucket answers.
fn change_members(api: &Api, pairs: Vec<(String, String)>, adding: bool) -> Result<Response, ApiError> {
    let who = api.require_admin("change group memberships")?;
    let mut todo = Vec::new();
    for (group, user) in pairs {
        let (g, u) = (find_group(api, &group)?, find_user(api, &user)?);
        let what = if adding { "add users to this group" } else { "remove this user from the group" };
        access::group_member_change(api.store(), who, &g, &u, adding).map_err(|e| refused(e, what, ApiError::lowers_own))?;
        todo.push((g, u));
    }
    for (g, u) in todo {
        if adding {
            api.store().add_group_member(&g.name, &u.name)?;
        } else {
            api.store().remove_group_member(&g.name, &u.name)?;
        }
        let action = if adding { Action::GroupMemberAdd } else { Action::GroupMemberRemove };
        api.audit(action, &format!("{} {}", target::group(&g.name), target::user(&u.name)), json!({}));
    }
    Ok(StatusCode::OK.into_response())
}

fn required(v: Option<String>, field: &str) -> Result<String, ApiError> {
    v.filter(|s| !s.is_empty()).ok_or_else(|| ApiError::invalid(field, format!("The field {field} is required.")))
}

#[derive(serde::Deserialize)]
struct GroupAndUsers {
    group: Option<String>,
    #[serde(default)]
    users: Vec<String>,
}

#[derive(serde::Deserialize)]
struct UserAndGroups {
    user: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
}

/// The older pickers' body: `context` is the group and `itemName` the user for `/admin/groups/…`,
/// the other way round for `/admin/users/…`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Picker {
    context: Option<String>,
    item_name: Option<String>,
}

/// `POST /admin/groups/add-users` `{group, users[]}` → 200.
pub(crate) async fn add_users(api: Api, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        api.require_admin("change group memberships")?;
        let b: GroupAndUsers = parse_body(body)?;
        let group = required(b.group, "group")?;
        change_members(api, b.users.into_iter().map(|u| (group.clone(), u)).collect(), true)
    })
    .await
}

/// `POST /admin/users/add-groups` `{user, groups[]}` → 200.
pub(crate) async fn add_groups(api: Api, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        api.require_admin("change group memberships")?;
        let b: UserAndGroups = parse_body(body)?;
        let user = required(b.user, "user")?;
        change_members(api, b.groups.into_iter().map(|g| (g, user.clone())).collect(), true)
    })
    .await
}

/// The pickers: `group_first` when `context` names the group (`/admin/groups/add-user` and
/// `remove-user`), not when it names the user (`/admin/users/add-group` and `remove-group`).
fn picker(api: &Api, body: Result<Bytes, BytesRejection>, group_first: bool, adding: bool) -> Result<Response, ApiError> {
    api.require_admin("change group memberships")?;
    let b: Picker = parse_body(body)?;
    let (context, item) = (required(b.context, "context")?, required(b.item_name, "itemName")?);
    let pair = if group_first { (context, item) } else { (item, context) };
    change_members(api, vec![pair], adding)
}

/// `POST /admin/groups/add-user` `{context: group, itemName: user}` → 200 (deprecated in
/// Bitbucket, still what stashy sends).
pub(crate) async fn add_user(api: Api, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    api.blocking(move |api| picker(api, body, true, true)).await
}

/// `POST /admin/groups/remove-user` `{context: group, itemName: user}` → 200.
pub(crate) async fn remove_user(api: Api, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    api.blocking(move |api| picker(api, body, true, false)).await
}

/// `POST /admin/users/add-group` `{context: user, itemName: group}` → 200.
pub(crate) async fn user_add_group(api: Api, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    api.blocking(move |api| picker(api, body, false, true)).await
}

/// `POST /admin/users/remove-group` `{context: user, itemName: group}` → 200.
pub(crate) async fn user_remove_group(api: Api, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    api.blocking(move |api| picker(api, body, false, false)).await
}

/// `GET /admin/groups/more-members?context=GROUP&filter=` → page of the group's members, and
/// `more-non-members` (`members: false`) of every other user.
fn group_users(api: &Api, members: bool) -> Result<Response, ApiError> {
    api.require_login()?;
    let g = find_group(api, api.q.required("context")?)?;
    let page = api.q.page()?;
    let users = if members {
        api.store().group_members(&g)?
    } else {
        let inside: std::collections::HashSet<i64> = api.store().group_members(&g)?.iter().map(|u| u.id).collect();
        api.store().users()?.into_iter().filter(|u| !inside.contains(&u.id)).collect()
    };
    let values = users.iter().filter(|u| user_matches(api, u)).map(|u| api.user_json(u)).collect();
    Ok(ok(StatusCode::OK, paged(values, page)))
}

pub(crate) async fn more_members(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| group_users(api, true)).await
}

pub(crate) async fn more_non_members(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| group_users(api, false)).await
}

/// `GET /admin/users/more-members?context=USER&filter=` → page of the groups the user is in, and
/// `more-non-members` (`members: false`) of the others.
fn user_groups(api: &Api, members: bool) -> Result<Response, ApiError> {
    api.require_login()?;
    let u = find_user(api, api.q.required("context")?)?;
    let page = api.q.page()?;
    let inside: std::collections::HashSet<i64> = api.store().user_groups(u.id)?.iter().map(|g| g.id).collect();
    let values = filtered_groups(api)?.iter().filter(|g| inside.contains(&g.id) == members).map(group_json).collect();
    Ok(ok(StatusCode::OK, paged(values, page)))
}

pub(crate) async fn user_more_members(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| user_groups(api, true)).await
}

pub(crate) async fn user_more_non_members(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| user_groups(api, false)).await
}

/// `GET /admin/permissions/groups?filter=` → page of `{group: {name}, permission}` for the groups
/// holding a global permission.
pub(crate) async fn global_list(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        api.require_admin("see global permissions")?;
        let values =
            filtered_groups(api)?.iter().filter_map(|g| g.global.map(|p| json!({"group": {"name": g.name.as_str()}, "permission": p.as_str()}))).collect();
        Ok(ok(StatusCode::OK, paged(values, api.q.page()?)))
    })
    .await
}

/// `GET /admin/permissions/groups/none?filter=` → page of the groups without a global permission.
pub(crate) async fn global_none(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        api.require_admin("see global permissions")?;
        let values = filtered_groups(api)?.iter().filter(|g| g.global.is_none()).map(group_json).collect();
        Ok(ok(StatusCode::OK, paged(values, api.q.page()?)))
    })
    .await
}

/// The groups named by `?name=` (one or more), all found before anything changes.
pub(crate) fn named_groups(api: &Api) -> Result<Vec<Group>, ApiError> {
    let names = api.q.all("name");
    if names.is_empty() {
        return Err(ApiError::invalid("name", "The query parameter name is required."));
    }
    names.into_iter().map(|raw| find_group(api, raw)).collect()
}

/// `PUT /admin/permissions/groups?name=&permission=LICENSED_USER|PROJECT_CREATE|ADMIN|SYS_ADMIN`
/// → 204; `name` may repeat. 403 for a group or a level above the caller's own, 409 when the
/// caller would lower their own global permission (demoting a group they are in).
pub(crate) async fn global_grant(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let who = api.require_admin("change global permissions")?;
        let perm = super::users::parse_global(api.q.required("permission")?)?;
        let groups = named_groups(api)?;
        for g in &groups {
            access::group_global_change(api.store(), who, g, Some(perm))
                .map_err(|e| refused(e, "change this group's global permission", ApiError::lowers_own))?;
        }
        for g in groups {
            api.store().set_group_global_permission(&g.name, Some(perm))?;
            let details = json!({"permission": perm.as_str(), "previous": g.global.map(|p| p.as_str())});
            api.audit(Action::PermissionGrant, &format!("global {}", target::group(&g.name)), details);
        }
        Ok(no_content())
    })
    .await
}

/// `DELETE /admin/permissions/groups?name=` → 204: the group's members no longer hold a global
/// permission through it.
pub(crate) async fn global_revoke(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let who = api.require_admin("change global permissions")?;
        let groups = named_groups(api)?;
        for g in &groups {
            access::group_global_change(api.store(), who, g, None).map_err(|e| refused(e, "revoke this group's global permission", ApiError::lowers_own))?;
        }
        for g in groups {
            api.store().set_group_global_permission(&g.name, None::<GlobalPermission>)?;
            api.audit(Action::PermissionRevoke, &format!("global {}", target::group(&g.name)), json!({"previous": g.global.map(|p| p.as_str())}));
        }
        Ok(no_content())
    })
    .await
}
