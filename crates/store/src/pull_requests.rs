//! Pull requests: their rows, reviewers and participants, the activity log, comments, and each
//! repository's pull-request settings.
//!
//! A backend keeps rows and makes each change atomic: a change and the activity that records it
//! are written in one transaction, and a change that names a `version` is applied only while
//! the row still has it (optimistic locking, as Bitbucket's `version` fields). What a change
//! means (who may make it, what git says about it, the JSON it becomes) is the server's.
//!
//! The `*_with_events` forms also write webhook events ([`crate::Webhooks`]) in the change's
//! transaction: an event is never lost after its change, nor sent for a change that failed.
//!
//! Times are Unix milliseconds, as Bitbucket's REST API shows them. Ids of pull requests are
//! per repository (`number`, Bitbucket's `id`); every other id is global.

use crate::error::StoreError;
use crate::webhooks::{NewEvent, Render};

/// A pull request's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrState {
    Open,
    Declined,
    Merged,
}

impl PrState {
    pub fn as_str(self) -> &'static str {
        match self {
            PrState::Open => "OPEN",
            PrState::Declined => "DECLINED",
            PrState::Merged => "MERGED",
        }
    }

    pub fn parse(s: &str) -> Option<PrState> {
        match s {
            "OPEN" => Some(PrState::Open),
            "DECLINED" => Some(PrState::Declined),
            "MERGED" => Some(PrState::Merged),
            _ => None,
        }
    }
}

/// What a participant is to a pull request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Author,
    Reviewer,
    Participant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Author => "AUTHOR",
            Role::Reviewer => "REVIEWER",
            Role::Participant => "PARTICIPANT",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "AUTHOR" => Some(Role::Author),
            "REVIEWER" => Some(Role::Reviewer),
            "PARTICIPANT" => Some(Role::Participant),
            _ => None,
        }
    }
}

/// A participant's review status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReviewStatus {
    Unapproved,
    NeedsWork,
    Approved,
}

impl ReviewStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Unapproved => "UNAPPROVED",
            ReviewStatus::NeedsWork => "NEEDS_WORK",
            ReviewStatus::Approved => "APPROVED",
        }
    }

    pub fn parse(s: &str) -> Option<ReviewStatus> {
        match s {
            "UNAPPROVED" => Some(ReviewStatus::Unapproved),
            "NEEDS_WORK" => Some(ReviewStatus::NeedsWork),
            "APPROVED" => Some(ReviewStatus::Approved),
            _ => None,
        }
    }
}

/// One user's part in a pull request. The author is a participant with [`Role::Author`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub user_id: i64,
    pub role: Role,
    pub status: ReviewStatus,
    pub last_reviewed_commit: Option<String>,
}

/// A pull request as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// The row's global id (internal; not shown).
    pub id: i64,
    /// The target repository.
    pub repo_id: i64,
    /// Bitbucket's `id`: 1, 2, … per repository, never reused.
    pub number: i64,
    pub title: String,
    pub description: Option<String>,
    pub author_id: i64,
    /// The source repository: the target itself until forks land.
    pub from_repo_id: i64,
    /// Full ref names (`refs/heads/feature`).
    pub from_ref: String,
    pub to_ref: String,
    /// The commits the refs pointed at when the pull request last saw them.
    pub from_hash: String,
    pub to_hash: String,
    pub state: PrState,
    /// Rises on every change to the pull request itself (not on comments).
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub closed_at: Option<i64>,
    /// The commit the target moved to when the pull request merged.
    pub merge_commit: Option<String>,
    /// What the last merge check found: `CLEAN`, `CONFLICTED`, or `None` while unknown.
    pub merge_outcome: Option<String>,
    /// Reviewers and participants, the author first, then in the order they joined.
    pub participants: Vec<Participant>,
}

impl PullRequest {
    pub fn participant(&self, user_id: i64) -> Option<&Participant> {
        self.participants.iter().find(|p| p.user_id == user_id)
    }
}

/// A pull request to create ([`PullRequests::insert_pr`]); its number is the repository's next.
#[derive(Debug, Clone)]
pub struct NewPullRequest {
    pub repo_id: i64,
    pub from_repo_id: i64,
    pub title: String,
    pub description: Option<String>,
    pub author_id: i64,
    pub from_ref: String,
    pub to_ref: String,
    pub from_hash: String,
    pub to_hash: String,
    /// Reviewers (not the author, no duplicates).
    pub reviewers: Vec<i64>,
    pub merge_outcome: Option<String>,
}

/// One entry of a pull request's activity log. `detail` is JSON the server writes and reads
/// (the commits of a rescope, the reviewers an update added); the store does not look inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub id: i64,
    pub pr_id: i64,
    pub created_at: i64,
    pub user_id: i64,
    /// Bitbucket's action: `OPENED`, `COMMENTED`, `RESCOPED`, ….
    pub action: String,
    /// For `COMMENTED`, the comment.
    pub comment_id: Option<i64>,
    pub detail: String,
}

/// An activity to record with a change, in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewActivity {
    pub user_id: i64,
    pub action: String,
    pub comment_id: Option<i64>,
    pub detail: String,
}

impl NewActivity {
    pub fn new(user_id: i64, action: &str, detail: String) -> NewActivity {
        NewActivity { user_id, action: action.to_owned(), comment_id: None, detail }
    }
}

/// What one change sets; `None` leaves a field as it is. Participants are upserted by user
/// (a new one joins last) and removed by user.
#[derive(Debug, Clone, Default)]
pub struct PrChange {
    pub title: Option<String>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
    pub to_ref: Option<String>,
    pub from_hash: Option<String>,
    pub to_hash: Option<String>,
    pub state: Option<PrState>,
    /// `Some(None)` clears it (reopen).
    pub closed_at: Option<Option<i64>>,
    pub merge_commit: Option<String>,
    /// `Some(None)`: unknown again.
    pub merge_outcome: Option<Option<String>>,
    pub upsert_participants: Vec<Participant>,
    pub remove_participants: Vec<i64>,
    /// Every reviewer's and participant's status back to UNAPPROVED (a rescope, when the
    /// repository's settings say so).
    pub reset_approvals: bool,
    /// Whether the change raises `version` and `updated_at`. A merge check's outcome alone
    /// does not.
    pub bump_version: bool,
}

/// The result of a change that names a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Versioned<T> {
    Done(T),
    /// The row has another version (given): someone changed it since the caller read it.
    Stale(i64),
    /// The row does not exist (any more).
    Gone,
}

/// Which pull requests [`PullRequests::prs`] lists. Newest first unless `oldest_first`.
#[derive(Debug, Clone, Default)]
pub struct PrQuery {
    /// One repository (the target's); `None` for every repository (the dashboard).
    pub repo_id: Option<i64>,
    /// Only these states; empty for all.
    pub states: Vec<PrState>,
    /// Only pull requests whose target (`to_ref`) is this ref.
    pub to_ref: Option<String>,
    /// Only pull requests whose source (`from_ref`) is this ref.
    pub from_ref: Option<String>,
    /// Only pull requests in which each of these users takes part (with the role and status,
    /// when given).
    pub participants: Vec<ParticipantFilter>,
    pub oldest_first: bool,
    /// Order by `updated_at` instead of `created_at` (the dashboard).
    pub by_update: bool,
    /// Closed at or after this time (for closed ones; open ones always pass).
    pub closed_since: Option<i64>,
    pub start: usize,
    pub limit: usize,
}

#[derive(Debug, Clone, Default)]
pub struct ParticipantFilter {
    pub user_id: i64,
    pub role: Option<Role>,
    /// Any of these statuses; empty for any.
    pub statuses: Vec<ReviewStatus>,
}

/// A comment's place in the diff, as JSON the server writes (Bitbucket's `anchor`); `None` on
/// the comment for a general one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub id: i64,
    pub pr_id: i64,
    pub parent_id: Option<i64>,
    pub author_id: i64,
    pub text: String,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// `NORMAL` or `BLOCKER` (a task).
    pub severity: String,
    /// `OPEN` or `RESOLVED`.
    pub state: String,
    pub anchor: Option<String>,
    /// The anchor's line is no longer in the pull request's diff.
    pub orphaned: bool,
}

#[derive(Debug, Clone)]
pub struct NewComment {
    pub pr_id: i64,
    pub parent_id: Option<i64>,
    pub author_id: i64,
    pub text: String,
    pub severity: String,
    pub anchor: Option<String>,
}

/// What an edit of a comment sets; `None` leaves it.
#[derive(Debug, Clone, Default)]
pub struct CommentChange {
    pub text: Option<String>,
    pub severity: Option<String>,
    pub state: Option<String>,
}

/// Why a comment could not be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommentDelete {
    Deleted,
    HasReplies,
    Stale(i64),
    Gone,
}

/// Why a pull request could not be created.
// One value per creation, moved once: boxing the row would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrInsert {
    Created(PullRequest),
    /// An open pull request between the same refs exists: its number.
    Duplicate(i64),
}

/// One count per asked id (each once, in the order asked), zero for those without comments:
/// [`PullRequests::comment_counts`] from a backend's counts of those that have some.
pub(crate) fn each_count(pr_ids: &[i64], counts: &std::collections::HashMap<i64, i64>) -> Vec<(i64, i64)> {
    let mut seen = std::collections::HashSet::new();
    pr_ids.iter().filter(|id| seen.insert(**id)).map(|id| (*id, counts.get(id).copied().unwrap_or(0))).collect()
}

/// The rows of pull requests.
pub trait PullRequests {
    /// Creates a pull request with the repository's next number, its author and reviewers as
    /// participants and an `OPENED` activity, in one transaction. Refused (nothing written)
    /// while an open one goes from the same ref to the same ref.
    fn insert_pr(&self, new: &NewPullRequest) -> Result<PrInsert, StoreError> {
        self.insert_pr_with_events(new, &|_| Vec::new())
    }
    /// [`PullRequests::insert_pr`], with the webhook events `events` renders from the new pull
    /// request written in the same transaction.
    fn insert_pr_with_events(&self, new: &NewPullRequest, events: Render<'_, PullRequest>) -> Result<PrInsert, StoreError>;
    /// Pull request `number` of repository `repo_id`.
    fn pr(&self, repo_id: i64, number: i64) -> Result<Option<PullRequest>, StoreError>;
    fn pr_by_id(&self, id: i64) -> Result<Option<PullRequest>, StoreError>;
    /// One page of what `q` asks, and whether more follow.
    fn prs(&self, q: &PrQuery) -> Result<(Vec<PullRequest>, bool), StoreError>;
    /// The open pull requests of repository `repo_id` whose source or target is `full_ref`.
    fn open_prs_on_ref(&self, repo_id: i64, full_ref: &str) -> Result<Vec<PullRequest>, StoreError>;
    /// Applies `change` and appends `activities`, in one transaction, if the row's version is
    /// `version` (any version for `None`).
    fn update_pr(&self, id: i64, version: Option<i64>, change: &PrChange, activities: &[NewActivity]) -> Result<Versioned<PullRequest>, StoreError> {
        self.update_pr_with_events(id, version, change, activities, &|_| Vec::new())
    }
    /// [`PullRequests::update_pr`], with the webhook events `events` renders from the pull
    /// request as the change left it, in the same transaction.
    fn update_pr_with_events(
        &self,
        id: i64,
        version: Option<i64>,
        change: &PrChange,
        activities: &[NewActivity],
        events: Render<'_, PullRequest>,
    ) -> Result<Versioned<PullRequest>, StoreError>;
    /// Deletes the pull request with its participants, activities and comments, if its
    /// version is `version`.
    fn delete_pr(&self, id: i64, version: Option<i64>) -> Result<Versioned<()>, StoreError> {
        self.delete_pr_with_events(id, version, &[])
    }
    /// [`PullRequests::delete_pr`], writing `events` in the same transaction if it deletes.
    fn delete_pr_with_events(&self, id: i64, version: Option<i64>, events: &[NewEvent]) -> Result<Versioned<()>, StoreError>;
    /// The activity log, newest first.
    fn activities(&self, pr_id: i64) -> Result<Vec<Activity>, StoreError>;

    /// Adds a comment and its `COMMENTED` activity (`activity.comment_id` is filled in) in one
    /// transaction.
    fn insert_comment(&self, new: &NewComment, activity: &NewActivity) -> Result<Comment, StoreError> {
        self.insert_comment_with_events(new, activity, &|_| Vec::new())
    }
    /// [`PullRequests::insert_comment`], with the events `events` renders from the new comment.
    fn insert_comment_with_events(&self, new: &NewComment, activity: &NewActivity, events: Render<'_, Comment>) -> Result<Comment, StoreError>;
    fn comment(&self, id: i64) -> Result<Option<Comment>, StoreError>;
    /// Every comment of a pull request, replies included, oldest first.
    fn comments(&self, pr_id: i64) -> Result<Vec<Comment>, StoreError>;
    /// How many comments each of `pr_ids` has.
    fn comment_counts(&self, pr_ids: &[i64]) -> Result<Vec<(i64, i64)>, StoreError>;
    /// Edits a comment if its version is `version`, raising it, with `activity` (when given)
    /// in the same transaction.
    fn update_comment(&self, id: i64, version: i64, change: &CommentChange, activity: Option<&NewActivity>) -> Result<Versioned<Comment>, StoreError> {
        self.update_comment_with_events(id, version, change, activity, &|_| Vec::new())
    }
    /// [`PullRequests::update_comment`], with the events `events` renders from the edited comment.
    fn update_comment_with_events(
        &self,
        id: i64,
        version: i64,
        change: &CommentChange,
        activity: Option<&NewActivity>,
        events: Render<'_, Comment>,
    ) -> Result<Versioned<Comment>, StoreError>;
    /// Deletes a comment without replies if its version is `version`.
    fn delete_comment(&self, id: i64, version: i64, activity: Option<&NewActivity>) -> Result<CommentDelete, StoreError> {
        self.delete_comment_with_events(id, version, activity, &[])
    }
    /// [`PullRequests::delete_comment`], writing `events` in the same transaction if it deletes.
    fn delete_comment_with_events(&self, id: i64, version: i64, activity: Option<&NewActivity>, events: &[NewEvent]) -> Result<CommentDelete, StoreError>;
    /// Moves anchors after a rescope: each `(comment id, new anchor JSON, orphaned)`.
    fn set_comment_anchors(&self, anchors: &[(i64, String, bool)]) -> Result<(), StoreError>;

    /// Whether `user_id` watches the pull request, and setting it.
    fn set_watch(&self, pr_id: i64, user_id: i64, watching: bool) -> Result<(), StoreError>;
    fn watchers(&self, pr_id: i64) -> Result<Vec<i64>, StoreError>;

    /// A repository's pull-request settings as the server's JSON; `None` when never set.
    fn pr_settings(&self, repo_id: i64) -> Result<Option<String>, StoreError>;
    fn set_pr_settings(&self, repo_id: i64, json: &str) -> Result<(), StoreError>;
    /// A project's pull-request settings (JSON), which its repositories without their own inherit.
    fn project_pr_settings(&self, project_id: i64) -> Result<Option<String>, StoreError>;
    fn set_project_pr_settings(&self, project_id: i64, json: &str) -> Result<(), StoreError>;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::backends;
    use crate::{GlobalPermission, Owner, Password, ProjectKey, Repo, RepoSlug, Store, User, UserName};

    struct Fixture {
        dir: tempfile::TempDir,
        s: Store,
        alice: User,
        bob: User,
        carol: User,
        repo: Repo,
        other: Repo,
    }

    fn fixture() -> Fixture {
        let (dir, s) = backends::store();
        let user = |n: &str| s.create_user(&UserName::parse(n).unwrap(), &Password::new("password1").unwrap(), GlobalPermission::LicensedUser).unwrap();
        let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
        let key = ProjectKey::parse("TP").unwrap();
        s.create_project(&key, None, false).unwrap();
        let owner = Owner::Project(key);
        let repo = s.create_repo(&owner, &RepoSlug::parse("r").unwrap(), false).unwrap();
        let other = s.create_repo(&owner, &RepoSlug::parse("other").unwrap(), false).unwrap();
        Fixture { dir, s, alice, bob, carol, repo, other }
    }

    fn new_pr(repo: &Repo, author: &User, from: &str, to: &str, reviewers: &[&User]) -> NewPullRequest {
        NewPullRequest {
            repo_id: repo.id,
            from_repo_id: repo.id,
            title: format!("{from} into {to}"),
            description: Some("why".into()),
            author_id: author.id,
            from_ref: format!("refs/heads/{from}"),
            to_ref: format!("refs/heads/{to}"),
            from_hash: "a".repeat(40),
            to_hash: "b".repeat(40),
            reviewers: reviewers.iter().map(|u| u.id).collect(),
            merge_outcome: None,
        }
    }

    fn create(s: &Store, new: &NewPullRequest) -> PullRequest {
        match s.insert_pr(new).unwrap() {
            PrInsert::Created(pr) => pr,
            PrInsert::Duplicate(n) => panic!("refused as a duplicate of #{n}"),
        }
    }

    fn done<T: std::fmt::Debug>(v: Versioned<T>) -> T {
        match v {
            Versioned::Done(t) => t,
            other => panic!("not done: {other:?}"),
        }
    }

    fn roles(pr: &PullRequest) -> Vec<(i64, Role, ReviewStatus)> {
        pr.participants.iter().map(|p| (p.user_id, p.role, p.status)).collect()
    }

    fn decline() -> PrChange {
        PrChange { state: Some(PrState::Declined), closed_at: Some(Some(crate::store::now_ms())), bump_version: true, ..Default::default() }
    }

    #[test]
    pub(crate) fn numbers_count_per_repository_from_one_and_are_never_reused_after_a_delete() {
        let f = fixture();
        let s = &f.s;
        let one = create(s, &new_pr(&f.repo, &f.alice, "one", "main", &[&f.carol, &f.bob]));
        assert_eq!((one.number, one.version, one.state, one.repo_id), (1, 0, PrState::Open, f.repo.id));
        assert!(one.created_at > 1_000_000_000_000 && one.created_at == one.updated_at, "times are milliseconds: {}", one.created_at);
        assert_eq!(one.closed_at, None);
        assert_eq!(
            roles(&one),
            [
                (f.alice.id, Role::Author, ReviewStatus::Unapproved),
                (f.carol.id, Role::Reviewer, ReviewStatus::Unapproved),
                (f.bob.id, Role::Reviewer, ReviewStatus::Unapproved)
            ],
            "the author first, then the reviewers in the order given"
        );
        let opened = s.activities(one.id).unwrap();
        assert_eq!(opened.len(), 1);
        assert_eq!((opened[0].action.as_str(), opened[0].user_id, opened[0].detail.as_str(), opened[0].comment_id), ("OPENED", f.alice.id, "{}", None));
        assert_eq!(create(s, &new_pr(&f.repo, &f.alice, "two", "main", &[])).number, 2);
        let three = create(s, &new_pr(&f.repo, &f.bob, "three", "main", &[]));
        assert_eq!(three.number, 3);
        assert_eq!(create(s, &new_pr(&f.other, &f.alice, "one", "main", &[])).number, 1, "numbers are per repository");
        assert_eq!(s.pr(f.repo.id, 1).unwrap().unwrap(), one);
        assert_eq!(s.pr_by_id(one.id).unwrap().unwrap(), one);
        assert!(s.pr(f.repo.id, 9).unwrap().is_none());
        done(s.delete_pr(three.id, Some(three.version)).unwrap());
        assert!(s.pr(f.repo.id, 3).unwrap().is_none());
        assert_eq!(create(s, &new_pr(&f.repo, &f.bob, "four", "main", &[])).number, 4, "number 3 was given again after its delete");
        // Another process on the same data continues the count.
        assert_eq!(create(&backends::reopen(f.dir.path()), &new_pr(&f.repo, &f.bob, "five", "main", &[])).number, 5);
    }

    #[test]
    pub(crate) fn an_open_pull_request_between_the_same_refs_is_refused_until_the_first_is_declined() {
        let f = fixture();
        let s = &f.s;
        let first = create(s, &new_pr(&f.repo, &f.alice, "feature", "main", &[]));
        assert_eq!(s.insert_pr(&new_pr(&f.repo, &f.bob, "feature", "main", &[])).unwrap(), PrInsert::Duplicate(1));
        // Another target, or the same refs in another repository, is no duplicate.
        assert_eq!(create(s, &new_pr(&f.repo, &f.bob, "feature", "release", &[])).number, 2);
        assert_eq!(create(s, &new_pr(&f.other, &f.bob, "feature", "main", &[])).number, 1);
        let declined = done(s.update_pr(first.id, Some(first.version), &decline(), &[]).unwrap());
        assert_eq!((declined.state, declined.version), (PrState::Declined, 1));
        assert!(declined.closed_at.is_some());
        let again = create(s, &new_pr(&f.repo, &f.bob, "feature", "main", &[]));
        assert_eq!(again.number, 3, "a refused insert used no number");
        // Reopening the declined one now would make two open ones: refused, nothing changed.
        let reopen = PrChange { state: Some(PrState::Open), closed_at: Some(None), bump_version: true, ..Default::default() };
        match s.update_pr(first.id, Some(1), &reopen, &[NewActivity::new(f.alice.id, "REOPENED", "{}".into())]) {
            Err(crate::StoreError::DuplicatePr(n)) => assert_eq!(n, 3),
            other => panic!("reopened beside an open duplicate: {other:?}"),
        }
        assert_eq!(s.pr_by_id(first.id).unwrap().unwrap(), declined);
        assert_eq!(s.activities(first.id).unwrap().len(), 1);
        // Retargeting onto the refs of an open one is refused the same way.
        let retarget = PrChange { to_ref: Some("refs/heads/main".into()), bump_version: true, ..Default::default() };
        let two = s.pr(f.repo.id, 2).unwrap().unwrap();
        assert!(matches!(s.update_pr(two.id, None, &retarget, &[]), Err(crate::StoreError::DuplicatePr(3))));
        done(s.update_pr(again.id, None, &decline(), &[]).unwrap());
        let reopened = done(s.update_pr(first.id, Some(1), &reopen, &[]).unwrap());
        assert_eq!((reopened.state, reopened.closed_at, reopened.version), (PrState::Open, None, 2));
    }

    #[test]
    pub(crate) fn a_change_with_a_stale_version_is_refused_and_changes_nothing() {
        let f = fixture();
        let s = &f.s;
        let pr = create(s, &new_pr(&f.repo, &f.alice, "feature", "main", &[&f.bob]));
        let retitle = PrChange { title: Some("Better".into()), description: Some(None), bump_version: true, ..Default::default() };
        let note = [NewActivity::new(f.alice.id, "UPDATED", r#"{"title":"Better"}"#.into())];
        assert_eq!(s.update_pr(pr.id, Some(7), &retitle, &note).unwrap(), Versioned::Stale(0));
        assert_eq!(s.pr_by_id(pr.id).unwrap().unwrap(), pr);
        assert_eq!(s.activities(pr.id).unwrap().len(), 1, "a refused change appended its activity");
        assert_eq!(s.update_pr(pr.id + 1000, None, &retitle, &note).unwrap(), Versioned::Gone);
        std::thread::sleep(std::time::Duration::from_millis(3));
        let got = done(s.update_pr(pr.id, Some(0), &retitle, &note).unwrap());
        assert_eq!((got.title.as_str(), got.description.as_deref(), got.version), ("Better", None, 1));
        assert!(got.updated_at > pr.updated_at);
        assert_eq!((got.from_ref.as_str(), got.to_hash.as_str(), got.created_at), (pr.from_ref.as_str(), pr.to_hash.as_str(), pr.created_at));
        let log = s.activities(pr.id).unwrap();
        assert_eq!(log.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), ["UPDATED", "OPENED"], "newest first");
        assert_eq!(log[0].detail, r#"{"title":"Better"}"#);
        assert_eq!(s.update_pr(pr.id, Some(0), &retitle, &[]).unwrap(), Versioned::Stale(1));
        // A merge check's outcome alone moves neither the version nor the update time.
        let checked = PrChange { merge_outcome: Some(Some("CLEAN".into())), ..Default::default() };
        let same = done(s.update_pr(pr.id, Some(1), &checked, &[]).unwrap());
        assert_eq!((same.version, same.updated_at, same.merge_outcome.as_deref()), (1, got.updated_at, Some("CLEAN")));
        let unknown = PrChange { merge_outcome: Some(None), ..Default::default() };
        assert_eq!(done(s.update_pr(pr.id, None, &unknown, &[]).unwrap()).merge_outcome, None);
        // A merge: state, commit, hashes and closing time at once.
        let merged = PrChange {
            state: Some(PrState::Merged),
            closed_at: Some(Some(got.updated_at + 5)),
            merge_commit: Some("c".repeat(40)),
            to_hash: Some("c".repeat(40)),
            bump_version: true,
            ..Default::default()
        };
        let m = done(s.update_pr(pr.id, Some(1), &merged, &[NewActivity::new(f.bob.id, "MERGED", "{}".into())]).unwrap());
        assert_eq!(
            (m.state, m.closed_at, m.merge_commit.as_deref(), m.to_hash.as_str(), m.version),
            (PrState::Merged, Some(got.updated_at + 5), Some(&*"c".repeat(40)), &*"c".repeat(40), 2)
        );
    }

    #[test]
    pub(crate) fn participants_are_upserted_in_place_removed_and_their_approvals_reset() {
        let f = fixture();
        let s = &f.s;
        let pr = create(s, &new_pr(&f.repo, &f.alice, "feature", "main", &[&f.bob]));
        let approve = |u: &User, role: Role, status: ReviewStatus| Participant { user_id: u.id, role, status, last_reviewed_commit: Some("a".repeat(40)) };
        // Carol comments (a participant, joining last), Bob approves (keeping his place).
        let change = PrChange {
            upsert_participants: vec![approve(&f.carol, Role::Participant, ReviewStatus::NeedsWork), approve(&f.bob, Role::Reviewer, ReviewStatus::Approved)],
            ..Default::default()
        };
        let got = done(s.update_pr(pr.id, Some(0), &change, &[]).unwrap());
        assert_eq!(got.version, 0, "approvals do not raise the version unless asked");
        assert_eq!(
            roles(&got),
            [
                (f.alice.id, Role::Author, ReviewStatus::Unapproved),
                (f.bob.id, Role::Reviewer, ReviewStatus::Approved),
                (f.carol.id, Role::Participant, ReviewStatus::NeedsWork)
            ]
        );
        assert_eq!(got.participant(f.bob.id).unwrap().last_reviewed_commit.as_deref(), Some(&*"a".repeat(40)));
        // A rescope resets every approval but the author's row, in the same change as a removal.
        let rescope = PrChange {
            from_hash: Some("d".repeat(40)),
            reset_approvals: true,
            remove_participants: vec![f.carol.id],
            bump_version: true,
            ..Default::default()
        };
        let got = done(s.update_pr(pr.id, Some(0), &rescope, &[NewActivity::new(f.alice.id, "RESCOPED", "{}".into())]).unwrap());
        assert_eq!(roles(&got), [(f.alice.id, Role::Author, ReviewStatus::Unapproved), (f.bob.id, Role::Reviewer, ReviewStatus::Unapproved)]);
        assert_eq!((got.from_hash.as_str(), got.version), (&*"d".repeat(40), 1));
        // Carol, back, joins last again; an approval given with the reset stands.
        let back =
            PrChange { upsert_participants: vec![approve(&f.carol, Role::Reviewer, ReviewStatus::Approved)], reset_approvals: true, ..Default::default() };
        let got = done(s.update_pr(pr.id, None, &back, &[]).unwrap());
        assert_eq!(roles(&got)[2], (f.carol.id, Role::Reviewer, ReviewStatus::Approved));
        assert_eq!(s.pr(f.repo.id, pr.number).unwrap().unwrap().participants, got.participants);
    }

    #[test]
    pub(crate) fn listing_filters_by_state_ref_participant_and_closing_time_and_pages_in_order() {
        let f = fixture();
        let s = &f.s;
        let numbers = |q: &PrQuery| -> (Vec<i64>, bool) {
            let (prs, more) = s.prs(q).unwrap();
            (prs.iter().map(|p| p.number).collect(), more)
        };
        // #1 alice feature→main (bob reviews), #2 bob fix→main (alice reviews, approves),
        // #3 alice feature→release (declined), #4 carol docs→main; one in another repository.
        let one = create(s, &new_pr(&f.repo, &f.alice, "feature", "main", &[&f.bob]));
        let two = create(s, &new_pr(&f.repo, &f.bob, "fix", "main", &[&f.alice]));
        let three = create(s, &new_pr(&f.repo, &f.alice, "feature", "release", &[]));
        create(s, &new_pr(&f.repo, &f.carol, "docs", "main", &[]));
        create(s, &new_pr(&f.other, &f.alice, "feature", "main", &[]));
        let approve = Participant { user_id: f.alice.id, role: Role::Reviewer, status: ReviewStatus::Approved, last_reviewed_commit: None };
        done(s.update_pr(two.id, None, &PrChange { upsert_participants: vec![approve], ..Default::default() }, &[]).unwrap());
        done(s.update_pr(three.id, None, &decline(), &[]).unwrap());
        let base = PrQuery { repo_id: Some(f.repo.id), limit: 25, ..Default::default() };
        assert_eq!(numbers(&base), (vec![4, 3, 2, 1], false), "newest first");
        assert_eq!(numbers(&PrQuery { oldest_first: true, ..base.clone() }).0, [1, 2, 3, 4]);
        assert_eq!(numbers(&PrQuery { states: vec![PrState::Open], ..base.clone() }).0, [4, 2, 1]);
        assert_eq!(numbers(&PrQuery { states: vec![PrState::Declined, PrState::Merged], ..base.clone() }).0, [3]);
        // Direction: incoming to a ref, outgoing from one.
        assert_eq!(numbers(&PrQuery { to_ref: Some("refs/heads/main".into()), ..base.clone() }).0, [4, 2, 1]);
        assert_eq!(numbers(&PrQuery { from_ref: Some("refs/heads/feature".into()), ..base.clone() }).0, [3, 1]);
        // Participants: any role, a role, a role with statuses; several filters all hold.
        let who = |u: &User, role: Option<Role>, statuses: Vec<ReviewStatus>| ParticipantFilter { user_id: u.id, role, statuses };
        assert_eq!(numbers(&PrQuery { participants: vec![who(&f.alice, None, vec![])], ..base.clone() }).0, [3, 2, 1]);
        assert_eq!(numbers(&PrQuery { participants: vec![who(&f.alice, Some(Role::Author), vec![])], ..base.clone() }).0, [3, 1]);
        assert_eq!(numbers(&PrQuery { participants: vec![who(&f.alice, Some(Role::Reviewer), vec![])], ..base.clone() }).0, [2]);
        let unapproved = vec![ReviewStatus::Unapproved, ReviewStatus::NeedsWork];
        assert_eq!(numbers(&PrQuery { participants: vec![who(&f.alice, Some(Role::Reviewer), unapproved.clone())], ..base.clone() }).0, Vec::<i64>::new());
        assert_eq!(numbers(&PrQuery { participants: vec![who(&f.bob, Some(Role::Reviewer), unapproved)], ..base.clone() }).0, [1]);
        let both = vec![who(&f.alice, None, vec![]), who(&f.bob, None, vec![])];
        assert_eq!(numbers(&PrQuery { participants: both, ..base.clone() }).0, [2, 1]);
        // Every repository (the dashboard), and closed ones only since a time.
        assert_eq!(numbers(&PrQuery { repo_id: None, participants: vec![who(&f.alice, Some(Role::Author), vec![])], ..base.clone() }).0.len(), 3);
        assert_eq!(numbers(&PrQuery { closed_since: Some(0), ..base.clone() }).0, [4, 3, 2, 1]);
        assert_eq!(numbers(&PrQuery { closed_since: Some(i64::MAX), ..base.clone() }).0, [4, 2, 1], "open ones always pass");
        // Paging, with whether more follow.
        assert_eq!(numbers(&PrQuery { limit: 2, ..base.clone() }), (vec![4, 3], true));
        assert_eq!(numbers(&PrQuery { start: 2, limit: 2, ..base.clone() }), (vec![2, 1], false));
        assert_eq!(numbers(&PrQuery { start: 3, limit: 2, ..base.clone() }), (vec![1], false));
        // By update: the one changed last comes first.
        std::thread::sleep(std::time::Duration::from_millis(3));
        done(s.update_pr(one.id, None, &PrChange { title: Some("touched".into()), bump_version: true, ..Default::default() }, &[]).unwrap());
        assert_eq!(numbers(&PrQuery { by_update: true, ..base.clone() }).0[0], 1);
        assert_eq!(numbers(&PrQuery { by_update: true, oldest_first: true, ..base.clone() }).0[3], 1);
        // Each listed pull request comes with its participants.
        let (page, _) = s.prs(&PrQuery { states: vec![PrState::Open], ..base.clone() }).unwrap();
        assert_eq!(page.iter().map(|p| p.participants.len()).collect::<Vec<_>>(), [1, 2, 2]);
        assert_eq!(page[1].participants[0].role, Role::Author);
        // Open ones on a ref, as source or as target.
        let on = |r: &str| s.open_prs_on_ref(f.repo.id, r).unwrap().iter().map(|p| p.number).collect::<Vec<_>>();
        assert_eq!(on("refs/heads/feature"), [1]);
        assert_eq!(on("refs/heads/main"), [1, 2, 4]);
        assert_eq!(on("refs/heads/release"), Vec::<i64>::new(), "a declined one is not open");
    }

    #[test]
    pub(crate) fn comments_are_logged_versioned_and_only_deleted_without_replies() {
        let f = fixture();
        let s = &f.s;
        let pr = create(s, &new_pr(&f.repo, &f.alice, "feature", "main", &[]));
        let other = create(s, &new_pr(&f.repo, &f.alice, "other", "main", &[]));
        let said = |u: &User| NewActivity { user_id: u.id, action: "COMMENTED".into(), comment_id: None, detail: r#"{"commentAction":"ADDED"}"#.into() };
        let comment = |parent: Option<i64>, u: &User, text: &str| NewComment {
            pr_id: pr.id,
            parent_id: parent,
            author_id: u.id,
            text: text.into(),
            severity: "NORMAL".into(),
            anchor: Some(r#"{"line":3}"#.into()),
        };
        let top = s.insert_comment(&comment(None, &f.bob, "why?"), &said(&f.bob)).unwrap();
        assert_eq!((top.pr_id, top.parent_id, top.version, top.state.as_str(), top.orphaned), (pr.id, None, 0, "OPEN", false));
        assert_eq!(top.anchor.as_deref(), Some(r#"{"line":3}"#));
        let log = s.activities(pr.id).unwrap();
        assert_eq!((log[0].action.as_str(), log[0].comment_id, log[0].user_id), ("COMMENTED", Some(top.id), f.bob.id), "the activity names the new comment");
        let reply = s.insert_comment(&comment(Some(top.id), &f.alice, "because"), &said(&f.alice)).unwrap();
        assert_eq!(reply.parent_id, Some(top.id));
        assert_eq!(s.comments(pr.id).unwrap().iter().map(|c| c.id).collect::<Vec<_>>(), [top.id, reply.id], "oldest first, replies included");
        assert_eq!(s.comment(top.id).unwrap().unwrap(), top);
        let v = pr.version;
        assert_eq!(s.pr_by_id(pr.id).unwrap().unwrap().version, v, "comments do not change the pull request's version");
        assert_eq!(s.comment_counts(&[other.id, pr.id, 999_999]).unwrap(), [(other.id, 0), (pr.id, 2), (999_999, 0)]);
        // Edits: a stale version changes nothing and logs nothing.
        let edit = CommentChange { text: Some("why, really?".into()), severity: Some("BLOCKER".into()), state: None };
        let edited_log = NewActivity::new(f.bob.id, "COMMENTED", r#"{"commentAction":"EDITED"}"#.into());
        assert_eq!(s.update_comment(top.id, 5, &edit, Some(&edited_log)).unwrap(), Versioned::Stale(0));
        assert_eq!(s.comment(top.id).unwrap().unwrap(), top);
        assert_eq!(s.activities(pr.id).unwrap().len(), 3);
        assert_eq!(s.update_comment(999_999, 0, &edit, None).unwrap(), Versioned::Gone);
        let edited = done(s.update_comment(top.id, 0, &edit, Some(&edited_log)).unwrap());
        assert_eq!((edited.text.as_str(), edited.severity.as_str(), edited.state.as_str(), edited.version), ("why, really?", "BLOCKER", "OPEN", 1));
        assert_eq!(s.activities(pr.id).unwrap()[0].detail, r#"{"commentAction":"EDITED"}"#);
        let resolved = done(s.update_comment(top.id, 1, &CommentChange { state: Some("RESOLVED".into()), ..Default::default() }, None).unwrap());
        assert_eq!((resolved.text.as_str(), resolved.state.as_str(), resolved.version), ("why, really?", "RESOLVED", 2));
        assert_eq!(s.activities(pr.id).unwrap().len(), 4, "an edit without an activity logs none");
        // Anchors move after a rescope; the version stays.
        s.set_comment_anchors(&[(top.id, r#"{"line":9}"#.into(), false), (reply.id, r#"{"line":1}"#.into(), true)]).unwrap();
        let (t, r) = (s.comment(top.id).unwrap().unwrap(), s.comment(reply.id).unwrap().unwrap());
        assert_eq!((t.anchor.as_deref(), t.orphaned, t.version), (Some(r#"{"line":9}"#), false, 2));
        assert_eq!((r.anchor.as_deref(), r.orphaned), (Some(r#"{"line":1}"#), true));
        // Deletes: not with replies, not stale; then the reply, then its parent.
        let deleted = NewActivity::new(f.bob.id, "COMMENTED", r#"{"commentAction":"DELETED"}"#.into());
        assert_eq!(s.delete_comment(top.id, 2, Some(&deleted)).unwrap(), CommentDelete::HasReplies);
        assert_eq!(s.delete_comment(reply.id, 3, None).unwrap(), CommentDelete::Stale(0));
        assert_eq!(s.activities(pr.id).unwrap().len(), 4);
        assert_eq!(s.delete_comment(reply.id, 0, None).unwrap(), CommentDelete::Deleted);
        assert_eq!(s.delete_comment(reply.id, 0, None).unwrap(), CommentDelete::Gone);
        assert_eq!(s.delete_comment(top.id, 2, Some(&deleted)).unwrap(), CommentDelete::Deleted);
        assert!(s.comments(pr.id).unwrap().is_empty());
        let log = s.activities(pr.id).unwrap();
        assert_eq!((log.len(), log[0].detail.as_str()), (5, r#"{"commentAction":"DELETED"}"#));
        // A new comment never takes a deleted one's id (REST clients hold them).
        let next = s.insert_comment(&comment(None, &f.bob, "again"), &said(&f.bob)).unwrap();
        assert!(next.id > reply.id, "comment id {} given again", reply.id);
    }

    #[test]
    pub(crate) fn watchers_and_repository_settings_round_trip() {
        let f = fixture();
        let s = &f.s;
        let pr = create(s, &new_pr(&f.repo, &f.alice, "feature", "main", &[]));
        assert!(s.watchers(pr.id).unwrap().is_empty());
        s.set_watch(pr.id, f.carol.id, true).unwrap();
        s.set_watch(pr.id, f.alice.id, true).unwrap();
        s.set_watch(pr.id, f.alice.id, true).unwrap();
        assert_eq!(s.watchers(pr.id).unwrap(), [f.alice.id, f.carol.id]);
        s.set_watch(pr.id, f.carol.id, false).unwrap();
        s.set_watch(pr.id, f.bob.id, false).unwrap();
        assert_eq!(s.watchers(pr.id).unwrap(), [f.alice.id]);
        assert_eq!(s.pr_settings(f.repo.id).unwrap(), None);
        s.set_pr_settings(f.repo.id, r#"{"requiredApprovers":1}"#).unwrap();
        s.set_pr_settings(f.repo.id, r#"{"requiredApprovers":2}"#).unwrap();
        assert_eq!(s.pr_settings(f.repo.id).unwrap().as_deref(), Some(r#"{"requiredApprovers":2}"#));
        assert_eq!(s.pr_settings(f.other.id).unwrap(), None);
    }

    #[test]
    pub(crate) fn project_settings_round_trip_apart_from_repository_settings_and_go_with_the_project() {
        let f = fixture();
        let s = &f.s;
        let project = f.repo.project_id;
        assert_eq!(s.project_pr_settings(project).unwrap(), None);
        s.set_project_pr_settings(project, r#"{"requiredApprovers":1}"#).unwrap();
        s.set_project_pr_settings(project, r#"{"requiredApprovers":3}"#).unwrap();
        assert_eq!(s.project_pr_settings(project).unwrap().as_deref(), Some(r#"{"requiredApprovers":3}"#));
        assert_eq!(s.pr_settings(f.repo.id).unwrap(), None, "a project's settings are not a repository's");
        for r in [&f.repo, &f.other] {
            s.delete_repo(r).unwrap();
        }
        s.delete_project(&ProjectKey::parse("TP").unwrap()).unwrap();
        assert_eq!(backends::count(f.dir.path(), "project_pr_settings"), 0, "a deleted project's settings stayed");
    }

    #[test]
    pub(crate) fn deleting_a_pull_request_or_its_repository_takes_everything_of_it() {
        let f = fixture();
        let s = &f.s;
        let pr = create(s, &new_pr(&f.repo, &f.alice, "feature", "main", &[&f.bob]));
        let said = NewActivity::new(f.bob.id, "COMMENTED", "{}".into());
        let mk = |parent: Option<i64>| NewComment {
            pr_id: pr.id,
            parent_id: parent,
            author_id: f.bob.id,
            text: "x".into(),
            severity: "NORMAL".into(),
            anchor: None,
        };
        let top = s.insert_comment(&mk(None), &said).unwrap();
        s.insert_comment(&mk(Some(top.id)), &said).unwrap();
        s.set_watch(pr.id, f.bob.id, true).unwrap();
        let pr = done(s.update_pr(pr.id, None, &PrChange { title: Some("t".into()), bump_version: true, ..Default::default() }, &[]).unwrap());
        assert_eq!(s.delete_pr(pr.id, Some(0)).unwrap(), Versioned::Stale(1));
        assert!(s.pr_by_id(pr.id).unwrap().is_some());
        done(s.delete_pr(pr.id, Some(1)).unwrap());
        assert_eq!(s.delete_pr(pr.id, None).unwrap(), Versioned::Gone);
        for t in ["pull_requests", "pr_participants", "pr_activities", "pr_comments", "pr_watchers"] {
            assert_eq!(backends::count(f.dir.path(), t), 0, "{t} kept rows of a deleted pull request");
        }
        // A repository takes its pull requests, their rows and its settings with it.
        let pr = create(s, &new_pr(&f.repo, &f.alice, "feature", "main", &[&f.bob]));
        assert!(s.insert_comment(&mk(None), &said).is_err(), "a comment on a deleted pull request");
        let c = NewComment { pr_id: pr.id, ..mk(None) };
        let top = s.insert_comment(&c, &said).unwrap();
        s.insert_comment(&NewComment { parent_id: Some(top.id), ..c }, &said).unwrap();
        s.set_watch(pr.id, f.carol.id, true).unwrap();
        s.set_pr_settings(f.repo.id, "{}").unwrap();
        let kept = create(s, &new_pr(&f.other, &f.alice, "feature", "main", &[]));
        s.delete_repo(&f.repo).unwrap();
        assert!(s.pr_by_id(pr.id).unwrap().is_none());
        assert_eq!(s.pr_by_id(kept.id).unwrap().unwrap(), kept);
        assert_eq!(backends::count(f.dir.path(), "pull_requests"), 1);
        for t in ["pr_comments", "pr_watchers", "pr_settings"] {
            assert_eq!(backends::count(f.dir.path(), t), 0, "{t} kept rows of a deleted repository");
        }
        assert_eq!(backends::count(f.dir.path(), "pr_counters"), 1);
    }

    #[test]
    pub(crate) fn deleting_an_author_keeps_their_pull_requests_and_no_new_account_takes_their_id() {
        let f = fixture();
        let s = &f.s;
        // Carol, the newest account, opens one, reviews another and comments.
        let hers = create(s, &new_pr(&f.repo, &f.carol, "feature", "main", &[&f.bob]));
        let reviewed = create(s, &new_pr(&f.repo, &f.alice, "fix", "main", &[&f.carol]));
        let c = NewComment { pr_id: reviewed.id, parent_id: None, author_id: f.carol.id, text: "ok".into(), severity: "NORMAL".into(), anchor: None };
        let comment = s.insert_comment(&c, &NewActivity::new(f.carol.id, "COMMENTED", "{}".into())).unwrap();
        s.set_watch(reviewed.id, f.carol.id, true).unwrap();
        s.delete_user(&f.carol.name).unwrap();
        let hers = s.pr_by_id(hers.id).unwrap().unwrap();
        assert_eq!(hers.author_id, f.carol.id, "the pull request keeps its author's id");
        assert_eq!(roles(&hers), [(f.bob.id, Role::Reviewer, ReviewStatus::Unapproved)], "the account's participant rows went with it");
        assert_eq!(roles(&s.pr_by_id(reviewed.id).unwrap().unwrap()), [(f.alice.id, Role::Author, ReviewStatus::Unapproved)]);
        assert_eq!(s.comment(comment.id).unwrap().unwrap().author_id, f.carol.id);
        assert_eq!(s.deleted_user(f.carol.id).unwrap().map(|d| d.name), Some("carol".to_owned()), "the author's name is kept to show");
        assert!(s.watchers(reviewed.id).unwrap().is_empty());
        let dave = s.create_user(&UserName::parse("dave").unwrap(), &Password::new("password1").unwrap(), GlobalPermission::LicensedUser).unwrap();
        assert!(dave.id > f.carol.id, "user id {} given again: the new account would be the author of her pull requests", f.carol.id);
    }

    #[test]
    pub(crate) fn pull_requests_opened_at_once_between_the_same_refs_make_one() {
        let f = fixture();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|i| {
                // Two through this store, two as other processes (nodes) on the same data.
                let s = if i % 2 == 0 { f.s.clone() } else { backends::reopen(f.dir.path()) };
                let (barrier, new) = (barrier.clone(), new_pr(&f.repo, &f.alice, "feature", "main", &[]));
                std::thread::spawn(move || {
                    barrier.wait();
                    s.insert_pr(&new).unwrap()
                })
            })
            .collect();
        let results: Vec<PrInsert> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let created: Vec<i64> = results.iter().filter_map(|r| if let PrInsert::Created(pr) = r { Some(pr.number) } else { None }).collect();
        assert_eq!(created.len(), 1, "{results:?}");
        assert!(results.iter().all(|r| matches!(r, PrInsert::Created(_)) || *r == PrInsert::Duplicate(created[0])), "{results:?}");
        assert_eq!(create(&f.s, &new_pr(&f.repo, &f.alice, "other", "main", &[])).number, 2, "refused inserts used no number");
    }

    #[test]
    pub(crate) fn a_repository_is_found_by_its_id() {
        let f = fixture();
        let s = &f.s;
        assert_eq!(s.repo_by_id(f.repo.id).unwrap().unwrap(), f.repo);
        let personal = s.create_repo(&Owner::User(f.alice.name.clone()), &RepoSlug::parse("dots").unwrap(), false).unwrap();
        assert_eq!(s.repo_by_id(personal.id).unwrap().unwrap(), personal);
        s.delete_repo(&f.other).unwrap();
        assert!(s.repo_by_id(f.other.id).unwrap().is_none());
    }
    #[test]
    pub(crate) fn a_change_and_its_events_are_written_together_or_not_at_all() {
        use crate::{NewEvent, NewWebhook};
        let f = fixture();
        let s = &f.s;
        let keys = ["pr:opened", "pr:modified", "pr:comment:added", "pr:deleted"].map(String::from).to_vec();
        s.create_webhook(&NewWebhook {
            project_id: f.repo.project_id,
            repo_id: Some(f.repo.id),
            name: "ci".into(),
            url: "http://ci.example/".into(),
            events: keys,
            active: true,
            secret: None,
            ssl_verify: true,
            username: None,
            password: None,
        })
        .unwrap();
        let repo_id = f.repo.id;
        let project_id = f.repo.project_id;
        let ev = move |key: &str, payload: String| NewEvent { project_id, repo_id: Some(repo_id), key: key.into(), payload };
        let render = |key: &'static str| move |pr: &PullRequest| vec![ev(key, format!("{{\"v\":{},\"title\":\"{}\"}}", pr.version, pr.title))];
        let pr = match s.insert_pr_with_events(&new_pr(&f.repo, &f.alice, "feature", "main", &[]), &render("pr:opened")).unwrap() {
            PrInsert::Created(pr) => pr,
            other => panic!("{other:?}"),
        };
        let retitle = PrChange { title: Some("New".into()), bump_version: true, ..Default::default() };
        assert_eq!(s.update_pr_with_events(pr.id, Some(5), &retitle, &[], &render("pr:modified")).unwrap(), Versioned::Stale(0));
        done(s.update_pr_with_events(pr.id, Some(0), &retitle, &[], &render("pr:modified")).unwrap());
        // A refused duplicate writes neither the pull request nor its event.
        let dup = s.insert_pr_with_events(&new_pr(&f.repo, &f.bob, "feature", "main", &[]), &render("pr:opened")).unwrap();
        assert_eq!(dup, PrInsert::Duplicate(1));
        let c = NewComment { pr_id: pr.id, parent_id: None, author_id: f.bob.id, text: "hi".into(), severity: "NORMAL".into(), anchor: None };
        let comment = s
            .insert_comment_with_events(&c, &NewActivity::new(f.bob.id, "COMMENTED", "{}".into()), &|c: &Comment| {
                vec![ev("pr:comment:added", format!("{{\"c\":{}}}", c.id))]
            })
            .unwrap();
        assert_eq!(s.delete_pr_with_events(pr.id, Some(0), &[ev("pr:deleted", "{}".into())]).unwrap(), Versioned::Stale(1));
        done(s.delete_pr_with_events(pr.id, Some(1), &[ev("pr:deleted", "{}".into())]).unwrap());
        let mut payloads = Vec::new();
        loop {
            let claimed = s.claim_deliveries("n", crate::store::now_ms(), 60_000, 10).unwrap();
            let Some(c) = claimed.first() else { break };
            assert_eq!(claimed.len(), 1, "one lane: only its head is claimed");
            payloads.push(c.payload.clone());
            let ok = crate::Attempt { at: 1, outcome: crate::Outcome::Success, status: Some(200), summary: String::new(), duration_ms: 1 };
            s.finish_delivery(c.delivery.id, "n", &ok, crate::Next::Done, crate::Breaker { threshold: 0, pause_until: 0 }).unwrap();
        }
        assert_eq!(payloads.len(), 4);
        assert_eq!(
            payloads[..3],
            [r#"{"v":0,"title":"feature into main"}"#.to_string(), r#"{"v":1,"title":"New"}"#.to_string(), format!(r#"{{"c":{}}}"#, comment.id)],
            "rendered from the rows as each change left them, in order"
        );
        assert_eq!(payloads[3], "{}");
    }
}
