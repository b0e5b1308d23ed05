//! Leases: a named, cluster-wide lock with an expiry, held by one node at a time (maintenance of
//! a repository on shared storage takes `maintenance:<id>`, so two nodes never repack it at
//! once). Kept in the database every node shares; a node that dies loses its leases when they
//! expire.

use crate::error::StoreError;

/// The rows of leases.
pub trait Leases {
    /// Takes `name` for `holder` for `secs` seconds: `true` when it was free, expired, or already
    /// `holder`'s (then renewed); `false` while another holder has it.
    fn take_lease(&self, name: &str, holder: &str, secs: i64) -> Result<bool, StoreError>;
    /// Gives `name` back, if `holder` has it.
    fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError>;
}
