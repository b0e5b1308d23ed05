use postgres::Row;

use super::Postgres;
use crate::error::StoreError;
use crate::names::{Owner, UserName};
use crate::permissions::GlobalPermission;
use crate::store::now;
use crate::users::{DeletedUser, User, Users, effective_global};

/// The account's columns and, last, its groups' global permissions, so that reading an account
/// gives its effective global permission (see `crate::users`).
macro_rules! user_cols {
    () => {
        "SELECT id, name, display_name, email, global_permission, active,
            ARRAY(SELECT g.global_permission FROM group_members m JOIN user_groups g ON g.id = m.group_id
                  WHERE m.user_id = users.id AND g.global_permission IS NOT NULL)
         FROM users"
    };
}
pub(super) use user_cols;

pub(super) fn user_row(r: &Row) -> Result<User, StoreError> {
    let own: Option<GlobalPermission> = r.get::<_, Option<String>>(4).and_then(|g| g.parse().ok());
    let via_groups: Vec<String> = r.get(6);
    Ok(User {
        id: r.get(0),
        name: UserName::parse(r.get::<_, &str>(1))?,
        display_name: r.get(2),
        email: r.get(3),
        global: effective_global(own, via_groups.iter().filter_map(|g| g.parse().ok())),
        own_global: own,
        active: r.get(5),
    })
}

impl Users for Postgres {
    fn insert_user(&self, name: &UserName, password_hash: &str, global: GlobalPermission) -> Result<User, StoreError> {
        let row = self
            .conn()?
            .query_opt(
                "INSERT INTO users (name, display_name, password_hash, global_permission, created_at) VALUES ($1, $1, $2, $3, $4)
                 ON CONFLICT (name) DO NOTHING
                 RETURNING id",
                &[&name.as_str(), &password_hash, &global.as_str(), &now()],
            )
            .map_err(self.err())?;
        match row {
            // Read back whole, with the groups' part (none yet) computed as for every read.
            Some(_) => self.user(name)?.ok_or_else(|| StoreError::NoSuchUser(name.to_string())),
            None => Err(StoreError::UserExists(name.to_string())),
        }
    }

    fn user(&self, name: &UserName) -> Result<Option<User>, StoreError> {
        let row = self.conn()?.query_opt(concat!(user_cols!(), " WHERE name = $1"), &[&name.as_str()]).map_err(self.err())?;
        row.as_ref().map(user_row).transpose()
    }

    fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        let row = self.conn()?.query_opt(concat!(user_cols!(), " WHERE id = $1"), &[&id]).map_err(self.err())?;
        row.as_ref().map(user_row).transpose()
    }

    fn users(&self) -> Result<Vec<User>, StoreError> {
        let rows = self.conn()?.query(concat!(user_cols!(), " ORDER BY name"), &[]).map_err(self.err())?;
        Ok(rows.iter().filter_map(|r| user_row(r).ok()).collect())
    }

    fn password_hash(&self, name: &UserName) -> Result<Option<Option<String>>, StoreError> {
        let row = self.conn()?.query_opt("SELECT password_hash FROM users WHERE name = $1", &[&name.as_str()]).map_err(self.err())?;
        Ok(row.map(|r| r.get(0)))
    }

    fn set_password_hash(&self, name: &UserName, hash: &str) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.client.transaction().map_err(self.err())?;
        let n = tx.execute("UPDATE users SET password_hash = $1 WHERE name = $2", &[&hash, &name.as_str()]).map_err(self.err())?;
        if n == 0 {
            return Err(StoreError::NoSuchUser(name.to_string()));
        }
        tx.execute("DELETE FROM login_failures WHERE user_id = (SELECT id FROM users WHERE name = $1)", &[&name.as_str()]).map_err(self.err())?;
        tx.commit().map_err(self.err())
    }

    fn set_global_permission(&self, name: &UserName, global: Option<GlobalPermission>) -> Result<(), StoreError> {
        let n = self
            .conn()?
            .execute("UPDATE users SET global_permission = $1 WHERE name = $2", &[&global.map(|g| g.as_str()), &name.as_str()])
            .map_err(self.err())?;
        if n == 0 {
            return Err(StoreError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    fn set_user_active(&self, name: &UserName, active: bool) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.client.transaction().map_err(self.err())?;
        let n = tx.execute("UPDATE users SET active = $1 WHERE name = $2", &[&active, &name.as_str()]).map_err(self.err())?;
        if n == 0 {
            return Err(StoreError::NoSuchUser(name.to_string()));
        }
        if !active {
            tx.execute("DELETE FROM web_sessions WHERE user_id = (SELECT id FROM users WHERE name = $1)", &[&name.as_str()]).map_err(self.err())?;
        }
        tx.commit().map_err(self.err())
    }

    fn set_user_details(&self, name: &UserName, display_name: Option<&str>, email: Option<&str>) -> Result<(), StoreError> {
        let n = self
            .conn()?
            .execute(
                "UPDATE users SET display_name = COALESCE($1, display_name), email = NULLIF(COALESCE($2, email), '') WHERE name = $3",
                &[&display_name, &email, &name.as_str()],
            )
            .map_err(self.err())?;
        if n == 0 {
            return Err(StoreError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    fn delete_user_rows(&self, name: &UserName) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.client.transaction().map_err(self.err())?;
        let kept = tx
            .execute(
                "INSERT INTO deleted_users (id, name, display_name, deleted_at) SELECT id, name, display_name, $2 FROM users WHERE name = $1
                 ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, display_name = EXCLUDED.display_name, deleted_at = EXCLUDED.deleted_at",
                &[&name.as_str(), &now()],
            )
            .map_err(self.err())?;
        if kept == 0 {
            return Err(StoreError::NoSuchUser(name.to_string()));
        }
        tx.execute("UPDATE projects SET owner_user_id = NULL WHERE owner_user_id = (SELECT id FROM users WHERE name = $1)", &[&name.as_str()])
            .map_err(self.err())?;
        tx.execute("DELETE FROM users WHERE name = $1", &[&name.as_str()]).map_err(self.err())?;
        tx.commit().map_err(self.err())
    }

    fn deleted_user(&self, id: i64) -> Result<Option<DeletedUser>, StoreError> {
        let row = self.conn()?.query_opt("SELECT id, name, display_name, deleted_at FROM deleted_users WHERE id = $1", &[&id]).map_err(self.err())?;
        Ok(row.map(|r| DeletedUser { id: r.get(0), name: r.get(1), display_name: r.get(2), deleted_at: r.get(3) }))
    }

    fn adopt_personal_project(&self, user: &User) -> Result<bool, StoreError> {
        let n = self
            .conn()?
            .execute(
                "UPDATE projects SET owner_user_id = $1 WHERE key = $2 AND owner_user_id IS NULL",
                &[&user.id, &Owner::User(user.name.clone()).project_key()],
            )
            .map_err(self.err())?;
        Ok(n > 0)
    }
}
