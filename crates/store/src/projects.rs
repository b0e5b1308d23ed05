//! Projects (`TP`) and users' personal projects (`~justme`).

use crate::error::StoreError;
use crate::names::{Owner, ProjectKey};
use crate::permissions::Permission;
use crate::users::User;

/// A project (`TP`) or a user's personal project (`~justme`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    pub id: i64,
    pub owner: Owner,
    pub name: String,
    pub public: bool,
}

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

/// The rows of projects.
pub trait Projects {
    /// `ProjectExists` if the key is taken.
    fn create_project(&self, key: &ProjectKey, name: Option<&str>, public: bool) -> Result<Project, StoreError>;
    /// Creates a project with a name and description; `ProjectExists` if the key is taken.
    fn create_project_described(&self, key: &ProjectKey, name: &str, description: Option<&str>, public: bool) -> Result<ProjectInfo, StoreError>;
    /// One project with its details, whoever may see it (callers check permissions).
    fn project_info(&self, owner: &Owner) -> Result<Option<ProjectInfo>, StoreError>;
    /// The id of `owner`'s project row, if it has one.
    fn project_id(&self, owner: &Owner) -> Result<Option<i64>, StoreError>;
    /// Makes the personal project `owner` (`~user`) of user `user_id`, named `name`, unless it
    /// exists (two first repositories of one user may race to make it).
    fn insert_personal_project(&self, owner: &Owner, name: &str, user_id: i64) -> Result<(), StoreError>;
    /// Applies `update` to project `key` in one transaction; a new key that is taken is
    /// `ProjectExists` and changes nothing. Repositories live on disk by id, so a new key moves
    /// no files.
    fn update_project(&self, key: &ProjectKey, update: &ProjectUpdate) -> Result<ProjectInfo, StoreError> {
        self.update_project_with_events(key, update, &[])
    }
    /// [`Projects::update_project`], writing the webhook `events` (`project:modified`) in its
    /// transaction.
    fn update_project_with_events(&self, key: &ProjectKey, update: &ProjectUpdate, events: &[crate::NewEvent]) -> Result<ProjectInfo, StoreError>;
    fn set_project_public(&self, key: &ProjectKey, public: bool) -> Result<(), StoreError>;
    /// Sets the permission every licensed user has on a project (`None` removes it).
    fn set_project_default_permission(&self, key: &ProjectKey, perm: Option<Permission>) -> Result<(), StoreError>;
    /// Projects `user` may see (every one for a global admin, `None` = anonymous), by key.
    fn visible_projects(&self, user: Option<&User>, admin: bool) -> Result<Vec<Project>, StoreError>;
    /// One project by key, if `user` may see it.
    fn visible_project(&self, key: &Owner, user: Option<&User>, admin: bool) -> Result<Option<Project>, StoreError>;
    /// Removes a project's row (its repositories' rows go with it); directories are the
    /// caller's ([`crate::Store::delete_project`]).
    fn delete_project_row(&self, id: i64) -> Result<(), StoreError>;
}
