//! Comments on commits, as Bitbucket Server 8 serves them under
//! `/rest/api/1.0/projects/{key}/repos/{slug}/commits/{commitId}/comments`:
//! - `GET` (REPO_READ, paged): the root comments with their replies nested in `comments`;
//!   `?path=` keeps those anchored on one file.
//! - `POST` (REPO_READ: readers comment, as in Bitbucket) `{text, parent?: {id}, anchor?: {path,
//!   line?, lineType?, fileType?, srcPath?}}` → 201. A reply takes its parent's place (no anchor
//!   of its own).
//! - `GET …/{commentId}`, `PUT …/{commentId}` `{text, version}` (the author only) → 200,
//!   `DELETE …/{commentId}?version=` (the author or REPO_ADMIN; not while it has replies) → 204.
//!
//! The commit must exist in the repository (404 `NoSuchCommitException`); comments are kept by
//! its full id, whichever abbreviation or ref named it. Each change writes its
//! `repo:comment:added|edited|deleted` webhook event in its own transaction.

use axum::Router;
use axum::extract::Path;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};
use trove_store::{CommentDelete, CommitComment, NewCommitComment, Permission, Repo, Versioned};

use super::pull_requests::{CommentBody, Users, optional_json, parse_anchor, version_of};
use super::{Api, ApiError, no_content, ok, paged, parse_body};
use crate::AppState;
use crate::repo_read::Reader;
use crate::webhooks::CommitCommentEvents;

/// The longest comment text taken (Bitbucket's limit is about the same).
const MAX_TEXT: usize = 32 * 1024;

pub(crate) fn routes(repo: &dyn Fn(&str) -> String) -> Router<AppState> {
    Router::new()
        .route(&repo("/commits/{id}/comments"), get(list).post(create))
        .route(&repo("/commits/{id}/comments/{comment}"), get(get_one).put(update).delete(delete))
}

/// The comment JSON, without the caller's permitted operations (webhook payloads).
pub(crate) fn commit_comment_json_for_event(c: &CommitComment, author: &Value) -> Value {
    let mut v = json!({
        "id": c.id,
        "version": c.version,
        "text": c.text,
        "author": author,
        "createdDate": c.created_at,
        "updatedDate": c.updated_at,
        "comments": [],
        "tasks": [],
        "severity": "NORMAL",
        "state": "OPEN",
    });
    if let Some(a) = c.anchor.as_deref().and_then(|a| serde_json::from_str::<Value>(a).ok()) {
        v["anchor"] = a;
    }
    v
}

fn comment_json(api: &Api, users: &mut Users, level: Permission, all: &[CommitComment], c: &CommitComment) -> Result<Value, ApiError> {
    let replies = all.iter().filter(|r| r.parent_id == Some(c.id)).map(|r| comment_json(api, users, level, all, r)).collect::<Result<Vec<_>, _>>()?;
    let mine = api.user().map(|u| u.id) == Some(c.author_id);
    let mut v = commit_comment_json_for_event(c, &users.get(api, c.author_id)?);
    v["properties"] = json!({"repositoryId": c.repo_id});
    v["permittedOperations"] = json!({"editable": mine, "deletable": (mine || level >= Permission::Admin) && replies.is_empty()});
    v["comments"] = Value::Array(replies);
    Ok(v)
}

fn no_comment(raw: &str) -> ApiError {
    ApiError::NotFound {
        exception: "com.atlassian.bitbucket.comment.NoSuchCommentException",
        message: format!("Comment {raw:?} does not exist on this commit."),
    }
}

/// The repository (with the caller's level on it) and the full id of the commit `id` names.
async fn commit_of(api: &Api, key: &str, slug: &str, id: &str) -> Result<(Repo, Permission, String), ApiError> {
    let (key2, slug2) = (key.to_owned(), slug.to_owned());
    let (repo, level) = api
        .clone()
        .blocking(move |api| {
            let (repo, _) = api.repo(&key2, &slug2, Permission::Read, "see this repository")?;
            let level = api.store().permission(api.who.as_ref(), &repo)?.unwrap_or(Permission::Read);
            Ok::<_, ApiError>((repo, level))
        })
        .await?;
    let git = Reader::new(&api.state, api.store().repo_path(&repo));
    let refs = git.refs().await?;
    let commit = git.resolve(&refs, Some(id)).await?.ok_or_else(|| ApiError::no_commit(id))?.commit;
    Ok((repo, level, commit))
}

/// The comment `raw` on `commit` of `repo`; one on another commit or repository is not found.
fn comment_on(api: &Api, repo: &Repo, commit: &str, raw: &str) -> Result<CommitComment, ApiError> {
    let id: i64 = raw.parse().ok().filter(|n| *n > 0).ok_or_else(|| no_comment(raw))?;
    api.store().commit_comment(id)?.filter(|c| c.repo_id == repo.id && c.commit_id == commit).ok_or_else(|| no_comment(raw))
}

fn checked_text(text: Option<String>) -> Result<String, ApiError> {
    let text = text.unwrap_or_default();
    if text.trim().is_empty() {
        return Err(ApiError::invalid("text", "A comment needs some text."));
    }
    if text.len() > MAX_TEXT {
        return Err(ApiError::invalid("text", format!("A comment may hold at most {MAX_TEXT} bytes; this one has {}.", text.len())));
    }
    Ok(text)
}

async fn list(api: Api, Path((key, slug, id)): Path<(String, String, String)>) -> Result<Response, ApiError> {
    let page = api.q.page()?;
    let (repo, level, commit) = commit_of(&api, &key, &slug, &id).await?;
    api.blocking(move |api| {
        let all = api.store().commit_comments(repo.id, &commit)?;
        let path = api.q.get("path").map(|p| p.trim_matches('/').to_owned()).filter(|p| !p.is_empty());
        let on_path = |c: &CommitComment| match &path {
            None => true,
            Some(p) => c.anchor.as_deref().and_then(|a| serde_json::from_str::<Value>(a).ok()).is_some_and(|a| a["path"].as_str() == Some(p.as_str())),
        };
        let mut users = Users::default();
        let values =
            all.iter().filter(|c| c.parent_id.is_none() && on_path(c)).map(|c| comment_json(api, &mut users, level, &all, c)).collect::<Result<Vec<_>, _>>()?;
        Ok(ok(StatusCode::OK, paged(values, page)))
    })
    .await
}

async fn create(api: Api, Path((key, slug, id)): Path<(String, String, String)>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let b: CommentBody = parse_body(body)?;
    let text = checked_text(b.text)?;
    let anchor = match b.anchor.map(parse_anchor).transpose()? {
        Some(mut a) => {
            a.path = a.path.trim_matches('/').to_owned();
            if a.path.is_empty() || !crate::repo_read::valid_path(&a.path) {
                return Err(ApiError::invalid("anchor.path", format!("{:?} is not a path in this repository.", a.path)));
            }
            if let Some(t) = a.line_type.as_deref().filter(|t| !matches!(*t, "ADDED" | "REMOVED" | "CONTEXT")) {
                return Err(ApiError::invalid("anchor.lineType", format!("{t:?} is not a line type; use ADDED, REMOVED or CONTEXT.")));
            }
            if let Some(t) = a.file_type.as_deref().filter(|t| !matches!(*t, "FROM" | "TO")) {
                return Err(ApiError::invalid("anchor.fileType", format!("{t:?} is not a file type; use FROM or TO.")));
            }
            a.diff_type = "COMMIT".into();
            Some(a)
        }
        None => None,
    };
    let (repo, _, commit) = commit_of(&api, &key, &slug, &id).await?;
    let who = api.require_login()?.user.id;
    let parent = b.parent.and_then(|p| p.id).filter(|p| *p > 0);
    let state = api.state.clone();
    api.blocking(move |api| {
        let mut anchor = anchor.map(|a| serde_json::to_string(&a).unwrap_or_default());
        if let Some(p) = parent {
            comment_on(api, &repo, &commit, &p.to_string())
                .map_err(|_| ApiError::invalid("parent", format!("Comment {p} is not a comment on this commit.")))?;
            anchor = None;
        }
        let new = NewCommitComment { repo_id: repo.id, commit_id: commit.clone(), parent_id: parent, author_id: who, text, anchor };
        let s = api.store();
        let events = CommitCommentEvents::load(&state, s, &repo, who, who)?;
        let render = |c: &CommitComment| events.as_ref().map(|e| e.event("repo:comment:added", c, None)).unwrap_or_default();
        let c = s.insert_commit_comment(&new, &render)?;
        state.webhooks.wake();
        let all = s.commit_comments(repo.id, &commit)?;
        Ok(ok(StatusCode::CREATED, comment_json(api, &mut Users::default(), Permission::Read, &all, &c)?))
    })
    .await
}

async fn get_one(api: Api, Path((key, slug, id, cid)): Path<(String, String, String, String)>) -> Result<Response, ApiError> {
    let (repo, level, commit) = commit_of(&api, &key, &slug, &id).await?;
    api.blocking(move |api| {
        let c = comment_on(api, &repo, &commit, &cid)?;
        let all = api.store().commit_comments(repo.id, &commit)?;
        Ok(ok(StatusCode::OK, comment_json(api, &mut Users::default(), level, &all, &c)?))
    })
    .await
}

async fn update(
    api: Api,
    Path((key, slug, id, cid)): Path<(String, String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let raw = optional_json(body)?;
    let version = version_of(&api, Some(&raw))?.ok_or_else(|| ApiError::invalid("version", "The comment's current version is required."))?;
    let text = checked_text(raw.get("text").and_then(Value::as_str).map(str::to_owned))?;
    let (repo, level, commit) = commit_of(&api, &key, &slug, &id).await?;
    let who = api.require_login()?.user.id;
    let state = api.state.clone();
    api.blocking(move |api| {
        let c = comment_on(api, &repo, &commit, &cid)?;
        if c.author_id != who {
            return Err(ApiError::Forbidden("You are not permitted to edit another user's comment.".into()));
        }
        let s = api.store();
        let events = CommitCommentEvents::load(&state, s, &repo, who, c.author_id)?;
        let previous = c.text.clone();
        let render = |c: &CommitComment| events.as_ref().map(|e| e.event("repo:comment:edited", c, Some(&previous))).unwrap_or_default();
        match s.update_commit_comment(c.id, version, &text, &render)? {
            Versioned::Done(c) => {
                state.webhooks.wake();
                let all = s.commit_comments(repo.id, &commit)?;
                Ok(ok(StatusCode::OK, comment_json(api, &mut Users::default(), level, &all, &c)?))
            }
            Versioned::Stale(current) => Err(stale("edit", version, current)),
            Versioned::Gone => Err(no_comment(&cid)),
        }
    })
    .await
}

fn stale(what: &str, given: i64, current: i64) -> ApiError {
    ApiError::Conflict {
        exception: "com.atlassian.bitbucket.comment.CommentOutOfDateException",
        message: format!(
            "You are attempting to {what} a comment based on out-of-date information (you sent version {given}, it is at version {current}); reload it and try again."
        ),
    }
}

async fn delete(
    api: Api,
    Path((key, slug, id, cid)): Path<(String, String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let raw = optional_json(body)?;
    let version = version_of(&api, Some(&raw))?.ok_or_else(|| ApiError::invalid("version", "The comment's current version is required (?version=)."))?;
    let (repo, level, commit) = commit_of(&api, &key, &slug, &id).await?;
    let who = api.require_login()?.user.id;
    let state = api.state.clone();
    api.blocking(move |api| {
        let c = comment_on(api, &repo, &commit, &cid)?;
        if c.author_id != who && level < Permission::Admin {
            return Err(ApiError::Forbidden("You are not permitted to delete another user's comment.".into()));
        }
        let s = api.store();
        let events = CommitCommentEvents::load(&state, s, &repo, who, c.author_id)?.map(|e| e.event("repo:comment:deleted", &c, None)).unwrap_or_default();
        match s.delete_commit_comment(c.id, version, &events)? {
            CommentDelete::Deleted => {
                state.webhooks.wake();
                Ok(no_content())
            }
            CommentDelete::Gone => Err(no_comment(&cid)),
            CommentDelete::Stale(current) => Err(stale("delete", version, current)),
            CommentDelete::HasReplies => Err(ApiError::Conflict {
                exception: "com.atlassian.bitbucket.comment.CommentDeletionException",
                message: "This comment has replies and cannot be deleted; delete the replies first.".into(),
            }),
        }
    })
    .await
}
