//! Personal access tokens: only a hash of each secret is kept.

use crate::error::StoreError;
use crate::permissions::Permission;
use crate::users::User;

/// What a personal access token may do at most.
pub type TokenScope = Permission;

/// A token as handed to its owner, once: only its hash is stored.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: i64,
    pub secret: String,
}

/// A personal access token as its owner sees it in a list (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub scope: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    /// Unix seconds from which the token no longer authenticates; `None`: never expires.
    pub expires_at: Option<i64>,
}

/// A token's row, as [`crate::Store::verify_token`] checks it.
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub user_id: i64,
    pub secret_hash: String,
    pub scope: String,
    /// Unix seconds from which the token no longer authenticates; `None`: never.
    pub expires_at: Option<i64>,
}

/// The rows of tokens ([`crate::Store::create_token`] makes the secret and its hash).
pub trait Tokens {
    /// Stores a token's hash, expiring at `expires_at` (Unix seconds; `None`: never); returns its id.
    fn insert_token(&self, user_id: i64, label: &str, secret_hash: &str, scope: TokenScope, expires_at: Option<i64>) -> Result<i64, StoreError>;
    fn token_row(&self, id: i64) -> Result<Option<TokenRow>, StoreError>;
    /// Records that the token was just used (best effort). Within a minute of the last record
    /// nothing is written: every request of a busy CI would otherwise be a disk sync.
    fn touch_token(&self, id: i64) -> Result<(), StoreError>;
    fn tokens(&self, user: &User) -> Result<Vec<TokenInfo>, StoreError>;
    /// Revokes one of `user`'s tokens; `false` if they have no token with that id.
    fn revoke_token(&self, user: &User, id: i64) -> Result<bool, StoreError>;
    /// Renames one of `user`'s tokens and/or changes its scope (what is `None` stays); `false`
    /// if they have no token with that id.
    fn update_token(&self, user: &User, id: i64, label: Option<&str>, scope: Option<TokenScope>) -> Result<bool, StoreError>;
}
