//! The metadata database (SQLite): users, projects, repositories, permissions, tokens, settings.
//!
//! One connection behind a mutex: the server's metadata traffic is a handful of point lookups
//! per request, and a single writer keeps SQLite's locking trivial. Callers on an async runtime
//! should call in `spawn_blocking` when a call hashes a password.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand::RngCore;
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::StoreError;
use crate::migrations::MIGRATIONS;
use crate::names::{Owner, ProjectKey, RepoSlug, UserName};
use crate::password::{self, Password};
use crate::permissions::{self, GlobalPermission, Permission, PermissionFacts};
use crate::repos;
use crate::settings::{BaseUrl, ContextPath};

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

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub name: UserName,
    pub display_name: String,
    pub email: Option<String>,
    pub global: Option<GlobalPermission>,
    pub active: bool,
}

impl User {
    /// Active and holding a global permission (at least LICENSED_USER), as Bitbucket requires.
    pub fn may_log_in(&self) -> bool {
        self.active && self.global.is_some()
    }
}

/// A project (`TP`) or a user's personal project (`~justme`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: i64,
    pub owner: Owner,
    pub name: String,
    pub public: bool,
}

/// A repository and the project facts that matter for access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub id: i64,
    pub owner: Owner,
    pub slug: RepoSlug,
    pub name: String,
    pub public: bool,
    pub project_id: i64,
    pub project_public: bool,
}

impl Repo {
    /// `TP/test` or `~justme/test`, for messages and logs.
    pub fn display_path(&self) -> String {
        format!("{}/{}", self.owner, self.slug)
    }
}

/// What a personal access token may do at most.
pub type TokenScope = Permission;

/// A token as handed to its owner, once: only its hash is stored.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: i64,
    pub secret: String,
}

/// Who a credential turned out to be.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    /// `Some` when a token was used: its scope caps the user's permissions.
    pub token_scope: Option<TokenScope>,
}

const TOKEN_PREFIX: &str = "trv_";

/// The data directory: the metadata database plus the bare repositories.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    data_dir: PathBuf,
    db_path: PathBuf,
    git_home: PathBuf,
    /// The git that `git init`s new repositories ([`Store::open_with_git`]).
    git_binary: PathBuf,
    conn: Mutex<Connection>,
    verified: password::Verified,
}

pub(crate) fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub(crate) fn parse_perm(s: Option<String>) -> Option<Permission> {
    s.and_then(|s| s.parse().ok())
}

impl Store {
    /// Opens (creating if needed) the data directory and applies pending migrations; new
    /// repositories are made with `git` from `PATH`.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Self::open_with_git(data_dir, Path::new("git"))
    }

    /// [`Store::open`], making new repositories with `git_binary` (the server's `[git] binary`).
    pub fn open_with_git(data_dir: &Path, git_binary: &Path) -> Result<Store, StoreError> {
        let mk = |p: &Path| std::fs::create_dir_all(p).map_err(|source| StoreError::DataDir { path: p.to_owned(), source });
        mk(data_dir)?;
        let data_dir = std::fs::canonicalize(data_dir).map_err(|source| StoreError::DataDir { path: data_dir.to_owned(), source })?;
        mk(&repos::repos_dir(&data_dir))?;
        let git_home = data_dir.join("git-home");
        mk(&git_home)?;
        let db_path = data_dir.join("trove.db");
        let db = StoreError::db(&db_path);
        let mut conn = Connection::open(&db_path).map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(StoreError::db(&db_path))?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(StoreError::db(&db_path))?;
        // Switching a new database to WAL needs it to itself for a moment, and SQLite answers
        // SQLITE_BUSY at once, without the busy handler, when another process is opening it too
        // (https://sqlite.org/wal.html#activating_and_configuring_wal_mode): retry for as long
        // as the busy timeout. The mode is kept in the file, so this waits only on a new one.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) => return Err(StoreError::db(&db_path)(e)),
            }
        }
        // Every statement the store runs, kept prepared (see `CachedRow`).
        conn.set_prepared_statement_cache_capacity(128);
        migrate(&mut conn, &db_path)?;
        Ok(Store {
            inner: Arc::new(Inner {
                data_dir,
                db_path,
                git_home,
                git_binary: git_binary.to_owned(),
                conn: Mutex::new(conn),
                verified: password::Verified::new(),
            }),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// An empty directory used as `HOME` for git children, so no user config leaks in.
    pub fn git_home(&self) -> &Path {
        &self.inner.git_home
    }

    /// The git executable this store runs (`git init` of new repositories).
    pub fn git_binary(&self) -> &Path {
        &self.inner.git_binary
    }

    /// Where the bare repository of `repo` lives.
    pub fn repo_path(&self, repo: &Repo) -> PathBuf {
        repos::repos_dir(&self.inner.data_dir).join(repo.id.to_string())
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll
        // back on drop), so a poisoned lock is safe to keep using.
        self.inner.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn db(&self) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        StoreError::db(&self.inner.db_path)
    }

    // ---- users ----

    pub fn create_user(&self, name: &UserName, password: &Password, global: GlobalPermission) -> Result<User, StoreError> {
        let hash = password::hash_password(password.expose());
        let conn = self.conn();
        // INSERT OR IGNORE + row count, so two concurrent creations cannot both pass a check.
        let n = conn
            .execute(
                "INSERT OR IGNORE INTO users (name, display_name, password_hash, global_permission, created_at) VALUES (?1, ?1, ?2, ?3, ?4)",
                params![name.as_str(), hash, global.as_str(), now()],
            )
            .map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::UserExists(name.to_string()));
        }
        drop(conn);
        self.user(name)?.ok_or_else(|| StoreError::NoSuchUser(name.to_string()))
    }

    pub fn set_password(&self, name: &UserName, password: &Password) -> Result<(), StoreError> {
        let hash = password::hash_password(password.expose());
        let conn = self.conn();
        let n = conn.execute("UPDATE users SET password_hash = ?1 WHERE name = ?2", params![hash, name.as_str()]).map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::NoSuchUser(name.to_string()));
        }
        // A new password is a fresh start: failures and a lock from guesses at the old one go.
        conn.execute("DELETE FROM login_failures WHERE user_id = (SELECT id FROM users WHERE name = ?1)", [name.as_str()]).map_err(self.db())?;
        Ok(())
    }

    pub fn set_global_permission(&self, name: &UserName, global: Option<GlobalPermission>) -> Result<(), StoreError> {
        let n = self
            .conn()
            .execute("UPDATE users SET global_permission = ?1 WHERE name = ?2", params![global.map(|g| g.as_str()), name.as_str()])
            .map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    pub fn user(&self, name: &UserName) -> Result<Option<User>, StoreError> {
        self.user_where("name = ?1", rusqlite::types::Value::Text(name.to_string()))
    }

    pub(crate) fn user_where(&self, cond: &str, arg: rusqlite::types::Value) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT id, name, display_name, email, global_permission, active FROM users WHERE {cond}");
        self.conn()
            .row(&sql, [arg], |r| {
                let name: String = r.get(1)?;
                let global: Option<String> = r.get(4)?;
                Ok(User {
                    id: r.get(0)?,
                    // Names were validated when stored; a row that no longer parses is corrupt.
                    name: UserName::parse(&name).map_err(|e| rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e)))?,
                    display_name: r.get(2)?,
                    email: r.get(3)?,
                    global: global.and_then(|g| g.parse().ok()),
                    active: r.get::<_, i64>(5)? != 0,
                })
            })
            .optional()
            .map_err(self.db())
    }

    /// Checks a user name and password; `Ok(None)` for an unknown user, a wrong password, or an
    /// account that may not log in (the caller must not be told which). Slow by design (argon2),
    /// except for a password this process verified against the same stored hash in the last
    /// five minutes (`password::Verified`).
    pub fn verify_password(&self, name: &str, password: &str) -> Result<Option<User>, StoreError> {
        let Ok(name) = UserName::parse(name) else { return Ok(None) };
        let hash: Option<Option<String>> =
            self.conn().row("SELECT password_hash FROM users WHERE name = ?1", [name.as_str()], |r| r.get(0)).optional().map_err(self.db())?;
        let Some(Some(hash)) = hash else {
            // Spend the same time as a real check so response timing does not reveal which
            // user names exist.
            let _ = password::verify(password, DUMMY_HASH.get_or_init(|| password::hash_password("dummy password")));
            return Ok(None);
        };
        if !self.password_matches(&name, password, &hash) {
            return Ok(None);
        }
        Ok(self.user(&name)?.filter(User::may_log_in))
    }

    /// argon2 against the stored hash, or the memory of having done so (`password::Verified`).
    pub(crate) fn password_matches(&self, name: &UserName, password: &str, hash: &str) -> bool {
        let verified = &self.inner.verified;
        if !verified.contains(name.as_str(), password, hash) {
            if !password::verify(password, hash) {
                return false;
            }
            verified.insert(name.as_str(), password, hash);
        }
        true
    }

    // ---- tokens ----

    /// Creates a personal access token for `user`; the secret is returned once and only its
    /// hash is kept.
    pub fn create_token(&self, user: &UserName, label: &str, scope: TokenScope) -> Result<NewToken, StoreError> {
        let u = self.user(user)?.ok_or_else(|| StoreError::NoSuchUser(user.to_string()))?;
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let secret_part = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let hash = password::hash_token_secret(&secret_part);
        let conn = self.conn();
        conn.execute(
            "INSERT INTO tokens (user_id, name, secret_hash, scope, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![u.id, label, hash, scope.as_str(), now()],
        )
        .map_err(self.db())?;
        let id = conn.last_insert_rowid();
        Ok(NewToken { id, secret: format!("{TOKEN_PREFIX}{id}_{secret_part}") })
    }

    /// Whether a string has the shape of one of our tokens (cheap; no database access).
    pub fn looks_like_token(secret: &str) -> bool {
        parse_token(secret).is_some()
    }

    /// Resolves a token to its user. With `user` given (Basic auth with a token as password), the
    /// token must belong to that user.
    pub fn verify_token(&self, secret: &str, user: Option<&str>) -> Result<Option<Authenticated>, StoreError> {
        let Some((id, secret_part)) = parse_token(secret) else { return Ok(None) };
        let row: Option<(i64, String, String)> = self
            .conn()
            .row("SELECT user_id, secret_hash, scope FROM tokens WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()
            .map_err(self.db())?;
        let Some((user_id, hash, scope)) = row else { return Ok(None) };
        if !password::verify(secret_part, &hash) {
            return Ok(None);
        }
        let Some(u) = self.user_where("id = ?1", rusqlite::types::Value::Integer(user_id))? else { return Ok(None) };
        if !u.may_log_in() {
            return Ok(None);
        }
        if let Some(expected) = user
            && UserName::parse(expected).ok().as_ref() != Some(&u.name)
        {
            return Ok(None);
        }
        let _ = self.conn().execute("UPDATE tokens SET last_used_at = ?1 WHERE id = ?2", params![now(), id]);
        Ok(Some(Authenticated { user: u, token_scope: Some(scope.parse().unwrap_or(Permission::Read)) }))
    }

    // ---- projects ----

    pub fn create_project(&self, key: &ProjectKey, name: Option<&str>, public: bool) -> Result<Project, StoreError> {
        let conn = self.conn();
        let n = conn
            .execute(
                "INSERT OR IGNORE INTO projects (key, name, public, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![key.as_str(), name.unwrap_or(key.as_str()), public, now()],
            )
            .map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::ProjectExists(key.to_string()));
        }
        Ok(Project { id: conn.last_insert_rowid(), owner: Owner::Project(key.clone()), name: name.unwrap_or(key.as_str()).to_owned(), public })
    }

    pub fn set_project_public(&self, key: &ProjectKey, public: bool) -> Result<(), StoreError> {
        let n = self.conn().execute("UPDATE projects SET public = ?1 WHERE key = ?2", params![public, key.as_str()]).map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::NoSuchProject(key.to_string()));
        }
        Ok(())
    }

    /// Sets the permission every licensed user has on a project (`None` removes it).
    pub fn set_project_default_permission(&self, key: &ProjectKey, perm: Option<Permission>) -> Result<(), StoreError> {
        let n = self
            .conn()
            .execute("UPDATE projects SET default_permission = ?1 WHERE key = ?2", params![perm.map(|p| p.as_str()), key.as_str()])
            .map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::NoSuchProject(key.to_string()));
        }
        Ok(())
    }

    fn project_id(&self, owner: &Owner) -> Result<Option<i64>, StoreError> {
        self.conn().row("SELECT id FROM projects WHERE key = ?1", [owner.project_key()], |r| r.get(0)).optional().map_err(self.db())
    }

    /// The project row for `owner`, creating a user's personal project on first use.
    fn ensure_project(&self, owner: &Owner) -> Result<i64, StoreError> {
        if let Some(id) = self.project_id(owner)? {
            return Ok(id);
        }
        match owner {
            Owner::Project(k) => Err(StoreError::NoSuchProject(k.to_string())),
            Owner::User(u) => {
                let user = self.user(u)?.ok_or_else(|| StoreError::NoSuchUser(u.to_string()))?;
                let conn = self.conn();
                conn.execute(
                    "INSERT OR IGNORE INTO projects (key, name, owner_user_id, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![owner.project_key(), user.display_name, user.id, now()],
                )
                .map_err(self.db())?;
                drop(conn);
                self.project_id(owner)?.ok_or_else(|| StoreError::NoSuchUser(u.to_string()))
            }
        }
    }

    // ---- repositories ----

    /// Creates the repository's row and its bare repository on disk. If the disk step fails the
    /// row is removed again.
    pub fn create_repo(&self, owner: &Owner, slug: &RepoSlug, public: bool) -> Result<Repo, StoreError> {
        let project_id = self.ensure_project(owner)?;
        let id = {
            let conn = self.conn();
            let n = conn
                .execute(
                    "INSERT OR IGNORE INTO repositories (id, project_id, slug, name, public, created_at) VALUES (
                        max(coalesce((SELECT max(id) FROM repositories), 0), coalesce((SELECT id FROM retired_ids WHERE tbl = 'repositories'), 0)) + 1,
                        ?1, ?2, ?2, ?3, ?4)",
                    params![project_id, slug.as_str(), public, now()],
                )
                .map_err(self.db())?;
            if n == 0 {
                return Err(StoreError::RepoExists(format!("{owner}/{slug}")));
            }
            conn.last_insert_rowid()
        };
        if let Err(e) = repos::init_bare(&self.inner.data_dir, &self.inner.git_home, &self.inner.git_binary, id) {
            let _ = self.conn().execute("DELETE FROM repositories WHERE id = ?1", [id]);
            return Err(e);
        }
        self.repo(owner, slug)?.ok_or_else(|| StoreError::NoSuchRepo(format!("{owner}/{slug}")))
    }

    pub fn set_repo_public(&self, owner: &Owner, slug: &RepoSlug, public: bool) -> Result<(), StoreError> {
        let repo = self.repo(owner, slug)?.ok_or_else(|| StoreError::NoSuchRepo(format!("{owner}/{slug}")))?;
        self.conn().execute("UPDATE repositories SET public = ?1 WHERE id = ?2", params![public, repo.id]).map_err(self.db())?;
        Ok(())
    }

    pub fn repo(&self, owner: &Owner, slug: &RepoSlug) -> Result<Option<Repo>, StoreError> {
        self.conn()
            .row(
                "SELECT r.id, r.name, r.public, p.id, p.public FROM repositories r JOIN projects p ON p.id = r.project_id
                 WHERE p.key = ?1 AND r.slug = ?2",
                params![owner.project_key(), slug.as_str()],
                |r| {
                    Ok(Repo {
                        id: r.get(0)?,
                        owner: owner.clone(),
                        slug: slug.clone(),
                        name: r.get(1)?,
                        public: r.get(2)?,
                        project_id: r.get(3)?,
                        project_public: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(self.db())
    }

    // ---- permissions ----

    pub fn grant_project(&self, user: &UserName, key: &ProjectKey, perm: Permission) -> Result<(), StoreError> {
        let u = self.user(user)?.ok_or_else(|| StoreError::NoSuchUser(user.to_string()))?;
        let pid = self.project_id(&Owner::Project(key.clone()))?.ok_or_else(|| StoreError::NoSuchProject(key.to_string()))?;
        self.conn()
            .execute(
                "INSERT INTO project_permissions (project_id, user_id, permission) VALUES (?1, ?2, ?3)
                 ON CONFLICT (project_id, user_id) DO UPDATE SET permission = excluded.permission",
                params![pid, u.id, perm.as_str()],
            )
            .map_err(self.db())?;
        Ok(())
    }

    pub fn grant_repo(&self, user: &UserName, owner: &Owner, slug: &RepoSlug, perm: Permission) -> Result<(), StoreError> {
        let u = self.user(user)?.ok_or_else(|| StoreError::NoSuchUser(user.to_string()))?;
        let repo = self.repo(owner, slug)?.ok_or_else(|| StoreError::NoSuchRepo(format!("{owner}/{slug}")))?;
        self.conn()
            .execute(
                "INSERT INTO repo_permissions (repo_id, user_id, permission) VALUES (?1, ?2, ?3)
                 ON CONFLICT (repo_id, user_id) DO UPDATE SET permission = excluded.permission",
                params![repo.id, u.id, perm.as_str()],
            )
            .map_err(self.db())?;
        Ok(())
    }

    /// What `who` (or an anonymous caller, for `None`) may do with `repo`; `None` means nothing,
    /// not even read.
    pub fn permission(&self, who: Option<&Authenticated>, repo: &Repo) -> Result<Option<Permission>, StoreError> {
        let mut facts = PermissionFacts { project_public: repo.project_public, repo_public: repo.public, ..Default::default() };
        if let Some(a) = who {
            let conn = self.conn();
            facts.authenticated = true;
            facts.global = a.user.global;
            facts.cap = a.token_scope;
            let (owner_id, default): (Option<i64>, Option<String>) = conn
                .row("SELECT owner_user_id, default_permission FROM projects WHERE id = ?1", [repo.project_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(self.db())?;
            facts.owns_personal_project = owner_id == Some(a.user.id);
            facts.project_default = parse_perm(default);
            facts.project_grant = parse_perm(
                conn.row("SELECT permission FROM project_permissions WHERE project_id = ?1 AND user_id = ?2", [repo.project_id, a.user.id], |r| r.get(0))
                    .optional()
                    .map_err(self.db())?,
            );
            facts.repo_grant = parse_perm(
                conn.row("SELECT permission FROM repo_permissions WHERE repo_id = ?1 AND user_id = ?2", [repo.id, a.user.id], |r| r.get(0))
                    .optional()
                    .map_err(self.db())?,
            );
        }
        Ok(permissions::effective_permission(&facts))
    }

    // ---- settings ----

    fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn().row("SELECT value FROM settings WHERE key = ?1", [key], |r| r.get(0)).optional().map_err(self.db())
    }

    fn set_setting(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        let conn = self.conn();
        match value {
            Some(v) => {
                conn.execute("INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", params![key, v])
            }
            None => conn.execute("DELETE FROM settings WHERE key = ?1", [key]),
        }
        .map_err(self.db())?;
        Ok(())
    }

    /// SQLite's `PRAGMA data_version`: changes whenever another connection (another process)
    /// commits, so a server can notice settings changed by `trove admin` cheaply.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        self.conn().row("PRAGMA data_version", [], |r| r.get(0)).map_err(self.db())
    }

    /// The base URL an administrator set, if any.
    pub fn base_url(&self) -> Result<Option<BaseUrl>, StoreError> {
        Ok(self.setting("base_url")?.map(|v| BaseUrl::parse(&v)).transpose()?)
    }

    pub fn set_base_url(&self, url: Option<&BaseUrl>) -> Result<(), StoreError> {
        self.set_setting("base_url", url.map(|u| u.as_str()))
    }

    /// The context path an administrator set, if any.
    pub fn context_path(&self) -> Result<Option<ContextPath>, StoreError> {
        Ok(self.setting("context_path")?.map(|v| ContextPath::parse(&v)).transpose()?)
    }

    pub fn set_context_path(&self, path: Option<&ContextPath>) -> Result<(), StoreError> {
        self.set_setting("context_path", path.map(|p| p.as_str()))
    }
}

pub(crate) static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn parse_token(secret: &str) -> Option<(i64, &str)> {
    let rest = secret.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret_part) = rest.split_once('_')?;
    let id: i64 = id.parse().ok()?;
    (secret_part.len() == 43).then_some((id, secret_part))
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
    use super::*;

    #[test]
    fn processes_opening_a_new_database_at_once_apply_each_migration_once() {
        // `trove up` starting while `trove admin` runs on the same new data directory: each
        // opens its own connection and migrates.
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let barrier = Arc::new(std::sync::Barrier::new(4));
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let (dir, barrier) = (dir.path().to_path_buf(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        Store::open(&dir).map(|_| ())
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap().expect("every concurrent open succeeds");
            }
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        (dir, s)
    }

    fn name(s: &str) -> UserName {
        UserName::parse(s).unwrap()
    }

    #[test]
    fn a_verified_password_is_not_hashed_again_but_a_change_or_a_disabled_account_is_seen_at_once() {
        let (dir, s) = store();
        s.create_user(&name("alice"), &Password::new("password1").unwrap(), GlobalPermission::LicensedUser).unwrap();
        let runs = || crate::password::tests::ARGON2_RUNS.with(|n| n.get());
        let ok = |pw: &str| s.verify_password("alice", pw).unwrap().is_some();
        let r0 = runs();
        assert!(ok("password1"));
        assert_eq!(runs(), r0 + 1);
        for _ in 0..5 {
            assert!(ok("password1"));
        }
        assert_eq!(runs(), r0 + 1, "argon2 ran again for a password verified a moment ago");
        assert!(!ok("password2"));
        assert!(!ok("password2"));
        assert_eq!(runs(), r0 + 3, "a wrong password is always checked in full");
        // Changed by another process on the same data directory, as `trove admin user passwd` does.
        Store::open(dir.path()).unwrap().set_password(&name("alice"), &Password::new("password2").unwrap()).unwrap();
        assert!(!ok("password1"), "the old password still worked after a change");
        assert!(ok("password2"));
        assert!(ok("password2"));
        s.set_user_active(&name("alice"), false).unwrap();
        assert!(!ok("password2"), "a disabled account still logged in");
    }

    #[test]
    fn reopening_a_data_dir_keeps_its_contents_and_migrations_run_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            s.create_user(&name("alice"), &Password::new("alice-password").unwrap(), GlobalPermission::LicensedUser).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert!(s.user(&name("alice")).unwrap().is_some());
    }

    #[test]
    fn passwords_and_tokens_authenticate_only_their_user() {
        let (_d, s) = store();
        s.create_user(&name("alice"), &Password::new("alice-password").unwrap(), GlobalPermission::LicensedUser).unwrap();
        s.create_user(&name("bob"), &Password::new("bob-password").unwrap(), GlobalPermission::LicensedUser).unwrap();
        assert!(s.verify_password("alice", "alice-password").unwrap().is_some());
        assert!(s.verify_password("ALICE", "alice-password").unwrap().is_some());
        assert!(s.verify_password("alice", "bob-password").unwrap().is_none());
        assert!(s.verify_password("nobody", "x").unwrap().is_none());
        let t = s.create_token(&name("alice"), "ci", Permission::Write).unwrap();
        assert!(Store::looks_like_token(&t.secret));
        let a = s.verify_token(&t.secret, None).unwrap().unwrap();
        assert_eq!(a.user.name, name("alice"));
        assert_eq!(a.token_scope, Some(Permission::Write));
        assert!(s.verify_token(&t.secret, Some("alice")).unwrap().is_some());
        assert!(s.verify_token(&t.secret, Some("bob")).unwrap().is_none());
        let mut forged = t.secret.clone();
        forged.pop();
        forged.push(if t.secret.ends_with('A') { 'B' } else { 'A' });
        assert!(s.verify_token(&forged, None).unwrap().is_none());
        s.set_global_permission(&name("alice"), None).unwrap();
        assert!(s.verify_password("alice", "alice-password").unwrap().is_none(), "no global permission, no login");
        assert!(s.verify_token(&t.secret, None).unwrap().is_none());
    }

    #[test]
    fn duplicate_users_projects_and_repos_are_refused() {
        let (_d, s) = store();
        let p = Password::new("password1").unwrap();
        s.create_user(&name("alice"), &p, GlobalPermission::LicensedUser).unwrap();
        assert!(matches!(s.create_user(&name("Alice"), &p, GlobalPermission::LicensedUser), Err(StoreError::UserExists(_))));
        let key = ProjectKey::parse("TP").unwrap();
        s.create_project(&key, None, false).unwrap();
        assert!(matches!(s.create_project(&key, None, false), Err(StoreError::ProjectExists(_))));
        let slug = RepoSlug::parse("test").unwrap();
        let owner = Owner::Project(key);
        let repo = s.create_repo(&owner, &slug, false).unwrap();
        assert!(s.repo_path(&repo).join("HEAD").is_file());
        let config = std::fs::read_to_string(s.repo_path(&repo).join("config")).unwrap();
        assert!(config.contains("fsckObjects = true"), "{config}");
        assert!(matches!(s.create_repo(&owner, &slug, false), Err(StoreError::RepoExists(_))));
        let missing = Owner::Project(ProjectKey::parse("NOPE").unwrap());
        assert!(matches!(s.create_repo(&missing, &slug, false), Err(StoreError::NoSuchProject(_))));
    }

    #[test]
    fn permissions_combine_grants_public_flags_and_personal_ownership() {
        let (_d, s) = store();
        let p = Password::new("password1").unwrap();
        let alice = s.create_user(&name("alice"), &p, GlobalPermission::LicensedUser).unwrap();
        let bob = s.create_user(&name("bob"), &p, GlobalPermission::LicensedUser).unwrap();
        let key = ProjectKey::parse("TP").unwrap();
        s.create_project(&key, None, false).unwrap();
        let owner = Owner::Project(key.clone());
        let repo = s.create_repo(&owner, &RepoSlug::parse("test").unwrap(), false).unwrap();
        let auth = |u: &User| Authenticated { user: u.clone(), token_scope: None };
        assert_eq!(s.permission(None, &repo).unwrap(), None);
        assert_eq!(s.permission(Some(&auth(&alice)), &repo).unwrap(), None);
        s.grant_project(&alice.name, &key, Permission::Read).unwrap();
        assert_eq!(s.permission(Some(&auth(&alice)), &repo).unwrap(), Some(Permission::Read));
        s.grant_repo(&alice.name, &owner, &repo.slug, Permission::Write).unwrap();
        assert_eq!(s.permission(Some(&auth(&alice)), &repo).unwrap(), Some(Permission::Write));
        s.set_project_public(&key, true).unwrap();
        let repo = s.repo(&owner, &repo.slug).unwrap().unwrap();
        assert_eq!(s.permission(None, &repo).unwrap(), Some(Permission::Read));
        let personal = Owner::User(alice.name.clone());
        let mine = s.create_repo(&personal, &RepoSlug::parse("dots").unwrap(), false).unwrap();
        assert_eq!(s.permission(Some(&auth(&alice)), &mine).unwrap(), Some(Permission::Admin));
        assert_eq!(s.permission(Some(&auth(&bob)), &mine).unwrap(), None);
    }

    #[test]
    fn a_deleted_repositorys_id_is_never_given_to_a_new_one() {
        let (_d, s) = store();
        let key = ProjectKey::parse("TP").unwrap();
        s.create_project(&key, None, false).unwrap();
        let owner = Owner::Project(key.clone());
        let slug = |n: &str| RepoSlug::parse(n).unwrap();
        s.create_repo(&owner, &slug("a"), false).unwrap();
        let newest = s.create_repo(&owner, &slug("b"), false).unwrap();
        s.delete_repo(&newest).unwrap();
        let next = s.create_repo(&owner, &slug("c"), false).unwrap();
        assert!(next.id > newest.id, "id {} of a deleted repository was reused", newest.id);
        // Also when the project goes, taking its repositories with it.
        s.delete_project(&key).unwrap();
        let other = ProjectKey::parse("OT").unwrap();
        s.create_project(&other, None, false).unwrap();
        let after = s.create_repo(&Owner::Project(other), &slug("d"), false).unwrap();
        assert!(after.id > next.id, "id {} reused after its project was deleted", next.id);
    }

    #[test]
    fn settings_round_trip_and_can_be_cleared() {
        let (_d, s) = store();
        assert_eq!(s.base_url().unwrap(), None);
        let url = BaseUrl::parse("https://mycompany.com/stash").unwrap();
        s.set_base_url(Some(&url)).unwrap();
        assert_eq!(s.base_url().unwrap(), Some(url));
        s.set_context_path(Some(&ContextPath::parse("/stash").unwrap())).unwrap();
        assert_eq!(s.context_path().unwrap().unwrap().as_str(), "/stash");
        s.set_base_url(None).unwrap();
        assert_eq!(s.base_url().unwrap(), None);
    }
}
