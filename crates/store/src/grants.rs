//! Permissions granted to users on projects and repositories, and what they add up to.

use crate::error::StoreError;
use crate::names::{Owner, ProjectKey, RepoSlug, UserName};
use crate::permissions::{self, Permission, PermissionFacts};
use crate::projects::{Project, ProjectInfo};
use crate::repos::Repo;
use crate::store::Authenticated;
use crate::users::User;

/// What the database holds about one user and one repository, for [`Grants::permission`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepoGrantRows {
    /// The repository's project is this user's personal project.
    pub owns_personal_project: bool,
    pub project_default: Option<Permission>,
    pub project_grant: Option<Permission>,
    pub repo_grant: Option<Permission>,
}

/// The rows of grants. The rules that combine them are `effective_permission`, shared by every
/// backend through the provided methods.
pub trait Grants {
    fn grant_project(&self, user: &UserName, key: &ProjectKey, perm: Permission) -> Result<(), StoreError>;
    fn grant_repo(&self, user: &UserName, owner: &Owner, slug: &RepoSlug, perm: Permission) -> Result<(), StoreError>;
    fn revoke_project(&self, user: &UserName, project: &Project) -> Result<(), StoreError>;
    fn revoke_repo(&self, user: &UserName, repo: &Repo) -> Result<(), StoreError>;
    /// Users granted a permission on the project, by name.
    fn project_permissions(&self, project: &Project) -> Result<Vec<(UserName, Permission)>, StoreError>;
    /// Users granted a permission on the repository itself, by name.
    fn repo_permissions(&self, repo: &Repo) -> Result<Vec<(UserName, Permission)>, StoreError>;
    /// The permission granted to `user` on the project itself (not via a repository).
    fn project_grant(&self, user: &User, project_id: i64) -> Result<Option<Permission>, StoreError>;
    /// The grant rows that bear on `user_id` and `repo`.
    fn repo_grant_rows(&self, user_id: i64, repo: &Repo) -> Result<RepoGrantRows, StoreError>;

    /// What `who` (or an anonymous caller, for `None`) may do with `repo`; `None` means nothing,
    /// not even read.
    fn permission(&self, who: Option<&Authenticated>, repo: &Repo) -> Result<Option<Permission>, StoreError> {
        let mut facts = PermissionFacts { project_public: repo.project_public, repo_public: repo.public, ..Default::default() };
        if let Some(a) = who {
            let rows = self.repo_grant_rows(a.user.id, repo)?;
            facts.authenticated = true;
            facts.global = a.user.global;
            facts.cap = a.token_scope;
            facts.owns_personal_project = rows.owns_personal_project;
            facts.project_default = rows.project_default;
            facts.project_grant = rows.project_grant;
            facts.repo_grant = rows.repo_grant;
        }
        Ok(permissions::effective_permission(&facts))
    }

    /// What `who` (`None`: anonymous) may do on the project as a whole: its public flag, grants
    /// on the project, its default permission, global admin and personal ownership. Repository
    /// grants do not count here.
    fn project_permission(&self, who: Option<&Authenticated>, project: &ProjectInfo) -> Result<Option<Permission>, StoreError> {
        let mut facts = PermissionFacts { project_public: project.public, ..Default::default() };
        if let Some(a) = who {
            facts.authenticated = true;
            facts.global = a.user.global;
            facts.cap = a.token_scope;
            facts.owns_personal_project = project.owner_user_id == Some(a.user.id);
            // Personal projects have no default permission for everyone.
            facts.project_default = if project.owner_user_id.is_none() { project.default_permission } else { None };
            facts.project_grant = self.project_grant(&a.user, project.id)?;
        }
        Ok(permissions::effective_permission(&facts))
    }
}
