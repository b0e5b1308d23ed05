//! Branches and tags made and removed over REST (the core API, `branch-utils`, `/rest/git`),
//! held to the same rules as a push and seen by everyone as one.
//!
//! Each change:
//! - needs write on the repository (the adapter asks [`crate::access`] first), and then passes the
//!   caller's branch permissions exactly as a push would ([`Applying::refusing`], the same
//!   restrictions the pre-receive hook gets): creating a ref is a `Create`, deleting one a
//!   `Delete`, moving a tag somewhere else (`force`) a `Rewrite`; none of them goes through a
//!   pull request;
//! - is one compare-and-swap `git update-ref` ([`GitRepo::swap_ref`]): a ref that is not where it
//!   was read (a push or another REST call got there first) makes the change fail and change
//!   nothing, so a branch delete with a stale `endPoint` is refused and the branch stays;
//! - is then published on the push bus as a [`PushEvent`] from the caller, the event a git push
//!   sends, so the audit log, pull-request rescoping, maintenance and webhooks see it as one.
//!
//! An annotated tag is written with `git mktag`, tagged by the caller (their display name and
//! email).

use trove_store::{Authenticated, RefChange, Repo};

use crate::AppState;
use crate::branch_permissions::{Applying, CHECK_CONFIGURATION, RestrictionsError, refusal};
use crate::events::{PushEvent, RefUpdate};
use crate::pr_git::{GitRepo, Identity, PrGitError, valid_ref};
use crate::repo_read::{ReadError, Reader, RefInfo, Refs};
use crate::webhooks::ServerChange;

/// Why a ref change did not happen. Nothing changed in any case.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RefError {
    /// A field is missing or invalid; `context` names it.
    #[error("{message}")]
    Invalid { context: &'static str, message: String },
    /// The start point names no branch, tag or commit.
    #[error("{0:?} is not a branch, tag or commit of this repository; name an existing one as the start point.")]
    NoStartPoint(String),
    /// The ref already exists.
    #[error("{} {} already exists; choose another name, or delete it first.", kind_word(.0), short(.0))]
    Exists(String),
    /// The new ref and an existing one would be a file and a directory of each other.
    #[error("{} {} cannot be created: {} exists, and one ref name may not be a prefix directory of another.", kind_word(.0), short(.0), .1)]
    Overlaps(String, String),
    /// There is no such ref.
    #[error("{} {} does not exist in this repository.", kind_word(.0), short(.0))]
    Missing(String),
    /// The ref is not where the caller said (`endPoint`), or moved while the change was made.
    #[error("{} {} is at {}, not at {}: it was changed since you read it. Nothing was deleted; read it again and retry.", kind_word(.0), short(.0), .1.as_deref().unwrap_or("nothing"), .2)]
    Stale(String, Option<String>, String),
    /// The default branch may not be deleted.
    #[error("Branch {} is the default branch of this repository and cannot be deleted; make another branch the default first.", short(.0))]
    IsDefault(String),
    /// The caller's branch permissions refuse the change (each refusal, Bitbucket's words).
    #[error("{} {CHECK_CONFIGURATION}", .0.join(" "))]
    Restricted(Vec<String>),
    #[error(transparent)]
    Restrictions(#[from] RestrictionsError),
    /// The change's journal cannot be written: nothing was changed.
    #[error(
        "cannot write the change's journal (git-home/pushes in the data directory): {0}; nothing was changed. Check the disk and the directory's permissions."
    )]
    Journal(std::io::Error),
    #[error(transparent)]
    Git(#[from] PrGitError),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// `Branch` or `Tag`.
fn kind_word(full: &str) -> &'static str {
    crate::branch_permissions::ref_word(full)
}

fn short(full: &str) -> &str {
    full.strip_prefix("refs/heads/").or_else(|| full.strip_prefix("refs/tags/")).unwrap_or(full)
}

/// What a caller named (`main`, `refs/heads/main`) as a full ref under `prefix` (`refs/heads/`),
/// if it is a name git accepts and no option in disguise.
pub(crate) fn full_name(prefix: &str, name: &str, context: &'static str) -> Result<String, RefError> {
    let name = name.trim();
    let bare = name.strip_prefix(prefix).unwrap_or(name);
    let full = format!("{prefix}{bare}");
    if bare.is_empty() || bare.starts_with('-') || bare.len() > 255 || !valid_ref(&full) {
        let what = if prefix == "refs/tags/" { "tag" } else { "branch" };
        return Err(RefError::Invalid {
            context,
            message: format!("{name:?} is not a valid {what} name (git check-ref-format's rules; no spaces, `..`, `~^:?*[\\`)."),
        });
    }
    Ok(full)
}

/// One caller changing refs in one repository.
pub(crate) struct RefChanges<'a> {
    state: &'a AppState,
    repo: &'a Repo,
    who: &'a Authenticated,
    /// Where the change was asked for, for the reflog: `over REST` or `in the web UI`.
    via: &'static str,
}

impl<'a> RefChanges<'a> {
    /// `who` must already have write access to `repo` (the adapter checks it).
    pub(crate) fn new(state: &'a AppState, repo: &'a Repo, who: &'a Authenticated) -> Self {
        RefChanges { state, repo, who, via: "over REST" }
    }

    /// The same, asked for on the web pages (the reflog says so).
    pub(crate) fn from_web(state: &'a AppState, repo: &'a Repo, who: &'a Authenticated) -> Self {
        RefChanges { state, repo, who, via: "in the web UI" }
    }

    fn git(&self) -> GitRepo {
        GitRepo::new(self.state, self.state.store.repo_path(self.repo))
    }

    fn reader(&self) -> Reader {
        Reader::new(self.state, self.state.store.repo_path(self.repo))
    }

    fn identity(&self) -> Identity {
        let u = &self.who.user;
        Identity {
            name: Some(u.display_name.clone()).filter(|n| !n.trim().is_empty()).unwrap_or_else(|| u.name.to_string()),
            email: u.email.clone().unwrap_or_else(|| format!("{}@trove.invalid", u.name)),
        }
    }

    /// The branch restrictions refuse `change` to `full`: Bitbucket's refusal, each restriction named.
    async fn check_restrictions(&self, full: &str, change: RefChange) -> Result<(), RefError> {
        let applying = Applying::load(self.state, self.repo, self.who.user.id).await?;
        let refused = applying.refusing(full, change, false);
        if refused.is_empty() { Ok(()) } else { Err(RefError::Restricted(refused.into_iter().map(|k| refusal(k, full)).collect())) }
    }

    /// The ref `full` is free: it does not exist, and no existing ref is a directory of it or it of one.
    async fn check_free(&self, refs: &Refs, full: &str) -> Result<(), RefError> {
        if self.git().ref_target(full).await?.is_some() {
            return Err(RefError::Exists(full.to_owned()));
        }
        let dir = format!("{full}/");
        if let Some(other) = refs.all().find(|r| full.starts_with(&format!("{}/", r.full)) || r.full.starts_with(&dir)) {
            return Err(RefError::Overlaps(full.to_owned(), other.full.clone()));
        }
        Ok(())
    }

    async fn start_point(&self, refs: &Refs, start: &str) -> Result<String, RefError> {
        if start.trim().is_empty() {
            return Err(RefError::Invalid { context: "startPoint", message: "The start point (a branch, tag or commit id) is required.".into() });
        }
        Ok(self.reader().resolve(refs, Some(start.trim())).await?.ok_or_else(|| RefError::NoStartPoint(start.to_owned()))?.commit)
    }

    /// Moves `full` from `old` (`None`: absent) to `new` (`None`: delete) in one compare-and-swap,
    /// as the caller; when it moved, the change goes out as a push from the caller. Journaled
    /// before the swap ([`ServerChange`]), so a crash between the ref update and its webhook
    /// event loses neither. `Ok(false)`: the ref was not at `old`, nothing changed.
    async fn swap(&self, full: &str, new: Option<&str>, old: Option<&str>, reflog: &str) -> Result<bool, RefError> {
        let change = ServerChange::begin(self.state, self.repo.id, self.who.user.name.as_str(), &[(full, old)]).map_err(RefError::Journal)?;
        if !self.git().swap_ref(full, new, old, reflog, &self.identity()).await? {
            change.abandon();
            return Ok(false);
        }
        let len = old.or(new).map_or(40, str::len);
        let zero = "0".repeat(len);
        let update = RefUpdate { name: full.to_owned(), old: old.unwrap_or(&zero).to_owned(), new: new.unwrap_or(&zero).to_owned() };
        let ev = PushEvent {
            repo_id: self.repo.id,
            repo: self.repo.display_path(),
            path: self.state.store.repo_path(self.repo),
            user: self.who.user.name.to_string(),
            updates: vec![update],
        };
        change.finish(ev).await;
        Ok(true)
    }

    /// Creates branch `name` at `start` (a branch, tag or commit).
    pub(crate) async fn create_branch(&self, name: &str, start: &str) -> Result<RefInfo, RefError> {
        let full = full_name("refs/heads/", name, "name")?;
        let refs = self.reader().refs().await?;
        let commit = self.start_point(&refs, start).await?;
        self.check_free(&refs, &full).await?;
        self.check_restrictions(&full, RefChange::Create).await?;
        if !self.swap(&full, Some(&commit), None, &format!("branch created {}", self.via)).await? {
            return Err(RefError::Exists(full));
        }
        Ok(RefInfo { short: short(&full).to_owned(), full, commit, tag_object: None })
    }

    /// Deletes branch `name`; with `end_point`, only if it is still there (a full or abbreviated
    /// commit id). `dry_run` checks everything and changes nothing.
    pub(crate) async fn delete_branch(&self, name: &str, end_point: Option<&str>, dry_run: bool) -> Result<(), RefError> {
        let full = full_name("refs/heads/", name, "name")?;
        let git = self.git();
        let now = git.ref_target(&full).await?.ok_or_else(|| RefError::Missing(full.clone()))?;
        if let Some(end) = end_point.map(str::trim).filter(|e| !e.is_empty()) {
            let lower = end.to_ascii_lowercase();
            if lower.len() < 4 || !now.starts_with(&lower) {
                return Err(RefError::Stale(full, Some(now), end.to_owned()));
            }
        }
        if self.reader().head().await?.as_deref() == Some(full.as_str()) {
            return Err(RefError::IsDefault(full));
        }
        self.check_restrictions(&full, RefChange::Delete).await?;
        if dry_run {
            return Ok(());
        }
        if !self.swap(&full, None, Some(&now), &format!("branch deleted {}", self.via)).await? {
            let moved = git.ref_target(&full).await?;
            return Err(RefError::Stale(full, moved, now));
        }
        Ok(())
    }

    /// Creates tag `name` at `start`: annotated with `message` (tagger: the caller), else
    /// lightweight. With `force`, an existing tag is moved (a `Rewrite` for branch permissions).
    pub(crate) async fn create_tag(&self, name: &str, start: &str, message: Option<&str>, force: bool) -> Result<RefInfo, RefError> {
        let full = full_name("refs/tags/", name, "name")?;
        let refs = self.reader().refs().await?;
        let commit = self.start_point(&refs, start).await?;
        let git = self.git();
        let old = git.ref_target(&full).await?;
        match &old {
            Some(_) if !force => return Err(RefError::Exists(full)),
            Some(_) => self.check_restrictions(&full, RefChange::Rewrite).await?,
            None => {
                self.check_free(&refs, &full).await?;
                self.check_restrictions(&full, RefChange::Create).await?;
            }
        }
        let tag_object = match message {
            Some(m) => Some(git.make_tag(short(&full), &commit, m, &self.identity()).await?),
            None => None,
        };
        let new = tag_object.clone().unwrap_or_else(|| commit.clone());
        if old.as_deref() == Some(new.as_str()) {
            return Ok(RefInfo { short: short(&full).to_owned(), full, commit, tag_object });
        }
        if !self.swap(&full, Some(&new), old.as_deref(), &format!("tag created {}", self.via)).await? {
            return Err(RefError::Exists(full));
        }
        Ok(RefInfo { short: short(&full).to_owned(), full, commit, tag_object })
    }

    /// Deletes tag `name`.
    pub(crate) async fn delete_tag(&self, name: &str) -> Result<(), RefError> {
        let full = full_name("refs/tags/", name, "name")?;
        let git = self.git();
        let now = git.ref_target(&full).await?.ok_or_else(|| RefError::Missing(full.clone()))?;
        self.check_restrictions(&full, RefChange::Delete).await?;
        if !self.swap(&full, None, Some(&now), &format!("tag deleted {}", self.via)).await? {
            let moved = git.ref_target(&full).await?;
            return Err(RefError::Stale(full, moved, now));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_full_refs_and_bad_ones_are_refused() {
        assert_eq!(full_name("refs/heads/", "feature/x", "name").unwrap(), "refs/heads/feature/x");
        assert_eq!(full_name("refs/heads/", "refs/heads/main", "name").unwrap(), "refs/heads/main");
        assert_eq!(full_name("refs/tags/", "v1.0", "name").unwrap(), "refs/tags/v1.0");
        for bad in ["", " ", "-x", "a..b", "a b", "x.lock", "a/", "/a", "a~1", "a^", "a:b", "a?", "a*", "[a", "a\\b", "@{x", ".hidden", "a//b"] {
            assert!(full_name("refs/heads/", bad, "name").is_err(), "{bad:?}");
        }
    }
}
