//! Comments on commits in SQLite (see `crate::commit_comments`).

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::webhooks::enqueue;
use super::{CachedRow, Sqlite};
use crate::commit_comments::{CommitComment, CommitComments, NewCommitComment};
use crate::error::StoreError;
use crate::pull_requests::{CommentDelete, Versioned};
use crate::store::now_ms;
use crate::webhooks::{NewEvent, Render};

const COLS: &str = "SELECT id, repo_id, commit_id, parent_id, author_id, text, version, created_at, updated_at, anchor FROM commit_comments";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CommitComment> {
    Ok(CommitComment {
        id: r.get(0)?,
        repo_id: r.get(1)?,
        commit_id: r.get(2)?,
        parent_id: r.get(3)?,
        author_id: r.get(4)?,
        text: r.get(5)?,
        version: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
        anchor: r.get(9)?,
    })
}

fn load(conn: &Connection, id: i64) -> rusqlite::Result<Option<CommitComment>> {
    conn.row(&format!("{COLS} WHERE id = ?1"), [id], row).optional()
}

impl CommitComments for Sqlite {
    fn insert_commit_comment(&self, new: &NewCommitComment, events: Render<'_, CommitComment>) -> Result<CommitComment, StoreError> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.db())?;
        let t = now_ms();
        let write = || -> rusqlite::Result<CommitComment> {
            tx.prepare_cached(
                "INSERT INTO commit_comments (repo_id, commit_id, parent_id, author_id, text, version, created_at, updated_at, anchor)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, ?6, ?7)",
            )?
            .execute(params![new.repo_id, new.commit_id, new.parent_id, new.author_id, new.text, t, new.anchor])?;
            let c = load(&tx, tx.last_insert_rowid())?.ok_or(rusqlite::Error::QueryReturnedNoRows)?;
            enqueue(&tx, &events(&c))?;
            Ok(c)
        };
        let c = write().map_err(self.db())?;
        tx.commit().map_err(self.db())?;
        Ok(c)
    }

    fn commit_comment(&self, id: i64) -> Result<Option<CommitComment>, StoreError> {
        load(&self.read(), id).map_err(self.db())
    }

    fn commit_comments(&self, repo_id: i64, commit_id: &str) -> Result<Vec<CommitComment>, StoreError> {
        let conn = self.read();
        let mut st = conn.prepare_cached(&format!("{COLS} WHERE repo_id = ?1 AND commit_id = ?2 ORDER BY id")).map_err(self.db())?;
        let rows = st.query_map(params![repo_id, commit_id], row).map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    fn update_commit_comment(&self, id: i64, version: i64, text: &str, events: Render<'_, CommitComment>) -> Result<Versioned<CommitComment>, StoreError> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.db())?;
        let write = || -> rusqlite::Result<Versioned<CommitComment>> {
            let n = tx
                .prepare_cached("UPDATE commit_comments SET text = ?1, version = version + 1, updated_at = ?2 WHERE id = ?3 AND version = ?4")?
                .execute(params![text, now_ms(), id, version])?;
            if n == 0 {
                return Ok(match tx.row("SELECT version FROM commit_comments WHERE id = ?1", [id], |r| r.get(0)).optional()? {
                    Some(v) => Versioned::Stale(v),
                    None => Versioned::Gone,
                });
            }
            let Some(c) = load(&tx, id)? else { return Ok(Versioned::Gone) };
            enqueue(&tx, &events(&c))?;
            Ok(Versioned::Done(c))
        };
        let done = write().map_err(self.db())?;
        if matches!(done, Versioned::Done(_)) {
            tx.commit().map_err(self.db())?;
        }
        Ok(done)
    }

    fn delete_commit_comment(&self, id: i64, version: i64, events: &[NewEvent]) -> Result<CommentDelete, StoreError> {
        let mut conn = self.write();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(self.db())?;
        let write = || -> rusqlite::Result<CommentDelete> {
            let Some(v) = tx.row("SELECT version FROM commit_comments WHERE id = ?1", [id], |r| r.get::<_, i64>(0)).optional()? else {
                return Ok(CommentDelete::Gone);
            };
            if v != version {
                return Ok(CommentDelete::Stale(v));
            }
            if tx.row("SELECT EXISTS (SELECT 1 FROM commit_comments WHERE parent_id = ?1)", [id], |r| r.get(0))? {
                return Ok(CommentDelete::HasReplies);
            }
            tx.execute("DELETE FROM commit_comments WHERE id = ?1", [id])?;
            enqueue(&tx, events)?;
            Ok(CommentDelete::Deleted)
        };
        let done = write().map_err(self.db())?;
        if done == CommentDelete::Deleted {
            tx.commit().map_err(self.db())?;
        }
        Ok(done)
    }
}
