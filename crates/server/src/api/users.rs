//! Users (`/users`), their administration (`/admin/users`) and global permissions
//! (`/admin/permissions/users`).

use axum::extract::Path;
use axum::response::Response;
use http::StatusCode;
use serde_json::json;
use trove_store::{GlobalPermission, Password, User, UserName};

use super::{Api, ApiError, matches_filter, no_content, ok, paged};
use crate::audit::{Action, target};

fn parse_user(context: &str, raw: &str) -> Result<UserName, ApiError> {
    UserName::parse(raw).map_err(|e| ApiError::invalid(context, format!("{e}.")))
}

fn filtered(api: &Api) -> Result<Vec<User>, ApiError> {
    let filter = api.q.get("filter");
    Ok(api.store().users()?.into_iter().filter(|u| matches_filter(filter, &[u.name.as_str(), &u.display_name, u.email.as_deref().unwrap_or("")])).collect())
}

/// `GET /users?filter=`: for logged-in callers, as in Bitbucket.
pub(crate) async fn list(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        api.require_login()?;
        let page = api.q.page()?;
        let values = filtered(api)?.iter().map(|u| api.user_json(u)).collect();
        Ok(ok(StatusCode::OK, paged(values, page)))
    })
    .await
}

/// `GET /users/{slug}`.
pub(crate) async fn get(api: Api, Path(slug): Path<String>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        api.require_login()?;
        let name = UserName::parse(&slug).map_err(|_| ApiError::no_user(&slug))?;
        let u = api.store().user(&name)?.ok_or_else(|| ApiError::no_user(&slug))?;
        Ok(ok(StatusCode::OK, api.user_json(&u)))
    })
    .await
}

/// `PUT /users` `{displayName?, email?}` (or `emailAddress`) → 200 with the caller's user: the
/// signed-in caller changes their own details, as Bitbucket's "update the current user"; a
/// `name` other than the caller's is refused. An empty `email` removes the address.
pub(crate) async fn update_self(api: Api, body: Result<bytes::Bytes, axum::extract::rejection::BytesRejection>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let me = api.require_login()?.user.clone();
        let b: UserDetails = super::parse_body(body)?;
        if b.name.as_deref().is_some_and(|n| !n.eq_ignore_ascii_case(me.name.as_str())) {
            return Err(ApiError::invalid("name", "Only your own details can be changed here; administrators use PUT /admin/users."));
        }
        let display = b.display_name.as_deref().unwrap_or(&me.display_name);
        let email = b.email_address.as_deref().or(me.email.as_deref()).unwrap_or("");
        let (display, email) = crate::web::check_details(display, email).map_err(|msg| {
            let field = if msg.contains("display name") { "displayName" } else { "email" };
            ApiError::invalid(field, msg)
        })?;
        api.store().set_user_details(&me.name, Some(&display), Some(&email))?;
        let u = api.store().user(&me.name)?.ok_or_else(|| ApiError::no_user(me.name.as_str()))?;
        api.audit(Action::UserUpdate, &target::user(&me.name), json!({"displayName": u.display_name, "emailAddress": u.email, "own": true}));
        Ok(ok(StatusCode::OK, api.user_json(&u)))
    })
    .await
}

/// `GET /admin/users?filter=`: the users with their administrative details.
pub(crate) async fn admin_list(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        api.require_admin("administer users")?;
        let page = api.q.page()?;
        let locked: std::collections::HashSet<String> = api.store().login_locks(&api.state.limiter.policy)?.into_iter().map(|l| l.user.to_string()).collect();
        let values = filtered(api)?
            .iter()
            .map(|u| {
                let mut v = api.user_json(u);
                // Trove's addition: password logins locked after failed logins (cleared by
                // `DELETE /admin/users/captcha?name=`).
                v["locked"] = json!(locked.contains(u.name.as_str()));
                v["deletable"] = json!(true);
                v["mutableDetails"] = json!(true);
                v["mutableGroups"] = json!(true);
                v["directoryName"] = json!("Trove Internal Directory");
                v
            })
            .collect();
        Ok(ok(StatusCode::OK, paged(values, page)))
    })
    .await
}

/// `POST /admin/users?name=&password=&displayName=&emailAddress=&addToDefaultGroup=&notify=` →
/// 204. The new user is a licensed user (may log in), as Bitbucket's default group makes them.
pub(crate) async fn admin_create(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        api.require_admin("create users")?;
        let name = parse_user("name", api.q.required("name")?)?;
        let display = api.q.get("displayName").filter(|d| !d.trim().is_empty()).unwrap_or(name.as_str()).trim().to_owned();
        let email = api.q.required("emailAddress").ok().map(str::to_owned);
        if let Some(e) = &email
            && (!e.contains('@') || e.chars().any(|c| c.is_control() || c.is_whitespace()))
        {
            return Err(ApiError::invalid("emailAddress", format!("{e:?} is not an e-mail address.")));
        }
        if display.chars().any(char::is_control) || display.len() > 255 {
            return Err(ApiError::invalid("displayName", "The display name must be at most 255 characters, without control characters."));
        }
        if api.q.bool("notify")? == Some(true) {
            return Err(ApiError::invalid("notify", "Trove sends no e-mail; give a password and leave notify unset."));
        }
        api.q.bool("addToDefaultGroup")?;
        let password = Password::new(api.q.required("password")?).map_err(|e| ApiError::invalid("password", format!("{e}.")))?;
        // argon2 is deliberately slow: this whole handler runs on the blocking pool.
        api.store().create_user(&name, &password, GlobalPermission::LicensedUser)?;
        api.store().set_user_details(&name, Some(&display), email.as_deref())?;
        api.audit(Action::UserCreate, &target::user(&name), json!({"displayName": display, "emailAddress": email, "global": "LICENSED_USER"}));
        Ok(no_content())
    })
    .await
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserDetails {
    name: Option<String>,
    display_name: Option<String>,
    /// Bitbucket's own body says `email`; stashy sends `emailAddress`.
    #[serde(alias = "email")]
    email_address: Option<String>,
}

/// `PUT /admin/users` `{name, displayName?, email?}` (or `emailAddress`) → 200 with the user.
pub(crate) async fn admin_update(api: Api, body: Result<bytes::Bytes, axum::extract::rejection::BytesRejection>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        api.require_admin("change users")?;
        let b: UserDetails = super::parse_body(body)?;
        let raw = b.name.ok_or_else(|| ApiError::invalid("name", "The user name is required."))?;
        let name = UserName::parse(&raw).map_err(|_| ApiError::no_user(&raw))?;
        if let Some(d) = &b.display_name
            && (d.trim().is_empty() || d.chars().any(char::is_control) || d.len() > 255)
        {
            return Err(ApiError::invalid("displayName", "The display name must be 1 to 255 characters, without control characters."));
        }
        if let Some(e) = &b.email_address
            && (!e.contains('@') || e.chars().any(|c| c.is_control() || c.is_whitespace()))
        {
            return Err(ApiError::invalid("emailAddress", format!("{e:?} is not an e-mail address.")));
        }
        api.store().set_user_details(&name, b.display_name.as_deref().map(str::trim), b.email_address.as_deref())?;
        let u = api.store().user(&name)?.ok_or_else(|| ApiError::no_user(&raw))?;
        let mut changed = json!({});
        if b.display_name.is_some() {
            changed["displayName"] = json!(u.display_name);
        }
        if b.email_address.is_some() {
            changed["emailAddress"] = json!(u.email);
        }
        api.audit(Action::UserUpdate, &target::user(&name), changed);
        Ok(ok(StatusCode::OK, api.user_json(&u)))
    })
    .await
}

/// `DELETE /admin/users?name=` → 200 with the deleted user. Callers cannot delete themselves,
/// and only a SYS_ADMIN may delete a SYS_ADMIN.
pub(crate) async fn admin_delete(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let me = api.require_admin("delete users")?.user.clone();
        let raw = api.q.required("name")?;
        let name = UserName::parse(raw).map_err(|_| ApiError::no_user(raw))?;
        let u = api.store().user(&name)?.ok_or_else(|| ApiError::no_user(raw))?;
        if u.id == me.id {
            return Err(ApiError::invalid("name", "You cannot delete your own account; ask another administrator."));
        }
        if u.global == Some(GlobalPermission::SysAdmin) && me.global != Some(GlobalPermission::SysAdmin) {
            return Err(ApiError::forbidden("delete a system administrator"));
        }
        let body = api.user_json(&u);
        api.store().delete_user(&name)?;
        api.audit(Action::UserDelete, &target::user(&name), json!({}));
        Ok(ok(StatusCode::OK, body))
    })
    .await
}

/// `DELETE /admin/users/captcha?name=` → 204: clears the user's failed logins and lock, as
/// Bitbucket's "clear CAPTCHA" does; 204 also when there was nothing to clear.
pub(crate) async fn clear_captcha(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let me = api.require_admin("clear failed logins")?.user.name.clone();
        let raw = api.q.required("name")?;
        let name = UserName::parse(raw).map_err(|_| ApiError::no_user(raw))?;
        if api.store().clear_login_lock(&name)? {
            tracing::info!(user = %name, by = %me, "failed logins cleared");
            api.audit(Action::UserUnlock, &target::user(&name), json!({}));
        }
        Ok(no_content())
    })
    .await
}

/// `GET /admin/permissions/users?filter=`: users granted a global permission themselves (what a
/// group grants its members is listed under `/admin/permissions/groups`).
pub(crate) async fn global_list(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        api.require_admin("see global permissions")?;
        let page = api.q.page()?;
        let values = filtered(api)?.iter().filter_map(|u| u.own_global.map(|g| json!({"user": api.user_json(u), "permission": g.as_str()}))).collect();
        Ok(ok(StatusCode::OK, paged(values, page)))
    })
    .await
}

/// `permission=LICENSED_USER|PROJECT_CREATE|ADMIN|SYS_ADMIN`, spelt exactly so.
pub(crate) fn parse_global(raw: &str) -> Result<GlobalPermission, ApiError> {
    match raw {
        "LICENSED_USER" | "PROJECT_CREATE" | "ADMIN" | "SYS_ADMIN" => {
            raw.parse().map_err(|e: trove_store::GlobalPermissionError| ApiError::invalid("permission", format!("{e}.")))
        }
        _ => Err(ApiError::invalid("permission", format!("{raw:?} is not a global permission; use LICENSED_USER, PROJECT_CREATE, ADMIN or SYS_ADMIN."))),
    }
}

/// A global permission change must not touch the caller's own permission, nor SYS_ADMIN
/// unless the caller is one.
fn check_global_change(api: &Api, target: &User, to: Option<GlobalPermission>) -> Result<(), ApiError> {
    let me = &api.require_admin("change global permissions")?.user;
    if me.id == target.id {
        return Err(ApiError::invalid("name", "You cannot change your own global permission; ask another administrator."));
    }
    let sys = |g: Option<GlobalPermission>| g == Some(GlobalPermission::SysAdmin);
    if (sys(to) || sys(target.global)) && !sys(me.global) {
        return Err(ApiError::forbidden("grant or revoke SYS_ADMIN: only a system administrator may"));
    }
    Ok(())
}

/// `PUT /admin/permissions/users?name=&permission=LICENSED_USER|PROJECT_CREATE|ADMIN|SYS_ADMIN` → 204.
pub(crate) async fn global_grant(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        api.require_admin("change global permissions")?;
        let perm = parse_global(api.q.required("permission")?)?;
        let names = api.q.all("name");
        if names.is_empty() {
            return Err(ApiError::invalid("name", "The query parameter name is required."));
        }
        // Check every name first, so a bad one changes nothing.
        let mut users = Vec::new();
        for raw in names {
            let name = UserName::parse(raw).map_err(|_| ApiError::no_user(raw))?;
            let u = api.store().user(&name)?.ok_or_else(|| ApiError::no_user(raw))?;
            check_global_change(api, &u, Some(perm))?;
            users.push(u);
        }
        for u in users {
            api.store().set_global_permission(&u.name, Some(perm))?;
            api.audit(
                Action::PermissionGrant,
                &format!("global {}", target::user(&u.name)),
                json!({"permission": perm.as_str(), "previous": u.own_global.map(|g| g.as_str())}),
            );
        }
        Ok(no_content())
    })
    .await
}

/// `DELETE /admin/permissions/users?name=` → 204: the user may no longer log in, unless a group
/// of theirs grants a global permission.
pub(crate) async fn global_revoke(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        api.require_admin("change global permissions")?;
        let raw = api.q.required("name")?;
        let name = UserName::parse(raw).map_err(|_| ApiError::no_user(raw))?;
        let u = api.store().user(&name)?.ok_or_else(|| ApiError::no_user(raw))?;
        check_global_change(api, &u, None)?;
        api.store().set_global_permission(&name, None)?;
        api.audit(Action::PermissionRevoke, &format!("global {}", target::user(&name)), json!({"previous": u.own_global.map(|g| g.as_str())}));
        Ok(no_content())
    })
    .await
}
