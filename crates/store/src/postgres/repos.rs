use super::{Postgres, is_unique_violation};
use crate::error::StoreError;
use crate::names::{Owner, RepoSlug};
use crate::projects::Project;
use crate::repos::{Repo, RepoUpdate, Repos};
use crate::store::now;

/// The columns [`Postgres::repos_where`] reads, up to `WHERE`.
macro_rules! repos_select {
    () => {
        "SELECT r.id, r.name, r.public, p.id, p.public, p.key, r.slug FROM repositories r JOIN projects p ON p.id = r.project_id WHERE "
    };
}
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

    fn repo_by_id(&self, id: i64) -> Result<Option<Repo>, StoreError> {
        let row = self
            .conn()?
            .query_opt(
                "SELECT r.id, r.name, r.public, p.id, p.public, p.key, r.slug FROM repositories r JOIN projects p ON p.id = r.project_id WHERE r.id = $1",
                &[&id],
            )
            .map_err(self.err())?;
        row.map(|r| {
            Ok(Repo {
                id: r.get(0),
                owner: Owner::parse(r.get::<_, &str>(5))?,
                slug: RepoSlug::parse(r.get::<_, &str>(6))?,
                name: r.get(1),
                public: r.get(2),
                project_id: r.get(3),
                project_public: r.get(4),
            })
        })
        .transpose()
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

    fn update_repo_with_events(&self, repo: &Repo, update: &RepoUpdate, events: &[crate::NewEvent]) -> Result<Repo, StoreError> {
        {
            let mut conn = self.conn()?;
            let mut tx = conn.client.transaction().map_err(self.err())?;
            if update.name.is_some() || update.project_id.is_some() {
                // The old place redirects here.
                tx.execute(
                    "INSERT INTO repo_redirects (project_id, slug, repo_id) VALUES ($1, $2, $3)
                     ON CONFLICT (project_id, slug) DO UPDATE SET repo_id = EXCLUDED.repo_id",
                    &[&repo.project_id, &repo.slug.as_str(), &repo.id],
                )
                .map_err(self.err())?;
            }
            let (name, slug) = update.name.clone().unwrap_or_else(|| (repo.name.clone(), repo.slug.clone()));
            let project_id = update.project_id.unwrap_or(repo.project_id);
            if let Err(e) =
                tx.execute("UPDATE repositories SET name = $1, slug = $2, project_id = $3 WHERE id = $4", &[&name, &slug.as_str(), &project_id, &repo.id])
            {
                return Err(if is_unique_violation(&e) { StoreError::RepoExists(slug.to_string()) } else { self.err()(e) });
            }
            tx.execute("DELETE FROM repo_redirects WHERE project_id = $1 AND slug = $2", &[&project_id, &slug.as_str()]).map_err(self.err())?;
            if let Some(d) = &update.description {
                let d = Some(d.trim()).filter(|d| !d.is_empty());
                tx.execute("UPDATE repositories SET description = $1 WHERE id = $2", &[&d, &repo.id]).map_err(self.err())?;
            }
            if let Some(f) = update.forkable {
                tx.execute("UPDATE repositories SET forkable = $1 WHERE id = $2", &[&f, &repo.id]).map_err(self.err())?;
            }
            if let Some(p) = update.public {
                tx.execute("UPDATE repositories SET public = $1 WHERE id = $2", &[&p, &repo.id]).map_err(self.err())?;
            }
            self.enqueue(&mut tx, events)?;
            tx.commit().map_err(self.err())?;
        }
        self.repo_by_id(repo.id)?.ok_or_else(|| StoreError::NoSuchRepo(repo.display_path()))
    }

    fn repo_description(&self, repo: &Repo) -> Result<Option<String>, StoreError> {
        let row = self.conn()?.query_opt("SELECT description FROM repositories WHERE id = $1", &[&repo.id]).map_err(self.err())?;
        Ok(row.and_then(|r| r.get(0)))
    }

    fn repo_redirect(&self, owner: &Owner, slug: &RepoSlug) -> Result<Option<Repo>, StoreError> {
        let row = self
            .conn()?
            .query_opt(
                "SELECT d.repo_id FROM repo_redirects d JOIN projects p ON p.id = d.project_id WHERE p.key = $1 AND d.slug = $2",
                &[&owner.project_key(), &slug.as_str()],
            )
            .map_err(self.err())?;
        match row {
            Some(r) => self.repo_by_id(r.get(0)),
            None => Ok(None),
        }
    }

    fn set_repo_origin(&self, id: i64, origin: &Repo) -> Result<(), StoreError> {
        self.conn()?
            .execute(
                "UPDATE repositories SET origin_id = $1, hierarchy_id = (SELECT coalesce(hierarchy_id, id) FROM repositories WHERE id = $1) WHERE id = $2",
                &[&origin.id, &id],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn repo_origin_id(&self, repo: &Repo) -> Result<Option<i64>, StoreError> {
        let row = self.conn()?.query_opt("SELECT origin_id FROM repositories WHERE id = $1", &[&repo.id]).map_err(self.err())?;
        Ok(row.and_then(|r| r.get(0)))
    }

    fn repo_forks(&self, repo: &Repo) -> Result<Vec<Repo>, StoreError> {
        self.repos_where(concat!(repos_select!(), "r.origin_id = $1 ORDER BY r.id"), repo.id)
    }

    fn related_repos(&self, repo: &Repo) -> Result<Vec<Repo>, StoreError> {
        self.repos_where(
            concat!(
                repos_select!(),
                "coalesce(r.hierarchy_id, r.id) = (SELECT coalesce(hierarchy_id, id) FROM repositories WHERE id = $1) AND r.id <> $1 ORDER BY r.id"
            ),
            repo.id,
        )
    }
}

impl Postgres {
    /// The repositories `sql` selects (`repos_select!` and a condition, with `$1` bound to `id`).
    fn repos_where(&self, sql: &'static str, id: i64) -> Result<Vec<Repo>, StoreError> {
        let rows = self.conn()?.query(sql, &[&id]).map_err(self.err())?;
        rows.iter()
            .map(|r| {
                Ok(Repo {
                    id: r.get(0),
                    owner: Owner::parse(r.get::<_, &str>(5))?,
                    slug: RepoSlug::parse(r.get::<_, &str>(6))?,
                    name: r.get(1),
                    public: r.get(2),
                    project_id: r.get(3),
                    project_public: r.get(4),
                })
            })
            .collect()
    }
}
