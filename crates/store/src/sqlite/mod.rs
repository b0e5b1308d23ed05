//! The embedded backend: SQLite in WAL mode, one writer connection and a small pool of
//! read-only connections beside it.
//!
//! WAL lets readers run while a write transaction is open
//! (<https://sqlite.org/wal.html>), so a slow write (a migration, a long delete) never holds up
//! the point lookups that every request makes; the single writer keeps SQLite's locking
//! trivial (SQLite allows one writer at a time anyway). Each connection keeps its prepared
//! statements ([`CachedRow`]).

mod audit;
mod branch_permissions;
mod builds;
mod commit_comments;
mod grants;
mod groups;
mod leases;
mod logins;
pub(crate) mod migrations;
mod projects;
mod pull_requests;
mod repos;
mod sessions;
mod settings;
mod ssh_keys;
mod tokens;
mod users;
pub(crate) mod webhooks;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::backend::Backend;
use crate::error::StoreError;
use crate::permissions::Permission;
use migrations::MIGRATIONS;

/// Read-only connections beside the writer: enough for the blocking pool's concurrent store
/// calls on a small server without holding many file descriptors.
const READERS: usize = 4;

/// How long a connection waits for another process's lock before answering "busy".
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// One row, through the connection's cache of prepared statements: parsing and planning a
/// statement costs more than running it on tables this size. Before, `sqlite3_prepare` was the
/// largest part of the server's own CPU for an anonymous `git ls-remote` (perf).
pub(crate) trait CachedRow {
    fn row<T, P: rusqlite::Params, F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>;
}

impl CachedRow for Connection {
    fn row<T, P: rusqlite::Params, F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// The metadata database in one SQLite file.
pub struct Sqlite {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Box<[Mutex<Connection>]>,
    next: AtomicUsize,
    /// Only for `PRAGMA data_version`, asked on every request: never waits behind a query.
    watch: Mutex<Connection>,
}

/// A lock whose holder panicked is still safe to use: SQLite rolls back an unfinished
/// transaction when its guard drops.
fn unpoison<'a, T>(r: Result<MutexGuard<'a, T>, std::sync::PoisonError<MutexGuard<'a, T>>>) -> MutexGuard<'a, T> {
    r.unwrap_or_else(|e| e.into_inner())
}

impl Sqlite {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Sqlite, StoreError> {
        let db = StoreError::db(path);
        let mut conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(StoreError::db(path))?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(StoreError::db(path))?;
        // Switching a new database to WAL needs it to itself for a moment, and SQLite answers
        // SQLITE_BUSY at once, without the busy handler, when another process is opening it too
        // (https://sqlite.org/wal.html#activating_and_configuring_wal_mode): retry for as long
        // as the busy timeout. The mode is kept in the file, so this waits only on a new one.
        let deadline = Instant::now() + BUSY_TIMEOUT;
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::DatabaseBusy && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Err(e) => return Err(StoreError::db(path)(e)),
            }
        }
        // Every statement the store runs, kept prepared (see `CachedRow`).
        conn.set_prepared_statement_cache_capacity(128);
        migrate(&mut conn, path)?;
        let reader = || {
            // Read-only: a bug cannot write through a reader, and SQLite skips the write
            // locks. The writer is open, so the WAL index exists for them to share.
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
            let r = Connection::open_with_flags(path, flags).map_err(StoreError::db(path))?;
            r.busy_timeout(BUSY_TIMEOUT).map_err(StoreError::db(path))?;
            r.set_prepared_statement_cache_capacity(128);
            Ok::<_, StoreError>(Mutex::new(r))
        };
        let readers = (0..READERS).map(|_| reader()).collect::<Result<Vec<_>, StoreError>>()?;
        let watch = reader()?;
        Ok(Sqlite { path: path.to_owned(), writer: Mutex::new(conn), readers: readers.into(), next: AtomicUsize::new(0), watch })
    }

    /// The writer: every statement that changes something, and reads that must see the
    /// database as this process's writes leave it within a transaction.
    pub(crate) fn write(&self) -> MutexGuard<'_, Connection> {
        unpoison(self.writer.lock())
    }

    /// A free reader, or (all busy) the next one in turn. Each statement on it sees every
    /// transaction committed before it began, the writer's included.
    pub(crate) fn read(&self) -> MutexGuard<'_, Connection> {
        let n = self.readers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            match self.readers[(start + i) % n].try_lock() {
                Ok(g) => return g,
                Err(TryLockError::Poisoned(e)) => return e.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        unpoison(self.readers[start % n].lock())
    }

    /// The connection that only asks `PRAGMA data_version`.
    pub(crate) fn watch(&self) -> MutexGuard<'_, Connection> {
        unpoison(self.watch.lock())
    }

    pub(crate) fn db(&self) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        StoreError::db(&self.path)
    }
}

impl Backend for Sqlite {
    fn describe(&self) -> String {
        format!("SQLite {}", self.path.display())
    }
}

pub(crate) fn parse_perm(s: Option<String>) -> Option<Permission> {
    s.and_then(|s| s.parse().ok())
}

/// A stored name that no longer parses is a corrupt row.
pub(crate) fn corrupt(col: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, Box::new(e))
}

pub(crate) fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    loop {
        // Several processes may open a new database at once (`trove up` starting while `trove
        // admin` runs): an IMMEDIATE transaction takes the write lock before the version is read
        // (SQLite's "BEGIN IMMEDIATE", https://sqlite.org/lang_transaction.html), so each
        // migration runs once and the others wait (busy_timeout), then see it applied.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(StoreError::db(path))?;
        let version: i64 = tx.row("PRAGMA user_version", [], |r| r.get(0)).map_err(StoreError::db(path))?;
        if version > known {
            return Err(StoreError::SchemaTooNew { path: path.to_owned(), found: version, known });
        }
        if version == known {
            return Ok(());
        }
        tx.execute_batch(MIGRATIONS[version as usize]).map_err(StoreError::db(path))?;
        tx.pragma_update(None, "user_version", version + 1).map_err(StoreError::db(path))?;
        tx.commit().map_err(StoreError::db(path))?;
        tracing::info!(db = %path.display(), version = version + 1, "applied metadata migration");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use crate::{GlobalPermission, Password, Store, UserName};

    #[test]
    fn reads_proceed_while_a_write_transaction_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let alice = UserName::parse("alice").unwrap();
        store.create_user(&alice, &Password::new("password1").unwrap(), GlobalPermission::LicensedUser).unwrap();
        // Another process (`trove admin`) holds the write lock with a transaction open.
        let mut other = rusqlite::Connection::open(dir.path().join("trove.db")).unwrap();
        let tx = other.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).unwrap();
        tx.execute("UPDATE users SET display_name = 'Changing' WHERE name = 'alice'", []).unwrap();
        // And this process's own writer is busy too: a write of ours waits for the lock.
        let (wrote_tx, wrote) = mpsc::channel();
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || {
                let r = store.set_user_details(&UserName::parse("alice").unwrap(), Some("Alice"), None);
                wrote_tx.send(()).unwrap();
                r
            })
        };
        assert!(wrote.recv_timeout(Duration::from_millis(200)).is_err(), "the write did not wait for the other transaction");
        // Reads go on meanwhile, and see what was committed, not the open transaction's change.
        let (read_tx, read) = mpsc::channel();
        {
            let store = store.clone();
            std::thread::spawn(move || {
                let u = store.user(&UserName::parse("alice").unwrap()).unwrap().unwrap();
                let n = store.users().unwrap().len();
                read_tx.send((u.display_name, n)).unwrap();
            });
        }
        let (name, n) = read.recv_timeout(Duration::from_secs(30)).expect("a read waited for the open write transaction");
        assert_eq!((name.as_str(), n), ("alice", 1));
        tx.commit().unwrap();
        writer.join().unwrap().unwrap();
        assert_eq!(store.user(&alice).unwrap().unwrap().display_name, "Alice", "the waiting write happened after the commit");
    }

    #[test]
    fn store_calls_from_a_current_thread_runtime_leave_it_free() {
        // One worker thread: if `run` blocked it, the task that releases the store call could
        // never run, and the call would wait out its timeout.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let (go_tx, go) = mpsc::channel::<()>();
            let call = store.run(move |s| {
                let released = go.recv_timeout(Duration::from_secs(30)).is_ok();
                (released, s.users().map(|u| u.len()))
            });
            let release = async move {
                tokio::task::yield_now().await;
                go_tx.send(()).unwrap();
            };
            let ((released, users), ()) = tokio::join!(call, release);
            assert!(released, "the store call blocked the runtime's only thread");
            assert_eq!(users.unwrap(), 0);
        });
    }
}
