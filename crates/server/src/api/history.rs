//! History and diffs of a repository over REST: a commit's changes and diff
//! (`…/commits/{id}/changes`, `…/commits/{id}/diff[/{path}]`), the changes and diff between
//! two commits (`…/changes`, `…/diff[/{path}]` with `since`/`until`), comparing two refs
//! (`…/compare/commits|changes|diff`) and the pull requests containing a commit
//! (`…/commits/{id}/pull-requests`).
//!
//! The changes and the diff JSON are the pull requests' own ([`crate::pr_git`]): one renderer,
//! one set of caps (`truncated` past them), and `Accept: text/plain` gives git's unified diff
//! here as there. Revisions are resolved as `browse` resolves `at` (a branch, a tag, a full ref
//! or a hex id, nothing else), so only hex ids reach git.

use axum::extract::Path;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use trove_store::{Permission, PrQuery, ProjectInfo, Repo};

use super::{Api, ApiError, PageReq, envelope, ok};
use crate::pr_git::{DiffOptions, GitRepo, PrGitError};
use crate::pull_requests::PrError;
use crate::repo_read::{Reader, Refs};

/// Most pull requests `…/commits/{id}/pull-requests` looks through, newest first. Default 1000:
/// each costs two `merge-base --is-ancestor` runs.
const PR_SCAN_LIMIT: usize = 1000;

fn git_err(e: PrGitError) -> ApiError {
    PrError::from(e).into()
}

/// One repository opened for reading history.
struct Opened {
    repo: Repo,
    project: ProjectInfo,
    reader: Reader,
    git: GitRepo,
    refs: Refs,
}

async fn open(api: &Api, key: &str, slug: &str) -> Result<Opened, ApiError> {
    let (repo, project) = api.repo_async(key, slug, Permission::Read, "see this repository").await?;
    let dir = api.store().repo_path(&repo);
    let reader = Reader::new(&api.state, dir.clone());
    let git = GitRepo::new(&api.state, dir);
    let refs = reader.refs().await?;
    Ok(Opened { repo, project, reader, git, refs })
}

impl Opened {
    /// The commit `raw` names (branch, tag, full ref or hex id): 404 if none.
    async fn rev(&self, raw: &str) -> Result<String, ApiError> {
        Ok(self.reader.resolve(&self.refs, Some(raw)).await?.ok_or_else(|| ApiError::no_commit(raw))?.commit)
    }

    /// The query parameter `name` resolved, or the default branch without it (404 while the
    /// repository is empty).
    async fn rev_or_default(&self, api: &Api, name: &str) -> Result<String, ApiError> {
        match api.q.get(name).filter(|v| !v.is_empty()) {
            Some(v) => self.rev(v).await,
            None => Ok(self.refs.default_branch().ok_or_else(|| ApiError::no_commit("of the default branch (the repository is empty)"))?.commit.clone()),
        }
    }

    /// What `until` is compared with: `since` when given, else its first parent, else (a root
    /// commit) the empty tree, so a root commit shows every file added.
    async fn since_or_parent(&self, since: Option<&str>, until: &str) -> Result<String, ApiError> {
        if let Some(s) = since.filter(|s| !s.is_empty()) {
            return self.rev(s).await;
        }
        let c = self.reader.commit(until).await?.ok_or_else(|| ApiError::no_commit(until))?;
        match c.parents.first() {
            Some(p) => Ok(p.clone()),
            None => self.git.empty_tree().await.map_err(git_err),
        }
    }

    /// `fromRepo` may only name this repository until forks are served.
    fn check_from_repo(&self, api: &Api) -> Result<(), ApiError> {
        let Some(from) = api.q.get("fromRepo").filter(|v| !v.is_empty()) else { return Ok(()) };
        let this = format!("{}/{}", self.repo.owner, self.repo.slug);
        if from == self.repo.id.to_string() || from.eq_ignore_ascii_case(&this) {
            return Ok(());
        }
        Err(ApiError::invalid("fromRepo", format!("{from:?} is not this repository; comparing with another repository (a fork) is not served yet.")))
    }
}

/// One page of the files changed between `since` and `until`, with `fromHash` and `toHash`:
/// git reads only as far as the page (and one more, to know whether it is the last).
pub(super) async fn changes_page(git: &GitRepo, since: &str, until: &str, page: PageReq) -> Result<Value, ApiError> {
    let (all, more) = git.changes(since, until, page.start.saturating_add(page.limit)).await.map_err(git_err)?;
    let values: Vec<Value> = all.iter().skip(page.start).map(|c| serde_json::to_value(c).unwrap_or(Value::Null)).collect();
    let mut v = envelope(values, page, !more);
    v["fromHash"] = json!(since);
    v["toHash"] = json!(until);
    Ok(v)
}

/// The diff between `since` and `until` as Bitbucket's JSON, or git's text for
/// `Accept: text/plain`.
pub(super) async fn diff_response(headers: &HeaderMap, git: &GitRepo, since: &str, until: &str, opts: &DiffOptions) -> Result<Response, ApiError> {
    if super::pull_requests::wants_text(headers) {
        let text = git.raw_diff(since, until, opts).await.map_err(git_err)?;
        return Ok(super::pull_requests::text_response(text));
    }
    let diff = git.diff(since, until, opts).await.map_err(git_err)?;
    Ok(ok(StatusCode::OK, serde_json::to_value(&diff).map_err(|e| ApiError::Internal(e.to_string()))?))
}

type RepoPath = Path<(String, String)>;
type CommitPath = Path<(String, String, String)>;
type CommitFilePath = Path<(String, String, String, String)>;

/// `GET …/commits/{commitId}/changes?since=`: the files the commit changed (against `since`,
/// else its first parent).
pub(crate) async fn commit_changes(api: Api, Path((key, slug, id)): CommitPath) -> Result<Response, ApiError> {
    let page = api.q.page()?;
    let o = open(&api, &key, &slug).await?;
    let until = o.rev(&id).await?;
    let since = o.since_or_parent(api.q.get("since"), &until).await?;
    Ok(ok(StatusCode::OK, changes_page(&o.git, &since, &until, page).await?))
}

/// `GET …/changes?until=&since=`: `until` is required.
pub(crate) async fn changes(api: Api, Path((key, slug)): RepoPath) -> Result<Response, ApiError> {
    let page = api.q.page()?;
    let until_raw = api.q.required("until")?.to_owned();
    let o = open(&api, &key, &slug).await?;
    let until = o.rev(&until_raw).await?;
    let since = o.since_or_parent(api.q.get("since"), &until).await?;
    Ok(ok(StatusCode::OK, changes_page(&o.git, &since, &until, page).await?))
}

async fn commit_diff_of(api: Api, headers: HeaderMap, key: String, slug: String, id: String, path: Option<String>) -> Result<Response, ApiError> {
    let opts = super::pull_requests::diff_options(&api, path)?;
    let o = open(&api, &key, &slug).await?;
    let until = o.rev(&id).await?;
    let since = o.since_or_parent(api.q.get("since"), &until).await?;
    diff_response(&headers, &o.git, &since, &until, &opts).await
}

/// `GET …/commits/{commitId}/diff?since=&contextLines=&whitespace=&srcPath=`.
pub(crate) async fn commit_diff(api: Api, headers: HeaderMap, Path((key, slug, id)): CommitPath) -> Result<Response, ApiError> {
    commit_diff_of(api, headers, key, slug, id, None).await
}

/// `GET …/commits/{commitId}/diff/{path}`.
pub(crate) async fn commit_diff_path(api: Api, headers: HeaderMap, Path((key, slug, id, path)): CommitFilePath) -> Result<Response, ApiError> {
    commit_diff_of(api, headers, key, slug, id, Some(path)).await
}

async fn diff_of(api: Api, headers: HeaderMap, key: String, slug: String, path: Option<String>) -> Result<Response, ApiError> {
    let opts = super::pull_requests::diff_options(&api, path)?;
    let until_raw = api.q.required("until")?.to_owned();
    let o = open(&api, &key, &slug).await?;
    let until = o.rev(&until_raw).await?;
    let since = o.since_or_parent(api.q.get("since"), &until).await?;
    diff_response(&headers, &o.git, &since, &until, &opts).await
}

/// `GET …/diff?until=&since=` (every file).
pub(crate) async fn diff(api: Api, headers: HeaderMap, Path((key, slug)): RepoPath) -> Result<Response, ApiError> {
    diff_of(api, headers, key, slug, None).await
}

/// `GET …/diff/{path}?until=&since=`.
pub(crate) async fn diff_path(api: Api, headers: HeaderMap, Path((key, slug, path)): CommitPath) -> Result<Response, ApiError> {
    diff_of(api, headers, key, slug, Some(path)).await
}

/// `from` (required) and `to` (default: the default branch), resolved; and where `from` left
/// `to` (their merge base; `to` itself for unrelated histories), which the changes and the diff
/// start from, as a pull request from `from` into `to` would show them.
async fn compared(api: &Api, o: &Opened) -> Result<(String, String, String), ApiError> {
    o.check_from_repo(api)?;
    let from = o.rev(api.q.required("from")?).await?;
    let to = o.rev_or_default(api, "to").await?;
    let base = o.git.merge_base(&to, &from).await.map_err(git_err)?.unwrap_or_else(|| to.clone());
    Ok((from, to, base))
}

/// `GET …/compare/commits?from=&to=`: the commits `from` has and `to` has not, newest first.
pub(crate) async fn compare_commits(api: Api, Path((key, slug)): RepoPath) -> Result<Response, ApiError> {
    let page = api.q.page()?;
    let o = open(&api, &key, &slug).await?;
    let (from, to, _) = compared(&api, &o).await?;
    let q = crate::repo_read::LogQuery { until: &from, since: Some(&to), skip: page.start, max: page.limit + 1, ..Default::default() };
    let list = o.reader.log(&q).await?.ok_or_else(|| ApiError::Internal("git log failed".into()))?;
    let last = list.len() <= page.limit;
    let values = list.iter().take(page.limit).map(super::git::commit_json).collect();
    Ok(ok(StatusCode::OK, envelope(values, page, last)))
}

/// `GET …/compare/changes?from=&to=`: the files `from` changes since it left `to`.
pub(crate) async fn compare_changes(api: Api, Path((key, slug)): RepoPath) -> Result<Response, ApiError> {
    let page = api.q.page()?;
    let o = open(&api, &key, &slug).await?;
    let (from, _, base) = compared(&api, &o).await?;
    Ok(ok(StatusCode::OK, changes_page(&o.git, &base, &from, page).await?))
}

async fn compare_diff_of(api: Api, headers: HeaderMap, key: String, slug: String, path: Option<String>) -> Result<Response, ApiError> {
    let opts = super::pull_requests::diff_options(&api, path)?;
    let o = open(&api, &key, &slug).await?;
    let (from, _, base) = compared(&api, &o).await?;
    diff_response(&headers, &o.git, &base, &from, &opts).await
}

/// `GET …/compare/diff?from=&to=`.
pub(crate) async fn compare_diff(api: Api, headers: HeaderMap, Path((key, slug)): RepoPath) -> Result<Response, ApiError> {
    compare_diff_of(api, headers, key, slug, None).await
}

/// `GET …/compare/diff/{path}?from=&to=`.
pub(crate) async fn compare_diff_path(api: Api, headers: HeaderMap, Path((key, slug, path)): CommitPath) -> Result<Response, ApiError> {
    compare_diff_of(api, headers, key, slug, Some(path)).await
}

/// `GET …/commits/{commitId}/pull-requests`: the pull requests (any state) whose commits include
/// this one, that is, whose source reaches it and whose target did not when it was last seen
/// (for a merged one: just before the merge), newest first. Looks through the newest
/// [`PR_SCAN_LIMIT`] pull requests of the repository.
pub(crate) async fn commit_pull_requests(api: Api, Path((key, slug, id)): CommitPath) -> Result<Response, ApiError> {
    let page = api.q.page()?;
    let o = open(&api, &key, &slug).await?;
    let commit = o.rev(&id).await?;
    let repo_id = o.repo.id;
    let candidates = api.clone().blocking(move |api| api.store().prs(&PrQuery { repo_id: Some(repo_id), limit: PR_SCAN_LIMIT, ..PrQuery::default() })).await?.0;
    let mut hits = Vec::new();
    for pr in candidates {
        // A pull request whose commits are gone (its source rewritten and collected) has none.
        let contains = o.git.is_ancestor(&commit, &pr.from_hash).await.unwrap_or(false) && !o.git.is_ancestor(&commit, &pr.to_hash).await.unwrap_or(true);
        if contains {
            hits.push(pr);
        }
    }
    let last = page.start.saturating_add(page.limit) >= hits.len();
    let mut values = Vec::new();
    for pr in hits.into_iter().skip(page.start).take(page.limit) {
        values.push(super::pull_requests::render(&api, o.repo.clone(), o.project.clone(), pr).await?);
    }
    Ok(ok(StatusCode::OK, envelope(values, page, last)))
}

/// The routes, `repo` making a path below `…/repos/{slug}`.
pub(super) fn routes(repo: &dyn Fn(&str) -> String) -> axum::Router<crate::AppState> {
    use axum::routing::get;
    axum::Router::new()
        .route(&repo("/commits/{id}/changes"), get(commit_changes))
        .route(&repo("/commits/{id}/diff"), get(commit_diff))
        .route(&repo("/commits/{id}/diff/{*path}"), get(commit_diff_path))
        .route(&repo("/commits/{id}/pull-requests"), get(commit_pull_requests))
        .route(&repo("/changes"), get(changes))
        .route(&repo("/diff"), get(diff))
        .route(&repo("/diff/{*path}"), get(diff_path))
        .route(&repo("/compare/commits"), get(compare_commits))
        .route(&repo("/compare/changes"), get(compare_changes))
        .route(&repo("/compare/diff"), get(compare_diff))
        .route(&repo("/compare/diff/{*path}"), get(compare_diff_path))
}
