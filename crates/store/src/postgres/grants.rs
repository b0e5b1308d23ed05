use super::{Postgres, parse_perm};
use crate::error::StoreError;
use crate::grants::{Grants, HeldGrant, RepoGrantRows};
use crate::names::{Owner, ProjectKey, RepoSlug, UserName};
use crate::permissions::Permission;
use crate::projects::{Project, Projects};
use crate::repos::{Repo, Repos};
use crate::users::Users;

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

    fn project_grants(&self, user_id: i64, project_id: i64) -> Result<Vec<HeldGrant>, StoreError> {
        let rows = self
            .conn()?
            .query(
                "SELECT NULL::BIGINT, permission FROM project_permissions WHERE project_id = $1 AND user_id = $2
                 UNION ALL SELECT gp.group_id, gp.permission FROM project_group_permissions gp
                     JOIN group_members m ON m.group_id = gp.group_id WHERE gp.project_id = $1 AND m.user_id = $2",
                &[&project_id, &user_id],
            )
            .map_err(self.err())?;
        Ok(rows.iter().filter_map(|r| Some(HeldGrant { group_id: r.get(0), permission: r.get::<_, &str>(1).parse().ok()? })).collect())
    }

    fn repo_grant_rows(&self, user_id: i64, repo: &Repo) -> Result<RepoGrantRows, StoreError> {
        // One round trip: a permission check is on every git request. Each row is the project
        // row (`o`: its owner and default permission) or a grant on the project (`p`) or the
        // repository (`r`), to the user (no group) or to one of their groups.
        let rows = self
            .conn()?
            .query(
                "SELECT 'o', p.owner_user_id, p.default_permission FROM projects p WHERE p.id = $1
                 UNION ALL SELECT 'p', NULL, permission FROM project_permissions WHERE project_id = $1 AND user_id = $2
                 UNION ALL SELECT 'p', gp.group_id, gp.permission FROM project_group_permissions gp
                     JOIN group_members m ON m.group_id = gp.group_id WHERE gp.project_id = $1 AND m.user_id = $2
                 UNION ALL SELECT 'r', NULL, permission FROM repo_permissions WHERE repo_id = $3 AND user_id = $2
                 UNION ALL SELECT 'r', gr.group_id, gr.permission FROM repo_group_permissions gr
                     JOIN group_members m ON m.group_id = gr.group_id WHERE gr.repo_id = $3 AND m.user_id = $2",
                &[&repo.project_id, &user_id, &repo.id],
            )
            .map_err(self.err())?;
        let mut out = RepoGrantRows::default();
        for r in &rows {
            let (kind, id, perm): (&str, Option<i64>, Option<String>) = (r.get(0), r.get(1), r.get(2));
            match kind {
                "o" => {
                    out.owns_personal_project = id == Some(user_id);
                    out.project_default = parse_perm(perm);
                }
                _ => {
                    let Some(permission) = parse_perm(perm) else { continue };
                    let held = HeldGrant { group_id: id, permission };
                    if kind == "p" { out.project_grants.push(held) } else { out.repo_grants.push(held) }
                }
            }
        }
        Ok(out)
    }
}
