//! Git over SSH (`ssh://git@host:7999/tp/test.git`): an adapter beside `git_http.rs`, on russh.
//!
//! It knows SSH and nothing else: who is calling comes from their public key (a user's key logs
//! in as that user, an access key acts with exactly its grants), what they may do from the
//! access service (`access.rs`), and git runs through the git service's session mode
//! (`git_service::session`), so a push over SSH runs the same hooks, branch permissions, push
//! event, webhooks and pull-request rescoping as one over HTTP.
//!
//! Only `git-upload-pack`, `git-receive-pack` and `git-upload-archive` with a repository path are
//! served; a shell, a PTY, forwarding (TCP, agent, X11) and subsystems are refused with a
//! message on stderr and a non-zero exit. Algorithms are what current OpenSSH offers and
//! nothing older ([`preferred`]): no SHA-1 anywhere (no `ssh-rsa` signatures, no
//! `diffie-hellman-group*-sha1`), no CBC, no DSA.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PrivateKey, PublicKey};
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId, ChannelMsg, MethodKind, MethodSet, Preferred};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use trove_store::{Authenticated, NewSshKey};

use crate::AppState;
use crate::access::{self, AccessError};
use crate::git_service::{self, Call, Pusher, Service};
use crate::tasks::Cancel;

/// `[ssh]` in trove.toml, or `--ssh ADDR`.
#[derive(Debug, Clone)]
pub struct SshSettings {
    pub listen: SocketAddr,
    /// Where clients reach the SSH listener when that differs from the base URL's host and the
    /// listener's port (`ssh://git@ssh.example.com:7999`), for clone URLs. Default `None`: the
    /// base URL's (or the request's) host and the listen port.
    pub base_url: Option<String>,
    /// How long a connection may take to log in. Default 30 seconds.
    pub login_grace: Duration,
    /// Authentication attempts per connection. Default 6 (OpenSSH's `MaxAuthTries`).
    pub max_auth_attempts: usize,
    /// Connections that have not logged in yet, at once; more are closed at once. Default 64.
    pub max_unauthenticated: usize,
    /// A connection with no traffic for this long is closed. Default 10 minutes; `None`: never.
    pub idle_timeout: Option<Duration>,
}

impl SshSettings {
    pub fn new(listen: SocketAddr) -> SshSettings {
        SshSettings {
            listen,
            base_url: None,
            login_grace: Duration::from_secs(30),
            max_auth_attempts: 6,
            max_unauthenticated: 64,
            idle_timeout: Some(Duration::from_secs(600)),
        }
    }
}

/// Checks an `[ssh] base_url` (`ssh://git@host:7999`), returned without a trailing `/`.
pub fn parse_ssh_base_url(s: &str) -> Result<String, String> {
    let s = s.trim().trim_end_matches('/');
    let rest = s.strip_prefix("ssh://").ok_or_else(|| format!("{s:?} must start with ssh:// (for example ssh://git@git.example.com:7999)"))?;
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let ok = !host.is_empty() && !rest.contains('/') && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !ok {
        return Err(format!("{s:?} is not ssh://[user@]host[:port] (for example ssh://git@git.example.com:7999)"));
    }
    Ok(s.to_owned())
}

/// `ssh://git@host:port/key/slug.git` for `repo`, when SSH is on: the host from `[ssh]
/// base_url`, else from the base URL (or the request), with the listener's port.
pub(crate) fn clone_url(state: &AppState, view: &crate::RequestView, repo: &trove_store::Repo) -> Option<String> {
    let ssh = state.ssh.as_ref()?;
    let path = format!("{}/{}.git", repo.owner.to_string().to_ascii_lowercase(), repo.slug);
    if let Some(b) = &ssh.base_url {
        return Some(format!("{b}/{path}"));
    }
    let base = state.urls.base_url(view);
    Some(format!("ssh://git@{}:{}/{path}", host_of(&base), ssh.port))
}

/// The host of `http://host:port/path` (`[::1]` kept in brackets).
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if authority.starts_with('[') {
        return authority.split_once(']').map_or(authority, |(h, _)| &authority[..h.len() + 1]);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// What went wrong with the host keys.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error(transparent)]
    Mode(#[from] trove_tls::TlsError),
    #[error("SSH host key {path}: {detail}")]
    Key { path: PathBuf, detail: String },
}

/// The host keys in the data directory, made on first start: Ed25519 first, ECDSA P-256 for
/// clients that lack it. A key file that group or others may read is refused, as TLS keys are.
pub fn load_or_create_host_keys(data_dir: &Path) -> Result<Vec<PrivateKey>, HostKeyError> {
    let mut keys = Vec::new();
    for (file, algorithm) in [("ssh_host_ed25519_key", Algorithm::Ed25519), ("ssh_host_ecdsa_key", Algorithm::Ecdsa { curve: EcdsaCurve::NistP256 })] {
        let path = data_dir.join(file);
        let bad = |detail: String| HostKeyError::Key { path: path.clone(), detail };
        if path.exists() {
            trove_tls::check_private_key_mode(&path, trove_tls::FileRole::SshHostKey)?;
            let key = PrivateKey::read_openssh_file(&path)
                .map_err(|e| bad(format!("not an unencrypted OpenSSH private key: {e}; remove it to have a new one made")))?;
            if key.algorithm() != algorithm {
                return Err(bad(format!("holds a {} key, expected {}; remove it to have a new one made", key.algorithm(), algorithm)));
            }
            keys.push(key);
        } else {
            let mut rng = trove_store::os_rng();
            let mut key = PrivateKey::random(&mut rng, algorithm).map_err(|e| bad(format!("cannot make a key: {e}")))?;
            key.set_comment("trove host key");
            let text = key.to_openssh(russh::keys::ssh_key::LineEnding::LF).map_err(|e| bad(e.to_string()))?;
            write_private(&path, text.as_bytes()).map_err(|e| bad(format!("cannot write: {e}")))?;
            let public = key.public_key().to_openssh().map_err(|e| bad(e.to_string()))?;
            std::fs::write(path.with_extension("pub"), format!("{public}\n")).map_err(|e| bad(format!("cannot write the public key: {e}")))?;
            tracing::info!(path = %path.display(), fingerprint = %key.fingerprint(HashAlg::Sha256), "made an SSH host key");
            keys.push(key);
        }
    }
    Ok(keys)
}

/// Writes a file readable by its owner only from the start.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    std::io::Write::write_all(&mut f, bytes)?;
    f.sync_all()
}

/// `ssh-ed25519 SHA256:…` for each host key, as `ssh-keygen -lf` and OpenSSH's prompt show them.
pub fn fingerprints(keys: &[PrivateKey]) -> Vec<(String, String)> {
    keys.iter().map(|k| (k.algorithm().to_string(), k.fingerprint(HashAlg::Sha256).to_string())).collect()
}

/// The algorithms offered: current OpenSSH's, without anything SHA-1 or CBC.
pub(crate) fn preferred() -> Preferred {
    Preferred {
        kex: Cow::Borrowed(&[
            russh::kex::CURVE25519,
            russh::kex::CURVE25519_PRE_RFC_8731,
            russh::kex::ECDH_SHA2_NISTP256,
            // RFC 8308 (`server-sig-algs`, so clients sign with rsa-sha2-*) and strict KEX
            // (the Terrapin fix).
            russh::kex::EXTENSION_SUPPORT_AS_SERVER,
            russh::kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
        ]),
        key: Cow::Owned(vec![
            Algorithm::Ed25519,
            Algorithm::Ecdsa { curve: EcdsaCurve::NistP256 },
            Algorithm::Ecdsa { curve: EcdsaCurve::NistP384 },
            Algorithm::Ecdsa { curve: EcdsaCurve::NistP521 },
            Algorithm::Rsa { hash: Some(HashAlg::Sha512) },
            Algorithm::Rsa { hash: Some(HashAlg::Sha256) },
        ]),
        host_key_certificates: Cow::Borrowed(&[]),
        cipher: Cow::Borrowed(&[russh::cipher::CHACHA20_POLY1305, russh::cipher::AES_256_GCM, russh::cipher::AES_128_GCM]),
        // Only used with a cipher that is not AEAD, of which none is offered.
        mac: Cow::Borrowed(&[russh::mac::HMAC_SHA512_ETM, russh::mac::HMAC_SHA256_ETM]),
        compression: Cow::Borrowed(&[russh::compression::NONE]),
    }
}

/// Why a user's key text is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum KeyTextError {
    #[error("the key is not an OpenSSH public key (`ssh-ed25519 AAAA… comment`, as in ~/.ssh/id_ed25519.pub)")]
    Unparsable,
    #[error("DSA keys are not accepted: they are limited to 1024 bits and SHA-1. Make an Ed25519 key with `ssh-keygen -t ed25519`")]
    Dsa,
    #[error(
        "RSA keys must have at least 2048 bits; this one has {0}. Make an Ed25519 key with `ssh-keygen -t ed25519`, or an RSA key with `ssh-keygen -t rsa -b 4096`"
    )]
    WeakRsa(u32),
    #[error("{0} keys are not accepted; use Ed25519, ECDSA or RSA (2048 bits or more)")]
    Unsupported(String),
}

/// Parses and judges a public key as pasted (`type base64 [comment]`): the key to store (its
/// comment becomes the label unless one is given) or why it is refused.
pub(crate) fn parse_key_text(text: &str, label: Option<&str>) -> Result<NewSshKey, KeyTextError> {
    let text = text.trim();
    let key = PublicKey::from_openssh(text).map_err(|_| KeyTextError::Unparsable)?;
    let bits = match key.algorithm() {
        Algorithm::Dsa => return Err(KeyTextError::Dsa),
        Algorithm::Rsa { .. } => {
            let bits = key.key_data().rsa().map(|r| r.key_size()).unwrap_or(0);
            if bits < 2048 {
                return Err(KeyTextError::WeakRsa(bits));
            }
            bits
        }
        Algorithm::Ed25519 | Algorithm::SkEd25519 => 256,
        Algorithm::Ecdsa { curve: EcdsaCurve::NistP384 } => 384,
        Algorithm::Ecdsa { curve: EcdsaCurve::NistP521 } => 521,
        Algorithm::Ecdsa { .. } | Algorithm::SkEcdsaSha2NistP256 => 256,
        other => return Err(KeyTextError::Unsupported(other.to_string())),
    };
    let comment = key.comment().to_string();
    let mut bare = key.clone();
    bare.set_comment("");
    let canonical = bare.to_openssh().map_err(|_| KeyTextError::Unparsable)?;
    let label = label.map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).unwrap_or(comment);
    Ok(NewSshKey {
        label,
        text: canonical.trim().to_owned(),
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        algorithm: key.algorithm().to_string(),
        bits: bits.into(),
    })
}

/// An SSH command git sends (`git-upload-pack '/tp/test.git'`), parsed: the service and the
/// repository's owner and slug as written.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct GitCommand {
    pub(crate) service: Service,
    pub(crate) owner: String,
    pub(crate) slug: String,
}

/// Parses `git-upload-pack '/tp/test.git'` (also `git upload-pack`, unquoted, `tp/test.git`,
/// `/scm/tp/test.git`, `~user/repo.git`). `Err` says what was wrong, for the client's stderr.
pub(crate) fn parse_command(command: &str) -> Result<GitCommand, String> {
    let command = command.trim();
    let (verb, rest) =
        command.split_once(' ').ok_or_else(|| "only git commands are served (git-upload-pack, git-receive-pack, git-upload-archive)".to_owned())?;
    let verb = match verb {
        "git" => {
            let (sub, rest2) = rest.trim_start().split_once(' ').ok_or("a repository path is required")?;
            return parse_command(&format!("git-{sub} {rest2}"));
        }
        v => v,
    };
    let service = match verb {
        "git-upload-pack" => Service::UploadPack,
        "git-receive-pack" => Service::ReceivePack,
        "git-upload-archive" => Service::UploadArchive,
        other => return Err(format!("{other:?} is not served; only git-upload-pack, git-receive-pack and git-upload-archive are")),
    };
    let mut path = rest.trim();
    if path.len() >= 2 && ((path.starts_with('\'') && path.ends_with('\'')) || (path.starts_with('"') && path.ends_with('"'))) {
        path = &path[1..path.len() - 1];
    }
    if path.contains(['\'', '"', ' ', '\\']) {
        return Err(format!("{path:?} is not a repository path like /PROJECT/repo.git"));
    }
    let path = path.trim_start_matches('/');
    let path = path.strip_prefix("scm/").unwrap_or(path);
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [owner, slug] if !owner.is_empty() && !slug.is_empty() => {
            Ok(GitCommand { service, owner: (*owner).to_owned(), slug: slug.strip_suffix(".git").unwrap_or(slug).to_owned() })
        }
        _ => Err(format!("{path:?} is not a repository path like /PROJECT/repo.git or /~user/repo.git")),
    }
}

/// Who logged in.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    User { who: Authenticated, key_id: i64 },
    AccessKey { key_id: i64, label: String },
}

/// What repository not found reads like, over SSH as over HTTP (the same words, on stderr).
const NOT_FOUND: &str = "Repository not found, or you may not read it.";

/// After its client went away, how long a git process has to end by itself before it is stopped.
const GONE_GRACE: Duration = Duration::from_secs(3);

/// Runs the SSH listener until `stop` fires. Connections in flight end with the server's
/// drain (their git processes stop with the connection).
pub(crate) async fn serve(state: AppState, listener: TcpListener, settings: SshSettings, keys: Vec<PrivateKey>, stop: Cancel) {
    let config = Arc::new(russh::server::Config {
        server_id: russh::SshId::Standard(Cow::Borrowed("SSH-2.0-Trove")),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        keys,
        preferred: preferred(),
        max_auth_attempts: settings.max_auth_attempts,
        auth_rejection_time: Duration::from_millis(200),
        auth_rejection_time_initial: Some(Duration::from_millis(0)),
        inactivity_timeout: settings.idle_timeout,
        nodelay: true,
        ..Default::default()
    });
    let unauthenticated = Arc::new(Semaphore::new(settings.max_unauthenticated.max(1)));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => match a {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "ssh accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let Ok(permit) = unauthenticated.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = settings.max_unauthenticated, "ssh connection refused: too many connections have not logged in yet");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let closed = Cancel::new();
        let handler = Conn {
            state: state.clone(),
            peer,
            caller: None,
            channels: HashMap::new(),
            protocol: HashMap::new(),
            permit: Some(permit),
            authed: Cancel::new(),
            closed: closed.clone(),
        };
        let authed = handler.authed.clone();
        let (config, grace, stop) = (config.clone(), settings.login_grace, stop.clone());
        conns.spawn(async move {
            // Whatever ends the connection (its end, the grace time, shutdown aborting this
            // task) ends its git processes too.
            let _closing = Closing(closed);
            // The version exchange counts toward the login grace time too.
            let session = match tokio::time::timeout(grace, russh::server::run_stream(config, stream, handler)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "ssh handshake failed"),
                Err(_) => return tracing::info!(%peer, "ssh connection closed: no SSH version exchange within the login grace time"),
            };
            let handle = session.handle();
            let grace_over = async {
                tokio::select! {
                    _ = tokio::time::sleep(grace) => {}
                    _ = authed.cancelled() => std::future::pending::<()>().await,
                }
            };
            let why = tokio::select! {
                ended = session => {
                    if let Err(e) = ended {
                        tracing::debug!(%peer, error = %e, "ssh connection ended with an error");
                    }
                    return;
                }
                _ = grace_over => {
                    tracing::info!(%peer, seconds = grace.as_secs(), "ssh connection closed: it did not log in within the login grace time");
                    "login grace time over"
                }
                _ = stop.cancelled() => "the server is stopping",
            };
            // russh runs the session on a task of its own: end it, so the client sees the end.
            let _ = handle.disconnect(russh::Disconnect::ByApplication, why.to_owned(), String::new()).await;
        });
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// Fires its cancel when dropped.
struct Closing(Cancel);

impl Drop for Closing {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// One connection's state.
struct Conn {
    state: AppState,
    peer: SocketAddr,
    caller: Option<Caller>,
    /// Session channels opened and not yet running a command.
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// `GIT_PROTOCOL` per channel (the `env` request, OpenSSH's `SetEnv`).
    protocol: HashMap<ChannelId, String>,
    /// A slot among the unauthenticated connections, given back on login.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    authed: Cancel,
    /// Fires when the connection is gone: its git sessions stop.
    closed: Cancel,
}

impl Conn {
    /// Refuses a request on `channel`: the message on stderr, exit status 1, and the channel closed.
    fn refuse(&mut self, channel: ChannelId, session: &mut Session, message: &str) {
        let _ = session.channel_success(channel);
        let _ = session.extended_data(channel, 1, format!("{message}\n").into_bytes());
        let _ = session.exit_status_request(channel, 1);
        let _ = session.eof(channel);
        let _ = session.close(channel);
        self.channels.remove(&channel);
    }
}

const ONLY_GIT: &str = "Trove serves only git over SSH: interactive shells, commands, port forwarding and subsystems are not available. Clone with `git clone ssh://git@HOST:PORT/PROJECT/repo.git`.";

impl russh::server::Handler for Conn {
    type Error = russh::Error;

    async fn auth_publickey_offered(&mut self, _user: &str, offer: russh::server::PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        // `ssh-rsa` names SHA-1 signatures: refused, whatever the key.
        if matches!(offer.algorithm, Algorithm::Rsa { hash: None }) {
            return Ok(Auth::reject());
        }
        let fp = offer.public_key.fingerprint(HashAlg::Sha256).to_string();
        let (state, ip) = (self.state.clone(), self.peer.ip());
        // An unknown key counts as a failed login of the address, as a wrong password over HTTP
        // does (one "account" per key): an address trying many keys is held off like one
        // spraying passwords, and one held off over HTTP is held off here too.
        let known = self
            .state
            .store
            .run(move |s| -> Result<bool, trove_store::StoreError> {
                let now = crate::auth::now_unix();
                if state.limiter.address_blocked_at(s, Some(ip), now)?.is_some() {
                    return Ok(false);
                }
                if s.ssh_key_by_fingerprint(&fp)?.is_some() {
                    return Ok(true);
                }
                state.limiter.record_address_failure_at(s, &format!("ssh-key {fp}"), Some(ip), now)?;
                Ok(false)
            })
            .await;
        Ok(if matches!(known, Ok(true)) { Auth::Accept } else { Auth::reject() })
    }

    async fn auth_publickey(&mut self, user: &str, key: russh::server::VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        if matches!(key.algorithm, Algorithm::Rsa { hash: None }) {
            return Ok(Auth::reject());
        }
        let fp = key.public_key.fingerprint(HashAlg::Sha256).to_string();
        let ip = self.peer.ip();
        let limiter_state = self.state.clone();
        let found = self
            .state
            .store
            .run(move |s| -> Result<Option<Caller>, trove_store::StoreError> {
                // Addresses that are spraying passwords over HTTP are not let in over SSH either.
                if limiter_state.limiter.address_blocked_at(s, Some(ip), crate::auth::now_unix())?.is_some() {
                    return Ok(None);
                }
                let Some(k) = s.ssh_key_by_fingerprint(&fp)? else { return Ok(None) };
                let caller = match k.user_id {
                    Some(uid) => match s.user_by_id(uid)? {
                        Some(u) if u.may_log_in() => Caller::User { who: Authenticated { user: u, token_scope: None }, key_id: k.id },
                        _ => return Ok(None),
                    },
                    None => Caller::AccessKey { key_id: k.id, label: k.label.clone() },
                };
                let _ = s.touch_ssh_key(k.id);
                Ok(Some(caller))
            })
            .await;
        match found {
            Ok(Some(c)) => {
                tracing::info!(peer = %self.peer, user, caller = %describe(&c), "ssh login");
                self.caller = Some(c);
                Ok(Auth::Accept)
            }
            Ok(None) => Ok(Auth::reject()),
            Err(e) => {
                tracing::error!(error = %e, "ssh key lookup failed");
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_succeeded(&mut self, _session: &mut Session) -> Result<(), Self::Error> {
        self.permit = None;
        self.authed.cancel();
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        self.channels.insert(channel.id(), channel);
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        self.protocol.remove(&channel);
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host: &str,
        _port: u32,
        _orig: &str,
        _orig_port: u32,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.reject(russh::ChannelOpenFailure::AdministrativelyProhibited).await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _a: &str,
        _p: u32,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.reject(russh::ChannelOpenFailure::AdministrativelyProhibited).await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _path: &str,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.reject(russh::ChannelOpenFailure::AdministrativelyProhibited).await;
        Ok(())
    }

    async fn tcpip_forward(&mut self, _address: &str, _port: &mut u32, _session: &mut Session) -> Result<bool, Self::Error> {
        Ok(false)
    }

    async fn streamlocal_forward(&mut self, _path: &str, _session: &mut Session) -> Result<bool, Self::Error> {
        Ok(false)
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _cw: u32,
        _rh: u32,
        _pw: u32,
        _ph: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // OpenSSH reports the refusal itself ("PTY allocation request failed") and, for `-t`,
        // gives up on the session.
        let _ = session.channel_failure(channel);
        Ok(())
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single: bool,
        _proto: &str,
        _cookie: &str,
        _screen: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let _ = session.channel_failure(channel);
        Ok(())
    }

    async fn agent_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<bool, Self::Error> {
        let _ = session.channel_failure(channel);
        Ok(false)
    }

    async fn env_request(&mut self, channel: ChannelId, name: &str, value: &str, session: &mut Session) -> Result<(), Self::Error> {
        // Only git's protocol version; anything else is refused (RFC 4254 6.4 lets a server).
        if name == "GIT_PROTOCOL" && crate::pktline::valid_git_protocol(value) {
            self.protocol.insert(channel, value.to_owned());
            let _ = session.channel_success(channel);
        } else {
            let _ = session.channel_failure(channel);
        }
        Ok(())
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        self.refuse(channel, session, ONLY_GIT);
        Ok(())
    }

    async fn subsystem_request(&mut self, channel: ChannelId, name: &str, session: &mut Session) -> Result<(), Self::Error> {
        self.refuse(channel, session, &format!("subsystem {name:?} is not available. {ONLY_GIT}"));
        Ok(())
    }

    async fn exec_request(&mut self, channel: ChannelId, data: &[u8], session: &mut Session) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        let parsed = match parse_command(&command) {
            Ok(p) => p,
            Err(why) => {
                self.refuse(channel, session, &format!("{why}. {ONLY_GIT}"));
                return Ok(());
            }
        };
        let (Some(caller), Some(ch)) = (self.caller.clone(), self.channels.remove(&channel)) else {
            self.refuse(channel, session, "not logged in");
            return Ok(());
        };
        let _ = session.channel_success(channel);
        let protocol = self.protocol.remove(&channel);
        let (state, peer, closed) = (self.state.clone(), self.peer, self.closed.clone());
        self.state.tasks.spawn(async move {
            let (read, write) = ch.split();
            tokio::select! {
                _ = run_command(&state, caller, parsed, protocol, peer, read, &write, &closed) => {}
                // The client went away: git's input has ended, and a push's receive-pack refuses
                // the partial pack itself (removing its quarantine) before any ref moves. What
                // still runs after the grace (an upload-pack writing to nobody) is stopped by
                // dropping the session (CancelOnDrop: SIGTERM, then SIGKILL, to its group).
                _ = async { closed.cancelled().await; tokio::time::sleep(GONE_GRACE).await } => {
                    tracing::debug!(%peer, "ssh client went away; stopping its git process");
                }
            }
        });
        Ok(())
    }
}

fn describe(c: &Caller) -> String {
    match c {
        Caller::User { who, key_id } => format!("{} (key {key_id})", who.user.name),
        Caller::AccessKey { key_id, .. } => format!("access key {key_id}"),
    }
}

/// Decides access and runs git for one `exec` request, then sends the exit status and closes.
#[allow(clippy::too_many_arguments)]
async fn run_command(
    state: &AppState,
    caller: Caller,
    cmd: GitCommand,
    protocol: Option<String>,
    peer: SocketAddr,
    mut read: russh::ChannelReadHalf,
    write: &russh::ChannelWriteHalf<Msg>,
    closed: &Cancel,
) {
    let need = cmd.service.needs();
    let (owner, slug) = (cmd.owner.clone(), cmd.slug.clone());
    let c = caller.clone();
    let decided = state
        .store
        .run(move |s| match &c {
            Caller::User { who, .. } => access::repo(s, Some(who), &owner, &slug, need),
            Caller::AccessKey { key_id, .. } => access::repo_for_access_key(s, *key_id, &owner, &slug, need),
        })
        .await;
    let fail = |message: String| async move {
        let _ = write.extended_data_bytes(1, format!("{message}\n").into_bytes()).await;
        let _ = write.exit_status(1).await;
        let _ = write.eof().await;
        let _ = write.close().await;
    };
    let granted = match decided {
        Ok(g) => g,
        Err(AccessError::Hidden(name) | AccessError::Anonymous(name)) => {
            tracing::debug!(repo = %name, caller = %describe(&caller), "ssh: repository not found or not readable");
            return fail(NOT_FOUND.to_owned()).await;
        }
        Err(AccessError::Forbidden(repo)) => {
            let who = match &caller {
                Caller::User { who, .. } => format!("User {}", who.user.name),
                Caller::AccessKey { key_id, .. } => format!("Access key {key_id}"),
            };
            return fail(format!("{who} may not push to {repo}: write permission is required. Ask a project or repository administrator for it.")).await;
        }
        Err(AccessError::Store(e)) => {
            tracing::error!(error = %e, "ssh permission lookup failed");
            return fail("An internal error occurred; the server log has the details.".to_owned()).await;
        }
    };
    let pusher = match (&caller, cmd.service) {
        (Caller::User { who, .. }, Service::ReceivePack) => Some(Pusher::new(who, Some(peer.ip()), "ssh")),
        (Caller::AccessKey { key_id, label }, Service::ReceivePack) => Some(Pusher::access_key(*key_id, label)),
        _ => None,
    };
    let call = Call {
        service: cmd.service,
        repo_id: granted.repo.id,
        repo: granted.repo.display_path(),
        path: state.store.repo_path(&granted.repo),
        protocol: protocol.filter(|_| cmd.service == Service::UploadPack),
        pusher,
    };
    // The client's bytes, pumped from the channel into a pipe git reads; its end (EOF, or the
    // channel gone) is git's stdin closing.
    let (rx, mut tx) = tokio::io::simplex(64 * 1024);
    let closed = closed.clone();
    let pump = async move {
        // The connection gone (or the server stopping) ends git's input at once: a push not yet
        // complete is then refused by git itself, which removes its quarantine.
        while let Some(msg) = tokio::select! { m = read.wait() => m, _ = closed.cancelled() => None } {
            let data = match msg {
                ChannelMsg::Data { data } => data,
                ChannelMsg::Eof | ChannelMsg::Close => break,
                _ => continue,
            };
            if tx.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = tx.shutdown().await;
    };
    let pumping = state.tasks.spawn(pump);
    let out = write.make_writer();
    let status = git_service::session(state, call, rx, out).await;
    pumping.abort();
    let code = match status {
        Ok(s) => s.code().unwrap_or(128) as u32,
        Err(e) => {
            tracing::error!(error = %e, "ssh git session failed");
            let _ = write.extended_data_bytes(1, b"An internal error occurred; the server log has the details.\n".to_vec()).await;
            128
        }
    };
    let _ = write.exit_status(code).await;
    let _ = write.eof().await;
    let _ = write.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_name_a_service_and_a_repository_in_every_spelling_git_uses() {
        let ok: &[(&str, Service, &str, &str)] = &[
            ("git-upload-pack '/tp/test.git'", Service::UploadPack, "tp", "test"),
            ("git-receive-pack 'tp/test.git'", Service::ReceivePack, "tp", "test"),
            ("git-upload-pack '/scm/TP/test.git'", Service::UploadPack, "TP", "test"),
            ("git-upload-archive '~alice/dots.git'", Service::UploadArchive, "~alice", "dots"),
            ("git upload-pack '/tp/test'", Service::UploadPack, "tp", "test"),
            ("git-upload-pack /tp/test.git", Service::UploadPack, "tp", "test"),
        ];
        for (c, service, owner, slug) in ok {
            assert_eq!(parse_command(c), Ok(GitCommand { service: *service, owner: (*owner).into(), slug: (*slug).into() }), "{c}");
        }
        for bad in ["ls", "bash -c id", "git-upload-pack", "git-upload-pack '/a/b/c.git'", "git-upload-pack '/tp/x' ; id", "scp -t /tmp", "git-upload-pack ''"]
        {
            assert!(parse_command(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clone_hosts_come_from_the_base_url_without_its_port() {
        assert_eq!(host_of("https://git.example.com:8443/stash"), "git.example.com");
        assert_eq!(host_of("http://[::1]:7990"), "[::1]");
        assert_eq!(host_of("http://localhost"), "localhost");
        assert_eq!(parse_ssh_base_url("ssh://git@ssh.example.com:7999/").unwrap(), "ssh://git@ssh.example.com:7999");
        assert!(parse_ssh_base_url("https://x").is_err() && parse_ssh_base_url("ssh://h/x").is_err());
    }

    #[test]
    fn weak_and_unknown_keys_are_refused_with_the_reason() {
        assert_eq!(parse_key_text("not a key", None).unwrap_err(), KeyTextError::Unparsable);
        let ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";
        let k = parse_key_text(ed, None).unwrap();
        assert_eq!((k.label.as_str(), k.algorithm.as_str(), k.bits), ("alice@laptop", "ssh-ed25519", 256));
        assert!(k.fingerprint.starts_with("SHA256:") && !k.text.contains("alice"), "{k:?}");
        assert_eq!(parse_key_text(ed, Some("work")).unwrap().label, "work");
    }
}
