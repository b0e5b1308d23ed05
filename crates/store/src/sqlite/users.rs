use rusqlite::{OptionalExtension, params};

use super::{CachedRow, Sqlite, corrupt};
use crate::error::StoreError;
use crate::names::{Owner, UserName};
use crate::permissions::GlobalPermission;
use crate::store::now;
use crate::users::{DeletedUser, User, Users, effective_global};

/// The account's columns and, last, its groups' global permissions (comma-separated), so that
/// reading an account gives its effective global permission (see `crate::users`).
pub(super) const USER_COLS: &str = "SELECT id, name, display_name, email, global_permission, active,
    (SELECT group_concat(g.global_permission) FROM group_members m JOIN user_groups g ON g.id = m.group_id WHERE m.user_id = users.id)
    FROM users";

pub(super) fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let name: String = r.get(1)?;
    let own: Option<GlobalPermission> = r.get::<_, Option<String>>(4)?.and_then(|g| g.parse().ok());
    let via_groups: Option<String> = r.get(6)?;
    let via_groups = via_groups.iter().flat_map(|v| v.split(',')).filter_map(|g| g.parse().ok());
    Ok(User {
        id: r.get(0)?,
        // Names were validated when stored; a row that no longer parses is corrupt.
        name: UserName::parse(&name).map_err(|e| corrupt(1, e))?,
        display_name: r.get(2)?,
        email: r.get(3)?,
        global: effective_global(own, via_groups),
        own_global: own,
        active: r.get::<_, i64>(5)? != 0,
    })
}

impl Users for Sqlite {
    fn insert_user(&self, name: &UserName, password_hash: &str, global: GlobalPermission) -> Result<User, StoreError> {
        // INSERT OR IGNORE + row count, so two concurrent creations cannot both pass a check.
        // The id is above any account's ever (`retired_ids`, as for repositories): pull
        // requests and comments keep a deleted author's id, which no new account may take.
        let n = self
            .write()
            .execute(
                "INSERT OR IGNORE INTO users (id, name, display_name, password_hash, global_permission, created_at) VALUES (
                    max(coalesce((SELECT max(id) FROM users), 0), coalesce((SELECT id FROM retired_ids WHERE tbl = 'users'), 0)) + 1,
                    ?1, ?1, ?2, ?3, ?4)",
                params![name.as_str(), password_hash, global.as_str(), now()],
            )
            .map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::UserExists(name.to_string()));
        }
        self.user(name)?.ok_or_else(|| StoreError::NoSuchUser(name.to_string()))
    }

    fn user(&self, name: &UserName) -> Result<Option<User>, StoreError> {
        self.read().row(&format!("{USER_COLS} WHERE name = ?1"), [name.as_str()], user_row).optional().map_err(self.db())
    }

    fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        self.read().row(&format!("{USER_COLS} WHERE id = ?1"), [id], user_row).optional().map_err(self.db())
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        let conn = self.read();
        let mut st = conn.prepare_cached(&format!("{USER_COLS} ORDER BY name")).map_err(self.db())?;
        let rows = st.query_map([], |r| Ok(user_row(r).ok())).map_err(self.db())?;
        // A row that no longer parses is left out of the list, as before.
        let all: Vec<Option<User>> = rows.collect::<Result<_, _>>().map_err(self.db())?;
        Ok(all.into_iter().flatten().collect())
    }

    fn password_hash(&self, name: &UserName) -> Result<Option<Option<String>>, StoreError> {
        self.read().row("SELECT password_hash FROM users WHERE name = ?1", [name.as_str()], |r| r.get(0)).optional().map_err(self.db())
    }

    fn set_password_hash(&self, name: &UserName, hash: &str) -> Result<(), StoreError> {
        let mut conn = self.write();
        let tx = conn.transaction().map_err(self.db())?;
        let n = tx.execute("UPDATE users SET password_hash = ?1 WHERE name = ?2", params![hash, name.as_str()]).map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::NoSuchUser(name.to_string()));
        }
        tx.execute("DELETE FROM login_failures WHERE user_id = (SELECT id FROM users WHERE name = ?1)", [name.as_str()]).map_err(self.db())?;
        tx.commit().map_err(self.db())
    }

    fn set_global_permission(&self, name: &UserName, global: Option<GlobalPermission>) -> Result<(), StoreError> {
        let n = self
            .write()
            .execute("UPDATE users SET global_permission = ?1 WHERE name = ?2", params![global.map(|g| g.as_str()), name.as_str()])
            .map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    fn set_user_active(&self, name: &UserName, active: bool) -> Result<(), StoreError> {
        let mut conn = self.write();
        let tx = conn.transaction().map_err(self.db())?;
        let n = tx.execute("UPDATE users SET active = ?1 WHERE name = ?2", params![active, name.as_str()]).map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::NoSuchUser(name.to_string()));
        }
        if !active {
            tx.execute("DELETE FROM web_sessions WHERE user_id = (SELECT id FROM users WHERE name = ?1)", [name.as_str()]).map_err(self.db())?;
        }
        tx.commit().map_err(self.db())
    }

    fn set_user_details(&self, name: &UserName, display_name: Option<&str>, email: Option<&str>) -> Result<(), StoreError> {
        let n = self
            .write()
            .execute(
                "UPDATE users SET display_name = COALESCE(?1, display_name), email = NULLIF(COALESCE(?2, email), '') WHERE name = ?3",
                params![display_name, email, name.as_str()],
            )
            .map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    fn delete_user_rows(&self, name: &UserName) -> Result<(), StoreError> {
        let mut conn = self.write();
        let tx = conn.transaction().map_err(self.db())?;
        let kept = tx
            .execute(
                "INSERT OR REPLACE INTO deleted_users (id, name, display_name, deleted_at) SELECT id, name, display_name, ?2 FROM users WHERE name = ?1",
                params![name.as_str(), now()],
            )
            .map_err(self.db())?;
        if kept == 0 {
            return Err(StoreError::NoSuchUser(name.to_string()));
        }
        tx.execute("UPDATE projects SET owner_user_id = NULL WHERE owner_user_id = (SELECT id FROM users WHERE name = ?1)", [name.as_str()])
            .map_err(self.db())?;
        tx.execute("DELETE FROM users WHERE name = ?1", [name.as_str()]).map_err(self.db())?;
        tx.commit().map_err(self.db())
    }

    fn deleted_user(&self, id: i64) -> Result<Option<DeletedUser>, StoreError> {
        self.read()
            .row("SELECT id, name, display_name, deleted_at FROM deleted_users WHERE id = ?1", [id], |r| {
                Ok(DeletedUser { id: r.get(0)?, name: r.get(1)?, display_name: r.get(2)?, deleted_at: r.get(3)? })
            })
            .optional()
            .map_err(self.db())
    }

    fn adopt_personal_project(&self, user: &User) -> Result<bool, StoreError> {
        let n = self
            .write()
            .execute(
                "UPDATE projects SET owner_user_id = ?1 WHERE key = ?2 AND owner_user_id IS NULL",
                params![user.id, Owner::User(user.name.clone()).project_key()],
            )
            .map_err(self.db())?;
        Ok(n > 0)
    }
}
