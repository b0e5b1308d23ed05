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
    ("repositories", &[("id", false), ("project_id", false), ("slug", false), ("name", false), ("public", true), ("forkable", true), ("created_at", false)]),
    ("project_permissions", &[("project_id", false), ("user_id", false), ("permission", false)]),
    ("repo_permissions", &[("repo_id", false), ("user_id", false), ("permission", false)]),
    ("tokens", &[("id", false), ("user_id", false), ("name", false), ("secret_hash", false), ("scope", false), ("created_at", false), ("last_used_at", false)]),
    ("settings", &[("key", false), ("value", false)]),
    ("web_sessions", &[("id_hash", false), ("user_id", false), ("csrf", false), ("created_at", false), ("expires_at", false)]),
    ("login_failures", &[("user_id", false), ("failures", false), ("last_at", false), ("locked_at", false)]),
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
        let mut st = src.prepare(&format!("SELECT {} FROM {table}", names.join(", "))).map_err(StoreError::db(sqlite_path))?;
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
    // New ids continue after the copied ones; a repository's also after every deleted one's.
    let retired: i64 =
        src.query_row("SELECT coalesce((SELECT id FROM retired_ids WHERE tbl = 'repositories'), 0)", [], |r| r.get(0)).map_err(StoreError::db(sqlite_path))?;
    for (table, floor) in [("users", 0), ("projects", 0), ("repositories", retired), ("tokens", 0)] {
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
