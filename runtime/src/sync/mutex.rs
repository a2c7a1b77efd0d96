//! Sleeping mutexes with transitive priority inheritance.
#![allow(
    unsafe_code,
    reason = "the mutex's data cell; each use has a SAFETY note"
)]

use super::object::LazyObject;
use super::{SyncError, deadline_of, fast};
use crate::kthread;
use crate::time::Duration;
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU64, Ordering};
use rhea_sched::{Decision, MAX_HELD_MUTEXES, ObjectId, Sched, SchedError, WakeReason};

/// A mutex without data, with explicit `lock`/`unlock`: misuse (locking twice, unlocking one
/// not held) is an error, never corruption.
///
/// # Fast path
///
/// An uncontended `lock`/`unlock` is one atomic update of [`RawMutex::word`]
/// ([`super::fast::update64`]) without the scheduler lock: `0` is free, a thread's
/// [`ThreadId::fast_tag`] is "held by it, nobody waits". A thread that finds it held by another
/// goes to the scheduler: under its lock it sets [`SLOW`] and records the fast owner as the
/// owner of the scheduler's object ([`Sched::mutex_adopt`]) *before* blocking, so the owner
/// inherits the waiter's priority as if it had locked through the scheduler, the deadlock
/// check sees the chain, and the owner's `unlock` (its update fails on [`SLOW`]) hands the
/// mutex over in the scheduler. While [`SLOW`] is set every operation goes through the
/// scheduler; the `unlock` that leaves the object free with nobody waiting clears the word.
///
/// **Abandonment**: an owner that exits holding a mutex the scheduler knows about has it
/// handed on at its exit, the next owner told ([`SyncError::Abandoned`]), as before. A mutex
/// it took on the fast path is found abandoned lazily: the next thread to lock it looks the
/// owner's tag up ([`Sched::thread_of_tag`]) and, finding it exited, takes the mutex and is
/// told it was abandoned. (Nobody else can notice earlier: nobody waited.)
///
/// **Limits**: every thread counts the mutexes it holds ([`rhea_sched::Thread::mutexes_held`],
/// fast ones included), and a lock past [`rhea_sched::MAX_HELD_MUTEXES`] is refused as before
/// — which also guarantees an adopted owner a free slot in the scheduler's record.
#[derive(Debug)]
pub struct RawMutex {
    obj: LazyObject,
    /// `0` free; an owner's tag while it holds the mutex on the fast path; [`SLOW`] set while
    /// the scheduler's object is authoritative (the low bits are stale then).
    word: AtomicU64,
}

/// Set while the scheduler's object holds the mutex's state (it has, or recently had, waiters).
const SLOW: u64 = 1 << 63;

impl Default for RawMutex {
    fn default() -> Self {
        Self::new()
    }
}

/// Counts a mutex taken (`+1`) or given up (`-1`) by the calling thread.
fn count_held(delta: i32) {
    kthread::with_current(|t| {
        let n = t.mutexes_held.load(Ordering::Relaxed);
        // Only the thread itself changes its count: a load and a store are enough.
        t.mutexes_held
            .store(n.saturating_add_signed(delta), Ordering::Relaxed);
    });
}

impl RawMutex {
    /// An unlocked mutex.
    pub const fn new() -> Self {
        Self {
            obj: LazyObject::new(),
            word: AtomicU64::new(0),
        }
    }

    /// The scheduler's object with the mutex's state moved into it (the fast owner adopted);
    /// the scheduler lock is held. `Ok((m, true))`: the fast owner has exited — the mutex is
    /// free in the scheduler and was abandoned.
    pub(super) fn to_slow(&self, s: &mut Sched) -> Result<(ObjectId, bool), SchedError> {
        let m = self.obj.get_in(s, |s| s.create_mutex());
        let prev = self.word.fetch_or(SLOW, Ordering::AcqRel);
        if prev & SLOW != 0 || prev == 0 {
            return Ok((m, false));
        }
        match s.thread_of_tag(prev) {
            Some(owner) => {
                if let Err(e) = s.mutex_adopt(m, owner) {
                    // Cannot happen (the owner's count keeps a slot free, and a fast-held
                    // mutex's object is free and unwaited); leave the fast state as it was.
                    self.word.store(prev, Ordering::Release);
                    return Err(e);
                }
                Ok((m, false))
            }
            None => Ok((m, true)),
        }
    }

    /// Clears the word if the scheduler's object is free with nobody waiting; the scheduler
    /// lock is held.
    fn to_fast_if_idle(&self, s: &Sched, m: ObjectId) {
        if s.mutex_is_idle(m) {
            self.word.store(0, Ordering::Release);
        }
    }

    fn lock_inner(&self, timeout: Option<Duration>, try_only: bool) -> Result<(), SyncError> {
        // The fast path: one section with interrupts off (no preemption between reading who
        // runs, the word and the count).
        let fast = kthread::with_current_irq(|t, irq_on| {
            // A lock that may wait is refused with interrupts disabled (an interrupt handler,
            // an `IrqsOff` spin lock held) even when the mutex is free: otherwise the same call
            // would succeed or fail by luck — the fast path cannot block, the scheduler
            // refuses to.
            if !try_only && !irq_on {
                return None;
            }
            let tag = t.id().fast_tag();
            let held = t.mutexes_held.load(Ordering::Relaxed);
            if held as usize >= MAX_HELD_MUTEXES {
                return Some((tag, true, Err(self.word.load(Ordering::Acquire))));
            }
            let r = fast::update64_irqs_off(&self.word, |w| (w == 0).then_some(tag));
            if r.is_ok() {
                // Only the thread itself changes its count: a load and a store are enough.
                t.mutexes_held.store(held + 1, Ordering::Relaxed);
            }
            Some((tag, false, r))
        });
        let at_limit = match fast {
            Some(None) => return Err(SyncError::Sched(SchedError::AtomicContext)),
            Some(Some((_, _, Ok(_)))) => return Ok(()),
            Some(Some((tag, _, Err(w)))) if w == tag => {
                return Err(SyncError::Sched(SchedError::AlreadyOwner));
            }
            Some(Some((_, _, Err(w)))) if try_only && w & SLOW == 0 && w != 0 => {
                return Err(SyncError::WouldBlock);
            }
            Some(Some((_, at_limit, Err(_)))) => at_limit,
            // Before the scheduler runs: the scheduler says why not.
            None => false,
        };
        let deadline = deadline_of(timeout);
        let mut acquired = false;
        let mut abandoned = false;
        let r = kthread::block_on(|s, cpu| {
            let (m, gone) = self.to_slow(s)?;
            abandoned = gone;
            if at_limit {
                return Err(if s.mutex_holder(m) == Some(s.current(cpu)) {
                    SchedError::AlreadyOwner
                } else {
                    SchedError::TooManyMutexes
                });
            }
            s.mutex_lock(cpu, m, deadline, try_only).map(|(got, d)| {
                acquired = got;
                (got || try_only, d)
            })
        });
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                // The fast owner's state moved into the scheduler even if the lock was refused;
                // give it back if nobody waits.
                if let Some(m) = self.obj.registered() {
                    kthread::with_sched(|s, _| {
                        if self.word.load(Ordering::Acquire) & SLOW != 0 {
                            self.to_fast_if_idle(s, m);
                        }
                        ((), Default::default())
                    });
                }
                return Err(SyncError::Sched(e));
            }
        };
        let outcome = match r {
            None if acquired && abandoned => Err(SyncError::Abandoned),
            None if acquired => Ok(()),
            None => return Err(SyncError::WouldBlock),
            Some(WakeReason::Acquired) => Ok(()),
            Some(WakeReason::Abandoned) => Err(SyncError::Abandoned),
            Some(_) => return Err(SyncError::Timeout),
        };
        count_held(1);
        outcome
    }

    /// Locks, waiting as long as it takes. While it waits, the owner runs at least at the
    /// caller's priority.
    pub fn lock(&self) -> Result<(), SyncError> {
        self.lock_inner(None, false)
    }

    /// Locks, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<(), SyncError> {
        self.lock_inner(Some(timeout), false)
    }

    /// Locks only if free.
    pub fn try_lock(&self) -> Result<(), SyncError> {
        self.lock_inner(None, true)
    }

    /// Unlocks, handing the mutex to its most important waiter.
    pub fn unlock(&self) -> Result<(), SyncError> {
        let not_owner = SyncError::Sched(SchedError::NotOwner);
        // RT: the retry runs only when another CPU cleared SLOW between the fast attempt and
        // the lock — once per such move.
        loop {
            let fast = kthread::with_current(|t| {
                let tag = t.id().fast_tag();
                let r = fast::update64_irqs_off(&self.word, |w| (w == tag).then_some(0));
                if r.is_ok() {
                    let held = t.mutexes_held.load(Ordering::Relaxed);
                    t.mutexes_held
                        .store(held.saturating_sub(1), Ordering::Relaxed);
                }
                r
            });
            match fast {
                None => return Err(not_owner),
                Some(Ok(_)) => return Ok(()),
                Some(Err(w)) if w & SLOW == 0 => return Err(not_owner),
                Some(Err(_)) => {}
            }
            let r = kthread::with_sched(|s, cpu| {
                if self.word.load(Ordering::Acquire) & SLOW == 0 {
                    return (None, Decision::default());
                }
                let Some(m) = self.obj.registered() else {
                    return (Some(Err(not_owner)), Decision::default());
                };
                match self.unlock_in(s, cpu, m) {
                    Ok(d) => (Some(Ok(())), d),
                    Err(e) => (Some(Err(SyncError::Sched(e))), Decision::default()),
                }
            });
            if let Some(r) = r {
                return r;
            }
        }
    }

    /// Unlocks in the scheduler (its lock held, [`SLOW`] set by [`RawMutex::to_slow`]):
    /// hands the mutex to its most important waiter, or frees it and clears the word.
    pub(super) fn unlock_in(
        &self,
        s: &mut Sched,
        cpu: usize,
        m: ObjectId,
    ) -> Result<Decision, SchedError> {
        let d = s.mutex_unlock(cpu, m)?;
        self.to_fast_if_idle(s, m);
        count_held(-1);
        Ok(d)
    }
}

impl Drop for RawMutex {
    fn drop(&mut self) {
        let w = *self.word.get_mut();
        if w & SLOW == 0 && w != 0 {
            // Held on the fast path: the scheduler has nothing to leak, but say so as it would.
            crate::println!("rhea: error: mutex destroyed while in use (held on its fast path)");
        }
        self.obj.destroy("mutex");
    }
}

/// A mutex protecting a `T`.
pub struct Mutex<T> {
    raw: RawMutex,
    value: UnsafeCell<T>,
}

impl<T> core::fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Mutex { .. }")
    }
}

// SAFETY: the mutex hands the value to one holder at a time.
unsafe impl<T: Send> Sync for Mutex<T> {}
// SAFETY: moving the mutex moves the value.
unsafe impl<T: Send> Send for Mutex<T> {}

impl<T> Mutex<T> {
    /// An unlocked mutex holding `value`.
    pub const fn new(value: T) -> Self {
        Self {
            raw: RawMutex::new(),
            value: UnsafeCell::new(value),
        }
    }

    /// Locks (see [`RawMutex::lock`]).
    pub fn lock(&self) -> Result<MutexGuard<'_, T>, SyncError> {
        self.raw.lock().map(|()| MutexGuard { mutex: self })
    }

    /// Locks, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard<'_, T>, SyncError> {
        self.raw
            .lock_timeout(timeout)
            .map(|()| MutexGuard { mutex: self })
    }

    /// Locks only if free.
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>, SyncError> {
        self.raw.try_lock().map(|()| MutexGuard { mutex: self })
    }

    pub(super) fn raw(&self) -> &RawMutex {
        &self.raw
    }
}

/// Holds a [`Mutex`]; unlocks on drop.
pub struct MutexGuard<'a, T> {
    mutex: &'a Mutex<T>,
}

impl<T> core::fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("MutexGuard { .. }")
    }
}

impl<'a, T> MutexGuard<'a, T> {
    pub(super) fn mutex(&self) -> &'a Mutex<T> {
        self.mutex
    }
}

impl<T> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this thread owns the mutex.
        unsafe { &*self.mutex.value.get() }
    }
}

impl<T> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and `&mut self` makes the borrow unique.
        unsafe { &mut *self.mutex.value.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        // Cannot fail: the guard proves ownership.
        let _ = self.mutex.raw.unlock();
    }
}
