//! What every PVH-entered PC board runs on the machine: entry code, COM1, early boot.
#![allow(
    unsafe_code,
    reason = "boot entry, port I/O and linker symbols; each use has a SAFETY note"
)]

use crate::pvh::{self, PhysMemory};
use core::fmt::Write as _;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use rhea_arch::paging::KernelImage;
use rhea_drivers::uart16550::{Registers, Uart16550};
use rhea_hal::{PAGE_SIZE, PhysAddr};

core::arch::global_asm!(
    r#"
    /* XEN_ELFNOTE_PHYS32_ENTRY (xen/include/public/elfnote.h, type 18): the 32-bit physical
     * entry point of a PVH kernel. QEMU's -kernel, Firecracker, Cloud Hypervisor and Xen read
     * it. */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4
    .long 4
    .long 18
    .asciz "Xen"
    .balign 4
    .long pvh_start32
    .balign 4

    /* Identity-map the first 4 GiB with 2 MiB pages: PML4[0] -> PDPT, PDPT[0..4] -> PD[0..4].
     * A macro, assembled once for each entry's mode (the instructions are the same; their
     * encodings are not). */
    .macro rhea_boot_tables
    movl $boot_pd, %edi
    movl $0x83, %eax                /* present | writable | page size */
    movl $2048, %ecx
1:  movl %eax, (%edi)
    movl $0, 4(%edi)
    addl $0x200000, %eax
    addl $8, %edi
    loop 1b
    movl $boot_pd + 3, %eax
    movl %eax, boot_pdpt
    addl $0x1000, %eax
    movl %eax, boot_pdpt + 8
    addl $0x1000, %eax
    movl %eax, boot_pdpt + 16
    addl $0x1000, %eax
    movl %eax, boot_pdpt + 24
    movl $boot_pdpt + 3, %eax
    movl %eax, boot_pml4

    .endm

    /* PVH entry state (xen/include/public/arch-x86/hvm/start_info.h): 32-bit protected mode,
     * paging off, flat CS/DS, EBX = physical address of hvm_start_info. No stack. */
    .section .text.rhea_boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    rdtsc                           /* boot timestamp, kept in EBP:EDX until .bss is clear */
    movl %eax, %ebp
    movl %ebx, %esi                 /* start info, kept in ESI */

    movl ${bss_start}, %edi         /* zero .bss: no loader is trusted to have done it */
    movl ${bss_end}, %ecx
    subl %edi, %ecx
    xorl %eax, %eax
    cld
    rep stosb
    movl %ebp, {boot_cycles}
    movl %edx, {boot_cycles}+4

    rhea_boot_tables

    movl %cr4, %eax                 /* CR4.PAE */
    orl $0x20, %eax
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx          /* EFER: long mode enable (8), no-execute enable (11) */
    rdmsr
    orl $0x900, %eax
    wrmsr
    movl %cr0, %eax                 /* CR0: paging (31), write protect (16), protection (0) */
    orl $0x80010001, %eax
    movl %eax, %cr0
    lgdt boot_gdtr
    ljmp $0x08, $rhea_long_mode

    /* The 64-bit entry, for loaders that stay in long mode (the UEFI loader of pc-uefi,
     * boards/pc-uefi/loader): 64-bit mode, interrupts off, paging on with the first 4 GiB
     * identity-mapped (the firmware's map: the image, its .bss and the argument lie in it),
     * 4-level paging (CR4.LA57 clear: the loader checks), RDI = the argument (below 4 GiB).
     * The same steps as pvh_start32 from there: .bss, our own tables and GDT, EFER.NXE,
     * CR0.WP; the firmware's tables, GDT and stack are not used again. */
    .code64
    .global rhea_start64
rhea_start64:
    cli
    cld
    movq %rdi, %rsi                 /* the argument, kept in ESI (below 4 GiB) */
    rdtsc
    movl %eax, %ebp
    movl %edx, %ebx
    movq ${bss_start}, %rdi
    movq ${bss_end}, %rcx
    subq %rdi, %rcx
    xorl %eax, %eax
    rep stosb
    movl %ebp, {boot_cycles}
    movl %ebx, {boot_cycles}+4
    rhea_boot_tables
    movl $0xc0000080, %ecx          /* EFER: no-execute enable (11); LME is already set */
    rdmsr
    orl $0x900, %eax
    wrmsr
    movq %cr0, %rax                 /* CR0: write protect (16) */
    orl $0x10000, %eax
    movq %rax, %cr0
    movl $boot_pml4, %eax
    movq %rax, %cr3
    movabsq $boot_stack_top, %rsp   /* the firmware's stack may lie above 4 GiB */
    lgdt boot_gdtr
    pushq $0x08
    pushq $rhea_long_mode
    lretq

rhea_long_mode:
    xorl %eax, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    movl %eax, %fs
    movl %eax, %gs
    movl $0xc0000101, %ecx          /* IA32_GS_BASE: CPU 0's per-CPU block (cpu_id()) */
    movabsq $rhea_percpu, %rax
    movq %rax, %rdx
    shrq $32, %rdx
    wrmsr
    movabsq $boot_stack_top, %rsp
    xorl %ebp, %ebp
    movl %esi, %edi                 /* argument: start info physical address */
    call rhea_entry
    ud2

    .section .rodata.rhea_boot, "a"
    .balign 8
    .global boot_gdtr               /* also used by the AP entry (smp.rs) */
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* 0x08: 64-bit code, DPL 0 */
    .quad 0x00cf92000000ffff        /* 0x10: data */
boot_gdtr:
    .word boot_gdtr - boot_gdt - 1
    .quad boot_gdt

    .section .bss.rhea_boot, "aw", @nobits
    .balign 4096
    .global boot_pml4               /* also used by the AP entry (smp.rs) */
boot_pml4:  .skip 4096
boot_pdpt:  .skip 4096
boot_pd:    .skip 4 * 4096
    .global rhea_boot_stack_bottom
rhea_boot_stack_bottom:
    .skip 64 * 1024
boot_stack_top:
    "#,
    bss_start = sym __rhea_bss_start,
    bss_end = sym __rhea_bss_end,
    boot_cycles = sym BOOT_CYCLES,
    options(att_syntax)
);

unsafe extern "C" {
    static __rhea_bss_start: u8;
    static __rhea_bss_end: u8;
    static __rhea_text_start: u8;
    static __rhea_text_end: u8;
    static __rhea_rodata_start: u8;
    static __rhea_rodata_end: u8;
    static __rhea_data_start: u8;
    static __rhea_image_end: u8;
    static rhea_boot_stack_bottom: u8;
}

/// The TSC at the first instruction of `pvh_start32`, stored by the entry code.
static BOOT_CYCLES: AtomicU64 = AtomicU64::new(0);

/// COM1's registers through port I/O.
#[derive(Debug)]
struct Com1;

const COM1_PORT: u16 = 0x3f8;

impl Registers for Com1 {
    fn read(&self, offset: u8) -> u8 {
        // SAFETY: the eight ports from 0x3f8 are COM1's, which this board owns; reading LSR has
        // no side effect the driver does not expect.
        unsafe { rhea_arch::inb(COM1_PORT + u16::from(offset)) }
    }
    fn write(&self, offset: u8, value: u8) {
        // SAFETY: as in `read`; the driver writes only the 16550's registers.
        unsafe { rhea_arch::outb(COM1_PORT + u16::from(offset), value) }
    }
}

static UART: Uart16550<Com1> = Uart16550::new(Com1);

/// Whether COM1 is left alone (pc-uefi found none: [`set_com1_absent`]).
static COM1_ABSENT: AtomicBool = AtomicBool::new(false);

/// A second console every write also goes to (pc-uefi's screen: [`set_console_mirror`]).
static MIRROR: rhea_sync::Once<fn(&[u8])> = rhea_sync::Once::new();

/// Writes to COM1 and the mirror, if any (the boards' [`Console`](rhea_hal::Console), and
/// [`ConsoleWriter`]'s board-level reports: so a PC with only a screen shows them too).
pub fn console_write(bytes: &[u8]) {
    if !COM1_ABSENT.load(Ordering::Relaxed) {
        UART.write_bytes(bytes);
    }
    if let Some(mirror) = MIRROR.get() {
        mirror(bytes);
    }
}

/// Whether COM1 is written to (false after [`set_com1_absent`]).
pub fn com1_in_use() -> bool {
    !COM1_ABSENT.load(Ordering::Relaxed)
}

/// `isa-debug-exit` (QEMU `hw/misc/debugexit.c`): writing `v` ends QEMU with status
/// `(v << 1) | 1`. xtask maps 33 (v = 0x10) to success and 35 (v = 0x11) to failure; 0 and 1
/// are avoided because a QEMU that exits normally returns them too.
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Ends a QEMU run with `status` through `isa-debug-exit`, which xtask adds to every QEMU PC
/// board's command line. Returns where there is no such device (the write is dropped).
pub fn debug_exit(status: rhea_hal::ExitStatus) {
    let code = match status {
        rhea_hal::ExitStatus::Success => 0x10,
        rhea_hal::ExitStatus::Failure => 0x11,
    };
    // SAFETY: callers write this port only where it is QEMU's debug-exit device or unclaimed
    // (a QEMU PC board, or any PC under a hypervisor): the write ends the run or is dropped.
    unsafe { rhea_arch::outl(DEBUG_EXIT_PORT, code) };
}

/// Resets a PC: the reset control register (port 0xCF9, ICH9 and later: q35, real PCs),
/// then the keyboard controller's reset line (port 0x64, command 0xFE), then a triple fault
/// (no IDT, then a breakpoint), which resets any x86 machine — microvm has neither device.
pub fn reset() -> ! {
    // SAFETY: on a PC both ports are the reset devices named above, or unclaimed (a write
    // there is dropped); the machine is being reset, so no device state matters any more.
    unsafe {
        rhea_arch::outb(0xcf9, 0x02);
        rhea_arch::outb(0xcf9, 0x06);
    }
    // Each device takes a moment to act (QEMU: at the end of the current block).
    let pause = || (0..1_000_000).for_each(|_| core::hint::spin_loop());
    pause();
    // SAFETY: as above.
    unsafe { rhea_arch::outb(0x64, 0xfe) };
    pause();
    rhea_arch::triple_fault()
}

/// Stops writing to COM1 (call before anything is written, when [`com1_present`] says no).
pub fn set_com1_absent() {
    COM1_ABSENT.store(true, Ordering::Relaxed);
}

/// Makes every console write go to `mirror` as well (once; later calls are ignored).
pub fn set_console_mirror(mirror: fn(&[u8])) {
    MIRROR.call_once(|| mirror);
}

/// How many CPUs the MADT listed and the command line allows (1 before [`early_pc`]).
pub fn cpu_count() -> usize {
    crate::smp::cpu_count()
}

/// Starts the application processors at `entry` (see `smp`); returns how many run.
pub fn start_secondary_cpus(
    entry: extern "C" fn(usize) -> !,
    stacks: &dyn rhea_hal::StackSource,
) -> usize {
    crate::smp::start(entry, stacks)
}

/// The ISA IRQ of COM1's receive interrupt.
const CONSOLE_RX_ISA_IRQ: u8 = 4;

/// The interrupt line of the console's receive interrupt.
pub fn console_rx_line() -> rhea_hal::IrqLine {
    crate::interrupts::isa_line(CONSOLE_RX_ISA_IRQ)
}

/// Writes to the consoles without any lock (board-level reports).
#[derive(Debug)]
pub struct ConsoleWriter;

impl core::fmt::Write for ConsoleWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        console_write(s.as_bytes());
        Ok(())
    }
}

/// Interrupts and time: see [`crate::interrupts`].
pub fn init_interrupts_and_time(
    boot: &BootInfo,
    cross_check: bool,
    map_mmio: &dyn Fn(u64, u64) -> bool,
) -> Result<rhea_hal::TimeAndIrq, crate::interrupts::InitError> {
    // The runtime checked the whole command line before this runs: a bad value never gets here.
    let forced = rhea_hal::cmdline::Cmdline::new(boot.cmdline)
        .choice(&rhea_hal::cmdline::keys::TSC_REF)
        .ok()
        .flatten()
        .and_then(crate::calibrate::TscRef::from_name);
    crate::interrupts::init(boot.boot_cycles, cross_check, forced, map_mmio)
}

/// Enables COM1's receive interrupt (route and unmask the line first).
pub fn console_rx_enable() {
    UART.enable_rx_interrupt();
}

/// Drains COM1's receive FIFO into `sink` (the interrupt's top half; this acknowledges it).
/// Returns bytes read and line errors seen.
pub fn console_rx_drain(max: usize, sink: impl FnMut(u8)) -> (usize, usize) {
    UART.drain_rx(max, sink)
}

/// Physical memory as the boot page tables show it: identity-mapped below 4 GiB.
struct BootIdentityMap;

const BOOT_MAP_END: u64 = 4 << 30;

impl PhysMemory for BootIdentityMap {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
        let Some(end) = paddr.checked_add(buf.len() as u64) else {
            return false;
        };
        if paddr == 0 || end > BOOT_MAP_END {
            return false;
        }
        // SAFETY: `[paddr, end)` is below 4 GiB, which the entry code identity-mapped; the
        // bytes are firmware data that nothing writes concurrently (one CPU, interrupts off).
        unsafe { core::ptr::copy_nonoverlapping(paddr as *const u8, buf.as_mut_ptr(), buf.len()) };
        true
    }
}

pub use rhea_hal::BootInfo;

/// Reads the hand-off page of pc-uefi's loader at `addr` (boot identity map).
pub fn uefi_handoff(addr: usize) -> Result<crate::uefi::Handoff, crate::uefi::HandoffError> {
    crate::uefi::Handoff::decode(&BootIdentityMap, addr as u64)
}

/// The UEFI memory map a hand-off names, as e820 entries (boot identity map).
pub fn uefi_memory_map(
    handoff: &crate::uefi::Handoff,
) -> Result<crate::uefi::E820Map, crate::uefi::MemmapError> {
    crate::uefi::e820_from_uefi(
        &BootIdentityMap,
        handoff.memmap,
        handoff.memmap_bytes,
        handoff.desc_size,
    )
}

static CMDLINE: spin_free::CmdlineBuf = spin_free::CmdlineBuf::new();

/// A write-once buffer for the command line, without a lock: `early_init` runs once on the boot
/// CPU before anything else.
mod spin_free {
    use core::cell::UnsafeCell;

    pub(super) struct CmdlineBuf(UnsafeCell<[u8; crate::pvh::MAX_CMDLINE]>);

    // SAFETY: written once by `early_init` on the boot CPU before any other code runs, then only
    // read.
    unsafe impl Sync for CmdlineBuf {}

    impl CmdlineBuf {
        pub(super) const fn new() -> Self {
            Self(UnsafeCell::new([0; crate::pvh::MAX_CMDLINE]))
        }

        /// # Safety
        /// Called once, before any reader exists.
        pub(super) unsafe fn store(&'static self, s: &str) -> &'static str {
            // SAFETY: per the contract no other reference to the buffer exists yet.
            let buf = unsafe { &mut *self.0.get() };
            let n = s.len().min(buf.len());
            buf[..n].copy_from_slice(&s.as_bytes()[..n]);
            core::str::from_utf8(&buf[..n]).unwrap_or("")
        }
    }
}

/// The boot stack's `[bottom, top)`, for reports of faults before the first thread runs.
pub fn boot_stack() -> core::ops::Range<u64> {
    // SAFETY: a linker-defined symbol; only its address is used.
    let bottom = addr_of(unsafe { &rhea_boot_stack_bottom });
    bottom..bottom + BOOT_STACK_BYTES
}

/// Must match the `.skip` in the entry code.
const BOOT_STACK_BYTES: u64 = 64 * 1024;

fn addr_of(sym: &u8) -> u64 {
    sym as *const u8 as u64
}

/// Early boot of a PC entered through PVH, called once on the boot CPU with the entry code's
/// argument (the `hvm_start_info` physical address): COM1, descriptor tables, the validated
/// memory map, then what must be read while the boot identity map still shows the firmware's
/// tables — the CPUs (MADT), PCI's ECAM window (MCFG) and the time references (HPET table,
/// FADT). Malformed boot data is a panic with a
/// clear message (the console is already up). Returns the boot info and the RSDP's address.
pub fn early_pc(start_info: usize) -> (BootInfo, Option<u64>) {
    early_console();
    early_pc_with_map(start_info, None)
}

/// The first step of a PC's early boot: COM1 (written to whether or not it exists: a missing
/// port reads as all ones, which the driver takes as "transmitter empty", so nothing waits)
/// and the boot CPU's descriptor tables, so that what follows can report.
pub fn early_console() {
    if !COM1_ABSENT.load(Ordering::Relaxed) {
        UART.init(115_200);
    }
    rhea_arch::init_boot_cpu();
}

/// Whether COM1 is there: its scratch register keeps what is written to it.
pub fn com1_present() -> bool {
    const SCRATCH: u8 = 7;
    [0x5a, 0xa5].iter().all(|&v| {
        Com1.write(SCRATCH, v);
        Com1.read(SCRATCH) == v
    })
}

/// The rest of [`early_pc`], after [`early_console`]: `memory_map` is the map when the start
/// info carries none (a version-0 start info: Xen's PVH dom0, pc-uefi's loader).
pub fn early_pc_with_map(
    start_info: usize,
    memory_map: Option<&[pvh::E820Entry]>,
) -> (BootInfo, Option<u64>) {
    let (boot, rsdp) = pvh_boot(start_info, memory_map);
    crate::smp::discover(
        rsdp,
        boot.cmdline,
        pvh::trampoline_page(&boot.memory_map, start_info as u64),
    );
    crate::pci::discover(rsdp);
    crate::interrupts::discover_time_references(rsdp);
    (boot, rsdp)
}

/// The part of early boot every board entered through this crate's PVH entry shares (this
/// board and `xen-x86_64`, whose hypervisor uses the same PVH protocol): parse and validate
/// `hvm_start_info`, check the image lies in RAM, keep the command line, and name the ranges
/// the frame allocator must not hand out. Returns the boot info and the RSDP's address, if
/// the loader gave one. Call after `rhea_arch::init_boot_cpu` and with a console, so
/// a refusal (a panic naming the problem) is seen. `memory_map` is used when the start info
/// has none (version 0).
pub fn pvh_boot(
    start_info: usize,
    memory_map: Option<&[pvh::E820Entry]>,
) -> (BootInfo, Option<u64>) {
    let info = match pvh::parse_with(&BootIdentityMap, start_info as u64, memory_map) {
        Ok(info) => info,
        Err(e) => panic!("PVH start info at {start_info:#x} is malformed: {e}"),
    };
    // SAFETY: the linker script defines these symbols; only their addresses are used.
    let image = unsafe {
        KernelImage::new(
            addr_of(&__rhea_text_start)..addr_of(&__rhea_text_end),
            addr_of(&__rhea_rodata_start)..addr_of(&__rhea_rodata_end),
            addr_of(&__rhea_data_start)..addr_of(&__rhea_image_end),
        )
    };
    let image_range = image.range();
    if info
        .memory_map
        .region_containing(
            PhysAddr(image_range.start),
            image_range.end - image_range.start,
        )
        .is_none()
    {
        panic!(
            "the kernel image {:#x}..{:#x} is not inside one memory region of the PVH map",
            image_range.start, image_range.end
        );
    }
    // SAFETY: `pvh_boot` runs once, before any reader of the command line.
    let cmdline = unsafe { CMDLINE.store(info.cmdline()) };
    let rsdp = info.rsdp;
    if info.initrd_cut > 0 {
        let _ = writeln!(
            ConsoleWriter,
            "rhea: initrd: its last {} bytes lie past usable RAM (firmware's memory): cut off",
            info.initrd_cut
        );
    }
    let low_end = pvh::low_reserved_end(&info.memory_map, start_info as u64);
    let boot = BootInfo {
        memory_map: info.memory_map,
        cmdline,
        image,
        reserved: [
            // Page 0 (real-mode IVT and BIOS data; unmapped, so null stays a fault) up to and
            // including the AP trampoline's page. The rest of the usable RAM below 1 MiB is
            // ordinary frames; the EBDA and option ROMs above it are not usable in the map.
            (PhysAddr(0), low_end),
            (
                PhysAddr(image_range.start),
                image_range.end - image_range.start,
            ),
            // The start info itself (the command line was copied out of it).
            (PhysAddr(start_info as u64).align_down(PAGE_SIZE), PAGE_SIZE),
        ],
        boot_cycles: BOOT_CYCLES.load(Ordering::Relaxed),
        initrd: info.initrd.map(|(at, len)| (PhysAddr(at), len)),
    };
    (boot, rsdp)
}
