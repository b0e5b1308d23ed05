//! Reading a repository over REST: branches and the default branch, tags, commits, `browse`
//! and `raw`, from `git` spawned with a fixed argv and the same minimal environment as the git
//! endpoints.
//!
//! Nothing a caller sends becomes an option: a revision is accepted only when it is one of the
//! repository's own refs or a hex object id, and only the resolved hex id is passed on, after
//! `--end-of-options`; paths are checked ([`valid_path`]) and only ever follow `<hex id>:` or
//! `--`.

use axum::body::Body;
use axum::extract::Path;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;
use trove_store::Permission;

use super::{Api, ApiError, PageReq, RawFile, envelope, no_content, ok, paged, parse_body};
use crate::repo_read::{BlameSpan, Commit, LogQuery, Reader, RefInfo, valid_path};

/// Largest file `browse` shows as lines; larger files are reported as `binary`-like and read
/// with `raw`. Default 5 MiB.
const BROWSE_FILE_LIMIT: u64 = 5 << 20;
/// Page size for a file's lines when `limit` is not given (Bitbucket shows 500 lines at a time).
const DEFAULT_LINES: usize = 500;

fn reader(api: &Api, repo: &trove_store::Repo) -> Reader {
    Reader::new(&api.state, api.store().repo_path(repo))
}

pub(crate) fn ref_json(r: &RefInfo, kind: &str, default: Option<&str>) -> Value {
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
    let (repo, _) = api.repo_async(&key, &slug, Permission::Read, "see this repository").await?;
    let refs = reader(&api, &repo).refs().await?;
    let filter = api.q.get("filterText");
    let head = refs.head.as_deref();
    let mut list: Vec<&RefInfo> = refs.branches.iter().filter(|b| super::matches_filter(filter, &[&b.short])).collect();
    list.sort_by_key(|b| (Some(b.full.as_str()) != head, b.short.clone()));
    Ok(ok(StatusCode::OK, paged(list.into_iter().map(|b| ref_json(b, "BRANCH", head)).collect(), page)))
}

/// `GET …/branches/default`: 404 while the default branch has no commits.
pub(crate) async fn default_branch(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    let (repo, _) = api.repo_async(&key, &slug, Permission::Read, "see this repository").await?;
    let refs = reader(&api, &repo).refs().await?;
    let head = refs.head.as_deref();
    let b = refs.default_branch().ok_or_else(|| ApiError::NotFound {
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
    let (repo, _) = api.repo_async(&key, &slug, Permission::Admin, "change this repository's default branch").await?;
    let b: BranchBody = parse_body(body)?;
    let id = b.id.ok_or_else(|| ApiError::invalid("id", "The branch id (like refs/heads/main) is required."))?;
    let full = crate::repo_details::default_branch_ref(&id)?;
    if !reader(&api, &repo).set_head(&full).await? {
        return Err(ApiError::Internal(format!("git symbolic-ref HEAD {full} failed")));
    }
    let target = crate::audit::target::repo(&repo);
    api.blocking(move |api| api.audit(crate::audit::Action::RepoUpdate, &target, json!({"defaultBranch": full}))).await;
    Ok(no_content())
}

/// `GET …/tags?filterText=`.
pub(crate) async fn tags(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    let page = api.q.page()?;
    check_order(&api)?;
    let (repo, _) = api.repo_async(&key, &slug, Permission::Read, "see this repository").await?;
    let refs = reader(&api, &repo).refs().await?;
    let filter = api.q.get("filterText");
    let values = refs.tags.iter().filter(|t| super::matches_filter(filter, &[&t.short])).map(|t| ref_json(t, "TAG", None)).collect();
    Ok(ok(StatusCode::OK, paged(values, page)))
}

pub(crate) fn commit_json(c: &Commit) -> Value {
    let short = |s: &str| s.chars().take(11).collect::<String>();
    json!({
        "id": c.id,
        "displayId": short(&c.id),
        "author": {"name": c.author_name, "emailAddress": c.author_email},
        "authorTimestamp": c.author_time * 1000,
        "committer": {"name": c.committer_name, "emailAddress": c.committer_email},
        "committerTimestamp": c.committer_time * 1000,
        "message": c.message,
        "parents": c.parents.iter().map(|p| json!({"id": p, "displayId": short(p)})).collect::<Vec<_>>(),
    })
}

fn checked_path(raw: Option<&str>) -> Result<&str, ApiError> {
    let p = raw.unwrap_or("").trim_matches('/');
    if valid_path(p) { Ok(p) } else { Err(ApiError::invalid("path", format!("{p:?} is not a path inside a repository."))) }
}

/// `GET …/commits?until=&since=&path=&followRenames=&merges=`: newest first from `until`
/// (default: the default branch), excluding what `since` reaches; with `path` and
/// `followRenames=true`, the file's history across renames.
pub(crate) async fn commits(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    let page = api.q.page()?;
    let (repo, _) = api.repo_async(&key, &slug, Permission::Read, "see this repository").await?;
    let git = reader(&api, &repo);
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
        Some(s) => Some(git.resolve(&refs, Some(s)).await?.ok_or_else(|| ApiError::no_commit(s))?.commit),
        None => None,
    };
    let merges = match api.q.get("merges") {
        None | Some("include") => None,
        Some("exclude") => Some(false),
        Some("only") => Some(true),
        Some(m) => return Err(ApiError::invalid("merges", format!("{m:?} is not one of include, exclude, only."))),
    };
    let follow = api.q.bool("followRenames")?.unwrap_or(false);
    let q = LogQuery { until: &until.commit, since: since.as_deref(), skip: page.start, max: page.limit + 1, merges, path, follow };
    let list = git.log(&q).await?.ok_or_else(|| ApiError::Internal("git log failed".into()))?;
    let last = list.len() <= page.limit;
    let values: Vec<Value> = list.iter().take(page.limit).map(commit_json).collect();
    Ok(ok(StatusCode::OK, envelope(values, page, last)))
}

/// `GET …/commits/{commitId}`: a commit by id, or by branch or tag name.
pub(crate) async fn commit(api: Api, Path((key, slug, id)): Path<(String, String, String)>) -> Result<Response, ApiError> {
    let (repo, _) = api.repo_async(&key, &slug, Permission::Read, "see this repository").await?;
    let git = reader(&api, &repo);
    let refs = git.refs().await?;
    let resolved = git.resolve(&refs, Some(&id)).await?.ok_or_else(|| ApiError::no_commit(&id))?;
    let c = git.commit(&resolved.commit).await?.ok_or_else(|| ApiError::no_commit(&id))?;
    Ok(ok(StatusCode::OK, commit_json(&c)))
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
async fn locate(api: &Api, git: &Reader, path: &str) -> Result<(String, String), ApiError> {
    let refs = git.refs().await?;
    let at = api.q.get("at").filter(|a| !a.is_empty());
    let commit = git.resolve(&refs, at).await?.map(|r| r.commit).ok_or_else(|| match at {
        Some(a) => ApiError::no_commit(a),
        None => ApiError::no_path(path, "the default branch (the repository is empty)"),
    })?;
    let label = at.map(str::to_owned).or(refs.head.clone()).unwrap_or_else(|| commit.clone());
    Ok((commit, label))
}

/// `GET …/browse[/{path}]?at=`: a directory's children, or a file's lines, paged.
async fn browse(api: Api, key: String, slug: String, path: String) -> Result<Response, ApiError> {
    let (repo, _) = api.repo_async(&key, &slug, Permission::Read, "see this repository").await?;
    let path = checked_path(Some(&path))?.to_owned();
    let git = reader(&api, &repo);
    let (commit, label) = locate(&api, &git, &path).await?;
    let kind = git.kind(&commit, &path).await?.ok_or_else(|| ApiError::no_path(&path, &label))?;
    if api.q.bool("type")? == Some(true) {
        let t = match kind.as_str() {
            "tree" => "DIRECTORY",
            "commit" => "SUBMODULE",
            _ => "FILE",
        };
        return Ok(ok(StatusCode::OK, json!({"type": t})));
    }
    if api.q.bool("size")? == Some(true) && kind == "blob" {
        return Ok(ok(StatusCode::OK, json!({"size": git.blob_size(&commit, &path).await?.unwrap_or(0)})));
    }
    let blame = api.q.bool("blame")? == Some(true);
    let no_content = api.q.bool("noContent")? == Some(true);
    match kind.as_str() {
        "tree" => {
            let page = api.q.page()?;
            let entries = git.tree(&commit, &path).await?.ok_or_else(|| ApiError::no_path(&path, &label))?;
            let mut children: Vec<Value> = entries
                .iter()
                .map(|e| {
                    let kind = match e.kind.as_str() {
                        "tree" => "DIRECTORY",
                        "commit" => "SUBMODULE",
                        _ => "FILE",
                    };
                    let mut child = json!({"path": path_json(&e.name), "contentId": e.id, "type": kind});
                    if let Some(size) = e.size {
                        child["size"] = json!(size);
                    }
                    child
                })
                .collect();
            children.sort_by_key(|c| (c["type"] != "DIRECTORY", c["path"]["name"].as_str().unwrap_or("").to_owned()));
            Ok(ok(StatusCode::OK, json!({"path": path_json(&path), "revision": label, "children": paged(children, page)})))
        }
        "blob" => {
            let size: u64 = git.blob_size(&commit, &path).await?.unwrap_or(0);
            let data = if size <= BROWSE_FILE_LIMIT { git.blob(&commit, &path).await?.unwrap_or_default() } else { Vec::new() };
            let binary = size > BROWSE_FILE_LIMIT || data.contains(&0);
            let page = match api.q.get("limit") {
                Some(_) => api.q.page()?,
                None => PageReq { start: api.q.page()?.start, limit: DEFAULT_LINES },
            };
            if binary {
                if blame && no_content {
                    return Ok(ok(StatusCode::OK, json!([])));
                }
                let mut v =
                    json!({"binary": true, "path": path_json(&path), "size": 0, "start": page.start, "limit": page.limit, "isLastPage": true, "lines": []});
                if blame {
                    v["blame"] = json!([]);
                }
                return Ok(ok(StatusCode::OK, v));
            }
            let text = String::from_utf8_lossy(&data);
            let lines: Vec<&str> = if text.is_empty() { Vec::new() } else { text.strip_suffix('\n').unwrap_or(&text).split('\n').collect() };
            let total = lines.len();
            let slice: Vec<Value> = lines.into_iter().skip(page.start).take(page.limit).map(|l| json!({"text": l})).collect();
            let last = page.start.saturating_add(page.limit) >= total;
            let size = slice.len();
            // Blame covers the lines of this page.
            let blame_json: Vec<Value> = if blame && size > 0 {
                git.blame(&commit, &path, page.start + 1, page.start + size).await?.unwrap_or_default().iter().map(blame_json).collect()
            } else {
                Vec::new()
            };
            if blame && no_content {
                return Ok(ok(StatusCode::OK, Value::Array(blame_json)));
            }
            let mut v = json!({"lines": slice, "start": page.start, "size": size, "isLastPage": last, "limit": page.limit});
            if !last {
                v["nextPageStart"] = json!(page.start + page.limit);
            }
            if blame {
                v["blame"] = Value::Array(blame_json);
            }
            Ok(ok(StatusCode::OK, v))
        }
        _ => Err(ApiError::no_path(&path, &label)),
    }
}

/// One span of `?blame=true`, as Bitbucket's blame JSON.
fn blame_json(b: &BlameSpan) -> Value {
    let short: String = b.commit.chars().take(11).collect();
    json!({
        "author": {"name": b.author_name, "emailAddress": b.author_email},
        "authorTimestamp": b.author_time * 1000,
        "committer": {"name": b.committer_name, "emailAddress": b.committer_email},
        "committerTimestamp": b.committer_time * 1000,
        "commitHash": b.commit,
        "displayCommitHash": short,
        "commitId": b.commit,
        "commitDisplayId": short,
        "fileName": b.file_name,
        "lineNumber": b.line,
        "spannedLines": b.lines,
    })
}

pub(crate) async fn last_modified_root(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    last_modified(api, key, slug, String::new()).await
}

pub(crate) async fn last_modified_path(api: Api, Path((key, slug, path)): Path<(String, String, String)>) -> Result<Response, ApiError> {
    last_modified(api, key, slug, path).await
}

/// `GET …/last-modified[/{path}]?at=` (`at` required): each child of the directory mapped to
/// the newest commit that changed it, and `latestCommit`, the newest that changed the directory.
async fn last_modified(api: Api, key: String, slug: String, path: String) -> Result<Response, ApiError> {
    api.q.required("at")?;
    let (repo, _) = api.repo_async(&key, &slug, Permission::Read, "see this repository").await?;
    let path = checked_path(Some(&path))?.to_owned();
    let git = reader(&api, &repo);
    let (commit, label) = locate(&api, &git, &path).await?;
    let entries = git.tree(&commit, &path).await?.ok_or_else(|| ApiError::no_path(&path, &label))?;
    let names: Vec<String> = entries.into_iter().map(|e| e.name).collect();
    let found = git.last_modified(&commit, &path, &names).await?;
    let q = LogQuery { until: &commit, skip: 0, max: 1, path: &path, ..LogQuery::default() };
    let latest = git.log(&q).await?.unwrap_or_default().into_iter().next();
    let mut commits: std::collections::HashMap<String, Value> = std::collections::HashMap::new();
    let mut files = serde_json::Map::new();
    for name in &names {
        let Some(id) = found.get(name) else { continue };
        if !commits.contains_key(id) {
            let c = match &latest {
                Some(l) if &l.id == id => Some(l.clone()),
                _ => git.commit(id).await?,
            };
            commits.insert(id.clone(), c.as_ref().map(commit_json).unwrap_or(Value::Null));
        }
        files.insert(name.clone(), commits[id].clone());
    }
    Ok(ok(StatusCode::OK, json!({"files": files, "latestCommit": latest.as_ref().map(commit_json)})))
}

pub(crate) async fn files_root(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    files(api, key, slug, String::new()).await
}

pub(crate) async fn files_path(api: Api, Path((key, slug, path)): Path<(String, String, String)>) -> Result<Response, ApiError> {
    files(api, key, slug, path).await
}

/// `GET …/files[/{path}]?at=&start=&limit=`: every file below a directory, recursively, as
/// paths relative to it (a page of strings, as Bitbucket lists them). Only as much of the tree
/// is read as the page needs ([`Reader::files`]).
async fn files(api: Api, key: String, slug: String, path: String) -> Result<Response, ApiError> {
    let page = api.q.page()?;
    let (repo, _) = api.repo_async(&key, &slug, Permission::Read, "see this repository").await?;
    let path = checked_path(Some(&path))?.to_owned();
    let git = reader(&api, &repo);
    let (commit, label) = locate(&api, &git, &path).await?;
    let found = git.files(&commit, &path, page.start, page.limit).await?.ok_or_else(|| ApiError::no_path(&path, &label))?;
    let values = found.paths.into_iter().map(Value::from).collect();
    Ok(ok(StatusCode::OK, envelope(values, page, found.last)))
}

/// `GET …/raw/{path}?at=`: the file's bytes, streamed from `git cat-file`. Text is served as
/// `text/plain;charset=UTF-8`, anything else as `application/octet-stream`; never as HTML.
pub(crate) async fn raw(api: Api, Path((key, slug, path)): Path<(String, String, String)>) -> Result<Response, ApiError> {
    let (repo, _) = api.repo_async(&key, &slug, Permission::Read, "see this repository").await?;
    let path = checked_path(Some(&path))?.to_owned();
    let git = reader(&api, &repo);
    let (commit, label) = locate(&api, &git, &path).await?;
    if git.kind(&commit, &path).await?.as_deref() != Some("blob") {
        return Err(ApiError::no_path(&path, &label));
    }
    let mut child = git.blob_stream(&commit, &path)?;
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
    use crate::repo_details::valid_branch_name;
    use crate::repo_read::is_hex_id;

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
        let c = Commit {
            id: "0123456789abcdef0123456789abcdef01234567".into(),
            short: "0123456".into(),
            parents: vec!["aaaa".into(), "bbbb".into()],
            author_name: "Ann".into(),
            author_email: "ann@example.com".into(),
            author_time: 1_700_000_000,
            author_date: "2023-11-14 22:13 +0000".into(),
            committer_name: "Cid".into(),
            committer_email: "cid@example.com".into(),
            committer_time: 1_700_000_001,
            message: "subject\n\nbody".into(),
        };
        let v = commit_json(&c);
        assert_eq!(v["displayId"], "0123456789a");
        assert_eq!(v["authorTimestamp"], 1_700_000_000_000i64);
        assert_eq!(v["message"], "subject\n\nbody");
        assert_eq!(v["parents"][1]["id"], "bbbb");
    }
}
