//! The request body's deadline that grows with the bytes received, as Apache's mod_reqtimeout
//! `body=timeout,MinRate=rate`: what cuts a body trickled in to hold a connection open, never a
//! slow but steady upload.

use tokio::time::Instant;

use crate::config::BodyRate;

/// One request body's clock: when its first read began and how many bytes have arrived.
#[derive(Debug)]
pub(crate) struct BodyClock {
    rate: BodyRate,
    start: Option<Instant>,
    received: u64,
}

impl BodyClock {
    pub(crate) fn new(rate: BodyRate) -> Self {
        BodyClock { rate, start: None, received: 0 }
    }

    /// The deadline for the next read, starting the clock at the first call (the body's
    /// first read, after any `100 Continue`, as mod_reqtimeout starts its body stage when the
    /// body is first read). `None`: no body deadline is configured.
    pub(crate) fn deadline(&mut self) -> Option<Instant> {
        let start = *self.start.get_or_insert_with(Instant::now);
        self.rate.deadline(start, self.received)
    }

    /// `n` more bytes of the body arrived: the deadline moves by `n / min_rate` seconds. The
    /// clock starts here if these bytes came before any wait (a splice finding them queued).
    pub(crate) fn received(&mut self, n: u64) {
        self.start.get_or_insert_with(Instant::now);
        self.received = self.received.saturating_add(n);
    }

    /// Until when to wait for the next bytes: the earlier of the stall limit (`timeout`
    /// from now) and the body's deadline; and whether it is the body's deadline.
    pub(crate) fn wait_until(&mut self, stall: std::time::Duration) -> (Instant, bool) {
        let stall_at = Instant::now() + stall;
        match self.deadline() {
            Some(d) if d <= stall_at => (d, true),
            _ => (stall_at, false),
        }
    }
}
