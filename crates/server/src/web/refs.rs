//! A repository's branches and tags pages (`…/branches`, `…/tags`, as Bitbucket's): each ref
//! with its last commit and, for branches, how far it is ahead of and behind the default
//! branch; a filter by name, pages, and forms to create and delete them. Creating and deleting
//! is [`crate::ref_changes`]'s, the same rules and events as REST (write permission, branch
//! permissions, compare-and-swap, the push event and its webhooks). Also the branch picker the
//! repository pages share ([`picker`]).

use std::collections::HashMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query};
use http::StatusCode;
use maud::{Markup, html};
use trove_store::{Permission, Repo};

use super::commit_list::when;
use super::view::{Notice, csrf_field, notice, page};
use super::{Form, Web, WebError, WebResult, see_other, url_encode};
use crate::access::{self, AccessError};
use crate::ref_changes::{RefChanges, RefError};
use crate::ref_list::{self, RefRow};
use crate::repo_read::{Reader, Refs, Resolved};

type Q = Query<HashMap<String, String>>;
type RepoPath = Result<Path<(String, String)>, PathRejection>;

/// Branches or tags a page lists. Default 25, as Bitbucket's.
const PAGE: usize = 25;
/// Branches (and as many tags) the picker lists; past them its filter box leads to the full
/// branches page. Default 100.
const PICKER_MAX: usize = 100;

fn seg<T>(p: Result<Path<T>, PathRejection>) -> Result<T, WebError> {
    p.map(|Path(t)| t).map_err(|_| WebError::NotFound)
}

fn refused(w: &Web, e: AccessError) -> WebError {
    match e {
        AccessError::Anonymous(_) => w.require_user().err().unwrap_or(WebError::NotFound),
        AccessError::Hidden(_) => WebError::NotFound,
        AccessError::Forbidden(_) => WebError::Forbidden,
        AccessError::Store(e) => e.into(),
    }
}

async fn repo_access(w: &Web, key: &str, slug: &str, need: Permission) -> Result<(Repo, Permission), WebError> {
    let (key, slug) = (key.to_owned(), slug.to_owned());
    w.clone()
        .blocking(move |w| {
            let who = w.who();
            access::repo(&w.state.store, who.as_ref(), &key, &slug, need)
                .map(|a| (a.repo, a.level))
                .map_err(|e| w.repo_refusal(&key, &slug, e, |e| refused(w, e)))
        })
        .await
}

fn repo_link(w: &Web, repo: &Repo, rest: &str) -> String {
    w.link(&format!("/projects/{}/repos/{}{rest}", url_encode(&repo.owner.to_string()), repo.slug))
}

fn reader(w: &Web, repo: &Repo) -> Reader {
    Reader::new(&w.state, w.state.store.repo_path(repo))
}

/// Branches or tags: the two pages differ in little but words.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Branch,
    Tag,
}

impl Kind {
    fn plural(self) -> &'static str {
        match self {
            Kind::Branch => "branches",
            Kind::Tag => "tags",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Kind::Branch => "branch",
            Kind::Tag => "tag",
        }
    }
}

/// The notice for `?done=` after a form of these pages succeeded.
fn done(q: &HashMap<String, String>) -> Option<Notice> {
    let name = q.get("name").map(String::as_str).unwrap_or("");
    let text = match q.get("done").map(String::as_str)? {
        "branch-created" => format!("Branch {name} created."),
        "branch-deleted" => format!("Branch {name} deleted."),
        "tag-created" => format!("Tag {name} created."),
        "tag-deleted" => format!("Tag {name} deleted."),
        _ => return None,
    };
    Some(Notice::Ok(text))
}

/// `GET …/branches?filter=&start=`.
pub(crate) async fn branches(w: Web, p: RepoPath, Query(q): Q) -> WebResult {
    let (key, slug) = seg(p)?;
    render(&w, &key, &slug, Kind::Branch, &q, done(&q), None, StatusCode::OK).await
}

/// `GET …/tags?filter=&start=`.
pub(crate) async fn tags(w: Web, p: RepoPath, Query(q): Q) -> WebResult {
    let (key, slug) = seg(p)?;
    render(&w, &key, &slug, Kind::Tag, &q, done(&q), None, StatusCode::OK).await
}

/// What a refused form had in it, shown again.
#[derive(Default)]
struct Typed {
    name: String,
    start: String,
    message: String,
}

#[allow(clippy::too_many_arguments)]
async fn render(
    w: &Web,
    key: &str,
    slug: &str,
    kind: Kind,
    q: &HashMap<String, String>,
    note: Option<Notice>,
    typed: Option<Typed>,
    status: StatusCode,
) -> WebResult {
    let (repo, perm) = repo_access(w, key, slug, Permission::Read).await?;
    let g = reader(w, &repo);
    let refs = g.refs().await?;
    let default = refs.default_branch().cloned();
    let filter = q.get("filter").map(|f| f.trim().to_owned()).unwrap_or_default();
    let start: usize = q.get("start").and_then(|s| s.parse().ok()).unwrap_or(0);
    let (mut rows, counted) = match kind {
        Kind::Branch => ref_list::branches(&g, refs.head.as_deref(), default.as_ref().map(|d| d.commit.as_str())).await?,
        Kind::Tag => (ref_list::tags(&g).await?, true),
    };
    rows.retain(|r| ref_list::matches(r, &filter));
    let total = rows.len();
    let start = start.min(total.saturating_sub(1) / PAGE * PAGE);
    let mut shown: Vec<RefRow> = rows.into_iter().skip(start).take(PAGE).collect();
    if !counted && let Some(d) = &default {
        ref_list::fill_ahead_behind(&g, &d.commit, &mut shown).await?;
    }
    let builds = super::builds::statuses(w, vec![repo.id], shown.iter().map(|r| r.commit.clone()).collect()).await?;
    let here = repo_link(w, &repo, &format!("/{}", kind.plural()));
    let commits = repo_link(w, &repo, "/commits");
    let browse = repo_link(w, &repo, "/browse");
    let may_write = perm >= Permission::Write && w.user().is_some();
    let typed = typed.unwrap_or_default();
    let start_default = default.as_ref().map(|d| d.short.clone()).unwrap_or_default();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let page_link = |s: usize| {
        let mut l = format!("{here}?start={s}");
        if !filter.is_empty() {
            l.push_str(&format!("&filter={}", url_encode(&filter)));
        }
        l
    };
    let body = html! {
        (super::repo::repo_header(w, &repo, perm, kind.plural()))
        (notice(&note))
        div.repo-bar.refs-bar {
            form.inline #ref-filter-form method="get" action=(here) role="search" {
                input #ref-filter type="search" name="filter" value=(filter) placeholder={ "Filter " (kind.plural()) } aria-label={ "Filter " (kind.plural()) };
                button.secondary type="submit" { "Filter" }
                @if !filter.is_empty() { a href=(here) { "Clear" } }
            }
            span.muted #ref-count { (total) " " @if total == 1 { (kind.word()) } @else { (kind.plural()) } @if !filter.is_empty() { " matching" } }
        }
        @if may_write {
            details.card #create-ref open[!typed.name.is_empty()] {
                summary { "Create " (kind.word()) }
                form method="post" action=(here) #create-ref-form {
                    (csrf_field(w))
                    input type="hidden" name="action" value="create";
                    div.field {
                        label for="ref-name" { (if kind == Kind::Branch { "Branch name" } else { "Tag name" }) }
                        input #ref-name type="text" name="name" required value=(typed.name) autocomplete="off" placeholder=(if kind == Kind::Branch { "feature/my-change" } else { "v1.0" });
                    }
                    div.field {
                        label for="ref-start" { "From" }
                        input #ref-start type="text" name="startPoint" required list="ref-starts" autocomplete="off"
                            value=(if typed.start.is_empty() { start_default.as_str() } else { typed.start.as_str() });
                        datalist #ref-starts { @for b in refs.branches.iter().take(PICKER_MAX) { option value=(b.short) {} } @for t in refs.tags.iter().take(PICKER_MAX) { option value=(t.short) {} } }
                        div.help { "A branch, a tag or a commit id." }
                    }
                    @if kind == Kind::Tag {
                        div.field {
                            label for="ref-message" { "Message" }
                            input #ref-message type="text" name="message" value=(typed.message);
                            div.help { "With a message the tag is annotated (tagged by you); without one it is lightweight." }
                        }
                    }
                    button type="submit" { "Create " (kind.word()) }
                }
            }
        }
        @if shown.is_empty() {
            div.card { p.muted #no-refs { @if filter.is_empty() { "This repository has no " (kind.plural()) "." } @else { "No " (kind.word()) " matches " code { (filter) } "." } } }
        } @else {
            table.list.refs-table id=(kind.plural()) {
                thead { tr {
                    th { (if kind == Kind::Branch { "Branch" } else { "Tag" }) }
                    th { "Last commit" }
                    @if kind == Kind::Branch { th.num title={ "Commits " (start_default) " has that this branch has not" } { "Behind" } th.num title={ "Commits this branch has that " (start_default) " has not" } { "Ahead" } }
                    th { "Builds" }
                    @if may_write { th { span.visually-hidden { "Actions" } } }
                } }
                tbody {
                    @for r in &shown {
                        @let is_default = refs.head.as_deref() == Some(r.full.as_str());
                        tr.ref-row data-ref=(r.short) {
                            td.ref-name {
                                a.ref-link href={ (browse) "?at=" (url_encode(&r.full)) } { (r.short) }
                                @if is_default { " " span.badge.default-branch { "default" } }
                                @if let Some(m) = &r.tag_subject { div.small.muted { (m) } }
                            }
                            td.last-commit {
                                a.sha href={ (commits) "/" (r.commit) } { (r.commit.get(..11).unwrap_or(&r.commit)) }
                                " " span.subject { (r.subject) }
                                div.small.muted { (r.author_name) " · " (when(r.author_time, now)) }
                            }
                            @if kind == Kind::Branch {
                                @match (r.ahead_behind, is_default) {
                                    (_, true) => { td.num.muted { "—" } td.num.muted { "—" } },
                                    (Some((ahead, behind)), false) => {
                                        td.num.behind { a href={ (repo_link(w, &repo, "/compare/commits")) "?sourceBranch=" (url_encode(&start_default)) "&targetBranch=" (url_encode(&r.full)) } { (behind) } }
                                        td.num.ahead { a href={ (repo_link(w, &repo, "/compare/commits")) "?sourceBranch=" (url_encode(&r.full)) "&targetBranch=" (url_encode(&start_default)) } { (ahead) } }
                                    },
                                    (None, false) => { td.num.muted { "?" } td.num.muted { "?" } },
                                }
                            }
                            td { @if let Some(b) = builds.get(&r.commit) { (super::commit_list::build_icon(&format!("{commits}/{}#builds", r.commit), b)) } }
                            @if may_write {
                                td.actions {
                                    @if !is_default {
                                        form.inline method="post" action=(here) data-confirm={ "Delete " (kind.word()) " " (r.short) "?" } {
                                            (csrf_field(w))
                                            input type="hidden" name="action" value="delete";
                                            input type="hidden" name="name" value=(r.short);
                                            input type="hidden" name="endPoint" value=(r.commit);
                                            button.secondary.small type="submit" aria-label={ "Delete " (kind.word()) " " (r.short) } { "Delete" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        p.pager {
            @if start > 0 { a #page-prev href=(page_link(start.saturating_sub(PAGE))) { "Previous" } " " }
            @if start + PAGE < total { a #page-next href=(page_link(start + PAGE)) { "Next" } }
        }
    };
    let title = if kind == Kind::Branch { "Branches" } else { "Tags" };
    let mut r = page(w, &format!("{title} - {}", repo.name), body);
    *r.status_mut() = status;
    Ok(r)
}

/// `POST …/branches` `action=create` (`name`, `startPoint`) or `delete` (`name`, `endPoint`).
pub(crate) async fn branches_post(w: Web, p: RepoPath, form: Form) -> WebResult {
    let (key, slug) = seg(p)?;
    post(w, &key, &slug, Kind::Branch, form).await
}

/// `POST …/tags` `action=create` (`name`, `startPoint`, `message`) or `delete` (`name`).
pub(crate) async fn tags_post(w: Web, p: RepoPath, form: Form) -> WebResult {
    let (key, slug) = seg(p)?;
    post(w, &key, &slug, Kind::Tag, form).await
}

/// How a refused change is answered: its status, and the message shown over the form.
fn refusal(e: RefError) -> Result<(StatusCode, String), WebError> {
    let message = e.to_string();
    let status = match e {
        RefError::Invalid { .. } | RefError::NoStartPoint(_) | RefError::IsDefault(_) => StatusCode::BAD_REQUEST,
        RefError::Exists(_) | RefError::Overlaps(..) | RefError::Stale(..) => StatusCode::CONFLICT,
        RefError::Missing(_) => StatusCode::NOT_FOUND,
        RefError::Restricted(_) => StatusCode::FORBIDDEN,
        RefError::Restrictions(e) if e.is_unavailable() => return Err(WebError::DatabaseDown(e.to_string())),
        RefError::Restrictions(e) => return Err(WebError::Internal(e.to_string())),
        RefError::Git(e) => return Err(WebError::Internal(e.to_string())),
        RefError::Journal(_) => return Err(WebError::Internal(message)),
        RefError::Read(e) => return Err(e.into()),
    };
    Ok((status, message))
}

async fn post(w: Web, key: &str, slug: &str, kind: Kind, form: Form) -> WebResult {
    w.check_csrf(&form)?;
    let (repo, _) = repo_access(&w, key, slug, Permission::Write).await?;
    let who = w.who().ok_or(WebError::Csrf)?;
    let changes = RefChanges::from_web(&w.state, &repo, &who);
    let name = form.get("name").trim().to_owned();
    let start = form.get("startPoint").trim().to_owned();
    let message = form.get("message").trim().to_owned();
    let (action, result) = match (form.get("action"), kind) {
        ("create", Kind::Branch) => ("created", changes.create_branch(&name, &start).await.map(|r| r.short)),
        ("create", Kind::Tag) => ("created", changes.create_tag(&name, &start, Some(message.as_str()).filter(|m| !m.is_empty()), false).await.map(|r| r.short)),
        ("delete", Kind::Branch) => {
            let end = Some(form.get("endPoint").trim()).filter(|e| !e.is_empty());
            ("deleted", changes.delete_branch(&name, end, false).await.map(|()| name.clone()))
        }
        ("delete", Kind::Tag) => ("deleted", changes.delete_tag(&name).await.map(|()| name.clone())),
        (other, _) => return Err(WebError::BadRequest(format!("unknown action {other:?}"))),
    };
    let here = repo_link(&w, &repo, &format!("/{}", kind.plural()));
    match result {
        Ok(short) => Ok(see_other(&format!("{here}?done={}-{action}&name={}", kind.word(), url_encode(&short)))),
        Err(e) => {
            let (status, message) = refusal(e)?;
            let what = if action == "created" { "created" } else { "deleted" };
            let note = Notice::Err(format!("The {} was not {what}: {message}", kind.word()));
            let typed = (action == "created").then_some(Typed { name, start, message });
            render(&w, key, slug, kind, &HashMap::new(), Some(note), typed, status).await
        }
    }
}

/// The branch and tag picker of the repository pages: the current ref as a disclosure button
/// that opens a list of links (`{action}?at=…`) to each branch and tag, and a box that filters
/// the list as one types (the page script; without it, the box is a search of the branches
/// page, and the list is a plain list of links).
pub(crate) fn picker(refs: &Refs, current: &Resolved, action: &str, branches_page: &str) -> Markup {
    let link = |full: &str| format!("{action}?at={}", url_encode(full));
    let head = refs.head.as_deref();
    html! {
        details.ref-picker #ref-picker {
            summary #ref-picker-button aria-label={ "Branch or tag: " (current.label) } {
                span.muted.small { @if current.at.starts_with("refs/tags/") { "Tag" } @else if current.at.starts_with("refs/heads/") { "Branch" } @else { "Commit" } }
                " " strong.mono { (current.label) } " ▾"
            }
            div.ref-picker-menu {
                form method="get" action=(branches_page) role="search" {
                    input #ref-picker-filter type="search" name="filter" placeholder="Filter branches and tags" aria-label="Filter branches and tags" autocomplete="off" data-ref-filter;
                }
                ul.ref-options #ref-options {
                    li.group aria-hidden="true" { "Branches" }
                    @for b in refs.branches.iter().take(PICKER_MAX) {
                        li data-name=(b.short) {
                            a href=(link(&b.full)) aria-current=[(b.full == current.at).then_some("true")] { (b.short) @if Some(b.full.as_str()) == head { " " span.badge.default-branch { "default" } } }
                        }
                    }
                    @if refs.branches.len() > PICKER_MAX { li.more { a href=(branches_page) { "All " (refs.branches.len()) " branches" } } }
                    @if !refs.tags.is_empty() {
                        li.group aria-hidden="true" { "Tags" }
                        @for t in refs.tags.iter().take(PICKER_MAX) {
                            li data-name=(t.short) { a href=(link(&t.full)) aria-current=[(t.full == current.at).then_some("true")] { (t.short) } }
                        }
                    }
                }
                p.muted.small #ref-none hidden { "No branch or tag matches." }
            }
        }
    }
}

#[cfg(test)]
#[path = "refs_tests.rs"]
mod tests;
