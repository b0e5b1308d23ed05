use super::{Postgres, is_unique_violation};
use crate::error::StoreError;
use crate::names::{Owner, RepoSlug};
use crate::projects::Project;
use crate::repos::{Repo, RepoUpdate, Repos};
use crate::store::now;

impl Repos for Postgres {
    fn insert_repo(&self, project_id: i64, slug: &RepoSlug, public: bool) -> Result<Option<i64>, StoreError> {
        let row = self
            .conn()?
            .query_opt(
                "INSERT INTO repositories (project_id, slug, name, public, created_at) VALUES ($1, $2, $2, $3, $4)
                 ON CONFLICT (project_id, slug) DO NOTHING RETURNING id",
                &[&project_id, &slug.as_str(), &public, &now()],
            )
            .map_err(self.err())?;
        Ok(row.map(|r| r.get(0)))
    }

    fn delete_repo_row(&self, id: i64) -> Result<(), StoreError> {
        self.conn()?.execute("DELETE FROM repositories WHERE id = $1", &[&id]).map_err(self.err())?;
        Ok(())
    }

    fn repo(&self, owner: &Owner, slug: &RepoSlug) -> Result<Option<Repo>, StoreError> {
        let row = self
            .conn()?
            .query_opt(
                "SELECT r.id, r.name, r.public, p.id, p.public FROM repositories r JOIN projects p ON p.id = r.project_id
                 WHERE p.key = $1 AND r.slug = $2",
                &[&owner.project_key(), &slug.as_str()],
            )
            .map_err(self.err())?;
        Ok(row.map(|r| Repo {
            id: r.get(0),
            owner: owner.clone(),
            slug: slug.clone(),
            name: r.get(1),
            public: r.get(2),
            project_id: r.get(3),
            project_public: r.get(4),
        }))
    }

    fn project_repos(&self, project: &Project) -> Result<Vec<Repo>, StoreError> {
        let rows = self
            .conn()?
            .query(
                "SELECT r.id, r.slug, r.name, r.public, p.public FROM repositories r JOIN projects p ON p.id = r.project_id WHERE p.id = $1 ORDER BY r.slug",
                &[&project.id],
            )
            .map_err(self.err())?;
        rows.iter()
            .map(|r| {
                Ok(Repo {
                    id: r.get(0),
                    owner: project.owner.clone(),
                    slug: RepoSlug::parse(r.get::<_, &str>(1))?,
                    name: r.get(2),
                    public: r.get(3),
                    project_id: project.id,
                    project_public: r.get(4),
                })
            })
            .collect()
    }

    fn set_repo_public(&self, owner: &Owner, slug: &RepoSlug, public: bool) -> Result<(), StoreError> {
        let repo = self.repo(owner, slug)?.ok_or_else(|| StoreError::NoSuchRepo(format!("{owner}/{slug}")))?;
        self.conn()?.execute("UPDATE repositories SET public = $1 WHERE id = $2", &[&public, &repo.id]).map_err(self.err())?;
        Ok(())
    }

    fn repo_forkable(&self, repo: &Repo) -> Result<bool, StoreError> {
        Ok(self.conn()?.query_one("SELECT forkable FROM repositories WHERE id = $1", &[&repo.id]).map_err(self.err())?.get(0))
    }

    fn update_repo(&self, repo: &Repo, update: &RepoUpdate) -> Result<Repo, StoreError> {
        {
            let mut conn = self.conn()?;
            let mut tx = conn.client.transaction().map_err(self.err())?;
            if let Some((name, slug)) = &update.name
                && let Err(e) = tx.execute("UPDATE repositories SET name = $1, slug = $2 WHERE id = $3", &[name, &slug.as_str(), &repo.id])
            {
                return Err(if is_unique_violation(&e) { StoreError::RepoExists(format!("{}/{slug}", repo.owner)) } else { self.err()(e) });
            }
            if let Some(f) = update.forkable {
                tx.execute("UPDATE repositories SET forkable = $1 WHERE id = $2", &[&f, &repo.id]).map_err(self.err())?;
            }
            if let Some(p) = update.public {
                tx.execute("UPDATE repositories SET public = $1 WHERE id = $2", &[&p, &repo.id]).map_err(self.err())?;
            }
            tx.commit().map_err(self.err())?;
        }
        let slug = update.name.as_ref().map(|(_, s)| s.clone()).unwrap_or_else(|| repo.slug.clone());
        self.repo(&repo.owner, &slug)?.ok_or_else(|| StoreError::NoSuchRepo(format!("{}/{slug}", repo.owner)))
    }
}
