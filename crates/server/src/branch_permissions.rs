//! Branch permissions in force: which restrictions apply to one user in one repository (those
//! of the repository and of its project, less the ones exempting the user or a group of theirs),
//! and what they refuse, on every path that moves a ref.
//!
//! - A push (smart HTTP or SSH): the server computes the restrictions that apply to the pusher
//!   before it starts `git receive-pack` and hands them to the pre-receive hook (`hooks.rs`) in
//!   `TROVE_RESTRICTIONS`, one line each, `type<TAB>regex`: the matcher as a POSIX extended
//!   regular expression over the ref name with a `/` appended ([`ere`]), so the hook needs only
//!   `grep -E`. The hook refuses the whole push, before any ref moves, with Bitbucket's message.
//! - A pull-request merge (`pull_requests.rs`): the target moves forward through a pull request
//!   (refused only by `read-only`), and the source branch, when the merge deletes it, obeys
//!   `read-only` and `no-deletes` (the delete is skipped, the merge stands).
//!
//! The rules themselves are the store's pure functions ([`trove_store::Matcher::matches`],
//! [`trove_store::RestrictionType::refuses`]); Bitbucket exempts nobody automatically, global
//! administrators included. The server's own writes (`refs/pull-requests/*`) are not subject to
//! branch permissions.

use trove_store::{
    Authenticated, Matcher, MatcherType, NewRestriction, Permission, ProjectInfo, RefChange, Repo, Restriction, RestrictionType, Store, StoreError,
};

use crate::AppState;
use crate::repo_read::{ReadError, Reader};

/// The rule above and below a refusal on the pusher's terminal, as long as Bitbucket's.
pub(crate) const RULE: &str = "----------------------------------------------------";
/// The line after the refusals, Bitbucket's words.
pub(crate) const CHECK_CONFIGURATION: &str = "Check your branch permissions configuration with the project administrator.";

/// Why the restrictions in force could not be worked out (the push or merge is then refused:
/// a restriction that cannot be read must not be taken for none).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RestrictionsError {
    #[error("cannot read the branch permissions: {0}")]
    Store(#[from] StoreError),
    #[error("cannot read the repository's default branch for its branch permissions: {0}")]
    Read(#[from] ReadError),
    #[error("repository {0} no longer exists")]
    NoRepo(i64),
}

impl RestrictionsError {
    /// The database could not be reached: a retry later may succeed (503, not 500).
    pub(crate) fn is_unavailable(&self) -> bool {
        matches!(self, RestrictionsError::Store(e) if e.is_unavailable())
    }
}

/// The restrictions that apply to one user in one repository.
#[derive(Debug, Clone, Default)]
pub(crate) struct Applying {
    restrictions: Vec<Restriction>,
    /// The repository's `HEAD`, for `MODEL_BRANCH development`; read only when one needs it.
    default_branch: Option<String>,
}

/// Who a push's exemptions are looked up for: a user (and their groups), or an SSH access key
/// (`branch_restriction_keys` holds access keys' ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exempt {
    User(i64),
    AccessKey(i64),
}

impl Applying {
    /// The restrictions in force in `repo` that do not exempt user `user_id` (directly or
    /// through one of their groups).
    pub(crate) async fn load(state: &AppState, repo: &Repo, user_id: i64) -> Result<Applying, RestrictionsError> {
        Self::load_for(state, repo, Exempt::User(user_id)).await
    }

    /// The restrictions in force in `repo` that do not exempt `who`.
    pub(crate) async fn load_for(state: &AppState, repo: &Repo, who: Exempt) -> Result<Applying, RestrictionsError> {
        let repo_c = repo.clone();
        let restrictions = state
            .store
            .run(move |s| -> Result<Vec<Restriction>, StoreError> {
                let all = s.restrictions_in_force(&repo_c)?;
                if all.is_empty() {
                    return Ok(all);
                }
                match who {
                    Exempt::User(user_id) => {
                        let groups: Vec<i64> = s.user_groups(user_id)?.iter().map(|g| g.id).collect();
                        Ok(all.into_iter().filter(|r| !r.exempts(user_id, &groups)).collect())
                    }
                    Exempt::AccessKey(key_id) => Ok(all.into_iter().filter(|r| !r.access_keys.contains(&key_id)).collect()),
                }
            })
            .await?;
        let default_branch =
            if restrictions.iter().any(|r| r.matcher.is_development()) { Reader::new(state, state.store.repo_path(repo)).head().await? } else { None };
        Ok(Applying { restrictions, default_branch })
    }

    /// [`Applying::load`] for a push to the repository with id `repo_id`.
    pub(crate) async fn for_push(state: &AppState, repo_id: i64, who: Exempt) -> Result<Applying, RestrictionsError> {
        let repo = state.store.run(move |s| s.repo_by_id(repo_id)).await?.ok_or(RestrictionsError::NoRepo(repo_id))?;
        Self::load_for(state, &repo, who).await
    }

    /// The restrictions that refuse `change` to `full_ref`, in force order.
    pub(crate) fn refusing(&self, full_ref: &str, change: RefChange, through_pull_request: bool) -> Vec<RestrictionType> {
        self.restrictions
            .iter()
            .filter(|r| r.matcher.matches(full_ref, self.default_branch.as_deref()) && r.kind.refuses(change, through_pull_request))
            .map(|r| r.kind)
            .collect()
    }

    /// What the pre-receive hook gets in `TROVE_RESTRICTIONS`: `type<TAB>regex` per line.
    pub(crate) fn hook_lines(&self) -> String {
        let mut out = String::new();
        for r in &self.restrictions {
            if let Some(re) = ere(&r.matcher, self.default_branch.as_deref()) {
                out.push_str(r.kind.as_str());
                out.push('\t');
                out.push_str(&re);
                out.push('\n');
            }
        }
        out
    }
}

/// `Branch`, `Tag` or `Ref`, for messages about `full_ref`.
pub(crate) fn ref_word(full_ref: &str) -> &'static str {
    if full_ref.starts_with("refs/heads/") {
        "Branch"
    } else if full_ref.starts_with("refs/tags/") {
        "Tag"
    } else {
        "Ref"
    }
}

/// What follows the ref's name in a refusal; the hook has the same words (`hooks.rs` builds its
/// script from these). pull-request-only's is Bitbucket's own.
pub(crate) fn refusal_tail(kind: RestrictionType) -> &'static str {
    match kind {
        RestrictionType::ReadOnly => "is read-only: it may not be created, changed or deleted.",
        RestrictionType::NoDeletes => "may not be deleted.",
        RestrictionType::FastForwardOnly => "may not be rewritten: only fast-forward changes are allowed.",
        RestrictionType::PullRequestOnly => "can only be modified through pull requests.",
    }
}

/// One refusal, as the pusher reads it: `Branch refs/heads/develop can only be modified through
/// pull requests.`
pub(crate) fn refusal(kind: RestrictionType, full_ref: &str) -> String {
    format!("{} {full_ref} {}", ref_word(full_ref), refusal_tail(kind))
}

/// The matcher as a POSIX extended regular expression over the ref name with `/` appended
/// (`refs/heads/main/`), which `grep -E` in the C locale decides exactly as
/// [`Matcher::matches`] does; `None` when it covers no ref (`MODEL_BRANCH production`, or
/// `development` in a repository without a default branch).
///
/// The `/` appended makes each segment `…/`, so a `**` segment is `([^/]+/)*`, any number of
/// whole segments, and a pattern (matched against the end of the name) starts with one.
pub(crate) fn ere(m: &Matcher, default_branch: Option<&str>) -> Option<String> {
    let body = match m.kind() {
        MatcherType::Branch => format!("{}/", escape(m.id())),
        MatcherType::Pattern => {
            let mut segments: Vec<&str> = vec!["**"];
            segments.extend(m.id().split('/'));
            if m.id().ends_with('/') {
                segments.pop();
                segments.push("**");
            }
            segments.iter().map(|s| if *s == "**" { "([^/]+/)*".to_owned() } else { format!("{}/", glob(s)) }).collect()
        }
        MatcherType::ModelCategory => format!("{}([^/]+/)+", escape(&m.category_prefix()?)),
        MatcherType::ModelBranch if m.is_development() => format!("{}/", escape(default_branch?)),
        MatcherType::ModelBranch => return None,
        // Not a restriction's matcher (parse refuses it), but if one were: every ref.
        MatcherType::AnyRef => "refs/([^/]+/)*".to_owned(),
    };
    Some(format!("^{body}$"))
}

/// One pattern segment: `*` any run of bytes but `/`, `?` one of them, the rest literally.
fn glob(segment: &str) -> String {
    let mut out = String::new();
    for c in segment.chars() {
        match c {
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            c => push_literal(&mut out, c),
        }
    }
    out
}

fn escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        push_literal(&mut out, c);
    }
    out
}

/// `c` as itself in an extended regular expression: a backslash before each character that is
/// special outside a bracket expression (POSIX 9.4.3), and only those (GNU grep warns about a
/// backslash before `]` or `}`, which are ordinary there).
fn push_literal(out: &mut String, c: char) {
    if matches!(c, '.' | '[' | '(' | ')' | '*' | '+' | '?' | '{' | '|' | '^' | '$' | '\\') {
        out.push('\\');
    }
    out.push(c);
}

/// Where a new restriction would apply, for [`lockout`].
#[derive(Clone, Copy)]
pub(crate) enum ScopeOf<'a> {
    Project(&'a ProjectInfo),
    Repository(&'a Repo),
}

impl ScopeOf<'_> {
    /// What the audit log names the scope by (`project:TP`, `repo:TP/test`).
    pub(crate) fn audit_target(self) -> String {
        match self {
            ScopeOf::Project(p) => crate::audit::target::project(&p.owner),
            ScopeOf::Repository(r) => crate::audit::target::repo(r),
        }
    }
}

/// Trove's rule against locking everyone out: a `read-only` or `pull-request-only` restriction
/// whose matcher covers every branch ([`Matcher::covers_every_branch`]: `*`, `**`, …) leaves no
/// one able to push a branch, and Bitbucket exempts nobody automatically, administrators
/// included. Such a restriction is refused unless it exempts at least one user (directly, or as
/// a member of an exempt group) who administers its scope (`PROJECT_ADMIN` on the project,
/// `REPO_ADMIN` on the repository, global administrators included). Restrictions on some
/// branches never lock anyone out: the others remain, and pull requests into them.
///
/// `Some(reason)` when refused.
pub(crate) fn lockout(store: &Store, scope: ScopeOf<'_>, new: &NewRestriction) -> Result<Option<String>, StoreError> {
    if !matches!(new.kind, RestrictionType::ReadOnly | RestrictionType::PullRequestOnly) || !new.matcher.covers_every_branch() {
        return Ok(None);
    }
    let mut candidates: Vec<i64> = new.users.clone();
    for g in store.groups()?.into_iter().filter(|g| new.groups.contains(&g.id)) {
        candidates.extend(store.group_members(&g)?.iter().map(|u| u.id));
    }
    candidates.sort_unstable();
    candidates.dedup();
    for id in candidates {
        let Some(user) = store.user_by_id(id)? else { continue };
        let who = Authenticated { user, token_scope: None };
        let level = match scope {
            ScopeOf::Project(p) => store.project_permission(Some(&who), p)?,
            ScopeOf::Repository(r) => store.permission(Some(&who), r)?,
        };
        if level == Some(Permission::Admin) {
            return Ok(None);
        }
    }
    let what = match scope {
        ScopeOf::Project(_) => "project",
        ScopeOf::Repository(_) => "repository",
    };
    Ok(Some(format!(
        "A {} restriction on {:?} covers every branch and would leave no administrator of this {what} able to push to any branch (administrators are not exempt \
         automatically). Exempt at least one user or group that administers the {what}, or restrict fewer branches.",
        new.kind,
        new.matcher.id()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hook's `grep -E`, exactly as it runs it: the name with `/` appended, in the C locale.
    fn grep(re: &str, full_ref: &str) -> bool {
        use std::io::Write as _;
        let mut child = std::process::Command::new("grep")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LANG", "C")
            .args(["-Eq", "--", re])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("grep is installed");
        child.stdin.take().unwrap().write_all(format!("{full_ref}/\n").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(matches!(out.status.code(), Some(0 | 1)), "grep failed on {re:?}: {}", out.status);
        assert!(out.stderr.is_empty(), "grep warned about {re:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.status.success()
    }

    #[test]
    fn the_hooks_regular_expressions_decide_as_the_matchers_do() {
        let patterns = [
            "*",
            "**",
            "main",
            "ain",
            "heads/main",
            "refs/heads/main",
            "release/*",
            "release/**",
            "PROJECT-*",
            "?.?",
            "?",
            "??",
            "f*o*o",
            "tags/",
            "tags/**",
            "heads/**/master",
            "refs/heads/*",
            "[ab]",
            "a.b",
            "a+b",
            "(x)",
            "x|y",
            "^x$",
            "{1}",
            "back\\slash",
            "**/**/x",
            "*-stable",
            "a]b",
            "x}",
        ];
        let refs = [
            "refs/heads/main",
            "refs/heads/main2",
            "refs/heads/stable/main",
            "refs/heads/release/1.0",
            "refs/heads/release/1.0/fix",
            "refs/heads/release",
            "refs/heads/PROJECT-1",
            "refs/tags/PROJECT-1.1",
            "refs/heads/1.1",
            "refs/heads/10.1",
            "refs/heads/é",
            "refs/heads/fxoyyo",
            "refs/tags/v1",
            "refs/heads/stable/tags/x",
            "refs/heads/master",
            "refs/heads/a/b/master",
            "refs/heads/[ab]",
            "refs/heads/a",
            "refs/heads/a.b",
            "refs/heads/aXb",
            "refs/heads/a+b",
            "refs/heads/aab",
            "refs/heads/(x)",
            "refs/heads/x|y",
            "refs/heads/x",
            "refs/heads/^x$",
            "refs/heads/{1}",
            "refs/heads/back\\slash",
            "refs/heads/2-stable",
            "refs/heads/a]b",
            "refs/heads/x}",
            "refs/heads/feature/x",
            "refs/heads/feature",
            "refs/pull-requests/1/from",
        ];
        let mut matchers: Vec<Matcher> = patterns.iter().map(|p| Matcher::new(MatcherType::Pattern, p).unwrap()).collect();
        for b in ["main", "refs/tags/v1", "a.b", "a+b", "{1}"] {
            matchers.push(Matcher::new(MatcherType::Branch, b).unwrap());
        }
        matchers.push(Matcher::new(MatcherType::ModelCategory, "FEATURE").unwrap());
        matchers.push(Matcher::new(MatcherType::ModelBranch, "development").unwrap());
        for m in &matchers {
            let re = ere(m, Some("refs/heads/main")).unwrap();
            for r in refs {
                assert_eq!(grep(&re, r), m.matches(r, Some("refs/heads/main")), "{:?} {:?} (as {re:?}) against {r:?}", m.kind(), m.id());
            }
        }
        let production = Matcher::new(MatcherType::ModelBranch, "production").unwrap();
        assert_eq!(ere(&production, Some("refs/heads/main")), None);
        assert_eq!(ere(&Matcher::new(MatcherType::ModelBranch, "development").unwrap(), None), None);
    }

    #[test]
    fn refusals_name_the_ref_and_read_as_bitbuckets() {
        assert_eq!(refusal(RestrictionType::PullRequestOnly, "refs/heads/develop"), "Branch refs/heads/develop can only be modified through pull requests.");
        assert_eq!(refusal(RestrictionType::NoDeletes, "refs/tags/v1"), "Tag refs/tags/v1 may not be deleted.");
        assert_eq!(RULE.len(), 52);
        for kind in RestrictionType::ALL {
            // The hook's script embeds these in single quotes.
            assert!(!refusal_tail(kind).contains('\''), "{kind}");
        }
    }

    #[test]
    fn only_the_restrictions_covering_a_change_refuse_it() {
        let r = |id, kind, mt, m: &str| Restriction {
            id,
            scope: trove_store::RestrictionScope::Repository(1),
            kind,
            matcher: Matcher::new(mt, m).unwrap(),
            users: vec![],
            groups: vec![],
            access_keys: vec![],
        };
        let a = Applying {
            restrictions: vec![
                r(1, RestrictionType::PullRequestOnly, MatcherType::ModelBranch, "development"),
                r(2, RestrictionType::NoDeletes, MatcherType::Pattern, "release/*"),
                r(3, RestrictionType::ReadOnly, MatcherType::Branch, "refs/tags/v1"),
            ],
            default_branch: Some("refs/heads/develop".into()),
        };
        assert_eq!(a.refusing("refs/heads/develop", RefChange::FastForward, false), [RestrictionType::PullRequestOnly]);
        assert!(a.refusing("refs/heads/develop", RefChange::FastForward, true).is_empty());
        assert_eq!(a.refusing("refs/heads/release/2", RefChange::Delete, true), [RestrictionType::NoDeletes]);
        assert!(a.refusing("refs/heads/release/2", RefChange::Rewrite, false).is_empty());
        assert_eq!(a.refusing("refs/tags/v1", RefChange::FastForward, true), [RestrictionType::ReadOnly]);
        assert!(a.refusing("refs/heads/main", RefChange::Delete, false).is_empty());
        let lines = a.hook_lines();
        assert_eq!(
            lines.lines().collect::<Vec<_>>(),
            ["pull-request-only\t^refs/heads/develop/$", "no-deletes\t^([^/]+/)*release/[^/]*/$", "read-only\t^refs/tags/v1/$"]
        );
    }
}
