//! Counting semaphores.

use super::object::LazyObject;
use super::{SyncError, deadline_of, fast};
use crate::kthread;
use crate::selected::{A, Arch as _};
use crate::time::Duration;
use core::sync::atomic::{AtomicU32, Ordering};
use rhea_sched::{ObjectId, Sched, SchedError, WakeReason};

/// A counting semaphore. [`Semaphore::give`] and [`Semaphore::try_take`] may be called from
/// interrupt handlers.
///
/// While no thread waits, the units live in the semaphore itself and `take`/`give` are one
/// atomic update ([`super::fast`]) without the scheduler lock. The first `take` that finds none
/// moves them into the scheduler's object under its lock (setting [`SLOW`]), and every
/// operation goes through the scheduler — priority order, hand-off to the most important
/// waiter, timeouts, suspension — until one finds no waiter left and moves the units back.
/// Both moves happen under the scheduler lock; the fast path only counts while [`SLOW`] is
/// clear, so the units are always in exactly one place.
#[derive(Debug)]
pub struct Semaphore {
    obj: LazyObject,
    /// Units held here while [`SLOW`] is clear.
    fast: AtomicU32,
    max: u32,
}

/// Set while the scheduler's object holds the units (it has, or recently had, waiters).
const SLOW: u32 = 1 << 31;

impl Semaphore {
    /// A semaphore holding `initial` units, at most `max` (at most 2^31 - 1).
    pub const fn new(initial: u32, max: u32) -> Self {
        let max = if max >= SLOW { SLOW - 1 } else { max };
        Self {
            obj: LazyObject::new(),
            fast: AtomicU32::new(if initial < max { initial } else { max }),
            max,
        }
    }

    /// The scheduler's object (created empty: the units start here) with the units moved into
    /// it; the scheduler lock is held.
    fn to_slow(&self, s: &mut Sched) -> Result<ObjectId, SchedError> {
        let id = self.obj.get_in(s, |s| s.create_semaphore(0, self.max));
        let units = self.fast.fetch_or(SLOW, Ordering::AcqRel) & !SLOW;
        if units > 0 {
            s.sem_deposit(id, units)?;
        }
        Ok(id)
    }

    /// Moves the units back here if no thread waits; the scheduler lock is held.
    fn to_fast_if_idle(&self, s: &mut Sched, id: ObjectId) {
        if let Some(units) = s.sem_withdraw_if_idle(id) {
            self.fast.store(units, Ordering::Release);
        }
    }

    fn take_inner(&self, timeout: Option<Duration>, try_only: bool) -> Result<(), SyncError> {
        // A take that may wait is refused with interrupts disabled (an interrupt handler, an
        // `IrqsOff` spin lock held) even when a unit is there: otherwise the same call would
        // succeed or fail by luck — the fast path cannot block, the scheduler refuses to.
        if !try_only && !A::irq_enabled() {
            return Err(SyncError::Sched(SchedError::AtomicContext));
        }
        match fast::update(&self.fast, |n| (n & SLOW == 0 && n > 0).then(|| n - 1)) {
            Ok(_) => return Ok(()),
            Err(0) if try_only => return Err(SyncError::WouldBlock),
            Err(_) => {}
        }
        let deadline = deadline_of(timeout);
        let mut taken = false;
        let r = kthread::block_on(|s, cpu| {
            let id = self.to_slow(s)?;
            let r = s.sem_take(cpu, id, deadline, try_only);
            if let Ok((true, _)) = r {
                self.to_fast_if_idle(s, id);
            }
            r.map(|(got, d)| {
                taken = got;
                (got || try_only, d)
            })
        })?;
        match r {
            None if taken => Ok(()),
            None => Err(SyncError::WouldBlock),
            Some(WakeReason::Acquired) => Ok(()),
            Some(_) => Err(SyncError::Timeout),
        }
    }

    /// Takes a unit, waiting as long as it takes.
    pub fn take(&self) -> Result<(), SyncError> {
        self.take_inner(None, false)
    }

    /// Takes a unit, waiting at most `timeout`.
    pub fn take_timeout(&self, timeout: Duration) -> Result<(), SyncError> {
        self.take_inner(Some(timeout), false)
    }

    /// Takes a unit if one is there (interrupt-safe).
    pub fn try_take(&self) -> Result<(), SyncError> {
        self.take_inner(None, true)
    }

    /// Gives a unit, to the most important waiter if any (interrupt-safe). Errors if the
    /// count would exceed its maximum.
    pub fn give(&self) -> Result<(), SyncError> {
        let max = self.max;
        loop {
            match fast::update(&self.fast, |n| (n & SLOW == 0 && n < max).then(|| n + 1)) {
                Ok(_) => return Ok(()),
                Err(n) if n & SLOW == 0 => return Err(SyncError::Sched(SchedError::Overflow)),
                Err(_) => {}
            }
            let r = kthread::with_sched(|s, _| {
                // Another CPU may have moved the units back since the fast attempt: retry it.
                if self.fast.load(Ordering::Acquire) & SLOW == 0 {
                    return (None, Default::default());
                }
                let Some(id) = self.obj.registered() else {
                    return (None, Default::default());
                };
                match s.sem_give(id) {
                    Ok(d) => {
                        self.to_fast_if_idle(s, id);
                        (Some(Ok(())), d)
                    }
                    Err(e) => (Some(Err(SyncError::Sched(e))), Default::default()),
                }
            });
            if let Some(r) = r {
                return r;
            }
        }
    }

    /// Units available now.
    pub fn count(&self) -> u32 {
        let n = self.fast.load(Ordering::Acquire);
        if n & SLOW == 0 {
            return n;
        }
        kthread::with_sched(|s, _| {
            let n = self.fast.load(Ordering::Acquire);
            let count = match self.obj.registered() {
                Some(id) if n & SLOW != 0 => s.sem_count(id).unwrap_or(0),
                _ => n & !SLOW,
            };
            (count, Default::default())
        })
    }
}

impl Drop for Semaphore {
    fn drop(&mut self) {
        self.obj.destroy("semaphore");
    }
}
