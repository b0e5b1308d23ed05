//! trove-store: bare repositories on disk and the metadata database.
//!
//! Names are validated once, here, into types that are valid by construction
//! ([`ProjectKey`], [`RepoSlug`], [`UserName`]); the [`Store`] keeps users, projects,
//! repositories, permissions at Bitbucket's three levels, personal access tokens and settings
//! in SQLite, and the repositories themselves as bare git directories named by numeric id.

mod error;
mod logins;
mod migrations;
mod names;
mod password;
mod permissions;
mod queries;
mod repos;
mod settings;
mod store;
mod web;

pub use error::StoreError;
pub use logins::{LoginLock, LoginPolicy, PasswordCheck};
pub use names::{MAX_NAME_LEN, NameError, Owner, ProjectKey, RepoSlug, UserName};
pub use password::{MIN_PASSWORD_LEN, Password, PasswordError};
pub use permissions::{GlobalPermission, GlobalPermissionError, Permission, PermissionError, PermissionFacts, effective_permission};
pub use queries::{ProjectInfo, ProjectUpdate, RepoUpdate};
pub use repos::git_env;
pub use settings::{BaseUrl, ContextPath, SettingError, normalize_origin};
pub use store::{Authenticated, NewToken, Project, Repo, Store, TokenScope, User};
pub use web::{Session, TokenInfo};
