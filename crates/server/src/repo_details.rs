//! A repository's name (and with it its slug), description and default branch: the rules the
//! REST API (`PUT …/repos/{slug}`, `PUT …/default-branch`) and the repository settings page
//! share.

use trove_store::RepoSlug;

/// Longest repository description (Bitbucket's column is as long).
pub(crate) const MAX_DESCRIPTION: usize = 255;

/// Why a value is refused, and which field it was.
#[derive(Debug)]
pub(crate) struct Invalid {
    pub(crate) context: &'static str,
    pub(crate) message: String,
}

fn invalid(context: &'static str, message: String) -> Invalid {
    Invalid { context, message }
}

/// The name, trimmed, and the slug it makes (as Bitbucket slugs a name).
pub(crate) fn name_and_slug(name: &str) -> Result<(String, RepoSlug), Invalid> {
    let name = name.trim();
    if name.is_empty() {
        return Err(invalid("name", "The repository name must not be empty.".into()));
    }
    if name.len() > trove_store::MAX_NAME_LEN {
        return Err(invalid("name", format!("The repository name is longer than {} characters.", trove_store::MAX_NAME_LEN)));
    }
    let slug = RepoSlug::parse(&crate::api::slugify(name)).map_err(|e| invalid("name", format!("The name {name:?} makes no valid slug: {e}.")))?;
    Ok((name.to_owned(), slug))
}

pub(crate) fn checked_description(d: &str) -> Result<String, Invalid> {
    if d.chars().count() > MAX_DESCRIPTION || d.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid("description", format!("The description must be at most {MAX_DESCRIPTION} characters, without control characters.")));
    }
    Ok(d.to_owned())
}

/// `refs/heads/x` of a branch given as `x` or `refs/heads/x` (it need not exist yet: a default
/// branch may be pushed later, as in Bitbucket).
pub(crate) fn default_branch_ref(id: &str) -> Result<String, Invalid> {
    let short = id.trim().strip_prefix("refs/heads/").unwrap_or(id.trim());
    if !valid_branch_name(short) {
        return Err(invalid("id", format!("{id:?} is not a valid branch name.")));
    }
    Ok(format!("refs/heads/{short}"))
}

/// A branch name we are willing to write into HEAD (git check-ref-format's rules, stricter).
pub(crate) fn valid_branch_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.ends_with('/')
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("@{")
        && name.split('/').all(|c| !c.is_empty() && !c.starts_with('.') && !c.starts_with('-'))
        && name.chars().all(|c| !c.is_control() && !matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
}
