//! Reading a repository over REST: branches and the default branch, tags, commits, `browse`
//! and `raw`, from `git` spawned with a fixed argv and the same minimal environment as the git
//! endpoints.
//!
//! Nothing a caller sends becomes an option: a revision is accepted only when it is one of the
//! repository's own refs or a hex object id, and only the resolved hex id is passed on, after
//! `--end-of-options`; paths are checked ([`valid_path`]) and only ever follow `<hex id>:` or
//! `--`.

use std::path::PathBuf;
use std::process::Stdio;

use axum::body::Body;
use axum::extract::Path;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;
use tokio::process::Command;
use trove_store::Permission;

use super::{Api, ApiError, PageReq, RawFile, envelope, no_content, ok, paged, parse_body};

/// Largest file `browse` shows as lines; larger files are reported as `binary`-like and read
/// with `raw`. Default 5 MiB.
const BROWSE_FILE_LIMIT: u64 = 5 << 20;
/// Page size for a file's lines when `limit` is not given (Bitbucket shows 500 lines at a time).
const DEFAULT_LINES: usize = 500;

struct Git {
    binary: PathBuf,
    env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    dir: PathBuf,
}

/// A branch or tag: full ref name, short name, the commit it points at, and for an annotated
/// tag the tag object.
struct RefInfo {
    full: String,
    short: String,
    commit: String,
    tag_object: Option<String>,
}

struct Refs {
    head: Option<String>,
    branches: Vec<RefInfo>,
    tags: Vec<RefInfo>,
}

fn is_hex_id(s: &str) -> bool {
    (4..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A path inside a tree: no empty, `.` or `..` components, no control characters.
pub(crate) fn valid_path(p: &str) -> bool {
    p.is_empty() || (!p.chars().any(|c| c.is_control()) && p.split('/').all(|c| !c.is_empty() && c != "." && c != ".."))
}

/// A branch name we are willing to write into HEAD (git check-ref-format's rules, stricter).
fn valid_branch_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.ends_with('/')
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("@{")
        && name.split('/').all(|c| !c.is_empty() && !c.starts_with('.') && !c.starts_with('-'))
        && name.chars().all(|c| !c.is_control() && !matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
}

impl Git {
    fn new(api: &Api, repo: &trove_store::Repo) -> Git {
        Git { binary: api.state.git.binary.clone(), env: trove_store::git_env(api.store().git_home()), dir: api.store().repo_path(repo) }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.binary);
        c.env_clear().envs(self.env.iter().cloned()).arg("--git-dir").arg(&self.dir).args(args);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        c
    }

    /// Runs git; `None` when it exits unsuccessfully (an unknown object, say).
    async fn run(&self, args: &[&str]) -> Result<Option<Vec<u8>>, ApiError> {
        let out = self.command(args).output().await.map_err(|e| ApiError::Internal(format!("spawn git {args:?}: {e}")))?;
        if !out.status.success() {
            tracing::debug!(?args, stderr = %String::from_utf8_lossy(&out.stderr).trim(), "git exited unsuccessfully");
            return Ok(None);
        }
        Ok(Some(out.stdout))
    }

    async fn text(&self, args: &[&str]) -> Result<Option<String>, ApiError> {
        Ok(self.run(args).await?.map(|o| String::from_utf8_lossy(&o).into_owned()))
    }

    async fn refs(&self) -> Result<Refs, ApiError> {
        let head = self.text(&["symbolic-ref", "-q", "HEAD"]).await?.map(|s| s.trim().to_owned());
        let out = self
            .text(&["for-each-ref", "--format=%(objectname)%00%(*objectname)%00%(objecttype)%00%(refname)", "refs/heads", "refs/tags"])
            .await?
            .unwrap_or_default();
        let (mut branches, mut tags) = (Vec::new(), Vec::new());
        for line in out.lines() {
            let f: Vec<&str> = line.split('\0').collect();
            let [obj, peeled, kind, full] = f[..] else { continue };
            if let Some(short) = full.strip_prefix("refs/heads/") {
                branches.push(RefInfo { full: full.into(), short: short.into(), commit: obj.into(), tag_object: None });
            } else if let Some(short) = full.strip_prefix("refs/tags/") {
                let (commit, tag_object) = if kind == "tag" { (peeled, Some(obj.to_owned())) } else { (obj, None) };
                tags.push(RefInfo { full: full.into(), short: short.into(), commit: commit.into(), tag_object });
            }
        }
        Ok(Refs { head, branches, tags })
    }

    /// Resolves a caller's revision (full ref, branch, tag or hex id) to a commit id; `None` if
    /// it is none of those. Without one, the default branch (`None` in an empty repository).
    async fn resolve(&self, refs: &Refs, rev: Option<&str>) -> Result<Option<String>, ApiError> {
        let rev = match rev.filter(|r| !r.is_empty()) {
            Some(r) => r,
            None => {
                let Some(head) = &refs.head else { return Ok(None) };
                return Ok(refs.branches.iter().find(|b| &b.full == head).map(|b| b.commit.clone()));
            }
        };
        let all = || refs.branches.iter().chain(refs.tags.iter());
        if let Some(r) =
            all().find(|r| r.full == rev).or_else(|| refs.branches.iter().find(|r| r.short == rev)).or_else(|| refs.tags.iter().find(|r| r.short == rev))
        {
            return Ok(Some(r.commit.clone()));
        }
        if !is_hex_id(rev) {
            return Ok(None);
        }
        let spec = format!("{rev}^{{commit}}");
        Ok(self.text(&["rev-parse", "--verify", "-q", "--end-of-options", &spec]).await?.map(|s| s.trim().to_owned()))
    }
}

fn ref_json(r: &RefInfo, kind: &str, default: Option<&str>) -> Value {
    let mut v = json!({"id": r.full, "displayId": r.short, "type": kind, "latestCommit": r.commit, "latestChangeset": r.commit});
    if kind == "BRANCH" {
        v["isDefault"] = json!(default == Some(r.full.as_str()));
    } else {
        v["hash"] = json!(r.tag_object);
    }
    v
}

/// Bitbucket's `orderBy`: `ALPHABETICAL` (default here) or `MODIFICATION` (newest first is not
/// tracked, so it is accepted and treated as alphabetical).
fn check_order(api: &Api) -> Result<(), ApiError> {
    match api.q.get("orderBy") {
        None | Some("ALPHABETICAL" | "MODIFICATION") => Ok(()),
        Some(o) => Err(ApiError::invalid("orderBy", format!("{o:?} is not an order; use ALPHABETICAL or MODIFICATION."))),
    }
}

/// `GET …/branches?filterText=&orderBy=`: the default branch first, then by name.
pub(crate) async fn branches(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    let page = api.q.page()?;
    check_order(&api)?;
    let (repo, _) = api.repo(&key, &slug, Permission::Read, "see this repository")?;
    let refs = Git::new(&api, &repo).refs().await?;
    let filter = api.q.get("filterText");
    let head = refs.head.as_deref();
    let mut list: Vec<&RefInfo> = refs.branches.iter().filter(|b| super::matches_filter(filter, &[&b.short])).collect();
    list.sort_by_key(|b| (Some(b.full.as_str()) != head, b.short.clone()));
    Ok(ok(StatusCode::OK, paged(list.into_iter().map(|b| ref_json(b, "BRANCH", head)).collect(), page)))
}

/// `GET …/branches/default`: 404 while the default branch has no commits.
pub(crate) async fn default_branch(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    let (repo, _) = api.repo(&key, &slug, Permission::Read, "see this repository")?;
    let refs = Git::new(&api, &repo).refs().await?;
    let head = refs.head.as_deref();
    let b = refs.branches.iter().find(|b| Some(b.full.as_str()) == head).ok_or_else(|| ApiError::NotFound {
        exception: "com.atlassian.bitbucket.repository.NoDefaultBranchException",
        message: format!("Repository {} has no default branch yet; push a branch first.", repo.slug),
    })?;
    Ok(ok(StatusCode::OK, ref_json(b, "BRANCH", head)))
}

#[derive(Deserialize)]
pub(crate) struct BranchBody {
    id: Option<String>,
}

/// `PUT …/branches/default` `{"id": "refs/heads/main"}` → 204. Needs repository admin. The
/// branch need not exist yet (an empty repository gets its first push there).
pub(crate) async fn set_default_branch(api: Api, Path((key, slug)): Path<(String, String)>, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let (repo, _) = api.repo(&key, &slug, Permission::Admin, "change this repository's default branch")?;
    let b: BranchBody = parse_body(body)?;
    let id = b.id.ok_or_else(|| ApiError::invalid("id", "The branch id (like refs/heads/main) is required."))?;
    let short = id.strip_prefix("refs/heads/").unwrap_or(&id);
    if !valid_branch_name(short) {
        return Err(ApiError::invalid("id", format!("{id:?} is not a valid branch name.")));
    }
    let full = format!("refs/heads/{short}");
    Git::new(&api, &repo).run(&["symbolic-ref", "HEAD", &full]).await?.ok_or_else(|| ApiError::Internal(format!("git symbolic-ref HEAD {full} failed")))?;
    Ok(no_content())
}

/// `GET …/tags?filterText=`.
pub(crate) async fn tags(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    let page = api.q.page()?;
    check_order(&api)?;
    let (repo, _) = api.repo(&key, &slug, Permission::Read, "see this repository")?;
    let refs = Git::new(&api, &repo).refs().await?;
    let filter = api.q.get("filterText");
    let values = refs.tags.iter().filter(|t| super::matches_filter(filter, &[&t.short])).map(|t| ref_json(t, "TAG", None)).collect();
    Ok(ok(StatusCode::OK, paged(values, page)))
}

/// Field and record separators for `git log --format`, which commit messages do not use.
const FIELD: char = '\u{1f}';
const RECORD: char = '\u{1e}';
const LOG_FORMAT: &str = "--format=%H%x1f%an%x1f%ae%x1f%at%x1f%cn%x1f%ce%x1f%ct%x1f%P%x1f%B%x1e";

fn commit_json(record: &str) -> Option<Value> {
    let f: Vec<&str> = record.trim_start_matches('\n').splitn(9, FIELD).collect();
    let [id, an, ae, at, cn, ce, ct, parents, message] = f[..] else { return None };
    let short = |s: &str| s.chars().take(11).collect::<String>();
    let ms = |s: &str| s.parse::<i64>().unwrap_or(0) * 1000;
    Some(json!({
        "id": id,
        "displayId": short(id),
        "author": {"name": an, "emailAddress": ae},
        "authorTimestamp": ms(at),
        "committer": {"name": cn, "emailAddress": ce},
        "committerTimestamp": ms(ct),
        "message": message.trim_end(),
        "parents": parents.split_whitespace().map(|p| json!({"id": p, "displayId": short(p)})).collect::<Vec<_>>(),
    }))
}

fn checked_path(raw: Option<&str>) -> Result<&str, ApiError> {
    let p = raw.unwrap_or("").trim_matches('/');
    if valid_path(p) { Ok(p) } else { Err(ApiError::invalid("path", format!("{p:?} is not a path inside a repository."))) }
}

/// `GET …/commits?until=&since=&path=&merges=`: newest first from `until` (default: the
/// default branch), excluding what `since` reaches.
pub(crate) async fn commits(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    let page = api.q.page()?;
    let (repo, _) = api.repo(&key, &slug, Permission::Read, "see this repository")?;
    let git = Git::new(&api, &repo);
    let refs = git.refs().await?;
    let path = checked_path(api.q.get("path"))?;
    let until_raw = api.q.get("until");
    let Some(until) = git.resolve(&refs, until_raw).await? else {
        return match until_raw.filter(|u| !u.is_empty()) {
            Some(u) => Err(ApiError::no_commit(u)),
            // An empty repository has no commits.
            None => Ok(ok(StatusCode::OK, envelope(Vec::new(), page, true))),
        };
    };
    let since = match api.q.get("since").filter(|s| !s.is_empty()) {
        Some(s) => Some(git.resolve(&refs, Some(s)).await?.ok_or_else(|| ApiError::no_commit(s))?),
        None => None,
    };
    let merges = match api.q.get("merges") {
        None | Some("include") => None,
        Some("exclude") => Some("--no-merges"),
        Some("only") => Some("--merges"),
        Some(m) => return Err(ApiError::invalid("merges", format!("{m:?} is not one of include, exclude, only."))),
    };
    let skip = format!("--skip={}", page.start);
    let count = format!("--max-count={}", page.limit + 1);
    let not_since = since.map(|s| format!("^{s}"));
    let mut args = vec!["log", LOG_FORMAT, &skip, &count];
    args.extend(merges);
    args.push("--end-of-options");
    args.push(&until);
    args.extend(not_since.as_deref());
    if !path.is_empty() {
        args.extend(["--", path]);
    }
    let out = git.text(&args).await?.ok_or_else(|| ApiError::Internal("git log failed".into()))?;
    let mut values: Vec<Value> = out.split(RECORD).filter(|r| !r.trim().is_empty()).filter_map(commit_json).collect();
    let last = values.len() <= page.limit;
    values.truncate(page.limit);
    Ok(ok(StatusCode::OK, envelope(values, page, last)))
}

/// `GET …/commits/{commitId}`: a commit by id, or by branch or tag name.
pub(crate) async fn commit(api: Api, Path((key, slug, id)): Path<(String, String, String)>) -> Result<Response, ApiError> {
    let (repo, _) = api.repo(&key, &slug, Permission::Read, "see this repository")?;
    let git = Git::new(&api, &repo);
    let refs = git.refs().await?;
    let resolved = git.resolve(&refs, Some(&id)).await?.ok_or_else(|| ApiError::no_commit(&id))?;
    let out = git.text(&["show", "-s", LOG_FORMAT, "--end-of-options", &resolved]).await?.ok_or_else(|| ApiError::no_commit(&id))?;
    let record = out.split(RECORD).next().unwrap_or("");
    Ok(ok(StatusCode::OK, commit_json(record).ok_or_else(|| ApiError::no_commit(&id))?))
}

fn path_json(path: &str) -> Value {
    let components: Vec<&str> = if path.is_empty() { Vec::new() } else { path.split('/').collect() };
    let name = components.last().copied().unwrap_or("");
    let parent = components.len().checked_sub(1).map(|n| components[..n].join("/")).unwrap_or_default();
    let mut v = json!({"components": components, "parent": parent, "name": name, "toString": path});
    if let Some((_, ext)) = name.rsplit_once('.')
        && !ext.is_empty()
    {
        v["extension"] = json!(ext);
    }
    v
}

pub(crate) async fn browse_root(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    browse(api, key, slug, String::new()).await
}

pub(crate) async fn browse_path(api: Api, Path((key, slug, path)): Path<(String, String, String)>) -> Result<Response, ApiError> {
    browse(api, key, slug, path).await
}

/// Resolves `?at=` and checks the path: `(commit id, the revision as the caller named it)`.
async fn locate(api: &Api, git: &Git, path: &str) -> Result<(String, String), ApiError> {
    let refs = git.refs().await?;
    let at = api.q.get("at").filter(|a| !a.is_empty());
    let commit = git.resolve(&refs, at).await?.ok_or_else(|| match at {
        Some(a) => ApiError::no_commit(a),
        None => ApiError::no_path(path, "the default branch (the repository is empty)"),
    })?;
    let label = at.map(str::to_owned).or(refs.head.clone()).unwrap_or_else(|| commit.clone());
    Ok((commit, label))
}

/// `GET …/browse[/{path}]?at=`: a directory's children, or a file's lines, paged.
async fn browse(api: Api, key: String, slug: String, path: String) -> Result<Response, ApiError> {
    let (repo, _) = api.repo(&key, &slug, Permission::Read, "see this repository")?;
    let path = checked_path(Some(&path))?.to_owned();
    let git = Git::new(&api, &repo);
    let (commit, label) = locate(&api, &git, &path).await?;
    let object = format!("{commit}:{path}");
    let kind = git.text(&["cat-file", "-t", &object]).await?.map(|k| k.trim().to_owned()).ok_or_else(|| ApiError::no_path(&path, &label))?;
    match kind.as_str() {
        "tree" => {
            let page = api.q.page()?;
            let out = git.run(&["ls-tree", "-z", "-l", &object]).await?.ok_or_else(|| ApiError::no_path(&path, &label))?;
            let mut children = Vec::new();
            for entry in out.split(|b| *b == 0).filter(|e| !e.is_empty()) {
                let entry = String::from_utf8_lossy(entry);
                let Some((meta, name)) = entry.split_once('\t') else { continue };
                let f: Vec<&str> = meta.split_whitespace().collect();
                let [_mode, kind, id, size] = f[..] else { continue };
                let kind = match kind {
                    "tree" => "DIRECTORY",
                    "commit" => "SUBMODULE",
                    _ => "FILE",
                };
                let mut child = json!({"path": path_json(name), "contentId": id, "type": kind});
                if let Ok(size) = size.parse::<u64>() {
                    child["size"] = json!(size);
                }
                children.push(child);
            }
            children.sort_by_key(|c| (c["type"] != "DIRECTORY", c["path"]["name"].as_str().unwrap_or("").to_owned()));
            Ok(ok(StatusCode::OK, json!({"path": path_json(&path), "revision": label, "children": paged(children, page)})))
        }
        "blob" => {
            let size: u64 = git.text(&["cat-file", "-s", &object]).await?.and_then(|s| s.trim().parse().ok()).unwrap_or(0);
            let data = if size <= BROWSE_FILE_LIMIT { git.run(&["cat-file", "blob", &object]).await?.unwrap_or_default() } else { Vec::new() };
            let binary = size > BROWSE_FILE_LIMIT || data.contains(&0);
            let page = match api.q.get("limit") {
                Some(_) => api.q.page()?,
                None => PageReq { start: api.q.page()?.start, limit: DEFAULT_LINES },
            };
            if binary {
                return Ok(ok(
                    StatusCode::OK,
                    json!({"binary": true, "path": path_json(&path), "size": 0, "start": page.start, "limit": page.limit, "isLastPage": true, "lines": []}),
                ));
            }
            let text = String::from_utf8_lossy(&data);
            let lines: Vec<&str> = if text.is_empty() { Vec::new() } else { text.strip_suffix('\n').unwrap_or(&text).split('\n').collect() };
            let total = lines.len();
            let slice: Vec<Value> = lines.into_iter().skip(page.start).take(page.limit).map(|l| json!({"text": l})).collect();
            let last = page.start.saturating_add(page.limit) >= total;
            let size = slice.len();
            let mut v = json!({"lines": slice, "start": page.start, "size": size, "isLastPage": last, "limit": page.limit});
            if !last {
                v["nextPageStart"] = json!(page.start + page.limit);
            }
            Ok(ok(StatusCode::OK, v))
        }
        _ => Err(ApiError::no_path(&path, &label)),
    }
}

pub(crate) async fn files_root(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    files(api, key, slug, String::new()).await
}

pub(crate) async fn files_path(api: Api, Path((key, slug, path)): Path<(String, String, String)>) -> Result<Response, ApiError> {
    files(api, key, slug, path).await
}

/// `GET …/files[/{path}]?at=`: every file below a directory, recursively, as paths relative
/// to it (a page of strings, as Bitbucket lists them).
async fn files(api: Api, key: String, slug: String, path: String) -> Result<Response, ApiError> {
    let page = api.q.page()?;
    let (repo, _) = api.repo(&key, &slug, Permission::Read, "see this repository")?;
    let path = checked_path(Some(&path))?.to_owned();
    let git = Git::new(&api, &repo);
    let (commit, label) = locate(&api, &git, &path).await?;
    let object = format!("{commit}:{path}");
    if git.text(&["cat-file", "-t", &object]).await?.as_deref().map(str::trim) != Some("tree") {
        return Err(ApiError::no_path(&path, &label));
    }
    let out = git.run(&["ls-tree", "-r", "-z", "--name-only", &object]).await?.ok_or_else(|| ApiError::no_path(&path, &label))?;
    let values = out.split(|b| *b == 0).filter(|e| !e.is_empty()).map(|e| json!(String::from_utf8_lossy(e))).collect();
    Ok(ok(StatusCode::OK, paged(values, page)))
}

/// `GET …/raw/{path}?at=`: the file's bytes, streamed from `git cat-file`. Text is served as
/// `text/plain;charset=UTF-8`, anything else as `application/octet-stream`; never as HTML.
pub(crate) async fn raw(api: Api, Path((key, slug, path)): Path<(String, String, String)>) -> Result<Response, ApiError> {
    let (repo, _) = api.repo(&key, &slug, Permission::Read, "see this repository")?;
    let path = checked_path(Some(&path))?.to_owned();
    let git = Git::new(&api, &repo);
    let (commit, label) = locate(&api, &git, &path).await?;
    let object = format!("{commit}:{path}");
    if git.text(&["cat-file", "-t", &object]).await?.as_deref().map(str::trim) != Some("blob") {
        return Err(ApiError::no_path(&path, &label));
    }
    let mut child = git.command(&["cat-file", "blob", &object]).spawn().map_err(|e| ApiError::Internal(format!("spawn git cat-file: {e}")))?;
    let mut stdout = child.stdout.take().ok_or_else(|| ApiError::Internal("git cat-file has no stdout".into()))?;
    let mut first = vec![0u8; 8192];
    let mut filled = 0;
    while filled < first.len() {
        let n = stdout.read(&mut first[filled..]).await.map_err(|e| ApiError::Internal(format!("read git cat-file: {e}")))?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    first.truncate(filled);
    // UTF-8 without NUL bytes is text; a character cut at the end of the first chunk still is.
    let text = !first.contains(&0) && std::str::from_utf8(&first).map_or_else(|e| e.error_len().is_none(), |_| true);
    let rest = futures_util::stream::unfold((stdout, child), |(mut out, child)| async move {
        let mut buf = vec![0u8; 64 * 1024];
        match out.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<Bytes, std::io::Error>(Bytes::from(buf)), (out, child)))
            }
        }
    });
    let head = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(Bytes::from(first)) });
    let mut r = Response::new(Body::from_stream(futures_util::StreamExt::chain(head, rest)));
    let ct = if text { "text/plain;charset=UTF-8" } else { "application/octet-stream" };
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox"));
    r.extensions_mut().insert(RawFile);
    Ok(r)
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn only_plain_paths_and_safe_branch_names_are_accepted() {
        for p in ["", "a", "a/b.txt", "dir/-x"] {
            assert!(valid_path(p), "{p:?}");
        }
        for p in ["..", "a/../b", "a//b", "./a", "a\nb"] {
            assert!(!valid_path(p), "{p:?}");
        }
        for b in ["main", "feature/x", "v1.0"] {
            assert!(valid_branch_name(b), "{b:?}");
        }
        for b in ["", "-x", "a..b", "a/.b", "x.lock", "a b", "a:b", "a~1", "a/", "--upload-pack=x"] {
            assert!(!valid_branch_name(b), "{b:?}");
        }
        assert!(is_hex_id("abcd1234") && !is_hex_id("abc") && !is_hex_id("--all"));
    }

    #[test]
    fn log_records_become_bitbucket_commits() {
        let rec = "0123456789abcdef0123456789abcdef01234567\u{1f}Ann\u{1f}ann@example.com\u{1f}1700000000\u{1f}Cid\u{1f}cid@example.com\u{1f}1700000001\u{1f}aaaa bbbb\u{1f}subject\n\nbody\n";
        let v = commit_json(rec).unwrap();
        assert_eq!(v["displayId"], "0123456789a");
        assert_eq!(v["authorTimestamp"], 1_700_000_000_000i64);
        assert_eq!(v["message"], "subject\n\nbody");
        assert_eq!(v["parents"][1]["id"], "bbbb");
    }
}
