//! Validated names: project keys, repository slugs, user and group names, each valid by
//! construction.
//!
//! Every name that reaches the disk or a URL passes through one of these parsers first, so
//! nothing downstream has to wonder whether a name could escape the data directory (`..`, `/`),
//! be taken for a command-line option (a leading `-`) or collide with git's own files (`.lock`).

use std::fmt;
use std::str::FromStr;

/// Longest project key, slug or user name we accept (Bitbucket allows 128 for keys and slugs).
pub const MAX_NAME_LEN: usize = 128;

/// Which kind of name was refused, and why; the message says what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("project key {input:?} is invalid: {reason}; a key starts with a letter and has only letters, digits and `_` (like `TP`)")]
    ProjectKey { input: String, reason: &'static str },
    #[error(
        "repository slug {input:?} is invalid: {reason}; a slug starts with a letter or digit and has only letters, digits, `.`, `_` and `-` (like `test`)"
    )]
    RepoSlug { input: String, reason: &'static str },
    #[error("user name {input:?} is invalid: {reason}; a user name starts with a letter or digit and has only letters, digits, `.`, `_`, `-` and `@`")]
    UserName { input: String, reason: &'static str },
    #[error(
        "group name {input:?} is invalid: {reason}; a group name is 1 to 128 characters without control characters or spaces at either end (like `developers`)"
    )]
    GroupName { input: String, reason: &'static str },
}

fn check_len(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("it is empty");
    }
    if s.len() > MAX_NAME_LEN {
        return Err("it is longer than 128 characters");
    }
    Ok(())
}

/// A project key such as `TP`. Keys are case-insensitive (`/scm/tp/…` and `/scm/TP/…` are the
/// same project), so the parsed form is upper-case, as Bitbucket shows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectKey(String);

impl ProjectKey {
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let err = |reason| NameError::ProjectKey { input: input.to_owned(), reason };
        check_len(input).map_err(err)?;
        let first = input.chars().next().unwrap_or(' ');
        if !first.is_ascii_alphabetic() {
            return Err(err("it does not start with a letter"));
        }
        if !input.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(err("it has a character other than a letter, digit or `_`"));
        }
        Ok(Self(input.to_ascii_uppercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A repository slug such as `test`. Slugs are case-insensitive and kept in lower case, as
/// Bitbucket does; a trailing `.git` is not part of the slug.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoSlug(String);

impl RepoSlug {
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let err = |reason| NameError::RepoSlug { input: input.to_owned(), reason };
        check_len(input).map_err(err)?;
        let first = input.chars().next().unwrap_or(' ');
        if !first.is_ascii_alphanumeric() {
            return Err(err("it does not start with a letter or digit"));
        }
        if !input.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
            return Err(err("it has a character other than a letter, digit, `.`, `_` or `-`"));
        }
        if input.contains("..") {
            return Err(err("it contains `..`"));
        }
        let lower = input.to_ascii_lowercase();
        if lower.ends_with(".git") || lower.ends_with(".lock") || lower.ends_with('.') {
            return Err(err("it ends with `.git`, `.lock` or `.`"));
        }
        Ok(Self(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A user name such as `justme`. User names are case-insensitive and kept in lower case. `:`
/// is refused because Basic auth splits on it; `~` and `/` because names appear in paths.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(String);

impl UserName {
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let err = |reason| NameError::UserName { input: input.to_owned(), reason };
        check_len(input).map_err(err)?;
        let first = input.chars().next().unwrap_or(' ');
        if !first.is_ascii_alphanumeric() {
            return Err(err("it does not start with a letter or digit"));
        }
        if !input.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')) {
            return Err(err("it has a character other than a letter, digit, `.`, `_`, `-` or `@`"));
        }
        if input.contains("..") {
            return Err(err("it contains `..`"));
        }
        Ok(Self(input.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A group's name such as `developers`. Bitbucket's group names are free text, compared without
/// regard to case (`Developers` and `developers` are one group) and shown as they were created:
/// so the name keeps its case and [`GroupName::key`] is what the store compares. Group names
/// appear only in query strings and JSON, never in paths, so any printable character is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupName(String);

impl GroupName {
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let err = |reason| NameError::GroupName { input: input.to_owned(), reason };
        if input.is_empty() {
            return Err(err("it is empty"));
        }
        if input.chars().count() > MAX_NAME_LEN {
            return Err(err("it is longer than 128 characters"));
        }
        if input.chars().any(char::is_control) {
            return Err(err("it has a control character"));
        }
        if input.trim() != input {
            return Err(err("it starts or ends with a space"));
        }
        Ok(Self(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form the store keeps unique and looks names up by: lower case.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

macro_rules! name_impls {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl FromStr for $t {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::parse(s)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}
name_impls!(ProjectKey);
name_impls!(RepoSlug);
name_impls!(UserName);
name_impls!(GroupName);

/// Who owns a repository: a project (`/scm/TP/test.git`) or a user (`/scm/~justme/test.git`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    Project(ProjectKey),
    User(UserName),
}

impl Owner {
    /// Parses the owner segment of a clone URL: `TP`, `tp` or `~justme`.
    pub fn parse(input: &str) -> Result<Self, NameError> {
        match input.strip_prefix('~') {
            Some(user) => UserName::parse(user).map(Owner::User),
            None => ProjectKey::parse(input).map(Owner::Project),
        }
    }

    /// The key of the project row that holds this owner's repositories; personal projects
    /// are keyed `~name`, which no `ProjectKey` can be.
    pub(crate) fn project_key(&self) -> String {
        match self {
            Owner::Project(k) => k.0.clone(),
            Owner::User(u) => format!("~{}", u.0),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Project(k) => write!(f, "{k}"),
            Owner::User(u) => write!(f, "~{u}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_keys_are_upper_cased_and_strict() {
        let cases: &[(&str, Option<&str>)] = &[
            ("TP", Some("TP")),
            ("tp", Some("TP")),
            ("Plat_2", Some("PLAT_2")),
            ("", None),
            ("2TP", None),
            ("_TP", None),
            ("-TP", None),
            ("T-P", None),
            ("T.P", None),
            ("../x", None),
            ("T/P", None),
            ("~TP", None),
            ("TÉ", None),
        ];
        for (input, want) in cases {
            let got = ProjectKey::parse(input).ok().map(|k| k.as_str().to_owned());
            assert_eq!(got.as_deref(), *want, "input {input:?}");
        }
        assert!(ProjectKey::parse(&"A".repeat(129)).is_err());
        assert!(ProjectKey::parse(&"A".repeat(128)).is_ok());
    }

    #[test]
    fn repo_slugs_refuse_anything_that_could_escape_or_be_an_option() {
        let cases: &[(&str, Option<&str>)] = &[
            ("test", Some("test")),
            ("Test-Repo", Some("test-repo")),
            ("a.b_c-d", Some("a.b_c-d")),
            ("0day", Some("0day")),
            ("", None),
            (".", None),
            ("..", None),
            ("a..b", None),
            ("-upload-pack=evil", None),
            (".hidden", None),
            ("a/b", None),
            ("a\\b", None),
            ("test.git", None),
            ("test.lock", None),
            ("test.", None),
            ("te st", None),
            ("te\0st", None),
            ("~x", None),
        ];
        for (input, want) in cases {
            let got = RepoSlug::parse(input).ok().map(|k| k.as_str().to_owned());
            assert_eq!(got.as_deref(), *want, "input {input:?}");
        }
    }

    #[test]
    fn user_names_are_lower_cased_and_refuse_colons_and_slashes() {
        let cases: &[(&str, Option<&str>)] = &[
            ("justme", Some("justme")),
            ("JustMe", Some("justme")),
            ("a.b@example.com", Some("a.b@example.com")),
            ("", None),
            ("-x", None),
            ("a:b", None),
            ("a/b", None),
            ("~a", None),
            ("a..b", None),
            ("a b", None),
        ];
        for (input, want) in cases {
            let got = UserName::parse(input).ok().map(|k| k.as_str().to_owned());
            assert_eq!(got.as_deref(), *want, "input {input:?}");
        }
    }

    #[test]
    fn group_names_keep_their_case_and_refuse_control_characters_and_outer_spaces() {
        let cases: &[(&str, Option<&str>)] = &[
            ("developers", Some("developers")),
            ("Stash Users", Some("Stash Users")),
            ("team-ä/1", Some("team-ä/1")),
            ("", None),
            (" dev", None),
            ("dev ", None),
            ("de\tv", None),
            ("de\nv", None),
        ];
        for (input, want) in cases {
            let got = GroupName::parse(input).ok().map(|k| k.as_str().to_owned());
            assert_eq!(got.as_deref(), *want, "input {input:?}");
        }
        assert_eq!(GroupName::parse("Stash Users").unwrap().key(), "stash users");
        assert!(GroupName::parse(&"ä".repeat(128)).is_ok());
        assert!(GroupName::parse(&"a".repeat(129)).is_err());
    }

    #[test]
    fn owners_parse_projects_and_personal_spaces() {
        assert_eq!(Owner::parse("tp").unwrap(), Owner::Project(ProjectKey::parse("TP").unwrap()));
        assert_eq!(Owner::parse("~JustMe").unwrap(), Owner::User(UserName::parse("justme").unwrap()));
        assert_eq!(Owner::parse("~JustMe").unwrap().to_string(), "~justme");
        assert!(Owner::parse("~").is_err());
        assert!(Owner::parse("~~a").is_err());
        assert!(Owner::parse("..").is_err());
    }

    #[test]
    fn name_errors_say_what_was_wrong_and_what_is_allowed() {
        let msg = RepoSlug::parse("../etc").unwrap_err().to_string();
        assert!(msg.contains("\"../etc\""), "{msg}");
        assert!(msg.contains("like `test`"), "{msg}");
    }
}
