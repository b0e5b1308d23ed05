//! Git smart HTTP (gitprotocol-http): `info/refs`, `git-upload-pack` and `git-receive-pack` on
//! `/scm/{KEY}/{slug}.git`, `/git/{KEY}/{slug}.git` and `/scm/~{user}/{slug}.git`.
//!
//! The packs themselves come from `git upload-pack` / `git receive-pack --stateless-rpc`, spawned
//! with a fixed argv and an environment we build from nothing; request and response bodies
//! stream through them, so a multi-gigabyte push never sits in memory.

use std::ffi::OsString;
use std::io::Read as _;
use std::net::IpAddr;
use std::path::{Path as FsPath, PathBuf};
use std::process::{Output, Stdio};

use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::Command;
use trove_store::{Authenticated, Owner, Permission, Repo};

use crate::AppState;
use crate::access::{self, AccessError};
use crate::auth;
use crate::budget::{BodyBudget, Held};
use crate::error::HttpError;
use crate::pktline;
use crate::public_url::RequestView;

/// The two smart-HTTP services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    UploadPack,
    ReceivePack,
}

impl Service {
    pub(crate) fn from_query(query: Option<&str>) -> Option<Service> {
        let query = query?;
        query.split('&').find_map(|pair| match pair {
            "service=git-upload-pack" => Some(Service::UploadPack),
            "service=git-receive-pack" => Some(Service::ReceivePack),
            _ => None,
        })
    }

    /// `git-upload-pack` / `git-receive-pack`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Service::UploadPack => "git-upload-pack",
            Service::ReceivePack => "git-receive-pack",
        }
    }

    /// The git subcommand.
    fn subcommand(self) -> &'static str {
        &self.name()[4..]
    }

    fn needs(self) -> Permission {
        match self {
            Service::UploadPack => Permission::Read,
            Service::ReceivePack => Permission::Write,
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
    let who = auth::authenticate(&state.store, &state.limiter, header, view.client_ip).await?;
    let store = state.store.clone();
    let who_for_lookup = who.clone();
    // The `.git` suffix is optional, as on Bitbucket.
    let (owner, slug) = (owner.to_owned(), repo.strip_suffix(".git").unwrap_or(repo).to_owned());
    let decided = tokio::task::spawn_blocking(move || access::repo(&store, who_for_lookup.as_ref(), &owner, &slug, need))
        .await
        .map_err(|e| HttpError::Internal(format!("permission lookup panicked: {e}")))?;
    match decided {
        Ok(granted) => Ok(Access { repo: granted.repo, who }),
        Err(AccessError::Anonymous(_)) => Err(HttpError::AuthRequired),
        Err(AccessError::Hidden(name)) => {
            tracing::debug!(repo = %name, "repository not found or not readable");
            Err(HttpError::NotFound)
        }
        Err(AccessError::Forbidden(repo)) => Err(HttpError::PushForbidden { user: who.map(|a| a.user.name.to_string()).unwrap_or_default(), repo }),
        Err(AccessError::Store(e)) => Err(HttpError::Internal(format!("permission lookup: {e}"))),
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

fn child_env(state: &AppState, protocol: Option<&str>, pusher: Option<(&Authenticated, Option<IpAddr>)>) -> Vec<(OsString, OsString)> {
    let mut env = trove_store::git_env(state.store.git_home());
    if let Some(p) = protocol {
        env.push(("GIT_PROTOCOL".into(), p.into()));
    }
    if let Some((a, ip)) = pusher {
        // As git http-backend does, so reflogs record who pushed.
        let email = a.user.email.clone().unwrap_or_else(|| match ip {
            Some(ip) => format!("{}@http.{ip}", a.user.name),
            None => format!("{}@http", a.user.name),
        });
        env.push(("GIT_COMMITTER_NAME".into(), a.user.display_name.clone().into()));
        env.push(("GIT_COMMITTER_EMAIL".into(), email.into()));
        env.push(("TROVE_USER".into(), a.user.name.as_str().into()));
    }
    env
}

fn no_cache(headers: &mut HeaderMap) {
    headers.insert(header::EXPIRES, HeaderValue::from_static("Fri, 01 Jan 1980 00:00:00 GMT"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, max-age=0, must-revalidate"));
}

fn git_command(state: &AppState, env: Vec<(OsString, OsString)>) -> Command {
    let mut cmd = Command::new(&state.git.binary);
    cmd.env_clear().envs(env).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// Counts one git process serving a request, from spawn until it is reaped or abandoned.
struct Running(AppState);

impl Running {
    fn start(state: &AppState) -> Running {
        state.running.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        state.started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Running(state.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Runs `git <args> <repo>` to the end with `input` on its stdin, for the short, read-only
/// advertisements. A request that goes away takes the process with it.
async fn run_git(state: &AppState, env: Vec<(OsString, OsString)>, args: &[&str], repo: &FsPath, input: Option<Bytes>) -> Result<Output, HttpError> {
    let mut cmd = git_command(state, env);
    cmd.args(args).arg(repo).kill_on_drop(true);
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let _running = Running::start(state);
    let mut child = cmd.spawn().map_err(|e| HttpError::Internal(format!("spawn git {} for {}: {e}", args[0], repo.display())))?;
    let stdin = child.stdin.take();
    let feed = async move {
        if let (Some(mut w), Some(b)) = (stdin, input) {
            // git stops reading only on a request it refuses; its answer says why.
            let _ = w.write_all(&b).await;
            let _ = w.shutdown().await;
        }
    };
    let (_, out) = tokio::join!(feed, child.wait_with_output());
    out.map_err(|e| HttpError::Internal(format!("wait for git {} for {}: {e}", args[0], repo.display())))
}

/// git's answer to an advertisement `question` (which says everything about the request that git
/// sees: the endpoint, `GIT_PROTOCOL`, the body) about the repository at `repo`: remembered while
/// the repository's refs and configuration are byte for byte what they were when git gave it,
/// otherwise from `git` (and remembered when git succeeded and the refs did not change while it
/// ran). `Err(output)` when git failed.
async fn advertised(
    state: &AppState,
    repo: &FsPath,
    question: Vec<u8>,
    git: impl std::future::Future<Output = Result<Output, HttpError>>,
) -> Result<Result<Bytes, Output>, HttpError> {
    let read_state = || {
        let (state, repo) = (state.clone(), repo.to_owned());
        async move { tokio::task::spawn_blocking(move || state.adverts.state(&repo)).await.unwrap_or(None) }
    };
    let before = read_state().await;
    if let Some(s) = &before
        && let Some(answer) = state.adverts.get(repo, s, &question)
    {
        return Ok(Ok(answer));
    }
    let out = git.await?;
    if !out.status.success() {
        return Ok(Err(out));
    }
    let answer = Bytes::from(out.stdout);
    if let Some(s) = before
        && read_state().await.as_ref() == Some(&s)
    {
        state.adverts.put(repo, s, question, answer.clone());
    }
    Ok(Ok(answer))
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
    let access = authorize(&state, &owner, &repo, &headers, &view, service.needs()).await?;
    let protocol = git_protocol(&headers);
    let v2 = service == Service::UploadPack && protocol.as_deref().is_some_and(pktline::wants_v2);
    let path = state.store.repo_path(&access.repo);
    let env = child_env(&state, protocol.as_deref(), None);
    let args = [service.subcommand(), "--stateless-rpc", "--advertise-refs"];
    let answer = match service {
        // git ls-remote, and the first request of every clone and fetch: answered from memory
        // while the refs are unchanged (advert.rs).
        Service::UploadPack => {
            let mut question = b"info/refs upload-pack\0".to_vec();
            question.extend_from_slice(protocol.as_deref().unwrap_or("").as_bytes());
            advertised(&state, &path, question, run_git(&state, env, &args, &path, None)).await?
        }
        // Pushes are rarer, and git receive-pack also advertises the alternates' refs.
        Service::ReceivePack => {
            run_git(&state, env, &args, &path, None).await.map(|out| if out.status.success() { Ok(Bytes::from(out.stdout)) } else { Err(out) })?
        }
    };
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

/// Where the child's stdin comes from.
enum Input {
    /// Already read (a gzip body, inflated; or a short body read to spot the probe).
    Buffered(Bytes),
    /// Streamed as it arrives.
    Stream(Body),
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
                Service::UploadPack => Input::Buffered(read_capped(body, limit, &state.bodies, &mut held).await?),
                // A push is the pack itself, of any size: streamed, never buffered.
                Service::ReceivePack if len == Some(4) => Input::Buffered(read_capped(body, 4, &state.bodies, &mut held).await?),
                Service::ReceivePack => Input::Stream(body),
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
        let mut question = b"ls-refs\0".to_vec();
        question.extend_from_slice(protocol.as_deref().unwrap_or("").as_bytes());
        question.push(0);
        question.extend_from_slice(b);
        let env = child_env(&state, protocol.as_deref(), None);
        let args = [service.subcommand(), "--stateless-rpc"];
        let git = run_git(&state, env, &args, &path, Some(b.clone()));
        let body = match advertised(&state, &path, question, git).await? {
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

    // Bound concurrent pack generation: pack-objects is CPU- and memory-heavy, and a queue is
    // kinder to everyone than a thundering herd. Pushes only index what they receive.
    let permit = match service {
        Service::UploadPack => Some(state.packs.clone().acquire_owned().await.map_err(|e| HttpError::Internal(e.to_string()))?),
        Service::ReceivePack => None,
    };

    let pusher = match (service, &access.who) {
        (Service::ReceivePack, Some(a)) => Some((a, view.client_ip)),
        (Service::ReceivePack, None) => return Err(HttpError::AuthRequired),
        _ => None,
    };
    let mut env = child_env(&state, protocol.as_deref(), pusher);
    // Where this push's post-receive hook writes the refs it moved (`events.rs`).
    let updates = match service {
        Service::ReceivePack => {
            let f = crate::events::updates_file(state.store.git_home()).map_err(|e| HttpError::Internal(format!("push updates file: {e}")))?;
            env.push(("TROVE_REF_UPDATES".into(), f.clone().into()));
            Some(f)
        }
        Service::UploadPack => None,
    };
    let pusher_name = pusher.map(|(a, _)| a.user.name.to_string()).unwrap_or_default();
    let mut cmd = git_command(&state, env);
    if service == Service::ReceivePack {
        // Trove's own hooks (`hooks.rs`), never the repository's: a pushed or copied-in hook
        // must not run as the server.
        cmd.arg("-c").arg(format!("core.hooksPath={}", crate::hooks::dir(state.store.git_home()).display()));
    }
    cmd.arg(service.subcommand()).arg("--stateless-rpc").arg(&path).stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| HttpError::Internal(format!("spawn git {}: {e}", service.subcommand())))?;
    state.running.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    state.started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let stdin = child.stdin.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");

    let repo_name = access.repo.display_path();
    tokio::spawn(feed(stdin, input, repo_name.clone()));
    let push = updates.map(|file| (file, pusher_name));
    tokio::spawn(supervise(state.clone(), child, stderr, permit, service, access.repo.id, path, repo_name, push));

    let mut resp = Response::new(Body::from_stream(stream_stdout(stdout)));
    resp.headers_mut().insert(header::CONTENT_TYPE, content_type);
    no_cache(resp.headers_mut());
    Ok(resp)
}

/// Copies the request body into git's stdin. When the body ends early (the client went away
/// mid-push), stdin is closed: git sees a truncated pack, refuses it, updates no ref and
/// removes its quarantine, which is exactly "the repository is unchanged".
async fn feed(mut stdin: tokio::process::ChildStdin, input: Input, repo: String) {
    match input {
        Input::Buffered(b) => {
            if let Err(e) = stdin.write_all(&b).await {
                tracing::debug!(%repo, error = %e, "git closed its input early");
            }
        }
        Input::Stream(body) => {
            let mut stream = body.into_data_stream();
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(c) => {
                        if let Err(e) = stdin.write_all(&c).await {
                            tracing::debug!(%repo, error = %e, "git closed its input early");
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%repo, error = %e, "request body ended early; git will discard the partial request");
                        break;
                    }
                }
            }
        }
    }
    let _ = stdin.shutdown().await;
}

fn stream_stdout(stdout: tokio::process::ChildStdout) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures_util::stream::unfold(Some(stdout), |state| async move {
        let mut out = state?;
        let mut buf = BytesMut::with_capacity(64 * 1024);
        match out.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(buf.freeze()), Some(out))),
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// Waits for the git child, releases its pack permit, logs failures and schedules maintenance
/// after a successful push. Dropping the response (client gone) closes git's stdout, so an
/// abandoned upload-pack dies of EPIPE on its next write rather than being killed mid-way.
#[allow(clippy::too_many_arguments)]
async fn supervise(
    state: AppState,
    mut child: tokio::process::Child,
    mut stderr: tokio::process::ChildStderr,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    service: Service,
    repo_id: i64,
    path: PathBuf,
    repo: String,
    push: Option<(PathBuf, String)>,
) {
    let collect = tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match stderr.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) if buf.len() < 16 * 1024 => buf.extend_from_slice(&chunk[..n]),
                Ok(_) => {}
            }
        }
        buf
    });
    let status = child.wait().await;
    let err = collect.await.unwrap_or_default();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => tracing::warn!(%repo, service = service.name(), status = %s, stderr = %String::from_utf8_lossy(&err).trim(), "git exited with failure"),
        Err(e) => tracing::error!(%repo, service = service.name(), error = %e, "cannot wait for git"),
    }
    // Whatever git's exit status, the refs the hook saw move did move (a push may move some
    // refs and refuse others): one event with them.
    if let Some((file, user)) = push {
        let text = tokio::fs::read_to_string(&file).await.unwrap_or_default();
        let _ = tokio::fs::remove_file(&file).await;
        let updates = crate::events::parse_updates(&text);
        if !updates.is_empty() {
            state.events.publish(crate::events::PushEvent { repo_id, repo, path, user, updates });
        }
    }
    drop(permit);
    // Last, so that "no git process running" also means "the push's event was published".
    state.running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
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
