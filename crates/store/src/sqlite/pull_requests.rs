//! Pull requests in SQLite: their rows, participants, activity log, comments, watchers and
//! settings. Each change runs in one IMMEDIATE transaction on the writer, so its version check,
//! its rows and its activities are one step for every process on the file.

use std::collections::HashMap;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};

use super::webhooks::enqueue;
use super::{CachedRow, Sqlite, is_unique_violation};
use crate::error::StoreError;
use crate::pull_requests::{
    Activity, Comment, CommentChange, CommentDelete, NewActivity, NewComment, NewPullRequest, Participant, PrChange, PrInsert, PrQuery, PrState, PullRequest,
    PullRequests, ReviewStatus, Role, Versioned, each_count,
};
use crate::store::now_ms;
use crate::webhooks::{NewEvent, Render};

/// The columns [`pr_row`] reads, from `pull_requests pr`.
macro_rules! pr_cols {
    () => {
        "pr.id, pr.repo_id, pr.number, pr.title, pr.description, pr.author_id, pr.from_repo_id, pr.from_ref, pr.to_ref, pr.from_hash, pr.to_hash,
         pr.state, pr.version, pr.created_at, pr.updated_at, pr.closed_at, pr.merge_commit, pr.merge_outcome"
    };
}

const COMMENT_COLS: &str = "SELECT id, pr_id, parent_id, author_id, text, version, created_at, updated_at, severity, state, anchor, orphaned FROM pr_comments";

/// A stored enum that no longer parses is a corrupt row.
fn bad(col: usize, what: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, format!("unknown {what} {value:?}").into())
}

fn pr_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PullRequest> {
    let state: String = r.get(11)?;
    Ok(PullRequest {
        id: r.get(0)?,
        repo_id: r.get(1)?,
        number: r.get(2)?,
        title: r.get(3)?,
        description: r.get(4)?,
        author_id: r.get(5)?,
        from_repo_id: r.get(6)?,
        from_ref: r.get(7)?,
        to_ref: r.get(8)?,
        from_hash: r.get(9)?,
        to_hash: r.get(10)?,
        state: PrState::parse(&state).ok_or_else(|| bad(11, "state", &state))?,
        version: r.get(12)?,
        created_at: r.get(13)?,
        updated_at: r.get(14)?,
        closed_at: r.get(15)?,
        merge_commit: r.get(16)?,
        merge_outcome: r.get(17)?,
        participants: Vec::new(),
    })
}

fn comment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Comment> {
    Ok(Comment {
        id: r.get(0)?,
        pr_id: r.get(1)?,
        parent_id: r.get(2)?,
        author_id: r.get(3)?,
        text: r.get(4)?,
        version: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
        severity: r.get(8)?,
        state: r.get(9)?,
        anchor: r.get(10)?,
        orphaned: r.get(11)?,
    })
}

/// `[1,2,3]`: a list of ids as one parameter, read back with `json_each`, so that a statement
/// over any number of ids is prepared once.
fn id_list(ids: impl Iterator<Item = i64>) -> String {
    let ids: Vec<String> = ids.map(|i| i.to_string()).collect();
    format!("[{}]", ids.join(","))
}

/// Fills in the participants of `prs` with one query: the author first, then by joining order.
fn load_participants(conn: &Connection, prs: &mut [PullRequest]) -> rusqlite::Result<()> {
    if prs.is_empty() {
        return Ok(());
    }
    let at: HashMap<i64, usize> = prs.iter().enumerate().map(|(i, p)| (p.id, i)).collect();
    let mut st = conn.prepare_cached(
        "SELECT pr_id, user_id, role, status, last_reviewed_commit FROM pr_participants WHERE pr_id IN (SELECT value FROM json_each(?1))
         ORDER BY pr_id, CASE role WHEN 'AUTHOR' THEN 0 ELSE 1 END, seq",
    )?;
    let mut rows = st.query([id_list(prs.iter().map(|p| p.id))])?;
    while let Some(r) = rows.next()? {
        let (role, status): (String, String) = (r.get(2)?, r.get(3)?);
        let p = Participant {
            user_id: r.get(1)?,
            role: Role::parse(&role).ok_or_else(|| bad(2, "role", &role))?,
            status: ReviewStatus::parse(&status).ok_or_else(|| bad(3, "status", &status))?,
            last_reviewed_commit: r.get(4)?,
        };
        if let Some(&i) = at.get(&r.get::<_, i64>(0)?) {
            prs[i].participants.push(p);
        }
    }
    Ok(())
}

fn load_pr(conn: &Connection, id: i64) -> rusqlite::Result<Option<PullRequest>> {
    let Some(pr) = conn.row(concat!("SELECT ", pr_cols!(), " FROM pull_requests pr WHERE pr.id = ?1"), [id], pr_row).optional()? else {
        return Ok(None);
    };
    let mut one = [pr];
    load_participants(conn, &mut one)?;
    let [pr] = one;
    Ok(Some(pr))
}

fn load_comment(conn: &Connection, id: i64) -> rusqlite::Result<Option<Comment>> {
    conn.row(&format!("{COMMENT_COLS} WHERE id = ?1"), [id], comment_row).optional()
}

/// The number of the open pull request between these refs, if there is one.
fn open_duplicate(conn: &Connection, repo_id: i64, from_repo_id: i64, from_ref: &str, to_ref: &str) -> rusqlite::Result<Option<i64>> {
    conn.row(
        "SELECT number FROM pull_requests WHERE repo_id = ?1 AND from_repo_id = ?2 AND from_ref = ?3 AND to_ref = ?4 AND state = 'OPEN'",
        params![repo_id, from_repo_id, from_ref, to_ref],
        |r| r.get(0),
    )
    .optional()
}

/// The open pull request that pull request `id`, with target `to_ref`, would duplicate.
fn duplicate_of(conn: &Connection, id: i64, to_ref: Option<&str>) -> rusqlite::Result<Option<i64>> {
    conn.row(
        "SELECT o.number FROM pull_requests o JOIN pull_requests p ON p.id = ?1
         WHERE o.state = 'OPEN' AND o.id <> p.id AND o.repo_id = p.repo_id AND o.from_repo_id = p.from_repo_id AND o.from_ref = p.from_ref
           AND o.to_ref = coalesce(?2, p.to_ref)",
        params![id, to_ref],
        |r| r.get(0),
    )
    .optional()
}

fn insert_activity(conn: &Connection, pr_id: i64, t: i64, a: &NewActivity) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO pr_activities (pr_id, created_at, user_id, action, comment_id, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
        .execute(params![pr_id, t, a.user_id, a.action, a.comment_id, a.detail])?;
    Ok(())
}

/// A participant joins last; one already there keeps its place and takes the new role and status.
fn upsert_participant(conn: &Connection, pr_id: i64, p: &Participant) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO pr_participants (pr_id, user_id, role, status, last_reviewed_commit, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, (SELECT coalesce(max(seq), 0) + 1 FROM pr_participants WHERE pr_id = ?1))
         ON CONFLICT (pr_id, user_id) DO UPDATE SET role = excluded.role, status = excluded.status, last_reviewed_commit = excluded.last_reviewed_commit",
    )?
    .execute(params![pr_id, p.user_id, p.role.as_str(), p.status.as_str(), p.last_reviewed_commit])?;
    Ok(())
}

/// Zero rows matched a versioned change: the row (its version read by `version_sql`) has
/// another version, or is gone.
fn stale_or_gone<T>(conn: &Connection, version_sql: &str, id: i64) -> rusqlite::Result<Versioned<T>> {
    Ok(match conn.row(version_sql, [id], |r| r.get(0)).optional()? {
        Some(v) => Versioned::Stale(v),
        None => Versioned::Gone,
    })
}

const PR_VERSION: &str = "SELECT version FROM pull_requests WHERE id = ?1";
const COMMENT_VERSION: &str = "SELECT version FROM pr_comments WHERE id = ?1";

fn push(args: &mut Vec<Value>, v: impl Into<Value>) -> String {
    args.push(v.into());
    format!("?{}", args.len())
}

impl PullRequests for Sqlite {
    fn insert_pr_with_events(&self, new: &NewPullRequest, events: Render<'_, PullRequest>) -> Result<PrInsert, StoreError> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.db())?;
        if let Some(n) = open_duplicate(&tx, new.repo_id, new.from_repo_id, &new.from_ref, &new.to_ref).map_err(self.db())? {
            return Ok(PrInsert::Duplicate(n));
        }
        let t = now_ms();
        // The counter outlives deleted pull requests, so a number is never given twice.
        let number: i64 = tx
            .row(
                "INSERT INTO pr_counters (repo_id, last_number) VALUES (?1, 1)
                 ON CONFLICT (repo_id) DO UPDATE SET last_number = pr_counters.last_number + 1 RETURNING last_number",
                [new.repo_id],
                |r| r.get(0),
            )
            .map_err(self.db())?;
        let inserted = tx
            .prepare_cached(
                "INSERT INTO pull_requests (repo_id, number, title, description, author_id, from_repo_id, from_ref, to_ref, from_hash, to_hash, state,
                                        version, created_at, updated_at, merge_outcome)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'OPEN', 0, ?11, ?11, ?12)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    new.repo_id,
                    number,
                    new.title,
                    new.description,
                    new.author_id,
                    new.from_repo_id,
                    new.from_ref,
                    new.to_ref,
                    new.from_hash,
                    new.to_hash,
                    t,
                    new.merge_outcome
                ])
            });
        if let Err(e) = inserted {
            // Only another process's open pull request, between our check and here.
            if is_unique_violation(&e)
                && let Some(n) = open_duplicate(&tx, new.repo_id, new.from_repo_id, &new.from_ref, &new.to_ref).map_err(self.db())?
            {
                return Ok(PrInsert::Duplicate(n));
            }
            return Err(self.db()(e));
        }
        let id = tx.last_insert_rowid();
        let write = || -> rusqlite::Result<PullRequest> {
            tx.prepare_cached("INSERT INTO pr_participants (pr_id, user_id, role, status, seq) VALUES (?1, ?2, 'AUTHOR', 'UNAPPROVED', 0)")?
                .execute(params![id, new.author_id])?;
            for r in &new.reviewers {
                let p = Participant { user_id: *r, role: Role::Reviewer, status: ReviewStatus::Unapproved, last_reviewed_commit: None };
                upsert_participant(&tx, id, &p)?;
            }
            insert_activity(&tx, id, t, &NewActivity::new(new.author_id, "OPENED", "{}".into()))?;
            let pr = load_pr(&tx, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            enqueue(&tx, &events(&pr))?;
            Ok(pr)
        };
        let pr = write().map_err(self.db())?;
        tx.commit().map_err(self.db())?;
        Ok(PrInsert::Created(pr))
    }

    fn pr(&self, repo_id: i64, number: i64) -> Result<Option<PullRequest>, StoreError> {
        let conn = self.read();
        let id: Option<i64> =
            conn.row("SELECT id FROM pull_requests WHERE repo_id = ?1 AND number = ?2", [repo_id, number], |r| r.get(0)).optional().map_err(self.db())?;
        match id {
            Some(id) => load_pr(&conn, id).map_err(self.db()),
            None => Ok(None),
        }
    }

    fn pr_by_id(&self, id: i64) -> Result<Option<PullRequest>, StoreError> {
        load_pr(&self.read(), id).map_err(self.db())
    }

    fn prs(&self, q: &PrQuery) -> Result<(Vec<PullRequest>, bool), StoreError> {
        let mut args: Vec<Value> = Vec::new();
        let mut sql = String::from(concat!("SELECT ", pr_cols!(), " FROM pull_requests pr WHERE 1 = 1"));
        if let Some(repo) = q.repo_id {
            sql += &format!(" AND pr.repo_id = {}", push(&mut args, repo));
        }
        if !q.states.is_empty() {
            let states: Vec<String> = q.states.iter().map(|s| push(&mut args, s.as_str().to_owned())).collect();
            sql += &format!(" AND pr.state IN ({})", states.join(", "));
        }
        if let Some(r) = &q.to_ref {
            sql += &format!(" AND pr.to_ref = {}", push(&mut args, r.clone()));
        }
        if let Some(r) = &q.from_ref {
            sql += &format!(" AND pr.from_ref = {}", push(&mut args, r.clone()));
        }
        for f in &q.participants {
            sql += &format!(" AND EXISTS (SELECT 1 FROM pr_participants pp WHERE pp.pr_id = pr.id AND pp.user_id = {}", push(&mut args, f.user_id));
            if let Some(role) = f.role {
                sql += &format!(" AND pp.role = {}", push(&mut args, role.as_str().to_owned()));
            }
            if !f.statuses.is_empty() {
                let st: Vec<String> = f.statuses.iter().map(|s| push(&mut args, s.as_str().to_owned())).collect();
                sql += &format!(" AND pp.status IN ({})", st.join(", "));
            }
            sql += ")";
        }
        if let Some(since) = q.closed_since {
            sql += &format!(" AND (pr.state = 'OPEN' OR pr.closed_at >= {})", push(&mut args, since));
        }
        let col = if q.by_update { "updated_at" } else { "created_at" };
        let dir = if q.oldest_first { "ASC" } else { "DESC" };
        // One more than the page, to know whether more follow.
        let limit = push(&mut args, q.limit.saturating_add(1) as i64);
        let offset = push(&mut args, q.start as i64);
        sql += &format!(" ORDER BY pr.{col} {dir}, pr.id {dir} LIMIT {limit} OFFSET {offset}");
        let conn = self.read();
        let mut prs: Vec<PullRequest> = {
            let mut st = conn.prepare_cached(&sql).map_err(self.db())?;
            st.query_map(params_from_iter(args), pr_row).map_err(self.db())?.collect::<Result<_, _>>().map_err(self.db())?
        };
        let more = prs.len() > q.limit;
        prs.truncate(q.limit);
        load_participants(&conn, &mut prs).map_err(self.db())?;
        Ok((prs, more))
    }

    fn open_prs_on_ref(&self, repo_id: i64, full_ref: &str) -> Result<Vec<PullRequest>, StoreError> {
        let conn = self.read();
        // The target in this repository, or the source in it (a fork's pull requests live in
        // their target repository).
        let mut prs: Vec<PullRequest> = {
            let mut st = conn
                .prepare_cached(concat!(
                    "SELECT ",
                    pr_cols!(),
                    " FROM pull_requests pr WHERE pr.state = 'OPEN' AND ((pr.repo_id = ?1 AND pr.to_ref = ?2) OR (pr.from_repo_id = ?1 AND pr.from_ref = ?2))
                      ORDER BY pr.id"
                ))
                .map_err(self.db())?;
            st.query_map(params![repo_id, full_ref], pr_row).map_err(self.db())?.collect::<Result<_, _>>().map_err(self.db())?
        };
        load_participants(&conn, &mut prs).map_err(self.db())?;
        Ok(prs)
    }

    fn update_pr_with_events(
        &self,
        id: i64,
        version: Option<i64>,
        change: &PrChange,
        activities: &[NewActivity],
        events: Render<'_, PullRequest>,
    ) -> Result<Versioned<PullRequest>, StoreError> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.db())?;
        let t = now_ms();
        let updated = tx
            .prepare_cached(
                "UPDATE pull_requests SET
                    title = coalesce(?1, title),
                    description = CASE WHEN ?2 THEN ?3 ELSE description END,
                    to_ref = coalesce(?4, to_ref),
                    from_hash = coalesce(?5, from_hash),
                    to_hash = coalesce(?6, to_hash),
                    state = coalesce(?7, state),
                    closed_at = CASE WHEN ?8 THEN ?9 ELSE closed_at END,
                    merge_commit = coalesce(?10, merge_commit),
                    merge_outcome = CASE WHEN ?11 THEN ?12 ELSE merge_outcome END,
                    version = version + CASE WHEN ?13 THEN 1 ELSE 0 END,
                    updated_at = CASE WHEN ?13 THEN ?14 ELSE updated_at END
                 WHERE id = ?15 AND (?16 IS NULL OR version = ?16)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    change.title,
                    change.description.is_some(),
                    change.description.clone().flatten(),
                    change.to_ref,
                    change.from_hash,
                    change.to_hash,
                    change.state.map(PrState::as_str),
                    change.closed_at.is_some(),
                    change.closed_at.flatten(),
                    change.merge_commit,
                    change.merge_outcome.is_some(),
                    change.merge_outcome.clone().flatten(),
                    change.bump_version,
                    t,
                    id,
                    version
                ])
            });
        match updated {
            Ok(0) => return stale_or_gone(&tx, PR_VERSION, id).map_err(self.db()),
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                // A reopen or a new target, and another open pull request between the same refs.
                return match duplicate_of(&tx, id, change.to_ref.as_deref()).map_err(self.db())? {
                    Some(n) => Err(StoreError::DuplicatePr(n)),
                    None => Err(self.db()(e)),
                };
            }
            Err(e) => return Err(self.db()(e)),
        }
        let write = || -> rusqlite::Result<Option<PullRequest>> {
            // Approvals reset first, so that a status this change sets explicitly stands.
            if change.reset_approvals {
                tx.execute("UPDATE pr_participants SET status = 'UNAPPROVED' WHERE pr_id = ?1 AND role <> 'AUTHOR'", [id])?;
            }
            for user in &change.remove_participants {
                tx.execute("DELETE FROM pr_participants WHERE pr_id = ?1 AND user_id = ?2", [id, *user])?;
            }
            for p in &change.upsert_participants {
                upsert_participant(&tx, id, p)?;
            }
            for a in activities {
                insert_activity(&tx, id, t, a)?;
            }
            let pr = load_pr(&tx, id)?;
            if let Some(pr) = &pr {
                enqueue(&tx, &events(pr))?;
            }
            Ok(pr)
        };
        let Some(pr) = write().map_err(self.db())? else { return Ok(Versioned::Gone) };
        tx.commit().map_err(self.db())?;
        Ok(Versioned::Done(pr))
    }

    fn delete_pr_with_events(&self, id: i64, version: Option<i64>, events: &[NewEvent]) -> Result<Versioned<()>, StoreError> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.db())?;
        // Participants, activities, comments and watchers go with it (ON DELETE CASCADE).
        let n = tx.execute("DELETE FROM pull_requests WHERE id = ?1 AND (?2 IS NULL OR version = ?2)", params![id, version]).map_err(self.db())?;
        if n == 0 {
            return stale_or_gone(&tx, PR_VERSION, id).map_err(self.db());
        }
        enqueue(&tx, events).map_err(self.db())?;
        tx.commit().map_err(self.db())?;
        Ok(Versioned::Done(()))
    }

    fn activities(&self, pr_id: i64) -> Result<Vec<Activity>, StoreError> {
        let conn = self.read();
        let mut st = conn
            .prepare_cached("SELECT id, pr_id, created_at, user_id, action, comment_id, detail FROM pr_activities WHERE pr_id = ?1 ORDER BY id DESC")
            .map_err(self.db())?;
        let rows = st
            .query_map([pr_id], |r| {
                Ok(Activity {
                    id: r.get(0)?,
                    pr_id: r.get(1)?,
                    created_at: r.get(2)?,
                    user_id: r.get(3)?,
                    action: r.get(4)?,
                    comment_id: r.get(5)?,
                    detail: r.get(6)?,
                })
            })
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    fn insert_comment_with_events(&self, new: &NewComment, activity: &NewActivity, events: Render<'_, Comment>) -> Result<Comment, StoreError> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.db())?;
        let t = now_ms();
        let write = || -> rusqlite::Result<Comment> {
            tx.prepare_cached(
                "INSERT INTO pr_comments (pr_id, parent_id, author_id, text, version, created_at, updated_at, severity, state, anchor, orphaned)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5, ?6, 'OPEN', ?7, 0)",
            )?
            .execute(params![new.pr_id, new.parent_id, new.author_id, new.text, t, new.severity, new.anchor])?;
            let id = tx.last_insert_rowid();
            insert_activity(&tx, new.pr_id, t, &NewActivity { comment_id: Some(id), ..activity.clone() })?;
            let c = load_comment(&tx, id)?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            enqueue(&tx, &events(&c))?;
            Ok(c)
        };
        let c = write().map_err(self.db())?;
        tx.commit().map_err(self.db())?;
        Ok(c)
    }

    fn comment(&self, id: i64) -> Result<Option<Comment>, StoreError> {
        load_comment(&self.read(), id).map_err(self.db())
    }

    fn comments(&self, pr_id: i64) -> Result<Vec<Comment>, StoreError> {
        let conn = self.read();
        let mut st = conn.prepare_cached(&format!("{COMMENT_COLS} WHERE pr_id = ?1 ORDER BY id")).map_err(self.db())?;
        let rows = st.query_map([pr_id], comment_row).map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    fn comment_counts(&self, pr_ids: &[i64]) -> Result<Vec<(i64, i64)>, StoreError> {
        if pr_ids.is_empty() {
            return Ok(Vec::new());
        }
        let counts: HashMap<i64, i64> = {
            let conn = self.read();
            let mut st = conn
                .prepare_cached("SELECT pr_id, count(*) FROM pr_comments WHERE pr_id IN (SELECT value FROM json_each(?1)) GROUP BY pr_id")
                .map_err(self.db())?;
            let rows = st.query_map([id_list(pr_ids.iter().copied())], |r| Ok((r.get(0)?, r.get(1)?))).map_err(self.db())?;
            rows.collect::<Result<_, _>>().map_err(self.db())?
        };
        Ok(each_count(pr_ids, &counts))
    }

    fn update_comment_with_events(
        &self,
        id: i64,
        version: i64,
        change: &CommentChange,
        activity: Option<&NewActivity>,
        events: Render<'_, Comment>,
    ) -> Result<Versioned<Comment>, StoreError> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.db())?;
        let t = now_ms();
        let write = || -> rusqlite::Result<Versioned<Comment>> {
            let n = tx
                .prepare_cached(
                    "UPDATE pr_comments SET text = coalesce(?1, text), severity = coalesce(?2, severity), state = coalesce(?3, state),
                        version = version + 1, updated_at = ?4
                     WHERE id = ?5 AND version = ?6",
                )?
                .execute(params![change.text, change.severity, change.state, t, id, version])?;
            if n == 0 {
                return stale_or_gone(&tx, COMMENT_VERSION, id);
            }
            let Some(c) = load_comment(&tx, id)? else { return Ok(Versioned::Gone) };
            if let Some(a) = activity {
                insert_activity(&tx, c.pr_id, t, a)?;
            }
            enqueue(&tx, &events(&c))?;
            Ok(Versioned::Done(c))
        };
        let done = write().map_err(self.db())?;
        if matches!(done, Versioned::Done(_)) {
            tx.commit().map_err(self.db())?;
        }
        Ok(done)
    }

    fn delete_comment_with_events(&self, id: i64, version: i64, activity: Option<&NewActivity>, events: &[NewEvent]) -> Result<CommentDelete, StoreError> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.db())?;
        let write = || -> rusqlite::Result<CommentDelete> {
            let Some((pr_id, v)) = tx.row("SELECT pr_id, version FROM pr_comments WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?))).optional()? else {
                return Ok(CommentDelete::Gone);
            };
            if v != version {
                return Ok(CommentDelete::Stale(v));
            }
            if tx.row("SELECT EXISTS (SELECT 1 FROM pr_comments WHERE parent_id = ?1)", [id], |r| r.get(0))? {
                return Ok(CommentDelete::HasReplies);
            }
            tx.execute("DELETE FROM pr_comments WHERE id = ?1", [id])?;
            if let Some(a) = activity {
                insert_activity(&tx, pr_id, now_ms(), a)?;
            }
            enqueue(&tx, events)?;
            Ok(CommentDelete::Deleted)
        };
        let done = write().map_err(self.db())?;
        if done == CommentDelete::Deleted {
            tx.commit().map_err(self.db())?;
        }
        Ok(done)
    }

    fn set_comment_anchors(&self, anchors: &[(i64, String, bool)]) -> Result<(), StoreError> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.db())?;
        for (id, anchor, orphaned) in anchors {
            tx.prepare_cached("UPDATE pr_comments SET anchor = ?1, orphaned = ?2 WHERE id = ?3")
                .and_then(|mut st| st.execute(params![anchor, orphaned, id]))
                .map_err(self.db())?;
        }
        tx.commit().map_err(self.db())
    }

    fn set_watch(&self, pr_id: i64, user_id: i64, watching: bool) -> Result<(), StoreError> {
        let sql = if watching {
            "INSERT INTO pr_watchers (pr_id, user_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM pr_watchers WHERE pr_id = ?1 AND user_id = ?2"
        };
        self.write().prepare_cached(sql).and_then(|mut st| st.execute([pr_id, user_id])).map_err(self.db())?;
        Ok(())
    }

    fn watchers(&self, pr_id: i64) -> Result<Vec<i64>, StoreError> {
        let conn = self.read();
        let mut st = conn.prepare_cached("SELECT user_id FROM pr_watchers WHERE pr_id = ?1 ORDER BY user_id").map_err(self.db())?;
        let rows = st.query_map([pr_id], |r| r.get(0)).map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    fn pr_settings(&self, repo_id: i64) -> Result<Option<String>, StoreError> {
        self.read().row("SELECT json FROM pr_settings WHERE repo_id = ?1", [repo_id], |r| r.get(0)).optional().map_err(self.db())
    }

    fn set_pr_settings(&self, repo_id: i64, json: &str) -> Result<(), StoreError> {
        self.write()
            .execute("INSERT INTO pr_settings (repo_id, json) VALUES (?1, ?2) ON CONFLICT (repo_id) DO UPDATE SET json = excluded.json", params![repo_id, json])
            .map_err(self.db())?;
        Ok(())
    }

    fn project_pr_settings(&self, project_id: i64) -> Result<Option<String>, StoreError> {
        self.read().row("SELECT json FROM project_pr_settings WHERE project_id = ?1", [project_id], |r| r.get(0)).optional().map_err(self.db())
    }

    fn set_project_pr_settings(&self, project_id: i64, json: &str) -> Result<(), StoreError> {
        self.write()
            .execute(
                "INSERT INTO project_pr_settings (project_id, json) VALUES (?1, ?2) ON CONFLICT (project_id) DO UPDATE SET json = excluded.json",
                params![project_id, json],
            )
            .map_err(self.db())?;
        Ok(())
    }
}
