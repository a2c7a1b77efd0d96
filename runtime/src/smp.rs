//! Cross-CPU calls: run a function on other CPUs and wait until they have (`rhea-smp`'s
//! [`CallBoard`] carried by the call IPI, vector `0xfc`). The kernel uses them for TLB
//! shootdowns; apps may use them to run per-CPU work where it must happen.
//!
//! A call runs in the target's interrupt context (interrupts disabled, no blocking, no
//! allocation). The caller waits with its own interrupts disabled — so it cannot migrate —
//! while running calls addressed to it, so two CPUs calling each other both progress. A
//! target that does not answer within [`CALL_TIMEOUT_NS`] is a fatal error naming it: the
//! caller's correctness (a TLB flush) depends on it.

use crate::kthread;
use crate::selected::{A, Arch as _, B};
use crate::sync::IrqGuard;
use core::sync::atomic::Ordering;
use rhea_hal::Board as _;
use rhea_smp::CallBoard;
pub use rhea_smp::CallError;

static CALLS: CallBoard = CallBoard::new();

/// How long a caller waits for its targets.
const CALL_TIMEOUT_NS: u64 = 2_000_000_000;

/// Runs `f(arg)` on every CPU in `cpus` other than the caller's (which it skips: call `f`
/// directly for that) and returns once all have run it. CPUs not online are ignored.
pub fn call_on(cpus: rhea_sched::CpuSet, f: fn(usize), arg: usize) -> Result<(), CallError> {
    let _irqs = IrqGuard::new();
    let me = kthread::cpu();
    let targets = cpus.bits() & kthread::online_mask() & !(1u64 << me);
    let r = CALLS.post(me, targets, f, arg);
    if r.is_ok() && targets != 0 {
        let mut t = targets;
        while t != 0 {
            let cpu = t.trailing_zeros() as usize;
            t &= t - 1;
            crate::trace::call_sent(cpu);
            crate::irq::send_ipi(cpu, rhea_irq::vectors::IPI_CALL.get());
        }
        let start = crate::time::now().as_nanos();
        loop {
            CALLS.run_pending(me);
            let left = CALLS.outstanding(me);
            if left == 0 {
                break;
            }
            if crate::time::now().as_nanos().wrapping_sub(start) > CALL_TIMEOUT_NS {
                panic!(
                    "cross-CPU call from cpu{me}: CPU mask {left:#x} did not answer within {} ms",
                    CALL_TIMEOUT_NS / 1_000_000
                );
            }
            core::hint::spin_loop();
        }
    }
    r
}

/// The call IPI's handler.
pub(crate) fn on_call_ipi() {
    crate::trace::ipi_taken(rhea_trace::IpiKind::Call);
    let start = crate::time::now().as_nanos();
    CALLS.run_pending(kthread::cpu());
    crate::trace::call_ran(crate::time::now().as_nanos().saturating_sub(start));
}

fn flush_tlb(_: usize) {
    A::flush_tlb_all();
    LOCAL_FLUSHES[kthread::cpu()].fetch_add(1, Ordering::Relaxed);
}

/// Per CPU: full TLB flushes it made for shootdowns (its own and other CPUs'), for tests.
static LOCAL_FLUSHES: [core::sync::atomic::AtomicU64; rhea_sched::MAX_CPUS] =
    [const { core::sync::atomic::AtomicU64::new(0) }; rhea_sched::MAX_CPUS];

/// How many shootdown flushes CPU `cpu` has made, or had made for it by the hypervisor before
/// it ran again (0 for a CPU that does not exist, and always 0 where shootdowns are not
/// needed). A test checks that one shootdown reaches
/// every online CPU, the caller's included.
pub fn tlb_flushes(cpu: usize) -> u64 {
    LOCAL_FLUSHES
        .get(cpu)
        .map_or(0, |c| c.load(Ordering::Relaxed))
}

/// Makes every CPU — the calling one included — drop TLB entries for kernel mappings removed
/// before the call (x86 has no broadcast invalidation; elsewhere this does nothing).
///
/// The calling CPU flushes too because the caller may not be on the CPU that removed the
/// mapping: a thread is preemptible between unmapping a stack and calling this, and if it
/// moved, the CPU it left had invalidated the pages (`invlpg`) while the one it is on may still
/// hold them. Skipping "this CPU" then left a stale translation of a freed stack slot, and
/// the next stack mapped in that slot was read and written through the old frames: a saved
/// context read back as zeros, and a #GP or #PF in the context switch (seen as 'q35/tcg
/// appliance abuse' crashing in ~4 of 10 runs, where connection threads come and go on two
/// CPUs). Interrupts stay off from the local flush until every other CPU has flushed, so the
/// caller cannot move in between.
///
/// With one CPU online there is nowhere to have moved to: the unmapping CPU's own `invlpg`
/// sufficed, and nothing is flushed.
pub(crate) fn tlb_shootdown() {
    if !A::TLB_SHOOTDOWN_NEEDED || kthread::online_mask().count_ones() < 2 {
        return;
    }
    let irqs = IrqGuard::new();
    flush_tlb(0);
    // A CPU the hypervisor has preempted gets its flush from the hypervisor before it runs
    // again (KVM's PV TLB flush): no IPI, no wait for a CPU that is not running.
    let me = kthread::cpu();
    let mut targets = kthread::online_mask() & !(1u64 << me);
    let mut others = targets;
    while others != 0 {
        let cpu = others.trailing_zeros() as usize;
        others &= others - 1;
        if B::defer_tlb_flush(cpu) {
            targets &= !(1u64 << cpu);
            LOCAL_FLUSHES[cpu].fetch_add(1, Ordering::Relaxed);
            DEFERRED_FLUSHES.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Err(e) = call_on(rhea_sched::CpuSet::from_bits(targets), flush_tlb, 0) {
        panic!("TLB shootdown failed: {e}");
    }
    drop(irqs);
    SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
}

static SHOOTDOWNS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
/// Flushes of preempted CPUs left to the hypervisor (counted in [`tlb_flushes`] of that CPU
/// too: it is flushed before it runs again).
static DEFERRED_FLUSHES: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// Flushes of preempted CPUs the hypervisor took over (KVM's PV TLB flush), for reports.
pub fn tlb_flushes_deferred() -> u64 {
    DEFERRED_FLUSHES.load(Ordering::Relaxed)
}

/// TLB shootdowns performed so far (for tests).
pub fn tlb_shootdowns() -> u64 {
    SHOOTDOWNS.load(Ordering::Relaxed)
}
