//! Branch permissions, as Bitbucket Server has them: restrictions on which refs may change and
//! how, set on a project (every repository in it) or on one repository, each naming the users,
//! groups and access keys it does not apply to.
//!
//! What a restriction is and which refs it covers are decided here, once, by pure functions
//! with table tests beside them ([`Matcher::matches`], [`RestrictionType::refuses`]); the rows
//! are kept behind [`BranchRestrictions`]. Who is exempt, and enforcing it on a push or a merge,
//! is the server's.
//!
//! Matchers, as Bitbucket's ("Branch permission patterns" in its documentation):
//! - `BRANCH`: one ref, `refs/heads/main` (a bare `main` is taken as `refs/heads/main`);
//! - `PATTERN`: Ant-style, matched against the end of the full ref name, segment by segment:
//!   `?` is one character and `*` any characters, neither crossing a `/` (one byte, in Trove:
//!   a character outside ASCII takes several); a `**` segment is any
//!   number of segments, none included; a pattern ending in `/` has `**` added. So `*` covers
//!   every ref, `release/*` covers `refs/heads/release/1.0` (not `release/1.0/fix`), and
//!   `PROJECT-*` covers `refs/heads/stable/PROJECT-1` and `refs/tags/PROJECT-1.1`: patterns
//!   match tags too;
//! - `MODEL_CATEGORY`: the branching model's categories, as branch prefixes: `FEATURE`
//!   (`refs/heads/feature/…`), `BUGFIX` (`bugfix/`), `HOTFIX` (`hotfix/`), `RELEASE` (`release/`);
//! - `MODEL_BRANCH`: the branching model's branches: `development` is the repository's default
//!   branch (its `HEAD`) at the time of the change; `production` covers nothing, as in a
//!   Bitbucket whose branching model has no production branch (Trove has no branching-model
//!   settings yet);
//! - `ANY_REF`: every ref. Bitbucket's required-builds conditions use it; branch restrictions
//!   do not take it ([`MatcherType::parse`] refuses it, [`MatcherType::parse_ref_matcher`]
//!   accepts it), and its id is always `ANY_REF_MATCHER_ID`, as Bitbucket writes it.

use crate::error::StoreError;
use crate::groups::Group;
use crate::repos::Repo;

/// Longest matcher id accepted (a ref name or a pattern).
pub const MAX_MATCHER_LEN: usize = 1024;

/// What a restriction prevents; the names are Bitbucket's REST `type`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RestrictionType {
    /// No changes at all, pull-request merges included ("Prevent all changes").
    ReadOnly,
    /// No deleting ("Prevent deletion").
    NoDeletes,
    /// No rewriting history: an update must fast-forward ("Prevent rewriting history").
    FastForwardOnly,
    /// Changes only by merging a pull request ("Prevent changes without a pull request").
    PullRequestOnly,
}

/// One change to one ref, as a restriction sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefChange {
    /// The ref did not exist.
    Create,
    /// The ref goes away.
    Delete,
    /// The ref moves to a descendant of where it was.
    FastForward,
    /// The ref moves anywhere else (a force push).
    Rewrite,
}

impl RestrictionType {
    pub const ALL: [RestrictionType; 4] =
        [RestrictionType::ReadOnly, RestrictionType::NoDeletes, RestrictionType::FastForwardOnly, RestrictionType::PullRequestOnly];

    pub fn as_str(self) -> &'static str {
        match self {
            RestrictionType::ReadOnly => "read-only",
            RestrictionType::NoDeletes => "no-deletes",
            RestrictionType::FastForwardOnly => "fast-forward-only",
            RestrictionType::PullRequestOnly => "pull-request-only",
        }
    }

    pub fn parse(s: &str) -> Option<RestrictionType> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether this restriction refuses `change` to a ref it covers, for someone it is not
    /// exempting. `through_pull_request`: the change is the server merging a pull request (the
    /// target moving forward, or the source deleted after it).
    ///
    /// Deleting is not rewriting (a `fast-forward-only` branch may be deleted unless `no-deletes`
    /// also covers it), and a pull-request-only branch cannot be created by a push either, as
    /// in Bitbucket. The pre-receive hook (the server's `hooks.rs`) applies this same table.
    pub fn refuses(self, change: RefChange, through_pull_request: bool) -> bool {
        match self {
            RestrictionType::ReadOnly => true,
            RestrictionType::NoDeletes => change == RefChange::Delete,
            RestrictionType::FastForwardOnly => change == RefChange::Rewrite,
            RestrictionType::PullRequestOnly => !through_pull_request,
        }
    }
}

impl std::fmt::Display for RestrictionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a restriction names the refs it covers; the names are Bitbucket's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatcherType {
    Branch,
    Pattern,
    ModelCategory,
    ModelBranch,
    /// Every ref; only in required-builds conditions.
    AnyRef,
}

/// The id Bitbucket gives an `ANY_REF` matcher.
pub const ANY_REF_MATCHER_ID: &str = "ANY_REF_MATCHER_ID";

impl MatcherType {
    pub const ALL: [MatcherType; 4] = [MatcherType::Branch, MatcherType::Pattern, MatcherType::ModelCategory, MatcherType::ModelBranch];

    pub fn as_str(self) -> &'static str {
        match self {
            MatcherType::Branch => "BRANCH",
            MatcherType::Pattern => "PATTERN",
            MatcherType::ModelCategory => "MODEL_CATEGORY",
            MatcherType::ModelBranch => "MODEL_BRANCH",
            MatcherType::AnyRef => "ANY_REF",
        }
    }

    /// Bitbucket's display name (`matcher.type.name`).
    pub fn name(self) -> &'static str {
        match self {
            MatcherType::Branch => "Branch",
            MatcherType::Pattern => "Pattern",
            MatcherType::ModelCategory => "Branching model category",
            MatcherType::ModelBranch => "Branching model branch",
            MatcherType::AnyRef => "Any branch",
        }
    }

    /// `BRANCH`, `PATTERN`, …, in any case.
    pub fn parse(s: &str) -> Option<MatcherType> {
        Self::ALL.into_iter().find(|t| t.as_str().eq_ignore_ascii_case(s))
    }

    /// As [`MatcherType::parse`], and `ANY_REF` too: the ref matchers of required-builds
    /// conditions.
    pub fn parse_ref_matcher(s: &str) -> Option<MatcherType> {
        if "ANY_REF".eq_ignore_ascii_case(s) { Some(MatcherType::AnyRef) } else { Self::parse(s) }
    }
}

/// The branching model's categories and the branch prefix each stands for.
const CATEGORIES: [(&str, &str, &str); 4] =
    [("FEATURE", "Feature", "feature/"), ("BUGFIX", "Bugfix", "bugfix/"), ("HOTFIX", "Hotfix", "hotfix/"), ("RELEASE", "Release", "release/")];

/// The branching model's branches.
const MODEL_BRANCHES: [(&str, &str); 2] = [("development", "Development"), ("production", "Production")];

/// Why a matcher was refused; each message says what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("the matcher id is empty; name a branch (refs/heads/main) or a pattern (release/*)")]
    Empty,
    #[error("the matcher id is longer than {MAX_MATCHER_LEN} characters")]
    TooLong,
    #[error("the matcher id {0:?} has a space or control character; ref names and patterns have none")]
    BadCharacter(String),
    #[error("the branch {0:?} is not a valid ref name; name it as refs/heads/main or main")]
    BadBranch(String),
    #[error("the pattern {0:?} has an empty path segment (`//`, or a leading `/`); write it as release/* or refs/heads/release/*")]
    BadPattern(String),
    #[error("{0:?} is not a branching model category; use one of FEATURE, BUGFIX, HOTFIX or RELEASE")]
    UnknownCategory(String),
    #[error("{0:?} is not a branching model branch; use development or production")]
    UnknownModelBranch(String),
}

/// Which refs a restriction covers: a type and an id, valid by construction ([`Matcher::new`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Matcher {
    kind: MatcherType,
    id: String,
}

impl Matcher {
    /// Checks and normalises a matcher: a `BRANCH` without `refs/` gets `refs/heads/`, a
    /// category is upper case and a model branch lower case, as Bitbucket writes them.
    pub fn new(kind: MatcherType, id: &str) -> Result<Matcher, MatcherError> {
        if kind == MatcherType::AnyRef {
            // Whatever id is sent, Bitbucket keeps its own.
            return Ok(Matcher { kind, id: ANY_REF_MATCHER_ID.to_owned() });
        }
        if id.is_empty() {
            return Err(MatcherError::Empty);
        }
        if id.len() > MAX_MATCHER_LEN {
            return Err(MatcherError::TooLong);
        }
        if id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(MatcherError::BadCharacter(id.to_owned()));
        }
        let id = match kind {
            MatcherType::Branch => {
                let full = if id.starts_with("refs/") { id.to_owned() } else { format!("refs/heads/{id}") };
                let bad = full.ends_with('/')
                    || full.ends_with(".lock")
                    || full.contains("//")
                    || full.contains("..")
                    || full.contains("@{")
                    || full.chars().any(|c| matches!(c, '~' | '^' | ':' | '?' | '*' | '[' | '\\'));
                if bad {
                    return Err(MatcherError::BadBranch(id.to_owned()));
                }
                full
            }
            MatcherType::Pattern => {
                if id.starts_with('/') || id.contains("//") {
                    return Err(MatcherError::BadPattern(id.to_owned()));
                }
                id.to_owned()
            }
            MatcherType::ModelCategory => {
                CATEGORIES.iter().find(|(c, _, _)| c.eq_ignore_ascii_case(id)).ok_or_else(|| MatcherError::UnknownCategory(id.to_owned()))?.0.to_owned()
            }
            MatcherType::ModelBranch => {
                MODEL_BRANCHES.iter().find(|(b, _)| b.eq_ignore_ascii_case(id)).ok_or_else(|| MatcherError::UnknownModelBranch(id.to_owned()))?.0.to_owned()
            }
            MatcherType::AnyRef => ANY_REF_MATCHER_ID.to_owned(),
        };
        Ok(Matcher { kind, id })
    }

    pub fn kind(&self) -> MatcherType {
        self.kind
    }

    /// As stored and shown (`matcher.id`): `refs/heads/main`, `release/*`, `FEATURE`, `development`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// As Bitbucket shows it to people (`matcher.displayId`): `main`, `release/*`, `Feature`.
    pub fn display_id(&self) -> String {
        match self.kind {
            MatcherType::Branch => self.id.strip_prefix("refs/heads/").unwrap_or(&self.id).to_owned(),
            MatcherType::Pattern => self.id.clone(),
            MatcherType::ModelCategory => CATEGORIES.iter().find(|(c, _, _)| *c == self.id).map_or(&*self.id, |(_, d, _)| d).to_owned(),
            MatcherType::ModelBranch => MODEL_BRANCHES.iter().find(|(b, _)| *b == self.id).map_or(&*self.id, |(_, d)| d).to_owned(),
            MatcherType::AnyRef => self.id.clone(),
        }
    }

    /// For a `MODEL_CATEGORY`, the branch prefix it stands for (`refs/heads/feature/`).
    pub fn category_prefix(&self) -> Option<String> {
        match self.kind {
            MatcherType::ModelCategory => CATEGORIES.iter().find(|(c, _, _)| *c == self.id).map(|(_, _, p)| format!("refs/heads/{p}")),
            _ => None,
        }
    }

    /// For a `MODEL_BRANCH`, whether it is the development branch (the default branch).
    pub fn is_development(&self) -> bool {
        self.kind == MatcherType::ModelBranch && self.id == "development"
    }

    /// Whether this matcher covers `full_ref` (`refs/heads/main`); `default_branch` is the
    /// repository's `HEAD` (`refs/heads/main`), if it has one.
    pub fn matches(&self, full_ref: &str, default_branch: Option<&str>) -> bool {
        match self.kind {
            MatcherType::Branch => self.id == full_ref,
            MatcherType::Pattern => pattern_matches(&self.id, full_ref),
            MatcherType::ModelCategory => self.category_prefix().is_some_and(|p| full_ref.strip_prefix(&p).is_some_and(|rest| !rest.is_empty())),
            MatcherType::ModelBranch => self.is_development() && default_branch == Some(full_ref),
            MatcherType::AnyRef => true,
        }
    }

    /// Whether this matcher covers every branch, whatever it is called: what makes a read-only
    /// or pull-request-only restriction lock everyone out of pushing (see the server's rule).
    /// Decided on branch names of every shape, so `*`, `**`, `heads/**` and `*/*` all count.
    pub fn covers_every_branch(&self) -> bool {
        const PROBES: [&str; 7] = [
            "refs/heads/main",
            "refs/heads/master",
            "refs/heads/x",
            "refs/heads/feature/a",
            "refs/heads/a/b/c/d/e",
            "refs/heads/release-1.0",
            "refs/heads/Z_9",
        ];
        self.kind == MatcherType::Pattern && PROBES.iter().all(|r| self.matches(r, None))
    }
}

/// Bitbucket's branch permission patterns (Ant-style): whether `pattern` matches the end of
/// `full_ref`, path segment by path segment. See the module's documentation for the rules.
pub fn pattern_matches(pattern: &str, full_ref: &str) -> bool {
    let mut pat: Vec<&str> = vec!["**"];
    pat.extend(pattern.split('/'));
    if pattern.ends_with('/') {
        // "foo/" splits into ["foo", ""]: the empty last segment becomes `**`.
        pat.pop();
        pat.push("**");
    }
    let name: Vec<&str> = full_ref.split('/').collect();
    segments_match(&pat, &name)
}

/// Whether the pattern segments `pat` match the name segments `name` whole; `**` is any number
/// of segments. Dynamic programming over (pattern, name) positions, so a pattern of many `**`
/// costs `pat.len() × name.len()`, not exponential backtracking.
fn segments_match(pat: &[&str], name: &[&str]) -> bool {
    // ok[j]: the pattern so far matches name[..j].
    let mut ok = vec![false; name.len() + 1];
    ok[0] = true;
    for p in pat {
        let mut next = vec![false; name.len() + 1];
        if *p == "**" {
            // Any number of segments: reachable from any earlier reachable position.
            let mut seen = false;
            for j in 0..=name.len() {
                seen |= ok[j];
                next[j] = seen;
            }
        } else {
            for j in 0..name.len() {
                next[j + 1] = ok[j] && glob(p.as_bytes(), name[j].as_bytes());
            }
        }
        ok = next;
    }
    ok[name.len()]
}

/// One segment: `*` any bytes, `?` one byte, everything else itself. Bytes, not characters, so
/// that the pre-receive hook's `grep -E` (in the C locale, where a name that is not UTF-8 still
/// matches) agrees with this on every name.
fn glob(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
            }
            Some(b'?') => {
                pi += 1;
                si += 1;
            }
            Some(c) if *c == s[si] => {
                pi += 1;
                si += 1;
            }
            _ => match star {
                // Let the last `*` take one more character and try again from there.
                Some((sp, ss)) => {
                    let ss = ss + 1;
                    star = Some((sp, ss));
                    pi = sp + 1;
                    si = ss;
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

/// Where a restriction applies: every repository of a project, or one repository (by id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RestrictionScope {
    Project(i64),
    Repository(i64),
}

impl RestrictionScope {
    /// Bitbucket's `scope.type`.
    pub fn type_name(self) -> &'static str {
        match self {
            RestrictionScope::Project(_) => "PROJECT",
            RestrictionScope::Repository(_) => "REPOSITORY",
        }
    }

    /// Bitbucket's `scope.resourceId`: the project's or the repository's id.
    pub fn resource_id(self) -> i64 {
        match self {
            RestrictionScope::Project(id) | RestrictionScope::Repository(id) => id,
        }
    }
}

/// A restriction as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restriction {
    /// Global, never reused (REST clients address restrictions by it).
    pub id: i64,
    pub scope: RestrictionScope,
    pub kind: RestrictionType,
    pub matcher: Matcher,
    /// Exempt users, by id, ascending.
    pub users: Vec<i64>,
    /// Exempt groups (their members are exempt), by name.
    pub groups: Vec<Group>,
    /// Exempt SSH access keys ([`crate::SshKeys`]), by id, ascending.
    pub access_keys: Vec<i64>,
}

impl Restriction {
    /// Whether the user `user_id`, a member of the groups `group_ids`, is exempt.
    pub fn exempts(&self, user_id: i64, group_ids: &[i64]) -> bool {
        self.users.contains(&user_id) || self.groups.iter().any(|g| group_ids.contains(&g.id))
    }
}

/// A restriction to create ([`BranchRestrictions::insert_restrictions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRestriction {
    pub scope: RestrictionScope,
    pub kind: RestrictionType,
    pub matcher: Matcher,
    pub users: Vec<i64>,
    pub groups: Vec<i64>,
    pub access_keys: Vec<i64>,
}

/// The rows of branch restrictions and their exemptions. A restriction goes with its project or
/// repository; an exemption with its user or group.
pub trait BranchRestrictions {
    /// Creates every one of `new` in one transaction (all or none), in order; returns them with
    /// their ids. Duplicate exemptions are kept once.
    fn insert_restrictions(&self, new: &[NewRestriction]) -> Result<Vec<Restriction>, StoreError>;
    fn restriction(&self, id: i64) -> Result<Option<Restriction>, StoreError>;
    /// The restrictions set on exactly this scope, by id.
    fn scope_restrictions(&self, scope: RestrictionScope) -> Result<Vec<Restriction>, StoreError>;
    /// The restrictions in force in `repo`: its project's, then its own, each by id.
    fn restrictions_in_force(&self, repo: &Repo) -> Result<Vec<Restriction>, StoreError>;
    /// Removes a restriction; `false` when there was none with this id.
    fn delete_restriction(&self, id: i64) -> Result<bool, StoreError>;
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn patterns_follow_bitbuckets_rules() {
        #[rustfmt::skip]
        let table: &[(&str, &str, bool)] = &[
            // `*` matches everything: any last segment.
            ("*", "refs/heads/main", true),
            ("*", "refs/heads/feature/x", true),
            ("*", "refs/tags/v1", true),
            ("**", "refs/heads/a/b/c", true),
            // A suffix of the full name, segment-aligned.
            ("main", "refs/heads/main", true),
            ("main", "refs/heads/stable/main", true),
            ("ain", "refs/heads/main", false),
            ("main", "refs/heads/main2", false),
            ("heads/main", "refs/heads/main", true),
            ("refs/heads/main", "refs/heads/main", true),
            ("refs/heads/main", "refs/heads/x/refs/heads/main", true),
            // `*` and `?` stay within a segment.
            ("release/*", "refs/heads/release/1.0", true),
            ("release/*", "refs/heads/release/1.0/hotfix", false),
            ("release/*", "refs/heads/release", false),
            ("release/*", "refs/heads/old/release/2", true),
            ("release/**", "refs/heads/release/1.0/hotfix", true),
            ("release/**", "refs/heads/release", true),
            ("PROJECT-*", "refs/heads/PROJECT-1234", true),
            ("PROJECT-*", "refs/heads/stable/PROJECT-new", true),
            ("PROJECT-*", "refs/tags/PROJECT-1.1", true),
            ("PROJECT-*", "refs/heads/PROJECT", false),
            ("?.?", "refs/heads/1.1", true),
            ("?.?", "refs/heads/stable/2.X", true),
            ("?.?", "refs/tags/3.1", true),
            ("?.?", "refs/heads/10.1", false),
            ("?", "refs/heads/é", false),
            ("??", "refs/heads/é", true),
            ("f*o*o", "refs/heads/fxoyyo", true),
            ("f*o*o", "refs/heads/fxoyy", false),
            ("*-stable", "refs/heads/2-stable", true),
            ("a*b*c*d", "refs/heads/aXbYbcZd", true),
            // A trailing `/` is `/**`: that segment anywhere, with anything below it.
            ("tags/", "refs/tags/project-1.1.0", true),
            ("tags/", "refs/heads/stable/tags/some_branch", true),
            ("tags/**", "refs/tags/a/b", true),
            ("heads/**/master", "refs/heads/master", true),
            ("heads/**/master", "refs/heads/stable/master", true),
            ("heads/**/master", "refs/tags/master", false),
            ("refs/heads/*", "refs/heads/main", true),
            ("refs/heads/*", "refs/heads/a/b", false),
            ("refs/heads/**", "refs/heads/a/b", true),
            ("refs/heads/**", "refs/tags/v1", false),
            // No character classes: `[` is itself.
            ("[ab]", "refs/heads/a", false),
            ("[ab]", "refs/heads/[ab]", true),
            ("**/**/**/x", "refs/heads/x", true),
        ];
        for (pattern, name, want) in table {
            assert_eq!(pattern_matches(pattern, name), *want, "{pattern:?} against {name:?}");
        }
    }

    #[test]
    fn matchers_normalise_and_cover_their_refs() {
        let m = |k, id: &str| Matcher::new(k, id).unwrap();
        let main = m(MatcherType::Branch, "main");
        assert_eq!((main.id(), main.display_id().as_str()), ("refs/heads/main", "main"));
        assert!(main.matches("refs/heads/main", None) && !main.matches("refs/heads/main2", None) && !main.matches("refs/tags/main", None));
        let tag = m(MatcherType::Branch, "refs/tags/v1");
        assert_eq!((tag.id(), tag.display_id().as_str()), ("refs/tags/v1", "refs/tags/v1"));
        let feature = m(MatcherType::ModelCategory, "feature");
        assert_eq!((feature.id(), feature.display_id().as_str()), ("FEATURE", "Feature"));
        assert!(feature.matches("refs/heads/feature/x", None) && feature.matches("refs/heads/feature/x/y", None));
        assert!(
            !feature.matches("refs/heads/feature", None) && !feature.matches("refs/heads/feature/", None) && !feature.matches("refs/heads/features/x", None)
        );
        assert!(m(MatcherType::ModelCategory, "RELEASE").matches("refs/heads/release/1.0", None));
        let dev = m(MatcherType::ModelBranch, "Development");
        assert_eq!((dev.id(), dev.display_id().as_str()), ("development", "Development"));
        assert!(dev.matches("refs/heads/develop", Some("refs/heads/develop")) && !dev.matches("refs/heads/main", Some("refs/heads/develop")));
        assert!(!dev.matches("refs/heads/main", None), "no default branch, nothing covered");
        let prod = m(MatcherType::ModelBranch, "production");
        assert!(!prod.matches("refs/heads/main", Some("refs/heads/main")), "no production branch is configured");
        for bad in [
            (MatcherType::Branch, ""),
            (MatcherType::Branch, "a b"),
            (MatcherType::Branch, "feature/"),
            (MatcherType::Branch, "a..b"),
            (MatcherType::Branch, "x*"),
            (MatcherType::Pattern, "/main"),
            (MatcherType::Pattern, "a//b"),
            (MatcherType::Pattern, "tab\there"),
            (MatcherType::ModelCategory, "CHORE"),
            (MatcherType::ModelBranch, "staging"),
        ] {
            assert!(Matcher::new(bad.0, bad.1).is_err(), "{bad:?}");
        }
        assert!(Matcher::new(MatcherType::Pattern, &"a".repeat(MAX_MATCHER_LEN + 1)).is_err());
        assert_eq!(MatcherType::parse("model_category"), Some(MatcherType::ModelCategory));
        assert_eq!(MatcherType::parse("ANY_REF"), None);
    }

    #[test]
    fn only_patterns_of_every_branch_cover_every_branch() {
        for (pattern, every) in
            [("*", true), ("**", true), ("heads/**", true), ("*/*", true), ("refs/**", true), ("m*", false), ("release/*", false), ("?*", true)]
        {
            assert_eq!(Matcher::new(MatcherType::Pattern, pattern).unwrap().covers_every_branch(), every, "{pattern}");
        }
        assert!(!Matcher::new(MatcherType::Branch, "main").unwrap().covers_every_branch());
    }

    #[test]
    fn each_type_refuses_its_changes() {
        use RefChange::*;
        use RestrictionType::*;
        // Per type, for (create, delete, fast-forward, rewrite): refused by a push / by a
        // pull-request merge.
        #[rustfmt::skip]
        let table: &[(RestrictionType, [bool; 4], [bool; 4])] = &[
            (ReadOnly,        [true, true, true, true],     [true, true, true, true]),
            (NoDeletes,       [false, true, false, false],  [false, true, false, false]),
            (FastForwardOnly, [false, false, false, true],  [false, false, false, true]),
            (PullRequestOnly, [true, true, true, true],     [false, false, false, false]),
        ];
        for (kind, push, merge) in table {
            for (i, change) in [Create, Delete, FastForward, Rewrite].into_iter().enumerate() {
                assert_eq!(kind.refuses(change, false), push[i], "{kind} {change:?} by a push");
                assert_eq!(kind.refuses(change, true), merge[i], "{kind} {change:?} by a merge");
            }
            assert_eq!(RestrictionType::parse(kind.as_str()), Some(*kind));
        }
        assert_eq!(RestrictionType::parse("READ-ONLY"), None);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::backends;
    use crate::{GlobalPermission, GroupName, Owner, Password, ProjectKey, RepoSlug, UserName};

    fn matcher(kind: MatcherType, id: &str) -> Matcher {
        Matcher::new(kind, id).unwrap()
    }

    fn new(scope: RestrictionScope, kind: RestrictionType, m: Matcher, users: Vec<i64>, groups: Vec<i64>, keys: Vec<i64>) -> NewRestriction {
        NewRestriction { scope, kind, matcher: m, users, groups, access_keys: keys }
    }

    #[test]
    pub(crate) fn restrictions_round_trip_with_their_exemptions_and_list_by_scope() {
        let (_d, s) = backends::store();
        let pw = Password::new("password1").unwrap();
        let alice = s.create_user(&UserName::parse("alice").unwrap(), &pw, GlobalPermission::LicensedUser).unwrap();
        let bob = s.create_user(&UserName::parse("bob").unwrap(), &pw, GlobalPermission::LicensedUser).unwrap();
        let leads = s.insert_group(&GroupName::parse("Leads").unwrap()).unwrap();
        let bots = s.insert_group(&GroupName::parse("bots").unwrap()).unwrap();
        let key = ProjectKey::parse("TP").unwrap();
        let project = s.create_project(&key, None, false).unwrap();
        let owner = Owner::Project(key);
        let repo = s.create_repo(&owner, &RepoSlug::parse("r").unwrap(), false).unwrap();
        let other = s.create_repo(&owner, &RepoSlug::parse("other").unwrap(), false).unwrap();
        let made = s
            .insert_restrictions(&[
                new(RestrictionScope::Project(project.id), RestrictionType::NoDeletes, matcher(MatcherType::Pattern, "release/*"), vec![], vec![], vec![]),
                new(
                    RestrictionScope::Repository(repo.id),
                    RestrictionType::PullRequestOnly,
                    matcher(MatcherType::Branch, "main"),
                    vec![bob.id, alice.id, bob.id],
                    vec![leads.id, bots.id],
                    vec![7, 5, 7],
                ),
            ])
            .unwrap();
        assert_eq!(made.len(), 2);
        assert!(made[1].id > made[0].id);
        let pr_only = &made[1];
        assert_eq!(pr_only.scope, RestrictionScope::Repository(repo.id));
        assert_eq!(pr_only.users, [alice.id.min(bob.id), alice.id.max(bob.id)], "once each, by id");
        assert_eq!(pr_only.groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), ["bots", "Leads"], "by name");
        assert_eq!(pr_only.access_keys, [5, 7]);
        assert_eq!(s.restriction(pr_only.id).unwrap().as_ref(), Some(pr_only));
        assert_eq!(s.restriction(pr_only.id + 100).unwrap(), None);
        assert_eq!(s.scope_restrictions(RestrictionScope::Project(project.id)).unwrap(), made[..1]);
        assert_eq!(s.scope_restrictions(RestrictionScope::Repository(repo.id)).unwrap(), made[1..]);
        assert!(s.scope_restrictions(RestrictionScope::Repository(other.id)).unwrap().is_empty());
        assert_eq!(s.restrictions_in_force(&repo).unwrap(), made, "the project's, then the repository's");
        assert_eq!(s.restrictions_in_force(&other).unwrap(), made[..1], "a project restriction is in force in each of its repositories");
        assert!(pr_only.exempts(alice.id, &[]) && pr_only.exempts(999, &[bots.id]) && !pr_only.exempts(999, &[998]));
        assert!(s.delete_restriction(made[0].id).unwrap());
        assert!(!s.delete_restriction(made[0].id).unwrap());
        assert_eq!(s.restrictions_in_force(&other).unwrap(), []);
    }

    #[test]
    pub(crate) fn a_failed_bulk_insert_creates_none_and_ids_are_never_reused() {
        let (_d, s) = backends::store();
        let key = ProjectKey::parse("TP").unwrap();
        let project = s.create_project(&key, None, false).unwrap();
        let scope = RestrictionScope::Project(project.id);
        let first = s.insert_restrictions(&[new(scope, RestrictionType::ReadOnly, matcher(MatcherType::Branch, "main"), vec![], vec![], vec![])]).unwrap();
        // The second names a user that does not exist: the first of the batch is not kept.
        let batch = [
            new(scope, RestrictionType::NoDeletes, matcher(MatcherType::Branch, "dev"), vec![], vec![], vec![]),
            new(scope, RestrictionType::NoDeletes, matcher(MatcherType::Branch, "x"), vec![424242], vec![], vec![]),
        ];
        assert!(s.insert_restrictions(&batch).is_err());
        assert_eq!(s.scope_restrictions(scope).unwrap(), first);
        s.delete_restriction(first[0].id).unwrap();
        let next = s.insert_restrictions(&batch[..1]).unwrap();
        assert!(next[0].id > first[0].id, "id {} given again", first[0].id);
    }

    #[test]
    pub(crate) fn restrictions_and_exemptions_go_with_their_repository_project_user_and_group() {
        let (dir, s) = backends::store();
        let pw = Password::new("password1").unwrap();
        let alice = s.create_user(&UserName::parse("alice").unwrap(), &pw, GlobalPermission::LicensedUser).unwrap();
        let devs = s.insert_group(&GroupName::parse("devs").unwrap()).unwrap();
        let mut ids = Vec::new();
        for k in ["TP", "OT"] {
            let key = ProjectKey::parse(k).unwrap();
            let project = s.create_project(&key, None, false).unwrap();
            let repo = s.create_repo(&Owner::Project(key), &RepoSlug::parse("r").unwrap(), false).unwrap();
            for scope in [RestrictionScope::Project(project.id), RestrictionScope::Repository(repo.id)] {
                let m = matcher(MatcherType::Pattern, "*");
                let r = s.insert_restrictions(&[new(scope, RestrictionType::ReadOnly, m, vec![alice.id], vec![devs.id], vec![1])]).unwrap();
                ids.push(r[0].id);
            }
        }
        let count = |t: &str| backends::count(dir.path(), t);
        let all =
            |c: &dyn Fn(&str) -> i64| (c("branch_restrictions"), c("branch_restriction_users"), c("branch_restriction_groups"), c("branch_restriction_keys"));
        assert_eq!(all(&count), (4, 4, 4, 4));
        let tp_repo = s.repo(&Owner::parse("TP").unwrap(), &RepoSlug::parse("r").unwrap()).unwrap().unwrap();
        s.delete_repo(&tp_repo).unwrap();
        assert_eq!(all(&count), (3, 3, 3, 3), "a deleted repository's restrictions go with it");
        s.delete_project(&ProjectKey::parse("OT").unwrap()).unwrap();
        assert_eq!(all(&count), (1, 1, 1, 1), "a deleted project's restrictions, and its repositories', go with it");
        s.delete_group(&GroupName::parse("devs").unwrap()).unwrap();
        s.delete_user(&alice.name).unwrap();
        let left = s.restriction(ids[0]).unwrap().unwrap();
        assert_eq!((left.users.len(), left.groups.len(), left.access_keys.len()), (0, 0, 1), "exemptions go with their user and group");
    }
}
