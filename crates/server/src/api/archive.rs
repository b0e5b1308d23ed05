//! `GET …/archive?at=&format=&path=&prefix=&filename=`: the repository's files at a commit as a
//! zip, tar or gzipped tar, streamed straight from `git archive`'s stdout into the response, so
//! a large repository starts downloading at once and costs the server one 64 KiB buffer, not
//! the archive.
//!
//! Everything that can be refused is decided before the first byte: the format (400), `at`
//! (404), each `path` (400 when malformed, 404 when absent), `prefix` (400). After that, the
//! body ends only when git has exited successfully; if git fails midway the body ends with an
//! error, so hyper aborts the response (no final chunk, or the connection closed short of the
//! `Content-Length`-less end) instead of passing a cut archive off as complete. The child is
//! killed when the body is dropped, which is what happens when the client goes away.

use axum::body::Body;
use axum::extract::Path;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use tokio::io::AsyncReadExt as _;
use tokio::process::{Child, ChildStdout};
use trove_store::Permission;

use super::{Api, ApiError, RawFile};
use crate::repo_read::{Reader, valid_path};

/// Bytes read from git per chunk of the body.
const CHUNK: usize = 64 << 10;

/// An archive format Bitbucket offers: `(name, git's --format, Content-Type)`.
const FORMATS: &[(&str, &str, &str)] =
    &[("zip", "zip", "application/zip"), ("tar", "tar", "application/x-tar"), ("tar.gz", "tar.gz", "application/gzip"), ("tgz", "tgz", "application/gzip")];

/// Bitbucket's file name: `<slug>-<branch or tag>@<commit>.<format>` (`at` a ref; its short
/// name, `/` made `-`), or `<slug>@<commit>.<format>` (`at` a commit id); the commit
/// abbreviated to 11 characters.
pub(crate) fn file_name(slug: &str, ref_name: Option<&str>, commit: &str, format: &str) -> String {
    let short: String = commit.chars().take(11).collect();
    match ref_name {
        Some(r) => format!("{slug}-{}@{short}.{format}", r.replace('/', "-")),
        None => format!("{slug}@{short}.{format}"),
    }
}

/// A `filename` the caller asked for, safe inside a quoted header value.
fn checked_file_name(raw: &str) -> Result<String, ApiError> {
    let ok = !raw.is_empty() && raw.len() <= 255 && raw.chars().all(|c| !c.is_control() && !matches!(c, '"' | '\\' | '/'));
    if ok { Ok(raw.to_owned()) } else { Err(ApiError::invalid("filename", format!("{raw:?} is not a file name; use letters, digits, dots and dashes."))) }
}

/// `prefix` as git wants it: empty, or a relative path ending in `/` (Bitbucket adds the `/`).
fn checked_prefix(raw: Option<&str>) -> Result<String, ApiError> {
    let p = raw.unwrap_or("").trim_end_matches('/');
    if p.is_empty() {
        return Ok(String::new());
    }
    if p.starts_with('/') || !valid_path(p) {
        return Err(ApiError::invalid("prefix", format!("{p:?} is not a relative path to put the archive's files under.")));
    }
    Ok(format!("{p}/"))
}

pub(crate) async fn archive(api: Api, Path((key, slug)): Path<(String, String)>) -> Result<Response, ApiError> {
    let name = api.q.get("format").filter(|f| !f.is_empty()).unwrap_or("zip");
    let &(format, git_format, content_type) = FORMATS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| ApiError::invalid("format", format!("{name:?} is not an archive format; use zip, tar, tar.gz or tgz.")))?;
    let prefix = checked_prefix(api.q.get("prefix"))?;
    let mut paths = Vec::new();
    for p in api.q.all("path") {
        let p = p.trim_matches('/');
        if p.is_empty() {
            continue;
        }
        if !valid_path(p) {
            return Err(ApiError::invalid("path", format!("{p:?} is not a path inside a repository.")));
        }
        paths.push(p.to_owned());
    }
    let asked_name = api.q.get("filename").filter(|f| !f.is_empty()).map(checked_file_name).transpose()?;
    let (repo, _) = api.repo_async(&key, &slug, Permission::Read, "see this repository").await?;
    let git = Reader::new(&api.state, api.store().repo_path(&repo));
    let refs = git.refs().await?;
    let at = api.q.get("at").filter(|a| !a.is_empty());
    let resolved = git.resolve(&refs, at).await?.ok_or_else(|| match at {
        Some(a) => ApiError::no_commit(a),
        None => ApiError::no_commit("of the default branch (the repository is empty)"),
    })?;
    for p in &paths {
        if git.kind(&resolved.commit, p).await?.is_none() {
            return Err(ApiError::no_path(p, &resolved.label));
        }
    }
    // A ref (given, or the default branch) names the file; a commit id does not.
    let ref_name = (resolved.at != resolved.commit).then_some(resolved.label.as_str());
    let file = asked_name.unwrap_or_else(|| file_name(repo.slug.as_str(), ref_name, &resolved.commit, format));

    let mut child = git.archive_stream(&resolved.commit, git_format, &prefix, &paths)?;
    let mut stdout = child.stdout.take().ok_or_else(|| ApiError::Internal("git archive has no stdout".into()))?;
    // The first chunk before the status line: git refusing at once is still a clean 500.
    let mut first = vec![0u8; CHUNK];
    let n = stdout.read(&mut first).await.map_err(|e| ApiError::Internal(format!("read git archive: {e}")))?;
    if n == 0 {
        let status = child.wait().await.map_err(|e| ApiError::Internal(format!("wait for git archive: {e}")))?;
        return Err(ApiError::Internal(format!("git archive wrote nothing and exited with {status}")));
    }
    first.truncate(n);
    let body = futures_util::stream::unfold(Some(Streaming { first: Some(Bytes::from(first)), stdout, child }), next_chunk);
    let mut r = Response::new(Body::from_stream(body));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    r.extensions_mut().insert(RawFile);
    Ok(r)
}

/// The body's state: a chunk read before the response started, git's stdout, and git.
struct Streaming {
    first: Option<Bytes>,
    stdout: ChildStdout,
    child: Child,
}

/// The next chunk of the archive; at git's end of output, its exit status decides between
/// ending the body (success) and an error (which aborts the response).
async fn next_chunk(state: Option<Streaming>) -> Option<(Result<Bytes, std::io::Error>, Option<Streaming>)> {
    let mut s = state?;
    if let Some(first) = s.first.take() {
        return Some((Ok(first), Some(s)));
    }
    let mut buf = vec![0u8; CHUNK];
    match s.stdout.read(&mut buf).await {
        Ok(0) => match s.child.wait().await {
            Ok(status) if status.success() => None,
            Ok(status) => {
                tracing::warn!("git archive failed midway ({status}); the download was aborted");
                Some((Err(std::io::Error::other(format!("git archive exited with {status}"))), None))
            }
            Err(e) => Some((Err(e), None)),
        },
        Ok(n) => {
            buf.truncate(n);
            Some((Ok(Bytes::from(buf)), Some(s)))
        }
        Err(e) => Some((Err(e), None)),
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn files_are_named_as_bitbucket_names_them() {
        let c = "bbb225f16e1aaaabbbbccccddddeeeeffff0000";
        assert_eq!(file_name("example", Some("feature"), c, "tar"), "example-feature@bbb225f16e1.tar");
        assert_eq!(file_name("example", Some("release/4.6"), c, "zip"), "example-release-4.6@bbb225f16e1.zip");
        assert_eq!(file_name("example", None, c, "tar.gz"), "example@bbb225f16e1.tar.gz");
    }

    #[test]
    fn prefixes_get_their_slash_and_stay_inside() {
        assert_eq!(checked_prefix(None).unwrap(), "");
        assert_eq!(checked_prefix(Some("")).unwrap(), "");
        assert_eq!(checked_prefix(Some("repo")).unwrap(), "repo/");
        assert_eq!(checked_prefix(Some("a/b/")).unwrap(), "a/b/");
        for bad in ["/abs", "../up", "a/../b", "a\nb"] {
            assert!(checked_prefix(Some(bad)).is_err(), "{bad:?}");
        }
        assert!(checked_file_name("x.zip").is_ok());
        for bad in ["a\"b", "a/b", "", "a\rb"] {
            assert!(checked_file_name(bad).is_err(), "{bad:?}");
        }
    }
}
