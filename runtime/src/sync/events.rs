//! Event flags.

use super::object::LazyObject;
use super::{SyncError, deadline_of, fast};
use crate::kthread;
use crate::selected::{A, Arch as _};
use crate::time::Duration;
use core::sync::atomic::{AtomicU64, Ordering};
use rhea_sched::{Decision, EventWait, ObjectId, Sched, SchedError, WakeReason};

/// How [`EventFlags::wait`] combines the mask.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WaitMode {
    /// Any bit of the mask.
    Any,
    /// Every bit of the mask.
    All,
}

/// 32 event flags threads wait on. [`EventFlags::set`] may be called from interrupt handlers.
///
/// While no thread waits, the flags live in the object itself (the low 32 bits of one word)
/// and `set`, `clear` and a `wait` that is already satisfied are one atomic update
/// ([`super::fast`]) without the scheduler lock. The first `wait` that must block moves them
/// into the scheduler's object under its lock (setting [`SLOW`]), and every operation goes
/// through the scheduler — waking waiters in priority order, timeouts — until one finds no
/// waiter left and moves them back. Both moves happen under the scheduler lock, and the fast
/// path only acts while [`SLOW`] is clear, so the flags are always in exactly one place (the
/// same pattern as [`super::Semaphore`]).
#[derive(Debug)]
pub struct EventFlags {
    obj: LazyObject,
    /// The flags (low 32 bits) while [`SLOW`] is clear.
    fast: AtomicU64,
}

/// Set while the scheduler's object holds the flags (it has, or recently had, waiters).
const SLOW: u64 = 1 << 32;

impl Default for EventFlags {
    fn default() -> Self {
        Self::new()
    }
}

impl EventFlags {
    /// All flags clear.
    pub const fn new() -> Self {
        Self {
            obj: LazyObject::new(),
            fast: AtomicU64::new(0),
        }
    }

    /// The scheduler's object (created clear: the flags start here) with the flags moved into
    /// it; the scheduler lock is held.
    fn to_slow(&self, s: &mut Sched) -> Result<ObjectId, SchedError> {
        let id = self.obj.get_in(s, |s| s.create_events());
        let bits = self.fast.fetch_or(SLOW, Ordering::AcqRel);
        if bits & SLOW == 0 && bits as u32 != 0 {
            s.events_deposit(id, bits as u32)?;
        }
        Ok(id)
    }

    /// Moves the flags back here if no thread waits; the scheduler lock is held.
    fn to_fast_if_idle(&self, s: &mut Sched, id: ObjectId) {
        if let Some(bits) = s.events_withdraw_if_idle(id) {
            self.fast.store(u64::from(bits), Ordering::Release);
        }
    }

    /// Runs `slow` on the scheduler's object under the scheduler lock if the flags are there,
    /// then moves them back if nobody waits; `None` if another CPU moved them back first (the
    /// caller retries its fast path).
    fn slow_op<R>(&self, slow: impl FnOnce(&mut Sched, ObjectId) -> (R, Decision)) -> Option<R> {
        kthread::with_sched(|s, _| {
            if self.fast.load(Ordering::Acquire) & SLOW == 0 {
                return (None, Decision::default());
            }
            let Some(id) = self.obj.registered() else {
                return (None, Decision::default());
            };
            let (r, d) = slow(s, id);
            self.to_fast_if_idle(s, id);
            (Some(r), d)
        })
    }

    /// Sets `bits`, waking every waiter now satisfied.
    pub fn set(&self, bits: u32) {
        // RT: the retry runs only when another CPU moved the flags back between the fast
        // attempt and the lock — once per such move.
        loop {
            if fast::update64(&self.fast, |w| {
                (w & SLOW == 0).then_some(w | u64::from(bits))
            })
            .is_ok()
            {
                return;
            }
            let done = self.slow_op(|s, id| match s.events_set(id, bits) {
                Ok(d) => ((), d),
                Err(_) => ((), Decision::default()),
            });
            if done.is_some() {
                return;
            }
        }
    }

    /// Clears `bits`; returns the flags left set.
    pub fn clear(&self, bits: u32) -> u32 {
        loop {
            if let Ok(w) = fast::update64(&self.fast, |w| {
                (w & SLOW == 0).then_some(w & !u64::from(bits))
            }) {
                return w as u32 & !bits;
            }
            let left =
                self.slow_op(|s, id| (s.events_clear(id, bits).unwrap_or(0), Decision::default()));
            if let Some(left) = left {
                return left;
            }
        }
    }

    /// Waits until `mask` is satisfied per `mode`, at most `timeout` if given; returns the
    /// flags as they were when the wait was satisfied, clearing the mask's bits if `clear`.
    /// Refused with `AtomicContext` whenever interrupts are disabled (an interrupt handler, an
    /// `IrqsOff` spin lock held), even if the flags are already set: the same call must not
    /// succeed or fail by whether it happened to need to wait. [`EventFlags::try_wait`] is the
    /// form for those contexts.
    pub fn wait(
        &self,
        mask: u32,
        mode: WaitMode,
        clear: bool,
        timeout: Option<Duration>,
    ) -> Result<u32, SyncError> {
        if !A::irq_enabled() {
            return Err(SyncError::Sched(SchedError::AtomicContext));
        }
        self.wait_inner(mask, mode, clear, timeout, false)
    }

    /// [`EventFlags::wait`] without waiting: the flags if `mask` is satisfied now (cleared per
    /// `clear`), else `WouldBlock`. Allowed in interrupt handlers and under spin locks.
    pub fn try_wait(&self, mask: u32, mode: WaitMode, clear: bool) -> Result<u32, SyncError> {
        self.wait_inner(mask, mode, clear, None, true)
    }

    fn wait_inner(
        &self,
        mask: u32,
        mode: WaitMode,
        clear: bool,
        timeout: Option<Duration>,
        try_only: bool,
    ) -> Result<u32, SyncError> {
        let wait = EventWait {
            mask,
            all: mode == WaitMode::All,
            clear,
        };
        let satisfied = |bits: u32| match mode {
            WaitMode::All => bits & mask == mask,
            WaitMode::Any => bits & mask != 0,
        };
        let fast = fast::update64(&self.fast, |w| {
            (w & SLOW == 0 && satisfied(w as u32)).then_some(if clear {
                w & !u64::from(mask)
            } else {
                w
            })
        });
        match fast {
            Ok(w) => return Ok(w as u32),
            // Not satisfied and no thread waits (so the scheduler holds nothing newer).
            Err(w) if try_only && w & SLOW == 0 => return Err(SyncError::WouldBlock),
            Err(_) => {}
        }
        let deadline = deadline_of(timeout);
        let mut seen = None;
        let r = kthread::block_on(|s, cpu| {
            let e = self.to_slow(s)?;
            let r = s.events_wait(cpu, e, wait, deadline, try_only);
            if let Ok((Some(_), _)) = r {
                self.to_fast_if_idle(s, e);
            }
            r.map(|(bits, d)| {
                seen = bits;
                (bits.is_some() || try_only, d)
            })
        })?;
        match r {
            None => seen.ok_or(SyncError::WouldBlock),
            Some(WakeReason::Signaled) => Ok(kthread::with_sched(|s, cpu| {
                let cur = s.current(cpu);
                (s.take_event_bits(cur), Decision::default())
            })),
            Some(_) => Err(SyncError::Timeout),
        }
    }
}

impl Drop for EventFlags {
    fn drop(&mut self) {
        self.obj.destroy("event flags");
    }
}
