//! Idle keep-alive connections, parked without a timer or a large future of their own.
//!
//! A connection waiting for its next request needs three things: to wake when bytes arrive, to
//! close when its keep-alive deadline passes, and to close when the gateway stops. With tokio's
//! own tools that is a readiness future, a `Sleep` and a `watch::Changed`: about 400 bytes in
//! every idle connection's task, and a timer-wheel insertion and removal per request. Here the
//! readiness is the socket's own waker slot (`poll_read_ready`, no storage), and the deadline
//! and the stop signal are one slot in a shared table (24 bytes): a sweeper task wakes the
//! connections whose deadlines have passed, and all of them when the gateway stops. nginx keeps
//! its idle connections the same way, in one timer tree per worker.
//!
//! Deadlines are kept to within [`GRAIN`]: the sweeper wakes at most that often.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// How late a deadline may be honoured: the sweeper wakes at most once per grain.
pub(crate) const GRAIN: Duration = Duration::from_millis(25);
const SHARDS: usize = 8;

/// The table of parked connections, one per gateway.
pub(crate) struct Parked {
    shards: [Mutex<Shard>; SHARDS],
    next_shard: AtomicUsize,
    stopping: AtomicBool,
    /// When the sweeper next looks, in milliseconds since `base` (`u64::MAX`: nothing to look
    /// for). A connection parked with an earlier deadline wakes it.
    next_sweep: AtomicU64,
    sweeper: Notify,
    base: Instant,
}

#[derive(Default)]
struct Shard {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

struct Slot {
    waker: Option<Waker>,
    /// Milliseconds since `Parked::base`.
    deadline: u64,
}

/// How an idle wait ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Idle {
    /// The next request's first bytes (or the peer's close) can be read.
    Readable,
    TimedOut,
    Stopping,
    Failed,
}

/// Something a parked connection waits on: readable bytes, without reading them.
pub(crate) trait Ready {
    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl Default for Parked {
    fn default() -> Self {
        Parked {
            shards: Default::default(),
            next_shard: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            next_sweep: AtomicU64::new(u64::MAX),
            sweeper: Notify::new(),
            base: Instant::now(),
        }
    }
}

impl Parked {
    fn millis(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_millis() as u64
    }

    /// Wait until `io` is readable, `deadline` passes or the gateway stops.
    pub(crate) fn wait<'a, R: Ready>(&'a self, io: &'a R, deadline: Instant) -> Wait<'a, R> {
        Wait { parked: self, io, deadline: self.millis(deadline).max(1), ticket: None }
    }

    /// Wake every parked connection (and every one parked from now on) to close.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        for shard in &self.shards {
            let wakers: Vec<Waker> = shard.lock().expect("parked shard").slots.iter_mut().filter_map(|s| s.waker.take()).collect();
            wakers.into_iter().for_each(Waker::wake);
        }
        self.sweeper.notify_one();
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Connections parked now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map(|s| s.slots.iter().filter(|x| x.waker.is_some()).count()).unwrap_or(0)).sum()
    }

    /// Wake connections whose deadlines have passed, until the gateway stops.
    pub(crate) async fn sweep(&self) {
        let mut due = Vec::new();
        while !self.stopping() {
            // While it looks, every connection that parks wakes it again: one parked behind
            // its back must not wait for a later sweep.
            self.next_sweep.store(u64::MAX, Ordering::SeqCst);
            let now = self.millis(Instant::now());
            let mut earliest = u64::MAX;
            for shard in &self.shards {
                let mut shard = shard.lock().expect("parked shard");
                for slot in shard.slots.iter_mut() {
                    if slot.waker.is_some() {
                        if slot.deadline <= now {
                            due.extend(slot.waker.take());
                        } else {
                            earliest = earliest.min(slot.deadline);
                        }
                    }
                }
            }
            // Not before one grain from now, so that a crowd of deadlines a millisecond apart
            // costs one sweep, not one each.
            let next = if earliest == u64::MAX { u64::MAX } else { earliest.max(now + GRAIN.as_millis() as u64) };
            self.next_sweep.store(next, Ordering::SeqCst);
            due.drain(..).for_each(Waker::wake);
            let notified = self.sweeper.notified();
            if next == u64::MAX {
                notified.await;
            } else {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep_until(self.base + Duration::from_millis(next)) => {}
                }
            }
        }
    }
}

/// Where a waiting connection's slot is.
#[derive(Clone, Copy)]
struct Ticket {
    shard: u32,
    slot: u32,
}

/// The future of [`Parked::wait`].
pub(crate) struct Wait<'a, R> {
    parked: &'a Parked,
    io: &'a R,
    deadline: u64,
    ticket: Option<Ticket>,
}

impl<R: Ready> Future for Wait<'_, R> {
    type Output = Idle;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Idle> {
        let this = &mut *self;
        let parked = this.parked;
        if parked.stopping() {
            return Poll::Ready(Idle::Stopping);
        }
        match this.io.poll_ready(cx) {
            Poll::Ready(Ok(())) => return Poll::Ready(Idle::Readable),
            Poll::Ready(Err(_)) => return Poll::Ready(Idle::Failed),
            Poll::Pending => {}
        }
        if this.ticket.is_some() && parked.millis(Instant::now()) >= this.deadline {
            return Poll::Ready(Idle::TimedOut);
        }
        match this.ticket {
            Some(t) => {
                let mut shard = parked.shards[t.shard as usize].lock().expect("parked shard");
                let slot = &mut shard.slots[t.slot as usize];
                match &slot.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => slot.waker = Some(cx.waker().clone()),
                }
            }
            None => {
                let shard_no = parked.next_shard.fetch_add(1, Ordering::Relaxed) % SHARDS;
                let mut shard = parked.shards[shard_no].lock().expect("parked shard");
                let slot = Slot { waker: Some(cx.waker().clone()), deadline: this.deadline };
                let at = match shard.free.pop() {
                    Some(i) => {
                        shard.slots[i as usize] = slot;
                        i
                    }
                    None => {
                        shard.slots.push(slot);
                        (shard.slots.len() - 1) as u32
                    }
                };
                drop(shard);
                this.ticket = Some(Ticket { shard: shard_no as u32, slot: at });
                if this.deadline < parked.next_sweep.load(Ordering::SeqCst) {
                    parked.next_sweep.fetch_min(this.deadline, Ordering::SeqCst);
                    parked.sweeper.notify_one();
                }
                // `stop` sets the flag before it takes the shards' locks: either it saw this
                // slot, or this sees the flag.
                if parked.stopping() {
                    return Poll::Ready(Idle::Stopping);
                }
            }
        }
        Poll::Pending
    }
}

impl<R> Drop for Wait<'_, R> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket {
            let mut shard = self.parked.shards[t.shard as usize].lock().expect("parked shard");
            shard.slots[t.slot as usize].waker = None;
            shard.free.push(t.slot);
            // A table that held a crowd gives its memory back once the crowd has gone.
            if shard.free.len() == shard.slots.len() && shard.slots.capacity() > 1024 {
                shard.slots = Vec::new();
                shard.free = Vec::new();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Readable when the flag says so; wakes the last waker when set.
    #[derive(Default)]
    struct Flag {
        set: AtomicBool,
        waker: Mutex<Option<Waker>>,
    }

    impl Flag {
        fn set(&self) {
            self.set.store(true, Ordering::SeqCst);
            if let Some(w) = self.waker.lock().unwrap().take() {
                w.wake();
            }
        }
    }

    impl Ready for Flag {
        fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            if self.set.load(Ordering::SeqCst) { Poll::Ready(Ok(())) } else { Poll::Pending }
        }
    }

    fn sweeper(p: &Arc<Parked>) -> tokio::task::JoinHandle<()> {
        let p = p.clone();
        tokio::spawn(async move { p.sweep().await })
    }

    #[tokio::test]
    async fn readable_deadline_and_stop() {
        let p = Arc::new(Parked::default());
        let sw = sweeper(&p);
        // Readable wins, and the slot is given back.
        let f = Arc::new(Flag::default());
        let f2 = f.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            f2.set();
        });
        assert_eq!(p.wait(&*f, Instant::now() + Duration::from_secs(5)).await, Idle::Readable);
        assert_eq!(p.len(), 0);
        // Deadlines pass in order, each within a grain or two.
        let waits: Vec<_> = [300u64, 100, 200]
            .into_iter()
            .map(|ms| {
                let p = p.clone();
                tokio::spawn(async move {
                    let f = Flag::default();
                    let t0 = Instant::now();
                    let r = p.wait(&f, t0 + Duration::from_millis(ms)).await;
                    (ms, r, t0.elapsed())
                })
            })
            .collect();
        for w in waits {
            let (ms, r, took) = w.await.unwrap();
            assert_eq!(r, Idle::TimedOut);
            assert!(took >= Duration::from_millis(ms), "{ms} ms deadline passed after {took:?}");
            assert!(took < Duration::from_millis(ms) + Duration::from_secs(2), "{ms} ms deadline passed after {took:?}");
        }
        // Stop wakes everything parked, and what parks later returns at once.
        let held: Vec<_> = (0..100)
            .map(|_| {
                let p = p.clone();
                tokio::spawn(async move { p.wait(&Flag::default(), Instant::now() + Duration::from_secs(3600)).await })
            })
            .collect();
        while p.len() < 100 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        p.stop();
        for h in held {
            assert_eq!(tokio::time::timeout(Duration::from_secs(5), h).await.unwrap().unwrap(), Idle::Stopping);
        }
        assert_eq!(p.wait(&Flag::default(), Instant::now() + Duration::from_secs(3600)).await, Idle::Stopping);
        tokio::time::timeout(Duration::from_secs(5), sw).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn slots_are_reused_and_a_crowd_gives_its_memory_back() {
        let p = Arc::new(Parked::default());
        let _sw = sweeper(&p);
        let flags: Vec<Arc<Flag>> = (0..5000).map(|_| Arc::new(Flag::default())).collect();
        let waits: Vec<_> = flags
            .iter()
            .map(|f| {
                let (p, f) = (p.clone(), f.clone());
                tokio::spawn(async move { p.wait(&*f, Instant::now() + Duration::from_secs(3600)).await })
            })
            .collect();
        while p.len() < 5000 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        flags.iter().for_each(|f| f.set());
        for w in waits {
            assert_eq!(w.await.unwrap(), Idle::Readable);
        }
        assert_eq!(p.len(), 0);
        assert!(p.shards.iter().all(|s| s.lock().unwrap().slots.capacity() <= 1024));
    }
}
