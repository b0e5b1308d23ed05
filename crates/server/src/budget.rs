//! One cap on the memory that request bodies read whole may hold at once (REST JSON, web forms,
//! fetch negotiations), across all requests: past it, a request is answered 503 at once rather
//! than the process growing (a thousand clients each sending half a body must not take a
//! gigabyte). Pushes stream and take nothing from it.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes are counted in KiB so the semaphore's permit count stays small.
const UNIT: u64 = 1024;

pub(crate) struct BodyBudget {
    sem: Arc<Semaphore>,
    pub(crate) total: u64,
}

/// Memory held for one request's body; given back when dropped.
pub(crate) struct Held(Option<OwnedSemaphorePermit>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request bodies in memory are at their cap of {total} bytes")]
pub(crate) struct Exhausted {
    pub(crate) total: u64,
}

impl BodyBudget {
    /// `total = 0` disables the cap.
    pub(crate) fn new(total: u64) -> Self {
        let units = total.div_ceil(UNIT).min(Semaphore::MAX_PERMITS as u64) as usize;
        BodyBudget { sem: Arc::new(Semaphore::new(units)), total }
    }

    /// Bytes held now (in whole KiB, as counted).
    pub(crate) fn in_use(&self) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let units = self.total.div_ceil(UNIT).min(Semaphore::MAX_PERMITS as u64);
        units.saturating_sub(self.sem.available_permits() as u64) * UNIT
    }

    pub(crate) fn none() -> Held {
        Held(None)
    }

    /// Takes `bytes` more for `held`, or fails at once when the budget cannot spare them.
    pub(crate) fn take(&self, held: &mut Held, bytes: u64) -> Result<(), Exhausted> {
        if self.total == 0 || bytes == 0 {
            return Ok(());
        }
        let units = u32::try_from(bytes.div_ceil(UNIT)).map_err(|_| Exhausted { total: self.total })?;
        let permit = self.sem.clone().try_acquire_many_owned(units).map_err(|_| Exhausted { total: self.total })?;
        match &mut held.0 {
            Some(p) => p.merge(permit),
            None => held.0 = Some(permit),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_take_from_one_budget_and_give_back_when_done() {
        let b = BodyBudget::new(10 * 1024);
        let mut first = BodyBudget::none();
        b.take(&mut first, 6000).unwrap();
        b.take(&mut first, 2000).unwrap();
        let mut second = BodyBudget::none();
        assert_eq!(b.take(&mut second, 4000), Err(Exhausted { total: 10 * 1024 }), "8 KiB of 10 held");
        b.take(&mut second, 2000).unwrap();
        assert_eq!(b.in_use(), 10 * 1024);
        drop(first);
        assert_eq!(b.in_use(), 2 * 1024);
        b.take(&mut second, 8000).unwrap();
        let off = BodyBudget::new(0);
        let mut h = BodyBudget::none();
        off.take(&mut h, u64::MAX).unwrap();
    }
}
