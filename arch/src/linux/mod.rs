//! Linux user space as an architecture (LinuxU): Rhea as an ordinary x86_64 Linux process.
//!
//! The CPU-level pieces are x86_64's own and shared with the bare-metal port: the context
//! switch (with XSAVE), the trap frame and fault report, register dumps and backtraces, CPU
//! features, fault triggers. What differs is how the machine is reached: traps and interrupts
//! are signals ([`signals`]), "interrupts disabled" is a per-vCPU flag ([`irqflag`]), memory is mapped
//! with `mmap` ([`paging`]), and everything goes through raw system calls ([`sys`]), never
//! through libc, whose internal locks a preempted thread could be holding.

#[path = "../x86_64/context.rs"]
#[allow(
    unreachable_pub,
    reason = "x86_64's `switch` is wrapped by `context::switch` below; the rest is re-exported"
)]
mod x86_context;
/// x86_64's context switch, preceded by what a vCPU must do before switching threads.
pub mod context {
    pub use super::x86_context::{FPU_AREA_BYTES, FpuError, FpuMode, init_fpu, init_stack};

    /// Saves the running context, storing its stack pointer into `*from_sp`, and resumes the
    /// one saved at `to_sp` (x86_64's switch), after making sure the vCPU's interrupt signals
    /// are unblocked for the thread switched to ([`super::irqflag::before_switch`]).
    ///
    /// # Safety
    /// As for x86_64's `switch`: interrupts are disabled, `from_sp` is the running thread's,
    /// and `to_sp` a saved context that is not running anywhere.
    pub unsafe fn switch(from_sp: *mut usize, to_sp: usize) {
        super::irqflag::before_switch();
        // SAFETY: the conditions are the caller's, passed on unchanged.
        unsafe { super::x86_context::switch(from_sp, to_sp) }
    }
}
#[path = "../x86_64/fault.rs"]
mod fault;
#[path = "../x86_64/features_impl.rs"]
mod features_impl;
mod irqflag;
pub mod paging;
mod random;
#[path = "../x86_64/regs.rs"]
mod regs;
pub mod signals;
pub mod sys;
#[path = "../x86_64/testing.rs"]
pub mod testing;
pub mod vcpu;
pub mod vdso;

pub use fault::Fault;
pub use regs::Registers;

/// The CPU feature report printed at boot.
pub mod features {
    pub use super::features_impl::{Features, report};
}

use rhea_hal::CpuId;
use rhea_hal::arch::Arch;

/// LinuxU: x86_64 user space, with signals as interrupts, as the runtime sees it.
#[derive(Debug)]
pub enum LinuxU {}

impl Arch for LinuxU {
    crate::common::arch_common_items!(fault);

    /// Whether a read-modify-write with interrupts disabled is cheaper than an atomic one, for
    /// data only this CPU touches while one CPU runs the kernel: disabling interrupts is one store to the vCPU's flag ([`irqflag`]), cheaper than a locked instruction.
    const CHEAP_IRQ_MASK: bool = true;

    /// Whether removing a kernel mapping needs other CPUs' TLBs flushed by IPI: no, `munmap`
    /// does it for the process.
    const TLB_SHOOTDOWN_NEEDED: bool = false;

    /// Disables interrupts (one store to the vCPU's flag) and returns whether they were enabled.
    #[inline]
    fn irq_save() -> bool {
        irqflag::save()
    }

    /// Enables interrupts if `was_enabled`, delivering what arrived meanwhile.
    #[inline]
    fn irq_restore(was_enabled: bool) {
        if was_enabled {
            irqflag::enable();
        }
    }

    /// Enables interrupts, delivering what arrived while they were disabled.
    #[inline]
    fn irq_enable() {
        irqflag::enable();
    }

    /// Whether interrupts are enabled on this vCPU.
    #[inline]
    fn irq_enabled() -> bool {
        irqflag::enabled()
    }

    /// With interrupts disabled, waits for a signal and delivers what arrived (`pause` in a
    /// restartable window, see [`signals::suspend`]); returns with them disabled.
    fn wait_for_interrupt() {
        signals::suspend();
    }

    /// Nothing to do: Linux keeps the TLBs of the process's threads coherent.
    fn flush_tlb_all() {}
}

/// Installs the fault signal handlers (interrupts are disabled from the start).
pub fn init_boot_cpu() {
    signals::init_faults();
}

/// The current vCPU (its thread's GS-based per-CPU block, see [`vcpu`]).
pub fn cpu_id() -> CpuId {
    CpuId(vcpu::current() as u32)
}

/// The time-stamp counter (user-mode `rdtsc` is allowed on Linux).
pub fn read_cycle_counter() -> u64 {
    // SAFETY: RDTSC has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Ends the process: there is no CPU to stop.
pub fn halt_forever() -> ! {
    sys::exit_group(1)
}

/// A full memory fence.
pub fn memory_fence() {
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}
