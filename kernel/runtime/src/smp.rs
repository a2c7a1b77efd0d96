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
use core::sync::atomic::Ordering;
use rhea_smp::CallBoard;
pub use rhea_smp::CallError;

static CALLS: CallBoard = CallBoard::new();

/// How long a caller waits for its targets.
const CALL_TIMEOUT_NS: u64 = 2_000_000_000;

/// Runs `f(arg)` on every CPU in `cpus` other than the caller's (which it skips: call `f`
/// directly for that) and returns once all have run it. CPUs not online are ignored.
pub fn call_on(cpus: rhea_sched::CpuSet, f: fn(usize), arg: usize) -> Result<(), CallError> {
    let was = rhea_arch::irq_save();
    let me = kthread::cpu();
    let targets = cpus.bits() & kthread::online_mask() & !(1u64 << me);
    let r = CALLS.post(me, targets, f, arg);
    if r.is_ok() && targets != 0 {
        let mut t = targets;
        while t != 0 {
            let cpu = t.trailing_zeros() as usize;
            t &= t - 1;
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
    rhea_arch::irq_restore(was);
    r
}

/// The call IPI's handler.
pub(crate) fn on_call_ipi() {
    CALLS.run_pending(kthread::cpu());
}

fn flush_tlb(_: usize) {
    rhea_arch::flush_tlb_all();
}

/// Makes every other CPU drop TLB entries for kernel mappings this CPU removed (x86 has no
/// broadcast invalidation; elsewhere this does nothing).
pub(crate) fn tlb_shootdown() {
    if !rhea_arch::TLB_SHOOTDOWN_NEEDED || kthread::online_mask().count_ones() < 2 {
        return;
    }
    if let Err(e) = call_on(rhea_sched::CpuSet::from_bits(u64::MAX), flush_tlb, 0) {
        panic!("TLB shootdown failed: {e}");
    }
    SHOOTDOWNS.fetch_add(1, Ordering::Relaxed);
}

static SHOOTDOWNS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// TLB shootdowns performed so far (for tests).
pub fn tlb_shootdowns() -> u64 {
    SHOOTDOWNS.load(Ordering::Relaxed)
}
