//! Repositories: per project, all the caller may see, personal ones; get, create (the slug is
//! made from the name), update (a new name renames the slug), delete (the directory is moved
//! aside, then removed).

use axum::extract::Path;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use trove_store::{Owner, Permission, ProjectInfo, Repo, RepoSlug, RepoUpdate};

use super::{Api, ApiError, matches_filter, ok, paged, parse_body, parse_optional_body};
use crate::audit::{Action, target};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RepoBody {
    name: Option<String>,
    scm_id: Option<String>,
    forkable: Option<bool>,
    public: Option<bool>,
    project: Option<ProjectRef>,
    description: Option<String>,
    /// A fork's slug, when it should not be made from its name.
    slug: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct ProjectRef {
    key: Option<String>,
}

/// A repository name and the slug made from it.
fn name_and_slug(name: &str) -> Result<(String, RepoSlug), ApiError> {
    Ok(crate::repo_details::name_and_slug(name)?)
}

/// The repositories of `project` the caller may read, as JSON.
fn readable(api: &Api, project: &ProjectInfo, name: Option<&str>) -> Result<Vec<serde_json::Value>, ApiError> {
    let mut out = Vec::new();
    for repo in api.store().project_repos(&project.as_project())? {
        if !matches_filter(name, &[&repo.name, repo.slug.as_str()]) {
            continue;
        }
        if api.store().permission(api.who.as_ref(), &repo)?.is_some() {
            out.push(api.repo_json(&repo, project)?);
        }
    }
    Ok(out)
}

/// `GET /projects/{key}/repos`.
pub(crate) async fn list(api: Api, Path(key): Path<String>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let page = api.q.page()?;
        let project = api.project(&key, None, "see this project")?;
        Ok(ok(StatusCode::OK, paged(readable(api, &project, None)?, page)))
    })
    .await
}

/// `GET /users/{user}/repos` (also `~user`): a user's personal repositories.
pub(crate) async fn list_personal(api: Api, Path(user): Path<String>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let page = api.q.page()?;
        let user = user.strip_prefix('~').unwrap_or(&user);
        let key = format!("~{user}");
        let owner = Owner::parse(&key).map_err(|_| api.hidden(ApiError::no_user(user)))?;
        let Owner::User(name) = &owner else { return Err(ApiError::no_user(user)) };
        if api.store().user(name)?.is_none() {
            return Err(api.hidden(ApiError::no_user(user)));
        }
        let values = match api.store().project_info(&owner)? {
            Some(project) => readable(api, &project, None)?,
            None => Vec::new(),
        };
        Ok(ok(StatusCode::OK, paged(values, page)))
    })
    .await
}

/// `GET /repos?name=&projectname=&permission=`: every repository the caller may read.
pub(crate) async fn list_all(api: Api) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let page = api.q.page()?;
        let name = api.q.get("name");
        let project_name = api.q.get("projectname");
        let need = api.q.get("permission").map(|p| super::parse_level("REPO", p)).transpose()?;
        let mut values = Vec::new();
        for p in api.store().visible_projects(api.user(), crate::access::sees_everything(api.who.as_ref()))? {
            let Some(info) = api.store().project_info(&p.owner)? else { continue };
            if !matches_filter(project_name, &[&info.name]) {
                continue;
            }
            for repo in api.store().project_repos(&p)? {
                if !matches_filter(name, &[&repo.name, repo.slug.as_str()]) {
                    continue;
                }
                let Some(have) = api.store().permission(api.who.as_ref(), &repo)? else { continue };
                if need.is_some_and(|n| have < n) {
                    continue;
                }
                values.push(api.repo_json(&repo, &info)?);
            }
        }
        Ok(ok(StatusCode::OK, paged(values, page)))
    })
    .await
}

/// `GET /projects/{key}/repos/{slug}`.
pub(crate) async fn get(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let (repo, project) = api.repo(&key, &slug, Permission::Read, "see this repository")?;
        Ok(ok(StatusCode::OK, api.repo_json(&repo, &project)?))
    })
    .await
}

/// `POST /projects/{key}/repos` `{name, scmId: "git", forkable, public}` → 201. Needs project
/// admin (or being the owner of the personal project).
pub(crate) async fn create(api: Api, Path(key): Path<String>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        api.require_login()?;
        let owner = crate::access::create_repo(api.store(), api.who.as_ref(), &key).map_err(|e| {
            // A personal project of a user who does not exist: say which user.
            let missing = match Owner::parse(&key) {
                Ok(Owner::User(u)) if api.store().user(&u).is_ok_and(|found| found.is_none()) => ApiError::no_user(u.as_str()),
                _ => ApiError::no_project(&key),
            };
            api.refused(e, || missing, "create repositories in this project")
        })?;
        let b: RepoBody = parse_body(body)?;
        let (name, slug) = name_and_slug(b.name.as_deref().ok_or_else(|| ApiError::invalid("name", "The repository name is required."))?)?;
        if let Some(scm) = &b.scm_id
            && scm != "git"
        {
            return Err(ApiError::invalid("scmId", format!("{scm:?} is not a supported SCM; only \"git\" is.")));
        }
        let repo = api.store().create_repo(&owner, &slug, b.public.unwrap_or(false))?;
        let description = b.description.as_deref().map(checked_description).transpose()?;
        let repo = api.store().update_repo(&repo, &RepoUpdate { name: Some((name, slug)), forkable: b.forkable, description, ..Default::default() })?;
        api.audit(Action::RepoCreate, &target::repo(&repo), serde_json::json!({"name": repo.name, "public": repo.public, "id": repo.id}));
        let project = api.store().project_info(&owner)?.ok_or_else(|| ApiError::no_project(&key))?;
        Ok(ok(StatusCode::CREATED, api.repo_json(&repo, &project)?))
    })
    .await
}

fn checked_description(d: &str) -> Result<String, ApiError> {
    Ok(crate::repo_details::checked_description(d)?)
}

/// `PUT /projects/{key}/repos/{slug}` `{name?, description?, forkable?, public?, project?: {key}}`:
/// a new name renames the slug; another project moves the repository there (the caller must
/// be able to create repositories in it). The old project and slug then redirect to the new
/// place (REST, web and git: [`crate::access::moved`]).
pub(crate) async fn update(api: Api, Path((key, slug)): Path<(String, String)>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let (repo, project) = api.repo(&key, &slug, Permission::Admin, "change this repository")?;
        let b: RepoBody = parse_optional_body(body)?;
        let mut target = None;
        if let Some(k) = b.project.as_ref().and_then(|p| p.key.as_deref())
            && !k.eq_ignore_ascii_case(&project.owner.to_string())
        {
            let owner = crate::access::create_repo(api.store(), api.who.as_ref(), k)
                .map_err(|e| api.refused(e, || ApiError::no_project(k), "move repositories into that project"))?;
            let info = api.store().project_info(&owner)?.ok_or_else(|| ApiError::no_project(k))?;
            target = Some(info);
        }
        let name = b.name.as_deref().map(name_and_slug).transpose()?;
        let description = b.description.as_deref().map(checked_description).transpose()?;
        let update = RepoUpdate { name, forkable: b.forkable, public: b.public, description, project_id: target.as_ref().map(|t| t.id) };
        let before = repo;
        let events = crate::webhooks::repo_modified(api, &before, &project, &update)?;
        let repo: Repo = api.store().update_repo_with_events(&before, &update, &events)?;
        if !events.is_empty() {
            api.state.webhooks.wake();
        }
        let mut changed = serde_json::json!({});
        if before.slug != repo.slug || before.name != repo.name {
            changed["name"] = serde_json::json!({"from": before.name, "to": repo.name});
            changed["slug"] = serde_json::json!({"from": before.slug.as_str(), "to": repo.slug.as_str()});
        }
        if before.public != repo.public {
            changed["public"] = serde_json::json!(repo.public);
        }
        if let Some(f) = b.forkable {
            changed["forkable"] = serde_json::json!(f);
        }
        if let Some(d) = &b.description {
            changed["description"] = serde_json::json!(d);
        }
        if let Some(t) = &target {
            changed["project"] = serde_json::json!({"from": project.owner.to_string(), "to": t.owner.to_string()});
        }
        api.audit(Action::RepoUpdate, &target::repo(&before), changed);
        let project = target.unwrap_or(project);
        Ok(ok(StatusCode::OK, api.repo_json(&repo, &project)?))
    })
    .await
}

/// `DELETE /projects/{key}/repos/{slug}` → 202, as Bitbucket answers (the deletion is done by
/// then: the row is gone and the directory was moved aside and removed).
pub(crate) async fn delete(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let (repo, _) = api.repo(&key, &slug, Permission::Admin, "delete this repository")?;
        api.store().delete_repo(&repo)?;
        api.audit(Action::RepoDelete, &target::repo(&repo), serde_json::json!({"name": repo.name, "id": repo.id}));
        Ok(ok(
            StatusCode::ACCEPTED,
            serde_json::json!({"context": null, "message": format!("Repository {} has been deleted.", repo.display_path()), "exceptionName": null}),
        ))
    })
    .await
}

/// `POST /projects/{key}/repos/{slug}` `{name?, slug?, project?: {key}}` → 201: forks the
/// repository into `project` (default: the caller's personal project, made on first use), named
/// `name` (default: the origin's name). Needs read on the origin, forking allowed on it
/// (`forkable`), and the right to create repositories in the target project (as `POST
/// …/repos`). The answer is the fork, with the origin in `origin`.
pub(crate) async fn fork(api: Api, Path((key, slug)): Path<(String, String)>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    // No repack of the origin while its files are linked (see `Maintenance::hold`).
    let (origin, _) = api.repo_async(&key, &slug, Permission::Read, "see this repository").await?;
    let _held = api.state.maintenance.hold(origin.id, api.store().repo_path(&origin)).await;
    api.blocking(move |api| {
        let who = api.require_login()?;
        let (origin, _) = api.repo(&key, &slug, Permission::Read, "see this repository")?;
        let b: RepoBody = parse_optional_body(body)?;
        let target = match b.project.as_ref().and_then(|p| p.key.as_deref()) {
            Some(k) => k.to_owned(),
            None => format!("~{}", who.user.name),
        };
        let owner = crate::access::create_repo(api.store(), api.who.as_ref(), &target)
            .map_err(|e| api.refused(e, || ApiError::no_project(&target), "create repositories in that project"))?;
        if !api.store().repo_forkable(&origin)? {
            return Err(ApiError::Invalid {
                context: None,
                message: format!(
                    "Repository {} cannot be forked: forking is disabled for it. A repository administrator can allow it (PUT with \"forkable\": true).",
                    origin.display_path()
                ),
            });
        }
        let (name, fork_slug) = name_and_slug(b.name.as_deref().unwrap_or(&origin.name))?;
        let fork_slug = match b.slug.as_deref() {
            Some(s) => RepoSlug::parse(s).map_err(|e| ApiError::invalid("slug", format!("{s:?} is not a valid repository slug: {e}.")))?,
            None => fork_slug,
        };
        let fork = api.store().fork_repo(&origin, &owner, &fork_slug)?;
        let project = api.store().project_info(&owner)?.ok_or_else(|| ApiError::no_project(&target))?;
        // `repo:forked` is written with the step that names the fork.
        let named = Repo { name: name.clone(), ..fork.clone() };
        let events = crate::webhooks::repo_forked(api, &origin, &named, &project)?;
        let fork = api.store().update_repo_with_events(&fork, &RepoUpdate { name: Some((name, fork_slug)), ..Default::default() }, &events)?;
        if !events.is_empty() {
            api.state.webhooks.wake();
        }
        api.audit(
            Action::RepoCreate,
            &target::repo(&fork),
            serde_json::json!({"name": fork.name, "public": fork.public, "id": fork.id, "origin": origin.display_path()}),
        );
        Ok(ok(StatusCode::CREATED, api.repo_json(&fork, &project)?))
    })
    .await
}

/// The JSON of each of `repos` the caller may read.
fn readable_of(api: &Api, repos: Vec<Repo>) -> Result<Vec<serde_json::Value>, ApiError> {
    let mut out = Vec::new();
    for repo in repos {
        if api.store().permission(api.who.as_ref(), &repo)?.is_none() {
            continue;
        }
        if let Some(project) = api.store().project_info(&repo.owner)? {
            out.push(api.repo_json(&repo, &project)?);
        }
    }
    Ok(out)
}

/// `GET /projects/{key}/repos/{slug}/forks`: the repositories forked from this one (not their
/// forks) that the caller may read, oldest first, paged.
pub(crate) async fn forks(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let page = api.q.page()?;
        let (repo, _) = api.repo(&key, &slug, Permission::Read, "see this repository")?;
        Ok(ok(StatusCode::OK, paged(readable_of(api, api.store().repo_forks(&repo)?)?, page)))
    })
    .await
}

/// `GET /projects/{key}/repos/{slug}/related`: the other repositories of this one's fork
/// hierarchy (its origins, forks and their forks) that the caller may read, oldest first, paged.
pub(crate) async fn related(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    api.blocking(move |api| {
        let page = api.q.page()?;
        let (repo, _) = api.repo(&key, &slug, Permission::Read, "see this repository")?;
        Ok(ok(StatusCode::OK, paged(readable_of(api, api.store().related_repos(&repo)?)?, page)))
    })
    .await
}

/// `~user` from the `{user}` of `/users/{user}/repos…` (with or without the `~`).
fn personal_key(user: &str) -> String {
    format!("~{}", user.strip_prefix('~').unwrap_or(user))
}

/// `POST /users/{user}/repos`: as `POST /projects/~user/repos`.
pub(crate) async fn create_personal(api: Api, Path(user): Path<String>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    create(api, Path(personal_key(&user)), body).await
}

/// `POST /users/{user}/repos/{slug}`: forks a personal repository, as `POST /projects/~user/repos/{slug}`.
pub(crate) async fn fork_personal(api: Api, Path((user, slug)): Path<(String, String)>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    fork(api, Path((personal_key(&user), slug)), body).await
}

/// `GET /users/{user}/repos/{slug}`.
pub(crate) async fn get_personal(api: Api, Path((user, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    get(api, Path((personal_key(&user), slug))).await
}

/// `PUT /users/{user}/repos/{slug}`.
pub(crate) async fn update_personal(api: Api, Path((user, slug)): Path<(String, String)>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    update(api, Path((personal_key(&user), slug)), body).await
}

/// `DELETE /users/{user}/repos/{slug}`.
pub(crate) async fn delete_personal(api: Api, Path((user, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    delete(api, Path((personal_key(&user), slug))).await
}
