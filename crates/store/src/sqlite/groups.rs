use rusqlite::{OptionalExtension, params};

use super::{CachedRow, Sqlite, corrupt, is_unique_violation};
use crate::error::StoreError;
use crate::groups::{Group, Groups};
use crate::names::{GroupName, Owner, ProjectKey, RepoSlug, UserName};
use crate::permissions::{GlobalPermission, Permission};
use crate::projects::{Project, Projects};
use crate::repos::{Repo, Repos};
use crate::store::now;
use crate::users::{User, Users};

use super::users::{USER_COLS, user_row};

const GROUP_COLS: &str = "SELECT g.id, g.name, g.global_permission FROM user_groups g";

fn group_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Group> {
    let name: String = r.get(1)?;
    let global: Option<String> = r.get(2)?;
    Ok(Group {
        id: r.get(0)?,
        // Names were validated when stored; a row that no longer parses is corrupt.
        name: GroupName::parse(&name).map_err(|e| corrupt(1, e))?,
        global: global.and_then(|g| g.parse().ok()),
    })
}

impl Sqlite {
    fn group_list(&self, sql: &str, id: i64) -> Result<Vec<Group>, StoreError> {
        let conn = self.read();
        let mut st = conn.prepare_cached(sql).map_err(self.db())?;
        let rows = st.query_map([id], group_row).map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    fn group_grant_list(&self, sql: &str, id: i64) -> Result<Vec<(Group, Permission)>, StoreError> {
        let conn = self.read();
        let mut st = conn.prepare_cached(sql).map_err(self.db())?;
        let rows = st.query_map([id], |r| Ok((group_row(r)?, r.get::<_, String>(3)?))).map_err(self.db())?;
        let mut out = Vec::new();
        for row in rows {
            let (g, perm) = row.map_err(self.db())?;
            if let Ok(p) = perm.parse() {
                out.push((g, p));
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

impl Groups for Sqlite {
    fn insert_group(&self, name: &GroupName) -> Result<Group, StoreError> {
        let r = self.write().execute("INSERT INTO user_groups (name, name_key, created_at) VALUES (?1, ?2, ?3)", params![name.as_str(), name.key(), now()]);
        match r {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(StoreError::GroupExists(name.to_string())),
            Err(e) => return Err(self.db()(e)),
        }
        self.group(name)?.ok_or_else(|| StoreError::NoSuchGroup(name.to_string()))
    }

    fn group(&self, name: &GroupName) -> Result<Option<Group>, StoreError> {
        self.read().row(&format!("{GROUP_COLS} WHERE g.name_key = ?1"), [name.key()], group_row).optional().map_err(self.db())
    }

    fn groups(&self) -> Result<Vec<Group>, StoreError> {
        let conn = self.read();
        let mut st = conn.prepare_cached(&format!("{GROUP_COLS} ORDER BY g.name_key")).map_err(self.db())?;
        let rows = st.query_map([], group_row).map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    fn delete_group(&self, name: &GroupName) -> Result<(), StoreError> {
        // Memberships and grants go with the row (ON DELETE CASCADE).
        let n = self.write().execute("DELETE FROM user_groups WHERE name_key = ?1", [name.key()]).map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::NoSuchGroup(name.to_string()));
        }
        Ok(())
    }

    fn add_group_member(&self, group: &GroupName, user: &UserName) -> Result<(), StoreError> {
        let (g, u) = (self.group_id(group)?, self.user_id(user)?);
        self.write().execute("INSERT OR IGNORE INTO group_members (group_id, user_id) VALUES (?1, ?2)", [g, u]).map_err(self.db())?;
        Ok(())
    }

    fn remove_group_member(&self, group: &GroupName, user: &UserName) -> Result<(), StoreError> {
        let (g, u) = (self.group_id(group)?, self.user_id(user)?);
        self.write().execute("DELETE FROM group_members WHERE group_id = ?1 AND user_id = ?2", [g, u]).map_err(self.db())?;
        Ok(())
    }

    fn group_members(&self, group: &Group) -> Result<Vec<User>, StoreError> {
        let conn = self.read();
        let mut st = conn
            .prepare_cached(&format!("{USER_COLS} WHERE id IN (SELECT user_id FROM group_members WHERE group_id = ?1) ORDER BY name"))
            .map_err(self.db())?;
        let rows = st.query_map([group.id], user_row).map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    fn user_groups(&self, user_id: i64) -> Result<Vec<Group>, StoreError> {
        self.group_list(&format!("{GROUP_COLS} JOIN group_members m ON m.group_id = g.id WHERE m.user_id = ?1 ORDER BY g.name_key"), user_id)
    }

    fn set_group_global_permission(&self, group: &GroupName, global: Option<GlobalPermission>) -> Result<(), StoreError> {
        let n = self
            .write()
            .execute("UPDATE user_groups SET global_permission = ?1 WHERE name_key = ?2", params![global.map(|g| g.as_str()), group.key()])
            .map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::NoSuchGroup(group.to_string()));
        }
        Ok(())
    }

    fn grant_group_project(&self, group: &GroupName, key: &ProjectKey, perm: Permission) -> Result<(), StoreError> {
        let g = self.group_id(group)?;
        let pid = self.project_id(&Owner::Project(key.clone()))?.ok_or_else(|| StoreError::NoSuchProject(key.to_string()))?;
        self.write()
            .execute(
                "INSERT INTO project_group_permissions (project_id, group_id, permission) VALUES (?1, ?2, ?3)
                 ON CONFLICT (project_id, group_id) DO UPDATE SET permission = excluded.permission",
                params![pid, g, perm.as_str()],
            )
            .map_err(self.db())?;
        Ok(())
    }

    fn grant_group_repo(&self, group: &GroupName, owner: &Owner, slug: &RepoSlug, perm: Permission) -> Result<(), StoreError> {
        let g = self.group_id(group)?;
        let repo = self.repo(owner, slug)?.ok_or_else(|| StoreError::NoSuchRepo(format!("{owner}/{slug}")))?;
        self.write()
            .execute(
                "INSERT INTO repo_group_permissions (repo_id, group_id, permission) VALUES (?1, ?2, ?3)
                 ON CONFLICT (repo_id, group_id) DO UPDATE SET permission = excluded.permission",
                params![repo.id, g, perm.as_str()],
            )
            .map_err(self.db())?;
        Ok(())
    }

    fn revoke_group_project(&self, group: &GroupName, project: &Project) -> Result<(), StoreError> {
        let g = self.group_id(group)?;
        self.write().execute("DELETE FROM project_group_permissions WHERE project_id = ?1 AND group_id = ?2", [project.id, g]).map_err(self.db())?;
        Ok(())
    }

    fn revoke_group_repo(&self, group: &GroupName, repo: &Repo) -> Result<(), StoreError> {
        let g = self.group_id(group)?;
        self.write().execute("DELETE FROM repo_group_permissions WHERE repo_id = ?1 AND group_id = ?2", [repo.id, g]).map_err(self.db())?;
        Ok(())
    }

    fn project_group_permissions(&self, project: &Project) -> Result<Vec<(Group, Permission)>, StoreError> {
        self.group_grant_list(
            "SELECT g.id, g.name, g.global_permission, gp.permission FROM user_groups g JOIN project_group_permissions gp ON gp.group_id = g.id WHERE gp.project_id = ?1 ORDER BY g.name_key",
            project.id,
        )
    }

    fn repo_group_permissions(&self, repo: &Repo) -> Result<Vec<(Group, Permission)>, StoreError> {
        self.group_grant_list(
            "SELECT g.id, g.name, g.global_permission, gr.permission FROM user_groups g JOIN repo_group_permissions gr ON gr.group_id = g.id WHERE gr.repo_id = ?1 ORDER BY g.name_key",
            repo.id,
        )
    }

    fn group_grant_count(&self, group_id: i64) -> Result<i64, StoreError> {
        self.read()
            .row(
                "SELECT (SELECT count(*) FROM project_group_permissions WHERE group_id = ?1) + (SELECT count(*) FROM repo_group_permissions WHERE group_id = ?1)",
                [group_id],
                |r| r.get(0),
            )
            .map_err(self.db())
    }
}
