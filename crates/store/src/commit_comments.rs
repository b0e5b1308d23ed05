//! Comments on a commit (Bitbucket's commit comments): general, on a file, or on a line of the
//! commit's diff (`anchor`, the JSON the REST API takes), with replies. Each change writes its
//! webhook events (`repo:comment:*`) in its own transaction, as a pull request's comments do.

use crate::error::StoreError;
use crate::pull_requests::{CommentDelete, Versioned};
use crate::webhooks::{NewEvent, Render};

/// One comment on a commit of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitComment {
    /// Global, never reused.
    pub id: i64,
    pub repo_id: i64,
    /// The full commit id.
    pub commit_id: String,
    /// The comment this one replies to (same repository and commit).
    pub parent_id: Option<i64>,
    pub author_id: i64,
    pub text: String,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// The anchor's JSON (path, line, lineType, fileType, srcPath), as the server checked it.
    pub anchor: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewCommitComment {
    pub repo_id: i64,
    pub commit_id: String,
    pub parent_id: Option<i64>,
    pub author_id: i64,
    pub text: String,
    pub anchor: Option<String>,
}

pub trait CommitComments {
    /// Adds a comment and its events (rendered from the row as written).
    fn insert_commit_comment(&self, new: &NewCommitComment, events: Render<'_, CommitComment>) -> Result<CommitComment, StoreError>;
    fn commit_comment(&self, id: i64) -> Result<Option<CommitComment>, StoreError>;
    /// The comments on `commit_id` in `repo_id`, replies included, oldest first.
    fn commit_comments(&self, repo_id: i64, commit_id: &str) -> Result<Vec<CommitComment>, StoreError>;
    /// Replaces the text when the comment is at `version`; the version goes up by one.
    fn update_commit_comment(&self, id: i64, version: i64, text: &str, events: Render<'_, CommitComment>) -> Result<Versioned<CommitComment>, StoreError>;
    /// Deletes the comment when it is at `version` and has no replies.
    fn delete_commit_comment(&self, id: i64, version: i64, events: &[NewEvent]) -> Result<CommentDelete, StoreError>;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::backends;
    use crate::{NewWebhook, Owner, ProjectKey, RepoSlug};

    #[test]
    pub(crate) fn commit_comments_are_versioned_keep_their_replies_and_go_with_their_repository() {
        let (_dir, s) = backends::store();
        let key = ProjectKey::parse("TP").unwrap();
        s.create_project(&key, None, false).unwrap();
        let repo = s.create_repo(&Owner::Project(key), &RepoSlug::parse("r").unwrap(), false).unwrap();
        let author = 1;
        let c = "a".repeat(40);
        let none: Render<'_, CommitComment> = &|_| Vec::new();
        let new = |text: &str, parent: Option<i64>| NewCommitComment {
            repo_id: repo.id,
            commit_id: c.clone(),
            parent_id: parent,
            author_id: author,
            text: text.into(),
            anchor: parent.is_none().then(|| r#"{"path":"a.txt","line":2,"lineType":"ADDED","fileType":"TO"}"#.to_owned()),
        };
        let first = s.insert_commit_comment(&new("first", None), none).unwrap();
        assert_eq!((first.version, first.commit_id.as_str(), first.anchor.is_some()), (0, c.as_str(), true));
        let reply = s.insert_commit_comment(&new("reply", Some(first.id)), none).unwrap();
        assert_eq!(s.commit_comments(repo.id, &c).unwrap().iter().map(|x| x.text.as_str()).collect::<Vec<_>>(), ["first", "reply"]);
        assert!(s.commit_comments(repo.id, &"b".repeat(40)).unwrap().is_empty());
        // Versions.
        assert_eq!(s.update_commit_comment(first.id, 5, "x", none).unwrap(), Versioned::Stale(0));
        let Versioned::Done(edited) = s.update_commit_comment(first.id, 0, "edited", none).unwrap() else { panic!("not updated") };
        assert_eq!((edited.text.as_str(), edited.version), ("edited", 1));
        assert_eq!(s.update_commit_comment(999_999, 0, "x", none).unwrap(), Versioned::Gone);
        // A comment with replies stays; its reply goes; then it goes.
        assert_eq!(s.delete_commit_comment(first.id, 1, &[]).unwrap(), CommentDelete::HasReplies);
        assert_eq!(s.delete_commit_comment(reply.id, 3, &[]).unwrap(), CommentDelete::Stale(0));
        assert_eq!(s.delete_commit_comment(reply.id, 0, &[]).unwrap(), CommentDelete::Deleted);
        assert_eq!(s.delete_commit_comment(first.id, 1, &[]).unwrap(), CommentDelete::Deleted);
        assert_eq!(s.delete_commit_comment(first.id, 1, &[]).unwrap(), CommentDelete::Gone);
        // Events are written with the change, when a webhook wants them.
        s.create_webhook(&NewWebhook {
            project_id: repo.project_id,
            repo_id: Some(repo.id),
            name: "ci".into(),
            url: "http://ci.example/hook".into(),
            events: vec!["repo:comment:added".into()],
            active: true,
            secret: None,
            ssl_verify: true,
            username: None,
            password: None,
        })
        .unwrap();
        let before = s.pending_deliveries().unwrap();
        let ev: Render<'_, CommitComment> = &|c| {
            vec![NewEvent { project_id: repo.project_id, repo_id: Some(c.repo_id), key: "repo:comment:added".into(), payload: format!("{{\"id\":{}}}", c.id) }]
        };
        let kept = s.insert_commit_comment(&new("kept", None), ev).unwrap();
        assert_eq!(s.pending_deliveries().unwrap(), before + 1);
        // The repository's deletion takes its comments.
        s.delete_repo(&repo).unwrap();
        assert_eq!(s.commit_comment(kept.id).unwrap(), None);
    }
}
