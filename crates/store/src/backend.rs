//! The store's interfaces: one trait per entity, and [`Backend`], all of them together.
//!
//! A backend keeps rows; it knows SQL, not policy. What every backend must do the same way
//! (hashing passwords and token secrets, the login-failure policy, combining grants into a
//! permission, making a repository's directory beside its row) lives once, in
//! [`Store`](crate::Store) or in a trait's provided methods. The embedded SQLite database
//! ([`crate::sqlite`]) is one backend; PostgreSQL ([`crate::Postgres`]) is the other.
//!
//! Every method blocks (it runs SQL). On an async runtime, call through
//! [`Store::run`](crate::Store::run), which moves the call to the blocking pool.

pub use crate::audit::Audit;
pub use crate::branch_permissions::BranchRestrictions;
pub use crate::builds::Builds;
pub use crate::commit_comments::CommitComments;
pub use crate::grants::Grants;
pub use crate::groups::Groups;
pub use crate::leases::Leases;
pub use crate::logins::Logins;
pub use crate::projects::Projects;
pub use crate::pull_requests::PullRequests;
pub use crate::repos::Repos;
pub use crate::sessions::Sessions;
pub use crate::settings::Settings;
pub use crate::ssh_keys::SshKeys;
pub use crate::tokens::Tokens;
pub use crate::users::Users;
pub use crate::webhooks::Webhooks;

/// Everything the server keeps in its metadata database.
pub trait Backend:
    Users
    + Groups
    + Projects
    + Repos
    + Grants
    + Tokens
    + Sessions
    + Settings
    + Logins
    + Leases
    + PullRequests
    + BranchRestrictions
    + Audit
    + Webhooks
    + CommitComments
    + Builds
    + SshKeys
    + Send
    + Sync
    + 'static
{
    /// What a log line or an error names this backend by (`SQLite /data/trove.db`).
    fn describe(&self) -> String;

    /// The connection pool's figures, for the metrics; `None` for a backend without one.
    fn pool_stats(&self) -> Option<crate::PoolStats> {
        None
    }
}
