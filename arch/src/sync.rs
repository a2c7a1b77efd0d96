//! The kernel's lock family (`rhea-sync`) bound to this CPU's interrupt flag: [`SpinLock`]
//! (interrupts off by default, [`NothingOff`] for thread-only data) and [`IrqGuard`] for a
//! scope with interrupts off and no lock. Every crate from here up takes its spin locks from
//! here (or from `rhea::sync`, which re-exports them).

use rhea_sync::InterruptMask;

pub use rhea_sync::{LockMode, NothingOff};

/// This CPU's interrupt flag, as [`rhea_sync`] masks it: [`crate::irq_save`] and
/// [`crate::irq_restore`].
#[derive(Debug)]
pub enum Cpu {}

impl InterruptMask for Cpu {
    #[inline]
    fn save() -> bool {
        <crate::Selected as rhea_hal::arch::Arch>::irq_save()
    }
    #[inline]
    fn restore(was_enabled: bool) {
        <crate::Selected as rhea_hal::arch::Arch>::irq_restore(was_enabled);
    }
}

/// Interrupts are disabled on this CPU while the lock is held: usable from interrupt
/// handlers, and the holder cannot be preempted on its CPU.
pub type IrqsOff = rhea_sync::IrqsOff<Cpu>;

/// A spin lock whose type says what it disables (interrupts, unless `M` is [`NothingOff`]).
pub type SpinLock<T, M = IrqsOff> = rhea_sync::SpinLock<T, M>;

/// Holds a [`SpinLock`].
pub type SpinLockGuard<'a, T, M = IrqsOff> = rhea_sync::SpinLockGuard<'a, T, M>;

/// Interrupts disabled on this CPU until dropped, then restored.
pub type IrqGuard = rhea_sync::IrqGuard<Cpu>;
