use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::{CachedRow, Sqlite, is_unique_violation, parse_perm};
use crate::error::StoreError;
use crate::permissions::Permission;
use crate::ssh_keys::{AccessKey, KeyScope, NewSshKey, SshKey, SshKeys};
use crate::store::now;

const COLUMNS: &str = "k.id, k.user_id, k.label, k.text, k.fingerprint, k.algorithm, k.bits, k.created_at, k.last_used_at";

fn key(r: &rusqlite::Row<'_>) -> rusqlite::Result<SshKey> {
    Ok(SshKey {
        id: r.get(0)?,
        user_id: r.get(1)?,
        label: r.get(2)?,
        text: r.get(3)?,
        fingerprint: r.get(4)?,
        algorithm: r.get(5)?,
        bits: r.get(6)?,
        created_at: r.get(7)?,
        last_used_at: r.get(8)?,
    })
}

fn grant(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccessKey> {
    let scope = match (r.get::<_, Option<i64>>(9)?, r.get::<_, Option<i64>>(10)?) {
        (Some(p), _) => KeyScope::Project(p),
        (None, Some(rid)) => KeyScope::Repo(rid),
        (None, None) => return Err(super::corrupt(9, StoreError::NoSuchRepo("access key grant without a scope".into()))),
    };
    Ok(AccessKey { key: key(r)?, scope, permission: parse_perm(r.get(11)?).unwrap_or(Permission::Read) })
}

fn scope_ids(scope: KeyScope) -> (Option<i64>, Option<i64>) {
    match scope {
        KeyScope::Project(p) => (Some(p), None),
        KeyScope::Repo(r) => (None, Some(r)),
    }
}

impl SshKeys for Sqlite {
    fn insert_user_key(&self, user_id: i64, k: &NewSshKey) -> Result<SshKey, StoreError> {
        let conn = self.write();
        let inserted = conn.execute(
            "INSERT INTO ssh_keys (user_id, label, text, fingerprint, algorithm, bits, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![user_id, k.label, k.text, k.fingerprint, k.algorithm, k.bits, now()],
        );
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(StoreError::SshKeyExists(k.fingerprint.clone())),
            Err(e) => return Err(self.db()(e)),
        }
        let id = conn.last_insert_rowid();
        conn.row(&format!("SELECT {COLUMNS} FROM ssh_keys k WHERE k.id = ?1"), [id], key).map_err(self.db())
    }

    fn grant_access_key(&self, scope: KeyScope, k: &NewSshKey, permission: Permission) -> Result<AccessKey, StoreError> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.db())?;
        let existing = tx.row(&format!("SELECT {COLUMNS} FROM ssh_keys k WHERE k.fingerprint = ?1"), [&k.fingerprint], key).optional().map_err(self.db())?;
        let id = match existing {
            Some(e) if e.user_id.is_some() => return Err(StoreError::SshKeyExists(k.fingerprint.clone())),
            Some(e) => e.id,
            None => {
                tx.execute(
                    "INSERT INTO ssh_keys (user_id, label, text, fingerprint, algorithm, bits, created_at) VALUES (NULL, ?1, ?2, ?3, ?4, ?5, ?6)",
                    params![k.label, k.text, k.fingerprint, k.algorithm, k.bits, now()],
                )
                .map_err(self.db())?;
                tx.last_insert_rowid()
            }
        };
        let (p, r) = scope_ids(scope);
        tx.execute(
            "DELETE FROM ssh_access_keys WHERE key_id = ?1 AND coalesce(project_id, 0) = coalesce(?2, 0) AND coalesce(repo_id, 0) = coalesce(?3, 0)",
            params![id, p, r],
        )
        .map_err(self.db())?;
        tx.execute("INSERT INTO ssh_access_keys (key_id, project_id, repo_id, permission) VALUES (?1, ?2, ?3, ?4)", params![id, p, r, permission.as_str()])
            .map_err(self.db())?;
        let made = tx.row(&format!("SELECT {COLUMNS} FROM ssh_keys k WHERE k.id = ?1"), [id], key).map_err(self.db())?;
        tx.commit().map_err(self.db())?;
        Ok(AccessKey { key: made, scope, permission })
    }

    fn ssh_key(&self, id: i64) -> Result<Option<SshKey>, StoreError> {
        self.read().row(&format!("SELECT {COLUMNS} FROM ssh_keys k WHERE k.id = ?1"), [id], key).optional().map_err(self.db())
    }

    fn ssh_key_by_fingerprint(&self, fingerprint: &str) -> Result<Option<SshKey>, StoreError> {
        self.read().row(&format!("SELECT {COLUMNS} FROM ssh_keys k WHERE k.fingerprint = ?1"), [fingerprint], key).optional().map_err(self.db())
    }

    fn user_ssh_keys(&self, user_id: i64) -> Result<Vec<SshKey>, StoreError> {
        let conn = self.read();
        let mut st = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM ssh_keys k WHERE k.user_id = ?1 ORDER BY k.id")).map_err(self.db())?;
        let rows = st.query_map([user_id], key).map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    fn delete_user_key(&self, user_id: i64, id: i64) -> Result<bool, StoreError> {
        let n = self.write().execute("DELETE FROM ssh_keys WHERE id = ?1 AND user_id = ?2", [id, user_id]).map_err(self.db())?;
        Ok(n == 1)
    }

    fn access_keys(&self, scope: KeyScope) -> Result<Vec<AccessKey>, StoreError> {
        let (p, r) = scope_ids(scope);
        let conn = self.read();
        let mut st = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS}, a.project_id, a.repo_id, a.permission FROM ssh_access_keys a JOIN ssh_keys k ON k.id = a.key_id \
                 WHERE coalesce(a.project_id, 0) = coalesce(?1, 0) AND coalesce(a.repo_id, 0) = coalesce(?2, 0) ORDER BY k.id"
            ))
            .map_err(self.db())?;
        let rows = st.query_map(params![p, r], grant).map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    fn access_key_grants(&self, key_id: i64) -> Result<Vec<AccessKey>, StoreError> {
        let conn = self.read();
        let mut st = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS}, a.project_id, a.repo_id, a.permission FROM ssh_access_keys a JOIN ssh_keys k ON k.id = a.key_id \
                 WHERE a.key_id = ?1 ORDER BY a.project_id, a.repo_id"
            ))
            .map_err(self.db())?;
        let rows = st.query_map([key_id], grant).map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    fn revoke_access_key(&self, scope: KeyScope, key_id: i64) -> Result<bool, StoreError> {
        let (p, r) = scope_ids(scope);
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.db())?;
        let n = tx
            .execute(
                "DELETE FROM ssh_access_keys WHERE key_id = ?1 AND coalesce(project_id, 0) = coalesce(?2, 0) AND coalesce(repo_id, 0) = coalesce(?3, 0)",
                params![key_id, p, r],
            )
            .map_err(self.db())?;
        tx.execute("DELETE FROM ssh_keys WHERE id = ?1 AND user_id IS NULL AND NOT EXISTS (SELECT 1 FROM ssh_access_keys WHERE key_id = ?1)", [key_id])
            .map_err(self.db())?;
        tx.commit().map_err(self.db())?;
        Ok(n == 1)
    }

    fn touch_ssh_key(&self, id: i64) -> Result<(), StoreError> {
        self.write()
            .execute("UPDATE ssh_keys SET last_used_at = ?1 WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1 - 60)", params![now(), id])
            .map_err(self.db())?;
        Ok(())
    }
}
