//! SSH public keys: users' keys (they log in as their owner) and access keys (read-only or
//! read-write on one repository or every repository of a project, for CI and deployments).
//!
//! A key is one row whatever it is for, unique across the server by its fingerprint (a key
//! that logs in as one user cannot also be another's, nor an access key). An access key may be
//! granted on several projects and repositories (Bitbucket lets the same key be added to
//! several); it goes when its last grant goes. The key text is parsed and judged (algorithm,
//! size) by the server, which hands the store the canonical text and the fingerprint.

use crate::error::StoreError;
use crate::permissions::Permission;

/// A stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKey {
    pub id: i64,
    /// The user the key logs in as; `None` for an access key.
    pub user_id: Option<i64>,
    pub label: String,
    /// `ssh-ed25519 AAAA…` (algorithm and base64, the comment left out).
    pub text: String,
    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    pub algorithm: String,
    /// The key's size in bits (RSA modulus, ECDSA curve, 256 for Ed25519).
    pub bits: i64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// A key to store ([`SshKeys::insert_user_key`], [`SshKeys::grant_access_key`]).
#[derive(Debug, Clone)]
pub struct NewSshKey {
    pub label: String,
    pub text: String,
    pub fingerprint: String,
    pub algorithm: String,
    pub bits: i64,
}

/// Where an access key is granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyScope {
    Project(i64),
    Repo(i64),
}

/// One grant of an access key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessKey {
    pub key: SshKey,
    pub scope: KeyScope,
    pub permission: Permission,
}

/// The rows of SSH keys.
pub trait SshKeys {
    /// Stores a key for user `user_id`; [`StoreError::SshKeyExists`] if the key is already on
    /// the server (anyone's, or an access key).
    fn insert_user_key(&self, user_id: i64, key: &NewSshKey) -> Result<SshKey, StoreError>;
    /// Grants an access key on `scope` with `permission` (`Read` or `Write`): a key already
    /// used as an access key gets one more grant (or its permission changed there); a user's key
    /// is [`StoreError::SshKeyExists`].
    fn grant_access_key(&self, scope: KeyScope, key: &NewSshKey, permission: Permission) -> Result<AccessKey, StoreError>;
    fn ssh_key(&self, id: i64) -> Result<Option<SshKey>, StoreError>;
    fn ssh_key_by_fingerprint(&self, fingerprint: &str) -> Result<Option<SshKey>, StoreError>;
    /// A user's keys, oldest first.
    fn user_ssh_keys(&self, user_id: i64) -> Result<Vec<SshKey>, StoreError>;
    /// Deletes user `user_id`'s key `id`; `false` if they have none with that id.
    fn delete_user_key(&self, user_id: i64, id: i64) -> Result<bool, StoreError>;
    /// The access keys granted on `scope`, by key id.
    fn access_keys(&self, scope: KeyScope) -> Result<Vec<AccessKey>, StoreError>;
    /// Every grant of access key `key_id`.
    fn access_key_grants(&self, key_id: i64) -> Result<Vec<AccessKey>, StoreError>;
    /// Removes the grant of `key_id` on `scope` (and the key with its last grant); `false` if
    /// there was none.
    fn revoke_access_key(&self, scope: KeyScope, key_id: i64) -> Result<bool, StoreError>;
    /// Records that the key just logged in (best effort); within a minute of the last record
    /// nothing is written.
    fn touch_ssh_key(&self, id: i64) -> Result<(), StoreError>;

    /// What access key `key_id` may do in repository `repo_id` of project `project_id`: the
    /// higher of its grants on the repository and on the project.
    fn access_key_permission(&self, key_id: i64, project_id: i64, repo_id: i64) -> Result<Option<Permission>, StoreError> {
        Ok(self
            .access_key_grants(key_id)?
            .into_iter()
            .filter(|g| g.scope == KeyScope::Project(project_id) || g.scope == KeyScope::Repo(repo_id))
            .map(|g| g.permission)
            .max())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::backends;
    use crate::{GlobalPermission, Owner, Password, ProjectKey, RepoSlug, UserName};

    fn new_key(n: u8) -> NewSshKey {
        NewSshKey {
            label: format!("key {n}"),
            text: format!("ssh-ed25519 AAAA{n}"),
            fingerprint: format!("SHA256:fp{n}"),
            algorithm: "ssh-ed25519".into(),
            bits: 256,
        }
    }

    #[test]
    pub(crate) fn keys_are_unique_across_the_server_and_go_with_their_user() {
        let (dir, s) = backends::store();
        let pw = Password::new("password1").unwrap();
        let alice = s.create_user(&UserName::parse("alice").unwrap(), &pw, GlobalPermission::LicensedUser).unwrap();
        let bob = s.create_user(&UserName::parse("bob").unwrap(), &pw, GlobalPermission::LicensedUser).unwrap();
        let k1 = s.insert_user_key(alice.id, &new_key(1)).unwrap();
        assert_eq!((k1.user_id, k1.label.as_str(), k1.fingerprint.as_str(), k1.last_used_at), (Some(alice.id), "key 1", "SHA256:fp1", None));
        assert!(matches!(s.insert_user_key(bob.id, &new_key(1)), Err(crate::StoreError::SshKeyExists(_))), "another user's key");
        assert!(matches!(s.insert_user_key(alice.id, &new_key(1)), Err(crate::StoreError::SshKeyExists(_))), "the same user's key twice");
        let k2 = s.insert_user_key(alice.id, &new_key(2)).unwrap();
        assert_eq!(s.user_ssh_keys(alice.id).unwrap(), [k1.clone(), k2.clone()]);
        assert_eq!(s.ssh_key_by_fingerprint("SHA256:fp2").unwrap(), Some(k2.clone()));
        s.touch_ssh_key(k2.id).unwrap();
        assert!(s.ssh_key(k2.id).unwrap().unwrap().last_used_at.is_some());
        assert!(!s.delete_user_key(bob.id, k1.id).unwrap(), "only its owner deletes a key");
        assert!(s.delete_user_key(alice.id, k1.id).unwrap());
        assert_eq!(s.ssh_key(k1.id).unwrap(), None);
        // A user's key cannot become an access key.
        let project = s.create_project(&ProjectKey::parse("TP").unwrap(), None, false).unwrap();
        assert!(matches!(s.grant_access_key(KeyScope::Project(project.id), &new_key(2), Permission::Read), Err(crate::StoreError::SshKeyExists(_))));
        s.delete_user(&alice.name).unwrap();
        assert_eq!(backends::count(dir.path(), "ssh_keys"), 0, "a deleted user's keys go with them");
        // A deleted key's id is never given again.
        let k3 = s.insert_user_key(bob.id, &new_key(3)).unwrap();
        assert!(k3.id > k2.id);
    }

    #[test]
    pub(crate) fn access_keys_hold_grants_on_projects_and_repositories_and_go_with_their_last_grant() {
        let (dir, s) = backends::store();
        let key = ProjectKey::parse("TP").unwrap();
        let project = s.create_project(&key, None, false).unwrap();
        let repo = s.create_repo(&Owner::Project(key.clone()), &RepoSlug::parse("r").unwrap(), false).unwrap();
        let other = s.create_repo(&Owner::Project(key), &RepoSlug::parse("o").unwrap(), false).unwrap();
        let g = s.grant_access_key(KeyScope::Repo(repo.id), &new_key(1), Permission::Read).unwrap();
        assert_eq!((g.key.user_id, g.scope, g.permission), (None, KeyScope::Repo(repo.id), Permission::Read));
        // The same key again: the same id, its permission there changed, not a second grant.
        let again = s.grant_access_key(KeyScope::Repo(repo.id), &new_key(1), Permission::Write).unwrap();
        assert_eq!(again.key.id, g.key.id);
        assert_eq!(
            s.access_keys(KeyScope::Repo(repo.id)).unwrap().iter().map(|a| (a.key.id, a.permission)).collect::<Vec<_>>(),
            [(g.key.id, Permission::Write)]
        );
        assert_eq!(s.access_key_permission(g.key.id, project.id, repo.id).unwrap(), Some(Permission::Write));
        assert_eq!(s.access_key_permission(g.key.id, project.id, other.id).unwrap(), None, "a repository's key does not open its neighbours");
        s.grant_access_key(KeyScope::Project(project.id), &new_key(1), Permission::Read).unwrap();
        assert_eq!(s.access_key_permission(g.key.id, project.id, other.id).unwrap(), Some(Permission::Read), "a project's key opens all its repositories");
        assert_eq!(s.access_key_grants(g.key.id).unwrap().len(), 2);
        assert!(matches!(s.insert_user_key(1, &new_key(1)), Err(crate::StoreError::SshKeyExists(_))), "an access key cannot become a user's key");
        assert!(s.revoke_access_key(KeyScope::Repo(repo.id), g.key.id).unwrap());
        assert!(!s.revoke_access_key(KeyScope::Repo(repo.id), g.key.id).unwrap());
        assert!(s.ssh_key(g.key.id).unwrap().is_some(), "the key stays while it has a grant");
        assert_eq!(s.access_key_permission(g.key.id, project.id, repo.id).unwrap(), Some(Permission::Read));
        s.grant_access_key(KeyScope::Repo(other.id), &new_key(2), Permission::Write).unwrap();
        s.delete_repo(&other).unwrap();
        assert_eq!(backends::count(dir.path(), "ssh_access_keys"), 1, "grants go with their repository");
        assert!(s.revoke_access_key(KeyScope::Project(project.id), g.key.id).unwrap());
        assert_eq!(s.ssh_key(g.key.id).unwrap(), None, "an access key goes with its last grant");
    }
}
