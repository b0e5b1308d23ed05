//! Branch restrictions in PostgreSQL: one row per restriction, its exemptions in three tables.
//! A listing reads the rows and then each exemption table once, with the same filter.

use std::collections::HashMap;

use postgres::Row;
use postgres::types::ToSql;

use super::{Postgres, Query};
use crate::branch_permissions::{BranchRestrictions, Matcher, MatcherType, NewRestriction, Restriction, RestrictionScope, RestrictionType};
use crate::error::StoreError;
use crate::groups::Group;
use crate::names::GroupName;
use crate::repos::Repo;
use crate::store::now;

impl Postgres {
    /// A stored value that no longer parses: a corrupt row, or one a newer trove wrote.
    fn bad_restriction(&self, what: &str, value: &str) -> StoreError {
        StoreError::Postgres {
            target: self.target.clone(),
            message: format!("branch_restrictions holds an unknown {what} {value:?}; was it written by a newer trove?"),
            unavailable: false,
        }
    }

    fn restriction_row(&self, r: &Row) -> Result<Restriction, StoreError> {
        let scope = match (r.get::<_, Option<i64>>(1), r.get::<_, Option<i64>>(2)) {
            (Some(p), None) => RestrictionScope::Project(p),
            (None, Some(r)) => RestrictionScope::Repository(r),
            _ => return Err(self.bad_restriction("scope", "both or neither of project_id and repo_id")),
        };
        let (kind, mtype, mid): (&str, &str, &str) = (r.get(3), r.get(4), r.get(5));
        let kind = RestrictionType::parse(kind).ok_or_else(|| self.bad_restriction("restriction type", kind))?;
        let mtype = MatcherType::parse(mtype).ok_or_else(|| self.bad_restriction("matcher type", mtype))?;
        let matcher = Matcher::new(mtype, mid).map_err(|e| self.bad_restriction("matcher", &e.to_string()))?;
        Ok(Restriction { id: r.get(0), scope, kind, matcher, users: Vec::new(), groups: Vec::new(), access_keys: Vec::new() })
    }

    /// The restrictions `WHERE filter` (over `branch_restrictions`, parameters `p`), with their
    /// exemptions, project ones first, then by id.
    fn load_restrictions(&self, q: &mut impl Query, filter: &str, p: &[&(dyn ToSql + Sync)]) -> Result<Vec<Restriction>, StoreError> {
        let cols = "SELECT id, project_id, repo_id, kind, matcher_type, matcher_id FROM branch_restrictions";
        let rows = q.query_built(&format!("{cols} WHERE {filter} ORDER BY repo_id IS NOT NULL, id"), p).map_err(self.err())?;
        let mut out = rows.iter().map(|r| self.restriction_row(r)).collect::<Result<Vec<_>, _>>()?;
        if out.is_empty() {
            return Ok(out);
        }
        let at: HashMap<i64, usize> = out.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
        let ids = format!("SELECT id FROM branch_restrictions WHERE {filter}");
        let rows = q
            .query_built(&format!("SELECT restriction_id, user_id FROM branch_restriction_users WHERE restriction_id IN ({ids}) ORDER BY user_id"), p)
            .map_err(self.err())?;
        for r in &rows {
            if let Some(&i) = at.get(&r.get::<_, i64>(0)) {
                out[i].users.push(r.get(1));
            }
        }
        let rows = q
            .query_built(&format!("SELECT restriction_id, key_id FROM branch_restriction_keys WHERE restriction_id IN ({ids}) ORDER BY key_id"), p)
            .map_err(self.err())?;
        for r in &rows {
            if let Some(&i) = at.get(&r.get::<_, i64>(0)) {
                out[i].access_keys.push(r.get(1));
            }
        }
        let rows = q
            .query_built(
                &format!(
                    "SELECT e.restriction_id, g.id, g.name, g.global_permission FROM branch_restriction_groups e JOIN user_groups g ON g.id = e.group_id
                     WHERE e.restriction_id IN ({ids}) ORDER BY g.name_key"
                ),
                p,
            )
            .map_err(self.err())?;
        for r in &rows {
            let global: Option<String> = r.get(3);
            let group = Group { id: r.get(1), name: GroupName::parse(r.get::<_, &str>(2))?, global: global.and_then(|g| g.parse().ok()) };
            if let Some(&i) = at.get(&r.get::<_, i64>(0)) {
                out[i].groups.push(group);
            }
        }
        Ok(out)
    }
}

impl BranchRestrictions for Postgres {
    fn insert_restrictions(&self, new: &[NewRestriction]) -> Result<Vec<Restriction>, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(self.err())?;
        let mut ids = Vec::with_capacity(new.len());
        for n in new {
            let (project_id, repo_id) = match n.scope {
                RestrictionScope::Project(p) => (Some(p), None),
                RestrictionScope::Repository(r) => (None, Some(r)),
            };
            let id: i64 = tx
                .query_one(
                    "INSERT INTO branch_restrictions (project_id, repo_id, kind, matcher_type, matcher_id, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                    &[&project_id, &repo_id, &n.kind.as_str(), &n.matcher.kind().as_str(), &n.matcher.id(), &now()],
                )
                .map_err(self.err())?
                .get(0);
            for u in &n.users {
                tx.execute("INSERT INTO branch_restriction_users (restriction_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", &[&id, u])
                    .map_err(self.err())?;
            }
            for g in &n.groups {
                tx.execute("INSERT INTO branch_restriction_groups (restriction_id, group_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", &[&id, g])
                    .map_err(self.err())?;
            }
            for k in &n.access_keys {
                tx.execute("INSERT INTO branch_restriction_keys (restriction_id, key_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", &[&id, k])
                    .map_err(self.err())?;
            }
            ids.push(id);
        }
        let made = self.load_restrictions(&mut tx, "id = ANY($1)", &[&ids])?;
        tx.commit().map_err(self.err())?;
        Ok(made)
    }

    fn restriction(&self, id: i64) -> Result<Option<Restriction>, StoreError> {
        let mut conn = self.conn()?;
        Ok(self.load_restrictions(&mut *conn, "id = $1", &[&id])?.pop())
    }

    fn scope_restrictions(&self, scope: RestrictionScope) -> Result<Vec<Restriction>, StoreError> {
        let mut conn = self.conn()?;
        match scope {
            RestrictionScope::Project(p) => self.load_restrictions(&mut *conn, "project_id = $1", &[&p]),
            RestrictionScope::Repository(r) => self.load_restrictions(&mut *conn, "repo_id = $1", &[&r]),
        }
    }

    fn restrictions_in_force(&self, repo: &Repo) -> Result<Vec<Restriction>, StoreError> {
        let mut conn = self.conn()?;
        self.load_restrictions(&mut *conn, "project_id = $1 OR repo_id = $2", &[&repo.project_id, &repo.id])
    }

    fn delete_restriction(&self, id: i64) -> Result<bool, StoreError> {
        // Exemptions go with the row (ON DELETE CASCADE).
        Ok(self.conn()?.execute("DELETE FROM branch_restrictions WHERE id = $1", &[&id]).map_err(self.err())? > 0)
    }
}
