//! The pack cache: identical clone requests on the same repository, in the same ref state,
//! answered from one `git upload-pack` run kept on this node's disk, so that fifty CI agents
//! cloning at once cost one `pack-objects`, not fifty (Bitbucket's SCM cache does the same).
//!
//! What is cached is git's whole answer to one stateless upload-pack request (a protocol v0/v1
//! fetch POST, or a protocol v2 `command=fetch`) that has no `have` line: a client that has
//! nothing, asking for the same wants with the same capabilities, filter and deepen lines, gets
//! the same bytes. The key is a SHA-256 of the repository's path, `GIT_PROTOCOL`, the request
//! body (inflated), and the state the ref advertisement cache reads (`advert.rs`: HEAD,
//! `packed-refs`, every file under `refs/`, `shallow`, the repository's and git's HOME
//! configuration, the git binary's identity). That state is exactly what decides which wants
//! git accepts and what it sends for them (an object's contents never change under its id),
//! so a push, a deleted branch or a changed `uploadpack.*` setting makes a new key and a stale
//! pack is never served; an entry is kept only if that state was the same after git ran as
//! before it started.
//!
//! The first request for a key starts the producer, a task of the server's tracker that runs
//! git (through the git service, so the pack slot, supervision and metrics apply) and writes its
//! stdout to a file. Every request for the key, the first included, streams that file while it
//! is written, following its length. The producer belongs to no request: a client that goes
//! away stops only its own reading. A run that fails (git exits non-zero, the disk fails) leaves
//! no entry; its readers get what git wrote, as they would from git directly (or, for a disk
//! error, a broken response). Readers hold the file open, so removing a file (eviction) never
//! cuts off a reader that already has it.
//!
//! The disk is bounded: `max_bytes` counts every kept file and the ones being written; past it
//! the least recently used whole entries are removed, then the entry being written if it alone
//! is too big (its readers still finish from the open file; the next request runs git again).
//! Entries older than `max_age` are not served. The directory is emptied of our files on start.

use std::collections::HashMap;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;
use tokio::sync::watch;

use crate::AppState;
use crate::git_service::{self, Call, GitError, Input};
use crate::pktline::{self, Packet};

/// `[pack_cache]` (docs/server.md, "Pack cache").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackCacheSettings {
    /// Default `true`; `false` runs git for every request, as without a cache.
    pub enabled: bool,
    /// Where the cached answers are written: a directory on this node's local disk, used by
    /// nothing else (files named `*.upload-pack` in it are deleted on start). Default `None`:
    /// `<data_dir>/pack-cache`.
    pub dir: Option<PathBuf>,
    /// Disk the cache may use, in bytes, the answers being written included. Default 2 GiB.
    /// `0` is refused (set `enabled = false`).
    pub max_bytes: u64,
    /// An answer older than this is not served again (and is removed). Default 1 hour; `None`
    /// (`max_age_secs = 0`) keeps answers until the disk bound evicts them.
    pub max_age: Option<Duration>,
}

impl Default for PackCacheSettings {
    fn default() -> Self {
        PackCacheSettings { enabled: true, dir: None, max_bytes: 2 << 30, max_age: Some(Duration::from_secs(3600)) }
    }
}

/// The suffix of the cache's files; only these are deleted on start.
const SUFFIX: &str = ".upload-pack";
/// How much a reader reads from the file at once.
const CHUNK: usize = 256 * 1024;

/// How a request was answered, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// From a whole entry on disk: no git run.
    Hit,
    /// Started a git run (and an entry).
    Miss,
    /// Joined a git run another request started, while it was running.
    Shared,
    /// Not cacheable (it has `have` lines, or the repository's state cannot be keyed): git ran
    /// for it alone, as without a cache.
    Bypass,
}

pub(crate) const OUTCOMES: [Outcome; 4] = [Outcome::Hit, Outcome::Miss, Outcome::Shared, Outcome::Bypass];

impl Outcome {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Shared => "shared",
            Outcome::Bypass => "bypass",
        }
    }
}

/// What the metrics show of the cache.
pub(crate) struct Stats {
    pub(crate) requests: [u64; 4],
    pub(crate) evictions: u64,
    pub(crate) bytes: u64,
    pub(crate) entries: u64,
    pub(crate) max_bytes: u64,
    pub(crate) sent_bytes: u64,
}

pub(crate) struct PackCache {
    dir: PathBuf,
    max_bytes: u64,
    max_age: Option<Duration>,
    inner: Mutex<Inner>,
    requests: [AtomicU64; 4],
    evictions: AtomicU64,
    sent_bytes: AtomicU64,
    seq: AtomicU64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<[u8; 32], Entry>,
    /// The sizes of every entry's file, as written so far.
    bytes: u64,
}

struct Entry {
    pack: Arc<Pack>,
    created: Instant,
    last_used: Instant,
}

/// One answer on disk, being written or whole.
struct Pack {
    /// Open for reading and writing; readers read at their own offset, so a removed file
    /// (evicted, or failed) stays readable to whoever holds this.
    file: std::fs::File,
    path: PathBuf,
    progress: watch::Sender<Progress>,
    /// Bytes of this file counted in the cache's total (0 once it is no longer an entry).
    counted: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    /// git was started (`Some(true)`) or could not be (`Some(false)`).
    started: Option<bool>,
    written: u64,
    end: Option<End>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// git succeeded and every byte is in the file.
    Whole,
    /// git failed: readers get what it wrote, then the end, as from git directly.
    Failed,
    /// The file could not be written (or the producer vanished): readers' responses break off.
    Broken,
}

/// Whether a request may be answered from the cache: pkt-lines only, none of them a `have`
/// (gitprotocol-pack "Packfile Negotiation", gitprotocol-v2 "fetch"): a client that has
/// something gets an answer that depends on what it has.
pub(crate) fn cacheable(body: &[u8]) -> bool {
    let mut rest = body;
    let mut any = false;
    while !rest.is_empty() {
        match pktline::read(rest) {
            Ok(Some((packet, used))) => {
                if let Packet::Data(line) = packet
                    && line.starts_with(b"have ")
                {
                    return false;
                }
                any = true;
                rest = &rest[used..];
            }
            Ok(None) | Err(_) => return false,
        }
    }
    any
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl PackCache {
    /// The cache in `dir`, created if missing and emptied of the files a previous run left.
    pub(crate) fn open(dir: PathBuf, max_bytes: u64, max_age: Option<Duration>) -> std::io::Result<PackCache> {
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_name().to_str().is_some_and(|n| n.ends_with(SUFFIX)) && entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(PackCache {
            dir,
            max_bytes,
            max_age,
            inner: Mutex::default(),
            requests: Default::default(),
            evictions: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            seq: AtomicU64::new(0),
        })
    }

    pub(crate) fn stats(&self) -> Stats {
        let inner = self.lock();
        Stats {
            requests: std::array::from_fn(|i| self.requests[i].load(Ordering::Relaxed)),
            evictions: self.evictions.load(Ordering::Relaxed),
            bytes: inner.bytes,
            entries: inner.entries.len() as u64,
            max_bytes: self.max_bytes,
            sent_bytes: self.sent_bytes.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, outcome: Outcome) {
        let i = OUTCOMES.iter().position(|o| *o == outcome).unwrap_or(0);
        self.requests[i].fetch_add(1, Ordering::Relaxed);
    }

    fn expired(&self, e: &Entry, now: Instant) -> bool {
        self.max_age.is_some_and(|age| now.duration_since(e.created) > age)
    }

    /// Removes `key`'s entry (if it is still `pack`): its file is deleted and no longer counted.
    fn remove_locked(&self, inner: &mut Inner, key: &[u8; 32]) -> Option<Arc<Pack>> {
        let e = inner.entries.remove(key)?;
        inner.bytes -= e.pack.counted.swap(0, Ordering::SeqCst);
        if let Err(err) = std::fs::remove_file(&e.pack.path)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %e.pack.path.display(), error = %err, "cannot remove a pack cache file");
        }
        Some(e.pack)
    }

    /// Removes expired whole entries, then least recently used whole entries while the total is
    /// over the bound; then, if it still is, `writing`'s own entry.
    fn evict_locked(&self, inner: &mut Inner, now: Instant, writing: Option<&[u8; 32]>) {
        let expired: Vec<[u8; 32]> = inner.entries.iter().filter(|(_, e)| e.pack.is_whole() && self.expired(e, now)).map(|(k, _)| *k).collect();
        for k in expired {
            self.remove_locked(inner, &k);
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        while inner.bytes > self.max_bytes {
            let oldest = inner.entries.iter().filter(|(_, e)| e.pack.is_whole()).min_by_key(|(_, e)| e.last_used).map(|(k, _)| *k);
            match oldest {
                Some(k) => {
                    self.remove_locked(inner, &k);
                    self.evictions.fetch_add(1, Ordering::Relaxed);
                }
                None => break,
            }
        }
        if inner.bytes > self.max_bytes
            && let Some(k) = writing
            && self.remove_locked(inner, k).is_some()
        {
            tracing::info!(max_bytes = self.max_bytes, "an upload-pack answer is larger than the pack cache; streamed to its readers, not kept");
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Pack {
    fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    fn is_whole(&self) -> bool {
        self.progress().end == Some(End::Whole)
    }
}

/// Sets the end of a pack when its producer is dropped without having set it (its task was
/// aborted): readers break off instead of waiting for bytes that never come.
struct Producing(Arc<Pack>);

impl Drop for Producing {
    fn drop(&mut self) {
        self.0.progress.send_if_modified(|p| {
            if p.end.is_none() {
                p.started.get_or_insert(false);
                p.end = Some(End::Broken);
                true
            } else {
                false
            }
        });
    }
}

/// The key of a request: repository, protocol, body and the repository's ref state.
fn key(repo: &Path, protocol: Option<&str>, state: &[u8], body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [repo.as_os_str().as_encoded_bytes(), protocol.unwrap_or("").as_bytes(), state, body] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// The repository's ref state as the advertisement cache reads it (`None`: cannot be keyed).
async fn ref_state(state: &AppState, repo: &Path) -> Option<Vec<u8>> {
    let (state, repo) = (state.clone(), repo.to_owned());
    tokio::task::spawn_blocking(move || state.adverts.state(&repo)).await.unwrap_or(None)
}

/// Answers a stateless upload-pack request whose body is `body`: from the cache when it can,
/// otherwise as the git service would. The stream is git's answer, byte for byte.
pub(crate) async fn upload_pack(
    state: &AppState,
    cache: &Arc<PackCache>,
    call: Call,
    body: Bytes,
) -> Result<std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>, GitError> {
    let keyed = match cacheable(&body) {
        true => ref_state(state, &call.path).await,
        false => None,
    };
    let Some(ref_state) = keyed else {
        cache.count(Outcome::Bypass);
        return Ok(Box::pin(git_service::stateless_rpc(state, call, Input::Buffered(body)).await?));
    };
    let key = key(&call.path, call.protocol.as_deref(), &ref_state, &body);
    let repo = call.repo.clone();
    let now = Instant::now();
    // The lock is never held across an await; `None` (the call left in place) when the file
    // cannot be made.
    let mut call = Some(call);
    let joined = (|| {
        let mut inner = cache.lock();
        let found = match inner.entries.get_mut(&key) {
            Some(e) if e.pack.is_whole() && cache.expired(e, now) => None,
            Some(e) => {
                e.last_used = now;
                Some((e.pack.clone(), if e.pack.is_whole() { Outcome::Hit } else { Outcome::Shared }))
            }
            None => None,
        };
        match found {
            Some(f) => Some(f),
            None => {
                if cache.remove_locked(&mut inner, &key).is_some() {
                    cache.evictions.fetch_add(1, Ordering::Relaxed);
                }
                let path = cache.dir.join(format!("{}-{}{SUFFIX}", hex(&key), cache.seq.fetch_add(1, Ordering::Relaxed)));
                let file = match std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot write to the pack cache; running git without it");
                        return None;
                    }
                };
                let (progress, _) = watch::channel(Progress { started: None, written: 0, end: None });
                let pack = Arc::new(Pack { file, path, progress, counted: AtomicU64::new(0) });
                inner.entries.insert(key, Entry { pack: pack.clone(), created: now, last_used: now });
                cache.evict_locked(&mut inner, now, None);
                let producing = Producing(pack.clone());
                let call = call.take().expect("a call for the first request");
                state.tasks.spawn(produce(state.clone(), cache.clone(), key, ref_state, call, body.clone(), producing));
                Some((pack, Outcome::Miss))
            }
        }
    })();
    let (pack, outcome) = match (joined, call) {
        (Some(j), _) => j,
        (None, Some(call)) => {
            cache.count(Outcome::Bypass);
            return Ok(Box::pin(git_service::stateless_rpc(state, call, Input::Buffered(body)).await?));
        }
        (None, None) => unreachable!("the call is taken only when an entry is made"),
    };
    cache.count(outcome);
    // Answered once git started (or could not be: then as without a cache, an error).
    let mut rx = pack.progress.subscribe();
    let started = rx.wait_for(|p| p.started.is_some()).await.map(|p| p.started == Some(true)).unwrap_or(false);
    if !started {
        return Err(GitError::Io { what: "upload-pack", repo, source: std::io::Error::other("the pack cache's git run did not start (see the log)") });
    }
    Ok(Box::pin(read(cache.clone(), pack, rx)))
}

/// Runs git for `key` and writes its answer into the entry's file; keeps the entry if git
/// succeeded and the refs did not move meanwhile, removes it otherwise.
async fn produce(state: AppState, cache: Arc<PackCache>, key: [u8; 32], before: Vec<u8>, call: Call, body: Bytes, producing: Producing) {
    let pack = producing.0.clone();
    let path = call.path.clone();
    let repo = call.repo.clone();
    let started = git_service::stateless_rpc_owned(&state, call, Input::Buffered(body)).await;
    let (mut stdout, op, wait) = match started {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%repo, error = %e, "cannot start git upload-pack for the pack cache");
            let mut inner = cache.lock();
            if inner.entries.get(&key).is_some_and(|e| Arc::ptr_eq(&e.pack, &pack)) {
                cache.remove_locked(&mut inner, &key);
            }
            drop(inner);
            pack.progress.send_modify(|p| {
                p.started = Some(false);
                p.end = Some(End::Broken);
            });
            return;
        }
    };
    pack.progress.send_modify(|p| p.started = Some(true));
    let mut written = 0u64;
    let mut disk_ok = true;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match stdout.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(%repo, error = %e, "reading git upload-pack's answer failed");
                break;
            }
        };
        op.sent(&buf[..n]);
        if !disk_ok {
            // The file is broken; git is read to its end so that it exits on its own.
            continue;
        }
        let chunk = buf[..n].to_vec();
        let (p, at) = (pack.clone(), written);
        let wrote = tokio::task::spawn_blocking(move || p.file.write_all_at(&chunk, at)).await.unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = wrote {
            tracing::warn!(%repo, path = %pack.path.display(), error = %e, "cannot write to the pack cache");
            disk_ok = false;
            let mut inner = cache.lock();
            if inner.entries.get(&key).is_some_and(|e| Arc::ptr_eq(&e.pack, &pack)) {
                cache.remove_locked(&mut inner, &key);
            }
            drop(inner);
            pack.progress.send_modify(|p| p.end = Some(End::Broken));
            continue;
        }
        written += n as u64;
        {
            let mut inner = cache.lock();
            if inner.entries.get(&key).is_some_and(|e| Arc::ptr_eq(&e.pack, &pack)) {
                pack.counted.fetch_add(n as u64, Ordering::SeqCst);
                inner.bytes += n as u64;
                if inner.bytes > cache.max_bytes {
                    cache.evict_locked(&mut inner, Instant::now(), Some(&key));
                }
            }
        }
        pack.progress.send_modify(|p| p.written = written);
    }
    let status = wait.await;
    let success = matches!(&status, Ok(s) if s.success()) && disk_ok;
    let kept = success && ref_state(&state, &path).await.as_deref() == Some(&before[..]);
    {
        let mut inner = cache.lock();
        let ours = inner.entries.get(&key).is_some_and(|e| Arc::ptr_eq(&e.pack, &pack));
        if ours && !kept {
            cache.remove_locked(&mut inner, &key);
        }
        // Marked whole under the lock, so that eviction never sees a whole entry it cannot count.
        if disk_ok {
            pack.progress.send_modify(|p| p.end = Some(if success { End::Whole } else { End::Failed }));
        }
    }
    drop(producing);
}

/// A reader of `pack`: the bytes as they are written, to the end.
fn read(cache: Arc<PackCache>, pack: Arc<Pack>, rx: watch::Receiver<Progress>) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold(Some((cache, pack, rx, 0u64)), |s| async move {
        let (cache, pack, mut rx, at) = s?;
        loop {
            let p = *rx.borrow_and_update();
            if p.end == Some(End::Broken) {
                return Some((Err(std::io::Error::other("the pack cache's answer broke off")), None));
            }
            if at < p.written {
                let want = (p.written - at).min(CHUNK as u64) as usize;
                let reading = pack.clone();
                let got = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; want];
                    let n = reading.file.read_at(&mut buf, at)?;
                    buf.truncate(n);
                    Ok::<_, std::io::Error>(buf)
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                return match got {
                    Ok(b) if !b.is_empty() => {
                        cache.sent_bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
                        let next = at + b.len() as u64;
                        Some((Ok(Bytes::from(b)), Some((cache, pack, rx, next))))
                    }
                    Ok(_) => Some((Err(std::io::Error::other("the pack cache's file is shorter than written")), None)),
                    Err(e) => Some((Err(e), None)),
                };
            }
            if p.end.is_some() {
                return None;
            }
            if rx.changed().await.is_err() {
                return Some((Err(std::io::Error::other("the pack cache's producer went away")), None));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(s: &str) -> Vec<u8> {
        pktline::encode(s.as_bytes()).unwrap()
    }

    #[test]
    fn only_requests_without_haves_are_cacheable() {
        let want = "want 1111111111111111111111111111111111111111 side-band-64k ofs-delta\n";
        let v0 = [pkt(want), b"0000".to_vec(), pkt("done\n")].concat();
        let v2 = [
            pkt("command=fetch\n"),
            pkt("agent=git/2.47.3\n"),
            b"0001".to_vec(),
            pkt("thin-pack\n"),
            pkt(want),
            pkt("deepen 1\n"),
            pkt("filter blob:none\n"),
            pkt("done\n"),
            b"0000".to_vec(),
        ]
        .concat();
        let with_have = [pkt(want), b"0000".to_vec(), pkt("have 2222222222222222222222222222222222222222\n"), pkt("done\n")].concat();
        let v2_have =
            [pkt("command=fetch\n"), b"0001".to_vec(), pkt(want), pkt("have 2222222222222222222222222222222222222222\n"), pkt("done\n"), b"0000".to_vec()]
                .concat();
        assert!(cacheable(&v0));
        assert!(cacheable(&v2));
        assert!(!cacheable(&with_have));
        assert!(!cacheable(&v2_have));
        assert!(!cacheable(b""), "nothing asked");
        assert!(!cacheable(b"zzzz"), "not pkt-lines");
        assert!(!cacheable(&v0[..v0.len() - 2]), "cut short");
    }

    #[test]
    fn keys_differ_in_every_part() {
        let base = key(Path::new("/r/1"), Some("version=2"), b"state", b"body");
        assert_eq!(base, key(Path::new("/r/1"), Some("version=2"), b"state", b"body"));
        for other in [
            key(Path::new("/r/2"), Some("version=2"), b"state", b"body"),
            key(Path::new("/r/1"), None, b"state", b"body"),
            key(Path::new("/r/1"), Some("version=2"), b"state2", b"body"),
            key(Path::new("/r/1"), Some("version=2"), b"state", b"body2"),
            // Parts are length-prefixed: moving a byte from one to the next changes the key.
            key(Path::new("/r/1"), Some("version=2"), b"stat", b"ebody"),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn opening_removes_only_the_cache_s_own_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(format!("abc-1{SUFFIX}")), b"old").unwrap();
        std::fs::write(dir.path().join("keep.txt"), b"mine").unwrap();
        let c = PackCache::open(dir.path().join("."), 1 << 20, None).unwrap();
        assert!(!dir.path().join(format!("abc-1{SUFFIX}")).exists());
        assert!(dir.path().join("keep.txt").exists());
        assert_eq!(c.stats().bytes, 0);
    }
}
