//! Linux user space as an architecture (LinuxU): Rhea as an ordinary x86_64 Linux process.
//!
//! The CPU-level pieces are x86_64's own and shared with the bare-metal port: the context
//! switch (with XSAVE), the trap frame and fault report, register dumps and backtraces, CPU
//! features, fault triggers. What differs is how the machine is reached: traps and interrupts
//! are signals ([`signals`]), "interrupts disabled" is a blocked signal mask, memory is mapped
//! with `mmap` ([`paging`]), and everything goes through raw system calls ([`sys`]), never
//! through libc, whose internal locks a preempted thread could be holding.

#[path = "../x86_64/context.rs"]
pub mod context;
#[path = "../x86_64/fault.rs"]
mod fault;
#[path = "../x86_64/features_impl.rs"]
mod features_impl;
pub mod paging;
#[path = "../x86_64/regs.rs"]
mod regs;
pub mod signals;
pub mod sys;
#[path = "../x86_64/testing.rs"]
pub mod testing;
pub mod vcpu;

pub use fault::{Fault, set_fault_handler, set_interrupt_handler};
pub use regs::{Registers, backtrace};

/// The CPU feature report printed at boot.
pub mod features {
    pub use super::features_impl::{Features, report};
}

use rhea_hal::CpuId;

/// Installs the fault signal handlers; interrupts (signals) start blocked.
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

/// Blocks the interrupt signals and returns whether they were unblocked.
pub fn irq_save() -> bool {
    signals::block()
}

/// Unblocks the interrupt signals if `was_enabled`.
pub fn irq_restore(was_enabled: bool) {
    if was_enabled {
        signals::unblock();
    }
}

/// Unblocks the interrupt signals.
pub fn irq_enable() {
    signals::unblock();
}

/// Whether the interrupt signals are unblocked.
pub fn irq_enabled() -> bool {
    signals::unblocked()
}

/// Waits for a signal with them unblocked (`rt_sigsuspend`), then returns with them blocked.
pub fn wait_for_interrupt() {
    signals::suspend();
}

/// A full memory fence.
pub fn memory_fence() {
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}

/// Whether removing a kernel mapping needs other CPUs' TLBs flushed by IPI: no, `munmap`
/// does it for the process.
pub const TLB_SHOOTDOWN_NEEDED: bool = false;

/// Nothing to do: Linux keeps the TLBs of the process's threads coherent.
pub fn flush_tlb_all() {}
