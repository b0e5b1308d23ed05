//! Finding things in repositories: every file path at a revision (the web UI's file finder),
//! read once per tree and cached by tree id, and code search across repositories with
//! `git grep` under limits on results, time, file size, repositories and concurrency.
//!
//! Code search runs `git grep` at query time on each repository's default branch rather than
//! keeping an index: the benchmark repository (3,072 files, 3,000 commits) answers in tens of
//! milliseconds, an index would need its own storage, rebuilds after every push and a second
//! copy of what the repositories already hold, and a query-time search can never show what a
//! push removed or what the caller may no longer read (permissions are decided per query, by
//! the same access rules as every page). What keeps it from starving git traffic is the
//! limits: [`Limits`] (at most so many repositories, results and seconds per query, files over
//! a size left out) and two slots per process ([`SEARCH_SLOTS`]), and each `git grep` takes one
//! of the server's pack slots (`git.max_concurrent_packs`, which clones and fetches take too)
//! without waiting: when git traffic holds them all, the search stops and says the server is
//! busy instead of queueing in front of clones.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::AppState;
use crate::repo_read::{ReadError, Reader};

/// Most paths the file finder lists for one revision. Default 100,000; a larger tree's listing
/// is cut there (and the finder says so).
pub(crate) const MAX_PATHS: usize = 100_000;
/// Listings kept at once, newest first; each is dropped whole when a newer one needs its place.
const CACHED_LISTINGS: usize = 32;
/// Paths kept over all cached listings.
const CACHED_PATHS: usize = 400_000;

/// Every file (blob) path of a tree with its size in bytes, in git's order (by path).
#[derive(Debug)]
pub(crate) struct Listing {
    pub(crate) files: Vec<(String, u64)>,
    /// More than [`MAX_PATHS`] files: the rest are left out.
    pub(crate) truncated: bool,
}

struct Cache {
    by_tree: HashMap<String, Arc<Listing>>,
    order: VecDeque<String>,
    paths: usize,
}

/// Listings by tree id. A tree id names its contents, so a cached listing is never stale and is
/// the same in every repository that holds the tree (a fork, a branch of another).
static LISTINGS: LazyLock<Mutex<Cache>> = LazyLock::new(|| Mutex::new(Cache { by_tree: HashMap::new(), order: VecDeque::new(), paths: 0 }));

/// The tree id of a resolved commit id.
pub(crate) async fn tree_of(g: &Reader, commit: &str) -> Result<Option<String>, ReadError> {
    let out = g.run(&["rev-parse", "--verify", "--quiet", "--end-of-options", &format!("{commit}^{{tree}}")]).await?;
    Ok(out.map(|o| String::from_utf8_lossy(&o).trim().to_owned()).filter(|t| crate::repo_read::is_hex_id(t)))
}

/// Every file path of the commit `commit` (a resolved id), from the cache when its tree was
/// listed before, else from `git ls-tree -r -l -z`.
pub(crate) async fn listing(g: &Reader, commit: &str) -> Result<Option<Arc<Listing>>, ReadError> {
    let Some(tree) = tree_of(g, commit).await? else { return Ok(None) };
    if let Some(l) = LISTINGS.lock().unwrap_or_else(|e| e.into_inner()).by_tree.get(&tree) {
        return Ok(Some(l.clone()));
    }
    let Some(out) = g.run(&["ls-tree", "-r", "-l", "-z", "--full-tree", &tree]).await? else { return Ok(None) };
    let listing = Arc::new(parse_ls_tree(&out, MAX_PATHS));
    let mut c = LISTINGS.lock().unwrap_or_else(|e| e.into_inner());
    if !c.by_tree.contains_key(&tree) {
        c.paths += listing.files.len();
        c.by_tree.insert(tree.clone(), listing.clone());
        c.order.push_back(tree);
        while c.order.len() > CACHED_LISTINGS || (c.paths > CACHED_PATHS && c.order.len() > 1) {
            let Some(old) = c.order.pop_front() else { break };
            if let Some(l) = c.by_tree.remove(&old) {
                c.paths -= l.files.len();
            }
        }
    }
    Ok(Some(listing))
}

/// `git ls-tree -r -l -z` output: `<mode> <type> <id> <size>\t<path>\0`; blobs only
/// (submodules have no size and no file to open), at most `max`.
fn parse_ls_tree(out: &[u8], max: usize) -> Listing {
    let mut files = Vec::new();
    let mut truncated = false;
    for rec in out.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let Some(tab) = rec.iter().position(|b| *b == b'\t') else { continue };
        let head = String::from_utf8_lossy(&rec[..tab]);
        let mut f = head.split_whitespace();
        let (Some(_mode), Some(kind), Some(_id), Some(size)) = (f.next(), f.next(), f.next(), f.next()) else { continue };
        if kind != "blob" {
            continue;
        }
        if files.len() == max {
            truncated = true;
            break;
        }
        files.push((String::from_utf8_lossy(&rec[tab + 1..]).into_owned(), size.parse().unwrap_or(0)));
    }
    Listing { files, truncated }
}

/// How well `query` matches `path` for the file finder: `None` when it does not, else a score
/// (higher is better). Every character of the query must appear in the path in order, without
/// regard to case (as Bitbucket's finder and most editors' "go to file" do); a match within the
/// file name, a contiguous one and a shorter path count for more.
pub(crate) fn fuzzy_score(query: &str, path: &str) -> Option<i64> {
    let q: Vec<char> = query.chars().flat_map(char::to_lowercase).filter(|c| !c.is_whitespace()).collect();
    if q.is_empty() {
        return Some(0);
    }
    let lower: Vec<char> = path.chars().flat_map(char::to_lowercase).collect();
    let name_start = lower.iter().rposition(|c| *c == '/').map_or(0, |i| i + 1);
    let joined: String = q.iter().collect();
    let text: String = lower.iter().collect();
    let mut score = 0i64;
    if let Some(at) = text.rfind(&joined) {
        score += 1000;
        if text[..at].chars().count() >= name_start {
            score += 1000;
        }
    }
    let mut qi = 0;
    let mut last: Option<usize> = None;
    for (i, c) in lower.iter().enumerate() {
        if qi < q.len() && *c == q[qi] {
            if last.is_some_and(|l| l + 1 == i) {
                score += 10;
            }
            if i >= name_start {
                score += 5;
            }
            last = Some(i);
            qi += 1;
        }
    }
    (qi == q.len()).then(|| score - lower.len() as i64)
}

/// The most characters a code search query may have. Default 200.
pub(crate) const MAX_QUERY: usize = 200;
/// The fewest: one character would match nearly every line.
pub(crate) const MIN_QUERY: usize = 2;

/// A code search query, checked: literal text, searched without regard to case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CodeQuery {
    pub(crate) text: String,
    /// The text has the marks of a regular expression (`.*`, `\d`, `[a-z]`, `^…`, `…$`): it is
    /// searched literally all the same, and the page says so.
    pub(crate) looks_like_regex: bool,
}

/// Why a query was refused; the messages say what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum QueryError {
    #[error("Type some text to search for.")]
    Empty,
    #[error("Search for at least {MIN_QUERY} characters.")]
    TooShort,
    #[error("The search text is {0} characters long; search for at most {MAX_QUERY}.")]
    TooLong(usize),
    #[error("The search text may not hold control characters or line breaks; search for one line of text.")]
    Control,
}

impl CodeQuery {
    pub(crate) fn parse(raw: &str) -> Result<CodeQuery, QueryError> {
        let text = raw.trim();
        let n = text.chars().count();
        if n == 0 {
            return Err(QueryError::Empty);
        }
        if text.chars().any(char::is_control) {
            return Err(QueryError::Control);
        }
        if n < MIN_QUERY {
            return Err(QueryError::TooShort);
        }
        if n > MAX_QUERY {
            return Err(QueryError::TooLong(n));
        }
        let looks_like_regex = [".*", ".+", "\\d", "\\w", "\\s", "\\b", "(?", "[a-z", "[A-Z", "[0-9", "[^"].iter().any(|m| text.contains(m))
            || (text.starts_with('^') && n > 1)
            || (text.ends_with('$') && !text.ends_with("\\$") && n > 1 && text.chars().rev().nth(1).is_some_and(|c| c.is_alphanumeric() || c == ')'));
        Ok(CodeQuery { text: text.to_owned(), looks_like_regex })
    }
}

/// Caps on one code search.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Matching lines shown, over all repositories. Default 100.
    pub(crate) max_results: usize,
    /// Matching lines shown per file. Default 5.
    pub(crate) per_file: usize,
    /// Files larger than this are not searched. Default 1 MiB (the file view's own limit).
    pub(crate) max_file_size: u64,
    /// Repositories searched per query, in the order given. Default 50.
    pub(crate) max_repos: usize,
    /// The whole query's time; a repository not finished by then is stopped. Default 2 s.
    pub(crate) time: Duration,
    /// Characters of a matching line shown; longer lines (minified files) are cut. Default 300.
    pub(crate) line_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_results: 100, per_file: 5, max_file_size: 1 << 20, max_repos: 50, time: Duration::from_secs(2), line_chars: 300 }
    }
}

/// `git grep` processes running for code search in this process, at most. Default 2, so that
/// searches take at most two CPUs' worth of git however many people search at once.
pub(crate) const SEARCH_SLOTS: usize = 2;
static SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(SEARCH_SLOTS)));

/// One repository to search: its id (the caller's key for it) and where it is.
pub(crate) struct Target {
    pub(crate) id: i64,
    pub(crate) dir: std::path::PathBuf,
}

/// One matching line.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub(crate) repo_id: i64,
    pub(crate) path: String,
    /// 1-based.
    pub(crate) line: usize,
    /// The line, cut at [`Limits::line_chars`].
    pub(crate) text: String,
    /// Byte ranges of `text` that match the query (for highlighting).
    pub(crate) ranges: Vec<(usize, usize)>,
}

/// What a search found and what it left out, so the page can say so.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) hits: Vec<Hit>,
    /// Repositories searched to the end.
    pub(crate) searched: usize,
    /// Stopped at [`Limits::max_results`]: there may be more.
    pub(crate) more: bool,
    /// Repositories not searched (past [`Limits::max_repos`], or the time ran out).
    pub(crate) skipped: usize,
    /// The time ran out.
    pub(crate) timed_out: bool,
    /// The server's git slots were all taken: the search stopped early.
    pub(crate) busy: bool,
    /// Files left out for their size.
    pub(crate) large_files: usize,
}

/// Searches `targets` (repositories the caller may read, already decided) for `q` at each one's
/// default branch, under `limits`.
pub(crate) async fn search(state: &AppState, q: &CodeQuery, targets: Vec<Target>, limits: Limits) -> Outcome {
    let deadline = Instant::now() + limits.time;
    let mut out = Outcome::default();
    let n = targets.len();
    for (i, t) in targets.into_iter().enumerate() {
        if i >= limits.max_repos {
            out.skipped = n - i;
            break;
        }
        if Instant::now() >= deadline {
            out.timed_out = true;
            out.skipped = n - i;
            break;
        }
        // A slot of our own (waiting at most until the deadline), then a pack slot without
        // waiting: clones and fetches come first.
        let Ok(Ok(_mine)) = tokio::time::timeout_at(deadline, SLOTS.clone().acquire_owned()).await else {
            out.timed_out = true;
            out.skipped = n - i;
            break;
        };
        let Ok(_pack) = state.packs.clone().try_acquire_owned() else {
            out.busy = true;
            out.skipped = n - i;
            break;
        };
        match search_one(state, &t, q, &limits, deadline, limits.max_results - out.hits.len()).await {
            Ok(r) => {
                out.large_files += r.large_files;
                out.hits.extend(r.hits);
                if r.timed_out {
                    out.timed_out = true;
                    out.skipped = n - i;
                    break;
                }
                out.searched += 1;
                if r.more || out.hits.len() >= limits.max_results {
                    out.more = true;
                    break;
                }
            }
            Err(e) => tracing::warn!(repo = t.id, error = %e, "code search of a repository failed"),
        }
    }
    out
}

struct OneResult {
    hits: Vec<Hit>,
    more: bool,
    timed_out: bool,
    large_files: usize,
}

async fn search_one(state: &AppState, t: &Target, q: &CodeQuery, limits: &Limits, deadline: Instant, room: usize) -> Result<OneResult, ReadError> {
    let g = Reader::new(state, t.dir.clone());
    let refs = g.refs().await?;
    let empty = OneResult { hits: Vec::new(), more: false, timed_out: false, large_files: 0 };
    let Some(head) = refs.default_branch().or(refs.branches.first()) else { return Ok(empty) };
    let commit = head.commit.clone();
    let Some(listing) = listing(&g, &commit).await? else { return Ok(empty) };
    let large: Vec<&str> = listing.files.iter().filter(|(_, s)| *s > limits.max_file_size).map(|(p, _)| p.as_str()).collect();
    let mut args: Vec<OsString> = Vec::new();
    let mut dir = OsString::from("--git-dir=");
    dir.push(&t.dir);
    args.push(dir);
    for a in ["-c", "core.quotePath=false", "grep", "-I", "-n", "-z", "--no-color", "-F", "-i", "--threads=1", "-e"] {
        args.push(a.into());
    }
    args.push(q.text.as_str().into());
    args.push(commit.as_str().into());
    args.push("--".into());
    args.push(".".into());
    for p in &large {
        // `literal`: a file name with `*` or `?` excludes only itself.
        args.push(format!(":(exclude,literal){p}").into());
    }
    let mut c = Command::new(&state.git.binary);
    c.env_clear().envs(trove_store::git_env(state.store.git_home())).args(&args);
    c.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).kill_on_drop(true);
    let mut child = c.spawn().map_err(|source| ReadError::Spawn { binary: state.git.binary.clone(), source })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).split(b'\n');
    let prefix = format!("{commit}:");
    let mut hits = Vec::new();
    let mut per_file: HashMap<String, usize> = HashMap::new();
    let mut more = false;
    let mut timed_out = false;
    // Bytes read, at most: a pathological output stops here even under the result cap.
    let mut budget: usize = 8 << 20;
    loop {
        let next = match tokio::time::timeout_at(deadline, lines.next_segment()).await {
            Err(_) => {
                timed_out = true;
                break;
            }
            Ok(Err(source)) => return Err(ReadError::Io { command: "grep".into(), source }),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(l))) => l,
        };
        budget = budget.saturating_sub(next.len() + 1);
        if budget == 0 {
            more = true;
            break;
        }
        let Some(hit) = parse_grep_line(&next, &prefix, t.id, &q.text, limits.line_chars) else { continue };
        let seen = per_file.entry(hit.path.clone()).or_default();
        *seen += 1;
        if *seen > limits.per_file {
            continue;
        }
        if hits.len() == room {
            more = true;
            break;
        }
        hits.push(hit);
    }
    // Stops git if it is still running (over a cap or the time) and reaps it.
    let _ = child.start_kill();
    let _ = child.wait().await;
    Ok(OneResult { hits, more, timed_out, large_files: large.len() })
}

/// One line of `git grep -n -z <commit>`: `<commit>:<path>\0<line>\0<text>`.
fn parse_grep_line(raw: &[u8], prefix: &str, repo_id: i64, query: &str, line_chars: usize) -> Option<Hit> {
    let mut parts = raw.splitn(3, |b| *b == 0);
    let name = String::from_utf8_lossy(parts.next()?).into_owned();
    let line = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let text = String::from_utf8_lossy(parts.next()?);
    let path = name.strip_prefix(prefix)?.to_owned();
    let text: String = text.trim_end_matches('\r').chars().take(line_chars).collect();
    let ranges = match_ranges(&text, query);
    Some(Hit { repo_id, path, line, text, ranges })
}

/// Byte ranges of `text` equal to `query` without regard to (ASCII and simple Unicode) case.
pub(crate) fn match_ranges(text: &str, query: &str) -> Vec<(usize, usize)> {
    let q: Vec<char> = query.chars().flat_map(char::to_lowercase).collect();
    if q.is_empty() {
        return Vec::new();
    }
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    'outer: while i < chars.len() {
        let mut j = i;
        let mut k = 0;
        while k < q.len() {
            let Some(&(_, c)) = chars.get(j) else { break 'outer };
            let mut lc = c.to_lowercase();
            // Only characters that lower-case to one character compare here (as git -i does
            // for most text); a longer folding simply does not highlight.
            let (Some(l), None) = (lc.next(), lc.next()) else {
                i += 1;
                continue 'outer;
            };
            if l != q[k] {
                i += 1;
                continue 'outer;
            }
            j += 1;
            k += 1;
        }
        let start = chars[i].0;
        let end = chars.get(j).map_or(text.len(), |c| c.0);
        out.push((start, end));
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_checked_with_messages_that_say_what_to_do() {
        assert_eq!(CodeQuery::parse("  "), Err(QueryError::Empty));
        assert_eq!(CodeQuery::parse("x"), Err(QueryError::TooShort));
        assert_eq!(CodeQuery::parse(&"a".repeat(MAX_QUERY + 1)), Err(QueryError::TooLong(MAX_QUERY + 1)));
        assert_eq!(CodeQuery::parse("a\u{7}b"), Err(QueryError::Control));
        let q = CodeQuery::parse(" keepalive request ").unwrap();
        assert_eq!((q.text.as_str(), q.looks_like_regex), ("keepalive request", false));
        for r in ["fo.*bar", "^fn main", "\\d+", "[a-z]+", "end$"] {
            assert!(CodeQuery::parse(r).unwrap().looks_like_regex, "{r}");
        }
        for plain in ["a || b", "cost: $5", "x.y", "Vec<u8>"] {
            assert!(!CodeQuery::parse(plain).unwrap().looks_like_regex, "{plain}");
        }
    }

    #[test]
    fn ls_tree_output_lists_blobs_with_sizes_and_stops_at_the_cap() {
        let out =
            b"100644 blob aaaa     12\tsrc/a b.rs\x00040000 tree bbbb       -\tsrc\x00160000 commit cccc       -\tsub\x00100644 blob dddd   3000\tn\xc3\xb6tes.md\0";
        let l = parse_ls_tree(out, 10);
        assert_eq!(l.files, vec![("src/a b.rs".to_owned(), 12), ("nötes.md".to_owned(), 3000)]);
        assert!(!l.truncated);
        let cut = parse_ls_tree(out, 1);
        assert_eq!(cut.files.len(), 1);
        assert!(cut.truncated);
    }

    #[test]
    fn fuzzy_matching_wants_every_character_in_order_and_prefers_file_names() {
        assert!(fuzzy_score("lib", "src/lib.rs").is_some());
        assert!(fuzzy_score("slr", "src/lib.rs").is_some());
        assert!(fuzzy_score("rsl", "src/lib.rs").is_none());
        assert_eq!(fuzzy_score("", "x"), Some(0));
        let name = fuzzy_score("main", "src/main.rs").unwrap();
        let dir = fuzzy_score("main", "main/other/deep/x.rs").unwrap();
        assert!(name > dir, "{name} {dir}");
        assert!(fuzzy_score("MAIN", "src/main.rs").is_some());
    }

    #[test]
    fn grep_lines_parse_and_matches_are_found_without_regard_to_case() {
        let hit = parse_grep_line(b"abc:src/x.rs\x0012\x00let Keep = keep;", "abc:", 7, "keep", 300).unwrap();
        assert_eq!((hit.repo_id, hit.path.as_str(), hit.line), (7, "src/x.rs", 12));
        assert_eq!(hit.ranges, vec![(4, 8), (11, 15)]);
        assert!(parse_grep_line(b"other:src/x.rs\x001\x00x", "abc:", 7, "x", 300).is_none());
        let long = parse_grep_line(format!("abc:m.js\x001\x00{}", "ab".repeat(400)).as_bytes(), "abc:", 1, "ab", 300).unwrap();
        assert_eq!(long.text.chars().count(), 300);
        assert_eq!(match_ranges("Grüße GRÜSSE", "grü"), vec![(0, 4), (8, 12)]);
    }
}
