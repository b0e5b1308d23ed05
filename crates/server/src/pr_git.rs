//! The git work of pull requests: where refs point, what a source branch would bring into its
//! target (commits, changed files, the diff as Bitbucket's JSON), whether it merges cleanly, and
//! the merge itself with each of Bitbucket's strategies, written with `merge-tree`,
//! `commit-tree` and a compare-and-swap `update-ref`: never a working tree or an index.
//!
//! The discipline is `repo_read.rs`'s: a fixed argv, only hex object ids and checked ref names
//! and paths reach git (ids after `--end-of-options` where git takes it, paths after `--` with
//! `--literal-pathspecs`), an environment built from nothing (`trove_store::git_env`), a cap on
//! what git may print and a time limit on each invocation, past which the child is killed and
//! reaped. Hooks never run (`core.hooksPath=/dev/null`): `update-ref` would otherwise run a
//! repository's `reference-transaction` hook as the server.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;

use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::AppState;
use crate::repo_read::{Limits, is_hex_id, valid_path};

/// Most bytes of git's stderr kept for an error message; the rest is read and dropped, so a
/// chatty git never blocks on a full pipe.
const STDERR_KEPT: usize = 8 << 10;

/// Most commits one rebase (`rebase-no-ff`, `rebase-ff-only`) rewrites; more is
/// [`PrGitError::TooManyCommits`]. Default 1000: each costs two short git invocations, so a
/// merge stays within a request's patience.
pub(crate) const REBASE_LIMIT: usize = 1000;

/// Context lines of a diff when the caller names none, as Bitbucket's default.
pub(crate) const DEFAULT_CONTEXT_LINES: u32 = 10;

/// Who writes the `refs/pull-requests/{n}/merge` commits: nobody in particular, and never a
/// commit anyone merges (a merge makes its own, as the merging user).
pub(crate) const SERVER_IDENTITY: (&str, &str) = ("Trove", "noreply@trove.invalid");

/// Why git could not do what a pull request needed. An unknown ref, no merge base or a
/// conflict is an answer, not an error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PrGitError {
    #[error("cannot start git ({binary}): {source}; check `[git] binary` in the server configuration")]
    Spawn { binary: PathBuf, source: std::io::Error },
    #[error("reading the output of `git {command}` failed: {source}")]
    Io { command: String, source: std::io::Error },
    #[error("`git {command}` printed more than {limit} bytes and was stopped; it is too large to show")]
    TooLarge { command: String, limit: usize },
    #[error("`git {command}` ran longer than {} seconds and was stopped; try again when the server is less busy", limit.as_secs())]
    TimedOut { command: String, limit: std::time::Duration },
    #[error("`git {command}` failed ({status}): {stderr}")]
    Failed { command: String, status: String, stderr: String },
    #[error("`git {command}` answered something unexpected: {output:?}")]
    Unexpected { command: String, output: String },
    #[error("{what} {value:?} is not valid here")]
    Invalid { what: &'static str, value: String },
    #[error("rebasing would rewrite {count} commits, more than the {limit} one merge may; merge with a strategy that does not rebase")]
    TooManyCommits { count: usize, limit: usize },
}

/// Why a merge did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MergeError {
    /// The source does not merge cleanly (at the merge, or at a rebased commit): these paths
    /// conflict. The target is unchanged.
    #[error("the merge conflicts in {}", .0.join(", "))]
    Conflicted(Vec<String>),
    /// The strategy allows only a fast-forward (or a squash of one) and the branches diverged.
    #[error("the target branch has commits the source does not; this strategy only fast-forwards")]
    NotFastForward,
    /// The target ref was not at the commit the merge was made on (someone pushed meanwhile):
    /// nothing moved. `now` is where it is (`None`: it no longer exists).
    #[error("the target branch moved while the merge was made; try again")]
    TargetMoved { now: Option<String> },
    #[error(transparent)]
    Git(#[from] PrGitError),
}

/// Would the source merge cleanly into the target?
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MergeCheck {
    /// It would: the merged tree (written to the object store, referenced by nothing yet).
    Clean { tree: String },
    /// It would not: the conflicting paths, in git's order.
    Conflicted { paths: Vec<String> },
}

/// Bitbucket Server's merge strategies (Bitbucket 8, "Pull request merge strategies").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Strategy {
    /// Always a merge commit (parents: target, source).
    NoFf,
    /// Fast-forward when the target is an ancestor of the source, else a merge commit.
    Ff,
    /// Fast-forward, or refuse.
    FfOnly,
    /// One commit with the merged tree, parent the target.
    Squash,
    /// A squash, only when the source is ahead of the target.
    SquashFfOnly,
    /// The source's commits rebased onto the target, then a merge commit.
    RebaseNoFf,
    /// The source's commits rebased onto the target, then a fast-forward.
    RebaseFfOnly,
}

impl Strategy {
    pub(crate) const ALL: [Strategy; 7] =
        [Strategy::NoFf, Strategy::Ff, Strategy::FfOnly, Strategy::Squash, Strategy::SquashFfOnly, Strategy::RebaseNoFf, Strategy::RebaseFfOnly];

    /// Bitbucket's id (`no-ff`), as in its REST API and settings.
    pub(crate) fn id(&self) -> &'static str {
        match self {
            Strategy::NoFf => "no-ff",
            Strategy::Ff => "ff",
            Strategy::FfOnly => "ff-only",
            Strategy::Squash => "squash",
            Strategy::SquashFfOnly => "squash-ff-only",
            Strategy::RebaseNoFf => "rebase-no-ff",
            Strategy::RebaseFfOnly => "rebase-ff-only",
        }
    }

    pub(crate) fn parse(id: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|s| s.id() == id)
    }

    /// Bitbucket's display name.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Strategy::NoFf => "Merge commit",
            Strategy::Ff => "Fast-forward",
            Strategy::FfOnly => "Fast-forward only",
            Strategy::Squash => "Squash",
            Strategy::SquashFfOnly => "Squash, fast-forward only",
            Strategy::RebaseNoFf => "Rebase, merge",
            Strategy::RebaseFfOnly => "Rebase, fast-forward",
        }
    }

    /// One sentence on what it does, as the settings show it.
    pub(crate) fn description(&self) -> &'static str {
        match self {
            Strategy::NoFf => {
                "Always create a new merge commit and update the target branch to it, even if the source branch is already up to date with the target branch."
            }
            Strategy::Ff => "Update the target branch to the source branch if it is a fast-forward, otherwise create a merge commit.",
            Strategy::FfOnly => "Update the target branch to the source branch only if it is a fast-forward; otherwise the merge is refused.",
            Strategy::Squash => "Combine all the source branch's changes into one new commit on the target branch.",
            Strategy::SquashFfOnly => {
                "Combine all the source branch's changes into one new commit on the target branch, only if the source branch is up to date with the target."
            }
            Strategy::RebaseNoFf => "Rebase the source branch's commits onto the target branch, then create a merge commit.",
            Strategy::RebaseFfOnly => "Rebase the source branch's commits onto the target branch, then fast-forward the target branch to them.",
        }
    }

    /// The git command line it stands for, as Bitbucket shows it.
    pub(crate) fn flag(&self) -> &'static str {
        match self {
            Strategy::NoFf => "--no-ff",
            Strategy::Ff => "--ff",
            Strategy::FfOnly => "--ff-only",
            Strategy::Squash => "--squash",
            Strategy::SquashFfOnly => "--squash --ff-only",
            Strategy::RebaseNoFf => "rebase + merge --no-ff",
            Strategy::RebaseFfOnly => "rebase + merge --ff-only",
        }
    }
}

/// A person as git records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub name: String,
    pub email: String,
}

/// One merge: `from` into `to`, moving `to_ref` from `to` to the result.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MergeRequest<'a> {
    /// The source commit (full hex id).
    pub from: &'a str,
    /// The target commit the merge is made on (full hex id); `to_ref` moves only if it is
    /// still there.
    pub to: &'a str,
    /// The target branch, `refs/heads/…`.
    pub to_ref: &'a str,
    pub strategy: Strategy,
    /// The message of the merge or squash commit (rebased commits keep their own).
    pub message: &'a str,
    /// The merging user: author and committer of the new merge or squash commit, committer of
    /// rebased commits (which keep their authors).
    pub author: &'a Identity,
}

/// What a merge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Merged {
    /// The target's new tip (its old tip when the source was merged already: nothing moved).
    pub commit: String,
    /// The merge or squash commit made, if any (not for a fast-forward).
    pub merge_commit: Option<String>,
}

/// What [`GitRepo::diff`] and [`GitRepo::raw_diff`] show.
#[derive(Debug, Clone, Default)]
pub(crate) struct DiffOptions {
    /// Lines of context around each change. `None`: [`DEFAULT_CONTEXT_LINES`].
    pub context_lines: Option<u32>,
    /// Ignore all whitespace (`git diff -w`, Bitbucket's `IGNORE_ALL`).
    pub ignore_whitespace: bool,
    /// Only this path (checked with `valid_path`); `None` for every path.
    pub path: Option<String>,
    /// With `path`, the path it was renamed from, so the rename is found.
    pub src_path: Option<String>,
    /// Most content lines in the whole diff; past it the diff is cut and marked truncated.
    /// `0`: no cap. [`GitRepo::raw_diff`] ignores it.
    pub max_lines: usize,
    /// Longest line shown, in characters; longer lines are cut and marked truncated. `0`: no
    /// cap. [`GitRepo::raw_diff`] ignores it.
    pub max_line_len: usize,
}

/// A path as Bitbucket's REST API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PathJson {
    pub components: Vec<String>,
    pub parent: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    #[serde(rename = "toString")]
    pub to_string: String,
}

impl PathJson {
    pub(crate) fn new(path: &str) -> PathJson {
        let components: Vec<String> = path.split('/').map(str::to_owned).collect();
        let name = components.last().cloned().unwrap_or_default();
        let parent = components[..components.len() - 1].join("/");
        let extension = name.rsplit_once('.').map(|(_, ext)| ext).filter(|ext| !ext.is_empty()).map(str::to_owned);
        PathJson { components, parent, name, extension, to_string: path.to_owned() }
    }
}

/// Bitbucket's path object for `path` (`{"components":[…],"parent":…,"name":…,…}`).
#[cfg(test)]
pub(crate) fn path_json(path: &str) -> serde_json::Value {
    serde_json::to_value(PathJson::new(path)).expect("a path serializes")
}

/// One changed file, as Bitbucket's change object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Change {
    /// The new blob (zeros for a deletion).
    pub content_id: String,
    /// The old blob (zeros for an addition).
    pub from_content_id: String,
    pub path: PathJson,
    /// Where a moved or copied file came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_path: Option<PathJson>,
    pub executable: bool,
    /// The similarity of a move or copy; `-1` otherwise.
    pub percent_unchanged: i32,
    /// `ADD`, `MODIFY`, `DELETE`, `MOVE` or `COPY`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `FILE` or `SUBMODULE`.
    pub node_type: &'static str,
    /// Whether the old file was executable, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_executable: Option<bool>,
    pub properties: ChangeProperties,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChangeProperties {
    /// git's own word: `ADD`, `MODIFY`, `DELETE`, `RENAME` or `COPY`.
    pub git_change_type: &'static str,
}

/// A diff between two commits, as Bitbucket's diff JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Diff {
    pub from_hash: String,
    pub to_hash: String,
    pub context_lines: u32,
    /// `SHOW` or `IGNORE_ALL`.
    pub whitespace: &'static str,
    pub truncated: bool,
    pub diffs: Vec<FileDiff>,
}

impl Diff {
    /// Every content line of the diff as `(type, source line, destination line, text)`, for
    /// placing comments on lines.
    pub(crate) fn lines(&self) -> Vec<(String, u32, u32, String)> {
        let mut out = Vec::new();
        for f in &self.diffs {
            for h in &f.hunks {
                for seg in &h.segments {
                    let ty = match seg.kind {
                        SegmentType::Added => "ADDED",
                        SegmentType::Removed => "REMOVED",
                        SegmentType::Context => "CONTEXT",
                    };
                    for l in &seg.lines {
                        out.push((ty.to_owned(), l.source as u32, l.destination as u32, l.line.clone()));
                    }
                }
            }
        }
        out
    }
}

/// One file of a [`Diff`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct FileDiff {
    /// `None` for an added file.
    pub source: Option<PathJson>,
    /// `None` for a deleted file.
    pub destination: Option<PathJson>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub binary: bool,
    pub truncated: bool,
    pub hunks: Vec<Hunk>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Hunk {
    pub source_line: u64,
    pub source_span: u64,
    pub destination_line: u64,
    pub destination_span: u64,
    pub truncated: bool,
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum SegmentType {
    Added,
    Removed,
    Context,
}

/// Consecutive lines of one [`SegmentType`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Segment {
    #[serde(rename = "type")]
    pub kind: SegmentType,
    pub truncated: bool,
    pub lines: Vec<Line>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Line {
    pub source: u64,
    pub destination: u64,
    pub line: String,
    pub truncated: bool,
}

/// What one git invocation gave back.
struct Out {
    /// `None` when killed by a signal.
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// The output was cut at its cap (only when the caller allowed it).
    cut: bool,
}

/// Kills and reaps a child we stop waiting for, so it is neither left running nor a zombie.
async fn stop(child: &mut Child) {
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// `merge-tree` for `["merge-tree", …]` (or `["-c", "x=y", "merge-tree", …]`): the subcommand
/// names the invocation in errors.
fn command_name(args: &[&str]) -> String {
    let mut rest = args;
    while let ["-c", _, tail @ ..] = rest {
        rest = tail;
    }
    rest.first().copied().unwrap_or("").to_owned()
}

/// A full object id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
fn is_full_id(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn full_id<'a>(what: &'static str, s: &'a str) -> Result<&'a str, PrGitError> {
    if is_full_id(s) { Ok(s) } else { Err(PrGitError::Invalid { what, value: s.to_owned() }) }
}

fn hex_id<'a>(what: &'static str, s: &'a str) -> Result<&'a str, PrGitError> {
    if is_hex_id(s) { Ok(s) } else { Err(PrGitError::Invalid { what, value: s.to_owned() }) }
}

/// A full ref name git would accept (`git check-ref-format`'s rules) under `refs/`, with
/// nothing that git or a shell reads specially.
pub(crate) fn valid_ref(name: &str) -> bool {
    name.starts_with("refs/")
        && !name.ends_with('/')
        && !name.ends_with('.')
        && !name.contains("..")
        && !name.contains("@{")
        && !name.bytes().any(|b| b < 0x20 || b == 0x7f || b" ~^:?*[\\".contains(&b))
        && name.split('/').all(|c| !c.is_empty() && !c.starts_with('.') && !c.ends_with(".lock"))
}

fn checked_ref(name: &str) -> Result<&str, PrGitError> {
    if valid_ref(name) { Ok(name) } else { Err(PrGitError::Invalid { what: "ref", value: name.to_owned() }) }
}

fn checked_path(path: &str) -> Result<&str, PrGitError> {
    if !path.is_empty() && valid_path(path) { Ok(path) } else { Err(PrGitError::Invalid { what: "path", value: path.to_owned() }) }
}

/// The first line of git's output as an id, checked.
fn output_id(args: &[&str], out: &[u8]) -> Result<String, PrGitError> {
    let text = String::from_utf8_lossy(out);
    let id = text.lines().next().unwrap_or("").trim();
    if is_full_id(id) { Ok(id.to_owned()) } else { Err(PrGitError::Unexpected { command: command_name(args), output: text.into_owned() }) }
}

/// A commit object's fields that rebasing needs.
#[derive(Debug, Clone)]
struct RawCommit {
    tree: String,
    parents: Vec<String>,
    /// The author as git recorded them: name, e-mail, and the date as `@<unix> <zone>`.
    author: (String, String, String),
    /// The `encoding` header, when the message is not UTF-8.
    encoding: Option<String>,
    message: Vec<u8>,
}

/// Parses a raw commit object (`git cat-file commit`).
fn parse_raw_commit(raw: &[u8]) -> Option<RawCommit> {
    let split = raw.windows(2).position(|w| w == b"\n\n");
    let (head, message) = match split {
        Some(i) => (&raw[..i], raw[i + 2..].to_vec()),
        None => (raw, Vec::new()),
    };
    let head = String::from_utf8_lossy(head);
    let (mut tree, mut parents, mut author, mut encoding) = (None, Vec::new(), None, None);
    for line in head.lines() {
        if let Some(t) = line.strip_prefix("tree ") {
            tree = Some(t.to_owned());
        } else if let Some(p) = line.strip_prefix("parent ") {
            parents.push(p.to_owned());
        } else if let Some(a) = line.strip_prefix("author ") {
            author = parse_ident(a);
        } else if let Some(e) = line.strip_prefix("encoding ") {
            encoding = Some(e.to_owned());
        }
    }
    Some(RawCommit { tree: tree?, parents, author: author?, encoding, message })
}

/// `Name <email> 1700000000 +0100` → (name, email, `@1700000000 +0100`).
fn parse_ident(line: &str) -> Option<(String, String, String)> {
    let close = line.rfind('>')?;
    let open = line[..close].rfind('<')?;
    let name = line[..open].trim_end().to_owned();
    let email = line[open + 1..close].to_owned();
    let date = line[close + 1..].trim();
    Some((name, email, format!("@{date}")))
}

/// Parses `git merge-tree --write-tree -z --name-only --no-messages`: the tree, then the
/// conflicting paths (none when it merged cleanly).
fn parse_merge_tree(out: &[u8]) -> Option<(String, Vec<String>)> {
    let mut fields = out.split(|b| *b == 0);
    let tree = String::from_utf8_lossy(fields.next()?).trim().to_owned();
    if !is_full_id(&tree) {
        return None;
    }
    let mut paths: Vec<String> = Vec::new();
    for f in fields.take_while(|f| !f.is_empty()) {
        let p = String::from_utf8_lossy(f).into_owned();
        if !paths.contains(&p) {
            paths.push(p);
        }
    }
    Some((tree, paths))
}

/// A commit message as git keeps it: trailing whitespace gone, one newline at the end.
fn normalized_message(message: &str) -> Vec<u8> {
    let mut m = message.trim_end().as_bytes().to_vec();
    m.push(b'\n');
    m
}

/// Runs git for pull requests on one repository.
pub(crate) struct GitRepo {
    binary: PathBuf,
    env: Vec<(OsString, OsString)>,
    dir: PathBuf,
    limits: Limits,
    /// The server, whose memory of object reads this uses (none in tests).
    shared: Option<AppState>,
}

impl GitRepo {
    /// The repository at `dir`, with the server's git binary and environment.
    pub(crate) fn new(state: &AppState, dir: PathBuf) -> GitRepo {
        GitRepo {
            binary: state.git.binary.clone(),
            env: trove_store::git_env(state.store.git_home()),
            dir,
            limits: Limits::default(),
            shared: Some(state.clone()),
        }
    }

    /// The repository at `dir` with its own binary and environment, for tests.
    #[cfg(test)]
    pub(crate) fn for_test(binary: PathBuf, env: Vec<(OsString, OsString)>, dir: PathBuf) -> GitRepo {
        GitRepo { binary, env, dir, limits: Limits::default(), shared: None }
    }

    /// The same with other limits, for tests.
    #[cfg(test)]
    pub(crate) fn with_limits(self, limits: Limits) -> GitRepo {
        GitRepo { limits, ..self }
    }

    /// Runs git with `args` under the limits, `stdin` fed to it and `env` added to the
    /// environment. Over the output cap: cut there when `cut`, else [`PrGitError::TooLarge`].
    /// Whatever the exit status, the caller decides what it means.
    async fn exec(&self, args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)], cut: bool) -> Result<Out, PrGitError> {
        // A read that names only object ids (a diff between two commits, their changed files
        // and line counts) prints the same for ever: remembered as the pages' reads are
        // ([`crate::repo_read::ObjectReads`]).
        let memo = self
            .shared
            .as_ref()
            .filter(|_| stdin.is_none() && env.is_empty() && crate::repo_read::names_only_objects(args))
            .map(|s| (s, crate::repo_read::ObjectReads::key("pr_git", &self.dir, self.limits.max_output, cut, args)));
        if let Some((s, key)) = &memo
            && let Some((stdout, was_cut)) = s.object_reads.get(key)
        {
            return Ok(Out { code: Some(0), stdout: stdout.to_vec(), stderr: Vec::new(), cut: was_cut });
        }
        let out = self.exec_git(args, stdin, env, cut).await?;
        if let Some((s, key)) = memo
            && out.code == Some(0)
        {
            s.object_reads.put(key, bytes::Bytes::copy_from_slice(&out.stdout), out.cut);
        }
        Ok(out)
    }

    async fn exec_git(&self, args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)], cut: bool) -> Result<Out, PrGitError> {
        let deadline = Instant::now() + self.limits.time;
        let cap = self.limits.max_output;
        let mut dir = OsString::from("--git-dir=");
        dir.push(&self.dir);
        let mut c = Command::new(&self.binary);
        c.env_clear().envs(self.env.iter().cloned()).envs(env.iter().map(|(k, v)| (k, v)));
        c.arg(dir).args(["--literal-pathspecs", "-c", "core.quotePath=false", "-c", "core.hooksPath=/dev/null"]).args(args);
        c.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = c.spawn().map_err(|source| PrGitError::Spawn { binary: self.binary.clone(), source })?;
        let (input, mut stdout, mut stderr) = (child.stdin.take(), child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let io = tokio::time::timeout_at(deadline, async {
            let feed = async {
                if let (Some(mut w), Some(bytes)) = (input, stdin) {
                    // git stops reading only when it fails; its exit status says why.
                    let _ = w.write_all(bytes).await;
                    let _ = w.shutdown().await;
                }
            };
            let read_out = async {
                let r = (&mut stdout).take(cap as u64 + 1).read_to_end(&mut out).await;
                if out.len() > cap {
                    // No more is read: stop git rather than leave it blocked on a full pipe.
                    let _ = child.start_kill();
                }
                r
            };
            let read_err = async {
                let mut chunk = [0u8; 4096];
                loop {
                    match stderr.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let keep = n.min(STDERR_KEPT.saturating_sub(err.len()));
                            err.extend_from_slice(&chunk[..keep]);
                        }
                    }
                }
            };
            let ((), r, ()) = tokio::join!(feed, read_out, read_err);
            r
        })
        .await;
        match io {
            Err(_) => {
                stop(&mut child).await;
                return Err(PrGitError::TimedOut { command: command_name(args), limit: self.limits.time });
            }
            Ok(Err(source)) => {
                stop(&mut child).await;
                return Err(PrGitError::Io { command: command_name(args), source });
            }
            Ok(Ok(_)) => {}
        }
        if out.len() > cap {
            stop(&mut child).await;
            if !cut {
                return Err(PrGitError::TooLarge { command: command_name(args), limit: cap });
            }
            out.truncate(cap);
            return Ok(Out { code: Some(0), stdout: out, stderr: err, cut: true });
        }
        match tokio::time::timeout_at(deadline, child.wait()).await {
            Err(_) => {
                stop(&mut child).await;
                Err(PrGitError::TimedOut { command: command_name(args), limit: self.limits.time })
            }
            Ok(Err(source)) => Err(PrGitError::Io { command: command_name(args), source }),
            Ok(Ok(status)) => Ok(Out { code: status.code(), stdout: out, stderr: err, cut: false }),
        }
    }

    fn failed(args: &[&str], out: &Out) -> PrGitError {
        PrGitError::Failed {
            command: command_name(args),
            status: out.code.map_or_else(|| "killed".to_owned(), |c| format!("exit {c}")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        }
    }

    /// Runs git and wants it to succeed; its stdout.
    async fn ok(&self, args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Result<Vec<u8>, PrGitError> {
        let out = self.exec(args, stdin, env, false).await?;
        if out.code == Some(0) { Ok(out.stdout) } else { Err(Self::failed(args, &out)) }
    }

    /// The commit `full_ref` points at, peeled through tags; `None` if there is no such ref or
    /// it names no commit.
    pub(crate) async fn ref_commit(&self, full_ref: &str) -> Result<Option<String>, PrGitError> {
        let spec = format!("{}^{{commit}}", checked_ref(full_ref)?);
        self.resolve(&spec).await
    }

    /// The object `spec` (built by us from checked parts) names, or `None`.
    async fn resolve(&self, spec: &str) -> Result<Option<String>, PrGitError> {
        let args = ["rev-parse", "--verify", "-q", "--end-of-options", spec];
        let out = self.exec(&args, None, &[], false).await?;
        match out.code {
            Some(0) => Ok(Some(output_id(&args, &out.stdout)?)),
            Some(1) => Ok(None),
            _ => Err(Self::failed(&args, &out)),
        }
    }

    /// Where `full_ref` points, not peeled (what `update-ref` compares with).
    async fn ref_value(&self, full_ref: &str) -> Result<Option<String>, PrGitError> {
        self.resolve(checked_ref(full_ref)?).await
    }

    /// The tree of `commit`.
    async fn tree_of(&self, commit: &str) -> Result<String, PrGitError> {
        let spec = format!("{}^{{tree}}", hex_id("commit", commit)?);
        let args = ["rev-parse", "--verify", "-q", "--end-of-options", &spec];
        let out = self.ok(&args, None, &[]).await?;
        output_id(&args, &out)
    }

    /// The best common ancestor of two commits; `None` when their histories are unrelated.
    pub(crate) async fn merge_base(&self, a: &str, b: &str) -> Result<Option<String>, PrGitError> {
        let args = ["merge-base", "--end-of-options", hex_id("commit", a)?, hex_id("commit", b)?];
        let out = self.exec(&args, None, &[], false).await?;
        match out.code {
            Some(0) => Ok(Some(output_id(&args, &out.stdout)?)),
            Some(1) => Ok(None),
            _ => Err(Self::failed(&args, &out)),
        }
    }

    /// Whether `ancestor` is reachable from `of` (a commit is its own ancestor).
    pub(crate) async fn is_ancestor(&self, ancestor: &str, of: &str) -> Result<bool, PrGitError> {
        let args = ["merge-base", "--is-ancestor", "--end-of-options", hex_id("commit", ancestor)?, hex_id("commit", of)?];
        let out = self.exec(&args, None, &[], false).await?;
        match out.code {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(Self::failed(&args, &out)),
        }
    }

    /// Commits in `from` not in `to` (`git rev-list to..from`), newest first, at most `max`;
    /// and how many there are in all.
    pub(crate) async fn commits_between(&self, to: &str, from: &str, max: usize) -> Result<(Vec<String>, usize), PrGitError> {
        let not_to = format!("^{}", hex_id("commit", to)?);
        let from = hex_id("commit", from)?;
        let args = ["rev-list", "--count", "--end-of-options", from, &not_to];
        let count = String::from_utf8_lossy(&self.ok(&args, None, &[]).await?).trim().to_owned();
        let total = count.parse().map_err(|_| PrGitError::Unexpected { command: "rev-list".into(), output: count })?;
        if max == 0 || total == 0 {
            return Ok((Vec::new(), total));
        }
        let max_count = format!("--max-count={max}");
        let out = self.ok(&["rev-list", &max_count, "--end-of-options", from, &not_to], None, &[]).await?;
        let ids = String::from_utf8_lossy(&out).lines().map(str::to_owned).collect();
        Ok((ids, total))
    }

    /// `git merge-tree` of `theirs` into `ours`, with `base` as the merge base when given (a
    /// commit or tree: a cherry-pick), else their merge bases. Unrelated histories merge as
    /// `git merge --allow-unrelated-histories` would.
    async fn merge_tree(&self, base: Option<&str>, ours: &str, theirs: &str) -> Result<MergeCheck, PrGitError> {
        let base_arg = base.map(|b| format!("--merge-base={b}"));
        let mut args = vec!["merge-tree", "--write-tree", "-z", "--name-only", "--no-messages", "--allow-unrelated-histories"];
        args.extend(base_arg.as_deref());
        args.extend(["--end-of-options", ours, theirs]);
        let out = self.exec(&args, None, &[], false).await?;
        let (tree, paths) = match out.code {
            Some(0 | 1) => parse_merge_tree(&out.stdout)
                .ok_or_else(|| PrGitError::Unexpected { command: "merge-tree".into(), output: String::from_utf8_lossy(&out.stdout).into_owned() })?,
            _ => return Err(Self::failed(&args, &out)),
        };
        Ok(if out.code == Some(0) { MergeCheck::Clean { tree } } else { MergeCheck::Conflicted { paths } })
    }

    /// Would `from` merge cleanly into `to`? Written with `git merge-tree`, never a working
    /// tree.
    pub(crate) async fn check_merge(&self, from: &str, to: &str) -> Result<MergeCheck, PrGitError> {
        self.merge_tree(None, hex_id("commit", to)?, hex_id("commit", from)?).await
    }

    /// Writes a commit of `tree` with `parents` and `message`; `author` (name, e-mail, and a
    /// date or `None` for now) and `committer` as given. `encoding` is the message's, when not
    /// UTF-8.
    async fn commit_tree(
        &self,
        tree: &str,
        parents: &[&str],
        message: &[u8],
        author: (&str, &str, Option<&str>),
        committer: &Identity,
        encoding: Option<&str>,
    ) -> Result<String, PrGitError> {
        let enc = encoding
            .filter(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)))
            .map(|e| format!("i18n.commitEncoding={e}"));
        let mut args: Vec<&str> = Vec::new();
        if let Some(e) = &enc {
            args.extend(["-c", e]);
        }
        args.extend(["commit-tree", full_id("tree", tree)?]);
        for p in parents {
            args.extend(["-p", full_id("parent", p)?]);
        }
        let mut env = vec![
            ("GIT_AUTHOR_NAME", author.0),
            ("GIT_AUTHOR_EMAIL", author.1),
            ("GIT_COMMITTER_NAME", committer.name.as_str()),
            ("GIT_COMMITTER_EMAIL", committer.email.as_str()),
        ];
        if let Some(date) = author.2 {
            env.push(("GIT_AUTHOR_DATE", date));
        }
        // The message goes on stdin (no `-m`): any length, and nothing in it is an option.
        let out = self.ok(&args, Some(message), &env).await?;
        output_id(&args, &out)
    }

    /// Raw commits by id, read in one `git cat-file --batch`.
    async fn read_commits(&self, ids: &[String]) -> Result<HashMap<String, RawCommit>, PrGitError> {
        let mut input = Vec::new();
        for id in ids {
            input.extend_from_slice(full_id("commit", id)?.as_bytes());
            input.push(b'\n');
        }
        let out = self.ok(&["cat-file", "--batch"], Some(&input), &[]).await?;
        let unexpected = || PrGitError::Unexpected { command: "cat-file".into(), output: String::from_utf8_lossy(&out[..out.len().min(200)]).into_owned() };
        let mut commits = HashMap::new();
        let mut rest = &out[..];
        while !rest.is_empty() {
            let nl = rest.iter().position(|b| *b == b'\n').ok_or_else(unexpected)?;
            let header = String::from_utf8_lossy(&rest[..nl]).into_owned();
            let f: Vec<&str> = header.split(' ').collect();
            let [id, "commit", size] = f[..] else { return Err(unexpected()) };
            let size: usize = size.parse().map_err(|_| unexpected())?;
            let body = rest.get(nl + 1..nl + 1 + size).ok_or_else(unexpected)?;
            commits.insert(id.to_owned(), parse_raw_commit(body).ok_or_else(unexpected)?);
            rest = rest.get(nl + 1 + size + 1..).unwrap_or_default();
        }
        Ok(commits)
    }

    /// The empty tree's id in this repository's hash.
    pub(crate) async fn empty_tree(&self) -> Result<String, PrGitError> {
        let args = ["hash-object", "-t", "tree", "--stdin"];
        let out = self.ok(&args, Some(b""), &[]).await?;
        output_id(&args, &out)
    }

    /// Rebases the commits of `from` that `to` lacks onto `to`, as `git rebase` would: merges
    /// dropped (the history made linear), commits whose change `to` has already dropped, each
    /// commit's author and message kept, `committer` the committer. The new tip and its tree
    /// (`to`'s own when nothing is left to apply).
    async fn rebase(&self, to: &str, from: &str, committer: &Identity) -> Result<(String, String), MergeError> {
        let range = format!("{to}...{from}");
        let args = ["rev-list", "--reverse", "--topo-order", "--no-merges", "--right-only", "--cherry-pick", "--end-of-options", &range];
        let list: Vec<String> = String::from_utf8_lossy(&self.ok(&args, None, &[]).await?).lines().map(str::to_owned).collect();
        if list.len() > REBASE_LIMIT {
            return Err(PrGitError::TooManyCommits { count: list.len(), limit: REBASE_LIMIT }.into());
        }
        let mut commits = self.read_commits(&list).await?;
        // The first parents' trees, to tell a commit that became empty from one that always was.
        let missing: Vec<String> = list.iter().filter_map(|c| commits[c].parents.first()).filter(|p| !commits.contains_key(*p)).cloned().collect();
        if !missing.is_empty() {
            commits.extend(self.read_commits(&missing).await?);
        }
        let (mut base, mut base_tree) = (to.to_owned(), self.tree_of(to).await?);
        // A root commit among them (histories joined by a merge) is applied onto the empty tree.
        let empty = if list.iter().any(|c| commits[c].parents.is_empty()) { Some(self.empty_tree().await?) } else { None };
        for id in &list {
            let c = &commits[id];
            let (merge_base, parent_tree) = match (c.parents.first(), &empty) {
                (Some(p), _) => (p.clone(), commits[p].tree.clone()),
                (None, Some(e)) => (e.clone(), e.clone()),
                (None, None) => unreachable!("the empty tree is read when a commit has no parent"),
            };
            let tree = match self.merge_tree(Some(&merge_base), &base, id).await? {
                MergeCheck::Clean { tree } => tree,
                MergeCheck::Conflicted { paths } => return Err(MergeError::Conflicted(paths)),
            };
            if tree == base_tree && c.tree != parent_tree {
                continue;
            }
            let (name, email, date) = &c.author;
            base = self.commit_tree(&tree, &[&base], &c.message, (name, email, Some(date)), committer, c.encoding.as_deref()).await?;
            base_tree = tree;
        }
        Ok((base, base_tree))
    }

    /// Merges `req.from` into `req.to` with `req.strategy` and moves `req.to_ref` from `req.to`
    /// to the result in one compare-and-swap: if anyone moved the ref meanwhile, nothing moves
    /// ([`MergeError::TargetMoved`]). A source already in the target merges to nothing: the
    /// target is returned and no ref moves.
    pub(crate) async fn merge(&self, req: &MergeRequest<'_>) -> Result<Merged, MergeError> {
        let (from, to) = (full_id("source commit", req.from)?, full_id("target commit", req.to)?);
        let to_ref = checked_ref(req.to_ref)?;
        let unchanged = || Merged { commit: to.to_owned(), merge_commit: None };
        if self.is_ancestor(from, to).await? {
            let now = self.ref_value(to_ref).await?;
            return if now.as_deref() == Some(to) { Ok(unchanged()) } else { Err(MergeError::TargetMoved { now }) };
        }
        let ff = self.is_ancestor(to, from).await?;
        let message = normalized_message(req.message);
        let me = (req.author.name.as_str(), req.author.email.as_str(), None);
        let merged_tree = || async {
            match self.merge_tree(None, to, from).await? {
                MergeCheck::Clean { tree } => Ok(tree),
                MergeCheck::Conflicted { paths } => Err(MergeError::Conflicted(paths)),
            }
        };
        let (new, merge_commit) = match req.strategy {
            Strategy::Ff | Strategy::FfOnly if ff => (from.to_owned(), None),
            Strategy::FfOnly => return Err(MergeError::NotFastForward),
            Strategy::SquashFfOnly if !ff => return Err(MergeError::NotFastForward),
            Strategy::NoFf | Strategy::Ff => {
                let tree = merged_tree().await?;
                let c = self.commit_tree(&tree, &[to, from], &message, me, req.author, None).await?;
                (c.clone(), Some(c))
            }
            Strategy::Squash | Strategy::SquashFfOnly => {
                let tree = merged_tree().await?;
                let c = self.commit_tree(&tree, &[to], &message, me, req.author, None).await?;
                (c.clone(), Some(c))
            }
            Strategy::RebaseNoFf | Strategy::RebaseFfOnly => {
                // A source already on top of the target needs no rebase, as `git rebase` says
                // "up to date": its commits are merged as they are.
                let (tip, tree) = if ff { (from.to_owned(), self.tree_of(from).await?) } else { self.rebase(to, from, req.author).await? };
                if tip == to {
                    let now = self.ref_value(to_ref).await?;
                    return if now.as_deref() == Some(to) { Ok(unchanged()) } else { Err(MergeError::TargetMoved { now }) };
                }
                if req.strategy == Strategy::RebaseFfOnly {
                    (tip, None)
                } else {
                    let c = self.commit_tree(&tree, &[to, &tip], &message, me, req.author, None).await?;
                    (c.clone(), Some(c))
                }
            }
        };
        let reflog = format!("pull request merge ({})", req.strategy.id());
        self.move_ref(to_ref, &new, to, &reflog, req.author).await?;
        Ok(Merged { commit: new, merge_commit })
    }

    /// Moves `full_ref` from `old` to `new` if it is still at `old`.
    async fn move_ref(&self, full_ref: &str, new: &str, old: &str, reflog: &str, who: &Identity) -> Result<(), MergeError> {
        let input = format!("update {full_ref}\0{new}\0{old}\0");
        let args = ["update-ref", "-z", "--stdin", "-m", reflog];
        // The committer names who moved the ref in its reflog.
        let env = [("GIT_COMMITTER_NAME", who.name.as_str()), ("GIT_COMMITTER_EMAIL", who.email.as_str())];
        let out = self.exec(&args, Some(input.as_bytes()), &env, false).await?;
        if out.code == Some(0) {
            return Ok(());
        }
        // git refuses a ref that is not at `old` (or is locked by a push under way): if it
        // moved, that is the answer; otherwise git's own failure is.
        let now = self.ref_value(full_ref).await?;
        if now.as_deref() != Some(old) {
            return Err(MergeError::TargetMoved { now });
        }
        Err(Self::failed(&args, &out).into())
    }

    /// Points `refs/pull-requests/{number}/from` at `from`, and `…/merge` at a merge commit of
    /// `from` into `to` (parents `to`, `from`) when it merges cleanly, else deletes it: both in
    /// one transaction. The merge commit kept from before when it is still that merge. Returns
    /// the merge commit, if any.
    pub(crate) async fn update_pr_refs(&self, number: i64, from: &str, to: &str) -> Result<Option<String>, PrGitError> {
        if number <= 0 {
            return Err(PrGitError::Invalid { what: "pull request number", value: number.to_string() });
        }
        let (from, to) = (full_id("source commit", from)?, full_id("target commit", to)?);
        let (from_ref, merge_ref) = (format!("refs/pull-requests/{number}/from"), format!("refs/pull-requests/{number}/merge"));
        let merge = match self.check_merge(from, to).await? {
            MergeCheck::Conflicted { .. } => None,
            MergeCheck::Clean { tree } => {
                let old = self.ref_commit(&merge_ref).await?;
                let kept = match &old {
                    Some(id) => {
                        self.read_commits(std::slice::from_ref(id)).await?.remove(id).filter(|c| c.tree == tree && c.parents == [to, from]).map(|_| id.clone())
                    }
                    None => None,
                };
                match kept {
                    Some(id) => Some(id),
                    None => {
                        let (name, email) = SERVER_IDENTITY;
                        let me = Identity { name: name.into(), email: email.into() };
                        let message = format!("Merge {from} into {to}\n");
                        Some(self.commit_tree(&tree, &[to, from], message.as_bytes(), (name, email, None), &me, None).await?)
                    }
                }
            }
        };
        let mut input = format!("update {from_ref}\0{from}\0\0");
        match &merge {
            Some(m) => input.push_str(&format!("update {merge_ref}\0{m}\0\0")),
            None => input.push_str(&format!("delete {merge_ref}\0\0")),
        }
        self.update_refs(&input).await?;
        Ok(merge)
    }

    /// Deletes the branch `full_ref` if it still points at `expected` (a source branch after
    /// its pull request merged); `false` when it moved or is gone, and nothing changed.
    pub(crate) async fn delete_ref(&self, full_ref: &str, expected: &str) -> Result<bool, PrGitError> {
        if !valid_ref(full_ref) || !full_ref.starts_with("refs/heads/") {
            return Err(PrGitError::Invalid { what: "branch", value: full_ref.to_owned() });
        }
        let expected = full_id("expected commit", expected)?;
        Ok(self.update_refs(&format!("delete {full_ref}\0{expected}\0")).await.is_ok())
    }

    /// Deletes `refs/pull-requests/{number}/from` and `…/merge` (absent ones are no error).
    pub(crate) async fn delete_pr_refs(&self, number: i64) -> Result<(), PrGitError> {
        if number <= 0 {
            return Err(PrGitError::Invalid { what: "pull request number", value: number.to_string() });
        }
        self.update_refs(&format!("delete refs/pull-requests/{number}/from\0\0delete refs/pull-requests/{number}/merge\0\0")).await
    }

    /// One `update-ref --stdin` transaction (`-z` format), as the server.
    async fn update_refs(&self, input: &str) -> Result<(), PrGitError> {
        let (name, email) = SERVER_IDENTITY;
        let env = [("GIT_COMMITTER_NAME", name), ("GIT_COMMITTER_EMAIL", email)];
        self.ok(&["update-ref", "-z", "--stdin", "-m", "pull request"], Some(input.as_bytes()), &env).await.map(drop)
    }

    // ---- Ref changes over REST (`ref_changes.rs`) ----

    /// Where `full_ref` points, not peeled; `None` when it does not exist.
    pub(crate) async fn ref_target(&self, full_ref: &str) -> Result<Option<String>, PrGitError> {
        self.ref_value(full_ref).await
    }

    /// One compare-and-swap on `full_ref`, as `who`: from `old` (`None`: it must not exist) to
    /// `new` (`None`: delete it). `Ok(false)` when the ref was not at `old`: nothing changed.
    pub(crate) async fn swap_ref(&self, full_ref: &str, new: Option<&str>, old: Option<&str>, reflog: &str, who: &Identity) -> Result<bool, PrGitError> {
        let full_ref = checked_ref(full_ref)?;
        let input = match (new, old) {
            (Some(n), Some(o)) => format!("update {full_ref}\0{}\0{}\0", full_id("new id", n)?, full_id("old id", o)?),
            (Some(n), None) => format!("create {full_ref}\0{}\0", full_id("new id", n)?),
            (None, Some(o)) => format!("delete {full_ref}\0{}\0", full_id("old id", o)?),
            (None, None) => return Err(PrGitError::Invalid { what: "ref change", value: full_ref.to_owned() }),
        };
        let args = ["update-ref", "-z", "--stdin", "-m", reflog];
        let env = [("GIT_COMMITTER_NAME", who.name.as_str()), ("GIT_COMMITTER_EMAIL", who.email.as_str())];
        let out = self.exec(&args, Some(input.as_bytes()), &env, false).await?;
        if out.code == Some(0) {
            return Ok(true);
        }
        if self.ref_value(full_ref).await?.as_deref() != old {
            return Ok(false);
        }
        Err(Self::failed(&args, &out))
    }

    /// Writes an annotated tag object named `name` on `commit` (`git mktag`, which checks it),
    /// tagged by `tagger` now; its id. No ref points at it yet.
    pub(crate) async fn make_tag(&self, name: &str, commit: &str, message: &str, tagger: &Identity) -> Result<String, PrGitError> {
        let commit = full_id("commit", commit)?;
        let clean = |s: &str| s.chars().filter(|c| !matches!(c, '<' | '>' | '\n' | '\0')).collect::<String>();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let mut text =
            format!("object {commit}\ntype commit\ntag {name}\ntagger {} <{}> {now} +0000\n\n", clean(&tagger.name), clean(&tagger.email)).into_bytes();
        text.extend(normalized_message(message));
        let args = ["mktag"];
        let out = self.ok(&args, Some(&text), &[]).await?;
        output_id(&args, &out)
    }

    /// The branches (full names) whose tips contain `commit`, in name order.
    pub(crate) async fn branches_containing(&self, commit: &str) -> Result<Vec<String>, PrGitError> {
        let contains = format!("--contains={}", hex_id("commit", commit)?);
        let out = self.ok(&["for-each-ref", &contains, "--format=%(refname)", "refs/heads/"], None, &[]).await?;
        Ok(String::from_utf8_lossy(&out).lines().filter(|l| !l.is_empty()).map(str::to_owned).collect())
    }

    /// The files changed between `since` and `until` (`git diff-tree -r -M`), at most `max`,
    /// and whether more follow.
    pub(crate) async fn changes(&self, since: &str, until: &str, max: usize) -> Result<(Vec<Change>, bool), PrGitError> {
        let args =
            ["diff-tree", "-r", "-M", "-z", "--raw", "--no-abbrev", "--no-commit-id", "--end-of-options", hex_id("commit", since)?, hex_id("commit", until)?];
        let out = self.exec(&args, None, &[], true).await?;
        if out.code != Some(0) {
            return Err(Self::failed(&args, &out));
        }
        let (mut changes, complete) = parse_raw_changes(&out.stdout);
        let more = changes.len() > max || out.cut || !complete;
        changes.truncate(max);
        Ok((changes, more))
    }

    /// Lines added and removed in each file changed between `since` and `until` (`git
    /// diff-tree --numstat -M`), keyed by the file's path after the change (before it, for a
    /// deletion); `None` for a binary file. Lets a page size each file's diff before asking
    /// for it. Output past the cap is cut: the files after it are missing.
    pub(crate) async fn line_counts(&self, since: &str, until: &str) -> Result<HashMap<String, Option<(u64, u64)>>, PrGitError> {
        let args = ["diff-tree", "-r", "-M", "-z", "--numstat", "--no-commit-id", "--end-of-options", hex_id("commit", since)?, hex_id("commit", until)?];
        let out = self.exec(&args, None, &[], true).await?;
        if out.code != Some(0) {
            return Err(Self::failed(&args, &out));
        }
        Ok(parse_numstat(&out.stdout))
    }

    /// The argv of the patch between two commits, as `diff` and `raw_diff` show it.
    fn diff_args(since: &str, until: &str, opts: &DiffOptions) -> Result<Vec<String>, PrGitError> {
        let context = format!("-U{}", opts.context_lines.unwrap_or(DEFAULT_CONTEXT_LINES));
        let mut args: Vec<String> =
            ["diff-tree", "-p", "-r", "-M", "--no-commit-id", "--no-color", "--no-ext-diff", "--no-textconv", "--src-prefix=a/", "--dst-prefix=b/", &context]
                .map(str::to_owned)
                .to_vec();
        if opts.ignore_whitespace {
            args.push("-w".into());
        }
        args.extend(["--end-of-options".into(), hex_id("commit", since)?.into(), hex_id("commit", until)?.into()]);
        if let Some(p) = &opts.path {
            args.extend(["--".into(), checked_path(p)?.into()]);
            if let Some(s) = &opts.src_path {
                args.push(checked_path(s)?.into());
            }
        }
        Ok(args)
    }

    /// Bitbucket's diff JSON between `since` and `until` (commits), for all paths or one.
    pub(crate) async fn diff(&self, since: &str, until: &str, opts: &DiffOptions) -> Result<Diff, PrGitError> {
        let args = Self::diff_args(since, until, opts)?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.exec(&args, None, &[], true).await?;
        if out.code != Some(0) {
            return Err(Self::failed(&args, &out));
        }
        let (diffs, truncated) = parse_patch(&out.stdout, opts.max_lines, opts.max_line_len);
        Ok(Diff {
            from_hash: since.to_owned(),
            to_hash: until.to_owned(),
            context_lines: opts.context_lines.unwrap_or(DEFAULT_CONTEXT_LINES),
            whitespace: if opts.ignore_whitespace { "IGNORE_ALL" } else { "SHOW" },
            truncated: truncated || out.cut,
            diffs,
        })
    }

    /// The same diff as git's unified text (for `Accept: text/plain`), whole:
    /// [`PrGitError::TooLarge`] past the output cap.
    pub(crate) async fn raw_diff(&self, since: &str, until: &str, opts: &DiffOptions) -> Result<String, PrGitError> {
        let args = Self::diff_args(since, until, opts)?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Ok(String::from_utf8_lossy(&self.ok(&args, None, &[]).await?).into_owned())
    }
}

/// Parses `git diff-tree -r -z --raw` records into changes; `false` when the output ended
/// inside a record (it was cut).
fn parse_raw_changes(out: &[u8]) -> (Vec<Change>, bool) {
    let mut fields = out.split(|b| *b == 0).map(|f| String::from_utf8_lossy(f).into_owned()).peekable();
    let mut changes = Vec::new();
    while let Some(meta) = fields.next() {
        if meta.is_empty() && fields.peek().is_none() {
            return (changes, true);
        }
        let Some(meta) = meta.strip_prefix(':') else { return (changes, false) };
        let f: Vec<&str> = meta.split(' ').collect();
        let [old_mode, new_mode, old_id, new_id, status] = f[..] else { return (changes, false) };
        let letter = status.chars().next().unwrap_or('M');
        let two_paths = matches!(letter, 'R' | 'C');
        let Some(first) = fields.next() else { return (changes, false) };
        let second = if two_paths {
            match fields.next() {
                Some(s) => Some(s),
                None => return (changes, false),
            }
        } else {
            None
        };
        let (kind, git_kind) = match letter {
            'A' => ("ADD", "ADD"),
            'D' => ("DELETE", "DELETE"),
            'R' => ("MOVE", "RENAME"),
            'C' => ("COPY", "COPY"),
            _ => ("MODIFY", "MODIFY"),
        };
        let (path, src_path) = match second {
            Some(to) => (to, Some(first)),
            None => (first, None),
        };
        let mode = if letter == 'D' { old_mode } else { new_mode };
        changes.push(Change {
            content_id: new_id.to_owned(),
            from_content_id: old_id.to_owned(),
            path: PathJson::new(&path),
            src_path: src_path.as_deref().map(PathJson::new),
            executable: new_mode == "100755",
            percent_unchanged: if two_paths { status[1..].parse().unwrap_or(-1) } else { -1 },
            kind,
            node_type: if mode == "160000" { "SUBMODULE" } else { "FILE" },
            src_executable: (letter != 'A').then_some(old_mode == "100755"),
            properties: ChangeProperties { git_change_type: git_kind },
        });
    }
    (changes, true)
}

/// Parses `git diff-tree --numstat -z`: `added\tremoved\tpath\0`, or for a rename
/// `added\tremoved\t\0from\0to\0`; `-\t-` for a binary file. A record cut short is left out.
fn parse_numstat(out: &[u8]) -> HashMap<String, Option<(u64, u64)>> {
    let mut counts = HashMap::new();
    let mut fields = out.split(|b| *b == 0).map(|f| String::from_utf8_lossy(f).into_owned());
    while let Some(rec) = fields.next() {
        let mut parts = rec.splitn(3, '\t');
        let (Some(added), Some(removed), Some(path)) = (parts.next(), parts.next(), parts.next()) else { break };
        let path = if path.is_empty() {
            // A rename: the old path, then the new one.
            let (Some(_from), Some(to)) = (fields.next(), fields.next()) else { break };
            to
        } else {
            path.to_owned()
        };
        let n = match (added.parse::<u64>(), removed.parse::<u64>()) {
            (Ok(a), Ok(r)) => Some((a, r)),
            _ => None,
        };
        counts.insert(path, n);
    }
    counts
}

/// Reads a C-quoted string as git writes a path with unusual characters (`"tab\there"`,
/// octal escapes for bytes): the bytes, and what follows the closing quote. `s` starts with
/// the opening quote.
fn unquote(s: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut out = Vec::new();
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'"' => return Some((out, &s[i + 1..])),
            b'\\' => {
                let c = *s.get(i + 1)?;
                i += 2;
                match c {
                    b'a' => out.push(7),
                    b'b' => out.push(8),
                    b't' => out.push(b'\t'),
                    b'n' => out.push(b'\n'),
                    b'v' => out.push(11),
                    b'f' => out.push(12),
                    b'r' => out.push(b'\r'),
                    b'0'..=b'7' => {
                        let digits = s.get(i - 1..i + 2)?;
                        if !digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                            return None;
                        }
                        out.push(digits.iter().fold(0u8, |v, d| v.wrapping_mul(8).wrapping_add(d - b'0')));
                        i += 2;
                    }
                    other => out.push(other),
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    None
}

/// A path as a header line gives it (quoted or not), with `prefix` (`a/`, `b/`) removed.
fn header_path(s: &[u8], prefix: &str) -> String {
    let raw = if s.starts_with(b"\"") {
        unquote(s).map(|(p, _)| p).unwrap_or_else(|| s.to_vec())
    } else {
        // git ends a `---`/`+++` name containing a space with a tab (for patch(1)).
        s.strip_suffix(b"\t").unwrap_or(s).to_vec()
    };
    let raw = raw.strip_prefix(prefix.as_bytes()).map(<[u8]>::to_vec).unwrap_or(raw);
    String::from_utf8_lossy(&raw).into_owned()
}

/// The two paths of `diff --git a/X b/Y` (after `diff --git `). Unquoted names with spaces are
/// ambiguous; the ones whose halves agree are read exactly, and the other headers (`---`,
/// `rename from`) correct the rest.
fn git_line_paths(rest: &[u8]) -> (Option<String>, Option<String>) {
    let lossy = |b: &[u8], prefix: &str| String::from_utf8_lossy(b.strip_prefix(prefix.as_bytes()).unwrap_or(b)).into_owned();
    if rest.starts_with(b"\"") {
        let Some((a, tail)) = unquote(rest) else { return (None, None) };
        let tail = tail.strip_prefix(b" ").unwrap_or(tail);
        return (Some(lossy(&a, "a/")), Some(header_path(tail, "b/")));
    }
    if rest.ends_with(b"\"")
        && let Some(i) = rest.windows(2).position(|w| w == b" \"")
    {
        return (Some(lossy(&rest[..i], "a/")), Some(header_path(&rest[i + 1..], "b/")));
    }
    if rest.len() % 2 == 1 {
        let mid = rest.len() / 2;
        let (a, b) = (&rest[..mid], &rest[mid + 1..]);
        if rest[mid] == b' ' && a.starts_with(b"a/") && b.starts_with(b"b/") && a[2..] == b[2..] {
            return (Some(lossy(a, "a/")), Some(lossy(b, "b/")));
        }
    }
    match rest.windows(3).position(|w| w == b" b/") {
        Some(i) => (Some(lossy(&rest[..i], "a/")), Some(lossy(&rest[i + 1..], "b/"))),
        None => (None, None),
    }
}

/// `@@ -a[,b] +c[,d] @@…` → (a, b, c, d); an omitted span is 1.
fn parse_hunk_header(line: &[u8]) -> Option<(u64, u64, u64, u64)> {
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.strip_prefix("@@ ")?.split(' ');
    let range = |s: Option<&str>, sign: char| -> Option<(u64, u64)> {
        let s = s?.strip_prefix(sign)?;
        match s.split_once(',') {
            Some((l, n)) => Some((l.parse().ok()?, n.parse().ok()?)),
            None => Some((s.parse().ok()?, 1)),
        }
    };
    let (a, b) = range(parts.next(), '-')?;
    let (c, d) = range(parts.next(), '+')?;
    Some((a, b, c, d))
}

/// A file being read by [`parse_patch`].
#[derive(Default)]
struct FileState {
    git_a: Option<String>,
    git_b: Option<String>,
    from: Option<String>,
    to: Option<String>,
    added: bool,
    deleted: bool,
    binary: bool,
    truncated: bool,
    hunks: Vec<Hunk>,
}

impl FileState {
    fn finish(self) -> FileDiff {
        let source = if self.added { None } else { self.from.or(self.git_a) };
        let destination = if self.deleted { None } else { self.to.or(self.git_b) };
        FileDiff {
            source: source.as_deref().map(PathJson::new),
            destination: destination.as_deref().map(PathJson::new),
            binary: self.binary,
            truncated: self.truncated,
            hunks: self.hunks,
        }
    }
}

/// Turns a unified diff (`git diff-tree -p`, `a/` and `b/` prefixes) into Bitbucket's file
/// diffs. Lines are numbered from each hunk's header: context lines carry both counters and
/// advance both, removed lines the source counter (advanced) and the current destination one,
/// added lines the reverse. Past `max_lines` content lines (`0`: no cap) the diff stops, and
/// the file, hunk and segment it stopped in are marked truncated, as is the answer (`true`);
/// lines longer than `max_line_len` characters (`0`: no cap) are cut and marked.
/// `\ No newline at end of file` is git's remark, not content, and is dropped.
pub(crate) fn parse_patch(patch: &[u8], max_lines: usize, max_line_len: usize) -> (Vec<FileDiff>, bool) {
    let mut files = Vec::new();
    let mut file: Option<FileState> = None;
    // The hunk being read: lines still due on each side, and the next line numbers.
    let (mut due_src, mut due_dst, mut src, mut dst) = (0u64, 0u64, 0u64, 0u64);
    let mut shown = 0usize;
    let mut lines = patch.split(|b| *b == b'\n').peekable();
    while let Some(line) = lines.next() {
        if line.is_empty() && lines.peek().is_none() {
            break;
        }
        if (due_src > 0 || due_dst > 0) && !line.starts_with(b"\\") {
            let kind = match line.first() {
                Some(b' ') | None => Some(SegmentType::Context),
                Some(b'-') => Some(SegmentType::Removed),
                Some(b'+') => Some(SegmentType::Added),
                _ => None,
            };
            if let (Some(kind), Some(f)) = (kind, file.as_mut()) {
                let hunk = f.hunks.last_mut().expect("a hunk is open");
                if max_lines != 0 && shown >= max_lines {
                    f.truncated = true;
                    hunk.truncated = true;
                    if let Some(seg) = hunk.segments.last_mut() {
                        seg.truncated = true;
                    }
                    files.push(file.take().expect("a file is open").finish());
                    return (files, true);
                }
                shown += 1;
                let (source, destination) = (src, dst);
                match kind {
                    SegmentType::Context => {
                        src += 1;
                        dst += 1;
                        due_src = due_src.saturating_sub(1);
                        due_dst = due_dst.saturating_sub(1);
                    }
                    SegmentType::Removed => {
                        src += 1;
                        due_src = due_src.saturating_sub(1);
                    }
                    SegmentType::Added => {
                        dst += 1;
                        due_dst = due_dst.saturating_sub(1);
                    }
                }
                let mut text = String::from_utf8_lossy(line.get(1..).unwrap_or_default()).into_owned();
                let mut cut = false;
                if max_line_len != 0
                    && let Some((at, _)) = text.char_indices().nth(max_line_len)
                {
                    text.truncate(at);
                    cut = true;
                }
                let l = Line { source, destination, line: text, truncated: cut };
                match hunk.segments.last_mut() {
                    Some(seg) if seg.kind == kind => seg.lines.push(l),
                    _ => hunk.segments.push(Segment { kind, truncated: false, lines: vec![l] }),
                }
                continue;
            }
            // Not a content line: the hunk ended early (the output was cut); read on as a header.
            due_src = 0;
            due_dst = 0;
        }
        if line.starts_with(b"\\") {
            continue;
        }
        if let Some(rest) = line.strip_prefix(b"diff --git ") {
            files.extend(file.take().map(FileState::finish));
            let (git_a, git_b) = git_line_paths(rest);
            file = Some(FileState { git_a, git_b, ..FileState::default() });
            continue;
        }
        let Some(f) = file.as_mut() else { continue };
        if line.starts_with(b"@@ ") {
            let Some((a, b, c, d)) = parse_hunk_header(line) else { continue };
            f.hunks.push(Hunk { source_line: a, source_span: b, destination_line: c, destination_span: d, truncated: false, segments: Vec::new() });
            (due_src, due_dst, src, dst) = (b, d, a, c);
        } else if let Some(p) = line.strip_prefix(b"--- ") {
            if p == b"/dev/null" {
                f.added = true;
            } else {
                f.from = Some(header_path(p, "a/"));
            }
        } else if let Some(p) = line.strip_prefix(b"+++ ") {
            if p == b"/dev/null" {
                f.deleted = true;
            } else {
                f.to = Some(header_path(p, "b/"));
            }
        } else if let Some(p) = line.strip_prefix(b"rename from ").or_else(|| line.strip_prefix(b"copy from ")) {
            f.from = Some(header_path(p, ""));
        } else if let Some(p) = line.strip_prefix(b"rename to ").or_else(|| line.strip_prefix(b"copy to ")) {
            f.to = Some(header_path(p, ""));
        } else if line.starts_with(b"new file mode ") {
            f.added = true;
        } else if line.starts_with(b"deleted file mode ") {
            f.deleted = true;
        } else if line.starts_with(b"Binary files ") && line.ends_with(b" differ") {
            f.binary = true;
        }
    }
    files.extend(file.take().map(FileState::finish));
    (files, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn strategies_have_bitbucket_ids_names_and_flags() {
        for s in Strategy::ALL {
            assert_eq!(Strategy::parse(s.id()), Some(s));
        }
        let ids: Vec<&str> = Strategy::ALL.iter().map(Strategy::id).collect();
        assert_eq!(ids, ["no-ff", "ff", "ff-only", "squash", "squash-ff-only", "rebase-no-ff", "rebase-ff-only"]);
        assert_eq!((Strategy::RebaseNoFf.name(), Strategy::RebaseNoFf.flag()), ("Rebase, merge", "rebase + merge --no-ff"));
        assert_eq!((Strategy::SquashFfOnly.name(), Strategy::SquashFfOnly.flag()), ("Squash, fast-forward only", "--squash --ff-only"));
        assert_eq!(Strategy::parse("octopus"), None);
    }

    #[test]
    fn only_plain_full_ref_names_are_accepted() {
        for (r, ok) in [
            ("refs/heads/main", true),
            ("refs/heads/feature/x-1", true),
            ("refs/pull-requests/1/from", true),
            ("main", false),
            ("refs/heads/", false),
            ("refs/heads/a..b", false),
            ("refs/heads/.hidden", false),
            ("refs/heads/x.lock", false),
            ("refs/heads/a b", false),
            ("refs/heads/a~1", false),
            ("refs/heads/a^{tree}", false),
            ("refs/heads/a:b", false),
            ("refs/heads/a@{1}", false),
            ("refs/heads//a", false),
            ("refs/heads/a\n", false),
            ("--all", false),
        ] {
            assert_eq!(valid_ref(r), ok, "{r:?}");
        }
    }

    #[test]
    fn paths_become_bitbucket_path_objects() {
        assert_eq!(
            path_json("src/main.rs"),
            json!({"components": ["src", "main.rs"], "parent": "src", "name": "main.rs", "extension": "rs", "toString": "src/main.rs"})
        );
        assert_eq!(path_json("Makefile"), json!({"components": ["Makefile"], "parent": "", "name": "Makefile", "toString": "Makefile"}));
        assert_eq!(path_json("a/b.tar.gz")["extension"], "gz");
        assert_eq!(path_json("a/trailing.").get("extension"), None);
    }

    #[test]
    fn merge_tree_output_gives_the_tree_and_each_conflicting_path_once() {
        let tree = "e1a855e2475520f78442375daa21349f1b49d1d5";
        assert_eq!(parse_merge_tree(format!("{tree}\0").as_bytes()), Some((tree.to_owned(), vec![])));
        let out = format!("{tree}\0a\0dir/tab\té\0a\0");
        assert_eq!(parse_merge_tree(out.as_bytes()), Some((tree.to_owned(), vec!["a".to_owned(), "dir/tab\té".to_owned()])));
        assert_eq!(parse_merge_tree(b"fatal: oops\n"), None);
    }

    #[test]
    fn quoted_paths_are_unquoted_to_utf8() {
        assert_eq!(unquote(br#""a/tab\there/\303\251.txt" rest"#), Some((b"a/tab\there/\xc3\xa9.txt".to_vec(), &b" rest"[..])));
        assert_eq!(unquote(br#""q\"uote\\d""#), Some((br#"q"uote\d"#.to_vec(), &b""[..])));
        assert_eq!(unquote(br#""unterminated"#), None);
        assert_eq!(git_line_paths(b"a/x y b/x y"), (Some("x y".into()), Some("x y".into())));
        assert_eq!(git_line_paths(br#""a/\303\251" "b/\303\251""#), (Some("é".into()), Some("é".into())));
        assert_eq!(git_line_paths(br#"a/plain "b/new\tname""#), (Some("plain".into()), Some("new\tname".into())));
    }

    /// A segment as JSON: its type and `(source, destination, text)` lines.
    fn seg(kind: &str, lines: &[(u64, u64, &str)]) -> Value {
        let lines: Vec<Value> = lines.iter().map(|(s, d, l)| json!({"source": s, "destination": d, "line": l, "truncated": false})).collect();
        json!({"type": kind, "truncated": false, "lines": lines})
    }

    fn hunk(src: (u64, u64), dst: (u64, u64), segments: Vec<Value>) -> Value {
        json!({"sourceLine": src.0, "sourceSpan": src.1, "destinationLine": dst.0, "destinationSpan": dst.1, "truncated": false, "segments": segments})
    }

    fn file(source: Option<&str>, destination: Option<&str>, hunks: Vec<Value>) -> Value {
        json!({"source": source.map(path_json), "destination": destination.map(path_json), "truncated": false, "hunks": hunks})
    }

    #[test]
    fn unified_diffs_become_bitbucket_file_diffs() {
        let cases: Vec<(&str, &str, Vec<Value>)> = vec![
            (
                "a modified line, as Bitbucket numbers it",
                "diff --git a/a.txt b/a.txt\nindex 1111111..2222222 100644\n--- a/a.txt\n+++ b/a.txt\n@@ -2 +2 @@\n-old\n+new\n",
                vec![file(Some("a.txt"), Some("a.txt"), vec![hunk((2, 1), (2, 1), vec![seg("REMOVED", &[(2, 2, "old")]), seg("ADDED", &[(3, 2, "new")])])])],
            ),
            (
                "an added file",
                "diff --git a/src/n.rs b/src/n.rs\nnew file mode 100644\nindex 0000000..abcdef0\n--- /dev/null\n+++ b/src/n.rs\n@@ -0,0 +1,2 @@\n+one\n+two\n",
                vec![file(None, Some("src/n.rs"), vec![hunk((0, 0), (1, 2), vec![seg("ADDED", &[(0, 1, "one"), (0, 2, "two")])])])],
            ),
            (
                "a deleted file",
                "diff --git a/d/x b/d/x\ndeleted file mode 100644\nindex abcdef0..0000000\n--- a/d/x\n+++ /dev/null\n@@ -1 +0,0 @@\n-gone\n",
                vec![file(Some("d/x"), None, vec![hunk((1, 1), (0, 0), vec![seg("REMOVED", &[(1, 0, "gone")])])])],
            ),
            (
                "a rename with an edit, names with spaces",
                "diff --git a/old name.txt b/new name.txt\nsimilarity index 80%\nrename from old name.txt\nrename to new name.txt\nindex 1..2 100644\n--- a/old name.txt\t\n+++ b/new name.txt\t\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n",
                vec![file(
                    Some("old name.txt"),
                    Some("new name.txt"),
                    vec![hunk(
                        (1, 3),
                        (1, 3),
                        vec![seg("CONTEXT", &[(1, 1, "a")]), seg("REMOVED", &[(2, 2, "b")]), seg("ADDED", &[(3, 2, "B")]), seg("CONTEXT", &[(3, 3, "c")])],
                    )],
                )],
            ),
            ("a pure rename", "diff --git a/x b/y\nsimilarity index 100%\nrename from x\nrename to y\n", vec![file(Some("x"), Some("y"), vec![])]),
            ("a binary file", "diff --git a/img.png b/img.png\nindex 1..2 100644\nBinary files a/img.png and b/img.png differ\n", {
                let mut f = file(Some("img.png"), Some("img.png"), vec![]);
                f["binary"] = json!(true);
                vec![f]
            }),
            ("a mode change", "diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n", vec![file(Some("run.sh"), Some("run.sh"), vec![])]),
            (
                "no newline at the end, on both sides",
                "diff --git a/t b/t\nindex 1..2 100644\n--- a/t\n+++ b/t\n@@ -1 +1,2 @@\n-x\n\\ No newline at end of file\n+x\n+y\n\\ No newline at end of file\n",
                vec![file(Some("t"), Some("t"), vec![hunk((1, 1), (1, 2), vec![seg("REMOVED", &[(1, 1, "x")]), seg("ADDED", &[(2, 1, "x"), (2, 2, "y")])])])],
            ),
            (
                "two hunks, and removed lines that look like headers",
                "diff --git a/m b/m\nindex 1..2 100644\n--- a/m\n+++ b/m\n@@ -1,2 +1,2 @@ fn heading()\n a\n--- b\n++++ b\n@@ -10,2 +10,3 @@\n j\n+k\n+@@ l\n",
                vec![file(
                    Some("m"),
                    Some("m"),
                    vec![
                        hunk((1, 2), (1, 2), vec![seg("CONTEXT", &[(1, 1, "a")]), seg("REMOVED", &[(2, 2, "-- b")]), seg("ADDED", &[(3, 2, "+++ b")])]),
                        hunk((10, 2), (10, 3), vec![seg("CONTEXT", &[(10, 10, "j")]), seg("ADDED", &[(11, 11, "k"), (11, 12, "@@ l")])]),
                    ],
                )],
            ),
            (
                "quoted non-ASCII names with a tab",
                "diff --git \"a/tab\\there/\\303\\251.txt\" \"b/tab\\there/\\303\\251.txt\"\nnew file mode 100644\nindex 0000000..e69de29\ndiff --git a/\u{e9}t\u{e9}.md b/\u{e9}t\u{e9}.md\nindex 1..2 100644\n--- \"a/\\303\\251t\\303\\251.md\"\n+++ \"b/\\303\\251t\\303\\251.md\"\n@@ -1 +1 @@\n-\u{e9}\n+\u{e8}\n",
                vec![
                    file(None, Some("tab\there/é.txt"), vec![]),
                    file(Some("été.md"), Some("été.md"), vec![hunk((1, 1), (1, 1), vec![seg("REMOVED", &[(1, 1, "é")]), seg("ADDED", &[(2, 1, "è")])])]),
                ],
            ),
        ];
        for (name, patch, want) in cases {
            let (got, truncated) = parse_patch(patch.as_bytes(), 0, 0);
            assert!(!truncated, "{name}");
            assert_eq!(serde_json::to_value(&got).unwrap(), Value::Array(want), "{name}");
        }
    }

    #[test]
    fn a_diff_past_its_line_cap_stops_and_says_so_and_long_lines_are_cut() {
        let patch = "diff --git a/a b/a\n--- a/a\n+++ b/a\n@@ -1,2 +1,2 @@\n ctx\n-abcdef\n+ghi\ndiff --git a/b b/b\n--- a/b\n+++ b/b\n@@ -1 +1 @@\n-x\n+y\n";
        let (got, truncated) = parse_patch(patch.as_bytes(), 2, 0);
        assert!(truncated);
        let got = serde_json::to_value(&got).unwrap();
        assert_eq!(got.as_array().unwrap().len(), 1, "the second file is not reached: {got}");
        assert_eq!((&got[0]["truncated"], &got[0]["hunks"][0]["truncated"]), (&json!(true), &json!(true)));
        let segments = got[0]["hunks"][0]["segments"].as_array().unwrap();
        assert_eq!(segments.len(), 2, "{got}");
        assert_eq!((&segments[1]["type"], &segments[1]["truncated"], segments[1]["lines"].as_array().unwrap().len()), (&json!("REMOVED"), &json!(true), 1));

        let (got, truncated) = parse_patch(patch.as_bytes(), 0, 3);
        assert!(!truncated);
        let line = &got[0].hunks[0].segments[1].lines[0];
        assert_eq!((line.line.as_str(), line.truncated), ("abc", true));
        assert_eq!((got[0].hunks[0].segments[0].lines[0].truncated, got[0].truncated), (false, false));
        // Cut at characters, not bytes.
        let (got, _) = parse_patch("diff --git a/u b/u\n--- a/u\n+++ b/u\n@@ -0,0 +1 @@\n+ééé\n".as_bytes(), 0, 2);
        assert_eq!(got[0].hunks[0].segments[0].lines[0].line, "éé");
    }

    #[test]
    fn numstat_records_count_lines_per_file_and_binary_files_have_none() {
        let out = "2\t1\ta.txt\0-\t-\tlogo.png\0".to_owned() + "1\t1\t\0old/x.txt\0new/x.txt\0" + "3\t0\tcut";
        let got = parse_numstat(out.as_bytes());
        assert_eq!(got.get("a.txt"), Some(&Some((2, 1))));
        assert_eq!(got.get("logo.png"), Some(&None));
        assert_eq!(got.get("new/x.txt"), Some(&Some((1, 1))));
        assert_eq!(got.get("old/x.txt"), None);
        assert_eq!(got.get("cut"), Some(&Some((3, 0))), "a last record without its NUL is whole");
    }

    #[test]
    fn raw_records_become_bitbucket_changes() {
        let z = "0".repeat(40);
        let (a, b) = ("a".repeat(40), "b".repeat(40));
        let out = format!(
            ":000000 100644 {z} {b} A\0new.txt\0:100644 000000 {a} {z} D\0gone.txt\0:100644 100755 {a} {b} M\0run.sh\0:100644 100644 {a} {b} R086\0old/x.txt\0new/x.txt\0:160000 160000 {a} {b} M\0sub\0"
        );
        let (changes, complete) = parse_raw_changes(out.as_bytes());
        assert!(complete);
        let got = serde_json::to_value(&changes).unwrap();
        assert_eq!(
            got[0],
            json!({"contentId": b, "fromContentId": z, "path": path_json("new.txt"), "executable": false, "percentUnchanged": -1, "type": "ADD", "nodeType": "FILE", "properties": {"gitChangeType": "ADD"}})
        );
        assert_eq!(
            got[1],
            json!({"contentId": z, "fromContentId": a, "path": path_json("gone.txt"), "executable": false, "percentUnchanged": -1, "type": "DELETE", "nodeType": "FILE", "srcExecutable": false, "properties": {"gitChangeType": "DELETE"}})
        );
        assert_eq!((&got[2]["type"], &got[2]["executable"], &got[2]["srcExecutable"]), (&json!("MODIFY"), &json!(true), &json!(false)));
        assert_eq!(
            (&got[3]["type"], &got[3]["path"], &got[3]["srcPath"], &got[3]["percentUnchanged"], &got[3]["properties"]["gitChangeType"]),
            (&json!("MOVE"), &path_json("new/x.txt"), &path_json("old/x.txt"), &json!(86), &json!("RENAME"))
        );
        assert_eq!(got[4]["nodeType"], "SUBMODULE");
        // Output cut inside a record keeps the whole records before it.
        let (changes, complete) = parse_raw_changes(&out.as_bytes()[..out.find("R086").unwrap() + 6]);
        assert_eq!((changes.len(), complete), (3, false));
    }

    #[test]
    fn errors_name_the_subcommand() {
        assert_eq!(command_name(&["-c", "i18n.commitEncoding=latin1", "commit-tree", "x"]), "commit-tree");
        assert_eq!(command_name(&["merge-tree", "--write-tree"]), "merge-tree");
    }

    #[test]
    fn raw_commits_and_identities_are_read() {
        let raw = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nparent 1111111111111111111111111111111111111111\nauthor Bob Smith <bob@example.com> 1700000000 +0100\ncommitter C <c@x> 1 +0000\ngpgsig -----BEGIN\n continued\n\nsubject\n\nbody\n";
        let c = parse_raw_commit(raw).unwrap();
        assert_eq!(c.parents, ["1111111111111111111111111111111111111111"]);
        assert_eq!(c.author, ("Bob Smith".to_owned(), "bob@example.com".to_owned(), "@1700000000 +0100".to_owned()));
        assert_eq!(c.message, b"subject\n\nbody\n");
        assert_eq!(normalized_message("Merge it\n\n  "), b"Merge it\n");
    }

    // ---- against real git ----

    const ANN: (&str, &str) = ("Ann Author", "ann@example.com");

    /// A bare repository to build histories in, and its `GitRepo`.
    struct Fixture {
        tmp: tempfile::TempDir,
        env: Vec<(OsString, OsString)>,
        dir: PathBuf,
        repo: GitRepo,
    }

    impl Fixture {
        fn new() -> Fixture {
            let tmp = tempfile::tempdir().unwrap();
            let env = trove_store::git_env(tmp.path());
            let dir = tmp.path().join("repo.git");
            let out = std::process::Command::new("git")
                .env_clear()
                .envs(env.iter().cloned())
                .args(["init", "-q", "--bare", "-b", "main"])
                .arg(&dir)
                .output()
                .unwrap();
            assert!(out.status.success());
            let repo = GitRepo::for_test("git".into(), env.clone(), dir.clone());
            Fixture { tmp, env, dir, repo }
        }

        fn git_with(&self, args: &[&str], stdin: &[u8], extra: &[(&str, &str)]) -> String {
            use std::io::Write as _;
            let mut c = std::process::Command::new("git");
            c.env_clear().envs(self.env.iter().cloned()).env("GIT_DIR", &self.dir).envs(extra.iter().copied()).args(args);
            c.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
            let mut child = c.spawn().unwrap();
            child.stdin.take().unwrap().write_all(stdin).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim_end_matches('\n').to_owned()
        }

        fn git(&self, args: &[&str]) -> String {
            self.git_with(args, b"", &[])
        }

        /// A commit whose tree is exactly `files` (`path`, content, mode), by `author` at
        /// `time`.
        fn commit_as(&self, parents: &[&str], files: &[(&str, &str, &str)], message: &str, author: (&str, &str), time: u64) -> String {
            let index = self.tmp.path().join("index");
            let _ = std::fs::remove_file(&index);
            let index = index.to_str().unwrap();
            for (path, content, mode) in files {
                let blob = self.git_with(&["hash-object", "-w", "--stdin"], content.as_bytes(), &[]);
                self.git_with(&["update-index", "--add", "--cacheinfo", &format!("{mode},{blob},{path}")], b"", &[("GIT_INDEX_FILE", index)]);
            }
            let tree = self.git_with(&["write-tree"], b"", &[("GIT_INDEX_FILE", index)]);
            let mut args = vec!["commit-tree", &tree];
            for p in parents {
                args.extend(["-p", p]);
            }
            let date = format!("@{time} +0200");
            let who = [
                ("GIT_AUTHOR_NAME", author.0),
                ("GIT_AUTHOR_EMAIL", author.1),
                ("GIT_AUTHOR_DATE", &date),
                ("GIT_COMMITTER_NAME", author.0),
                ("GIT_COMMITTER_EMAIL", author.1),
                ("GIT_COMMITTER_DATE", &date),
            ];
            self.git_with(&args, format!("{message}\n").as_bytes(), &who)
        }

        fn commit(&self, parents: &[&str], files: &[(&str, &str)], message: &str) -> String {
            let files: Vec<(&str, &str, &str)> = files.iter().map(|(p, c)| (*p, *c, "100644")).collect();
            self.commit_as(parents, &files, message, ("Bob Builder", "bob@example.com"), 1_700_000_000)
        }

        fn set(&self, full_ref: &str, id: &str) {
            self.git(&["update-ref", full_ref, id]);
        }

        fn rev(&self, spec: &str) -> Option<String> {
            let out = std::process::Command::new("git")
                .env_clear()
                .envs(self.env.iter().cloned())
                .env("GIT_DIR", &self.dir)
                .args(["rev-parse", "--verify", "-q", spec])
                .output()
                .unwrap();
            out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        }

        /// Parents, author, committer and message of `id`.
        fn show(&self, id: &str) -> (Vec<String>, String, String, String) {
            let out = self.git(&["log", "-1", "--format=%P%x1f%an <%ae> %ad%x1f%cn <%ce>%x1f%B", "--date=raw", id]);
            let f: Vec<&str> = out.splitn(4, '\u{1f}').collect();
            (f[0].split_whitespace().map(str::to_owned).collect(), f[1].into(), f[2].into(), f[3].trim_end().into())
        }

        fn file(&self, id: &str, path: &str) -> String {
            self.git(&["show", &format!("{id}:{path}")])
        }
    }

    fn merger() -> Identity {
        Identity { name: ANN.0.into(), email: ANN.1.into() }
    }

    /// `main` at `to` and a source `from` that diverged: main changed b.txt, the source
    /// changed a.txt's first line and then added c.txt.
    struct Diverged {
        base: String,
        to: String,
        f1: String,
        from: String,
    }

    fn diverged(f: &Fixture) -> Diverged {
        let base = f.commit(&[], &[("a.txt", "1\n2\n3\n"), ("b.txt", "b\n")], "base");
        let to = f.commit(&[&base], &[("a.txt", "1\n2\n3\n"), ("b.txt", "b2\n")], "main moves");
        let f1 = f.commit(&[&base], &[("a.txt", "one\n2\n3\n"), ("b.txt", "b\n")], "feature one");
        let from = f.commit(&[&f1], &[("a.txt", "one\n2\n3\n"), ("b.txt", "b\n"), ("c.txt", "c\n")], "feature two\n\nwith a body");
        f.set("refs/heads/main", &to);
        Diverged { base, to, f1, from }
    }

    async fn merge(f: &Fixture, from: &str, to: &str, strategy: Strategy) -> Result<Merged, MergeError> {
        let who = merger();
        f.repo.merge(&MergeRequest { from, to, to_ref: "refs/heads/main", strategy, message: "Merge pull request #1\n", author: &who }).await
    }

    fn assert_merged_tree(f: &Fixture, id: &str) {
        assert_eq!((f.file(id, "a.txt"), f.file(id, "b.txt"), f.file(id, "c.txt")), ("one\n2\n3".into(), "b2".into(), "c".into()));
    }

    const ANN_LINE: &str = "Ann Author <ann@example.com>";

    #[tokio::test]
    async fn merge_commit_strategies_make_a_merge_commit_by_the_merging_user() {
        for strategy in [Strategy::NoFf, Strategy::Ff] {
            let f = Fixture::new();
            let d = diverged(&f);
            let m = merge(&f, &d.from, &d.to, strategy).await.unwrap();
            assert_eq!(m.merge_commit.as_deref(), Some(m.commit.as_str()), "{strategy:?}");
            assert_eq!(f.rev("refs/heads/main").as_deref(), Some(m.commit.as_str()));
            let (parents, author, committer, message) = f.show(&m.commit);
            assert_eq!(parents, [d.to.clone(), d.from.clone()], "{strategy:?}");
            assert!(author.starts_with(ANN_LINE), "{author}");
            assert_eq!((committer.as_str(), message.as_str()), (ANN_LINE, "Merge pull request #1"));
            assert_merged_tree(&f, &m.commit);
        }
    }

    #[tokio::test]
    async fn no_ff_makes_a_merge_commit_even_when_it_could_fast_forward_and_ff_does_not() {
        let f = Fixture::new();
        let base = f.commit(&[], &[("a.txt", "a\n")], "base");
        let from = f.commit(&[&base], &[("a.txt", "a2\n")], "ahead");
        for (strategy, merge_commit) in
            [(Strategy::Ff, false), (Strategy::FfOnly, false), (Strategy::NoFf, true), (Strategy::RebaseFfOnly, false), (Strategy::RebaseNoFf, true)]
        {
            f.set("refs/heads/main", &base);
            let m = merge(&f, &from, &base, strategy).await.unwrap();
            assert_eq!(m.merge_commit.is_some(), merge_commit, "{strategy:?}");
            if merge_commit {
                assert_eq!(f.show(&m.commit).0, [base.clone(), from.clone()], "{strategy:?}");
            } else {
                assert_eq!(m.commit, from, "{strategy:?}: the source's own commit, not a rewrite");
            }
            assert_eq!(f.rev("refs/heads/main"), Some(m.commit));
        }
    }

    #[tokio::test]
    async fn fast_forward_only_strategies_refuse_diverged_branches_and_move_nothing() {
        for strategy in [Strategy::FfOnly, Strategy::SquashFfOnly] {
            let f = Fixture::new();
            let d = diverged(&f);
            let err = merge(&f, &d.from, &d.to, strategy).await.unwrap_err();
            assert!(matches!(err, MergeError::NotFastForward), "{strategy:?}: {err}");
            assert_eq!(f.rev("refs/heads/main"), Some(d.to.clone()));
        }
    }

    #[tokio::test]
    async fn squash_makes_one_commit_on_the_target_with_the_merged_tree() {
        let f = Fixture::new();
        let d = diverged(&f);
        let m = merge(&f, &d.from, &d.to, Strategy::Squash).await.unwrap();
        assert_eq!(m.merge_commit.as_deref(), Some(m.commit.as_str()));
        let (parents, author, committer, message) = f.show(&m.commit);
        assert_eq!(parents, [d.to.as_str()]);
        assert!(author.starts_with(ANN_LINE) && committer == ANN_LINE, "{author} / {committer}");
        assert_eq!(message, "Merge pull request #1");
        assert_merged_tree(&f, &m.commit);

        // squash-ff-only squashes a source that is ahead.
        let f = Fixture::new();
        let base = f.commit(&[], &[("a.txt", "a\n")], "base");
        let one = f.commit(&[&base], &[("a.txt", "a2\n")], "one");
        let two = f.commit(&[&one], &[("a.txt", "a3\n"), ("n.txt", "n\n")], "two");
        f.set("refs/heads/main", &base);
        let m = merge(&f, &two, &base, Strategy::SquashFfOnly).await.unwrap();
        assert_eq!(f.show(&m.commit).0, [base.as_str()]);
        assert_eq!(f.rev(&format!("{}^{{tree}}", m.commit)), f.rev(&format!("{two}^{{tree}}")));
        assert_eq!(f.rev("refs/heads/main"), Some(m.commit));
    }

    #[tokio::test]
    async fn rebase_strategies_replay_the_source_keeping_authors_and_messages() {
        for strategy in [Strategy::RebaseNoFf, Strategy::RebaseFfOnly] {
            let f = Fixture::new();
            let d = diverged(&f);
            let m = merge(&f, &d.from, &d.to, strategy).await.unwrap();
            assert_eq!(f.rev("refs/heads/main").as_deref(), Some(m.commit.as_str()));
            assert_merged_tree(&f, &m.commit);
            let rebased_tip = if strategy == Strategy::RebaseNoFf {
                let (parents, author, committer, message) = f.show(&m.commit);
                assert_eq!(m.merge_commit.as_deref(), Some(m.commit.as_str()));
                assert_eq!(parents[0], d.to);
                assert!(author.starts_with(ANN_LINE) && committer == ANN_LINE && message == "Merge pull request #1", "{author} {committer} {message}");
                parents[1].clone()
            } else {
                assert_eq!(m.merge_commit, None);
                m.commit.clone()
            };
            // Two rebased commits on top of the target, authored as before, committed by the
            // merging user.
            let (parents, author, committer, message) = f.show(&rebased_tip);
            assert_ne!(rebased_tip, d.from);
            assert_eq!(
                (author.as_str(), committer.as_str(), message.as_str()),
                ("Bob Builder <bob@example.com> 1700000000 +0200", ANN_LINE, "feature two\n\nwith a body")
            );
            let (grand, author, committer, message) = f.show(&parents[0]);
            assert_eq!(grand, [d.to.as_str()], "{strategy:?}");
            assert_eq!((author.as_str(), committer.as_str(), message.as_str()), ("Bob Builder <bob@example.com> 1700000000 +0200", ANN_LINE, "feature one"));
            assert_eq!(f.file(&parents[0], "a.txt"), "one\n2\n3");
            assert_eq!(f.file(&parents[0], "b.txt"), "b2", "the first rebased commit has the target's change");
        }
    }

    #[tokio::test]
    async fn rebasing_drops_commits_the_target_already_has_and_merge_commits() {
        let f = Fixture::new();
        let base = f.commit(&[], &[("a.txt", "a\n"), ("b.txt", "b\n")], "base");
        // The target cherry-picked the source's first change already.
        let to = f.commit(&[&base], &[("a.txt", "A\n"), ("b.txt", "b\n")], "picked");
        let one = f.commit(&[&base], &[("a.txt", "A\n"), ("b.txt", "b\n")], "one");
        let side = f.commit(&[&base], &[("a.txt", "a\n"), ("b.txt", "b\n"), ("s.txt", "s\n")], "side");
        let merged = f.commit(&[&one, &side], &[("a.txt", "A\n"), ("b.txt", "b\n"), ("s.txt", "s\n")], "merge side");
        let two = f.commit(&[&merged], &[("a.txt", "A\n"), ("b.txt", "B\n"), ("s.txt", "s\n")], "two");
        f.set("refs/heads/main", &to);
        let m = merge(&f, &two, &to, Strategy::RebaseFfOnly).await.unwrap();
        let subjects = f.git(&["log", "--format=%s", &format!("{to}..{}", m.commit)]);
        assert_eq!(subjects, "two\nside", "linear, without the picked change or the merge");
        assert_eq!((f.file(&m.commit, "a.txt"), f.file(&m.commit, "b.txt"), f.file(&m.commit, "s.txt")), ("A".into(), "B".into(), "s".into()));
    }

    #[tokio::test]
    async fn a_conflict_names_the_paths_and_moves_nothing() {
        let f = Fixture::new();
        let base = f.commit(&[], &[("a.txt", "1\n"), ("é dir/x", "x\n")], "base");
        let to = f.commit(&[&base], &[("a.txt", "main\n"), ("é dir/x", "main\n")], "main");
        let from = f.commit(&[&base], &[("a.txt", "feature\n"), ("é dir/x", "feature\n")], "feature");
        f.set("refs/heads/main", &to);
        for strategy in Strategy::ALL {
            match merge(&f, &from, &to, strategy).await {
                Err(MergeError::Conflicted(paths)) => assert_eq!(paths, ["a.txt", "é dir/x"], "{strategy:?}"),
                Err(MergeError::NotFastForward) if matches!(strategy, Strategy::FfOnly | Strategy::SquashFfOnly) => {}
                other => panic!("{strategy:?}: {other:?}"),
            }
            assert_eq!(f.rev("refs/heads/main"), Some(to.clone()), "{strategy:?}");
        }
        assert_eq!(f.repo.check_merge(&from, &to).await.unwrap(), MergeCheck::Conflicted { paths: vec!["a.txt".into(), "é dir/x".into()] });
    }

    #[tokio::test]
    async fn a_target_that_moved_since_the_check_loses_the_compare_and_swap() {
        let f = Fixture::new();
        let d = diverged(&f);
        // Someone pushed to main after the merge was decided on `d.to`.
        let pushed = f.commit(&[&d.to], &[("a.txt", "1\n2\n3\n"), ("b.txt", "pushed\n")], "pushed meanwhile");
        f.set("refs/heads/main", &pushed);
        for strategy in Strategy::ALL.into_iter().filter(|s| !matches!(s, Strategy::FfOnly | Strategy::SquashFfOnly)) {
            let err = merge(&f, &d.from, &d.to, strategy).await.unwrap_err();
            assert!(matches!(&err, MergeError::TargetMoved { now: Some(now) } if *now == pushed), "{strategy:?}: {err:?}");
            assert_eq!(f.rev("refs/heads/main"), Some(pushed.clone()));
        }
        // A deleted target is moved too.
        f.git(&["update-ref", "-d", "refs/heads/main"]);
        let err = merge(&f, &d.from, &d.to, Strategy::NoFf).await.unwrap_err();
        assert!(matches!(err, MergeError::TargetMoved { now: None }), "{err:?}");
        assert_eq!(f.rev("refs/heads/main"), None);
    }

    #[tokio::test]
    async fn a_source_already_in_the_target_merges_to_nothing() {
        let f = Fixture::new();
        let d = diverged(&f);
        let m = merge(&f, &d.base, &d.to, Strategy::NoFf).await.unwrap();
        assert_eq!(m, Merged { commit: d.to.clone(), merge_commit: None });
        assert_eq!(f.rev("refs/heads/main"), Some(d.to.clone()));
    }

    #[tokio::test]
    async fn pull_request_refs_hold_the_source_and_a_merge_while_it_merges_cleanly() {
        let f = Fixture::new();
        let d = diverged(&f);
        let merge = f.repo.update_pr_refs(7, &d.from, &d.to).await.unwrap().expect("it merges cleanly");
        assert_eq!(f.rev("refs/pull-requests/7/from"), Some(d.from.clone()));
        assert_eq!(f.rev("refs/pull-requests/7/merge"), Some(merge.clone()));
        assert_eq!(f.show(&merge).0, [d.to.clone(), d.from.clone()]);
        assert_merged_tree(&f, &merge);
        assert_eq!(f.repo.update_pr_refs(7, &d.from, &d.to).await.unwrap(), Some(merge.clone()), "the same merge is kept");
        assert_eq!(f.repo.ref_commit("refs/pull-requests/7/merge").await.unwrap(), Some(merge));

        // The source changes to something that conflicts: the merge ref goes.
        let bad = f.commit(&[&d.from], &[("a.txt", "one\n2\n3\n"), ("b.txt", "conflict\n"), ("c.txt", "c\n")], "conflicting");
        assert_eq!(f.repo.update_pr_refs(7, &bad, &d.to).await.unwrap(), None);
        assert_eq!((f.rev("refs/pull-requests/7/from"), f.rev("refs/pull-requests/7/merge")), (Some(bad), None));

        f.repo.delete_pr_refs(7).await.unwrap();
        assert_eq!(f.rev("refs/pull-requests/7/from"), None);
        f.repo.delete_pr_refs(7).await.unwrap();
        assert!(matches!(f.repo.delete_pr_refs(0).await, Err(PrGitError::Invalid { .. })));
    }

    #[tokio::test]
    async fn refs_bases_ancestry_and_commits_between() {
        let f = Fixture::new();
        let d = diverged(&f);
        f.git_with(&["tag", "-a", "-m", "annotated", "v1", &d.to], b"", &[("GIT_COMMITTER_NAME", ANN.0), ("GIT_COMMITTER_EMAIL", ANN.1)]);
        assert_eq!(f.repo.ref_commit("refs/heads/main").await.unwrap(), Some(d.to.clone()));
        assert_eq!(f.repo.ref_commit("refs/tags/v1").await.unwrap(), Some(d.to.clone()), "peeled");
        assert_eq!(f.repo.ref_commit("refs/heads/nothing").await.unwrap(), None);
        assert!(matches!(f.repo.ref_commit("HEAD").await, Err(PrGitError::Invalid { .. })));
        assert_eq!(f.repo.merge_base(&d.from, &d.to).await.unwrap(), Some(d.base.clone()));
        let unrelated = f.commit(&[], &[("z", "z\n")], "unrelated");
        assert_eq!(f.repo.merge_base(&unrelated, &d.to).await.unwrap(), None);
        assert!(f.repo.is_ancestor(&d.base, &d.from).await.unwrap());
        assert!(!f.repo.is_ancestor(&d.to, &d.from).await.unwrap());
        assert_eq!(f.repo.commits_between(&d.to, &d.from, 10).await.unwrap(), (vec![d.from.clone(), d.f1.clone()], 2));
        assert_eq!(f.repo.commits_between(&d.to, &d.from, 1).await.unwrap(), (vec![d.from.clone()], 2));
        assert_eq!(f.repo.commits_between(&d.from, &d.base, 10).await.unwrap(), (vec![], 0));
        assert!(matches!(f.repo.commits_between("--all", &d.from, 1).await, Err(PrGitError::Invalid { .. })));
    }

    /// Two commits: before has keep, mod, del, old name, run.sh; after modifies, deletes,
    /// renames (with an edit), adds, makes run.sh executable, and adds names git would quote.
    fn changed(f: &Fixture) -> (String, String) {
        let long = "line 1\nline 2\nline 3\nline 4\nline 5\nline 6\nline 7\nline 8\nline 9\nline 10\n";
        let edited = long.replace("line 10", "line ten");
        let before = f.commit_as(
            &[],
            &[
                ("keep.txt", "keep\n", "100644"),
                ("mod.txt", "a\n  b\nc\n", "100644"),
                ("del.txt", "del\n", "100644"),
                ("docs/old.md", long, "100644"),
                ("run.sh", "#!/bin/sh\n", "100644"),
            ],
            "before",
            ("Bob Builder", "bob@example.com"),
            1_700_000_000,
        );
        let after = f.commit_as(
            &[&before],
            &[
                ("keep.txt", "keep\n", "100644"),
                ("mod.txt", "a\nb\nC\n", "100644"),
                ("docs/new.md", &edited, "100644"),
                ("run.sh", "#!/bin/sh\n", "100755"),
                ("new.txt", "new\n", "100644"),
                ("tab\there/é.txt", "é\n", "100644"),
            ],
            "after",
            ("Bob Builder", "bob@example.com"),
            1_700_000_100,
        );
        (before, after)
    }

    #[tokio::test]
    async fn changes_lists_added_modified_deleted_moved_and_mode_changed_files() {
        let f = Fixture::new();
        let (before, after) = changed(&f);
        let (changes, more) = f.repo.changes(&before, &after, 100).await.unwrap();
        assert!(!more);
        let got: Vec<(String, &str, Option<String>)> =
            changes.iter().map(|c| (c.path.to_string.clone(), c.kind, c.src_path.as_ref().map(|p| p.to_string.clone()))).collect();
        assert_eq!(
            got,
            [
                ("del.txt".into(), "DELETE", None),
                ("docs/new.md".into(), "MOVE", Some("docs/old.md".into())),
                ("mod.txt".into(), "MODIFY", None),
                ("new.txt".into(), "ADD", None),
                ("run.sh".into(), "MODIFY", None),
                ("tab\there/é.txt".into(), "ADD", None),
            ]
        );
        let moved = &changes[1];
        assert!(moved.percent_unchanged > 50 && moved.percent_unchanged < 100, "{}", moved.percent_unchanged);
        assert_eq!(moved.properties.git_change_type, "RENAME");
        let run = &changes[4];
        assert_eq!((run.executable, run.src_executable), (true, Some(false)));
        assert_eq!(run.content_id, run.from_content_id, "a mode change keeps the blob");
        assert_eq!(Some(changes[2].content_id.clone()), f.rev(&format!("{after}:mod.txt")));
        assert_eq!(Some(changes[2].from_content_id.clone()), f.rev(&format!("{before}:mod.txt")));
        let (page, more) = f.repo.changes(&before, &after, 2).await.unwrap();
        assert_eq!((page.len(), more), (2, true));
    }

    #[tokio::test]
    async fn line_counts_are_per_file_after_renames() {
        let f = Fixture::new();
        let (before, after) = changed(&f);
        let counts = f.repo.line_counts(&before, &after).await.unwrap();
        assert_eq!(counts.get("mod.txt"), Some(&Some((2, 2))));
        assert_eq!(counts.get("del.txt"), Some(&Some((0, 1))));
        assert_eq!(counts.get("docs/new.md"), Some(&Some((1, 1))));
        assert_eq!(counts.get("tab\there/é.txt"), Some(&Some((1, 0))));
        assert_eq!(counts.len(), 6);
    }

    #[tokio::test]
    async fn diff_reads_a_real_repository_as_bitbucket_json() {
        let f = Fixture::new();
        let (before, after) = changed(&f);
        let all = f.repo.diff(&before, &after, &DiffOptions::default()).await.unwrap();
        assert_eq!((all.context_lines, all.whitespace, all.truncated, all.from_hash.as_str()), (10, "SHOW", false, before.as_str()));
        let names: Vec<(Option<String>, Option<String>)> =
            all.diffs.iter().map(|d| (d.source.as_ref().map(|p| p.to_string.clone()), d.destination.as_ref().map(|p| p.to_string.clone()))).collect();
        let s = |x: &str| Some(x.to_owned());
        assert_eq!(
            names,
            [
                (s("del.txt"), None),
                (s("docs/old.md"), s("docs/new.md")),
                (s("mod.txt"), s("mod.txt")),
                (None, s("new.txt")),
                (s("run.sh"), s("run.sh")),
                (None, s("tab\there/é.txt")),
            ]
        );
        assert!(all.diffs[4].hunks.is_empty(), "a mode change has no hunks");
        let json = serde_json::to_value(&all).unwrap();
        assert_eq!(json["diffs"][5]["destination"]["components"], json!(["tab\there", "é.txt"]));
        assert_eq!(json["diffs"][0]["destination"], Value::Null);
        // mod.txt with ten lines of context: one hunk of all three lines.
        let m = &json["diffs"][2]["hunks"];
        assert_eq!(m.as_array().unwrap().len(), 1);
        assert_eq!((&m[0]["sourceLine"], &m[0]["sourceSpan"], &m[0]["destinationSpan"]), (&json!(1), &json!(3), &json!(3)));

        // No context: only the changed lines; and one path, with where it was renamed from.
        let opts = DiffOptions { context_lines: Some(0), path: Some("mod.txt".into()), ..DiffOptions::default() };
        let zero = f.repo.diff(&before, &after, &opts).await.unwrap();
        assert_eq!(zero.diffs.len(), 1);
        let h = &zero.diffs[0].hunks[0];
        assert_eq!((h.source_line, h.source_span, h.destination_line, h.destination_span), (2, 2, 2, 2));
        assert!(h.segments.iter().all(|s| s.kind != SegmentType::Context), "{h:?}");
        let opts = DiffOptions { path: Some("docs/new.md".into()), src_path: Some("docs/old.md".into()), ..DiffOptions::default() };
        let renamed = f.repo.diff(&before, &after, &opts).await.unwrap();
        assert_eq!((renamed.diffs.len(), renamed.diffs[0].source.as_ref().unwrap().name.as_str()), (1, "old.md"));

        // Ignoring whitespace, mod.txt's "  b" → "b" is no change; "c" → "C" still is.
        let opts = DiffOptions { context_lines: Some(0), ignore_whitespace: true, path: Some("mod.txt".into()), ..DiffOptions::default() };
        let ws = f.repo.diff(&before, &after, &opts).await.unwrap();
        assert_eq!(ws.whitespace, "IGNORE_ALL");
        let lines: Vec<(SegmentType, &str)> =
            ws.diffs[0].hunks.iter().flat_map(|h| &h.segments).flat_map(|s| s.lines.iter().map(move |l| (s.kind, l.line.as_str()))).collect();
        assert_eq!(lines, [(SegmentType::Removed, "c"), (SegmentType::Added, "C")]);

        // The line cap cuts the whole answer.
        let cut = f.repo.diff(&before, &after, &DiffOptions { max_lines: 3, ..DiffOptions::default() }).await.unwrap();
        assert!(cut.truncated && cut.diffs.last().unwrap().truncated);

        // The text form is git's own patch.
        let raw = f.repo.raw_diff(&before, &after, &DiffOptions { path: Some("mod.txt".into()), ..DiffOptions::default() }).await.unwrap();
        assert!(raw.starts_with("diff --git a/mod.txt b/mod.txt\n") && raw.contains("\n+C\n"), "{raw}");
        // Paths are checked, and literal: a glob matches nothing.
        assert!(matches!(
            f.repo.diff(&before, &after, &DiffOptions { path: Some("../x".into()), ..DiffOptions::default() }).await,
            Err(PrGitError::Invalid { .. })
        ));
        let glob = f.repo.diff(&before, &after, &DiffOptions { path: Some("*.txt".into()), ..DiffOptions::default() }).await.unwrap();
        assert!(glob.diffs.is_empty());
    }

    #[tokio::test]
    async fn git_over_its_time_limit_is_killed_and_reaped() {
        let tmp = tempfile::tempdir().unwrap();
        let pid_file = tmp.path().join("pid");
        let fake = tmp.path().join("slow-git");
        std::fs::write(&fake, format!("#!/bin/sh\necho $$ > {}\nexec sleep 600\n", pid_file.display())).unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let env = trove_store::git_env(tmp.path());
        let limits = Limits { time: std::time::Duration::from_secs(2), ..Limits::default() };
        let repo = GitRepo::for_test(fake, env, tmp.path().to_owned()).with_limits(limits);
        let err = repo.ref_commit("refs/heads/main").await.unwrap_err();
        assert!(matches!(err, PrGitError::TimedOut { .. }), "{err}");
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            assert!(!std::path::Path::new(&format!("/proc/{}", pid.trim())).exists(), "git {pid} was left behind");
        }
    }
}
