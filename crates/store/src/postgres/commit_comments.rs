//! Comments on commits in PostgreSQL (see `crate::commit_comments`).

use postgres::Row;

use super::{Postgres, Query};
use crate::commit_comments::{CommitComment, CommitComments, NewCommitComment};
use crate::error::StoreError;
use crate::pull_requests::{CommentDelete, Versioned};
use crate::store::now_ms;
use crate::webhooks::{NewEvent, Render};

macro_rules! cols {
    () => {
        "SELECT id, repo_id, commit_id, parent_id, author_id, text, version, created_at, updated_at, anchor FROM commit_comments"
    };
}

fn row(r: &Row) -> CommitComment {
    CommitComment {
        id: r.get(0),
        repo_id: r.get(1),
        commit_id: r.get(2),
        parent_id: r.get(3),
        author_id: r.get(4),
        text: r.get(5),
        version: r.get(6),
        created_at: r.get(7),
        updated_at: r.get(8),
        anchor: r.get(9),
    }
}

impl Postgres {
    fn load_commit_comment(&self, q: &mut impl Query, id: i64) -> Result<Option<CommitComment>, StoreError> {
        let r = q.query_opt(concat!(cols!(), " WHERE id = $1"), &[&id]).map_err(self.err())?;
        Ok(r.as_ref().map(row))
    }
}

impl CommitComments for Postgres {
    fn insert_commit_comment(&self, new: &NewCommitComment, events: Render<'_, CommitComment>) -> Result<CommitComment, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(self.err())?;
        let t = now_ms();
        // A reply's foreign key locks its parent (KEY SHARE): a delete of the parent at the same
        // moment waits for this, then sees the reply.
        let r = tx
            .query_one(
                concat!(
                    "INSERT INTO commit_comments (repo_id, commit_id, parent_id, author_id, text, version, created_at, updated_at, anchor)
                     VALUES ($1, $2, $3, $4, $5, 0, $6, $6, $7) RETURNING ",
                    "id, repo_id, commit_id, parent_id, author_id, text, version, created_at, updated_at, anchor"
                ),
                &[&new.repo_id, &new.commit_id, &new.parent_id, &new.author_id, &new.text, &t, &new.anchor],
            )
            .map_err(self.err())?;
        let c = row(&r);
        self.enqueue(&mut tx, &events(&c))?;
        tx.commit().map_err(self.err())?;
        Ok(c)
    }

    fn commit_comment(&self, id: i64) -> Result<Option<CommitComment>, StoreError> {
        self.load_commit_comment(&mut *self.conn()?, id)
    }

    fn commit_comments(&self, repo_id: i64, commit_id: &str) -> Result<Vec<CommitComment>, StoreError> {
        let rows = self.conn()?.query(concat!(cols!(), " WHERE repo_id = $1 AND commit_id = $2 ORDER BY id"), &[&repo_id, &commit_id]).map_err(self.err())?;
        Ok(rows.iter().map(row).collect())
    }

    fn update_commit_comment(&self, id: i64, version: i64, text: &str, events: Render<'_, CommitComment>) -> Result<Versioned<CommitComment>, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(self.err())?;
        let n = tx
            .execute(
                "UPDATE commit_comments SET text = $1, version = version + 1, updated_at = $2 WHERE id = $3 AND version = $4",
                &[&text, &now_ms(), &id, &version],
            )
            .map_err(self.err())?;
        if n == 0 {
            let v = tx.query_opt("SELECT version FROM commit_comments WHERE id = $1", &[&id]).map_err(self.err())?;
            return Ok(match v {
                Some(r) => Versioned::Stale(r.get(0)),
                None => Versioned::Gone,
            });
        }
        let Some(c) = self.load_commit_comment(&mut tx, id)? else { return Ok(Versioned::Gone) };
        self.enqueue(&mut tx, &events(&c))?;
        tx.commit().map_err(self.err())?;
        Ok(Versioned::Done(c))
    }

    fn delete_commit_comment(&self, id: i64, version: i64, events: &[NewEvent]) -> Result<CommentDelete, StoreError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(self.err())?;
        // FOR UPDATE: a reply being added at the same moment waits, or is seen below.
        let Some(r) = tx.query_opt("SELECT version FROM commit_comments WHERE id = $1 FOR UPDATE", &[&id]).map_err(self.err())? else {
            return Ok(CommentDelete::Gone);
        };
        let v: i64 = r.get(0);
        if v != version {
            return Ok(CommentDelete::Stale(v));
        }
        let replies: bool = tx.query_one("SELECT EXISTS (SELECT 1 FROM commit_comments WHERE parent_id = $1)", &[&id]).map_err(self.err())?.get(0);
        if replies {
            return Ok(CommentDelete::HasReplies);
        }
        tx.execute("DELETE FROM commit_comments WHERE id = $1", &[&id]).map_err(self.err())?;
        self.enqueue(&mut tx, events)?;
        tx.commit().map_err(self.err())?;
        Ok(CommentDelete::Deleted)
    }
}
