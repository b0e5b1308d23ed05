use rusqlite::{OptionalExtension, params};

use super::{CachedRow, Sqlite, corrupt, is_unique_violation, parse_perm};
use crate::error::StoreError;
use crate::names::{Owner, ProjectKey};
use crate::permissions::Permission;
use crate::projects::{Project, ProjectInfo, ProjectUpdate, Projects};
use crate::store::now;
use crate::users::User;

const PROJECT_COLS: &str = "p.id, p.key, p.name, p.public";

fn project_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Project> {
    let key: String = r.get(1)?;
    Ok(Project { id: r.get(0)?, owner: Owner::parse(&key).map_err(|e| corrupt(1, e))?, name: r.get(2)?, public: r.get(3)? })
}

/// Whether user `?1` (NULL for anonymous, `?2` = 1 for a global admin) may see project `p`:
/// public, a grant or default permission on it, its own personal project, or a repository in it
/// that is public or granted to them; a grant to one of their groups counts as one to them.
const VISIBLE: &str = "(?2 = 1 OR p.public = 1
    OR EXISTS (SELECT 1 FROM repositories r WHERE r.project_id = p.id AND r.public = 1)
    OR (?1 IS NOT NULL AND (
        p.owner_user_id = ?1
        OR (p.default_permission IS NOT NULL AND p.owner_user_id IS NULL)
        OR EXISTS (SELECT 1 FROM project_permissions pp WHERE pp.project_id = p.id AND pp.user_id = ?1)
        OR EXISTS (SELECT 1 FROM repositories r JOIN repo_permissions rp ON rp.repo_id = r.id
                   WHERE r.project_id = p.id AND rp.user_id = ?1)
        OR EXISTS (SELECT 1 FROM project_group_permissions gp JOIN group_members m ON m.group_id = gp.group_id
                   WHERE gp.project_id = p.id AND m.user_id = ?1)
        OR EXISTS (SELECT 1 FROM repositories r JOIN repo_group_permissions gr ON gr.repo_id = r.id
                   JOIN group_members m ON m.group_id = gr.group_id
                   WHERE r.project_id = p.id AND m.user_id = ?1))))";

impl Projects for Sqlite {
    fn project_id(&self, owner: &Owner) -> Result<Option<i64>, StoreError> {
        self.read().row("SELECT id FROM projects WHERE key = ?1", [owner.project_key()], |r| r.get(0)).optional().map_err(self.db())
    }

    fn insert_personal_project(&self, owner: &Owner, name: &str, user_id: i64) -> Result<(), StoreError> {
        self.write()
            .execute(
                "INSERT OR IGNORE INTO projects (key, name, owner_user_id, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![owner.project_key(), name, user_id, now()],
            )
            .map_err(self.db())?;
        Ok(())
    }

    fn create_project(&self, key: &ProjectKey, name: Option<&str>, public: bool) -> Result<Project, StoreError> {
        let conn = self.write();
        let n = conn
            .execute(
                "INSERT OR IGNORE INTO projects (key, name, public, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![key.as_str(), name.unwrap_or(key.as_str()), public, now()],
            )
            .map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::ProjectExists(key.to_string()));
        }
        Ok(Project { id: conn.last_insert_rowid(), owner: Owner::Project(key.clone()), name: name.unwrap_or(key.as_str()).to_owned(), public })
    }

    fn create_project_described(&self, key: &ProjectKey, name: &str, description: Option<&str>, public: bool) -> Result<ProjectInfo, StoreError> {
        let p = self.create_project(key, Some(name), public)?;
        self.write().execute("UPDATE projects SET description = ?1 WHERE id = ?2", params![description, p.id]).map_err(self.db())?;
        self.project_info(&p.owner)?.ok_or_else(|| StoreError::NoSuchProject(key.to_string()))
    }

    fn project_info(&self, owner: &Owner) -> Result<Option<ProjectInfo>, StoreError> {
        let key = owner.project_key();
        self.read()
            .row("SELECT id, name, description, public, default_permission, owner_user_id FROM projects WHERE key = ?1", [&key], |r| {
                Ok(ProjectInfo {
                    id: r.get(0)?,
                    owner: owner.clone(),
                    name: r.get(1)?,
                    description: r.get(2)?,
                    public: r.get(3)?,
                    default_permission: parse_perm(r.get(4)?),
                    owner_user_id: r.get(5)?,
                })
            })
            .optional()
            .map_err(self.db())
    }

    fn update_project_with_events(&self, key: &ProjectKey, update: &ProjectUpdate, events: &[crate::NewEvent]) -> Result<ProjectInfo, StoreError> {
        {
            let mut conn = self.write();
            let tx = conn.transaction().map_err(self.db())?;
            let id: i64 = tx
                .row("SELECT id FROM projects WHERE key = ?1 AND owner_user_id IS NULL", [key.as_str()], |r| r.get(0))
                .optional()
                .map_err(self.db())?
                .ok_or_else(|| StoreError::NoSuchProject(key.to_string()))?;
            if let Some(new_key) = &update.key
                && new_key != key
                && let Err(e) = tx.execute("UPDATE projects SET key = ?1 WHERE id = ?2", params![new_key.as_str(), id])
            {
                return Err(if is_unique_violation(&e) { StoreError::ProjectExists(new_key.to_string()) } else { self.db()(e) });
            }
            if let Some(name) = &update.name {
                tx.execute("UPDATE projects SET name = ?1 WHERE id = ?2", params![name, id]).map_err(self.db())?;
            }
            if let Some(d) = &update.description {
                tx.execute("UPDATE projects SET description = ?1 WHERE id = ?2", params![d, id]).map_err(self.db())?;
            }
            if let Some(p) = update.public {
                tx.execute("UPDATE projects SET public = ?1 WHERE id = ?2", params![p, id]).map_err(self.db())?;
            }
            super::webhooks::enqueue(&tx, events).map_err(self.db())?;
            tx.commit().map_err(self.db())?;
        }
        let owner = Owner::Project(update.key.clone().unwrap_or_else(|| key.clone()));
        self.project_info(&owner)?.ok_or_else(|| StoreError::NoSuchProject(owner.to_string()))
    }

    fn set_project_public(&self, key: &ProjectKey, public: bool) -> Result<(), StoreError> {
        let n = self.write().execute("UPDATE projects SET public = ?1 WHERE key = ?2", params![public, key.as_str()]).map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::NoSuchProject(key.to_string()));
        }
        Ok(())
    }

    fn set_project_default_permission(&self, key: &ProjectKey, perm: Option<Permission>) -> Result<(), StoreError> {
        let n = self
            .write()
            .execute("UPDATE projects SET default_permission = ?1 WHERE key = ?2", params![perm.map(|p| p.as_str()), key.as_str()])
            .map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::NoSuchProject(key.to_string()));
        }
        Ok(())
    }

    fn visible_projects(&self, user: Option<&User>, admin: bool) -> Result<Vec<Project>, StoreError> {
        let conn = self.read();
        let sql = format!("SELECT {PROJECT_COLS} FROM projects p WHERE {VISIBLE} ORDER BY p.key");
        let mut st = conn.prepare_cached(&sql).map_err(self.db())?;
        let rows = st.query_map(params![user.map(|u| u.id), admin], project_row).map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    fn visible_project(&self, key: &Owner, user: Option<&User>, admin: bool) -> Result<Option<Project>, StoreError> {
        let sql = format!("SELECT {PROJECT_COLS} FROM projects p WHERE p.key = ?3 AND {VISIBLE}");
        self.read().row(&sql, params![user.map(|u| u.id), admin, key.project_key()], project_row).optional().map_err(self.db())
    }

    fn delete_project_row(&self, id: i64) -> Result<(), StoreError> {
        self.write().execute("DELETE FROM projects WHERE id = ?1", [id]).map_err(self.db())?;
        Ok(())
    }
}
