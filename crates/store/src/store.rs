//! The store: the metadata database behind its interfaces ([`crate::backend`]), the bare
//! repositories on disk, and the rules every backend shares (passwords, tokens, sessions,
//! making and removing repositories).
//!
//! [`Store`] derefs to the [`Backend`], so `store.user(&name)` reads a row directly (with
//! `use trove_store::prelude::*`). Every call blocks: handlers on an async runtime go through
//! [`Store::run`], which runs the closure on the blocking pool, so no worker thread ever waits
//! on SQLite or argon2.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand::Rng as _;
use sha2::{Digest, Sha256};

use crate::backend::Backend;
use crate::error::StoreError;
use crate::names::{Owner, ProjectKey, RepoSlug, UserName};
use crate::password::{self, Password, os_rng};
use crate::permissions::{GlobalPermission, Permission};
use crate::postgres::{PgOptions, Postgres};
use crate::repos::{self, Repo};
use crate::sessions::Session;
use crate::sqlite::Sqlite;
use crate::tokens::{NewToken, TokenScope};
use crate::users::User;

/// Who a credential turned out to be.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    /// `Some` when a token was used: its scope caps the user's permissions.
    pub token_scope: Option<TokenScope>,
}

const TOKEN_PREFIX: &str = "trv_";

/// Where a store keeps things.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// This node's own directory: SQLite's database (when no `database`), git's empty HOME.
    pub data_dir: PathBuf,
    /// Shared repository storage (`[storage] repositories`); `None`: `<data_dir>/repositories`.
    pub repositories: Option<PathBuf>,
    /// PostgreSQL (`[database] url`); `None`: SQLite in the data directory.
    pub database: Option<PgOptions>,
    /// The git that makes new repositories (`[git] binary`).
    pub git_binary: PathBuf,
}

/// The data directory: the metadata database plus the bare repositories.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Box<dyn Backend>,
    data_dir: PathBuf,
    /// The bare repositories: `<data>/repositories`, or shared storage every node mounts.
    repos_dir: PathBuf,
    git_home: PathBuf,
    /// The git that `git init`s new repositories ([`Store::open_with_git`]).
    git_binary: PathBuf,
    verified: password::Verified,
}

impl std::ops::Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &(dyn Backend + 'static) {
        &*self.inner.db
    }
}

pub(crate) fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Unix milliseconds: pull requests' times, as Bitbucket's REST API shows them.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// 256 random bits, URL-safe base64.
fn random_secret() -> String {
    let mut raw = [0u8; 32];
    os_rng().fill_bytes(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// Sessions are looked up by the SHA-256 of their id, so a copy of the database holds no
/// usable session (a fast hash is enough: the id has 256 random bits).
fn session_hash(id: &str) -> String {
    let d = Sha256::digest(id.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    /// Opens (creating if needed) the data directory and applies pending migrations; new
    /// repositories are made with `git` from `PATH`.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Self::open_with_git(data_dir, Path::new("git"))
    }

    /// [`Store::open`], making new repositories with `git_binary` (the server's `[git] binary`).
    pub fn open_with_git(data_dir: &Path, git_binary: &Path) -> Result<Store, StoreError> {
        Self::open_with(&StoreOptions { data_dir: data_dir.to_owned(), repositories: None, database: None, git_binary: git_binary.to_owned() })
    }

    /// Opens the store a configuration names: SQLite in the data directory, or PostgreSQL
    /// (`database`), with the repositories in the data directory or on shared storage.
    pub fn open_with(opts: &StoreOptions) -> Result<Store, StoreError> {
        let mk = |p: &Path| std::fs::create_dir_all(p).map_err(|source| StoreError::DataDir { path: p.to_owned(), source });
        mk(&opts.data_dir)?;
        let data_dir = std::fs::canonicalize(&opts.data_dir).map_err(|source| StoreError::DataDir { path: opts.data_dir.clone(), source })?;
        let repos_dir = match &opts.repositories {
            Some(shared) => {
                mk(shared)?;
                std::fs::canonicalize(shared).map_err(|source| StoreError::DataDir { path: shared.clone(), source })?
            }
            None => repos::repos_dir(&data_dir),
        };
        mk(&repos_dir)?;
        let git_home = data_dir.join("git-home");
        mk(&git_home)?;
        let db: Box<dyn Backend> = match &opts.database {
            Some(pg) => Box::new(off_runtime(|| Postgres::open(pg))?),
            None => Box::new(Sqlite::open(&data_dir.join("trove.db"))?),
        };
        Ok(Store { inner: Arc::new(Inner { db, data_dir, repos_dir, git_home, git_binary: opts.git_binary.clone(), verified: password::Verified::new() }) })
    }

    /// The repositories' directory (`[storage] repositories`, or `<data>/repositories`).
    pub fn repos_dir(&self) -> &Path {
        &self.inner.repos_dir
    }

    /// Runs `f` now, on this thread, or (when this thread drives an async runtime) on a thread
    /// of its own while this one waits: for the few synchronous calls made while starting up
    /// inside a runtime, where PostgreSQL's client must not block a worker. Requests use
    /// [`Store::run`].
    pub fn sync<T: Send>(&self, f: impl FnOnce(&Store) -> T + Send) -> T {
        off_runtime(|| f(self))
    }

    /// Runs `f` with the store on the blocking thread pool and returns its result: the one way
    /// async code calls the store, so that SQLite (or argon2) never holds up a worker thread
    /// that other connections are waiting on. A panic in `f` is resumed in the caller.
    pub async fn run<T, F>(&self, f: F) -> T
    where
        F: FnOnce(&Store) -> T + Send + 'static,
        T: Send + 'static,
    {
        let store = self.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(t) => t,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only when the runtime itself is shutting down, and then nobody awaits this.
            Err(e) => panic!("store call cancelled: {e}"),
        }
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
        self.inner.repos_dir.join(repo.id.to_string())
    }

    // ---- users ----

    /// A new account. A personal project left by a deleted account of the same name (see
    /// [`Store::delete_user`]) becomes the new account's, as Bitbucket gives a user created again
    /// their personal repositories back.
    pub fn create_user(&self, name: &UserName, password: &Password, global: GlobalPermission) -> Result<User, StoreError> {
        let user = self.insert_user(name, &password::hash_password(password.expose()), global)?;
        self.adopt_personal_project(&user)?;
        Ok(user)
    }

    pub fn set_password(&self, name: &UserName, password: &Password) -> Result<(), StoreError> {
        self.set_password_hash(name, &password::hash_password(password.expose()))
    }

    /// Checks a user name and password; `Ok(None)` for an unknown user, a wrong password, or an
    /// account that may not log in (the caller must not be told which). Slow by design (argon2),
    /// except for a password this process verified against the same stored hash in the last
    /// five minutes (`password::Verified`).
    pub fn verify_password(&self, name: &str, password: &str) -> Result<Option<User>, StoreError> {
        let Ok(name) = UserName::parse(name) else { return Ok(None) };
        let Some(Some(hash)) = self.password_hash(&name)? else {
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

    /// Deletes an account as Bitbucket does, keeping its content: its grants, group
    /// memberships, tokens, SSH keys and sessions go; its pull requests, comments and audit
    /// entries stay and name it (by the name kept in `deleted_users`); its personal project and
    /// repositories stay, owned by nobody, for administrators to keep, move or delete.
    pub fn delete_user(&self, name: &UserName) -> Result<(), StoreError> {
        if self.user(name)?.is_none() {
            return Err(StoreError::NoSuchUser(name.to_string()));
        }
        self.delete_user_rows(name)
    }

    /// A user as their work names them: the account, or for a deleted account what is kept of
    /// it ([`Users::deleted_user`]): its name and display name, inactive, with no permission and
    /// no e-mail address. For showing authors only, never for deciding access.
    pub fn user_or_former(&self, id: i64) -> Result<Option<User>, StoreError> {
        if let Some(u) = self.user_by_id(id)? {
            return Ok(Some(u));
        }
        Ok(self.deleted_user(id)?.and_then(|d| {
            Some(User {
                id: d.id,
                name: UserName::parse(&d.name).ok()?,
                display_name: d.display_name,
                email: None,
                global: None,
                own_global: None,
                active: false,
            })
        }))
    }

    // ---- tokens ----

    /// Creates a personal access token for `user`; the secret is returned once and only its
    /// hash is kept.
    pub fn create_token(&self, user: &UserName, label: &str, scope: TokenScope) -> Result<NewToken, StoreError> {
        self.create_token_expiring(user, label, scope, None)
    }

    /// [`Store::create_token`] for a token that stops authenticating at `expires_at` (Unix
    /// seconds; `None`: never).
    pub fn create_token_expiring(&self, user: &UserName, label: &str, scope: TokenScope, expires_at: Option<i64>) -> Result<NewToken, StoreError> {
        let u = self.user(user)?.ok_or_else(|| StoreError::NoSuchUser(user.to_string()))?;
        let secret_part = random_secret();
        let id = self.insert_token(u.id, label, &password::hash_token_secret(&secret_part), scope, expires_at)?;
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
        let Some(row) = self.token_row(id)? else { return Ok(None) };
        if !password::verify(secret_part, &row.secret_hash) {
            return Ok(None);
        }
        // An expired token is no token, on every path that authenticates (REST, git, SSH).
        if row.expires_at.is_some_and(|at| at <= now()) {
            return Ok(None);
        }
        let Some(u) = self.user_by_id(row.user_id)? else { return Ok(None) };
        if !u.may_log_in() {
            return Ok(None);
        }
        if let Some(expected) = user
            && UserName::parse(expected).ok().as_ref() != Some(&u.name)
        {
            return Ok(None);
        }
        let _ = self.touch_token(id);
        Ok(Some(Authenticated { user: u, token_scope: Some(row.scope.parse().unwrap_or(Permission::Read)) }))
    }

    // ---- sessions ----

    /// Starts a session for `user_id` lasting `ttl_secs`; returns `(session id, csrf token)`.
    pub fn create_session(&self, user_id: i64, ttl_secs: i64) -> Result<(String, String), StoreError> {
        let id = random_secret();
        let csrf = random_secret();
        let t = now();
        self.insert_session(&session_hash(&id), user_id, &csrf, t, t + ttl_secs)?;
        Ok((id, csrf))
    }

    /// The live session with this id, if any. The account may since have been disabled:
    /// callers check [`User::may_log_in`].
    pub fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let Some((user_id, csrf)) = self.session_row(&session_hash(id), now())? else { return Ok(None) };
        Ok(self.user_by_id(user_id)?.map(|user| Session { user, csrf }))
    }

    pub fn delete_session(&self, id: &str) -> Result<(), StoreError> {
        self.delete_session_row(&session_hash(id))
    }

    // ---- repositories ----

    /// The project row for `owner`, creating a user's personal project on first use.
    fn ensure_project(&self, owner: &Owner) -> Result<i64, StoreError> {
        if let Some(id) = self.project_id(owner)? {
            return Ok(id);
        }
        match owner {
            Owner::Project(k) => Err(StoreError::NoSuchProject(k.to_string())),
            Owner::User(u) => {
                let user = self.user(u)?.ok_or_else(|| StoreError::NoSuchUser(u.to_string()))?;
                self.insert_personal_project(owner, &user.display_name, user.id)?;
                self.project_id(owner)?.ok_or_else(|| StoreError::NoSuchUser(u.to_string()))
            }
        }
    }

    /// Creates the repository's row and its bare repository on disk. If the disk step fails the
    /// row is removed again.
    pub fn create_repo(&self, owner: &Owner, slug: &RepoSlug, public: bool) -> Result<Repo, StoreError> {
        let project_id = self.ensure_project(owner)?;
        let id = self.insert_repo(project_id, slug, public)?.ok_or_else(|| StoreError::RepoExists(format!("{owner}/{slug}")))?;
        if let Err(e) = repos::init_bare(&self.inner.repos_dir, &self.inner.git_home, &self.inner.git_binary, id) {
            let _ = self.delete_repo_row(id);
            return Err(e);
        }
        self.repo(owner, slug)?.ok_or_else(|| StoreError::NoSuchRepo(format!("{owner}/{slug}")))
    }

    /// Forks `origin` into `owner` (a user's personal project is made on first use) as `slug`:
    /// a row naming `origin` as its origin and joining its fork hierarchy, and a bare repository
    /// with the origin's branches, tags, default branch and objects, which shares no state with
    /// the origin afterwards ([`repos::clone_bare`]). The fork is private and forkable. If the
    /// disk step fails the row is removed again.
    pub fn fork_repo(&self, origin: &Repo, owner: &Owner, slug: &RepoSlug) -> Result<Repo, StoreError> {
        let project_id = self.ensure_project(owner)?;
        let id = self.insert_repo(project_id, slug, false)?.ok_or_else(|| StoreError::RepoExists(format!("{owner}/{slug}")))?;
        let made = self
            .set_repo_origin(id, origin)
            .and_then(|()| repos::clone_bare(&self.inner.repos_dir, &self.inner.git_home, &self.inner.git_binary, &self.repo_path(origin), id));
        if let Err(e) = made {
            let _ = self.delete_repo_row(id);
            // The origin deleted meanwhile (its row, then its directory): say so, not how the
            // step failed.
            if matches!(self.repo_by_id(origin.id), Ok(None)) {
                return Err(StoreError::NoSuchRepo(origin.display_path()));
            }
            return Err(e);
        }
        self.repo(owner, slug)?.ok_or_else(|| StoreError::NoSuchRepo(format!("{owner}/{slug}")))
    }

    /// Deletes a repository: the row first (so it vanishes from every listing at once), then
    /// its directory, moved aside before removal so a half-deleted tree is never at a live path.
    pub fn delete_repo(&self, repo: &Repo) -> Result<(), StoreError> {
        let path = self.repo_path(repo);
        self.delete_repo_row(repo.id)?;
        // A trash name no other deletion can take, so a removal that fails never blocks a
        // later one.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let trash = path.with_file_name(format!(".deleted-{}-{}-{}-{seq}", repo.id, now(), std::process::id()));
        match std::fs::rename(&path, &trash) {
            Ok(()) => {
                if let Err(e) = std::fs::remove_dir_all(&trash) {
                    tracing::warn!(path = %trash.display(), error = %e, "could not remove a deleted repository's directory; remove it by hand");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "could not move a deleted repository's directory aside; remove it by hand"),
        }
        Ok(())
    }

    /// Deletes a project, its repositories' rows and their directories on disk.
    pub fn delete_project(&self, key: &ProjectKey) -> Result<(), StoreError> {
        let owner = Owner::Project(key.clone());
        let project = self.visible_project(&owner, None, true)?.ok_or_else(|| StoreError::NoSuchProject(key.to_string()))?;
        for repo in self.project_repos(&project)? {
            self.delete_repo(&repo)?;
        }
        self.delete_project_row(project.id)
    }
}

/// `f` on this thread, or on a scoped thread of its own when this one is inside an async runtime
/// (the synchronous PostgreSQL client runs a runtime of its own, which may not be started from
/// inside another).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(t) => t,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

pub(crate) static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn parse_token(secret: &str) -> Option<(i64, &str)> {
    let rest = secret.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret_part) = rest.split_once('_')?;
    let id: i64 = id.parse().ok()?;
    (secret_part.len() == 43).then_some((id, secret_part))
}

/// Which backend the store tests run on: SQLite, or (inside [`backends::on_postgres`]) a
/// PostgreSQL started for the test. Every store test uses [`backends::store`] and
/// [`backends::reopen`] ("another process on the same data"), so one list runs on both.
#[cfg(test)]
pub(crate) mod backends {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::rc::Rc;

    use super::{Store, StoreOptions};
    use crate::pgtest::TestPg;
    use crate::postgres::PgOptions;

    thread_local! {
        static PG: RefCell<Option<Rc<TestPg>>> = const { RefCell::new(None) };
        static URLS: RefCell<HashMap<PathBuf, String>> = RefCell::new(HashMap::new());
    }

    /// Runs `f` with every `store()` on a fresh database of `pg`.
    pub(crate) fn on_postgres(pg: Rc<TestPg>, f: impl FnOnce()) {
        PG.with(|p| *p.borrow_mut() = Some(pg));
        f();
        PG.with(|p| *p.borrow_mut() = None);
    }

    fn open(dir: &Path, url: Option<String>) -> Store {
        let database = url.map(|u| PgOptions::new(&u));
        Store::open_with(&StoreOptions { data_dir: dir.to_owned(), repositories: None, database, git_binary: "git".into() }).unwrap()
    }

    pub(crate) fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = PG.with(|p| p.borrow().as_ref().map(|pg| pg.database()));
        if let Some(u) = &url {
            URLS.with(|m| m.borrow_mut().insert(dir.path().to_owned(), u.clone()));
        }
        let s = open(dir.path(), url);
        (dir, s)
    }

    /// The same data as the store made for `dir`, opened again (as another process would).
    pub(crate) fn reopen(dir: &Path) -> Store {
        open(dir, URLS.with(|m| m.borrow().get(dir).cloned()))
    }

    /// Rows in `table`, on whichever backend `s` is.
    pub(crate) fn count(dir: &Path, table: &str) -> i64 {
        match URLS.with(|m| m.borrow().get(dir).cloned()) {
            Some(u) => postgres::Client::connect(&u, postgres::NoTls).unwrap().query_one(&format!("SELECT count(*) FROM {table}"), &[]).unwrap().get(0),
            None => rusqlite::Connection::open(dir.join("trove.db")).unwrap().query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{BaseUrl, ContextPath};
    use crate::{Project, ProjectUpdate, RepoUpdate};

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
        backends::store()
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
        backends::reopen(dir.path()).set_password(&name("alice"), &Password::new("password2").unwrap()).unwrap();
        assert!(!ok("password1"), "the old password still worked after a change");
        assert!(ok("password2"));
        assert!(ok("password2"));
        s.set_user_active(&name("alice"), false).unwrap();
        assert!(!ok("password2"), "a disabled account still logged in");
    }

    #[test]
    fn reopening_a_data_dir_keeps_its_contents_and_migrations_run_once() {
        let (dir, s) = backends::store();
        s.create_user(&name("alice"), &Password::new("alice-password").unwrap(), GlobalPermission::LicensedUser).unwrap();
        drop(s);
        let s = backends::reopen(dir.path());
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

    // ---- moved from the callers' files (queries.rs, web.rs) ----

    #[test]
    fn project_updates_rename_keys_and_refuse_taken_ones_without_changing_anything() {
        let (_d, s) = store();
        let a = ProjectKey::parse("AAA").unwrap();
        let b = ProjectKey::parse("BBB").unwrap();
        s.create_project_described(&a, "Alpha", Some("first"), false).unwrap();
        s.create_project_described(&b, "Beta", None, false).unwrap();
        let up = ProjectUpdate { key: Some(b.clone()), name: Some("Changed".into()), ..Default::default() };
        assert!(matches!(s.update_project(&a, &up), Err(StoreError::ProjectExists(_))));
        let still = s.project_info(&Owner::Project(a.clone())).unwrap().unwrap();
        assert_eq!((still.name.as_str(), still.description.as_deref()), ("Alpha", Some("first")));
        let c = ProjectKey::parse("CCC").unwrap();
        let up = ProjectUpdate { key: Some(c.clone()), description: Some(None), public: Some(true), ..Default::default() };
        let got = s.update_project(&a, &up).unwrap();
        assert_eq!((got.owner, got.description, got.public), (Owner::Project(c), None, true));
        assert!(s.project_info(&Owner::Project(a)).unwrap().is_none());
    }

    #[test]
    fn repo_renames_refuse_taken_slugs_and_deleting_a_user_keeps_their_personal_repositories_and_name() {
        let (_d, s) = store();
        let alice = UserName::parse("alice").unwrap();
        s.create_user(&alice, &Password::new("password1").unwrap(), GlobalPermission::LicensedUser).unwrap();
        let owner = Owner::User(alice.clone());
        let one = s.create_repo(&owner, &RepoSlug::parse("one").unwrap(), false).unwrap();
        s.create_repo(&owner, &RepoSlug::parse("two").unwrap(), false).unwrap();
        let taken = RepoUpdate { name: Some(("Two".into(), RepoSlug::parse("two").unwrap())), ..Default::default() };
        assert!(matches!(s.update_repo(&one, &taken), Err(StoreError::RepoExists(_))));
        let renamed = s
            .update_repo(&one, &RepoUpdate { name: Some(("Uno".into(), RepoSlug::parse("uno").unwrap())), forkable: Some(false), ..Default::default() })
            .unwrap();
        assert_eq!((renamed.name.as_str(), renamed.slug.as_str()), ("Uno", "uno"));
        assert!(!s.repo_forkable(&renamed).unwrap());
        let path = s.repo_path(&renamed);
        assert!(path.is_dir());
        let id = s.user(&alice).unwrap().unwrap().id;
        s.delete_user(&alice).unwrap();
        assert!(path.is_dir(), "a deleted user's personal repositories stay, as Bitbucket keeps them");
        assert!(s.user(&alice).unwrap().is_none());
        let kept = s.project_info(&owner).unwrap().unwrap();
        assert_eq!(kept.owner_user_id, None, "the personal project stays without an owner");
        let gone = s.deleted_user(id).unwrap().unwrap();
        assert_eq!((gone.name.as_str(), gone.display_name.as_str()), ("alice", "alice"));
        assert!(matches!(s.delete_user(&alice), Err(StoreError::NoSuchUser(_))));
        // An account made again with the name gets the personal project back, with a new id.
        let again = s.create_user(&alice, &Password::new("password2").unwrap(), GlobalPermission::LicensedUser).unwrap();
        assert_ne!(again.id, id);
        assert_eq!(s.project_info(&owner).unwrap().unwrap().owner_user_id, Some(again.id));
        assert!(s.deleted_user(again.id).unwrap().is_none());
    }

    #[test]
    fn project_permission_counts_grants_defaults_and_admins_but_not_repository_grants() {
        let (_d, s) = store();
        let p = Password::new("password1").unwrap();
        let bob = s.create_user(&UserName::parse("bob").unwrap(), &p, GlobalPermission::LicensedUser).unwrap();
        let root = s.create_user(&UserName::parse("root").unwrap(), &p, GlobalPermission::SysAdmin).unwrap();
        let key = ProjectKey::parse("TP").unwrap();
        let owner = Owner::Project(key.clone());
        s.create_project(&key, None, false).unwrap();
        let repo = s.create_repo(&owner, &RepoSlug::parse("r").unwrap(), false).unwrap();
        s.grant_repo(&bob.name, &owner, &repo.slug, Permission::Admin).unwrap();
        let auth = |u: &User| Authenticated { user: u.clone(), token_scope: None };
        let info = s.project_info(&owner).unwrap().unwrap();
        assert_eq!(s.project_permission(Some(&auth(&bob)), &info).unwrap(), None);
        assert_eq!(s.project_permission(Some(&auth(&root)), &info).unwrap(), Some(Permission::Admin));
        s.set_project_default_permission(&key, Some(Permission::Write)).unwrap();
        let info = s.project_info(&owner).unwrap().unwrap();
        assert_eq!(s.project_permission(Some(&auth(&bob)), &info).unwrap(), Some(Permission::Write));
        assert_eq!(s.project_permission(None, &info).unwrap(), None);
    }

    #[test]
    fn sessions_resolve_by_id_end_on_logout_and_when_the_account_is_disabled() {
        let (_d, s) = store();
        let alice = s.create_user(&UserName::parse("alice").unwrap(), &Password::new("password1").unwrap(), GlobalPermission::LicensedUser).unwrap();
        let (id, csrf) = s.create_session(alice.id, 3600).unwrap();
        let got = s.session(&id).unwrap().unwrap();
        assert_eq!((got.user.id, got.csrf.as_str()), (alice.id, csrf.as_str()));
        assert!(s.session("not-a-session").unwrap().is_none());
        let (expired, _) = s.create_session(alice.id, -1).unwrap();
        assert!(s.session(&expired).unwrap().is_none(), "expired");
        s.delete_session(&id).unwrap();
        assert!(s.session(&id).unwrap().is_none(), "logged out");
        let (id2, _) = s.create_session(alice.id, 3600).unwrap();
        s.set_user_active(&alice.name, false).unwrap();
        assert!(s.session(&id2).unwrap().is_none(), "disabling ends sessions");
        assert!(s.verify_password("alice", "password1").unwrap().is_none(), "a disabled user cannot log in");
    }

    #[test]
    fn visible_projects_follow_grants_public_flags_and_admin() {
        let (_d, s) = store();
        let p = Password::new("password1").unwrap();
        let alice = s.create_user(&UserName::parse("alice").unwrap(), &p, GlobalPermission::LicensedUser).unwrap();
        let bob = s.create_user(&UserName::parse("bob").unwrap(), &p, GlobalPermission::LicensedUser).unwrap();
        for (k, public) in [("PRIV", false), ("PUB", true), ("REPO", false)] {
            s.create_project(&ProjectKey::parse(k).unwrap(), None, public).unwrap();
        }
        let repo_owner = Owner::parse("REPO").unwrap();
        let slug = RepoSlug::parse("r").unwrap();
        s.create_repo(&repo_owner, &slug, false).unwrap();
        s.grant_repo(&alice.name, &repo_owner, &slug, Permission::Read).unwrap();
        let keys = |v: Vec<Project>| v.into_iter().map(|p| p.owner.to_string()).collect::<Vec<_>>();
        assert_eq!(keys(s.visible_projects(None, false).unwrap()), ["PUB"]);
        assert_eq!(keys(s.visible_projects(Some(&alice), false).unwrap()), ["PUB", "REPO"]);
        assert_eq!(keys(s.visible_projects(Some(&bob), false).unwrap()), ["PUB"]);
        assert_eq!(keys(s.visible_projects(Some(&bob), true).unwrap()), ["PRIV", "PUB", "REPO"]);
        assert!(s.visible_project(&Owner::parse("PRIV").unwrap(), Some(&alice), false).unwrap().is_none());
        s.set_repo_public(&repo_owner, &slug, true).unwrap();
        assert_eq!(keys(s.visible_projects(None, false).unwrap()), ["PUB", "REPO"]);
    }

    #[test]
    fn deleting_a_project_removes_its_repositories_from_disk() {
        let (_d, s) = store();
        let key = ProjectKey::parse("TP").unwrap();
        s.create_project(&key, None, false).unwrap();
        let repo = s.create_repo(&Owner::Project(key.clone()), &RepoSlug::parse("test").unwrap(), false).unwrap();
        let path = s.repo_path(&repo);
        assert!(path.is_dir());
        s.delete_project(&key).unwrap();
        assert!(!path.exists());
        assert!(s.repo(&Owner::Project(key.clone()), &repo.slug).unwrap().is_none());
        assert!(matches!(s.delete_project(&key), Err(StoreError::NoSuchProject(_))));
    }

    #[test]
    fn tokens_list_and_revoke_only_for_their_owner() {
        let (_d, s) = store();
        let p = Password::new("password1").unwrap();
        let alice = s.create_user(&UserName::parse("alice").unwrap(), &p, GlobalPermission::LicensedUser).unwrap();
        let bob = s.create_user(&UserName::parse("bob").unwrap(), &p, GlobalPermission::LicensedUser).unwrap();
        let t = s.create_token(&alice.name, "ci", Permission::Read).unwrap();
        assert_eq!(s.tokens(&alice).unwrap().len(), 1);
        assert!(!s.revoke_token(&bob, t.id).unwrap());
        assert!(s.revoke_token(&alice, t.id).unwrap());
        assert!(s.verify_token(&t.secret, None).unwrap().is_none());
    }

    #[test]
    fn repositories_keep_a_description_move_between_projects_and_redirect_from_where_they_were() {
        let (_d, s) = store();
        let (tp, other) = (ProjectKey::parse("TP").unwrap(), ProjectKey::parse("OT").unwrap());
        s.create_project(&tp, None, false).unwrap();
        let ot = s.create_project(&other, None, false).unwrap();
        let (tp_owner, ot_owner) = (Owner::Project(tp), Owner::Project(other));
        let slug = |x: &str| RepoSlug::parse(x).unwrap();
        let repo = s.create_repo(&tp_owner, &slug("one"), false).unwrap();
        let path = s.repo_path(&repo);
        assert_eq!(s.repo_description(&repo).unwrap(), None);
        let repo = s.update_repo(&repo, &RepoUpdate { description: Some("  the first  ".into()), ..Default::default() }).unwrap();
        assert_eq!(s.repo_description(&repo).unwrap().as_deref(), Some("the first"));
        // A change of something else keeps the description.
        let repo = s.update_repo(&repo, &RepoUpdate { public: Some(true), ..Default::default() }).unwrap();
        assert_eq!(s.repo_description(&repo).unwrap().as_deref(), Some("the first"));
        assert!(s.repo_redirect(&tp_owner, &slug("one")).unwrap().is_none(), "no redirect before a move");
        // Rename and move at once: same id, same directory, the old place redirects.
        let moved = s.update_repo(&repo, &RepoUpdate { name: Some(("Uno".into(), slug("uno"))), project_id: Some(ot.id), ..Default::default() }).unwrap();
        assert_eq!((moved.id, moved.owner.clone(), moved.slug.as_str(), moved.project_id), (repo.id, ot_owner.clone(), "uno", ot.id));
        assert_eq!(s.repo_path(&moved), path);
        assert!(s.repo(&tp_owner, &slug("one")).unwrap().is_none());
        assert_eq!(s.repo_redirect(&tp_owner, &slug("one")).unwrap().map(|r| r.id), Some(repo.id));
        assert_eq!(s.repo_description(&moved).unwrap().as_deref(), Some("the first"));
        // Renamed again: both old places lead to where it is now.
        let again = s.update_repo(&moved, &RepoUpdate { name: Some(("Eins".into(), slug("eins"))), ..Default::default() }).unwrap();
        for (o, sl) in [(&tp_owner, "one"), (&ot_owner, "uno")] {
            assert_eq!(s.repo_redirect(o, &slug(sl)).unwrap().map(|r| r.slug), Some(slug("eins")), "{o}/{sl}");
        }
        // A slug taken in the target project is refused and nothing changes.
        s.create_repo(&tp_owner, &slug("eins"), false).unwrap();
        let tp_id = s.repo(&tp_owner, &slug("eins")).unwrap().unwrap().project_id;
        assert!(matches!(s.update_repo(&again, &RepoUpdate { project_id: Some(tp_id), ..Default::default() }), Err(StoreError::RepoExists(_))));
        assert_eq!(s.repo_by_id(again.id).unwrap().unwrap().owner, ot_owner);
        // A new repository at an old place is found there, not redirected; the description clears.
        let fresh = s.create_repo(&tp_owner, &slug("one"), false).unwrap();
        assert_eq!(s.repo(&tp_owner, &slug("one")).unwrap().map(|r| r.id), Some(fresh.id));
        let cleared = s.update_repo(&again, &RepoUpdate { description: Some(String::new()), ..Default::default() }).unwrap();
        assert_eq!(s.repo_description(&cleared).unwrap(), None);
        // Deleting the repository takes its redirects.
        s.delete_repo(&cleared).unwrap();
        assert!(s.repo_redirect(&ot_owner, &slug("uno")).unwrap().is_none());
    }

    #[test]
    fn expired_tokens_authenticate_no_one_and_updates_touch_only_the_owners_token() {
        let (_d, s) = store();
        let p = Password::new("password1").unwrap();
        let alice = s.create_user(&UserName::parse("alice").unwrap(), &p, GlobalPermission::LicensedUser).unwrap();
        let bob = s.create_user(&UserName::parse("bob").unwrap(), &p, GlobalPermission::LicensedUser).unwrap();
        let past = s.create_token_expiring(&alice.name, "old", Permission::Write, Some(now() - 1)).unwrap();
        assert!(s.verify_token(&past.secret, None).unwrap().is_none(), "an expired token");
        let later = now() + 86_400;
        let live = s.create_token_expiring(&alice.name, "ci", Permission::Read, Some(later)).unwrap();
        assert_eq!(s.verify_token(&live.secret, None).unwrap().unwrap().token_scope, Some(Permission::Read));
        let listed = s.tokens(&alice).unwrap();
        assert_eq!(listed.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["old", "ci"]);
        assert!(listed[0].expires_at.is_some_and(|e| e <= now()));
        assert_eq!(listed[1].expires_at, Some(later));
        assert!(!s.update_token(&bob, live.id, Some("stolen"), Some(Permission::Admin)).unwrap(), "only the owner's token");
        assert!(s.update_token(&alice, live.id, Some("deploy"), None).unwrap());
        assert!(s.update_token(&alice, live.id, None, Some(Permission::Write)).unwrap());
        let t = s.tokens(&alice).unwrap().into_iter().find(|t| t.id == live.id).unwrap();
        assert_eq!((t.name.as_str(), t.scope.as_str(), t.expires_at), ("deploy", "write", Some(later)));
        assert_eq!(s.verify_token(&live.secret, None).unwrap().unwrap().token_scope, Some(Permission::Write));
        assert!(s.create_token(&alice.name, "forever", Permission::Read).unwrap().id > 0);
        assert_eq!(s.tokens(&alice).unwrap().last().unwrap().expires_at, None);
    }

    #[test]
    fn a_lease_is_one_holders_until_it_is_given_back_or_expires() {
        let (_d, s) = store();
        assert!(s.take_lease("maintenance:1", "node-a", 60).unwrap());
        assert!(!s.take_lease("maintenance:1", "node-b", 60).unwrap(), "two holders at once");
        assert!(s.take_lease("maintenance:2", "node-b", 60).unwrap(), "leases are per name");
        assert!(s.take_lease("maintenance:1", "node-a", 60).unwrap(), "the holder renews");
        s.release_lease("maintenance:1", "node-b").unwrap();
        assert!(!s.take_lease("maintenance:1", "node-b", 60).unwrap(), "only the holder gives it back");
        s.release_lease("maintenance:1", "node-a").unwrap();
        assert!(s.take_lease("maintenance:1", "node-b", 60).unwrap());
        // An expired lease (its node died) is free again.
        assert!(s.take_lease("maintenance:3", "node-a", -1).unwrap());
        assert!(s.take_lease("maintenance:3", "node-b", 60).unwrap());
    }

    #[test]
    fn forks_name_their_origin_share_a_hierarchy_and_keep_their_objects_when_the_origin_goes() {
        let (_d, s) = store();
        let git = |dir: &std::path::Path, args: &[&str]| {
            let out = std::process::Command::new("git").arg("--git-dir").arg(dir).args(args).output().unwrap();
            assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        let alice = UserName::parse("alice").unwrap();
        s.create_user(&alice, &Password::new("password1").unwrap(), GlobalPermission::LicensedUser).unwrap();
        let tp = ProjectKey::parse("TP").unwrap();
        s.create_project(&tp, None, false).unwrap();
        let tp_owner = Owner::Project(tp.clone());
        let slug = |x: &str| RepoSlug::parse(x).unwrap();
        let origin = s.create_repo(&tp_owner, &slug("origin"), true).unwrap();
        let lonely = s.create_repo(&tp_owner, &slug("lonely"), false).unwrap();
        // A commit on `trunk`, the origin's default branch, and a tag.
        let o = s.repo_path(&origin);
        git(&o, &["symbolic-ref", "HEAD", "refs/heads/trunk"]);
        let tree = git(&o, &["mktree"]);
        let commit = {
            let out = std::process::Command::new("git")
                .arg("--git-dir")
                .arg(&o)
                .args(["-c", "user.name=t", "-c", "user.email=t@e", "commit-tree", &tree, "-m", "first"])
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        git(&o, &["update-ref", "refs/heads/trunk", &commit]);
        git(&o, &["update-ref", "refs/tags/v1", &commit]);
        git(&o, &["update-ref", "refs/pull-requests/1/from", &commit]);

        // Into a personal project that does not exist yet.
        let mine = Owner::User(alice.clone());
        let fork = s.fork_repo(&origin, &mine, &slug("origin")).unwrap();
        assert_eq!((fork.owner.clone(), fork.public), (mine.clone(), false));
        assert_eq!(s.repo_origin_id(&fork).unwrap(), Some(origin.id));
        assert_eq!(s.repo_origin_id(&origin).unwrap(), None);
        let f = s.repo_path(&fork);
        assert_eq!(git(&f, &["symbolic-ref", "HEAD"]), "refs/heads/trunk");
        assert_eq!(git(&f, &["for-each-ref", "--format=%(refname)"]), "refs/heads/trunk\nrefs/tags/v1", "branches and tags only");
        let config = std::fs::read_to_string(f.join("config")).unwrap();
        assert!(config.contains("fsckObjects = true") && !config.contains("remote"), "{config}");
        assert!(!f.join("objects/info/alternates").exists());
        // A taken slug is refused and leaves nothing behind.
        assert!(matches!(s.fork_repo(&origin, &mine, &slug("origin")), Err(StoreError::RepoExists(_))));
        // A fork of the fork joins the same hierarchy.
        let deeper = s.fork_repo(&fork, &tp_owner, &slug("deeper")).unwrap();
        assert_eq!(s.repo_origin_id(&deeper).unwrap(), Some(fork.id));
        let ids = |v: Vec<Repo>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(s.repo_forks(&origin).unwrap()), vec![fork.id]);
        assert_eq!(ids(s.repo_forks(&fork).unwrap()), vec![deeper.id]);
        assert_eq!(ids(s.related_repos(&origin).unwrap()), vec![fork.id, deeper.id]);
        assert_eq!(ids(s.related_repos(&deeper).unwrap()), vec![origin.id, fork.id]);
        assert!(s.related_repos(&lonely).unwrap().is_empty());
        // An empty origin: an empty fork with the origin's default branch.
        let empty = s.fork_repo(&lonely, &mine, &slug("lonely")).unwrap();
        assert_eq!(git(&s.repo_path(&empty), &["symbolic-ref", "HEAD"]), "refs/heads/main");
        assert_eq!(git(&s.repo_path(&empty), &["for-each-ref"]), "");
        // An origin deleted before the fork is made: "does not exist", nothing left behind.
        let doomed = s.create_repo(&tp_owner, &slug("doomed"), false).unwrap();
        s.delete_repo(&doomed).unwrap();
        assert!(matches!(s.fork_repo(&doomed, &mine, &slug("doomed")), Err(StoreError::NoSuchRepo(_))));
        assert!(s.repo(&mine, &slug("doomed")).unwrap().is_none());
        // A broken origin: the fork is refused, named, and leaves no row or directory.
        let broken = s.create_repo(&tp_owner, &slug("broken"), false).unwrap();
        std::fs::remove_dir_all(s.repo_path(&broken).join("objects")).unwrap();
        let err = s.fork_repo(&broken, &mine, &slug("broken")).unwrap_err();
        assert!(matches!(err, StoreError::GitClone { .. }), "{err}");
        assert!(s.repo(&mine, &slug("broken")).unwrap().is_none());
        let leftovers: Vec<_> =
            std::fs::read_dir(s.repos_dir()).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).filter(|n| n.to_string_lossy().starts_with('.')).collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // The origin goes: its forks stay whole, lose their origin and stay related.
        s.delete_repo(&origin).unwrap();
        assert!(!o.exists());
        git(&f, &["fsck", "--strict", "--no-dangling"]);
        assert_eq!(git(&f, &["rev-parse", "trunk"]), commit);
        assert_eq!(s.repo_origin_id(&s.repo_by_id(fork.id).unwrap().unwrap()).unwrap(), None);
        assert_eq!(ids(s.related_repos(&fork).unwrap()), vec![deeper.id]);
        // A reopened store (another process) sees the same.
        let again = backends::reopen(_d.path());
        assert_eq!(again.repo_origin_id(&deeper).unwrap(), Some(fork.id));
    }

    #[test]
    fn postgres_passes_every_store_test() {
        let pg = std::rc::Rc::new(crate::pgtest::TestPg::start());
        backends::on_postgres(pg, || {
            a_verified_password_is_not_hashed_again_but_a_change_or_a_disabled_account_is_seen_at_once();
            reopening_a_data_dir_keeps_its_contents_and_migrations_run_once();
            passwords_and_tokens_authenticate_only_their_user();
            duplicate_users_projects_and_repos_are_refused();
            permissions_combine_grants_public_flags_and_personal_ownership();
            a_deleted_repositorys_id_is_never_given_to_a_new_one();
            settings_round_trip_and_can_be_cleared();
            project_updates_rename_keys_and_refuse_taken_ones_without_changing_anything();
            repo_renames_refuse_taken_slugs_and_deleting_a_user_keeps_their_personal_repositories_and_name();
            project_permission_counts_grants_defaults_and_admins_but_not_repository_grants();
            sessions_resolve_by_id_end_on_logout_and_when_the_account_is_disabled();
            visible_projects_follow_grants_public_flags_and_admin();
            deleting_a_project_removes_its_repositories_from_disk();
            tokens_list_and_revoke_only_for_their_owner();
            expired_tokens_authenticate_no_one_and_updates_touch_only_the_owners_token();
            repositories_keep_a_description_move_between_projects_and_redirect_from_where_they_were();
            a_lease_is_one_holders_until_it_is_given_back_or_expires();
            forks_name_their_origin_share_a_hierarchy_and_keep_their_objects_when_the_origin_goes();
            crate::logins::tests::a_locked_account_refuses_even_its_password_until_a_challenge_or_an_admin_clears_it();
            crate::logins::tests::a_success_resets_the_count_and_unknown_users_leave_no_record();
            crate::pull_requests::tests::numbers_count_per_repository_from_one_and_are_never_reused_after_a_delete();
            crate::pull_requests::tests::an_open_pull_request_between_the_same_refs_is_refused_until_the_first_is_declined();
            crate::pull_requests::tests::a_change_with_a_stale_version_is_refused_and_changes_nothing();
            crate::pull_requests::tests::participants_are_upserted_in_place_removed_and_their_approvals_reset();
            crate::pull_requests::tests::listing_filters_by_state_ref_participant_and_closing_time_and_pages_in_order();
            crate::pull_requests::tests::comments_are_logged_versioned_and_only_deleted_without_replies();
            crate::pull_requests::tests::watchers_and_repository_settings_round_trip();
            crate::pull_requests::tests::project_settings_round_trip_apart_from_repository_settings_and_go_with_the_project();
            crate::pull_requests::tests::deleting_a_pull_request_or_its_repository_takes_everything_of_it();
            crate::pull_requests::tests::deleting_an_author_keeps_their_pull_requests_and_no_new_account_takes_their_id();
            crate::pull_requests::tests::pull_requests_opened_at_once_between_the_same_refs_make_one();
            crate::pull_requests::tests::a_repository_is_found_by_its_id();
            crate::groups::tests::group_names_are_unique_without_regard_to_case_and_shown_as_created();
            crate::groups::tests::members_hold_their_groups_grants_at_every_level_and_lose_them_when_they_leave();
            crate::groups::tests::a_group_may_let_its_members_log_in_without_a_global_permission_of_their_own();
            crate::groups::tests::deleting_a_group_a_user_or_a_project_takes_the_memberships_and_grants_with_it();
            crate::groups::tests::what_a_change_to_one_group_would_leave_counts_every_other_grant();
            crate::branch_permissions::tests::restrictions_round_trip_with_their_exemptions_and_list_by_scope();
            crate::branch_permissions::tests::a_failed_bulk_insert_creates_none_and_ids_are_never_reused();
            crate::branch_permissions::tests::restrictions_and_exemptions_go_with_their_repository_project_user_and_group();
            crate::audit::tests::entries_come_back_as_appended_newest_first_by_default_and_page_in_order();
            crate::audit::tests::filters_select_by_actor_action_target_and_time_together();
            crate::audit::tests::pruning_deletes_only_older_entries_and_ids_are_never_given_again();
            crate::webhooks::tests::webhooks_round_trip_by_scope_and_go_with_their_repository();
            crate::webhooks::tests::events_fan_out_to_the_webhooks_that_ask_for_them_and_others_are_not_kept();
            crate::webhooks::tests::a_lane_is_delivered_in_order_and_a_claim_is_a_lease();
            crate::webhooks::tests::the_breaker_pauses_a_failing_webhook_and_a_success_closes_it();
            crate::webhooks::tests::nodes_claiming_at_once_never_share_a_delivery();
            crate::pull_requests::tests::a_change_and_its_events_are_written_together_or_not_at_all();
            crate::builds::tests::build_statuses_replace_by_key_keep_their_first_date_and_go_with_their_repository();
            crate::builds::tests::required_builds_round_trip_update_and_go_with_their_repository();
            crate::builds::tests::insight_reports_replace_in_place_and_annotations_upsert_count_and_go_with_them();
            crate::commit_comments::tests::commit_comments_are_versioned_keep_their_replies_and_go_with_their_repository();
            crate::ssh_keys::tests::keys_are_unique_across_the_server_and_go_with_their_user();
            crate::ssh_keys::tests::access_keys_hold_grants_on_projects_and_repositories_and_go_with_their_last_grant();
        });
    }

    #[test]
    fn an_installation_copied_to_postgres_keeps_every_record_and_a_non_empty_target_is_refused() {
        let pg = crate::pgtest::TestPg::start();
        let (dir, s) = store();
        let alice = s.create_user(&name("alice"), &Password::new("alice-password").unwrap(), GlobalPermission::LicensedUser).unwrap();
        let key = ProjectKey::parse("TP").unwrap();
        let owner = Owner::Project(key.clone());
        s.create_project(&key, Some("Test project"), false).unwrap();
        let kept = s.create_repo(&owner, &RepoSlug::parse("kept").unwrap(), false).unwrap();
        // A fork of it, which names it.
        let forked = s.fork_repo(&kept, &owner, &RepoSlug::parse("forked").unwrap()).unwrap();
        let gone = s.create_repo(&owner, &RepoSlug::parse("gone").unwrap(), false).unwrap();
        s.delete_repo(&gone).unwrap();
        s.grant_repo(&alice.name, &owner, &kept.slug, Permission::Write).unwrap();
        // A group with a member and grants at each level; a deleted one before it.
        let devs = crate::GroupName::parse("Devs").unwrap();
        s.insert_group(&crate::GroupName::parse("gone").unwrap()).unwrap();
        s.delete_group(&crate::GroupName::parse("gone").unwrap()).unwrap();
        let devs_id = s.insert_group(&devs).unwrap().id;
        s.add_group_member(&devs, &alice.name).unwrap();
        s.set_group_global_permission(&devs, Some(GlobalPermission::ProjectCreate)).unwrap();
        s.grant_group_project(&devs, &key, Permission::Read).unwrap();
        s.grant_group_repo(&devs, &owner, &kept.slug, Permission::Admin).unwrap();
        // A branch restriction with an exemption of each kind; a later one deleted.
        let restrict = |scope| crate::NewRestriction {
            scope,
            kind: crate::RestrictionType::PullRequestOnly,
            matcher: crate::Matcher::new(crate::MatcherType::Branch, "main").unwrap(),
            users: vec![alice.id],
            groups: vec![devs_id],
            access_keys: vec![3],
        };
        let restriction = s.insert_restrictions(&[restrict(crate::RestrictionScope::Repository(kept.id))]).unwrap().remove(0);
        let gone_restriction = s.insert_restrictions(&[restrict(crate::RestrictionScope::Repository(kept.id))]).unwrap().remove(0);
        s.delete_restriction(gone_restriction.id).unwrap();
        let token = s.create_token(&alice.name, "ci", Permission::Read).unwrap();
        let (session, csrf) = s.create_session(alice.id, 3600).unwrap();
        s.set_base_url(Some(&BaseUrl::parse("https://mycompany.com/stash").unwrap())).unwrap();
        let policy = crate::LoginPolicy::default();
        s.check_password("alice", "wrong", &policy, false).unwrap();
        // A pull request with a review, a comment thread and a watcher; a later one deleted,
        // with its comment, so the highest ids ever given are above the copied ones.
        let root = s.create_user(&name("root"), &Password::new("root-password").unwrap(), GlobalPermission::SysAdmin).unwrap();
        let new_pr = |from: &str| crate::NewPullRequest {
            repo_id: kept.id,
            from_repo_id: kept.id,
            title: from.into(),
            description: None,
            author_id: alice.id,
            from_ref: format!("refs/heads/{from}"),
            to_ref: "refs/heads/main".into(),
            from_hash: "a".repeat(40),
            to_hash: "b".repeat(40),
            reviewers: vec![root.id],
            merge_outcome: Some("CLEAN".into()),
        };
        let created = |p: &Store, from: &str| match p.insert_pr(&new_pr(from)).unwrap() {
            crate::PrInsert::Created(pr) => pr,
            other => panic!("{other:?}"),
        };
        let pr = created(&s, "feature");
        let said = crate::NewActivity::new(root.id, "COMMENTED", "{}".into());
        let comment = |pr_id: i64, parent_id: Option<i64>| crate::NewComment {
            pr_id,
            parent_id,
            author_id: root.id,
            text: "why?".into(),
            severity: "BLOCKER".into(),
            anchor: Some("{}".into()),
        };
        let top = s.insert_comment(&comment(pr.id, None), &said).unwrap();
        s.insert_comment(&comment(pr.id, Some(top.id)), &said).unwrap();
        s.set_comment_anchors(&[(top.id, "{}".into(), true)]).unwrap();
        s.set_watch(pr.id, root.id, true).unwrap();
        s.set_pr_settings(kept.id, r#"{"requiredApprovers":1}"#).unwrap();
        s.set_project_pr_settings(kept.project_id, r#"{"requiredApprovers":2}"#).unwrap();
        // Audit entries, the oldest pruned: ids continue after every one given.
        let audit = |at: i64, target: &str| crate::NewAuditEntry {
            at,
            actor: "admin".into(),
            address: Some("192.0.2.1".into()),
            action: "user.create".into(),
            target: target.into(),
            details: "{}".into(),
        };
        s.append_audit(&audit(500, "user:pruned")).unwrap();
        s.append_audit(&audit(1_000, "user:first")).unwrap();
        let last_audit = s.append_audit(&audit(1_000, "user:alice")).unwrap();
        assert_eq!(s.delete_audit_before(1_000).unwrap(), 1);
        let gone_pr = created(&s, "gone");
        let gone_comment = s.insert_comment(&comment(gone_pr.id, None), &said).unwrap();
        assert!(matches!(s.delete_pr(gone_pr.id, None).unwrap(), crate::Versioned::Done(())));
        let pr = s.pr_by_id(pr.id).unwrap().unwrap();
        let (comments, log) = (s.comments(pr.id).unwrap(), s.activities(pr.id).unwrap());
        // A deleted account, whose name its work keeps showing.
        let gone = s.create_user(&name("gone"), &Password::new("gone-password").unwrap(), GlobalPermission::LicensedUser).unwrap();
        s.delete_user(&gone.name).unwrap();

        let url = pg.database();
        let report = crate::copy_sqlite_to_postgres(&dir.path().join("trove.db"), &PgOptions::new(&url)).unwrap();
        let count = |t: &str| report.tables.iter().find(|(n, _)| *n == t).unwrap().1;
        assert_eq!((count("users"), count("projects"), count("repositories"), count("tokens"), count("web_sessions")), (2, 1, 2, 1, 1));
        assert_eq!((count("pull_requests"), count("pr_participants"), count("pr_comments"), count("pr_watchers"), count("pr_settings")), (1, 2, 2, 1, 1));
        let groups = (count("user_groups"), count("group_members"), count("project_group_permissions"), count("repo_group_permissions"));
        assert_eq!(groups, (1, 1, 1, 1));
        let restrictions =
            (count("branch_restrictions"), count("branch_restriction_users"), count("branch_restriction_groups"), count("branch_restriction_keys"));
        assert_eq!(restrictions, (1, 1, 1, 1));
        assert_eq!((count("audit_log"), count("project_pr_settings")), (2, 1));
        assert_eq!(count("deleted_users"), 1);

        let d2 = tempfile::tempdir().unwrap();
        let p = Store::open_with(&StoreOptions {
            data_dir: d2.path().to_owned(),
            repositories: None,
            database: Some(PgOptions::new(&url)),
            git_binary: "git".into(),
        })
        .unwrap();
        assert!(p.verify_password("alice", "alice-password").unwrap().is_some());
        assert!(p.verify_token(&token.secret, None).unwrap().is_some());
        assert_eq!(p.session(&session).unwrap().unwrap().csrf, csrf);
        assert_eq!(p.base_url().unwrap().unwrap().as_str(), "https://mycompany.com/stash");
        let got = p.repo(&owner, &kept.slug).unwrap().unwrap();
        assert_eq!(got.id, kept.id, "repository ids name their directories: they must not change");
        let fork_copied = p.repo(&owner, &forked.slug).unwrap().unwrap();
        assert_eq!(p.repo_origin_id(&fork_copied).unwrap(), Some(kept.id), "forks keep their origin");
        assert_eq!(p.related_repos(&got).unwrap(), [fork_copied]);
        let who = Authenticated { user: p.user(&alice.name).unwrap().unwrap(), token_scope: None };
        assert_eq!(p.permission(Some(&who), &got).unwrap(), Some(Permission::Admin), "through the group");
        assert_eq!((who.user.global, who.user.own_global), (Some(GlobalPermission::ProjectCreate), Some(GlobalPermission::LicensedUser)));
        let devs_copied = p.group(&crate::GroupName::parse("devs").unwrap()).unwrap().unwrap();
        assert_eq!((devs_copied.id, devs_copied.name.as_str()), (devs_id, "Devs"));
        assert!(p.insert_group(&crate::GroupName::parse("next").unwrap()).unwrap().id > devs_id);
        assert_eq!(p.restrictions_in_force(&got).unwrap(), std::slice::from_ref(&restriction));
        let next_restriction = p.insert_restrictions(&[restrict(crate::RestrictionScope::Repository(got.id))]).unwrap().remove(0);
        assert!(next_restriction.id > gone_restriction.id, "a deleted restriction's id given again");
        assert_eq!(p.login_row(&alice.name).unwrap().unwrap().failures.map(|f| f.count), Some(1));
        assert_eq!(p.deleted_user(gone.id).unwrap().map(|d| d.name), Some("gone".to_owned()), "a deleted account's name is copied");
        // New rows continue after the copied ones, and never take a deleted repository's id.
        let bob = p.create_user(&name("bob"), &Password::new("bob-password").unwrap(), GlobalPermission::LicensedUser).unwrap();
        assert!(bob.id > alice.id);
        let next = p.create_repo(&owner, &RepoSlug::parse("next").unwrap(), false).unwrap();
        assert!(next.id > gone.id, "id {} of a deleted repository given again", gone.id);
        assert_eq!(p.pr(kept.id, 1).unwrap().unwrap(), pr);
        assert_eq!((p.comments(pr.id).unwrap(), p.activities(pr.id).unwrap()), (comments, log));
        assert_eq!(p.watchers(pr.id).unwrap(), [root.id]);
        assert_eq!(p.pr_settings(kept.id).unwrap().as_deref(), Some(r#"{"requiredApprovers":1}"#));
        assert_eq!(p.project_pr_settings(kept.project_id).unwrap().as_deref(), Some(r#"{"requiredApprovers":2}"#));
        let entries = p.audit_entries(&crate::AuditQuery { oldest_first: true, ..crate::AuditQuery::default() }).unwrap().0;
        assert_eq!(entries.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(), ["user:first", "user:alice"]);
        assert!(p.append_audit(&audit(2_000, "user:bob")).unwrap() > last_audit, "an audit id given again");
        let third = created(&p, "third");
        assert_eq!(third.number, 3, "pull request numbers continue after the deleted one's");
        assert!(third.id > gone_pr.id, "id {} of a deleted pull request given again", gone_pr.id);
        assert!(p.insert_comment(&comment(third.id, None), &said).unwrap().id > gone_comment.id, "a deleted comment's id given again");

        let again = crate::copy_sqlite_to_postgres(&dir.path().join("trove.db"), &PgOptions::new(&url)).unwrap_err();
        assert!(again.to_string().contains("not empty"), "{again}");
    }

    #[test]
    fn a_database_of_an_older_trove_is_brought_up_to_date_before_it_is_copied() {
        let pg = crate::pgtest::TestPg::start();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trove.db");
        // As the trove before pull requests left it: six migrations, one user.
        let old = rusqlite::Connection::open(&path).unwrap();
        for m in &crate::sqlite::migrations::MIGRATIONS[..6] {
            old.execute_batch(m).unwrap();
        }
        old.execute_batch("PRAGMA user_version = 6; INSERT INTO users (name, display_name, created_at) VALUES ('alice', 'Alice', 0);").unwrap();
        drop(old);
        let report = crate::copy_sqlite_to_postgres(&path, &PgOptions::new(&pg.database())).unwrap();
        let count = |t: &str| report.tables.iter().find(|(n, _)| *n == t).unwrap().1;
        assert_eq!((count("users"), count("pull_requests")), (1, 0));
    }

    #[test]
    fn nodes_starting_at_once_on_a_new_postgres_database_migrate_it_once_and_errors_name_the_fix() {
        let pg = crate::pgtest::TestPg::start();
        let url = pg.database();
        // Four nodes start at once on an empty database: the advisory lock lets one migrate, the
        // others wait and find it done.
        let barrier = Arc::new(std::sync::Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (url, barrier) = (url.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    crate::postgres::Postgres::open(&PgOptions::new(&url)).map(|_| ())
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap().expect("every node starting at once opens the database");
        }
        // Unreachable, a database that does not exist, a refused login: each says what to do.
        let err = |url: &str| crate::postgres::Postgres::open(&PgOptions { timeout: std::time::Duration::from_secs(2), ..PgOptions::new(url) }).err().unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let e = err(&format!("postgres://trove@127.0.0.1:{closed}/trove"));
        assert!(e.is_unavailable() && e.to_string().contains("is PostgreSQL running"), "{e}");
        let e = err(&format!("postgres://trove@127.0.0.1:{}/nosuchdb", pg.port()));
        assert!(e.to_string().contains("does not exist") && e.to_string().contains("createdb"), "{e}");
        let e = err(&format!("postgres://nobody@127.0.0.1:{}/postgres", pg.port()));
        assert!(e.to_string().contains("nobody") && e.to_string().contains("[database] url"), "{e}");
        let e = err("mysql://x");
        assert!(e.to_string().contains("postgres://user@host:5432/dbname"), "{e}");
    }
}
