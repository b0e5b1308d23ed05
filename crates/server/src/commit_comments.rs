//! Comments on commits: the rules the REST API (`api/commit_comments.rs`) and the commit page
//! (`web/repo.rs`) share. Anyone who reads the repository comments; only the author edits; the
//! author or a repository administrator deletes, and not while replies stand; every change is
//! versioned and writes its `repo:comment:*` webhook event in its own transaction. Blocking
//! (call on the blocking pool).

use trove_store::{CommentDelete, CommitComment, NewCommitComment, Permission, Repo, Store, StoreError, Versioned};

use crate::AppState;
use crate::webhooks::CommitCommentEvents;

/// The longest comment text taken.
pub(crate) const MAX_TEXT: usize = 32 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CommentError {
    #[error("{message}")]
    Invalid { context: &'static str, message: String },
    #[error("Comment {0} does not exist on this commit.")]
    NotFound(String),
    #[error("You are not permitted to {0} another user's comment.")]
    Forbidden(&'static str),
    #[error(
        "You are attempting to {what} a comment based on out-of-date information (you sent version {given}, it is at version {current}); reload it and try again."
    )]
    Stale { what: &'static str, given: i64, current: i64 },
    #[error("This comment has replies and cannot be deleted; delete the replies first.")]
    HasReplies,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The text, when a comment may hold it.
pub(crate) fn checked_text(text: &str) -> Result<&str, CommentError> {
    if text.trim().is_empty() {
        return Err(CommentError::Invalid { context: "text", message: "A comment needs some text.".into() });
    }
    if text.len() > MAX_TEXT {
        return Err(CommentError::Invalid { context: "text", message: format!("A comment may hold at most {MAX_TEXT} bytes; this one has {}.", text.len()) });
    }
    Ok(text)
}

/// A commit of a repository: where comments are.
#[derive(Clone, Copy)]
pub(crate) struct Place<'a> {
    pub(crate) repo: &'a Repo,
    /// The full id.
    pub(crate) commit: &'a str,
}

/// The comment `raw` on `commit` of `repo`; one on another commit or repository is not found.
pub(crate) fn on(s: &Store, repo: &Repo, commit: &str, raw: &str) -> Result<CommitComment, CommentError> {
    let id: i64 = raw.parse().ok().filter(|n| *n > 0).ok_or_else(|| CommentError::NotFound(format!("{raw:?}")))?;
    s.commit_comment(id)?.filter(|c| c.repo_id == repo.id && c.commit_id == commit).ok_or_else(|| CommentError::NotFound(format!("{raw:?}")))
}

/// Adds `text` by `author` on `at` (a full commit id the caller resolved), replying to `parent` or
/// anchored by `anchor` (its checked JSON; a reply takes none).
pub(crate) fn add(
    state: &AppState,
    s: &Store,
    at: Place<'_>,
    author: i64,
    text: &str,
    parent: Option<i64>,
    anchor: Option<String>,
) -> Result<CommitComment, CommentError> {
    let (repo, commit) = (at.repo, at.commit);
    let text = checked_text(text)?;
    let mut anchor = anchor;
    if let Some(p) = parent {
        on(s, repo, commit, &p.to_string())
            .map_err(|_| CommentError::Invalid { context: "parent", message: format!("Comment {p} is not a comment on this commit.") })?;
        anchor = None;
    }
    let new = NewCommitComment { repo_id: repo.id, commit_id: commit.to_owned(), parent_id: parent, author_id: author, text: text.to_owned(), anchor };
    let events = CommitCommentEvents::load(state, s, repo, author, author)?;
    let render = |c: &CommitComment| events.as_ref().map(|e| e.event("repo:comment:added", c, None)).unwrap_or_default();
    let c = s.insert_commit_comment(&new, &render)?;
    state.webhooks.wake();
    Ok(c)
}

/// Replaces the text of comment `raw` by its author `who`, at `version`.
pub(crate) fn edit(state: &AppState, s: &Store, at: Place<'_>, who: i64, raw: &str, version: i64, text: &str) -> Result<CommitComment, CommentError> {
    let (repo, commit) = (at.repo, at.commit);
    let text = checked_text(text)?;
    let c = on(s, repo, commit, raw)?;
    if c.author_id != who {
        return Err(CommentError::Forbidden("edit"));
    }
    let events = CommitCommentEvents::load(state, s, repo, who, c.author_id)?;
    let render = |n: &CommitComment| events.as_ref().map(|e| e.event("repo:comment:edited", n, Some(&c.text))).unwrap_or_default();
    match s.update_commit_comment(c.id, version, text, &render)? {
        Versioned::Done(c) => {
            state.webhooks.wake();
            Ok(c)
        }
        Versioned::Stale(current) => Err(CommentError::Stale { what: "edit", given: version, current }),
        Versioned::Gone => Err(CommentError::NotFound(format!("{raw:?}"))),
    }
}

/// Deletes comment `raw` for `who` (its author, or `level` admin), at `version`.
pub(crate) fn delete(state: &AppState, s: &Store, at: Place<'_>, who: i64, level: Permission, raw: &str, version: i64) -> Result<(), CommentError> {
    let (repo, commit) = (at.repo, at.commit);
    let c = on(s, repo, commit, raw)?;
    if c.author_id != who && level < Permission::Admin {
        return Err(CommentError::Forbidden("delete"));
    }
    let events = CommitCommentEvents::load(state, s, repo, who, c.author_id)?.map(|e| e.event("repo:comment:deleted", &c, None)).unwrap_or_default();
    match s.delete_commit_comment(c.id, version, &events)? {
        CommentDelete::Deleted => {
            state.webhooks.wake();
            Ok(())
        }
        CommentDelete::Gone => Err(CommentError::NotFound(format!("{raw:?}"))),
        CommentDelete::Stale(current) => Err(CommentError::Stale { what: "delete", given: version, current }),
        CommentDelete::HasReplies => Err(CommentError::HasReplies),
    }
}
