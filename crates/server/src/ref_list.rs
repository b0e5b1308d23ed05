//! Branches and tags as the pages list them: each with its last commit and, for a branch, how
//! many commits it is ahead of and behind the default branch; and the parent links of a stretch
//! of history, for the commit graph. Reads only, through [`Reader`] (its output cap and time
//! limit); every revision passed to git is a resolved hex id.

use crate::repo_read::{ReadError, Reader, is_hex_id};

/// A branch or tag with its last commit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RefRow {
    pub(crate) full: String,
    pub(crate) short: String,
    /// The commit (for an annotated tag, the commit it tags).
    pub(crate) commit: String,
    /// An annotated tag's message subject (its own, not the commit's).
    pub(crate) tag_subject: Option<String>,
    pub(crate) author_name: String,
    /// Unix seconds of the commit's author date.
    pub(crate) author_time: i64,
    pub(crate) subject: String,
    /// Commits on this ref and not on the default branch, and the reverse; `None` for tags, or
    /// when there is no default branch to compare with.
    pub(crate) ahead_behind: Option<(u64, u64)>,
}

const SEP: char = '\u{1f}';

/// `git for-each-ref`'s fields for a branch, with `%(ahead-behind:…)` (git 2.41+) when `base`.
fn branch_format(base: Option<&str>) -> String {
    let mut f = "--format=%(refname)\x1f%(objectname)\x1f%(authorname)\x1f%(authordate:unix)\x1f%(contents:subject)".to_owned();
    if let Some(b) = base {
        f.push_str(&format!("\x1f%(ahead-behind:{b})"));
    }
    f
}

/// Parses one line of [`branch_format`]'s output.
fn parse_branch(line: &str) -> Option<RefRow> {
    let f: Vec<&str> = line.split(SEP).collect();
    let (full, commit, author, time, subject) = (f.first()?, f.get(1)?, f.get(2)?, f.get(3)?, f.get(4)?);
    let short = full.strip_prefix("refs/heads/")?;
    let ahead_behind = f.get(5).and_then(|ab| {
        let (a, b) = ab.trim().split_once(' ')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    });
    Some(RefRow {
        full: (*full).to_owned(),
        short: short.to_owned(),
        commit: (*commit).to_owned(),
        tag_subject: None,
        author_name: (*author).to_owned(),
        author_time: time.parse().unwrap_or(0),
        subject: (*subject).to_owned(),
        ahead_behind,
    })
}

/// Every branch, the default one (`head`, a full ref) first, then the most recently changed;
/// each with how far it is ahead of and behind the default branch's commit `base`.
///
/// One `for-each-ref` answers it all with `%(ahead-behind:…)`, which git (2.41+) computes for
/// every branch in one walk. An older git refuses the field: then the list is read without it
/// and [`ahead_behind`] counts each branch the page shows (`fill_ahead_behind`).
pub(crate) async fn branches(g: &Reader, head: Option<&str>, base: Option<&str>) -> Result<(Vec<RefRow>, bool), ReadError> {
    let base = base.filter(|b| is_hex_id(b));
    let mut counted = base.is_some();
    let mut out = match base {
        Some(_) => g.run(&["for-each-ref", &branch_format(base), "refs/heads"]).await?,
        None => None,
    };
    if out.is_none() {
        counted = false;
        out = g.run(&["for-each-ref", &branch_format(None), "refs/heads"]).await?;
    }
    let text = String::from_utf8_lossy(&out.unwrap_or_default()).into_owned();
    let mut rows: Vec<RefRow> = text.lines().filter_map(parse_branch).collect();
    rows.sort_by(|a, b| {
        (Some(b.full.as_str()) == head).cmp(&(Some(a.full.as_str()) == head)).then(b.author_time.cmp(&a.author_time)).then(a.short.cmp(&b.short))
    });
    Ok((rows, counted))
}

/// Counts ahead/behind for `rows` one by one (`git rev-list --left-right --count`), for a git
/// without `%(ahead-behind:…)`.
pub(crate) async fn fill_ahead_behind(g: &Reader, base: &str, rows: &mut [RefRow]) -> Result<(), ReadError> {
    for r in rows.iter_mut() {
        r.ahead_behind = ahead_behind(g, base, &r.commit).await?;
    }
    Ok(())
}

/// How many commits `tip` has that `base` has not, and the reverse (both resolved ids).
pub(crate) async fn ahead_behind(g: &Reader, base: &str, tip: &str) -> Result<Option<(u64, u64)>, ReadError> {
    if !is_hex_id(base) || !is_hex_id(tip) {
        return Ok(None);
    }
    let range = format!("{base}...{tip}");
    let Some(out) = g.run(&["rev-list", "--left-right", "--count", "--end-of-options", &range, "--"]).await? else { return Ok(None) };
    let text = String::from_utf8_lossy(&out);
    let (behind, ahead) = text.trim().split_once(char::is_whitespace).unwrap_or(("", ""));
    Ok(Some((ahead.trim().parse().unwrap_or(0), behind.trim().parse().unwrap_or(0))))
}

/// Every tag, newest first (by the tag's date, else its commit's), with the commit it names.
pub(crate) async fn tags(g: &Reader) -> Result<Vec<RefRow>, ReadError> {
    let format = "--format=%(refname)\x1f%(objecttype)\x1f%(objectname)\x1f%(*objectname)\x1f%(creatordate:unix)\x1f%(contents:subject)\x1f%(*contents:subject)\x1f%(authorname)\x1f%(*authorname)\x1f%(taggername)";
    let out = g.run(&["for-each-ref", format, "refs/tags"]).await?.unwrap_or_default();
    let text = String::from_utf8_lossy(&out);
    let mut rows: Vec<RefRow> = text
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(SEP).collect();
            let [full, kind, obj, peeled, time, subject, peeled_subject, author, peeled_author, tagger] = f[..] else { return None };
            let short = full.strip_prefix("refs/tags/")?;
            let annotated = kind == "tag";
            Some(RefRow {
                full: full.to_owned(),
                short: short.to_owned(),
                commit: if annotated { peeled } else { obj }.to_owned(),
                tag_subject: annotated.then(|| subject.to_owned()),
                author_name: if annotated { if tagger.is_empty() { peeled_author } else { tagger } } else { author }.to_owned(),
                author_time: time.parse().unwrap_or(0),
                subject: if annotated { peeled_subject } else { subject }.to_owned(),
                ahead_behind: None,
            })
        })
        .collect();
    rows.sort_by(|a, b| b.author_time.cmp(&a.author_time).then(a.short.cmp(&b.short)));
    Ok(rows)
}

/// The first `max` commits from `until` (a resolved id) in `git log`'s order, each with its
/// parents: what the commit graph is drawn from.
pub(crate) async fn parents(g: &Reader, until: &str, max: usize) -> Result<Vec<(String, Vec<String>)>, ReadError> {
    if !is_hex_id(until) {
        return Ok(Vec::new());
    }
    let max = format!("--max-count={max}");
    let out = g.run(&["log", "--format=%H %P", &max, "--end-of-options", until, "--"]).await?.unwrap_or_default();
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| {
            let mut ids = l.split_whitespace().map(str::to_owned);
            Some((ids.next()?, ids.collect()))
        })
        .collect())
}

/// Whether `row` matches a filter (case-insensitive substring of its short name, as
/// Bitbucket's `filterText`).
pub(crate) fn matches(row: &RefRow, filter: &str) -> bool {
    filter.is_empty() || row.short.to_lowercase().contains(&filter.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_lines_parse_with_and_without_ahead_behind() {
        let r = parse_branch("refs/heads/feature/x\x1fabc123\x1fAda\x1f1700000000\x1fAdd x\x1f3 1").unwrap();
        assert_eq!((r.short.as_str(), r.commit.as_str(), r.author_time, r.ahead_behind), ("feature/x", "abc123", 1_700_000_000, Some((3, 1))));
        let r = parse_branch("refs/heads/main\x1fabc\x1fAda\x1f1\x1fsubject with \x1e odd").unwrap();
        assert_eq!(r.ahead_behind, None);
        assert!(parse_branch("refs/tags/v1\x1fabc\x1fA\x1f1\x1fs").is_none());
        let row = RefRow { short: "Feature/Login".into(), ..r };
        assert!(matches(&row, "login") && matches(&row, "") && !matches(&row, "logout"));
    }
}
