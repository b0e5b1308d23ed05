use super::{Postgres, parse_perm};
use crate::error::StoreError;
use crate::grants::{Grants, RepoGrantRows};
use crate::names::{Owner, ProjectKey, RepoSlug, UserName};
use crate::permissions::Permission;
use crate::projects::{Project, Projects};
use crate::repos::{Repo, Repos};
use crate::users::{User, Users};

impl Postgres {
    fn grant_list(&self, sql: &'static str, id: i64) -> Result<Vec<(UserName, Permission)>, StoreError> {
        let rows = self.conn()?.query(sql, &[&id]).map_err(self.err())?;
        Ok(rows
            .iter()
            .filter_map(|r| match (UserName::parse(r.get::<_, &str>(0)), r.get::<_, &str>(1).parse()) {
                (Ok(n), Ok(p)) => Some((n, p)),
                _ => None,
            })
            .collect())
    }
}

impl Grants for Postgres {
    fn grant_project(&self, user: &UserName, key: &ProjectKey, perm: Permission) -> Result<(), StoreError> {
        let u = self.user(user)?.ok_or_else(|| StoreError::NoSuchUser(user.to_string()))?;
        let pid = self.project_id(&Owner::Project(key.clone()))?.ok_or_else(|| StoreError::NoSuchProject(key.to_string()))?;
        self.conn()?
            .execute(
                "INSERT INTO project_permissions (project_id, user_id, permission) VALUES ($1, $2, $3)
                 ON CONFLICT (project_id, user_id) DO UPDATE SET permission = excluded.permission",
                &[&pid, &u.id, &perm.as_str()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn grant_repo(&self, user: &UserName, owner: &Owner, slug: &RepoSlug, perm: Permission) -> Result<(), StoreError> {
        let u = self.user(user)?.ok_or_else(|| StoreError::NoSuchUser(user.to_string()))?;
        let repo = self.repo(owner, slug)?.ok_or_else(|| StoreError::NoSuchRepo(format!("{owner}/{slug}")))?;
        self.conn()?
            .execute(
                "INSERT INTO repo_permissions (repo_id, user_id, permission) VALUES ($1, $2, $3)
                 ON CONFLICT (repo_id, user_id) DO UPDATE SET permission = excluded.permission",
                &[&repo.id, &u.id, &perm.as_str()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn revoke_project(&self, user: &UserName, project: &Project) -> Result<(), StoreError> {
        self.conn()?
            .execute(
                "DELETE FROM project_permissions WHERE project_id = $1 AND user_id = (SELECT id FROM users WHERE name = $2)",
                &[&project.id, &user.as_str()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn revoke_repo(&self, user: &UserName, repo: &Repo) -> Result<(), StoreError> {
        self.conn()?
            .execute("DELETE FROM repo_permissions WHERE repo_id = $1 AND user_id = (SELECT id FROM users WHERE name = $2)", &[&repo.id, &user.as_str()])
            .map_err(self.err())?;
        Ok(())
    }

    fn project_permissions(&self, project: &Project) -> Result<Vec<(UserName, Permission)>, StoreError> {
        self.grant_list(
            "SELECT u.name, g.permission FROM project_permissions g JOIN users u ON u.id = g.user_id WHERE g.project_id = $1 ORDER BY u.name",
            project.id,
        )
    }

    fn repo_permissions(&self, repo: &Repo) -> Result<Vec<(UserName, Permission)>, StoreError> {
        self.grant_list("SELECT u.name, g.permission FROM repo_permissions g JOIN users u ON u.id = g.user_id WHERE g.repo_id = $1 ORDER BY u.name", repo.id)
    }

    fn project_grant(&self, user: &User, project_id: i64) -> Result<Option<Permission>, StoreError> {
        let row = self
            .conn()?
            .query_opt("SELECT permission FROM project_permissions WHERE project_id = $1 AND user_id = $2", &[&project_id, &user.id])
            .map_err(self.err())?;
        Ok(parse_perm(row.map(|r| r.get(0))))
    }

    fn repo_grant_rows(&self, user_id: i64, repo: &Repo) -> Result<RepoGrantRows, StoreError> {
        // One round trip: a permission check is on every git request.
        let r = self
            .conn()?
            .query_one(
                "SELECT p.owner_user_id, p.default_permission,
                        (SELECT permission FROM project_permissions WHERE project_id = p.id AND user_id = $2),
                        (SELECT permission FROM repo_permissions WHERE repo_id = $3 AND user_id = $2)
                 FROM projects p WHERE p.id = $1",
                &[&repo.project_id, &user_id, &repo.id],
            )
            .map_err(self.err())?;
        let owner: Option<i64> = r.get(0);
        Ok(RepoGrantRows {
            owns_personal_project: owner == Some(user_id),
            project_default: parse_perm(r.get(1)),
            project_grant: parse_perm(r.get(2)),
            repo_grant: parse_perm(r.get(3)),
        })
    }
}
