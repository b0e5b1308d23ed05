//! Bare repositories on disk, one directory per numeric id under `<data>/repositories`.
//!
//! Numeric ids make renames and moves a metadata-only change, and keep user-chosen names out of
//! file-system paths entirely.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::StoreError;
use crate::names::{Owner, RepoSlug};
use crate::projects::Project;

/// A repository and the project facts that matter for access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    pub id: i64,
    pub owner: Owner,
    pub slug: RepoSlug,
    pub name: String,
    pub public: bool,
    pub project_id: i64,
    pub project_public: bool,
}

impl Repo {
    /// `TP/test` or `~justme/test`, for messages and logs.
    pub fn display_path(&self) -> String {
        format!("{}/{}", self.owner, self.slug)
    }
}

/// Changes to a repository; `None` leaves a field as it is. A new name comes with its slug.
#[derive(Debug, Clone, Default)]
pub struct RepoUpdate {
    pub name: Option<(String, RepoSlug)>,
    pub forkable: Option<bool>,
    pub public: Option<bool>,
    /// A new description; an empty one clears it.
    pub description: Option<String>,
    /// Moves the repository into the project with this row id (same directory on disk).
    pub project_id: Option<i64>,
}

/// The rows of repositories. Their directories on disk are [`crate::Store`]'s.
pub trait Repos {
    /// A new row in project `project_id` with an id no repository ever had (deleted ones
    /// included); `None` when the slug is taken in the project.
    fn insert_repo(&self, project_id: i64, slug: &RepoSlug, public: bool) -> Result<Option<i64>, StoreError>;
    fn delete_repo_row(&self, id: i64) -> Result<(), StoreError>;
    fn repo(&self, owner: &Owner, slug: &RepoSlug) -> Result<Option<Repo>, StoreError>;
    /// The repository with row id `id` (a pull request's target or source).
    fn repo_by_id(&self, id: i64) -> Result<Option<Repo>, StoreError>;
    /// The repositories of a project, by slug (callers filter by permission).
    fn project_repos(&self, project: &Project) -> Result<Vec<Repo>, StoreError>;
    fn set_repo_public(&self, owner: &Owner, slug: &RepoSlug, public: bool) -> Result<(), StoreError>;
    /// Whether forks of the repository are allowed (Bitbucket's `forkable`; default true).
    fn repo_forkable(&self, repo: &Repo) -> Result<bool, StoreError>;
    /// Applies `update` to a repository in one transaction; a new slug that is taken in the
    /// project is `RepoExists` and changes nothing. The directory on disk is named by id, so a
    /// rename moves no files.
    ///
    /// A new slug or project leaves a redirect behind: the old `project/slug` then names this
    /// repository ([`Repos::repo_redirect`]) until another repository takes it.
    fn update_repo(&self, repo: &Repo, update: &RepoUpdate) -> Result<Repo, StoreError> {
        self.update_repo_with_events(repo, update, &[])
    }
    /// [`Repos::update_repo`], writing the webhook `events` (`repo:modified`) in its transaction.
    fn update_repo_with_events(&self, repo: &Repo, update: &RepoUpdate, events: &[crate::NewEvent]) -> Result<Repo, StoreError>;
    /// The repository's description, if it has one.
    fn repo_description(&self, repo: &Repo) -> Result<Option<String>, StoreError>;
    /// The repository that was once at `owner/slug` (renamed or moved since), where it is now;
    /// `None` when no repository was.
    fn repo_redirect(&self, owner: &Owner, slug: &RepoSlug) -> Result<Option<Repo>, StoreError>;
    /// Makes row `id` a fork of `origin`: it names `origin` and joins `origin`'s hierarchy (whose
    /// root is `origin` itself when `origin` is no fork).
    fn set_repo_origin(&self, id: i64, origin: &Repo) -> Result<(), StoreError>;
    /// The row id of the repository `repo` was forked from; `None` for a repository that is no
    /// fork, or whose origin has been deleted.
    fn repo_origin_id(&self, repo: &Repo) -> Result<Option<i64>, StoreError>;
    /// The repositories forked from `repo` (not their forks), oldest first. Callers filter by
    /// permission.
    fn repo_forks(&self, repo: &Repo) -> Result<Vec<Repo>, StoreError>;
    /// The other repositories of `repo`'s fork hierarchy (the root, forks and forks of forks,
    /// wherever they are), oldest first; empty for a repository never forked and no fork.
    fn related_repos(&self, repo: &Repo) -> Result<Vec<Repo>, StoreError>;
}

/// Settings written into every new repository's `config`:
/// - `receive.fsckObjects`: refuse corrupt or malicious objects at push time;
/// - `uploadpack.allowFilter`: partial clone (`--filter=blob:none`);
/// - `uploadpack.keepAlive`: keep proxies from timing out while a pack is prepared;
/// - `repack.writeBitmaps`, `core.commitGraph`, `gc.writeCommitGraph`, `fetch.writeCommitGraph`:
///   the structures that make counting objects for a clone fast;
/// - `core.logAllRefUpdates`: reflogs in a bare repository record who pushed what;
/// - `receive.denyNonFastForwards = false`: force-push is decided by permissions, not config.
pub(crate) const REPO_CONFIG: &str = "[receive]\n\tfsckObjects = true\n\tdenyNonFastForwards = false\n\tdenyDeletes = false\n\
[uploadpack]\n\tallowFilter = true\n\tkeepAlive = 5\n\
[repack]\n\twriteBitmaps = true\n\
[core]\n\tcommitGraph = true\n\tlogAllRefUpdates = true\n\
[gc]\n\twriteCommitGraph = true\n\
[fetch]\n\twriteCommitGraph = true\n\
[transfer]\n\tfsckObjects = true\n";

/// The minimal environment every git child of ours gets: no inherited `GIT_*` variables, no
/// system or user config, `HOME` pointing at an empty directory we own.
pub fn git_env(git_home: &Path) -> Vec<(OsString, OsString)> {
    let mut env = vec![
        ("HOME".into(), git_home.as_os_str().to_owned()),
        ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        ("GIT_TERMINAL_PROMPT".into(), "0".into()),
        ("LANG".into(), "C".into()),
    ];
    if let Some(path) = std::env::var_os("PATH") {
        env.push(("PATH".into(), path));
    }
    env
}

pub(crate) fn repos_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("repositories")
}

/// Creates the bare repository for `id`: `git init` into a temporary directory beside the final
/// one, write our config, then rename, so a half-made repository never sits at a live path.
/// `git` is the executable to run (the server's `[git] binary`).
pub(crate) fn init_bare(dir: &Path, git_home: &Path, git: &Path, id: i64) -> Result<PathBuf, StoreError> {
    let final_path = dir.join(id.to_string());
    let tmp = dir.join(format!(".init-{id}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let out = Command::new(git)
        .env_clear()
        .envs(git_env(git_home))
        .args(["init", "--bare", "--quiet", "--template=", "--initial-branch=main"])
        .arg(&tmp)
        .output()
        .map_err(|e| StoreError::GitInit { path: final_path.clone(), detail: format!("cannot run {}: {e}", git.display()) })?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(StoreError::GitInit { path: final_path, detail: String::from_utf8_lossy(&out.stderr).trim().to_owned() });
    }
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(tmp.join("config"))?;
        f.write_all(REPO_CONFIG.as_bytes())?;
        std::fs::create_dir_all(tmp.join("info"))?;
        std::fs::create_dir_all(tmp.join("hooks"))?;
        std::fs::rename(&tmp, &final_path)
    };
    write().map_err(|source| {
        let _ = std::fs::remove_dir_all(&tmp);
        StoreError::RepoDir { path: final_path.clone(), source }
    })?;
    Ok(final_path)
}

/// Makes the bare repository for fork `id` from the one at `origin`: `git clone --bare --local`
/// into a temporary directory beside the final one (origin's branches, tags and `HEAD`, every
/// object file hard-linked where the file system allows and copied where not), our config in
/// place of clone's (no remote pointing at the origin's path), then a rename.
///
/// Hard links, not alternates: git never changes an object file in place (packs and loose
/// objects are written whole under new names and renamed), so the two repositories share disk
/// until one repacks and never depend on each other: the origin's gc or deletion cannot take an
/// object the fork needs. A repack of the origin that removes a pack while the clone links it
/// makes the clone fail; it is tried again (three tries).
pub(crate) fn clone_bare(dir: &Path, git_home: &Path, git: &Path, origin: &Path, id: i64) -> Result<PathBuf, StoreError> {
    let final_path = dir.join(id.to_string());
    let tmp = dir.join(format!(".fork-{id}-{}", std::process::id()));
    let fail = |detail: String| StoreError::GitClone { path: final_path.clone(), detail };
    let run = |args: &[&std::ffi::OsStr]| -> Result<std::process::Output, StoreError> {
        Command::new(git).env_clear().envs(git_env(git_home)).args(args).output().map_err(|e| fail(format!("cannot run {}: {e}", git.display())))
    };
    let mut last = String::new();
    let mut cloned = false;
    for _ in 0..3 {
        let _ = std::fs::remove_dir_all(&tmp);
        let out =
            run(&["clone".as_ref(), "--bare".as_ref(), "--local".as_ref(), "--quiet".as_ref(), "--template=".as_ref(), origin.as_os_str(), tmp.as_os_str()])?;
        if out.status.success() {
            cloned = true;
            break;
        }
        last = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    }
    if !cloned {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(fail(last));
    }
    let finish = || -> Result<(), StoreError> {
        // The clone's `[remote "origin"]` names the origin's directory: nothing of the fork may
        // lead back to a path on disk.
        let out = run(&["--git-dir".as_ref(), tmp.as_os_str(), "config".as_ref(), "--remove-section".as_ref(), "remote.origin".as_ref()])?;
        if !out.status.success() {
            return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
        }
        let io = |source| StoreError::RepoDir { path: final_path.clone(), source };
        // An empty origin leaves clone's own default branch in `HEAD`; the fork's default
        // branch is the origin's.
        if let Ok(head) = std::fs::read_to_string(origin.join("HEAD"))
            && head.starts_with("ref: refs/heads/")
        {
            std::fs::write(tmp.join("HEAD"), head).map_err(io)?;
        }
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(tmp.join("config")).map_err(io)?;
        f.write_all(REPO_CONFIG.as_bytes()).map_err(io)?;
        std::fs::create_dir_all(tmp.join("info")).map_err(io)?;
        std::fs::create_dir_all(tmp.join("hooks")).map_err(io)?;
        std::fs::rename(&tmp, &final_path).map_err(io)
    };
    finish().inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&tmp);
    })?;
    Ok(final_path)
}

#[cfg(test)]
mod tests {
    use crate::{Owner, ProjectKey, RepoSlug, Store, StoreError};

    fn owner() -> Owner {
        Owner::Project(ProjectKey::parse("TP").unwrap())
    }

    #[test]
    fn new_repositories_are_made_with_the_configured_git() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("git-calls");
        let wrapper = dir.path().join("my-git");
        // Records each call's subcommand, then is the real git.
        std::fs::write(&wrapper, format!("#!/bin/sh\necho \"$1\" >> {}\nexec git \"$@\"\n", log.display())).unwrap();
        std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let store = Store::open_with_git(&dir.path().join("data"), &wrapper).unwrap();
        store.create_project(&ProjectKey::parse("TP").unwrap(), None, false).unwrap();
        assert_eq!(store.git_binary(), wrapper);
        let repo = store.create_repo(&owner(), &RepoSlug::parse("made").unwrap(), false).unwrap();
        assert!(store.repo_path(&repo).join("HEAD").is_file());
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "init\n");
    }

    #[test]
    fn a_missing_git_is_named_and_leaves_no_repository_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with_git(dir.path(), std::path::Path::new("/nonexistent/git")).unwrap();
        store.create_project(&ProjectKey::parse("TP").unwrap(), None, false).unwrap();
        let slug = RepoSlug::parse("never").unwrap();
        let err = store.create_repo(&owner(), &slug, false).unwrap_err();
        assert!(matches!(err, StoreError::GitInit { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/git") && msg.contains("[git] binary"), "{msg}");
        assert!(store.repo(&owner(), &slug).unwrap().is_none(), "the row is removed again");
    }
}
