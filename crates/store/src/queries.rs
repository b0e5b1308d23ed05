//! What the REST API needs from the metadata database beyond git access and the web UI: project
//! details (description, default permission, personal owner), repository settings (display name,
//! `forkable`) and renames, user details, deleting accounts, and project-level permissions.

use rusqlite::{OptionalExtension, params};

use crate::error::StoreError;
use crate::names::{Owner, ProjectKey, RepoSlug, UserName};
use crate::permissions::{self, Permission, PermissionFacts};
use crate::store::{Authenticated, CachedRow, Project, Repo, Store, parse_perm};

/// A project with everything the REST API shows about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectInfo {
    pub id: i64,
    pub owner: Owner,
    pub name: String,
    pub description: Option<String>,
    pub public: bool,
    /// The permission every licensed user has on the project (Bitbucket's "default permission").
    pub default_permission: Option<Permission>,
    /// For a personal project (`~user`), the owning user's id.
    pub owner_user_id: Option<i64>,
}

impl ProjectInfo {
    /// The same project as the web UI's [`Project`], for the store calls that take one.
    pub fn as_project(&self) -> Project {
        Project { id: self.id, owner: self.owner.clone(), name: self.name.clone(), public: self.public }
    }
}

/// Changes to a project; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProjectUpdate {
    pub key: Option<ProjectKey>,
    pub name: Option<String>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
    pub public: Option<bool>,
}

/// Changes to a repository; `None` leaves a field as it is. A new name comes with its slug.
#[derive(Debug, Clone, Default)]
pub struct RepoUpdate {
    pub name: Option<(String, RepoSlug)>,
    pub forkable: Option<bool>,
    pub public: Option<bool>,
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation)
}

impl Store {
    /// One project with its details, whoever may see it (callers check permissions).
    pub fn project_info(&self, owner: &Owner) -> Result<Option<ProjectInfo>, StoreError> {
        let key = owner.project_key();
        self.conn()
            .row("SELECT id, name, description, public, default_permission, owner_user_id FROM projects WHERE key = ?1", [&key], |r| {
                Ok(ProjectInfo {
                    id: r.get(0)?,
                    owner: owner.clone(),
                    name: r.get(1)?,
                    description: r.get(2)?,
                    public: r.get(3)?,
                    default_permission: parse_perm(r.get(4)?),
                    owner_user_id: r.get(5)?,
                })
            })
            .optional()
            .map_err(self.db())
    }

    /// Creates a project with a name and description; `ProjectExists` if the key is taken.
    pub fn create_project_described(&self, key: &ProjectKey, name: &str, description: Option<&str>, public: bool) -> Result<ProjectInfo, StoreError> {
        let p = self.create_project(key, Some(name), public)?;
        self.conn().execute("UPDATE projects SET description = ?1 WHERE id = ?2", params![description, p.id]).map_err(self.db())?;
        self.project_info(&p.owner)?.ok_or_else(|| StoreError::NoSuchProject(key.to_string()))
    }

    /// Applies `update` to project `key` in one transaction; a new key that is taken is
    /// `ProjectExists` and changes nothing. Repositories live on disk by id, so a new key moves
    /// no files.
    pub fn update_project(&self, key: &ProjectKey, update: &ProjectUpdate) -> Result<ProjectInfo, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(self.db())?;
        let id: i64 = tx
            .row("SELECT id FROM projects WHERE key = ?1 AND owner_user_id IS NULL", [key.as_str()], |r| r.get(0))
            .optional()
            .map_err(self.db())?
            .ok_or_else(|| StoreError::NoSuchProject(key.to_string()))?;
        if let Some(new_key) = &update.key
            && new_key != key
            && let Err(e) = tx.execute("UPDATE projects SET key = ?1 WHERE id = ?2", params![new_key.as_str(), id])
        {
            return Err(if is_unique_violation(&e) { StoreError::ProjectExists(new_key.to_string()) } else { self.db()(e) });
        }
        if let Some(name) = &update.name {
            tx.execute("UPDATE projects SET name = ?1 WHERE id = ?2", params![name, id]).map_err(self.db())?;
        }
        if let Some(d) = &update.description {
            tx.execute("UPDATE projects SET description = ?1 WHERE id = ?2", params![d, id]).map_err(self.db())?;
        }
        if let Some(p) = update.public {
            tx.execute("UPDATE projects SET public = ?1 WHERE id = ?2", params![p, id]).map_err(self.db())?;
        }
        tx.commit().map_err(self.db())?;
        drop(conn);
        let owner = Owner::Project(update.key.clone().unwrap_or_else(|| key.clone()));
        self.project_info(&owner)?.ok_or_else(|| StoreError::NoSuchProject(owner.to_string()))
    }

    /// What `who` (`None`: anonymous) may do on the project as a whole: its public flag, grants
    /// on the project, its default permission, global admin and personal ownership. Repository
    /// grants do not count here.
    pub fn project_permission(&self, who: Option<&Authenticated>, project: &ProjectInfo) -> Result<Option<Permission>, StoreError> {
        let mut facts = PermissionFacts { project_public: project.public, ..Default::default() };
        if let Some(a) = who {
            facts.authenticated = true;
            facts.global = a.user.global;
            facts.cap = a.token_scope;
            facts.owns_personal_project = project.owner_user_id == Some(a.user.id);
            // Personal projects have no default permission for everyone.
            facts.project_default = if project.owner_user_id.is_none() { project.default_permission } else { None };
            let grant: Option<String> = self
                .conn()
                .row("SELECT permission FROM project_permissions WHERE project_id = ?1 AND user_id = ?2", [project.id, a.user.id], |r| r.get(0))
                .optional()
                .map_err(self.db())?;
            facts.project_grant = parse_perm(grant);
        }
        Ok(permissions::effective_permission(&facts))
    }

    /// Whether forks of the repository are allowed (Bitbucket's `forkable`; default true).
    pub fn repo_forkable(&self, repo: &Repo) -> Result<bool, StoreError> {
        self.conn().row("SELECT forkable FROM repositories WHERE id = ?1", [repo.id], |r| r.get(0)).map_err(self.db())
    }

    /// Applies `update` to a repository in one transaction; a new slug that is taken in the
    /// project is `RepoExists` and changes nothing. The directory on disk is named by id, so a
    /// rename moves no files.
    pub fn update_repo(&self, repo: &Repo, update: &RepoUpdate) -> Result<Repo, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(self.db())?;
        if let Some((name, slug)) = &update.name
            && let Err(e) = tx.execute("UPDATE repositories SET name = ?1, slug = ?2 WHERE id = ?3", params![name, slug.as_str(), repo.id])
        {
            return Err(if is_unique_violation(&e) { StoreError::RepoExists(format!("{}/{slug}", repo.owner)) } else { self.db()(e) });
        }
        if let Some(f) = update.forkable {
            tx.execute("UPDATE repositories SET forkable = ?1 WHERE id = ?2", params![f, repo.id]).map_err(self.db())?;
        }
        if let Some(p) = update.public {
            tx.execute("UPDATE repositories SET public = ?1 WHERE id = ?2", params![p, repo.id]).map_err(self.db())?;
        }
        tx.commit().map_err(self.db())?;
        drop(conn);
        let slug = update.name.as_ref().map(|(_, s)| s.clone()).unwrap_or_else(|| repo.slug.clone());
        self.repo(&repo.owner, &slug)?.ok_or_else(|| StoreError::NoSuchRepo(format!("{}/{slug}", repo.owner)))
    }

    /// Sets a user's display name and e-mail address (`None` leaves one as it is).
    pub fn set_user_details(&self, name: &UserName, display_name: Option<&str>, email: Option<&str>) -> Result<(), StoreError> {
        let conn = self.conn();
        let n = conn
            .execute(
                "UPDATE users SET display_name = COALESCE(?1, display_name), email = COALESCE(?2, email) WHERE name = ?3",
                params![display_name, email, name.as_str()],
            )
            .map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    /// Deletes an account with its grants, tokens, sessions and personal project; the personal
    /// repositories' directories are removed from disk first.
    pub fn delete_user(&self, name: &UserName) -> Result<(), StoreError> {
        if self.user(name)?.is_none() {
            return Err(StoreError::NoSuchUser(name.to_string()));
        }
        let personal = Owner::User(name.clone());
        if let Some(p) = self.project_info(&personal)? {
            for repo in self.project_repos(&p.as_project())? {
                self.delete_repo(&repo)?;
            }
        }
        let conn = self.conn();
        conn.execute("DELETE FROM projects WHERE key = ?1", [personal.project_key()]).map_err(self.db())?;
        conn.execute("DELETE FROM users WHERE name = ?1", [name.as_str()]).map_err(self.db())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::Password;
    use crate::permissions::GlobalPermission;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        (dir, s)
    }

    #[test]
    fn project_updates_rename_keys_and_refuse_taken_ones_without_changing_anything() {
        let (_d, s) = store();
        let a = ProjectKey::parse("AAA").unwrap();
        let b = ProjectKey::parse("BBB").unwrap();
        s.create_project_described(&a, "Alpha", Some("first"), false).unwrap();
        s.create_project_described(&b, "Beta", None, false).unwrap();
        let up = ProjectUpdate { key: Some(b.clone()), name: Some("Changed".into()), ..Default::default() };
        assert!(matches!(s.update_project(&a, &up), Err(StoreError::ProjectExists(_))));
        let still = s.project_info(&Owner::Project(a.clone())).unwrap().unwrap();
        assert_eq!((still.name.as_str(), still.description.as_deref()), ("Alpha", Some("first")));
        let c = ProjectKey::parse("CCC").unwrap();
        let up = ProjectUpdate { key: Some(c.clone()), description: Some(None), public: Some(true), ..Default::default() };
        let got = s.update_project(&a, &up).unwrap();
        assert_eq!((got.owner, got.description, got.public), (Owner::Project(c), None, true));
        assert!(s.project_info(&Owner::Project(a)).unwrap().is_none());
    }

    #[test]
    fn repo_renames_refuse_taken_slugs_and_deleting_a_user_removes_personal_repositories() {
        let (_d, s) = store();
        let alice = UserName::parse("alice").unwrap();
        s.create_user(&alice, &Password::new("password1").unwrap(), GlobalPermission::LicensedUser).unwrap();
        let owner = Owner::User(alice.clone());
        let one = s.create_repo(&owner, &RepoSlug::parse("one").unwrap(), false).unwrap();
        s.create_repo(&owner, &RepoSlug::parse("two").unwrap(), false).unwrap();
        let taken = RepoUpdate { name: Some(("Two".into(), RepoSlug::parse("two").unwrap())), ..Default::default() };
        assert!(matches!(s.update_repo(&one, &taken), Err(StoreError::RepoExists(_))));
        let renamed =
            s.update_repo(&one, &RepoUpdate { name: Some(("Uno".into(), RepoSlug::parse("uno").unwrap())), forkable: Some(false), public: None }).unwrap();
        assert_eq!((renamed.name.as_str(), renamed.slug.as_str()), ("Uno", "uno"));
        assert!(!s.repo_forkable(&renamed).unwrap());
        let path = s.repo_path(&renamed);
        assert!(path.is_dir());
        s.delete_user(&alice).unwrap();
        assert!(!path.exists());
        assert!(s.user(&alice).unwrap().is_none());
        assert!(s.project_info(&owner).unwrap().is_none());
        assert!(matches!(s.delete_user(&alice), Err(StoreError::NoSuchUser(_))));
    }

    #[test]
    fn project_permission_counts_grants_defaults_and_admins_but_not_repository_grants() {
        let (_d, s) = store();
        let p = Password::new("password1").unwrap();
        let bob = s.create_user(&UserName::parse("bob").unwrap(), &p, GlobalPermission::LicensedUser).unwrap();
        let root = s.create_user(&UserName::parse("root").unwrap(), &p, GlobalPermission::SysAdmin).unwrap();
        let key = ProjectKey::parse("TP").unwrap();
        let owner = Owner::Project(key.clone());
        s.create_project(&key, None, false).unwrap();
        let repo = s.create_repo(&owner, &RepoSlug::parse("r").unwrap(), false).unwrap();
        s.grant_repo(&bob.name, &owner, &repo.slug, Permission::Admin).unwrap();
        let auth = |u: &crate::store::User| Authenticated { user: u.clone(), token_scope: None };
        let info = s.project_info(&owner).unwrap().unwrap();
        assert_eq!(s.project_permission(Some(&auth(&bob)), &info).unwrap(), None);
        assert_eq!(s.project_permission(Some(&auth(&root)), &info).unwrap(), Some(Permission::Admin));
        s.set_project_default_permission(&key, Some(Permission::Write)).unwrap();
        let info = s.project_info(&owner).unwrap().unwrap();
        assert_eq!(s.project_permission(Some(&auth(&bob)), &info).unwrap(), Some(Permission::Write));
        assert_eq!(s.project_permission(None, &info).unwrap(), None);
    }
}
