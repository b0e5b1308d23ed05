//! The server's background tasks, owned: every task the server starts beside a request (the
//! stdin feeder and supervisor of each git process, maintenance runs) is spawned on one
//! [`Tasks`], so that shutdown can wait for them with a deadline and then tell the git
//! processes still running to stop ([`Tasks::stop`]), instead of leaving them behind.
//!
//! A small own tracker (a count and a `Notify`, like tokio-util's `TaskTracker`) rather than
//! another dependency; [`Cancel`] is a one-shot signal like its `CancellationToken`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// A signal that, once given, stays given; every waiter wakes.
#[derive(Clone, Default)]
pub(crate) struct Cancel(Arc<CancelInner>);

#[derive(Default)]
struct CancelInner {
    given: AtomicBool,
    notify: Notify,
}

impl Cancel {
    pub(crate) fn new() -> Cancel {
        Cancel::default()
    }

    pub(crate) fn cancel(&self) {
        self.0.given.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.given.load(Ordering::SeqCst)
    }

    /// Resolves once [`Cancel::cancel`] was called (at once if it already was).
    pub(crate) async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a cancel between the two is not missed.
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// Owns the server's background tasks.
#[derive(Clone, Default)]
pub(crate) struct Tasks(Arc<TasksInner>);

#[derive(Default)]
struct TasksInner {
    live: AtomicUsize,
    closed: AtomicBool,
    changed: Notify,
    /// Given at shutdown, once the drain deadline passed: git processes still running are
    /// terminated and reaped, maintenance starts nothing new.
    stop: Cancel,
    /// Given when the tracker is closed (shutdown began): tasks that only wait for their next
    /// round (the audit log's daily pruning) end then, instead of holding shutdown up.
    closing: Cancel,
}

/// Counts one task from spawn until its future is done or dropped (aborted).
struct Live(Arc<TasksInner>);

impl Drop for Live {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.changed.notify_waiters();
        }
    }
}

impl Tasks {
    pub(crate) fn new() -> Tasks {
        Tasks::default()
    }

    /// Spawns `task` on the runtime, owned by this tracker.
    pub(crate) fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.live.fetch_add(1, Ordering::SeqCst);
        let live = Live(self.0.clone());
        // In the spawner's span, so that its log lines carry the node id as the request's do.
        tokio::spawn(tracing::Instrument::in_current_span(async move {
            let _live = live;
            task.await
        }))
    }

    /// Tasks spawned and not yet finished.
    pub(crate) fn len(&self) -> usize {
        self.0.live.load(Ordering::SeqCst)
    }

    /// Marks the tracker closed: [`Tasks::wait`] resolves once it is also empty. Tasks may still
    /// be spawned (a push that finishes while draining publishes its event, whose subscribers
    /// may spawn), and are waited for too.
    pub(crate) fn close(&self) {
        self.0.closed.store(true, Ordering::SeqCst);
        self.0.closing.cancel();
        self.0.changed.notify_waiters();
    }

    /// Given once [`Tasks::close`] was called.
    pub(crate) fn closing(&self) -> &Cancel {
        &self.0.closing
    }

    /// Resolves once the tracker is closed and no task is running.
    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.0.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.0.closed.load(Ordering::SeqCst) && self.len() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// The shutdown signal that git processes and maintenance watch.
    pub(crate) fn stop(&self) -> &Cancel {
        &self.0.stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn wait_resolves_once_closed_and_every_task_is_done() {
        let tasks = Tasks::new();
        let release = Cancel::new();
        let r = release.clone();
        tasks.spawn(async move { r.cancelled().await });
        tasks.close();
        assert!(tokio::time::timeout(Duration::from_millis(50), tasks.wait()).await.is_err(), "a task is still running");
        release.cancel();
        tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await.expect("the tracker empties");
        assert_eq!(tasks.len(), 0);
    }

    #[tokio::test]
    async fn an_aborted_task_is_no_longer_counted() {
        let tasks = Tasks::new();
        let h = tasks.spawn(std::future::pending::<()>());
        assert_eq!(tasks.len(), 1);
        h.abort();
        let _ = h.await;
        assert_eq!(tasks.len(), 0);
    }

    #[tokio::test]
    async fn cancel_wakes_every_waiter_and_stays_given() {
        let c = Cancel::new();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                tokio::spawn({
                    let c = c.clone();
                    async move { c.cancelled().await }
                })
            })
            .collect();
        tokio::task::yield_now().await;
        c.cancel();
        for w in waiters {
            tokio::time::timeout(Duration::from_secs(5), w).await.unwrap().unwrap();
        }
        tokio::time::timeout(Duration::from_millis(50), c.cancelled()).await.expect("already given");
    }
}
