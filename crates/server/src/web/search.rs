//! Search pages: repositories and projects by name from the header (`/search?q=`, with
//! suggestions as you type from `/search/suggest`), code search across the repositories the
//! caller may read (`/search?q=&type=code`, [`crate::code_search`]), and a repository's file
//! finder (`…/find`, opened by the `t` key as in Bitbucket).
//!
//! Every list holds only what the caller may read, decided by the same rules as the dashboard
//! and REST's `/repos` (`visible_projects`, then the repository permission). Every page works as
//! a plain form without script; the script (`search.js`, served with the page script) only adds
//! suggestions and filtering as you type.

use std::collections::HashMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use maud::{Markup, html};
use serde_json::json;
use trove_store::{Owner, Permission, Project, Repo};

use super::view::{message, page};
use super::{Web, WebError, WebResult, url_encode};
use crate::code_search::{self, CodeQuery, Hit, Limits};
use crate::repo_read::Reader;

type Q = Query<HashMap<String, String>>;

/// The style of the search box, suggestions, results and the file finder (added to
/// `trove.css`).
pub(crate) const CSS: &str = r#"
/* search (web/search.rs) */
header.top form.search{margin:0;position:relative}header.top form.search input{width:200px;border:1px solid #ffffff80;background:#ffffff26;color:#fff;padding:4px 8px;border-radius:3px;font:inherit}
header.top form.search input::placeholder{color:#e6ecf5}header.top form.search input:focus{outline:2px solid #4c9aff;background:#fff;color:#172b4d}
.suggest{position:absolute;top:100%;left:0;z-index:10;min-width:260px;max-width:90vw;background:#fff;border:1px solid #dfe1e6;border-radius:3px;box-shadow:0 4px 8px #091e4240;margin-top:2px}
.suggest[hidden]{display:none}header.top .suggest a{display:block;padding:5px 10px;color:#172b4d;overflow-wrap:anywhere}header.top .suggest a:hover,header.top .suggest a.active{background:#deebff;text-decoration:none}
.suggest .group{font-size:11px;text-transform:uppercase;color:#5e6c84;padding:4px 10px 0;font-weight:600}header.top .suggest a.more{border-top:1px solid #ebecf0;color:#0052cc}
form.search-page{display:flex;gap:6px;flex-wrap:wrap;margin-bottom:12px}form.search-page input[type=search]{flex:1;min-width:0;font:inherit;padding:5px 8px;border:1px solid #c1c7d0;border-radius:3px}
form.search-page input[type=search]:focus{outline:2px solid #4c9aff;border-color:#4c9aff}
.hits{margin-bottom:14px}.hits h3{font-size:13px;margin:0;padding:6px 10px;background:#fafbfc;border:1px solid #dfe1e6;border-bottom:0;border-radius:4px 4px 0 0;overflow-wrap:anywhere}
.hits table.code{border:1px solid #dfe1e6}.hits table.code td{white-space:pre-wrap;word-break:break-all}mark{background:#ffe380;color:#172b4d;padding:0}
ul.finder{list-style:none;margin:0;padding:0;background:#fff;border:1px solid #dfe1e6;border-radius:4px}ul.finder li{border-bottom:1px solid #ebecf0}ul.finder li:last-child{border-bottom:0}
ul.finder a{display:block;padding:5px 10px;font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px;overflow-wrap:anywhere}ul.finder a.active{background:#deebff}
@media (max-width:600px){header.top form.search{order:3;flex-basis:100%;padding-bottom:8px}header.top form.search input{width:100%}}
"#;

/// The script for the search box, the search page and the file finder (added to `trove.js`).
pub(crate) const JS: &str = include_str!("search.js");

/// The header's search box: a plain GET form to the results page; the script adds suggestions
/// (`data-suggest`) in the list under it.
pub(crate) fn header_box(ctx: &str) -> Markup {
    html! {
        form.search method="get" action={ (ctx) "/search" } role="search" data-suggest={ (ctx) "/search/suggest" } {
            input type="search" name="q" placeholder="Search" aria-label="Search repositories, projects and code" autocomplete="off"
                role="combobox" aria-autocomplete="list" aria-controls="search-suggest" aria-expanded="false" maxlength="400";
            div.suggest #search-suggest hidden {}
        }
    }
}

/// Most projects and repositories a name search lists on its page.
const PAGE_LIMIT: usize = 100;
/// Most suggestions of each kind under the search box.
const SUGGEST_LIMIT: usize = 6;
/// Most paths the file finder's page shows (the script filters the whole listing).
const FINDER_LIMIT: usize = 200;
/// The longest name query: longer cannot name anything.
const MAX_NAME_QUERY: usize = 200;

/// A project the caller may see and the repositories of it they may read.
struct Visible {
    project: Project,
    repos: Vec<Repo>,
}

/// Every project the caller may see with the repositories they may read in it, by key and
/// slug; the dashboard's and REST `/repos`' rules. Blocks.
fn visible(w: &Web) -> Result<Vec<Visible>, WebError> {
    let who = w.who();
    let admin = crate::access::sees_everything(who.as_ref());
    let mut out = Vec::new();
    for p in w.state.store.visible_projects(w.user(), admin)? {
        let mut repos = Vec::new();
        for r in w.state.store.project_repos(&p)? {
            if w.state.store.permission(who.as_ref(), &r)?.is_some() {
                repos.push(r);
            }
        }
        out.push(Visible { project: p, repos });
    }
    Ok(out)
}

fn contains(hay: &str, needle_lower: &str) -> bool {
    hay.to_lowercase().contains(needle_lower)
}

/// Projects (by key or name) and repositories (by slug or name) matching `q`, best first:
/// exact, then prefix, then anywhere.
fn match_names(all: &[Visible], q: &str) -> (Vec<Project>, Vec<Repo>) {
    let lq = q.to_lowercase();
    let rank = |names: &[&str]| -> u8 {
        let lower: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
        if lower.contains(&lq) {
            0
        } else if lower.iter().any(|n| n.starts_with(&lq)) {
            1
        } else {
            2
        }
    };
    let mut projects: Vec<(u8, Project)> = all
        .iter()
        .map(|v| &v.project)
        .filter(|p| contains(&p.owner.to_string(), &lq) || contains(&p.name, &lq))
        .map(|p| (rank(&[&p.owner.to_string(), &p.name]), p.clone()))
        .collect();
    projects.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.owner.to_string().cmp(&b.1.owner.to_string())));
    let mut repos: Vec<(u8, Repo)> = all
        .iter()
        .flat_map(|v| v.repos.iter())
        .filter(|r| contains(r.slug.as_str(), &lq) || contains(&r.name, &lq))
        .map(|r| (rank(&[r.slug.as_str(), &r.name]), r.clone()))
        .collect();
    repos.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.slug.as_str().cmp(b.1.slug.as_str())).then_with(|| a.1.owner.to_string().cmp(&b.1.owner.to_string())));
    (projects.into_iter().map(|p| p.1).collect(), repos.into_iter().map(|r| r.1).collect())
}

fn project_link(w: &Web, owner: &Owner) -> String {
    w.link(&format!("/projects/{}", url_encode(&owner.to_string())))
}

fn repo_link(w: &Web, repo: &Repo, rest: &str) -> String {
    w.link(&format!("/projects/{}/repos/{}{rest}", url_encode(&repo.owner.to_string()), repo.slug))
}

/// The search form at the top of the results page.
fn search_form(w: &Web, q: &str, kind: &str) -> Markup {
    html! {
        form.search-page method="get" action=(w.link("/search")) role="search" {
            input type="search" name="q" value=(q) aria-label="Search for" placeholder="Search repositories, projects or code" maxlength="400";
            select name="type" aria-label="What to search" {
                option value="repositories" selected[kind != "code"] { "Repositories and projects" }
                option value="code" selected[kind == "code"] { "Code" }
            }
            button type="submit" { "Search" }
        }
    }
}

fn tabs(w: &Web, q: &str, kind: &str) -> Markup {
    let link = |t: &str| w.link(&format!("/search?q={}&type={t}", url_encode(q)));
    html! {
        nav.tabs aria-label="Search results" {
            a.on[kind != "code"] href=(link("repositories")) { "Repositories and projects" }
            a.on[kind == "code"] #search-code-tab href=(link("code")) { "Code" }
        }
    }
}

/// `GET /search?q=&type=repositories|code` (and Bitbucket's `/plugins/servlet/search`): the
/// results page. Without `q`, the empty form.
pub(crate) async fn search_page(w: Web, Query(q): Q) -> WebResult {
    let text = q.get("q").map(|s| s.trim().to_owned()).unwrap_or_default();
    let kind = q.get("type").map(String::as_str).unwrap_or("repositories").to_owned();
    if kind == "code" && !text.is_empty() {
        return code_page(w, text).await;
    }
    w.blocking(move |w| {
        let form = search_form(w, &text, &kind);
        if text.is_empty() {
            let body = html! { h1 { "Search" } (form) p.muted { "Search repositories and projects by name, or the code of every repository you can read." } };
            return Ok(page(w, "Search", body));
        }
        if text.chars().count() > MAX_NAME_QUERY {
            let body = html! { h1 { "Search" } (form) div.notice.err role="alert" { "The search text is too long; search for at most " (MAX_NAME_QUERY) " characters." } };
            let mut r = page(w, "Search", body);
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(r);
        }
        let all = visible(w)?;
        let (projects, repos) = match_names(&all, &text);
        let body = html! {
            h1 { "Search" }
            (form)
            (tabs(w, &text, &kind))
            h2 { "Repositories" }
            @if repos.is_empty() { p.muted #no-repos { "No repositories you can read match “" (text) "”." } }
            @else {
                table.list #repo-results {
                    thead { tr { th { "Repository" } th { "Project" } } }
                    tbody { @for r in repos.iter().take(PAGE_LIMIT) {
                        tr { td { a href=(repo_link(w, r, "/browse")) { (r.name) } } td { a href=(project_link(w, &r.owner)) { (r.owner) } } }
                    } }
                }
                @if repos.len() > PAGE_LIMIT { p.muted { "The first " (PAGE_LIMIT) " of " (repos.len()) " are shown; search for more of the name." } }
            }
            h2 { "Projects" }
            @if projects.is_empty() { p.muted #no-projects { "No projects you can see match “" (text) "”." } }
            @else {
                table.list #project-results {
                    thead { tr { th { "Key" } th { "Project" } } }
                    tbody { @for p in projects.iter().take(PAGE_LIMIT) {
                        tr { td.mono { a href=(project_link(w, &p.owner)) { (p.owner) } } td { a href=(project_link(w, &p.owner)) { (p.name) } } }
                    } }
                }
            }
            p { a href=(w.link(&format!("/search?q={}&type=code", url_encode(&text)))) { "Search the code for “" (text) "”" } }
        };
        Ok(page(w, &format!("{text} - Search"), body))
    })
    .await
}

/// `GET /search/suggest?q=`: the search box's suggestions as JSON (`projects` and
/// `repositories`, each `{name, key|project, url}`), a few of each, only what the caller may
/// read. An empty or over-long query has none.
pub(crate) async fn suggest(w: Web, Query(q): Q) -> Response {
    let text = q.get("q").map(|s| s.trim().to_owned()).unwrap_or_default();
    let r = w
        .blocking(move |w| -> Result<serde_json::Value, WebError> {
            if text.is_empty() || text.chars().count() > MAX_NAME_QUERY {
                return Ok(json!({"projects": [], "repositories": []}));
            }
            let (projects, repos) = match_names(&visible(w)?, &text);
            Ok(json!({
                "projects": projects.iter().take(SUGGEST_LIMIT).map(|p| json!({"key": p.owner.to_string(), "name": p.name, "url": project_link(w, &p.owner)})).collect::<Vec<_>>(),
                "repositories": repos.iter().take(SUGGEST_LIMIT).map(|r| json!({"project": r.owner.to_string(), "slug": r.slug.as_str(), "name": r.name, "url": repo_link(w, r, "/browse")})).collect::<Vec<_>>(),
                "all": w.link(&format!("/search?q={}", url_encode(&text))),
                "code": w.link(&format!("/search?q={}&type=code", url_encode(&text))),
            }))
        })
        .await;
    match r {
        Ok(v) => json_response(&v),
        Err(e) => e.into_response(),
    }
}

fn json_response(v: &serde_json::Value) -> Response {
    let mut r = v.to_string().into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Highlights `ranges` of `text` with `mark`.
fn highlighted(text: &str, ranges: &[(usize, usize)]) -> Markup {
    let mut parts = Vec::new();
    let mut at = 0;
    for &(s, e) in ranges {
        if s < at || e > text.len() || !text.is_char_boundary(s) || !text.is_char_boundary(e) {
            continue;
        }
        parts.push((false, &text[at..s]));
        parts.push((true, &text[s..e]));
        at = e;
    }
    parts.push((false, &text[at..]));
    html! { @for (m, p) in parts { @if m { mark { (p) } } @else { (p) } } }
}

/// The code search results page (`/search?q=&type=code`).
async fn code_page(w: Web, text: String) -> WebResult {
    let query = CodeQuery::parse(&text);
    // The repositories to search and the branch each is searched at are decided first, on the
    // store's pool; git runs after, on the async side.
    let (targets, repos) = {
        let w2 = w.clone();
        w2.blocking(move |w| -> Result<_, WebError> {
            let mut targets = Vec::new();
            let mut repos = HashMap::new();
            for v in visible(w)? {
                for r in v.repos {
                    targets.push(code_search::Target { id: r.id, dir: w.state.store.repo_path(&r) });
                    repos.insert(r.id, r);
                }
            }
            Ok((targets, repos))
        })
        .await?
    };
    let repo_count = targets.len();
    let (outcome, refused) = match &query {
        Ok(q) => (Some(code_search::search(&w.state, q, targets, Limits::default()).await), None),
        Err(e) => (None, Some(e.to_string())),
    };
    // The default branch each hit was found at, for the links (`?at=`).
    let mut branches: HashMap<i64, String> = HashMap::new();
    if let Some(o) = &outcome {
        for h in &o.hits {
            if let (std::collections::hash_map::Entry::Vacant(e), Some(r)) = (branches.entry(h.repo_id), repos.get(&h.repo_id)) {
                let g = Reader::new(&w.state, w.state.store.repo_path(r));
                let refs = g.refs().await?;
                if let Some(b) = refs.default_branch().or(refs.branches.first()) {
                    e.insert(b.full.clone());
                }
            }
        }
    }
    w.blocking(move |w| {
        let form = search_form(w, &text, "code");
        let limits = Limits::default();
        let body = html! {
            h1 { "Search" }
            (form)
            (tabs(w, &text, "code"))
            @if let Some(msg) = &refused { div.notice.err role="alert" #search-error { (message(msg)) } }
            @if let Some(o) = &outcome {
                @if query.as_ref().is_ok_and(|q| q.looks_like_regex) {
                    div.notice.warn role="status" #regex-note { "Regular expressions are not supported: the text was searched for as it is, without regard to case." }
                }
                p.muted #search-summary {
                    (o.hits.len()) @if o.more { "+" } @if o.hits.len() == 1 && !o.more { " matching line in " } @else { " matching lines in " } (o.searched) " of " (repo_count) @if repo_count == 1 { " repository" } @else { " repositories" } " you can read (each at its default branch)."
                    @if o.large_files > 0 { " " (o.large_files) " files over " (limits.max_file_size >> 20) " MiB were not searched." }
                }
                @if o.more { div.notice.warn role="status" { "Only the first " (limits.max_results) " matching lines are shown (at most " (limits.per_file) " per file); search for something more specific to see the rest." } }
                @if o.timed_out { div.notice.warn role="status" { "The search stopped after " (limits.time.as_secs()) " seconds; " (o.skipped) " repositories were not searched." } }
                @else if o.busy { div.notice.warn role="status" { "The server is busy serving git; " (o.skipped) " repositories were not searched. Try again in a few seconds." } }
                @else if o.skipped > 0 { div.notice.warn role="status" { "Only the first " (limits.max_repos) " repositories were searched; " (o.skipped) " were not." } }
                @if o.hits.is_empty() { p #no-code { "No code matches “" (text) "”." } }
                @for (key, group) in grouped(&o.hits) {
                    @if let Some(r) = repos.get(&key.0) {
                        @let at = branches.get(&key.0).map(|b| format!("?at={}", url_encode(b))).unwrap_or_default();
                        @let file = format!("{}/{}{at}", repo_link(w, r, "/browse"), url_encode(&key.1));
                        section.hits {
                            h3 { a href=(repo_link(w, r, "/browse")) { (r.owner) "/" (r.slug) } " " a.mono href=(file) { (key.1) } }
                            div.codebox { table.code { tbody {
                                @for h in group {
                                    tr { td.ln { a href={ (file) "#L" (h.line) } aria-label={ (key.1) " line " (h.line) } { (h.line) } } td { (highlighted(&h.text, &h.ranges)) } }
                                }
                            } } }
                        }
                    }
                }
            }
        };
        let mut r = page(w, &format!("{text} - Code search"), body);
        if refused.is_some() {
            *r.status_mut() = StatusCode::BAD_REQUEST;
        }
        Ok(r)
    })
    .await
}

/// Hits by (repository, path), in the order found.
fn grouped(hits: &[Hit]) -> Vec<((i64, String), Vec<&Hit>)> {
    let mut out: Vec<((i64, String), Vec<&Hit>)> = Vec::new();
    for h in hits {
        match out.last_mut() {
            Some((k, v)) if k.0 == h.repo_id && k.1 == h.path => v.push(h),
            _ => out.push(((h.repo_id, h.path.clone()), vec![h])),
        }
    }
    out
}

/// `GET /projects/{KEY}/repos/{slug}/find?at=&q=`: every file path at the revision, filtered by
/// `q` (characters in order, as [`code_search::fuzzy_score`] ranks them); `format=json` gives the
/// whole listing to the page script, which filters as you type.
pub(crate) async fn finder(w: Web, p: Result<Path<(String, String)>, PathRejection>, Query(q): Q) -> WebResult {
    let (key, slug) = p.map(|Path(t)| t).map_err(|_| WebError::NotFound)?;
    let repo = {
        let (key, slug) = (key.clone(), slug.clone());
        w.clone()
            .blocking(move |w| {
                let who = w.who();
                crate::access::repo(&w.state.store, who.as_ref(), &key, &slug, Permission::Read).map(|a| a.repo).map_err(|e| {
                    w.repo_refusal(&key, &slug, e, |e| match e {
                        crate::access::AccessError::Anonymous(_) => w.require_user().err().unwrap_or(WebError::NotFound),
                        crate::access::AccessError::Forbidden(_) => WebError::Forbidden,
                        crate::access::AccessError::Store(e) => e.into(),
                        crate::access::AccessError::Hidden(_) => WebError::NotFound,
                    })
                })
            })
            .await?
    };
    let g = Reader::new(&w.state, w.state.store.repo_path(&repo));
    let refs = g.refs().await?;
    let at = q.get("at").map(String::as_str).filter(|a| !a.is_empty());
    let resolved = match g.resolve(&refs, at).await? {
        Some(r) => Some(r),
        None if at.is_none() => refs.branches.first().map(crate::repo_read::Resolved::from_ref),
        None => return Err(WebError::NotFound),
    };
    let listing = match &resolved {
        Some(r) => code_search::listing(&g, &r.commit).await?,
        None => None,
    };
    let text = q.get("q").map(|s| s.trim().to_owned()).unwrap_or_default();
    let browse = repo_link(&w, &repo, "/browse");
    let at_q = resolved.as_ref().map(|r| format!("?at={}", url_encode(&r.at))).unwrap_or_default();
    if q.get("format").map(String::as_str) == Some("json") {
        let files: Vec<&str> = listing.as_ref().map(|l| l.files.iter().map(|(p, _)| p.as_str()).collect()).unwrap_or_default();
        return Ok(json_response(&json!({
            "files": files,
            "truncated": listing.as_ref().is_some_and(|l| l.truncated),
            "browse": browse,
            "at": at_q,
        })));
    }
    let mut matches: Vec<(i64, &str)> =
        listing.as_ref().map(|l| l.files.iter().filter_map(|(p, _)| code_search::fuzzy_score(&text, p).map(|s| (s, p.as_str()))).collect()).unwrap_or_default();
    if !text.is_empty() {
        matches.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    }
    let total = matches.len();
    let body = w.clone().blocking({
        let repo = repo.clone();
        let matches: Vec<String> = matches.iter().take(FINDER_LIMIT).map(|m| m.1.to_owned()).collect();
        let truncated = listing.as_ref().is_some_and(|l| l.truncated);
        let label = resolved.as_ref().map(|r| r.label.clone());
        let json_url = format!("{}/find?format=json{}", repo_link(&w, &repo, ""), resolved.as_ref().map(|r| format!("&at={}", url_encode(&r.at))).unwrap_or_default());
        move |w| -> Result<Markup, WebError> {
            let perm = w.state.store.permission(w.who().as_ref(), &repo)?.unwrap_or(Permission::Read);
            let action = repo_link(w, &repo, "/find");
            Ok(html! {
                (super::repo::repo_header(w, &repo, perm, "browse"))
                h2 { "Find a file" @if let Some(l) = &label { " " span.muted { "at " span.ref { (l) } } } }
                form.search-page method="get" action=(action) #finder-form data-finder=(json_url) {
                    @if let Some(r) = &resolved { input type="hidden" name="at" value=(r.at); }
                    input #finder-input type="search" name="q" value=(text) aria-label="File name or path" placeholder="Type part of a path, e.g. srclib" autocomplete="off" autofocus;
                    button type="submit" { "Find" }
                }
                p.muted #finder-count role="status" {
                    @if label.is_none() { "This repository is empty." }
                    @else { (total) @if total == 1 { " file" } @else { " files" } @if !text.is_empty() { @if total == 1 { " matches" } @else { " match" } } "." @if total > FINDER_LIMIT { " The first " (FINDER_LIMIT) " are shown." } }
                    @if truncated { " The repository has more than " (code_search::MAX_PATHS) " files; only the first are listed." }
                }
                ul.finder #finder-results {
                    @for p in &matches { li { a href={ (browse) "/" (url_encode(p)) (at_q) } { (p) } } }
                }
            })
        }
    });
    let body = body.await?;
    Ok(page(&w, &format!("Find a file - {}", repo.name), body))
}

#[cfg(test)]
#[path = "search_tests.rs"]
mod search_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highlighting_marks_the_ranges_and_escapes_the_rest() {
        assert_eq!(highlighted("a <b> keep c", &[(6, 10)]).into_string(), "a &lt;b&gt; <mark>keep</mark> c");
        assert_eq!(highlighted("x", &[(0, 5)]).into_string(), "x");
    }
}
