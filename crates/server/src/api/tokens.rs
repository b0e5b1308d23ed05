//! Personal access tokens over REST, as Bitbucket serves them under
//! `/rest/access-tokens/1.0/users/{userSlug}` (also `latest`): create (the secret is answered
//! once), list, read, update (name, permissions) and revoke; beside the account page and
//! `trove admin token`, over the same store.
//!
//! Bitbucket's token has a project and a repository permission; a Trove token has one scope
//! that caps everything its owner may do (`read`, `write`, `admin`). A request's permissions
//! become the highest level among them (`PROJECT_READ` + `REPO_WRITE` → `write`), and a token
//! is shown with the permissions that scope gives, `PROJECT_<S>` and `REPO_<S>`: what it can do.
//! Bitbucket's rule that the repository permission is at least the project one is kept.
//!
//! Who may: the owner, logged in with their password, creates and updates (a token never mints
//! or widens a token); the owner or an administrator lists, reads and revokes. Administrators
//! cannot create tokens for others, as in Bitbucket.

use axum::Router;
use axum::extract::Path;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use axum::routing::{get, put};
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use trove_store::{Permission, TokenInfo, User, UserName};

use super::{Api, ApiError, no_content, ok, paged, parse_body};
use crate::AppState;
use crate::audit::{Action, target};

/// The routes (full paths, as docs/openapi.json lists them).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const ROUTES: &[(&[&str], &str)] =
    &[(&["GET", "PUT"], "/rest/access-tokens/1.0/users/{userSlug}"), (&["GET", "POST", "DELETE"], "/rest/access-tokens/1.0/users/{userSlug}/{tokenId}")];

/// Longest expiry a token may be given, in days (ten years).
const MAX_EXPIRY_DAYS: i64 = 3650;
/// Longest token name.
const MAX_NAME: usize = 100;

/// Under the context path `ctx` (`latest` is rewritten to `1.0` before routing).
pub(crate) fn routes(ctx: &str) -> Router<AppState> {
    let p = |s: &str| format!("{ctx}/rest/access-tokens/1.0/users/{{user}}{s}");
    Router::new().route(&p(""), put(create).get(list)).route(&p("/{id}"), get(get_one).post(update).delete(revoke))
}

fn no_token(id: &str) -> ApiError {
    ApiError::NotFound {
        exception: "com.atlassian.bitbucket.auth.NoSuchAccessTokenException",
        message: format!("There is no access token {id} for this user."),
    }
}

/// The user the path names, if the caller may see their tokens: themselves, or an administrator.
fn owner(api: &Api, raw: &str, what: &str) -> Result<User, ApiError> {
    let who = api.require_login()?;
    let name = UserName::parse(raw.trim_start_matches('~')).map_err(|_| ApiError::no_user(raw))?;
    if who.user.name == name {
        return Ok(who.user.clone());
    }
    if !api.is_admin() {
        return Err(ApiError::forbidden(what));
    }
    api.store().user(&name)?.ok_or_else(|| ApiError::no_user(raw))
}

/// Only the owner, with their password: a token never mints or widens a token.
fn owner_by_password(api: &Api, raw: &str, what: &str) -> Result<User, ApiError> {
    let who = api.require_login()?;
    let name = UserName::parse(raw.trim_start_matches('~')).map_err(|_| ApiError::no_user(raw))?;
    if who.user.name != name {
        if api.store().user(&name)?.is_none() {
            return Err(ApiError::no_user(raw));
        }
        return Err(ApiError::Forbidden(format!("You are not permitted to {what}: only a user may manage their own access tokens.")));
    }
    if who.token_scope.is_some() {
        return Err(ApiError::Forbidden(format!("You are not permitted to {what} with an access token; log in with your password.")));
    }
    Ok(who.user.clone())
}

/// `["PROJECT_READ", "REPO_WRITE"]` → the scope, the highest level; Bitbucket's rules checked.
pub(crate) fn scope_of(perms: &[String]) -> Result<Permission, ApiError> {
    if perms.is_empty() {
        return Err(ApiError::invalid("permissions", "Give the token at least one permission, like [\"REPO_READ\"] or [\"PROJECT_READ\", \"REPO_WRITE\"]."));
    }
    let (mut project, mut repo) = (None, None);
    for p in perms {
        let level =
            if p.starts_with("PROJECT_") { super::parse_level("PROJECT", p).map(|l| (true, l)) } else { super::parse_level("REPO", p).map(|l| (false, l)) };
        let (is_project, level) = level.map_err(|_| {
            ApiError::invalid(
                "permissions",
                format!("{p:?} is not a token permission; use PROJECT_READ, PROJECT_WRITE, PROJECT_ADMIN, REPO_READ, REPO_WRITE or REPO_ADMIN."),
            )
        })?;
        let slot = if is_project { &mut project } else { &mut repo };
        *slot = Some(slot.map_or(level, |l: Permission| l.max(level)));
    }
    if let (Some(pr), Some(re)) = (project, repo)
        && re < pr
    {
        return Err(ApiError::invalid("permissions", "A token's repository permission must be at least its project permission."));
    }
    Ok(project.into_iter().chain(repo).max().unwrap_or(Permission::Read))
}

fn token_json(api: &Api, t: &TokenInfo, owner: &User) -> Value {
    let scope: Permission = t.scope.parse().unwrap_or(Permission::Read);
    let mut v = json!({
        "id": t.id.to_string(),
        "name": t.name,
        "createdDate": t.created_at * 1000,
        "permissions": [super::level_name("PROJECT", scope), super::level_name("REPO", scope)],
        "user": api.user_json(owner),
    });
    if let Some(at) = t.last_used_at {
        v["lastAuthenticated"] = json!(at * 1000);
    }
    if let Some(at) = t.expires_at {
        v["expiryDate"] = json!(at * 1000);
        v["expiryDays"] = json!((at - t.created_at + 43_200) / 86_400);
    }
    v
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenBody {
    name: Option<String>,
    permissions: Option<Vec<String>>,
    expiry_days: Option<Value>,
}

fn checked_name(name: &str) -> Result<&str, ApiError> {
    let n = name.trim();
    if n.is_empty() || n.len() > MAX_NAME || n.chars().any(char::is_control) {
        return Err(ApiError::invalid("name", format!("Give the token a name of 1 to {MAX_NAME} characters, without control characters.")));
    }
    Ok(n)
}

/// `expiryDays`: a whole number of days, 1 to ten years; `null` or absent: never expires.
fn expiry_days(v: &Option<Value>) -> Result<Option<i64>, ApiError> {
    let bad = || {
        ApiError::invalid(
            "expiryDays",
            format!("expiryDays must be a whole number of days from 1 to {MAX_EXPIRY_DAYS}, or absent for a token that does not expire."),
        )
    };
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().filter(|d| (1..=MAX_EXPIRY_DAYS).contains(d)).map(Some).ok_or_else(bad),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok().filter(|d| (1..=MAX_EXPIRY_DAYS).contains(d)).map(Some).ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

/// `PUT …/users/{userSlug}` `{name, permissions, expiryDays?}` → 200 with the token and its
/// secret (`token`), shown this once.
async fn create(api: Api, Path(user): Path<String>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let owner = owner_by_password(api, &user, "create access tokens for this user")?;
        let b: TokenBody = parse_body(body)?;
        let name = checked_name(b.name.as_deref().ok_or_else(|| ApiError::invalid("name", "The token name is required."))?)?;
        let scope = scope_of(b.permissions.as_deref().ok_or_else(|| ApiError::invalid("permissions", "The token permissions are required."))?)?;
        let days = expiry_days(&b.expiry_days)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let expires = days.map(|d| now + d * 86_400);
        let made = api.store().create_token_expiring(&owner.name, name, scope, expires)?;
        let info = api.store().tokens(&owner)?.into_iter().find(|t| t.id == made.id).ok_or_else(|| ApiError::Internal("the new token is not listed".into()))?;
        api.audit(
            Action::TokenCreate,
            &format!("{} token:{}", target::user(&owner.name), made.id),
            json!({"name": name, "scope": scope.as_str(), "expiryDays": days}),
        );
        let mut v = token_json(api, &info, &owner);
        v["token"] = json!(made.secret);
        Ok(ok(StatusCode::OK, v))
    })
    .await
}

/// `GET …/users/{userSlug}`: a page of the user's tokens (never their secrets).
async fn list(api: Api, Path(user): Path<String>) -> Result<Response, ApiError> {
    let page = api.q.page()?;
    api.blocking(move |api| {
        let owner = owner(api, &user, "see this user's access tokens")?;
        let values = api.store().tokens(&owner)?.iter().map(|t| token_json(api, t, &owner)).collect();
        Ok(ok(StatusCode::OK, paged(values, page)))
    })
    .await
}

fn find(api: &Api, owner: &User, id: &str) -> Result<TokenInfo, ApiError> {
    let n: i64 = id.parse().map_err(|_| no_token(id))?;
    api.store().tokens(owner)?.into_iter().find(|t| t.id == n).ok_or_else(|| no_token(id))
}

/// `GET …/users/{userSlug}/{tokenId}`.
async fn get_one(api: Api, Path((user, id)): Path<(String, String)>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let owner = owner(api, &user, "see this user's access tokens")?;
        let t = find(api, &owner, &id)?;
        Ok(ok(StatusCode::OK, token_json(api, &t, &owner)))
    })
    .await
}

/// `POST …/users/{userSlug}/{tokenId}` `{name?, permissions?}` → 200 with the token. The
/// expiry is fixed at creation (`expiryDays` here is 400).
async fn update(api: Api, Path((user, id)): Path<(String, String)>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let owner = owner_by_password(api, &user, "change access tokens of this user")?;
        let t = find(api, &owner, &id)?;
        let b: TokenBody = parse_body(body)?;
        if b.expiry_days.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(ApiError::invalid("expiryDays", "A token's expiry is set when it is created; create a new token for another expiry."));
        }
        let name = b.name.as_deref().map(checked_name).transpose()?;
        let scope = b.permissions.as_deref().map(scope_of).transpose()?;
        if !api.store().update_token(&owner, t.id, name, scope)? {
            return Err(no_token(&id));
        }
        let mut changed = json!({});
        if let Some(n) = name {
            changed["name"] = json!(n);
        }
        if let Some(s) = scope {
            changed["scope"] = json!(s.as_str());
        }
        api.audit(Action::TokenUpdate, &format!("{} token:{}", target::user(&owner.name), t.id), changed);
        let t = find(api, &owner, &id)?;
        Ok(ok(StatusCode::OK, token_json(api, &t, &owner)))
    })
    .await
}

/// `DELETE …/users/{userSlug}/{tokenId}` → 204.
async fn revoke(api: Api, Path((user, id)): Path<(String, String)>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let owner = owner(api, &user, "revoke this user's access tokens")?;
        let t = find(api, &owner, &id)?;
        if !api.store().revoke_token(&owner, t.id)? {
            return Err(no_token(&id));
        }
        api.audit(Action::TokenRevoke, &format!("{} token:{}", target::user(&owner.name), t.id), json!({}));
        Ok(no_content())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitbuckets_permissions_become_one_scope() {
        let s = |p: &[&str]| scope_of(&p.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(s(&["REPO_READ"]).unwrap(), Permission::Read);
        assert_eq!(s(&["PROJECT_READ", "REPO_WRITE"]).unwrap(), Permission::Write);
        assert_eq!(s(&["PROJECT_ADMIN", "REPO_ADMIN"]).unwrap(), Permission::Admin);
        assert_eq!(s(&["PROJECT_WRITE"]).unwrap(), Permission::Write);
        for bad in [&[][..], &["REPO_OWNER"], &["repo_read"], &["PROJECT_ADMIN", "REPO_READ"], &["ADMIN"]] {
            assert!(s(bad).is_err(), "{bad:?}");
        }
    }
}
