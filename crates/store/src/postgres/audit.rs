use postgres::types::ToSql;

use super::{Postgres, Query};
use crate::audit::{Audit, AuditEntry, AuditQuery, NewAuditEntry};
use crate::error::StoreError;

type Params = Vec<Box<dyn ToSql + Sync>>;

fn push(args: &mut Params, v: impl ToSql + Sync + 'static) -> String {
    args.push(Box::new(v));
    format!("${}", args.len())
}

impl Audit for Postgres {
    fn append_audit(&self, e: &NewAuditEntry) -> Result<i64, StoreError> {
        let row = self
            .conn()?
            .query_one(
                "INSERT INTO audit_log (at, actor, address, action, target, details) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[&e.at, &e.actor, &e.address, &e.action, &e.target, &e.details],
            )
            .map_err(self.err())?;
        Ok(row.get(0))
    }

    fn audit_entries(&self, q: &AuditQuery) -> Result<(Vec<AuditEntry>, bool), StoreError> {
        let mut args: Params = Vec::new();
        let mut sql = String::from("SELECT id, at, actor, address, action, target, details FROM audit_log WHERE TRUE");
        if let Some(a) = &q.actor {
            sql += &format!(" AND actor = {}", push(&mut args, a.clone()));
        }
        match q.action_match() {
            (Some(exact), _) => sql += &format!(" AND action = {}", push(&mut args, exact.to_owned())),
            (None, Some(prefix)) => {
                let p = push(&mut args, prefix.to_owned());
                sql += &format!(" AND left(action, char_length({p}::TEXT)) = {p}");
            }
            (None, None) => {}
        }
        if let Some(t) = &q.target {
            // strpos, not LIKE: a `%` or `_` in the filter is a character like any other.
            sql += &format!(" AND strpos(lower(target), {}) > 0", push(&mut args, t.to_lowercase()));
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
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref()).collect();
        let rows = self.conn()?.query_built(&sql, &params).map_err(self.err())?;
        let mut entries: Vec<AuditEntry> = rows
            .iter()
            .map(|r| AuditEntry { id: r.get(0), at: r.get(1), actor: r.get(2), address: r.get(3), action: r.get(4), target: r.get(5), details: r.get(6) })
            .collect();
        let more = entries.len() > q.limit;
        entries.truncate(q.limit);
        Ok((entries, more))
    }

    fn delete_audit_before(&self, before: i64) -> Result<u64, StoreError> {
        self.conn()?.execute("DELETE FROM audit_log WHERE at < $1", &[&before]).map_err(self.err())
    }
}
