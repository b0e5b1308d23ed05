use rusqlite::{OptionalExtension, params};

use super::{CachedRow, Sqlite, corrupt, is_unique_violation};
use crate::error::StoreError;
use crate::names::{Owner, RepoSlug};
use crate::projects::Project;
use crate::repos::{Repo, RepoUpdate, Repos};
use crate::store::now;

impl Repos for Sqlite {
    fn insert_repo(&self, project_id: i64, slug: &RepoSlug, public: bool) -> Result<Option<i64>, StoreError> {
        let conn = self.write();
        // The id is one more than any repository ever had: the live ones and the highest
        // deleted one (`retired_ids`), so a deleted repository's id is never given again.
        let n = conn
            .execute(
                "INSERT OR IGNORE INTO repositories (id, project_id, slug, name, public, created_at) VALUES (
                    max(coalesce((SELECT max(id) FROM repositories), 0), coalesce((SELECT id FROM retired_ids WHERE tbl = 'repositories'), 0)) + 1,
                    ?1, ?2, ?2, ?3, ?4)",
                params![project_id, slug.as_str(), public, now()],
            )
            .map_err(self.db())?;
        Ok((n > 0).then(|| conn.last_insert_rowid()))
    }

    fn delete_repo_row(&self, id: i64) -> Result<(), StoreError> {
        self.write().execute("DELETE FROM repositories WHERE id = ?1", [id]).map_err(self.db())?;
        Ok(())
    }

    fn repo(&self, owner: &Owner, slug: &RepoSlug) -> Result<Option<Repo>, StoreError> {
        self.read()
            .row(
                "SELECT r.id, r.name, r.public, p.id, p.public FROM repositories r JOIN projects p ON p.id = r.project_id
                 WHERE p.key = ?1 AND r.slug = ?2",
                params![owner.project_key(), slug.as_str()],
                |r| {
                    Ok(Repo {
                        id: r.get(0)?,
                        owner: owner.clone(),
                        slug: slug.clone(),
                        name: r.get(1)?,
                        public: r.get(2)?,
                        project_id: r.get(3)?,
                        project_public: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(self.db())
    }

    fn repo_by_id(&self, id: i64) -> Result<Option<Repo>, StoreError> {
        self.read()
            .row(
                "SELECT r.id, r.name, r.public, p.id, p.public, p.key, r.slug FROM repositories r JOIN projects p ON p.id = r.project_id WHERE r.id = ?1",
                [id],
                |r| {
                    let key: String = r.get(5)?;
                    let slug: String = r.get(6)?;
                    Ok(Repo {
                        id: r.get(0)?,
                        owner: Owner::parse(&key).map_err(|e| corrupt(5, e))?,
                        slug: RepoSlug::parse(&slug).map_err(|e| corrupt(6, e))?,
                        name: r.get(1)?,
                        public: r.get(2)?,
                        project_id: r.get(3)?,
                        project_public: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(self.db())
    }

    fn project_repos(&self, project: &Project) -> Result<Vec<Repo>, StoreError> {
        let conn = self.read();
        let mut st = conn
            .prepare_cached(
                "SELECT r.id, r.slug, r.name, r.public, p.public FROM repositories r JOIN projects p ON p.id = r.project_id WHERE p.id = ?1 ORDER BY r.slug",
            )
            .map_err(self.db())?;
        let rows = st
            .query_map([project.id], |r| {
                let slug: String = r.get(1)?;
                Ok(Repo {
                    id: r.get(0)?,
                    owner: project.owner.clone(),
                    slug: RepoSlug::parse(&slug).map_err(|e| corrupt(1, e))?,
                    name: r.get(2)?,
                    public: r.get(3)?,
                    project_id: project.id,
                    project_public: r.get(4)?,
                })
            })
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    fn set_repo_public(&self, owner: &Owner, slug: &RepoSlug, public: bool) -> Result<(), StoreError> {
        let repo = self.repo(owner, slug)?.ok_or_else(|| StoreError::NoSuchRepo(format!("{owner}/{slug}")))?;
        self.write().execute("UPDATE repositories SET public = ?1 WHERE id = ?2", params![public, repo.id]).map_err(self.db())?;
        Ok(())
    }

    fn repo_forkable(&self, repo: &Repo) -> Result<bool, StoreError> {
        self.read().row("SELECT forkable FROM repositories WHERE id = ?1", [repo.id], |r| r.get(0)).map_err(self.db())
    }

    fn update_repo_with_events(&self, repo: &Repo, update: &RepoUpdate, events: &[crate::NewEvent]) -> Result<Repo, StoreError> {
        {
            let mut conn = self.write();
            let tx = conn.transaction().map_err(self.db())?;
            if update.name.is_some() || update.project_id.is_some() {
                // The old place redirects here.
                tx.execute(
                    "INSERT OR REPLACE INTO repo_redirects (project_id, slug, repo_id) VALUES (?1, ?2, ?3)",
                    params![repo.project_id, repo.slug.as_str(), repo.id],
                )
                .map_err(self.db())?;
            }
            let (name, slug) = update.name.clone().unwrap_or_else(|| (repo.name.clone(), repo.slug.clone()));
            let project_id = update.project_id.unwrap_or(repo.project_id);
            if let Err(e) =
                tx.execute("UPDATE repositories SET name = ?1, slug = ?2, project_id = ?3 WHERE id = ?4", params![name, slug.as_str(), project_id, repo.id])
            {
                return Err(if is_unique_violation(&e) { StoreError::RepoExists(slug.to_string()) } else { self.db()(e) });
            }
            // The new place is no longer a redirect to anything.
            tx.execute("DELETE FROM repo_redirects WHERE project_id = ?1 AND slug = ?2", params![project_id, slug.as_str()]).map_err(self.db())?;
            if let Some(d) = &update.description {
                let d = Some(d.trim()).filter(|d| !d.is_empty());
                tx.execute("UPDATE repositories SET description = ?1 WHERE id = ?2", params![d, repo.id]).map_err(self.db())?;
            }
            if let Some(f) = update.forkable {
                tx.execute("UPDATE repositories SET forkable = ?1 WHERE id = ?2", params![f, repo.id]).map_err(self.db())?;
            }
            if let Some(p) = update.public {
                tx.execute("UPDATE repositories SET public = ?1 WHERE id = ?2", params![p, repo.id]).map_err(self.db())?;
            }
            super::webhooks::enqueue(&tx, events).map_err(self.db())?;
            tx.commit().map_err(self.db())?;
        }
        self.repo_by_id(repo.id)?.ok_or_else(|| StoreError::NoSuchRepo(repo.display_path()))
    }

    fn repo_description(&self, repo: &Repo) -> Result<Option<String>, StoreError> {
        self.read().row("SELECT description FROM repositories WHERE id = ?1", [repo.id], |r| r.get(0)).optional().map_err(self.db()).map(Option::flatten)
    }

    fn repo_redirect(&self, owner: &Owner, slug: &RepoSlug) -> Result<Option<Repo>, StoreError> {
        let id: Option<i64> = self
            .read()
            .row(
                "SELECT d.repo_id FROM repo_redirects d JOIN projects p ON p.id = d.project_id WHERE p.key = ?1 AND d.slug = ?2",
                params![owner.project_key(), slug.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.db())?;
        match id {
            Some(id) => self.repo_by_id(id),
            None => Ok(None),
        }
    }

    fn set_repo_origin(&self, id: i64, origin: &Repo) -> Result<(), StoreError> {
        self.write()
            .execute(
                "UPDATE repositories SET origin_id = ?1, hierarchy_id = (SELECT coalesce(hierarchy_id, id) FROM repositories WHERE id = ?1) WHERE id = ?2",
                params![origin.id, id],
            )
            .map_err(self.db())?;
        Ok(())
    }

    fn repo_origin_id(&self, repo: &Repo) -> Result<Option<i64>, StoreError> {
        self.read().row("SELECT origin_id FROM repositories WHERE id = ?1", [repo.id], |r| r.get(0)).optional().map_err(self.db()).map(Option::flatten)
    }

    fn repo_forks(&self, repo: &Repo) -> Result<Vec<Repo>, StoreError> {
        self.repos_where("r.origin_id = ?1", repo.id)
    }

    fn related_repos(&self, repo: &Repo) -> Result<Vec<Repo>, StoreError> {
        self.repos_where("coalesce(r.hierarchy_id, r.id) = (SELECT coalesce(hierarchy_id, id) FROM repositories WHERE id = ?1) AND r.id <> ?1", repo.id)
    }
}

impl Sqlite {
    /// The repositories matching `cond` (over `r`, the repository, with `?1` bound to `id`),
    /// oldest first.
    fn repos_where(&self, cond: &str, id: i64) -> Result<Vec<Repo>, StoreError> {
        let conn = self.read();
        let sql = format!(
            "SELECT r.id, r.name, r.public, p.id, p.public, p.key, r.slug FROM repositories r JOIN projects p ON p.id = r.project_id WHERE {cond} ORDER BY r.id"
        );
        let mut st = conn.prepare_cached(&sql).map_err(self.db())?;
        let rows = st
            .query_map([id], |r| {
                let key: String = r.get(5)?;
                let slug: String = r.get(6)?;
                Ok(Repo {
                    id: r.get(0)?,
                    owner: Owner::parse(&key).map_err(|e| corrupt(5, e))?,
                    slug: RepoSlug::parse(&slug).map_err(|e| corrupt(6, e))?,
                    name: r.get(1)?,
                    public: r.get(2)?,
                    project_id: r.get(3)?,
                    project_public: r.get(4)?,
                })
            })
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }
}
