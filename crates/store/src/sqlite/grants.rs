use rusqlite::{OptionalExtension, params};

use super::{CachedRow, Sqlite, parse_perm};
use crate::error::StoreError;
use crate::grants::{Grants, RepoGrantRows};
use crate::names::{Owner, ProjectKey, RepoSlug, UserName};
use crate::permissions::Permission;
use crate::projects::{Project, Projects};
use crate::repos::{Repo, Repos};
use crate::users::{User, Users};

impl Sqlite {
    fn grant_list(&self, sql: &str, id: i64) -> Result<Vec<(UserName, Permission)>, StoreError> {
        let conn = self.read();
        let mut st = conn.prepare_cached(sql).map_err(self.db())?;
        let rows = st.query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(self.db())?;
        let mut out = Vec::new();
        for row in rows {
            let (name, perm) = row.map_err(self.db())?;
            if let (Ok(n), Ok(p)) = (UserName::parse(&name), perm.parse()) {
                out.push((n, p));
            }
        }
        Ok(out)
    }
}

impl Grants for Sqlite {
    fn grant_project(&self, user: &UserName, key: &ProjectKey, perm: Permission) -> Result<(), StoreError> {
        let u = self.user(user)?.ok_or_else(|| StoreError::NoSuchUser(user.to_string()))?;
        let pid = self.project_id(&Owner::Project(key.clone()))?.ok_or_else(|| StoreError::NoSuchProject(key.to_string()))?;
        self.write()
            .execute(
                "INSERT INTO project_permissions (project_id, user_id, permission) VALUES (?1, ?2, ?3)
                 ON CONFLICT (project_id, user_id) DO UPDATE SET permission = excluded.permission",
                params![pid, u.id, perm.as_str()],
            )
            .map_err(self.db())?;
        Ok(())
    }

    fn grant_repo(&self, user: &UserName, owner: &Owner, slug: &RepoSlug, perm: Permission) -> Result<(), StoreError> {
        let u = self.user(user)?.ok_or_else(|| StoreError::NoSuchUser(user.to_string()))?;
        let repo = self.repo(owner, slug)?.ok_or_else(|| StoreError::NoSuchRepo(format!("{owner}/{slug}")))?;
        self.write()
            .execute(
                "INSERT INTO repo_permissions (repo_id, user_id, permission) VALUES (?1, ?2, ?3)
                 ON CONFLICT (repo_id, user_id) DO UPDATE SET permission = excluded.permission",
                params![repo.id, u.id, perm.as_str()],
            )
            .map_err(self.db())?;
        Ok(())
    }

    fn revoke_project(&self, user: &UserName, project: &Project) -> Result<(), StoreError> {
        self.write()
            .execute(
                "DELETE FROM project_permissions WHERE project_id = ?1 AND user_id = (SELECT id FROM users WHERE name = ?2)",
                params![project.id, user.as_str()],
            )
            .map_err(self.db())?;
        Ok(())
    }

    fn revoke_repo(&self, user: &UserName, repo: &Repo) -> Result<(), StoreError> {
        self.write()
            .execute("DELETE FROM repo_permissions WHERE repo_id = ?1 AND user_id = (SELECT id FROM users WHERE name = ?2)", params![repo.id, user.as_str()])
            .map_err(self.db())?;
        Ok(())
    }

    fn project_permissions(&self, project: &Project) -> Result<Vec<(UserName, Permission)>, StoreError> {
        self.grant_list(
            "SELECT u.name, g.permission FROM project_permissions g JOIN users u ON u.id = g.user_id WHERE g.project_id = ?1 ORDER BY u.name",
            project.id,
        )
    }

    fn repo_permissions(&self, repo: &Repo) -> Result<Vec<(UserName, Permission)>, StoreError> {
        self.grant_list("SELECT u.name, g.permission FROM repo_permissions g JOIN users u ON u.id = g.user_id WHERE g.repo_id = ?1 ORDER BY u.name", repo.id)
    }

    fn project_grant(&self, user: &User, project_id: i64) -> Result<Option<Permission>, StoreError> {
        let v: Option<String> = self
            .read()
            .row("SELECT permission FROM project_permissions WHERE project_id = ?1 AND user_id = ?2", [project_id, user.id], |r| r.get(0))
            .optional()
            .map_err(self.db())?;
        Ok(parse_perm(v))
    }

    fn repo_grant_rows(&self, user_id: i64, repo: &Repo) -> Result<RepoGrantRows, StoreError> {
        let conn = self.read();
        let (owner_id, default): (Option<i64>, Option<String>) = conn
            .row("SELECT owner_user_id, default_permission FROM projects WHERE id = ?1", [repo.project_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.db())?;
        let project_grant = conn
            .row("SELECT permission FROM project_permissions WHERE project_id = ?1 AND user_id = ?2", [repo.project_id, user_id], |r| r.get(0))
            .optional()
            .map_err(self.db())?;
        let repo_grant = conn
            .row("SELECT permission FROM repo_permissions WHERE repo_id = ?1 AND user_id = ?2", [repo.id, user_id], |r| r.get(0))
            .optional()
            .map_err(self.db())?;
        Ok(RepoGrantRows {
            owns_personal_project: owner_id == Some(user_id),
            project_default: parse_perm(default),
            project_grant: parse_perm(project_grant),
            repo_grant: parse_perm(repo_grant),
        })
    }
}
