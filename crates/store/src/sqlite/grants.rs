use rusqlite::params;

use super::{CachedRow, Sqlite, parse_perm};
use crate::error::StoreError;
use crate::grants::{Grants, HeldGrant, RepoGrantRows};
use crate::names::{Owner, ProjectKey, RepoSlug, UserName};
use crate::permissions::Permission;
use crate::projects::{Project, Projects};
use crate::repos::{Repo, Repos};
use crate::users::Users;

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

/// The grants on project `?1` to user `?2` (group id NULL) and to each group they are in.
const PROJECT_GRANTS: &str = "SELECT NULL, permission FROM project_permissions WHERE project_id = ?1 AND user_id = ?2
    UNION ALL SELECT gp.group_id, gp.permission FROM project_group_permissions gp
        JOIN group_members m ON m.group_id = gp.group_id WHERE gp.project_id = ?1 AND m.user_id = ?2";

/// The grants on repository `?1` itself to user `?2` and to each group they are in.
const REPO_GRANTS: &str = "SELECT NULL, permission FROM repo_permissions WHERE repo_id = ?1 AND user_id = ?2
    UNION ALL SELECT gr.group_id, gr.permission FROM repo_group_permissions gr
        JOIN group_members m ON m.group_id = gr.group_id WHERE gr.repo_id = ?1 AND m.user_id = ?2";

fn held(conn: &rusqlite::Connection, sql: &str, params: [i64; 2]) -> rusqlite::Result<Vec<HeldGrant>> {
    let mut st = conn.prepare_cached(sql)?;
    let rows = st.query_map(params, |r| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (group_id, perm) = row?;
        if let Ok(permission) = perm.parse() {
            out.push(HeldGrant { group_id, permission });
        }
    }
    Ok(out)
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

    fn project_grants(&self, user_id: i64, project_id: i64) -> Result<Vec<HeldGrant>, StoreError> {
        held(&self.read(), PROJECT_GRANTS, [project_id, user_id]).map_err(self.db())
    }

    fn repo_grant_rows(&self, user_id: i64, repo: &Repo) -> Result<RepoGrantRows, StoreError> {
        let conn = self.read();
        let (owner_id, default): (Option<i64>, Option<String>) = conn
            .row("SELECT owner_user_id, default_permission FROM projects WHERE id = ?1", [repo.project_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.db())?;
        let project_grants = held(&conn, PROJECT_GRANTS, [repo.project_id, user_id]).map_err(self.db())?;
        let repo_grants = held(&conn, REPO_GRANTS, [repo.id, user_id]).map_err(self.db())?;
        Ok(RepoGrantRows { owns_personal_project: owner_id == Some(user_id), project_default: parse_perm(default), project_grants, repo_grants })
    }
}
