//! trove-store: bare repositories on disk and the metadata database.
//!
//! Names are validated once, here, into types that are valid by construction
//! ([`ProjectKey`], [`RepoSlug`], [`UserName`], [`GroupName`]). The metadata (users, groups,
//! projects, repositories, permissions at Bitbucket's three levels, personal access tokens,
//! sessions, settings, pull requests, comments on commits, branch permissions, the audit log, webhooks and their outbox, build statuses and Code Insights) sits behind one trait per entity ([`backend`]), on the
//! embedded SQLite database or on PostgreSQL. [`Store`] adds what every backend shares and keeps
//! the repositories themselves as bare git directories named by numeric id.

mod audit;
pub mod backend;
mod branch_permissions;
mod builds;
mod commit_comments;
mod copy;
mod error;
mod grants;
mod groups;
mod leases;
mod logins;
mod names;
mod password;
mod permissions;
#[cfg(any(test, feature = "pg-test"))]
pub mod pgtest;
mod postgres;
mod projects;
mod pull_requests;
mod repos;
mod sessions;
mod settings;
mod sqlite;
mod ssh_keys;
mod store;
mod tokens;
mod users;
mod webhooks;

pub use audit::{Audit, AuditEntry, AuditQuery, NewAuditEntry};
pub use backend::Backend;
pub use branch_permissions::{
    ANY_REF_MATCHER_ID, BranchRestrictions, MAX_MATCHER_LEN, Matcher, MatcherError, MatcherType, NewRestriction, RefChange, Restriction, RestrictionScope,
    RestrictionType, pattern_matches,
};
pub use builds::{
    Annotation, BuildState, BuildStatus, Builds, InsightReport, MAX_ANNOTATIONS, NewAnnotation, RequiredBuild, RequiredBuildSpec, TestResults, latest_per_key,
};
pub use commit_comments::{CommitComment, CommitComments, NewCommitComment};
pub use copy::{CopyReport, copy_sqlite_to_postgres};
pub use error::StoreError;
pub use grants::{Grants, GroupChange, HeldGrant, RepoGrantRows};
pub use groups::{Group, Groups};
pub use leases::Leases;
pub use logins::{Failures, LoginLock, LoginPolicy, LoginRow, Logins, PasswordCheck};
pub use names::{GroupName, MAX_NAME_LEN, NameError, Owner, ProjectKey, RepoSlug, UserName};
pub use password::{MIN_PASSWORD_LEN, Password, PasswordError, os_rng};
pub use permissions::{GlobalPermission, GlobalPermissionError, Permission, PermissionError, PermissionFacts, effective_permission};
pub use postgres::{PgOptions, PoolStats, Postgres};
pub use projects::{Project, ProjectInfo, ProjectUpdate, Projects};
pub use pull_requests::{
    Activity, Comment, CommentChange, CommentDelete, NewActivity, NewComment, NewPullRequest, Participant, ParticipantFilter, PrChange, PrInsert, PrQuery,
    PrState, PullRequest, PullRequests, ReviewStatus, Role, Versioned,
};
pub use repos::{Repo, RepoUpdate, Repos, git_env};
pub use sessions::{Session, Sessions};
pub use settings::{BaseUrl, ContextPath, SettingError, Settings, normalize_origin};
pub use sqlite::Sqlite;
pub use ssh_keys::{AccessKey, KeyScope, NewSshKey, SshKey, SshKeys};
pub use store::{Authenticated, Store, StoreOptions};
pub use tokens::{NewToken, TokenInfo, TokenRow, TokenScope, Tokens};
pub use users::{DeletedUser, User, Users};
pub use webhooks::{Attempt, Breaker, Claimed, Delivery, DeliveryCounts, DeliveryState, NewEvent, NewWebhook, Next, Outcome, Render, Webhook, Webhooks};

/// The entity traits, so that `store.user(&name)` and the like resolve: `use trove_store::prelude::*`.
pub mod prelude {
    pub use crate::backend::{
        Audit, Backend, BranchRestrictions, Builds, CommitComments, Grants, Groups, Leases, Logins, Projects, PullRequests, Repos, Sessions, Settings, SshKeys,
        Tokens, Users, Webhooks,
    };
}
