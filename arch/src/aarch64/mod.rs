//! AArch64 (Arm Architecture Reference Manual for A-profile, "Arm ARM", DDI 0487).
//!
//! Execution model: the kernel runs at EL1 with `SPSel = 0` ("EL1t"): threads and the boot
//! context run on `SP_EL0`, and every exception arrives on `SP_EL1`, a separate exception stack
//! (see [`trap`]). Interrupts are `DAIF.I`; they do not nest. The MMU is on from the first
//! instructions ([`boot`]); the kernel's own tables replace the boot map once frames exist
//! ([`paging`]). FP/SIMD is enabled at EL1 from the start, because compiled Rust for
//! `aarch64-unknown-none` uses the vector registers anywhere; the context switch and the
//! interrupt entry therefore save all of them ([`context`]).

mod boot;
/// Assembly text that saves (`save`) or restores (`restore`) the whole vector state — q0–q31,
/// then FPCR and FPSR — at `[$base]` (528 bytes), with `$t1`–`$t3` as scratch registers. The
/// context switch ([`context`]) and the interrupt entry ([`trap`]) keep this same layout, so
/// it is written once.
macro_rules! vector_state_asm {
    (@q $op:literal, $base:literal) => {
        concat!(
            $op, " q0, q1, [", $base, ", #0]\n",
            $op, " q2, q3, [", $base, ", #32]\n",
            $op, " q4, q5, [", $base, ", #64]\n",
            $op, " q6, q7, [", $base, ", #96]\n",
            $op, " q8, q9, [", $base, ", #128]\n",
            $op, " q10, q11, [", $base, ", #160]\n",
            $op, " q12, q13, [", $base, ", #192]\n",
            $op, " q14, q15, [", $base, ", #224]\n",
            $op, " q16, q17, [", $base, ", #256]\n",
            $op, " q18, q19, [", $base, ", #288]\n",
            $op, " q20, q21, [", $base, ", #320]\n",
            $op, " q22, q23, [", $base, ", #352]\n",
            $op, " q24, q25, [", $base, ", #384]\n",
            $op, " q26, q27, [", $base, ", #416]\n",
            $op, " q28, q29, [", $base, ", #448]\n",
            $op, " q30, q31, [", $base, ", #480]\n",
        )
    };
    (save, $base:literal, $t1:literal, $t2:literal, $t3:literal) => {
        concat!(
            vector_state_asm!(@q "stp", $base),
            "mrs ", $t1, ", fpcr\n",
            "mrs ", $t2, ", fpsr\n",
            "add ", $t3, ", ", $base, ", #512\n",
            "stp ", $t1, ", ", $t2, ", [", $t3, "]\n",
        )
    };
    (restore, $base:literal, $t1:literal, $t2:literal, $t3:literal) => {
        concat!(
            vector_state_asm!(@q "ldp", $base),
            "add ", $t3, ", ", $base, ", #512\n",
            "ldp ", $t1, ", ", $t2, ", [", $t3, "]\n",
            "msr fpcr, ", $t1, "\n",
            "msr fpsr, ", $t2, "\n",
        )
    };
}

pub mod context;
mod features_impl;
pub mod generic_timer;
pub mod paging;
mod random;
mod regs;
pub mod secondary;
pub mod semihosting;
pub mod smccc;
pub mod testing;
mod trap;

pub use boot::{SpinTableRelease, boot_cycles, release_spin_table_cpu};
pub use regs::Registers;
pub use trap::{Fault, set_interrupt_source};

/// The CPU feature report printed at boot (ID registers, `CNTFRQ_EL0`).
pub mod features {
    pub use super::features_impl::{Features, report};
}

use aarch64_cpu::registers::{CNTVCT_EL0, Readable};
use rhea_hal::CpuId;
use rhea_hal::arch::Arch;

/// The AArch64 architecture (EL1), as the runtime sees it.
#[derive(Debug)]
pub enum Aarch64 {}

impl Arch for Aarch64 {
    crate::common::arch_common_items!(trap);

    /// Whether a read-modify-write with interrupts disabled is cheaper than an atomic one, for
    /// data only this CPU touches while one CPU runs the kernel: `mrs daif; msr daifset … msr daif` costs as much as an exclusive pair or LSE atomic, and more under TCG; an atomic is safe against this CPU's interrupts anyway.
    const CHEAP_IRQ_MASK: bool = false;

    /// Whether removing a kernel mapping needs other CPUs' TLBs flushed by IPI: no, unmapping
    /// uses `tlbi vaae1is`, which the hardware broadcasts to the inner-shareable domain.
    const TLB_SHOOTDOWN_NEEDED: bool = false;

    /// Whether IRQs are unmasked (`DAIF.I` clear).
    #[inline]
    fn irq_enabled() -> bool {
        let daif: u64;
        // SAFETY: reads PSTATE.DAIF.
        unsafe {
            core::arch::asm!("mrs {}, daif", out(reg) daif, options(nomem, nostack, preserves_flags))
        };
        daif & (1 << 7) == 0
    }

    /// Masks IRQs on this CPU and returns whether they were unmasked.
    #[inline]
    fn irq_save() -> bool {
        let was = Self::irq_enabled();
        // SAFETY: masking IRQs only delays them. Not `nomem`: memory accesses must not move out of
        // the critical section this starts.
        unsafe { core::arch::asm!("msr daifset, #2", options(nostack, preserves_flags)) };
        was
    }

    /// Unmasks IRQs if `was_enabled` (what [`irq_save`] returned).
    #[inline]
    fn irq_restore(was_enabled: bool) {
        if was_enabled {
            Self::irq_enable();
        }
    }

    /// Unmasks IRQs.
    #[inline]
    fn irq_enable() {
        // SAFETY: the exception vectors are installed before anything unmasks IRQs; not `nomem`, so
        // the critical section's memory accesses stay before it.
        unsafe { core::arch::asm!("msr daifclr, #2", options(nostack, preserves_flags)) };
    }

    /// Waits for an interrupt and lets it be taken, then masks IRQs again: the idle loop's wait.
    ///
    /// `wfi` runs with IRQs masked — a pending IRQ wakes the CPU whatever `PSTATE.I` says (Arm ARM
    /// D1.6.2 "Wait for Interrupt") — so an interrupt arriving just before it cannot be missed the
    /// way it could between an unmask and the `wfi`. The `isb` after unmasking is the context
    /// synchronisation at which the pending IRQ is taken.
    #[inline]
    fn wait_for_interrupt() {
        // SAFETY: sleeping, unmasking and masking IRQs; the handler runs on this thread's stack and
        // returns here (or switches away and later back).
        unsafe {
            core::arch::asm!(
                "msr daifset, #2",
                "dsb sy",
                "wfi",
                "msr daifclr, #2",
                "isb",
                "msr daifset, #2",
                options(nostack, preserves_flags)
            )
        };
    }

    /// Nothing to do: invalidations are broadcast (see [`TLB_SHOOTDOWN_NEEDED`]).
    fn flush_tlb_all() {}
}

/// Installs this CPU's exception vectors (`VBAR_EL1`; the entry code installed them already,
/// this makes the call order the same as on other architectures) and checks the stack model the
/// entry code set up: running on `SP_EL0`, exceptions on `SP_EL1`.
///
/// Call once, on the boot CPU. Interrupts stay masked.
pub fn init_boot_cpu() {
    trap::install_vectors();
}

/// The most CPUs the per-CPU tables of this module hold (the scheduler's limit).
pub const MAX_CPUS: usize = 64;

/// The affinity fields of `MPIDR_EL1` (Aff3 in 39:32, Aff2..Aff0 in 23:0): a CPU's identity,
/// as the devicetree's `reg` and PSCI give it.
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// The current CPU: its index, which the entry code put in `TPIDR_EL1` (0 on the boot CPU,
/// the board's index on a secondary, see [`secondary`]).
///
/// Not `pure`: a thread that is switched out may resume on another CPU, so two reads around a
/// call must not be merged.
#[inline]
pub fn cpu_id() -> CpuId {
    let v: u64;
    // SAFETY: reads TPIDR_EL1, which only the entry code writes.
    unsafe {
        core::arch::asm!("mrs {}, tpidr_el1", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    CpuId(v as u32)
}

/// The virtual counter `CNTVCT_EL0` (Arm ARM D12.1 "The Generic Timer"): constant rate
/// (`CNTFRQ_EL0`), shared by all CPUs. The `isb` keeps the read from being performed ahead of
/// the code it measures (Arm ARM D12.2.2: counter reads are not ordered otherwise).
#[inline]
pub fn read_cycle_counter() -> u64 {
    // SAFETY: ISB only synchronises the instruction stream.
    unsafe { core::arch::asm!("isb", options(nomem, nostack, preserves_flags)) };
    CNTVCT_EL0.get()
}

/// A full memory and device-access barrier (`dsb sy`).
#[inline]
pub fn memory_fence() {
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    // SAFETY: DSB only orders memory accesses.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Stops this CPU for good: all exceptions masked, `wfi` in a loop.
pub fn halt_forever() -> ! {
    // SAFETY: masking exceptions and waiting; nothing runs after this.
    unsafe { core::arch::asm!("msr daifset, #0xf", options(nomem, nostack)) };
    loop {
        // SAFETY: WFI only waits.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
    }
}

/// The Exception level the kernel runs at now (always 1 once `rhea_entry` runs).
pub fn current_el() -> u8 {
    let el: u64;
    // SAFETY: reads CurrentEL.
    unsafe {
        core::arch::asm!("mrs {}, CurrentEL", out(reg) el, options(nomem, nostack, preserves_flags))
    };
    ((el >> 2) & 3) as u8
}

/// Calls the PSCI firmware (Arm DEN0022 "Power State Coordination Interface" §5.2: SMC32/HVC32
/// calling convention, function ID in `w0`, result in `x0`) through `hvc #0` or `smc #0`, as the
/// device tree's `/psci` node says ([`smccc::call`]).
///
/// # Safety
/// `function` and its arguments are a PSCI call the caller is prepared for (SYSTEM_OFF does not
/// return; CPU_ON starts another CPU at `arg1`).
pub unsafe fn psci_call(use_smc: bool, function: u32, arg0: u64, arg1: u64, arg2: u64) -> u64 {
    // SAFETY: forwarded to the caller.
    unsafe { smccc::call(use_smc, function, [arg0, arg1, arg2])[0] }
}

/// Switches to the stack whose top is `stack_top` and calls `f(arg)` there. `f` must not
/// return (the old stack is abandoned).
///
/// # Safety
/// `stack_top` is 16-byte aligned, the top of a mapped, writable stack that nothing else uses.
pub unsafe fn run_on_stack(stack_top: u64, f: extern "C" fn(usize) -> !, arg: usize) -> ! {
    // SAFETY: the caller guarantees the stack; `f` never returns. x29/x30 are cleared so
    // backtraces stop at `f`.
    unsafe {
        core::arch::asm!(
            "mov sp, {top}",
            "mov x29, #0",
            "mov x30, #0",
            "blr {f}",
            "brk #1",
            top = in(reg) stack_top,
            f = in(reg) f,
            in("x0") arg,
            options(noreturn),
        )
    }
}
