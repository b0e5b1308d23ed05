//! Reading repositories for the pages: refs, trees, blobs, history and diffs, from `git`
//! spawned with a fixed argv and the server's minimal environment.
//!
//! Nothing a user typed ever becomes an option: a ref is accepted only when it is one of the
//! repository's own refs or a hex object id, every revision we pass is a resolved hex id, and
//! `--end-of-options` stands before it anyway. Paths only ever follow `<hex id>:`.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::AsyncReadExt as _;
use tokio::process::Command;

use super::WebError;
use crate::AppState;

/// Output past this is cut (and the page says so): a huge diff must not fill memory.
pub(crate) const OUTPUT_LIMIT: usize = 4 << 20;
/// Files larger than this are offered as a raw download instead of being shown.
pub(crate) const VIEW_LIMIT: u64 = 1 << 20;

pub(crate) struct Git {
    binary: PathBuf,
    env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    dir: PathBuf,
}

/// Branches and tags, each `(short name, full ref, commit id)`, and the default branch.
#[derive(Default)]
pub(crate) struct Refs {
    pub(crate) head: Option<String>,
    pub(crate) branches: Vec<(String, String, String)>,
    pub(crate) tags: Vec<(String, String, String)>,
}

/// A revision the user asked for, resolved.
#[derive(Clone)]
pub(crate) struct Resolved {
    /// What to show: `main`, `v1.0`, or an abbreviated id.
    pub(crate) label: String,
    /// What to put back into `?at=`: the full ref, or the id.
    pub(crate) at: String,
    pub(crate) commit: String,
}

pub(crate) struct TreeEntry {
    pub(crate) kind: String,
    pub(crate) size: Option<u64>,
    pub(crate) name: String,
}

pub(crate) struct CommitSummary {
    pub(crate) id: String,
    pub(crate) short: String,
    pub(crate) author: String,
    pub(crate) date: String,
    pub(crate) subject: String,
}

pub(crate) struct CommitDetail {
    pub(crate) id: String,
    pub(crate) parents: Vec<String>,
    pub(crate) author: String,
    pub(crate) email: String,
    pub(crate) date: String,
    pub(crate) message: String,
}

fn is_hex_id(s: &str) -> bool {
    (4..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A path inside a tree: no empty, `.` or `..` components, no control characters.
pub(crate) fn valid_path(p: &str) -> bool {
    p.is_empty() || (!p.chars().any(|c| c.is_control()) && p.split('/').all(|c| !c.is_empty() && c != "." && c != ".."))
}

impl Git {
    pub(crate) fn new(state: &AppState, dir: PathBuf) -> Git {
        Git { binary: state.git.binary.clone(), env: trove_store::git_env(state.store.git_home()), dir }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut dir = std::ffi::OsString::from("--git-dir=");
        dir.push(&self.dir);
        let mut c = Command::new(&self.binary);
        c.env_clear().envs(self.env.clone()).arg(dir).args(args);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true);
        c
    }

    /// Runs git; `Ok(None)` when it exits non-zero (no such object, empty repository).
    /// Output is cut at [`OUTPUT_LIMIT`]; the flag says whether it was.
    async fn run(&self, args: &[&str]) -> Result<Option<(Vec<u8>, bool)>, WebError> {
        let mut child = self.command(args).spawn().map_err(|e| WebError::Internal(format!("spawn git {args:?}: {e}")))?;
        let mut out = Vec::new();
        let mut stdout = child.stdout.take().ok_or_else(|| WebError::Internal("git stdout".into()))?;
        let n = (&mut stdout).take(OUTPUT_LIMIT as u64 + 1).read_to_end(&mut out).await.map_err(|e| WebError::Internal(format!("read git {args:?}: {e}")))?;
        let cut = n > OUTPUT_LIMIT;
        if cut {
            out.truncate(OUTPUT_LIMIT);
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Ok(Some((out, true)));
        }
        let status = child.wait().await.map_err(|e| WebError::Internal(format!("wait git {args:?}: {e}")))?;
        Ok(status.success().then_some((out, false)))
    }

    async fn text(&self, args: &[&str]) -> Result<Option<String>, WebError> {
        Ok(self.run(args).await?.map(|(o, _)| String::from_utf8_lossy(&o).into_owned()))
    }

    pub(crate) async fn refs(&self) -> Result<Refs, WebError> {
        let head = self.text(&["symbolic-ref", "-q", "HEAD"]).await?.map(|s| s.trim().to_owned());
        let list = self.text(&["for-each-ref", "--format=%(refname)%00%(objectname)%00%(*objectname)", "refs/heads", "refs/tags"]).await?.unwrap_or_default();
        let mut refs = Refs { head, ..Default::default() };
        for line in list.lines() {
            let mut f = line.split('\0');
            let (Some(name), Some(id), peeled) = (f.next(), f.next(), f.next()) else { continue };
            let commit = peeled.filter(|p| !p.is_empty()).unwrap_or(id).to_owned();
            if let Some(short) = name.strip_prefix("refs/heads/") {
                refs.branches.push((short.to_owned(), name.to_owned(), commit));
            } else if let Some(short) = name.strip_prefix("refs/tags/") {
                refs.tags.push((short.to_owned(), name.to_owned(), commit));
            }
        }
        Ok(refs)
    }

    /// Resolves `at` (a full or short branch or tag name of this repository, or a hex id) or,
    /// without one, the default branch (else the first branch). `None`: nothing to show.
    pub(crate) async fn resolve(&self, refs: &Refs, at: Option<&str>) -> Result<Option<Resolved>, WebError> {
        let find = |want: &str| {
            refs.branches.iter().chain(refs.tags.iter()).find(|(short, full, _)| full == want || short == want).map(|(short, full, id)| Resolved {
                label: short.clone(),
                at: full.clone(),
                commit: id.clone(),
            })
        };
        match at.filter(|a| !a.is_empty()) {
            Some(a) => {
                if let Some(r) = find(a) {
                    return Ok(Some(r));
                }
                if !is_hex_id(a) {
                    return Ok(None);
                }
                let spec = format!("{a}^{{commit}}");
                let id = self.text(&["rev-parse", "--verify", "-q", "--end-of-options", &spec]).await?;
                Ok(id.map(|id| id.trim().to_owned()).filter(|id| is_hex_id(id)).map(|id| Resolved {
                    label: id[..12.min(id.len())].to_owned(),
                    at: id.clone(),
                    commit: id,
                }))
            }
            None => {
                let default = refs.head.as_deref().and_then(find);
                Ok(default.or_else(|| refs.branches.first().map(|(s, f, id)| Resolved { label: s.clone(), at: f.clone(), commit: id.clone() })))
            }
        }
    }

    /// `tree`, `blob` or `commit` (a submodule) for `path` at `commit`; `None` if absent.
    pub(crate) async fn kind(&self, commit: &str, path: &str) -> Result<Option<String>, WebError> {
        if path.is_empty() {
            return Ok(Some("tree".into()));
        }
        let spec = format!("{commit}:{path}");
        Ok(self.text(&["cat-file", "-t", "--end-of-options", &spec]).await?.map(|s| s.trim().to_owned()))
    }

    /// The entries of the directory `path` at `commit`: directories first, then by name.
    pub(crate) async fn tree(&self, commit: &str, path: &str) -> Result<Vec<TreeEntry>, WebError> {
        let spec = if path.is_empty() { commit.to_owned() } else { format!("{commit}:{path}") };
        let Some((out, _)) = self.run(&["ls-tree", "-z", "-l", "--end-of-options", &spec]).await? else { return Ok(Vec::new()) };
        let mut entries: Vec<TreeEntry> = out
            .split(|b| *b == 0)
            .filter(|r| !r.is_empty())
            .filter_map(|rec| {
                let rec = String::from_utf8_lossy(rec);
                let (meta, name) = rec.split_once('\t')?;
                let mut f = meta.split_whitespace();
                let (_mode, kind, _id, size) = (f.next()?, f.next()?, f.next()?, f.next()?);
                Some(TreeEntry { kind: kind.to_owned(), size: size.parse().ok(), name: name.to_owned() })
            })
            .collect();
        entries.sort_by(|a, b| (a.kind != "tree").cmp(&(b.kind != "tree")).then_with(|| a.name.cmp(&b.name)));
        Ok(entries)
    }

    pub(crate) async fn blob_size(&self, commit: &str, path: &str) -> Result<Option<u64>, WebError> {
        let spec = format!("{commit}:{path}");
        Ok(self.text(&["cat-file", "-s", "--end-of-options", &spec]).await?.and_then(|s| s.trim().parse().ok()))
    }

    /// The blob's bytes, cut at [`OUTPUT_LIMIT`].
    pub(crate) async fn blob(&self, commit: &str, path: &str) -> Result<Option<Vec<u8>>, WebError> {
        let spec = format!("{commit}:{path}");
        Ok(self.run(&["cat-file", "blob", &spec]).await?.map(|(o, _)| o))
    }

    /// A running `git cat-file blob`, for streaming a raw download of any size.
    pub(crate) fn blob_stream(&self, commit: &str, path: &str) -> Result<tokio::process::Child, WebError> {
        let spec = format!("{commit}:{path}");
        self.command(&["cat-file", "blob", &spec]).kill_on_drop(false).spawn().map_err(|e| WebError::Internal(format!("spawn git cat-file: {e}")))
    }

    /// Up to `n` commits reachable from `commit`, skipping `skip`.
    pub(crate) async fn log(&self, commit: &str, skip: usize, n: usize) -> Result<Vec<CommitSummary>, WebError> {
        let (skip, n) = (format!("--skip={skip}"), format!("--max-count={n}"));
        let out = self
            .text(&[
                "log",
                "--no-color",
                "--date=format:%Y-%m-%d %H:%M",
                "--format=%H%x1f%h%x1f%an%x1f%ad%x1f%s%x1e",
                &skip,
                &n,
                "--end-of-options",
                commit,
                "--",
            ])
            .await?
            .unwrap_or_default();
        Ok(out
            .split('\x1e')
            .filter_map(|rec| {
                let mut f = rec.trim_start_matches('\n').split('\x1f');
                Some(CommitSummary {
                    id: f.next().filter(|s| !s.is_empty())?.to_owned(),
                    short: f.next()?.to_owned(),
                    author: f.next()?.to_owned(),
                    date: f.next()?.to_owned(),
                    subject: f.next()?.to_owned(),
                })
            })
            .collect())
    }

    pub(crate) async fn commit(&self, id: &str) -> Result<Option<CommitDetail>, WebError> {
        let Some(out) = self
            .text(&["log", "-1", "--no-color", "--date=format:%Y-%m-%d %H:%M %z", "--format=%H%x1f%P%x1f%an%x1f%ae%x1f%ad%x1f%B", "--end-of-options", id, "--"])
            .await?
        else {
            return Ok(None);
        };
        let mut f = out.splitn(6, '\x1f');
        let (Some(id), Some(parents), Some(author), Some(email), Some(date), Some(message)) = (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            return Ok(None);
        };
        Ok(Some(CommitDetail {
            id: id.to_owned(),
            parents: parents.split_whitespace().map(str::to_owned).collect(),
            author: author.to_owned(),
            email: email.to_owned(),
            date: date.to_owned(),
            message: message.trim_end().to_owned(),
        }))
    }

    /// The patch of `id` against its first parent (or the empty tree for a root commit); the
    /// flag says whether it was cut.
    pub(crate) async fn diff(&self, parent: Option<&str>, id: &str) -> Result<(String, bool), WebError> {
        let mut args = vec!["diff-tree", "-p", "-M", "-r", "--root", "--no-commit-id", "--no-color", "--no-ext-diff", "--no-textconv", "--end-of-options"];
        if let Some(p) = parent {
            args.push(p);
        }
        args.push(id);
        let (out, cut) = self.run(&args).await?.unwrap_or_default();
        Ok((String::from_utf8_lossy(&out).into_owned(), cut))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_plain_tree_paths_and_hex_ids_are_accepted() {
        for (p, ok) in [("", true), ("src/main.rs", true), ("a/../b", false), ("./a", false), ("a//b", false), ("a/", false), ("a\nb", false), ("-x", true)] {
            assert_eq!(super::valid_path(p), ok, "{p:?}");
        }
        for (id, ok) in [("abcd", true), ("ABC123def0", true), ("abc", false), ("--all", false), ("HEAD", false), ("a".repeat(65).as_str(), false)] {
            assert_eq!(super::is_hex_id(id), ok, "{id:?}");
        }
    }
}
