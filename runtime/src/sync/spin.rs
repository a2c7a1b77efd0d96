//! Spin locks whose type says what they disable.
#![allow(unsafe_code, reason = "a lock's cell; each use has a SAFETY note")]

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

/// What a [`SpinLock`] disables while held.
pub trait LockMode {
    /// State saved on acquisition and restored on release.
    type Saved;
    /// Called before spinning.
    fn enter() -> Self::Saved;
    /// Called after releasing.
    fn exit(saved: Self::Saved);
}

/// Interrupts are disabled while the lock is held: usable from interrupt handlers, and the
/// holder cannot be preempted on its CPU.
#[derive(Debug)]
pub enum IrqsOff {}

impl LockMode for IrqsOff {
    type Saved = bool;
    fn enter() -> bool {
        rhea_arch::irq_save()
    }
    fn exit(was_enabled: bool) {
        rhea_arch::irq_restore(was_enabled);
    }
}

/// Nothing is disabled: thread context only. A holder may be preempted while others spin, so
/// sections must be tiny; prefer a `Mutex` for anything longer.
#[derive(Debug)]
pub enum NothingOff {}

impl LockMode for NothingOff {
    type Saved = ();
    fn enter() {}
    fn exit(_: ()) {}
}

/// A spin lock around `T` that disables what `M` says.
pub struct SpinLock<T, M: LockMode = IrqsOff> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
    _mode: PhantomData<M>,
}

impl<T, M: LockMode> core::fmt::Debug for SpinLock<T, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SpinLock { .. }")
    }
}

// SAFETY: the lock hands out the value to one holder at a time.
unsafe impl<T: Send, M: LockMode> Sync for SpinLock<T, M> {}
// SAFETY: moving the lock moves the value.
unsafe impl<T: Send, M: LockMode> Send for SpinLock<T, M> {}

impl<T, M: LockMode> SpinLock<T, M> {
    /// An unlocked lock.
    pub const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
            _mode: PhantomData,
        }
    }

    /// Spins until acquired.
    pub fn lock(&self) -> SpinLockGuard<'_, T, M> {
        let saved = M::enter();
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        SpinLockGuard {
            lock: self,
            saved: Some(saved),
        }
    }

    /// Acquires if free.
    pub fn try_lock(&self) -> Option<SpinLockGuard<'_, T, M>> {
        let saved = M::enter();
        if self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            Some(SpinLockGuard {
                lock: self,
                saved: Some(saved),
            })
        } else {
            M::exit(saved);
            None
        }
    }
}

/// Holds a [`SpinLock`].
pub struct SpinLockGuard<'a, T, M: LockMode> {
    lock: &'a SpinLock<T, M>,
    saved: Option<M::Saved>,
}

impl<T, M: LockMode> core::fmt::Debug for SpinLockGuard<'_, T, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SpinLockGuard { .. }")
    }
}

impl<T, M: LockMode> Deref for SpinLockGuard<'_, T, M> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard proves the lock is held by us.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T, M: LockMode> DerefMut for SpinLockGuard<'_, T, M> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard proves the lock is held by us, and `&mut self` that the borrow is
        // unique.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T, M: LockMode> Drop for SpinLockGuard<'_, T, M> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
        if let Some(saved) = self.saved.take() {
            M::exit(saved);
        }
    }
}
