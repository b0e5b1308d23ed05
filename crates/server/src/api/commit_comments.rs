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
use trove_store::{CommitComment, Permission, Repo};

use super::pull_requests::{CommentBody, Users, optional_json, parse_anchor, version_of};
use super::{Api, ApiError, no_content, ok, paged, parse_body};
use crate::AppState;
use crate::commit_comments::{self as service, CommentError, Place};
use crate::repo_read::Reader;

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

impl From<CommentError> for ApiError {
    fn from(e: CommentError) -> Self {
        let message = e.to_string();
        match e {
            CommentError::Invalid { context, message } => ApiError::invalid(context, message),
            CommentError::NotFound(_) => ApiError::NotFound { exception: "com.atlassian.bitbucket.comment.NoSuchCommentException", message },
            CommentError::Forbidden(_) => ApiError::Forbidden(message),
            CommentError::Stale { .. } => ApiError::Conflict { exception: "com.atlassian.bitbucket.comment.CommentOutOfDateException", message },
            CommentError::HasReplies => ApiError::Conflict { exception: "com.atlassian.bitbucket.comment.CommentDeletionException", message },
            CommentError::Store(e) => e.into(),
        }
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
    let text = b.text.unwrap_or_default();
    service::checked_text(&text)?;
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
            Some(serde_json::to_string(&a).map_err(|e| ApiError::Internal(e.to_string()))?)
        }
        None => None,
    };
    let (repo, _, commit) = commit_of(&api, &key, &slug, &id).await?;
    let who = api.require_login()?.user.id;
    let parent = b.parent.and_then(|p| p.id).filter(|p| *p > 0);
    api.blocking(move |api| {
        let s = api.store();
        let c = service::add(&api.state, s, Place { repo: &repo, commit: &commit }, who, &text, parent, anchor)?;
        let all = s.commit_comments(repo.id, &commit)?;
        Ok(ok(StatusCode::CREATED, comment_json(api, &mut Users::default(), Permission::Read, &all, &c)?))
    })
    .await
}

async fn get_one(api: Api, Path((key, slug, id, cid)): Path<(String, String, String, String)>) -> Result<Response, ApiError> {
    let (repo, level, commit) = commit_of(&api, &key, &slug, &id).await?;
    api.blocking(move |api| {
        let c = service::on(api.store(), &repo, &commit, &cid)?;
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
    let text = raw.get("text").and_then(Value::as_str).unwrap_or_default().to_owned();
    service::checked_text(&text)?;
    let (repo, level, commit) = commit_of(&api, &key, &slug, &id).await?;
    let who = api.require_login()?.user.id;
    api.blocking(move |api| {
        let s = api.store();
        let c = service::edit(&api.state, s, Place { repo: &repo, commit: &commit }, who, &cid, version, &text)?;
        let all = s.commit_comments(repo.id, &commit)?;
        Ok(ok(StatusCode::OK, comment_json(api, &mut Users::default(), level, &all, &c)?))
    })
    .await
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
    api.blocking(move |api| {
        service::delete(&api.state, api.store(), Place { repo: &repo, commit: &commit }, who, level, &cid, version)?;
        Ok(no_content())
    })
    .await
}
