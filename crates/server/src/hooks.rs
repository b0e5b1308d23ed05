//! The git hooks every push runs, written by the server into its git home at start and named
//! with `core.hooksPath`, so repositories carry no hooks of their own.
//!
//! `post-receive` hands the refs a push moved to the event bus (`events.rs`).
//!
//! `pre-receive` refuses updates to `refs/pull-requests/*`, which Bitbucket reserves for its
//! pull requests ("reserved for pull request functionality"): the pull-request work relies on
//! nobody else writing them. It also enforces branch permissions: the server puts the
//! restrictions that apply to this pusher in this repository into `TROVE_RESTRICTIONS`
//! (`branch_permissions.rs`), and the hook refuses what [`RestrictionType::refuses`] refuses for
//! a push (`read-only` and `pull-request-only`: any change; `no-deletes`: a delete;
//! `fast-forward-only`: an update `git merge-base --is-ancestor` does not find to be a
//! fast-forward), printing Bitbucket's message between dashed rules. A refusal refuses the whole
//! push, before any ref moves.

use std::path::{Path, PathBuf};

use trove_store::RestrictionType;

use crate::branch_permissions::{CHECK_CONFIGURATION, RULE, refusal_tail};

/// The pre-receive hook, with the refusals' words from `branch_permissions.rs`.
fn pre_receive() -> String {
    let mut arms = String::new();
    for kind in RestrictionType::ALL {
        let test = match kind {
            RestrictionType::ReadOnly | RestrictionType::PullRequestOnly => "",
            RestrictionType::NoDeletes => "\n            [ \"$change\" = delete ] || continue",
            RestrictionType::FastForwardOnly => {
                "\n            [ \"$change\" = update ] || continue\n            git merge-base --is-ancestor \"$old\" \"$new\" 2>/dev/null && continue"
            }
        };
        arms.push_str(&format!("        {kind}){test}\n            tail='{}' ;;\n", refusal_tail(kind)));
    }
    PRE_RECEIVE.replace("@ARMS@", &arms).replace("@RULE@", RULE).replace("@CHECK@", CHECK_CONFIGURATION)
}

/// `TROVE_RESTRICTIONS` holds `type<TAB>regex` lines; a ref is covered when `grep -E` finds the
/// regex in the ref's name with `/` appended (`branch_permissions::ere`). An id of all zeros (40
/// for SHA-1, 64 for SHA-256) is "no object": a create or a delete.
const PRE_RECEIVE: &str = r#"#!/bin/sh
# Written by trove at start; changes are overwritten.
status=0
tab=$(printf '\t')
refused=""
while read old new ref; do
    case "$ref" in
    refs/pull-requests/*)
        echo "$ref: refs/pull-requests/ is reserved for pull request functionality; push to a branch (refs/heads/...) instead." >&2
        status=1
        continue
        ;;
    esac
    [ -n "$TROVE_RESTRICTIONS" ] || continue
    case "$old" in *[!0]*) change=update ;; *) change=create ;; esac
    case "$new" in *[!0]*) ;; *) change=delete ;; esac
    case "$ref" in refs/heads/*) what=Branch ;; refs/tags/*) what=Tag ;; *) what=Ref ;; esac
    while IFS="$tab" read -r type re; do
        [ -n "$re" ] || continue
        # grep: 0 covered, 1 not; anything else (no grep, a bad expression) refuses the push
        # rather than let a restriction pass unchecked.
        printf '%s/\n' "$ref" | LC_ALL=C grep -Eq -- "$re" 2>/dev/null
        case $? in
        0) ;;
        1) continue ;;
        *) echo "$ref: cannot check the branch permissions (grep failed); ask the administrator to check the server's PATH." >&2; status=1; continue ;;
        esac
        case "$type" in
@ARMS@        *) continue ;;
        esac
        refused="$refused$what $ref $tail
"
    done <<RESTRICTIONS
$TROVE_RESTRICTIONS
RESTRICTIONS
done
if [ -n "$refused" ]; then
    echo "@RULE@" >&2
    printf '%s' "$refused" >&2
    echo "@CHECK@" >&2
    echo "@RULE@" >&2
    status=1
fi
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
    for (name, text) in [("pre-receive", pre_receive().as_str()), ("post-receive", POST_RECEIVE)] {
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        std::fs::write(&tmp, text)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, dir.join(name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pre_receive_hook_is_valid_sh_with_an_arm_per_restriction_type() {
        let script = pre_receive();
        for kind in RestrictionType::ALL {
            assert!(script.contains(&format!("        {kind})")), "{kind}:\n{script}");
        }
        assert!(!script.contains('@'), "a placeholder was left:\n{script}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pre-receive");
        std::fs::write(&path, &script).unwrap();
        let out = std::process::Command::new("sh").arg("-n").arg(&path).output().unwrap();
        assert!(out.status.success(), "{}\n{script}", String::from_utf8_lossy(&out.stderr));
    }

    /// Runs the hook as receive-pack would, with `restrictions` and the update lines `stdin`;
    /// its exit code and stderr. (Fast-forward checks need a repository: the push matrix in
    /// tests/it covers them.)
    fn run_hook(restrictions: &str, stdin: &str, path: &str) -> (i32, String) {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let hook = dir.path().join("pre-receive");
        std::fs::write(&hook, pre_receive()).unwrap();
        let mut child = std::process::Command::new("/bin/sh")
            .arg(&hook)
            .env_clear()
            .env("PATH", path)
            .env("TROVE_RESTRICTIONS", restrictions)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    #[test]
    fn the_hook_refuses_what_the_restrictions_cover_and_nothing_else() {
        let path = std::env::var("PATH").unwrap_or_default();
        let (z, a, b) = ("0".repeat(40), "a".repeat(40), "b".repeat(40));
        // Backslashes in the expressions reach grep as they were written.
        let lines = "read-only\t^([^/]+/)*a\\.b/$\nno-deletes\t^refs/tags/v1/$\npull-request-only\t^refs/heads/main/$\n";
        let (code, err) = run_hook(lines, &format!("{a} {b} refs/heads/a.b\n"), &path);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("Branch refs/heads/a.b is read-only") && err.contains(CHECK_CONFIGURATION) && err.starts_with(RULE), "{err}");
        assert_eq!(run_hook(lines, &format!("{a} {b} refs/heads/aXb\n"), &path).0, 0, "`.` is a dot, not any character");
        assert_eq!(run_hook(lines, &format!("{a} {b} refs/tags/v1\n{z} {a} refs/heads/new\n"), &path).0, 0, "no-deletes lets an update through");
        let (code, err) = run_hook(lines, &format!("{a} {z} refs/tags/v1\n{z} {a} refs/heads/main\n"), &path);
        assert_eq!(code, 1);
        assert!(err.contains("Tag refs/tags/v1 may not be deleted.\nBranch refs/heads/main can only be modified through pull requests.\n"), "{err}");
        assert_eq!(run_hook("", &format!("{a} {z} refs/heads/main\n"), &path).0, 0, "no restrictions, no refusals");
        // Without grep, a covered-or-not question has no answer: refused, not let through.
        let (code, err) = run_hook(lines, &format!("{a} {b} refs/heads/x\n"), "/nonexistent");
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("cannot check the branch permissions"), "{err}");
    }
}
