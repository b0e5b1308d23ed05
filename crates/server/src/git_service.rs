//! Running `git upload-pack` and `git receive-pack` for a caller on a repository, whatever the
//! transport: the argv and an environment built from nothing (`[git] binary`, Trove's own
//! hooks), spawn, feed, supervise (stderr, exit status, the count of running processes, the push
//! event), and stop. Adapters decide access and speak their protocol; this module runs git.
//!
//! Two ways to run a service:
//! - stateless RPC ([`stateless_rpc`], with [`advertise_refs`] and [`ls_refs`]): one request in,
//!   one response out, `--stateless-rpc`, as smart HTTP needs;
//! - a session ([`session`]): the client's byte stream in and git's stdout out for as long as
//!   the conversation lasts, no `--stateless-rpc`, as SSH needs.
//!
//! Every git process runs in its own process group, so that stopping it (on shutdown, or
//! [`Process::cancel`]) also stops what it started (hooks, index-pack); its feeder and
//! supervisor are tasks of the server's tracker (`tasks.rs`).

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{ExitStatus, Output, Stdio};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use trove_store::{Authenticated, Permission};

use crate::AppState;
use crate::metrics::{GitKind, GitOp};
use crate::tasks::Cancel;

/// The two git services a client may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    UploadPack,
    ReceivePack,
    /// `git archive --remote` (SSH only; smart HTTP has no such service).
    UploadArchive,
}

impl Service {
    fn kind(self) -> GitKind {
        match self {
            // Counted with upload-pack: both read and send repository contents.
            Service::UploadPack | Service::UploadArchive => GitKind::UploadPack,
            Service::ReceivePack => GitKind::ReceivePack,
        }
    }

    /// `git-upload-pack` / `git-receive-pack`, as in URLs and SSH commands.
    pub fn name(self) -> &'static str {
        match self {
            Service::UploadPack => "git-upload-pack",
            Service::ReceivePack => "git-receive-pack",
            Service::UploadArchive => "git-upload-archive",
        }
    }

    /// The service named `git-upload-pack` / `git-receive-pack` (what smart HTTP serves).
    pub fn from_name(name: &str) -> Option<Service> {
        match name {
            "git-upload-pack" => Some(Service::UploadPack),
            "git-receive-pack" => Some(Service::ReceivePack),
            _ => None,
        }
    }

    /// The git subcommand.
    pub(crate) fn subcommand(self) -> &'static str {
        &self.name()[4..]
    }

    /// The permission the service needs on the repository.
    pub(crate) fn needs(self) -> Permission {
        match self {
            Service::UploadPack | Service::UploadArchive => Permission::Read,
            Service::ReceivePack => Permission::Write,
        }
    }
}

/// What went wrong running git. Only for the log: callers answer "internal error".
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("spawn git {what} for {repo}: {source}")]
    Spawn { what: &'static str, repo: String, source: std::io::Error },
    #[error("wait for git {what} for {repo}: {source}")]
    Wait { what: &'static str, repo: String, source: std::io::Error },
    #[error("push updates file: {0}")]
    UpdatesFile(std::io::Error),
    #[error("pack slots: {0}")]
    Slots(#[from] tokio::sync::AcquireError),
    #[error("git {what} for {repo}: {source}")]
    Io { what: &'static str, repo: String, source: std::io::Error },
    #[error("git {0} is only run for someone who logged in")]
    NoPusher(&'static str),
    /// The branch permissions could not be read; `unavailable` when the database is down (503).
    #[error("push to {repo} refused: {detail}")]
    Restrictions { repo: String, detail: String, unavailable: bool },
}

/// Who pushes, for the reflog (as git http-backend records it), the push event and the branch
/// permissions that apply to them.
#[derive(Debug, Clone)]
pub(crate) struct Pusher {
    /// Whose exemptions from branch permissions apply: the user's, or the access key's.
    exempt: crate::branch_permissions::Exempt,
    name: String,
    display_name: String,
    email: String,
}

impl Pusher {
    /// `via` names the transport in the fallback e-mail address (`alice@http.192.0.2.1`).
    pub(crate) fn new(who: &Authenticated, ip: Option<IpAddr>, via: &str) -> Pusher {
        let name = who.user.name.to_string();
        let email = who.user.email.clone().unwrap_or_else(|| match ip {
            Some(ip) => format!("{name}@{via}.{ip}"),
            None => format!("{name}@{via}"),
        });
        Pusher { exempt: crate::branch_permissions::Exempt::User(who.user.id), name, display_name: who.user.display_name.clone(), email }
    }

    /// An SSH access key pushing: named `~access-key-ID` (a name no user can have) in the
    /// reflog, the push event and the audit log; its own branch-permission exemptions apply.
    pub(crate) fn access_key(id: i64, label: &str) -> Pusher {
        let name = format!("~access-key-{id}");
        let display_name = if label.is_empty() { format!("Access key {id}") } else { format!("Access key {id} ({label})") };
        Pusher { exempt: crate::branch_permissions::Exempt::AccessKey(id), email: format!("access-key-{id}@ssh"), name, display_name }
    }
}

/// One run of a service: on which repository, for whom.
pub(crate) struct Call {
    pub(crate) service: Service,
    pub(crate) repo_id: i64,
    /// `TP/test`, for logs and events.
    pub(crate) repo: String,
    /// The bare repository on disk.
    pub(crate) path: PathBuf,
    /// The client's `GIT_PROTOCOL` (`version=2`), validated by the adapter.
    pub(crate) protocol: Option<String>,
    /// Required for receive-pack.
    pub(crate) pusher: Option<Pusher>,
}

/// The environment of every git process, from nothing: git's own (`trove_store::git_env`), the
/// client's protocol, and for a push who pushes.
fn env(state: &AppState, protocol: Option<&str>, pusher: Option<&Pusher>) -> Vec<(OsString, OsString)> {
    let mut env = trove_store::git_env(state.store.git_home());
    if let Some(p) = protocol {
        env.push(("GIT_PROTOCOL".into(), p.into()));
    }
    if let Some(p) = pusher {
        env.push(("GIT_COMMITTER_NAME".into(), p.display_name.clone().into()));
        env.push(("GIT_COMMITTER_EMAIL".into(), p.email.clone().into()));
        env.push(("TROVE_USER".into(), p.name.clone().into()));
    }
    env
}

/// `git` with the configured binary and `env`, in a process group of its own (so stopping it
/// stops its hooks and helpers too), killed if its owner goes away without reaping it.
pub(crate) fn command(binary: &Path, env: &[(OsString, OsString)]) -> Command {
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// `refs/pull-requests/*` are the server's (`pr_git.rs` writes them): receive-pack neither
/// advertises them nor lets a push create, move or delete them ("deny updating a hidden ref",
/// git-config `receive.hideRefs`), before the `pre-receive` hook (`hooks.rs`) has its say.
/// upload-pack still advertises them, so `git fetch origin refs/pull-requests/1/from` works.
const HIDE_PULL_REQUEST_REFS: [&str; 2] = ["-c", "receive.hideRefs=refs/pull-requests"];

/// The argv for `call`: Trove's own hooks for a push (never the repository's: a pushed or
/// copied-in hook must not run as the server), the subcommand, its mode, the repository.
fn service_command(state: &AppState, call: &Call, env: &[(OsString, OsString)], stateless: bool) -> Command {
    let mut cmd = command(&state.git.binary, env);
    if call.service == Service::ReceivePack {
        cmd.args(HIDE_PULL_REQUEST_REFS);
        cmd.arg("-c").arg(format!("core.hooksPath={}", crate::hooks::dir(state.store.git_home()).display()));
        if state.git.maintenance_after_push {
            // Maintenance runs `gc --auto` after the push (`maintenance.rs`), counted, capped
            // and stopped on shutdown; receive-pack's own would detach into a session of its
            // own that none of that sees.
            cmd.args(["-c", "receive.autogc=false"]);
        }
    }
    cmd.arg(call.service.subcommand());
    if stateless {
        cmd.arg("--stateless-rpc");
    }
    cmd.arg(&call.path).stdin(Stdio::piped());
    cmd
}

/// How long a git process asked to stop (SIGTERM, which lets git remove its lock files and
/// quarantine) has before it is killed.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// Sends `signal` to the process group led by `pid`.
fn signal_group(pid: u32, signal: libc::c_int) {
    let Ok(pgid) = libc::pid_t::try_from(pid) else { return };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours. The group is still
    // ours: its leader has not been reaped yet (or, after, members it started keep the id).
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Stops `child` and its process group: SIGTERM, then SIGKILL after [`TERM_GRACE`]; reaps the
/// leader, and kills whatever of the group outlived it.
async fn terminate(child: &mut Child) -> std::io::Result<ExitStatus> {
    let Some(pid) = child.id() else { return child.wait().await };
    signal_group(pid, libc::SIGTERM);
    let status = match tokio::time::timeout(TERM_GRACE, child.wait()).await {
        Ok(s) => s,
        Err(_) => {
            signal_group(pid, libc::SIGKILL);
            child.wait().await
        }
    };
    signal_group(pid, libc::SIGKILL);
    status
}

/// Runs `cmd` to the end with `input` on its stdin and its output collected, stopping it (and
/// its group) when `stop` is given. Dropping the future kills the process.
pub(crate) async fn output_until(mut cmd: Command, input: Option<Bytes>, stop: &Cancel) -> std::io::Result<Output> {
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn()?;
    let stdin = child.stdin.take();
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let feed = async move {
        if let (Some(mut w), Some(b)) = (stdin, input) {
            // git stops reading only on a request it refuses; its answer says why.
            let _ = w.write_all(&b).await;
            let _ = w.shutdown().await;
        }
    };
    let wait = async {
        tokio::select! {
            s = child.wait() => s,
            _ = stop.cancelled() => terminate(&mut child).await,
        }
    };
    let (_, out, err, status) = tokio::join!(feed, read_all(stdout), read_all(stderr), wait);
    Ok(Output { status: status?, stdout: out, stderr: err })
}

async fn read_all(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Some(mut p) = pipe {
        let _ = p.read_to_end(&mut buf).await;
    }
    buf
}

/// Counts one git process serving a client, from spawn until it is reaped.
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

/// Runs a short, read-only stateless-rpc request (`args` then the repository) to the end,
/// counted as a running process. A caller that goes away takes the process with it.
/// receive-pack's advertisement leaves out the refs pushes may not touch.
async fn run_git(state: &AppState, env: Vec<(OsString, OsString)>, args: &[&'static str], path: &Path, input: Option<Bytes>) -> Result<Output, GitError> {
    let mut cmd = command(&state.git.binary, &env);
    if args[0] == Service::ReceivePack.subcommand() {
        cmd.args(HIDE_PULL_REQUEST_REFS);
    }
    cmd.args(args).arg(path);
    let _running = Running::start(state);
    output_until(cmd, input, state.tasks.stop()).await.map_err(|source| GitError::Io { what: args[0], repo: path.display().to_string(), source })
}

/// git's answer to an advertisement `question` (which says everything about the request that git
/// sees: the endpoint, `GIT_PROTOCOL`, the body) about the repository at `repo`: remembered while
/// the repository's refs and configuration are byte for byte what they were when git gave it,
/// otherwise from `git` (and remembered when git succeeded and the refs did not change while it
/// ran). `Err(output)` when git failed.
async fn advertised(
    state: &AppState,
    repo: &Path,
    question: Vec<u8>,
    git: impl std::future::Future<Output = Result<Output, GitError>>,
) -> Result<Result<Bytes, Output>, GitError> {
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

/// `git upload-pack|receive-pack --stateless-rpc --advertise-refs`: the refs, as smart HTTP's
/// `info/refs` serves them. `Err(output)` when git failed.
pub(crate) async fn advertise_refs(state: &AppState, service: Service, path: &Path, protocol: Option<&str>) -> Result<Result<Bytes, Output>, GitError> {
    let op = GitOp::start(&state.metrics, GitKind::Advertisement);
    measured(&op, advertise_refs_unmeasured(state, service, path, protocol).await)
}

/// Notes an advertisement's outcome and size in its operation.
fn measured(op: &GitOp, answer: Result<Result<Bytes, Output>, GitError>) -> Result<Result<Bytes, Output>, GitError> {
    match &answer {
        Ok(Ok(refs)) => {
            op.sent(refs);
            op.exited(true);
        }
        Ok(Err(out)) => {
            op.sent(&out.stdout);
            op.exited(false);
        }
        Err(_) => op.exited(false),
    }
    answer
}

async fn advertise_refs_unmeasured(state: &AppState, service: Service, path: &Path, protocol: Option<&str>) -> Result<Result<Bytes, Output>, GitError> {
    let env = env(state, protocol, None);
    let args = [service.subcommand(), "--stateless-rpc", "--advertise-refs"];
    match service {
        // git ls-remote, and the first request of every clone and fetch: answered from memory
        // while the refs are unchanged (advert.rs).
        Service::UploadPack => {
            let mut question = b"info/refs upload-pack\0".to_vec();
            question.extend_from_slice(protocol.unwrap_or("").as_bytes());
            advertised(state, path, question, run_git(state, env, &args, path, None)).await
        }
        // Pushes are rarer, and git receive-pack also advertises the alternates' refs. (Smart
        // HTTP never asks for upload-archive.)
        Service::ReceivePack | Service::UploadArchive => {
            let out = run_git(state, env, &args, path, None).await?;
            Ok(if out.status.success() { Ok(Bytes::from(out.stdout)) } else { Err(out) })
        }
    }
}

/// A protocol v2 `ls-refs` request (git ls-remote, the start of every v2 fetch): only refs, no
/// pack, so no pack slot; answered from memory while the refs are unchanged. `Err(output)` when
/// git failed.
pub(crate) async fn ls_refs(state: &AppState, path: &Path, protocol: Option<&str>, request: Bytes) -> Result<Result<Bytes, Output>, GitError> {
    let op = GitOp::start(&state.metrics, GitKind::Advertisement);
    op.received(request.len());
    measured(&op, ls_refs_unmeasured(state, path, protocol, request).await)
}

async fn ls_refs_unmeasured(state: &AppState, path: &Path, protocol: Option<&str>, request: Bytes) -> Result<Result<Bytes, Output>, GitError> {
    let mut question = b"ls-refs\0".to_vec();
    question.extend_from_slice(protocol.unwrap_or("").as_bytes());
    question.push(0);
    question.extend_from_slice(&request);
    let env = env(state, protocol, None);
    let git = run_git(state, env, &["upload-pack", "--stateless-rpc"], path, Some(request));
    advertised(state, path, question, git).await
}

/// What a stateless request feeds git.
pub(crate) enum Input {
    /// Read whole already.
    Buffered(Bytes),
    /// Streamed as it arrives (a push of any size).
    Stream(Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>),
}

/// A running git process of a service, supervised by a task of the tracker.
pub(crate) struct Process {
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    /// Given by the supervisor once the process is reaped; feeders stop then.
    exited: Cancel,
    /// Given to stop the process and its group (SIGTERM, then SIGKILL); its supervisor reaps it.
    cancel: Cancel,
    done: oneshot::Receiver<std::io::Result<ExitStatus>>,
    /// The operation, measured until every part (this, the supervisor, feeders, the answer) is done.
    op: GitOp,
}

impl Process {
    /// The exit status, once the process is reaped and what follows a push is done.
    pub(crate) async fn wait(self) -> std::io::Result<ExitStatus> {
        self.done.await.unwrap_or_else(|_| Err(std::io::Error::other("the git supervisor went away")))
    }
}

/// Cancels a process when dropped: harmless once it has exited.
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// What the supervisor does once the process exits.
struct After {
    service: Service,
    repo_id: i64,
    repo: String,
    path: PathBuf,
    /// A push's updates file and who pushed: read into one event.
    push: Option<(PathBuf, String)>,
    /// A pack slot, held while the process runs.
    permit: Option<OwnedSemaphorePermit>,
    op: GitOp,
}

/// Spawns `cmd` (stdin, stdout and stderr piped) and its supervisor on the tracker.
fn spawn_supervised(state: &AppState, mut cmd: Command, after: After) -> Result<Process, GitError> {
    let running = Running::start(state);
    let mut child = cmd.spawn().map_err(|source| GitError::Spawn { what: after.service.subcommand(), repo: after.repo.clone(), source })?;
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let (exited, cancel) = (Cancel::new(), Cancel::new());
    let (tx, done) = oneshot::channel();
    let op = after.op.clone();
    state.tasks.spawn(supervise(state.clone(), child, stderr, cancel.clone(), exited.clone(), after, running, tx));
    Ok(Process { stdin, stdout, exited, cancel, done, op })
}

/// Waits for the git child (or stops it when cancelled or at shutdown), logs failures, publishes
/// the push event, releases the pack slot. Dropping the response (client gone) closes git's
/// stdout, so an abandoned upload-pack dies of EPIPE on its next write rather than being killed
/// mid-way.
#[allow(clippy::too_many_arguments)]
async fn supervise(
    state: AppState,
    mut child: Child,
    stderr: Option<ChildStderr>,
    cancel: Cancel,
    exited: Cancel,
    after: After,
    running: Running,
    done: oneshot::Sender<std::io::Result<ExitStatus>>,
) {
    let collect = async move {
        let mut buf = Vec::new();
        let Some(mut stderr) = stderr else { return buf };
        let mut chunk = [0u8; 4096];
        loop {
            match stderr.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) if buf.len() < 16 * 1024 => buf.extend_from_slice(&chunk[..n]),
                Ok(_) => {}
            }
        }
        buf
    };
    let wait = async {
        let stop = state.tasks.stop().clone();
        let status = tokio::select! {
            s = child.wait() => s,
            _ = cancel.cancelled() => {
                after.op.cancelled();
                terminate(&mut child).await
            }
            _ = stop.cancelled() => {
                tracing::warn!(repo = %after.repo, service = after.service.name(), "stopping git: the server is shutting down");
                after.op.cancelled();
                terminate(&mut child).await
            }
        };
        exited.cancel();
        status
    };
    let (status, err) = tokio::join!(wait, collect);
    after.op.exited(matches!(&status, Ok(s) if s.success()));
    let repo = &after.repo;
    match &status {
        Ok(s) if s.success() => {}
        Ok(s) => tracing::warn!(%repo, service = after.service.name(), status = %s, stderr = %String::from_utf8_lossy(&err).trim(), "git exited with failure"),
        Err(e) => tracing::error!(%repo, service = after.service.name(), error = %e, "cannot wait for git"),
    }
    // Whatever git's exit status, the refs the hook saw move did move (a push may move some
    // refs and refuse others): one event with them.
    if let Some((file, user)) = after.push {
        let text = tokio::fs::read_to_string(&file).await.unwrap_or_default();
        let updates = crate::events::parse_updates(&text);
        if updates.is_empty() {
            let _ = tokio::fs::remove_file(&file).await;
        } else {
            let ev = crate::events::PushEvent { repo_id: after.repo_id, repo: after.repo.clone(), path: after.path, user, updates };
            // The webhook event first, from the journal, which is removed once it is written.
            crate::webhooks::journal_push(&state, &ev, &file).await;
            state.events.publish(ev);
        }
    }
    drop(after.permit);
    // The supervisor's part of the measurement is done before the process stops being counted.
    drop(after.op);
    let _ = done.send(status);
    // Last, so that "no git process running" also means "the push's event was published".
    drop(running);
}

/// Starts the service for `call` in the given mode: the pack slot for upload-pack, the updates
/// file and the pusher's environment for receive-pack, spawn and supervise.
async fn start(state: &AppState, call: Call, stateless: bool) -> Result<Process, GitError> {
    // Measured from the request, the wait for a pack slot included; an operation that never
    // gets to run git is recorded as failed (or cancelled, if its caller went away).
    let op = GitOp::start(&state.metrics, call.service.kind());
    if call.service == Service::ReceivePack {
        op.watch_report(!stateless);
    }
    let started = start_measured(state, call, stateless, op.clone()).await;
    if started.is_err() {
        op.exited(false);
    }
    started
}

async fn start_measured(state: &AppState, call: Call, stateless: bool, op: GitOp) -> Result<Process, GitError> {
    // Bound concurrent pack generation: pack-objects is CPU- and memory-heavy, and a queue is
    // kinder to everyone than a thundering herd. Pushes only index what they receive.
    let permit = match call.service {
        Service::UploadPack | Service::UploadArchive => Some(state.packs.clone().acquire_owned().await?),
        Service::ReceivePack => None,
    };
    let mut env = env(state, call.protocol.as_deref(), call.pusher.as_ref());
    // Where this push's post-receive hook writes the refs it moved (`events.rs`).
    let push = match (call.service, &call.pusher) {
        (Service::ReceivePack, Some(p)) => {
            // The branch permissions that apply to this pusher, for the pre-receive hook
            // (`hooks.rs`). Unreadable ones refuse the push rather than pass for none.
            let applying = crate::branch_permissions::Applying::for_push(state, call.repo_id, p.exempt).await.map_err(|e| GitError::Restrictions {
                repo: call.repo.clone(),
                detail: e.to_string(),
                unavailable: e.is_unavailable(),
            })?;
            env.push(("TROVE_RESTRICTIONS".into(), applying.hook_lines().into()));
            let f = crate::events::updates_file(state.store.git_home(), call.repo_id, &p.name).map_err(GitError::UpdatesFile)?;
            env.push(("TROVE_REF_UPDATES".into(), f.clone().into()));
            Some((f, p.name.clone()))
        }
        (Service::ReceivePack, None) => return Err(GitError::NoPusher(call.service.subcommand())),
        (Service::UploadPack | Service::UploadArchive, _) => None,
    };
    let cmd = service_command(state, &call, &env, stateless);
    let after = After { service: call.service, repo_id: call.repo_id, repo: call.repo, path: call.path, push, permit, op };
    spawn_supervised(state, cmd, after)
}

/// Runs the service with `--stateless-rpc` on one request: `input` is fed to git by a task of
/// the tracker, and the returned stream is git's answer.
///
/// When the input ends early (the client went away mid-push), stdin is closed: git sees a
/// truncated pack, refuses it, updates no ref and removes its quarantine, which is exactly "the
/// repository is unchanged".
pub(crate) async fn stateless_rpc(state: &AppState, call: Call, input: Input) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static, GitError> {
    let repo = call.repo.clone();
    let mut process = start(state, call, true).await?;
    let stdin = process.stdin.take().expect("piped");
    let stdout = process.stdout.take().expect("piped");
    let exited = process.exited.clone();
    let op = process.op.clone();
    let feeding = op.clone();
    state.tasks.spawn(async move {
        tokio::select! {
            _ = feed(stdin, input, &repo, &feeding) => {}
            // git is gone: whatever the client still sends has nowhere to go.
            _ = exited.cancelled() => {}
        }
    });
    // The supervisor owns the process from here; the caller only reads its answer.
    drop(process);
    Ok(stream_stdout(stdout, op))
}

/// [`stateless_rpc`] for a caller that reads git's whole answer itself whatever becomes of any
/// client (the pack cache): git's stdout, the operation (the caller counts what it reads with
/// [`GitOp::sent`]) and git's exit status once it is reaped.
pub(crate) async fn stateless_rpc_owned(
    state: &AppState,
    call: Call,
    input: Input,
) -> Result<(ChildStdout, GitOp, impl std::future::Future<Output = std::io::Result<ExitStatus>> + Send + 'static), GitError> {
    let repo = call.repo.clone();
    let mut process = start(state, call, true).await?;
    let stdin = process.stdin.take().expect("piped");
    let stdout = process.stdout.take().expect("piped");
    let exited = process.exited.clone();
    let op = process.op.clone();
    let feeding = op.clone();
    state.tasks.spawn(async move {
        tokio::select! {
            _ = feed(stdin, input, &repo, &feeding) => {}
            _ = exited.cancelled() => {}
        }
    });
    Ok((stdout, op, process.wait()))
}

async fn feed(mut stdin: ChildStdin, input: Input, repo: &str, op: &GitOp) {
    match input {
        Input::Buffered(b) => {
            op.received(b.len());
            if let Err(e) = stdin.write_all(&b).await {
                tracing::debug!(%repo, error = %e, "git closed its input early");
            }
        }
        Input::Stream(mut stream) => {
            while let Some(chunk) = stream.next().await {
                match chunk {
                    Ok(c) => {
                        op.received(c.len());
                        if let Err(e) = stdin.write_all(&c).await {
                            tracing::debug!(%repo, error = %e, "git closed its input early");
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(%repo, error = %e, "request body ended early; git will discard the partial request");
                        op.cancelled();
                        break;
                    }
                }
            }
        }
    }
    let _ = stdin.shutdown().await;
}

/// git's answer, read as it comes; an answer dropped before its end (the client went away)
/// cancels the operation.
fn stream_stdout(stdout: ChildStdout, op: GitOp) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold(Some((stdout, Answered { op, whole: false })), |state| async move {
        let (mut out, mut answered) = state?;
        let mut buf = BytesMut::with_capacity(64 * 1024);
        match out.read_buf(&mut buf).await {
            Ok(0) => {
                answered.whole = true;
                None
            }
            Ok(_) => {
                answered.op.sent(&buf);
                Some((Ok(buf.freeze()), Some((out, answered))))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// Marks an operation cancelled when its answer is dropped before the end.
struct Answered {
    op: GitOp,
    whole: bool,
}

impl Drop for Answered {
    fn drop(&mut self) {
        if !self.whole {
            self.op.cancelled();
        }
    }
}

/// A session's stream to or from the client, counted into its operation.
struct Counted<T> {
    inner: T,
    op: GitOp,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.op.received(buf.filled().len() - before);
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = polled {
            self.op.sent(&buf[..n]);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Runs the service as one bidirectional session (no `--stateless-rpc`), as SSH does: the
/// client's bytes from `input` go to git's stdin (fed by a task of the tracker) and git's stdout
/// goes to `output` until git exits. Returns git's exit status (SSH's `exit-status`).
///
/// A client that goes away mid-push ends `input`: git sees its stdin close and refuses the
/// truncated pack, as over HTTP. An adapter that drops the session before git exits (its
/// connection task was aborted) stops git with it.
pub(crate) async fn session<R, W>(state: &AppState, call: Call, input: R, output: W) -> Result<ExitStatus, GitError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    let (what, repo) = (call.service.subcommand(), call.repo.clone());
    let mut process = start(state, call, false).await?;
    let mut stdin = process.stdin.take().expect("piped");
    let mut stdout = process.stdout.take().expect("piped");
    let exited = process.exited.clone();
    let _abandoned = CancelOnDrop(process.cancel.clone());
    let op = process.op.clone();
    let (mut input, mut output) = (Counted { inner: input, op: op.clone() }, Counted { inner: output, op: op.clone() });
    let feeding = op.clone();
    let feeder = state.tasks.spawn(async move {
        tokio::select! {
            r = tokio::io::copy(&mut input, &mut stdin) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "git session input ended with an error");
                    feeding.cancelled();
                }
                let _ = stdin.shutdown().await;
            }
            _ = exited.cancelled() => {}
        }
    });
    let copied = async {
        tokio::io::copy(&mut stdout, &mut output).await?;
        output.flush().await
    }
    .await;
    let status = process.wait().await.map_err(|source| GitError::Wait { what, repo: repo.clone(), source })?;
    // The client may keep its side open after git is done; nothing more goes to git.
    feeder.abort();
    if let Err(source) = copied {
        // The client went away; git's status says what became of the request.
        tracing::debug!(%repo, error = %source, "git session output ended early");
        op.cancelled();
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for git: answers `--version`, otherwise starts a grandchild that sleeps (as a
    /// hook would), writes both pids, and waits.
    fn fake_git(dir: &Path) -> PathBuf {
        let script = dir.join("git");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'git version 2.99.0'; exit 0; fi\nsleep 300 &\necho $$ $! > {}/pids\nwait\n",
                dir.display()
            ),
        )
        .unwrap();
        std::process::Command::new("chmod").arg("755").arg(&script).status().unwrap();
        script
    }

    /// Whether `pid` is still a live process (a zombie waiting to be reaped counts as live).
    fn exists(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('X'),
            Err(_) => false,
        }
    }

    fn not_running(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => matches!(stat.rsplit(')').next().unwrap_or("").trim_start().chars().next(), Some('Z' | 'X')),
            Err(_) => true,
        }
    }

    #[tokio::test]
    async fn cancel_kills_and_reaps_the_process_and_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let bin = tempfile::tempdir().unwrap();
        let mut config = crate::ServerConfig::new(dir.path());
        config.git.binary = fake_git(bin.path());
        let server = crate::Server::open(config).unwrap();
        let state = server.shared.clone();
        let call = Call { service: Service::UploadPack, repo_id: 1, repo: "TP/test".into(), path: dir.path().to_owned(), protocol: None, pusher: None };
        let process = start(&state, call, false).await.unwrap();
        assert_eq!(server.running_git_processes(), 1);
        let pids = bin.path().join("pids");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let (leader, grandchild) = loop {
            if let Some((a, b)) = std::fs::read_to_string(&pids).ok().and_then(|s| s.trim().split_once(' ').map(|(a, b)| (a.parse::<u32>(), b.parse::<u32>())))
            {
                break (a.unwrap(), b.unwrap());
            }
            assert!(std::time::Instant::now() < deadline, "the fake git never started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(exists(leader) && !not_running(grandchild));

        process.cancel.cancel();
        let status = tokio::time::timeout(Duration::from_secs(10), process.wait()).await.expect("cancel ends the process").unwrap();
        assert!(!status.success(), "{status}");
        // Reaped: no zombie of ours is left (the pid is gone from /proc).
        assert!(!exists(leader), "git was killed but not reaped");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !not_running(grandchild) {
            assert!(std::time::Instant::now() < deadline, "the process git started outlived it");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while server.running_git_processes() != 0 {
            assert!(std::time::Instant::now() < deadline, "the process is still counted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
