//! # `rhea-sync` — layer 1: the kernel's one lock family
//!
//! Every spin lock in the kernel is a [`SpinLock<T, M>`], whose mode `M` says in its type what
//! it disables while held:
//! - [`IrqsOff`]`<I>`: interrupts, through the architecture's [`InterruptMask`] `I` — usable
//!   from interrupt handlers, and the holder cannot be preempted on its CPU. `rhea-arch`
//!   supplies `I` and names the result (`rhea_arch::sync::IrqsOff`, also the default mode of
//!   its `SpinLock` alias);
//! - [`NothingOff`]: nothing — thread context only, for data no interrupt handler touches. A
//!   holder may be preempted while others spin, so sections must be tiny.
//!
//! [`IrqGuard`] disables interrupts for a scope without a lock (it replaces hand-written
//! save/restore pairs: the restore cannot be forgotten on an early return).
//!
//! [`Once`] is a value set once and then read without locking (`spin::Once`'s algorithm, with
//! one copy of its slow path for every type instead of one per call site).
//!
//! Where the lock is declared, say its place in the lock order and why its mode is enough
//! (docs/ARCHITECTURE.md, "Locks", has the whole order).
//!
//! Hardware-free (the mask is a type parameter), so host-tested here with a model mask.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

mod once;
pub use once::Once;

/// How an architecture disables and restores interrupts on the calling CPU.
pub trait InterruptMask {
    /// Disables interrupts; returns whether they were enabled.
    fn save() -> bool;
    /// Enables interrupts again if `was_enabled` (what [`save`](Self::save) returned).
    fn restore(was_enabled: bool);
}

/// What a [`SpinLock`] disables while held.
pub trait LockMode {
    /// State saved on acquisition and restored on release.
    type Saved;
    /// Called before spinning.
    fn enter() -> Self::Saved;
    /// Called after releasing.
    fn exit(saved: Self::Saved);
}

/// Interrupts are disabled (through `I`) while the lock is held. Never constructed: a type
/// that names the mode.
pub struct IrqsOff<I: InterruptMask>(PhantomData<fn() -> I>);

impl<I: InterruptMask> core::fmt::Debug for IrqsOff<I> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("IrqsOff")
    }
}

impl<I: InterruptMask> LockMode for IrqsOff<I> {
    type Saved = bool;
    #[inline]
    fn enter() -> bool {
        I::save()
    }
    #[inline]
    fn exit(was_enabled: bool) {
        I::restore(was_enabled);
    }
}

/// Nothing is disabled: thread context only. A holder may be preempted while others spin, so
/// sections must be tiny; prefer a blocking mutex for anything longer.
#[derive(Debug)]
pub enum NothingOff {}

impl LockMode for NothingOff {
    type Saved = ();
    #[inline]
    fn enter() {}
    #[inline]
    fn exit(_: ()) {}
}

/// A spin lock around `T` that disables what `M` says while held.
pub struct SpinLock<T, M: LockMode> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
    _mode: PhantomData<M>,
}

impl<T, M: LockMode> core::fmt::Debug for SpinLock<T, M> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SpinLock")
            .field("locked", &self.locked.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[allow(
    unsafe_code,
    reason = "the lock's cell is shared; the flag serialises access"
)]
// SAFETY: the lock hands out the value to one holder at a time.
unsafe impl<T: Send, M: LockMode> Sync for SpinLock<T, M> {}
#[allow(
    unsafe_code,
    reason = "the lock's cell is shared; the flag serialises access"
)]
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

    /// Spins until acquired (with `M`'s mode entered first, so an interrupt handler on this CPU
    /// cannot take the lock while we spin or hold it).
    #[inline]
    pub fn lock(&self) -> SpinLockGuard<'_, T, M> {
        let saved = M::enter();
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.locked.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
        SpinLockGuard {
            lock: self,
            saved: Some(saved),
        }
    }

    /// Acquires if free; `None` (mode left again) if held.
    #[inline]
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

    /// The value, through exclusive access to the lock (no locking needed).
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }
}

/// Holds a [`SpinLock`]; releases it, then leaves the mode, when dropped.
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
        #[allow(unsafe_code, reason = "the guard proves the lock is held")]
        // SAFETY: the guard proves the lock is held by us.
        unsafe {
            &*self.lock.value.get()
        }
    }
}

impl<T, M: LockMode> DerefMut for SpinLockGuard<'_, T, M> {
    fn deref_mut(&mut self) -> &mut T {
        #[allow(unsafe_code, reason = "the guard proves the lock is held")]
        // SAFETY: the guard proves the lock is held by us, and `&mut self` that the borrow is
        // unique.
        unsafe {
            &mut *self.lock.value.get()
        }
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

/// Interrupts disabled on this CPU until dropped, then restored to what they were. Not `Send`:
/// it must end on the CPU (thread) it began on.
pub struct IrqGuard<I: InterruptMask> {
    was_enabled: bool,
    _mask: PhantomData<*const I>,
}

impl<I: InterruptMask> IrqGuard<I> {
    /// Disables interrupts.
    #[inline]
    #[must_use = "interrupts are restored when the guard is dropped"]
    pub fn new() -> Self {
        Self {
            was_enabled: I::save(),
            _mask: PhantomData,
        }
    }

    /// Whether interrupts were enabled before the guard.
    pub fn were_enabled(&self) -> bool {
        self.was_enabled
    }
}

impl<I: InterruptMask> Default for IrqGuard<I> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I: InterruptMask> core::fmt::Debug for IrqGuard<I> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IrqGuard")
            .field("was_enabled", &self.was_enabled)
            .finish()
    }
}

impl<I: InterruptMask> Drop for IrqGuard<I> {
    #[inline]
    fn drop(&mut self) {
        I::restore(self.was_enabled);
    }
}

#[cfg(test)]
mod tests;
