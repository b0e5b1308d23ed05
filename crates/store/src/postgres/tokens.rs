use super::Postgres;
use crate::error::StoreError;
use crate::store::now;
use crate::tokens::{TokenInfo, TokenRow, TokenScope, Tokens};
use crate::users::User;

impl Tokens for Postgres {
    fn insert_token(&self, user_id: i64, label: &str, secret_hash: &str, scope: TokenScope, expires_at: Option<i64>) -> Result<i64, StoreError> {
        let r = self
            .conn()?
            .query_one(
                "INSERT INTO tokens (user_id, name, secret_hash, scope, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[&user_id, &label, &secret_hash, &scope.as_str(), &now(), &expires_at],
            )
            .map_err(self.err())?;
        Ok(r.get(0))
    }

    fn token_row(&self, id: i64) -> Result<Option<TokenRow>, StoreError> {
        let row = self.conn()?.query_opt("SELECT user_id, secret_hash, scope, expires_at FROM tokens WHERE id = $1", &[&id]).map_err(self.err())?;
        Ok(row.map(|r| TokenRow { user_id: r.get(0), secret_hash: r.get(1), scope: r.get(2), expires_at: r.get(3) }))
    }

    fn touch_token(&self, id: i64) -> Result<(), StoreError> {
        self.conn()?
            .execute("UPDATE tokens SET last_used_at = $1::BIGINT WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1::BIGINT - 60)", &[&now(), &id])
            .map_err(self.err())?;
        Ok(())
    }

    fn tokens(&self, user: &User) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = self
            .conn()?
            .query("SELECT id, name, scope, created_at, last_used_at, expires_at FROM tokens WHERE user_id = $1 ORDER BY id", &[&user.id])
            .map_err(self.err())?;
        Ok(rows
            .iter()
            .map(|r| TokenInfo { id: r.get(0), name: r.get(1), scope: r.get(2), created_at: r.get(3), last_used_at: r.get(4), expires_at: r.get(5) })
            .collect())
    }

    fn revoke_token(&self, user: &User, id: i64) -> Result<bool, StoreError> {
        let n = self.conn()?.execute("DELETE FROM tokens WHERE id = $1 AND user_id = $2", &[&id, &user.id]).map_err(self.err())?;
        Ok(n == 1)
    }

    fn update_token(&self, user: &User, id: i64, label: Option<&str>, scope: Option<TokenScope>) -> Result<bool, StoreError> {
        let scope = scope.map(|s| s.as_str());
        let n = self
            .conn()?
            .execute(
                "UPDATE tokens SET name = COALESCE($1, name), scope = COALESCE($2, scope) WHERE id = $3 AND user_id = $4",
                &[&label, &scope, &id, &user.id],
            )
            .map_err(self.err())?;
        Ok(n == 1)
    }
}
