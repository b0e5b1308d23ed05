use super::Postgres;
use crate::error::StoreError;
use crate::leases::Leases;
use crate::store::now;

impl Leases for Postgres {
    fn take_lease(&self, name: &str, holder: &str, secs: i64) -> Result<bool, StoreError> {
        let t = now();
        let n = self
            .conn()?
            .execute(
                "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
                 WHERE leases.until <= $4 OR leases.holder = excluded.holder",
                &[&name, &holder, &(t + secs), &t],
            )
            .map_err(self.err())?;
        Ok(n == 1)
    }

    fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.conn()?.execute("DELETE FROM leases WHERE name = $1 AND holder = $2", &[&name, &holder]).map_err(self.err())?;
        Ok(())
    }
}
