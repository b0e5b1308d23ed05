use std::sync::atomic::Ordering;

use super::Postgres;
use crate::error::StoreError;
use crate::settings::Settings;

impl Settings for Postgres {
    fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.conn()?.query_opt("SELECT value FROM settings WHERE key = $1", &[&key]).map_err(self.err())?.map(|r| r.get(0)))
    }

    fn set_setting(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        match value {
            Some(v) => conn.execute("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", &[&key, &v]),
            None => conn.execute("DELETE FROM settings WHERE key = $1", &[&key]),
        }
        .map_err(self.err())?;
        Ok(())
    }

    fn data_version(&self) -> Result<i64, StoreError> {
        // Moved by the listener thread on `NOTIFY trove_changes`: no round trip per request.
        Ok(self.version.load(Ordering::Relaxed))
    }
}
