//! Branch restrictions in SQLite: one row per restriction, its exemptions in three tables. A
//! listing reads the rows and then each exemption table once, with the same filter.

use std::collections::HashMap;

use rusqlite::{Connection, TransactionBehavior, params};

use super::{Sqlite, corrupt};
use crate::branch_permissions::{BranchRestrictions, Matcher, MatcherType, NewRestriction, Restriction, RestrictionScope, RestrictionType};
use crate::error::StoreError;
use crate::groups::Group;
use crate::names::GroupName;
use crate::repos::Repo;
use crate::store::now;

/// A stored value that no longer parses is a corrupt row.
fn bad(col: usize, what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, format!("unknown {what} {value:?}").into())
}

fn restriction_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Restriction> {
    let (project_id, repo_id): (Option<i64>, Option<i64>) = (r.get(1)?, r.get(2)?);
    let scope = match (project_id, repo_id) {
        (Some(p), None) => RestrictionScope::Project(p),
        (None, Some(r)) => RestrictionScope::Repository(r),
        _ => return Err(bad(1, "scope", "both or neither of project_id and repo_id")),
    };
    let (kind, mtype, mid): (String, String, String) = (r.get(3)?, r.get(4)?, r.get(5)?);
    let kind = RestrictionType::parse(&kind).ok_or_else(|| bad(3, "restriction type", &kind))?;
    let mtype = MatcherType::parse(&mtype).ok_or_else(|| bad(4, "matcher type", &mtype))?;
    let matcher = Matcher::new(mtype, &mid).map_err(|e| corrupt(5, e))?;
    Ok(Restriction { id: r.get(0)?, scope, kind, matcher, users: Vec::new(), groups: Vec::new(), access_keys: Vec::new() })
}

/// The restrictions `WHERE filter` (over `branch_restrictions`, parameters `p`), with their
/// exemptions, project ones first, then by id.
fn load<P: rusqlite::Params + Copy>(conn: &Connection, filter: &str, p: P) -> rusqlite::Result<Vec<Restriction>> {
    let cols = "SELECT id, project_id, repo_id, kind, matcher_type, matcher_id FROM branch_restrictions";
    let mut st = conn.prepare_cached(&format!("{cols} WHERE {filter} ORDER BY repo_id IS NOT NULL, id"))?;
    let mut out: Vec<Restriction> = st.query_map(p, restriction_row)?.collect::<Result<_, _>>()?;
    if out.is_empty() {
        return Ok(out);
    }
    let at: HashMap<i64, usize> = out.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
    let ids = format!("SELECT id FROM branch_restrictions WHERE {filter}");
    let mut st =
        conn.prepare_cached(&format!("SELECT restriction_id, user_id FROM branch_restriction_users WHERE restriction_id IN ({ids}) ORDER BY user_id"))?;
    let mut rows = st.query(p)?;
    while let Some(r) = rows.next()? {
        if let Some(&i) = at.get(&r.get::<_, i64>(0)?) {
            out[i].users.push(r.get(1)?);
        }
    }
    let mut st = conn.prepare_cached(&format!("SELECT restriction_id, key_id FROM branch_restriction_keys WHERE restriction_id IN ({ids}) ORDER BY key_id"))?;
    let mut rows = st.query(p)?;
    while let Some(r) = rows.next()? {
        if let Some(&i) = at.get(&r.get::<_, i64>(0)?) {
            out[i].access_keys.push(r.get(1)?);
        }
    }
    let mut st = conn.prepare_cached(&format!(
        "SELECT e.restriction_id, g.id, g.name, g.global_permission FROM branch_restriction_groups e JOIN user_groups g ON g.id = e.group_id
         WHERE e.restriction_id IN ({ids}) ORDER BY g.name_key"
    ))?;
    let mut rows = st.query(p)?;
    while let Some(r) = rows.next()? {
        let name: String = r.get(2)?;
        let global: Option<String> = r.get(3)?;
        let group = Group { id: r.get(1)?, name: GroupName::parse(&name).map_err(|e| corrupt(2, e))?, global: global.and_then(|g| g.parse().ok()) };
        if let Some(&i) = at.get(&r.get::<_, i64>(0)?) {
            out[i].groups.push(group);
        }
    }
    Ok(out)
}

impl BranchRestrictions for Sqlite {
    fn insert_restrictions(&self, new: &[NewRestriction]) -> Result<Vec<Restriction>, StoreError> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.db())?;
        let mut ids = Vec::with_capacity(new.len());
        for n in new {
            let (project_id, repo_id) = match n.scope {
                RestrictionScope::Project(p) => (Some(p), None),
                RestrictionScope::Repository(r) => (None, Some(r)),
            };
            tx.execute(
                "INSERT INTO branch_restrictions (project_id, repo_id, kind, matcher_type, matcher_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![project_id, repo_id, n.kind.as_str(), n.matcher.kind().as_str(), n.matcher.id(), now()],
            )
            .map_err(self.db())?;
            let id = tx.last_insert_rowid();
            for u in &n.users {
                tx.execute("INSERT OR IGNORE INTO branch_restriction_users (restriction_id, user_id) VALUES (?1, ?2)", [id, *u]).map_err(self.db())?;
            }
            for g in &n.groups {
                tx.execute("INSERT OR IGNORE INTO branch_restriction_groups (restriction_id, group_id) VALUES (?1, ?2)", [id, *g]).map_err(self.db())?;
            }
            for k in &n.access_keys {
                tx.execute("INSERT OR IGNORE INTO branch_restriction_keys (restriction_id, key_id) VALUES (?1, ?2)", [id, *k]).map_err(self.db())?;
            }
            ids.push(id);
        }
        let (first, last) = (ids.first().copied().unwrap_or(0), ids.last().copied().unwrap_or(-1));
        let made = load(&tx, "id BETWEEN ?1 AND ?2", [first, last]).map_err(self.db())?;
        tx.commit().map_err(self.db())?;
        Ok(made)
    }

    fn restriction(&self, id: i64) -> Result<Option<Restriction>, StoreError> {
        Ok(load(&self.read(), "id = ?1", [id]).map_err(self.db())?.pop())
    }

    fn scope_restrictions(&self, scope: RestrictionScope) -> Result<Vec<Restriction>, StoreError> {
        let conn = self.read();
        match scope {
            RestrictionScope::Project(p) => load(&conn, "project_id = ?1", [p]),
            RestrictionScope::Repository(r) => load(&conn, "repo_id = ?1", [r]),
        }
        .map_err(self.db())
    }

    fn restrictions_in_force(&self, repo: &Repo) -> Result<Vec<Restriction>, StoreError> {
        load(&self.read(), "project_id = ?1 OR repo_id = ?2", [repo.project_id, repo.id]).map_err(self.db())
    }

    fn delete_restriction(&self, id: i64) -> Result<bool, StoreError> {
        // Exemptions go with the row (ON DELETE CASCADE).
        Ok(self.write().execute("DELETE FROM branch_restrictions WHERE id = ?1", [id]).map_err(self.db())? > 0)
    }
}
