//! Pull requests in PostgreSQL: their rows, participants, activity log, comments, watchers and
//! settings. Each change is one transaction; a versioned change is one `UPDATE … WHERE version`,
//! whose row lock makes nodes changing the same pull request at once take turns.

use std::collections::HashMap;

use postgres::Row;
use postgres::types::ToSql;

use super::{Postgres, Query, is_unique_violation};
use crate::error::StoreError;
use crate::pull_requests::{
    Activity, Comment, CommentChange, CommentDelete, NewActivity, NewComment, NewPullRequest, Participant, PrChange, PrInsert, PrQuery, PrState, PullRequest,
    PullRequests, ReviewStatus, Role, Versioned, each_count,
};
use crate::store::now_ms;
use crate::webhooks::{NewEvent, Render};

/// The columns [`Postgres::pr_row`] reads, from `pull_requests pr`.
macro_rules! pr_cols {
    () => {
        "pr.id, pr.repo_id, pr.number, pr.title, pr.description, pr.author_id, pr.from_repo_id, pr.from_ref, pr.to_ref, pr.from_hash, pr.to_hash,
         pr.state, pr.version, pr.created_at, pr.updated_at, pr.closed_at, pr.merge_commit, pr.merge_outcome"
    };
}

macro_rules! comment_cols {
    () => {
        "SELECT id, pr_id, parent_id, author_id, text, version, created_at, updated_at, severity, state, anchor, orphaned FROM pr_comments"
    };
}

fn comment_row(r: &Row) -> Comment {
    Comment {
        id: r.get(0),
        pr_id: r.get(1),
        parent_id: r.get(2),
        author_id: r.get(3),
        text: r.get(4),
        version: r.get(5),
        created_at: r.get(6),
        updated_at: r.get(7),
        severity: r.get(8),
        state: r.get(9),
        anchor: r.get(10),
        orphaned: r.get(11),
    }
}

type Params = Vec<Box<dyn ToSql + Sync>>;

fn push(args: &mut Params, v: impl ToSql + Sync + 'static) -> String {
    args.push(Box::new(v));
    format!("${}", args.len())
}

impl Postgres {
    /// A stored enum that no longer parses: a corrupt row, or one a newer trove wrote.
    fn corrupt(&self, what: &str, value: &str) -> StoreError {
        StoreError::Postgres {
            target: self.target.clone(),
            message: format!("a pull request's {what} is {value:?}, which this trove does not know; the row is corrupt or from a newer trove"),
            unavailable: false,
        }
    }

    /// A row this transaction inserted could not be read back (it cannot happen).
    fn vanished(&self, what: &str, id: i64) -> StoreError {
        StoreError::Postgres { target: self.target.clone(), message: format!("{what} {id} was not found in the transaction that made it"), unavailable: false }
    }

    fn pr_row(&self, r: &Row) -> Result<PullRequest, StoreError> {
        let state: &str = r.get(11);
        Ok(PullRequest {
            id: r.get(0),
            repo_id: r.get(1),
            number: r.get(2),
            title: r.get(3),
            description: r.get(4),
            author_id: r.get(5),
            from_repo_id: r.get(6),
            from_ref: r.get(7),
            to_ref: r.get(8),
            from_hash: r.get(9),
            to_hash: r.get(10),
            state: PrState::parse(state).ok_or_else(|| self.corrupt("state", state))?,
            version: r.get(12),
            created_at: r.get(13),
            updated_at: r.get(14),
            closed_at: r.get(15),
            merge_commit: r.get(16),
            merge_outcome: r.get(17),
            participants: Vec::new(),
        })
    }

    /// Fills in the participants of `prs` with one query: the author first, then by joining order.
    fn load_participants(&self, q: &mut impl Query, prs: &mut [PullRequest]) -> Result<(), StoreError> {
        if prs.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = prs.iter().map(|p| p.id).collect();
        let at: HashMap<i64, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let rows = q
            .query(
                "SELECT pr_id, user_id, role, status, last_reviewed_commit FROM pr_participants WHERE pr_id = ANY($1)
                 ORDER BY pr_id, CASE role WHEN 'AUTHOR' THEN 0 ELSE 1 END, seq",
                &[&ids],
            )
            .map_err(self.err())?;
        for r in &rows {
            let (role, status): (&str, &str) = (r.get(2), r.get(3));
            let p = Participant {
                user_id: r.get(1),
                role: Role::parse(role).ok_or_else(|| self.corrupt("participant role", role))?,
                status: ReviewStatus::parse(status).ok_or_else(|| self.corrupt("review status", status))?,
                last_reviewed_commit: r.get(4),
            };
            if let Some(&i) = at.get(&r.get::<_, i64>(0)) {
                prs[i].participants.push(p);
            }
        }
        Ok(())
    }

    fn prs_from(&self, q: &mut impl Query, rows: &[Row]) -> Result<Vec<PullRequest>, StoreError> {
        let mut prs = rows.iter().map(|r| self.pr_row(r)).collect::<Result<Vec<_>, _>>()?;
        self.load_participants(q, &mut prs)?;
        Ok(prs)
    }

    fn load_pr(&self, q: &mut impl Query, id: i64) -> Result<Option<PullRequest>, StoreError> {
        let row = q.query_opt(concat!("SELECT ", pr_cols!(), " FROM pull_requests pr WHERE pr.id = $1"), &[&id]).map_err(self.err())?;
        Ok(self.prs_from(q, row.as_slice())?.pop())
    }

    fn load_comment(&self, q: &mut impl Query, id: i64) -> Result<Option<Comment>, StoreError> {
        let row = q.query_opt(concat!(comment_cols!(), " WHERE id = $1"), &[&id]).map_err(self.err())?;
        Ok(row.as_ref().map(comment_row))
    }

    /// The number of the open pull request between these refs, if there is one.
    fn open_duplicate(&self, q: &mut impl Query, new: &NewPullRequest) -> Result<Option<i64>, StoreError> {
        let row = q
            .query_opt(
                "SELECT number FROM pull_requests WHERE repo_id = $1 AND from_repo_id = $2 AND from_ref = $3 AND to_ref = $4 AND state = 'OPEN'",
                &[&new.repo_id, &new.from_repo_id, &new.from_ref, &new.to_ref],
            )
            .map_err(self.err())?;
        Ok(row.map(|r| r.get(0)))
    }

    /// The open pull request that pull request `id`, with target `to_ref`, would duplicate.
    fn duplicate_of(&self, q: &mut impl Query, id: i64, to_ref: Option<&str>) -> Result<Option<i64>, StoreError> {
        let row = q
            .query_opt(
                "SELECT o.number FROM pull_requests o JOIN pull_requests p ON p.id = $1
                 WHERE o.state = 'OPEN' AND o.id <> p.id AND o.repo_id = p.repo_id AND o.from_repo_id = p.from_repo_id AND o.from_ref = p.from_ref
                   AND o.to_ref = coalesce($2::TEXT, p.to_ref)",
                &[&id, &to_ref],
            )
            .map_err(self.err())?;
        Ok(row.map(|r| r.get(0)))
    }

    fn insert_activity(&self, q: &mut impl Query, pr_id: i64, t: i64, a: &NewActivity) -> Result<(), StoreError> {
        q.execute(
            "INSERT INTO pr_activities (pr_id, created_at, user_id, action, comment_id, detail) VALUES ($1, $2, $3, $4, $5, $6)",
            &[&pr_id, &t, &a.user_id, &a.action, &a.comment_id, &a.detail],
        )
        .map_err(self.err())?;
        Ok(())
    }

    /// A participant joins last; one already there keeps its place and takes the new role and status.
    fn upsert_participant(&self, q: &mut impl Query, pr_id: i64, p: &Participant) -> Result<(), StoreError> {
        q.execute(
            "INSERT INTO pr_participants (pr_id, user_id, role, status, last_reviewed_commit, seq)
             VALUES ($1, $2, $3, $4, $5, (SELECT coalesce(max(seq), 0) + 1 FROM pr_participants WHERE pr_id = $1))
             ON CONFLICT (pr_id, user_id) DO UPDATE SET role = excluded.role, status = excluded.status, last_reviewed_commit = excluded.last_reviewed_commit",
            &[&pr_id, &p.user_id, &p.role.as_str(), &p.status.as_str(), &p.last_reviewed_commit],
        )
        .map_err(self.err())?;
        Ok(())
    }

    /// Zero rows matched a versioned change of pull request `id`: it has another version, or is gone.
    fn pr_stale_or_gone<T>(&self, q: &mut impl Query, id: i64) -> Result<Versioned<T>, StoreError> {
        let row = q.query_opt("SELECT version FROM pull_requests WHERE id = $1", &[&id]).map_err(self.err())?;
        Ok(row.map_or(Versioned::Gone, |r| Versioned::Stale(r.get(0))))
    }
}

impl PullRequests for Postgres {
    fn insert_pr_with_events(&self, new: &NewPullRequest, events: Render<'_, PullRequest>) -> Result<PrInsert, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(self.err())?;
        let t = now_ms();
        // The counter first: its row lock makes pull requests into one repository take turns, so
        // the duplicate check below sees the one committed just before. The counter outlives
        // deleted pull requests, so a number is never given twice.
        let number: i64 = tx
            .query_one(
                "INSERT INTO pr_counters (repo_id, last_number) VALUES ($1, 1)
                 ON CONFLICT (repo_id) DO UPDATE SET last_number = pr_counters.last_number + 1 RETURNING last_number",
                &[&new.repo_id],
            )
            .map_err(self.err())?
            .get(0);
        if let Some(n) = self.open_duplicate(&mut tx, new)? {
            return Ok(PrInsert::Duplicate(n));
        }
        let inserted = tx.query_one(
            "INSERT INTO pull_requests (repo_id, number, title, description, author_id, from_repo_id, from_ref, to_ref, from_hash, to_hash, state,
                                        version, created_at, updated_at, merge_outcome)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'OPEN', 0, $11, $11, $12) RETURNING id",
            &[
                &new.repo_id,
                &number,
                &new.title,
                &new.description,
                &new.author_id,
                &new.from_repo_id,
                &new.from_ref,
                &new.to_ref,
                &new.from_hash,
                &new.to_hash,
                &t,
                &new.merge_outcome,
            ],
        );
        let id: i64 = match inserted {
            Ok(r) => r.get(0),
            Err(e) if is_unique_violation(&e) => {
                // The index decides if the check above ever missed one (it cannot while the
                // counter's lock holds); the transaction is aborted, so look after it.
                drop(tx);
                return match self.open_duplicate(&mut *conn, new)? {
                    Some(n) => Ok(PrInsert::Duplicate(n)),
                    None => Err(self.err()(e)),
                };
            }
            Err(e) => return Err(self.err()(e)),
        };
        tx.execute("INSERT INTO pr_participants (pr_id, user_id, role, status, seq) VALUES ($1, $2, 'AUTHOR', 'UNAPPROVED', 0)", &[&id, &new.author_id])
            .map_err(self.err())?;
        for r in &new.reviewers {
            let p = Participant { user_id: *r, role: Role::Reviewer, status: ReviewStatus::Unapproved, last_reviewed_commit: None };
            self.upsert_participant(&mut tx, id, &p)?;
        }
        self.insert_activity(&mut tx, id, t, &NewActivity::new(new.author_id, "OPENED", "{}".into()))?;
        let pr = self.load_pr(&mut tx, id)?.ok_or_else(|| self.vanished("pull request", id))?;
        self.enqueue(&mut tx, &events(&pr))?;
        tx.commit().map_err(self.err())?;
        Ok(PrInsert::Created(pr))
    }

    fn pr(&self, repo_id: i64, number: i64) -> Result<Option<PullRequest>, StoreError> {
        let mut conn = self.conn()?;
        let rows = conn
            .query(concat!("SELECT ", pr_cols!(), " FROM pull_requests pr WHERE pr.repo_id = $1 AND pr.number = $2"), &[&repo_id, &number])
            .map_err(self.err())?;
        Ok(self.prs_from(&mut *conn, &rows)?.pop())
    }

    fn pr_by_id(&self, id: i64) -> Result<Option<PullRequest>, StoreError> {
        self.load_pr(&mut *self.conn()?, id)
    }

    fn prs(&self, q: &PrQuery) -> Result<(Vec<PullRequest>, bool), StoreError> {
        let mut args: Params = Vec::new();
        let mut sql = String::from(concat!("SELECT ", pr_cols!(), " FROM pull_requests pr WHERE TRUE"));
        if let Some(repo) = q.repo_id {
            sql += &format!(" AND pr.repo_id = {}", push(&mut args, repo));
        }
        if !q.states.is_empty() {
            let states: Vec<&'static str> = q.states.iter().map(|s| s.as_str()).collect();
            sql += &format!(" AND pr.state = ANY({})", push(&mut args, states));
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
                sql += &format!(" AND pp.role = {}", push(&mut args, role.as_str()));
            }
            if !f.statuses.is_empty() {
                let st: Vec<&'static str> = f.statuses.iter().map(|s| s.as_str()).collect();
                sql += &format!(" AND pp.status = ANY({})", push(&mut args, st));
            }
            sql += ")";
        }
        if let Some(since) = q.closed_since {
            sql += &format!(" AND (pr.state = 'OPEN' OR pr.closed_at >= {})", push(&mut args, since));
        }
        let col = if q.by_update { "updated_at" } else { "created_at" };
        let dir = if q.oldest_first { "ASC" } else { "DESC" };
        // One more than the page, to know whether more follow.
        let limit = push(&mut args, q.limit.saturating_add(1).min(i64::MAX as usize) as i64);
        let offset = push(&mut args, q.start.min(i64::MAX as usize) as i64);
        sql += &format!(" ORDER BY pr.{col} {dir}, pr.id {dir} LIMIT {limit} OFFSET {offset}");
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref()).collect();
        let mut conn = self.conn()?;
        let mut rows = conn.query_built(&sql, &params).map_err(self.err())?;
        let more = rows.len() > q.limit;
        rows.truncate(q.limit);
        Ok((self.prs_from(&mut *conn, &rows)?, more))
    }

    fn open_prs_on_ref(&self, repo_id: i64, full_ref: &str) -> Result<Vec<PullRequest>, StoreError> {
        let mut conn = self.conn()?;
        // The target in this repository, or the source in it (a fork's pull requests live in
        // their target repository).
        let rows = conn
            .query(
                concat!(
                    "SELECT ",
                    pr_cols!(),
                    " FROM pull_requests pr WHERE pr.state = 'OPEN' AND ((pr.repo_id = $1 AND pr.to_ref = $2) OR (pr.from_repo_id = $1 AND pr.from_ref = $2))
                      ORDER BY pr.id"
                ),
                &[&repo_id, &full_ref],
            )
            .map_err(self.err())?;
        self.prs_from(&mut *conn, &rows)
    }

    fn update_pr_with_events(
        &self,
        id: i64,
        version: Option<i64>,
        change: &PrChange,
        activities: &[NewActivity],
        events: Render<'_, PullRequest>,
    ) -> Result<Versioned<PullRequest>, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(self.err())?;
        let t = now_ms();
        let updated = tx.execute(
            "UPDATE pull_requests SET
                title = coalesce($1, title),
                description = CASE WHEN $2::BOOLEAN THEN $3::TEXT ELSE description END,
                to_ref = coalesce($4, to_ref),
                from_hash = coalesce($5, from_hash),
                to_hash = coalesce($6, to_hash),
                state = coalesce($7, state),
                closed_at = CASE WHEN $8::BOOLEAN THEN $9::BIGINT ELSE closed_at END,
                merge_commit = coalesce($10, merge_commit),
                merge_outcome = CASE WHEN $11::BOOLEAN THEN $12::TEXT ELSE merge_outcome END,
                version = version + CASE WHEN $13::BOOLEAN THEN 1 ELSE 0 END,
                updated_at = CASE WHEN $13::BOOLEAN THEN $14::BIGINT ELSE updated_at END
             WHERE id = $15 AND ($16::BIGINT IS NULL OR version = $16)",
            &[
                &change.title,
                &change.description.is_some(),
                &change.description.clone().flatten(),
                &change.to_ref,
                &change.from_hash,
                &change.to_hash,
                &change.state.map(PrState::as_str),
                &change.closed_at.is_some(),
                &change.closed_at.flatten(),
                &change.merge_commit,
                &change.merge_outcome.is_some(),
                &change.merge_outcome.clone().flatten(),
                &change.bump_version,
                &t,
                &id,
                &version,
            ],
        );
        match updated {
            Ok(0) => return self.pr_stale_or_gone(&mut tx, id),
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                // A reopen or a new target, and another open pull request between the same refs;
                // the transaction is aborted, so look after it.
                drop(tx);
                return match self.duplicate_of(&mut *conn, id, change.to_ref.as_deref())? {
                    Some(n) => Err(StoreError::DuplicatePr(n)),
                    None => Err(self.err()(e)),
                };
            }
            Err(e) => return Err(self.err()(e)),
        }
        // Approvals reset first, so that a status this change sets explicitly stands.
        if change.reset_approvals {
            tx.execute("UPDATE pr_participants SET status = 'UNAPPROVED' WHERE pr_id = $1 AND role <> 'AUTHOR'", &[&id]).map_err(self.err())?;
        }
        for user in &change.remove_participants {
            tx.execute("DELETE FROM pr_participants WHERE pr_id = $1 AND user_id = $2", &[&id, user]).map_err(self.err())?;
        }
        for p in &change.upsert_participants {
            self.upsert_participant(&mut tx, id, p)?;
        }
        for a in activities {
            self.insert_activity(&mut tx, id, t, a)?;
        }
        let Some(pr) = self.load_pr(&mut tx, id)? else { return Ok(Versioned::Gone) };
        self.enqueue(&mut tx, &events(&pr))?;
        tx.commit().map_err(self.err())?;
        Ok(Versioned::Done(pr))
    }

    fn delete_pr_with_events(&self, id: i64, version: Option<i64>, events: &[NewEvent]) -> Result<Versioned<()>, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(self.err())?;
        // Participants, activities, comments and watchers go with it (ON DELETE CASCADE).
        let n = tx.execute("DELETE FROM pull_requests WHERE id = $1 AND ($2::BIGINT IS NULL OR version = $2)", &[&id, &version]).map_err(self.err())?;
        if n == 0 {
            return self.pr_stale_or_gone(&mut tx, id);
        }
        self.enqueue(&mut tx, events)?;
        tx.commit().map_err(self.err())?;
        Ok(Versioned::Done(()))
    }

    fn activities(&self, pr_id: i64) -> Result<Vec<Activity>, StoreError> {
        let rows = self
            .conn()?
            .query("SELECT id, pr_id, created_at, user_id, action, comment_id, detail FROM pr_activities WHERE pr_id = $1 ORDER BY id DESC", &[&pr_id])
            .map_err(self.err())?;
        Ok(rows
            .iter()
            .map(|r| Activity {
                id: r.get(0),
                pr_id: r.get(1),
                created_at: r.get(2),
                user_id: r.get(3),
                action: r.get(4),
                comment_id: r.get(5),
                detail: r.get(6),
            })
            .collect())
    }

    fn insert_comment_with_events(&self, new: &NewComment, activity: &NewActivity, events: Render<'_, Comment>) -> Result<Comment, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(self.err())?;
        let t = now_ms();
        let id: i64 = tx
            .query_one(
                "INSERT INTO pr_comments (pr_id, parent_id, author_id, text, version, created_at, updated_at, severity, state, anchor, orphaned)
                 VALUES ($1, $2, $3, $4, 0, $5, $5, $6, 'OPEN', $7, FALSE) RETURNING id",
                &[&new.pr_id, &new.parent_id, &new.author_id, &new.text, &t, &new.severity, &new.anchor],
            )
            .map_err(self.err())?
            .get(0);
        self.insert_activity(&mut tx, new.pr_id, t, &NewActivity { comment_id: Some(id), ..activity.clone() })?;
        let c = self.load_comment(&mut tx, id)?.ok_or_else(|| self.vanished("comment", id))?;
        self.enqueue(&mut tx, &events(&c))?;
        tx.commit().map_err(self.err())?;
        Ok(c)
    }

    fn comment(&self, id: i64) -> Result<Option<Comment>, StoreError> {
        self.load_comment(&mut *self.conn()?, id)
    }

    fn comments(&self, pr_id: i64) -> Result<Vec<Comment>, StoreError> {
        let rows = self.conn()?.query(concat!(comment_cols!(), " WHERE pr_id = $1 ORDER BY id"), &[&pr_id]).map_err(self.err())?;
        Ok(rows.iter().map(comment_row).collect())
    }

    fn comment_counts(&self, pr_ids: &[i64]) -> Result<Vec<(i64, i64)>, StoreError> {
        if pr_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.conn()?.query("SELECT pr_id, count(*) FROM pr_comments WHERE pr_id = ANY($1) GROUP BY pr_id", &[&pr_ids]).map_err(self.err())?;
        let counts: HashMap<i64, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
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
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(self.err())?;
        let t = now_ms();
        let row = tx
            .query_opt(
                "UPDATE pr_comments SET text = coalesce($1, text), severity = coalesce($2, severity), state = coalesce($3, state),
                    version = version + 1, updated_at = $4
                 WHERE id = $5 AND version = $6 RETURNING pr_id",
                &[&change.text, &change.severity, &change.state, &t, &id, &version],
            )
            .map_err(self.err())?;
        let Some(row) = row else {
            let v = tx.query_opt("SELECT version FROM pr_comments WHERE id = $1", &[&id]).map_err(self.err())?;
            return Ok(v.map_or(Versioned::Gone, |r| Versioned::Stale(r.get(0))));
        };
        if let Some(a) = activity {
            self.insert_activity(&mut tx, row.get(0), t, a)?;
        }
        let Some(c) = self.load_comment(&mut tx, id)? else { return Ok(Versioned::Gone) };
        self.enqueue(&mut tx, &events(&c))?;
        tx.commit().map_err(self.err())?;
        Ok(Versioned::Done(c))
    }

    fn delete_comment_with_events(&self, id: i64, version: i64, activity: Option<&NewActivity>, events: &[NewEvent]) -> Result<CommentDelete, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(self.err())?;
        // FOR UPDATE: a reply being added at the same moment (which locks its parent KEY SHARE)
        // waits, or is seen below.
        let Some(row) = tx.query_opt("SELECT pr_id, version FROM pr_comments WHERE id = $1 FOR UPDATE", &[&id]).map_err(self.err())? else {
            return Ok(CommentDelete::Gone);
        };
        let (pr_id, v): (i64, i64) = (row.get(0), row.get(1));
        if v != version {
            return Ok(CommentDelete::Stale(v));
        }
        let replies: bool = tx.query_one("SELECT EXISTS (SELECT 1 FROM pr_comments WHERE parent_id = $1)", &[&id]).map_err(self.err())?.get(0);
        if replies {
            return Ok(CommentDelete::HasReplies);
        }
        tx.execute("DELETE FROM pr_comments WHERE id = $1", &[&id]).map_err(self.err())?;
        if let Some(a) = activity {
            self.insert_activity(&mut tx, pr_id, now_ms(), a)?;
        }
        self.enqueue(&mut tx, events)?;
        tx.commit().map_err(self.err())?;
        Ok(CommentDelete::Deleted)
    }

    fn set_comment_anchors(&self, anchors: &[(i64, String, bool)]) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(self.err())?;
        for (id, anchor, orphaned) in anchors {
            tx.execute("UPDATE pr_comments SET anchor = $1, orphaned = $2 WHERE id = $3", &[anchor, orphaned, id]).map_err(self.err())?;
        }
        tx.commit().map_err(self.err())
    }

    fn set_watch(&self, pr_id: i64, user_id: i64, watching: bool) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        if watching {
            conn.execute("INSERT INTO pr_watchers (pr_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", &[&pr_id, &user_id])
        } else {
            conn.execute("DELETE FROM pr_watchers WHERE pr_id = $1 AND user_id = $2", &[&pr_id, &user_id])
        }
        .map_err(self.err())?;
        Ok(())
    }

    fn watchers(&self, pr_id: i64) -> Result<Vec<i64>, StoreError> {
        let rows = self.conn()?.query("SELECT user_id FROM pr_watchers WHERE pr_id = $1 ORDER BY user_id", &[&pr_id]).map_err(self.err())?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn pr_settings(&self, repo_id: i64) -> Result<Option<String>, StoreError> {
        let row = self.conn()?.query_opt("SELECT json FROM pr_settings WHERE repo_id = $1", &[&repo_id]).map_err(self.err())?;
        Ok(row.map(|r| r.get(0)))
    }

    fn set_pr_settings(&self, repo_id: i64, json: &str) -> Result<(), StoreError> {
        self.conn()?
            .execute("INSERT INTO pr_settings (repo_id, json) VALUES ($1, $2) ON CONFLICT (repo_id) DO UPDATE SET json = excluded.json", &[&repo_id, &json])
            .map_err(self.err())?;
        Ok(())
    }

    fn project_pr_settings(&self, project_id: i64) -> Result<Option<String>, StoreError> {
        let row = self.conn()?.query_opt("SELECT json FROM project_pr_settings WHERE project_id = $1", &[&project_id]).map_err(self.err())?;
        Ok(row.map(|r| r.get(0)))
    }

    fn set_project_pr_settings(&self, project_id: i64, json: &str) -> Result<(), StoreError> {
        self.conn()?
            .execute(
                "INSERT INTO project_pr_settings (project_id, json) VALUES ($1, $2) ON CONFLICT (project_id) DO UPDATE SET json = excluded.json",
                &[&project_id, &json],
            )
            .map_err(self.err())?;
        Ok(())
    }
}
