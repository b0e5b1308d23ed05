//! User accounts: names, display names, e-mail, the global permission, enabled or not.
//!
//! A user's global permission is the highest of their own grant and their groups' grants
//! ([`crate::Groups`]), worked out whenever the account is read, so every caller of
//! [`Users::user`] (authentication by password, token or session included) sees the effective
//! one in [`User::global`] and a group's change counts from the next request on.

use crate::error::StoreError;
use crate::names::UserName;
use crate::permissions::GlobalPermission;

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub name: UserName,
    pub display_name: String,
    pub email: Option<String>,
    /// The global permission the user holds: the highest of their own grant and their groups'.
    /// This is what decides (logging in, administration, creating projects).
    pub global: Option<GlobalPermission>,
    /// The global permission granted to the user themself, without their groups': what
    /// [`Users::set_global_permission`] sets and what lists of users' grants show.
    pub own_global: Option<GlobalPermission>,
    pub active: bool,
}

impl User {
    /// Active and holding a global permission (at least LICENSED_USER), as Bitbucket requires.
    pub fn may_log_in(&self) -> bool {
        self.active && self.global.is_some()
    }
}

/// The highest of a user's own global permission and their groups' (`via_groups`).
pub(crate) fn effective_global(own: Option<GlobalPermission>, via_groups: impl IntoIterator<Item = GlobalPermission>) -> Option<GlobalPermission> {
    via_groups.into_iter().map(Some).chain([own]).max().flatten()
}

/// The rows of user accounts. Passwords arrive hashed ([`crate::Store::create_user`] hashes).
pub trait Users {
    /// A new account; `UserExists` when the name is taken (case-insensitively), decided by the
    /// database so two concurrent creations cannot both pass a check.
    fn insert_user(&self, name: &UserName, password_hash: &str, global: GlobalPermission) -> Result<User, StoreError>;
    fn user(&self, name: &UserName) -> Result<Option<User>, StoreError>;
    fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError>;
    /// Every account, by name.
    fn users(&self) -> Result<Vec<User>, StoreError>;
    /// The stored password hash: `None` for no such user, `Some(None)` for an account without
    /// a password.
    fn password_hash(&self, name: &UserName) -> Result<Option<Option<String>>, StoreError>;
    /// Replaces the password hash; a new password is a fresh start, so failures and a lock
    /// from guesses at the old one go too.
    fn set_password_hash(&self, name: &UserName, hash: &str) -> Result<(), StoreError>;
    /// Sets the user's own global permission (their groups' are the groups').
    fn set_global_permission(&self, name: &UserName, global: Option<GlobalPermission>) -> Result<(), StoreError>;
    /// Enables or disables an account; disabling also ends its sessions.
    fn set_user_active(&self, name: &UserName, active: bool) -> Result<(), StoreError>;
    /// Sets a user's display name and e-mail address (`None` leaves one as it is; an empty
    /// address removes it).
    fn set_user_details(&self, name: &UserName, display_name: Option<&str>, email: Option<&str>) -> Result<(), StoreError>;
    /// Removes the account's row, in one transaction with what keeps its content readable: its
    /// name and display name are kept ([`Users::deleted_user`]) for the pull requests, comments
    /// and activities that name its id, and its personal project stays, without an owner (as
    /// Bitbucket keeps a deleted user's personal repositories; administrators see them). Grants,
    /// group memberships, tokens, SSH keys, sessions, failed logins, participations and watches
    /// go with the row.
    fn delete_user_rows(&self, name: &UserName) -> Result<(), StoreError>;
    /// The name and display name a deleted account had; `None` for an id no deleted account had.
    fn deleted_user(&self, id: i64) -> Result<Option<DeletedUser>, StoreError>;
    /// Gives the account `user` the personal project of its name back when that project has no
    /// owner (its earlier account was deleted); `true` when it did.
    fn adopt_personal_project(&self, user: &User) -> Result<bool, StoreError>;
}

/// What is kept of a deleted account: enough to name it where its work stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedUser {
    pub id: i64,
    pub name: String,
    pub display_name: String,
    /// Unix seconds.
    pub deleted_at: i64,
}
