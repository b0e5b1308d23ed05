//! The "Webhooks" part of the project and repository settings pages: each webhook with its
//! events and its last delivery (outcome, when, what the receiver said), buttons to test
//! (a `diagnostics:ping` sent now, its answer shown), pause or resume, and delete, a form to
//! edit it, and one to add a webhook. The rules are the REST API's (event keys, the URL checked
//! against the network rules); the settings pages (`repo.rs`) dispatch the `webhook-*` actions
//! here.

use maud::{Markup, html};
use trove_store::{NewWebhook, Webhook};

use super::view::{csrf_field, utc};
use super::{Form, Web, WebError};
use crate::api::webhook_audit_details as audit_details;
use crate::audit::Action;
use crate::webhooks::delivery::{self, Target};
use crate::webhooks::{EVENT_KEYS, NetworkRules, SENT};

/// What a `webhook-*` action did.
pub(crate) enum Posted {
    /// Done: redirect with this `done` code.
    Done(&'static str),
    /// Refused: show the form again with this message.
    Bad(String),
    /// A test's answer, to show.
    Said(String),
}

fn event_boxes(checked: &[String]) -> Markup {
    html! {
        fieldset.events {
            legend { "Events" }
            @for key in EVENT_KEYS {
                label.check {
                    input type="checkbox" name=(format!("event:{key}")) value="1" checked[checked.iter().any(|c| c == key)];
                    " " code { (key) }
                    @if !SENT.contains(key) { " " span.muted { "(accepted, never sent)" } }
                }
            }
        }
    }
}

fn fields(h: Option<&NewWebhook>) -> Markup {
    html! {
        input type="text" name="name" placeholder="Name" required value=(h.map(|h| h.name.as_str()).unwrap_or("")) aria-label="Name";
        input type="url" name="url" placeholder="https://ci.example.com/bitbucket-hook/" required value=(h.map(|h| h.url.as_str()).unwrap_or("")) aria-label="URL" spellcheck="false";
        input type="text" name="secret" placeholder=(if h.is_some() { "secret (empty keeps it)" } else { "secret (signs each request)" }) aria-label="Secret" autocomplete="off";
        input type="text" name="username" placeholder="user (Basic auth, optional)" value=(h.and_then(|h| h.username.as_deref()).unwrap_or("")) aria-label="User" autocomplete="off";
        input type="password" name="password" placeholder=(if h.is_some() { "password (empty keeps it)" } else { "password" }) aria-label="Password" autocomplete="new-password";
        label.check { input type="checkbox" name="active" value="1" checked[h.is_none_or(|h| h.active)]; " Active" }
        label.check { input type="checkbox" name="ssl_verify" value="1" checked[h.is_none_or(|h| h.ssl_verify)]; " Verify the TLS certificate" }
    }
}

/// The section, for the settings page posting to `action`.
pub(crate) fn section(w: &Web, action: &str, hooks: &[Webhook]) -> Result<Markup, WebError> {
    let mut rows = Vec::with_capacity(hooks.len());
    for h in hooks {
        rows.push((h, w.state.store.latest_delivery(h.id, None, None)?));
    }
    Ok(html! {
        h2 #webhooks { "Webhooks" }
        p.muted { "Each event is sent as Bitbucket Server sends it (a POST of JSON, signed with the secret in X-Hub-Signature), retried for an hour when the receiver fails, in order for each repository." }
        table.list #webhook-list {
            thead { tr { th { "Name" } th { "URL" } th { "Events" } th { "Last delivery" } th {} } }
            tbody {
                @if rows.is_empty() { tr { td colspan="5" .muted { "No webhook here." } } }
                @for (h, last) in &rows {
                    tr data-webhook=(h.id) {
                        td { (h.hook.name) @if !h.hook.active { " " span.muted { "(inactive)" } } }
                        td { code { (h.hook.url) } }
                        td { (h.hook.events.join(", ")) }
                        td.last-delivery {
                            @match last {
                                None => span.muted { "none yet" },
                                Some(d) => {
                                    @if let Some(a) = &d.last {
                                        strong.outcome { (a.outcome.as_str()) } " " (d.event_key) " at " (utc(a.at / 1000)) " (" (a.duration_ms) " ms)"
                                        br; span.muted { (a.summary.chars().take(200).collect::<String>()) }
                                    }
                                }
                            }
                            @if let Some(until) = h.paused_until.filter(|u| *u > crate::pull_requests::now_ms()) {
                                br; span.muted { "Paused after " (h.failures) " failures in a row, until " (utc(until / 1000)) }
                            }
                        }
                        td {
                            form.inline method="post" action=(action) { (csrf_field(w)) input type="hidden" name="action" value="webhook-test"; input type="hidden" name="id" value=(h.id); button.secondary type="submit" { "Test" } }
                            form.inline method="post" action=(action) { (csrf_field(w)) input type="hidden" name="action" value="webhook-delete"; input type="hidden" name="id" value=(h.id); button.secondary type="submit" { "Delete" } }
                            details {
                                summary { "Edit" }
                                form.card method="post" action=(action) {
                                    (csrf_field(w))
                                    input type="hidden" name="action" value="webhook-update";
                                    input type="hidden" name="id" value=(h.id);
                                    (fields(Some(&h.hook)))
                                    (event_boxes(&h.hook.events))
                                    button type="submit" { "Save" }
                                }
                            }
                        }
                    }
                }
            }
        }
        form.card.spaced method="post" action=(action) #add-webhook {
            (csrf_field(w))
            input type="hidden" name="action" value="webhook-create";
            (fields(None))
            (event_boxes(&["repo:refs_changed".to_owned(), "pr:opened".to_owned(), "pr:from_ref_updated".to_owned()]))
            button type="submit" { "Add webhook" }
        }
    })
}

/// Checks a URL as the REST API does: syntax, then every address of its host.
fn check_url(w: &Web, url: &str) -> Result<Result<(), String>, WebError> {
    let u = match trove_http::HttpUrl::parse(url) {
        Ok(u) => u,
        Err(e) => return Ok(Err(format!("the URL {url:?} is not valid: {e}"))),
    };
    let rules = NetworkRules::load(&w.state.store)?;
    let checked = tokio::runtime::Handle::current().block_on(delivery::allowed_addresses(&rules, u.host(), u.port_or_default()));
    Ok(checked.map(|_| ()).map_err(|e| format!("the URL {url:?} is refused: {e}")))
}

/// The webhook the form describes, over `base`.
fn from_form(form: &Form, mut h: NewWebhook) -> Result<NewWebhook, String> {
    h.name = form.get("name").trim().to_owned();
    if h.name.is_empty() || h.name.chars().count() > 255 {
        return Err("a webhook needs a name of 1 to 255 characters".into());
    }
    h.url = form.get("url").trim().to_owned();
    h.events = EVENT_KEYS.iter().filter(|k| form.get(&format!("event:{k}")) == "1").map(|k| k.to_string()).collect();
    if h.events.is_empty() {
        return Err("choose at least one event".into());
    }
    h.active = form.get("active") == "1";
    h.ssl_verify = form.get("ssl_verify") == "1";
    let secret = form.get("secret").trim();
    if !secret.is_empty() {
        h.secret = Some(secret.to_owned());
    }
    let user = form.get("username").trim();
    h.username = (!user.is_empty()).then(|| user.to_owned());
    let password = form.get("password");
    if !password.is_empty() {
        h.password = Some(password.to_owned());
    }
    if h.username.is_none() {
        h.password = None;
    }
    Ok(h)
}

/// Handles the `webhook-*` actions for the webhooks of `project_id` (and `repo_id`).
pub(crate) fn post(w: &Web, project_id: i64, repo_id: Option<i64>, target: &str, form: &Form) -> Result<Posted, WebError> {
    let store = &w.state.store;
    let mine = |id: &str| -> Result<Webhook, WebError> {
        let id: i64 = id.parse().map_err(|_| WebError::BadRequest("the form names no webhook".into()))?;
        match store.webhook(id)? {
            Some(h) if h.hook.project_id == project_id && h.hook.repo_id == repo_id => Ok(h),
            _ => Err(WebError::NotFound),
        }
    };
    match form.get("action") {
        "webhook-create" => {
            let base = NewWebhook {
                project_id,
                repo_id,
                name: String::new(),
                url: String::new(),
                events: Vec::new(),
                active: true,
                secret: None,
                ssl_verify: true,
                username: None,
                password: None,
            };
            let h = match from_form(form, base) {
                Ok(h) => h,
                Err(m) => return Ok(Posted::Bad(m)),
            };
            if let Err(m) = check_url(w, &h.url)? {
                return Ok(Posted::Bad(m));
            }
            let made = store.create_webhook(&h)?;
            w.audit(Action::WebhookCreate, target, audit_details(&made));
            Ok(Posted::Done("webhook-created"))
        }
        "webhook-update" => {
            let current = mine(form.get("id"))?;
            let h = match from_form(form, current.hook.clone()) {
                Ok(h) => h,
                Err(m) => return Ok(Posted::Bad(m)),
            };
            if h.url != current.hook.url
                && let Err(m) = check_url(w, &h.url)?
            {
                return Ok(Posted::Bad(m));
            }
            if let Some(saved) = store.update_webhook(current.id, &h)? {
                w.audit(Action::WebhookUpdate, target, audit_details(&saved));
            }
            Ok(Posted::Done("webhook-saved"))
        }
        "webhook-delete" => {
            let h = mine(form.get("id"))?;
            store.delete_webhook(h.id)?;
            w.audit(Action::WebhookDelete, target, audit_details(&h));
            Ok(Posted::Done("webhook-deleted"))
        }
        "webhook-test" => {
            let h = mine(form.get("id"))?;
            if let Err(m) = check_url(w, &h.hook.url)? {
                return Ok(Posted::Bad(m));
            }
            let rules = NetworkRules::load(store)?;
            let body = serde_json::json!({"test": true}).to_string();
            let target = Target::of(&h.hook);
            let sent = tokio::runtime::Handle::current().block_on(delivery::send(
                &w.state.webhooks,
                &rules,
                &target,
                "diagnostics:ping",
                &delivery::random_request_id(),
                body.as_bytes(),
            ));
            Ok(Posted::Said(format!(
                "Test of {}: {} ({} ms) {}",
                h.hook.name,
                sent.outcome.as_str(),
                sent.duration_ms,
                sent.summary().chars().take(300).collect::<String>()
            )))
        }
        other => Err(WebError::BadRequest(format!("unknown action {other:?}"))),
    }
}
