//! Condition variables.

use super::object::LazyObject;
use super::{MutexGuard, SyncError, deadline_of};
use crate::kthread;
use crate::time::Duration;
use rhea_sched::{Decision, WakeReason};

/// A condition variable, used with a [`super::Mutex`]. Waiters wake most important first.
#[derive(Debug)]
pub struct Condvar {
    obj: LazyObject,
}

impl Default for Condvar {
    fn default() -> Self {
        Self::new()
    }
}

impl Condvar {
    /// A condition variable nobody waits on.
    pub const fn new() -> Self {
        Self {
            obj: LazyObject::new(),
        }
    }

    fn wait_inner<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Option<Duration>,
    ) -> (MutexGuard<'a, T>, Result<(), SyncError>) {
        let mutex = guard.mutex();
        let deadline = deadline_of(timeout);
        // The guard's unlock happens inside the same scheduler critical section as the wait,
        // so no wake-up can fall between them.
        core::mem::forget(guard);
        let r = kthread::block_on(|s, cpu| {
            let q = self.obj.get_in(s, |s| s.create_queue());
            // The mutex may be held on its fast path: move it into the scheduler first.
            let raw = mutex.raw();
            let (m, _) = raw.to_slow(s)?;
            let d1 = raw.unlock_in(s, cpu, m)?;
            let d2 = s.queue_wait(cpu, q, deadline)?;
            Ok((
                false,
                Decision {
                    resched: rhea_sched::CpuSet::from_bits(d1.resched.bits() | d2.resched.bits()),
                },
            ))
        });
        let outcome = match r {
            Ok(Some(WakeReason::Timeout)) => Err(SyncError::Timeout),
            Ok(_) => Ok(()),
            Err(e) => Err(SyncError::Sched(e)),
        };
        // Re-acquire before returning, whatever happened.
        let guard = loop {
            match mutex.lock() {
                Ok(g) => break g,
                Err(SyncError::Abandoned) => continue,
                Err(_) => continue,
            }
        };
        (guard, outcome)
    }

    /// Atomically unlocks `guard`'s mutex and waits for a notification; re-locks before
    /// returning.
    pub fn wait<'a, T>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.wait_inner(guard, None).0
    }

    /// Like [`Condvar::wait`], for at most `timeout`.
    pub fn wait_timeout<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> (MutexGuard<'a, T>, Result<(), SyncError>) {
        self.wait_inner(guard, Some(timeout))
    }

    /// Wakes the most important waiter.
    pub fn notify_one(&self) {
        kthread::with_sched(|s, _| {
            let q = self.obj.get_in(s, |s| s.create_queue());
            ((), s.queue_wake_one(q))
        });
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        kthread::with_sched(|s, _| {
            let q = self.obj.get_in(s, |s| s.create_queue());
            ((), s.queue_wake_all(q))
        });
    }
}

impl Drop for Condvar {
    fn drop(&mut self) {
        self.obj.destroy("condition variable");
    }
}
