//! The machine's CPUs: found in the ACPI MADT during early boot, started with INIT-SIPI-SIPI
//! (SDM Vol. 3A §9.4.4 "MP Initialization Example") through a real-mode trampoline.
//!
//! **Enumeration** (`early_init` → [`discover`]): the RSDP comes from the PVH start info (else
//! the BIOS areas are searched); `rhea-smp` reads the MADT through the `acpi` crate while the
//! boot identity map still covers the firmware tables. The boot CPU is CPU 0, the others
//! follow in table order, at most [`MAX_CPUS`] and at most `rhea.cpus=N` from the command line.
//! No usable MADT means one CPU, said on the console.
//!
//! **Start-up** ([`start`]), one application processor at a time: the trampoline (16-bit code
//! and a GDT, [`TRAMPOLINE_LEN`] bytes) is copied to a free page below 1 MiB; the AP starts
//! there in real mode, enters protected mode, jumps into the image (`rhea_ap_start32`), turns
//! on long mode with the boot page tables, then loads the kernel's page tables, its stack and
//! its GS base from [`rhea_ap_boot`] and calls [`rhea_ap_main`], which loads its own
//! GDT/TSS/IDT, enables its local APIC and timer and enters the runtime. The boot CPU waits up
//! to [`START_TIMEOUT_NS`] for each; an AP that does not arrive is sent INIT again (parking it
//! before [`rhea_ap_boot`] is reused) and reported, and boot continues without it.
#![allow(
    unsafe_code,
    reason = "the trampoline copy, linker symbols and the AP entry; each use has a SAFETY note"
)]

use crate::machine::ConsoleWriter;
use crate::madt::{self, MadtInfo, Rsdp, Window};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use rhea_hal::StackSource;
use rhea_hal::cmdline::{Cmdline, keys};
use rhea_sync::Once;

/// The most CPUs started (the scheduler's limit).
pub(crate) const MAX_CPUS: usize = rhea_smp::MAX_CPUS;
const _: () = assert!(MAX_CPUS == rhea_arch::percpu::MAX_CPUS);

/// How long the boot CPU waits for each AP to reach Rust.
const START_TIMEOUT_NS: u64 = 1_000_000_000;
/// Each AP's first stack (its idle thread's) and its IST stacks.
const AP_STACK_BYTES: u64 = 64 * 1024;
const AP_IST_BYTES: u64 = 16 * 1024;
const IST_NAMES: [&str; 4] = ["#DF stack", "NMI stack", "#MC stack", "#PF stack"];

/// What the MADT said, once `early_init` read it.
static MADT: Once<MadtInfo> = Once::new();
/// The page (below 1 MiB) the trampoline is copied to.
static TRAMPOLINE_PAGE: AtomicU64 = AtomicU64::new(0);

core::arch::global_asm!(
    r#"
    /* The real-mode trampoline. Copied to a page P below 1 MiB; a SIPI with vector P/4096
     * starts the AP at CS = P/16, IP = 0, so every reference inside is relative to the start
     * (DS = CS). rhea_ap_gdtr's base is patched to P + (rhea_ap_gdt - start) before use. */
    .section .rodata.rhea_ap, "a"
    .balign 16
    .code16
    .global rhea_ap_trampoline
rhea_ap_trampoline:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl rhea_ap_gdtr - rhea_ap_trampoline
    movl %cr0, %eax
    orl $1, %eax                    /* CR0.PE */
    movl %eax, %cr0
    ljmpl $0x08, $rhea_ap_start32   /* flat 32-bit code, into the image */
    .balign 8
    .global rhea_ap_gdt
rhea_ap_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff        /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff        /* 0x10: 32-bit data */
    .global rhea_ap_gdtr
rhea_ap_gdtr:
    .word rhea_ap_gdtr - rhea_ap_gdt - 1
    .long 0
    .global rhea_ap_trampoline_end
rhea_ap_trampoline_end:

    /* Protected mode, paging off: the boot CPU's path to long mode, with the boot page tables
     * (an identity map of the low 4 GiB, still intact in .bss). */
    .section .text.rhea_ap, "ax"
    .code32
rhea_ap_start32:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl %cr4, %eax                 /* CR4.PAE */
    orl $0x20, %eax
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx          /* EFER: LME, NXE */
    rdmsr
    orl $0x900, %eax
    wrmsr
    movl %cr0, %eax                 /* CR0: PG, WP, PE */
    orl $0x80010001, %eax
    movl %eax, %cr0
    lgdt boot_gdtr
    ljmp $0x08, $3f

    .code64
3:  xorl %eax, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %eax, %fs
    movl %eax, %gs
    movq rhea_ap_boot(%rip), %rax   /* the kernel's page tables */
    movq %rax, %cr3
    movq rhea_ap_boot+8(%rip), %rsp
    movl $0xc0000101, %ecx          /* IA32_GS_BASE: this CPU's per-CPU block */
    movq rhea_ap_boot+16(%rip), %rax
    movq %rax, %rdx
    shrq $32, %rdx
    wrmsr
    movq rhea_ap_boot+24(%rip), %rdi
    xorl %ebp, %ebp
    call rhea_ap_main
    ud2
    "#,
    options(att_syntax)
);

unsafe extern "C" {
    static rhea_ap_trampoline: u8;
    static rhea_ap_trampoline_end: u8;
    static rhea_ap_gdt: u8;
    static rhea_ap_gdtr: u8;
}

/// What the next AP loads in 64-bit mode; the layout is the entry code's (offsets 0, 8, 16,
/// 24). Written by the boot CPU before each SIPI, read by that AP only.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct ApBoot {
    cr3: AtomicU64,
    stack_top: AtomicU64,
    gs_base: AtomicU64,
    cpu: AtomicU64,
}

/// The parameters of the AP being started.
#[unsafe(no_mangle)]
#[allow(non_upper_case_globals, reason = "an assembly-visible symbol")]
pub(crate) static rhea_ap_boot: ApBoot = ApBoot {
    cr3: AtomicU64::new(0),
    stack_top: AtomicU64::new(0),
    gs_base: AtomicU64::new(0),
    cpu: AtomicU64::new(0),
};

/// Per AP: its IST stack tops, set before its SIPI.
static IST_TOPS: [[AtomicU64; 4]; MAX_CPUS] =
    [const { [const { AtomicU64::new(0) }; 4] }; MAX_CPUS];
/// Per AP: set by the AP once it runs Rust with its own tables.
static STARTED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// The runtime's entry for started CPUs.
static ENTRY: AtomicUsize = AtomicUsize::new(0);

fn trampoline_len() -> usize {
    // SAFETY: linker symbols; only their addresses are used.
    unsafe { addr(&rhea_ap_trampoline_end) - addr(&rhea_ap_trampoline) }
}

fn addr(sym: &u8) -> usize {
    sym as *const u8 as usize
}

/// Bytes of the trampoline (checked at start-up to fit one page).
pub(crate) const TRAMPOLINE_LEN: usize = 4096;

/// Reads the MADT (boot identity map active, early boot) and picks the trampoline page among
/// `free_low_pages`. Prints what it found; never fails: without a usable MADT the machine runs
/// on the boot CPU.
pub(crate) fn discover(rsdp: Option<u64>, cmdline: &str, trampoline_page: Option<u64>) {
    let features = rhea_arch::features::report();
    let limit = cpus_limit(cmdline);
    // Early init runs before the runtime checks the whole command line: a bad value is
    // skipped here and refused there, before the machine runs.
    if let Ok(Some(n)) = Cmdline::new(cmdline).number(&keys::SMP_NOSIPI) {
        NO_SIPI.store(n as usize, Ordering::Relaxed);
    }
    let window = Window {
        start: 0x400,
        end: 4 << 30,
    };
    let where_ = match rsdp {
        Some(a) => Rsdp::At(a as usize),
        None => Rsdp::SearchBios,
    };
    // SAFETY: the boot page tables identity-map the low 4 GiB (the window), which holds the
    // BIOS areas and the firmware's ACPI tables; nothing writes them.
    let read = unsafe { madt::read(where_, window, features.apic_id, features.x2apic, limit) };
    let mut w = ConsoleWriter;
    let info = match read {
        Ok(info) => info,
        Err(e) => {
            let _ = writeln!(
                w,
                "rhea: smp: no usable ACPI MADT ({e}); running on the boot CPU only"
            );
            return;
        }
    };
    let _ = writeln!(
        w,
        "rhea: smp: MADT: {} CPU(s) to run (boot APIC ID {}), {} I/O APIC(s), {} ISA override(s)",
        info.cpus.len(),
        features.apic_id,
        info.io_apics().len(),
        info.overrides().len()
    );
    if info.cpus.over_limit > 0 {
        let _ = writeln!(
            w,
            "rhea: smp: {} more CPU(s) described than supported or allowed (limit {}); using {}",
            info.cpus.over_limit,
            limit,
            info.cpus.len()
        );
    }
    if info.x2apic_skipped > 0 {
        let _ = writeln!(
            w,
            "rhea: smp: {} CPU(s) with x2APIC IDs above 254 left out: this CPU has no x2APIC",
            info.x2apic_skipped
        );
    }
    if info.cpus.duplicates > 0 {
        let _ = writeln!(
            w,
            "rhea: smp: {} repeated APIC ID(s) ignored",
            info.cpus.duplicates
        );
    }
    if info.cpus.len() > 1 {
        match trampoline_page {
            Some(p) => TRAMPOLINE_PAGE.store(p, Ordering::Relaxed),
            None => {
                let _ = writeln!(
                    w,
                    "rhea: smp: no free page below 1 MiB for the AP trampoline; running on the boot CPU only"
                );
            }
        }
    }
    MADT.call_once(|| info);
}

/// `rhea.cpus=N` on the command line caps the CPUs used (`N` from 1 to [`MAX_CPUS`]; a bad
/// value caps nothing here and ends the run once the runtime checks the command line).
fn cpus_limit(cmdline: &str) -> usize {
    match Cmdline::new(cmdline).number(&keys::CPUS) {
        Ok(Some(n)) => (n as usize).min(MAX_CPUS),
        _ => MAX_CPUS,
    }
}

/// `rhea.smp.nosipi=N` (a fault-injection knob for tests): CPU `N` gets its INIT but no
/// start-up IPI, so it never arrives and the timeout path runs.
static NO_SIPI: AtomicUsize = AtomicUsize::new(usize::MAX);

/// What the MADT said, if it was usable.
pub fn madt() -> Option<&'static MadtInfo> {
    MADT.get()
}

/// CPUs the board will run: the MADT's, or 1 without one (or without a trampoline page).
pub(crate) fn cpu_count() -> usize {
    match (MADT.get(), TRAMPOLINE_PAGE.load(Ordering::Relaxed)) {
        (Some(info), page) if page != 0 => info.cpus.len(),
        _ => 1,
    }
}

/// The APIC ID of logical CPU `cpu`.
pub fn apic_id(cpu: usize) -> Option<u32> {
    MADT.get()?
        .cpus
        .id(cpu)
        .and_then(|id| u32::try_from(id).ok())
}

/// Starts CPUs `1..cpu_count()`; returns how many are online, the boot CPU included.
pub(crate) fn start(entry: extern "C" fn(usize) -> !, stacks: &dyn StackSource) -> usize {
    let mut w = ConsoleWriter;
    let n = cpu_count();
    let page = TRAMPOLINE_PAGE.load(Ordering::Relaxed);
    if n <= 1 || page == 0 {
        return 1;
    }
    let len = trampoline_len();
    assert!(len <= TRAMPOLINE_LEN, "the AP trampoline outgrew its page");
    // SAFETY: linker symbols; only their addresses are used.
    let (start_sym, gdt, gdtr) = unsafe {
        (
            addr(&rhea_ap_trampoline),
            addr(&rhea_ap_gdt),
            addr(&rhea_ap_gdtr),
        )
    };
    // SAFETY: `page` is a free RAM page below 1 MiB that early init chose and reserved (the
    // frame allocator never hands out page 0 up to it) and the kernel's page tables map
    // writable; the source is the trampoline's bytes in the image. The GDT pointer's base
    // (4 bytes after the limit) is patched in the copy.
    unsafe {
        core::ptr::copy_nonoverlapping(start_sym as *const u8, page as *mut u8, len);
        let base = (page + (gdt - start_sym) as u64) as u32;
        core::ptr::write_unaligned((page as usize + (gdtr - start_sym) + 2) as *mut u32, base);
    }
    ENTRY.store(entry as usize, Ordering::Release);
    let (cr3, _) = x86_64::registers::control::Cr3::read_raw();
    rhea_ap_boot
        .cr3
        .store(cr3.start_address().as_u64(), Ordering::Relaxed);

    let mut online = 1;
    for cpu in 1..n {
        let Some(apic) = apic_id(cpu) else { continue };
        let Some((stack_top, ist)) = ap_stacks(cpu, stacks) else {
            let _ = writeln!(
                w,
                "rhea: smp: no memory for cpu{cpu}'s stacks; continuing without it"
            );
            continue;
        };
        for (slot, top) in IST_TOPS[cpu].iter().zip(ist) {
            slot.store(top, Ordering::Relaxed);
        }
        rhea_ap_boot.stack_top.store(stack_top, Ordering::Relaxed);
        let percpu = &rhea_arch::percpu::rhea_percpu[cpu] as *const _ as u64;
        rhea_ap_boot.gs_base.store(percpu, Ordering::Relaxed);
        rhea_ap_boot.cpu.store(cpu as u64, Ordering::Release);

        let sipi = NO_SIPI.load(Ordering::Relaxed) != cpu;
        let page_number = (page >> 12) as u8;
        let started =
            crate::interrupts::start_ap(apic, page_number, sipi, &STARTED[cpu], START_TIMEOUT_NS);
        match started {
            Ok(()) => online += 1,
            Err(e) => {
                let _ = writeln!(
                    w,
                    "rhea: smp: cpu{cpu} (APIC ID {apic}) did not start: {e}; continuing without it"
                );
            }
        }
    }
    online
}

/// A secondary CPU's stacks from `stacks`: its first (idle) stack's 16-byte-aligned top and
/// the tops of its four IST stacks (#DF, NMI, #MC, #PF); `None` when memory ran out. Shared with
/// the xen-x86_64 board, whose vCPUs start differently but need the same stacks.
pub fn ap_stacks(cpu: usize, stacks: &dyn StackSource) -> Option<(u64, [u64; 4])> {
    let stack = stacks.stack(cpu, "idle", AP_STACK_BYTES)?;
    let mut ist = [0u64; 4];
    for (top, name) in ist.iter_mut().zip(IST_NAMES) {
        *top = stacks.stack(cpu, name, AP_IST_BYTES)?.end;
    }
    Some((stack.end & !15, ist))
}

/// An AP's first Rust code, on its own stack with the kernel's page tables and its GS base.
#[unsafe(no_mangle)]
extern "C" fn rhea_ap_main(cpu: usize) -> ! {
    let tops = IST_TOPS[cpu].each_ref().map(|t| t.load(Ordering::Relaxed));
    rhea_arch::init_secondary_cpu(cpu, tops);
    crate::interrupts::init_this_ap();
    STARTED[cpu].store(true, Ordering::Release);
    let entry = ENTRY.load(Ordering::Acquire);
    // SAFETY: `start` stored a valid `extern "C" fn(usize) -> !` before sending any SIPI.
    let entry: extern "C" fn(usize) -> ! = unsafe { core::mem::transmute(entry) };
    entry(cpu)
}
