//! Sleeping mutexes with transitive priority inheritance.
#![allow(
    unsafe_code,
    reason = "the mutex's data cell; each use has a SAFETY note"
)]

use super::object::LazyObject;
use super::{SyncError, deadline_of};
use crate::kthread;
use crate::time::Duration;
use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use rhea_sched::WakeReason;

/// A mutex without data, with explicit `lock`/`unlock`: misuse (locking twice, unlocking one
/// not held) is an error, never corruption.
#[derive(Debug)]
pub struct RawMutex {
    obj: LazyObject,
}

impl Default for RawMutex {
    fn default() -> Self {
        Self::new()
    }
}

impl RawMutex {
    /// An unlocked mutex.
    pub const fn new() -> Self {
        Self {
            obj: LazyObject::new(),
        }
    }

    fn lock_inner(&self, timeout: Option<Duration>, try_only: bool) -> Result<(), SyncError> {
        let deadline = deadline_of(timeout);
        let r = kthread::block_on(|s, cpu| {
            let m = self.obj.get_in(s, |s| s.create_mutex());
            s.mutex_lock(cpu, m, deadline, try_only)
                .map(|(got, d)| (got || try_only, d))
        })?;
        match r {
            None if try_only => {
                // `try_only` reports "done" either way; check whether we own it now.
                if self.is_held_by_current() {
                    Ok(())
                } else {
                    Err(SyncError::WouldBlock)
                }
            }
            None | Some(WakeReason::Acquired) => Ok(()),
            Some(WakeReason::Abandoned) => Err(SyncError::Abandoned),
            Some(WakeReason::Timeout) => Err(SyncError::Timeout),
            Some(_) => Err(SyncError::Timeout),
        }
    }

    fn is_held_by_current(&self) -> bool {
        let Some(m) = self.obj.registered() else {
            return false;
        };
        kthread::with_sched(|s, cpu| {
            let cur = s.current(cpu);
            (s.mutex_holder(m) == Some(cur), Default::default())
        })
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
        let Some(m) = self.obj.registered() else {
            return Err(SyncError::Sched(rhea_sched::SchedError::NotOwner));
        };
        kthread::with_sched(|s, cpu| match s.mutex_unlock(cpu, m) {
            Ok(d) => (Ok(()), d),
            Err(e) => (Err(SyncError::Sched(e)), Default::default()),
        })
    }

    pub(super) fn object(&self) -> &LazyObject {
        &self.obj
    }
}

impl Drop for RawMutex {
    fn drop(&mut self) {
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
