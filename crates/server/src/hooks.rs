//! The git hooks every push runs, written by the server into its git home at start and named
//! with `core.hooksPath`, so repositories carry no hooks of their own.
//!
//! `post-receive` hands the refs a push moved to the event bus (`events.rs`).
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

/// After the refs moved, the lines git gives `post-receive` (`old new ref`, one per accepted
/// update) go to the file the server named for this push (`events.rs`).
const POST_RECEIVE: &str = r#"#!/bin/sh
# Written by trove at start; changes are overwritten.
if [ -n "$TROVE_REF_UPDATES" ]; then
    cat >> "$TROVE_REF_UPDATES"
else
    cat > /dev/null
fi
exit 0
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
    for (name, text) in [("pre-receive", PRE_RECEIVE), ("post-receive", POST_RECEIVE)] {
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        std::fs::write(&tmp, text)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, dir.join(name))?;
    }
    Ok(())
}
