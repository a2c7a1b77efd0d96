//! Time for apps and the kernel: [`now`], [`Instant`], [`Duration`], and the hookup of the
//! board's clock source and one-shot timer.
//!
//! The clock and timer are installed once at boot (`boot.rs`, stage "interrupts and time");
//! before that, `now()` reads zero and arming does nothing.

use core::sync::atomic::{AtomicU64, Ordering};
pub use core::time::Duration;
pub use rhea_hal::Instant;
use rhea_hal::{Clock, OneShotTimer};
use spin::Once;

static CLOCK: Once<&'static dyn Clock> = Once::new();
static CYCLES_PER_SECOND: AtomicU64 = AtomicU64::new(0);
static TIMER: Once<&'static dyn OneShotTimer> = Once::new();
/// Per CPU: the deadline its timer is armed for (`u64::MAX` = disarmed), so re-arming for the
/// same deadline costs no device access.
static ARMED_NS: [AtomicU64; rhea_sched::MAX_CPUS] =
    [const { AtomicU64::new(u64::MAX) }; rhea_sched::MAX_CPUS];

/// The kernel's monotonic clock.
pub fn now() -> Instant {
    CLOCK.get().map_or(Instant::ZERO, |c| c.now())
}

/// The CPU's cycle counter (TSC on x86): cheap, for measuring short intervals.
pub fn cycles() -> u64 {
    rhea_arch::read_cycle_counter()
}

/// How many [`cycles`] make a second (calibrated at boot; 0 before).
pub fn cycles_per_second() -> u64 {
    CYCLES_PER_SECOND.load(Ordering::Relaxed)
}

/// Installs the clock source and this CPU's one-shot timer.
pub(crate) fn install(
    clock: &'static dyn Clock,
    timer: &'static dyn OneShotTimer,
    cycles_per_second: u64,
) {
    CLOCK.call_once(|| clock);
    TIMER.call_once(|| timer);
    CYCLES_PER_SECOND.store(cycles_per_second, Ordering::Relaxed);
}

/// Arms this CPU's timer for `deadline`, or disarms it. Tickless: called after every
/// scheduling decision with the CPU's earliest deadline. RT: O(1), at most one device write.
pub(crate) fn arm(deadline: Option<Instant>) {
    let Some(timer) = TIMER.get() else { return };
    let ns = deadline.map_or(u64::MAX, Instant::as_nanos);
    if ARMED_NS[crate::kthread::cpu()].swap(ns, Ordering::Relaxed) == ns {
        return;
    }
    match deadline {
        Some(d) => timer.arm(d),
        None => timer.disarm(),
    }
}

/// The timer fired: it is no longer armed.
pub(crate) fn fired() {
    ARMED_NS[crate::kthread::cpu()].store(u64::MAX, Ordering::Relaxed);
}
