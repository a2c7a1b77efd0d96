//! Time for apps and the kernel: [`now`], [`Instant`], [`Duration`], and the hookup of the
//! board's clock source and one-shot timer.
//!
//! The clock and timer are installed once at boot (`boot.rs`, stage "interrupts and time");
//! before that, `now()` reads zero and arming does nothing.

use crate::selected::{A, Arch as _};
use core::sync::atomic::{AtomicU64, Ordering};
pub use core::time::Duration;
pub use rhea_hal::Instant;
use rhea_hal::{Clock, OneShotTimer};
use rhea_sync::Once;

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
    A::read_cycle_counter()
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
///
/// The device is programmed [`advance`] ahead of the deadline (see there).
pub(crate) fn arm(deadline: Option<Instant>) {
    let Some(timer) = TIMER.get() else { return };
    let cpu = crate::kthread::cpu();
    let ns = deadline.map_or(u64::MAX, Instant::as_nanos);
    if ARMED_NS[cpu].swap(ns, Ordering::Relaxed) == ns {
        return;
    }
    crate::trace::timer_armed(ns);
    match deadline {
        Some(d) => timer.arm(Instant::from_nanos(
            d.as_nanos()
                .saturating_sub(ADVANCE_NS[cpu].load(Ordering::Relaxed)),
        )),
        None => timer.disarm(),
    }
}

/// The timer fired: it is no longer armed. Learns from how late it came and, if it came
/// early (programmed ahead), waits for the deadline it stands for. Called from the timer
/// interrupt, interrupts disabled.
pub(crate) fn fired() {
    let cpu = crate::kthread::cpu();
    let armed = ARMED_NS[cpu].swap(u64::MAX, Ordering::Relaxed);
    if armed != u64::MAX {
        crate::trace::timer_fired(now().as_nanos().saturating_sub(armed));
    }
    let limit = MAX_ADVANCE_NS.load(Ordering::Relaxed);
    if armed == u64::MAX || limit == 0 {
        return;
    }
    let t = now().as_nanos();
    let adv = ADVANCE_NS[cpu].load(Ordering::Relaxed);
    let next = if t > armed {
        // Late despite the advance: grow it by an eighth of the lateness — unless the
        // lateness is beyond the bound, which is an outlier (the host preempted the vCPU, a
        // long interrupts-off section), not the platform's usual latency.
        let late = t - armed;
        if late > limit { adv } else { adv + late / 8 }
    } else if armed - t > adv {
        // Earlier than the advance explains: an interrupt of an earlier arming, delivered
        // after the timer was re-armed later (or a spurious one). Nothing is due: the caller
        // re-arms; spinning here could last until any later deadline.
        adv
    } else {
        // Early by at most the advance: spin off the rest, and shrink the advance by an eighth
        // of how early.
        let early = armed - t;
        // RT: bounded by the advance (checked above), at most the bound.
        let mut at = t;
        while at < armed {
            core::hint::spin_loop();
            at = now().as_nanos();
        }
        SPUN_NS[cpu].fetch_add(at - t, Ordering::Relaxed);
        adv.saturating_sub(early / 8)
    };
    ADVANCE_NS[cpu].store(next.min(limit), Ordering::Relaxed);
}

/// Per CPU: how far ahead of a deadline its timer is programmed, learnt from the lateness of
/// its interrupts ([`fired`]). Under QEMU's TCG a timer interrupt reaches a halted vCPU tens
/// of µs after its deadline (the host wakes QEMU's timer thread with its timer slack, then
/// the vCPU thread), so a sleeper would wake that late every period; programmed that much
/// earlier and spun off with interrupts disabled, it wakes on time — what KVM's
/// `lapic_timer_advance` does for its guests. On hardware or KVM the lateness, and so the
/// advance and the spinning, are a few µs. Bounded by `rhea.timer_advance_us`.
static ADVANCE_NS: [AtomicU64; rhea_sched::MAX_CPUS] =
    [const { AtomicU64::new(0) }; rhea_sched::MAX_CPUS];
/// The advance's bound (`rhea.timer_advance_us`, default [`DEFAULT_MAX_ADVANCE_US`]).
static MAX_ADVANCE_NS: AtomicU64 = AtomicU64::new(DEFAULT_MAX_ADVANCE_US * 1000);
/// Per CPU: the time spent spinning off advances (the CPU this costs).
static SPUN_NS: [AtomicU64; rhea_sched::MAX_CPUS] =
    [const { AtomicU64::new(0) }; rhea_sched::MAX_CPUS];
/// The default bound of the advance, µs.
pub const DEFAULT_MAX_ADVANCE_US: u64 = 100;

/// Sets the advance's bound (`rhea.timer_advance_us`; 0 turns it off).
pub(crate) fn set_max_advance_us(us: u64) {
    MAX_ADVANCE_NS.store(us * 1000, Ordering::Relaxed);
    if us == 0 {
        for a in &ADVANCE_NS {
            a.store(0, Ordering::Relaxed);
        }
    }
}

/// CPU `cpu`'s timer advance now, and the total time it spent spinning advances off, in ns.
pub fn timer_advance(cpu: usize) -> (u64, u64) {
    (
        ADVANCE_NS.get(cpu).map_or(0, |a| a.load(Ordering::Relaxed)),
        SPUN_NS.get(cpu).map_or(0, |a| a.load(Ordering::Relaxed)),
    )
}
