use postgres::Row;

use super::{Postgres, is_unique_violation, parse_perm};
use crate::error::StoreError;
use crate::names::{Owner, ProjectKey};
use crate::permissions::Permission;
use crate::projects::{Project, ProjectInfo, ProjectUpdate, Projects};
use crate::store::now;
use crate::users::User;

fn project_row(r: &Row) -> Result<Project, StoreError> {
    Ok(Project { id: r.get(0), owner: Owner::parse(r.get::<_, &str>(1))?, name: r.get(2), public: r.get(3) })
}

/// As SQLite's: whether user `$1` (NULL for anonymous, `$2` true for a global admin) may see
/// project `p`.
macro_rules! visible {
    () => {
        "($2 OR p.public
        OR EXISTS (SELECT 1 FROM repositories r WHERE r.project_id = p.id AND r.public)
        OR ($1::BIGINT IS NOT NULL AND (
            p.owner_user_id = $1
            OR (p.default_permission IS NOT NULL AND p.owner_user_id IS NULL)
            OR EXISTS (SELECT 1 FROM project_permissions pp WHERE pp.project_id = p.id AND pp.user_id = $1)
            OR EXISTS (SELECT 1 FROM repositories r JOIN repo_permissions rp ON rp.repo_id = r.id
                       WHERE r.project_id = p.id AND rp.user_id = $1)
            OR EXISTS (SELECT 1 FROM project_group_permissions gp JOIN group_members m ON m.group_id = gp.group_id
                       WHERE gp.project_id = p.id AND m.user_id = $1)
            OR EXISTS (SELECT 1 FROM repositories r JOIN repo_group_permissions gr ON gr.repo_id = r.id
                       JOIN group_members m ON m.group_id = gr.group_id
                       WHERE r.project_id = p.id AND m.user_id = $1))))"
    };
}

impl Projects for Postgres {
    fn project_id(&self, owner: &Owner) -> Result<Option<i64>, StoreError> {
        Ok(self.conn()?.query_opt("SELECT id FROM projects WHERE key = $1", &[&owner.project_key()]).map_err(self.err())?.map(|r| r.get(0)))
    }

    fn insert_personal_project(&self, owner: &Owner, name: &str, user_id: i64) -> Result<(), StoreError> {
        self.conn()?
            .execute(
                "INSERT INTO projects (key, name, owner_user_id, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING",
                &[&owner.project_key(), &name, &user_id, &now()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn create_project(&self, key: &ProjectKey, name: Option<&str>, public: bool) -> Result<Project, StoreError> {
        let name = name.unwrap_or(key.as_str());
        let row = self
            .conn()?
            .query_opt(
                "INSERT INTO projects (key, name, public, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING RETURNING id",
                &[&key.as_str(), &name, &public, &now()],
            )
            .map_err(self.err())?;
        let Some(r) = row else { return Err(StoreError::ProjectExists(key.to_string())) };
        Ok(Project { id: r.get(0), owner: Owner::Project(key.clone()), name: name.to_owned(), public })
    }

    fn create_project_described(&self, key: &ProjectKey, name: &str, description: Option<&str>, public: bool) -> Result<ProjectInfo, StoreError> {
        let p = self.create_project(key, Some(name), public)?;
        self.conn()?.execute("UPDATE projects SET description = $1 WHERE id = $2", &[&description, &p.id]).map_err(self.err())?;
        self.project_info(&p.owner)?.ok_or_else(|| StoreError::NoSuchProject(key.to_string()))
    }

    fn project_info(&self, owner: &Owner) -> Result<Option<ProjectInfo>, StoreError> {
        let row = self
            .conn()?
            .query_opt("SELECT id, name, description, public, default_permission, owner_user_id FROM projects WHERE key = $1", &[&owner.project_key()])
            .map_err(self.err())?;
        Ok(row.map(|r| ProjectInfo {
            id: r.get(0),
            owner: owner.clone(),
            name: r.get(1),
            description: r.get(2),
            public: r.get(3),
            default_permission: parse_perm(r.get(4)),
            owner_user_id: r.get(5),
        }))
    }

    fn update_project_with_events(&self, key: &ProjectKey, update: &ProjectUpdate, events: &[crate::NewEvent]) -> Result<ProjectInfo, StoreError> {
        {
            let mut conn = self.conn()?;
            let mut tx = conn.client.transaction().map_err(self.err())?;
            let id: i64 = tx
                .query_opt("SELECT id FROM projects WHERE key = $1 AND owner_user_id IS NULL", &[&key.as_str()])
                .map_err(self.err())?
                .map(|r| r.get(0))
                .ok_or_else(|| StoreError::NoSuchProject(key.to_string()))?;
            if let Some(new_key) = &update.key
                && new_key != key
                && let Err(e) = tx.execute("UPDATE projects SET key = $1 WHERE id = $2", &[&new_key.as_str(), &id])
            {
                return Err(if is_unique_violation(&e) { StoreError::ProjectExists(new_key.to_string()) } else { self.err()(e) });
            }
            if let Some(name) = &update.name {
                tx.execute("UPDATE projects SET name = $1 WHERE id = $2", &[name, &id]).map_err(self.err())?;
            }
            if let Some(d) = &update.description {
                tx.execute("UPDATE projects SET description = $1 WHERE id = $2", &[d, &id]).map_err(self.err())?;
            }
            if let Some(p) = update.public {
                tx.execute("UPDATE projects SET public = $1 WHERE id = $2", &[&p, &id]).map_err(self.err())?;
            }
            self.enqueue(&mut tx, events)?;
            tx.commit().map_err(self.err())?;
        }
        let owner = Owner::Project(update.key.clone().unwrap_or_else(|| key.clone()));
        self.project_info(&owner)?.ok_or_else(|| StoreError::NoSuchProject(owner.to_string()))
    }

    fn set_project_public(&self, key: &ProjectKey, public: bool) -> Result<(), StoreError> {
        let n = self.conn()?.execute("UPDATE projects SET public = $1 WHERE key = $2", &[&public, &key.as_str()]).map_err(self.err())?;
        if n == 0 {
            return Err(StoreError::NoSuchProject(key.to_string()));
        }
        Ok(())
    }

    fn set_project_default_permission(&self, key: &ProjectKey, perm: Option<Permission>) -> Result<(), StoreError> {
        let n = self
            .conn()?
            .execute("UPDATE projects SET default_permission = $1 WHERE key = $2", &[&perm.map(|p| p.as_str()), &key.as_str()])
            .map_err(self.err())?;
        if n == 0 {
            return Err(StoreError::NoSuchProject(key.to_string()));
        }
        Ok(())
    }

    fn visible_projects(&self, user: Option<&User>, admin: bool) -> Result<Vec<Project>, StoreError> {
        let rows = self
            .conn()?
            .query(concat!("SELECT p.id, p.key, p.name, p.public FROM projects p WHERE ", visible!(), " ORDER BY p.key"), &[&user.map(|u| u.id), &admin])
            .map_err(self.err())?;
        rows.iter().map(project_row).collect()
    }

    fn visible_project(&self, key: &Owner, user: Option<&User>, admin: bool) -> Result<Option<Project>, StoreError> {
        let row = self
            .conn()?
            .query_opt(
                concat!("SELECT p.id, p.key, p.name, p.public FROM projects p WHERE p.key = $3 AND ", visible!()),
                &[&user.map(|u| u.id), &admin, &key.project_key()],
            )
            .map_err(self.err())?;
        row.as_ref().map(project_row).transpose()
    }

    fn delete_project_row(&self, id: i64) -> Result<(), StoreError> {
        self.conn()?.execute("DELETE FROM projects WHERE id = $1", &[&id]).map_err(self.err())?;
        Ok(())
    }
}
