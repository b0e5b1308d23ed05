use postgres::Row;

use super::{Postgres, Query, is_unique_violation};
use crate::error::StoreError;
use crate::permissions::Permission;
use crate::ssh_keys::{AccessKey, KeyScope, NewSshKey, SshKey, SshKeys};
use crate::store::now;

fn key(r: &Row) -> SshKey {
    SshKey {
        id: r.get(0),
        user_id: r.get(1),
        label: r.get(2),
        text: r.get(3),
        fingerprint: r.get(4),
        algorithm: r.get(5),
        bits: r.get(6),
        created_at: r.get(7),
        last_used_at: r.get(8),
    }
}

fn grant(r: &Row) -> Option<AccessKey> {
    let scope = match (r.get::<_, Option<i64>>(9), r.get::<_, Option<i64>>(10)) {
        (Some(p), _) => KeyScope::Project(p),
        (None, Some(rid)) => KeyScope::Repo(rid),
        (None, None) => return None,
    };
    let permission = r.get::<_, String>(11).parse().unwrap_or(Permission::Read);
    Some(AccessKey { key: key(r), scope, permission })
}

fn scope_ids(scope: KeyScope) -> (Option<i64>, Option<i64>) {
    match scope {
        KeyScope::Project(p) => (Some(p), None),
        KeyScope::Repo(r) => (None, Some(r)),
    }
}

impl SshKeys for Postgres {
    fn insert_user_key(&self, user_id: i64, k: &NewSshKey) -> Result<SshKey, StoreError> {
        let inserted = self.conn()?.query_one(
            "INSERT INTO ssh_keys (user_id, label, text, fingerprint, algorithm, bits, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             RETURNING id, user_id, label, text, fingerprint, algorithm, bits, created_at, last_used_at",
            &[&user_id, &k.label, &k.text, &k.fingerprint, &k.algorithm, &k.bits, &now()],
        );
        match inserted {
            Ok(r) => Ok(key(&r)),
            Err(e) if is_unique_violation(&e) => Err(StoreError::SshKeyExists(k.fingerprint.clone())),
            Err(e) => Err(self.err()(e)),
        }
    }

    fn grant_access_key(&self, scope: KeyScope, k: &NewSshKey, permission: Permission) -> Result<AccessKey, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(self.err())?;
        // Two grants of one new key at once: the second waits on the first's row, then finds it.
        tx.execute("SELECT pg_advisory_xact_lock(hashtext('ssh_keys'))", &[]).map_err(self.err())?;
        let existing = tx
            .query_opt(
                "SELECT id, user_id, label, text, fingerprint, algorithm, bits, created_at, last_used_at FROM ssh_keys WHERE fingerprint = $1",
                &[&k.fingerprint],
            )
            .map_err(self.err())?;
        let made = match existing.map(|r| key(&r)) {
            Some(e) if e.user_id.is_some() => return Err(StoreError::SshKeyExists(k.fingerprint.clone())),
            Some(e) => e,
            None => key(&tx
                .query_one(
                    "INSERT INTO ssh_keys (user_id, label, text, fingerprint, algorithm, bits, created_at) VALUES (NULL, $1, $2, $3, $4, $5, $6) \
                     RETURNING id, user_id, label, text, fingerprint, algorithm, bits, created_at, last_used_at",
                    &[&k.label, &k.text, &k.fingerprint, &k.algorithm, &k.bits, &now()],
                )
                .map_err(self.err())?),
        };
        let (p, r) = scope_ids(scope);
        tx.execute(
            "DELETE FROM ssh_access_keys WHERE key_id = $1 AND coalesce(project_id, 0) = coalesce($2::BIGINT, 0) AND coalesce(repo_id, 0) = coalesce($3::BIGINT, 0)",
            &[&made.id, &p, &r],
        )
        .map_err(self.err())?;
        tx.execute("INSERT INTO ssh_access_keys (key_id, project_id, repo_id, permission) VALUES ($1, $2, $3, $4)", &[&made.id, &p, &r, &permission.as_str()])
            .map_err(self.err())?;
        tx.commit().map_err(self.err())?;
        Ok(AccessKey { key: made, scope, permission })
    }

    fn ssh_key(&self, id: i64) -> Result<Option<SshKey>, StoreError> {
        let row = self
            .conn()?
            .query_opt("SELECT id, user_id, label, text, fingerprint, algorithm, bits, created_at, last_used_at FROM ssh_keys WHERE id = $1", &[&id])
            .map_err(self.err())?;
        Ok(row.map(|r| key(&r)))
    }

    fn ssh_key_by_fingerprint(&self, fingerprint: &str) -> Result<Option<SshKey>, StoreError> {
        let row = self
            .conn()?
            .query_opt(
                "SELECT id, user_id, label, text, fingerprint, algorithm, bits, created_at, last_used_at FROM ssh_keys WHERE fingerprint = $1",
                &[&fingerprint],
            )
            .map_err(self.err())?;
        Ok(row.map(|r| key(&r)))
    }

    fn user_ssh_keys(&self, user_id: i64) -> Result<Vec<SshKey>, StoreError> {
        let rows = self
            .conn()?
            .query(
                "SELECT id, user_id, label, text, fingerprint, algorithm, bits, created_at, last_used_at FROM ssh_keys WHERE user_id = $1 ORDER BY id",
                &[&user_id],
            )
            .map_err(self.err())?;
        Ok(rows.iter().map(key).collect())
    }

    fn delete_user_key(&self, user_id: i64, id: i64) -> Result<bool, StoreError> {
        let n = self.conn()?.execute("DELETE FROM ssh_keys WHERE id = $1 AND user_id = $2", &[&id, &user_id]).map_err(self.err())?;
        Ok(n == 1)
    }

    fn access_keys(&self, scope: KeyScope) -> Result<Vec<AccessKey>, StoreError> {
        let (p, r) = scope_ids(scope);
        let rows = self
            .conn()?
            .query(
                "SELECT k.id, k.user_id, k.label, k.text, k.fingerprint, k.algorithm, k.bits, k.created_at, k.last_used_at, a.project_id, a.repo_id, a.permission \
                 FROM ssh_access_keys a JOIN ssh_keys k ON k.id = a.key_id \
                 WHERE coalesce(a.project_id, 0) = coalesce($1::BIGINT, 0) AND coalesce(a.repo_id, 0) = coalesce($2::BIGINT, 0) ORDER BY k.id",
                &[&p, &r],
            )
            .map_err(self.err())?;
        Ok(rows.iter().filter_map(grant).collect())
    }

    fn access_key_grants(&self, key_id: i64) -> Result<Vec<AccessKey>, StoreError> {
        let rows = self
            .conn()?
            .query(
                "SELECT k.id, k.user_id, k.label, k.text, k.fingerprint, k.algorithm, k.bits, k.created_at, k.last_used_at, a.project_id, a.repo_id, a.permission \
                 FROM ssh_access_keys a JOIN ssh_keys k ON k.id = a.key_id WHERE a.key_id = $1 ORDER BY a.project_id, a.repo_id",
                &[&key_id],
            )
            .map_err(self.err())?;
        Ok(rows.iter().filter_map(grant).collect())
    }

    fn revoke_access_key(&self, scope: KeyScope, key_id: i64) -> Result<bool, StoreError> {
        let (p, r) = scope_ids(scope);
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(self.err())?;
        let n = tx
            .execute(
                "DELETE FROM ssh_access_keys WHERE key_id = $1 AND coalesce(project_id, 0) = coalesce($2::BIGINT, 0) AND coalesce(repo_id, 0) = coalesce($3::BIGINT, 0)",
                &[&key_id, &p, &r],
            )
            .map_err(self.err())?;
        tx.execute("DELETE FROM ssh_keys WHERE id = $1 AND user_id IS NULL AND NOT EXISTS (SELECT 1 FROM ssh_access_keys WHERE key_id = $1)", &[&key_id])
            .map_err(self.err())?;
        tx.commit().map_err(self.err())?;
        Ok(n == 1)
    }

    fn touch_ssh_key(&self, id: i64) -> Result<(), StoreError> {
        self.conn()?
            .execute("UPDATE ssh_keys SET last_used_at = $1::BIGINT WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1::BIGINT - 60)", &[&now(), &id])
            .map_err(self.err())?;
        Ok(())
    }
}
