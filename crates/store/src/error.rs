//! The store's one error type; each variant names what was at fault.

use std::path::PathBuf;

use crate::names::NameError;
use crate::password::PasswordError;
use crate::settings::SettingError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Setting(#[from] SettingError),
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("metadata database {path}: {source}")]
    Database { path: PathBuf, source: rusqlite::Error },
    /// PostgreSQL refused or failed; `unavailable` when it could not be reached at all (the
    /// server answers 503 then, and recovers by itself when the database is back).
    #[error("PostgreSQL at {target}: {message}")]
    Postgres { target: String, message: String, unavailable: bool },
    #[error("metadata database {path} has schema version {found}, newer than this trove knows ({known}); run a newer trove")]
    SchemaTooNew { path: PathBuf, found: i64, known: i64 },
    #[error("user {0} already exists")]
    UserExists(String),
    #[error("user {0} does not exist; create it with `trove admin user add {0}`")]
    NoSuchUser(String),
    #[error("group {0} already exists")]
    GroupExists(String),
    #[error("group {0} does not exist; create it with `trove admin group add {0}`")]
    NoSuchGroup(String),
    #[error("project {0} already exists")]
    ProjectExists(String),
    #[error("project {0} does not exist; create it with `trove admin project add {0}`")]
    NoSuchProject(String),
    #[error("repository {0} already exists")]
    RepoExists(String),
    #[error("repository {0} does not exist")]
    NoSuchRepo(String),
    /// A change would leave two open pull requests between the same refs (a reopen, or a new
    /// target, racing another pull request); the open one's number.
    #[error("an open pull request between the same branches already exists (#{0}); change that one instead")]
    DuplicatePr(i64),
    /// The SSH key (its fingerprint) is already on the server, as someone's key or an access key.
    #[error("this SSH key ({0}) is already in use on this server; each key may be added only once")]
    SshKeyExists(String),
    #[error("cannot create repository directory {path}: {source}")]
    RepoDir { path: PathBuf, source: std::io::Error },
    #[error("`git init` for {path} failed: {detail}; check that git is installed, or name it with `[git] binary` (trove server) or `--git` (trove admin)")]
    GitInit { path: PathBuf, detail: String },
    /// A fork's `git clone` of its origin failed (three tries); nothing was left behind.
    #[error(
        "`git clone` of the origin into {path} failed: {detail}; check that git is installed (or named with `[git] binary`) and that the origin is intact (`git fsck`)"
    )]
    GitClone { path: PathBuf, detail: String },
}

impl StoreError {
    /// The database could not be reached (down, restarting, pool exhausted): a retry later may
    /// succeed, so callers answer 503 rather than 500.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Postgres { unavailable: true, .. })
    }

    pub(crate) fn db(path: &std::path::Path) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Database { path: path.to_owned(), source }
    }
}
