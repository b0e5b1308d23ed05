use rusqlite::types::Value;
use rusqlite::{params, params_from_iter};

use super::Sqlite;
use crate::audit::{Audit, AuditEntry, AuditQuery, NewAuditEntry};
use crate::error::StoreError;

fn push(args: &mut Vec<Value>, v: impl Into<Value>) -> String {
    args.push(v.into());
    format!("?{}", args.len())
}

impl Audit for Sqlite {
    fn append_audit(&self, e: &NewAuditEntry) -> Result<i64, StoreError> {
        let conn = self.write();
        conn.prepare_cached("INSERT INTO audit_log (at, actor, address, action, target, details) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .and_then(|mut st| st.execute(params![e.at, e.actor, e.address, e.action, e.target, e.details]))
            .map_err(self.db())?;
        Ok(conn.last_insert_rowid())
    }

    fn audit_entries(&self, q: &AuditQuery) -> Result<(Vec<AuditEntry>, bool), StoreError> {
        let mut args: Vec<Value> = Vec::new();
        let mut sql = String::from("SELECT id, at, actor, address, action, target, details FROM audit_log WHERE 1 = 1");
        if let Some(a) = &q.actor {
            sql += &format!(" AND actor = {}", push(&mut args, a.clone()));
        }
        match q.action_match() {
            (Some(exact), _) => sql += &format!(" AND action = {}", push(&mut args, exact.to_owned())),
            (None, Some(prefix)) => {
                let p = push(&mut args, prefix.to_owned());
                sql += &format!(" AND substr(action, 1, length({p})) = {p}");
            }
            (None, None) => {}
        }
        if let Some(t) = &q.target {
            // instr, not LIKE: a `%` or `_` in the filter is a character like any other.
            sql += &format!(" AND instr(lower(target), {}) > 0", push(&mut args, t.to_lowercase()));
        }
        if let Some(from) = q.from {
            sql += &format!(" AND at >= {}", push(&mut args, from));
        }
        if let Some(to) = q.to {
            sql += &format!(" AND at <= {}", push(&mut args, to));
        }
        let dir = if q.oldest_first { "ASC" } else { "DESC" };
        // One more than the page, to know whether more follow.
        let limit = push(&mut args, q.limit.saturating_add(1).min(i64::MAX as usize) as i64);
        let offset = push(&mut args, q.start.min(i64::MAX as usize) as i64);
        sql += &format!(" ORDER BY id {dir} LIMIT {limit} OFFSET {offset}");
        let conn = self.read();
        let mut st = conn.prepare_cached(&sql).map_err(self.db())?;
        let rows = st
            .query_map(params_from_iter(args), |r| {
                Ok(AuditEntry { id: r.get(0)?, at: r.get(1)?, actor: r.get(2)?, address: r.get(3)?, action: r.get(4)?, target: r.get(5)?, details: r.get(6)? })
            })
            .map_err(self.db())?;
        let mut entries: Vec<AuditEntry> = rows.collect::<Result<_, _>>().map_err(self.db())?;
        let more = entries.len() > q.limit;
        entries.truncate(q.limit);
        Ok((entries, more))
    }

    fn delete_audit_before(&self, before: i64) -> Result<u64, StoreError> {
        let n = self.write().execute("DELETE FROM audit_log WHERE at < ?1", [before]).map_err(self.db())?;
        Ok(n as u64)
    }
}
