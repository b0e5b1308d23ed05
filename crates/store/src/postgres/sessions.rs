use super::Postgres;
use crate::error::StoreError;
use crate::names::UserName;
use crate::sessions::Sessions;

impl Sessions for Postgres {
    fn insert_session(&self, id_hash: &str, user_id: i64, csrf: &str, now: i64, expires_at: i64) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        conn.execute("DELETE FROM web_sessions WHERE expires_at <= $1", &[&now]).map_err(self.err())?;
        conn.execute(
            "INSERT INTO web_sessions (id_hash, user_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            &[&id_hash, &user_id, &csrf, &now, &expires_at],
        )
        .map_err(self.err())?;
        Ok(())
    }

    fn session_row(&self, id_hash: &str, now: i64) -> Result<Option<(i64, String)>, StoreError> {
        let row =
            self.conn()?.query_opt("SELECT user_id, csrf FROM web_sessions WHERE id_hash = $1 AND expires_at > $2", &[&id_hash, &now]).map_err(self.err())?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    fn delete_session_row(&self, id_hash: &str) -> Result<(), StoreError> {
        self.conn()?.execute("DELETE FROM web_sessions WHERE id_hash = $1", &[&id_hash]).map_err(self.err())?;
        Ok(())
    }

    fn delete_user_sessions(&self, user: &UserName) -> Result<(), StoreError> {
        self.conn()?.execute("DELETE FROM web_sessions WHERE user_id = (SELECT id FROM users WHERE name = $1)", &[&user.as_str()]).map_err(self.err())?;
        Ok(())
    }
}
