//! The git hooks every push runs, written by the server into its git home at start and named
//! with `core.hooksPath`, so repositories carry no hooks of their own.
//!
//! `pre-receive` refuses updates to `refs/pull-requests/*`, which Bitbucket reserves for its
//! pull requests ("reserved for pull request functionality"): the pull-request work relies on
//! nobody else writing them. A refusal there refuses the whole push, before any ref moves.

use std::path::{Path, PathBuf};

const PRE_RECEIVE: &str = r#"#!/bin/sh
# Written by trove at start; changes are overwritten.
status=0
while read old new ref; do
    case "$ref" in
    refs/pull-requests/*)
        echo "$ref: refs/pull-requests/ is reserved for pull request functionality; push to a branch (refs/heads/...) instead." >&2
        status=1
        ;;
    esac
done
exit $status
"#;

/// Where the hooks live.
pub(crate) fn dir(git_home: &Path) -> PathBuf {
    git_home.join("hooks")
}

/// Writes the hooks (atomically, so a push that starts meanwhile sees the old or the new file).
pub(crate) fn install(git_home: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = dir(git_home);
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!(".pre-receive.{}", std::process::id()));
    std::fs::write(&tmp, PRE_RECEIVE)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, dir.join("pre-receive"))
}
