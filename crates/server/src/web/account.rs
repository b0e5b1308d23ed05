//! Logging in and out, and the account page: change password, personal access tokens.

use std::collections::HashMap;

use axum::extract::Query;
use axum::response::Response;
use base64::Engine as _;
use http::{StatusCode, header};
use maud::html;
use rand::Rng as _;
use trove_store::os_rng;
use trove_store::{Password, Permission, Store};

use super::view::{Notice, csrf_field, done_notice, notice, page};
use super::{Form, LOGIN_CSRF_COOKIE, SESSION_COOKIE, SESSION_TTL_SECS, Web, WebError, WebResult, constant_time_eq, safe_next, see_other};
use crate::audit::{Action, target};
use crate::auth;
use crate::error::HttpError;
use serde_json::json;

fn random_token() -> String {
    let mut raw = [0u8; 24];
    os_rng().fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// `GET /login`.
pub(crate) async fn login_page(w: Web, Query(q): Query<HashMap<String, String>>) -> WebResult {
    w.blocking(move |w| {
        let next = q.get("next").and_then(|n| safe_next(w.ctx(), n));
        if w.user().is_some() {
            return Ok(see_other(&next.unwrap_or_else(|| w.link("/"))));
        }
        Ok(login_form(w, next.as_deref().unwrap_or(""), "", None, StatusCode::OK))
    })
    .await
}

fn login_form(w: &Web, next: &str, username: &str, note: Option<Notice>, status: StatusCode) -> Response {
    login_form_with(w, next, username, note, None, status)
}

/// The login form; with `challenge`, the locked-account variant whose script solves the
/// challenge before the button can be pressed (`crate::challenge`).
fn login_form_with(w: &Web, next: &str, username: &str, note: Option<Notice>, challenge: Option<String>, status: StatusCode) -> Response {
    let token = random_token();
    let bits = w.state.limiter.challenges.bits;
    let body = html! {
        div.narrow {
            h1 { "Log in" }
            (notice(&note))
            form.card method="post" action=(w.link("/login")) data-pow-challenge=[challenge.as_deref()] data-pow-bits=[challenge.as_ref().map(|_| bits)] {
                input type="hidden" name="csrf" value=(token);
                input type="hidden" name="next" value=(next);
                @if let Some(c) = &challenge {
                    input type="hidden" name="challenge" value=(c);
                    input type="hidden" name="nonce" value="";
                }
                div.field { label for="username" { "Username" } input #username type="text" name="username" value=(username) autocomplete="username" required autofocus[challenge.is_none()]; }
                div.field { label for="password" { "Password" } input #password type="password" name="password" autocomplete="current-password" required autofocus[challenge.is_some()]; }
                @if challenge.is_some() {
                    p.muted #pow-status { "Checking that a person is signing in\u{2026}" }
                    noscript { p.notice.err { "This check needs JavaScript: turn it on, or ask an administrator to unlock the account." } }
                    button type="submit" disabled { "Log in" }
                } @else {
                    button type="submit" { "Log in" }
                }
            }
        }
    };
    let mut r = page(w, "Log in", body);
    *r.status_mut() = status;
    r.headers_mut().append(header::SET_COOKIE, w.cookie(LOGIN_CSRF_COOKIE, &token, Some(3600)));
    r
}

/// `POST /login`: checks the login form's CSRF cookie, then the password through the same
/// failed-login policy and argon2 queue as git's Basic auth; on success starts a new session (a
/// new id every time, so a planted cookie is worthless). A locked account gets the form again
/// with a challenge; solved, it lets the right password in and unlocks the account.
pub(crate) async fn login(w: Web, form: Form) -> WebResult {
    let expected = w.cookies.get(LOGIN_CSRF_COOKIE).map(String::as_str).unwrap_or("");
    if !constant_time_eq(form.get("csrf").as_bytes(), expected.as_bytes()) {
        return Err(WebError::Csrf);
    }
    let next = safe_next(w.ctx(), form.get("next"));
    let next_str = next.as_deref().unwrap_or("");
    let (user, pass) = (form.get("username").trim(), form.get("password"));
    let failed = |w: &Web| login_form(w, next_str, user, Some(Notice::Err("Wrong username or password.".into())), StatusCode::UNAUTHORIZED);
    // Tokens are for git and scripts; the browser takes passwords only. User names never hold
    // `:`, so the Basic encoding is unambiguous.
    if user.is_empty() || user.contains(':') || pass.is_empty() {
        return Ok(failed(&w));
    }
    if Store::looks_like_token(pass) {
        // A login tried and refused, like a wrong password (an empty field above is no try).
        refused_login(&w, user, "token", "tokens do not sign in to the web UI").await;
        return Ok(failed(&w));
    }
    let challenges = &w.state.limiter.challenges;
    let locked_form = |w: &Web, why: String| {
        let challenge = challenges.issue(user, auth::now_unix());
        login_form_with(w, next_str, user, Some(Notice::Err(why)), Some(challenge), StatusCode::TOO_MANY_REQUESTS)
    };
    let passed_challenge = match form.get("challenge") {
        "" => false,
        c => match challenges.verify(user, c, form.get("nonce"), auth::now_unix()) {
            Ok(()) => true,
            Err(e) => {
                refused_login(&w, user, "password", "the locked account's check was not solved").await;
                return Ok(locked_form(&w, format!("This account is locked after too many failed logins, and {e}.")));
            }
        },
    };
    match auth::password_login(&w.state, user, pass.to_owned(), w.view.client_ip, passed_challenge, auth::Channel::Web).await {
        Ok(a) => {
            if passed_challenge {
                tracing::info!(user = %a.user.name, "locked account unlocked by a web sign-in with the challenge");
            }
            let (user_id, old) = (a.user.id, w.session_id.clone());
            let (id, _csrf) = w
                .state
                .store
                .run(move |s| {
                    let new = s.create_session(user_id, SESSION_TTL_SECS)?;
                    if let Some(old) = old {
                        let _ = s.delete_session(&old);
                    }
                    Ok::<_, trove_store::StoreError>(new)
                })
                .await?;
            let mut r = see_other(&next.unwrap_or_else(|| w.link("/")));
            r.headers_mut().append(header::SET_COOKIE, w.cookie(SESSION_COOKIE, &id, None));
            r.headers_mut().append(header::SET_COOKIE, w.cookie(LOGIN_CSRF_COOKIE, "", Some(0)));
            Ok(r)
        }
        Err(HttpError::BadCredentials) if passed_challenge => Ok(locked_form(&w, "Wrong username or password; the account stays locked.".into())),
        Err(HttpError::BadCredentials) => Ok(failed(&w)),
        Err(HttpError::AccountLocked { .. }) => Ok(locked_form(
            &w,
            "This account is locked after too many failed logins. Enter the password again: signing in here, \
             after a short check that runs in this page, unlocks it for git and the REST API too."
                .into(),
        )),
        Err(HttpError::TooManyFailedLogins { retry_after }) => Err(WebError::TooManyFailedLogins(retry_after)),
        Err(e) => Err(WebError::Internal(e.to_string())),
    }
}

/// The audit entry of a sign-in refused before its password was checked (which
/// `auth::password_login` records itself).
async fn refused_login(w: &Web, user: &str, method: &'static str, reason: &'static str) {
    let (w2, name) = (w.clone(), user.to_owned());
    w.state
        .store
        .run(move |_| {
            let details = json!({"channel": "web", "method": method, "reason": reason});
            crate::audit::record(&w2.state, &name, w2.view.client_ip, Action::LoginFailure, &target::user(&name), details);
        })
        .await;
}

/// `POST /logout`: ends the session and clears the cookie.
pub(crate) async fn logout(w: Web, form: Form) -> WebResult {
    w.blocking(move |w| {
        if w.session.is_some() {
            w.check_csrf(&form)?;
        }
        if let Some(id) = &w.session_id {
            w.state.store.delete_session(id)?;
        }
        if let Some(u) = w.user() {
            w.audit(Action::Logout, &target::user(&u.name), json!({"channel": "web"}));
        }
        let mut r = see_other(&w.link("/login"));
        r.headers_mut().append(header::SET_COOKIE, w.cookie(SESSION_COOKIE, "", Some(0)));
        Ok(r)
    })
    .await
}

/// The cookie that carries a token just made from its form's answer (a redirect) to the page
/// that shows it once (post/redirect/get: reloading that page makes no second token). HttpOnly,
/// for two minutes, cleared by the page that shows it.
const NEW_TOKEN_COOKIE: &str = "trove_new_token";

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    let bytes = (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// `GET /account`; shows a token made by the form just before, once.
pub(crate) async fn account_page(w: Web, Query(q): Query<HashMap<String, String>>) -> WebResult {
    w.blocking(move |w| {
        let fresh = w.cookie_value(NEW_TOKEN_COOKIE).and_then(|v| {
            let (name, secret) = v.split_once('.')?;
            Some((unhex(name)?, unhex(secret)?))
        });
        let shown = fresh.is_some();
        let mut r = render_account(w, done_notice(q.get("done").map(String::as_str)).filter(|_| !shown), fresh, StatusCode::OK)?;
        if w.cookie_value(NEW_TOKEN_COOKIE).is_some() {
            r.headers_mut().append(header::SET_COOKIE, w.cookie(NEW_TOKEN_COOKIE, "", Some(0)));
        }
        Ok(r)
    })
    .await
}

fn render_account(w: &Web, note: Option<Notice>, new_token: Option<(String, String)>, status: StatusCode) -> WebResult {
    let user = w.require_user()?;
    let tokens = w.state.store.tokens(user)?;
    let keys = w.state.store.user_ssh_keys(user.id)?;
    let action = w.link("/account");
    let body = html! {
        h1 { "Account: " (user.name) }
        (notice(&note))
        @if let Some((name, secret)) = &new_token {
            div.notice.ok #new-token {
                p { "Token " strong { (name) } " created. Copy it now: it is shown only once." }
                div.clone { input #token-secret.secret type="text" readonly value=(secret); button.secondary type="button" data-copy="token-secret" { "Copy" } }
            }
        }
        h2 { "Profile" }
        p.muted.profile-note { "How others see you: " a href=(w.link(&format!("/users/{}", super::url_encode(user.name.as_str())))) { "your profile" } "." }
        (super::profile::details_form(w, &action, user))
        h2 { "Change password" }
        form.card method="post" action=(action) {
            (csrf_field(w))
            input type="hidden" name="action" value="password";
            div.field { label for="current" { "Current password" } input #current type="password" name="current" autocomplete="current-password" required; }
            div.field { label for="new" { "New password" } input #new type="password" name="new" autocomplete="new-password" required; div.help { "At least 8 characters." } }
            div.field { label for="confirm" { "Confirm new password" } input #confirm type="password" name="confirm" autocomplete="new-password" required; }
            button type="submit" { "Change password" }
        }
        h2 { "Personal access tokens" }
        p.muted { "Use a token instead of your password for git over HTTPS and the REST API." }
        table.list #tokens {
            thead { tr { th { "Name" } th { "Permission" } th { "Created" } th { "Last used" } th {} } }
            tbody {
                @if tokens.is_empty() { tr { td colspan="5" .muted { "No tokens." } } }
                @for t in &tokens {
                    tr {
                        td { (t.name) } td { (t.scope) } td.muted { (super::view::utc(t.created_at)) }
                        td.muted { @if let Some(u) = t.last_used_at { (super::view::utc(u)) } @else { "never" } }
                        td { form.inline method="post" action=(action) { (csrf_field(w)) input type="hidden" name="action" value="revoke-token"; input type="hidden" name="id" value=(t.id); button.secondary type="submit" { "Revoke" } } }
                    }
                }
            }
        }
        form.card.inline.spaced method="post" action=(action) {
            (csrf_field(w))
            input type="hidden" name="action" value="create-token";
            input type="text" name="name" placeholder="token name" required aria-label="Token name";
            select name="scope" aria-label="Token permission" { option value="read" { "read" } option value="write" { "write" } option value="admin" { "admin" } }
            button type="submit" { "Create token" }
        }
        h2 { "SSH keys" }
        @if let Some(ssh) = &w.state.ssh {
            p.muted { "Add your public key (the contents of ~/.ssh/id_ed25519.pub) to clone and push over SSH." }
            p.muted #ssh-host-keys { "The server's host keys: " @for (alg, fp) in &ssh.fingerprints { br; code { (alg) " " (fp) } } }
        } @else {
            p.muted { "SSH is not turned on on this server; keys added here work once it is." }
        }
        table.list #ssh-keys {
            thead { tr { th { "Label" } th { "Key" } th { "Added" } th { "Last used" } th {} } }
            tbody {
                @if keys.is_empty() { tr { td colspan="5" .muted { "No SSH keys." } } }
                @for k in &keys {
                    tr {
                        td { (k.label) } td { code { (k.algorithm) " " (k.fingerprint) } } td.muted { (super::view::utc(k.created_at)) }
                        td.muted { @if let Some(u) = k.last_used_at { (super::view::utc(u)) } @else { "never" } }
                        td { form.inline method="post" action=(action) { (csrf_field(w)) input type="hidden" name="action" value="delete-key"; input type="hidden" name="id" value=(k.id); button.secondary type="submit" { "Delete" } } }
                    }
                }
            }
        }
        form.card.spaced method="post" action=(action) {
            (csrf_field(w))
            input type="hidden" name="action" value="add-key";
            div.field { label for="key-text" { "Public key" } textarea #key-text name="text" rows="3" placeholder="ssh-ed25519 AAAA… you@host" required {} }
            div.field { label for="key-label" { "Label" } input #key-label type="text" name="label" placeholder="optional; the key's comment otherwise"; }
            button type="submit" { "Add key" }
        }
    };
    let mut r = page(w, "Account", body);
    *r.status_mut() = status;
    Ok(r)
}

/// `POST /account`: change password, create or revoke a token.
pub(crate) async fn account_post(w: Web, form: Form) -> WebResult {
    w.blocking(move |w| {
        let user = w.check_csrf(&form)?.clone();
        let bad = |msg: &str| render_account(w, Some(Notice::Err(msg.to_owned())), None, StatusCode::BAD_REQUEST);
        match form.get("action") {
            "details" => match super::profile::save_details(w, &user.name, &form)? {
                Ok(()) => Ok(see_other(&w.link("/account?done=saved"))),
                Err(msg) => bad(&msg),
            },
            "password" => {
                if form.get("new") != form.get("confirm") {
                    return bad("The new passwords do not match.");
                }
                let new = match Password::new(form.get("new")) {
                    Ok(p) => p,
                    Err(e) => return bad(&e.to_string()),
                };
                if w.state.store.verify_password(user.name.as_str(), form.get("current"))?.is_none() {
                    return bad("The current password is wrong.");
                }
                w.state.store.set_password(&user.name, &new)?;
                w.audit(Action::UserPassword, &target::user(&user.name), json!({"own": true}));
                Ok(see_other(&w.link("/account?done=password")))
            }
            "create-token" => {
                let name = form.get("name").trim();
                if name.is_empty() || name.len() > 100 {
                    return bad("Give the token a name of at most 100 characters.");
                }
                let scope: Permission = form.get("scope").parse().map_err(|e: trove_store::PermissionError| WebError::BadRequest(e.to_string()))?;
                let t = w.state.store.create_token(&user.name, name, scope)?;
                w.audit(Action::TokenCreate, &format!("{} token:{}", target::user(&user.name), t.id), json!({"name": name, "scope": scope.as_str()}));
                let mut r = see_other(&w.link("/account?done=token-created#new-token"));
                r.headers_mut().append(header::SET_COOKIE, w.cookie(NEW_TOKEN_COOKIE, &format!("{}.{}", hex(name), hex(&t.secret)), Some(120)));
                Ok(r)
            }
            "add-key" => {
                let new = match crate::ssh::parse_key_text(form.get("text"), Some(form.get("label"))) {
                    Ok(k) => k,
                    Err(e) => return bad(&e.to_string()),
                };
                match w.state.store.insert_user_key(user.id, &new) {
                    Ok(k) => {
                        let details = json!({"label": k.label, "fingerprint": k.fingerprint, "algorithm": k.algorithm});
                        w.audit(Action::SshKeyAdd, &format!("{} ssh-key:{}", target::user(&user.name), k.id), details);
                        Ok(see_other(&w.link("/account?done=key-added")))
                    }
                    Err(trove_store::StoreError::SshKeyExists(_)) => bad("This SSH key is already in use on this server; each key may be added only once."),
                    Err(e) => Err(e.into()),
                }
            }
            "delete-key" => {
                let id: i64 = form.get("id").parse().map_err(|_| WebError::BadRequest("bad key id".into()))?;
                if !w.state.store.delete_user_key(user.id, id)? {
                    return Err(WebError::NotFound);
                }
                w.audit(Action::SshKeyDelete, &format!("{} ssh-key:{id}", target::user(&user.name)), json!({}));
                Ok(see_other(&w.link("/account?done=key-deleted")))
            }
            "revoke-token" => {
                let id: i64 = form.get("id").parse().map_err(|_| WebError::BadRequest("bad token id".into()))?;
                if !w.state.store.revoke_token(&user, id)? {
                    return Err(WebError::NotFound);
                }
                w.audit(Action::TokenRevoke, &format!("{} token:{id}", target::user(&user.name)), json!({}));
                Ok(see_other(&w.link("/account?done=token-revoked")))
            }
            other => Err(WebError::BadRequest(format!("unknown action {other:?}"))),
        }
    })
    .await
}
