//! The lock-free fast paths of the sleeping objects: one word updated without the scheduler
//! lock while no thread waits.
//!
//! With several CPUs the update is a compare-and-swap loop. While the kernel runs on one CPU
//! and masking interrupts is cheap ([`A::CHEAP_IRQ_MASK`]: LinuxU, where it is a store)
//! it is a plain read-modify-write with interrupts disabled — no locked instruction is needed
//! when nothing else can run at the same time, which is what a uniprocessor RTOS does (and
//! Linux, patching out `lock` prefixes on one CPU). On x86 and Arm the CAS is as cheap as
//! masking, and under QEMU's TCG much cheaper. Whether more than one CPU runs is decided
//! once, before the secondary CPUs start ([`crate::kthread::is_uniprocessor`]).

use super::IrqGuard;
use crate::selected::{A, Arch as _};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Applies `f` to `word` atomically with respect to every other CPU and this CPU's interrupt
/// handlers: `Ok(previous)` if `f` returned a new value (stored), `Err(current)` if it
/// returned `None` (nothing stored). Acquire on success, release of the stored value.
#[inline]
pub(super) fn update(word: &AtomicU32, mut f: impl FnMut(u32) -> Option<u32>) -> Result<u32, u32> {
    if A::CHEAP_IRQ_MASK && crate::kthread::is_uniprocessor() {
        let _irqs = IrqGuard::new();
        let cur = word.load(Ordering::Relaxed);
        match f(cur) {
            Some(new) => {
                word.store(new, Ordering::Relaxed);
                Ok(cur)
            }
            None => Err(cur),
        }
    } else {
        word.fetch_update(Ordering::AcqRel, Ordering::Acquire, f)
    }
}

/// [`update`] for a 64-bit word (event flags: 32 flags and the slow-path bit beside them;
/// a mutex's owner word).
#[inline]
pub(super) fn update64(word: &AtomicU64, f: impl FnMut(u64) -> Option<u64>) -> Result<u64, u64> {
    let _irqs = IrqGuard::new();
    update64_irqs_off(word, f)
}

/// [`update64`] for a caller that has disabled interrupts already (so that it can do more
/// in the same section, e.g. read which thread runs).
#[inline]
pub(super) fn update64_irqs_off(
    word: &AtomicU64,
    mut f: impl FnMut(u64) -> Option<u64>,
) -> Result<u64, u64> {
    if crate::kthread::is_uniprocessor() {
        let cur = word.load(Ordering::Relaxed);
        match f(cur) {
            Some(new) => {
                word.store(new, Ordering::Relaxed);
                Ok(cur)
            }
            None => Err(cur),
        }
    } else {
        word.fetch_update(Ordering::AcqRel, Ordering::Acquire, f)
    }
}
