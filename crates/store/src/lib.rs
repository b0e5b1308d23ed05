//! trove-store: bare repositories on disk and the metadata database.
//!
//! Names are validated once, here, into types that are valid by construction
//! ([`ProjectKey`], [`RepoSlug`], [`UserName`]). The metadata (users, projects, repositories,
//! permissions at Bitbucket's three levels, personal access tokens, sessions, settings) sits
//! behind one trait per entity ([`backend`]); the embedded SQLite database is the backend
//! today. [`Store`] adds what every backend shares and keeps the repositories themselves as
//! bare git directories named by numeric id.

pub mod backend;
mod copy;
mod error;
mod grants;
mod leases;
mod logins;
mod names;
mod password;
mod permissions;
#[cfg(any(test, feature = "pg-test"))]
pub mod pgtest;
mod postgres;
mod projects;
mod repos;
mod sessions;
mod settings;
mod sqlite;
mod store;
mod tokens;
mod users;

pub use backend::Backend;
pub use copy::{CopyReport, copy_sqlite_to_postgres};
pub use error::StoreError;
pub use grants::{Grants, RepoGrantRows};
pub use leases::Leases;
pub use logins::{Failures, LoginLock, LoginPolicy, LoginRow, Logins, PasswordCheck};
pub use names::{MAX_NAME_LEN, NameError, Owner, ProjectKey, RepoSlug, UserName};
pub use password::{MIN_PASSWORD_LEN, Password, PasswordError, os_rng};
pub use permissions::{GlobalPermission, GlobalPermissionError, Permission, PermissionError, PermissionFacts, effective_permission};
pub use postgres::{PgOptions, PoolStats, Postgres};
pub use projects::{Project, ProjectInfo, ProjectUpdate, Projects};
pub use repos::{Repo, RepoUpdate, Repos, git_env};
pub use sessions::{Session, Sessions};
pub use settings::{BaseUrl, ContextPath, SettingError, Settings, normalize_origin};
pub use sqlite::Sqlite;
pub use store::{Authenticated, Store, StoreOptions};
pub use tokens::{NewToken, TokenInfo, TokenRow, TokenScope, Tokens};
pub use users::{User, Users};

/// The entity traits, so that `store.user(&name)` and the like resolve: `use trove_store::prelude::*`.
pub mod prelude {
    pub use crate::backend::{Backend, Grants, Leases, Logins, Projects, Repos, Sessions, Settings, Tokens, Users};
}
