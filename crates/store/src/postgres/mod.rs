//! The Data Center backend: PostgreSQL, shared by every server node.
//!
//! A bounded pool of connections (synchronous `postgres` clients, called on the store's
//! blocking pool like SQLite), migrations run once under an advisory lock by whichever node
//! starts first, and a listener connection per node that hears `NOTIFY trove_changes` (a
//! trigger on `settings`) and moves [`Settings::data_version`], so a setting changed on one
//! node is in force on every node for its next request.

mod audit;
mod branch_permissions;
mod builds;
mod commit_comments;
mod grants;
mod groups;
mod leases;
mod logins;
mod migrations;
mod projects;
mod pull_requests;
mod repos;
mod sessions;
mod settings;
mod ssh_keys;
mod tokens;
mod users;
mod webhooks;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use postgres::GenericClient as _;
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator as _;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};

use crate::backend::Backend;
use crate::error::StoreError;
use crate::permissions::Permission;
use migrations::MIGRATIONS;

/// The advisory lock key of schema migrations (any constant of ours; "trove" in ASCII).
const MIGRATION_LOCK: i64 = 0x74_72_6f_76_65;

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `postgres://user@host:port/dbname` (or key=value form); a password in it is used, but
    /// callers keep passwords out of command lines (see `password`).
    pub url: String,
    /// From a file or the environment, never a command-line argument.
    pub password: Option<String>,
    /// Connections this node opens at most.
    pub pool_size: usize,
    /// How long a request waits for a free connection, and a connection attempt for the server.
    pub timeout: Duration,
}

impl PgOptions {
    pub fn new(url: &str) -> PgOptions {
        PgOptions { url: url.to_owned(), password: None, pool_size: 8, timeout: Duration::from_secs(5) }
    }
}

/// The metadata database on a PostgreSQL server.
pub struct Postgres {
    target: String,
    pool: Pool,
    /// Moved by the listener on every notification (and on reconnecting, when some may have been
    /// missed).
    version: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Closing a client blocks on its own small runtime, which may not start inside another
        // (a server's last reference can go on the thread that drives its runtime).
        let idle = std::mem::take(&mut self.pool.lock().idle);
        if tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::Builder::new().name("trove-pg-close".into()).spawn(move || drop(idle));
        }
    }
}

/// `user@host:port/dbname`, for messages: never the password.
fn describe(config: &postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(h) => h.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{}@{host}:{port}/{}", config.get_user().unwrap_or("?"), config.get_dbname().unwrap_or(config.get_user().unwrap_or("?")))
}

/// What to tell an administrator about a PostgreSQL error, and whether it means "not reachable".
pub(crate) fn pg_error(target: &str, e: &postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        let advice = if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            "; check the user in [database] url and the password (`password_file` in [database], or TROVE_DATABASE_PASSWORD)"
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            "; create it (createdb) or name another in [database] url"
        } else {
            ""
        };
        let unavailable = [SqlState::CANNOT_CONNECT_NOW, SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::TOO_MANY_CONNECTIONS].contains(code);
        let hint = db.hint().map(|h| format!(" ({h})")).unwrap_or_default();
        return StoreError::Postgres { target: target.to_owned(), message: format!("{}{hint}{advice}", db.message()), unavailable };
    }
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    StoreError::Postgres { target: target.to_owned(), message: format!("{message}; is PostgreSQL running and reachable there?"), unavailable: true }
}

impl Postgres {
    /// Connects, applies pending migrations (once across every node starting at the same time)
    /// and starts listening for changes.
    pub fn open(opts: &PgOptions) -> Result<Postgres, StoreError> {
        let mut config: postgres::Config = opts.url.parse().map_err(|e: postgres::Error| StoreError::Postgres {
            target: opts.url.split('@').next_back().unwrap_or("").to_owned(),
            message: format!("the database URL is not valid ({e}); write it as postgres://user@host:5432/dbname"),
            unavailable: false,
        })?;
        if let Some(p) = &opts.password {
            config.password(p);
        }
        config.connect_timeout(opts.timeout);
        config.application_name("trove");
        let target = describe(&config);
        let pool = Pool::new(config.clone(), opts.pool_size.max(1), opts.timeout, target.clone());
        {
            let mut conn = pool.get()?;
            migrate(&mut conn.client, &target)?;
        }
        let version = Arc::new(AtomicI64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        listen(config, version.clone(), stop.clone());
        Ok(Postgres { target, pool, version, stop })
    }

    pub(crate) fn conn(&self) -> Result<Conn<'_>, StoreError> {
        self.pool.get()
    }

    pub(crate) fn err(&self) -> impl Fn(postgres::Error) -> StoreError + '_ {
        move |e| {
            let err = pg_error(&self.target, &e);
            if err.is_unavailable() {
                // The server went away: every idle connection is as dead as this one.
                self.pool.clear_idle();
            }
            err
        }
    }
}

impl Backend for Postgres {
    fn describe(&self) -> String {
        format!("PostgreSQL {}", self.target)
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        Some(self.pool.stats())
    }
}

/// A pool's figures, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    pub size: usize,
    pub open: usize,
    pub idle: usize,
    pub waits: u64,
}

fn migrate(client: &mut Client, target: &str) -> Result<(), StoreError> {
    let err = |e: postgres::Error| pg_error(target, &e);
    let known = MIGRATIONS.len() as i32;
    let mut tx = client.transaction().map_err(err)?;
    // Nodes starting at once queue here; each migration runs exactly once.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).map_err(err)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS trove_schema (version INTEGER NOT NULL)").map_err(err)?;
    let version: i32 = tx.query_opt("SELECT version FROM trove_schema", &[]).map_err(err)?.map(|r| r.get(0)).unwrap_or(0);
    if version > known {
        return Err(StoreError::SchemaTooNew { path: target.into(), found: version.into(), known: known.into() });
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.batch_execute(m).map_err(err)?;
        tracing::info!(db = %target, version = i + 1, "applied metadata migration");
    }
    if version < known {
        tx.execute("DELETE FROM trove_schema", &[]).map_err(err)?;
        tx.execute("INSERT INTO trove_schema (version) VALUES ($1)", &[&known]).map_err(err)?;
    }
    tx.commit().map_err(err)
}

/// A thread per node that LISTENs for `trove_changes` and moves `version` on each notification,
/// reconnecting (and moving it, as notifications may have been missed) after a failure.
fn listen(config: postgres::Config, version: Arc<AtomicI64>, stop: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new().name("trove-pg-listen".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let mut client = match config.connect(NoTls) {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "change listener cannot connect to PostgreSQL; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            };
            if client.batch_execute("LISTEN trove_changes").is_err() {
                continue;
            }
            version.fetch_add(1, Ordering::Relaxed);
            while !stop.load(Ordering::Relaxed) {
                let next = client.notifications().timeout_iter(Duration::from_millis(250)).next();
                match next {
                    Ok(Some(_)) => {
                        version.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(None) if client.is_closed() => break,
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the PostgreSQL change listener; settings changed on other nodes need a restart");
    }
}

struct PoolState {
    idle: Vec<PgClient>,
    open: usize,
}

/// A connection and the statements prepared on it.
pub(crate) struct PgClient {
    pub(crate) client: Client,
    statements: HashMap<&'static str, Statement>,
}

struct Pool {
    config: postgres::Config,
    size: usize,
    timeout: Duration,
    target: String,
    state: Mutex<PoolState>,
    freed: Condvar,
    waits: AtomicU64,
}

impl Pool {
    fn new(config: postgres::Config, size: usize, timeout: Duration, target: String) -> Pool {
        Pool { config, size, timeout, target, state: Mutex::new(PoolState { idle: Vec::new(), open: 0 }), freed: Condvar::new(), waits: AtomicU64::new(0) }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self) -> Result<Conn<'_>, StoreError> {
        let deadline = Instant::now() + self.timeout;
        let mut st = self.lock();
        let mut waited = false;
        loop {
            while let Some(c) = st.idle.pop() {
                if !c.client.is_closed() {
                    return Ok(Conn { pool: self, inner: Some(c) });
                }
                st.open -= 1;
            }
            if st.open < self.size {
                st.open += 1;
                drop(st);
                return match self.config.connect(NoTls) {
                    Ok(client) => Ok(Conn { pool: self, inner: Some(PgClient { client, statements: HashMap::new() }) }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.freed.notify_one();
                        Err(pg_error(&self.target, &e))
                    }
                };
            }
            if !waited {
                waited = true;
                self.waits.fetch_add(1, Ordering::Relaxed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::Postgres {
                    target: self.target.clone(),
                    message: format!(
                        "all {} connections of this node are busy and none came free within {:?}; raise [database] pool_size if the database allows more",
                        self.size, self.timeout
                    ),
                    unavailable: true,
                });
            }
            st = self.freed.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn clear_idle(&self) {
        let mut st = self.lock();
        let n = st.idle.len();
        st.idle.clear();
        st.open -= n;
    }

    fn stats(&self) -> PoolStats {
        let st = self.lock();
        PoolStats { size: self.size, open: st.open, idle: st.idle.len(), waits: self.waits.load(Ordering::Relaxed) }
    }
}

/// A connection taken from the pool; back to it when dropped (unless it broke).
pub(crate) struct Conn<'a> {
    pool: &'a Pool,
    inner: Option<PgClient>,
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.inner.take() {
            let mut st = self.pool.lock();
            if c.client.is_closed() {
                st.open -= 1;
            } else {
                st.idle.push(c);
            }
            drop(st);
            self.pool.freed.notify_one();
        }
    }
}

impl std::ops::Deref for Conn<'_> {
    type Target = PgClient;
    fn deref(&self) -> &PgClient {
        self.inner.as_ref().expect("a taken connection")
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut PgClient {
        self.inner.as_mut().expect("a taken connection")
    }
}

impl PgClient {
    /// `sql`, prepared once per connection.
    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    pub(crate) fn query_opt(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, postgres::Error> {
        let st = self.statement(sql)?;
        self.client.query_opt(&st, params)
    }

    pub(crate) fn query_one(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, postgres::Error> {
        let st = self.statement(sql)?;
        self.client.query_one(&st, params)
    }

    pub(crate) fn query(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, postgres::Error> {
        let st = self.statement(sql)?;
        self.client.query(&st, params)
    }

    pub(crate) fn execute(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, postgres::Error> {
        let st = self.statement(sql)?;
        self.client.execute(&st, params)
    }
}

/// A transaction on a pooled connection that uses (and fills) the connection's prepared
/// statements: a statement belongs to the session, not to the transaction that prepared it.
pub(crate) struct PgTx<'a> {
    tx: postgres::Transaction<'a>,
    statements: &'a mut HashMap<&'static str, Statement>,
}

impl PgClient {
    pub(crate) fn transaction(&mut self) -> Result<PgTx<'_>, postgres::Error> {
        let PgClient { client, statements } = self;
        Ok(PgTx { tx: client.transaction()?, statements })
    }
}

impl PgTx<'_> {
    pub(crate) fn commit(self) -> Result<(), postgres::Error> {
        self.tx.commit()
    }
}

/// The statements of a connection or of a transaction on it, so that one read serves both a
/// plain call and a change that reads back what it wrote.
pub(crate) trait Query {
    type Client: postgres::GenericClient;
    fn prepared(&mut self, sql: &'static str) -> Result<Statement, postgres::Error>;
    fn generic(&mut self) -> &mut Self::Client;

    fn query_opt(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Option<Row>, postgres::Error> {
        let st = self.prepared(sql)?;
        self.generic().query_opt(&st, params)
    }

    fn query_one(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, postgres::Error> {
        let st = self.prepared(sql)?;
        self.generic().query_one(&st, params)
    }

    fn query(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, postgres::Error> {
        let st = self.prepared(sql)?;
        self.generic().query(&st, params)
    }

    fn execute(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64, postgres::Error> {
        let st = self.prepared(sql)?;
        self.generic().execute(&st, params)
    }

    /// A statement made at run time (a listing's filters): prepared for this call only.
    fn query_built(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, postgres::Error> {
        self.generic().query(sql, params)
    }
}

/// A plain transaction (statements prepared for each call, not kept).
impl<'a> Query for postgres::Transaction<'a> {
    type Client = postgres::Transaction<'a>;
    fn prepared(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        self.prepare(sql)
    }

    fn generic(&mut self) -> &mut postgres::Transaction<'a> {
        self
    }
}

impl Query for PgClient {
    type Client = Client;
    fn prepared(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        self.statement(sql)
    }

    fn generic(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl<'a> Query for PgTx<'a> {
    type Client = postgres::Transaction<'a>;
    fn prepared(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    fn generic(&mut self) -> &mut postgres::Transaction<'a> {
        &mut self.tx
    }
}

pub(crate) fn parse_perm(s: Option<String>) -> Option<Permission> {
    s.and_then(|s| s.parse().ok())
}

pub(crate) fn is_unique_violation(e: &postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}
