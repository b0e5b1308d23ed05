use super::Postgres;
use crate::error::StoreError;
use crate::logins::{Failures, LoginPolicy, LoginRow, Logins, after_failure};
use crate::names::UserName;

fn failures(count: i32, last_at: i64, locked_at: Option<i64>) -> Failures {
    Failures { count: count.max(0) as u32, last_at, locked_at }
}

impl Logins for Postgres {
    fn login_row(&self, name: &UserName) -> Result<Option<LoginRow>, StoreError> {
        let row = self
            .conn()?
            .query_opt(
                "SELECT u.id, u.password_hash, f.failures, f.last_at, f.locked_at FROM users u
                 LEFT JOIN login_failures f ON f.user_id = u.id WHERE u.name = $1",
                &[&name.as_str()],
            )
            .map_err(self.err())?;
        Ok(row.map(|r| {
            let count: Option<i32> = r.get(2);
            LoginRow { user_id: r.get(0), password_hash: r.get(1), failures: count.map(|c| failures(c, r.get(3), r.get(4))) }
        }))
    }

    fn record_failure(&self, user_id: i64, policy: &LoginPolicy, t: i64) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.client.transaction().map_err(self.err())?;
        // The row lock serializes failures counted on several nodes at once.
        let prev = tx
            .query_opt("SELECT failures, last_at, locked_at FROM login_failures WHERE user_id = $1 FOR UPDATE", &[&user_id])
            .map_err(self.err())?
            .map(|r| failures(r.get(0), r.get(1), r.get(2)));
        let next = after_failure(prev, policy, t);
        if next.locked_at.is_some() && prev.and_then(|p| p.locked_at) != next.locked_at {
            tracing::warn!(user_id, failures = next.count, "account locked after failed logins");
        }
        tx.execute(
            "INSERT INTO login_failures (user_id, failures, last_at, locked_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id) DO UPDATE SET failures = excluded.failures, last_at = excluded.last_at, locked_at = excluded.locked_at",
            &[&user_id, &(next.count.min(i32::MAX as u32) as i32), &next.last_at, &next.locked_at],
        )
        .map_err(self.err())?;
        tx.commit().map_err(self.err())
    }

    fn clear_failures(&self, user_id: i64) -> Result<bool, StoreError> {
        Ok(self.conn()?.execute("DELETE FROM login_failures WHERE user_id = $1", &[&user_id]).map_err(self.err())? > 0)
    }

    fn record_address_failure(&self, addr: &str, user: &str, now: i64, window_secs: i64) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        conn.execute("DELETE FROM address_failures WHERE addr = $1 AND at <= $2", &[&addr, &(now - window_secs)]).map_err(self.err())?;
        conn.execute(
            "INSERT INTO address_failures (addr, user_name, at) VALUES ($1, $2, $3) ON CONFLICT (addr, user_name) DO UPDATE SET at = excluded.at",
            &[&addr, &user.to_ascii_lowercase(), &now],
        )
        .map_err(self.err())?;
        Ok(())
    }

    fn address_failures(&self, addr: &str, now: i64, window_secs: i64) -> Result<(u32, Option<i64>), StoreError> {
        let r = self
            .conn()?
            .query_one("SELECT count(*), min(at) FROM address_failures WHERE addr = $1 AND at > $2", &[&addr, &(now - window_secs)])
            .map_err(self.err())?;
        Ok((r.get::<_, i64>(0).max(0) as u32, r.get(1)))
    }

    fn locked_failures(&self) -> Result<Vec<(UserName, Failures)>, StoreError> {
        let rows = self
            .conn()?
            .query(
                "SELECT u.name, f.failures, f.last_at, f.locked_at FROM login_failures f JOIN users u ON u.id = f.user_id
                 WHERE f.locked_at IS NOT NULL ORDER BY f.locked_at DESC",
                &[],
            )
            .map_err(self.err())?;
        Ok(rows.iter().filter_map(|r| Some((UserName::parse(r.get::<_, &str>(0)).ok()?, failures(r.get(1), r.get(2), r.get(3))))).collect())
    }
}
