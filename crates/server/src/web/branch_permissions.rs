//! The "Branch permissions" part of the project and repository settings pages: the restrictions
//! set there, each with a button to delete it, and a form to add one (type, matcher, exempt
//! users and groups). The rules are the REST API's ([`crate::branch_permissions::lockout`]
//! included); the settings pages (`repo.rs`) dispatch the `restrict` and `unrestrict` actions
//! here.

use maud::{Markup, html};
use trove_store::{GroupName, Matcher, MatcherType, NewRestriction, Restriction, RestrictionScope, RestrictionType, UserName};

use super::view::csrf_field;
use super::{Form, Web, WebError};
use crate::audit::Action;
use crate::branch_permissions::{ScopeOf, lockout};

/// The branches and tags of `repos` now, each with its repository's default branch, so that a
/// restriction that matches none of them can say so (it is allowed: the branch may come later).
pub(crate) fn current_refs(w: &Web, repos: &[trove_store::Repo]) -> Vec<(String, Option<String>)> {
    let store = &w.state.store;
    let mut out = Vec::new();
    for repo in repos {
        let git = |args: &[&str]| {
            std::process::Command::new(store.git_binary())
                .env_clear()
                .envs(trove_store::git_env(store.git_home()))
                .arg("--git-dir")
                .arg(store.repo_path(repo))
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        };
        let head = git(&["symbolic-ref", "-q", "HEAD"]).map(|h| h.trim().to_owned());
        for name in git(&["for-each-ref", "--format=%(refname)", "refs/heads", "refs/tags"]).unwrap_or_default().lines() {
            out.push((name.to_owned(), head.clone()));
        }
    }
    out
}

/// The section, for the settings page posting to `action`. `refs` are the branches and tags
/// the restrictions apply to now ([`current_refs`]).
pub(crate) fn section(w: &Web, action: &str, restrictions: &[Restriction], inherited: usize, refs: &[(String, Option<String>)]) -> Result<Markup, WebError> {
    let mut rows = Vec::with_capacity(restrictions.len());
    for r in restrictions {
        let mut exempt: Vec<String> = Vec::new();
        for id in &r.users {
            if let Some(u) = w.state.store.user_by_id(*id)? {
                exempt.push(u.name.to_string());
            }
        }
        exempt.extend(r.groups.iter().map(|g| format!("group {}", g.name)));
        rows.push((r, exempt.join(", ")));
    }
    Ok(html! {
        h2 { "Branch permissions" }
        p.muted {
            "Nobody is exempt unless listed, administrators included. "
            @if inherited > 0 { (inherited) " more from the project apply here too (see the project's settings)." }
        }
        table.list #branch-restrictions {
            thead { tr { th { "Restriction" } th { "Branches" } th { "Exempt" } th {} } }
            tbody {
                @if rows.is_empty() { tr { td colspan="4" .muted { "No branch is restricted here." } } }
                @for (r, exempt) in &rows {
                    tr data-restriction=(r.id) {
                        td { (r.kind) }
                        td {
                            (r.matcher.kind().name()) ": " code { (r.matcher.display_id()) }
                            @if !refs.iter().any(|(name, head)| r.matcher.matches(name, head.as_deref())) {
                                " " span.muted.no-match { "(matches no branch or tag now)" }
                            }
                        }
                        td { @if exempt.is_empty() { span.muted { "nobody" } } @else { (exempt) } }
                        td { form.inline method="post" action=(action) { (csrf_field(w)) input type="hidden" name="action" value="unrestrict"; input type="hidden" name="id" value=(r.id); button.secondary type="submit" { "Delete" } } }
                    }
                }
            }
        }
        form.card.inline.spaced method="post" action=(action) #restrict {
            (csrf_field(w))
            input type="hidden" name="action" value="restrict";
            select name="type" aria-label="Restriction" {
                @for t in RestrictionType::ALL { option value=(t.as_str()) { (t.as_str()) } }
            }
            select name="matcher_type" aria-label="Matcher" {
                @for t in [MatcherType::Branch, MatcherType::Pattern, MatcherType::ModelCategory, MatcherType::ModelBranch] { option value=(t.as_str()) { (t.name()) } }
            }
            input type="text" name="matcher" placeholder="main, release/*, FEATURE, development" required aria-label="Branch, pattern, category or model branch";
            input type="text" name="users" placeholder="exempt users (comma-separated)" aria-label="Exempt users";
            input type="text" name="groups" placeholder="exempt groups (comma-separated)" aria-label="Exempt groups";
            button type="submit" { "Add" }
        }
    })
}

/// Handles `restrict` and `unrestrict` for `scope` (the project or repository of the page):
/// `Ok(Ok(done code))`, or `Ok(Err(message))` for a form to show again.
pub(crate) fn post(w: &Web, scope: RestrictionScope, of: ScopeOf<'_>, form: &Form) -> Result<Result<&'static str, String>, WebError> {
    let store = &w.state.store;
    if form.get("action") == "unrestrict" {
        let id: i64 = form.get("id").parse().map_err(|_| WebError::BadRequest("the form names no restriction".into()))?;
        match store.restriction(id)? {
            Some(r) if r.scope == scope => {
                store.delete_restriction(id)?;
                w.audit(Action::RestrictionDelete, &of.audit_target(), details(&r.kind, &r.matcher, r.id));
                return Ok(Ok("unrestricted"));
            }
            _ => return Err(WebError::NotFound),
        }
    }
    let Some(kind) = RestrictionType::parse(form.get("type")) else { return Ok(Err(format!("{:?} is not a restriction type", form.get("type")))) };
    let Some(mtype) = MatcherType::parse(form.get("matcher_type")) else { return Ok(Err(format!("{:?} is not a matcher type", form.get("matcher_type")))) };
    let matcher = match Matcher::new(mtype, form.get("matcher").trim()) {
        Ok(m) => m,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let mut users = Vec::new();
    for name in form.get("users").split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()) {
        let found = match UserName::parse(name) {
            Ok(n) => store.user(&n)?,
            Err(_) => None,
        };
        match found {
            Some(u) => users.push(u.id),
            None => return Ok(Err(format!("user {name} does not exist"))),
        }
    }
    let mut groups = Vec::new();
    for name in form.get("groups").split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let found = match GroupName::parse(name) {
            Ok(n) => store.group(&n)?,
            Err(_) => None,
        };
        match found {
            Some(g) => groups.push(g.id),
            None => return Ok(Err(format!("group {name} does not exist"))),
        }
    }
    let new = NewRestriction { scope, kind, matcher, users, groups, access_keys: Vec::new() };
    if let Some(reason) = lockout(store, of, &new)? {
        return Ok(Err(reason));
    }
    let made = store.insert_restrictions(&[new])?;
    for r in &made {
        w.audit(Action::RestrictionCreate, &of.audit_target(), details(&r.kind, &r.matcher, r.id));
    }
    Ok(Ok("restricted"))
}

fn details(kind: &RestrictionType, matcher: &Matcher, id: i64) -> serde_json::Value {
    serde_json::json!({"id": id, "type": kind.as_str(), "matcher": {"type": matcher.kind().as_str(), "id": matcher.id()}})
}
