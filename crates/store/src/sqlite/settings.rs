use rusqlite::{OptionalExtension, params};

use super::{CachedRow, Sqlite};
use crate::error::StoreError;
use crate::settings::Settings;

impl Settings for Sqlite {
    fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read().row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0)).optional().map_err(self.db())
    }

    fn set_setting(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        let conn = self.write();
        match value {
            Some(v) => {
                conn.execute("INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", params![key, v])
            }
            None => conn.execute("DELETE FROM settings WHERE key = ?1", [key]),
        }
        .map_err(self.db())?;
        Ok(())
    }

    fn data_version(&self) -> Result<i64, StoreError> {
        // On a connection of its own that never writes, so every commit counts, this process's
        // included (https://sqlite.org/pragma.html#pragma_data_version), and the per-request
        // check never waits behind a long write or a busy reader.
        self.watch().row("PRAGMA data_version", [], |r| r.get(0)).map_err(self.db())
    }
}
