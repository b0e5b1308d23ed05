//! Permissions at Bitbucket's three levels: global, project and repository.

use std::fmt;
use std::str::FromStr;

/// What someone may do with one repository (or every repository of a project). Ordered:
/// `Admin` implies `Write` implies `Read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    Read,
    Write,
    Admin,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("permission {input:?} is not one of `read`, `write`, `admin`")]
pub struct PermissionError {
    pub input: String,
}

impl FromStr for Permission {
    type Err = PermissionError;
    /// Accepts `read|write|admin` and Bitbucket's `PROJECT_READ`, `REPO_WRITE`, … spellings.
    fn from_str(s: &str) -> Result<Self, PermissionError> {
        let lower = s.to_ascii_lowercase();
        let bare = lower.strip_prefix("project_").or_else(|| lower.strip_prefix("repo_")).unwrap_or(&lower);
        match bare {
            "read" => Ok(Permission::Read),
            "write" => Ok(Permission::Write),
            "admin" => Ok(Permission::Admin),
            _ => Err(PermissionError { input: s.to_owned() }),
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Global permissions, as Bitbucket has them. `LicensedUser` may log in; `ProjectCreate` may
/// also create projects; `Admin` and `SysAdmin` administer every project and repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GlobalPermission {
    LicensedUser,
    ProjectCreate,
    Admin,
    SysAdmin,
}

impl GlobalPermission {
    pub fn as_str(self) -> &'static str {
        match self {
            GlobalPermission::LicensedUser => "LICENSED_USER",
            GlobalPermission::ProjectCreate => "PROJECT_CREATE",
            GlobalPermission::Admin => "ADMIN",
            GlobalPermission::SysAdmin => "SYS_ADMIN",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("global permission {input:?} is not one of LICENSED_USER, PROJECT_CREATE, ADMIN, SYS_ADMIN")]
pub struct GlobalPermissionError {
    pub input: String,
}

impl FromStr for GlobalPermission {
    type Err = GlobalPermissionError;
    fn from_str(s: &str) -> Result<Self, GlobalPermissionError> {
        match s.to_ascii_uppercase().as_str() {
            "LICENSED_USER" => Ok(GlobalPermission::LicensedUser),
            "PROJECT_CREATE" => Ok(GlobalPermission::ProjectCreate),
            "ADMIN" => Ok(GlobalPermission::Admin),
            "SYS_ADMIN" => Ok(GlobalPermission::SysAdmin),
            _ => Err(GlobalPermissionError { input: s.to_owned() }),
        }
    }
}

impl fmt::Display for GlobalPermission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The facts about one caller and one repository that decide what the caller may do.
#[derive(Debug, Clone, Default)]
pub struct PermissionFacts {
    pub authenticated: bool,
    pub global: Option<GlobalPermission>,
    pub owns_personal_project: bool,
    pub project_grant: Option<Permission>,
    pub repo_grant: Option<Permission>,
    /// The project's "all licensed users" default permission.
    pub project_default: Option<Permission>,
    pub project_public: bool,
    pub repo_public: bool,
    /// A token's scope caps whatever else applies.
    pub cap: Option<Permission>,
}

/// Decides the caller's permission on a repository; `None` means not even read. Pure, so the
/// rules are tested in one table.
pub fn effective_permission(f: &PermissionFacts) -> Option<Permission> {
    let mut best: Option<Permission> = None;
    if f.project_public || f.repo_public {
        best = Some(Permission::Read);
    }
    if f.authenticated && f.global.is_some() {
        let admin = matches!(f.global, Some(GlobalPermission::Admin | GlobalPermission::SysAdmin)) || f.owns_personal_project;
        let granted = [f.project_grant, f.repo_grant, f.project_default, admin.then_some(Permission::Admin)];
        best = granted.into_iter().flatten().chain(best).max();
    }
    match (best, f.cap) {
        (Some(b), Some(cap)) => Some(b.min(cap)),
        (b, _) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GlobalPermission::{LicensedUser, ProjectCreate, SysAdmin};
    use Permission::*;

    fn user() -> PermissionFacts {
        PermissionFacts { authenticated: true, global: Some(LicensedUser), ..Default::default() }
    }

    #[test]
    fn effective_permission_follows_bitbucket_rules() {
        let cases: Vec<(&str, PermissionFacts, Option<Permission>)> = vec![
            ("anonymous, private", PermissionFacts::default(), None),
            ("anonymous, public project", PermissionFacts { project_public: true, ..Default::default() }, Some(Read)),
            ("anonymous, public repo", PermissionFacts { repo_public: true, ..Default::default() }, Some(Read)),
            ("user without grants", user(), None),
            ("project read", PermissionFacts { project_grant: Some(Read), ..user() }, Some(Read)),
            ("repo write beats project read", PermissionFacts { project_grant: Some(Read), repo_grant: Some(Write), ..user() }, Some(Write)),
            ("project admin beats repo read", PermissionFacts { project_grant: Some(Admin), repo_grant: Some(Read), ..user() }, Some(Admin)),
            ("licensed-user default", PermissionFacts { project_default: Some(Write), ..user() }, Some(Write)),
            ("global admin", PermissionFacts { global: Some(GlobalPermission::Admin), ..user() }, Some(Admin)),
            ("sys admin", PermissionFacts { global: Some(SysAdmin), ..user() }, Some(Admin)),
            ("project creator is not admin of others", PermissionFacts { global: Some(ProjectCreate), ..user() }, None),
            ("personal project owner", PermissionFacts { owns_personal_project: true, ..user() }, Some(Admin)),
            ("token read cap", PermissionFacts { global: Some(SysAdmin), cap: Some(Read), ..user() }, Some(Read)),
            ("token cap does not grant", PermissionFacts { cap: Some(Admin), ..user() }, None),
            (
                "user without global permission gets only public",
                PermissionFacts { global: None, repo_grant: Some(Write), repo_public: true, ..user() },
                Some(Read),
            ),
        ];
        for (name, facts, want) in cases {
            assert_eq!(effective_permission(&facts), want, "{name}");
        }
    }

    #[test]
    fn permissions_parse_bitbucket_spellings() {
        assert_eq!("PROJECT_WRITE".parse::<Permission>().unwrap(), Write);
        assert_eq!("repo_admin".parse::<Permission>().unwrap(), Admin);
        assert_eq!("read".parse::<Permission>().unwrap(), Read);
        assert!("owner".parse::<Permission>().is_err());
        assert_eq!("sys_admin".parse::<GlobalPermission>().unwrap(), SysAdmin);
    }
}
