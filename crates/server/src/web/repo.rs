//! Projects and repositories: the dashboard, a project's repositories, browsing files at a
//! branch or tag, history, a commit's diff, and the project and repository settings pages
//! (their branch permissions in `branch_permissions.rs`).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use maud::{Markup, PreEscaped, html};
use trove_store::{Group, GroupName, Owner, Permission, Project, ProjectKey, Repo, RepoSlug, RestrictionScope, UserName};

use super::view::{Notice, csrf_field, done_notice, notice, page};
use super::{Form, Web, WebError, WebResult, branch_permissions, markdown, see_other, url_encode, webhooks};
use crate::access::{self, AccessError};
use crate::audit::{Action, target};
use crate::branch_permissions::ScopeOf;
use crate::repo_read::{LogQuery, ReadError, Reader, Refs, Resolved, valid_path};
use serde_json::json;

type Q = Query<HashMap<String, String>>;

fn seg<T>(p: Result<Path<T>, PathRejection>) -> Result<T, WebError> {
    p.map(|Path(t)| t).map_err(|_| WebError::NotFound)
}

fn project_link(w: &Web, owner: &Owner) -> String {
    w.link(&format!("/projects/{}", url_encode(&owner.to_string())))
}

pub(crate) fn repo_link(w: &Web, repo: &Repo, rest: &str) -> String {
    w.link(&format!("/projects/{}/repos/{}{rest}", url_encode(&repo.owner.to_string()), repo.slug))
}

/// Renders the access service's refusal as pages do: anonymous callers are sent to log in
/// (they may see more once logged in), others get 404 or 403.
fn refused(w: &Web, e: AccessError) -> WebError {
    match e {
        AccessError::Anonymous(_) => w.require_user().err().unwrap_or(WebError::NotFound),
        AccessError::Hidden(_) => WebError::NotFound,
        AccessError::Forbidden(_) => WebError::Forbidden,
        AccessError::Store(e) => e.into(),
    }
}

/// The project `key` and the caller's permission on it, if the access service lets them do
/// `need` with it (`None`: see it).
fn project_access(w: &Web, key: &str, need: Option<Permission>) -> Result<(Project, Option<Permission>), WebError> {
    let who = w.who();
    access::project(&w.state.store, who.as_ref(), key, need).map(|a| (a.project.as_project(), a.level)).map_err(|e| refused(w, e))
}

/// The project page for `key` and whether the caller administers it (may create repositories
/// there). A user's personal page (`~alice`) is also their profile, which exists for every
/// logged-in caller, as Bitbucket's profile does (REST's user `links.self` leads here): it
/// lists only the repositories the caller may read; its project row is made with the first
/// personal repository.
fn project_page_for(w: &Web, key: &str) -> Result<(Project, bool), WebError> {
    match project_access(w, key, None) {
        Ok((p, level)) => Ok((p, level == Some(Permission::Admin))),
        Err(WebError::NotFound) if w.user().is_some() => {
            let Ok(Owner::User(name)) = Owner::parse(key) else { return Err(WebError::NotFound) };
            let Some(u) = w.state.store.user(&name)? else { return Err(WebError::NotFound) };
            let owner = Owner::User(name);
            let who = w.who();
            let admin = access::create_repo(&w.state.store, who.as_ref(), key).is_ok();
            let project = match w.state.store.project_info(&owner)? {
                Some(info) => info.as_project(),
                None => Project { id: -1, owner, name: u.display_name, public: false },
            };
            Ok((project, admin))
        }
        Err(e) => Err(e),
    }
}

/// The repository and the caller's permission on it, if the access service lets them do
/// `need` with it.
/// [`repo_access`] from async code: the lookup runs on the store's blocking pool.
async fn repo_access_async(w: &Web, key: &str, slug: &str, need: Permission) -> Result<(Repo, Permission), WebError> {
    let (key, slug) = (key.to_owned(), slug.to_owned());
    w.clone().blocking(move |w| repo_access(w, &key, &slug, need)).await
}

fn repo_access(w: &Web, key: &str, slug: &str, need: Permission) -> Result<(Repo, Permission), WebError> {
    let who = w.who();
    access::repo(&w.state.store, who.as_ref(), key, slug, need).map(|a| (a.repo, a.level)).map_err(|e| w.repo_refusal(key, slug, e, |e| refused(w, e)))
}

fn visibility(public: bool) -> Markup {
    html! { @if public { span.badge.public { "public" } } @else { span.badge { "private" } } }
}

// ---- dashboard and projects ----

/// `GET /`, `/dashboard` and `/projects`: the projects the caller may see; on the first two,
/// after the signed-in caller's pull requests ("Your work").
pub(crate) async fn dashboard(w: Web, uri: http::Uri) -> WebResult {
    w.blocking(move |w| {
        let work = if uri.path() == w.link("/projects") { None } else { super::pull_requests::your_work(w)? };
        let projects = w.state.store.visible_projects(w.user(), w.is_admin())?;
        let base = w.state.urls.base_url(&w.view);
        let body = html! {
            @if let Some(work) = work { (work) }
            h1 { "Projects" }
            @if projects.is_empty() {
                div.card { p.muted { "No projects to show." @if w.user().is_none() { " " a href=(w.link("/login")) { "Log in" } " to see yours." } } }
            } @else {
                table.list #projects {
                    thead { tr { th { "Key" } th { "Project" } th { "Visibility" } } }
                    tbody {
                        @for p in &projects {
                            tr {
                                td.mono { a href=(project_link(w, &p.owner)) { (p.owner) } }
                                td { a href=(project_link(w, &p.owner)) { (p.name) } }
                                td { (visibility(p.public)) }
                            }
                        }
                    }
                }
            }
            p.muted { "Clone URLs look like " code.clone-hint { (base) "/scm/KEY/slug.git" } }
            @if w.is_admin() { p { a href=(w.link("/admin/projects")) { "Create a project" } } }
        };
        Ok(page(w, "Projects", body))
    })
    .await
}

/// `GET /projects/{KEY}`: the project's repositories the caller may read.
pub(crate) async fn project_page(w: Web, key: Result<Path<String>, PathRejection>, Query(q): Q) -> WebResult {
    w.blocking(move |w| {
        let key = seg(key)?;
        render_project(w, &key, done_notice(q.get("done").map(String::as_str)), StatusCode::OK)
    })
    .await
}

fn render_project(w: &Web, key: &str, note: Option<Notice>, status: StatusCode) -> WebResult {
    let (project, admin) = project_page_for(w, key)?;
    let who = w.who();
    let mut repos = Vec::new();
    for r in w.state.store.project_repos(&project)? {
        if w.state.store.permission(who.as_ref(), &r)?.is_some() {
            repos.push(r);
        }
    }
    let body = html! {
        div.crumbs { a href=(w.link("/projects")) { "Projects" } }
        h1 { (project.name) " " span.muted.mono { "(" (project.owner) ")" } " " (visibility(project.public)) }
        (notice(&note))
        @if repos.is_empty() {
            div.card { p.muted { "This project has no repositories you can see." } }
        } @else {
            table.list #repos {
                thead { tr { th { "Repository" } th { "Visibility" } } }
                tbody {
                    @for r in &repos {
                        tr { td { a href=(repo_link(w, r, "/browse")) { (r.name) } } td { (visibility(r.public || r.project_public)) } }
                    }
                }
            }
        }
        @if admin {
            h2 { "Create repository" }
            form.card method="post" action=(project_link(w, &project.owner)) {
                (csrf_field(w))
                div.field { label for="slug" { "Name" } input #slug type="text" name="name" required maxlength=(trove_store::MAX_NAME_LEN) placeholder="My repository";
                    div.help { "Any name; its slug (lower case, other characters as '-', like my-repository) becomes part of the clone URL." } }
                div.field { label { input type="checkbox" name="public" value="1"; " Public (anyone can read and clone it)" } }
                button type="submit" { "Create repository" }
            }
            // A personal project has settings once its first repository made its row.
            @if project.id >= 0 { p { a href=(w.link(&format!("/projects/{}/settings", url_encode(&project.owner.to_string())))) { "Project settings and permissions" } } }
        }
    };
    let mut r = page(w, &project.name, body);
    *r.status_mut() = status;
    Ok(r)
}

/// `POST /projects/{KEY}`: create a repository (project administrators).
pub(crate) async fn create_repo(w: Web, key: Result<Path<String>, PathRejection>, form: Form) -> WebResult {
    w.blocking(move |w| {
        let key = seg(key)?;
        w.check_csrf(&form)?;
        let who = w.who();
        let owner = access::create_repo(&w.state.store, who.as_ref(), &key).map_err(|e| refused(w, e))?;
        // A name, as in Bitbucket and our REST API: "My Repo" is shown as is and gets the slug
        // `my-repo` for its URLs.
        let name = form.get("name").trim();
        let name = if name.is_empty() { form.get("slug").trim() } else { name };
        let bad = |msg: String| render_project(w, &key, Some(Notice::Err(msg)), StatusCode::BAD_REQUEST);
        if name.is_empty() || name.len() > trove_store::MAX_NAME_LEN || name.chars().any(char::is_control) {
            return bad(format!("Give the repository a name of 1 to {} characters.", trove_store::MAX_NAME_LEN));
        }
        let slug = match RepoSlug::parse(&crate::api::slugify(name)) {
            Ok(s) => s,
            Err(e) => return bad(format!("The name {name:?} makes no valid slug: {e}.")),
        };
        let created =
            w.state.store.create_repo(&owner, &slug, form.get("public") == "1").and_then(|repo| {
                w.state.store.update_repo(&repo, &trove_store::RepoUpdate { name: Some((name.to_owned(), slug.clone())), ..Default::default() })
            });
        match created {
            Ok(repo) => {
                w.audit(Action::RepoCreate, &target::repo(&repo), json!({"name": repo.name, "public": repo.public, "id": repo.id}));
                Ok(see_other(&repo_link(w, &repo, "/browse")))
            }
            Err(e @ trove_store::StoreError::RepoExists(_)) => render_project(w, &key, Some(Notice::Err(e.to_string())), StatusCode::CONFLICT),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

/// The permissions table and grant form shared by project and repository settings.
fn permissions_section(w: &Web, action: &str, grants: &[(UserName, Permission)]) -> Markup {
    html! {
        h2 { "Permissions" }
        table.list #permissions {
            thead { tr { th { "User" } th { "Permission" } th {} } }
            tbody {
                @if grants.is_empty() { tr { td colspan="3" .muted { "No one has been granted a permission here." } } }
                @for (u, p) in grants {
                    tr {
                        td { (u) } td { (p) }
                        td { form.inline method="post" action=(action) { (csrf_field(w)) input type="hidden" name="action" value="revoke"; input type="hidden" name="user" value=(u); button.secondary type="submit" { "Revoke" } } }
                    }
                }
            }
        }
        form.card.inline.spaced method="post" action=(action) {
            (csrf_field(w))
            input type="hidden" name="action" value="grant";
            input type="text" name="user" placeholder="user name" required aria-label="User name";
            select name="permission" aria-label="Permission" { option value="read" { "read" } option value="write" { "write" } option value="admin" { "admin" } }
            button type="submit" { "Grant" }
        }
    }
}

fn group_permissions_section(w: &Web, action: &str, grants: &[(Group, Permission)]) -> Markup {
    html! {
        h2 { "Group permissions" }
        table.list #group-permissions {
            thead { tr { th { "Group" } th { "Permission" } th {} } }
            tbody {
                @if grants.is_empty() { tr { td colspan="3" .muted { "No group has been granted a permission here." } } }
                @for (g, p) in grants {
                    tr data-group=(g.name) {
                        td { (g.name) } td { (p) }
                        td { form.inline method="post" action=(action) { (csrf_field(w)) input type="hidden" name="action" value="revoke-group"; input type="hidden" name="group" value=(g.name); button.secondary type="submit" { "Revoke" } } }
                    }
                }
            }
        }
        form.card.inline.spaced method="post" action=(action) #grant-group {
            (csrf_field(w))
            input type="hidden" name="action" value="grant-group";
            input type="text" name="group" placeholder="group name" required aria-label="Group name";
            select name="permission" aria-label="Permission" { option value="read" { "read" } option value="write" { "write" } option value="admin" { "admin" } }
            button type="submit" { "Grant" }
        }
    }
}

/// A group grant or revocation from a settings form: the group and the new grant (`None`:
/// revoke), or the message to show.
fn parse_group_change(w: &Web, form: &Form) -> Result<Result<(Group, Option<Permission>), String>, WebError> {
    let Ok(name) = GroupName::parse(form.get("group").trim()) else { return Ok(Err(format!("group {} does not exist", form.get("group").trim()))) };
    let Some(g) = w.state.store.group(&name)? else { return Ok(Err(format!("group {name} does not exist"))) };
    if form.get("action") == "revoke-group" {
        return Ok(Ok((g, None)));
    }
    match form.get("permission").parse::<Permission>() {
        Ok(p) => Ok(Ok((g, Some(p)))),
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// What to say when a group change would lower the caller's own permission.
const LOWERS_OWN: &str = "That would lower your own permission here; ask another administrator.";

fn danger_zone(w: &Web, action: &str, what: &str, confirm: &str) -> Markup {
    html! {
        h2 { "Delete" }
        form.card method="post" action=(action) {
            (csrf_field(w))
            input type="hidden" name="action" value="delete";
            p { "Deleting the " (what) " removes " @if what == "repository" { "it and its history" } @else { "its repositories and their history" } " for good." }
            div.field { label for="confirm" { "Type " code { (confirm) } " to confirm" } input #confirm type="text" name="confirm" autocomplete="off"; }
            button.danger type="submit" { "Delete " (what) }
        }
    }
}

/// The repository's name (its slug follows; the old URLs redirect), description and default
/// branch (one of its branches, or one to be pushed), posting `details`.
fn details_form(w: &Web, action: &str, repo: &trove_store::Repo, description: &str, refs: &[(String, Option<String>)]) -> Markup {
    let branches: Vec<&str> = refs.iter().filter_map(|(r, _)| r.strip_prefix("refs/heads/")).collect();
    let head = refs.first().and_then(|(_, h)| h.as_deref()).and_then(|h| h.strip_prefix("refs/heads/")).unwrap_or("");
    html! {
        h2 #details { "Details" }
        form.card method="post" action=(action) #repo-details {
            (csrf_field(w))
            input type="hidden" name="action" value="details";
            div.field { label for="repo-name" { "Name" } input #repo-name type="text" name="name" value=(repo.name) required; div.help { "Renaming changes the URL; the old one redirects (pages, REST and git) until another repository takes it." } }
            div.field { label for="repo-description" { "Description" } input #repo-description type="text" name="description" value=(description) maxlength=(crate::repo_details::MAX_DESCRIPTION); }
            div.field {
                label for="default-branch-input" { "Default branch" }
                input #default-branch-input type="text" name="default_branch" value=(head) list="branch-names" required;
                datalist #branch-names { @for b in &branches { option value=(b) {} } }
                div.help { "What clones check out and pull requests target first." }
            }
            button type="submit" { "Save" }
        }
    }
}

fn visibility_form(w: &Web, action: &str, public: bool, what: &str) -> Markup {
    html! {
        h2 { "Visibility" }
        form.card method="post" action=(action) {
            (csrf_field(w))
            input type="hidden" name="action" value="visibility";
            div.field { label { input type="checkbox" name="public" value="1" checked[public]; " Public: anyone, even without logging in, can read this " (what) } }
            button type="submit" { "Save" }
        }
    }
}

/// `GET /projects/{KEY}/settings` (project administrators).
pub(crate) async fn project_settings(w: Web, key: Result<Path<String>, PathRejection>, Query(q): Q) -> WebResult {
    w.blocking(move |w| {
        let key = seg(key)?;
        render_project_settings(w, &key, done_notice(q.get("done").map(String::as_str)), StatusCode::OK)
    })
    .await
}

fn render_project_settings(w: &Web, key: &str, note: Option<Notice>, status: StatusCode) -> WebResult {
    let (project, _) = project_access(w, key, Some(Permission::Admin))?;
    let action = w.link(&format!("/projects/{}/settings", url_encode(&project.owner.to_string())));
    let grants = w.state.store.project_permissions(&project)?;
    let group_grants = w.state.store.project_group_permissions(&project)?;
    let restrictions = w.state.store.scope_restrictions(RestrictionScope::Project(project.id))?;
    let refs = branch_permissions::current_refs(w, &w.state.store.project_repos(&project)?);
    let restrictions = branch_permissions::section(w, &action, &restrictions, 0, &refs)?;
    let hooks = webhooks::section(w, &action, &w.state.store.webhooks(project.id, None)?)?;
    let body = html! {
        div.crumbs { a href=(w.link("/projects")) { "Projects" } " / " a href=(project_link(w, &project.owner)) { (project.name) } }
        h1 { "Project settings" }
        (notice(&note))
        (visibility_form(w, &action, project.public, "project's repositories"))
        (permissions_section(w, &action, &grants))
        @if matches!(project.owner, Owner::Project(_)) { (group_permissions_section(w, &action, &group_grants)) }
        @if matches!(project.owner, Owner::Project(_)) { (restrictions) }
        @if matches!(project.owner, Owner::Project(_)) { (hooks) }
        @if matches!(project.owner, Owner::Project(_)) { (danger_zone(w, &action, "project", &project.owner.to_string())) }
    };
    let mut r = page(w, "Project settings", body);
    *r.status_mut() = status;
    Ok(r)
}

fn parse_grant(form: &Form) -> Result<(UserName, Permission), String> {
    let user = UserName::parse(form.get("user").trim()).map_err(|e| e.to_string())?;
    let perm = form.get("permission").parse::<Permission>().map_err(|e| e.to_string())?;
    Ok((user, perm))
}

/// `POST /projects/{KEY}/settings`: visibility, grants, deletion.
pub(crate) async fn project_settings_post(w: Web, key: Result<Path<String>, PathRejection>, form: Form) -> WebResult {
    w.blocking(move |w| {
        let key = seg(key)?;
        w.check_csrf(&form)?;
        let (project, _) = project_access(w, &key, Some(Permission::Admin))?;
        let here = w.link(&format!("/projects/{}/settings", url_encode(&project.owner.to_string())));
        let bad = |msg: String| render_project_settings(w, &key, Some(Notice::Err(msg)), StatusCode::BAD_REQUEST);
        let Owner::Project(pkey) = &project.owner else {
            return bad("personal projects have no project settings here".into());
        };
        match form.get("action") {
            "visibility" => {
                let public = form.get("public") == "1";
                w.state.store.set_project_public(pkey, public)?;
                w.audit(Action::ProjectUpdate, &target::project(&project.owner), json!({ "public": public }));
                Ok(see_other(&format!("{here}?done=saved")))
            }
            "grant" => match parse_grant(&form) {
                Ok((u, p)) => match w.state.store.grant_project(&u, pkey, p) {
                    Ok(()) => {
                        let grant = format!("{} {}", target::project(&project.owner), target::user(&u));
                        w.audit(Action::PermissionGrant, &grant, json!({"permission": crate::api::level_name("PROJECT", p)}));
                        Ok(see_other(&format!("{here}?done=granted")))
                    }
                    Err(e @ trove_store::StoreError::NoSuchUser(_)) => bad(e.to_string()),
                    Err(e) => Err(e.into()),
                },
                Err(msg) => bad(msg),
            },
            "revoke" => {
                let u = UserName::parse(form.get("user")).map_err(|e| WebError::BadRequest(e.to_string()))?;
                w.state.store.revoke_project(&u, &project)?;
                w.audit(Action::PermissionRevoke, &format!("{} {}", target::project(&project.owner), target::user(&u)), json!({}));
                Ok(see_other(&format!("{here}?done=revoked")))
            }
            "grant-group" | "revoke-group" => {
                let (g, to) = match parse_group_change(w, &form)? {
                    Ok(change) => change,
                    Err(msg) => return bad(msg),
                };
                let info = w.state.store.project_info(&project.owner)?.ok_or(WebError::NotFound)?;
                let who = w.who().ok_or(WebError::Forbidden)?;
                if access::lowers_own_project_permission(&w.state.store, &who, &info, g.id, to)? {
                    return render_project_settings(w, &key, Some(Notice::Err(LOWERS_OWN.into())), StatusCode::CONFLICT);
                }
                let grant = format!("{} {}", target::project(&project.owner), target::group(&g.name));
                match to {
                    Some(p) => {
                        w.state.store.grant_group_project(&g.name, pkey, p)?;
                        w.audit(Action::PermissionGrant, &grant, json!({"permission": crate::api::level_name("PROJECT", p)}));
                    }
                    None => {
                        w.state.store.revoke_group_project(&g.name, &project)?;
                        w.audit(Action::PermissionRevoke, &grant, json!({}));
                    }
                }
                Ok(see_other(&format!("{here}?done={}", if to.is_some() { "granted" } else { "revoked" })))
            }
            a if a.starts_with("webhook-") => match webhooks::post(w, project.id, None, &target::project(&project.owner), &form)? {
                webhooks::Posted::Done(done) => Ok(see_other(&format!("{here}?done={done}#webhooks"))),
                webhooks::Posted::Bad(msg) => bad(msg),
                webhooks::Posted::Said(msg) => render_project_settings(w, &key, Some(Notice::Ok(msg)), StatusCode::OK),
            },
            "restrict" | "unrestrict" => {
                let info = w.state.store.project_info(&project.owner)?.ok_or(WebError::NotFound)?;
                match branch_permissions::post(w, RestrictionScope::Project(project.id), ScopeOf::Project(&info), &form)? {
                    Ok(done) => Ok(see_other(&format!("{here}?done={done}"))),
                    Err(msg) => bad(msg),
                }
            }
            "delete" => {
                if form.get("confirm") != pkey.as_str() {
                    return bad(format!("type {pkey} to confirm the deletion"));
                }
                w.state.store.delete_project(pkey)?;
                w.audit(Action::ProjectDelete, &target::project(&project.owner), json!({"name": project.name}));
                Ok(see_other(&w.link("/projects")))
            }
            other => Err(WebError::BadRequest(format!("unknown action {other:?}"))),
        }
    })
    .await
}

/// `GET /users/{user}[/…]`: Bitbucket's URLs for personal projects (the git side redirects
/// browsers there) lead to the same pages as `/projects/~{user}[/…]`.
pub(crate) async fn user_alias(w: Web, uri: http::Uri) -> WebResult {
    w.blocking(move |w| {
        let rest = uri.path().strip_prefix(&w.link("/users/")).ok_or(WebError::NotFound)?;
        let (user, tail) = rest.split_once('/').map(|(u, t)| (u, format!("/{t}"))).unwrap_or((rest, String::new()));
        let user = UserName::parse(user).map_err(|_| WebError::NotFound)?;
        let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        let mut r = StatusCode::FOUND.into_response();
        let location = w.link(&format!("/projects/~{user}{tail}{query}"));
        r.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&location).map_err(|_| WebError::NotFound)?);
        Ok(r)
    })
    .await
}

// ---- repositories ----

/// `GET /projects/{KEY}/repos/{slug}` → the browse page.
pub(crate) async fn repo_root(w: Web, p: Result<Path<(String, String)>, PathRejection>) -> WebResult {
    w.blocking(move |w| {
        let (key, slug) = seg(p)?;
        let (repo, _) = repo_access(w, &key, &slug, Permission::Read)?;
        let mut r = StatusCode::FOUND.into_response();
        if let Ok(v) = HeaderValue::from_str(&repo_link(w, &repo, "/browse")) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        Ok(r)
    })
    .await
}

pub(crate) async fn browse_root(w: Web, p: Result<Path<(String, String)>, PathRejection>, Query(q): Q) -> WebResult {
    let (key, slug) = seg(p)?;
    browse(&w, &key, &slug, "", &q).await
}

pub(crate) async fn browse_path(w: Web, p: Result<Path<(String, String, String)>, PathRejection>, Query(q): Q) -> WebResult {
    let (key, slug, path) = seg(p)?;
    browse(&w, &key, &slug, path.trim_end_matches('/'), &q).await
}

/// The clone URL from the base URL, with the caller's name in it as Bitbucket shows it.
fn clone_url(w: &Web, repo: &Repo) -> String {
    let url = w.state.urls.clone_url(&w.view, &repo.owner, &repo.slug);
    match w.user() {
        Some(u) => url.replacen("://", &format!("://{}@", url_encode(u.name.as_str())), 1),
        None => url,
    }
}

/// The header every repository page shares: name, clone URL with copy button, tabs.
pub(crate) fn repo_header(w: &Web, repo: &Repo, perm: Permission, tab: &str) -> Markup {
    repo_header_with(w, repo, perm, tab, None)
}

/// The origin of fork `repo`, when the caller may read it ([`repo_header_with`]'s "forked
/// from"). Blocks: call it on the blocking pool.
fn readable_origin(w: &Web, repo: &Repo) -> Result<Option<Repo>, WebError> {
    let Some(origin) = w.state.store.repo_origin_id(repo)?.map(|id| w.state.store.repo_by_id(id)).transpose()?.flatten() else { return Ok(None) };
    Ok(w.state.store.permission(w.who().as_ref(), &origin)?.is_some().then_some(origin))
}

/// [`repo_header`], saying which repository this one was forked from, with a link to it.
fn repo_header_with(w: &Web, repo: &Repo, perm: Permission, tab: &str, origin: Option<&Repo>) -> Markup {
    let clone = clone_url(w, repo);
    html! {
        div.crumbs { a href=(w.link("/projects")) { "Projects" } " / " a href=(project_link(w, &repo.owner)) { (repo.owner) } }
        h1 { (repo.name) " " (visibility(repo.public || repo.project_public)) }
        @if let Some(o) = origin {
            p.muted #forked-from { "Forked from " a href=(repo_link(w, o, "/browse")) { (o.owner) "/" (o.name) } }
        }
        div.clone {
            label for="clone-url" { "Clone" }
            input #clone-url.clone-url type="text" readonly value=(clone);
            button.secondary type="button" data-copy="clone-url" { "Copy" }
            @if let Some(ssh) = crate::ssh::clone_url(&w.state, &w.view, repo) {
                input #clone-ssh.clone-url type="text" readonly value=(ssh) aria-label="Clone over SSH";
                button.secondary type="button" data-copy="clone-ssh" { "Copy" }
            }
        }
        nav.tabs aria-label="Repository" {
            a.on[tab == "browse"] href=(repo_link(w, repo, "/browse")) { "Source" }
            a.on[tab == "commits"] href=(repo_link(w, repo, "/commits")) { "Commits" }
            a.on[tab == "branches"] #nav-branches href=(repo_link(w, repo, "/branches")) { "Branches" }
            a.on[tab == "tags"] #nav-tags href=(repo_link(w, repo, "/tags")) { "Tags" }
            a.on[tab == "pull-requests"] #nav-pull-requests href=(repo_link(w, repo, "/pull-requests")) { "Pull requests" }
            @if w.user().is_some() { a.on[tab == "fork"] #nav-fork href=(repo_link(w, repo, "/fork")) { "Fork" } }
            @if perm >= Permission::Admin { a.on[tab == "settings"] href=(repo_link(w, repo, "/settings")) { "Settings" } }
        }
    }
}

/// The branch and tag picker (`refs.rs`), leading back to `action` (this page) at the ref.
fn switcher(refs: &Refs, current: &Resolved, action: &str) -> Markup {
    // `…/repos/{slug}` of this page's link: the branches page is beside it.
    let repo_base = action.find("/repos/").and_then(|i| action[i + 7..].find('/').map(|j| &action[..i + 7 + j])).unwrap_or(action);
    super::refs::picker(refs, current, action, &format!("{repo_base}/branches"))
}

fn reader(w: &Web, repo: &trove_store::Repo) -> Reader {
    Reader::new(&w.state, w.state.store.repo_path(repo))
}

/// `at` resolved; without one, the default branch, else (HEAD naming a branch not pushed yet)
/// the first branch. `None`: nothing to show.
async fn resolve(g: &Reader, refs: &Refs, at: Option<&str>) -> Result<Option<Resolved>, WebError> {
    let found = g.resolve(refs, at).await?;
    if found.is_none() && at.is_none_or(str::is_empty) {
        return Ok(refs.branches.first().map(Resolved::from_ref));
    }
    Ok(found)
}

pub(crate) fn at_query(r: &Resolved) -> String {
    format!("?at={}", url_encode(&r.at))
}

async fn browse(w: &Web, key: &str, slug: &str, path: &str, q: &HashMap<String, String>) -> WebResult {
    let (repo, perm) = repo_access_async(w, key, slug, Permission::Read).await?;
    if !valid_path(path) {
        return Err(WebError::NotFound);
    }
    let origin = {
        let repo = repo.clone();
        w.clone().blocking(move |w| readable_origin(w, &repo)).await?
    };
    let g = reader(w, &repo);
    let refs = g.refs().await?;
    let default_branch = refs.head.as_deref().and_then(|h| h.strip_prefix("refs/heads/")).unwrap_or("main").to_owned();
    let head = repo_header_with(w, &repo, perm, "browse", origin.as_ref());
    let Some(at) = resolve(&g, &refs, q.get("at").map(String::as_str)).await? else {
        if refs.branches.is_empty() && q.get("at").is_none() {
            let clone = clone_url(w, &repo);
            let body = html! {
                (head)
                div.card #empty-repo {
                    h2 { "This repository is empty" }
                    p { "Push an existing repository to it:" }
                    pre { "git remote add origin " (clone) "\ngit push -u origin " (default_branch) }
                }
            };
            return Ok(page(w, &repo.name, body));
        }
        return Err(WebError::NotFound);
    };
    let Some(kind) = g.kind(&at.commit, path).await? else {
        // The branch picker keeps the path when it switches refs: a path the chosen ref does
        // not have leads to its nearest folder that it has.
        if q.get("at").is_some() && !path.is_empty() {
            let mut up = path;
            while let Some((parent, _)) = up.rsplit_once('/') {
                up = parent;
                if g.kind(&at.commit, up).await?.as_deref() == Some("tree") {
                    break;
                }
            }
            let up = if up == path || g.kind(&at.commit, up).await?.as_deref() != Some("tree") { "" } else { up };
            let base = repo_link(w, &repo, "/browse");
            let to = if up.is_empty() { base } else { format!("{base}/{}", url_encode(up)) };
            return Ok(see_other(&format!("{to}{}", at_query(&at))));
        }
        return Err(WebError::NotFound);
    };
    let browse_base = repo_link(w, &repo, "/browse");
    let here = if path.is_empty() { browse_base.clone() } else { format!("{browse_base}/{}", url_encode(path)) };
    // Breadcrumbs through the path.
    let mut crumbs = vec![(repo.slug.to_string(), browse_base.clone())];
    let mut acc = String::new();
    for c in path.split('/').filter(|c| !c.is_empty()) {
        if !acc.is_empty() {
            acc.push('/');
        }
        acc.push_str(c);
        crumbs.push((c.to_owned(), format!("{browse_base}/{}", url_encode(&acc))));
    }
    let bar = html! {
        div.repo-bar {
            (switcher(&refs, &at, &here))
            span.muted { "Default branch: " strong #default-branch { (default_branch) } }
            span.mono { @for (i, (name, link)) in crumbs.iter().enumerate() { @if i > 0 { " / " } a href={ (link) (at_query(&at)) } { (name) } } }
        }
    };
    let content = if kind == "tree" {
        let mut entries = g.tree(&at.commit, path).await?.unwrap_or_default();
        entries.sort_by(|a, b| (a.kind != "tree").cmp(&(b.kind != "tree")).then_with(|| a.name.cmp(&b.name)));
        let readme = entries.iter().find(|e| e.kind == "blob" && e.name.eq_ignore_ascii_case("readme.md")).map(|e| e.name.clone());
        let readme_html = match readme {
            Some(name) => {
                let p = if path.is_empty() { name } else { format!("{path}/{name}") };
                // A README too large to read is left out, not the directory with it.
                let raw = repo_link(w, &repo, "/raw");
                let at_q = at_query(&at);
                let base = markdown::FileBase { browse: &browse_base, raw: &raw, dir: path, at_query: &at_q };
                match g.blob(&at.commit, &p).await {
                    Err(ReadError::TooLarge { .. }) => None,
                    r => r?.map(|b| markdown::render_in(&String::from_utf8_lossy(&b), Some(&base))),
                }
            }
            None => None,
        };
        html! {
            table.list #files {
                thead { tr { th { "Name" } th { "Size" } } }
                tbody {
                    @for e in &entries {
                        @let child = if path.is_empty() { e.name.clone() } else { format!("{path}/{}", e.name) };
                        tr {
                            td {
                                @if e.kind == "commit" { span.mono { (e.name) " (submodule)" } }
                                @else { a href={ (browse_base) "/" (url_encode(&child)) (at_query(&at)) } { (e.name) @if e.kind == "tree" { "/" } } }
                            }
                            td.muted { @if let Some(s) = e.size { (human_size(s)) } }
                        }
                    }
                }
            }
            @if let Some(h) = readme_html { h2 { "README.md" } div.readme #readme { (PreEscaped(h)) } }
        }
    } else if kind == "blob" {
        // The file view and blame (web/file_view.rs); Bitbucket's `?blame` has no value.
        let a = super::file_view::At { w, repo: &repo, g: &g, at: &at, path };
        if q.get("blame").is_some_and(|b| b != "false") { super::file_view::blame(&a).await? } else { super::file_view::file(&a, q).await? }
    } else {
        html! { div.card { p.muted { "A submodule." } } }
    };
    let body = html! { (head) (bar) (content) };
    // The file or folder, then the repository: "src/lib.rs - trove", or "trove" at the root.
    let title = if path.is_empty() { repo.name.clone() } else { format!("{path} - {}", repo.name) };
    Ok(page(w, &title, body))
}

pub(crate) fn human_size(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

/// `GET …/raw/{path}?at=`: the file's bytes, streamed. Served as text or octet-stream with a
/// sandboxing CSP, so an HTML file in a repository cannot run script on our origin.
pub(crate) async fn raw(w: Web, p: Result<Path<(String, String, String)>, PathRejection>, Query(q): Q) -> WebResult {
    let (key, slug, path) = seg(p)?;
    let (repo, _) = repo_access_async(&w, &key, &slug, Permission::Read).await?;
    if !valid_path(&path) || path.is_empty() {
        return Err(WebError::NotFound);
    }
    let g = reader(&w, &repo);
    let refs = g.refs().await?;
    let at = resolve(&g, &refs, q.get("at").map(String::as_str)).await?.ok_or(WebError::NotFound)?;
    if g.kind(&at.commit, &path).await?.as_deref() != Some("blob") {
        return Err(WebError::NotFound);
    }
    let size = g.blob_size(&at.commit, &path).await?.unwrap_or(0);
    let head = g.blob_head(&at.commit, &path, 8000).await?;
    let ctype = raw_type(&path, &head);
    let mut child = g.blob_stream(&at.commit, &path)?;
    let stdout = child.stdout.take().ok_or_else(|| WebError::Internal("git stdout".into()))?;
    let stream = futures_util::stream::unfold((stdout, child), |(mut out, child)| async move {
        use tokio::io::AsyncReadExt as _;
        let mut buf = vec![0u8; 64 * 1024];
        match out.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), (out, child)))
            }
            Err(e) => Some((Err(e), (out, child))),
        }
    });
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox; default-src 'none'"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    Ok(r)
}

/// The `Content-Type` a file is served raw with: the images a README or a page shows (PNG,
/// JPEG, GIF, WebP by their first bytes; SVG by its name and text), else text or bytes. Every
/// raw answer is sandboxed (`Content-Security-Policy: sandbox`) with `nosniff`, so an SVG's
/// script never runs, whether shown in an `<img>` or opened.
fn raw_type(path: &str, head: &[u8]) -> &'static str {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg"
    } else if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        "image/gif"
    } else if head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP" {
        "image/webp"
    } else if head.contains(&0) {
        "application/octet-stream"
    } else if path.rsplit('.').next().is_some_and(|e| e.eq_ignore_ascii_case("svg")) {
        "image/svg+xml"
    } else {
        "text/plain; charset=utf-8"
    }
}

/// `GET …/commits?until=&start=`: history, 50 a page; with `path=`, the history of that file or
/// folder, followed across renames (`git log --follow`) for a file.
pub(crate) async fn commits(w: Web, p: Result<Path<(String, String)>, PathRejection>, Query(q): Q) -> WebResult {
    const PER_PAGE: usize = 50;
    let (key, slug) = seg(p)?;
    let (repo, perm) = repo_access_async(&w, &key, &slug, Permission::Read).await?;
    let g = reader(&w, &repo);
    let refs = g.refs().await?;
    let want = q.get("until").or(q.get("at")).map(String::as_str);
    let head = repo_header(&w, &repo, perm, "commits");
    let Some(at) = resolve(&g, &refs, want).await? else {
        if refs.branches.is_empty() {
            return Ok(page(&w, &repo.name, html! { (head) div.card { p.muted { "No commits yet." } } }));
        }
        return Err(WebError::NotFound);
    };
    let start: usize = q.get("start").and_then(|s| s.parse().ok()).unwrap_or(0).min(1_000_000);
    let path = q.get("path").map(|p| p.trim_matches('/')).unwrap_or("");
    if !valid_path(path) {
        return Err(WebError::BadRequest(format!("{path:?} is not a path in a repository")));
    }
    // `--follow` takes one file; a folder's history is the commits that touched it.
    let follow = !path.is_empty() && g.kind(&at.commit, path).await?.as_deref() == Some("blob");
    let mut list = g.log(&LogQuery { until: &at.commit, skip: start, max: PER_PAGE + 1, path, follow, ..LogQuery::default() }).await?.unwrap_or_default();
    let more = list.len() > PER_PAGE;
    list.truncate(PER_PAGE);
    let builds = super::builds::statuses(&w, vec![repo.id], list.iter().map(|c| c.id.clone()).collect()).await?;
    // The graph is drawn from the newest commit down to this page's last, so that its lanes
    // join the previous page's.
    let history = crate::ref_list::parents(&g, &at.commit, start + list.len()).await?;
    let graph = super::commit_list::lanes(&history);
    let graph = (graph.len() == start + list.len()).then(|| graph[start..].to_vec());
    let here = repo_link(&w, &repo, "/commits");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let extras = super::commit_list::Extras { refs: &refs, builds: &builds, graph: graph.as_deref(), base: &here, now };
    let path_q = if path.is_empty() { String::new() } else { format!("&path={}", url_encode(path)) };
    let body = html! {
        (head)
        div.repo-bar {
            (switcher(&refs, &at, &here))
            @if !path.is_empty() {
                h2.flush #history-of { "History of " a.mono href={ (repo_link(&w, &repo, "/browse")) "/" (url_encode(path)) (at_query(&at)) } { (path) } }
                a href={ (here) (at_query(&at)) } { "All commits" }
            }
        }
        @if list.is_empty() && !path.is_empty() { div.card { p.muted { "No commits changed " span.mono { (path) } " here." } } }
        (super::commit_list::table(&list, &extras))
        p {
            @if start > 0 { a href={ (here) "?until=" (url_encode(&at.at)) (path_q) "&start=" (start.saturating_sub(PER_PAGE)) } { "Newer" } " " }
            @if more { a href={ (here) "?until=" (url_encode(&at.at)) (path_q) "&start=" (start + PER_PAGE) } { "Older" } }
        }
    };
    let title = if path.is_empty() { format!("Commits - {}", repo.name) } else { format!("History of {path} - {}", repo.name) };
    Ok(page(&w, &title, body))
}

/// `GET …/commits/{id}`: the commit and its diff against its first parent, its builds, and its
/// comments (with forms to comment, reply, edit and delete: `commit_post`).
pub(crate) async fn commit(w: Web, p: Result<Path<(String, String, String)>, PathRejection>, Query(q): Q) -> WebResult {
    let (key, slug, id) = seg(p)?;
    render_commit(w, &key, &slug, &id, &q, None, StatusCode::OK).await
}

/// The commit page; its diff is the pull request's renderer ([`super::pr_diff::plain`]), so `q`
/// may ask for its view options, one file, or one file's section alone (`fragment=1`).
async fn render_commit(w: Web, key: &str, slug: &str, id: &str, q: &HashMap<String, String>, note: Option<Notice>, status: StatusCode) -> WebResult {
    let (repo, perm) = repo_access_async(&w, key, slug, Permission::Read).await?;
    let g = reader(&w, &repo);
    let refs = g.refs().await?;
    if !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(WebError::NotFound);
    }
    let at = resolve(&g, &refs, Some(id)).await?.ok_or(WebError::NotFound)?;
    let c = g.commit(&at.commit).await?.ok_or(WebError::NotFound)?;
    let commits = repo_link(&w, &repo, "/commits");
    let plain = super::pr_diff::Plain {
        repo: &repo,
        level: perm,
        url: format!("{commits}/{}", c.id),
        url_pairs: Vec::new(),
        from: c.parents.first().map(String::as_str),
        to: &c.id,
    };
    let diff = match super::pr_diff::plain(&w, plain, q).await? {
        super::pr_diff::Shown::Fragment(r) => return Ok(r),
        super::pr_diff::Shown::Page(m) => m,
    };
    let builds = super::builds::statuses(&w, vec![repo.id], vec![c.id.clone()]).await?.remove(&c.id).unwrap_or_default();
    let comments = {
        let (repo_id, commit) = (repo.id, c.id.clone());
        w.state
            .store
            .run(move |s| -> Result<_, trove_store::StoreError> {
                let all = s.commit_comments(repo_id, &commit)?;
                let mut names = std::collections::HashMap::new();
                for a in all.iter().map(|c| c.author_id) {
                    if let std::collections::hash_map::Entry::Vacant(e) = names.entry(a) {
                        e.insert(s.user_or_former(a)?.map(|u| if u.display_name.trim().is_empty() { u.name.to_string() } else { u.display_name.clone() }));
                    }
                }
                Ok((all, names))
            })
            .await?
    };
    let (subject, rest) = c.message.split_once('\n').unwrap_or((&c.message, ""));
    let body = html! {
        (repo_header(&w, &repo, perm, "commits"))
        (notice(&note))
        div.card #commit {
            h2.flush { (subject) }
            @if !rest.trim().is_empty() { pre { (rest.trim()) } }
            p.muted {
                (c.author_name) " <" (c.author_email) "> committed " span.sha { (c.id) } " on " (c.author_date)
                @for p in &c.parents { " · parent " a.sha href={ (commits) "/" (p) } { (p[..12.min(p.len())]) } }
            }
            p { a href={ (repo_link(&w, &repo, "/browse")) "?at=" (c.id) } { "Browse the files at this commit" } }
        }
        @if !builds.is_empty() {
            div.card #builds { h3.flush { "Builds " (super::builds::badge(&builds)) } (super::builds::table(&builds)) }
        }
        div #commit-diff { (diff) }
        (commit_comments(&w, &format!("{commits}/{}", c.id), perm, &comments.0, &comments.1))
    };
    let mut r = page(&w, &format!("{} - {}", &c.id[..12.min(c.id.len())], repo.name), body);
    *r.status_mut() = status;
    Ok(r)
}

/// The comments card of the commit page posting to `action`: each root comment with its replies,
/// the forms to reply, edit (the author) and delete (the author or an administrator, when no
/// reply stands), and the form to comment.
fn commit_comments(
    w: &Web,
    action: &str,
    perm: Permission,
    all: &[trove_store::CommitComment],
    names: &std::collections::HashMap<i64, Option<String>>,
) -> Markup {
    let me = w.user().map(|u| u.id);
    let name = |id: i64| names.get(&id).cloned().flatten().unwrap_or_else(|| "Deleted user".to_owned());
    fn thread(
        w: &Web,
        action: &str,
        perm: Permission,
        me: Option<i64>,
        all: &[trove_store::CommitComment],
        c: &trove_store::CommitComment,
        name: &dyn Fn(i64) -> String,
    ) -> Markup {
        let replies: Vec<&trove_store::CommitComment> = all.iter().filter(|r| r.parent_id == Some(c.id)).collect();
        let mine = me == Some(c.author_id);
        let anchor = c.anchor.as_deref().and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok());
        html! {
            div.comment id={ "comment-" (c.id) } data-comment=(c.id) {
                div.comment-head {
                    strong.comment-author { (name(c.author_id)) }
                    " " span.when.muted { (super::view::utc(c.created_at.div_euclid(1000))) }
                    @if c.updated_at != c.created_at { " " span.muted.small { "(edited)" } }
                }
                @if let Some(a) = &anchor {
                    div.comment-anchor.small.muted {
                        "on " code { (a["path"].as_str().unwrap_or("")) }
                        @if let Some(l) = a["line"].as_u64() { " line " (l) }
                    }
                }
                div.comment-text.md { (PreEscaped(markdown::render(&c.text))) }
                @if me.is_some() {
                    div.comment-actions {
                        details.reply {
                            summary { "Reply" }
                            form.reply-form method="post" action=(action) {
                                (csrf_field(w))
                                input type="hidden" name="action" value="comment";
                                input type="hidden" name="parent" value=(c.id);
                                textarea name="text" rows="3" aria-label="Reply" {}
                                button type="submit" { "Reply" }
                            }
                        }
                        @if mine {
                            details.edit-comment {
                                summary { "Edit" }
                                form method="post" action=(action) {
                                    (csrf_field(w))
                                    input type="hidden" name="action" value="comment-edit";
                                    input type="hidden" name="comment" value=(c.id);
                                    input type="hidden" name="version" value=(c.version);
                                    textarea name="text" rows="3" aria-label="Comment" { (c.text) }
                                    button type="submit" { "Save" }
                                }
                            }
                        }
                        @if (mine || perm >= Permission::Admin) && replies.is_empty() {
                            form.inline method="post" action=(action) {
                                (csrf_field(w))
                                input type="hidden" name="action" value="comment-delete";
                                input type="hidden" name="comment" value=(c.id);
                                input type="hidden" name="version" value=(c.version);
                                button.secondary type="submit" { "Delete" }
                            }
                        }
                    }
                }
                @if !replies.is_empty() {
                    div.replies { @for r in &replies { (thread(w, action, perm, me, all, r, name)) } }
                }
            }
        }
    }
    html! {
        div.card #comments {
            h3.flush { "Comments" }
            @if all.is_empty() { p.muted { "No comments on this commit." } }
            @for c in all.iter().filter(|c| c.parent_id.is_none()) { (thread(w, action, perm, me, all, c, &name)) }
            @if me.is_some() {
                form #comment-form method="post" action=(action) {
                    (csrf_field(w))
                    input type="hidden" name="action" value="comment";
                    textarea name="text" rows="3" aria-label="Comment" placeholder="Comment on this commit (Markdown)" {}
                    button type="submit" { "Comment" }
                }
            } @else {
                p.muted { "Log in to comment." }
            }
        }
    }
}

/// `POST …/commits/{id}`: comment, reply (`parent`), `comment-edit`, `comment-delete`, by the
/// same rules as the REST API ([`crate::commit_comments`]).
pub(crate) async fn commit_post(w: Web, p: Result<Path<(String, String, String)>, PathRejection>, form: Form) -> WebResult {
    use crate::commit_comments::{self as service, CommentError, Place};
    let (key, slug, id) = seg(p)?;
    let who = w.check_csrf(&form)?.id;
    let (repo, perm) = repo_access_async(&w, &key, &slug, Permission::Read).await?;
    let g = reader(&w, &repo);
    let refs = g.refs().await?;
    if !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(WebError::NotFound);
    }
    let commit = resolve(&g, &refs, Some(&id)).await?.ok_or(WebError::NotFound)?.commit;
    let here = repo_link(&w, &repo, &format!("/commits/{commit}"));
    let (state, repo2, commit2) = (w.state.clone(), repo.clone(), commit.clone());
    let action = form.get("action").to_owned();
    let (text, parent, comment) = (form.get("text").to_owned(), form.get("parent").to_owned(), form.get("comment").to_owned());
    let version = form.get("version").parse::<i64>().ok();
    let done = w
        .state
        .store
        .run(move |s| -> Result<Option<i64>, CommentError> {
            let at = Place { repo: &repo2, commit: &commit2 };
            let need_version = || version.ok_or(CommentError::Invalid { context: "version", message: "The form names no version; reload the page.".into() });
            match action.as_str() {
                "comment" => {
                    let parent = match parent.as_str() {
                        "" => None,
                        p => Some(p.parse::<i64>().map_err(|_| CommentError::NotFound(format!("{p:?}")))?),
                    };
                    Ok(Some(service::add(&state, s, at, who, &text, parent, None)?.id))
                }
                "comment-edit" => Ok(Some(service::edit(&state, s, at, who, &comment, need_version()?, &text)?.id)),
                "comment-delete" => service::delete(&state, s, at, who, perm, &comment, need_version()?).map(|()| None),
                other => Err(CommentError::Invalid { context: "action", message: format!("unknown action {other:?}") }),
            }
        })
        .await;
    match done {
        Ok(Some(id)) => Ok(see_other(&format!("{here}#comment-{id}"))),
        Ok(None) => Ok(see_other(&format!("{here}#comments"))),
        Err(CommentError::Forbidden(_)) => Err(WebError::Forbidden),
        Err(CommentError::NotFound(_)) => Err(WebError::NotFound),
        Err(CommentError::Store(e)) => Err(e.into()),
        Err(e @ (CommentError::Stale { .. } | CommentError::HasReplies)) => {
            render_commit(w, &key, &slug, &commit, &HashMap::new(), Some(Notice::Err(e.to_string())), StatusCode::CONFLICT).await
        }
        Err(e @ CommentError::Invalid { .. }) => {
            render_commit(w, &key, &slug, &commit, &HashMap::new(), Some(Notice::Err(e.to_string())), StatusCode::BAD_REQUEST).await
        }
    }
}

/// `GET …/settings` (repository administrators): visibility, permissions, deletion.
pub(crate) async fn repo_settings(w: Web, p: Result<Path<(String, String)>, PathRejection>, Query(q): Q) -> WebResult {
    w.blocking(move |w| {
        let (key, slug) = seg(p)?;
        render_repo_settings(w, &key, &slug, done_notice(q.get("done").map(String::as_str)), StatusCode::OK)
    })
    .await
}

fn render_repo_settings(w: &Web, key: &str, slug: &str, note: Option<Notice>, status: StatusCode) -> WebResult {
    let (repo, perm) = repo_access(w, key, slug, Permission::Admin)?;
    let action = repo_link(w, &repo, "/settings");
    let grants = w.state.store.repo_permissions(&repo)?;
    let group_grants = w.state.store.repo_group_permissions(&repo)?;
    let restrictions = w.state.store.scope_restrictions(RestrictionScope::Repository(repo.id))?;
    let inherited = w.state.store.scope_restrictions(RestrictionScope::Project(repo.project_id))?.len();
    let refs = branch_permissions::current_refs(w, std::slice::from_ref(&repo));
    let restrictions = branch_permissions::section(w, &action, &restrictions, inherited, &refs)?;
    let hooks = webhooks::section(w, &action, &w.state.store.webhooks(repo.project_id, Some(repo.id))?)?;
    let required = super::builds::required_section(w, &action, &w.state.store.required_builds(repo.id)?);
    let details = details_form(w, &action, &repo, &w.state.store.repo_description(&repo)?.unwrap_or_default(), &refs);
    let body = html! {
        (repo_header(w, &repo, perm, "settings"))
        (notice(&note))
        (details)
        (visibility_form(w, &action, repo.public, "repository"))
        (permissions_section(w, &action, &grants))
        (group_permissions_section(w, &action, &group_grants))
        (restrictions)
        (required)
        (hooks)
        (danger_zone(w, &action, "repository", repo.slug.as_str()))
    };
    let mut r = page(w, &format!("Settings - {}", repo.name), body);
    *r.status_mut() = status;
    Ok(r)
}

pub(crate) async fn repo_settings_post(w: Web, p: Result<Path<(String, String)>, PathRejection>, form: Form) -> WebResult {
    w.blocking(move |w| {
        let (key, slug) = seg(p)?;
        w.check_csrf(&form)?;
        let (repo, _) = repo_access(w, &key, &slug, Permission::Admin)?;
        let here = repo_link(w, &repo, "/settings");
        let bad = |msg: String| render_repo_settings(w, &key, &slug, Some(Notice::Err(msg)), StatusCode::BAD_REQUEST);
        match form.get("action") {
            "details" => {
                use crate::repo_details::{checked_description, default_branch_ref, name_and_slug};
                let checked =
                    (name_and_slug(form.get("name")), checked_description(form.get("description").trim()), default_branch_ref(form.get("default_branch")));
                let (name, description, full) = match checked {
                    (Ok(n), Ok(d), Ok(f)) => (n, d, f),
                    (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return bad(e.message),
                };
                let mut changed = json!({});
                let refs = branch_permissions::current_refs(w, std::slice::from_ref(&repo));
                let head = refs.first().and_then(|(_, h)| h.clone());
                if head.as_deref() != Some(full.as_str()) {
                    let g = reader(w, &repo);
                    if !tokio::runtime::Handle::current().block_on(g.set_head(&full))? {
                        return Err(WebError::Internal(format!("git symbolic-ref HEAD {full} failed")));
                    }
                    changed["defaultBranch"] = json!(full);
                }
                let update = trove_store::RepoUpdate {
                    name: (name.0 != repo.name).then_some(name),
                    description: (description != w.state.store.repo_description(&repo)?.unwrap_or_default()).then_some(description),
                    ..Default::default()
                };
                let mut after = repo.clone();
                if update.name.is_some() || update.description.is_some() {
                    let project = w.state.store.project_info(&repo.owner)?.ok_or(WebError::NotFound)?;
                    let events = crate::webhooks::repo_modified(&crate::api::Api::background(&w.state), &repo, &project, &update)?;
                    after = match w.state.store.update_repo_with_events(&repo, &update, &events) {
                        Ok(r) => r,
                        Err(e @ trove_store::StoreError::RepoExists(_)) => return bad(e.to_string()),
                        Err(e) => return Err(e.into()),
                    };
                    if !events.is_empty() {
                        w.state.webhooks.wake();
                    }
                    if after.slug != repo.slug || after.name != repo.name {
                        changed["name"] = json!({"from": repo.name, "to": after.name});
                        changed["slug"] = json!({"from": repo.slug.as_str(), "to": after.slug.as_str()});
                    }
                    if let Some(d) = &update.description {
                        changed["description"] = json!(d);
                    }
                }
                if changed.as_object().is_some_and(|o| !o.is_empty()) {
                    w.audit(Action::RepoUpdate, &target::repo(&repo), changed);
                }
                Ok(see_other(&format!("{}?done=saved#details", repo_link(w, &after, "/settings"))))
            }
            "visibility" => {
                let public = form.get("public") == "1";
                w.state.store.set_repo_public(&repo.owner, &repo.slug, public)?;
                w.audit(Action::RepoUpdate, &target::repo(&repo), json!({ "public": public }));
                Ok(see_other(&format!("{here}?done=saved")))
            }
            "grant" => match parse_grant(&form) {
                Ok((u, p)) => match w.state.store.grant_repo(&u, &repo.owner, &repo.slug, p) {
                    Ok(()) => {
                        let grant = format!("{} {}", target::repo(&repo), target::user(&u));
                        w.audit(Action::PermissionGrant, &grant, json!({"permission": crate::api::level_name("REPO", p)}));
                        Ok(see_other(&format!("{here}?done=granted")))
                    }
                    Err(e @ trove_store::StoreError::NoSuchUser(_)) => bad(e.to_string()),
                    Err(e) => Err(e.into()),
                },
                Err(msg) => bad(msg),
            },
            "revoke" => {
                let u = UserName::parse(form.get("user")).map_err(|e| WebError::BadRequest(e.to_string()))?;
                w.state.store.revoke_repo(&u, &repo)?;
                w.audit(Action::PermissionRevoke, &format!("{} {}", target::repo(&repo), target::user(&u)), json!({}));
                Ok(see_other(&format!("{here}?done=revoked")))
            }
            "grant-group" | "revoke-group" => {
                let (g, to) = match parse_group_change(w, &form)? {
                    Ok(change) => change,
                    Err(msg) => return bad(msg),
                };
                let who = w.who().ok_or(WebError::Forbidden)?;
                if access::lowers_own_repo_permission(&w.state.store, &who, &repo, g.id, to)? {
                    return render_repo_settings(w, &key, &slug, Some(Notice::Err(LOWERS_OWN.into())), StatusCode::CONFLICT);
                }
                let grant = format!("{} {}", target::repo(&repo), target::group(&g.name));
                match to {
                    Some(p) => {
                        w.state.store.grant_group_repo(&g.name, &repo.owner, &repo.slug, p)?;
                        w.audit(Action::PermissionGrant, &grant, json!({"permission": crate::api::level_name("REPO", p)}));
                    }
                    None => {
                        w.state.store.revoke_group_repo(&g.name, &repo)?;
                        w.audit(Action::PermissionRevoke, &grant, json!({}));
                    }
                }
                Ok(see_other(&format!("{here}?done={}", if to.is_some() { "granted" } else { "revoked" })))
            }
            "restrict" | "unrestrict" => match branch_permissions::post(w, RestrictionScope::Repository(repo.id), ScopeOf::Repository(&repo), &form)? {
                Ok(done) => Ok(see_other(&format!("{here}?done={done}"))),
                Err(msg) => bad(msg),
            },
            "required-build-add" | "required-build-delete" => match super::builds::required_post(w, &repo, &form)? {
                Ok(done) => Ok(see_other(&format!("{here}?done={done}#required-builds"))),
                Err(msg) => bad(msg),
            },
            a if a.starts_with("webhook-") => match webhooks::post(w, repo.project_id, Some(repo.id), &target::repo(&repo), &form)? {
                webhooks::Posted::Done(done) => Ok(see_other(&format!("{here}?done={done}#webhooks"))),
                webhooks::Posted::Bad(msg) => bad(msg),
                webhooks::Posted::Said(msg) => render_repo_settings(w, &key, &slug, Some(Notice::Ok(msg)), StatusCode::OK),
            },
            "delete" => {
                if form.get("confirm") != repo.slug.as_str() {
                    return bad(format!("type {} to confirm the deletion", repo.slug));
                }
                w.state.store.delete_repo(&repo)?;
                w.audit(Action::RepoDelete, &target::repo(&repo), json!({"name": repo.name, "id": repo.id}));
                Ok(see_other(&format!("{}?done=deleted", project_link(w, &repo.owner))))
            }
            other => Err(WebError::BadRequest(format!("unknown action {other:?}"))),
        }
    })
    .await
}

/// Used by the admin projects page: a project key from a form.
/// `GET /projects/{KEY}/repos/{slug}/fork`: the fork form (logged-in readers): the target
/// project (the caller's personal project, or one they may create repositories in) and a name.
pub(crate) async fn fork_page(w: Web, p: Result<Path<(String, String)>, PathRejection>) -> WebResult {
    w.blocking(move |w| {
        let (key, slug) = seg(p)?;
        w.require_user()?;
        render_fork(w, &key, &slug, None, None, StatusCode::OK)
    })
    .await
}

/// The projects `w`'s caller may fork into: their personal project first, then the others by
/// key.
fn fork_targets(w: &Web) -> Result<Vec<String>, WebError> {
    let who = w.who();
    let user = w.require_user()?;
    let mine = format!("~{}", user.name);
    let mut out = vec![mine.clone()];
    for p in w.state.store.visible_projects(Some(user), access::sees_everything(who.as_ref()))? {
        let key = p.owner.to_string();
        if key != mine && access::create_repo(&w.state.store, who.as_ref(), &key).is_ok() {
            out.push(key);
        }
    }
    Ok(out)
}

fn render_fork(w: &Web, key: &str, slug: &str, note: Option<Notice>, chosen: Option<(&str, &str)>, status: StatusCode) -> WebResult {
    let (repo, perm) = repo_access(w, key, slug, Permission::Read)?;
    let forkable = w.state.store.repo_forkable(&repo)?;
    let targets = fork_targets(w)?;
    let (target, name) = chosen.unwrap_or((targets[0].as_str(), repo.name.as_str()));
    let body = html! {
        (repo_header(w, &repo, perm, "fork"))
        (notice(&note))
        @if forkable {
            h2 { "Fork " (repo.name) }
            form.card #fork-form method="post" action=(repo_link(w, &repo, "/fork")) {
                (csrf_field(w))
                div.field { label for="fork-project" { "Project" }
                    select #fork-project name="project" {
                        @for t in &targets { option value=(t) selected[t.as_str() == target] { (t) } }
                    }
                    div.help { "Your personal project, or a project where you may create repositories." } }
                div.field { label for="fork-name" { "Name" } input #fork-name type="text" name="name" required maxlength=(trove_store::MAX_NAME_LEN) value=(name); }
                p.muted { "The fork gets this repository's branches and tags as they are now; later changes to either are not copied to the other." }
                button type="submit" { "Fork repository" }
            }
        } @else {
            div.card #fork-disabled { p { "Forking is disabled for this repository." } }
        }
    };
    let mut r = page(w, &format!("Fork - {}", repo.name), body);
    *r.status_mut() = status;
    Ok(r)
}

/// `POST /projects/{KEY}/repos/{slug}/fork` `{project, name}`: makes the fork (the same rules as
/// REST's fork) and goes to it.
pub(crate) async fn fork_post(w: Web, p: Result<Path<(String, String)>, PathRejection>, form: Form) -> WebResult {
    let (key, slug) = seg(p)?;
    // No repack of the origin while its files are linked (see `Maintenance::hold`).
    let (origin, _) = repo_access_async(&w, &key, &slug, Permission::Read).await?;
    let _held = w.state.maintenance.hold(origin.id, w.state.store.repo_path(&origin)).await;
    w.blocking(move |w| {
        w.check_csrf(&form)?;
        let (origin, _) = repo_access(w, &key, &slug, Permission::Read)?;
        let (target, name) = (form.get("project").trim(), form.get("name").trim());
        let bad = |msg: String, status| render_fork(w, &key, &slug, Some(Notice::Err(msg)), Some((target, name)), status);
        if !w.state.store.repo_forkable(&origin)? {
            return bad("Forking is disabled for this repository.".into(), StatusCode::BAD_REQUEST);
        }
        let who = w.who();
        let owner = match access::create_repo(&w.state.store, who.as_ref(), target) {
            Ok(o) => o,
            Err(AccessError::Store(e)) => return Err(e.into()),
            Err(_) => return bad(format!("You cannot create repositories in {target}."), StatusCode::FORBIDDEN),
        };
        if name.is_empty() || name.len() > trove_store::MAX_NAME_LEN || name.chars().any(char::is_control) {
            return bad(format!("Give the fork a name of 1 to {} characters.", trove_store::MAX_NAME_LEN), StatusCode::BAD_REQUEST);
        }
        let fork_slug = match RepoSlug::parse(&crate::api::slugify(name)) {
            Ok(s) => s,
            Err(e) => return bad(format!("The name {name:?} makes no valid slug: {e}."), StatusCode::BAD_REQUEST),
        };
        let made = w.state.store.fork_repo(&origin, &owner, &fork_slug).and_then(|fork| {
            // `repo:forked`, as REST's fork writes it: with the step that names the fork.
            let mut api = crate::api::Api::background(&w.state);
            (api.view, api.who) = (w.view.clone(), w.who());
            let project = w.state.store.project_info(&owner)?.ok_or_else(|| trove_store::StoreError::NoSuchProject(owner.to_string()))?;
            let events = crate::webhooks::repo_forked(&api, &origin, &trove_store::Repo { name: name.to_owned(), ..fork.clone() }, &project)?;
            let update = trove_store::RepoUpdate { name: Some((name.to_owned(), fork_slug.clone())), ..Default::default() };
            let fork = w.state.store.update_repo_with_events(&fork, &update, &events)?;
            if !events.is_empty() {
                w.state.webhooks.wake();
            }
            Ok(fork)
        });
        match made {
            Ok(fork) => {
                w.audit(
                    Action::RepoCreate,
                    &target::repo(&fork),
                    json!({"name": fork.name, "public": fork.public, "id": fork.id, "origin": origin.display_path()}),
                );
                Ok(see_other(&repo_link(w, &fork, "/browse")))
            }
            Err(e @ trove_store::StoreError::RepoExists(_)) => bad(e.to_string(), StatusCode::CONFLICT),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

pub(crate) fn parse_key(s: &str) -> Result<ProjectKey, String> {
    ProjectKey::parse(s.trim()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(super::human_size(1536), "1.5 KiB");
        assert_eq!(super::human_size(3 << 20), "3.0 MiB");
    }
}
