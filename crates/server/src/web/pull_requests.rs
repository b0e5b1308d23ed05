//! Pull requests in the browser, at Bitbucket's page URLs: a repository's list
//! (`…/pull-requests?state=`), two branches compared (`…/compare/commits`, `…/compare/diff`),
//! the create form (`…/pull-requests?create`), a pull request's overview and commits
//! (`…/pull-requests/{id}/overview`, `…/commits`; the diff tab is `pr_diff.rs`'s) and the
//! caller's pull requests on the dashboard. Every rule is [`crate::pull_requests`]'s: this file
//! reads forms and renders pages, as `api/pull_requests.rs` does for JSON.
//!
//! Every form posts and is answered with a redirect (post/redirect/get); a refused one renders
//! its page again with the reason beside the form and what was typed kept. Forms that change a
//! pull request carry the version the page showed, so a change made meanwhile (a push counts)
//! is refused instead of overwritten.

use std::collections::{HashMap, HashSet};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query};
use axum::response::IntoResponse;
use http::{HeaderValue, StatusCode, header};
use maud::{Markup, PreEscaped, html};
use serde_json::Value;
use trove_store::{
    Activity, Authenticated, Comment, CommentChange, ParticipantFilter, Permission, PrQuery, PrState, PullRequest, Repo, ReviewStatus, Role, Store, StoreError,
    User,
};

use super::view::{Notice, csrf_field, done_notice, notice, page, utc};
use super::{Form, Web, WebError, WebResult, markdown, see_other, url_encode};
use crate::access::{self, AccessError};
use crate::pr_git::{GitRepo, PrGitError, Strategy};
use crate::pull_requests::{self as prs, Actor, Anchor, MergeAsk, MergeStatus, NewCommentAsk, NewPr, PrEdit, PrError, PrSettings, display_ref, full_branch};
use crate::repo_read::{Commit, LogQuery, ReadError, Reader, RefInfo, Refs};

type Q = Query<HashMap<String, String>>;
type RepoPath = Result<Path<(String, String)>, PathRejection>;
type PrPath = Result<Path<(String, String, String)>, PathRejection>;

/// Pull requests a list shows unless `limit=` says otherwise, and the most it shows.
const PAGE: usize = 25;
const MAX_PAGE: usize = 100;
/// Commits a pull request's commits tab shows a page.
const COMMITS_PAGE: usize = 50;
/// Commits the compare and create pages list (the total is always said).
const COMMITS_SHOWN: usize = 100;
/// Pull requests each dashboard section shows.
const DASHBOARD_ROWS: usize = 25;
/// Pull requests the dashboard reads per section before keeping those the caller may read.
const DASHBOARD_READ: usize = 500;

// ---- access, links, errors ----

fn seg<T>(p: Result<Path<T>, PathRejection>) -> Result<T, WebError> {
    p.map(|Path(t)| t).map_err(|_| WebError::NotFound)
}

/// The access service's refusal as pages show it: anonymous callers are sent to log in.
fn refused(w: &Web, e: AccessError) -> WebError {
    match e {
        AccessError::Anonymous(_) => w.require_user().err().unwrap_or(WebError::NotFound),
        AccessError::Hidden(_) => WebError::NotFound,
        AccessError::Forbidden(_) => WebError::Forbidden,
        AccessError::Store(e) => e.into(),
    }
}

fn repo_access(w: &Web, key: &str, slug: &str, need: Permission) -> Result<(Repo, Permission), WebError> {
    let who = w.who();
    access::repo(&w.state.store, who.as_ref(), key, slug, need).map(|a| (a.repo, a.level)).map_err(|e| w.repo_refusal(key, slug, e, |e| refused(w, e)))
}

async fn repo_access_async(w: &Web, key: &str, slug: &str, need: Permission) -> Result<(Repo, Permission), WebError> {
    let (key, slug) = (key.to_owned(), slug.to_owned());
    w.clone().blocking(move |w| repo_access(w, &key, &slug, need)).await
}

fn repo_link(w: &Web, repo: &Repo, rest: &str) -> String {
    w.link(&format!("/projects/{}/repos/{}{rest}", url_encode(&repo.owner.to_string()), repo.slug))
}

/// `…/pull-requests/{n}{rest}`.
pub(crate) fn pr_link(w: &Web, repo: &Repo, number: i64, rest: &str) -> String {
    repo_link(w, repo, &format!("/pull-requests/{number}{rest}"))
}

/// A pull request id from the URL: a positive whole number, else the page does not exist.
fn number(raw: &str) -> Result<i64, WebError> {
    raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or(WebError::NotFound)
}

fn reader(w: &Web, repo: &Repo) -> Reader {
    Reader::new(&w.state, w.state.store.repo_path(repo))
}

fn git(w: &Web, repo: &Repo) -> GitRepo {
    GitRepo::new(&w.state, w.state.store.repo_path(repo))
}

fn git_failed(e: PrGitError) -> WebError {
    match e {
        PrGitError::TooLarge { command, limit } => WebError::Read(ReadError::TooLarge { command, limit }),
        PrGitError::TimedOut { command, limit } => WebError::Read(ReadError::TimedOut { command, limit }),
        e => WebError::Internal(e.to_string()),
    }
}

/// A pull-request error on a page that only reads.
fn pr_failed(e: PrError) -> WebError {
    match e {
        PrError::NotFound(_) => WebError::NotFound,
        PrError::Store(e) => e.into(),
        PrError::Git(e) => git_failed(e),
        PrError::Forbidden(_) => WebError::Forbidden,
        e => WebError::BadRequest(e.to_string()),
    }
}

/// `?start=` and `?limit=` as the other lists read them.
fn paging(q: &HashMap<String, String>, default: usize) -> (usize, usize) {
    let start = q.get("start").and_then(|s| s.parse().ok()).unwrap_or(0usize).min(1_000_000);
    let limit = q.get("limit").and_then(|s| s.parse().ok()).unwrap_or(default).clamp(1, MAX_PAGE);
    (start, limit)
}

/// The notice for a `?done=` code set by a redirect after a pull-request form.
fn pr_done(code: Option<&str>) -> Option<Notice> {
    let text = match code? {
        "commented" => "Comment added.",
        "comment-saved" => "Comment saved.",
        "comment-deleted" => "Comment deleted.",
        "approved" => "You approved this pull request.",
        "needs-work" => "You marked this pull request as needing work.",
        "unapproved" => "Your review status was cleared.",
        "merged" => "Merged.",
        "declined" => "Declined.",
        "reopened" => "Reopened.",
        "pr-deleted" => "The pull request was deleted.",
        "reviewer-added" => "Reviewer added.",
        "reviewer-removed" => "Reviewer removed.",
        other => return done_notice(Some(other)),
    };
    Some(Notice::Ok(text.to_owned()))
}

// ---- people and small pieces ----

/// The users a page names, read once.
#[derive(Default)]
struct People(HashMap<i64, Option<User>>);

impl People {
    fn load(store: &Store, ids: impl IntoIterator<Item = i64>) -> Result<People, StoreError> {
        let mut p = People::default();
        for id in ids {
            if let std::collections::hash_map::Entry::Vacant(e) = p.0.entry(id) {
                e.insert(store.user_or_former(id)?);
            }
        }
        Ok(p)
    }

    fn user(&self, id: i64) -> Option<&User> {
        self.0.get(&id).and_then(Option::as_ref)
    }

    fn name(&self, id: i64) -> String {
        self.user(id).map_or_else(|| format!("deleted-user-{id}"), |u| u.name.to_string())
    }

    fn display(&self, id: i64) -> String {
        match self.user(id) {
            Some(u) if !u.display_name.is_empty() => u.display_name.clone(),
            Some(u) => u.name.to_string(),
            None => "Deleted user".to_owned(),
        }
    }

    fn show(&self, id: i64) -> Markup {
        html! { span.user data-user=(self.name(id)) title=(self.name(id)) { (self.display(id)) } }
    }
}

/// Every user a pull request names: author and participants.
fn pr_people(pr: &PullRequest) -> impl Iterator<Item = i64> + '_ {
    std::iter::once(pr.author_id).chain(pr.participants.iter().map(|p| p.user_id))
}

fn state_badge(s: PrState) -> Markup {
    html! { span #pr-state class={ "badge pr-state state-" (s.as_str().to_ascii_lowercase()) } { (s.as_str()) } }
}

/// The state badge in a list row (no id: a list has many).
fn state_tag(s: PrState) -> Markup {
    html! { span class={ "badge pr-state state-" (s.as_str().to_ascii_lowercase()) } { (s.as_str()) } }
}

fn status_class(s: ReviewStatus) -> &'static str {
    match s {
        ReviewStatus::Approved => "status-approved",
        ReviewStatus::NeedsWork => "status-needs-work",
        ReviewStatus::Unapproved => "status-unapproved",
    }
}

fn status_text(s: ReviewStatus) -> &'static str {
    match s {
        ReviewStatus::Approved => "Approved",
        ReviewStatus::NeedsWork => "Needs work",
        ReviewStatus::Unapproved => "Not reviewed yet",
    }
}

/// A pull request's reviewers, each with their status (a class and a title for the eye and
/// for tests).
fn reviewer_chips(pr: &PullRequest, people: &People) -> Markup {
    html! {
        @for p in pr.participants.iter().filter(|p| p.role == Role::Reviewer) {
            span class={ "reviewer " (status_class(p.status)) } data-user=(people.name(p.user_id)) data-status=(p.status.as_str())
                title={ (people.display(p.user_id)) ": " (status_text(p.status)) } { (people.display(p.user_id)) }
        }
    }
}

fn when(ms: i64) -> Markup {
    html! { span.when.muted { (utc(ms.div_euclid(1000))) } }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A list of commits, newest first, each linking to its commit page.
fn commit_table(w: &Web, repo: &Repo, commits: &[Commit], id: &str) -> Markup {
    let base = repo_link(w, repo, "/commits");
    html! {
        table.list.commit-list id=(id) {
            thead { tr { th { "Commit" } th { "Message" } th { "Author" } th { "Date" } } }
            tbody {
                @for c in commits {
                    tr.commit-row data-commit=(c.id) {
                        td.sha { a href={ (base) "/" (c.id) } { (c.short) } }
                        td { (c.subject()) }
                        td { (c.author_name) }
                        td.muted { (c.author_date.get(..16).unwrap_or(&c.author_date)) }
                    }
                }
            }
        }
    }
}

// ---- the pull request's header, shared by its tabs ----

/// The top of every pull request page: the repository's header, the title with the state, who
/// wants what merged where, and the tabs (`tab`: `overview`, `diff` or `commits`). Public to
/// the web module so that the diff tab (`pr_diff.rs`) can wear the same header.
pub(crate) fn pr_header(w: &Web, repo: &Repo, perm: Permission, pr: &PullRequest, author: &str, tab: &str) -> Markup {
    html! {
        (super::repo::repo_header(w, repo, perm, "pull-requests"))
        div.pr-head #pr-head data-pr=(pr.number) data-version=(pr.version) {
            div.crumbs { a href=(repo_link(w, repo, "/pull-requests")) { "Pull requests" } " / #" (pr.number) }
            h2 #pr-title { span #pr-title-text { (pr.title) } " " (state_badge(pr.state)) }
            p.muted #pr-refs {
                span #pr-author-name { (author) } " wants to merge " span.ref #pr-source { (display_ref(&pr.from_ref)) }
                " into " span.ref #pr-target { (display_ref(&pr.to_ref)) } " · opened " (when(pr.created_at))
            }
        }
        nav.tabs #pr-tabs aria-label="Pull request" {
            a.on[tab == "overview"] #tab-overview href=(pr_link(w, repo, pr.number, "/overview")) { "Overview" }
            a.on[tab == "diff"] #tab-diff href=(pr_link(w, repo, pr.number, "/diff")) { "Diff" }
            a.on[tab == "commits"] #tab-commits href=(pr_link(w, repo, pr.number, "/commits")) { "Commits" }
        }
    }
}

// ---- the list ----

/// `GET …/pull-requests?state=OPEN|MERGED|DECLINED|ALL&start=&limit=`, or with `?create`, the
/// create form.
pub(crate) async fn list(w: Web, p: RepoPath, Query(q): Q) -> WebResult {
    let (key, slug) = seg(p)?;
    if q.contains_key("create") {
        return create_page(w, key, slug, q).await;
    }
    let (repo, perm) = repo_access_async(&w, &key, &slug, Permission::Read).await?;
    let filter = match q.get("state").map(|s| s.to_ascii_uppercase()).as_deref() {
        None | Some("") | Some("OPEN") => "OPEN",
        Some("MERGED") => "MERGED",
        Some("DECLINED") => "DECLINED",
        Some("ALL") => "ALL",
        Some(s) => return Err(WebError::BadRequest(format!("{s:?} is not a pull request state; use OPEN, MERGED, DECLINED or ALL."))),
    };
    let (start, limit) = paging(&q, PAGE);
    let done = q.get("done").cloned();
    w.blocking(move |w| {
        let store = &w.state.store;
        let states = PrState::parse(filter).into_iter().collect();
        let (list, more) = store.prs(&PrQuery { repo_id: Some(repo.id), states, start, limit, ..PrQuery::default() })?;
        let counts: HashMap<i64, i64> = store.comment_counts(&list.iter().map(|p| p.id).collect::<Vec<_>>())?.into_iter().collect();
        let people = People::load(store, list.iter().flat_map(pr_people))?;
        let mut repos: Vec<i64> = list.iter().map(|p| p.from_repo_id).collect();
        repos.push(repo.id);
        let builds = crate::builds::visible(store, &repos, &list.iter().map(|p| p.from_hash.clone()).collect::<Vec<_>>())?;
        let base = repo_link(w, &repo, "/pull-requests");
        let page_link = |s: usize| format!("{base}?state={filter}&start={s}&limit={limit}");
        let body = html! {
            (super::repo::repo_header(w, &repo, perm, "pull-requests"))
            (notice(&pr_done(done.as_deref())))
            div.repo-bar {
                nav.pr-filter #pr-state-filter aria-label="Pull request state" {
                    @for (s, label) in [("OPEN", "Open"), ("MERGED", "Merged"), ("DECLINED", "Declined"), ("ALL", "All")] {
                        a.on[s == filter] href={ (base) "?state=" (s) } data-state=(s) { (label) }
                    }
                }
                a.button #create-pr href={ (base) "?create" } { "Create pull request" }
            }
            @if list.is_empty() {
                div.card #no-pull-requests { p.muted { @if filter == "ALL" { "No pull requests." } @else { "No " (filter.to_ascii_lowercase()) " pull requests." } } }
            } @else {
                table.list #pull-requests {
                    thead { tr { th { "Title" } th { "Author" } th { "Branches" } th { "Reviewers" } th { "Builds" } th { "Comments" } th { "Updated" } } }
                    tbody {
                        @for pr in &list {
                            tr.pr-row data-pr=(pr.number) data-state=(pr.state.as_str()) {
                                td {
                                    a.pr-title href=(pr_link(w, &repo, pr.number, "/overview")) { (pr.title) }
                                    div.small.muted { "#" (pr.number) " " @if filter == "ALL" { (state_tag(pr.state)) } }
                                }
                                td.pr-author { (people.show(pr.author_id)) }
                                td.pr-refs { span.ref { (display_ref(&pr.from_ref)) } " → " span.ref { (display_ref(&pr.to_ref)) } }
                                td.pr-reviewers { (reviewer_chips(pr, &people)) }
                                td.pr-builds { @if let Some(b) = builds.get(&pr.from_hash) { a href={ (pr_link(w, &repo, pr.number, "/overview")) "#builds" } { (super::builds::badge(b)) } } }
                                td.pr-comments { (counts.get(&pr.id).copied().unwrap_or(0)) }
                                td.pr-updated { (when(pr.updated_at)) }
                            }
                        }
                    }
                }
            }
            p.pager {
                @if start > 0 { a #page-prev href=(page_link(start.saturating_sub(limit))) { "Newer" } " " }
                @if more { a #page-next href=(page_link(start + limit)) { "Older" } }
            }
        };
        Ok(page(w, &format!("Pull requests - {}", repo.name), body))
    })
    .await
}

// ---- comparing two branches ----

/// The branch a caller named (`feature` or `refs/heads/feature`).
fn find_branch<'a>(refs: &'a Refs, name: &str) -> Option<&'a RefInfo> {
    let full = full_branch(name.trim());
    refs.branches.iter().find(|b| b.full == full)
}

/// What a source branch has that a target does not.
struct Range {
    source: RefInfo,
    target: RefInfo,
    /// Newest first, at most [`COMMITS_SHOWN`].
    commits: Vec<Commit>,
    total: usize,
    /// An open pull request between the two already.
    open_pr: Option<i64>,
}

async fn range(w: &Web, repo: &Repo, source: &RefInfo, target: &RefInfo) -> Result<Range, WebError> {
    let commits = reader(w, repo)
        .log(&LogQuery { until: &source.commit, since: Some(&target.commit), max: COMMITS_SHOWN, ..LogQuery::default() })
        .await?
        .unwrap_or_default();
    let (_, total) = git(w, repo).commits_between(&target.commit, &source.commit, 0).await.map_err(git_failed)?;
    let (id, from, to) = (repo.id, source.full.clone(), target.full.clone());
    let open = w
        .state
        .store
        .run(move |s| {
            s.prs(&PrQuery { repo_id: Some(id), states: vec![PrState::Open], from_ref: Some(from), to_ref: Some(to), limit: 1, ..PrQuery::default() })
        })
        .await?;
    Ok(Range { source: source.clone(), target: target.clone(), commits, total, open_pr: open.0.first().map(|p| p.number) })
}

/// `sourceBranch`/`targetBranch` resolved, with a message for each that names no branch.
struct Picked {
    source: String,
    target: String,
    errors: HashMap<&'static str, String>,
    range: Option<Range>,
}

/// Resolves the two branches (the target defaults to the default branch) and, when both exist
/// and differ, what the source would bring.
async fn pick(w: &Web, repo: &Repo, refs: &Refs, source: &str, target: &str, mut errors: HashMap<&'static str, String>) -> Result<Picked, WebError> {
    let source = source.trim().to_owned();
    let mut target = target.trim().to_owned();
    if target.is_empty() {
        target = refs.default_branch().map(|b| b.short.clone()).unwrap_or_default();
    }
    let (src, tgt) = (find_branch(refs, &source), find_branch(refs, &target));
    // A branch found is shown by its short name (links carry full refs, which do not fit the
    // fields), unless the short name would read as another ref.
    let short = |b: &RefInfo| if full_branch(&b.short) == b.full { b.short.clone() } else { b.full.clone() };
    let (source, target) = (src.map_or(source, short), tgt.map_or(target, short));
    if !source.is_empty() && src.is_none() {
        errors.entry("source").or_insert_with(|| format!("There is no branch {} in this repository.", display_ref(&full_branch(&source))));
    }
    if !target.is_empty() && tgt.is_none() {
        errors.entry("target").or_insert_with(|| format!("There is no branch {} in this repository.", display_ref(&full_branch(&target))));
    }
    let mut found = None;
    if let (Some(s), Some(t)) = (src, tgt) {
        if s.full == t.full {
            errors.entry("target").or_insert_with(|| "The target must be another branch than the source.".to_owned());
        } else {
            let r = range(w, repo, s, t).await?;
            if r.total == 0 {
                errors.entry("source").or_insert_with(|| format!("{} already has everything on {}; there is nothing to merge.", t.short, s.short));
            }
            found = Some(r);
        }
    }
    Ok(Picked { source, target, errors, range: found })
}

fn field_error(errors: &HashMap<&'static str, String>, field: &str) -> Markup {
    html! { @if let Some(e) = errors.get(field) { div.field-error id={ (field) "-error" } role="alert" { (e) } } }
}

fn branch_list(refs: &Refs) -> Markup {
    html! { datalist #branch-list { @for b in &refs.branches { option value=(b.short) {} } } }
}

/// `GET …/compare?…`: the commits tab.
pub(crate) async fn compare(w: Web, p: RepoPath, uri: http::Uri) -> WebResult {
    let (key, slug) = seg(p)?;
    let (repo, _) = repo_access_async(&w, &key, &slug, Permission::Read).await?;
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let mut r = StatusCode::FOUND.into_response();
    let location = format!("{}{query}", repo_link(&w, &repo, "/compare/commits"));
    r.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&location).map_err(|_| WebError::NotFound)?);
    Ok(r)
}

/// `GET …/compare/commits?sourceBranch=&targetBranch=`.
pub(crate) async fn compare_commits(w: Web, p: RepoPath, Query(q): Q) -> WebResult {
    let (key, slug) = seg(p)?;
    compare_page(w, key, slug, q, "commits").await
}

/// `GET …/compare/diff?sourceBranch=&targetBranch=`.
pub(crate) async fn compare_diff(w: Web, p: RepoPath, Query(q): Q) -> WebResult {
    let (key, slug) = seg(p)?;
    compare_page(w, key, slug, q, "diff").await
}

async fn compare_page(w: Web, key: String, slug: String, q: HashMap<String, String>, tab: &'static str) -> WebResult {
    let (repo, perm) = repo_access_async(&w, &key, &slug, Permission::Read).await?;
    let refs = reader(&w, &repo).refs().await?;
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let picked = pick(&w, &repo, &refs, get("sourceBranch"), get("targetBranch"), HashMap::new()).await?;
    let here = repo_link(&w, &repo, "/compare");
    let query = |r: &Range| format!("?sourceBranch={}&targetBranch={}", url_encode(&r.source.full), url_encode(&r.target.full));
    // The diff is the pull request's renderer (pr_diff.rs) from where the branches part.
    let diff = match (&picked.range, tab) {
        (Some(r), "diff") => {
            let g = git(&w, &repo);
            let base = g.merge_base(&r.target.commit, &r.source.commit).await.map_err(git_failed)?.unwrap_or_else(|| r.target.commit.clone());
            let plain = super::pr_diff::Plain {
                repo: &repo,
                level: perm,
                url: format!("{here}/diff"),
                url_pairs: vec![("sourceBranch", r.source.full.clone()), ("targetBranch", r.target.full.clone())],
                from: Some(&base),
                to: &r.source.commit,
            };
            match super::pr_diff::plain(&w, plain, &q).await? {
                super::pr_diff::Shown::Fragment(f) => return Ok(f),
                super::pr_diff::Shown::Page(m) => Some(m),
            }
        }
        _ => None,
    };
    let body = html! {
        (super::repo::repo_header(&w, &repo, perm, "pull-requests"))
        h2 { "Compare" }
        form.card #compare-form method="get" action={ (here) "/" (tab) } {
            (branch_list(&refs))
            div.branch-pickers {
                div.field {
                    label for="source-branch" { "Source branch" }
                    input #source-branch type="text" name="sourceBranch" list="branch-list" autocomplete="off" value=(picked.source) placeholder="feature";
                    (field_error(&picked.errors, "source"))
                }
                span.arrow { "→" }
                div.field {
                    label for="target-branch" { "Target branch" }
                    input #target-branch type="text" name="targetBranch" list="branch-list" autocomplete="off" value=(picked.target);
                    (field_error(&picked.errors, "target"))
                }
                button.secondary #compare-button type="submit" { "Compare" }
            }
        }
        @if let Some(r) = &picked.range {
            div.repo-bar #compare-summary {
                span { strong #compare-count { (plural(r.total, "commit", "commits")) } " on " span.ref { (r.source.short) } " not on " span.ref { (r.target.short) } }
                @if let Some(n) = r.open_pr {
                    span #existing-pr { "Already open: " a href=(pr_link(&w, &repo, n, "/overview")) { "pull request #" (n) } }
                } @else if r.total > 0 {
                    a.button #compare-create href={ (repo_link(&w, &repo, "/pull-requests")) "?create&" (query(r).trim_start_matches('?')) } { "Create pull request" }
                }
            }
            nav.tabs #compare-tabs aria-label="Compare" {
                a.on[tab == "commits"] #compare-tab-commits href={ (here) "/commits" (query(r)) } { "Commits" }
                a.on[tab == "diff"] #compare-tab-diff href={ (here) "/diff" (query(r)) } { "Diff" }
            }
            @if tab == "commits" {
                @if r.commits.is_empty() { p.muted { "No commits." } } @else { (commit_table(&w, &repo, &r.commits, "compare-commits")) }
                @if r.total > r.commits.len() { p.muted { "The newest " (r.commits.len()) " of " (r.total) " are shown." } }
            }
            @if let Some(d) = diff { div #compare-diff { (d) } }
        } @else if picked.source.is_empty() {
            p.muted { "Choose a branch to see what it would bring to the target." }
        }
    };
    Ok(page(&w, &format!("Compare - {}", repo.name), body))
}

// ---- creating ----

/// What the create form holds: sent, or proposed; kept when a send is refused.
#[derive(Default)]
struct CreateForm {
    source: String,
    target: String,
    /// `None` until sent: the page proposes one.
    title: Option<String>,
    description: Option<String>,
    reviewers: Vec<String>,
    /// Field (`source`, `target`, `title`, `description`, `reviewers`, `form`) → message.
    errors: HashMap<&'static str, String>,
}

/// The title and description Bitbucket proposes for a pull request from `branch` with these
/// commits (`messages`, newest first): one commit's subject and body; for several, the branch
/// name made readable and the subjects as a list, oldest first.
fn proposal(branch: &str, messages: &[&str]) -> (String, String) {
    let subject = |m: &str| m.split("\n\n").next().unwrap_or("").lines().map(str::trim).collect::<Vec<_>>().join(" ");
    match messages {
        [one] => {
            let body = one.split_once("\n\n").map(|(_, b)| b.trim()).unwrap_or("");
            (subject(one), body.to_owned())
        }
        _ => {
            let name = display_ref(branch).replace(['-', '_'], " ");
            let mut chars = name.trim().chars();
            let title = chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default();
            let list = messages.iter().rev().map(|m| format!("* {}", subject(m))).collect::<Vec<_>>().join("\n");
            (title, list)
        }
    }
}

/// Users who may review a pull request in `repo`: active accounts that may read it, but not
/// `author`.
fn reviewer_candidates(store: &Store, repo: &Repo, author: i64) -> Result<Vec<User>, StoreError> {
    let mut out = Vec::new();
    for u in store.users()? {
        if u.id == author || !u.may_log_in() {
            continue;
        }
        let who = Authenticated { user: u.clone(), token_scope: None };
        if store.permission(Some(&who), repo)?.is_some() {
            out.push(u);
        }
    }
    out.sort_by_key(|u| u.display_name.to_lowercase());
    Ok(out)
}

async fn create_page(w: Web, key: String, slug: String, q: HashMap<String, String>) -> WebResult {
    let (repo, perm) = repo_access_async(&w, &key, &slug, Permission::Read).await?;
    w.require_user()?;
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let f = CreateForm { source: get("sourceBranch"), target: get("targetBranch"), ..CreateForm::default() };
    render_create(&w, repo, perm, f, StatusCode::OK).await
}

async fn render_create(w: &Web, repo: Repo, perm: Permission, mut f: CreateForm, status: StatusCode) -> WebResult {
    let refs = reader(w, &repo).refs().await?;
    let picked = pick(w, &repo, &refs, &f.source, &f.target, std::mem::take(&mut f.errors)).await?;
    let me = w.require_user()?.id;
    let (source, target, errors, range) = (picked.source, picked.target, picked.errors, picked.range);
    let (title, description) = match (&f.title, &range) {
        (Some(t), _) => (t.clone(), f.description.clone().unwrap_or_default()),
        (None, Some(r)) => {
            let messages: Vec<&str> = r.commits.iter().map(|c| c.message.as_str()).collect();
            proposal(&r.source.full, &messages)
        }
        (None, None) => (String::new(), String::new()),
    };
    let repo2 = repo.clone();
    let candidates = w.state.store.run(move |s| reviewer_candidates(s, &repo2, me)).await?;
    let list = repo_link(w, &repo, "/pull-requests");
    let ready = range.as_ref().is_some_and(|r| r.total > 0);
    let body = html! {
        (super::repo::repo_header(w, &repo, perm, "pull-requests"))
        h2 { "Create pull request" }
        @if let Some(e) = errors.get("form") { div.notice.err #create-error role="alert" { (e) } }
        form.card #create-form method="post" action={ (list) "?create" } {
            (csrf_field(w))
            (branch_list(&refs))
            div.branch-pickers {
                div.field {
                    label for="source-branch" { "Source branch" }
                    input #source-branch type="text" name="source" list="branch-list" autocomplete="off" value=(source) placeholder="feature" aria-invalid=[errors.get("source").map(|_| "true")];
                    (field_error(&errors, "source"))
                }
                span.arrow { "→" }
                div.field {
                    label for="target-branch" { "Target branch" }
                    input #target-branch type="text" name="target" list="branch-list" autocomplete="off" value=(target) aria-invalid=[errors.get("target").map(|_| "true")];
                    (field_error(&errors, "target"))
                }
                button.secondary #compare-button type="submit" name="action" value="compare" formnovalidate { "Compare" }
            }
            @if let Some(n) = range.as_ref().and_then(|r| r.open_pr) {
                div.notice.warn #existing-pr { "A pull request between these branches is open already: " a href=(pr_link(w, &repo, n, "/overview")) { "#" (n) } }
            }
            @if ready {
                div.field {
                    label for="title" { "Title" }
                    input #title type="text" name="title" value=(title) maxlength="255" required aria-invalid=[errors.get("title").map(|_| "true")];
                    (field_error(&errors, "title"))
                }
                div.field {
                    label for="description" { "Description" }
                    textarea #description name="description" rows="8" { (description) }
                    div.help { "Markdown." }
                    (field_error(&errors, "description"))
                }
                fieldset.field.reviewers #reviewers {
                    legend { "Reviewers" }
                    @if candidates.is_empty() { p.muted { "No one else can read this repository." } }
                    @for u in &candidates {
                        label.reviewer-choice {
                            input type="checkbox" name={ "reviewer:" (u.name) } id={ "reviewer-" (u.name) } value="1" checked[f.reviewers.iter().any(|r| *r == u.name.as_str())];
                            " " (if u.display_name.is_empty() { u.name.as_str() } else { &u.display_name }) " " span.muted { "(" (u.name) ")" }
                        }
                    }
                    (field_error(&errors, "reviewers"))
                }
                button #create-button type="submit" name="action" value="create" { "Create" }
            } @else if range.is_none() && source.is_empty() {
                p.muted { "Choose the branch with your changes and the branch to merge them into, then Compare." }
            }
        }
        @if let Some(r) = range.as_ref().filter(|r| r.total > 0) {
            h3 { "Commits " span.muted { "(" (r.total) ")" } }
            (commit_table(w, &repo, &r.commits, "create-commits"))
            @if r.total > r.commits.len() { p.muted { "The newest " (r.commits.len()) " of " (r.total) " are shown." } }
            p { a #create-diff href={ (repo_link(w, &repo, "/compare/diff")) "?sourceBranch=" (url_encode(&r.source.full)) "&targetBranch=" (url_encode(&r.target.full)) } { "See the diff" } }
        }
    };
    let mut r = page(w, &format!("Create pull request - {}", repo.name), body);
    *r.status_mut() = status;
    Ok(r)
}

/// Where the create form shows a refusal, and its status.
fn create_fault(e: &PrError, source: &str) -> (&'static str, StatusCode) {
    match e {
        PrError::Invalid { context: "title", .. } => ("title", StatusCode::BAD_REQUEST),
        PrError::Invalid { context: "toRef", .. } => ("target", StatusCode::BAD_REQUEST),
        PrError::Invalid { context: "description", .. } => ("description", StatusCode::BAD_REQUEST),
        PrError::Invalid { .. } => ("form", StatusCode::BAD_REQUEST),
        PrError::Conflict { exception, message } => {
            let field = match exception.rsplit('.').next().unwrap_or("") {
                "NoSuchBranchException" if message.contains(&format!("Branch {} does not", display_ref(&full_branch(source)))) => "source",
                "NoSuchBranchException" | "InvalidPullRequestTargetException" => "target",
                "EmptyPullRequestException" | "DuplicatePullRequestException" => "source",
                "InvalidPullRequestReviewersException" => "reviewers",
                _ => "form",
            };
            (field, StatusCode::CONFLICT)
        }
        PrError::Forbidden(_) => ("form", StatusCode::FORBIDDEN),
        _ => ("form", StatusCode::CONFLICT),
    }
}

/// `POST …/pull-requests?create`: `source`, `target`, `title`, `description`, a
/// `reviewer:{name}=1` per reviewer, and `action` (`create`, or `compare` to look at other
/// branches).
pub(crate) async fn create_post(w: Web, p: RepoPath, form: Form) -> WebResult {
    let (key, slug) = seg(p)?;
    w.check_csrf(&form)?;
    let (repo, perm) = repo_access_async(&w, &key, &slug, Permission::Read).await?;
    let (source, target) = (form.get("source").trim().to_owned(), form.get("target").trim().to_owned());
    if form.get("action") == "compare" {
        let to = format!("{}?create&sourceBranch={}&targetBranch={}", repo_link(&w, &repo, "/pull-requests"), url_encode(&source), url_encode(&target));
        return Ok(see_other(&to));
    }
    let mut reviewers: Vec<String> = form.0.iter().filter(|(_, v)| !v.is_empty()).filter_map(|(k, _)| k.strip_prefix("reviewer:")).map(str::to_owned).collect();
    reviewers.sort();
    let mut f = CreateForm {
        source,
        target,
        title: Some(form.get("title").to_owned()),
        description: Some(form.get("description").to_owned()),
        reviewers,
        errors: HashMap::new(),
    };
    if f.source.is_empty() {
        f.errors.insert("source", "Choose the branch with your changes.".into());
    }
    if f.target.is_empty() {
        f.errors.insert("target", "Choose the branch to merge into.".into());
    }
    if !f.errors.is_empty() {
        return render_create(&w, repo, perm, f, StatusCode::BAD_REQUEST).await;
    }
    let who = w.who().ok_or(WebError::Csrf)?;
    let actor = Actor { who: &who, level: perm };
    let new = NewPr {
        title: f.title.clone().unwrap_or_default(),
        description: f.description.clone(),
        from_ref: f.source.clone(),
        to_ref: f.target.clone(),
        reviewers: f.reviewers.clone(),
    };
    match prs::create(&w.state, &repo, &actor, new).await {
        Ok(pr) => Ok(see_other(&pr_link(&w, &repo, pr.number, "/overview"))),
        Err(e @ (PrError::Store(_) | PrError::Git(_))) => Err(pr_failed(e)),
        Err(e) => {
            let (field, status) = create_fault(&e, &f.source);
            f.errors.insert(field, e.to_string());
            render_create(&w, repo, perm, f, status).await
        }
    }
}

// ---- one pull request ----

/// `GET …/pull-requests/{id}` → its overview.
pub(crate) async fn pr_root(w: Web, p: PrPath) -> WebResult {
    let (key, slug, id) = seg(p)?;
    let n = number(&id)?;
    let (repo, _) = repo_access_async(&w, &key, &slug, Permission::Read).await?;
    let mut r = StatusCode::FOUND.into_response();
    r.headers_mut().insert(header::LOCATION, HeaderValue::from_str(&pr_link(&w, &repo, n, "/overview")).map_err(|_| WebError::NotFound)?);
    Ok(r)
}

/// `GET …/pull-requests/{id}/commits?start=`: the commits it would add, newest first.
pub(crate) async fn commits(w: Web, p: PrPath, Query(q): Q) -> WebResult {
    let (key, slug, id) = seg(p)?;
    let n = number(&id)?;
    let (repo, perm) = repo_access_async(&w, &key, &slug, Permission::Read).await?;
    let pr = prs::get(&w.state, &repo, n).await.map_err(pr_failed)?;
    let (start, _) = paging(&q, COMMITS_PAGE);
    let mut list = reader(&w, &repo)
        .log(&LogQuery { until: &pr.from_hash, since: Some(&pr.to_hash), skip: start, max: COMMITS_PAGE + 1, ..LogQuery::default() })
        .await?
        .unwrap_or_default();
    let more = list.len() > COMMITS_PAGE;
    list.truncate(COMMITS_PAGE);
    // A pull request whose commits are gone from the repository (a deleted branch, collected)
    // still shows its page.
    let total = git(&w, &repo).commits_between(&pr.to_hash, &pr.from_hash, 0).await.map(|(_, t)| t).ok();
    w.blocking(move |w| {
        let people = People::load(&w.state.store, [pr.author_id])?;
        let here = pr_link(w, &repo, pr.number, "/commits");
        let body = html! {
            (pr_header(w, &repo, perm, &pr, &people.display(pr.author_id), "commits"))
            @if let Some(t) = total { p.muted #pr-commit-count { (plural(t, "commit", "commits")) } }
            @if list.is_empty() { p.muted { "No commits to show." } } @else { (commit_table(w, &repo, &list, "pr-commits")) }
            p.pager {
                @if start > 0 { a #page-prev href={ (here) "?start=" (start.saturating_sub(COMMITS_PAGE)) } { "Newer" } " " }
                @if more { a #page-next href={ (here) "?start=" (start + COMMITS_PAGE) } { "Older" } }
            }
        };
        Ok(page(w, &format!("#{} {} - commits", pr.number, pr.title), body))
    })
    .await
}

/// A refused form on the overview: which form (`comment`, `reply-{id}`, `edit-comment-{id}`,
/// `edit`, `merge`, `review`, `state`), why, and what was typed.
struct Fault {
    form: String,
    message: String,
    /// The pull request (or the comment) changed since the page was loaded.
    stale: bool,
    kept: HashMap<String, String>,
}

impl Fault {
    fn kept(&self, form: &str, field: &str) -> Option<&str> {
        (self.form == form).then(|| self.kept.get(field).map(String::as_str)).flatten()
    }
}

/// `GET …/pull-requests/{id}/overview`.
pub(crate) async fn overview(w: Web, p: PrPath, Query(q): Q) -> WebResult {
    let (key, slug, id) = seg(p)?;
    let n = number(&id)?;
    let (repo, perm) = repo_access_async(&w, &key, &slug, Permission::Read).await?;
    render_overview(&w, repo, perm, n, pr_done(q.get("done").map(String::as_str)), None, StatusCode::OK).await
}

async fn render_overview(w: &Web, repo: Repo, perm: Permission, n: i64, note: Option<Notice>, fault: Option<Fault>, status: StatusCode) -> WebResult {
    let mut pr = prs::get(&w.state, &repo, n).await.map_err(pr_failed)?;
    // An open pull request is brought up to its branches first (as REST's merge check does), so
    // the page, its vetoes and the version its forms carry are current.
    let mut merge: Option<Result<MergeStatus, String>> = None;
    if pr.state == PrState::Open {
        match prs::merge_status(&w.state, &repo, n, w.who().as_ref()).await {
            Ok((now, s)) => {
                pr = now;
                merge = Some(Ok(s));
            }
            Err(PrError::Conflict { .. }) => pr = prs::get(&w.state, &repo, n).await.map_err(pr_failed)?,
            Err(e @ (PrError::Store(_) | PrError::NotFound(_))) => return Err(pr_failed(e)),
            Err(e) => {
                tracing::warn!(error = %e, repo = %repo.display_path(), pr = n, "cannot check whether a pull request can merge");
                merge = Some(Err(e.to_string()));
            }
        }
        if pr.state != PrState::Open {
            merge = None;
        }
    }
    let w2 = w.clone();
    w2.blocking(move |w| {
        let store = &w.state.store;
        let settings = PrSettings::load(store, &repo).map_err(pr_failed)?;
        let mut activities = store.activities(pr.id)?;
        activities.reverse();
        let comments = store.comments(pr.id)?;
        let mut ids: Vec<i64> = pr_people(&pr).collect();
        ids.extend(comments.iter().map(|c| c.author_id));
        for a in &activities {
            ids.push(a.user_id);
            let d: Value = serde_json::from_str(&a.detail).unwrap_or(Value::Null);
            for k in ["addedReviewers", "removedReviewers"] {
                ids.extend(d[k].as_array().into_iter().flatten().filter_map(Value::as_i64));
            }
        }
        let people = People::load(store, ids)?;
        let manages = w.user().is_some_and(|u| u.id == pr.author_id || perm >= Permission::Write);
        let candidates = if manages && pr.state == PrState::Open {
            let current: Vec<i64> = pr.participants.iter().filter(|p| p.role == Role::Reviewer).map(|p| p.user_id).collect();
            reviewer_candidates(store, &repo, pr.author_id)?.into_iter().filter(|u| !current.contains(&u.id)).collect()
        } else {
            Vec::new()
        };
        let checks = builds_card(store, &repo, &pr)?;
        let v = OverviewView {
            w,
            repo: &repo,
            perm,
            pr: &pr,
            people: &people,
            comments: &comments,
            fault: fault.as_ref(),
            candidates: &candidates,
            checks: &checks,
        };
        let body = v.render(&activities, &settings, merge.as_ref(), &note);
        let mut r = page(w, &format!("#{} {}", pr.number, pr.title), body);
        *r.status_mut() = status;
        Ok(r)
    })
    .await
}

/// What the overview's pieces need.
struct OverviewView<'a> {
    w: &'a Web,
    repo: &'a Repo,
    perm: Permission,
    pr: &'a PullRequest,
    people: &'a People,
    comments: &'a [Comment],
    fault: Option<&'a Fault>,
    /// Who may still be added as a reviewer, when the caller may add one.
    candidates: &'a [User],
    /// The builds and Code Insights reports of the source commit ([`builds_card`]).
    checks: &'a Markup,
}

/// The builds of the pull request's source commit (each linked to its CI page) and the Code
/// Insights reports on it; nothing when there are none.
fn builds_card(store: &trove_store::Store, repo: &Repo, pr: &PullRequest) -> Result<Markup, WebError> {
    let tip = pr.from_hash.clone();
    let statuses = crate::builds::visible(store, &[repo.id, pr.from_repo_id], std::slice::from_ref(&tip))?.remove(&tip).unwrap_or_default();
    let reports = store.insight_reports(repo.id, &tip)?;
    let annotations = if reports.is_empty() { Vec::new() } else { store.annotations(repo.id, &tip, None)? };
    Ok(html! {
        @if !statuses.is_empty() {
            div.card #builds { h3 { "Builds " (super::builds::badge(&statuses)) } (super::builds::table(&statuses)) }
        }
        @if !reports.is_empty() {
            div.card #insights { h3 { "Code Insights" } (super::builds::reports(&reports, &annotations)) }
        }
    })
}

impl OverviewView<'_> {
    fn action(&self) -> String {
        pr_link(self.w, self.repo, self.pr.number, "/overview")
    }

    fn me(&self) -> Option<&User> {
        self.w.user()
    }

    fn is_author(&self) -> bool {
        self.me().is_some_and(|u| u.id == self.pr.author_id)
    }

    fn open(&self) -> bool {
        self.pr.state == PrState::Open
    }

    /// The hidden fields every pull-request form carries.
    fn hidden(&self, action: &str) -> Markup {
        html! {
            (csrf_field(self.w))
            input type="hidden" name="action" value=(action);
            input type="hidden" name="version" value=(self.pr.version);
        }
    }

    fn error_at(&self, form: &str) -> Markup {
        html! { @if let Some(f) = self.fault.filter(|f| f.form == form) { div.field-error role="alert" { (f.message) } } }
    }

    fn render(&self, activities: &[Activity], settings: &PrSettings, merge: Option<&Result<MergeStatus, String>>, note: &Option<Notice>) -> Markup {
        let pr = self.pr;
        html! {
            (pr_header(self.w, self.repo, self.perm, pr, &self.people.display(pr.author_id), "overview"))
            (notice(note))
            @if let Some(f) = self.fault {
                div.notice.err #pr-error role="alert" data-stale=[f.stale.then_some("true")] {
                    (f.message)
                    @if f.stale { " " a #reload href=(self.action()) { "Reload the page" } }
                }
                @if f.stale && f.form == "edit" {
                    div.card #unsaved { p.muted { "What you typed, not saved:" } pre { (f.kept.get("title").map(String::as_str).unwrap_or("")) "\n\n" (f.kept.get("description").map(String::as_str).unwrap_or("")) } }
                }
            }
            div.pr-layout {
                div.pr-main {
                    div.card.md #pr-description {
                        @match pr.description.as_deref().filter(|d| !d.trim().is_empty()) {
                            Some(d) => (PreEscaped(markdown::render(d))),
                            None => p.muted { "No description." },
                        }
                    }
                    (self.edit_form())
                    h3 { "Activity" }
                    ol.activity #activity {
                        @for a in activities { @if let Some(m) = self.activity(a) { (m) } }
                    }
                    (self.comment_form())
                }
                aside.pr-side {
                    (self.people_card())
                    (self.review_card())
                    (self.merge_card(settings, merge))
                    (self.checks)
                    (self.state_card())
                    @if self.open() {
                        div.card #pr-checkout {
                            h3 { "Check out" }
                            div.clone {
                                input #checkout-command.mono type="text" readonly value={ "git fetch origin refs/pull-requests/" (pr.number) "/from" } aria-label="Checkout command";
                                button.secondary type="button" data-copy="checkout-command" { "Copy" }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Whether the caller may change the reviewers (the author, or someone with write).
    fn manages(&self) -> bool {
        self.open() && self.me().is_some_and(|u| u.id == self.pr.author_id || self.perm >= Permission::Write)
    }

    fn people_card(&self) -> Markup {
        let pr = self.pr;
        let me = self.me().map(|u| u.id);
        let reviewers: Vec<_> = pr.participants.iter().filter(|p| p.role == Role::Reviewer).collect();
        let others: Vec<_> = pr.participants.iter().filter(|p| p.role == Role::Participant).collect();
        html! {
            div.card #pr-people {
                h3 { "Author" }
                div #pr-author { (self.people.show(pr.author_id)) }
                h3.spaced { "Reviewers" }
                @if reviewers.is_empty() { p.muted #no-reviewers { "None." } }
                ul.people #pr-reviewers {
                    @for p in &reviewers {
                        li class={ "reviewer " (status_class(p.status)) } data-user=(self.people.name(p.user_id)) data-status=(p.status.as_str()) {
                            (self.people.show(p.user_id)) " " span class={ "badge " (status_class(p.status)) } { (status_text(p.status)) }
                            @if self.manages() || (self.open() && me == Some(p.user_id)) {
                                form.inline.remove-reviewer-form method="post" action=(self.action()) {
                                    (csrf_field(self.w))
                                    input type="hidden" name="action" value="remove-reviewer";
                                    input type="hidden" name="user" value=(self.people.name(p.user_id));
                                    button.link type="submit" title="Remove from the reviewers" { "Remove" }
                                }
                            }
                        }
                    }
                }
                @if self.manages() {
                    form.inline #add-reviewer-form method="post" action=(self.action()) {
                        (csrf_field(self.w))
                        input type="hidden" name="action" value="add-reviewer";
                        datalist #reviewer-candidates { @for u in self.candidates { option value=(u.name) { (u.display_name) } } }
                        input #add-reviewer type="text" name="user" list="reviewer-candidates" autocomplete="off" placeholder="user name" aria-label="Add a reviewer" required;
                        button.secondary type="submit" { "Add" }
                    }
                    (self.error_at("reviewers"))
                }
                @if !others.is_empty() {
                    h3.spaced { "Participants" }
                    ul.people #pr-participants {
                        @for p in &others {
                            li class=(status_class(p.status)) data-user=(self.people.name(p.user_id)) data-status=(p.status.as_str()) {
                                (self.people.show(p.user_id)) " " span class={ "badge " (status_class(p.status)) } { (status_text(p.status)) }
                            }
                        }
                    }
                }
            }
        }
    }

    fn review_card(&self) -> Markup {
        let Some(me) = self.me() else { return html! {} };
        if self.is_author() || !self.open() {
            return html! {};
        }
        let mine = self.pr.participant(me.id).map_or(ReviewStatus::Unapproved, |p| p.status);
        html! {
            div.card #pr-review {
                h3 { "Your review" }
                p { span #my-review-status data-status=(mine.as_str()) { (status_text(mine)) } }
                form #review-form method="post" action=(self.action()) {
                    (csrf_field(self.w))
                    input type="hidden" name="version" value=(self.pr.version);
                    @if mine != ReviewStatus::Approved { button #approve-button type="submit" name="action" value="approve" { "Approve" } " " }
                    @if mine != ReviewStatus::NeedsWork { button.secondary #needs-work-button type="submit" name="action" value="needs-work" { "Needs work" } " " }
                    @if mine != ReviewStatus::Unapproved {
                        button.secondary #unapprove-button type="submit" name="action" value="unapprove" { @if mine == ReviewStatus::Approved { "Unapprove" } @else { "Clear needs work" } }
                    }
                }
                (self.error_at("review"))
            }
        }
    }

    fn merge_card(&self, settings: &PrSettings, merge: Option<&Result<MergeStatus, String>>) -> Markup {
        let pr = self.pr;
        let commits = repo_link(self.w, self.repo, "/commits");
        let Some(merge) = merge else {
            return html! {
                div.card #pr-merge {
                    @match pr.state {
                        PrState::Merged => p #merged-note {
                            "Merged into " span.ref { (display_ref(&pr.to_ref)) }
                            @if let Some(c) = &pr.merge_commit { " as " a.sha #merge-commit href={ (commits) "/" (c) } { (c.get(..12).unwrap_or(c)) } }
                            @if let Some(t) = pr.closed_at { " " (when(t)) }
                        },
                        PrState::Declined => p #declined-note { "Declined " @if let Some(t) = pr.closed_at { (when(t)) } },
                        PrState::Open => p.muted { "Whether it can merge is not known yet; reload the page." },
                    }
                }
            };
        };
        let status = match merge {
            Ok(s) => s,
            Err(_) => {
                return html! { div.card #pr-merge { p.notice.err { "Whether this pull request can merge could not be checked; the server log has the details." } } };
            }
        };
        let writer = self.me().is_some() && self.perm >= Permission::Write;
        let can = writer && status.can_merge;
        let mut strategies: Vec<Strategy> = Strategy::ALL.into_iter().filter(|s| settings.enabled(*s)).collect();
        if strategies.is_empty() {
            strategies.extend(Strategy::parse(&settings.default_strategy));
        }
        html! {
            div.card #pr-merge data-can-merge=(status.can_merge) {
                h3 { "Merge" }
                @if !status.vetoes.is_empty() {
                    ul.vetoes #merge-vetoes {
                        @for v in &status.vetoes { li.veto { strong.veto-summary { (v.summary) } br; span.muted.veto-detail { (v.detail) } } }
                    }
                }
                @if self.me().is_none() {
                    p.muted #merge-permission { "Log in to merge." }
                } @else if !writer {
                    p.muted #merge-permission { "Merging needs write access to this repository." }
                }
                form #merge-form method="post" action=(self.action()) {
                    (self.hidden("merge"))
                    div.field {
                        label for="merge-strategy" { "Strategy" }
                        select #merge-strategy name="strategy" disabled[!can] {
                            @for s in &strategies { option value=(s.id()) selected[s.id() == settings.default_strategy] title=(s.description()) { (s.name()) } }
                        }
                    }
                    div.field { label.plain { input #delete-source type="checkbox" name="delete_source" value="1" disabled[!can]; " Delete " span.ref { (display_ref(&pr.from_ref)) } " after merging" } }
                    details #merge-message-details {
                        summary { "Commit message" }
                        textarea #merge-message name="message" rows="4" disabled[!can] placeholder="Leave empty for the pull request's description" {
                            (self.fault.and_then(|f| f.kept("merge", "message")).unwrap_or(""))
                        }
                    }
                    button #merge-button type="submit" disabled[!can] { "Merge" }
                }
                (self.error_at("merge"))
            }
        }
    }

    fn state_card(&self) -> Markup {
        let Some(me) = self.me() else { return html! {} };
        let pr = self.pr;
        let delete = me.id == pr.author_id || self.perm >= Permission::Admin;
        let edit = pr.state == PrState::Declined || self.open();
        html! {
            @if edit || delete {
                div.card #pr-state-actions {
                    @if self.open() {
                        form #decline-form.inline method="post" action=(self.action()) { (self.hidden("decline")) button.secondary #decline-button type="submit" { "Decline" } }
                    }
                    @if pr.state == PrState::Declined {
                        form #reopen-form.inline method="post" action=(self.action()) { (self.hidden("reopen")) button #reopen-button type="submit" { "Reopen" } }
                    }
                    @if delete {
                        details #delete-pr {
                            summary { "Delete…" }
                            form #delete-form method="post" action=(self.action()) {
                                (self.hidden("delete"))
                                p.small { "Deleting removes the pull request with its comments and activity for good." }
                                button.danger #delete-button type="submit" { "Delete pull request" }
                            }
                        }
                    }
                    (self.error_at("state"))
                }
            }
        }
    }

    fn edit_form(&self) -> Markup {
        let Some(me) = self.me() else { return html! {} };
        if !self.open() || (me.id != self.pr.author_id && self.perm < Permission::Write) {
            return html! {};
        }
        let kept = |field: &str| self.fault.filter(|f| !f.stale).and_then(|f| f.kept("edit", field)).map(str::to_owned);
        let title = kept("title").unwrap_or_else(|| self.pr.title.clone());
        let description = kept("description").unwrap_or_else(|| self.pr.description.clone().unwrap_or_default());
        html! {
            details #edit-pr open[self.fault.is_some_and(|f| f.form == "edit" && !f.stale)] {
                summary { "Edit title and description" }
                form.card #edit-form method="post" action=(self.action()) {
                    (self.hidden("edit"))
                    div.field { label for="edit-title" { "Title" } input #edit-title type="text" name="title" value=(title) maxlength="255" required; }
                    div.field { label for="edit-description" { "Description" } textarea #edit-description name="description" rows="8" { (description) } }
                    (self.error_at("edit"))
                    button #edit-save type="submit" { "Save" }
                }
            }
        }
    }

    fn comment_form(&self) -> Markup {
        if self.me().is_none() {
            let login = self.w.link(&format!("/login?next={}", url_encode(&self.action())));
            return html! { p.muted #comment-login { a href=(login) { "Log in" } " to comment." } };
        }
        let text = self.fault.and_then(|f| f.kept("comment", "text")).unwrap_or("");
        html! {
            form.card #comment-form method="post" action=(self.action()) {
                (csrf_field(self.w))
                input type="hidden" name="action" value="comment";
                div.field {
                    label for="comment-text" { "Add a comment" }
                    textarea #comment-text name="text" rows="4" placeholder="Markdown" { (text) }
                    (self.error_at("comment"))
                }
                button #comment-button type="submit" { "Comment" }
            }
        }
    }

    /// One entry of the activity stream; `None` for entries the overview does not show (a
    /// reply, an edit or a deletion of a comment: the thread shows what is there now).
    fn activity(&self, a: &Activity) -> Option<Markup> {
        let d: Value = serde_json::from_str(&a.detail).unwrap_or(Value::Null);
        let who = self.people.show(a.user_id);
        let commits = repo_link(self.w, self.repo, "/commits");
        let line = |text: Markup| html! { li class={ "activity activity-" (a.action.to_ascii_lowercase()) } data-action=(a.action) { (who) " " (text) " " (when(a.created_at)) } };
        Some(match a.action.as_str() {
            "OPENED" => line(html! { "opened the pull request" }),
            "APPROVED" => line(html! { "approved" }),
            "UNAPPROVED" => line(html! { "removed their approval" }),
            "REVIEWED" => line(html! { "marked the pull request as needing work" }),
            "REOPENED" => line(html! { "reopened the pull request" }),
            "DECLINED" => line(html! { "declined the pull request" @if let Some(r) = d["reason"].as_str() { " (" (r) ")" } }),
            "MERGED" => line(html! {
                @if d["byPush"].as_bool() == Some(true) { "merged the pull request by pushing its commits to " span.ref { (display_ref(&self.pr.to_ref)) } }
                @else {
                    "merged the pull request"
                    @if let Some(c) = d["commit"].as_str() { " as " a.sha href={ (commits) "/" (c) } { (c.get(..12).unwrap_or(c)) } }
                    @if let Some(s) = d["strategy"].as_str().and_then(Strategy::parse) { " (" (s.name()) ")" }
                }
            }),
            "RESCOPED" => {
                let count = |k: &str| d[k]["total"].as_u64().unwrap_or(0) as usize;
                let (added, removed) = (count("added"), count("removed"));
                let ids: Vec<&str> = d["added"]["commits"].as_array().into_iter().flatten().filter_map(Value::as_str).take(10).collect();
                html! {
                    li.activity.activity-rescoped data-action="RESCOPED" data-added=(added) data-removed=(removed) {
                        (who) " "
                        @if added > 0 { "added " (plural(added, "commit", "commits")) }
                        @if added > 0 && removed > 0 { " and " }
                        @if removed > 0 { "removed " (plural(removed, "commit", "commits")) }
                        @if added == 0 && removed == 0 { "updated the pull request: " span.ref { (display_ref(&self.pr.to_ref)) } " moved" }
                        " " (when(a.created_at))
                        @if !ids.is_empty() { div.small { @for c in &ids { a.sha href={ (commits) "/" (c) } { (c.get(..12).unwrap_or(c)) } " " } } }
                    }
                }
            }
            "UPDATED" => {
                let names = |k: &str| d[k].as_array().into_iter().flatten().filter_map(Value::as_i64).collect::<Vec<_>>();
                let (added, removed) = (names("addedReviewers"), names("removedReviewers"));
                line(html! {
                    @if !added.is_empty() { "added " @for (i, id) in added.iter().enumerate() { @if i > 0 { ", " } (self.people.show(*id)) } " as " (if added.len() == 1 { "reviewer" } else { "reviewers" }) " " }
                    @if !removed.is_empty() { "removed " @for (i, id) in removed.iter().enumerate() { @if i > 0 { ", " } (self.people.show(*id)) } " from the reviewers " }
                    @if let Some(t) = d["previousTitle"].as_str() { "changed the title from “" (t) "” " }
                    @if d.get("previousDescription").is_some() { "changed the description " }
                    @if let Some(t) = d["previousTarget"]["displayId"].as_str() { "changed the target from " span.ref { (t) } " to " span.ref { (display_ref(&self.pr.to_ref)) } " " }
                })
            }
            "COMMENTED" => {
                if d["commentAction"].as_str() != Some("ADDED") {
                    return None;
                }
                let c = self.comments.iter().find(|c| Some(c.id) == a.comment_id && c.parent_id.is_none())?;
                html! {
                    li.activity.activity-commented data-action="COMMENTED" {
                        (who) " commented " (when(a.created_at))
                        (self.thread(c))
                    }
                }
            }
            _ => line(html! { (a.action.to_ascii_lowercase()) }),
        })
    }

    /// A comment with its replies, the forms to reply, and, for its author, to edit or delete.
    fn thread(&self, c: &Comment) -> Markup {
        let replies: Vec<&Comment> = self.comments.iter().filter(|r| r.parent_id == Some(c.id)).collect();
        let me = self.me();
        let mine = me.is_some_and(|u| u.id == c.author_id);
        let may_delete = me.is_some() && (mine || self.perm >= Permission::Admin) && replies.is_empty();
        let anchor = c.anchor.as_deref().and_then(|a| serde_json::from_str::<Anchor>(a).ok());
        let (reply_form, edit_form) = (format!("reply-{}", c.id), format!("edit-comment-{}", c.id));
        let reply_kept = self.fault.and_then(|f| f.kept(&reply_form, "text"));
        let edit_kept = self.fault.filter(|f| !f.stale).and_then(|f| f.kept(&edit_form, "text"));
        html! {
            div.comment id={ "comment-" (c.id) } data-comment=(c.id) data-author=(self.people.name(c.author_id)) {
                div.comment-head {
                    strong.comment-author { (self.people.show(c.author_id)) }
                    (when(c.created_at))
                    @if c.updated_at != c.created_at { span.muted.small { "(edited)" } }
                    @if c.severity == "BLOCKER" { span.badge.task { @if c.state == "RESOLVED" { "Task resolved" } @else { "Task" } } }
                }
                @if let Some(a) = &anchor {
                    div.comment-anchor.small.muted {
                        "on " a href=(pr_link(self.w, self.repo, self.pr.number, "/diff")) { (a.path) }
                        @if let Some(l) = a.line { " line " (l) }
                        @if c.orphaned { " " span.badge { "outdated" } }
                    }
                }
                div.comment-text.md { (PreEscaped(markdown::render(&c.text))) }
                (self.error_at(&format!("delete-comment-{}", c.id)))
                @if me.is_some() {
                    div.comment-actions {
                        details.reply open[reply_kept.is_some()] {
                            summary { "Reply" }
                            form.reply-form method="post" action=(self.action()) {
                                (csrf_field(self.w))
                                input type="hidden" name="action" value="reply";
                                input type="hidden" name="parent" value=(c.id);
                                textarea name="text" rows="3" aria-label="Reply" { (reply_kept.unwrap_or("")) }
                                (self.error_at(&reply_form))
                                button type="submit" { "Reply" }
                            }
                        }
                        @if mine {
                            details.edit-comment open[edit_kept.is_some()] {
                                summary { "Edit" }
                                form.edit-comment-form method="post" action=(self.action()) {
                                    (csrf_field(self.w))
                                    input type="hidden" name="action" value="edit-comment";
                                    input type="hidden" name="comment" value=(c.id);
                                    input type="hidden" name="version" value=(c.version);
                                    textarea name="text" rows="3" aria-label="Comment" { (edit_kept.unwrap_or(&c.text)) }
                                    (self.error_at(&edit_form))
                                    button type="submit" { "Save" }
                                }
                            }
                        }
                        @if may_delete {
                            form.delete-comment-form.inline method="post" action=(self.action()) {
                                (csrf_field(self.w))
                                input type="hidden" name="action" value="delete-comment";
                                input type="hidden" name="comment" value=(c.id);
                                input type="hidden" name="version" value=(c.version);
                                button.secondary.small type="submit" { "Delete" }
                            }
                        }
                    }
                }
                @if !replies.is_empty() { div.replies { @for r in &replies { (self.thread(r)) } } }
            }
        }
    }
}

/// What the person was told when a form on the overview was refused.
fn explain(e: &PrError) -> (String, bool) {
    match e {
        PrError::Stale { given, current } => (
            format!(
                "This pull request has changed since you loaded this page (it was at version {given}, it is now at version {current}), so nothing was changed. Reload the page to see what changed, then try again."
            ),
            true,
        ),
        PrError::Conflict { exception, .. } if exception.ends_with("CommentOutOfDateException") => {
            ("This comment has changed since you loaded this page, so nothing was changed. Reload the page to see the change, then try again.".into(), true)
        }
        e => (e.to_string(), false),
    }
}

fn int_field(form: &Form, name: &str) -> Result<i64, WebError> {
    form.get(name).trim().parse::<i64>().map_err(|_| WebError::BadRequest(format!("the form's {name} is not a number")))
}

/// `POST …/pull-requests/{id}/overview` with `action`: `comment` (`text`), `reply` (`parent`,
/// `text`), `edit-comment` and `delete-comment` (`comment`, its `version`, `text`), `approve`,
/// `needs-work`, `unapprove`, `add-reviewer` and `remove-reviewer` (`user`), `merge` (`strategy`, `delete_source`, `message`), `decline`,
/// `reopen`, `edit` (`title`, `description`), `delete`; the pull-request ones with `version`.
pub(crate) async fn overview_post(w: Web, p: PrPath, form: Form) -> WebResult {
    let (key, slug, id) = seg(p)?;
    let n = number(&id)?;
    w.check_csrf(&form)?;
    let (repo, perm) = repo_access_async(&w, &key, &slug, Permission::Read).await?;
    let who = w.who().ok_or(WebError::Csrf)?;
    let actor = Actor { who: &who, level: perm };
    let version = match form.get("version").trim() {
        "" => None,
        v => Some(v.parse::<i64>().map_err(|_| WebError::BadRequest(format!("the form's version {v:?} is not a number")))?),
    };
    let action = form.get("action").to_owned();
    let here = pr_link(&w, &repo, n, "/overview");
    let st = &w.state;
    let text = || form.get("text").to_owned();
    let (done, fault_form): (Result<String, PrError>, String) = match action.as_str() {
        "comment" | "reply" => {
            let parent = if action == "reply" { Some(int_field(&form, "parent")?) } else { None };
            let at = parent.map_or_else(|| "comment".to_owned(), |p| format!("reply-{p}"));
            let ask = NewCommentAsk { text: text(), parent, anchor: None, severity: "NORMAL".into() };
            (prs::add_comment(st, &repo, &actor, n, ask).await.map(|c| format!("{here}?done=commented#comment-{}", c.id)), at)
        }
        "edit-comment" => {
            let cid = int_field(&form, "comment")?;
            let v = version.ok_or_else(|| WebError::BadRequest("the comment's version is missing".into()))?;
            let change = CommentChange { text: Some(text()), ..CommentChange::default() };
            (
                prs::edit_comment(st, &repo, &actor, n, cid, v, change).await.map(|c| format!("{here}?done=comment-saved#comment-{}", c.id)),
                format!("edit-comment-{cid}"),
            )
        }
        "delete-comment" => {
            let cid = int_field(&form, "comment")?;
            let v = version.ok_or_else(|| WebError::BadRequest("the comment's version is missing".into()))?;
            (prs::delete_comment(st, &repo, &actor, n, cid, v).await.map(|()| format!("{here}?done=comment-deleted")), format!("delete-comment-{cid}"))
        }
        "approve" | "needs-work" | "unapprove" => {
            let status = match action.as_str() {
                "approve" => ReviewStatus::Approved,
                "needs-work" => ReviewStatus::NeedsWork,
                _ => ReviewStatus::Unapproved,
            };
            let done = format!(
                "{here}?done={}",
                match status {
                    ReviewStatus::Approved => "approved",
                    ReviewStatus::NeedsWork => "needs-work",
                    ReviewStatus::Unapproved => "unapproved",
                }
            );
            (prs::set_status(st, &repo, &actor, n, status, version).await.map(|_| done), "review".to_owned())
        }
        "merge" => {
            let ask = MergeAsk {
                version,
                strategy: Some(form.get("strategy").trim().to_owned()).filter(|s| !s.is_empty()),
                message: Some(form.get("message").to_owned()).filter(|m| !m.trim().is_empty()),
                delete_source: form.get("delete_source") == "1",
            };
            (prs::merge(st, &repo, &actor, n, ask).await.map(|_| format!("{here}?done=merged")), "merge".to_owned())
        }
        "add-reviewer" => {
            let user = form.get("user").trim().to_owned();
            (prs::add_reviewer(st, &repo, &actor, n, &user).await.map(|_| format!("{here}?done=reviewer-added")), "reviewers".to_owned())
        }
        "remove-reviewer" => {
            let name = trove_store::UserName::parse(form.get("user").trim()).map_err(|_| WebError::BadRequest("the form names no user".into()))?;
            let user = w.state.store.run(move |s| s.user(&name)).await?.ok_or_else(|| WebError::BadRequest("no such user".into()))?;
            (prs::remove_reviewer(st, &repo, &actor, n, &user).await.map(|()| format!("{here}?done=reviewer-removed")), "reviewers".to_owned())
        }
        "decline" => (prs::decline(st, &repo, &actor, n, version).await.map(|_| format!("{here}?done=declined")), "state".to_owned()),
        "reopen" => (prs::reopen(st, &repo, &actor, n, version).await.map(|_| format!("{here}?done=reopened")), "state".to_owned()),
        "edit" => {
            let edit =
                PrEdit { version, title: Some(form.get("title").to_owned()), description: Some(Some(form.get("description").to_owned())), ..PrEdit::default() };
            (prs::update(st, &repo, &actor, n, edit).await.map(|_| format!("{here}?done=saved")), "edit".to_owned())
        }
        "delete" => {
            let list = repo_link(&w, &repo, "/pull-requests?done=pr-deleted");
            (prs::delete(st, &repo, &actor, n, version).await.map(|()| list), "state".to_owned())
        }
        other => return Err(WebError::BadRequest(format!("unknown action {other:?}"))),
    };
    match done {
        Ok(location) => Ok(see_other(&location)),
        Err(e @ (PrError::NotFound(_) | PrError::Store(_) | PrError::Git(_))) => Err(pr_failed(e)),
        Err(e) => {
            let status = match &e {
                PrError::Invalid { .. } => StatusCode::BAD_REQUEST,
                PrError::Forbidden(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::CONFLICT,
            };
            let (message, stale) = explain(&e);
            let kept = form.0.into_iter().filter(|(k, _)| k != "csrf").collect();
            let fault = Fault { form: fault_form, message, stale, kept };
            render_overview(&w, repo, perm, n, None, Some(fault), status).await
        }
    }
}

// ---- the dashboard ----

/// The signed-in caller's open pull requests for the dashboard ("Your work"): those waiting on
/// their review, those they opened, and those they take part in otherwise; `None` for an
/// anonymous caller. Only pull requests of repositories they may still read are shown.
pub(crate) fn your_work(w: &Web) -> Result<Option<Markup>, WebError> {
    let Some(me) = w.user() else { return Ok(None) };
    let store = &w.state.store;
    let mut repos: HashMap<i64, Option<Repo>> = HashMap::new();
    let who = w.who();
    let mut find = |filters: Vec<ParticipantFilter>| -> Result<Vec<PullRequest>, WebError> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for f in filters {
            let q = PrQuery { states: vec![PrState::Open], participants: vec![f], by_update: true, limit: DASHBOARD_READ, ..PrQuery::default() };
            for pr in store.prs(&q)?.0 {
                if !seen.insert(pr.id) {
                    continue;
                }
                if let std::collections::hash_map::Entry::Vacant(e) = repos.entry(pr.repo_id) {
                    let r = store.repo_by_id(pr.repo_id)?;
                    let readable = match &r {
                        Some(r) => store.permission(who.as_ref(), r)?.is_some(),
                        None => false,
                    };
                    e.insert(r.filter(|_| readable));
                }
                if repos[&pr.repo_id].is_some() {
                    out.push(pr);
                }
            }
        }
        out.sort_by_key(|p| std::cmp::Reverse(p.updated_at));
        Ok(out)
    };
    let f = |role: Role, statuses: Vec<ReviewStatus>| ParticipantFilter { user_id: me.id, role: Some(role), statuses };
    let reviewing = find(vec![f(Role::Reviewer, vec![ReviewStatus::Unapproved])])?;
    let authored = find(vec![f(Role::Author, Vec::new())])?;
    let participating = find(vec![f(Role::Reviewer, vec![ReviewStatus::Approved, ReviewStatus::NeedsWork]), f(Role::Participant, Vec::new())])?;
    let people = People::load(store, reviewing.iter().chain(&authored).chain(&participating).flat_map(pr_people))?;
    let section = |id: &str, title: &str, empty: &str, list: &[PullRequest]| {
        html! {
            section.pr-section id=(id) {
                h2 { (title) " " span.muted.count { "(" (list.len()) ")" } }
                @if list.is_empty() { p.muted { (empty) } } @else {
                    table.list.pr-dashboard {
                        thead { tr { th { "Repository" } th { "Title" } th { "Author" } th { "Reviewers" } th { "Updated" } } }
                        tbody {
                            @for pr in list.iter().take(DASHBOARD_ROWS) {
                                @if let Some(repo) = repos.get(&pr.repo_id).and_then(Option::as_ref) {
                                    tr.pr-row data-pr=(pr.number) data-repo=(repo.display_path()) {
                                        td { a href=(repo_link(w, repo, "/pull-requests")) { (repo.display_path()) } }
                                        td { a.pr-title href=(pr_link(w, repo, pr.number, "/overview")) { (pr.title) } " " span.muted { "#" (pr.number) } }
                                        td { (people.show(pr.author_id)) }
                                        td { (reviewer_chips(pr, &people)) }
                                        td { (when(pr.updated_at)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(Some(html! {
        div #your-work {
            h1 { "Your work" }
            (section("prs-reviewing", "Waiting on your review", "No pull requests wait on your review.", &reviewing))
            (section("prs-authored", "Yours", "You have no open pull requests.", &authored))
            (section("prs-participating", "Participating", "You take part in no other open pull requests.", &participating))
        }
    }))
}

#[cfg(test)]
#[path = "pull_requests_tests.rs"]
mod tests;
