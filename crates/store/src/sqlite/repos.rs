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

    fn update_repo(&self, repo: &Repo, update: &RepoUpdate) -> Result<Repo, StoreError> {
        {
            let mut conn = self.write();
            let tx = conn.transaction().map_err(self.db())?;
            if let Some((name, slug)) = &update.name
                && let Err(e) = tx.execute("UPDATE repositories SET name = ?1, slug = ?2 WHERE id = ?3", params![name, slug.as_str(), repo.id])
            {
                return Err(if is_unique_violation(&e) { StoreError::RepoExists(format!("{}/{slug}", repo.owner)) } else { self.db()(e) });
            }
            if let Some(f) = update.forkable {
                tx.execute("UPDATE repositories SET forkable = ?1 WHERE id = ?2", params![f, repo.id]).map_err(self.db())?;
            }
            if let Some(p) = update.public {
                tx.execute("UPDATE repositories SET public = ?1 WHERE id = ?2", params![p, repo.id]).map_err(self.db())?;
            }
            tx.commit().map_err(self.db())?;
        }
        let slug = update.name.as_ref().map(|(_, s)| s.clone()).unwrap_or_else(|| repo.slug.clone());
        self.repo(&repo.owner, &slug)?.ok_or_else(|| StoreError::NoSuchRepo(format!("{}/{slug}", repo.owner)))
    }
}
