//! Webhooks over REST, as Bitbucket Server 8 serves them: on a project
//! (`/projects/{key}/webhooks`, PROJECT_ADMIN) and on a repository
//! (`/projects/{key}/repos/{slug}/webhooks`, REPO_ADMIN): list (`event` filter, paged), create
//! (200 with the webhook; the secret echoed in `configuration`, as Jenkins reads it), get,
//! update (`PUT`, the fields given), delete (204), `POST …/test?url=` (a `diagnostics:ping`
//! sent now; the receiver's answer), `GET …/{id}/latest?event=&outcome=` (the last attempt, or
//! 204) and `…/{id}/statistics[/summary]`.
//!
//! A webhook's URL must be `http` or `https` and its host must resolve only to addresses the
//! network rules allow (`webhooks.rs`); otherwise 400 with the reason. Parsing and rendering
//! only: delivery is [`crate::webhooks::delivery`]'s.

use axum::extract::Path;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};
use trove_store::{Delivery, NewWebhook, Outcome, Permission, Webhook};

use super::{Api, ApiError, no_content, ok, paged, parse_body, parse_optional_body};
use crate::audit::{self, Action};
use crate::webhooks::delivery::{self, Target};
use crate::webhooks::{EVENT_KEYS, NetworkRules};

/// Where a path points: a project, or a repository of it.
struct Scope {
    project_id: i64,
    repo_id: Option<i64>,
    /// What the audit log names it by.
    target: String,
}

fn scope(api: &Api, key: &str, slug: Option<&str>) -> Result<Scope, ApiError> {
    match slug {
        None => {
            let p = api.project(key, Some(Permission::Admin), "manage this project's webhooks")?;
            Ok(Scope { project_id: p.id, repo_id: None, target: audit::target::project(&p.owner) })
        }
        Some(slug) => {
            let (r, _) = api.repo(key, slug, Permission::Admin, "manage this repository's webhooks")?;
            Ok(Scope { project_id: r.project_id, repo_id: Some(r.id), target: audit::target::repo(&r) })
        }
    }
}

fn no_webhook(id: &str) -> ApiError {
    ApiError::NotFound {
        exception: "com.atlassian.webhooks.NoSuchWebhookException",
        message: format!("No webhook with id {id} exists here; list this project's or repository's webhooks for their ids."),
    }
}

/// The webhook `id` if it belongs to this very scope (another scope's is not found).
fn find(api: &Api, s: &Scope, id: &str) -> Result<Webhook, ApiError> {
    let n: i64 = id.parse().map_err(|_| no_webhook(id))?;
    match api.store().webhook(n)? {
        Some(w) if w.hook.project_id == s.project_id && w.hook.repo_id == s.repo_id => Ok(w),
        _ => Err(no_webhook(id)),
    }
}

/// Bitbucket's webhook object; `with_secret` on creation and update only.
fn webhook_json(w: &Webhook, with_secret: bool) -> Value {
    let mut configuration = serde_json::Map::new();
    if let (true, Some(s)) = (with_secret, &w.hook.secret) {
        configuration.insert("secret".into(), json!(s));
    }
    let mut v = json!({
        "id": w.id,
        "name": w.hook.name,
        "createdDate": w.created_at,
        "updatedDate": w.updated_at,
        "events": w.hook.events,
        "configuration": configuration,
        "url": w.hook.url,
        "active": w.hook.active,
        "scopeType": if w.hook.repo_id.is_some() { "repository" } else { "project" },
        "sslVerificationRequired": w.hook.ssl_verify,
    });
    if let Some(u) = &w.hook.username {
        v["credentials"] = json!({"username": u});
    }
    v
}

/// An attempt as Bitbucket's invocation (`latest`, statistics).
pub(crate) fn invocation_json(w: &Webhook, d: &Delivery) -> Value {
    let last = d.last.as_ref();
    let outcome = last.map(|a| a.outcome.as_str()).unwrap_or("PENDING");
    json!({
        "id": d.id,
        "event": d.event_key,
        "eventScope": {"type": if w.hook.repo_id.is_some() { "repository" } else { "project" }, "id": w.hook.repo_id.unwrap_or(w.hook.project_id).to_string()},
        "duration": last.map_or(0, |a| a.duration_ms),
        "start": last.map_or(d.event_at, |a| a.at - a.duration_ms),
        "finish": last.map_or(d.event_at, |a| a.at),
        "attempts": d.attempts,
        "state": d.state.as_str(),
        "request": {"url": w.hook.url, "method": "POST", "eventKey": d.event_key},
        "result": {
            "outcome": outcome,
            "description": last.map(|a| a.summary.clone()).unwrap_or_default(),
            "statusCode": last.and_then(|a| a.status),
        },
    })
}

#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Body {
    name: Option<String>,
    url: Option<String>,
    events: Option<Vec<String>>,
    active: Option<bool>,
    configuration: Option<Value>,
    ssl_verification_required: Option<bool>,
    credentials: Option<Value>,
}

/// Checks a URL: its syntax, and every address its host resolves to against the rules.
async fn check_url(api: &Api, url: &str) -> Result<(), ApiError> {
    let u = trove_http::HttpUrl::parse(url)
        .map_err(|e| ApiError::invalid("url", format!("The URL {url:?} is not valid: {e}; give an http:// or https:// URL.")))?;
    let rules = api.clone().blocking(|api| NetworkRules::load(api.store())).await?;
    delivery::allowed_addresses(&rules, u.host(), u.port_or_default())
        .await
        .map_err(|e| ApiError::invalid("url", format!("The URL {url:?} is refused: {e}.")))?;
    Ok(())
}

/// The webhook a body makes, over `base` (an update keeps what the body leaves out).
fn apply(body: Body, mut w: NewWebhook) -> Result<NewWebhook, ApiError> {
    if let Some(n) = body.name {
        let n = n.trim().to_owned();
        if n.is_empty() || n.chars().count() > 255 {
            return Err(ApiError::invalid("name", "A webhook needs a name of 1 to 255 characters."));
        }
        w.name = n;
    }
    if w.name.is_empty() {
        return Err(ApiError::invalid("name", "A webhook needs a name."));
    }
    if let Some(u) = body.url {
        w.url = u.trim().to_owned();
    }
    if w.url.is_empty() {
        return Err(ApiError::invalid("url", "A webhook needs a url (http:// or https://)."));
    }
    if let Some(events) = body.events {
        let mut seen = Vec::new();
        for e in events {
            if !EVENT_KEYS.contains(&e.as_str()) {
                return Err(ApiError::invalid("events", format!("{e:?} is not an event key; use one of {}.", EVENT_KEYS.join(", "))));
            }
            if !seen.contains(&e) {
                seen.push(e);
            }
        }
        w.events = seen;
    }
    if w.events.is_empty() {
        return Err(ApiError::invalid("events", "A webhook needs at least one event (like repo:refs_changed)."));
    }
    if let Some(a) = body.active {
        w.active = a;
    }
    if let Some(v) = body.ssl_verification_required {
        w.ssl_verify = v;
    }
    if let Some(c) = body.configuration {
        match c.get("secret") {
            Some(Value::String(s)) if !s.is_empty() => w.secret = Some(s.clone()),
            Some(Value::String(_)) | Some(Value::Null) => w.secret = None,
            Some(other) => return Err(ApiError::invalid("configuration.secret", format!("The secret must be a string, not {other}."))),
            None => {}
        }
    }
    match body.credentials {
        Some(Value::Null) => (w.username, w.password) = (None, None),
        Some(c) => {
            let field = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_owned).filter(|s| !s.is_empty());
            w.username = field("username");
            w.password = field("password");
            if w.username.is_none() && w.password.is_some() {
                return Err(ApiError::invalid("credentials.username", "Credentials need a username with the password."));
            }
        }
        None => {}
    }
    Ok(w)
}

async fn list(api: Api, key: String, slug: Option<String>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let s = scope(api, &key, slug.as_deref())?;
        let page = api.q.page()?;
        let events: Vec<&str> = api.q.all("event").into_iter().filter(|e| !e.is_empty()).collect();
        let stats = api.q.bool("statistics")? == Some(true);
        let mut values = Vec::new();
        for w in api.store().webhooks(s.project_id, s.repo_id)? {
            if !events.is_empty() && !events.iter().any(|e| w.hook.events.iter().any(|k| k == e)) {
                continue;
            }
            let mut v = webhook_json(&w, false);
            if stats {
                v["statistics"] = statistics(api, &w, true)?;
            }
            values.push(v);
        }
        Ok(ok(StatusCode::OK, paged(values, page)))
    })
    .await
}

async fn create(api: Api, key: String, slug: Option<String>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body: Body = parse_body(body)?;
    let (k, sl) = (key.clone(), slug.clone());
    let s = api.clone().blocking(move |api| scope(api, &k, sl.as_deref())).await?;
    let base = NewWebhook {
        project_id: s.project_id,
        repo_id: s.repo_id,
        name: String::new(),
        url: String::new(),
        events: Vec::new(),
        active: true,
        secret: None,
        ssl_verify: true,
        username: None,
        password: None,
    };
    let new = apply(body, base)?;
    check_url(&api, &new.url).await?;
    api.blocking(move |api| {
        let w = api.store().create_webhook(&new)?;
        api.audit(Action::WebhookCreate, &s.target, audit_details(&w));
        Ok(ok(StatusCode::OK, webhook_json(&w, true)))
    })
    .await
}

/// What the audit log keeps of a webhook: never its secret or password.
pub(crate) fn audit_details(w: &Webhook) -> Value {
    json!({"id": w.id, "name": w.hook.name, "url": w.hook.url, "events": w.hook.events, "active": w.hook.active})
}

async fn get_one(api: Api, key: String, slug: Option<String>, id: String) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let s = scope(api, &key, slug.as_deref())?;
        let w = find(api, &s, &id)?;
        let mut v = webhook_json(&w, false);
        if api.q.bool("statistics")? == Some(true) {
            v["statistics"] = statistics(api, &w, true)?;
        }
        Ok(ok(StatusCode::OK, v))
    })
    .await
}

async fn update(api: Api, key: String, slug: Option<String>, id: String, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body: Body = parse_body(body)?;
    let (s, current) = api
        .clone()
        .blocking(move |api| {
            let s = scope(api, &key, slug.as_deref())?;
            let w = find(api, &s, &id)?;
            Ok::<_, ApiError>((s, w))
        })
        .await?;
    let new = apply(body, current.hook.clone())?;
    if new.url != current.hook.url {
        check_url(&api, &new.url).await?;
    }
    api.blocking(move |api| {
        let w = api.store().update_webhook(current.id, &new)?.ok_or_else(|| no_webhook(&current.id.to_string()))?;
        api.audit(Action::WebhookUpdate, &s.target, audit_details(&w));
        Ok(ok(StatusCode::OK, webhook_json(&w, true)))
    })
    .await
}

async fn delete(api: Api, key: String, slug: Option<String>, id: String) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let s = scope(api, &key, slug.as_deref())?;
        let w = find(api, &s, &id)?;
        api.store().delete_webhook(w.id)?;
        api.audit(Action::WebhookDelete, &s.target, audit_details(&w));
        Ok(no_content())
    })
    .await
}

#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct TestBody {
    url: Option<String>,
    configuration: Option<Value>,
    ssl_verification_required: Option<bool>,
    credentials: Option<Value>,
}

/// `POST …/webhooks/test?url=&webhookId=`: sends `diagnostics:ping` now; the answer says what
/// the receiver said (or what went wrong). A stored webhook's secret and credentials are used
/// when `webhookId` names one of this scope.
async fn test(api: Api, key: String, slug: Option<String>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body: TestBody = parse_optional_body(body)?;
    let hook_id = api.q.get("webhookId").map(str::to_owned);
    let stored = api
        .clone()
        .blocking(move |api| {
            let s = scope(api, &key, slug.as_deref())?;
            hook_id.filter(|i| !i.is_empty()).map(|i| find(api, &s, &i)).transpose()
        })
        .await?;
    let mut target =
        stored.as_ref().map(|w| Target::of(&w.hook)).unwrap_or(Target { url: String::new(), secret: None, ssl_verify: true, username: None, password: None });
    if let Some(u) = api.q.get("url").filter(|u| !u.is_empty()).map(str::to_owned).or(body.url) {
        target.url = u;
    }
    if target.url.is_empty() {
        return Err(ApiError::invalid("url", "Give the URL to test: POST …/webhooks/test?url=https://ci.example.com/hook"));
    }
    if let Some(s) = body.configuration.as_ref().and_then(|c| c.get("secret")).and_then(Value::as_str) {
        target.secret = Some(s.to_owned()).filter(|s| !s.is_empty());
    }
    if let Some(v) = body.ssl_verification_required {
        target.ssl_verify = v;
    }
    if let Some(c) = &body.credentials {
        target.username = c.get("username").and_then(Value::as_str).map(str::to_owned);
        target.password = c.get("password").and_then(Value::as_str).map(str::to_owned);
    }
    check_url(&api, &target.url).await?;
    let rules = api.clone().blocking(|api| NetworkRules::load(api.store())).await?;
    let payload = json!({"test": true}).to_string();
    let sent = delivery::send(&api.state.webhooks, &rules, &target, "diagnostics:ping", &delivery::random_request_id(), payload.as_bytes()).await;
    let headers: serde_json::Map<String, Value> = sent.headers.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    let mut v = json!({
        "request": {"url": target.url, "method": "POST", "eventKey": "diagnostics:ping"},
        "outcome": sent.outcome.as_str(),
        "duration": sent.duration_ms,
    });
    match (&sent.error, sent.status) {
        (Some(e), _) => v["message"] = json!(e),
        (None, Some(status)) => v["response"] = json!({"statusCode": status, "headers": headers, "body": sent.body}),
        (None, None) => {}
    }
    if let (None, Some(status)) = (&sent.error, sent.status) {
        v["statusCode"] = json!(status);
        v["body"] = json!(sent.body);
        v["headers"] = Value::Object(headers);
    }
    Ok(ok(StatusCode::OK, v))
}

fn outcome_param(api: &Api) -> Result<Option<Outcome>, ApiError> {
    match api.q.get("outcome").filter(|o| !o.is_empty()) {
        None => Ok(None),
        Some(o) => Outcome::parse(&o.to_ascii_uppercase())
            .map(Some)
            .ok_or_else(|| ApiError::invalid("outcome", format!("{o:?} is not an outcome; use SUCCESS, FAILURE or ERROR."))),
    }
}

async fn latest(api: Api, key: String, slug: Option<String>, id: String) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let s = scope(api, &key, slug.as_deref())?;
        let w = find(api, &s, &id)?;
        let event = api.q.get("event").filter(|e| !e.is_empty());
        match api.store().latest_delivery(w.id, event, outcome_param(api)?)? {
            Some(d) => Ok(ok(StatusCode::OK, invocation_json(&w, &d))),
            None => Ok(no_content()),
        }
    })
    .await
}

/// The last success, failure and error, and the counts by outcome.
fn statistics(api: &Api, w: &Webhook, summary: bool) -> Result<Value, ApiError> {
    let counts = api.store().delivery_counts(w.id)?;
    let last =
        |o: Option<Outcome>| -> Result<Value, ApiError> { Ok(api.store().latest_delivery(w.id, None, o)?.map_or(Value::Null, |d| invocation_json(w, &d))) };
    let counts_v = json!({"successes": counts.success, "failures": counts.failure, "errors": counts.error, "pending": counts.pending});
    Ok(if summary {
        json!({"lastInvocation": last(None)?, "counts": counts_v})
    } else {
        json!({"lastSuccess": last(Some(Outcome::Success))?, "lastFailure": last(Some(Outcome::Failure))?, "lastError": last(Some(Outcome::Error))?, "counts": counts_v})
    })
}

async fn stats(api: Api, key: String, slug: Option<String>, id: String, summary: bool) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let s = scope(api, &key, slug.as_deref())?;
        let w = find(api, &s, &id)?;
        Ok(ok(StatusCode::OK, statistics(api, &w, summary)?))
    })
    .await
}

type P1 = Path<String>;
type P2 = Path<(String, String)>;
type P3 = Path<(String, String, String)>;
type B = Result<Bytes, BytesRejection>;

pub(crate) async fn project_list(api: Api, Path(key): P1) -> Result<Response, ApiError> {
    list(api, key, None).await
}
pub(crate) async fn project_create(api: Api, Path(key): P1, body: B) -> Result<Response, ApiError> {
    create(api, key, None, body).await
}
pub(crate) async fn project_test(api: Api, Path(key): P1, body: B) -> Result<Response, ApiError> {
    test(api, key, None, body).await
}
pub(crate) async fn project_get(api: Api, Path((key, id)): P2) -> Result<Response, ApiError> {
    get_one(api, key, None, id).await
}
pub(crate) async fn project_update(api: Api, Path((key, id)): P2, body: B) -> Result<Response, ApiError> {
    update(api, key, None, id, body).await
}
pub(crate) async fn project_delete(api: Api, Path((key, id)): P2) -> Result<Response, ApiError> {
    delete(api, key, None, id).await
}
pub(crate) async fn project_latest(api: Api, Path((key, id)): P2) -> Result<Response, ApiError> {
    latest(api, key, None, id).await
}
pub(crate) async fn project_statistics(api: Api, Path((key, id)): P2) -> Result<Response, ApiError> {
    stats(api, key, None, id, false).await
}
pub(crate) async fn project_summary(api: Api, Path((key, id)): P2) -> Result<Response, ApiError> {
    stats(api, key, None, id, true).await
}
pub(crate) async fn repo_list(api: Api, Path((key, slug)): P2) -> Result<Response, ApiError> {
    list(api, key, Some(slug)).await
}
pub(crate) async fn repo_create(api: Api, Path((key, slug)): P2, body: B) -> Result<Response, ApiError> {
    create(api, key, Some(slug), body).await
}
pub(crate) async fn repo_test(api: Api, Path((key, slug)): P2, body: B) -> Result<Response, ApiError> {
    test(api, key, Some(slug), body).await
}
pub(crate) async fn repo_get(api: Api, Path((key, slug, id)): P3) -> Result<Response, ApiError> {
    get_one(api, key, Some(slug), id).await
}
pub(crate) async fn repo_update(api: Api, Path((key, slug, id)): P3, body: B) -> Result<Response, ApiError> {
    update(api, key, Some(slug), id, body).await
}
pub(crate) async fn repo_delete(api: Api, Path((key, slug, id)): P3) -> Result<Response, ApiError> {
    delete(api, key, Some(slug), id).await
}
pub(crate) async fn repo_latest(api: Api, Path((key, slug, id)): P3) -> Result<Response, ApiError> {
    latest(api, key, Some(slug), id).await
}
pub(crate) async fn repo_statistics(api: Api, Path((key, slug, id)): P3) -> Result<Response, ApiError> {
    stats(api, key, Some(slug), id, false).await
}
pub(crate) async fn repo_summary(api: Api, Path((key, slug, id)): P3) -> Result<Response, ApiError> {
    stats(api, key, Some(slug), id, true).await
}
