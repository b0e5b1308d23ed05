//! SSH keys over REST, as Bitbucket serves them: users' keys under `/rest/ssh/1.0/keys` (list,
//! add `{text, label}`, delete; `?user=` for administrators) and access keys under
//! `/rest/keys/1.0/projects/{key}[/repos/{slug}]/ssh` (list, add `{key: {text, label},
//! permission}`, delete), over the same store the SSH server reads.
//!
//! Who may: a user manages their own keys (an administrator anyone's, with `?user=`); a project
//! or repository administrator manages its access keys. Keys are judged by `ssh::parse_key_text`
//! (no DSA, no RSA under 2048 bits) and are unique across the server.

use axum::Router;
use axum::extract::Path;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use axum::routing::{delete, get};
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use trove_store::{AccessKey, KeyScope, Permission, SshKey, StoreError, User, UserName};

use super::{Api, ApiError, no_content, ok, paged, parse_body};
use crate::AppState;
use crate::audit::{Action, target};

/// The routes (full paths, as docs/openapi.json lists them).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const ROUTES: &[(&[&str], &str)] = &[
    (&["GET", "POST"], "/rest/ssh/1.0/keys"),
    (&["DELETE"], "/rest/ssh/1.0/keys/{keyId}"),
    (&["GET", "POST"], "/rest/keys/1.0/projects/{projectKey}/ssh"),
    (&["DELETE"], "/rest/keys/1.0/projects/{projectKey}/ssh/{keyId}"),
    (&["GET", "POST"], "/rest/keys/1.0/projects/{projectKey}/repos/{repositorySlug}/ssh"),
    (&["DELETE"], "/rest/keys/1.0/projects/{projectKey}/repos/{repositorySlug}/ssh/{keyId}"),
];

/// Under the context path `ctx` (`latest` is rewritten to `1.0` before routing).
pub(crate) fn routes(ctx: &str) -> Router<AppState> {
    let k = |s: &str| format!("{ctx}/rest/keys/1.0/projects/{{key}}{s}");
    Router::new()
        .route(&format!("{ctx}/rest/ssh/1.0/keys"), get(user_list).post(user_add))
        .route(&format!("{ctx}/rest/ssh/1.0/keys/{{id}}"), delete(user_delete))
        .route(&k("/ssh"), get(project_list).post(project_add))
        .route(&k("/ssh/{id}"), delete(project_delete))
        .route(&k("/repos/{slug}/ssh"), get(repo_list).post(repo_add))
        .route(&k("/repos/{slug}/ssh/{id}"), delete(repo_delete))
}

fn no_key(id: &str) -> ApiError {
    ApiError::NotFound { exception: "com.atlassian.bitbucket.ssh.NoSuchSshKeyException", message: format!("There is no SSH key {id} here.") }
}

fn key_json(k: &SshKey) -> Value {
    let mut v = json!({ "id": k.id, "text": k.text, "label": k.label, "algorithmType": algorithm_type(&k.algorithm), "bitLength": k.bits, "fingerprint": k.fingerprint });
    if let Some(at) = k.last_used_at {
        v["lastAuthenticated"] = json!(at * 1000);
    }
    v
}

/// Bitbucket's `algorithmType`: `RSA`, `ECDSA`, `ED25519`.
fn algorithm_type(a: &str) -> &'static str {
    if a.starts_with("ssh-rsa") || a.starts_with("rsa") {
        "RSA"
    } else if a.contains("ecdsa") {
        "ECDSA"
    } else {
        "ED25519"
    }
}

/// A store refusal of a duplicate key, in Bitbucket's words.
fn stored<T>(r: Result<T, StoreError>) -> Result<T, ApiError> {
    r.map_err(|e| match e {
        StoreError::SshKeyExists(_) => ApiError::Conflict {
            exception: "com.atlassian.bitbucket.ssh.DuplicateSshKeyException",
            message: "This SSH key is already in use on this server (as someone's key or an access key); each key may be added only once.".into(),
        },
        e => e.into(),
    })
}

fn judged(text: &str, label: Option<&str>) -> Result<trove_store::NewSshKey, ApiError> {
    crate::ssh::parse_key_text(text, label).map_err(|e| ApiError::invalid("text", e.to_string()))
}

/// The user whose keys are meant: the caller, or with `?user=` (administrators) someone else.
fn key_owner(api: &Api) -> Result<User, ApiError> {
    let who = api.require_login()?;
    match api.q.get("user").filter(|u| !u.is_empty()) {
        None => Ok(who.user.clone()),
        Some(raw) => {
            let name = UserName::parse(raw.trim_start_matches('~')).map_err(|_| ApiError::no_user(raw))?;
            if name == who.user.name {
                return Ok(who.user.clone());
            }
            if !api.is_admin() {
                return Err(ApiError::forbidden("manage another user's SSH keys"));
            }
            api.store().user(&name)?.ok_or_else(|| ApiError::no_user(raw))
        }
    }
}

#[derive(Deserialize)]
struct KeyBody {
    text: Option<String>,
    label: Option<String>,
}

/// `GET /rest/ssh/1.0/keys[?user=]`.
async fn user_list(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let owner = key_owner(api)?;
        let page = api.q.page()?;
        let values = api.store().user_ssh_keys(owner.id)?.iter().map(key_json).collect();
        Ok(ok(StatusCode::OK, paged(values, page)))
    })
    .await
}

/// `POST /rest/ssh/1.0/keys[?user=]` `{text, label?}` → 201 with the key.
async fn user_add(api: Api, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let owner = key_owner(api)?;
        // A key logs in with everything the account may do: a token capped below that may not add one.
        if api.require_login()?.token_scope.is_some_and(|s| s < Permission::Admin) {
            return Err(ApiError::Forbidden(
                "You are not permitted to add SSH keys with an access token below admin scope: a key logs in with everything the account may do.".into(),
            ));
        }
        let b: KeyBody = parse_body(body)?;
        let text = b.text.as_deref().filter(|t| !t.trim().is_empty()).ok_or_else(|| ApiError::invalid("text", "The key text is required."))?;
        let new = judged(text, b.label.as_deref())?;
        let made = stored(api.store().insert_user_key(owner.id, &new))?;
        api.audit(
            Action::SshKeyAdd,
            &format!("{} ssh-key:{}", target::user(&owner.name), made.id),
            json!({"label": made.label, "fingerprint": made.fingerprint, "algorithm": made.algorithm}),
        );
        Ok(ok(StatusCode::CREATED, key_json(&made)))
    })
    .await
}

/// `DELETE /rest/ssh/1.0/keys/{keyId}[?user=]` → 204.
async fn user_delete(api: Api, Path(id): Path<String>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let owner = key_owner(api)?;
        let n: i64 = id.parse().map_err(|_| no_key(&id))?;
        if !api.store().delete_user_key(owner.id, n)? {
            return Err(no_key(&id));
        }
        api.audit(Action::SshKeyDelete, &format!("{} ssh-key:{n}", target::user(&owner.name)), json!({}));
        Ok(no_content())
    })
    .await
}

/// An access key's scope from the path, for a caller who administers it; with the JSON of the
/// project or repository, Bitbucket's permission prefix, and the audit target.
fn scope(api: &Api, key: &str, slug: Option<&str>) -> Result<(KeyScope, Value, &'static str, String), ApiError> {
    match slug {
        None => {
            let p = api.project(key, Some(Permission::Admin), "manage this project's access keys")?;
            Ok((KeyScope::Project(p.id), api.project_json(&p), "PROJECT", target::project(&p.owner)))
        }
        Some(slug) => {
            let (r, p) = api.repo(key, slug, Permission::Admin, "manage this repository's access keys")?;
            Ok((KeyScope::Repo(r.id), api.repo_json(&r, &p)?, "REPO", target::repo(&r)))
        }
    }
}

fn access_json(a: &AccessKey, holder: &Value, prefix: &str) -> Value {
    let field = if prefix == "PROJECT" { "project" } else { "repository" };
    json!({ "key": key_json(&a.key), field: holder, "permission": super::level_name(prefix, a.permission) })
}

#[derive(Deserialize)]
struct AccessBody {
    key: Option<KeyBody>,
    permission: Option<String>,
}

async fn list(api: Api, key: String, slug: Option<String>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let (scope, holder, prefix, _) = scope(api, &key, slug.as_deref())?;
        let page = api.q.page()?;
        let values = api.store().access_keys(scope)?.iter().map(|a| access_json(a, &holder, prefix)).collect();
        Ok(ok(StatusCode::OK, paged(values, page)))
    })
    .await
}

async fn add(api: Api, key: String, slug: Option<String>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let (scope, holder, prefix, audit_target) = scope(api, &key, slug.as_deref())?;
        let b: AccessBody = parse_body(body)?;
        let k = b
            .key
            .ok_or_else(|| ApiError::invalid("key", "The key is required: {\"key\": {\"text\": \"ssh-ed25519 AAAA…\"}, \"permission\": \"REPO_READ\"}."))?;
        let text = k.text.as_deref().filter(|t| !t.trim().is_empty()).ok_or_else(|| ApiError::invalid("text", "The key text is required."))?;
        let raw = b.permission.as_deref().unwrap_or(if prefix == "PROJECT" { "PROJECT_READ" } else { "REPO_READ" });
        let permission = super::parse_level(prefix, raw)
            .ok()
            .filter(|p| matches!(p, Permission::Read | Permission::Write))
            .ok_or_else(|| ApiError::invalid("permission", format!("{raw:?} is not an access key permission here; use {prefix}_READ or {prefix}_WRITE.")))?;
        let new = judged(text, k.label.as_deref())?;
        let made = stored(api.store().grant_access_key(scope, &new, permission))?;
        api.audit(
            Action::AccessKeyAdd,
            &format!("{audit_target} access-key:{}", made.key.id),
            json!({"label": made.key.label, "fingerprint": made.key.fingerprint, "permission": super::level_name(prefix, permission)}),
        );
        Ok(ok(StatusCode::CREATED, access_json(&made, &holder, prefix)))
    })
    .await
}

async fn remove(api: Api, key: String, slug: Option<String>, id: String) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let (scope, _, _, audit_target) = scope(api, &key, slug.as_deref())?;
        let n: i64 = id.parse().map_err(|_| no_key(&id))?;
        if !api.store().revoke_access_key(scope, n)? {
            return Err(no_key(&id));
        }
        api.audit(Action::AccessKeyRemove, &format!("{audit_target} access-key:{n}"), json!({}));
        Ok(no_content())
    })
    .await
}

type B = Result<Bytes, BytesRejection>;

async fn project_list(api: Api, Path(key): Path<String>) -> Result<Response, ApiError> {
    list(api, key, None).await
}
async fn project_add(api: Api, Path(key): Path<String>, body: B) -> Result<Response, ApiError> {
    add(api, key, None, body).await
}
async fn project_delete(api: Api, Path((key, id)): Path<(String, String)>) -> Result<Response, ApiError> {
    remove(api, key, None, id).await
}
async fn repo_list(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    list(api, key, Some(slug)).await
}
async fn repo_add(api: Api, Path((key, slug)): Path<(String, String)>, body: B) -> Result<Response, ApiError> {
    add(api, key, Some(slug), body).await
}
async fn repo_delete(api: Api, Path((key, slug, id)): Path<(String, String, String)>) -> Result<Response, ApiError> {
    remove(api, key, Some(slug), id).await
}
