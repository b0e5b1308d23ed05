//! Pull requests: the rules of Bitbucket's review workflow over the store's rows and the git
//! engine ([`crate::pr_git`]). Who may do what, what counts as a stale version, when a pull
//! request can merge and why not, how a push rescopes the open ones, and what each change
//! writes into the activity log. The REST adapter (`api/pull_requests.rs`) parses and renders;
//! everything it changes goes through here.
//!
//! Changes to one repository's pull requests are serialised on this node by a per-repository
//! lock (a merge, a rescope and an update never interleave); across nodes the store's version
//! check and git's compare-and-swap `update-ref` keep two changes from both winning.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use trove_store::{
    Authenticated, Comment, CommentChange, CommentDelete, NewActivity, NewComment, NewPullRequest, Participant, PrChange, PrInsert, PrState, PullRequest,
    RefChange, Repo, ReviewStatus, Role, StoreError, User, UserName, Versioned,
};

use crate::AppState;
use crate::branch_permissions::{Applying, CHECK_CONFIGURATION, RestrictionsError, refusal};
use crate::events::{PushEvent, RefUpdate};
use crate::pr_git::{DiffOptions, GitRepo, Identity, MergeCheck, MergeError, MergeRequest, PrGitError, Strategy};
use crate::webhooks::ServerChange;

/// The all-zero id git uses for "no object".
const ZERO: &str = "0000000000000000000000000000000000000000";
/// Most commits a rescope lists as added or removed in its activity (the total is kept).
const RESCOPE_COMMITS: usize = 100;

/// Why a pull-request operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PrError {
    #[error("Pull request {0} does not exist in this repository.")]
    NotFound(i64),
    #[error("{message}")]
    Invalid { context: &'static str, message: String },
    /// Refused because of the state of things (409), with Bitbucket's exception name.
    #[error("{message}")]
    Conflict { exception: &'static str, message: String },
    #[error(
        "You are attempting to modify a pull request based on out-of-date information (you sent version {given}, it is at version {current}); reload it and try again."
    )]
    Stale { given: i64, current: i64 },
    /// Merge checks that stand against merging now.
    #[error("The pull request cannot be merged: {}", .0.iter().map(|v| v.summary.as_str()).collect::<Vec<_>>().join("; "))]
    Vetoed(Vec<Veto>),
    #[error("You are not permitted to {0}.")]
    Forbidden(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Git(#[from] PrGitError),
}

/// One reason a pull request cannot merge now, in Bitbucket's two messages.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Veto {
    #[serde(rename = "summaryMessage")]
    pub(crate) summary: String,
    #[serde(rename = "detailedMessage")]
    pub(crate) detail: String,
}

type Result<T, E = PrError> = std::result::Result<T, E>;

impl From<RestrictionsError> for PrError {
    fn from(e: RestrictionsError) -> Self {
        match e {
            RestrictionsError::Store(e) => PrError::Store(e),
            RestrictionsError::NoRepo(id) => PrError::Store(StoreError::NoSuchRepo(id.to_string())),
            RestrictionsError::Read(e) => PrError::Git(PrGitError::Unexpected { command: "symbolic-ref -q HEAD".into(), output: e.to_string() }),
        }
    }
}

/// Where pull-request settings in force come from: Bitbucket's `mergeConfig.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum SettingsScope {
    /// Nothing saved, for the repository nor its project: the defaults.
    #[default]
    Default,
    /// The project's, which a repository without its own inherits.
    Project,
    /// The repository's own.
    Repository,
}

impl SettingsScope {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SettingsScope::Default => "DEFAULT",
            SettingsScope::Project => "PROJECT",
            SettingsScope::Repository => "REPOSITORY",
        }
    }
}

/// Pull-request settings (`…/settings/pull-requests`) of a repository or a project, kept as JSON
/// in the store. A repository that never saved its own uses its project's, whole (Bitbucket's
/// `mergeConfig.type` PROJECT); the first save at the repository starts from those.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct PrSettings {
    /// The strategy used when a merge names none. Default `no-ff`, as Bitbucket's git.
    pub(crate) default_strategy: String,
    /// The strategies a merge may ask for. Default only `no-ff`.
    pub(crate) enabled_strategies: Vec<String>,
    /// How many reviewers must approve; 0 is off.
    pub(crate) required_approvers: i64,
    /// Every reviewer must approve.
    pub(crate) required_all_approvers: bool,
    /// No open task (BLOCKER comment) may remain.
    pub(crate) required_all_tasks_complete: bool,
    /// No reviewer may have the Needs work status. Trove's name: Bitbucket keeps this merge
    /// check as a repository hook (`com.atlassian.bitbucket.server.bitbucket-bundled-hooks:
    /// needs-work-merge-check`), not in these settings.
    pub(crate) required_no_needs_work: bool,
    /// Builds are reported by a later part of Trove; kept so clients can round-trip it.
    pub(crate) required_successful_builds: i64,
    /// A change to the source branch sets every approval back to UNAPPROVED.
    pub(crate) unapprove_on_update: bool,
    /// Where these came from (not stored: known from where they were read).
    #[serde(skip)]
    pub(crate) scope: SettingsScope,
}

impl Default for PrSettings {
    fn default() -> Self {
        PrSettings {
            default_strategy: Strategy::NoFf.id().to_owned(),
            enabled_strategies: vec![Strategy::NoFf.id().to_owned()],
            required_approvers: 0,
            required_all_approvers: false,
            required_all_tasks_complete: false,
            required_no_needs_work: false,
            required_successful_builds: 0,
            unapprove_on_update: false,
            scope: SettingsScope::Default,
        }
    }
}

impl PrSettings {
    fn parse(text: &str, scope: SettingsScope) -> PrSettings {
        PrSettings { scope, ..serde_json::from_str(text).unwrap_or_default() }
    }

    /// The settings in force for `repo`: its own, else its project's, else the defaults.
    pub(crate) fn load(store: &trove_store::Store, repo: &Repo) -> Result<PrSettings> {
        if let Some(text) = store.pr_settings(repo.id)? {
            return Ok(PrSettings::parse(&text, SettingsScope::Repository));
        }
        PrSettings::load_project(store, repo.project_id)
    }

    /// A project's settings, else the defaults.
    pub(crate) fn load_project(store: &trove_store::Store, project_id: i64) -> Result<PrSettings> {
        Ok(match store.project_pr_settings(project_id)? {
            Some(text) => PrSettings::parse(&text, SettingsScope::Project),
            None => PrSettings::default(),
        })
    }

    pub(crate) fn enabled(&self, s: Strategy) -> bool {
        self.enabled_strategies.iter().any(|e| e == s.id())
    }
}

/// The per-repository locks of this node.
#[derive(Default)]
pub(crate) struct Locks {
    repos: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
}

impl Locks {
    pub(crate) async fn lock(&self, repo_id: i64) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut map = self.repos.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(repo_id).or_default().clone()
        };
        m.lock_owned().await
    }
}

/// A caller acting on a pull request: who, and their permission on the repository.
pub(crate) struct Actor<'a> {
    pub(crate) who: &'a Authenticated,
    pub(crate) level: trove_store::Permission,
}

impl Actor<'_> {
    fn id(&self) -> i64 {
        self.who.user.id
    }
}

fn git_for(state: &AppState, repo: &Repo) -> GitRepo {
    GitRepo::new(state, state.store.repo_path(repo))
}

async fn store<T: Send + 'static>(state: &AppState, f: impl FnOnce(&trove_store::Store) -> Result<T, StoreError> + Send + 'static) -> Result<T> {
    Ok(state.store.run(f).await?)
}

/// `update_pr` with the change's webhook events (`webhooks.rs`), rendered in its transaction
/// from the row as the change leaves it.
async fn update_pr_events(
    state: &AppState,
    repo: &Repo,
    id: i64,
    version: Option<i64>,
    change: PrChange,
    acts: Vec<NewActivity>,
) -> Result<Versioned<PullRequest>> {
    let (st, repo) = (state.clone(), repo.clone());
    let r = store(state, move |s| {
        if !crate::webhooks::any_webhook(s, &repo)? {
            return s.update_pr(id, version, &change, &acts);
        }
        let mut users: Vec<i64> = acts.iter().map(|a| a.user_id).collect();
        if let Some(before) = s.pr_by_id(id)? {
            users.extend(before.participants.iter().map(|p| p.user_id));
            users.push(before.author_id);
        }
        users.extend(change.upsert_participants.iter().map(|p| p.user_id));
        match crate::webhooks::PrEvents::load(&st, s, &repo, users)? {
            Some(ev) => s.update_pr_with_events(id, version, &change, &acts, &|pr| ev.for_change(pr, &acts)),
            None => s.update_pr(id, version, &change, &acts),
        }
    })
    .await?;
    state.webhooks.wake();
    Ok(r)
}

/// `main` for `refs/heads/main`.
pub(crate) fn display_ref(full: &str) -> &str {
    full.strip_prefix("refs/heads/").or_else(|| full.strip_prefix("refs/tags/")).unwrap_or(full)
}

/// A branch named by a caller (`main` or `refs/heads/main`) as its full ref.
pub(crate) fn full_branch(name: &str) -> String {
    if name.starts_with("refs/") { name.to_owned() } else { format!("refs/heads/{name}") }
}

fn check_version(pr: &PullRequest, given: Option<i64>) -> Result<()> {
    match given {
        Some(v) if v != pr.version => Err(PrError::Stale { given: v, current: pr.version }),
        _ => Ok(()),
    }
}

fn versioned<T>(v: Versioned<T>, number: i64, given: Option<i64>) -> Result<T> {
    match v {
        Versioned::Done(t) => Ok(t),
        Versioned::Stale(current) => Err(PrError::Stale { given: given.unwrap_or(current), current }),
        Versioned::Gone => Err(PrError::NotFound(number)),
    }
}

fn not_open(pr: &PullRequest, doing: &str) -> PrError {
    PrError::Conflict {
        exception: "com.atlassian.bitbucket.pull.IllegalPullRequestStateException",
        message: format!("Pull request #{} is {}; only an open pull request can be {doing}.", pr.number, pr.state.as_str().to_lowercase()),
    }
}

/// Users named as reviewers, checked: they exist, may read the repository, are not the author.
fn reviewers(store: &trove_store::Store, repo: &Repo, author: i64, names: &[String]) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    for name in names {
        let bad = |why: String| PrError::Conflict { exception: "com.atlassian.bitbucket.pull.InvalidPullRequestReviewersException", message: why };
        let user = UserName::parse(name).ok().map(|n| store.user(&n)).transpose()?.flatten().ok_or_else(|| bad(format!("Reviewer {name} does not exist.")))?;
        if user.id == author {
            return Err(bad(format!("{name} is the author of this pull request and cannot also review it.")));
        }
        let who = Authenticated { user: user.clone(), token_scope: None };
        if !user.active || store.permission(Some(&who), repo)?.is_none() {
            return Err(bad(format!("{name} cannot read this repository, so cannot review a pull request in it; grant them REPO_READ first.")));
        }
        if !ids.contains(&user.id) {
            ids.push(user.id);
        }
    }
    Ok(ids)
}

/// What a caller sends to open a pull request.
pub(crate) struct NewPr {
    pub(crate) title: String,
    pub(crate) description: Option<String>,
    pub(crate) from_ref: String,
    pub(crate) to_ref: String,
    pub(crate) reviewers: Vec<String>,
}

fn no_branch(name: &str) -> PrError {
    PrError::Conflict {
        exception: "com.atlassian.bitbucket.repository.NoSuchBranchException",
        message: format!("Branch {} does not exist in this repository.", display_ref(name)),
    }
}

/// Opens a pull request; see the REST docs for every refusal.
pub(crate) async fn create(state: &AppState, repo: &Repo, actor: &Actor<'_>, new: NewPr) -> Result<PullRequest> {
    let title = new.title.trim().to_owned();
    if title.is_empty() {
        return Err(PrError::Invalid { context: "title", message: "The pull request needs a title.".into() });
    }
    if title.chars().count() > 255 {
        return Err(PrError::Invalid { context: "title", message: "The title is longer than 255 characters; shorten it.".into() });
    }
    let (from_ref, to_ref) = (full_branch(&new.from_ref), full_branch(&new.to_ref));
    if !to_ref.starts_with("refs/heads/") {
        return Err(PrError::Invalid { context: "toRef", message: "The target of a pull request must be a branch.".into() });
    }
    let git = git_for(state, repo);
    let from = git.ref_commit(&from_ref).await?.ok_or_else(|| no_branch(&from_ref))?;
    let to = git.ref_commit(&to_ref).await?.ok_or_else(|| no_branch(&to_ref))?;
    if from_ref == to_ref {
        return Err(PrError::Conflict {
            exception: "com.atlassian.bitbucket.pull.InvalidPullRequestTargetException",
            message: format!("The source and target of a pull request must differ; both are {}.", display_ref(&from_ref)),
        });
    }
    if git.is_ancestor(&from, &to).await? {
        return Err(PrError::Conflict {
            exception: "com.atlassian.bitbucket.pull.EmptyPullRequestException",
            message: format!("{} is already up-to-date with {}; there is nothing to merge.", display_ref(&to_ref), display_ref(&from_ref)),
        });
    }
    let outcome = outcome_of(&git.check_merge(&from, &to).await?);
    let (repo2, names, author) = (repo.clone(), new.reviewers, actor.id());
    let description = new.description.filter(|d| !d.trim().is_empty());
    let _lock = state.prs.lock(repo.id).await;
    let (fr, tr, f2, t2) = (from_ref.clone(), to_ref.clone(), from.clone(), to.clone());
    let st = state.clone();
    let inserted = store(state, move |s| {
        let reviewers = match reviewers(s, &repo2, author, &names) {
            Ok(r) => r,
            Err(PrError::Store(e)) => return Err(e),
            Err(e) => return Ok(Err(e)),
        };
        let new = NewPullRequest {
            repo_id: repo2.id,
            from_repo_id: repo2.id,
            title,
            description,
            author_id: author,
            from_ref: fr,
            to_ref: tr,
            from_hash: f2,
            to_hash: t2,
            reviewers,
            merge_outcome: Some(outcome.to_owned()),
        };
        let users = new.reviewers.iter().copied().chain([author]);
        let opened = [NewActivity::new(author, "OPENED", "{}".into())];
        match crate::webhooks::PrEvents::load(&st, s, &repo2, users)? {
            Some(ev) => s.insert_pr_with_events(&new, &|pr| ev.for_change(pr, &opened)),
            None => s.insert_pr(&new),
        }
        .map(Ok)
    })
    .await??;
    state.webhooks.wake();
    match inserted {
        PrInsert::Created(pr) => {
            if let Err(e) = git.update_pr_refs(pr.number, &from, &to).await {
                tracing::warn!(error = %e, repo = %repo.display_path(), pr = pr.number, "cannot write the pull request's refs");
            }
            Ok(pr)
        }
        PrInsert::Duplicate(n) => Err(PrError::Conflict {
            exception: "com.atlassian.bitbucket.pull.DuplicatePullRequestException",
            message: format!(
                "Only one pull request may be open for a given source and target branch: pull request #{n} already goes from {} to {}.",
                display_ref(&from_ref),
                display_ref(&to_ref)
            ),
        }),
    }
}

fn outcome_of(c: &MergeCheck) -> &'static str {
    match c {
        MergeCheck::Clean { .. } => "CLEAN",
        MergeCheck::Conflicted { .. } => "CONFLICTED",
    }
}

/// Loads pull request `number` of `repo`.
pub(crate) async fn get(state: &AppState, repo: &Repo, number: i64) -> Result<PullRequest> {
    let id = repo.id;
    store(state, move |s| s.pr(id, number)).await?.ok_or(PrError::NotFound(number))
}

/// What a caller may change with `PUT …/pull-requests/{id}`.
#[derive(Default)]
pub(crate) struct PrEdit {
    pub(crate) version: Option<i64>,
    pub(crate) title: Option<String>,
    pub(crate) description: Option<Option<String>>,
    pub(crate) reviewers: Option<Vec<String>>,
    pub(crate) to_ref: Option<String>,
}

/// `PUT`: the author or someone with write may edit.
pub(crate) async fn update(state: &AppState, repo: &Repo, actor: &Actor<'_>, number: i64, edit: PrEdit) -> Result<PullRequest> {
    let _lock = state.prs.lock(repo.id).await;
    let pr = get(state, repo, number).await?;
    if pr.author_id != actor.id() && actor.level < trove_store::Permission::Write {
        return Err(PrError::Forbidden("edit this pull request: only its author or someone with write access may".into()));
    }
    check_version(&pr, edit.version)?;
    if pr.state != PrState::Open {
        return Err(not_open(&pr, "edited"));
    }
    let mut change = PrChange { bump_version: true, ..PrChange::default() };
    let mut detail = serde_json::Map::new();
    if let Some(t) = edit.title {
        let t = t.trim().to_owned();
        if t.is_empty() {
            return Err(PrError::Invalid { context: "title", message: "The pull request needs a title.".into() });
        }
        if t != pr.title {
            detail.insert("previousTitle".into(), json!(pr.title));
            change.title = Some(t);
        }
    }
    if let Some(d) = edit.description {
        let d = d.filter(|d| !d.trim().is_empty());
        if d != pr.description {
            detail.insert("previousDescription".into(), json!(pr.description));
            change.description = Some(d);
        }
    }
    let git = git_for(state, repo);
    let mut new_to = None;
    if let Some(t) = edit.to_ref {
        let t = full_branch(&t);
        if t != pr.to_ref {
            let to = git.ref_commit(&t).await?.ok_or_else(|| no_branch(&t))?;
            if t == pr.from_ref {
                return Err(PrError::Conflict {
                    exception: "com.atlassian.bitbucket.pull.InvalidPullRequestTargetException",
                    message: "The target cannot be the pull request's own source branch.".into(),
                });
            }
            detail.insert("previousTarget".into(), json!({"id": pr.to_ref, "displayId": display_ref(&pr.to_ref), "latestCommit": pr.to_hash}));
            change.to_ref = Some(t.clone());
            change.to_hash = Some(to.clone());
            change.merge_outcome = Some(Some(outcome_of(&git.check_merge(&pr.from_hash, &to).await?).to_owned()));
            new_to = Some(to);
        }
    }
    let mut activities = Vec::new();
    if let Some(names) = edit.reviewers {
        let (repo2, author) = (repo.clone(), pr.author_id);
        let wanted = state.store.run(move |s| reviewers(s, &repo2, author, &names)).await?;
        let current: Vec<i64> = pr.participants.iter().filter(|p| p.role == Role::Reviewer).map(|p| p.user_id).collect();
        let added: Vec<i64> = wanted.iter().copied().filter(|id| !current.contains(id)).collect();
        let removed: Vec<i64> = current.iter().copied().filter(|id| !wanted.contains(id)).collect();
        for id in &added {
            let status = pr.participant(*id).map_or(ReviewStatus::Unapproved, |p| p.status);
            change.upsert_participants.push(Participant { user_id: *id, role: Role::Reviewer, status, last_reviewed_commit: None });
        }
        for id in &removed {
            // A removed reviewer stays a participant with their status, as in Bitbucket.
            let p = pr.participant(*id).cloned();
            if let Some(mut p) = p {
                p.role = Role::Participant;
                change.upsert_participants.push(p);
            }
        }
        if !added.is_empty() || !removed.is_empty() {
            activities.push(NewActivity::new(actor.id(), "UPDATED", json!({"addedReviewers": added, "removedReviewers": removed}).to_string()));
        }
    }
    if !detail.is_empty() {
        activities.push(NewActivity::new(actor.id(), "UPDATED", Value::Object(detail).to_string()));
    }
    if activities.is_empty() && new_to.is_none() {
        return Ok(pr);
    }
    let (id, version) = (pr.id, edit.version);
    let acts = activities.clone();
    let updated = versioned(update_pr_events(state, repo, id, version, change, acts).await?, number, version)?;
    if let Some(to) = new_to {
        refresh_refs(&git, &updated, &updated.from_hash, &to).await;
    }
    Ok(updated)
}

async fn refresh_refs(git: &GitRepo, pr: &PullRequest, from: &str, to: &str) {
    if let Err(e) = git.update_pr_refs(pr.number, from, to).await {
        tracing::warn!(error = %e, pr = pr.number, "cannot update the pull request's refs");
    }
}

async fn drop_refs(git: &GitRepo, pr: &PullRequest) {
    if let Err(e) = git.delete_pr_refs(pr.number).await {
        tracing::warn!(error = %e, pr = pr.number, "cannot remove the pull request's refs");
    }
}

/// `POST …/decline`.
pub(crate) async fn decline(state: &AppState, repo: &Repo, actor: &Actor<'_>, number: i64, version: Option<i64>) -> Result<PullRequest> {
    let _lock = state.prs.lock(repo.id).await;
    let pr = get(state, repo, number).await?;
    check_version(&pr, version)?;
    if pr.state != PrState::Open {
        return Err(not_open(&pr, "declined"));
    }
    let change = PrChange { state: Some(PrState::Declined), closed_at: Some(Some(now_ms())), bump_version: true, ..PrChange::default() };
    let act = vec![NewActivity::new(actor.id(), "DECLINED", "{}".into())];
    let id = pr.id;
    let pr = versioned(update_pr_events(state, repo, id, version, change, act).await?, number, version)?;
    drop_refs(&git_for(state, repo), &pr).await;
    Ok(pr)
}

/// `POST …/reopen`: a declined pull request opens again, rescoped to where its branches are.
pub(crate) async fn reopen(state: &AppState, repo: &Repo, actor: &Actor<'_>, number: i64, version: Option<i64>) -> Result<PullRequest> {
    let _lock = state.prs.lock(repo.id).await;
    let pr = get(state, repo, number).await?;
    check_version(&pr, version)?;
    if pr.state != PrState::Declined {
        return Err(PrError::Conflict {
            exception: "com.atlassian.bitbucket.pull.IllegalPullRequestStateException",
            message: format!("Pull request #{number} is {}; only a declined pull request can be reopened.", pr.state.as_str().to_lowercase()),
        });
    }
    let git = git_for(state, repo);
    let from = git.ref_commit(&pr.from_ref).await?.ok_or_else(|| no_branch(&pr.from_ref))?;
    let to = git.ref_commit(&pr.to_ref).await?.ok_or_else(|| no_branch(&pr.to_ref))?;
    if git.is_ancestor(&from, &to).await? {
        return Err(PrError::Conflict {
            exception: "com.atlassian.bitbucket.pull.EmptyPullRequestException",
            message: format!("{} already contains {}; there is nothing to reopen.", display_ref(&pr.to_ref), display_ref(&pr.from_ref)),
        });
    }
    let outcome = outcome_of(&git.check_merge(&from, &to).await?).to_owned();
    let change = PrChange {
        state: Some(PrState::Open),
        closed_at: Some(None),
        from_hash: Some(from.clone()),
        to_hash: Some(to.clone()),
        merge_outcome: Some(Some(outcome)),
        bump_version: true,
        ..PrChange::default()
    };
    let act = vec![NewActivity::new(actor.id(), "REOPENED", "{}".into())];
    let id = pr.id;
    let r = update_pr_events(state, repo, id, version, change, act).await?;
    let pr = match r {
        Versioned::Done(pr) => pr,
        // Another open pull request between the same branches (the unique index): say so.
        other => versioned(other, number, version)?,
    };
    refresh_refs(&git, &pr, &from, &to).await;
    Ok(pr)
}

/// `DELETE …/pull-requests/{id}`: the author or a repository admin.
pub(crate) async fn delete(state: &AppState, repo: &Repo, actor: &Actor<'_>, number: i64, version: Option<i64>) -> Result<()> {
    let _lock = state.prs.lock(repo.id).await;
    let pr = get(state, repo, number).await?;
    if pr.author_id != actor.id() && actor.level < trove_store::Permission::Admin {
        return Err(PrError::Forbidden("delete this pull request: only its author or a repository administrator may".into()));
    }
    check_version(&pr, version)?;
    let (id, st, repo2, gone, who) = (pr.id, state.clone(), repo.clone(), pr.clone(), actor.id());
    let deleted = store(state, move |s| {
        let users = gone.participants.iter().map(|p| p.user_id).chain([who]);
        let events = crate::webhooks::PrEvents::load(&st, s, &repo2, users)?.map(|ev| ev.deleted(&gone, who)).unwrap_or_default();
        s.delete_pr_with_events(id, version, &events)
    })
    .await?;
    versioned(deleted, number, version)?;
    state.webhooks.wake();
    drop_refs(&git_for(state, repo), &pr).await;
    Ok(())
}

/// A participant's new status (`PUT …/participants/{slug}`, `approve`): the caller reviews.
pub(crate) async fn set_status(
    state: &AppState,
    repo: &Repo,
    actor: &Actor<'_>,
    number: i64,
    status: ReviewStatus,
    version: Option<i64>,
) -> Result<(PullRequest, Participant)> {
    let _lock = state.prs.lock(repo.id).await;
    let pr = get(state, repo, number).await?;
    check_version(&pr, version)?;
    if pr.state != PrState::Open {
        return Err(not_open(&pr, "reviewed"));
    }
    if pr.author_id == actor.id() {
        return Err(PrError::Invalid { context: "status", message: "The author of a pull request cannot approve or review it.".into() });
    }
    let before = pr.participant(actor.id()).cloned();
    let role = before.as_ref().map_or(Role::Participant, |p| p.role);
    let p = Participant { user_id: actor.id(), role, status, last_reviewed_commit: Some(pr.from_hash.clone()) };
    if before.as_ref().is_some_and(|b| b.status == status) {
        return Ok((pr, before.unwrap_or(p)));
    }
    let action = match status {
        ReviewStatus::Approved => "APPROVED",
        ReviewStatus::Unapproved => "UNAPPROVED",
        ReviewStatus::NeedsWork => "REVIEWED",
    };
    let previous = before.as_ref().map_or(ReviewStatus::Unapproved, |b| b.status);
    let detail = json!({"participant": actor.id(), "status": status.as_str(), "previousStatus": previous.as_str()}).to_string();
    let change = PrChange { upsert_participants: vec![p.clone()], bump_version: true, ..PrChange::default() };
    let act = vec![NewActivity::new(actor.id(), action, detail)];
    let id = pr.id;
    let pr = versioned(update_pr_events(state, repo, id, version, change, act).await?, number, version)?;
    Ok((pr, p))
}

/// `POST …/participants` with role REVIEWER: adds a reviewer (repository write, or the author).
pub(crate) async fn add_reviewer(state: &AppState, repo: &Repo, actor: &Actor<'_>, number: i64, name: &str) -> Result<(PullRequest, Participant)> {
    let _lock = state.prs.lock(repo.id).await;
    let pr = get(state, repo, number).await?;
    if pr.author_id != actor.id() && actor.level < trove_store::Permission::Write {
        return Err(PrError::Forbidden("change this pull request's reviewers".into()));
    }
    if pr.state != PrState::Open {
        return Err(not_open(&pr, "changed"));
    }
    let (repo2, author, names) = (repo.clone(), pr.author_id, vec![name.to_owned()]);
    let ids = state.store.run(move |s| reviewers(s, &repo2, author, &names)).await?;
    let uid = ids[0];
    let mut p = pr.participant(uid).cloned().unwrap_or(Participant {
        user_id: uid,
        role: Role::Reviewer,
        status: ReviewStatus::Unapproved,
        last_reviewed_commit: None,
    });
    if p.role == Role::Reviewer && pr.participant(uid).is_some() {
        return Ok((pr, p));
    }
    p.role = Role::Reviewer;
    let change = PrChange { upsert_participants: vec![p.clone()], bump_version: true, ..PrChange::default() };
    let act = vec![NewActivity::new(actor.id(), "UPDATED", json!({"addedReviewers": [uid], "removedReviewers": []}).to_string())];
    let id = pr.id;
    let pr = versioned(update_pr_events(state, repo, id, None, change, act).await?, number, None)?;
    Ok((pr, p))
}

/// `DELETE …/participants/{slug}`: the reviewer becomes a participant.
pub(crate) async fn remove_reviewer(state: &AppState, repo: &Repo, actor: &Actor<'_>, number: i64, user: &User) -> Result<()> {
    let _lock = state.prs.lock(repo.id).await;
    let pr = get(state, repo, number).await?;
    if pr.author_id != actor.id() && actor.level < trove_store::Permission::Write && user.id != actor.id() {
        return Err(PrError::Forbidden("change this pull request's reviewers".into()));
    }
    let Some(mut p) = pr.participant(user.id).cloned().filter(|p| p.role == Role::Reviewer) else { return Ok(()) };
    p.role = Role::Participant;
    let change = PrChange { upsert_participants: vec![p], bump_version: true, ..PrChange::default() };
    let act = vec![NewActivity::new(actor.id(), "UPDATED", json!({"addedReviewers": [], "removedReviewers": [user.id]}).to_string())];
    let id = pr.id;
    versioned(update_pr_events(state, repo, id, None, change, act).await?, number, None)?;
    Ok(())
}

/// `GET …/merge`: whether the pull request can merge now, and the vetoes if not.
pub(crate) struct MergeStatus {
    pub(crate) can_merge: bool,
    pub(crate) conflicted: bool,
    pub(crate) outcome: &'static str,
    pub(crate) vetoes: Vec<Veto>,
}

/// Brings an open pull request up to its branches (a rescope if they moved) and says whether
/// it can merge; with `who`, whether they could (their branch permissions on the target).
pub(crate) async fn merge_status(state: &AppState, repo: &Repo, number: i64, who: Option<&Authenticated>) -> Result<(PullRequest, MergeStatus)> {
    let _lock = state.prs.lock(repo.id).await;
    let pr = get(state, repo, number).await?;
    if pr.state != PrState::Open {
        return Err(PrError::Conflict {
            exception: "com.atlassian.bitbucket.pull.IllegalPullRequestStateException",
            message: format!("Pull request #{number} is {} and cannot merge.", pr.state.as_str().to_lowercase()),
        });
    }
    let pr = rescope_one(state, repo, pr, None).await?;
    let applying = match who {
        Some(w) => Some(Applying::load(state, repo, w.user.id).await?),
        None => None,
    };
    let status = check(state, repo, &pr, applying.as_ref()).await?;
    Ok((pr, status))
}

/// The merge checks; with `applying` (the caller's branch permissions), a restriction that
/// refuses the merge moving the target (`read-only`) is a veto too.
async fn check(state: &AppState, repo: &Repo, pr: &PullRequest, applying: Option<&Applying>) -> Result<MergeStatus> {
    let git = git_for(state, repo);
    let merge = git.check_merge(&pr.from_hash, &pr.to_hash).await?;
    let settings = {
        let repo = repo.clone();
        state.store.run(move |s| PrSettings::load(s, &repo)).await?
    };
    let mut vetoes = Vec::new();
    let conflicted = matches!(merge, MergeCheck::Conflicted { .. });
    if let MergeCheck::Conflicted { paths } = &merge {
        vetoes.push(Veto {
            summary: "This pull request has conflicts".into(),
            detail: format!(
                "Merging {} into {} conflicts in {}; merge {} into the source branch, resolve the conflicts and push.",
                display_ref(&pr.from_ref),
                display_ref(&pr.to_ref),
                paths.join(", "),
                display_ref(&pr.to_ref)
            ),
        });
    }
    let reviewers: Vec<&Participant> = pr.participants.iter().filter(|p| p.role == Role::Reviewer).collect();
    let approved = reviewers.iter().filter(|p| p.status == ReviewStatus::Approved).count() as i64;
    if settings.required_approvers > 0 && approved < settings.required_approvers {
        vetoes.push(Veto {
            summary: "Not all required reviewers have approved yet".into(),
            detail: format!(
                "Requires approvals from {} reviewer{}; {approved} so far.",
                settings.required_approvers,
                if settings.required_approvers == 1 { "" } else { "s" }
            ),
        });
    }
    if settings.required_all_approvers && reviewers.iter().any(|p| p.status != ReviewStatus::Approved) {
        vetoes.push(Veto {
            summary: "Not all reviewers have approved yet".into(),
            detail: "Every reviewer must approve this pull request before it can be merged.".into(),
        });
    }
    // The merge moves the target forward, through a pull request: only read-only refuses that.
    for kind in applying.map(|a| a.refusing(&pr.to_ref, RefChange::FastForward, true)).unwrap_or_default() {
        vetoes.push(Veto {
            summary: "Branch restriction".into(),
            detail: format!("{} You may not merge into it. {CHECK_CONFIGURATION}", refusal(kind, &pr.to_ref)),
        });
    }
    if settings.required_no_needs_work {
        let marked: Vec<i64> = reviewers.iter().filter(|p| p.status == ReviewStatus::NeedsWork).map(|p| p.user_id).collect();
        if !marked.is_empty() {
            let names = state
                .store
                .run(move |s| {
                    marked
                        .iter()
                        .map(|id| s.user_or_former(*id).map(|u| u.map_or_else(|| format!("user {id}"), |u| u.display_name)))
                        .collect::<Result<Vec<_>, _>>()
                })
                .await?;
            vetoes.push(Veto {
                summary: "Requires all reviewers to not have a Needs work status".into(),
                detail: format!("{} marked this pull request as needing work; it can merge once they approve or withdraw their review.", names.join(", ")),
            });
        }
    }
    if settings.required_all_tasks_complete {
        let id = pr.id;
        let open = state.store.run(move |s| s.comments(id)).await?.iter().filter(|c| c.severity == "BLOCKER" && c.state == "OPEN").count();
        if open > 0 {
            vetoes.push(Veto {
                summary: "Not all tasks have been resolved".into(),
                detail: format!("{open} open task{} must be resolved before merging.", if open == 1 { "" } else { "s" }),
            });
        }
    }
    vetoes.extend(build_vetoes(state, repo, pr, settings.required_successful_builds).await?);
    Ok(MergeStatus { can_merge: vetoes.is_empty(), conflicted, outcome: outcome_of(&merge), vetoes })
}

/// The builds merge checks ([`crate::builds::merge_vetoes`]); the default branch is read only
/// when a condition names the branching model's development branch.
async fn build_vetoes(state: &AppState, repo: &Repo, pr: &PullRequest, minimum: i64) -> Result<Vec<Veto>> {
    let id = repo.id;
    let conditions = store(state, move |s| s.required_builds(id)).await?;
    if conditions.is_empty() && minimum <= 0 {
        return Ok(Vec::new());
    }
    let model = conditions.iter().any(|c| {
        let m = &c.condition;
        std::iter::once(&m.ref_matcher).chain(m.exempt_ref_matcher.as_ref()).any(|m| m.kind() == trove_store::MatcherType::ModelBranch)
    });
    let head = if model { crate::repo_read::Reader::new(state, state.store.repo_path(repo)).head().await.ok().flatten() } else { None };
    let (repo, pr) = (repo.clone(), pr.clone());
    store(state, move |s| crate::builds::merge_vetoes(s, &repo, &pr, &conditions, head.as_deref(), minimum)).await
}

/// What a caller sends to merge.
pub(crate) struct MergeAsk {
    pub(crate) version: Option<i64>,
    pub(crate) strategy: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) delete_source: bool,
}

/// `POST …/merge`: merges in the server with the strategy asked for (or the repository's
/// default), moving the target with a compare-and-swap; a push that moved the target first
/// makes this fail cleanly (409), and this makes such a push fail as non-fast-forward.
pub(crate) async fn merge(state: &AppState, repo: &Repo, actor: &Actor<'_>, number: i64, ask: MergeAsk) -> Result<PullRequest> {
    if actor.level < trove_store::Permission::Write {
        return Err(PrError::Forbidden("merge this pull request: merging needs write access to the repository".into()));
    }
    let lock = state.prs.lock(repo.id).await;
    let pr = get(state, repo, number).await?;
    check_version(&pr, ask.version)?;
    if pr.state != PrState::Open {
        return Err(not_open(&pr, "merged"));
    }
    let settings = {
        let repo = repo.clone();
        state.store.run(move |s| PrSettings::load(s, &repo)).await?
    };
    let strategy_id = ask.strategy.clone().unwrap_or_else(|| settings.default_strategy.clone());
    let strategy = Strategy::parse(&strategy_id).ok_or_else(|| PrError::Invalid {
        context: "strategyId",
        message: format!("{strategy_id:?} is not a merge strategy; use one of {}.", Strategy::ALL.iter().map(|s| s.id()).collect::<Vec<_>>().join(", ")),
    })?;
    if !settings.enabled(strategy) {
        return Err(PrError::Conflict {
            exception: "com.atlassian.bitbucket.pull.InvalidPullRequestMergeStrategyException",
            message: format!(
                "The merge strategy {strategy_id} is not enabled for this repository; enable it in the repository's pull-request settings or use {}.",
                settings.default_strategy
            ),
        });
    }
    // The branches may have moved since the pull request last looked.
    let before = pr.version;
    let pr = rescope_one(state, repo, pr, None).await?;
    if pr.state != PrState::Open {
        return Err(not_open(&pr, "merged"));
    }
    if ask.version.is_some() && pr.version != before {
        return Err(PrError::Stale { given: before, current: pr.version });
    }
    let applying = Applying::load(state, repo, actor.id()).await?;
    let status = check(state, repo, &pr, Some(&applying)).await?;
    if !status.vetoes.is_empty() {
        return Err(PrError::Vetoed(status.vetoes));
    }
    let project = repo.owner.to_string().to_ascii_uppercase();
    let (from_name, to_name) = (display_ref(&pr.from_ref), display_ref(&pr.to_ref));
    let body = ask.message.clone().filter(|m| !m.trim().is_empty()).or_else(|| pr.description.clone());
    let header = match strategy {
        Strategy::Squash | Strategy::SquashFfOnly => {
            format!("Pull request #{number}: {}\n\nMerge in {project}/{} from {from_name} to {to_name}", pr.title, repo.slug)
        }
        _ => format!("Merge pull request #{number} in {project}/{} from {from_name} to {to_name}", repo.slug),
    };
    let message = match body {
        Some(b) => format!("{header}\n\n{}", b.trim_end()),
        None => header,
    };
    let user = &actor.who.user;
    let author = Identity {
        name: Some(user.display_name.clone()).filter(|n| !n.is_empty()).unwrap_or_else(|| user.name.to_string()),
        email: user.email.clone().unwrap_or_else(|| format!("{}@trove.invalid", user.name)),
    };
    let git = git_for(state, repo);
    let req = MergeRequest { from: &pr.from_hash, to: &pr.to_hash, to_ref: &pr.to_ref, strategy, message: &message, author: &author };
    // Journaled before the target moves, with the source when it is to go: a crash between the
    // merge and its repo:refs_changed loses neither (`webhooks::ServerChange`).
    let mut refs = vec![(pr.to_ref.as_str(), Some(pr.to_hash.as_str()))];
    if ask.delete_source {
        refs.push((pr.from_ref.as_str(), Some(pr.from_hash.as_str())));
    }
    let journal = ServerChange::begin(state, repo.id, user.name.as_str(), &refs)
        .map_err(|e| PrGitError::Io { command: "(the merge's journal in git-home/pushes)".into(), source: e })?;
    let merged = match git.merge(&req).await {
        Ok(m) => m,
        Err(MergeError::Conflicted(paths)) => {
            journal.abandon();
            return Err(PrError::Vetoed(vec![Veto {
                summary: "This pull request has conflicts".into(),
                detail: format!("Merging conflicts in {}; resolve them on the source branch and push.", paths.join(", ")),
            }]));
        }
        Err(MergeError::NotFastForward) => {
            journal.abandon();
            return Err(PrError::Conflict {
                exception: "com.atlassian.bitbucket.scm.git.GitFastForwardOnlyMergeException",
                message: format!(
                    "The {} strategy needs {} to be fast-forwarded to {}, but {} has commits the source does not; rebase the source branch or use another strategy.",
                    strategy.id(),
                    to_name,
                    from_name,
                    to_name
                ),
            });
        }
        Err(MergeError::TargetMoved { .. }) => {
            journal.abandon();
            return Err(PrError::Conflict {
                exception: "com.atlassian.bitbucket.pull.PullRequestOutOfDateException",
                message: format!(
                    "{to_name} was changed by someone else while this pull request was merging; nothing was merged. Review the change and merge again."
                ),
            });
        }
        // Unknown whether the target moved: dropping the journal settles it from the refs.
        Err(MergeError::Git(e)) => return Err(e.into()),
    };
    let (now, merge_commit) = (now_ms(), merged.merge_commit.clone().unwrap_or_else(|| merged.commit.clone()));
    let change = PrChange {
        state: Some(PrState::Merged),
        closed_at: Some(Some(now)),
        merge_commit: Some(merge_commit.clone()),
        to_hash: Some(pr.to_hash.clone()),
        bump_version: true,
        ..PrChange::default()
    };
    let act = vec![NewActivity::new(actor.id(), "MERGED", json!({"commit": merge_commit, "strategy": strategy.id()}).to_string())];
    let id = pr.id;
    // The target has moved: the pull request is merged whatever else changed it meanwhile.
    let done = versioned(update_pr_events(state, repo, id, None, change, act).await?, number, None)?;
    drop_refs(&git, &done).await;
    let mut updates = vec![RefUpdate { name: pr.to_ref.clone(), old: pr.to_hash.clone(), new: merged.commit.clone() }];
    // Deleting the source obeys its branch permissions (read-only, no-deletes): a refused
    // delete is skipped, and the merge stands.
    let keep_source = applying.refusing(&pr.from_ref, RefChange::Delete, true);
    if ask.delete_source && !keep_source.is_empty() {
        tracing::info!(repo = %repo.display_path(), pr = number, branch = %pr.from_ref, restriction = %keep_source[0], "source branch kept after the merge: a branch permission forbids deleting it");
    }
    if ask.delete_source && keep_source.is_empty() && git.delete_ref(&pr.from_ref, &pr.from_hash).await.unwrap_or(false) {
        updates.push(RefUpdate { name: pr.from_ref.clone(), old: pr.from_hash.clone(), new: ZERO.to_owned() });
    }
    drop(lock);
    // The other pull requests on these branches are brought up to date before the answer, so
    // a client that merges one and then reads another sees it rescoped.
    let moved: Vec<String> = updates.iter().map(|u| u.name.clone()).collect();
    rescope_refs(state, repo, Some(actor.id()), &moved).await;
    let ev = PushEvent { repo_id: repo.id, repo: repo.display_path(), path: state.store.repo_path(repo), user: user.name.to_string(), updates };
    // The pull request's pr:merged is in the outbox already.
    journal.finish(ev).await;
    Ok(done)
}

/// Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Brings one open pull request up to where its branches are now: a source or target that
/// moved is a rescope (activity with the commits added and removed, approvals reset when the
/// settings say so, anchors moved, merge ref rewritten); a source now contained in the target
/// is merged; a deleted branch declines it. `user` is who moved the branch (the author when
/// unknown). Call with the repository's lock held.
async fn rescope_one(state: &AppState, repo: &Repo, pr: PullRequest, user: Option<i64>) -> Result<PullRequest> {
    let git = git_for(state, repo);
    let from = git.ref_commit(&pr.from_ref).await?;
    let to = git.ref_commit(&pr.to_ref).await?;
    let user = user.unwrap_or(pr.author_id);
    let (Some(from), Some(to)) = (from, to) else {
        // A branch of an open pull request was deleted: it is declined, as in Bitbucket.
        let change = PrChange { state: Some(PrState::Declined), closed_at: Some(Some(now_ms())), bump_version: true, ..PrChange::default() };
        let act = vec![NewActivity::new(user, "DECLINED", json!({"reason": "a branch of the pull request was deleted"}).to_string())];
        let id = pr.id;
        let done = versioned(update_pr_events(state, repo, id, None, change, act).await?, pr.number, None)?;
        drop_refs(&git, &done).await;
        return Ok(done);
    };
    if from == pr.from_hash && to == pr.to_hash {
        return Ok(pr);
    }
    if git.is_ancestor(&from, &to).await? {
        // Pushed to the target by hand: the source is in it, so the pull request is merged.
        let change = PrChange {
            state: Some(PrState::Merged),
            closed_at: Some(Some(now_ms())),
            from_hash: Some(from.clone()),
            to_hash: Some(to.clone()),
            bump_version: true,
            ..PrChange::default()
        };
        let act = vec![NewActivity::new(user, "MERGED", json!({"commit": Value::Null, "byPush": true}).to_string())];
        let id = pr.id;
        let done = versioned(update_pr_events(state, repo, id, None, change, act).await?, pr.number, None)?;
        drop_refs(&git, &done).await;
        return Ok(done);
    }
    let (added, added_total) = if from != pr.from_hash { git.commits_between(&pr.from_hash, &from, RESCOPE_COMMITS).await? } else { (Vec::new(), 0) };
    let (removed, removed_total) = if from != pr.from_hash { git.commits_between(&from, &pr.from_hash, RESCOPE_COMMITS).await? } else { (Vec::new(), 0) };
    let outcome = outcome_of(&git.check_merge(&from, &to).await?).to_owned();
    let settings = {
        let repo = repo.clone();
        state.store.run(move |s| PrSettings::load(s, &repo)).await?
    };
    let change = PrChange {
        from_hash: Some(from.clone()),
        to_hash: Some(to.clone()),
        merge_outcome: Some(Some(outcome)),
        reset_approvals: settings.unapprove_on_update && from != pr.from_hash,
        bump_version: true,
        ..PrChange::default()
    };
    let detail = json!({
        "fromHash": from, "previousFromHash": pr.from_hash, "toHash": to, "previousToHash": pr.to_hash,
        "added": {"commits": added, "total": added_total}, "removed": {"commits": removed, "total": removed_total},
    });
    let act = vec![NewActivity::new(user, "RESCOPED", detail.to_string())];
    // The refs first: whoever sees the rescoped pull request can fetch what it shows.
    refresh_refs(&git, &pr, &from, &to).await;
    // Then the comments, against the new commits: whoever sees the rescoped pull request sees
    // its comments where they now belong.
    let mut next = pr.clone();
    (next.from_hash, next.to_hash) = (from.clone(), to.clone());
    if let Err(e) = reanchor(state, repo, &next).await {
        tracing::warn!(error = %e, pr = pr.number, "cannot move the pull request's comments after a rescope");
    }
    let id = pr.id;
    let done = versioned(update_pr_events(state, repo, id, None, change, act).await?, pr.number, None)?;
    Ok(done)
}

/// After every accepted push (and every merge): rescopes each open pull request whose source
/// or target branch moved. Runs on its own task, in the background.
pub(crate) fn after_push(state: AppState, ev: Arc<PushEvent>) {
    let tasks = state.tasks.clone();
    tasks.spawn(async move {
        let heads: Vec<String> = ev.updates.iter().filter(|u| u.name.starts_with("refs/heads/")).map(|u| u.name.clone()).collect();
        if heads.is_empty() {
            return;
        }
        let (repo_id, user) = (ev.repo_id, ev.user.clone());
        let found = state
            .store
            .run(move |s| {
                let repo = s.repo_by_id(repo_id)?;
                let user = UserName::parse(&user).ok().map(|n| s.user(&n)).transpose()?.flatten().map(|u| u.id);
                Ok::<_, StoreError>((repo, user))
            })
            .await;
        match found {
            Ok((Some(repo), user)) => rescope_refs(&state, &repo, user, &heads).await,
            Ok((None, _)) => {}
            Err(e) => tracing::warn!(error = %e, repo = %ev.repo, "cannot rescope pull requests after a push"),
        }
    });
}

/// Rescopes every open pull request of `repo` whose source or target is one of `refs`.
async fn rescope_refs(state: &AppState, repo: &Repo, user: Option<i64>, refs: &[String]) {
    let _lock = state.prs.lock(repo.id).await;
    let mut seen = std::collections::HashSet::new();
    for name in refs {
        let (id, name) = (repo.id, name.clone());
        let open = match state.store.run(move |s| s.open_prs_on_ref(id, &name)).await {
            Ok(o) => o,
            Err(e) => return tracing::warn!(error = %e, repo = %repo.display_path(), "cannot rescope pull requests"),
        };
        for pr in open {
            if !seen.insert(pr.id) {
                continue;
            }
            let number = pr.number;
            if let Err(e) = rescope_one(state, repo, pr, user).await {
                tracing::warn!(error = %e, repo = %repo.display_path(), pr = number, "cannot rescope a pull request");
            }
        }
    }
}

// ---- comments ----

/// Where a comment sits in the diff, as Bitbucket's `anchor` (and `lineText`, ours, to find the
/// line again after a rescope).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Anchor {
    pub(crate) path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) src_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) line_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) file_type: Option<String>,
    pub(crate) diff_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) from_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) to_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) line_text: Option<String>,
}

/// The lines of one file's diff: `(type, source line, destination line, text)`.
async fn diff_lines(git: &GitRepo, pr: &PullRequest, path: &str, src_path: Option<&str>) -> Result<Vec<(String, u32, u32, String)>> {
    let base = git.merge_base(&pr.to_hash, &pr.from_hash).await?.unwrap_or_else(|| pr.to_hash.clone());
    let opts = DiffOptions { context_lines: Some(10), path: Some(path.to_owned()), src_path: src_path.map(str::to_owned), ..DiffOptions::default() };
    let diff = git.diff(&base, &pr.from_hash, &opts).await?;
    Ok(diff.lines())
}

fn find_line(lines: &[(String, u32, u32, String)], a: &Anchor) -> Option<(String, u32, u32, String)> {
    let (line, ty) = (a.line?, a.line_type.as_deref()?);
    let from_side = a.file_type.as_deref() == Some("FROM") || ty == "REMOVED";
    lines.iter().find(|(t, s, d, _)| t == ty && if from_side { *s == line } else { *d == line }).cloned()
}

/// A new comment's text and place.
pub(crate) struct NewCommentAsk {
    pub(crate) text: String,
    pub(crate) parent: Option<i64>,
    pub(crate) anchor: Option<Anchor>,
    pub(crate) severity: String,
}

/// Adds a comment (general, on a file, on a line of the diff, or a reply).
pub(crate) async fn add_comment(state: &AppState, repo: &Repo, actor: &Actor<'_>, number: i64, ask: NewCommentAsk) -> Result<Comment> {
    let pr = get(state, repo, number).await?;
    if ask.text.trim().is_empty() {
        return Err(PrError::Invalid { context: "text", message: "A comment needs some text.".into() });
    }
    if !matches!(ask.severity.as_str(), "NORMAL" | "BLOCKER") {
        return Err(PrError::Invalid { context: "severity", message: format!("{:?} is not a severity; use NORMAL or BLOCKER.", ask.severity) });
    }
    let mut anchor = ask.anchor;
    if let Some(parent) = ask.parent {
        let p = state.store.run(move |s| s.comment(parent)).await?;
        match p {
            Some(p) if p.pr_id == pr.id => anchor = None,
            _ => return Err(PrError::Invalid { context: "parent", message: format!("Comment {parent} is not a comment on this pull request.") }),
        }
    }
    if let Some(a) = anchor.as_mut() {
        if !crate::repo_read::valid_path(a.path.trim_matches('/')) || a.path.trim_matches('/').is_empty() {
            return Err(PrError::Invalid { context: "anchor.path", message: format!("{:?} is not a path in this repository.", a.path) });
        }
        a.path = a.path.trim_matches('/').to_owned();
        if a.diff_type.is_empty() {
            a.diff_type = "EFFECTIVE".into();
        }
        a.from_hash = Some(a.from_hash.clone().unwrap_or_else(|| pr.to_hash.clone()));
        a.to_hash = Some(a.to_hash.clone().unwrap_or_else(|| pr.from_hash.clone()));
        if a.line.is_some() {
            let ty = a.line_type.clone().unwrap_or_else(|| "CONTEXT".into());
            if !matches!(ty.as_str(), "ADDED" | "REMOVED" | "CONTEXT") {
                return Err(PrError::Invalid { context: "anchor.lineType", message: format!("{ty:?} is not a line type; use ADDED, REMOVED or CONTEXT.") });
            }
            a.line_type = Some(ty.clone());
            let ft = a.file_type.clone().unwrap_or_else(|| if ty == "REMOVED" { "FROM".into() } else { "TO".into() });
            if !matches!(ft.as_str(), "FROM" | "TO") {
                return Err(PrError::Invalid { context: "anchor.fileType", message: format!("{ft:?} is not a file type; use FROM or TO.") });
            }
            a.file_type = Some(ft);
            let git = git_for(state, repo);
            let lines = diff_lines(&git, &pr, &a.path, a.src_path.as_deref()).await?;
            let found = find_line(&lines, a).ok_or_else(|| PrError::Invalid {
                context: "anchor.line",
                message: format!("Line {} ({ty}) of {} is not in this pull request's diff; comment on a line the diff shows.", a.line.unwrap_or(0), a.path),
            })?;
            a.line_text = Some(found.3);
        }
    }
    let anchor_json = anchor.as_ref().map(|a| serde_json::to_string(a).unwrap_or_default());
    let action = if ask.parent.is_some() { "REPLIED" } else { "ADDED" };
    let new = NewComment { pr_id: pr.id, parent_id: ask.parent, author_id: actor.id(), text: ask.text, severity: ask.severity, anchor: anchor_json };
    let act = NewActivity::new(actor.id(), "COMMENTED", json!({"commentAction": action}).to_string());
    let (st, repo2, who) = (state.clone(), repo.clone(), actor.id());
    let c = store(state, move |s| {
        let users = pr.participants.iter().map(|p| p.user_id).chain([who]);
        match crate::webhooks::PrEvents::load(&st, s, &repo2, users)? {
            Some(ev) => s.insert_comment_with_events(&new, &act, &|c| ev.comment_event("pr:comment:added", &pr, c, who, None)),
            None => s.insert_comment(&new, &act),
        }
    })
    .await?;
    state.webhooks.wake();
    Ok(c)
}

/// The comment `id` of pull request `pr`.
pub(crate) async fn comment_of(state: &AppState, pr: &PullRequest, id: i64) -> Result<Comment> {
    let c = state.store.run(move |s| s.comment(id)).await?;
    c.filter(|c| c.pr_id == pr.id).ok_or_else(|| PrError::Conflict {
        exception: "com.atlassian.bitbucket.comment.NoSuchCommentException",
        message: format!("Comment {id} does not exist on this pull request."),
    })
}

/// Edits a comment: its text only by its author; severity and state (resolving a task) by
/// anyone who may comment.
pub(crate) async fn edit_comment(
    state: &AppState,
    repo: &Repo,
    actor: &Actor<'_>,
    number: i64,
    id: i64,
    version: i64,
    change: CommentChange,
) -> Result<Comment> {
    let pr = get(state, repo, number).await?;
    let c = comment_of(state, &pr, id).await?;
    if change.text.as_ref().is_some_and(|t| *t != c.text) && c.author_id != actor.id() {
        return Err(PrError::Forbidden("edit another user's comment".into()));
    }
    if change.text.as_ref().is_some_and(|t| t.trim().is_empty()) {
        return Err(PrError::Invalid { context: "text", message: "A comment needs some text.".into() });
    }
    if let Some(s) = &change.severity
        && !matches!(s.as_str(), "NORMAL" | "BLOCKER")
    {
        return Err(PrError::Invalid { context: "severity", message: format!("{s:?} is not a severity; use NORMAL or BLOCKER.") });
    }
    if let Some(s) = &change.state
        && !matches!(s.as_str(), "OPEN" | "RESOLVED")
    {
        return Err(PrError::Invalid { context: "state", message: format!("{s:?} is not a comment state; use OPEN or RESOLVED.") });
    }
    let act = NewActivity { comment_id: Some(id), ..NewActivity::new(actor.id(), "COMMENTED", json!({"commentAction": "EDITED"}).to_string()) };
    let (st, repo2, who, pr2, before) = (state.clone(), repo.clone(), actor.id(), pr.clone(), c.clone());
    let r = store(state, move |s| {
        let users = pr2.participants.iter().map(|p| p.user_id).chain([who, before.author_id]);
        match crate::webhooks::PrEvents::load(&st, s, &repo2, users)? {
            Some(ev) => {
                s.update_comment_with_events(id, version, &change, Some(&act), &|c| ev.comment_event("pr:comment:edited", &pr2, c, who, Some(&before.text)))
            }
            None => s.update_comment(id, version, &change, Some(&act)),
        }
    })
    .await?;
    state.webhooks.wake();
    match r {
        Versioned::Done(c) => Ok(c),
        Versioned::Stale(current) => Err(PrError::Conflict {
            exception: "com.atlassian.bitbucket.comment.CommentOutOfDateException",
            message: format!(
                "You are attempting to modify a comment based on out-of-date information (you sent version {version}, it is at version {current}); reload it and try again."
            ),
        }),
        Versioned::Gone => comment_of(state, &pr, id).await,
    }
}

/// Deletes a comment without replies: its author, or a repository admin.
pub(crate) async fn delete_comment(state: &AppState, repo: &Repo, actor: &Actor<'_>, number: i64, id: i64, version: i64) -> Result<()> {
    let pr = get(state, repo, number).await?;
    let c = comment_of(state, &pr, id).await?;
    if c.author_id != actor.id() && actor.level < trove_store::Permission::Admin {
        return Err(PrError::Forbidden("delete another user's comment".into()));
    }
    let snapshot = json!({"commentAction": "DELETED", "text": c.text, "author": c.author_id});
    let act = NewActivity { comment_id: Some(id), ..NewActivity::new(actor.id(), "COMMENTED", snapshot.to_string()) };
    let (st, repo2, who, pr2) = (state.clone(), repo.clone(), actor.id(), pr.clone());
    let deleted = store(state, move |s| {
        let users = pr2.participants.iter().map(|p| p.user_id).chain([who, c.author_id]);
        let events =
            crate::webhooks::PrEvents::load(&st, s, &repo2, users)?.map(|ev| ev.comment_event("pr:comment:deleted", &pr2, &c, who, None)).unwrap_or_default();
        s.delete_comment_with_events(id, version, Some(&act), &events)
    })
    .await?;
    state.webhooks.wake();
    match deleted {
        CommentDelete::Deleted | CommentDelete::Gone => Ok(()),
        CommentDelete::HasReplies => Err(PrError::Conflict {
            exception: "com.atlassian.bitbucket.comment.CommentDeletionException",
            message: "This comment has replies and cannot be deleted; delete the replies first.".into(),
        }),
        CommentDelete::Stale(current) => Err(PrError::Conflict {
            exception: "com.atlassian.bitbucket.comment.CommentOutOfDateException",
            message: format!(
                "You are attempting to delete a comment based on out-of-date information (you sent version {version}, it is at version {current}); reload it and try again."
            ),
        }),
    }
}

/// After a rescope: each line comment stays on its line when the line is still there with
/// the same text, moves to where that text now is in the file's diff, or is marked orphaned.
async fn reanchor(state: &AppState, repo: &Repo, pr: &PullRequest) -> Result<()> {
    let id = pr.id;
    let comments = state.store.run(move |s| s.comments(id)).await?;
    let git = git_for(state, repo);
    let mut by_path: HashMap<String, Vec<(String, u32, u32, String)>> = HashMap::new();
    let mut moves = Vec::new();
    for c in comments.iter().filter(|c| !c.orphaned) {
        let Some(mut a) = c.anchor.as_deref().and_then(|t| serde_json::from_str::<Anchor>(t).ok()) else { continue };
        if a.line.is_none() {
            continue;
        }
        if !by_path.contains_key(&a.path) {
            let lines = diff_lines(&git, pr, &a.path, a.src_path.as_deref()).await.unwrap_or_default();
            by_path.insert(a.path.clone(), lines);
        }
        let lines = &by_path[&a.path];
        let same = find_line(lines, &a).is_some_and(|l| Some(&l.3) == a.line_text.as_ref());
        let (from_side, ty) = (a.file_type.as_deref() == Some("FROM"), a.line_type.clone().unwrap_or_default());
        let moved = if same { None } else { lines.iter().find(|(t, _, _, text)| *t == ty && Some(text) == a.line_text.as_ref()).cloned() };
        a.from_hash = Some(pr.to_hash.clone());
        a.to_hash = Some(pr.from_hash.clone());
        let orphaned = match (same, moved) {
            (true, _) => false,
            (false, Some((_, s, d, _))) => {
                a.line = Some(if from_side { s } else { d });
                false
            }
            (false, None) => true,
        };
        moves.push((c.id, serde_json::to_string(&a).unwrap_or_default(), orphaned));
    }
    if !moves.is_empty() {
        state.store.run(move |s| s.set_comment_anchors(&moves)).await?;
    }
    Ok(())
}
