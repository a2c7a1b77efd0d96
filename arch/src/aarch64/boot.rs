//! The architecture's half of early boot: from the board's entry (Linux arm64 boot protocol:
//! MMU off, interrupts masked, EL2 or EL1, `x0` = the device tree) to `rhea_entry` running at
//! EL1 with the MMU on.
//!
//! `rhea_aarch64_start` (called by the board's `_start`, which owns the `Image` header):
//! 1. checks that the image runs where it was linked (Rhea runs identity-mapped, so a loader
//!    that placed it elsewhere cannot be recovered from) and that it was entered at EL2 or EL1;
//!    either failure prints a fixed message on the board's early PL011, if it named one, and
//!    parks the CPU — never a silent hang where a UART exists;
//! 2. at EL2, makes EL1 an AArch64 EL1 with the counters and (GICv3) the GIC system
//!    registers available, and returns to EL1 (Arm ARM D1.12 "Exception return"; the same steps
//!    as Linux's `init_el2`);
//! 3. enables FP/SIMD (`CPACR_EL1.FPEN`), since compiled Rust for `aarch64-unknown-none` uses
//!    the SIMD registers anywhere (memcpy, struct copies);
//! 4. zeroes `.bss` and invalidates it from the data cache (a loader may have left stale lines;
//!    the boot protocol only promises the *image* is clean to the point of coherency);
//! 5. builds the boot identity map — the first 4 GiB in 2 MiB blocks, Normal write-back except
//!    the board's device range, which is Device-nGnRE and never executable — and turns the MMU
//!    and caches on. The runtime replaces this map with the kernel's own (W^X, page 0
//!    unmapped, guard pages) once frames exist (`paging::AddressSpace::activate`). With the MMU
//!    off, data accesses are Device-nGnRnE, where exclusive loads and stores (every atomic) are
//!    not guaranteed to work (Arm ARM B2.9.6): hence the map before any Rust code;
//! 6. sets `SP_EL1` to the exception stack and runs everything else on `SP_EL0` (`SPSel = 0`),
//!    so a stack overflow's data abort is taken on a stack that works (see `trap.rs`);
//! 7. installs the exception vectors, sets `TPIDR_EL1` (the CPU index, [`super::cpu_id`]) to 0
//!    and calls `rhea_entry(dtb)`.
//!
//! `rhea_aarch64_secondary_entry` is a started secondary CPU's first instruction: the same
//! EL2 → EL1 step and FP/SIMD enable, then the boot CPU's translation regime, its own stacks,
//! the vectors and its index from [`super::secondary`]'s block.

use super::paging::{BOOT_DEVICE_BLOCK, BOOT_NORMAL_BLOCK, MAIR_VALUE, TCR_BASE};
use super::secondary::SecondaryBlock;
use core::sync::atomic::{AtomicU64, Ordering};

/// The virtual counter at the first instruction at EL1, stored by the entry code.
#[unsafe(no_mangle)]
static RHEA_AARCH64_BOOT_CYCLES: AtomicU64 = AtomicU64::new(0);

/// The Exception level the kernel was entered at (2 or 1), stored by the entry code.
#[unsafe(no_mangle)]
static RHEA_AARCH64_ENTRY_EL: AtomicU64 = AtomicU64::new(0);

/// `CNTVCT_EL0` when the kernel first ran at EL1 (its boot timestamp).
pub fn boot_cycles() -> u64 {
    RHEA_AARCH64_BOOT_CYCLES.load(Ordering::Relaxed)
}

/// The Exception level the loader entered the kernel at (2 or 1).
pub(super) fn entry_el() -> u8 {
    RHEA_AARCH64_ENTRY_EL.load(Ordering::Relaxed) as u8
}

unsafe extern "C" {
    /// The parking loop defined below.
    static rhea_aarch64_park: u8;
    /// The secondary entry defined below.
    static rhea_aarch64_secondary_entry: u8;
}

/// Where [`release_spin_table_cpu`] sends a CPU.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SpinTableRelease {
    /// A `wfi` loop for good, where it costs nothing — a firmware's `wfe` poll keeps the core
    /// (and an emulator's host thread) busy. For CPUs the run does not use.
    Park,
    /// The secondary entry, which waits (`wfe`) until [`super::secondary::prepare_secondary`]
    /// names the CPU, then starts it.
    Start,
}

/// Releases a secondary CPU held in a spin table (Linux `booting.rst`, "spin-table": it polls
/// `cpu-release-addr` with `wfe`, with its MMU and caches off) to `to`. Called while the boot
/// identity map is active: the release address is often in page 0, which the kernel's own
/// tables leave unmapped.
///
/// # Safety
/// `release_addr` is that CPU's `cpu-release-addr` from the devicetree: 8-byte aligned, in RAM
/// the boot map covers, and not in use by anything else.
pub unsafe fn release_spin_table_cpu(release_addr: u64, to: SpinTableRelease) {
    let entry = match to {
        SpinTableRelease::Park => core::ptr::addr_of!(rhea_aarch64_park) as u64,
        SpinTableRelease::Start => core::ptr::addr_of!(rhea_aarch64_secondary_entry) as u64,
    };
    // SAFETY: per the contract; the CPU reads the slot with its caches off, so the line is
    // cleaned to the point of coherency before the event wakes it (booting.rst).
    unsafe {
        core::ptr::write_volatile(release_addr as *mut u64, entry);
        core::arch::asm!(
            "dc civac, {a}",
            "dsb sy",
            "sev",
            a = in(reg) release_addr,
            options(nostack, preserves_flags)
        );
    }
}

/// Bytes of the exception stack (`SP_EL1`): fault reports run on it.
pub(super) const EXCEPTION_STACK_BYTES: usize = 16 * 1024;
/// Bytes of the stack used when an exception arrives while already on `SP_EL1`.
pub(super) const NESTED_STACK_BYTES: usize = 8 * 1024;

core::arch::global_asm!(
    r#"
    .section .text.rhea_boot, "ax"
    .balign 8
    .global rhea_aarch64_start
    .type rhea_aarch64_start, %function
/* x0 = DTB, x1/x2 = device range [start, end) of the boot map, x3 = early PL011 (0: none),
 * x4 = top of the boot stack. Kept in x19..x23 (callee-saved: they survive everything here). */
rhea_aarch64_start:
    msr daifset, #0xf
    mov x19, x0
    mov x20, x1
    mov x21, x2
    mov x22, x3
    mov x23, x4

    adr x9, rhea_aarch64_start
    ldr x10, =rhea_aarch64_start
    cmp x9, x10
    b.ne .Lwrong_address

    mrs x9, CurrentEL
    ubfx x9, x9, #2, #2
    mov x25, x9
    cmp x9, #1
    b.eq .Lat_el1
    cmp x9, #2
    b.ne .Lbad_el

    bl .Lel2_to_el1_setup
    adr x9, .Lat_el1
    msr elr_el2, x9
    isb
    eret

.Lat_el1:
    msr spsel, #1
    mrs x24, cntvct_el0
    /* Per-CPU data: TPIDR_EL1 holds the CPU's index; the boot CPU is 0. */
    msr tpidr_el1, xzr

    /* FP/SIMD: CPACR_EL1.FPEN = 0b11 (no traps at EL1 or EL0). */
    mov x9, #(3 << 20)
    msr cpacr_el1, x9
    isb

    /* Zero .bss (16-byte aligned at both ends: the linker script aligns it to pages). */
    ldr x9, =__rhea_bss_start
    ldr x10, =__rhea_bss_end
2:  cmp x9, x10
    b.hs 3f
    stp xzr, xzr, [x9], #16
    b 2b
3:  /* ... and drop any stale cache line over it (DminLine from CTR_EL0 gives the line size). */
    mrs x11, ctr_el0
    ubfx x11, x11, #16, #4
    mov x12, #4
    lsl x12, x12, x11
    sub x13, x12, #1
    ldr x9, =__rhea_bss_start
    bic x9, x9, x13
4:  cmp x9, x10
    b.hs 5f
    dc ivac, x9
    add x9, x9, x12
    b 4b
5:  dsb sy

    /* Boot identity map: L0[0] -> L1, L1[0..4] -> four L2 tables, 2048 2 MiB blocks. */
    adrp x9, rhea_aarch64_boot_l0
    adrp x10, rhea_aarch64_boot_l1
    orr x11, x10, #3
    str x11, [x9]
    adrp x12, rhea_aarch64_boot_l2
    mov x13, #0
6:  add x14, x12, x13, lsl #12
    orr x14, x14, #3
    str x14, [x10, x13, lsl #3]
    add x13, x13, #1
    cmp x13, #4
    b.lo 6b
    mov x13, #0
    mov x15, x12
    ldr x16, ={normal}
    ldr x17, ={device}
    mov x18, #(1 << 32)
7:  orr x14, x13, x16
    cmp x13, x20
    b.lo 8f
    cmp x13, x21
    b.hs 8f
    orr x14, x13, x17
8:  str x14, [x15], #8
    add x13, x13, #0x200000
    cmp x13, x18
    b.lo 7b
    dsb sy

    ldr x9, ={mair}
    msr mair_el1, x9
    /* IPS = the CPU's physical address size (ID_AA64MMFR0_EL1.PARange), at most 48 bits. */
    mrs x10, id_aa64mmfr0_el1
    and x10, x10, #0xf
    cmp x10, #5
    mov x11, #5
    csel x10, x10, x11, ls
    ldr x9, ={tcr}
    orr x9, x9, x10, lsl #32
    msr tcr_el1, x9
    adrp x9, rhea_aarch64_boot_l0
    msr ttbr0_el1, x9
    isb
    tlbi vmalle1
    dsb nsh
    isb
    /* SCTLR_EL1: MMU (M), data cache (C), instruction cache (I); no alignment checking (A). */
    mrs x9, sctlr_el1
    orr x9, x9, #(1 << 0)
    orr x9, x9, #(1 << 2)
    orr x9, x9, #(1 << 12)
    bic x9, x9, #(1 << 1)
    msr sctlr_el1, x9
    isb

    /* SP_EL1: the exception stack. Everything else runs on SP_EL0 (SPSel = 0). */
    ldr x9, =rhea_aarch64_exception_stack_top
    mov sp, x9
    msr spsel, #0
    mov sp, x23
    ldr x9, =rhea_aarch64_vectors
    msr vbar_el1, x9
    isb
    ldr x9, =RHEA_AARCH64_BOOT_CYCLES
    str x24, [x9]
    ldr x9, =RHEA_AARCH64_ENTRY_EL
    str x25, [x9]
    mov x29, #0
    mov x30, #0
    mov x0, x19
    bl rhea_entry
    b .Lpark

    /* Where spin-table CPUs this run does not use sleep for good (`rhea.cpus=N` below the
     * devicetree's count): every exception masked, `wfi` (nothing is routed to them, so
     * nothing wakes them). Runs with their MMU off, at whatever EL the firmware holds them. */
    .balign 8
    .global rhea_aarch64_park
rhea_aarch64_park:
    msr daifset, #0xf
11: wfi
    b 11b

    /* EL2 -> EL1 set-up shared by the boot CPU and the secondaries (x9, x10 clobbered): EL1
     * is configured; the caller sets ELR_EL2 and returns with `eret`. */
.Lel2_to_el1_setup:
    /* EL2: EL1 is AArch64 (HCR_EL2.RW) and takes its own interrupts (IMO/FMO clear). */
    mov x9, #(1 << 31)
    msr hcr_el2, x9
    /* EL1 may read the physical counter and timer (CNTHCTL_EL2.EL1PCTEN, EL1PCEN); the virtual
     * counter equals the physical one. */
    mrs x9, cnthctl_el2
    orr x9, x9, #3
    msr cnthctl_el2, x9
    msr cntvoff_el2, xzr
    /* No FP/SIMD or system-register traps to EL2 (CPTR_EL2.TFP clear, RES1 bits set). */
    mov x9, #0x33ff
    msr cptr_el2, x9
    msr hstr_el2, xzr
    /* EL1 reads the real MIDR and MPIDR. */
    mrs x9, midr_el1
    msr vpidr_el2, x9
    mrs x9, mpidr_el1
    msr vmpidr_el2, x9
    /* GICv3 CPU interface through system registers (ID_AA64PFR0_EL1.GIC != 0): let EL1 use
     * them (ICC_SRE_EL2.Enable | SRE), no virtual interface (ICH_HCR_EL2 = 0). */
    mrs x9, id_aa64pfr0_el1
    ubfx x9, x9, #24, #4
    cbz x9, 1f
    mrs x9, S3_4_C12_C9_5
    mov x10, #0x9
    orr x9, x9, x10
    msr S3_4_C12_C9_5, x9
    isb
    msr S3_4_C12_C11_0, xzr
1:  /* SCTLR_EL1: its RES1 bits; MMU and caches off until the boot map exists. */
    ldr x9, =0x30d00800
    msr sctlr_el1, x9
    /* Return to EL1h with D, A, I and F masked. */
    mov x9, #0x3c5
    msr spsr_el2, x9
    ret

    /* A secondary CPU's first instruction (PSCI CPU_ON or a spin table): MMU and caches off,
     * EL2 or EL1, every exception masked. Its parameters are in rhea_aarch64_secondary_block,
     * which the boot CPU cleaned to the point of coherency (see `secondary.rs`). */
    .balign 8
    .global rhea_aarch64_secondary_entry
rhea_aarch64_secondary_entry:
    msr daifset, #0xf
    mrs x9, CurrentEL
    ubfx x9, x9, #2, #2
    cmp x9, #1
    b.eq .Lsecondary_el1
    cmp x9, #2
    b.ne .Lsecondary_park
    bl .Lel2_to_el1_setup
    adr x9, .Lsecondary_el1
    msr elr_el2, x9
    isb
    eret
.Lsecondary_el1:
    msr spsel, #1
    mov x9, #(3 << 20)
    msr cpacr_el1, x9
    isb
    adrp x19, rhea_aarch64_secondary_block
    add x19, x19, :lo12:rhea_aarch64_secondary_block
    /* Only the CPU the block was written for may use it: until the block names this CPU, wait
     * (a spin-table CPU is released here early; a CPU that comes up after the boot CPU gave
     * up on it waits for good). The boot CPU cleans the block to memory and sends an event. */
    mrs x9, mpidr_el1
    ldr x10, ={aff_mask}
    and x20, x9, x10
13: ldr x10, [x19, #{off_mpidr}]
    cmp x20, x10
    b.eq 14f
    wfe
    b 13b
14:
    /* The boot CPU's translation regime, so this CPU runs on the kernel's own tables. */
    ldr x9, [x19, #{off_mair}]
    msr mair_el1, x9
    ldr x9, [x19, #{off_tcr}]
    msr tcr_el1, x9
    ldr x9, [x19, #{off_ttbr0}]
    msr ttbr0_el1, x9
    isb
    tlbi vmalle1
    dsb nsh
    isb
    ldr x9, [x19, #{off_sctlr}]
    msr sctlr_el1, x9
    isb
    /* SP_EL1: this CPU's exception stack; SP_EL0 its idle stack; its vectors and index. */
    ldr x9, [x19, #{off_exc}]
    mov sp, x9
    msr spsel, #0
    ldr x9, [x19, #{off_stack}]
    mov sp, x9
    ldr x9, =rhea_aarch64_vectors
    msr vbar_el1, x9
    ldr x0, [x19, #{off_cpu}]
    msr tpidr_el1, x0
    isb
    ldr x9, [x19, #{off_main}]
    mov x29, #0
    mov x30, #0
    blr x9
.Lsecondary_park:
    msr daifset, #0xf
12: wfi
    b 12b

.Lwrong_address:
    adr x0, .Lmsg_address
    b .Lfail
.Lbad_el:
    adr x0, .Lmsg_el
.Lfail:
    /* Polled PL011 output (PrimeCell UART TRM: DR at 0x00, FR at 0x18, FR.TXFF bit 5). */
    cbz x22, .Lpark
9:  ldrb w1, [x0], #1
    cbz w1, .Lpark
10: ldr w2, [x22, #0x18]
    tbnz w2, #5, 10b
    str w1, [x22]
    b 9b
.Lpark:
    wfe
    b .Lpark

    .ltorg
.Lmsg_address:
    .asciz "\r\nrhea: FATAL: the image is not at the address it was linked for; Rhea runs identity-mapped and must be loaded there (see the board's link.ld). Halting.\r\n"
.Lmsg_el:
    .asciz "\r\nrhea: FATAL: entered at EL3 or EL0; Rhea must be entered at EL2 or EL1 (Linux arm64 boot protocol). Halting.\r\n"

    .section .bss.rhea_aarch64_boot, "aw", %nobits
    .balign 4096
rhea_aarch64_boot_l0: .skip 4096
rhea_aarch64_boot_l1: .skip 4096
rhea_aarch64_boot_l2: .skip 4 * 4096
    .balign 16
    .global rhea_aarch64_exception_stack_bottom
rhea_aarch64_exception_stack_bottom:
    .skip {exc_stack}
    .global rhea_aarch64_exception_stack_top
rhea_aarch64_exception_stack_top:
    .global rhea_aarch64_nested_stack_bottom
rhea_aarch64_nested_stack_bottom:
    .skip {nested_stack}
    .global rhea_aarch64_nested_stack_top
rhea_aarch64_nested_stack_top:

    /* The top of each CPU's nested-exception stack, indexed by TPIDR_EL1 (see `trap.rs`). */
    .section .data.rhea_aarch64_nested_tops, "aw"
    .balign 8
    .global rhea_aarch64_nested_tops
rhea_aarch64_nested_tops:
    .quad rhea_aarch64_nested_stack_top
    .skip 8 * ({max_cpus} - 1)
    "#,
    normal = const BOOT_NORMAL_BLOCK,
    device = const BOOT_DEVICE_BLOCK,
    mair = const MAIR_VALUE,
    tcr = const TCR_BASE,
    exc_stack = const EXCEPTION_STACK_BYTES,
    nested_stack = const NESTED_STACK_BYTES,
    max_cpus = const super::MAX_CPUS,
    aff_mask = const super::MPIDR_AFFINITY_MASK,
    off_mpidr = const core::mem::offset_of!(SecondaryBlock, mpidr),
    off_mair = const core::mem::offset_of!(SecondaryBlock, mair),
    off_tcr = const core::mem::offset_of!(SecondaryBlock, tcr),
    off_ttbr0 = const core::mem::offset_of!(SecondaryBlock, ttbr0),
    off_sctlr = const core::mem::offset_of!(SecondaryBlock, sctlr),
    off_exc = const core::mem::offset_of!(SecondaryBlock, exception_stack_top),
    off_stack = const core::mem::offset_of!(SecondaryBlock, stack_top),
    off_cpu = const core::mem::offset_of!(SecondaryBlock, cpu),
    off_main = const core::mem::offset_of!(SecondaryBlock, main),
);
