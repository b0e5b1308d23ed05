//! Reading a repository for REST and the web pages: refs, commits, trees, blobs and diffs,
//! from `git` with a fixed argv, a cap on output size and a time limit per invocation.
//!
//! Nothing a caller sends becomes an option: a revision is accepted only when it is one of the
//! repository's own refs or a hex object id, only the resolved hex id is passed on, after
//! `--end-of-options`; paths are checked ([`valid_path`]) and only ever follow `<hex id>:` or
//! `--`. Every git child is killed and reaped when it is over its cap or its time, or when its
//! reader stops early, so no git process outlives the request that started it.
//!
//! Two memories spare a page its git processes (each costs a few milliseconds of CPU to start):
//! the refs ([`Reader::refs`]) are kept while the repository's ref files and configuration are
//! byte for byte what they were (the key the ref advertisements use, [`crate::advert`]), and
//! the output of a read that names nothing but full object ids ([`ObjectReads`]: a tree, a blob,
//! a commit's log or diff, a blame) is kept as it is, because what an object id names never
//! changes.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;

use tokio::io::AsyncReadExt as _;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::AppState;

/// Most bytes one git invocation may print before it is stopped and the read fails with
/// [`ReadError::TooLarge`]. Default 16 MiB: far more than any page shows, small enough that a
/// few requests at once cannot fill memory.
pub(crate) const MAX_OUTPUT: usize = 16 << 20;
/// Longest one git invocation may run before it is killed ([`ReadError::TimedOut`]). Default
/// 30 seconds. Raw downloads ([`Reader::blob_stream`]) stream and have no limit.
pub(crate) const TIME_LIMIT: Duration = Duration::from_secs(30);

/// Why a repository could not be read. Git exiting unsuccessfully (an unknown object, an empty
/// repository) is not an error: the readers answer `None` for it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("cannot start git ({binary}): {source}; check `[git] binary` in the server configuration")]
    Spawn { binary: PathBuf, source: std::io::Error },
    #[error("reading the output of `git {command}` failed: {source}")]
    Io { command: String, source: std::io::Error },
    #[error("`git {command}` printed more than {limit} bytes and was stopped; it is too large to show")]
    TooLarge { command: String, limit: usize },
    #[error("`git {command}` ran longer than {} seconds and was stopped; try again when the server is less busy", limit.as_secs())]
    TimedOut { command: String, limit: Duration },
}

/// Caps on every git invocation of one [`Reader`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// See [`MAX_OUTPUT`].
    pub(crate) max_output: usize,
    /// See [`TIME_LIMIT`].
    pub(crate) time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_output: MAX_OUTPUT, time: TIME_LIMIT }
    }
}

/// A branch or tag: full ref name, short name, the commit it points at, and for an annotated
/// tag the tag object.
#[derive(Debug, Clone)]
pub(crate) struct RefInfo {
    pub(crate) full: String,
    pub(crate) short: String,
    pub(crate) commit: String,
    pub(crate) tag_object: Option<String>,
}

/// Branches and tags in ref-name order, and what `HEAD` names (the default branch).
#[derive(Debug, Default)]
pub(crate) struct Refs {
    pub(crate) head: Option<String>,
    pub(crate) branches: Vec<RefInfo>,
    pub(crate) tags: Vec<RefInfo>,
}

impl Refs {
    /// Branches, then tags.
    pub(crate) fn all(&self) -> impl Iterator<Item = &RefInfo> {
        self.branches.iter().chain(self.tags.iter())
    }

    /// The default branch, when it has commits.
    pub(crate) fn default_branch(&self) -> Option<&RefInfo> {
        let head = self.head.as_deref()?;
        self.branches.iter().find(|b| b.full == head)
    }

    /// A full ref name, then a branch's, then a tag's short name.
    fn find(&self, rev: &str) -> Option<&RefInfo> {
        self.all().find(|r| r.full == rev).or_else(|| self.branches.iter().find(|r| r.short == rev)).or_else(|| self.tags.iter().find(|r| r.short == rev))
    }
}

/// A revision a caller named, resolved.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    /// What to show: `main`, `v1.0`, or an abbreviated id.
    pub(crate) label: String,
    /// What to put back into `?at=`: the full ref, or the id.
    pub(crate) at: String,
    pub(crate) commit: String,
}

impl Resolved {
    pub(crate) fn from_ref(r: &RefInfo) -> Resolved {
        Resolved { label: r.short.clone(), at: r.full.clone(), commit: r.commit.clone() }
    }
}

/// One entry of a directory.
#[derive(Debug, Clone)]
pub(crate) struct TreeEntry {
    /// `tree`, `blob` or `commit` (a submodule).
    pub(crate) kind: String,
    pub(crate) id: String,
    /// `None` for trees and submodules.
    pub(crate) size: Option<u64>,
    pub(crate) name: String,
}

/// One commit, as [`Reader::log`] and [`Reader::commit`] read it.
#[derive(Debug, Clone)]
pub(crate) struct Commit {
    pub(crate) id: String,
    /// git's unique abbreviation (`%h`).
    pub(crate) short: String,
    pub(crate) parents: Vec<String>,
    pub(crate) author_name: String,
    pub(crate) author_email: String,
    /// Unix seconds.
    pub(crate) author_time: i64,
    /// The author date as `2026-12-02 17:18 +0000`.
    pub(crate) author_date: String,
    pub(crate) committer_name: String,
    pub(crate) committer_email: String,
    pub(crate) committer_time: i64,
    /// The raw message, trailing whitespace removed.
    pub(crate) message: String,
}

impl Commit {
    /// The first paragraph of the message on one line, as git's `%s`.
    pub(crate) fn subject(&self) -> String {
        self.message.split("\n\n").next().unwrap_or("").lines().map(str::trim).collect::<Vec<_>>().join(" ")
    }
}

/// Which commits [`Reader::log`] lists: from `until` (a resolved id), newest first.
#[derive(Debug, Default)]
pub(crate) struct LogQuery<'a> {
    pub(crate) until: &'a str,
    /// Leave out what this resolved id reaches.
    pub(crate) since: Option<&'a str>,
    pub(crate) skip: usize,
    pub(crate) max: usize,
    /// `Some(false)`: no merges; `Some(true)`: only merges.
    pub(crate) merges: Option<bool>,
    /// Only commits touching this (checked) path; empty for all.
    pub(crate) path: &'a str,
    /// With `path`: follow the file through renames (`git log --follow`).
    pub(crate) follow: bool,
}

/// One page of [`Reader::files`].
#[derive(Debug)]
pub(crate) struct FilesPage {
    pub(crate) paths: Vec<String>,
    /// No paths follow this page.
    pub(crate) last: bool,
}

/// Field and record separators for `git log --format`, which commit messages do not use.
const FIELD: char = '\u{1f}';
const RECORD: char = '\u{1e}';
const LOG_FORMAT: &str = "--format=%H%x1f%h%x1f%P%x1f%an%x1f%ae%x1f%at%x1f%ad%x1f%cn%x1f%ce%x1f%ct%x1f%B%x1e";
const LOG_DATE: &str = "--date=format:%Y-%m-%d %H:%M %z";

pub(crate) fn is_hex_id(s: &str) -> bool {
    (4..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A path inside a tree: no empty, `.` or `..` components, no control characters.
pub(crate) fn valid_path(p: &str) -> bool {
    p.is_empty() || (!p.chars().any(|c| c.is_control()) && p.split('/').all(|c| !c.is_empty() && c != "." && c != ".."))
}

fn parse_commit(record: &str) -> Option<Commit> {
    let f: Vec<&str> = record.trim_start_matches('\n').splitn(11, FIELD).collect();
    let [id, short, parents, an, ae, at, ad, cn, ce, ct, message] = f[..] else { return None };
    if id.is_empty() {
        return None;
    }
    Some(Commit {
        id: id.into(),
        short: short.into(),
        parents: parents.split_whitespace().map(str::to_owned).collect(),
        author_name: an.into(),
        author_email: ae.into(),
        author_time: at.parse().unwrap_or(0),
        author_date: ad.into(),
        committer_name: cn.into(),
        committer_email: ce.into(),
        committer_time: ct.parse().unwrap_or(0),
        message: message.trim_end().into(),
    })
}

/// Kills and reaps a child we stop reading, so it is neither left running nor a zombie.
async fn stop(child: &mut Child) {
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// Bytes read by the last [`Reader::files`] per repository, for tests that check a page did
/// not read the whole tree.
#[cfg(test)]
pub(crate) static FILES_READ: std::sync::Mutex<Vec<(PathBuf, u64)>> = std::sync::Mutex::new(Vec::new());

/// Reads one repository.
pub(crate) struct Reader {
    binary: PathBuf,
    env: Vec<(OsString, OsString)>,
    dir: PathBuf,
    limits: Limits,
    /// The server, whose memories of refs and object reads this reader uses (none in tests).
    shared: Option<AppState>,
}

/// Outputs of git reads that name only full object ids, kept by their repository, argv and cap,
/// least recently used out first past [`ObjectReads::MAX_BYTES`]. An object id names the same
/// bytes for ever, so nothing here goes stale: a push changes refs, and the next page resolves
/// them to other ids, which are other keys.
pub(crate) struct ObjectReads {
    inner: Mutex<ObjectReadsInner>,
}

#[derive(Default)]
struct ObjectReadsInner {
    map: hashlink::LinkedHashMap<Vec<u8>, (Bytes, bool)>,
    bytes: usize,
    hits: u64,
    misses: u64,
}

impl Default for ObjectReads {
    fn default() -> Self {
        ObjectReads { inner: Mutex::new(ObjectReadsInner::default()) }
    }
}

impl ObjectReads {
    /// Bytes of output kept in all (keys counted too). Default 64 MiB.
    pub(crate) const MAX_BYTES: usize = 64 << 20;
    /// One output larger than this is never kept (a big blob or diff would push out hundreds of
    /// pages' worth). 4 MiB.
    pub(crate) const MAX_ENTRY: usize = 4 << 20;

    pub(crate) fn get(&self, key: &[u8]) -> Option<(Bytes, bool)> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match inner.map.to_back(key).cloned() {
            Some(v) => {
                inner.hits += 1;
                Some(v)
            }
            None => {
                inner.misses += 1;
                None
            }
        }
    }

    pub(crate) fn put(&self, key: Vec<u8>, out: Bytes, cut: bool) {
        let size = key.len() + out.len();
        if size > Self::MAX_ENTRY {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((old, _)) = inner.map.insert(key.clone(), (out, cut)) {
            inner.bytes -= key.len() + old.len();
        }
        inner.bytes += size;
        while inner.bytes > Self::MAX_BYTES {
            let Some((k, (v, _))) = inner.map.pop_front() else { break };
            inner.bytes -= k.len() + v.len();
        }
    }

    /// The key of a read: who reads (`reader`, `pr_git`), the repository, the output cap and
    /// whether output past it is cut, and the argv.
    pub(crate) fn key(reader: &str, dir: &std::path::Path, cap: usize, cut: bool, args: &[&str]) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt as _;
        let mut key = format!("{reader}\0").into_bytes();
        key.extend_from_slice(dir.as_os_str().as_bytes());
        key.extend_from_slice(format!("\0{cap}/{cut}").as_bytes());
        for a in args {
            key.push(0);
            key.extend_from_slice(a.as_bytes());
        }
        key
    }

    /// (hits, misses, bytes kept) so far.
    pub(crate) fn stats(&self) -> (u64, u64, usize) {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (inner.hits, inner.misses, inner.bytes)
    }
}

/// Whether `args` (a git command line of this module) names nothing but full object ids, so its
/// output is the same whenever it runs: a read of trees, blobs, commits or their history, whose
/// every revision is a full hex id, `^id`, `id:path` or `id^{commit}`, and no option that
/// reaches for refs.
pub(crate) fn names_only_objects(args: &[&str]) -> bool {
    let Some((sub, rest)) = args.split_first() else { return false };
    if !matches!(*sub, "cat-file" | "ls-tree" | "log" | "diff-tree" | "blame" | "rev-parse" | "rev-list") {
        return false;
    }
    let mut named = false;
    let mut first_positional = true;
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match *a {
            "--" => break,
            "--end-of-options" => continue,
            // options whose value is the next argument
            "-L" => {
                it.next();
                continue;
            }
            _ => {}
        }
        if a.starts_with('-') {
            let name = a.split('=').next().unwrap_or(a);
            if matches!(
                name,
                "--all"
                    | "--branches"
                    | "--tags"
                    | "--remotes"
                    | "--glob"
                    | "--exclude"
                    | "--stdin"
                    | "--reflog"
                    | "--bisect"
                    | "--not"
                    | "--alternate-refs"
                    | "--indexed-objects"
                    | "--symbolic-full-name"
                    | "--abbrev-ref"
            ) {
                return false;
            }
            continue;
        }
        // `git cat-file blob <object>`: the type comes first.
        if *sub == "cat-file" && first_positional && matches!(*a, "blob" | "tree" | "commit" | "tag") {
            first_positional = false;
            continue;
        }
        first_positional = false;
        let r = a.strip_prefix('^').unwrap_or(a);
        let hex = r.bytes().take_while(u8::is_ascii_hexdigit).count();
        let (id, tail) = r.split_at(hex);
        let full = (id.len() == 40 || id.len() == 64) && id.bytes().all(|b| !b.is_ascii_uppercase());
        if !full || !(tail.is_empty() || tail.starts_with(':') || tail == "^{commit}" || tail == "^{tree}") {
            return false;
        }
        named = true;
    }
    named
}

impl Reader {
    /// A reader of the repository at `dir` with the server's git binary and environment.
    pub(crate) fn new(state: &AppState, dir: PathBuf) -> Reader {
        Reader {
            binary: state.git.binary.clone(),
            env: trove_store::git_env(state.store.git_home()),
            dir,
            limits: Limits::default(),
            shared: Some(state.clone()),
        }
    }

    /// A reader with its own binary, environment and limits, for tests.
    #[cfg(test)]
    pub(crate) fn for_test(binary: PathBuf, env: Vec<(OsString, OsString)>, dir: PathBuf, limits: Limits) -> Reader {
        Reader { binary, env, dir, limits, shared: None }
    }

    fn spawn(&self, args: &[&str]) -> Result<Child, ReadError> {
        let mut dir = OsString::from("--git-dir=");
        dir.push(&self.dir);
        let mut c = Command::new(&self.binary);
        // Paths as they are (UTF-8), not git's quoted octal, in diffs and lists; a path with a
        // quote, backslash or control character is still C-quoted.
        c.env_clear().envs(self.env.iter().cloned()).arg(dir).args(["-c", "core.quotePath=false"]).args(args);
        // stderr is not read: a child blocked on a full stderr pipe would only end at the time
        // limit.
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true);
        c.spawn().map_err(|source| ReadError::Spawn { binary: self.binary.clone(), source })
    }

    fn timed_out(&self, args: &[&str]) -> ReadError {
        ReadError::TimedOut { command: command_name(args), limit: self.limits.time }
    }

    /// Runs git and collects its output, up to `cap` bytes. Over it: the output cut at `cap`
    /// and `true` when `cut`, else [`ReadError::TooLarge`]. `Ok(None)` when git exits
    /// unsuccessfully.
    async fn collect(&self, args: &[&str], cap: usize, cut: bool) -> Result<Option<(Vec<u8>, bool)>, ReadError> {
        let memo = self.shared.as_ref().filter(|_| names_only_objects(args)).map(|s| (s, self.memo_key(args, cap, cut)));
        if let Some((s, key)) = &memo
            && let Some((out, was_cut)) = s.object_reads.get(key)
        {
            return Ok(Some((out.to_vec(), was_cut)));
        }
        let got = self.collect_from_git(args, cap, cut).await?;
        if let (Some((s, key)), Some((out, was_cut))) = (memo, &got) {
            s.object_reads.put(key, Bytes::copy_from_slice(out), *was_cut);
        }
        Ok(got)
    }

    fn memo_key(&self, args: &[&str], cap: usize, cut: bool) -> Vec<u8> {
        ObjectReads::key("reader", &self.dir, cap, cut, args)
    }

    async fn collect_from_git(&self, args: &[&str], cap: usize, cut: bool) -> Result<Option<(Vec<u8>, bool)>, ReadError> {
        let deadline = Instant::now() + self.limits.time;
        let mut child = self.spawn(args)?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut out = Vec::new();
        let read = tokio::time::timeout_at(deadline, (&mut stdout).take(cap as u64 + 1).read_to_end(&mut out)).await;
        match read {
            Err(_) => {
                stop(&mut child).await;
                return Err(self.timed_out(args));
            }
            Ok(Err(source)) => {
                stop(&mut child).await;
                return Err(ReadError::Io { command: command_name(args), source });
            }
            Ok(Ok(_)) => {}
        }
        if out.len() > cap {
            stop(&mut child).await;
            if !cut {
                return Err(ReadError::TooLarge { command: command_name(args), limit: cap });
            }
            out.truncate(cap);
            return Ok(Some((out, true)));
        }
        drop(stdout);
        match tokio::time::timeout_at(deadline, child.wait()).await {
            Err(_) => {
                stop(&mut child).await;
                Err(self.timed_out(args))
            }
            Ok(Err(source)) => Err(ReadError::Io { command: command_name(args), source }),
            Ok(Ok(status)) => Ok(status.success().then_some((out, false))),
        }
    }

    /// Runs git under the limits; `Ok(None)` when it exits unsuccessfully.
    pub(crate) async fn run(&self, args: &[&str]) -> Result<Option<Vec<u8>>, ReadError> {
        Ok(self.collect(args, self.limits.max_output, false).await?.map(|(o, _)| o))
    }

    async fn text(&self, args: &[&str]) -> Result<Option<String>, ReadError> {
        Ok(self.run(args).await?.map(|o| String::from_utf8_lossy(&o).into_owned()))
    }

    /// The branches, tags and `HEAD`: from memory while the repository's refs and configuration
    /// are byte for byte what they were when git last listed them (see [`crate::advert`]).
    pub(crate) async fn refs(&self) -> Result<Refs, ReadError> {
        const QUESTION: &[u8] = b"trove:reader-refs";
        let Some(state) = &self.shared else { return Ok(parse_refs(&self.refs_from_git().await?)) };
        let read_state = || {
            let (state, dir) = (state.clone(), self.dir.clone());
            async move { tokio::task::spawn_blocking(move || state.adverts.state(&dir)).await.unwrap_or(None) }
        };
        let before = read_state().await;
        if let Some(s) = &before
            && let Some(answer) = state.adverts.get(&self.dir, s, QUESTION)
        {
            return Ok(parse_refs(&String::from_utf8_lossy(&answer)));
        }
        let raw = self.refs_from_git().await?;
        if let Some(s) = before
            && read_state().await.as_ref() == Some(&s)
        {
            state.adverts.put(&self.dir, s, QUESTION.to_vec(), Bytes::from(raw.clone().into_bytes()));
        }
        Ok(parse_refs(&raw))
    }

    /// `HEAD`'s target (empty when detached), a newline, then `for-each-ref`'s lines.
    async fn refs_from_git(&self) -> Result<String, ReadError> {
        let head = self.text(&["symbolic-ref", "-q", "HEAD"]).await?.map(|s| s.trim().to_owned()).unwrap_or_default();
        let out = self
            .text(&["for-each-ref", "--format=%(objectname)%00%(*objectname)%00%(objecttype)%00%(refname)", "refs/heads", "refs/tags"])
            .await?
            .unwrap_or_default();
        Ok(format!("{head}\n{out}"))
    }
}

fn parse_refs(raw: &str) -> Refs {
    let (head, out) = raw.split_once('\n').unwrap_or((raw, ""));
    let head = (!head.is_empty()).then(|| head.to_owned());
    let mut refs = Refs { head, ..Refs::default() };
    for line in out.lines() {
        let f: Vec<&str> = line.split('\0').collect();
        let [obj, peeled, kind, full] = f[..] else { continue };
        if let Some(short) = full.strip_prefix("refs/heads/") {
            refs.branches.push(RefInfo { full: full.into(), short: short.into(), commit: obj.into(), tag_object: None });
        } else if let Some(short) = full.strip_prefix("refs/tags/") {
            let (commit, tag_object) = if kind == "tag" { (peeled, Some(obj.to_owned())) } else { (obj, None) };
            refs.tags.push(RefInfo { full: full.into(), short: short.into(), commit: commit.into(), tag_object });
        }
    }
    refs
}

impl Reader {
    /// Resolves a caller's revision (full ref, branch, tag or hex id) to a commit; `None` if it
    /// is none of those. Without one, the default branch (`None` while it has no commits).
    pub(crate) async fn resolve(&self, refs: &Refs, rev: Option<&str>) -> Result<Option<Resolved>, ReadError> {
        let Some(rev) = rev.filter(|r| !r.is_empty()) else { return Ok(refs.default_branch().map(Resolved::from_ref)) };
        if let Some(r) = refs.find(rev) {
            return Ok(Some(Resolved::from_ref(r)));
        }
        if !is_hex_id(rev) {
            return Ok(None);
        }
        let spec = format!("{rev}^{{commit}}");
        let id = self.text(&["rev-parse", "--verify", "-q", "--end-of-options", &spec]).await?;
        Ok(id.map(|id| id.trim().to_owned()).filter(|id| is_hex_id(id)).map(|id| Resolved {
            label: id[..12.min(id.len())].to_owned(),
            at: id.clone(),
            commit: id,
        }))
    }

    /// Where `HEAD` points (`refs/heads/main`), branch or not yet born; `None` when detached.
    pub(crate) async fn head(&self) -> Result<Option<String>, ReadError> {
        Ok(self.text(&["symbolic-ref", "-q", "HEAD"]).await?.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()))
    }

    /// Points `HEAD` at `full` (a checked `refs/heads/…` name); `false` if git refused.
    pub(crate) async fn set_head(&self, full: &str) -> Result<bool, ReadError> {
        Ok(self.run(&["symbolic-ref", "HEAD", full]).await?.is_some())
    }

    /// `tree`, `blob` or `commit` (a submodule) for `path` at `commit`; `None` if absent.
    pub(crate) async fn kind(&self, commit: &str, path: &str) -> Result<Option<String>, ReadError> {
        let spec = format!("{commit}:{path}");
        Ok(self.text(&["cat-file", "-t", "--end-of-options", &spec]).await?.map(|s| s.trim().to_owned()))
    }

    /// The entries of the directory `path` at `commit`, in git's order; `None` if it is not a
    /// directory there.
    pub(crate) async fn tree(&self, commit: &str, path: &str) -> Result<Option<Vec<TreeEntry>>, ReadError> {
        let spec = format!("{commit}:{path}");
        let Some(out) = self.run(&["ls-tree", "-z", "-l", "--end-of-options", &spec]).await? else { return Ok(None) };
        let entries = out
            .split(|b| *b == 0)
            .filter(|r| !r.is_empty())
            .filter_map(|rec| {
                let rec = String::from_utf8_lossy(rec);
                let (meta, name) = rec.split_once('\t')?;
                let f: Vec<&str> = meta.split_whitespace().collect();
                let [_mode, kind, id, size] = f[..] else { return None };
                Some(TreeEntry { kind: kind.to_owned(), id: id.to_owned(), size: size.parse().ok(), name: name.to_owned() })
            })
            .collect();
        Ok(Some(entries))
    }

    /// The id of the blob at `path` in `commit`; `None` if there is none.
    pub(crate) async fn blob_id(&self, commit: &str, path: &str) -> Result<Option<String>, ReadError> {
        let spec = format!("{commit}:{path}");
        let id = self.text(&["rev-parse", "--verify", "-q", "--end-of-options", &spec]).await?;
        Ok(id.map(|id| id.trim().to_owned()).filter(|id| is_hex_id(id)))
    }

    pub(crate) async fn blob_size(&self, commit: &str, path: &str) -> Result<Option<u64>, ReadError> {
        let spec = format!("{commit}:{path}");
        Ok(self.text(&["cat-file", "-s", "--end-of-options", &spec]).await?.and_then(|s| s.trim().parse().ok()))
    }

    /// The blob's bytes; [`ReadError::TooLarge`] past the output cap (check [`Self::blob_size`]
    /// first to show a large file as a download instead).
    pub(crate) async fn blob(&self, commit: &str, path: &str) -> Result<Option<Vec<u8>>, ReadError> {
        let spec = format!("{commit}:{path}");
        self.run(&["cat-file", "blob", &spec]).await
    }

    /// The first `n` bytes of the blob (fewer if it is shorter), to tell text from binary; git
    /// is stopped once they are read.
    pub(crate) async fn blob_head(&self, commit: &str, path: &str, n: usize) -> Result<Vec<u8>, ReadError> {
        let spec = format!("{commit}:{path}");
        Ok(self.collect(&["cat-file", "blob", &spec], n, true).await?.map(|(o, _)| o).unwrap_or_default())
    }

    /// A running `git cat-file blob` for streaming a raw download of any size: the caller reads
    /// its stdout and keeps the child beside it (killed when dropped).
    pub(crate) fn blob_stream(&self, commit: &str, path: &str) -> Result<Child, ReadError> {
        let spec = format!("{commit}:{path}");
        self.spawn(&["cat-file", "blob", &spec])
    }

    /// A running `git archive` of `commit` (a resolved id) in `format` (`zip`, `tar`, `tar.gz`
    /// or `tgz`), its entries under `prefix` (empty, or ending in `/`), only `paths` (checked
    /// with [`valid_path`]; empty for all). Streams with no time or size limit: the caller reads
    /// its stdout, keeps the child beside it (killed when dropped) and checks its exit status.
    pub(crate) fn archive_stream(&self, commit: &str, format: &str, prefix: &str, paths: &[String]) -> Result<Child, ReadError> {
        let format = format!("--format={format}");
        let prefix = format!("--prefix={prefix}");
        // `git archive` takes no `--` (it would be a path); after `--end-of-options` nothing is
        // an option, and `:(literal)` keeps a path from being read as a glob.
        let literal: Vec<String> = paths.iter().map(|p| format!(":(literal){p}")).collect();
        let mut args = vec!["archive", format.as_str(), prefix.as_str(), "--end-of-options", commit];
        args.extend(literal.iter().map(String::as_str));
        self.spawn(&args)
    }

    /// Commits as `q` asks, newest first.
    pub(crate) async fn log(&self, q: &LogQuery<'_>) -> Result<Option<Vec<Commit>>, ReadError> {
        // `--follow` finds renames only on commits it walks, and `--skip` walks none of the ones
        // it skips: with it, the skipped commits are read and dropped here instead.
        let follow = q.follow && !q.path.is_empty();
        let skip = format!("--skip={}", if follow { 0 } else { q.skip });
        let max = format!("--max-count={}", if follow { q.skip.saturating_add(q.max) } else { q.max });
        let not_since = q.since.map(|s| format!("^{s}"));
        let mut args = vec!["log", "--no-color", LOG_DATE, LOG_FORMAT, &skip, &max];
        match q.merges {
            Some(false) => args.push("--no-merges"),
            Some(true) => args.push("--merges"),
            None => {}
        }
        if follow {
            args.push("--follow");
        }
        args.extend(["--end-of-options", q.until]);
        args.extend(not_since.as_deref());
        args.push("--");
        if !q.path.is_empty() {
            args.push(q.path);
        }
        let Some(out) = self.text(&args).await? else { return Ok(None) };
        let commits = out.split(RECORD).filter(|r| !r.trim().is_empty()).filter_map(parse_commit);
        Ok(Some(commits.skip(if follow { q.skip } else { 0 }).collect()))
    }

    /// One commit by resolved id.
    pub(crate) async fn commit(&self, id: &str) -> Result<Option<Commit>, ReadError> {
        let Some(out) = self.text(&["log", "-1", "--no-color", LOG_DATE, LOG_FORMAT, "--end-of-options", id, "--"]).await? else { return Ok(None) };
        Ok(out.split(RECORD).next().and_then(parse_commit))
    }

    /// Who last changed lines `first..=last` (1-based) of the file `path` at `commit`.
    pub(crate) async fn blame(&self, commit: &str, path: &str, first: usize, last: usize) -> Result<Option<Vec<BlameSpan>>, ReadError> {
        let range = format!("{first},{last}");
        let Some(out) = self.text(&["blame", "--porcelain", "-L", &range, commit, "--", path]).await? else { return Ok(None) };
        Ok(Some(parse_blame(&out)))
    }

    /// Who last changed each line of the file `path` at `commit` (the whole file), with each
    /// commit's summary, for the blame page.
    pub(crate) async fn blame_file(&self, commit: &str, path: &str) -> Result<Option<Vec<BlameSpan>>, ReadError> {
        // No `--end-of-options`: blame reads what follows it as revisions. `commit` is a
        // resolved hex id, never an option.
        let Some(out) = self.text(&["blame", "--porcelain", commit, "--", path]).await? else { return Ok(None) };
        Ok(Some(parse_blame(&out)))
    }

    /// For each of `children` (names in the directory `dir` at `commit`), the newest commit
    /// that changed it, read from one `git log --name-only` walk of `dir`'s history; a child
    /// not found before the output cap is left out.
    pub(crate) async fn last_modified(&self, commit: &str, dir: &str, children: &[String]) -> Result<std::collections::HashMap<String, String>, ReadError> {
        let mut args = vec!["log", "--no-color", "--format=%x1e%H", "--name-only", "--no-renames", "-z", "--end-of-options", commit, "--"];
        if !dir.is_empty() {
            args.push(dir);
        }
        let (out, _) = self.collect(&args, self.limits.max_output, true).await?.unwrap_or_default();
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        let wanted: std::collections::HashSet<&str> = children.iter().map(String::as_str).collect();
        let mut found = std::collections::HashMap::new();
        for record in out.split(|b| *b == 0x1e).filter(|r| !r.is_empty()) {
            let mut fields = record.split(|b| *b == 0);
            let id = String::from_utf8_lossy(fields.next().unwrap_or_default()).trim().to_owned();
            for name in fields {
                let name = String::from_utf8_lossy(name);
                let Some(rest) = name.trim_start_matches('\n').strip_prefix(prefix.as_str()) else { continue };
                let child = rest.split('/').next().unwrap_or("");
                if wanted.contains(child) && !found.contains_key(child) {
                    found.insert(child.to_owned(), id.clone());
                }
            }
            if found.len() == wanted.len() {
                break;
            }
        }
        Ok(found)
    }

    /// One page of every file below the directory `path` at `commit`, as paths relative to it:
    /// `git ls-tree -r` is read only as far as the page (and one more entry, to know whether it
    /// is the last) and then stopped, so a deep page of a huge tree never holds the whole list.
    /// `None` if `path` is not a directory there.
    pub(crate) async fn files(&self, commit: &str, path: &str, start: usize, limit: usize) -> Result<Option<FilesPage>, ReadError> {
        if self.kind(commit, path).await?.as_deref() != Some("tree") {
            return Ok(None);
        }
        let spec = format!("{commit}:{path}");
        let args = ["ls-tree", "-r", "-z", "--name-only", "--end-of-options", &spec];
        let deadline = Instant::now() + self.limits.time;
        let mut child = self.spawn(&args)?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let want = start.saturating_add(limit).saturating_add(1);
        let (mut seen, mut paths, mut partial, mut bytes_read) = (0usize, Vec::new(), Vec::new(), 0u64);
        let mut buf = vec![0u8; 16 << 10];
        let eof = loop {
            let n = match tokio::time::timeout_at(deadline, stdout.read(&mut buf)).await {
                Err(_) => {
                    stop(&mut child).await;
                    return Err(self.timed_out(&args));
                }
                Ok(Err(source)) => {
                    stop(&mut child).await;
                    return Err(ReadError::Io { command: command_name(&args), source });
                }
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                break true;
            }
            bytes_read += n as u64;
            if bytes_read > self.limits.max_output as u64 {
                stop(&mut child).await;
                return Err(ReadError::TooLarge { command: command_name(&args), limit: self.limits.max_output });
            }
            let mut rest = &buf[..n];
            while let Some(i) = rest.iter().position(|b| *b == 0) {
                partial.extend_from_slice(&rest[..i]);
                rest = &rest[i + 1..];
                if seen >= start && seen < start.saturating_add(limit) {
                    paths.push(String::from_utf8_lossy(&partial).into_owned());
                }
                partial.clear();
                seen += 1;
            }
            partial.extend_from_slice(rest);
            if seen >= want {
                break false;
            }
        };
        // Only tests look at how much a page read.
        #[cfg(test)]
        FILES_READ.lock().unwrap().push((self.dir.clone(), bytes_read));
        if !eof {
            stop(&mut child).await;
            return Ok(Some(FilesPage { paths, last: false }));
        }
        drop(stdout);
        let status = match tokio::time::timeout_at(deadline, child.wait()).await {
            Err(_) => {
                stop(&mut child).await;
                return Err(self.timed_out(&args));
            }
            Ok(r) => r.map_err(|source| ReadError::Io { command: command_name(&args), source })?,
        };
        Ok(status.success().then_some(FilesPage { paths, last: seen <= start.saturating_add(limit) }))
    }
}

/// Consecutive lines of a file last changed by one commit, as `git blame --porcelain` tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlameSpan {
    pub(crate) commit: String,
    /// 1-based line number in the file as it is at the blamed revision.
    pub(crate) line: u64,
    pub(crate) lines: u64,
    pub(crate) author_name: String,
    pub(crate) author_email: String,
    /// Unix seconds.
    pub(crate) author_time: i64,
    pub(crate) committer_name: String,
    pub(crate) committer_email: String,
    pub(crate) committer_time: i64,
    /// The file's name in that commit (it may have been renamed since).
    pub(crate) file_name: String,
    /// The first line of the commit's message.
    pub(crate) summary: String,
}

/// Parses `git blame --porcelain`: a header line `<id> <orig> <final> <count>` opens each group,
/// the commit's details follow the first time a commit appears, and each line's text is the one
/// starting with a tab.
pub(crate) fn parse_blame(out: &str) -> Vec<BlameSpan> {
    use std::collections::HashMap;
    let mut known: HashMap<String, BlameSpan> = HashMap::new();
    let mut spans: Vec<BlameSpan> = Vec::new();
    let mut current: Option<BlameSpan> = None;
    let finish = |span: BlameSpan, known: &mut HashMap<String, BlameSpan>, spans: &mut Vec<BlameSpan>| {
        known.insert(span.commit.clone(), span.clone());
        spans.push(span);
    };
    for line in out.lines() {
        if line.starts_with('\t') {
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        if let [id, _orig, fin, count] = f[..]
            && is_hex_id(id)
        {
            if let Some(s) = current.take() {
                finish(s, &mut known, &mut spans);
            }
            let mut span = known.get(id).cloned().unwrap_or(BlameSpan {
                commit: id.to_owned(),
                line: 0,
                lines: 0,
                author_name: String::new(),
                author_email: String::new(),
                author_time: 0,
                committer_name: String::new(),
                committer_email: String::new(),
                committer_time: 0,
                file_name: String::new(),
                summary: String::new(),
            });
            span.line = fin.parse().unwrap_or(0);
            span.lines = count.parse().unwrap_or(0);
            current = Some(span);
            continue;
        }
        let Some(span) = current.as_mut() else { continue };
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        let mail = || value.trim_start_matches('<').trim_end_matches('>').to_owned();
        match key {
            "author" => span.author_name = value.to_owned(),
            "author-mail" => span.author_email = mail(),
            "author-time" => span.author_time = value.parse().unwrap_or(0),
            "committer" => span.committer_name = value.to_owned(),
            "committer-mail" => span.committer_email = mail(),
            "committer-time" => span.committer_time = value.parse().unwrap_or(0),
            "filename" => span.file_name = value.to_owned(),
            "summary" => span.summary = value.to_owned(),
            _ => {}
        }
    }
    if let Some(s) = current.take() {
        finish(s, &mut known, &mut spans);
    }
    spans
}

/// `log` for `["log", …]`: the subcommand names the invocation in errors, not its arguments.
fn command_name(args: &[&str]) -> String {
    args.first().copied().unwrap_or("").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_naming_nothing_but_full_object_ids_are_remembered() {
        let id = "0123456789abcdef0123456789abcdef01234567";
        let sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let spec = format!("{id}:dir/a.txt");
        let not_since = format!("^{id}");
        let peel = format!("{id}^{{commit}}");
        for args in [
            vec!["cat-file", "blob", spec.as_str()],
            vec!["cat-file", "-s", "--end-of-options", spec.as_str()],
            vec!["ls-tree", "-z", "-l", "--end-of-options", spec.as_str()],
            vec!["log", "--no-color", "--max-count=5", "--end-of-options", id, not_since.as_str(), "--", "refs/heads/x"],
            vec!["diff-tree", "-p", "--end-of-options", id, sha256],
            vec!["blame", "--porcelain", "-L", "1,20", id, "--", "a.txt"],
            vec!["rev-parse", "--verify", "-q", "--end-of-options", peel.as_str()],
        ] {
            assert!(names_only_objects(&args), "{args:?} names only objects");
        }
        let short = &id[..12];
        let upper = id.to_ascii_uppercase();
        let branch_spec = "main:a.txt".to_owned();
        for args in [
            vec!["symbolic-ref", "-q", "HEAD"],
            vec!["for-each-ref", "refs/heads"],
            vec!["log", "--end-of-options", "main", "--"],
            vec!["log", "--end-of-options", id, "main", "--"],
            vec!["log", "--all", id],
            vec!["log", "--branches=x", id],
            vec!["cat-file", "blob", branch_spec.as_str()],
            vec!["cat-file", "blob", short],
            vec!["cat-file", "blob", upper.as_str()],
            vec!["rev-parse", "--verify", "HEAD"],
            vec!["ls-tree", "-r"],
            vec!["archive", "--format=tar", id],
        ] {
            assert!(!names_only_objects(&args), "{args:?} may change");
        }
    }

    #[test]
    fn remembered_reads_stay_within_their_bound_least_recently_used_out_first() {
        let m = ObjectReads::default();
        let big = Bytes::from(vec![7u8; ObjectReads::MAX_ENTRY / 2]);
        m.put(b"first".to_vec(), big.clone(), false);
        assert_eq!(m.get(b"first").map(|(b, _)| b.len()), Some(big.len()));
        m.put(b"too big".to_vec(), Bytes::from(vec![0u8; ObjectReads::MAX_ENTRY + 1]), false);
        assert!(m.get(b"too big").is_none(), "an output over the entry cap is not kept");
        let n = ObjectReads::MAX_BYTES / big.len() + 4;
        for i in 0..n {
            m.put(format!("k{i}").into_bytes(), big.clone(), true);
            // `first` is read again and again: the least recently used go before it.
            assert!(m.get(b"first").is_some(), "the entry in use was evicted at {i}");
        }
        let (_, _, kept) = m.stats();
        assert!(kept <= ObjectReads::MAX_BYTES, "{kept} bytes kept");
        assert!(m.get(b"k0").is_none(), "the oldest unused entry went first");
        assert_eq!(m.get(format!("k{}", n - 1).as_bytes()).map(|(_, cut)| cut), Some(true));
    }

    #[test]
    fn only_plain_tree_paths_and_hex_ids_are_accepted() {
        for (p, ok) in [
            ("", true),
            ("src/main.rs", true),
            ("dir/-x", true),
            ("a/../b", false),
            ("..", false),
            ("./a", false),
            ("a//b", false),
            ("a/", false),
            ("a\nb", false),
            ("-x", true),
        ] {
            assert_eq!(valid_path(p), ok, "{p:?}");
        }
        for (id, ok) in [("abcd", true), ("ABC123def0", true), ("abc", false), ("--all", false), ("HEAD", false), ("a".repeat(65).as_str(), false)] {
            assert_eq!(is_hex_id(id), ok, "{id:?}");
        }
    }

    #[test]
    fn log_records_become_commits() {
        let rec = "\n0123456789abcdef0123456789abcdef01234567\u{1f}0123456\u{1f}aaaa bbbb\u{1f}Ann\u{1f}ann@example.com\u{1f}1700000000\u{1f}2023-11-14 22:13 +0000\u{1f}Cid\u{1f}cid@example.com\u{1f}1700000001\u{1f}subject\nwrapped\n\nbody\n";
        let c = parse_commit(rec).unwrap();
        assert_eq!((c.short.as_str(), c.author_time, c.committer_time), ("0123456", 1_700_000_000, 1_700_000_001));
        assert_eq!(c.parents, ["aaaa", "bbbb"]);
        assert_eq!(c.message, "subject\nwrapped\n\nbody");
        assert_eq!(c.subject(), "subject wrapped");
        assert!(parse_commit("").is_none());
    }

    #[test]
    fn blame_porcelain_becomes_spans_with_details_repeated_for_known_commits() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let out = format!(
            "{a} 1 1 2\nauthor Ann\nauthor-mail <ann@example.com>\nauthor-time 1700000000\ncommitter Cid\ncommitter-mail <cid@example.com>\ncommitter-time 1700000001\nsummary s\nfilename old.txt\n\tone\n{a} 2 2\n\ttwo\n{b} 3 3 1\nauthor Bob\nauthor-mail <bob@example.com>\nauthor-time 1700000100\ncommitter Bob\ncommitter-mail <bob@example.com>\ncommitter-time 1700000100\nfilename new.txt\n\tthree\n{a} 4 4 1\nfilename old.txt\n\tfour\n"
        );
        let spans = parse_blame(&out);
        let brief: Vec<(&str, u64, u64, &str, &str)> =
            spans.iter().map(|s| (&s.commit[..1], s.line, s.lines, s.author_name.as_str(), s.file_name.as_str())).collect();
        assert_eq!(brief, [("a", 1, 2, "Ann", "old.txt"), ("b", 3, 1, "Bob", "new.txt"), ("a", 4, 1, "Ann", "old.txt")]);
        assert_eq!((spans[2].author_email.as_str(), spans[2].committer_time), ("ann@example.com", 1_700_000_001));
        assert_eq!((spans[0].summary.as_str(), spans[2].summary.as_str(), spans[1].summary.as_str()), ("s", "s", ""));
    }

    fn git(env: &[(OsString, OsString)], dir: &std::path::Path, args: &[&str], stdin: Option<&[u8]>) -> String {
        use std::io::Write as _;
        let mut c = std::process::Command::new("git");
        c.env_clear().envs(env.iter().cloned()).env("GIT_DIR", dir).args(args);
        c.env("GIT_AUTHOR_NAME", "Ann")
            .env("GIT_AUTHOR_EMAIL", "ann@example.com")
            .env("GIT_COMMITTER_NAME", "Ann")
            .env("GIT_COMMITTER_EMAIL", "ann@example.com");
        c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or_default()).unwrap();
        drop(input);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A bare repository whose `main` has one commit with `big.txt` of `size` bytes.
    fn repo_with_blob(size: usize) -> (tempfile::TempDir, Vec<(OsString, OsString)>, PathBuf, String) {
        let tmp = tempfile::tempdir().unwrap();
        let env = trove_store::git_env(tmp.path());
        let dir = tmp.path().join("repo.git");
        git(&env, tmp.path(), &["init", "-q", "--bare", dir.to_str().unwrap()], None);
        let blob = git(&env, &dir, &["hash-object", "-w", "--stdin"], Some(&vec![b'x'; size]));
        let index = tmp.path().join("index");
        let with_index = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .env_clear()
                .envs(env.iter().cloned())
                .env("GIT_DIR", &dir)
                .env("GIT_INDEX_FILE", &index)
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        with_index(&["update-index", "--add", "--cacheinfo", &format!("100644,{blob},big.txt")]);
        let tree = with_index(&["write-tree"]);
        let commit = git(&env, &dir, &["commit-tree", &tree, "-m", "big"], None);
        git(&env, &dir, &["update-ref", "refs/heads/main", &commit], None);
        (tmp, env, dir, commit)
    }

    #[tokio::test]
    async fn output_over_the_cap_is_too_large() {
        let (_tmp, env, dir, commit) = repo_with_blob(100_000);
        let r = Reader::for_test("git".into(), env, dir, Limits { max_output: 10_000, time: TIME_LIMIT });
        assert!(matches!(r.blob(&commit, "big.txt").await, Err(ReadError::TooLarge { limit: 10_000, .. })));
        assert_eq!(r.blob_size(&commit, "big.txt").await.unwrap(), Some(100_000), "small answers still come");
        assert_eq!(r.blob_head(&commit, "big.txt", 100).await.unwrap(), vec![b'x'; 100]);
    }

    #[tokio::test]
    async fn git_over_its_time_limit_is_killed_and_reaped() {
        let tmp = tempfile::tempdir().unwrap();
        let pid_file = tmp.path().join("pid");
        let fake = tmp.path().join("slow-git");
        // `exec` so that the process we kill is the one that sleeps.
        std::fs::write(&fake, format!("#!/bin/sh\necho $$ > {}\nexec sleep 600\n", pid_file.display())).unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let env = trove_store::git_env(tmp.path());
        let r = Reader::for_test(fake, env, tmp.path().to_owned(), Limits { max_output: MAX_OUTPUT, time: Duration::from_secs(2) });
        let err = r.refs().await.unwrap_err();
        assert!(matches!(err, ReadError::TimedOut { .. }), "{err}");
        assert!(err.to_string().contains("was stopped"), "{err}");
        // Killed before it wrote its pid, it cannot have been left behind either.
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            assert!(!std::path::Path::new(&format!("/proc/{}", pid.trim())).exists(), "git {pid} was left behind");
        }
    }
}
