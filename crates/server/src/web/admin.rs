//! The administration area (global administrators only): Server settings with the base URL,
//! users, and projects.

use std::collections::HashMap;

use axum::extract::Query;
use http::StatusCode;
use maud::html;
use trove_store::{BaseUrl, GlobalPermission, Password, StoreError, UserName};

use super::view::{Notice, csrf_field, done_notice, notice, page};
use super::{Form, Web, WebResult, see_other, url_encode};

type Q = Query<HashMap<String, String>>;

fn admin_nav(w: &Web, on: &str) -> maud::Markup {
    html! {
        div.crumbs { a href=(w.link("/admin")) { "Administration" } }
        nav.tabs {
            a.on[on == "settings"] href=(w.link("/admin/server-settings")) { "Server settings" }
            a.on[on == "users"] href=(w.link("/admin/users")) { "Users" }
            a.on[on == "projects"] href=(w.link("/admin/projects")) { "Projects" }
        }
    }
}

/// `GET /admin`.
pub(crate) async fn index(w: Web) -> WebResult {
    w.blocking(move |w| {
        w.require_admin()?;
        let users = w.state.store.users()?.len();
        let projects = w.state.store.visible_projects(None, true)?.len();
        let base = w.state.urls.configured_base_url();
        let body = html! {
            h1 { "Administration" }
            div.grid {
                a.card href=(w.link("/admin/server-settings")) { h3 { "Server settings" } p.muted { "Base URL: " (base.as_ref().map(|b| b.as_str()).unwrap_or("not set")) } }
                a.card href=(w.link("/admin/users")) { h3 { "Users" } p.muted { (users) " accounts" } }
                a.card href=(w.link("/admin/projects")) { h3 { "Projects" } p.muted { (projects) " projects" } }
            }
        };
        Ok(page(w, "Administration", body))
    })
    .await
}

/// `GET /admin/server-settings`: the base URL, and what this request looked like, so a proxy
/// that forwards the wrong host or scheme shows up next to the setting it would break.
pub(crate) async fn server_settings(w: Web, Query(q): Q) -> WebResult {
    w.blocking(move |w| {
        w.require_admin()?;
        let current = w.state.urls.configured_base_url().map(|b| b.as_str().to_owned()).unwrap_or_default();
        render_settings(w, &current, done_notice(q.get("done").map(String::as_str)), StatusCode::OK)
    })
    .await
}

fn render_settings(w: &Web, field: &str, note: Option<Notice>, status: StatusCode) -> WebResult {
    let configured = w.state.urls.configured_base_url();
    let seen = w.state.urls.request_url(&w.view);
    let ctx = w.ctx();
    let mismatch = configured.as_ref().is_some_and(|b| format!("{}{}", b.normalized_origin(), b.path()) != seen);
    let path_differs = configured.as_ref().is_some_and(|b| b.path() != ctx);
    let example = w.state.urls.base_url(&w.view);
    let body = html! {
        (admin_nav(w, "settings"))
        h1 { "Server settings" }
        (notice(&note))
        form.card method="post" action=(w.link("/admin/server-settings")) {
            (csrf_field(w))
            div.field {
                label for="base-url" { "Base URL" }
                input #base-url type="text" name="base_url" value=(field) placeholder="https://mycompany.com/stash" spellcheck="false";
                div.help { "The URL people and git use to reach this server, context path included (scheme, host, optional port, path). "
                    "Clone URLs and links in e-mails are built from it. Leave empty to follow each request." }
            }
            button type="submit" { "Save" }
        }
        h2 { "This request" }
        table.list #request-info {
            tbody {
                tr { th { "Your browser reached the server as" } td.mono #request-url { (seen) } }
                tr { th { "Base URL in force" } td.mono #effective-base-url { (configured.as_ref().map(|b| b.as_str()).unwrap_or("(none: each request's own URL)")) } }
                tr { th { "Context path" } td.mono { @if ctx.is_empty() { "(none)" } @else { (ctx) } } }
                tr { th { "Clone URLs look like" } td.mono #clone-example { (example) "/scm/KEY/slug.git" } }
                tr { th { "Reached through a proxy" } td { @if w.view.via_proxy { "yes" } @else { "no (or the proxy is not trusted)" } } }
            }
        }
        @if mismatch {
            div.notice.warn.spaced #mismatch {
                "This page was requested as " code { (seen) } " but the base URL is " code { (configured.as_ref().map(|b| b.as_str()).unwrap_or("")) } ". "
                "If " code { (seen) } " is the public URL, set the base URL to it; if not, make the proxy send the public host and scheme "
                "(ProxyPreserveHost On, X-Forwarded-Proto), or add it to trusted_proxies."
            }
        }
        @if path_differs {
            div.notice.warn.spaced {
                "The base URL's path differs from the context path " code { @if ctx.is_empty() { "/" } @else { (ctx) } } ". "
                "That is right only when the proxy rewrites paths (ProxyPass /x http://…/y); the context path itself is changed in trove.toml and needs a restart."
            }
        }
    };
    let mut r = page(w, "Server settings", body);
    *r.status_mut() = status;
    Ok(r)
}

/// `POST /admin/server-settings`: validates and saves the base URL; it takes effect for clone
/// URLs on the next request, without a restart.
pub(crate) async fn server_settings_post(w: Web, form: Form) -> WebResult {
    w.blocking(move |w| {
        w.check_csrf(&form)?;
        w.require_admin()?;
        let input = form.get("base_url").trim();
        let parsed = if input.is_empty() {
            None
        } else {
            match BaseUrl::parse(input) {
                Ok(b) => Some(b),
                Err(e) => return render_settings(w, input, Some(Notice::Err(e.to_string())), StatusCode::BAD_REQUEST),
            }
        };
        w.state.store.set_base_url(parsed.as_ref())?;
        tracing::info!(base_url = parsed.as_ref().map(|b| b.as_str()).unwrap_or("(none)"), by = %w.user().map(|u| u.name.to_string()).unwrap_or_default(), "base URL changed");
        w.state.urls.set_base_url(parsed);
        Ok(see_other(&w.link("/admin/server-settings?done=saved")))
    })
    .await
}

/// `GET /admin/users`.
pub(crate) async fn users(w: Web, Query(q): Q) -> WebResult {
    w.blocking(move |w| {
        w.require_admin()?;
        render_users(w, done_notice(q.get("done").map(String::as_str)), StatusCode::OK)
    })
    .await
}

fn render_users(w: &Web, note: Option<Notice>, status: StatusCode) -> WebResult {
    let me = w.require_admin()?.name.clone();
    let users = w.state.store.users()?;
    let locks: std::collections::HashMap<String, trove_store::LoginLock> =
        w.state.store.login_locks(&w.state.limiter.policy)?.into_iter().map(|l| (l.user.to_string(), l)).collect();
    let action = w.link("/admin/users");
    let body = html! {
        (admin_nav(w, "users"))
        h1 { "Users" }
        (notice(&note))
        table.list #users {
            thead { tr { th { "User" } th { "Global permission" } th { "Status" } th { "Actions" } } }
            tbody {
                @for u in &users {
                    @let admin = matches!(u.global, Some(GlobalPermission::Admin | GlobalPermission::SysAdmin));
                    tr data-user=(u.name) {
                        td { (u.name) }
                        td { @match u.global { Some(g) => span.badge.admin[admin] { (g.as_str()) }, None => span.badge.off { "none" } } }
                        td {
                            @if u.active { "active" } @else { span.badge.off { "disabled" } }
                            @if let Some(l) = locks.get(u.name.as_str()) {
                                " " span.badge.off.locked title={ (l.failures) " failed logins; password logins over git and REST refused "
                                    @if let Some(t) = l.until { "until " (super::view::utc(t)) } @else { "until cleared" } } { "locked" }
                            }
                        }
                        td {
                            @if locks.contains_key(u.name.as_str()) {
                                form.inline method="post" action=(action) {
                                    (csrf_field(w)) input type="hidden" name="user" value=(u.name);
                                    button.secondary type="submit" name="action" value="unlock" { "Clear failed logins" }
                                }
                                " "
                            }
                            @if u.name != me {
                                form.inline method="post" action=(action) {
                                    (csrf_field(w)) input type="hidden" name="user" value=(u.name);
                                    @if u.active { button.secondary type="submit" name="action" value="disable" { "Disable" } }
                                    @else { button.secondary type="submit" name="action" value="enable" { "Enable" } }
                                    @if admin { button.secondary type="submit" name="action" value="revoke-admin" { "Remove admin" } }
                                    @else { button.secondary type="submit" name="action" value="make-admin" { "Make admin" } }
                                }
                                " "
                            }
                            form.inline method="post" action=(action) {
                                (csrf_field(w)) input type="hidden" name="user" value=(u.name); input type="hidden" name="action" value="reset-password";
                                input type="password" name="password" placeholder="new password" autocomplete="new-password" aria-label={ "New password for " (u.name) };
                                button.secondary type="submit" { "Reset password" }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Create user" }
        form.card method="post" action=(action) #create-user {
            (csrf_field(w))
            input type="hidden" name="action" value="create";
            div.field { label for="new-user" { "Username" } input #new-user type="text" name="user" required autocomplete="off"; }
            div.field { label for="new-password" { "Password" } input #new-password type="password" name="password" required autocomplete="new-password"; div.help { "At least 8 characters." } }
            div.field { label { input type="checkbox" name="admin" value="1"; " Administrator" } }
            button type="submit" { "Create user" }
        }
    };
    let mut r = page(w, "Users", body);
    *r.status_mut() = status;
    Ok(r)
}

/// `POST /admin/users`: create, disable/enable, make or remove admin, reset password, clear
/// failed logins.
pub(crate) async fn users_post(w: Web, form: Form) -> WebResult {
    w.blocking(move |w| {
        w.check_csrf(&form)?;
        let me = w.require_admin()?.name.clone();
        let bad = |msg: String| render_users(w, Some(Notice::Err(msg)), StatusCode::BAD_REQUEST);
        let name = match UserName::parse(form.get("user").trim()) {
            Ok(n) => n,
            Err(e) => return bad(e.to_string()),
        };
        let store = w.state.store.clone();
        let done = |code: &str| Ok(see_other(&w.link(&format!("/admin/users?done={}", url_encode(code)))));
        // An administrator cannot lock themselves out by accident.
        let action = form.get("action");
        if name == me && matches!(action, "disable" | "revoke-admin") {
            return bad("You cannot disable yourself or remove your own administrator permission.".into());
        }
        let result: Result<&str, StoreError> = match action {
            "create" => {
                let pw = match Password::new(form.get("password")) {
                    Ok(p) => p,
                    Err(e) => return bad(e.to_string()),
                };
                let global = if form.get("admin") == "1" { GlobalPermission::Admin } else { GlobalPermission::LicensedUser };
                store.create_user(&name, &pw, global).map(|_| "created")
            }
            "unlock" => store.clear_login_lock(&name).map(|_| "unlocked"),
            "disable" => store.set_user_active(&name, false).map(|_| "user-updated"),
            "enable" => store.set_user_active(&name, true).map(|_| "user-updated"),
            "make-admin" => store.set_global_permission(&name, Some(GlobalPermission::Admin)).map(|_| "user-updated"),
            "revoke-admin" => store.set_global_permission(&name, Some(GlobalPermission::LicensedUser)).map(|_| "user-updated"),
            "reset-password" => {
                let pw = match Password::new(form.get("password")) {
                    Ok(p) => p,
                    Err(e) => return bad(e.to_string()),
                };
                store.set_password(&name, &pw).and_then(|_| if name != me { store.delete_user_sessions(&name) } else { Ok(()) }).map(|_| "saved")
            }
            other => return bad(format!("unknown action {other:?}")),
        };
        match result {
            Ok(code) => done(code),
            Err(e @ (StoreError::UserExists(_) | StoreError::NoSuchUser(_))) => bad(e.to_string()),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

/// `GET /admin/projects`: every project, and the form to create one.
pub(crate) async fn projects(w: Web, Query(q): Q) -> WebResult {
    w.blocking(move |w| {
        w.require_admin()?;
        render_projects(w, done_notice(q.get("done").map(String::as_str)), StatusCode::OK)
    })
    .await
}

fn render_projects(w: &Web, note: Option<Notice>, status: StatusCode) -> WebResult {
    w.require_admin()?;
    let projects = w.state.store.visible_projects(None, true)?;
    let mut rows = Vec::new();
    for p in projects {
        let n = w.state.store.project_repos(&p)?.len();
        rows.push((p, n));
    }
    let body = html! {
        (admin_nav(w, "projects"))
        h1 { "Projects" }
        (notice(&note))
        table.list #admin-projects {
            thead { tr { th { "Key" } th { "Name" } th { "Repositories" } th { "Visibility" } th {} } }
            tbody {
                @for (p, n) in &rows {
                    @let link = w.link(&format!("/projects/{}", url_encode(&p.owner.to_string())));
                    tr {
                        td.mono { a href=(link) { (p.owner) } } td { (p.name) } td { (n) }
                        td { @if p.public { span.badge.public { "public" } } @else { span.badge { "private" } } }
                        td { a href={ (link) "/settings" } { "Settings" } }
                    }
                }
            }
        }
        h2 { "Create project" }
        form.card method="post" action=(w.link("/admin/projects")) #create-project {
            (csrf_field(w))
            div.field { label for="key" { "Key" } input #key type="text" name="key" required placeholder="TP" autocomplete="off"; div.help { "Upper-case letters and digits, starting with a letter, like TP. It appears in URLs." } }
            div.field { label for="name" { "Name" } input #name type="text" name="name" placeholder="Test Project"; }
            div.field { label { input type="checkbox" name="public" value="1"; " Public" } }
            button type="submit" { "Create project" }
        }
    };
    let mut r = page(w, "Projects", body);
    *r.status_mut() = status;
    Ok(r)
}

/// `POST /admin/projects`: create a project, then go to it.
pub(crate) async fn projects_post(w: Web, form: Form) -> WebResult {
    w.blocking(move |w| {
        w.check_csrf(&form)?;
        w.require_admin()?;
        let key = match super::repo::parse_key(form.get("key")) {
            Ok(k) => k,
            Err(msg) => return render_projects(w, Some(Notice::Err(msg)), StatusCode::BAD_REQUEST),
        };
        let name = form.get("name").trim();
        let name = (!name.is_empty()).then_some(name);
        match w.state.store.create_project(&key, name, form.get("public") == "1") {
            Ok(p) => Ok(see_other(&w.link(&format!("/projects/{}?done=created", url_encode(&p.owner.to_string()))))),
            Err(e @ StoreError::ProjectExists(_)) => render_projects(w, Some(Notice::Err(e.to_string())), StatusCode::CONFLICT),
            Err(e) => Err(e.into()),
        }
    })
    .await
}
