//! Who may see or change a project or repository: the one decision (anonymous, hidden,
//! forbidden, or allowed at a level) that git smart HTTP, the REST API and the web pages render.
//!
//! The rules of permission themselves are `trove_store::effective_permission` (pure, tested in
//! one table in the store); this module turns "what the caller holds" and "what the request
//! needs" into one of four answers, the same for every surface:
//!
//! | answer        | git             | REST | web                      |
//! |---------------|-----------------|------|--------------------------|
//! | `Anonymous`   | 401 + challenge | 401  | redirect to the login    |
//! | `Hidden`      | 404             | 404  | 404                      |
//! | `Forbidden`   | 403             | 403  | 403                      |
//! | allowed       | served          | 200  | the page                 |
//!
//! As Bitbucket does ("Repository permissions", "Allowing public access"), a caller who may not
//! read something cannot tell it from something that does not exist: a logged-in caller gets
//! the same 404 for both, and an anonymous caller is asked to log in whatever the reason (git
//! only sends credentials after a 401, and with credentials they may be allowed). Only a caller
//! who may read but not do more learns that it exists (403).
//!
//! A caller's permission counts their groups' grants ([`trove_store::Groups`]): the store's
//! grant rows include them, and `Authenticated::user.global` is the effective global permission.
//! Changes to groups have rules of their own (a caller may not lower their own permission through
//! one), decided here too.

use trove_store::{Authenticated, GlobalPermission, Group, Owner, Permission, ProjectInfo, Repo, RepoSlug, Store, StoreError, User};

/// Why a caller may not do what they asked. Each surface renders these the same way (see the
/// module's table).
#[derive(Debug, thiserror::Error)]
pub(crate) enum AccessError {
    /// No credentials, and nothing public allows it: 401.
    #[error("{0}: log in; anonymous callers may not see whether it exists")]
    Anonymous(String),
    /// Does not exist, or the caller may not read it: 404.
    #[error("{0} does not exist, or the caller may not read it")]
    Hidden(String),
    /// The caller may read it but not do this: 403.
    #[error("{0}: the caller may read it but needs a higher permission for this")]
    Forbidden(String),
    #[error("access lookup failed: {0}")]
    Store(#[from] StoreError),
}

/// A repository the caller may use, and what they may do with it.
#[derive(Debug, Clone)]
pub(crate) struct RepoAccess {
    pub(crate) repo: Repo,
    pub(crate) level: Permission,
}

/// A project the caller may see, and their permission on the project itself (`None`: they see
/// it only because they may read one of its repositories).
#[derive(Debug, Clone)]
pub(crate) struct ProjectAccess {
    pub(crate) project: ProjectInfo,
    pub(crate) level: Option<Permission>,
}

/// The four answers, without the names. Pure, so the whole decision is one table test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Anonymous,
    Hidden,
    Forbidden,
    Allowed(Option<Permission>),
}

/// Decides for a caller (`anonymous` or not) who sees the thing (`visible`), holds `have` on it
/// and asks for `need` (`None`: only to see it).
pub(crate) fn decide(anonymous: bool, visible: bool, have: Option<Permission>, need: Option<Permission>) -> Decision {
    let enough = match need {
        None => visible,
        Some(need) => have.is_some_and(|h| h >= need),
    };
    match () {
        _ if enough => Decision::Allowed(have),
        // Nothing reveals more to an anonymous caller than "log in".
        _ if anonymous => Decision::Anonymous,
        _ if visible => Decision::Forbidden,
        _ => Decision::Hidden,
    }
}

/// The error for a refusal; `Allowed` of something not found (which `decide` never answers,
/// as nothing is visible then) is hidden like any missing thing.
fn refusal(d: Decision, name: String) -> AccessError {
    match d {
        Decision::Anonymous => AccessError::Anonymous(name),
        Decision::Forbidden => AccessError::Forbidden(name),
        Decision::Hidden | Decision::Allowed(_) => AccessError::Hidden(name),
    }
}

/// A global ADMIN or SYS_ADMIN sees every project; a token's scope caps what they may do with
/// it, not what they may see (a read-scoped token still reads every repository).
pub(crate) fn sees_everything(who: Option<&Authenticated>) -> bool {
    matches!(who.and_then(|a| a.user.global), Some(GlobalPermission::Admin | GlobalPermission::SysAdmin))
}

/// Whether the caller may do `need` with the repository `owner/slug`, as written in a URL
/// (`TP`/`test`, `~alice`/`dots`). A name that cannot be valid is answered like one that does
/// not exist.
pub(crate) fn repo(store: &Store, who: Option<&Authenticated>, owner: &str, slug: &str, need: Permission) -> Result<RepoAccess, AccessError> {
    let found = match (Owner::parse(owner), RepoSlug::parse(slug)) {
        (Ok(o), Ok(s)) => store.repo(&o, &s)?,
        _ => None,
    };
    let have = match &found {
        Some(r) => store.permission(who, r)?,
        None => None,
    };
    match (decide(who.is_none(), have.is_some(), have, Some(need)), found) {
        (Decision::Allowed(level), Some(repo)) => Ok(RepoAccess { repo, level: level.unwrap_or(need) }),
        (d, found) => Err(refusal(d, found.map_or_else(|| format!("{owner}/{slug}"), |r| r.display_path()))),
    }
}

/// Whether SSH access key `key_id` may do `need` with the repository `owner/slug`: exactly what
/// its grants on the repository or its project allow, nothing from users' grants or public
/// access. Refusals read as for a logged-in user (a repository it may not read is hidden).
pub(crate) fn repo_for_access_key(store: &Store, key_id: i64, owner: &str, slug: &str, need: Permission) -> Result<RepoAccess, AccessError> {
    let found = match (Owner::parse(owner), RepoSlug::parse(slug)) {
        (Ok(o), Ok(s)) => store.repo(&o, &s)?,
        _ => None,
    };
    let have = match &found {
        Some(r) => store.access_key_permission(key_id, r.project_id, r.id)?,
        None => None,
    };
    match (decide(false, have.is_some(), have, Some(need)), found) {
        (Decision::Allowed(level), Some(repo)) => Ok(RepoAccess { repo, level: level.unwrap_or(need) }),
        (d, found) => Err(refusal(d, found.map_or_else(|| format!("{owner}/{slug}"), |r| r.display_path()))),
    }
}

/// Where the repository once at `owner/slug` (renamed or moved since) is now, if the caller may
/// read it there: the old URLs (REST, web, git) then redirect. Anyone else gets the answer for a
/// repository that does not exist, so a redirect reveals nothing.
pub(crate) fn moved(store: &Store, who: Option<&Authenticated>, owner: &str, slug: &str) -> Result<Option<trove_store::Repo>, trove_store::StoreError> {
    let (Ok(o), Ok(s)) = (Owner::parse(owner), RepoSlug::parse(slug.strip_suffix(".git").unwrap_or(slug))) else { return Ok(None) };
    if store.repo(&o, &s)?.is_some() {
        return Ok(None);
    }
    match store.repo_redirect(&o, &s)? {
        Some(r) if store.permission(who, &r)?.is_some() => Ok(Some(r)),
        _ => Ok(None),
    }
}

/// `path` (a REST or web URL's path) with its `projects/{key}/repos/{slug}` (or
/// `users/{user}/repos/{slug}`) pointing at `now` (as `projects/{KEY}/repos/{slug}`); `None` when
/// the path names no such place. Keys and slugs compare without regard to case.
pub(crate) fn moved_path(path: &str, key: &str, slug: &str, now: &trove_store::Repo) -> Option<String> {
    let mut segs: Vec<String> = path.split('/').map(str::to_owned).collect();
    let bare = key.trim_start_matches('~');
    let i = (0..segs.len().saturating_sub(3)).find(|&i| {
        matches!(segs[i].as_str(), "projects" | "users")
            && segs[i + 1].trim_start_matches('~').eq_ignore_ascii_case(bare)
            && segs[i + 2] == "repos"
            && segs[i + 3].eq_ignore_ascii_case(slug)
    })?;
    let new_key = now.owner.to_string().to_ascii_uppercase();
    segs.splice(i..i + 4, ["projects".to_owned(), new_key, "repos".to_owned(), now.slug.to_string()]);
    Some(segs.join("/"))
}

/// Whether the caller may see the project `key` (`TP`, `~alice`) and, with `need`, do that much
/// on the project itself (repository grants do not count for that).
pub(crate) fn project(store: &Store, who: Option<&Authenticated>, key: &str, need: Option<Permission>) -> Result<ProjectAccess, AccessError> {
    let (info, visible, have) = match Owner::parse(key) {
        Ok(owner) => match store.project_info(&owner)? {
            Some(info) => {
                let user = who.map(|a| &a.user);
                let visible = store.visible_project(&owner, user, sees_everything(who))?.is_some();
                let have = store.project_permission(who, &info)?;
                (Some(info), visible, have)
            }
            None => (None, false, None),
        },
        Err(_) => (None, false, None),
    };
    match (decide(who.is_none(), visible, have, need), info) {
        (Decision::Allowed(level), Some(project)) => Ok(ProjectAccess { project, level }),
        (d, _) => Err(refusal(d, key.to_owned())),
    }
}

/// Whether the caller may create a repository in `key`. A personal project is made with its
/// first repository, so for `~user` its owner (with a token, an admin-scoped one) and global
/// administrators may create one before the project exists; elsewhere it takes project admin.
pub(crate) fn create_repo(store: &Store, who: Option<&Authenticated>, key: &str) -> Result<Owner, AccessError> {
    let owner = Owner::parse(key).map_err(|_| if who.is_none() { AccessError::Anonymous(key.to_owned()) } else { AccessError::Hidden(key.to_owned()) })?;
    if let (Owner::User(u), Some(a)) = (&owner, who) {
        let capped = a.token_scope.is_some_and(|cap| cap < Permission::Admin);
        let own = &a.user.name == u;
        if !capped && (own || sees_everything(who)) {
            return match store.user(u)? {
                Some(_) => Ok(owner),
                None => Err(AccessError::Hidden(key.to_owned())),
            };
        }
    }
    project(store, who, key, Some(Permission::Admin)).map(|_| owner)
}

/// Why a change to a group's permissions or members is refused, by Bitbucket's rules for
/// administrators changing groups ("Global permissions": a user may not grant or change more than
/// they hold, nor lower their own permission).
#[derive(Debug, thiserror::Error)]
pub(crate) enum GroupRefusal {
    /// The group, or the level asked for, is above the caller's own global permission (an ADMIN
    /// changing a SYS_ADMIN group, or granting SYS_ADMIN).
    #[error("{0} is above the caller's own global permission")]
    AboveCaller(String),
    /// The change would lower the caller's own permission, through a group they are in.
    #[error("the change would lower the caller's own permission")]
    LowersCaller,
    #[error("access lookup failed: {0}")]
    Store(#[from] StoreError),
}

/// Whether the caller may change group `group`'s global permission to `to` (`None`: revoke it,
/// or delete the group): not a group above them, not to a level above them, and not so that
/// their own global permission falls.
pub(crate) fn group_global_change(store: &Store, who: &Authenticated, group: &Group, to: Option<GlobalPermission>) -> Result<(), GroupRefusal> {
    let mine = who.user.global;
    if group.global > mine {
        return Err(GroupRefusal::AboveCaller(format!("group {}", group.name)));
    }
    if let Some(to) = to
        && Some(to) > mine
    {
        return Err(GroupRefusal::AboveCaller(to.as_str().to_owned()));
    }
    if store.global_permission_if(&who.user, group.id, to)? < mine {
        return Err(GroupRefusal::LowersCaller);
    }
    Ok(())
}

/// Whether the caller may add `user` to or (`adding: false`) remove them from `group`: not a
/// group above the caller's own global permission, and not the caller leaving a group whose
/// global permission they would lose.
pub(crate) fn group_member_change(store: &Store, who: &Authenticated, group: &Group, user: &User, adding: bool) -> Result<(), GroupRefusal> {
    if group.global > who.user.global {
        return Err(GroupRefusal::AboveCaller(format!("group {}", group.name)));
    }
    if !adding && user.id == who.user.id && store.global_permission_if(&who.user, group.id, None)? < who.user.global {
        return Err(GroupRefusal::LowersCaller);
    }
    Ok(())
}

/// Whether changing group `group_id`'s grant on the project to `to` (`None`: revoke it) would
/// lower the caller's own permission on the project.
pub(crate) fn lowers_own_project_permission(
    store: &Store,
    who: &Authenticated,
    project: &ProjectInfo,
    group_id: i64,
    to: Option<Permission>,
) -> Result<bool, StoreError> {
    let now = store.project_permission(Some(who), project)?;
    Ok(store.project_permission_if(Some(who), project, Some((group_id, to)))? < now)
}

/// Whether changing group `group_id`'s grant on the repository to `to` (`None`: revoke it) would
/// lower the caller's own permission on it.
pub(crate) fn lowers_own_repo_permission(store: &Store, who: &Authenticated, repo: &Repo, group_id: i64, to: Option<Permission>) -> Result<bool, StoreError> {
    let now = store.permission(Some(who), repo)?;
    Ok(store.permission_if(Some(who), repo, Some((group_id, to)))? < now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::*;
    use Permission::{Admin, Read, Write};

    #[test]
    fn every_combination_has_one_answer() {
        // (anonymous, visible, have, need) → answer
        let cases = [
            (true, false, None, Some(Read), Anonymous),
            (true, true, Some(Read), Some(Read), Allowed(Some(Read))),
            (true, true, Some(Read), Some(Write), Anonymous),
            (true, true, None, None, Allowed(None)),
            (true, false, None, None, Anonymous),
            (false, false, None, Some(Read), Hidden),
            (false, false, None, None, Hidden),
            (false, true, None, None, Allowed(None)),
            (false, true, None, Some(Read), Forbidden),
            (false, true, Some(Read), Some(Write), Forbidden),
            (false, true, Some(Write), Some(Write), Allowed(Some(Write))),
            (false, true, Some(Write), Some(Admin), Forbidden),
            (false, true, Some(Admin), Some(Admin), Allowed(Some(Admin))),
            (false, true, Some(Admin), None, Allowed(Some(Admin))),
        ];
        for (anonymous, visible, have, need, want) in cases {
            assert_eq!(decide(anonymous, visible, have, need), want, "anonymous={anonymous} visible={visible} have={have:?} need={need:?}");
        }
    }
}
