use postgres::Row;

use super::Postgres;
use super::users::{user_cols, user_row};
use crate::error::StoreError;
use crate::groups::{Group, Groups};
use crate::names::{GroupName, Owner, ProjectKey, RepoSlug, UserName};
use crate::permissions::{GlobalPermission, Permission};
use crate::projects::{Project, Projects};
use crate::repos::{Repo, Repos};
use crate::store::now;
use crate::users::{User, Users};

fn group_row(r: &Row) -> Result<Group, StoreError> {
    let global: Option<String> = r.get(2);
    Ok(Group { id: r.get(0), name: GroupName::parse(r.get::<_, &str>(1))?, global: global.and_then(|g| g.parse().ok()) })
}

impl Postgres {
    fn group_grant_list(&self, sql: &'static str, id: i64) -> Result<Vec<(Group, Permission)>, StoreError> {
        let rows = self.conn()?.query(sql, &[&id]).map_err(self.err())?;
        let mut out = Vec::new();
        for r in &rows {
            if let Ok(p) = r.get::<_, &str>(3).parse() {
                out.push((group_row(r)?, p));
            }
        }
        Ok(out)
    }

    fn group_id(&self, name: &GroupName) -> Result<i64, StoreError> {
        self.group(name)?.map(|g| g.id).ok_or_else(|| StoreError::NoSuchGroup(name.to_string()))
    }

    fn user_id(&self, name: &UserName) -> Result<i64, StoreError> {
        self.user(name)?.map(|u| u.id).ok_or_else(|| StoreError::NoSuchUser(name.to_string()))
    }
}

impl Groups for Postgres {
    fn insert_group(&self, name: &GroupName) -> Result<Group, StoreError> {
        let row = self
            .conn()?
            .query_opt(
                "INSERT INTO user_groups (name, name_key, created_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name_key) DO NOTHING RETURNING id, name, global_permission",
                &[&name.as_str(), &name.key(), &now()],
            )
            .map_err(self.err())?;
        match row {
            Some(r) => group_row(&r),
            None => Err(StoreError::GroupExists(name.to_string())),
        }
    }

    fn group(&self, name: &GroupName) -> Result<Option<Group>, StoreError> {
        let row = self.conn()?.query_opt("SELECT id, name, global_permission FROM user_groups WHERE name_key = $1", &[&name.key()]).map_err(self.err())?;
        row.as_ref().map(group_row).transpose()
    }

    fn groups(&self) -> Result<Vec<Group>, StoreError> {
        let rows = self.conn()?.query("SELECT id, name, global_permission FROM user_groups ORDER BY name_key", &[]).map_err(self.err())?;
        rows.iter().map(group_row).collect()
    }

    fn delete_group(&self, name: &GroupName) -> Result<(), StoreError> {
        // Memberships and grants go with the row (ON DELETE CASCADE).
        let n = self.conn()?.execute("DELETE FROM user_groups WHERE name_key = $1", &[&name.key()]).map_err(self.err())?;
        if n == 0 {
            return Err(StoreError::NoSuchGroup(name.to_string()));
        }
        Ok(())
    }

    fn add_group_member(&self, group: &GroupName, user: &UserName) -> Result<(), StoreError> {
        let (g, u) = (self.group_id(group)?, self.user_id(user)?);
        self.conn()?.execute("INSERT INTO group_members (group_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", &[&g, &u]).map_err(self.err())?;
        Ok(())
    }

    fn remove_group_member(&self, group: &GroupName, user: &UserName) -> Result<(), StoreError> {
        let (g, u) = (self.group_id(group)?, self.user_id(user)?);
        self.conn()?.execute("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2", &[&g, &u]).map_err(self.err())?;
        Ok(())
    }

    fn group_members(&self, group: &Group) -> Result<Vec<User>, StoreError> {
        let rows = self
            .conn()?
            .query(concat!(user_cols!(), " WHERE id IN (SELECT user_id FROM group_members WHERE group_id = $1) ORDER BY name"), &[&group.id])
            .map_err(self.err())?;
        rows.iter().map(user_row).collect()
    }

    fn user_groups(&self, user_id: i64) -> Result<Vec<Group>, StoreError> {
        let rows = self
            .conn()?
            .query(
                "SELECT g.id, g.name, g.global_permission FROM user_groups g JOIN group_members m ON m.group_id = g.id
                 WHERE m.user_id = $1 ORDER BY g.name_key",
                &[&user_id],
            )
            .map_err(self.err())?;
        rows.iter().map(group_row).collect()
    }

    fn set_group_global_permission(&self, group: &GroupName, global: Option<GlobalPermission>) -> Result<(), StoreError> {
        let n = self
            .conn()?
            .execute("UPDATE user_groups SET global_permission = $1 WHERE name_key = $2", &[&global.map(|g| g.as_str()), &group.key()])
            .map_err(self.err())?;
        if n == 0 {
            return Err(StoreError::NoSuchGroup(group.to_string()));
        }
        Ok(())
    }

    fn grant_group_project(&self, group: &GroupName, key: &ProjectKey, perm: Permission) -> Result<(), StoreError> {
        let g = self.group_id(group)?;
        let pid = self.project_id(&Owner::Project(key.clone()))?.ok_or_else(|| StoreError::NoSuchProject(key.to_string()))?;
        self.conn()?
            .execute(
                "INSERT INTO project_group_permissions (project_id, group_id, permission) VALUES ($1, $2, $3)
                 ON CONFLICT (project_id, group_id) DO UPDATE SET permission = excluded.permission",
                &[&pid, &g, &perm.as_str()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn grant_group_repo(&self, group: &GroupName, owner: &Owner, slug: &RepoSlug, perm: Permission) -> Result<(), StoreError> {
        let g = self.group_id(group)?;
        let repo = self.repo(owner, slug)?.ok_or_else(|| StoreError::NoSuchRepo(format!("{owner}/{slug}")))?;
        self.conn()?
            .execute(
                "INSERT INTO repo_group_permissions (repo_id, group_id, permission) VALUES ($1, $2, $3)
                 ON CONFLICT (repo_id, group_id) DO UPDATE SET permission = excluded.permission",
                &[&repo.id, &g, &perm.as_str()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn revoke_group_project(&self, group: &GroupName, project: &Project) -> Result<(), StoreError> {
        let g = self.group_id(group)?;
        self.conn()?.execute("DELETE FROM project_group_permissions WHERE project_id = $1 AND group_id = $2", &[&project.id, &g]).map_err(self.err())?;
        Ok(())
    }

    fn revoke_group_repo(&self, group: &GroupName, repo: &Repo) -> Result<(), StoreError> {
        let g = self.group_id(group)?;
        self.conn()?.execute("DELETE FROM repo_group_permissions WHERE repo_id = $1 AND group_id = $2", &[&repo.id, &g]).map_err(self.err())?;
        Ok(())
    }

    fn project_group_permissions(&self, project: &Project) -> Result<Vec<(Group, Permission)>, StoreError> {
        self.group_grant_list(
            "SELECT g.id, g.name, g.global_permission, gp.permission FROM user_groups g JOIN project_group_permissions gp ON gp.group_id = g.id
             WHERE gp.project_id = $1 ORDER BY g.name_key",
            project.id,
        )
    }

    fn repo_group_permissions(&self, repo: &Repo) -> Result<Vec<(Group, Permission)>, StoreError> {
        self.group_grant_list(
            "SELECT g.id, g.name, g.global_permission, gr.permission FROM user_groups g JOIN repo_group_permissions gr ON gr.group_id = g.id
             WHERE gr.repo_id = $1 ORDER BY g.name_key",
            repo.id,
        )
    }

    fn group_grant_count(&self, group_id: i64) -> Result<i64, StoreError> {
        let r = self
            .conn()?
            .query_one(
                "SELECT (SELECT count(*) FROM project_group_permissions WHERE group_id = $1) + (SELECT count(*) FROM repo_group_permissions WHERE group_id = $1)",
                &[&group_id],
            )
            .map_err(self.err())?;
        Ok(r.get(0))
    }
}
