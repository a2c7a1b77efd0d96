//! The lock-free fast paths of the sleeping objects: one word updated without the scheduler
//! lock while no thread waits.
//!
//! With several CPUs the update is a compare-and-swap loop. While the kernel runs on one CPU
//! it is a plain read-modify-write with interrupts disabled — no locked instruction is needed
//! when nothing else can run at the same time, which is what a uniprocessor RTOS does (and
//! Linux, patching out `lock` prefixes on one CPU). Whether more than one CPU runs is decided
//! once, before the secondary CPUs start ([`crate::kthread::is_uniprocessor`]).

use core::sync::atomic::{AtomicU32, Ordering};

/// Applies `f` to `word` atomically with respect to every other CPU and this CPU's interrupt
/// handlers: `Ok(previous)` if `f` returned a new value (stored), `Err(current)` if it
/// returned `None` (nothing stored). Acquire on success, release of the stored value.
#[inline]
pub(super) fn update(word: &AtomicU32, mut f: impl FnMut(u32) -> Option<u32>) -> Result<u32, u32> {
    if crate::kthread::is_uniprocessor() {
        let was = rhea_arch::irq_save();
        let cur = word.load(Ordering::Relaxed);
        let r = match f(cur) {
            Some(new) => {
                word.store(new, Ordering::Relaxed);
                Ok(cur)
            }
            None => Err(cur),
        };
        rhea_arch::irq_restore(was);
        r
    } else {
        word.fetch_update(Ordering::AcqRel, Ordering::Acquire, f)
    }
}
