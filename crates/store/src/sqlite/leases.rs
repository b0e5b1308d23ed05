use rusqlite::params;

use super::Sqlite;
use crate::error::StoreError;
use crate::leases::Leases;
use crate::store::now;

impl Leases for Sqlite {
    fn take_lease(&self, name: &str, holder: &str, secs: i64) -> Result<bool, StoreError> {
        let t = now();
        let n = self
            .write()
            .execute(
                "INSERT INTO leases (name, holder, until) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
                 WHERE leases.until <= ?4 OR leases.holder = excluded.holder",
                params![name, holder, t + secs, t],
            )
            .map_err(self.db())?;
        Ok(n == 1)
    }

    fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.write().execute("DELETE FROM leases WHERE name = ?1 AND holder = ?2", params![name, holder]).map_err(self.db())?;
        Ok(())
    }
}
