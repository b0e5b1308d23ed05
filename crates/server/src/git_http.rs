//! Git smart HTTP (gitprotocol-http): `info/refs`, `git-upload-pack` and `git-receive-pack` on
//! `/scm/{KEY}/{slug}.git`, `/git/{KEY}/{slug}.git` and `/scm/~{user}/{slug}.git`.
//!
//! A thin adapter: it parses the URL and headers, asks the access service, and renders; the
//! packs themselves come from the git service (`git_service.rs`), which runs `git upload-pack` /
//! `git receive-pack --stateless-rpc`. Request and response bodies stream through it, so a
//! multi-gigabyte push never sits in memory.

use std::io::Read as _;

use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use trove_store::{Authenticated, Owner, Permission, Repo};

use crate::AppState;
use crate::access::{self, AccessError};
use crate::auth;
use crate::budget::{BodyBudget, Held};
use crate::error::HttpError;
pub(crate) use crate::git_service::Service;
use crate::git_service::{self, Call, GitError, Input, Pusher};
use crate::pktline;
use crate::public_url::RequestView;

impl Service {
    pub(crate) fn from_query(query: Option<&str>) -> Option<Service> {
        let query = query?;
        query.split('&').find_map(|pair| pair.strip_prefix("service=").and_then(Service::from_name))
    }
}

impl From<GitError> for HttpError {
    fn from(e: GitError) -> HttpError {
        match e {
            GitError::Restrictions { unavailable: true, .. } => HttpError::DatabaseDown(e.to_string()),
            e => HttpError::Internal(e.to_string()),
        }
    }
}

/// Parses the owner and repository segments of a clone URL: `TP` + `test.git`, `~justme` + `dots`.
/// The `.git` suffix is optional, as on Bitbucket. (The access service parses the same way.)
#[cfg(test)]
pub(crate) fn parse_repo_segments(owner: &str, repo: &str) -> Result<(Owner, trove_store::RepoSlug), trove_store::NameError> {
    let owner = Owner::parse(owner)?;
    let slug = trove_store::RepoSlug::parse(repo.strip_suffix(".git").unwrap_or(repo))?;
    Ok((owner, slug))
}

/// A caller allowed to do what they asked with a repository.
pub(crate) struct Access {
    pub(crate) repo: Repo,
    pub(crate) who: Option<Authenticated>,
}

/// Authenticates the caller and asks the access service whether they may do `need` with the
/// repository; its answer is rendered as git expects: 401 with a challenge (anonymous: git
/// retries with credentials), 404 (may not read, or does not exist) or 403 (may read but not
/// write).
pub(crate) async fn authorize(
    state: &AppState,
    owner: &str,
    repo: &str,
    headers: &HeaderMap,
    view: &RequestView,
    need: Permission,
) -> Result<Access, HttpError> {
    let header = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let who = auth::authenticate(state, header, view.client_ip, auth::Channel::Git).await?;
    let who_for_lookup = who.clone();
    // The `.git` suffix is optional, as on Bitbucket.
    let (owner, slug) = (owner.to_owned(), repo.strip_suffix(".git").unwrap_or(repo).to_owned());
    let (owner_c, slug_c) = (owner.clone(), slug.clone());
    let (owner_m, slug_m, who_m) = (owner.clone(), slug.clone(), who.clone());
    let decided = state.store.run(move |s| access::repo(s, who_for_lookup.as_ref(), &owner, &slug, need)).await;
    if matches!(decided, Err(AccessError::Anonymous(_) | AccessError::Hidden(_))) {
        // Renamed or moved: the old URL leads to the new one, for whoever may read it.
        let moved =
            state.store.run(move |s| access::moved(s, who_m.as_ref(), &owner_m, &slug_m)).await.map_err(|e| HttpError::store("permission lookup", e))?;
        if let Some(r) = moved {
            return Err(HttpError::Moved(state.urls.clone_url(view, &r.owner, &r.slug)));
        }
    }
    match decided {
        Ok(granted) => Ok(Access { repo: granted.repo, who }),
        Err(AccessError::Anonymous(_)) => Err(HttpError::AuthRequired),
        Err(AccessError::Hidden(name)) => {
            tracing::debug!(repo = %name, "repository not found or not readable");
            Err(HttpError::NotFound)
        }
        Err(AccessError::Forbidden(repo)) => {
            // Refused with a token too weak for this: say so if the user themselves may.
            let token = match &who {
                Some(a) if a.token_scope.is_some_and(|cap| cap < need) => {
                    let uncapped = trove_store::Authenticated { user: a.user.clone(), token_scope: None };
                    let user_may = state.store.run(move |s| access::repo(s, Some(&uncapped), &owner_c, &slug_c, need).is_ok()).await;
                    a.token_scope.filter(|_| user_may)
                }
                _ => None,
            };
            Err(HttpError::PushForbidden { user: who.map(|a| a.user.name.to_string()).unwrap_or_default(), repo, token })
        }
        Err(AccessError::Store(e)) => Err(HttpError::store("permission lookup", e)),
    }
}

/// The owner and repository path segments; a path that does not even decode (bad
/// percent-encoding) names no repository, so it is 404 like any other unknown name.
fn segments(path: Result<Path<(String, String)>, PathRejection>) -> Result<(String, String), HttpError> {
    path.map(|Path(p)| p).map_err(|e| {
        tracing::debug!(error = %e, "undecodable repository path");
        HttpError::NotFound
    })
}

/// The validated `Git-Protocol` header, if any; anything invalid is dropped, as git
/// http-backend does.
fn git_protocol(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("git-protocol")?.to_str().ok()?;
    pktline::valid_git_protocol(v).then(|| v.to_owned())
}

fn no_cache(headers: &mut HeaderMap) {
    headers.insert(header::EXPIRES, HeaderValue::from_static("Fri, 01 Jan 1980 00:00:00 GMT"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, max-age=0, must-revalidate"));
}

/// `GET …/info/refs?service=git-upload-pack|git-receive-pack`.
pub(crate) async fn info_refs(
    State(state): State<AppState>,
    Extension(view): Extension<RequestView>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let (owner, repo) = segments(path)?;
    let service = Service::from_query(query.as_deref())
        .ok_or(HttpError::ServiceForbidden("Only smart HTTP is served: ask for ?service=git-upload-pack or git-receive-pack."))?;
    let access = match authorize(&state, &owner, &repo, &headers, &view, service.needs()).await {
        Err(HttpError::Moved(clone)) => return Err(HttpError::Moved(format!("{clone}/info/refs?{}", query.as_deref().unwrap_or("")))),
        other => other?,
    };
    let protocol = git_protocol(&headers);
    let v2 = service == Service::UploadPack && protocol.as_deref().is_some_and(pktline::wants_v2);
    let path = state.store.repo_path(&access.repo);
    let answer = git_service::advertise_refs(&state, service, &path, protocol.as_deref()).await?;
    let stdout = answer.map_err(|out| {
        HttpError::Internal(format!(
            "git {} --advertise-refs for {} exited with {}: {}",
            service.subcommand(),
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    })?;
    // In protocol v2 the preamble is left out, as git http-backend does.
    let mut body = if v2 { Vec::new() } else { pktline::service_preamble(service.name()) };
    body.extend_from_slice(&stdout);
    let mut resp = Response::new(Body::from(body));
    let ct = format!("application/x-{}-advertisement", service.name());
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_str(&ct).expect("ascii"));
    no_cache(resp.headers_mut());
    Ok(resp)
}

pub(crate) async fn upload_pack(
    state: State<AppState>,
    view: Extension<RequestView>,
    path: Result<Path<(String, String)>, PathRejection>,
    req: Request,
) -> Result<Response, HttpError> {
    rpc(state, view, path, req, Service::UploadPack).await
}

pub(crate) async fn receive_pack(
    state: State<AppState>,
    view: Extension<RequestView>,
    path: Result<Path<(String, String)>, PathRejection>,
    req: Request,
) -> Result<Response, HttpError> {
    rpc(state, view, path, req, Service::ReceivePack).await
}

/// Reads a whole body, refusing more than `limit` bytes.
async fn read_capped(body: Body, limit: u64, budget: &BodyBudget, held: &mut Held) -> Result<Bytes, HttpError> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| HttpError::BadRequest(format!("request body: {e}")))?;
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(HttpError::RequestTooLarge { limit });
        }
        // Counted as it arrives, so a body that never finishes holds only what it sent.
        budget.take(held, chunk.len() as u64)?;
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Inflates a gzip body, refusing output beyond `limit` (a small gzip body can inflate to
/// gigabytes).
pub(crate) fn gunzip_capped(compressed: &[u8], limit: u64) -> Result<Bytes, HttpError> {
    let mut out = Vec::new();
    let decoder = flate2::read::GzDecoder::new(compressed);
    decoder.take(limit + 1).read_to_end(&mut out).map_err(|e| HttpError::BadRequest(format!("request body is not valid gzip: {e}")))?;
    if out.len() as u64 > limit {
        return Err(HttpError::RequestTooLarge { limit });
    }
    Ok(Bytes::from(out))
}

/// `POST …/git-upload-pack` and `POST …/git-receive-pack`.
async fn rpc(
    State(state): State<AppState>,
    Extension(view): Extension<RequestView>,
    path: Result<Path<(String, String)>, PathRejection>,
    req: Request,
    service: Service,
) -> Result<Response, HttpError> {
    let (owner, repo) = segments(path)?;
    let (parts, body) = req.into_parts();
    let expected = format!("application/x-{}-request", service.name());
    if parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return Err(HttpError::UnsupportedMediaType { expected });
    }
    let access = authorize(&state, &owner, &repo, &parts.headers, &view, service.needs()).await?;
    let limit = state.git.max_inflated_request_bytes;
    // Memory of a body read whole, given back when this request is done with it.
    let mut held = BodyBudget::none();
    let encoding = parts.headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    let input = match encoding.as_deref() {
        // git gzips only fetch negotiation (remote-curl.c post_rpc), which is small: reading
        // it whole lets an oversized one get a clean 413 before any process starts.
        // (A gzip-encoded push would be read whole too, within the same cap.)
        Some("gzip" | "x-gzip") => {
            let compressed = read_capped(body, limit, &state.bodies, &mut held).await?;
            let inflated = gunzip_capped(&compressed, limit)?;
            state.bodies.take(&mut held, inflated.len() as u64)?;
            Input::Buffered(inflated)
        }
        None | Some("identity") => {
            let len = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
            match service {
                // A fetch request is only wants and haves, and it must be read whole before a
                // pack slot is taken: otherwise a client that sends half a request and stalls
                // holds a slot, and a few such clients stop every clone. Capped like gzip bodies.
                Service::UploadPack | Service::UploadArchive => Input::Buffered(read_capped(body, limit, &state.bodies, &mut held).await?),
                // A push is the pack itself, of any size: streamed, never buffered.
                Service::ReceivePack if len == Some(4) => Input::Buffered(read_capped(body, 4, &state.bodies, &mut held).await?),
                Service::ReceivePack => Input::Stream(Box::pin(body.into_data_stream().map(|c| c.map_err(std::io::Error::other)))),
            }
        }
        Some(other) => return Err(HttpError::UnsupportedEncoding(other.to_owned())),
    };
    let content_type = HeaderValue::from_str(&format!("application/x-{}-result", service.name())).expect("ascii");
    if let Input::Buffered(b) = &input
        && pktline::is_probe(b)
    {
        // The probe only asks "would a real request be accepted?"; authorisation above
        // already answered, so no process is needed.
        let mut resp = StatusCode::OK.into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, content_type);
        no_cache(resp.headers_mut());
        return Ok(resp);
    }
    let protocol = git_protocol(&parts.headers);
    let path = state.store.repo_path(&access.repo);
    if let (Service::UploadPack, Input::Buffered(b)) = (service, &input)
        && pktline::is_ls_refs(b)
    {
        // A protocol v2 `ls-refs` (git ls-remote, the start of every v2 fetch): only refs, no
        // pack, so no pack slot; answered from memory while the refs are unchanged.
        let body = match git_service::ls_refs(&state, &path, protocol.as_deref(), b.clone()).await? {
            Ok(answer) => answer,
            Err(out) => {
                // As with a streamed answer: what git wrote (an ERR packet, say) goes back.
                let repo = access.repo.display_path();
                tracing::warn!(%repo, service = service.name(), status = %out.status, stderr = %String::from_utf8_lossy(&out.stderr).trim(), "git exited with failure");
                Bytes::from(out.stdout)
            }
        };
        let mut resp = Response::new(Body::from(body));
        resp.headers_mut().insert(header::CONTENT_TYPE, content_type);
        no_cache(resp.headers_mut());
        return Ok(resp);
    }

    let pusher = match (service, &access.who) {
        (Service::ReceivePack, Some(a)) => Some(Pusher::new(a, view.client_ip, "http")),
        (Service::ReceivePack, None) => return Err(HttpError::AuthRequired),
        _ => None,
    };
    let call = Call { service, repo_id: access.repo.id, repo: access.repo.display_path(), path, protocol, pusher };
    let body = match (service, input, &state.pack_cache) {
        // A fetch (clone) request: answered through the pack cache, which runs git only for
        // the first of identical requests (pack_cache.rs).
        (Service::UploadPack, Input::Buffered(b), Some(cache)) => Body::from_stream(crate::pack_cache::upload_pack(&state, cache, call, b).await?),
        (_, input, _) => Body::from_stream(git_service::stateless_rpc(&state, call, input).await?),
    };
    let mut resp = Response::new(body);
    resp.headers_mut().insert(header::CONTENT_TYPE, content_type);
    no_cache(resp.headers_mut());
    Ok(resp)
}

/// `GET /scm/{KEY}/{slug}.git` in a browser: Bitbucket sends people to the repository's page.
pub(crate) async fn repo_page(
    State(state): State<AppState>,
    Extension(view): Extension<RequestView>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let (owner, repo) = segments(path)?;
    let access = authorize(&state, &owner, &repo, &headers, &view, Permission::Read).await?;
    let base = state.urls.base_url(&view);
    let location = match &access.repo.owner {
        Owner::Project(k) => format!("{base}/projects/{k}/repos/{}/browse", access.repo.slug),
        Owner::User(u) => format!("{base}/users/{u}/repos/{}/browse", access.repo.slug),
    };
    Ok(redirect(&location))
}

pub(crate) fn redirect(location: &str) -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_come_only_from_the_exact_query_value() {
        let cases: &[(Option<&str>, Option<Service>)] = &[
            (Some("service=git-upload-pack"), Some(Service::UploadPack)),
            (Some("service=git-receive-pack"), Some(Service::ReceivePack)),
            (Some("x=1&service=git-receive-pack"), Some(Service::ReceivePack)),
            (Some("service=git-upload-archive"), None),
            (Some("service=upload-pack"), None),
            (None, None),
        ];
        for (q, want) in cases {
            assert_eq!(Service::from_query(*q), *want, "{q:?}");
        }
    }

    #[test]
    fn repo_segments_accept_optional_dot_git_and_refuse_escapes() {
        let ok: &[(&str, &str, &str)] = &[("TP", "test.git", "TP/test"), ("tp", "test", "TP/test"), ("~JustMe", "dots.git", "~justme/dots")];
        for (o, r, want) in ok {
            let (owner, slug) = parse_repo_segments(o, r).unwrap();
            assert_eq!(format!("{owner}/{slug}"), *want);
        }
        let bad: &[(&str, &str)] = &[("..", "test.git"), ("TP", "..git"), ("TP", ".git"), ("TP", "-x.git"), ("~", "a"), ("TP", "a.git.git"), ("T P", "a")];
        for (o, r) in bad {
            assert!(parse_repo_segments(o, r).is_err(), "{o}/{r}");
        }
    }

    #[test]
    fn gzip_bodies_inflate_up_to_the_cap_and_no_further() {
        use std::io::Write as _;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&[b'a'; 1000]).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(gunzip_capped(&gz, 1000).unwrap().len(), 1000);
        assert!(matches!(gunzip_capped(&gz, 999), Err(HttpError::RequestTooLarge { limit: 999 })));
        assert!(matches!(gunzip_capped(b"not gzip", 1000), Err(HttpError::BadRequest(_))));
    }
}
