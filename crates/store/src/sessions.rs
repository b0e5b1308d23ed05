//! Browser sessions, looked up by a hash of their id, each with the CSRF token its forms carry.

use crate::error::StoreError;
use crate::names::UserName;
use crate::users::User;

/// A logged-in browser: who, and the token every form of theirs must carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf: String,
}

/// The rows of sessions ([`crate::Store::create_session`] makes the ids).
pub trait Sessions {
    /// Stores a session; expired ones are swept at the same time, so the table stays small
    /// without a timer.
    fn insert_session(&self, id_hash: &str, user_id: i64, csrf: &str, now: i64, expires_at: i64) -> Result<(), StoreError>;
    /// The user and CSRF token of a session alive at `now`.
    fn session_row(&self, id_hash: &str, now: i64) -> Result<Option<(i64, String)>, StoreError>;
    fn delete_session_row(&self, id_hash: &str) -> Result<(), StoreError>;
    /// Ends every session of a user (after a password reset or when the account is disabled).
    fn delete_user_sessions(&self, user: &UserName) -> Result<(), StoreError>;
}
