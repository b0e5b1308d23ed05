use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{CachedRow, Sqlite};
use crate::error::StoreError;
use crate::logins::{Failures, LoginPolicy, LoginRow, Logins, after_failure};
use crate::names::UserName;

impl Logins for Sqlite {
    fn login_row(&self, name: &UserName) -> Result<Option<LoginRow>, StoreError> {
        self.read()
            .row(
                "SELECT u.id, u.password_hash, f.failures, f.last_at, f.locked_at FROM users u
                 LEFT JOIN login_failures f ON f.user_id = u.id WHERE u.name = ?1",
                [name.as_str()],
                |r| {
                    let count: Option<u32> = r.get(2)?;
                    let failures = match count {
                        Some(count) => Some(Failures { count, last_at: r.get(3)?, locked_at: r.get(4)? }),
                        None => None,
                    };
                    Ok(LoginRow { user_id: r.get(0)?, password_hash: r.get(1)?, failures })
                },
            )
            .optional()
            .map_err(self.db())
    }

    fn record_failure(&self, user_id: i64, policy: &LoginPolicy, t: i64) -> Result<(), StoreError> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.db())?;
        let prev: Option<Failures> = tx
            .row("SELECT failures, last_at, locked_at FROM login_failures WHERE user_id = ?1", [user_id], |r| {
                Ok(Failures { count: r.get(0)?, last_at: r.get(1)?, locked_at: r.get(2)? })
            })
            .optional()
            .map_err(self.db())?;
        let next = after_failure(prev, policy, t);
        if next.locked_at.is_some() && prev.and_then(|p| p.locked_at) != next.locked_at {
            tracing::warn!(user_id, failures = next.count, "account locked after failed logins");
        }
        tx.execute(
            "INSERT INTO login_failures (user_id, failures, last_at, locked_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user_id) DO UPDATE SET failures = excluded.failures, last_at = excluded.last_at, locked_at = excluded.locked_at",
            params![user_id, next.count, next.last_at, next.locked_at],
        )
        .map_err(self.db())?;
        tx.commit().map_err(self.db())
    }

    fn clear_failures(&self, user_id: i64) -> Result<bool, StoreError> {
        let n = self.write().execute("DELETE FROM login_failures WHERE user_id = ?1", [user_id]).map_err(self.db())?;
        Ok(n > 0)
    }

    fn record_address_failure(&self, addr: &str, user: &str, now: i64, window_secs: i64) -> Result<(), StoreError> {
        let conn = self.write();
        conn.execute("DELETE FROM address_failures WHERE addr = ?1 AND at <= ?2", params![addr, now - window_secs]).map_err(self.db())?;
        conn.execute(
            "INSERT INTO address_failures (addr, user_name, at) VALUES (?1, ?2, ?3) ON CONFLICT (addr, user_name) DO UPDATE SET at = excluded.at",
            params![addr, user.to_ascii_lowercase(), now],
        )
        .map_err(self.db())?;
        Ok(())
    }

    fn address_failures(&self, addr: &str, now: i64, window_secs: i64) -> Result<(u32, Option<i64>), StoreError> {
        self.read()
            .row("SELECT count(*), min(at) FROM address_failures WHERE addr = ?1 AND at > ?2", params![addr, now - window_secs], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.db())
    }

    fn locked_failures(&self) -> Result<Vec<(UserName, Failures)>, StoreError> {
        let conn = self.read();
        let mut stmt = conn
            .prepare_cached(
                "SELECT u.name, f.failures, f.last_at, f.locked_at FROM login_failures f JOIN users u ON u.id = f.user_id
                 WHERE f.locked_at IS NOT NULL ORDER BY f.locked_at DESC",
            )
            .map_err(self.db())?;
        let rows =
            stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, Failures { count: r.get(1)?, last_at: r.get(2)?, locked_at: r.get(3)? }))).map_err(self.db())?;
        let mut out = Vec::new();
        for row in rows {
            let (name, f) = row.map_err(self.db())?;
            if let Ok(user) = UserName::parse(&name) {
                out.push((user, f));
            }
        }
        Ok(out)
    }
}
