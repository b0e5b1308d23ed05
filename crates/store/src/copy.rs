//! `trove admin db copy --to postgres://…`: an installation's metadata moved from its SQLite
//! database into an empty PostgreSQL database, in one transaction, with the row counts checked
//! before the commit. The repositories stay where they are (or are moved by hand to shared
//! storage): their directories are named by id, and the ids are copied as they are.

use rusqlite::OpenFlags;

use crate::error::StoreError;
use crate::postgres::{PgOptions, Postgres, pg_error};

/// The tables, parents first, with their columns; `true` marks a boolean column (an integer in
/// SQLite).
const TABLES: &[(&str, &[(&str, bool)])] = &[
    (
        "users",
        &[
            ("id", false),
            ("name", false),
            ("display_name", false),
            ("email", false),
            ("password_hash", false),
            ("global_permission", false),
            ("active", true),
            ("created_at", false),
        ],
    ),
    (
        "projects",
        &[
            ("id", false),
            ("key", false),
            ("name", false),
            ("description", false),
            ("public", true),
            ("default_permission", false),
            ("owner_user_id", false),
            ("created_at", false),
        ],
    ),
    (
        "repositories",
        &[
            ("id", false),
            ("project_id", false),
            ("slug", false),
            ("name", false),
            ("public", true),
            ("forkable", true),
            ("created_at", false),
            ("description", false),
            ("origin_id", false),
            ("hierarchy_id", false),
        ],
    ),
    ("deleted_users", &[("id", false), ("name", false), ("display_name", false), ("deleted_at", false)]),
    ("repo_redirects", &[("project_id", false), ("slug", false), ("repo_id", false)]),
    ("project_permissions", &[("project_id", false), ("user_id", false), ("permission", false)]),
    ("repo_permissions", &[("repo_id", false), ("user_id", false), ("permission", false)]),
    ("user_groups", &[("id", false), ("name", false), ("name_key", false), ("global_permission", false), ("created_at", false)]),
    ("group_members", &[("group_id", false), ("user_id", false)]),
    ("project_group_permissions", &[("project_id", false), ("group_id", false), ("permission", false)]),
    ("repo_group_permissions", &[("repo_id", false), ("group_id", false), ("permission", false)]),
    (
        "tokens",
        &[
            ("id", false),
            ("user_id", false),
            ("name", false),
            ("secret_hash", false),
            ("scope", false),
            ("created_at", false),
            ("last_used_at", false),
            ("expires_at", false),
        ],
    ),
    (
        "ssh_keys",
        &[
            ("id", false),
            ("user_id", false),
            ("label", false),
            ("text", false),
            ("fingerprint", false),
            ("algorithm", false),
            ("bits", false),
            ("created_at", false),
            ("last_used_at", false),
        ],
    ),
    ("ssh_access_keys", &[("key_id", false), ("project_id", false), ("repo_id", false), ("permission", false)]),
    ("settings", &[("key", false), ("value", false)]),
    ("web_sessions", &[("id_hash", false), ("user_id", false), ("csrf", false), ("created_at", false), ("expires_at", false)]),
    ("login_failures", &[("user_id", false), ("failures", false), ("last_at", false), ("locked_at", false)]),
    ("pr_counters", &[("repo_id", false), ("last_number", false)]),
    (
        "pull_requests",
        &[
            ("id", false),
            ("repo_id", false),
            ("number", false),
            ("title", false),
            ("description", false),
            ("author_id", false),
            ("from_repo_id", false),
            ("from_ref", false),
            ("to_ref", false),
            ("from_hash", false),
            ("to_hash", false),
            ("state", false),
            ("version", false),
            ("created_at", false),
            ("updated_at", false),
            ("closed_at", false),
            ("merge_commit", false),
            ("merge_outcome", false),
        ],
    ),
    ("pr_participants", &[("pr_id", false), ("user_id", false), ("role", false), ("status", false), ("last_reviewed_commit", false), ("seq", false)]),
    (
        "pr_activities",
        &[("id", false), ("pr_id", false), ("created_at", false), ("user_id", false), ("action", false), ("comment_id", false), ("detail", false)],
    ),
    // Read in id order (see `copy_sqlite_to_postgres`), so a reply comes after its parent.
    (
        "pr_comments",
        &[
            ("id", false),
            ("pr_id", false),
            ("parent_id", false),
            ("author_id", false),
            ("text", false),
            ("version", false),
            ("created_at", false),
            ("updated_at", false),
            ("severity", false),
            ("state", false),
            ("anchor", false),
            ("orphaned", true),
        ],
    ),
    ("pr_watchers", &[("pr_id", false), ("user_id", false)]),
    // Read in id order, so a reply comes after its parent.
    (
        "commit_comments",
        &[
            ("id", false),
            ("repo_id", false),
            ("commit_id", false),
            ("parent_id", false),
            ("author_id", false),
            ("text", false),
            ("version", false),
            ("created_at", false),
            ("updated_at", false),
            ("anchor", false),
        ],
    ),
    ("pr_settings", &[("repo_id", false), ("json", false)]),
    (
        "branch_restrictions",
        &[("id", false), ("project_id", false), ("repo_id", false), ("kind", false), ("matcher_type", false), ("matcher_id", false), ("created_at", false)],
    ),
    ("branch_restriction_users", &[("restriction_id", false), ("user_id", false)]),
    ("branch_restriction_groups", &[("restriction_id", false), ("group_id", false)]),
    ("branch_restriction_keys", &[("restriction_id", false), ("key_id", false)]),
    ("project_pr_settings", &[("project_id", false), ("json", false)]),
    ("audit_log", &[("id", false), ("at", false), ("actor", false), ("address", false), ("action", false), ("target", false), ("details", false)]),
    (
        "webhooks",
        &[
            ("id", false),
            ("project_id", false),
            ("repo_id", false),
            ("name", false),
            ("url", false),
            ("events", false),
            ("active", true),
            ("secret", false),
            ("ssl_verify", true),
            ("username", false),
            ("password", false),
            ("created_at", false),
            ("updated_at", false),
            ("failures", false),
            ("paused_until", false),
        ],
    ),
    ("webhook_events", &[("id", false), ("project_id", false), ("repo_id", false), ("event_key", false), ("payload", false), ("created_at", false)]),
    ("webhook_lanes", &[("lane", false), ("events", false)]),
    (
        "webhook_deliveries",
        &[
            ("id", false),
            ("webhook_id", false),
            ("event_id", false),
            ("lane", false),
            ("state", false),
            ("attempts", false),
            ("next_attempt_at", false),
            ("claimed_by", false),
            ("claim_expiry", false),
            ("last_attempt_at", false),
            ("last_outcome", false),
            ("last_status", false),
            ("last_response", false),
            ("last_duration_ms", false),
        ],
    ),
    (
        "build_statuses",
        &[
            ("id", false),
            ("repo_id", false),
            ("commit_id", false),
            ("build_key", false),
            ("state", false),
            ("name", false),
            ("url", false),
            ("description", false),
            ("build_number", false),
            ("duration_ms", false),
            ("parent", false),
            ("ref_name", false),
            ("tests_successful", false),
            ("tests_failed", false),
            ("tests_skipped", false),
            ("created_at", false),
            ("updated_at", false),
        ],
    ),
    (
        "required_builds",
        &[
            ("id", false),
            ("repo_id", false),
            ("build_keys", false),
            ("matcher_type", false),
            ("matcher_id", false),
            ("exempt_matcher_type", false),
            ("exempt_matcher_id", false),
            ("created_at", false),
        ],
    ),
    (
        "insight_reports",
        &[
            ("id", false),
            ("repo_id", false),
            ("commit_id", false),
            ("report_key", false),
            ("title", false),
            ("details", false),
            ("result", false),
            ("data", false),
            ("reporter", false),
            ("link", false),
            ("logo_url", false),
            ("creator_id", false),
            ("created_at", false),
            ("updated_at", false),
        ],
    ),
    (
        "insight_annotations",
        &[
            ("id", false),
            ("report_id", false),
            ("external_id", false),
            ("path", false),
            ("line", false),
            ("message", false),
            ("severity", false),
            ("kind", false),
            ("link", false),
            ("created_at", false),
        ],
    ),
];

/// One value as SQLite holds it, converted for PostgreSQL.
#[derive(Debug)]
enum Value {
    Null,
    Int(i64),
    Int4(i32),
    Bool(bool),
    Text(String),
}

impl postgres::types::ToSql for Value {
    fn to_sql(&self, ty: &postgres::types::Type, out: &mut bytes::BytesMut) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(postgres::types::IsNull::Yes),
            Value::Int(i) => i.to_sql(ty, out),
            Value::Int4(i) => i.to_sql(ty, out),
            Value::Bool(b) => b.to_sql(ty, out),
            Value::Text(t) => t.to_sql(ty, out),
        }
    }
    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }
    postgres::types::to_sql_checked!();
}

/// What was copied: rows per table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub tables: Vec<(&'static str, i64)>,
}

/// Copies the SQLite database at `sqlite_path` into the empty PostgreSQL database `to`.
pub fn copy_sqlite_to_postgres(sqlite_path: &std::path::Path, to: &PgOptions) -> Result<CopyReport, StoreError> {
    let db = StoreError::db(sqlite_path);
    let src = rusqlite::Connection::open_with_flags(sqlite_path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(db)?;
    // The source at this trove's schema first, as this trove starting on it would leave it: an
    // older one lacks tables that are copied below (a newer one is refused, SchemaTooNew).
    let version: i64 = src.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(StoreError::db(sqlite_path))?;
    if version != crate::sqlite::migrations::MIGRATIONS.len() as i64 {
        drop(crate::sqlite::Sqlite::open(sqlite_path)?);
    }
    // Applies the schema (migrations) first, as a first node start would.
    let pg = Postgres::open(to)?;
    let target = crate::backend::Backend::describe(&pg);
    let mut conn = pg.conn()?;
    let err = |e: postgres::Error| pg_error(&target, &e);
    let mut tx = conn.client.transaction().map_err(err)?;
    for (table, _) in TABLES {
        let n: i64 = tx.query_one(&format!("SELECT count(*) FROM {table}"), &[]).map_err(err)?.get(0);
        if n > 0 {
            return Err(StoreError::Postgres {
                target,
                message: format!("the target database is not empty ({table} has {n} rows); copy into a new, empty database (createdb), nothing was changed"),
                unavailable: false,
            });
        }
    }
    // A snapshot of the source: one read transaction over every table.
    src.execute_batch("BEGIN").map_err(StoreError::db(sqlite_path))?;
    let mut report = Vec::new();
    for (table, cols) in TABLES {
        let names: Vec<&str> = cols.iter().map(|(c, _)| *c).collect();
        let placeholders: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
        let insert = format!("INSERT INTO {table} ({}) VALUES ({})", names.join(", "), placeholders.join(", "));
        let insert = tx.prepare(&insert).map_err(err)?;
        // In insertion order, so that rows referring to rows of their own table (a reply to a
        // comment) come after them.
        let mut st = src.prepare(&format!("SELECT {} FROM {table} ORDER BY rowid", names.join(", "))).map_err(StoreError::db(sqlite_path))?;
        let mut rows = st.query([]).map_err(StoreError::db(sqlite_path))?;
        let mut n = 0i64;
        while let Some(row) = rows.next().map_err(StoreError::db(sqlite_path))? {
            let mut values = Vec::with_capacity(cols.len());
            for (i, (col, boolean)) in cols.iter().enumerate() {
                let v = match row.get_ref(i).map_err(StoreError::db(sqlite_path))? {
                    rusqlite::types::ValueRef::Null => Value::Null,
                    rusqlite::types::ValueRef::Integer(x) if *boolean => Value::Bool(x != 0),
                    rusqlite::types::ValueRef::Integer(x) if *table == "login_failures" && *col == "failures" => {
                        Value::Int4(x.clamp(0, i32::MAX as i64) as i32)
                    }
                    rusqlite::types::ValueRef::Integer(x) => Value::Int(x),
                    rusqlite::types::ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    other => {
                        return Err(StoreError::Postgres {
                            target,
                            message: format!("{table}.{col} holds a {:?} value, which no Trove version writes; nothing was changed", other.data_type()),
                            unavailable: false,
                        });
                    }
                };
                values.push(v);
            }
            let params: Vec<&(dyn postgres::types::ToSql + Sync)> = values.iter().map(|v| v as &(dyn postgres::types::ToSql + Sync)).collect();
            tx.execute(&insert, &params).map_err(err)?;
            n += 1;
        }
        report.push((*table, n));
    }
    // New ids continue after the copied ones; a repository's, a user's, a pull request's, a
    // comment's, an activity's, a group's, a branch restriction's and an audit entry's also after every deleted one's (`retired_ids`, and SQLite's
    // AUTOINCREMENT counters in `sqlite_sequence`).
    let floor = |sql: &str, t: &str| -> Result<i64, StoreError> { src.query_row(sql, [t], |r| r.get(0)).map_err(StoreError::db(sqlite_path)) };
    let retired = |t: &str| floor("SELECT coalesce((SELECT id FROM retired_ids WHERE tbl = ?1), 0)", t);
    let sequence = |t: &str| floor("SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = ?1), 0)", t);
    for (table, floor) in [
        ("users", retired("users")?),
        ("projects", 0),
        ("repositories", retired("repositories")?),
        ("tokens", 0),
        ("pull_requests", sequence("pull_requests")?),
        ("pr_activities", sequence("pr_activities")?),
        ("pr_comments", sequence("pr_comments")?),
        ("commit_comments", sequence("commit_comments")?),
        ("user_groups", sequence("user_groups")?),
        ("branch_restrictions", sequence("branch_restrictions")?),
        ("audit_log", sequence("audit_log")?),
        ("webhooks", sequence("webhooks")?),
        ("webhook_events", sequence("webhook_events")?),
        ("webhook_deliveries", sequence("webhook_deliveries")?),
        ("build_statuses", 0),
        ("required_builds", sequence("required_builds")?),
        ("insight_reports", sequence("insight_reports")?),
        ("insight_annotations", 0),
        ("ssh_keys", sequence("ssh_keys")?),
    ] {
        tx.execute(
            &format!("SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST((SELECT coalesce(max(id), 0) FROM {table}), $1::BIGINT, 1))"),
            &[&floor],
        )
        .map_err(err)?;
    }
    // Every row arrived, or nothing does.
    for (table, n) in &report {
        let got: i64 = tx.query_one(&format!("SELECT count(*) FROM {table}"), &[]).map_err(err)?.get(0);
        if got != *n {
            return Err(StoreError::Postgres {
                target,
                message: format!("{table}: copied {n} rows but the target holds {got}; nothing was changed"),
                unavailable: false,
            });
        }
    }
    tx.commit().map_err(err)?;
    Ok(CopyReport { tables: report })
}
