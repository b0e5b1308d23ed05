//! Permissions granted to users on projects and repositories, and what they add up to with the
//! grants of the users' groups.

use crate::error::StoreError;
use crate::names::{Owner, ProjectKey, RepoSlug, UserName};
use crate::permissions::{self, Permission, PermissionFacts};
use crate::projects::{Project, ProjectInfo};
use crate::repos::Repo;
use crate::store::Authenticated;

/// One grant that bears on a user's permission on a project or repository: their own, or one of
/// their groups'.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldGrant {
    /// `None`: granted to the user themself; `Some(id)`: to group `id`, of which they are a member.
    pub group_id: Option<i64>,
    pub permission: Permission,
}

/// What the database holds about one user and one repository, for [`Grants::permission`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoGrantRows {
    /// The repository's project is this user's personal project.
    pub owns_personal_project: bool,
    pub project_default: Option<Permission>,
    /// The grants on the repository's project to the user and to each of their groups.
    pub project_grants: Vec<HeldGrant>,
    /// The grants on the repository itself to the user and to each of their groups.
    pub repo_grants: Vec<HeldGrant>,
}

/// A group's grant as it would be after a change that is not made yet: `(group id, new grant)`.
pub type GroupChange = (i64, Option<Permission>);

/// The highest of `grants`, with group `change.0`'s grant replaced by `change.1`: a user holds the
/// best of their own grant and their groups' (Bitbucket's rule; groups only ever add). A group
/// holding nothing here is a group the user gains nothing from yet, and a new grant cannot lower
/// anything, so a change to it is left out.
fn highest(grants: &[HeldGrant], change: Option<GroupChange>) -> Option<Permission> {
    grants
        .iter()
        .filter_map(|g| match change {
            Some((id, to)) if g.group_id == Some(id) => to,
            _ => Some(g.permission),
        })
        .max()
}

/// The rows of grants. The rules that combine them are `effective_permission`, shared by every
/// backend through the provided methods; a user's grant at a level is the highest of their own
/// and their groups' ([`highest`]).
pub trait Grants {
    fn grant_project(&self, user: &UserName, key: &ProjectKey, perm: Permission) -> Result<(), StoreError>;
    fn grant_repo(&self, user: &UserName, owner: &Owner, slug: &RepoSlug, perm: Permission) -> Result<(), StoreError>;
    fn revoke_project(&self, user: &UserName, project: &Project) -> Result<(), StoreError>;
    fn revoke_repo(&self, user: &UserName, repo: &Repo) -> Result<(), StoreError>;
    /// Users granted a permission on the project, by name.
    fn project_permissions(&self, project: &Project) -> Result<Vec<(UserName, Permission)>, StoreError>;
    /// Users granted a permission on the repository itself, by name.
    fn repo_permissions(&self, repo: &Repo) -> Result<Vec<(UserName, Permission)>, StoreError>;
    /// The grants on the project itself (not via a repository) to `user_id` and to each of
    /// their groups.
    fn project_grants(&self, user_id: i64, project_id: i64) -> Result<Vec<HeldGrant>, StoreError>;
    /// The grant rows that bear on `user_id` and `repo`, their groups' included.
    fn repo_grant_rows(&self, user_id: i64, repo: &Repo) -> Result<RepoGrantRows, StoreError>;

    /// What `who` (or an anonymous caller, for `None`) may do with `repo`; `None` means nothing,
    /// not even read.
    fn permission(&self, who: Option<&Authenticated>, repo: &Repo) -> Result<Option<Permission>, StoreError> {
        self.permission_if(who, repo, None)
    }

    /// [`Grants::permission`] as it would be if a group's grant on the repository itself were
    /// changed (`change`; `None`: as it is): to refuse a change that would lower the caller's
    /// own permission, as Bitbucket does.
    fn permission_if(&self, who: Option<&Authenticated>, repo: &Repo, change: Option<GroupChange>) -> Result<Option<Permission>, StoreError> {
        let mut facts = PermissionFacts { project_public: repo.project_public, repo_public: repo.public, ..Default::default() };
        if let Some(a) = who {
            let rows = self.repo_grant_rows(a.user.id, repo)?;
            facts.authenticated = true;
            // The effective global permission, groups' included (see `crate::users`).
            facts.global = a.user.global;
            facts.cap = a.token_scope;
            facts.owns_personal_project = rows.owns_personal_project;
            facts.project_default = rows.project_default;
            facts.project_grant = highest(&rows.project_grants, None);
            facts.repo_grant = highest(&rows.repo_grants, change);
        }
        Ok(permissions::effective_permission(&facts))
    }

    /// What `who` (`None`: anonymous) may do on the project as a whole: its public flag, grants
    /// on the project (to them or their groups), its default permission, global admin and
    /// personal ownership. Repository grants do not count here.
    fn project_permission(&self, who: Option<&Authenticated>, project: &ProjectInfo) -> Result<Option<Permission>, StoreError> {
        self.project_permission_if(who, project, None)
    }

    /// [`Grants::project_permission`] as it would be if a group's grant on the project were
    /// changed (`change`; `None`: as it is).
    fn project_permission_if(&self, who: Option<&Authenticated>, project: &ProjectInfo, change: Option<GroupChange>) -> Result<Option<Permission>, StoreError> {
        let mut facts = PermissionFacts { project_public: project.public, ..Default::default() };
        if let Some(a) = who {
            facts.authenticated = true;
            facts.global = a.user.global;
            facts.cap = a.token_scope;
            facts.owns_personal_project = project.owner_user_id == Some(a.user.id);
            // Personal projects have no default permission for everyone.
            facts.project_default = if project.owner_user_id.is_none() { project.default_permission } else { None };
            facts.project_grant = highest(&self.project_grants(a.user.id, project.id)?, change);
        }
        Ok(permissions::effective_permission(&facts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::{Admin, Read, Write};

    #[test]
    fn a_users_grant_is_the_highest_of_their_own_and_their_groups() {
        let own = |p| HeldGrant { group_id: None, permission: p };
        let group = |id, p| HeldGrant { group_id: Some(id), permission: p };
        type Case = (&'static str, Vec<HeldGrant>, Option<GroupChange>, Option<Permission>);
        let cases: Vec<Case> = vec![
            ("nothing", vec![], None, None),
            ("own only", vec![own(Read)], None, Some(Read)),
            ("a group's is higher", vec![own(Read), group(1, Admin)], None, Some(Admin)),
            ("own is higher", vec![own(Write), group(1, Read)], None, Some(Write)),
            ("two groups", vec![group(1, Read), group(2, Write)], None, Some(Write)),
            ("the group lowered", vec![own(Read), group(1, Admin)], Some((1, Some(Write))), Some(Write)),
            ("the group revoked", vec![own(Read), group(1, Admin)], Some((1, None)), Some(Read)),
            ("another group still grants", vec![group(1, Admin), group(2, Admin)], Some((1, None)), Some(Admin)),
            ("a group without a grant here", vec![own(Read)], Some((3, Some(Admin))), Some(Read)),
        ];
        for (name, grants, change, want) in cases {
            assert_eq!(highest(&grants, change), want, "{name}");
        }
    }
}
