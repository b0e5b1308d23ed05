//! Pull requests over REST, as Bitbucket Server 8 serves them under
//! `…/projects/{key}/repos/{slug}/pull-requests`, plus the repository's pull-request settings
//! and the signed-in user's dashboard and inbox. Parsing and rendering only: every rule is in
//! [`crate::pull_requests`].
//!
//! Clients differ in where they put a `version` (stashy in the body, with `-1` for "any";
//! atlassian-python-api in the query) and in how they spell a review status (`approved`,
//! `NEEDS_WORK`): both are accepted.

use std::collections::HashMap;

use axum::extract::Path;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use trove_store::{
    Activity, Comment, CommentChange, Participant, ParticipantFilter, Permission, PrQuery, PrState, ProjectInfo, PullRequest, Repo, ReviewStatus, Role, User,
    UserName,
};

use super::{Api, ApiError, PageReq, RawFile, envelope, no_content, ok, parse_body, parse_optional_body};
use crate::pr_git::{DiffOptions, GitRepo, Strategy};
use crate::pull_requests::{self as prs, Actor, Anchor, MergeAsk, NewCommentAsk, NewPr, PrEdit, PrError, PrSettings, display_ref};

impl From<PrError> for ApiError {
    fn from(e: PrError) -> Self {
        match e {
            PrError::NotFound(n) => ApiError::NotFound {
                exception: "com.atlassian.bitbucket.pull.NoSuchPullRequestException",
                message: format!("Pull request {n} does not exist in this repository."),
            },
            PrError::Invalid { context, message } => ApiError::invalid(context, message),
            PrError::Conflict { exception, message } => ApiError::Conflict { exception, message },
            e @ PrError::Stale { .. } => ApiError::Conflict { exception: "com.atlassian.bitbucket.pull.PullRequestOutOfDateException", message: e.to_string() },
            e @ PrError::Vetoed(_) => ApiError::Conflict { exception: "com.atlassian.bitbucket.pull.PullRequestMergeVetoedException", message: e.to_string() },
            PrError::Forbidden(what) => ApiError::forbidden(&what),
            PrError::Store(e) => e.into(),
            PrError::Git(e) => ApiError::Internal(e.to_string()),
        }
    }
}

type PrPath = Path<(String, String, String)>;

/// Most lines a diff shows before it is cut and marked `truncated`. Default 10,000, as
/// Bitbucket's `page.max.diff.lines`; `Accept: text/plain` gives the whole diff.
const MAX_DIFF_LINES: usize = 10_000;
/// Longest line a diff shows, in characters; longer ones are cut and marked `truncated`.
const MAX_LINE_LEN: usize = 5_000;

/// A pull request id from the URL: a positive whole number.
fn number(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| ApiError::NotFound {
        exception: "com.atlassian.bitbucket.pull.NoSuchPullRequestException",
        message: format!("Pull request {raw:?} does not exist in this repository."),
    })
}

/// A version from the query (`?version=`) or the body; a negative one (stashy's default `-1`)
/// means "whatever it is now".
pub(crate) fn version_of(api: &Api, body: Option<&Value>) -> Result<Option<i64>, ApiError> {
    let from_body = body.and_then(|b| b.get("version")).and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok())));
    let from_query = match api.q.get("version").filter(|v| !v.is_empty()) {
        Some(v) => Some(v.parse::<i64>().map_err(|_| ApiError::invalid("version", format!("The version must be a whole number, not {v:?}.")))?),
        None => None,
    };
    Ok(from_query.or(from_body).filter(|v| *v >= 0))
}

/// Users by id, read once per request (and, for webhook events, before the change's
/// transaction: `fetch` first, then `cached` reads nothing).
#[derive(Default)]
pub(crate) struct Users(HashMap<i64, Option<User>>);

impl Users {
    pub(crate) fn get(&mut self, api: &Api, id: i64) -> Result<Value, ApiError> {
        self.fetch(api, id)?;
        Ok(self.cached(api, id))
    }

    pub(crate) fn fetch(&mut self, api: &Api, id: i64) -> Result<(), ApiError> {
        if let std::collections::hash_map::Entry::Vacant(e) = self.0.entry(id) {
            e.insert(api.store().user_or_former(id)?);
        }
        Ok(())
    }

    /// The user's JSON from what was fetched; one never fetched shows as a deleted user.
    pub(crate) fn cached(&self, api: &Api, id: i64) -> Value {
        match self.0.get(&id) {
            Some(Some(u)) => api.user_json(u),
            _ => {
                json!({"name": format!("deleted-user-{id}"), "id": id, "displayName": "Deleted user", "active": false, "slug": format!("deleted-user-{id}"), "type": "NORMAL"})
            }
        }
    }
}

/// A participant for a webhook payload, from fetched users only.
pub(crate) fn participant_json_for_event(api: &Api, users: &mut Users, p: &Participant) -> Value {
    let mut v =
        json!({"user": users.cached(api, p.user_id), "role": p.role.as_str(), "approved": p.status == ReviewStatus::Approved, "status": p.status.as_str()});
    if let Some(c) = &p.last_reviewed_commit {
        v["lastReviewedCommit"] = json!(c);
    }
    v
}

/// The pull request for a webhook payload: the REST shape, from the repository's JSON and
/// fetched users only (it runs inside the change's transaction).
pub(crate) fn pr_json_for_event(api: &Api, users: &mut Users, repo: &Repo, repo_v: &Value, pr: &PullRequest) -> Value {
    let mut only_cached = |api: &Api, users: &mut Users, p: &Participant| Ok::<_, ApiError>(participant_json_for_event(api, users, p));
    pr_json_with(api, users, repo, repo_v, pr, None, &mut only_cached).unwrap_or(Value::Null)
}

/// A comment for a webhook payload (no replies), from fetched users only.
pub(crate) fn comment_json_for_event(api: &Api, users: &mut Users, pr: &PullRequest, c: &Comment) -> Value {
    let mut v = json!({
        "id": c.id,
        "version": c.version,
        "text": c.text,
        "author": users.cached(api, c.author_id),
        "createdDate": c.created_at,
        "updatedDate": c.updated_at,
        "severity": c.severity,
        "state": c.state,
        "comments": [],
        "tasks": [],
        "properties": {"repositoryId": pr.repo_id},
    });
    if let Some(a) = anchor_json(c) {
        v["anchor"] = a;
    }
    v
}

fn participant_json(api: &Api, users: &mut Users, p: &Participant) -> Result<Value, ApiError> {
    let mut v = json!({
        "user": users.get(api, p.user_id)?,
        "role": p.role.as_str(),
        "approved": p.status == ReviewStatus::Approved,
        "status": p.status.as_str(),
    });
    if let Some(c) = &p.last_reviewed_commit {
        v["lastReviewedCommit"] = json!(c);
    }
    Ok(v)
}

/// The web page of a pull request.
fn pr_href(api: &Api, repo: &Repo, number: i64) -> String {
    let owner = match &repo.owner {
        trove_store::Owner::Project(k) => format!("projects/{k}"),
        trove_store::Owner::User(u) => format!("users/{u}"),
    };
    format!("{}/{owner}/repos/{}/pull-requests/{number}", api.base(), repo.slug)
}

/// Bitbucket's pull-request JSON.
fn pr_json(api: &Api, users: &mut Users, repo: &Repo, project: &ProjectInfo, pr: &PullRequest, comments: Option<i64>) -> Result<Value, ApiError> {
    let repo_v = api.repo_json(repo, project)?;
    pr_json_with(api, users, repo, &repo_v, pr, comments, &mut participant_json)
}

type ParticipantRender<'a> = dyn FnMut(&Api, &mut Users, &Participant) -> Result<Value, ApiError> + 'a;

fn pr_json_with(
    api: &Api,
    users: &mut Users,
    repo: &Repo,
    repo_v: &Value,
    pr: &PullRequest,
    comments: Option<i64>,
    participant_json: &mut ParticipantRender<'_>,
) -> Result<Value, ApiError> {
    let ref_v = |full: &str, hash: &str| json!({"id": full, "displayId": display_ref(full), "type": "BRANCH", "latestCommit": hash, "repository": repo_v});
    let mut author = Value::Null;
    let (mut reviewers, mut participants) = (Vec::new(), Vec::new());
    for p in &pr.participants {
        let v = participant_json(api, users, p)?;
        match p.role {
            Role::Author => author = v,
            Role::Reviewer => reviewers.push(v),
            Role::Participant => participants.push(v),
        }
    }
    let mut v = json!({
        "id": pr.number,
        "version": pr.version,
        "title": pr.title,
        "state": pr.state.as_str(),
        "open": pr.state == PrState::Open,
        "closed": pr.state != PrState::Open,
        "locked": false,
        "draft": false,
        "createdDate": pr.created_at,
        "updatedDate": pr.updated_at,
        "fromRef": ref_v(&pr.from_ref, &pr.from_hash),
        "toRef": ref_v(&pr.to_ref, &pr.to_hash),
        "author": author,
        "reviewers": reviewers,
        "participants": participants,
        "links": {"self": [{"href": pr_href(api, repo, pr.number)}]},
    });
    if let Some(d) = &pr.description {
        v["description"] = json!(d);
    }
    if let Some(c) = pr.closed_at {
        v["closedDate"] = json!(c);
    }
    let mut props = serde_json::Map::new();
    if let Some(c) = &pr.merge_commit {
        props.insert("mergeCommit".into(), json!({"id": c, "displayId": &c[..c.len().min(11)]}));
    }
    if let Some(o) = &pr.merge_outcome {
        props.insert("mergeResult".into(), json!({"outcome": o, "current": pr.state == PrState::Open}));
    }
    if let Some(n) = comments {
        props.insert("commentCount".into(), json!(n));
    }
    v["properties"] = Value::Object(props);
    Ok(v)
}

/// The repository for a pull-request call, with the caller's permission on it.
async fn repo_for(api: &Api, key: &str, slug: &str, need: Permission, what: &'static str) -> Result<(Repo, ProjectInfo, Permission), ApiError> {
    let (key, slug) = (key.to_owned(), slug.to_owned());
    api.clone()
        .blocking(move |api| {
            let (repo, info) = api.repo(&key, &slug, need, what)?;
            let level = api.store().permission(api.who.as_ref(), &repo)?.unwrap_or(need);
            Ok((repo, info, level))
        })
        .await
}

fn actor<'a>(api: &'a Api, level: Permission) -> Result<Actor<'a>, ApiError> {
    Ok(Actor { who: api.require_login()?, level })
}

/// Renders one pull request on the blocking pool.
pub(super) async fn render(api: &Api, repo: Repo, project: ProjectInfo, pr: PullRequest) -> Result<Value, ApiError> {
    api.clone().blocking(move |api| pr_json(api, &mut Users::default(), &repo, &project, &pr, None)).await
}

// ---- list, create, get, update, delete ----

/// `GET …/pull-requests?state=&direction=&at=&order=&username.N=&role.N=&approved.N=`.
pub(crate) async fn list(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    let page = api.q.page()?;
    let (repo, project, _) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    api.clone()
        .blocking(move |api| {
            let mut q =
                PrQuery { repo_id: Some(repo.id), states: states(api.q.get("state"), "state")?, start: page.start, limit: page.limit, ..PrQuery::default() };
            let at = api.q.get("at").filter(|a| !a.is_empty()).map(prs::full_branch);
            match api.q.get("direction").map(str::to_ascii_uppercase).as_deref() {
                None | Some("INCOMING") => q.to_ref = at,
                Some("OUTGOING") => q.from_ref = at,
                Some(d) => return Err(ApiError::invalid("direction", format!("{d:?} is not a direction; use INCOMING or OUTGOING."))),
            }
            q.oldest_first = order(api)?;
            q.participants = participant_filters(api)?;
            // `filterText` matches title and description: read every candidate, then cut the page.
            let filter = api.q.get("filterText").filter(|f| !f.is_empty()).map(str::to_lowercase);
            let (list, more) = match &filter {
                None => api.store().prs(&q)?,
                Some(f) => {
                    let all = api.store().prs(&PrQuery { start: 0, limit: usize::MAX / 2, ..q.clone() })?.0;
                    let hits: Vec<PullRequest> = all
                        .into_iter()
                        .filter(|p| p.title.to_lowercase().contains(f) || p.description.as_deref().unwrap_or("").to_lowercase().contains(f))
                        .collect();
                    let more = hits.len() > page.start.saturating_add(page.limit);
                    (hits.into_iter().skip(page.start).take(page.limit).collect(), more)
                }
            };
            let counts: HashMap<i64, i64> = api.store().comment_counts(&list.iter().map(|p| p.id).collect::<Vec<_>>())?.into_iter().collect();
            let mut users = Users::default();
            let values = list
                .iter()
                .map(|p| pr_json(api, &mut users, &repo, &project, p, Some(counts.get(&p.id).copied().unwrap_or(0))))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ok(StatusCode::OK, envelope(values, page, !more)))
        })
        .await
}

fn states(raw: Option<&str>, context: &str) -> Result<Vec<PrState>, ApiError> {
    match raw.map(str::to_ascii_uppercase).as_deref() {
        None | Some("") | Some("OPEN") => Ok(vec![PrState::Open]),
        Some("ALL") => Ok(Vec::new()),
        Some(s) => PrState::parse(s)
            .map(|s| vec![s])
            .ok_or_else(|| ApiError::invalid(context, format!("{s:?} is not a pull request state; use OPEN, DECLINED, MERGED or ALL."))),
    }
}

/// `order=NEWEST|OLDEST` (any case): whether oldest first.
fn order(api: &Api) -> Result<bool, ApiError> {
    match api.q.get("order").map(str::to_ascii_uppercase).as_deref() {
        None | Some("") | Some("NEWEST") => Ok(false),
        Some("OLDEST") => Ok(true),
        Some(o) => Err(ApiError::invalid("order", format!("{o:?} is not an order; use NEWEST or OLDEST."))),
    }
}

fn role(raw: &str, context: &str) -> Result<Role, ApiError> {
    Role::parse(&raw.to_ascii_uppercase()).ok_or_else(|| ApiError::invalid(context, format!("{raw:?} is not a role; use AUTHOR, REVIEWER or PARTICIPANT.")))
}

fn status(raw: &str, context: &str) -> Result<ReviewStatus, ApiError> {
    ReviewStatus::parse(&raw.to_ascii_uppercase().replace(' ', "_"))
        .ok_or_else(|| ApiError::invalid(context, format!("{raw:?} is not a review status; use APPROVED, UNAPPROVED or NEEDS_WORK.")))
}

/// `username.N`, `role.N`, `approved.N` (N from 1 to 10).
fn participant_filters(api: &Api) -> Result<Vec<ParticipantFilter>, ApiError> {
    let mut out = Vec::new();
    for n in 1..=10 {
        let Some(name) = api.q.get(&format!("username.{n}")).filter(|s| !s.is_empty()) else { continue };
        let user = UserName::parse(name).ok().map(|u| api.store().user(&u)).transpose()?.flatten();
        // An unknown user takes part in nothing: the filter matches no pull request.
        let user_id = user.map_or(-1, |u| u.id);
        let role = api.q.get(&format!("role.{n}")).filter(|s| !s.is_empty()).map(|r| role(r, &format!("role.{n}"))).transpose()?;
        let statuses = match api.q.bool(&format!("approved.{n}"))? {
            Some(true) => vec![ReviewStatus::Approved],
            Some(false) => vec![ReviewStatus::Unapproved, ReviewStatus::NeedsWork],
            None => Vec::new(),
        };
        out.push(ParticipantFilter { user_id, role, statuses });
    }
    Ok(out)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RefBody {
    id: Option<String>,
    repository: Option<RepoRef>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RepoRef {
    slug: Option<String>,
    project: Option<ProjectRef>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ProjectRef {
    key: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct UserRef {
    name: Option<String>,
    slug: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ReviewerBody {
    user: Option<UserRef>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct CreateBody {
    title: Option<String>,
    description: Option<String>,
    from_ref: Option<RefBody>,
    to_ref: Option<RefBody>,
    reviewers: Option<Vec<ReviewerBody>>,
}

fn reviewer_names(list: Option<Vec<ReviewerBody>>) -> Result<Option<Vec<String>>, ApiError> {
    list.map(|l| {
        l.into_iter()
            .map(|r| {
                r.user
                    .and_then(|u| u.name.or(u.slug))
                    .ok_or_else(|| ApiError::invalid("reviewers", "Each reviewer needs a user with a name: {\"user\": {\"name\": \"bob\"}}."))
            })
            .collect()
    })
    .transpose()
}

/// A ref in a request must name this repository (forks are not served yet).
fn same_repo(r: &RefBody, repo: &Repo, context: &str) -> Result<String, ApiError> {
    let id =
        r.id.clone()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| ApiError::invalid(context, format!("{context}.id (a branch, like refs/heads/main) is required.")))?;
    if let Some(rr) = &r.repository {
        let slug_ok = rr.slug.as_deref().is_none_or(|s| s == repo.slug.as_str());
        let key_ok = rr.project.as_ref().and_then(|p| p.key.as_deref()).is_none_or(|k| k.eq_ignore_ascii_case(&repo.owner.to_string()));
        if !slug_ok || !key_ok {
            return Err(ApiError::invalid(
                context,
                "Pull requests between different repositories (forks) are not supported yet; both refs must be in this repository.",
            ));
        }
    }
    Ok(id)
}

/// `POST …/pull-requests` → 201.
pub(crate) async fn create(api: Api, Path((key, slug)): Path<(String, String)>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let b: CreateBody = parse_body(body)?;
    let (repo, project, level) = repo_for(&api, &key, &slug, Permission::Read, "create pull requests in this repository").await?;
    let from = same_repo(b.from_ref.as_ref().ok_or_else(|| ApiError::invalid("fromRef", "fromRef (the source branch) is required."))?, &repo, "fromRef")?;
    let to = same_repo(b.to_ref.as_ref().ok_or_else(|| ApiError::invalid("toRef", "toRef (the target branch) is required."))?, &repo, "toRef")?;
    let new = NewPr {
        title: b.title.unwrap_or_default(),
        description: b.description,
        from_ref: from,
        to_ref: to,
        reviewers: reviewer_names(b.reviewers)?.unwrap_or_default(),
    };
    let pr = prs::create(&api.state, &repo, &actor(&api, level)?, new).await?;
    Ok(ok(StatusCode::CREATED, render(&api, repo, project, pr).await?))
}

/// `GET …/pull-requests/{id}`; `GET …/pull-requests/{id}.diff` is the raw diff.
pub(crate) async fn get(api: Api, Path((key, slug, id)): PrPath) -> Result<Response, ApiError> {
    if let Some(n) = id.strip_suffix(".diff").or_else(|| id.strip_suffix(".patch")) {
        let mut text = HeaderMap::new();
        text.insert(header::ACCEPT, HeaderValue::from_static("text/plain"));
        return pr_diff(api, text, key, slug, n.to_owned(), None).await;
    }
    let n = number(&id)?;
    let (repo, project, _) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    let pr = prs::get(&api.state, &repo, n).await?;
    Ok(ok(StatusCode::OK, render(&api, repo, project, pr).await?))
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct UpdateBody {
    version: Option<Value>,
    title: Option<String>,
    description: Option<Value>,
    reviewers: Option<Vec<ReviewerBody>>,
    to_ref: Option<RefBody>,
    author: Option<Value>,
    participants: Option<Value>,
}

/// `PUT …/pull-requests/{id}` with `version`: title, description, reviewers, target.
pub(crate) async fn update(api: Api, Path((key, slug, id)): PrPath, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let n = number(&id)?;
    let raw: Value = parse_body(body)?;
    let b: UpdateBody =
        serde_json::from_value(raw.clone()).map_err(|e| ApiError::Malformed(format!("The request body is not valid JSON for this resource: {e}.")))?;
    if b.author.is_some() || b.participants.is_some() {
        return Err(ApiError::invalid("participants", "The author and participants cannot be changed this way; set reviewers, or use …/participants."));
    }
    let version = version_of(&api, Some(&raw))?;
    if b.version.is_none() && api.q.get("version").is_none() {
        return Err(ApiError::invalid("version", "The pull request's current version is required, so that changes made meanwhile are not overwritten."));
    }
    let (repo, project, level) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    let description = match b.description {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s)),
        Some(_) => return Err(ApiError::invalid("description", "The description must be a string.")),
    };
    let to_ref = b.to_ref.as_ref().map(|r| same_repo(r, &repo, "toRef")).transpose()?;
    let edit = PrEdit { version, title: b.title, description, reviewers: reviewer_names(b.reviewers)?, to_ref };
    let pr = prs::update(&api.state, &repo, &actor(&api, level)?, n, edit).await?;
    Ok(ok(StatusCode::OK, render(&api, repo, project, pr).await?))
}

/// `DELETE …/pull-requests/{id}` with `{version}` (body or query) → 204.
pub(crate) async fn delete(api: Api, Path((key, slug, id)): PrPath, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let n = number(&id)?;
    let raw: Value = parse_optional_body::<Option<Value>>(body)?.unwrap_or(Value::Null);
    let version = version_of(&api, Some(&raw))?;
    let (repo, _, level) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    prs::delete(&api.state, &repo, &actor(&api, level)?, n, version).await?;
    Ok(no_content())
}

/// The body of a state change, if any, as JSON (an empty body is none).
pub(crate) fn optional_json(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    Ok(parse_optional_body::<Option<Value>>(body)?.unwrap_or(Value::Null))
}

/// `POST …/decline` → 200 with the pull request.
pub(crate) async fn decline(api: Api, Path((key, slug, id)): PrPath, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let n = number(&id)?;
    let raw = optional_json(body)?;
    let version = version_of(&api, Some(&raw))?;
    let (repo, project, level) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    let pr = prs::decline(&api.state, &repo, &actor(&api, level)?, n, version).await?;
    Ok(ok(StatusCode::OK, render(&api, repo, project, pr).await?))
}

/// `POST …/reopen` → 200 with the pull request.
pub(crate) async fn reopen(api: Api, Path((key, slug, id)): PrPath, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let n = number(&id)?;
    let raw = optional_json(body)?;
    let version = version_of(&api, Some(&raw))?;
    let (repo, project, level) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    let pr = prs::reopen(&api.state, &repo, &actor(&api, level)?, n, version).await?;
    Ok(ok(StatusCode::OK, render(&api, repo, project, pr).await?))
}

// ---- merge ----

/// `GET …/merge`: `{canMerge, conflicted, outcome, vetoes}`.
pub(crate) async fn merge_status(api: Api, Path((key, slug, id)): PrPath) -> Result<Response, ApiError> {
    let n = number(&id)?;
    let (repo, _, _) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    let (_, s) = prs::merge_status(&api.state, &repo, n, api.who.as_ref()).await?;
    Ok(ok(StatusCode::OK, json!({"canMerge": s.can_merge, "conflicted": s.conflicted, "outcome": s.outcome, "vetoes": s.vetoes})))
}

/// `POST …/merge?version=` with an optional `{version, message, strategyId, autoSubject}` (or
/// Bitbucket Cloud's body from atlassian-python-api, of which only `message` is used).
pub(crate) async fn merge(api: Api, Path((key, slug, id)): PrPath, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let n = number(&id)?;
    let raw = optional_json(body)?;
    let version = version_of(&api, Some(&raw))?;
    let strategy =
        api.q.get("strategyId").map(str::to_owned).or_else(|| raw.get("strategyId").and_then(|s| s.as_str()).map(str::to_owned)).filter(|s| !s.is_empty());
    let message = raw.get("message").and_then(|m| m.as_str()).map(str::to_owned);
    let delete_source = raw.get("deleteSourceRef").or_else(|| raw.get("close_source_branch")).and_then(|v| v.as_bool()).unwrap_or(false);
    let (repo, project, level) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    let ask = MergeAsk { version, strategy, message, delete_source };
    let pr = prs::merge(&api.state, &repo, &actor(&api, level)?, n, ask).await?;
    Ok(ok(StatusCode::OK, render(&api, repo, project, pr).await?))
}

// ---- participants ----

#[derive(Deserialize, Default)]
#[serde(default)]
struct StatusBody {
    status: Option<String>,
    approved: Option<bool>,
    user: Option<UserRef>,
    role: Option<String>,
    version: Option<Value>,
}

/// `GET …/participants`.
pub(crate) async fn participants(api: Api, Path((key, slug, id)): PrPath) -> Result<Response, ApiError> {
    let n = number(&id)?;
    let page = api.q.page()?;
    let (repo, _, _) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    let pr = prs::get(&api.state, &repo, n).await?;
    api.blocking(move |api| {
        let mut users = Users::default();
        let all = pr.participants.iter().map(|p| participant_json(api, &mut users, p)).collect::<Result<Vec<_>, _>>()?;
        Ok(ok(StatusCode::OK, super::paged(all, page)))
    })
    .await
}

/// `PUT …/participants/{userSlug}` `{status}` (or stashy's lower-case `{approved, status}`):
/// the caller's own review status.
pub(crate) async fn set_status(
    api: Api,
    Path((key, slug, id, user)): Path<(String, String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let n = number(&id)?;
    let raw: Value = parse_body(body)?;
    let b: StatusBody =
        serde_json::from_value(raw.clone()).map_err(|e| ApiError::Malformed(format!("The request body is not valid JSON for this resource: {e}.")))?;
    let st = match (&b.status, b.approved) {
        (Some(s), _) => status(s, "status")?,
        (None, Some(true)) => ReviewStatus::Approved,
        (None, Some(false)) => ReviewStatus::Unapproved,
        (None, None) => return Err(ApiError::invalid("status", "The status (APPROVED, UNAPPROVED or NEEDS_WORK) is required.")),
    };
    let version = version_of(&api, Some(&raw))?;
    let (repo, _, level) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    let who = api.require_login()?;
    if !user.trim_end_matches('/').eq_ignore_ascii_case(who.user.name.as_str()) {
        return Err(ApiError::invalid("userSlug", format!("You can only set your own review status; the path names {user:?}, you are {}.", who.user.name)));
    }
    let (_, p) = prs::set_status(&api.state, &repo, &actor(&api, level)?, n, st, version).await?;
    api.blocking(move |api| Ok(ok(StatusCode::OK, participant_json(api, &mut Users::default(), &p)?))).await
}

/// `POST …/participants` `{user:{name}, role:"REVIEWER"}`.
pub(crate) async fn add_participant(api: Api, Path((key, slug, id)): PrPath, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let n = number(&id)?;
    let b: StatusBody = parse_body(body)?;
    let r = b.role.as_deref().map(|r| role(r, "role")).transpose()?.unwrap_or(Role::Reviewer);
    if r != Role::Reviewer {
        return Err(ApiError::invalid("role", "Only reviewers can be added; participants join by commenting or reviewing, and the author is fixed."));
    }
    let name =
        b.user.and_then(|u| u.name.or(u.slug)).ok_or_else(|| ApiError::invalid("user", "The user to add is required: {\"user\": {\"name\": \"bob\"}}."))?;
    let (repo, _, level) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    let (_, p) = prs::add_reviewer(&api.state, &repo, &actor(&api, level)?, n, &name).await?;
    api.blocking(move |api| Ok(ok(StatusCode::OK, participant_json(api, &mut Users::default(), &p)?))).await
}

/// `DELETE …/participants/{userSlug}` → 204: a reviewer becomes a participant.
pub(crate) async fn remove_participant(api: Api, Path((key, slug, id, user)): Path<(String, String, String, String)>) -> Result<Response, ApiError> {
    let n = number(&id)?;
    let (repo, _, level) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    let name = user.trim_end_matches('/').to_owned();
    let u = api.clone().blocking(move |api| Ok::<_, ApiError>(UserName::parse(&name).ok().map(|n| api.store().user(&n)).transpose()?.flatten())).await?;
    let u = u.ok_or_else(|| ApiError::no_user(&user))?;
    prs::remove_reviewer(&api.state, &repo, &actor(&api, level)?, n, &u).await?;
    Ok(no_content())
}

/// `POST`/`DELETE …/approve` (deprecated in Bitbucket 4.2, still served).
pub(crate) async fn approve(api: Api, method: http::Method, Path((key, slug, id)): PrPath) -> Result<Response, ApiError> {
    let n = number(&id)?;
    let st = if method == http::Method::DELETE { ReviewStatus::Unapproved } else { ReviewStatus::Approved };
    let (repo, _, level) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    let version = version_of(&api, None)?;
    let (_, p) = prs::set_status(&api.state, &repo, &actor(&api, level)?, n, st, version).await?;
    api.blocking(move |api| Ok(ok(StatusCode::OK, participant_json(api, &mut Users::default(), &p)?))).await
}

/// `POST`/`DELETE …/watch` → 204.
pub(crate) async fn watch(api: Api, method: http::Method, Path((key, slug, id)): PrPath) -> Result<Response, ApiError> {
    let n = number(&id)?;
    let (repo, _, _) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    let pr = prs::get(&api.state, &repo, n).await?;
    let user = api.require_login()?.user.id;
    let on = method != http::Method::DELETE;
    api.blocking(move |api| api.store().set_watch(pr.id, user, on).map_err(ApiError::from)).await?;
    Ok(no_content())
}

// ---- activities, commits, changes, diff ----

fn short(id: &str) -> &str {
    &id[..id.len().min(11)]
}

/// One activity as Bitbucket shows it.
fn activity_json(api: &Api, users: &mut Users, pr: &PullRequest, comments: &HashMap<i64, Comment>, all: &[Comment], a: &Activity) -> Result<Value, ApiError> {
    let detail: Value = serde_json::from_str(&a.detail).unwrap_or(Value::Null);
    let mut v = json!({"id": a.id, "createdDate": a.created_at, "user": users.get(api, a.user_id)?, "action": a.action});
    match a.action.as_str() {
        "APPROVED" | "UNAPPROVED" | "REVIEWED" => {
            let uid = detail["participant"].as_i64().unwrap_or(a.user_id);
            let role = pr.participant(uid).map_or(Role::Participant, |p| p.role);
            let st = detail["status"].as_str().and_then(ReviewStatus::parse).unwrap_or(ReviewStatus::Unapproved);
            v["participant"] = participant_json(api, users, &Participant { user_id: uid, role, status: st, last_reviewed_commit: None })?;
        }
        "MERGED" => {
            if let Some(c) = detail["commit"].as_str() {
                v["commit"] = json!({"id": c, "displayId": short(c)});
            }
        }
        "RESCOPED" => {
            for k in ["fromHash", "previousFromHash", "toHash", "previousToHash"] {
                v[k] = detail[k].clone();
            }
            for k in ["added", "removed"] {
                let commits: Vec<Value> =
                    detail[k]["commits"].as_array().into_iter().flatten().filter_map(|c| c.as_str()).map(|c| json!({"id": c, "displayId": short(c)})).collect();
                v[k] = json!({"commits": commits, "total": detail[k]["total"].as_i64().unwrap_or(0)});
            }
        }
        "UPDATED" => {
            for k in ["addedReviewers", "removedReviewers"] {
                let ids: Vec<i64> = detail[k].as_array().into_iter().flatten().filter_map(|x| x.as_i64()).collect();
                v[k] = Value::Array(ids.into_iter().map(|id| users.get(api, id)).collect::<Result<_, _>>()?);
            }
            for k in ["previousTitle", "previousDescription", "previousTarget"] {
                if let Some(x) = detail.get(k) {
                    v[k] = x.clone();
                }
            }
        }
        "COMMENTED" => {
            v["commentAction"] = detail["commentAction"].clone();
            let comment = a.comment_id.and_then(|id| comments.get(&id));
            match comment {
                Some(c) => {
                    v["comment"] = comment_json(api, users, pr, all, c)?;
                    if let Some(anchor) = anchor_json(c) {
                        v["commentAnchor"] = anchor;
                    }
                }
                None => {
                    v["comment"] = json!({"id": a.comment_id, "text": detail["text"], "author": users.get(api, detail["author"].as_i64().unwrap_or(a.user_id))?, "deleted": true});
                }
            }
        }
        _ => {}
    }
    Ok(v)
}

/// `GET …/activities?fromId=&fromType=`: newest first.
pub(crate) async fn activities(api: Api, Path((key, slug, id)): PrPath) -> Result<Response, ApiError> {
    let n = number(&id)?;
    let page = api.q.page()?;
    let (repo, _, _) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    let pr = prs::get(&api.state, &repo, n).await?;
    api.blocking(move |api| {
        let mut acts = api.store().activities(pr.id)?;
        let all = api.store().comments(pr.id)?;
        let by_id: HashMap<i64, Comment> = all.iter().map(|c| (c.id, c.clone())).collect();
        if let Some(from) = api.q.get("fromId").and_then(|f| f.parse::<i64>().ok()) {
            let comment = api.q.get("fromType").is_some_and(|t| t.eq_ignore_ascii_case("COMMENT"));
            if let Some(i) = acts.iter().position(|a| if comment { a.comment_id == Some(from) } else { a.id == from }) {
                acts.drain(..i);
            }
        }
        // Edits are not activities of their own in Bitbucket's log; only what was added.
        acts.retain(|a| !(a.action == "COMMENTED" && a.detail.contains("\"EDITED\"")));
        let total = acts.len();
        let mut users = Users::default();
        let values =
            acts.iter().skip(page.start).take(page.limit).map(|a| activity_json(api, &mut users, &pr, &by_id, &all, a)).collect::<Result<Vec<_>, _>>()?;
        Ok(ok(StatusCode::OK, envelope(values, page, page.start.saturating_add(page.limit) >= total)))
    })
    .await
}

/// The effective diff's two ends: where the source left the target, and the source.
async fn bases(git: &GitRepo, pr: &PullRequest) -> Result<String, ApiError> {
    Ok(git.merge_base(&pr.to_hash, &pr.from_hash).await.map_err(PrError::from)?.unwrap_or_else(|| pr.to_hash.clone()))
}

/// `GET …/commits`: the commits the pull request would add, newest first.
pub(crate) async fn commits(api: Api, Path((key, slug, id)): PrPath) -> Result<Response, ApiError> {
    let n = number(&id)?;
    let page = api.q.page()?;
    let (repo, _, _) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    let pr = prs::get(&api.state, &repo, n).await?;
    let reader = crate::repo_read::Reader::new(&api.state, api.store().repo_path(&repo));
    let q = crate::repo_read::LogQuery { until: &pr.from_hash, since: Some(&pr.to_hash), skip: page.start, max: page.limit + 1, ..Default::default() };
    let list = reader.log(&q).await?.unwrap_or_default();
    let last = list.len() <= page.limit;
    let values: Vec<Value> = list.iter().take(page.limit).map(super::git::commit_json).collect();
    let mut v = envelope(values, page, last);
    if api.q.bool("withCounts")? == Some(true) {
        let git = GitRepo::new(&api.state, api.store().repo_path(&repo));
        let (_, total) = git.commits_between(&pr.to_hash, &pr.from_hash, 0).await.map_err(PrError::from)?;
        v["totalCount"] = json!(total);
    }
    Ok(ok(StatusCode::OK, v))
}

/// `GET …/changes`: files the pull request changes (the effective diff), with `fromHash` and
/// `toHash`.
pub(crate) async fn changes(api: Api, Path((key, slug, id)): PrPath) -> Result<Response, ApiError> {
    let n = number(&id)?;
    let page = api.q.page()?;
    let (repo, _, _) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    let pr = prs::get(&api.state, &repo, n).await?;
    // Jenkins asks for `changes?limit=1` to have the pull request's refs brought up to date.
    let pr = if pr.state == PrState::Open { prs::merge_status(&api.state, &repo, n, None).await.map(|(p, _)| p).unwrap_or(pr) } else { pr };
    let git = GitRepo::new(&api.state, api.store().repo_path(&repo));
    let base = bases(&git, &pr).await?;
    Ok(ok(StatusCode::OK, super::history::changes_page(&git, &base, &pr.from_hash, page).await?))
}

pub(super) fn diff_options(api: &Api, path: Option<String>) -> Result<DiffOptions, ApiError> {
    let context_lines = match api.q.get("contextLines").filter(|c| !c.is_empty()) {
        Some(c) => {
            let n = c.parse::<i64>().map_err(|_| ApiError::invalid("contextLines", format!("contextLines must be a whole number, not {c:?}.")))?;
            // Bitbucket: a negative number means the default.
            (n >= 0).then_some(n.min(10_000) as u32)
        }
        None => None,
    };
    let ignore_whitespace = match api.q.get("whitespace").map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("show") => false,
        Some("ignore-all") => true,
        Some(w) => return Err(ApiError::invalid("whitespace", format!("{w:?} is not a whitespace option; use ignore-all or show."))),
    };
    let path = path.map(|p| p.trim_matches('/').to_owned()).filter(|p| !p.is_empty());
    if let Some(p) = &path
        && !crate::repo_read::valid_path(p)
    {
        return Err(ApiError::invalid("path", format!("{p:?} is not a path inside a repository.")));
    }
    let src_path = api.q.get("srcPath").map(|p| p.trim_matches('/').to_owned()).filter(|p| !p.is_empty());
    if let Some(p) = &src_path
        && !crate::repo_read::valid_path(p)
    {
        return Err(ApiError::invalid("srcPath", format!("{p:?} is not a path inside a repository.")));
    }
    Ok(DiffOptions { context_lines, ignore_whitespace, path, src_path, max_lines: MAX_DIFF_LINES, max_line_len: MAX_LINE_LEN })
}

pub(super) fn wants_text(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/plain") && !a.contains("json"))
}

/// A diff as git's text, not JSON.
pub(super) fn text_response(text: String) -> Response {
    let mut r = text.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r.extensions_mut().insert(RawFile);
    r
}

async fn pr_diff(api: Api, headers: HeaderMap, key: String, slug: String, id: String, path: Option<String>) -> Result<Response, ApiError> {
    let n = number(&id)?;
    let opts = diff_options(&api, path)?;
    let (repo, _, _) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    let pr = prs::get(&api.state, &repo, n).await?;
    let git = GitRepo::new(&api.state, api.store().repo_path(&repo));
    let base = bases(&git, &pr).await?;
    super::history::diff_response(&headers, &git, &base, &pr.from_hash, &opts).await
}

/// `GET …/diff` (the whole pull request).
pub(crate) async fn diff(api: Api, headers: HeaderMap, Path((key, slug, id)): PrPath) -> Result<Response, ApiError> {
    pr_diff(api, headers, key, slug, id, None).await
}

/// `GET …/diff/{path}`.
pub(crate) async fn diff_path(api: Api, headers: HeaderMap, Path((key, slug, id, path)): Path<(String, String, String, String)>) -> Result<Response, ApiError> {
    pr_diff(api, headers, key, slug, id, Some(path)).await
}

// ---- comments ----

fn anchor_json(c: &Comment) -> Option<Value> {
    let a: Anchor = serde_json::from_str(c.anchor.as_deref()?).ok()?;
    let mut v = serde_json::to_value(Anchor { line_text: None, ..a }).ok()?;
    v["orphaned"] = json!(c.orphaned);
    Some(v)
}

fn comment_json(api: &Api, users: &mut Users, pr: &PullRequest, all: &[Comment], c: &Comment) -> Result<Value, ApiError> {
    let replies = all.iter().filter(|r| r.parent_id == Some(c.id)).map(|r| comment_json(api, users, pr, all, r)).collect::<Result<Vec<_>, _>>()?;
    let me = api.user().map(|u| u.id);
    let mine = me == Some(c.author_id);
    let mut v = json!({
        "id": c.id,
        "version": c.version,
        "text": c.text,
        "author": users.get(api, c.author_id)?,
        "createdDate": c.created_at,
        "updatedDate": c.updated_at,
        "severity": c.severity,
        "state": c.state,
        "threadResolved": false,
        "comments": replies,
        "tasks": [],
        "properties": {"repositoryId": pr.repo_id},
        "permittedOperations": {"editable": mine, "transitionable": true, "deletable": mine && !all.iter().any(|r| r.parent_id == Some(c.id))},
    });
    if let Some(a) = anchor_json(c) {
        v["anchor"] = a;
    }
    Ok(v)
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct AnchorBody {
    path: Option<Value>,
    src_path: Option<Value>,
    line: Option<i64>,
    line_type: Option<String>,
    file_type: Option<String>,
    diff_type: Option<String>,
    from_hash: Option<String>,
    to_hash: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct ParentBody {
    pub(crate) id: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct CommentBody {
    pub(crate) text: Option<String>,
    pub(crate) parent: Option<ParentBody>,
    pub(crate) anchor: Option<AnchorBody>,
    severity: Option<String>,
    state: Option<String>,
    pub(crate) version: Option<Value>,
}

/// A path in an anchor: a string (as clients send it) or Bitbucket's path object.
fn anchor_path(v: &Option<Value>) -> Option<String> {
    match v.as_ref()? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o
            .get("toString")
            .and_then(|s| s.as_str())
            .map(str::to_owned)
            .or_else(|| o.get("components").and_then(|c| c.as_array()).map(|c| c.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join("/"))),
        _ => None,
    }
}

pub(crate) fn parse_anchor(b: AnchorBody) -> Result<Anchor, ApiError> {
    let path = anchor_path(&b.path).ok_or_else(|| ApiError::invalid("anchor.path", "A comment's anchor needs the path of the file."))?;
    let line = match b.line {
        None => None,
        Some(l) if l > 0 && l <= u32::MAX as i64 => Some(l as u32),
        // stashy sends -1 for "no line".
        Some(l) if l < 0 => None,
        Some(l) => return Err(ApiError::invalid("anchor.line", format!("{l} is not a line number."))),
    };
    let src_path = anchor_path(&b.src_path).map(|p| p.trim_matches('/').to_owned()).filter(|p| !p.is_empty() && *p != path.trim_matches('/'));
    let diff_type = b.diff_type.unwrap_or_else(|| "EFFECTIVE".into()).to_ascii_uppercase();
    if !matches!(diff_type.as_str(), "EFFECTIVE" | "RANGE" | "COMMIT") {
        return Err(ApiError::invalid("anchor.diffType", format!("{diff_type:?} is not a diff type; use EFFECTIVE, RANGE or COMMIT.")));
    }
    Ok(Anchor {
        path,
        src_path,
        line,
        line_type: line.and(b.line_type.map(|t| t.to_ascii_uppercase())),
        file_type: line.and(b.file_type.map(|t| t.to_ascii_uppercase())),
        diff_type,
        from_hash: b.from_hash,
        to_hash: b.to_hash,
        line_text: None,
    })
}

/// `POST …/comments` (or `…/blocker-comments`, which makes tasks) → 201.
async fn add_comment(api: Api, key: String, slug: String, id: String, body: Result<Bytes, BytesRejection>, blocker: bool) -> Result<Response, ApiError> {
    let n = number(&id)?;
    let b: CommentBody = parse_body(body)?;
    let severity = match (blocker, b.severity.map(|s| s.to_ascii_uppercase())) {
        (true, _) => "BLOCKER".to_owned(),
        (false, Some(s)) => s,
        (false, None) => "NORMAL".to_owned(),
    };
    let anchor = b.anchor.map(parse_anchor).transpose()?;
    let (repo, _, level) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    let ask = NewCommentAsk { text: b.text.unwrap_or_default(), parent: b.parent.and_then(|p| p.id).filter(|p| *p > 0), anchor, severity };
    let c = prs::add_comment(&api.state, &repo, &actor(&api, level)?, n, ask).await?;
    let pr = prs::get(&api.state, &repo, n).await?;
    api.blocking(move |api| {
        let all = api.store().comments(pr.id)?;
        Ok(ok(StatusCode::CREATED, comment_json(api, &mut Users::default(), &pr, &all, &c)?))
    })
    .await
}

pub(crate) async fn comment_create(api: Api, Path((key, slug, id)): PrPath, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    add_comment(api, key, slug, id, body, false).await
}

pub(crate) async fn blocker_create(api: Api, Path((key, slug, id)): PrPath, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    add_comment(api, key, slug, id, body, true).await
}

/// `GET …/comments?path=&anchorState=&states=`: root comments with their replies; `path` (`/`
/// or empty for every one) limits them to one file.
async fn list_comments(api: Api, key: String, slug: String, id: String, blocker: bool) -> Result<Response, ApiError> {
    let n = number(&id)?;
    let page = api.q.page()?;
    let (repo, _, _) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    let pr = prs::get(&api.state, &repo, n).await?;
    api.blocking(move |api| {
        let all = api.store().comments(pr.id)?;
        let path = api.q.get("path").map(|p| p.trim_matches('/').to_owned()).filter(|p| !p.is_empty());
        let anchor_state = api.q.get("anchorState").map(str::to_ascii_uppercase).unwrap_or_else(|| "ACTIVE".into());
        if !matches!(anchor_state.as_str(), "ACTIVE" | "ORPHANED" | "ALL") {
            return Err(ApiError::invalid("anchorState", format!("{anchor_state:?} is not an anchor state; use ACTIVE, ORPHANED or ALL.")));
        }
        let states: Vec<String> = api.q.all("states").iter().map(|s| s.to_ascii_uppercase()).collect();
        let roots: Vec<&Comment> = all
            .iter()
            .filter(|c| c.parent_id.is_none())
            .filter(|c| !blocker || c.severity == "BLOCKER")
            .filter(|c| states.is_empty() || states.contains(&c.state))
            .filter(|c| match anchor_state.as_str() {
                "ACTIVE" => !c.orphaned,
                "ORPHANED" => c.orphaned,
                _ => true,
            })
            .filter(|c| match &path {
                None => true,
                Some(p) => c.anchor.as_deref().and_then(|a| serde_json::from_str::<Anchor>(a).ok()).is_some_and(|a| a.path == *p),
            })
            .collect();
        let mut users = Users::default();
        let values = roots.iter().map(|c| comment_json(api, &mut users, &pr, &all, c)).collect::<Result<Vec<_>, _>>()?;
        Ok(ok(StatusCode::OK, super::paged(values, page)))
    })
    .await
}

pub(crate) async fn comment_list(api: Api, Path((key, slug, id)): PrPath) -> Result<Response, ApiError> {
    list_comments(api, key, slug, id, false).await
}

pub(crate) async fn blocker_list(api: Api, Path((key, slug, id)): PrPath) -> Result<Response, ApiError> {
    list_comments(api, key, slug, id, true).await
}

fn comment_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| ApiError::NotFound {
        exception: "com.atlassian.bitbucket.comment.NoSuchCommentException",
        message: format!("Comment {raw:?} does not exist on this pull request."),
    })
}

fn missing_comment(e: PrError) -> ApiError {
    match e {
        PrError::Conflict { exception, message } if exception.ends_with("NoSuchCommentException") => ApiError::NotFound { exception, message },
        e => e.into(),
    }
}

/// `GET …/comments/{commentId}`.
pub(crate) async fn comment_get(api: Api, Path((key, slug, id, cid)): Path<(String, String, String, String)>) -> Result<Response, ApiError> {
    let (n, cid) = (number(&id)?, comment_id(&cid)?);
    let (repo, _, _) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    let pr = prs::get(&api.state, &repo, n).await?;
    let c = prs::comment_of(&api.state, &pr, cid).await.map_err(missing_comment)?;
    api.blocking(move |api| {
        let all = api.store().comments(pr.id)?;
        Ok(ok(StatusCode::OK, comment_json(api, &mut Users::default(), &pr, &all, &c)?))
    })
    .await
}

/// `PUT …/comments/{commentId}` `{version, text?, severity?, state?}`.
pub(crate) async fn comment_update(
    api: Api,
    Path((key, slug, id, cid)): Path<(String, String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (n, cid) = (number(&id)?, comment_id(&cid)?);
    let raw: Value = parse_body(body)?;
    let b: CommentBody =
        serde_json::from_value(raw.clone()).map_err(|e| ApiError::Malformed(format!("The request body is not valid JSON for this resource: {e}.")))?;
    let version = version_of(&api, Some(&raw))?.ok_or_else(|| ApiError::invalid("version", "The comment's current version is required."))?;
    let (repo, _, level) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    let change = CommentChange { text: b.text, severity: b.severity.map(|s| s.to_ascii_uppercase()), state: b.state.map(|s| s.to_ascii_uppercase()) };
    let c = prs::edit_comment(&api.state, &repo, &actor(&api, level)?, n, cid, version, change).await.map_err(missing_comment)?;
    let pr = prs::get(&api.state, &repo, n).await?;
    api.blocking(move |api| {
        let all = api.store().comments(pr.id)?;
        Ok(ok(StatusCode::OK, comment_json(api, &mut Users::default(), &pr, &all, &c)?))
    })
    .await
}

/// `DELETE …/comments/{commentId}?version=` → 204.
pub(crate) async fn comment_delete(
    api: Api,
    Path((key, slug, id, cid)): Path<(String, String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (n, cid) = (number(&id)?, comment_id(&cid)?);
    let raw = optional_json(body)?;
    let version = version_of(&api, Some(&raw))?.ok_or_else(|| ApiError::invalid("version", "The comment's current version is required (?version=)."))?;
    let (repo, _, level) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    prs::delete_comment(&api.state, &repo, &actor(&api, level)?, n, cid, version).await.map_err(missing_comment)?;
    Ok(no_content())
}

// ---- settings ----

fn settings_json(s: &PrSettings) -> Value {
    let strategies: Vec<Value> = Strategy::ALL
        .iter()
        .map(|st| json!({"id": st.id(), "name": st.name(), "flag": st.flag(), "description": st.description(), "enabled": s.enabled(*st), "links": {}}))
        .collect();
    let default = Strategy::parse(&s.default_strategy).unwrap_or(Strategy::NoFf);
    json!({
        "mergeConfig": {
            "defaultStrategy": {"id": default.id(), "name": default.name(), "flag": default.flag(), "description": default.description(), "enabled": true, "links": {}},
            "strategies": strategies,
            "type": s.scope.as_str(),
            "commitSummaries": 20,
        },
        "requiredApprovers": s.required_approvers,
        "requiredAllApprovers": s.required_all_approvers,
        "requiredAllTasksComplete": s.required_all_tasks_complete,
        "requiredNoNeedsWork": s.required_no_needs_work,
        "requiredSuccessfulBuilds": s.required_successful_builds,
        "unapproveOnUpdate": s.unapprove_on_update,
    })
}

/// `GET …/settings/pull-requests`: the settings in force, the repository's own or its
/// project's (`mergeConfig.type` says which).
pub(crate) async fn settings_get(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    let (repo, _, _) = repo_for(&api, &key, &slug, Permission::Read, "see this repository").await?;
    let s = api.blocking(move |api| PrSettings::load(api.store(), &repo)).await?;
    Ok(ok(StatusCode::OK, settings_json(&s)))
}

/// A count setting: an integer (8.x), or 9.x's `{enabled, count}`.
fn count(v: &Value, context: &str) -> Result<i64, ApiError> {
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::Bool(b) => Some(*b as i64),
        Value::Object(o) => match o.get("enabled").and_then(|e| e.as_bool()) {
            Some(false) => Some(0),
            _ => o.get("count").and_then(|c| c.as_i64().or_else(|| c.as_str().and_then(|s| s.parse().ok()))),
        },
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    n.filter(|n| (0..=100).contains(n)).ok_or_else(|| ApiError::invalid(context, format!("{context} must be a whole number from 0 to 100.")))
}

/// A partial update of `s` from a `POST …/settings/pull-requests` body: the strategies must
/// leave at least one enabled and the default among them. Nothing is saved here.
fn apply_settings(s: &mut PrSettings, raw: &Value) -> Result<(), ApiError> {
    if let Some(mc) = raw.get("mergeConfig") {
        if let Some(list) = mc.get("strategies").and_then(|l| l.as_array()) {
            let mut enabled = Vec::new();
            for st in list {
                let id = st.get("id").and_then(|i| i.as_str()).unwrap_or("");
                let strat = Strategy::parse(id)
                    .ok_or_else(|| ApiError::invalid("mergeConfig.strategies", format!("{id:?} is not a merge strategy; use one of {}.", strategy_ids())))?;
                if st.get("enabled").and_then(|e| e.as_bool()).unwrap_or(true) && !enabled.contains(&strat.id().to_owned()) {
                    enabled.push(strat.id().to_owned());
                }
            }
            s.enabled_strategies = enabled;
        }
        if let Some(d) = mc.get("defaultStrategy") {
            let id = d.get("id").and_then(|i| i.as_str()).or(d.as_str()).unwrap_or("");
            let strat = Strategy::parse(id)
                .ok_or_else(|| ApiError::invalid("mergeConfig.defaultStrategy", format!("{id:?} is not a merge strategy; use one of {}.", strategy_ids())))?;
            s.default_strategy = strat.id().to_owned();
        }
        if s.enabled_strategies.is_empty() {
            return Err(ApiError::invalid("mergeConfig.strategies", "At least one merge strategy must be enabled."));
        }
        if !s.enabled_strategies.contains(&s.default_strategy) {
            return Err(ApiError::invalid(
                "mergeConfig.defaultStrategy",
                format!("The default strategy {} must be one of the enabled strategies.", s.default_strategy),
            ));
        }
    }
    if let Some(v) = raw.get("requiredApprovers") {
        s.required_approvers = count(v, "requiredApprovers")?;
    }
    if let Some(v) = raw.get("requiredSuccessfulBuilds") {
        s.required_successful_builds = count(v, "requiredSuccessfulBuilds")?;
    }
    for (k, slot) in [
        ("requiredAllApprovers", &mut s.required_all_approvers),
        ("requiredAllTasksComplete", &mut s.required_all_tasks_complete),
        ("requiredNoNeedsWork", &mut s.required_no_needs_work),
        ("unapproveOnUpdate", &mut s.unapprove_on_update),
    ] {
        if let Some(v) = raw.get(k) {
            *slot = v.as_bool().ok_or_else(|| ApiError::invalid(k, format!("{k} must be true or false.")))?;
        }
    }
    Ok(())
}

/// What a settings change changed, for the audit log: each field that differs, as it is now.
fn settings_changes(before: &PrSettings, after: &PrSettings) -> Value {
    let (b, a) = (settings_json(before), settings_json(after));
    let mut changed = serde_json::Map::new();
    for k in ["requiredApprovers", "requiredAllApprovers", "requiredAllTasksComplete", "requiredNoNeedsWork", "requiredSuccessfulBuilds", "unapproveOnUpdate"] {
        if b[k] != a[k] {
            changed.insert(k.to_owned(), a[k].clone());
        }
    }
    if before.enabled_strategies != after.enabled_strategies {
        changed.insert("strategies".into(), json!(after.enabled_strategies));
    }
    if before.default_strategy != after.default_strategy {
        changed.insert("defaultStrategy".into(), json!(after.default_strategy));
    }
    if before.scope != after.scope {
        changed.insert("type".into(), json!(after.scope.as_str()));
    }
    Value::Object(changed)
}

/// `POST …/settings/pull-requests` (repository admin): a partial update of the settings in force
/// (the project's, for a repository that has none of its own yet), saved as the repository's.
pub(crate) async fn settings_set(api: Api, Path((key, slug)): Path<(String, String)>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let raw: Value = parse_body(body)?;
    let (repo, _, _) = repo_for(&api, &key, &slug, Permission::Admin, "change this repository's pull request settings").await?;
    let s = api
        .blocking(move |api| {
            let before = PrSettings::load(api.store(), &repo)?;
            let mut s = before.clone();
            apply_settings(&mut s, &raw)?;
            let text = serde_json::to_string(&s).map_err(|e| ApiError::Internal(e.to_string()))?;
            api.store().set_pr_settings(repo.id, &text)?;
            s.scope = prs::SettingsScope::Repository;
            api.audit(crate::audit::Action::PrSettingsUpdate, &crate::audit::target::repo(&repo), settings_changes(&before, &s));
            Ok::<_, ApiError>(s)
        })
        .await?;
    Ok(ok(StatusCode::OK, settings_json(&s)))
}

/// `{scmId}` of the project settings' longer path: only `git`.
fn git_scm(scm: &str) -> Result<(), ApiError> {
    if scm == "git" { Ok(()) } else { Err(ApiError::invalid("scmId", format!("{scm:?} is not a supported SCM; only \"git\" is."))) }
}

/// `GET /projects/{key}/settings/pull-requests[/git]`: the project's settings, which its
/// repositories without their own use (PROJECT_READ).
pub(crate) async fn project_settings_get(api: Api, Path(key): Path<String>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let info = api.project(&key, Some(Permission::Read), "see this project's settings")?;
        Ok(ok(StatusCode::OK, settings_json(&PrSettings::load_project(api.store(), info.id)?)))
    })
    .await
}

pub(crate) async fn project_settings_get_scm(api: Api, Path((key, scm)): Path<(String, String)>) -> Result<Response, ApiError> {
    git_scm(&scm)?;
    project_settings_get(api, Path(key)).await
}

/// `POST /projects/{key}/settings/pull-requests[/git]` (PROJECT_ADMIN): a partial update, in
/// force at once for every repository of the project without settings of its own.
pub(crate) async fn project_settings_set(api: Api, Path(key): Path<String>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let raw: Value = parse_body(body)?;
    api.blocking(move |api| {
        let info = api.project(&key, Some(Permission::Admin), "change this project's pull request settings")?;
        let before = PrSettings::load_project(api.store(), info.id)?;
        let mut s = before.clone();
        apply_settings(&mut s, &raw)?;
        let text = serde_json::to_string(&s).map_err(|e| ApiError::Internal(e.to_string()))?;
        api.store().set_project_pr_settings(info.id, &text)?;
        s.scope = prs::SettingsScope::Project;
        api.audit(crate::audit::Action::PrSettingsUpdate, &crate::audit::target::project(&info.owner), settings_changes(&before, &s));
        Ok(ok(StatusCode::OK, settings_json(&s)))
    })
    .await
}

pub(crate) async fn project_settings_set_scm(
    api: Api,
    Path((key, scm)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    git_scm(&scm)?;
    project_settings_set(api, Path(key), body).await
}

fn strategy_ids() -> String {
    Strategy::ALL.iter().map(|s| s.id()).collect::<Vec<_>>().join(", ")
}

// ---- dashboard and inbox ----

/// The pull requests of every repository the caller may still read that `q` finds, rendered.
fn across_repos(api: &Api, mut q: PrQuery, page: PageReq) -> Result<Value, ApiError> {
    // Permission is per repository: read everything that matches, keep what the caller may
    // read, then cut the page.
    q.start = 0;
    q.limit = usize::MAX / 2;
    let (list, _) = api.store().prs(&q)?;
    let mut repos: HashMap<i64, Option<(Repo, ProjectInfo)>> = HashMap::new();
    let mut users = Users::default();
    let mut visible = Vec::new();
    for pr in &list {
        if let std::collections::hash_map::Entry::Vacant(e) = repos.entry(pr.repo_id) {
            let found = match api.store().repo_by_id(pr.repo_id)? {
                Some(r) if api.store().permission(api.who.as_ref(), &r)?.is_some() => api.store().project_info(&r.owner)?.map(|p| (r, p)),
                _ => None,
            };
            e.insert(found);
        }
        if repos[&pr.repo_id].is_some() {
            visible.push(pr);
        }
    }
    let total = visible.len();
    let values = visible
        .into_iter()
        .skip(page.start)
        .take(page.limit)
        .map(|pr| {
            let (r, p) = repos[&pr.repo_id].as_ref().expect("kept only visible ones");
            pr_json(api, &mut users, r, p, pr, None)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(envelope(values, page, page.start.saturating_add(page.limit) >= total))
}

/// `GET /dashboard/pull-requests?state=&role=&participantStatus=&order=&closedSince=`.
pub(crate) async fn dashboard(api: Api) -> Result<Response, ApiError> {
    let page = api.q.page()?;
    api.blocking(move |api| {
        let me = api.require_login()?.user.id;
        let role = api.q.get("role").filter(|r| !r.is_empty()).map(|r| role(r, "role")).transpose()?;
        let statuses = api
            .q
            .all("participantStatus")
            .iter()
            .flat_map(|s| s.split(','))
            .filter(|s| !s.is_empty())
            .map(|s| status(s, "participantStatus"))
            .collect::<Result<Vec<_>, _>>()?;
        let closed_since = match api.q.get("closedSince").filter(|c| !c.is_empty()) {
            Some(c) => {
                let secs = c.parse::<i64>().map_err(|_| ApiError::invalid("closedSince", format!("closedSince is a number of seconds, not {c:?}.")))?;
                Some(prs::now_ms() - secs * 1000)
            }
            None => None,
        };
        let states = match api.q.get("state") {
            None | Some("") => Vec::new(),
            s => states(s, "state")?,
        };
        let q = PrQuery {
            states,
            participants: vec![ParticipantFilter { user_id: me, role, statuses }],
            oldest_first: order(api)?,
            by_update: true,
            closed_since,
            ..PrQuery::default()
        };
        Ok(ok(StatusCode::OK, across_repos(api, q, page)?))
    })
    .await
}

/// The inbox: open pull requests the caller reviews (or, with `role=AUTHOR`, wrote) that wait
/// on them.
fn inbox_query(api: &Api) -> Result<PrQuery, ApiError> {
    let me = api.require_login()?.user.id;
    let r = api.q.get("role").filter(|r| !r.is_empty()).map(|r| role(r, "role")).transpose()?.unwrap_or(Role::Reviewer);
    let statuses = if r == Role::Reviewer { vec![ReviewStatus::Unapproved] } else { Vec::new() };
    Ok(PrQuery {
        states: vec![PrState::Open],
        participants: vec![ParticipantFilter { user_id: me, role: Some(r), statuses }],
        by_update: true,
        ..PrQuery::default()
    })
}

/// `GET /inbox/pull-requests?role=`.
pub(crate) async fn inbox(api: Api) -> Result<Response, ApiError> {
    let page = api.q.page()?;
    api.blocking(move |api| Ok(ok(StatusCode::OK, across_repos(api, inbox_query(api)?, page)?))).await
}

/// `GET /inbox/pull-requests/count` → `{count}`.
pub(crate) async fn inbox_count(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let v = across_repos(api, inbox_query(api)?, PageReq { start: 0, limit: usize::MAX / 2 })?;
        Ok(ok(StatusCode::OK, json!({"count": v["size"]})))
    })
    .await
}
