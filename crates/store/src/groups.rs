//! Groups of users, as Bitbucket has them: members, and permissions granted to a group at the
//! global, project and repository levels, which every member holds.
//!
//! A group adds to its members' permissions and never takes away: a user's permission at each
//! level is the highest of their own grant and their groups' grants there. The repository and
//! project levels are combined in [`crate::Grants`] (the grant rows of a user include their
//! groups'); the global level when a [`User`] is read (its `global` is the effective one, its
//! `own_global` the user's own grant).

use crate::error::StoreError;
use crate::names::{GroupName, Owner, ProjectKey, RepoSlug, UserName};
use crate::permissions::{GlobalPermission, Permission};
use crate::projects::Project;
use crate::repos::Repo;
use crate::users::User;

/// A group of users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: i64,
    pub name: GroupName,
    /// The global permission granted to the group, which each member holds.
    pub global: Option<GlobalPermission>,
}

/// The rows of groups, their members and their grants. Every method that takes a group's name
/// finds it without regard to case and answers `NoSuchGroup` for none.
pub trait Groups {
    /// A new group; `GroupExists` when the name is taken, case-insensitively, decided by the
    /// database so two concurrent creations cannot both pass a check.
    fn insert_group(&self, name: &GroupName) -> Result<Group, StoreError>;
    fn group(&self, name: &GroupName) -> Result<Option<Group>, StoreError>;
    /// Every group, by name (ignoring case).
    fn groups(&self) -> Result<Vec<Group>, StoreError>;
    /// Removes a group with its memberships and its grants at every level.
    fn delete_group(&self, name: &GroupName) -> Result<(), StoreError>;
    /// Makes `user` a member of `group` (already being one is no error).
    fn add_group_member(&self, group: &GroupName, user: &UserName) -> Result<(), StoreError>;
    /// Ends `user`'s membership of `group` (not being a member is no error).
    fn remove_group_member(&self, group: &GroupName, user: &UserName) -> Result<(), StoreError>;
    /// The group's members, by name.
    fn group_members(&self, group: &Group) -> Result<Vec<User>, StoreError>;
    /// The groups `user_id` is a member of, by name.
    fn user_groups(&self, user_id: i64) -> Result<Vec<Group>, StoreError>;
    /// Sets the group's global permission (`None` removes it).
    fn set_group_global_permission(&self, group: &GroupName, global: Option<GlobalPermission>) -> Result<(), StoreError>;
    fn grant_group_project(&self, group: &GroupName, key: &ProjectKey, perm: Permission) -> Result<(), StoreError>;
    fn grant_group_repo(&self, group: &GroupName, owner: &Owner, slug: &RepoSlug, perm: Permission) -> Result<(), StoreError>;
    fn revoke_group_project(&self, group: &GroupName, project: &Project) -> Result<(), StoreError>;
    fn revoke_group_repo(&self, group: &GroupName, repo: &Repo) -> Result<(), StoreError>;
    /// Groups granted a permission on the project, by name.
    fn project_group_permissions(&self, project: &Project) -> Result<Vec<(Group, Permission)>, StoreError>;
    /// Groups granted a permission on the repository itself, by name.
    fn repo_group_permissions(&self, repo: &Repo) -> Result<Vec<(Group, Permission)>, StoreError>;
    /// How many projects and repositories the group holds a grant on.
    fn group_grant_count(&self, group_id: i64) -> Result<i64, StoreError>;

    /// The global permission `user` would hold if group `group_id` held `to` instead of what it
    /// holds: to refuse a change that would lower the caller's own permission, as Bitbucket does.
    fn global_permission_if(&self, user: &User, group_id: i64, to: Option<GlobalPermission>) -> Result<Option<GlobalPermission>, StoreError> {
        let groups = self.user_groups(user.id)?;
        let via_groups = groups.iter().filter_map(|g| if g.id == group_id { to } else { g.global });
        Ok(crate::users::effective_global(user.own_global, via_groups))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::backends;
    use crate::{Authenticated, Password, ProjectInfo, Store};
    use Permission::{Admin, Read, Write};

    fn group(s: &str) -> GroupName {
        GroupName::parse(s).unwrap()
    }

    fn user(s: &Store, name: &str, global: GlobalPermission) -> User {
        s.create_user(&UserName::parse(name).unwrap(), &Password::new("password1").unwrap(), global).unwrap()
    }

    /// The account as it is now, read again, as authentication reads it on each request.
    fn now_as(s: &Store, u: &User) -> Authenticated {
        Authenticated { user: s.user(&u.name).unwrap().unwrap(), token_scope: None }
    }

    fn project(s: &Store, key: &str) -> ProjectInfo {
        s.project_info(&Owner::parse(key).unwrap()).unwrap().unwrap()
    }

    #[test]
    pub(crate) fn group_names_are_unique_without_regard_to_case_and_shown_as_created() {
        let (_d, s) = backends::store();
        let dev = s.insert_group(&group("Developers")).unwrap();
        assert_eq!(dev.name.as_str(), "Developers");
        assert!(matches!(s.insert_group(&group("developers")), Err(StoreError::GroupExists(_))));
        assert_eq!(s.group(&group("DEVELOPERS")).unwrap(), Some(dev.clone()));
        s.insert_group(&group("admins")).unwrap();
        s.insert_group(&group("Zeta team")).unwrap();
        let names: Vec<String> = s.groups().unwrap().into_iter().map(|g| g.name.to_string()).collect();
        assert_eq!(names, ["admins", "Developers", "Zeta team"], "by name, ignoring case");
        assert!(s.group(&group("nobody")).unwrap().is_none());
        assert!(matches!(s.delete_group(&group("nobody")), Err(StoreError::NoSuchGroup(_))));
        let alice = UserName::parse("alice").unwrap();
        assert!(matches!(s.add_group_member(&group("nobody"), &alice), Err(StoreError::NoSuchGroup(_))));
        assert!(matches!(s.add_group_member(&group("admins"), &alice), Err(StoreError::NoSuchUser(_))));
    }

    #[test]
    pub(crate) fn members_hold_their_groups_grants_at_every_level_and_lose_them_when_they_leave() {
        let (_d, s) = backends::store();
        let alice = user(&s, "alice", GlobalPermission::LicensedUser);
        let key = ProjectKey::parse("TP").unwrap();
        s.create_project(&key, None, false).unwrap();
        let owner = Owner::Project(key.clone());
        let repo = s.create_repo(&owner, &RepoSlug::parse("r").unwrap(), false).unwrap();
        let dev = group("dev");
        s.insert_group(&dev).unwrap();
        s.grant_group_project(&dev, &key, Read).unwrap();
        s.grant_group_repo(&dev, &owner, &repo.slug, Write).unwrap();
        // Granted to the group, not yet a member: nothing.
        assert_eq!(s.permission(Some(&now_as(&s, &alice)), &repo).unwrap(), None);
        assert!(s.visible_projects(Some(&alice), false).unwrap().is_empty());
        s.add_group_member(&dev, &alice.name).unwrap();
        s.add_group_member(&dev, &alice.name).unwrap();
        let a = now_as(&s, &alice);
        assert_eq!(s.permission(Some(&a), &repo).unwrap(), Some(Write), "the group's repository grant");
        assert_eq!(s.project_permission(Some(&a), &project(&s, "TP")).unwrap(), Some(Read), "the group's project grant");
        assert_eq!(s.visible_projects(Some(&alice), false).unwrap().len(), 1);
        // The highest of their own and their groups' grants.
        s.grant_project(&alice.name, &key, Admin).unwrap();
        assert_eq!(s.permission(Some(&a), &repo).unwrap(), Some(Admin));
        s.revoke_project(&alice.name, &project(&s, "TP").as_project()).unwrap();
        // A group's global permission is the member's.
        s.set_group_global_permission(&dev, Some(GlobalPermission::Admin)).unwrap();
        let a = now_as(&s, &alice);
        assert_eq!((a.user.global, a.user.own_global), (Some(GlobalPermission::Admin), Some(GlobalPermission::LicensedUser)));
        let other = s.create_repo(&owner, &RepoSlug::parse("other").unwrap(), false).unwrap();
        assert_eq!(s.permission(Some(&a), &other).unwrap(), Some(Admin), "a group's ADMIN administers every repository");
        assert_eq!(s.users().unwrap()[0].global, Some(GlobalPermission::Admin), "every way of reading an account agrees");
        assert_eq!(s.user_by_id(alice.id).unwrap().unwrap().global, Some(GlobalPermission::Admin));
        assert_eq!(s.group_members(&s.group(&dev).unwrap().unwrap()).unwrap(), std::slice::from_ref(&a.user));
        assert_eq!(s.user_groups(alice.id).unwrap().iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), ["dev"]);
        // Leaving the group takes all of it away.
        s.remove_group_member(&dev, &alice.name).unwrap();
        let a = now_as(&s, &alice);
        assert_eq!(a.user.global, Some(GlobalPermission::LicensedUser));
        assert_eq!(s.permission(Some(&a), &repo).unwrap(), None);
        assert_eq!(s.project_permission(Some(&a), &project(&s, "TP")).unwrap(), None);
        assert!(s.visible_projects(Some(&alice), false).unwrap().is_empty());
    }

    #[test]
    pub(crate) fn a_group_may_let_its_members_log_in_without_a_global_permission_of_their_own() {
        let (_d, s) = backends::store();
        let bob = user(&s, "bob", GlobalPermission::LicensedUser);
        s.set_global_permission(&bob.name, None).unwrap();
        assert!(s.verify_password("bob", "password1").unwrap().is_none());
        let users = group("stash-users");
        s.insert_group(&users).unwrap();
        s.set_group_global_permission(&users, Some(GlobalPermission::LicensedUser)).unwrap();
        s.add_group_member(&users, &bob.name).unwrap();
        let got = s.verify_password("bob", "password1").unwrap().expect("a licensed group's member logs in");
        assert_eq!((got.global, got.own_global), (Some(GlobalPermission::LicensedUser), None));
    }

    #[test]
    pub(crate) fn deleting_a_group_a_user_or_a_project_takes_the_memberships_and_grants_with_it() {
        let (dir, s) = backends::store();
        let alice = user(&s, "alice", GlobalPermission::LicensedUser);
        let bob = user(&s, "bob", GlobalPermission::LicensedUser);
        for k in ["TP", "OT"] {
            let key = ProjectKey::parse(k).unwrap();
            s.create_project(&key, None, false).unwrap();
            s.create_repo(&Owner::Project(key), &RepoSlug::parse("r").unwrap(), false).unwrap();
        }
        for g in ["dev", "ops"] {
            s.insert_group(&group(g)).unwrap();
            s.add_group_member(&group(g), &alice.name).unwrap();
            s.add_group_member(&group(g), &bob.name).unwrap();
            for k in ["TP", "OT"] {
                s.grant_group_project(&group(g), &ProjectKey::parse(k).unwrap(), Write).unwrap();
                s.grant_group_repo(&group(g), &Owner::parse(k).unwrap(), &RepoSlug::parse("r").unwrap(), Admin).unwrap();
            }
        }
        let count = |t: &str| backends::count(dir.path(), t);
        assert_eq!((count("group_members"), count("project_group_permissions"), count("repo_group_permissions")), (4, 4, 4));
        s.delete_group(&group("OPS")).unwrap();
        assert!(s.group(&group("ops")).unwrap().is_none());
        assert_eq!((count("group_members"), count("project_group_permissions"), count("repo_group_permissions")), (2, 2, 2));
        assert_eq!(s.group_grant_count(s.group(&group("dev")).unwrap().unwrap().id).unwrap(), 4, "two projects, two repositories");
        s.delete_user(&bob.name).unwrap();
        assert_eq!(count("group_members"), 1, "a deleted user's memberships go with them");
        s.delete_project(&ProjectKey::parse("OT").unwrap()).unwrap();
        assert_eq!((count("project_group_permissions"), count("repo_group_permissions")), (1, 1), "a deleted project's group grants go with it");
        let tp = project(&s, "TP").as_project();
        let dev = s.group(&group("dev")).unwrap().unwrap();
        assert_eq!(s.project_group_permissions(&tp).unwrap(), [(dev.clone(), Write)]);
        let repo = s.repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("r").unwrap()).unwrap().unwrap();
        assert_eq!(s.repo_group_permissions(&repo).unwrap(), [(dev.clone(), Admin)]);
        s.revoke_group_project(&group("dev"), &tp).unwrap();
        s.revoke_group_repo(&group("dev"), &repo).unwrap();
        assert_eq!((count("project_group_permissions"), count("repo_group_permissions")), (0, 0));
    }

    #[test]
    pub(crate) fn what_a_change_to_one_group_would_leave_counts_every_other_grant() {
        let (_d, s) = backends::store();
        let alice = user(&s, "alice", GlobalPermission::LicensedUser);
        let key = ProjectKey::parse("TP").unwrap();
        s.create_project(&key, None, false).unwrap();
        let owner = Owner::Project(key.clone());
        let repo = s.create_repo(&owner, &RepoSlug::parse("r").unwrap(), false).unwrap();
        let (admins, readers) = (group("admins"), group("readers"));
        for g in [&admins, &readers] {
            s.insert_group(g).unwrap();
            s.add_group_member(g, &alice.name).unwrap();
        }
        s.set_group_global_permission(&admins, Some(GlobalPermission::SysAdmin)).unwrap();
        s.grant_group_project(&admins, &key, Admin).unwrap();
        s.grant_group_project(&readers, &key, Read).unwrap();
        s.grant_group_repo(&admins, &owner, &repo.slug, Admin).unwrap();
        let admins_id = s.group(&admins).unwrap().unwrap().id;
        let a = now_as(&s, &alice);
        assert_eq!(s.global_permission_if(&a.user, admins_id, None).unwrap(), Some(GlobalPermission::LicensedUser));
        assert_eq!(s.global_permission_if(&a.user, admins_id, Some(GlobalPermission::Admin)).unwrap(), Some(GlobalPermission::Admin));
        // Without the global admin, what the project and repository grants alone leave.
        s.set_group_global_permission(&admins, None).unwrap();
        let a = now_as(&s, &alice);
        let info = project(&s, "TP");
        assert_eq!(s.project_permission_if(Some(&a), &info, Some((admins_id, None))).unwrap(), Some(Read), "the readers' grant remains");
        assert_eq!(s.project_permission_if(Some(&a), &info, Some((admins_id, Some(Write)))).unwrap(), Some(Write));
        assert_eq!(s.permission_if(Some(&a), &repo, Some((admins_id, None))).unwrap(), Some(Admin), "the project grant still gives admin");
        s.revoke_group_project(&admins, &info.as_project()).unwrap();
        assert_eq!(s.permission_if(Some(&a), &repo, Some((admins_id, Some(Write)))).unwrap(), Some(Write));
        assert_eq!(s.permission(Some(&a), &repo).unwrap(), Some(Admin), "nothing was changed");
    }
}
