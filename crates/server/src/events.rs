//! The in-process bus for what happened to repositories: after every accepted push, one event
//! with each ref's old and new id. Maintenance, pull-request rescoping and the audit log
//! (`repo.push` entries) subscribe to it. Webhooks do not listen: the supervisor writes the
//! push's webhook event from the journal file before it publishes (`webhooks.rs`).
//!
//! The updates come from git itself: Trove's `post-receive` hook (`hooks.rs`), which git runs
//! only after the refs moved, writes the lines it is given into a file named for this push,
//! which the server reads once receive-pack has exited. So an event is never sent for a push
//! that did not happen, nor missed for one that did.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// One ref a push moved. An id of forty zeros means the ref did not exist (old) or is deleted (new).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    pub name: String,
    pub old: String,
    pub new: String,
}

/// One accepted push.
#[derive(Debug, Clone)]
pub struct PushEvent {
    pub repo_id: i64,
    /// `TP/test`, for logs.
    pub repo: String,
    /// The bare repository on disk.
    pub path: PathBuf,
    /// Who pushed (the user name).
    pub user: String,
    pub updates: Vec<RefUpdate>,
}

type Subscriber = Box<dyn Fn(&Arc<PushEvent>) + Send + Sync>;

/// Subscribers are called in the order they subscribed, on the task that saw the push end;
/// each must return at once (spawn what takes time). Async listeners use [`Events::receiver`].
pub(crate) struct Events {
    subscribers: RwLock<Vec<Subscriber>>,
    broadcast: tokio::sync::broadcast::Sender<Arc<PushEvent>>,
}

impl Events {
    pub(crate) fn new() -> Self {
        Events { subscribers: RwLock::default(), broadcast: tokio::sync::broadcast::channel(1024).0 }
    }

    pub(crate) fn subscribe(&self, f: impl Fn(&Arc<PushEvent>) + Send + Sync + 'static) {
        self.subscribers.write().unwrap_or_else(|e| e.into_inner()).push(Box::new(f));
    }

    /// Every later event, for a listener on its own task; one that falls 1,024 events behind
    /// is told how many it missed (tokio's `RecvError::Lagged`).
    pub(crate) fn receiver(&self) -> tokio::sync::broadcast::Receiver<Arc<PushEvent>> {
        self.broadcast.subscribe()
    }

    pub(crate) fn publish(&self, event: PushEvent) {
        let event = Arc::new(event);
        tracing::debug!(repo = %event.repo, user = %event.user, refs = event.updates.len(), "push accepted");
        for s in self.subscribers.read().unwrap_or_else(|e| e.into_inner()).iter() {
            s(&event);
        }
        let _ = self.broadcast.send(event);
    }
}

/// Where one push's `post-receive` writes its lines (`git-home/pushes/<random>`): made here with
/// a first line naming the repository and the pusher, so that the file is the push's journal
/// (`webhooks.rs`), readable after a crash.
pub(crate) fn updates_file(git_home: &Path, repo_id: i64, user: &str) -> std::io::Result<PathBuf> {
    use rand::Rng as _;
    use trove_store::os_rng;
    let dir = git_home.join("pushes");
    std::fs::create_dir_all(&dir)?;
    let mut raw = [0u8; 12];
    os_rng().fill_bytes(&mut raw);
    let path = dir.join(raw.iter().map(|b| format!("{b:02x}")).collect::<String>());
    std::fs::write(&path, crate::webhooks::journal_header(repo_id, user))?;
    Ok(path)
}

/// `old new ref` lines, as git gives them to `post-receive`; anything else is skipped.
pub(crate) fn parse_updates(text: &str) -> Vec<RefUpdate> {
    let hex = |s: &str| (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit());
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split(' ');
            let (old, new, name) = (parts.next()?, parts.next()?, parts.next()?);
            (hex(old) && hex(new) && name.starts_with("refs/") && parts.next().is_none()).then(|| RefUpdate {
                name: name.to_owned(),
                old: old.to_owned(),
                new: new.to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_receive_lines_parse_into_ref_updates_and_junk_is_skipped() {
        let z = "0".repeat(40);
        let a = "a".repeat(40);
        let text = format!("{z} {a} refs/heads/main\n{a} {z} refs/tags/v1\nnot a line\n{a} {a}\n{a} {a} HEAD\n{a} {a} refs/heads/x extra\n");
        assert_eq!(
            parse_updates(&text),
            vec![
                RefUpdate { name: "refs/heads/main".into(), old: z.clone(), new: a.clone() },
                RefUpdate { name: "refs/tags/v1".into(), old: a.clone(), new: z.clone() },
            ]
        );
    }

    #[test]
    fn subscribers_and_receivers_see_every_event_in_order() {
        let e = Events::new();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        e.subscribe(move |ev| s2.lock().unwrap().push(ev.repo_id));
        let mut rx = e.receiver();
        for id in 1..=3 {
            e.publish(PushEvent { repo_id: id, repo: "TP/t".into(), path: "/x".into(), user: "u".into(), updates: vec![] });
        }
        assert_eq!(*seen.lock().unwrap(), [1, 2, 3]);
        for id in 1..=3 {
            assert_eq!(rx.try_recv().unwrap().repo_id, id);
        }
    }
}
