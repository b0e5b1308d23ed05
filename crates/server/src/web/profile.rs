//! People: `/users/{name}` profile pages (display name, initials for an avatar, the personal
//! repositories the caller may read), the administrator's page for one user
//! (`/admin/users/view?name=`, as Bitbucket's: their details, and deleting the account), and the
//! checks of a display name and e-mail address that the account page, these pages and REST
//! share.
//!
//! Deleting a user keeps their content, as Bitbucket does (see `Store::delete_user`): their
//! pull requests, comments, commits and audit entries stay and still name them; their sessions,
//! tokens, SSH keys, grants and group memberships go; their personal project and repositories
//! stay, owned by nobody, for administrators to keep, move or delete.

use std::collections::HashMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query};
use axum::response::IntoResponse;
use http::{HeaderValue, StatusCode, header};
use maud::{Markup, html};
use serde_json::json;
use trove_store::{GlobalPermission, Owner, User, UserName};

use super::view::{Notice, csrf_field, notice, page};
use super::{Form, Web, WebError, WebResult, see_other, url_encode};
use crate::audit::{Action, target};

type Q = Query<HashMap<String, String>>;

/// The style of profile pages (added to `trove.css`).
pub(crate) const CSS: &str = r#"
/* profiles (web/profile.rs) */
.profile-head{display:flex;gap:16px;align-items:center;flex-wrap:wrap;margin-bottom:16px}.profile-head h1{margin:0}.profile-head p{margin:2px 0}
.avatar{display:inline-flex;flex:none;width:64px;height:64px;border-radius:50%;background:#0052cc;color:#fff;align-items:center;justify-content:center;font-size:24px;font-weight:700;letter-spacing:1px}
.avatar.deleted{background:#6b778c}.danger-zone{border-color:#ff8f73}.profile-head p a,p.profile-note a{text-decoration:underline}
"#;

/// Pull requests a profile lists.
const RECENT_PRS: usize = 10;

/// The longest display name or e-mail address. Default 255, as Bitbucket's columns.
const MAX_DETAIL: usize = 255;

/// A display name and an e-mail address as a form or REST sent them, checked: the display name
/// trimmed, 1 to 255 characters without control characters; the address either empty (which
/// removes it) or one `@` address without spaces or control characters. The address comes back
/// as the store takes it (`Some("")` removes it).
pub(crate) fn check_details(display: &str, email: &str) -> Result<(String, String), String> {
    let display = display.trim();
    if display.is_empty() || display.chars().count() > MAX_DETAIL || display.chars().any(char::is_control) {
        return Err(format!("The display name must be 1 to {MAX_DETAIL} characters, without control characters."));
    }
    let email = email.trim();
    if !email.is_empty() {
        let ok = email.chars().count() <= MAX_DETAIL
            && !email.chars().any(|c| c.is_control() || c.is_whitespace())
            && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
        if !ok {
            return Err(format!("{email:?} is not an e-mail address; write it as name@example.com, or leave it empty to remove it."));
        }
    }
    Ok((display.to_owned(), email.to_owned()))
}

/// Up to two initials of a display name (`Jane Doe` → `JD`), for an avatar.
pub(crate) fn initials(display: &str) -> String {
    let words: Vec<&str> = display.split_whitespace().collect();
    let pick = |w: &str| w.chars().next().map(|c| c.to_uppercase().collect::<String>()).unwrap_or_default();
    match words.as_slice() {
        [] => "?".to_owned(),
        [one] => pick(one),
        [first, .., last] => format!("{}{}", pick(first), pick(last)),
    }
}

/// `GET /users/{name}`: the user's profile. An anonymous caller is sent to the personal project
/// (which shows what is public), as before profiles existed.
pub(crate) async fn profile(w: Web, name: Result<Path<String>, PathRejection>) -> WebResult {
    let raw = name.map(|Path(n)| n).map_err(|_| WebError::NotFound)?;
    w.blocking(move |w| {
        let name = UserName::parse(&raw).map_err(|_| WebError::NotFound)?;
        if w.user().is_none() {
            let mut r = StatusCode::FOUND.into_response();
            let location = w.link(&format!("/projects/~{name}"));
            r.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&location).map_err(|_| WebError::NotFound)?);
            return Ok(r);
        }
        let Some(u) = w.state.store.user(&name)? else { return Err(WebError::NotFound) };
        let who = w.who();
        let owner = Owner::User(u.name.clone());
        let mut repos = Vec::new();
        if let Some(p) = w.state.store.project_info(&owner)? {
            for r in w.state.store.project_repos(&p.as_project())? {
                if w.state.store.permission(who.as_ref(), &r)?.is_some() {
                    repos.push(r);
                }
            }
        }
        // Their latest pull requests (as author), in repositories the caller may read.
        let q = trove_store::PrQuery {
            participants: vec![trove_store::ParticipantFilter { user_id: u.id, role: Some(trove_store::Role::Author), statuses: vec![] }],
            by_update: true,
            limit: RECENT_PRS * 4,
            ..Default::default()
        };
        let mut prs = Vec::new();
        for pr in w.state.store.prs(&q)?.0 {
            if prs.len() == RECENT_PRS {
                break;
            }
            if let Some(r) = w.state.store.repo_by_id(pr.repo_id)?
                && w.state.store.permission(who.as_ref(), &r)?.is_some()
            {
                prs.push((pr, r));
            }
        }
        let me = w.user().is_some_and(|m| m.id == u.id);
        let project = w.link(&format!("/projects/{}", url_encode(&owner.to_string())));
        let body = html! {
            div.profile-head #profile {
                span.avatar aria-hidden="true" { (initials(&u.display_name)) }
                div {
                    h1 #profile-name { (u.display_name) }
                    p.muted { "@" (u.name) @if !u.active { " " span.badge.off { "disabled" } } }
                    @if let Some(e) = u.email.as_deref().filter(|e| !e.is_empty()) { p #profile-email { a href={ "mailto:" (e) } { (e) } } }
                    p {
                        a href=(project) { "Personal project" }
                        @if me { " · " a href=(w.link("/account")) { "Edit your profile" } }
                        @if w.is_admin() { " · " a #manage-user href=(w.link(&format!("/admin/users/view?name={}", url_encode(u.name.as_str())))) { "Manage user" } }
                    }
                }
            }
            h2 { "Recent pull requests" }
            @if prs.is_empty() { div.card { p.muted #no-recent-prs { "No pull requests you can see." } } }
            @else {
                table.list #profile-prs {
                    thead { tr { th { "Pull request" } th { "Repository" } th { "State" } th { "Updated" } } }
                    tbody { @for (pr, r) in &prs {
                        @let base = format!("/projects/{}/repos/{}", url_encode(&r.owner.to_string()), r.slug);
                        tr {
                            td { a href=(w.link(&format!("{base}/pull-requests/{}/overview", pr.number))) { (pr.title) } }
                            td { a href=(w.link(&format!("{base}/browse"))) { (r.owner) "/" (r.slug) } }
                            td { span.badge { (pr.state.as_str()) } }
                            td.muted { (super::view::utc(pr.updated_at)) }
                        }
                    } }
                }
            }
            h2 { "Repositories" }
            @if repos.is_empty() { div.card { p.muted #no-personal-repos { "No personal repositories you can see." } } }
            @else {
                table.list #profile-repos {
                    thead { tr { th { "Repository" } th { "Visibility" } } }
                    tbody { @for r in &repos {
                        tr {
                            td { a href=(w.link(&format!("/projects/{}/repos/{}/browse", url_encode(&owner.to_string()), r.slug))) { (r.name) } }
                            td { @if r.public { span.badge.public { "public" } } @else { span.badge { "private" } } }
                        }
                    } }
                }
            }
        };
        Ok(page(w, &u.display_name, body))
    })
    .await
}

fn admin_user_link(w: &Web, name: &UserName) -> String {
    w.link(&format!("/admin/users/view?name={}", url_encode(name.as_str())))
}

/// Why an administrator may not delete `target` (REST and the page say the same).
pub(crate) fn deletion_refusal(me: &User, target: &User) -> Option<&'static str> {
    if me.id == target.id {
        return Some("You cannot delete your own account; ask another administrator.");
    }
    if target.global == Some(GlobalPermission::SysAdmin) && me.global != Some(GlobalPermission::SysAdmin) {
        return Some("Only a system administrator may delete a system administrator.");
    }
    None
}

/// `GET /admin/users/view?name=`: one user's details for an administrator, with the forms that
/// change them and delete the account.
pub(crate) async fn admin_user(w: Web, Query(q): Q) -> WebResult {
    w.blocking(move |w| {
        w.require_admin()?;
        let name = UserName::parse(q.get("name").map(String::as_str).unwrap_or("")).map_err(|_| WebError::NotFound)?;
        let note = match q.get("done").map(String::as_str) {
            Some("saved") => Some(Notice::Ok("Saved.".into())),
            _ => None,
        };
        render_admin_user(w, &name, note, StatusCode::OK)
    })
    .await
}

fn render_admin_user(w: &Web, name: &UserName, note: Option<Notice>, status: StatusCode) -> WebResult {
    let me = w.require_admin()?.clone();
    let Some(u) = w.state.store.user(name)? else { return Err(WebError::NotFound) };
    let action = admin_user_link(w, &u.name);
    let personal = w.state.store.project_info(&Owner::User(u.name.clone()))?;
    let personal_repos = match &personal {
        Some(p) => w.state.store.project_repos(&p.as_project())?.len(),
        None => 0,
    };
    let refusal = deletion_refusal(&me, &u);
    let body = html! {
        div.crumbs { a href=(w.link("/admin")) { "Administration" } " / " a href=(w.link("/admin/users")) { "Users" } }
        div.profile-head {
            span.avatar aria-hidden="true" { (initials(&u.display_name)) }
            div { h1 { (u.display_name) } p.muted { "@" (u.name) " · " a href=(w.link(&format!("/users/{}", url_encode(u.name.as_str())))) { "Profile" } } }
        }
        (notice(&note))
        h2 { "Details" }
        (details_form(w, &action, &u))
        h2 { "Delete user" }
        div.card.danger-zone #delete-user {
            p { "Deleting " strong { (u.name) } " ends their sessions and removes their access tokens, SSH keys, permissions and group memberships. "
                "Their pull requests, comments, commits and audit log entries stay and keep showing their name." }
            p { @if personal_repos > 0 { "Their personal project keeps its " (personal_repos) " repositories; administrators can still open, move or delete them. " }
                "An account made again with the same name gets the personal project back." }
            @if let Some(why) = refusal { p.muted #delete-refused { (why) } }
            @else {
                form method="post" action=(action) {
                    (csrf_field(w))
                    input type="hidden" name="action" value="delete";
                    div.field {
                        label for="confirm-delete" { "Type the username to confirm" }
                        input #confirm-delete type="text" name="confirm" required autocomplete="off";
                    }
                    button.danger type="submit" { "Delete user" }
                }
            }
        }
    };
    let mut r = page(w, &format!("{} - Users", u.name), body);
    *r.status_mut() = status;
    Ok(r)
}

/// The display name and e-mail form, for the account page and the administrator's.
pub(crate) fn details_form(w: &Web, action: &str, u: &User) -> Markup {
    html! {
        form.card method="post" action=(action) #details-form {
            (csrf_field(w))
            input type="hidden" name="action" value="details";
            div.field { label for="display-name" { "Display name" } input #display-name type="text" name="displayName" value=(u.display_name) required maxlength="255" autocomplete="name"; }
            div.field {
                label for="email" { "E-mail address" }
                input #email type="text" inputmode="email" name="email" value=(u.email.as_deref().unwrap_or("")) maxlength="255" autocomplete="email";
                div.help { "Shown on the profile to signed-in users; leave it empty to remove it." }
            }
            button type="submit" { "Save details" }
        }
    }
}

/// Saves the details form for `name`; `Err(message)` for a bad form. Blocks.
pub(crate) fn save_details(w: &Web, name: &UserName, form: &Form) -> Result<Result<(), String>, WebError> {
    let (display, email) = match check_details(form.get("displayName"), form.get("email")) {
        Ok(d) => d,
        Err(msg) => return Ok(Err(msg)),
    };
    w.state.store.set_user_details(name, Some(&display), Some(&email))?;
    w.audit(Action::UserUpdate, &target::user(name), json!({"displayName": display, "emailAddress": (!email.is_empty()).then_some(&email)}));
    Ok(Ok(()))
}

/// `POST /admin/users/view?name=`: `action=details` or `action=delete` (with `confirm`, the
/// name typed again).
pub(crate) async fn admin_user_post(w: Web, Query(q): Q, form: Form) -> WebResult {
    w.blocking(move |w| {
        w.check_csrf(&form)?;
        let me = w.require_admin()?.clone();
        let name = UserName::parse(q.get("name").map(String::as_str).unwrap_or("")).map_err(|_| WebError::NotFound)?;
        let Some(u) = w.state.store.user(&name)? else { return Err(WebError::NotFound) };
        let bad = |msg: &str| render_admin_user(w, &name, Some(Notice::Err(msg.to_owned())), StatusCode::BAD_REQUEST);
        match form.get("action") {
            "details" => match save_details(w, &name, &form)? {
                Ok(()) => Ok(see_other(&format!("{}&done=saved", admin_user_link(w, &name)))),
                Err(msg) => bad(&msg),
            },
            "delete" => {
                if let Some(why) = deletion_refusal(&me, &u) {
                    return bad(why);
                }
                if form.get("confirm").trim() != u.name.as_str() {
                    return bad("Type the username exactly to confirm; nothing was deleted.");
                }
                w.state.store.delete_user(&name)?;
                w.audit(Action::UserDelete, &target::user(&name), json!({"displayName": u.display_name}));
                Ok(see_other(&w.link("/admin/users?done=deleted")))
            }
            other => Err(WebError::BadRequest(format!("unknown action {other:?}"))),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_are_checked_with_messages_that_say_what_to_write() {
        assert_eq!(check_details("  Jane Doe ", " jane@example.com "), Ok(("Jane Doe".into(), "jane@example.com".into())));
        assert_eq!(check_details("Jane", ""), Ok(("Jane".into(), String::new())), "an empty address removes it");
        assert!(check_details(" ", "").unwrap_err().contains("display name"));
        assert!(check_details("a\u{1}b", "").is_err());
        assert!(check_details(&"x".repeat(256), "").is_err());
        for bad in ["jane", "@example.com", "jane@", "ja ne@example.com", "a@b@c"] {
            assert!(check_details("Jane", bad).unwrap_err().contains("not an e-mail address"), "{bad}");
        }
    }

    #[test]
    fn initials_take_the_first_and_last_words() {
        assert_eq!(initials("Jane Doe"), "JD");
        assert_eq!(initials("jane q. doe"), "JD");
        assert_eq!(initials("alice"), "A");
        assert_eq!(initials("  "), "?");
        assert_eq!(initials("élodie durand"), "ÉD");
    }
}
