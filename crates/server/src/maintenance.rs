//! Background repository maintenance after pushes: a first full repack with a reachability
//! bitmap, then commit-graph and `git gc --auto` (which repacks with bitmaps once enough packs or
//! loose objects pile up).
//!
//! At most one maintenance run per repository at a time; pushes that land while one runs ask
//! for one more run afterwards instead of piling up processes. Across repositories, at most
//! `git.max_concurrent_maintenance` runs at once: a push to a hundred repositories (a release
//! script, a mirror) queues a hundred repacks rather than starting them together.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, Semaphore};

use crate::metrics::{MaintenanceOutcome, Metrics};
use crate::tasks::Tasks;

pub(crate) struct Maintenance {
    /// Runs are tasks of the server's tracker; its stop signal ends them at shutdown.
    tasks: Tasks,
    enabled: bool,
    git: PathBuf,
    env: Vec<(OsString, OsString)>,
    /// Repository id → "another run was requested while this one ran".
    running: Mutex<HashMap<i64, bool>>,
    idle: Notify,
    /// Runs allowed at once across repositories.
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    /// With shared storage: the store whose leases keep other nodes off a repository while this
    /// one maintains it, and this node's id as the holder.
    shared: std::sync::OnceLock<(trove_store::Store, String)>,
}

/// How long a maintenance lease lasts if its node dies before giving it back.
const LEASE_SECS: i64 = 3600;

impl Maintenance {
    pub(crate) fn new(tasks: Tasks, enabled: bool, max_at_once: usize, git: PathBuf, env: Vec<(OsString, OsString)>, metrics: Arc<Metrics>) -> Self {
        Self {
            tasks,
            enabled,
            git,
            env,
            running: Mutex::default(),
            idle: Notify::new(),
            slots: Arc::new(Semaphore::new(max_at_once.max(1))),
            metrics,
            shared: std::sync::OnceLock::new(),
        }
    }

    /// Repositories are shared with other nodes: take `maintenance:<id>` before each run.
    pub(crate) fn share(&self, store: trove_store::Store, node: String) {
        let _ = self.shared.set((store, node));
    }

    /// Whether this node may maintain `repo_id` now (the lease, when repositories are shared).
    async fn take(&self, repo_id: i64) -> bool {
        let Some((store, node)) = self.shared.get() else { return true };
        let node = node.clone();
        match store.run(move |s| s.take_lease(&format!("maintenance:{repo_id}"), &node, LEASE_SECS)).await {
            Ok(true) => true,
            Ok(false) => {
                tracing::debug!(repo_id, "another node is maintaining this repository; skipped");
                false
            }
            Err(e) => {
                tracing::warn!(repo_id, error = %e, "cannot take the maintenance lease; skipped until the next push");
                false
            }
        }
    }

    async fn give_back(&self, repo_id: i64) {
        let Some((store, node)) = self.shared.get() else { return };
        let node = node.clone();
        if let Err(e) = store.run(move |s| s.release_lease(&format!("maintenance:{repo_id}"), &node)).await {
            tracing::warn!(repo_id, error = %e, "cannot give the maintenance lease back; it expires by itself");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, bool>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn after_push(self: &Arc<Self>, repo_id: i64, path: PathBuf) {
        if !self.enabled {
            return;
        }
        {
            let mut m = self.lock();
            if let Some(again) = m.get_mut(&repo_id) {
                *again = true;
                return;
            }
            m.insert(repo_id, false);
        }
        let this = self.clone();
        self.tasks.spawn(async move {
            loop {
                // The semaphore is never closed, so acquiring cannot fail.
                let slot = this.slots.clone().acquire_owned().await.ok();
                // Timed from the slot: the wait for one is queueing, not maintenance.
                let started = std::time::Instant::now();
                if this.take(repo_id).await {
                    let outcome = this.run_once(&path).await;
                    this.metrics.maintenance(outcome, started.elapsed());
                    this.give_back(repo_id).await;
                }
                drop(slot);
                let mut m = this.lock();
                if m.get(&repo_id) == Some(&true) {
                    m.insert(repo_id, false);
                    continue;
                }
                m.remove(&repo_id);
                if m.is_empty() {
                    this.idle.notify_waiters();
                }
                break;
            }
        });
    }

    async fn run_once(&self, path: &Path) -> MaintenanceOutcome {
        let mut steps: Vec<&[&str]> = Vec::new();
        // A repository's first packs arrive without a reachability bitmap; until one exists,
        // every clone counts objects the slow way. Write one with a full repack, once; after
        // that `git gc --auto` keeps it current as packs accumulate.
        if !has_bitmap(path) {
            steps.push(&["repack", "-a", "-d", "-b", "-q"]);
        }
        steps.push(&["commit-graph", "write", "--reachable", "--split", "--no-progress"]);
        steps.push(&["gc", "--auto", "--quiet"]);
        let stop = self.tasks.stop();
        let mut outcome = MaintenanceOutcome::Ok;
        for args in steps {
            // Shutting down: what is left waits for the next push.
            if stop.is_cancelled() {
                return MaintenanceOutcome::Cancelled;
            }
            let mut cmd = crate::git_service::command(&self.git, &self.env);
            // In the foreground: a detached gc would leave its own session, outside the slots,
            // `idle` and the stop at shutdown.
            cmd.env("GIT_DIR", path).args(["-c", "gc.autoDetach=false"]).args(args);
            match crate::git_service::output_until(cmd, None, stop).await {
                Ok(o) if o.status.success() => {}
                // Stopped by shutdown mid-step.
                Ok(_) if stop.is_cancelled() => return MaintenanceOutcome::Cancelled,
                Ok(o) => {
                    outcome = MaintenanceOutcome::Failed;
                    tracing::warn!(repo = %path.display(), step = args[0], status = %o.status, stderr = %String::from_utf8_lossy(&o.stderr).trim(), "maintenance step failed")
                }
                Err(e) => {
                    outcome = MaintenanceOutcome::Failed;
                    tracing::warn!(repo = %path.display(), step = args[0], error = %e, "cannot run maintenance")
                }
            }
        }
        outcome
    }

    /// Keeps maintenance off repository `repo_id` (at `path`) until the returned guard is
    /// dropped: waits for a run in progress to end, then marks the repository as busy, so that
    /// a push meanwhile asks for one run after the guard is gone instead of starting one. With
    /// shared storage it also holds the maintenance lease, so no other node repacks it either.
    ///
    /// A fork links the origin's object files while it is held: a repack deleting a pack while
    /// the clone walks the directory could otherwise leave the fork without objects it needs.
    pub(crate) async fn hold(self: &Arc<Self>, repo_id: i64, path: PathBuf) -> Held {
        loop {
            let notified = self.idle.notified();
            {
                let mut m = self.lock();
                if let std::collections::hash_map::Entry::Vacant(e) = m.entry(repo_id) {
                    e.insert(false);
                    break;
                }
            }
            // A run of that repository (or another hold) is in progress; `idle` is notified only
            // when none runs at all, so also look again now and then.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(50), notified).await;
        }
        // Another node's run: wait for its lease (it lasts at most LEASE_SECS if its node died).
        let mut leased = self.shared.get().is_none();
        while !leased {
            leased = self.take(repo_id).await;
            if !leased {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
        Held { owner: self.clone(), repo_id, path: Some(path) }
    }

    /// Resolves once no maintenance is running.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.lock().is_empty() {
                return;
            }
            notified.await;
        }
    }
}

/// Maintenance of one repository kept off ([`Maintenance::hold`]) while this lives; a push
/// meanwhile gets its run when it is dropped.
pub(crate) struct Held {
    owner: Arc<Maintenance>,
    repo_id: i64,
    path: Option<PathBuf>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let again = {
            let mut m = self.owner.lock();
            let again = m.remove(&self.repo_id) == Some(true);
            if m.is_empty() {
                self.owner.idle.notify_waiters();
            }
            again
        };
        match self.path.take() {
            // The run takes the lease again (this node renews it) and gives it back after.
            Some(path) if again => self.owner.after_push(self.repo_id, path),
            _ if self.owner.shared.get().is_some() => {
                let (owner, id) = (self.owner.clone(), self.repo_id);
                self.owner.tasks.spawn(async move { owner.give_back(id).await });
            }
            _ => {}
        }
    }
}

/// Whether the repository has a pack bitmap (or a multi-pack-index bitmap).
fn has_bitmap(repo: &Path) -> bool {
    let pack_dir = repo.join("objects").join("pack");
    std::fs::read_dir(&pack_dir).map(|entries| entries.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().ends_with(".bitmap"))).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for git that logs when each step starts and ends (under flock, so lines do not
    /// interleave) and takes a moment, so overlapping runs would show as two starts in a row.
    fn fake_git(dir: &Path) -> PathBuf {
        let log = dir.join("log");
        let script = dir.join("git");
        std::fs::write(
            &script,
            format!("#!/bin/sh\nflock {log} sh -c 'echo start >> {log}'\nsleep 0.05\nflock {log} sh -c 'echo end >> {log}'\n", log = log.display()),
        )
        .unwrap();
        std::process::Command::new("chmod").arg("755").arg(&script).status().unwrap();
        script
    }

    #[tokio::test]
    async fn a_hold_waits_for_a_run_keeps_pushes_waiting_and_runs_them_when_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new(crate::node::NodeId::parse("n1").unwrap()));
        let m = Arc::new(Maintenance::new(Tasks::new(), true, 2, fake_git(dir.path()), vec![], metrics));
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join("objects/pack")).unwrap();
        let log = || std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        m.after_push(7, repo.clone());
        // The hold waits for that run: once it has it, the run is over.
        let held = m.hold(7, repo.clone()).await;
        let after_run = log();
        assert_eq!(after_run.lines().filter(|l| *l == "end").count(), 3, "{after_run}");
        // A push meanwhile starts nothing...
        m.after_push(7, repo.clone());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(log(), after_run, "maintenance ran while held");
        // ...until the hold ends.
        drop(held);
        m.idle().await;
        assert_eq!(log().lines().filter(|l| *l == "end").count(), 6);
        // Without a push meanwhile, the end of a hold runs nothing.
        drop(m.hold(7, repo).await);
        m.idle().await;
        assert_eq!(log().lines().filter(|l| *l == "end").count(), 6);
    }

    #[tokio::test]
    async fn maintenance_of_many_repositories_runs_at_most_the_allowed_number_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new(crate::node::NodeId::parse("n1").unwrap()));
        let m = Arc::new(Maintenance::new(Tasks::new(), true, 1, fake_git(dir.path()), vec![], metrics.clone()));
        for id in 0..6 {
            let repo = dir.path().join(format!("repo{id}"));
            std::fs::create_dir_all(repo.join("objects/pack")).unwrap();
            m.after_push(id, repo);
        }
        m.idle().await;
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 6 * 3 * 2, "every step of every repository ran: {log}");
        for pair in lines.chunks(2) {
            assert_eq!(pair, ["start", "end"], "two maintenance steps overlapped:\n{log}");
        }
        let text = metrics.render(&crate::metrics::Gauges {
            git_running: 0,
            git_started: 0,
            body_bytes_in_use: 0,
            body_bytes_cap: 0,
            pool: None,
            object_reads: (0, 0, 0),
            pack_cache: None,
        });
        assert!(text.contains("trove_server_maintenance_seconds_count{outcome=\"ok\"} 6\n"), "{text}");
    }
}
