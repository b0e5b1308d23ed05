use rusqlite::{OptionalExtension, params};

use super::{CachedRow, Sqlite};
use crate::error::StoreError;
use crate::store::now;
use crate::tokens::{TokenInfo, TokenRow, TokenScope, Tokens};
use crate::users::User;

impl Tokens for Sqlite {
    fn insert_token(&self, user_id: i64, label: &str, secret_hash: &str, scope: TokenScope, expires_at: Option<i64>) -> Result<i64, StoreError> {
        let conn = self.write();
        conn.execute(
            "INSERT INTO tokens (user_id, name, secret_hash, scope, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![user_id, label, secret_hash, scope.as_str(), now(), expires_at],
        )
        .map_err(self.db())?;
        Ok(conn.last_insert_rowid())
    }

    fn token_row(&self, id: i64) -> Result<Option<TokenRow>, StoreError> {
        self.read()
            .row("SELECT user_id, secret_hash, scope, expires_at FROM tokens WHERE id = ?1", [id], |r| {
                Ok(TokenRow { user_id: r.get(0)?, secret_hash: r.get(1)?, scope: r.get(2)?, expires_at: r.get(3)? })
            })
            .optional()
            .map_err(self.db())
    }

    fn touch_token(&self, id: i64) -> Result<(), StoreError> {
        self.write()
            .execute("UPDATE tokens SET last_used_at = ?1 WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1 - 60)", params![now(), id])
            .map_err(self.db())?;
        Ok(())
    }

    fn tokens(&self, user: &User) -> Result<Vec<TokenInfo>, StoreError> {
        let conn = self.read();
        let mut st = conn
            .prepare_cached("SELECT id, name, scope, created_at, last_used_at, expires_at FROM tokens WHERE user_id = ?1 ORDER BY id")
            .map_err(self.db())?;
        let rows = st
            .query_map([user.id], |r| {
                Ok(TokenInfo { id: r.get(0)?, name: r.get(1)?, scope: r.get(2)?, created_at: r.get(3)?, last_used_at: r.get(4)?, expires_at: r.get(5)? })
            })
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    fn revoke_token(&self, user: &User, id: i64) -> Result<bool, StoreError> {
        let n = self.write().execute("DELETE FROM tokens WHERE id = ?1 AND user_id = ?2", [id, user.id]).map_err(self.db())?;
        Ok(n == 1)
    }

    fn update_token(&self, user: &User, id: i64, label: Option<&str>, scope: Option<TokenScope>) -> Result<bool, StoreError> {
        let n = self
            .write()
            .execute(
                "UPDATE tokens SET name = COALESCE(?1, name), scope = COALESCE(?2, scope) WHERE id = ?3 AND user_id = ?4",
                params![label, scope.map(|s| s.as_str()), id, user.id],
            )
            .map_err(self.db())?;
        Ok(n == 1)
    }
}
