//! Starting a secondary CPU: the parameter block its entry code
//! (`rhea_aarch64_secondary_entry`, in `boot.rs`) reads, and the per-CPU registers it sets.
//!
//! The board starts one CPU at a time (PSCI `CPU_ON` or a spin-table release) at the address
//! [`prepare_secondary`] returns, waits for it to report in, and then prepares the next, so one
//! block suffices. The new CPU reads the block with its MMU and caches off, where loads go to
//! memory (Arm ARM B2.8: Device/Non-cacheable), so the block is cleaned to the point of
//! coherency after it is written. It carries:
//! - the MPIDR affinity of the CPU it is for: a CPU waits (`wfe`) in the entry until the block
//!   names it — spin-table CPUs are released into the entry during early boot, while the boot
//!   map still covers their release addresses, and wait there — and one that came up after the
//!   board gave up on it ([`withdraw_secondary`]) waits for good instead of sharing stacks;
//! - `MAIR_EL1`, `TCR_EL1`, `TTBR0_EL1` and `SCTLR_EL1` as the boot CPU has them now, so the
//!   new CPU turns its MMU on with the kernel's own tables (which map the image, RAM and every
//!   stack) rather than the boot map;
//! - the tops of its exception stack (`SP_EL1`) and idle stack (`SP_EL0`), its index (written
//!   to `TPIDR_EL1`, see [`super::cpu_id`]) and the function it calls, with the index in `x0`.
//!
//! The nested-exception stack (see `trap.rs`) is per CPU too: its top goes into
//! `rhea_aarch64_nested_tops[cpu]`, which the trap entry indexes with `TPIDR_EL1`.

use super::MAX_CPUS;
use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};

/// The block `rhea_aarch64_secondary_entry` reads (offsets are passed to the assembly with
/// `offset_of!`). Cache-line aligned so that cleaning it touches no neighbour.
#[repr(C, align(64))]
pub(super) struct SecondaryBlock {
    pub(super) mpidr: AtomicU64,
    pub(super) mair: AtomicU64,
    pub(super) tcr: AtomicU64,
    pub(super) ttbr0: AtomicU64,
    pub(super) sctlr: AtomicU64,
    pub(super) exception_stack_top: AtomicU64,
    pub(super) stack_top: AtomicU64,
    pub(super) cpu: AtomicU64,
    pub(super) main: AtomicU64,
}

/// No CPU: an MPIDR value with bits outside the affinity fields, which no CPU reads.
const NOBODY: u64 = u64::MAX;

#[unsafe(export_name = "rhea_aarch64_secondary_block")]
static BLOCK: SecondaryBlock = SecondaryBlock {
    mpidr: AtomicU64::new(NOBODY),
    mair: AtomicU64::new(0),
    tcr: AtomicU64::new(0),
    ttbr0: AtomicU64::new(0),
    sctlr: AtomicU64::new(0),
    exception_stack_top: AtomicU64::new(0),
    stack_top: AtomicU64::new(0),
    cpu: AtomicU64::new(0),
    main: AtomicU64::new(0),
};

unsafe extern "C" {
    /// The entry code in `boot.rs`.
    static rhea_aarch64_secondary_entry: u8;
    /// Per-CPU tops of the nested-exception stacks (`boot.rs`; entry 0 is the boot CPU's).
    static rhea_aarch64_nested_tops: [AtomicU64; MAX_CPUS];
}

/// What a secondary CPU starts with. Every stack is mapped in the kernel's tables, used by
/// nothing else, its top 16-byte aligned.
#[derive(Debug)]
pub struct SecondaryStart {
    /// Its index (1.., below [`MAX_CPUS`]): `TPIDR_EL1` and the argument of `main`.
    pub cpu: usize,
    /// Its MPIDR affinity fields (Aff3..Aff0, as [`super::MPIDR_AFFINITY_MASK`] keeps them).
    pub mpidr: u64,
    /// Its idle stack (`SP_EL0`): `main` runs on it.
    pub stack: Range<u64>,
    /// Its exception stack (`SP_EL1`).
    pub exception_stack: Range<u64>,
    /// Its stack for exceptions taken on the exception stack.
    pub nested_stack: Range<u64>,
    /// Its first Rust code: MMU on, vectors installed, IRQs masked; never returns.
    pub main: extern "C" fn(usize) -> !,
}

macro_rules! read_sysreg {
    ($name:literal) => {{
        let v: u64;
        // SAFETY: reading an EL1 system register has no side effects.
        unsafe {
            core::arch::asm!(concat!("mrs {}, ", $name), out(reg) v,
                options(nomem, nostack, preserves_flags))
        };
        v
    }};
}

/// Cleans and invalidates `[start, start + len)` to the point of coherency, for an observer
/// with its caches off. 16-byte steps: no cache line is smaller.
fn clean_to_poc(start: u64, len: u64) {
    let mut a = start & !15;
    // RT: a few dozen bytes.
    while a < start + len {
        // SAFETY: cache maintenance by address on mapped, writable memory only writes back
        // and drops lines; it changes no data.
        unsafe { core::arch::asm!("dc civac, {}", in(reg) a, options(nostack, preserves_flags)) };
        a += 16;
    }
    // SAFETY: a barrier only.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}

fn clean_block() {
    clean_to_poc(
        core::ptr::addr_of!(BLOCK) as u64,
        size_of::<SecondaryBlock>() as u64,
    );
}

/// Fills the start block for `start` and returns the physical address to start the CPU at
/// (the image runs identity-mapped, so it is also the virtual one).
///
/// # Safety
/// One CPU start at a time: no CPU started earlier may still be about to read the block (it
/// reported in, or [`withdraw_secondary`] was called for it). The stacks are as
/// [`SecondaryStart`] says, `start.cpu` is below [`MAX_CPUS`] and not the index of a running
/// CPU. Called after the kernel's page tables are active.
pub unsafe fn prepare_secondary(start: &SecondaryStart) -> u64 {
    // SAFETY: a linker symbol; the table is writable data in the image, and entry `cpu` belongs
    // to a CPU not yet running.
    let tops = unsafe { &rhea_aarch64_nested_tops };
    tops[start.cpu].store(start.nested_stack.end, Ordering::Relaxed);
    // Two steps, so that a waiting CPU (it reads memory, uncached) never sees its MPIDR with
    // stale fields: everything else first, cleaned; then the MPIDR, cleaned; then an event.
    BLOCK.mpidr.store(NOBODY, Ordering::Relaxed);
    BLOCK
        .mair
        .store(read_sysreg!("mair_el1"), Ordering::Relaxed);
    BLOCK.tcr.store(read_sysreg!("tcr_el1"), Ordering::Relaxed);
    BLOCK
        .ttbr0
        .store(read_sysreg!("ttbr0_el1"), Ordering::Relaxed);
    BLOCK
        .sctlr
        .store(read_sysreg!("sctlr_el1"), Ordering::Relaxed);
    BLOCK
        .exception_stack_top
        .store(start.exception_stack.end, Ordering::Relaxed);
    BLOCK.stack_top.store(start.stack.end, Ordering::Relaxed);
    BLOCK.cpu.store(start.cpu as u64, Ordering::Relaxed);
    BLOCK
        .main
        .store(start.main as usize as u64, Ordering::Relaxed);
    clean_block();
    BLOCK
        .mpidr
        .store(start.mpidr & super::MPIDR_AFFINITY_MASK, Ordering::Release);
    clean_block();
    // SAFETY: an event wakes CPUs waiting in `wfe`; nothing else.
    unsafe { core::arch::asm!("sev", options(nomem, nostack, preserves_flags)) };
    core::ptr::addr_of!(rhea_aarch64_secondary_entry) as u64
}

/// Takes the block back from a CPU that did not report in: if it comes up later it finds no
/// block for itself and parks.
pub fn withdraw_secondary() {
    BLOCK.mpidr.store(NOBODY, Ordering::Release);
    clean_block();
}
