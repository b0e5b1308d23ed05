//! The administration area (global administrators only): Server settings with the base URL,
//! users, groups and their members, projects, and the audit log.

use std::collections::HashMap;

use axum::extract::Query;
use http::StatusCode;
use maud::html;
use trove_store::{BaseUrl, GlobalPermission, Group, GroupName, Password, StoreError, UserName};

use super::view::{Notice, csrf_field, done_notice, notice, page};
use super::{Form, Web, WebError, WebResult, see_other, url_encode};
use crate::access::{self, GroupRefusal};
use crate::audit::{Action, target};
use serde_json::json;

type Q = Query<HashMap<String, String>>;

fn admin_nav(w: &Web, on: &str) -> maud::Markup {
    html! {
        div.crumbs { a href=(w.link("/admin")) { "Administration" } }
        nav.tabs aria-label="Administration" {
            a.on[on == "settings"] href=(w.link("/admin/server-settings")) { "Server settings" }
            a.on[on == "users"] href=(w.link("/admin/users")) { "Users" }
            a.on[on == "groups"] href=(w.link("/admin/groups")) { "Groups" }
            a.on[on == "projects"] href=(w.link("/admin/projects")) { "Projects" }
            a.on[on == "audit"] href=(w.link("/admin/audit")) { "Audit log" }
        }
    }
}

/// `GET /admin`.
pub(crate) async fn index(w: Web) -> WebResult {
    w.blocking(move |w| {
        w.require_admin()?;
        let users = w.state.store.users()?.len();
        let groups = w.state.store.groups()?.len();
        let projects = w.state.store.visible_projects(None, true)?.len();
        let base = w.state.urls.configured_base_url();
        let body = html! {
            h1 { "Administration" }
            div.grid {
                a.card href=(w.link("/admin/server-settings")) { h3 { "Server settings" } p.muted { "Base URL: " (base.as_ref().map(|b| b.as_str()).unwrap_or("not set")) } }
                a.card href=(w.link("/admin/users")) { h3 { "Users" } p.muted { (users) " accounts" } }
                a.card href=(w.link("/admin/groups")) { h3 { "Groups" } p.muted { (groups) " groups" } }
                a.card href=(w.link("/admin/projects")) { h3 { "Projects" } p.muted { (projects) " projects" } }
                a.card href=(w.link("/admin/audit")) { h3 { "Audit log" } p.muted { "Who changed what, every login and push" } }
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
    let rules = crate::webhooks::NetworkRules::load(&w.state.store)?;
    let lines = |l: &[ipnet::IpNet]| l.iter().map(|n| n.to_string()).collect::<Vec<_>>().join("\n");
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
        h2 #webhook-networks { "Webhook networks" }
        form.card method="post" action=(w.link("/admin/server-settings")) {
            (csrf_field(w))
            input type="hidden" name="action" value="webhook-networks";
            div.field {
                label for="webhook-allow" { "Allowed networks" }
                textarea #webhook-allow name="allow" rows="3" placeholder="127.0.0.0/8" spellcheck="false" { (lines(&rules.allow)) }
                div.help { "One network (CIDR, or an address) per line. Webhooks may reach these even when refused by default: "
                    "loopback, link-local (169.254.0.0/16, fe80::/10), cloud metadata, multicast and unspecified addresses. Every node follows at once." }
            }
            div.field {
                label for="webhook-deny" { "Denied networks" }
                textarea #webhook-deny name="deny" rows="3" placeholder="10.20.0.0/16" spellcheck="false" { (lines(&rules.deny)) }
                div.help { "Webhooks may not reach these (private networks are allowed unless listed here). The most specific listed network decides; deny wins a tie." }
            }
            button type="submit" { "Save networks" }
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
        if form.get("action") == "webhook-networks" {
            let current = w.state.urls.configured_base_url().map(|b| b.as_str().to_owned()).unwrap_or_default();
            let mut rules = crate::webhooks::NetworkRules::default();
            for (field, allow) in [("allow", true), ("deny", false)] {
                for line in form.get(field).lines().map(str::trim).filter(|l| !l.is_empty()) {
                    match crate::webhooks::parse_network(line) {
                        Ok(n) if allow => rules.allow(n),
                        Ok(n) => rules.deny(n),
                        Err(m) => return render_settings(w, &current, Some(Notice::Err(m)), StatusCode::BAD_REQUEST),
                    }
                }
            }
            let before = crate::webhooks::NetworkRules::load(&w.state.store)?;
            rules.save(&w.state.store)?;
            let shown = |r: &crate::webhooks::NetworkRules| {
                json!({"allow": r.allow.iter().map(|n| n.to_string()).collect::<Vec<_>>(), "deny": r.deny.iter().map(|n| n.to_string()).collect::<Vec<_>>()})
            };
            w.audit(Action::SettingsUpdate, &target::setting("webhook_networks"), json!({"from": shown(&before), "to": shown(&rules)}));
            return Ok(see_other(&w.link("/admin/server-settings?done=saved#webhook-networks")));
        }
        let input = form.get("base_url").trim();
        let parsed = if input.is_empty() {
            None
        } else {
            match BaseUrl::parse(input) {
                Ok(b) => Some(b),
                Err(e) => return render_settings(w, input, Some(Notice::Err(e.to_string())), StatusCode::BAD_REQUEST),
            }
        };
        let before = w.state.store.base_url()?;
        w.state.store.set_base_url(parsed.as_ref())?;
        let shown = |b: Option<&BaseUrl>| b.map(|b| b.as_str().to_owned());
        w.audit(Action::SettingsUpdate, &target::setting("base_url"), json!({"from": shown(before.as_ref()), "to": shown(parsed.as_ref())}));
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
                    // The buttons change the user's own permission; a group's shows beside it.
                    @let admin = matches!(u.own_global, Some(GlobalPermission::Admin | GlobalPermission::SysAdmin));
                    tr data-user=(u.name) {
                        td { a href=(w.link(&format!("/admin/users/view?name={}", url_encode(u.name.as_str())))) { (u.name) } }
                        td {
                            @match u.own_global { Some(g) => span.badge.admin[admin] { (g.as_str()) }, None => span.badge.off { "none" } }
                            @if let Some(g) = u.global.filter(|_| u.global > u.own_global) {
                                " " span.badge.admin.via-group title="through a group" { (g.as_str()) " (group)" }
                            }
                        }
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
        let who = target::user(&name);
        let previous = || store.user(&name).map(|u| u.and_then(|u| u.own_global).map(|g| g.as_str()));
        let result: Result<&str, StoreError> = match action {
            "create" => {
                let pw = match Password::new(form.get("password")) {
                    Ok(p) => p,
                    Err(e) => return bad(e.to_string()),
                };
                let global = if form.get("admin") == "1" { GlobalPermission::Admin } else { GlobalPermission::LicensedUser };
                store.create_user(&name, &pw, global).map(|_| {
                    w.audit(Action::UserCreate, &who, json!({"global": global.as_str()}));
                    "created"
                })
            }
            "unlock" => store.clear_login_lock(&name).map(|cleared| {
                if cleared {
                    w.audit(Action::UserUnlock, &who, json!({}));
                }
                "unlocked"
            }),
            "disable" | "enable" => {
                let active = action == "enable";
                store.set_user_active(&name, active).map(|_| {
                    w.audit(Action::UserUpdate, &who, json!({ "active": active }));
                    "user-updated"
                })
            }
            "make-admin" | "revoke-admin" => {
                let to = if action == "make-admin" { GlobalPermission::Admin } else { GlobalPermission::LicensedUser };
                previous().and_then(|before| {
                    store.set_global_permission(&name, Some(to))?;
                    w.audit(Action::PermissionGrant, &format!("global {who}"), json!({"permission": to.as_str(), "previous": before}));
                    Ok("user-updated")
                })
            }
            "reset-password" => {
                let pw = match Password::new(form.get("password")) {
                    Ok(p) => p,
                    Err(e) => return bad(e.to_string()),
                };
                store.set_password(&name, &pw).and_then(|_| if name != me { store.delete_user_sessions(&name) } else { Ok(()) }).map(|_| {
                    w.audit(Action::UserPassword, &who, json!({"sessionsEnded": name != me}));
                    "saved"
                })
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
            Ok(p) => {
                w.audit(Action::ProjectCreate, &target::project(&p.owner), json!({"name": p.name, "public": p.public}));
                Ok(see_other(&w.link(&format!("/projects/{}?done=created", url_encode(&p.owner.to_string())))))
            }
            Err(e @ StoreError::ProjectExists(_)) => render_projects(w, Some(Notice::Err(e.to_string())), StatusCode::CONFLICT),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

/// `GET /admin/groups`: every group with its global permission, members and grants; the form to
/// create one.
pub(crate) async fn groups(w: Web, Query(q): Q) -> WebResult {
    w.blocking(move |w| {
        w.require_admin()?;
        render_groups(w, done_notice(q.get("done").map(String::as_str)), StatusCode::OK)
    })
    .await
}

fn group_link(w: &Web, g: &GroupName) -> String {
    w.link(&format!("/admin/groups/members?group={}", url_encode(g.as_str())))
}

fn render_groups(w: &Web, note: Option<Notice>, status: StatusCode) -> WebResult {
    w.require_admin()?;
    let mut rows = Vec::new();
    for g in w.state.store.groups()? {
        let members = w.state.store.group_members(&g)?.len();
        let grants = w.state.store.group_grant_count(g.id)?;
        rows.push((g, members, grants));
    }
    let action = w.link("/admin/groups");
    let body = html! {
        (admin_nav(w, "groups"))
        h1 { "Groups" }
        (notice(&note))
        p.muted { "Every member of a group holds what the group is granted, globally (below) and on projects and repositories (their settings)." }
        table.list #groups {
            thead { tr { th { "Group" } th { "Global permission" } th { "Members" } th { "Grants" } th { "Actions" } } }
            tbody {
                @if rows.is_empty() { tr { td colspan="5" .muted { "No groups yet." } } }
                @for (g, members, grants) in &rows {
                    // Deleting a group that grants something takes permissions away from its
                    // members: that needs the name typed, as deleting a project does.
                    @let grants_something = g.global.is_some() || *grants > 0;
                    tr data-group=(g.name) {
                        td { a href=(group_link(w, &g.name)) { (g.name) } }
                        td { @match g.global { Some(p) => span.badge.admin[p >= GlobalPermission::Admin] { (p.as_str()) }, None => span.muted { "none" } } }
                        td { (members) }
                        td { (grants) " project and repository grants" }
                        td {
                            form.inline method="post" action=(action) {
                                (csrf_field(w))
                                input type="hidden" name="action" value="delete";
                                input type="hidden" name="group" value=(g.name);
                                @if grants_something {
                                    input type="text" name="confirm" autocomplete="off" placeholder={ "type " (g.name) " to confirm" } aria-label={ "Type " (g.name) " to confirm" };
                                }
                                button.danger type="submit" { "Delete" }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Create group" }
        form.card method="post" action=(action) #create-group {
            (csrf_field(w))
            input type="hidden" name="action" value="create";
            div.field { label for="new-group" { "Name" } input #new-group type="text" name="group" required autocomplete="off" placeholder="developers"; div.help { "Names ignore case: Developers and developers are one group." } }
            button type="submit" { "Create group" }
        }
    };
    let mut r = page(w, "Groups", body);
    *r.status_mut() = status;
    Ok(r)
}

/// A refused group change as a page's notice, with its status: 403 for a group above the
/// administrator, 409 for a change that would lower their own permission.
fn refusal(e: GroupRefusal) -> Result<(String, StatusCode), WebError> {
    match e {
        GroupRefusal::AboveCaller(what) => Ok((format!("{what} is above your own global permission; ask a system administrator."), StatusCode::FORBIDDEN)),
        GroupRefusal::LowersCaller => Ok(("That would lower your own permission; ask another administrator.".into(), StatusCode::CONFLICT)),
        GroupRefusal::Store(e) => Err(e.into()),
    }
}

fn find_group(w: &Web, raw: &str) -> Result<Option<Group>, WebError> {
    match GroupName::parse(raw.trim()) {
        Ok(n) => Ok(w.state.store.group(&n)?),
        Err(_) => Ok(None),
    }
}

/// `POST /admin/groups`: create or delete a group.
pub(crate) async fn groups_post(w: Web, form: Form) -> WebResult {
    w.blocking(move |w| {
        w.check_csrf(&form)?;
        w.require_admin()?;
        let who = w.who().ok_or(WebError::Forbidden)?;
        let fail = |msg: String, status| render_groups(w, Some(Notice::Err(msg)), status);
        match form.get("action") {
            "create" => {
                let name = match GroupName::parse(form.get("group").trim()) {
                    Ok(n) => n,
                    Err(e) => return fail(e.to_string(), StatusCode::BAD_REQUEST),
                };
                match w.state.store.insert_group(&name) {
                    Ok(g) => {
                        w.audit(Action::GroupCreate, &target::group(&g.name), json!({}));
                        Ok(see_other(&format!("{}&done=created", group_link(w, &g.name))))
                    }
                    Err(e @ StoreError::GroupExists(_)) => fail(e.to_string(), StatusCode::CONFLICT),
                    Err(e) => Err(e.into()),
                }
            }
            "delete" => {
                let Some(g) = find_group(w, form.get("group"))? else {
                    return fail(format!("group {} does not exist", form.get("group")), StatusCode::NOT_FOUND);
                };
                if (g.global.is_some() || w.state.store.group_grant_count(g.id)? > 0) && form.get("confirm") != g.name.as_str() {
                    return fail(
                        format!("group {} grants permissions to its members: type {} to confirm the deletion", g.name, g.name),
                        StatusCode::BAD_REQUEST,
                    );
                }
                if let Err(e) = access::group_global_change(&w.state.store, &who, &g, None) {
                    let (msg, status) = refusal(e)?;
                    return fail(msg, status);
                }
                w.state.store.delete_group(&g.name)?;
                w.audit(Action::GroupDelete, &target::group(&g.name), json!({"global": g.global.map(|p| p.as_str())}));
                Ok(see_other(&w.link("/admin/groups?done=deleted")))
            }
            other => Err(WebError::BadRequest(format!("unknown action {other:?}"))),
        }
    })
    .await
}

/// `GET /admin/groups/members?group=NAME`: a group's members and global permission.
pub(crate) async fn group_members(w: Web, Query(q): Q) -> WebResult {
    w.blocking(move |w| {
        w.require_admin()?;
        let raw = q.get("group").map(String::as_str).unwrap_or("");
        render_group(w, raw, done_notice(q.get("done").map(String::as_str)), StatusCode::OK)
    })
    .await
}

fn render_group(w: &Web, raw: &str, note: Option<Notice>, status: StatusCode) -> WebResult {
    w.require_admin()?;
    let g = find_group(w, raw)?.ok_or(WebError::NotFound)?;
    let members = w.state.store.group_members(&g)?;
    let action = w.link("/admin/groups/members");
    let levels = [GlobalPermission::LicensedUser, GlobalPermission::ProjectCreate, GlobalPermission::Admin, GlobalPermission::SysAdmin];
    let body = html! {
        div.crumbs { a href=(w.link("/admin")) { "Administration" } " / " a href=(w.link("/admin/groups")) { "Groups" } }
        h1 { "Group " (g.name) }
        (notice(&note))
        h2 { "Global permission" }
        form.card.inline.spaced method="post" action=(action) #group-global {
            (csrf_field(w))
            input type="hidden" name="action" value="global";
            input type="hidden" name="group" value=(g.name);
            select name="permission" aria-label="Global permission" {
                option value="none" selected[g.global.is_none()] { "none" }
                @for p in levels { option value=(p.as_str()) selected[g.global == Some(p)] { (p.as_str()) } }
            }
            button type="submit" { "Save" }
        }
        h2 { "Members" }
        table.list #members {
            thead { tr { th { "User" } th { "Name" } th {} } }
            tbody {
                @if members.is_empty() { tr { td colspan="3" .muted { "No members yet." } } }
                @for u in &members {
                    tr data-user=(u.name) {
                        td { (u.name) } td { (u.display_name) }
                        td { form.inline method="post" action=(action) {
                            (csrf_field(w))
                            input type="hidden" name="action" value="remove";
                            input type="hidden" name="group" value=(g.name);
                            input type="hidden" name="user" value=(u.name);
                            button.secondary type="submit" { "Remove" }
                        } }
                    }
                }
            }
        }
        form.card.inline.spaced method="post" action=(action) #add-member {
            (csrf_field(w))
            input type="hidden" name="action" value="add";
            input type="hidden" name="group" value=(g.name);
            input type="text" name="user" placeholder="user name" required aria-label="User name";
            button type="submit" { "Add member" }
        }
    };
    let mut r = page(w, &format!("Group {}", g.name), body);
    *r.status_mut() = status;
    Ok(r)
}

/// `POST /admin/groups/members`: add or remove a member, or set the global permission.
pub(crate) async fn group_members_post(w: Web, form: Form) -> WebResult {
    w.blocking(move |w| {
        w.check_csrf(&form)?;
        w.require_admin()?;
        let who = w.who().ok_or(WebError::Forbidden)?;
        let raw = form.get("group");
        let g = find_group(w, raw)?.ok_or(WebError::NotFound)?;
        let fail = |msg: String, status| render_group(w, raw, Some(Notice::Err(msg)), status);
        let here = |code: &str| Ok(see_other(&format!("{}&done={code}", group_link(w, &g.name))));
        match form.get("action") {
            action @ ("add" | "remove") => {
                let user = match UserName::parse(form.get("user").trim()) {
                    Ok(n) => n,
                    Err(e) => return fail(e.to_string(), StatusCode::BAD_REQUEST),
                };
                let Some(u) = w.state.store.user(&user)? else { return fail(format!("user {user} does not exist"), StatusCode::BAD_REQUEST) };
                let adding = action == "add";
                if let Err(e) = access::group_member_change(&w.state.store, &who, &g, &u, adding) {
                    let (msg, status) = refusal(e)?;
                    return fail(msg, status);
                }
                let membership = format!("{} {}", target::group(&g.name), target::user(&u.name));
                if adding {
                    w.state.store.add_group_member(&g.name, &u.name)?;
                    w.audit(Action::GroupMemberAdd, &membership, json!({}));
                    here("member-added")
                } else {
                    w.state.store.remove_group_member(&g.name, &u.name)?;
                    w.audit(Action::GroupMemberRemove, &membership, json!({}));
                    here("member-removed")
                }
            }
            "global" => {
                let to = match form.get("permission") {
                    "none" => None,
                    p => match p.parse::<GlobalPermission>() {
                        Ok(p) => Some(p),
                        Err(e) => return fail(e.to_string(), StatusCode::BAD_REQUEST),
                    },
                };
                if let Err(e) = access::group_global_change(&w.state.store, &who, &g, to) {
                    let (msg, status) = refusal(e)?;
                    return fail(msg, status);
                }
                w.state.store.set_group_global_permission(&g.name, to)?;
                let (action, details) = match to {
                    Some(p) => (Action::PermissionGrant, json!({"permission": p.as_str(), "previous": g.global.map(|p| p.as_str())})),
                    None => (Action::PermissionRevoke, json!({"previous": g.global.map(|p| p.as_str())})),
                };
                w.audit(action, &format!("global {}", target::group(&g.name)), details);
                here("saved")
            }
            other => Err(WebError::BadRequest(format!("unknown action {other:?}"))),
        }
    })
    .await
}

/// Entries on one page of the audit log.
const AUDIT_PAGE: usize = 50;

/// `GET /admin/audit?actor=&action=&target=&from=&to=&start=`: the audit log, newest first,
/// with the same filters as `GET /rest/api/1.0/admin/audit`.
pub(crate) async fn audit(w: Web, Query(q): Q) -> WebResult {
    w.blocking(move |w| {
        w.require_admin()?;
        let field = |k: &str| q.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
        let (actor, action, target, from, to) = (field("actor"), field("action"), field("target"), field("from"), field("to"));
        let start = q.get("start").and_then(|s| s.parse::<usize>().ok()).unwrap_or(0);
        let mut errors = Vec::new();
        let mut time = |name: &str, v: &str| {
            if v.is_empty() {
                return None;
            }
            let t = crate::audit::parse_time(v);
            if t.is_none() {
                errors.push(format!("{name}: {v:?} is not a date (2026-12-02), a time in UTC (2026-12-02T17:18) or Unix milliseconds."));
            }
            t
        };
        let (from_ms, to_ms) = (time("From", &from), time("To", &to));
        let some = |s: &String| (!s.is_empty()).then(|| s.clone());
        let query = trove_store::AuditQuery {
            actor: some(&actor),
            action: some(&action),
            target: some(&target),
            from: from_ms,
            to: to_ms,
            oldest_first: false,
            start,
            limit: AUDIT_PAGE,
        };
        let (entries, more) = if errors.is_empty() { w.state.store.audit_entries(&query)? } else { (Vec::new(), false) };
        let here = |start: usize| {
            let mut link = format!("/admin/audit?start={start}");
            for (k, v) in [("actor", &actor), ("action", &action), ("target", &target), ("from", &from), ("to", &to)] {
                if !v.is_empty() {
                    link.push_str(&format!("&{k}={}", url_encode(v)));
                }
            }
            w.link(&link)
        };
        let body = html! {
            (admin_nav(w, "audit"))
            h1 { "Audit log" }
            @for e in &errors { div.notice.err { (e) } }
            form.card.inline.spaced method="get" action=(w.link("/admin/audit")) #audit-filter {
                input type="text" name="actor" value=(actor) placeholder="actor" aria-label="Actor" autocomplete="off";
                input type="text" name="action" value=(action) placeholder="action (user.*)" aria-label="Action" list="audit-actions" autocomplete="off";
                datalist #audit-actions { @for a in crate::audit::Action::ALL { option value=(a.as_str()) {} } }
                input type="text" name="target" value=(target) placeholder="target contains" aria-label="Target contains" autocomplete="off";
                input type="text" name="from" value=(from) placeholder="from 2026-12-01" aria-label="From (UTC)" autocomplete="off";
                input type="text" name="to" value=(to) placeholder="to 2026-12-02T18:00" aria-label="To (UTC)" autocomplete="off";
                button type="submit" { "Filter" }
                @if !(actor.is_empty() && action.is_empty() && target.is_empty() && from.is_empty() && to.is_empty()) {
                    a href=(w.link("/admin/audit")) { "Clear" }
                }
            }
            table.list #audit {
                thead { tr { th { "Time (UTC)" } th { "Actor" } th { "Address" } th { "Action" } th { "Target" } th { "Details" } } }
                tbody {
                    @if entries.is_empty() { tr { td colspan="6" .muted { "No entries." } } }
                    @for e in &entries {
                        tr data-id=(e.id) {
                            td.mono.small { (crate::audit::iso8601(e.at)) }
                            td { (e.actor) }
                            td.mono.small { (e.address.as_deref().unwrap_or("-")) }
                            td.mono { (e.action) }
                            td.mono.small { (e.target) }
                            td { code.small { (e.details) } }
                        }
                    }
                }
            }
            div.spaced {
                @if start > 0 { a #newer href=(here(start.saturating_sub(AUDIT_PAGE))) { "\u{2190} Newer" } " " }
                @if more { a #older href=(here(start + AUDIT_PAGE)) { "Older \u{2192}" } }
            }
            p.muted.small { "Also written, one JSON object a line, to " code { (crate::audit::FILE_NAME) } " in the data directory. "
                "Entries older than the retention ([audit] retention_days in trove.toml) are deleted from here once a day." }
        };
        Ok(page(w, "Audit log", body))
    })
    .await
}
