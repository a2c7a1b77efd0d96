//! Per-CPU data through the GS segment base (SDM Vol. 3A §3.4.4: in 64-bit mode the GS base
//! is the `IA32_GS_BASE` MSR). Rhea runs only in ring 0, so GS is never swapped.
//!
//! Each CPU's GS points at its [`PerCpu`] block in the static [`rhea_percpu`] array; the block's
//! first word is the CPU's index, so `cpu_id()` is one `mov` from `gs:[0]`. The board's entry
//! code points GS at block 0 before any Rust runs on the boot CPU, and at block N before
//! application processor N runs Rust, so `cpu_id()` is valid everywhere, fault reports included.

/// The most CPUs the kernel runs (the scheduler's limit is the same number).
pub const MAX_CPUS: usize = 64;

/// One CPU's block. The first word must stay the CPU's index (read by `cpu_id`). Read-only,
/// so blocks share cache lines freely: not padded to 64 bytes (that was 4 KiB of `.rodata`).
#[repr(C)]
#[derive(Debug)]
pub struct PerCpu {
    index: usize,
}

/// Every CPU's block, indexed by logical CPU number; the entry code takes its address by
/// symbol name.
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals, reason = "an assembly-visible symbol")]
pub static rhea_percpu: [PerCpu; MAX_CPUS] = {
    let mut blocks = [const { PerCpu { index: 0 } }; MAX_CPUS];
    let mut i = 0;
    while i < MAX_CPUS {
        blocks[i].index = i;
        i += 1;
    }
    blocks
};

/// The index of the CPU this runs on.
#[inline]
pub fn current() -> usize {
    let index: usize;
    // SAFETY: GS points at this CPU's `PerCpu` block from before the first Rust instruction
    // (see the module doc); its first word is the index, never written after start-up.
    unsafe {
        core::arch::asm!(
            "mov {}, gs:[0]",
            out(reg) index,
            options(nostack, preserves_flags, readonly)
        );
    }
    index
}
