//! The parts of an Arm board that run on the machine: the console, the exit path, and early
//! init (the devicetree read and checked, the memory map, the boot facts for the runtime).
#![allow(
    unsafe_code,
    reason = "MMIO, linker symbols and the devicetree in physical memory; each use has a SAFETY note"
)]

use crate::fdt::{self, Fdt};
use crate::interrupts::GicController;
use crate::platform::{ArmPlatform, PsciConduit};
use core::fmt::Write;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use rhea_arch::paging::KernelImage;
use rhea_arch::smccc::Hypervisor;
use rhea_drivers::pl011::{self, Pl011};
use rhea_hal::{Console, ExitStatus, InterruptController, PAGE_SIZE, PhysAddr, Platform};
use rhea_mm::MemoryMap;
use spin::Once;

/// 32-bit registers of a device page, identity-mapped Device-nGnRE (by the boot map, then by
/// the kernel's tables: the board lists its console in `KernelImage::early_mmio`).
#[derive(Debug)]
pub struct Mmio {
    base: u64,
}

impl Mmio {
    /// The registers at `base`.
    pub const fn new(base: u64) -> Self {
        Self { base }
    }
}

impl pl011::Registers for Mmio {
    fn read(&self, offset: usize) -> u32 {
        // SAFETY: `base` is the board's console UART, mapped as device memory from the first
        // instruction on (boot map device range, then `early_mmio`); the driver reads only
        // PL011 registers, 4-byte aligned, inside its 4 KiB window.
        unsafe { core::ptr::read_volatile((self.base + offset as u64) as *const u32) }
    }
    fn write(&self, offset: usize, value: u32) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile((self.base + offset as u64) as *mut u32, value) }
    }
}

/// A console and an exit that the board provides itself instead of the PL011 and
/// semihosting/PSCI: a hypervisor's (`rhea-board-xen-arm64`: `HYPERVISOR_console_io` and
/// `SCHEDOP_shutdown`). With them early init neither programs the PL011 nor probes
/// semihosting, and the devicetree need not have a PL011 (there is then no console input).
#[derive(Debug, Clone, Copy)]
pub struct HostedServices {
    /// Writes console output (must work from any context, without locks).
    pub write: fn(&[u8]),
    /// Ends the run with `status`.
    pub exit: fn(ExitStatus) -> !,
    /// Checks the devicetree once it has been read (e.g. that it describes the expected
    /// hypervisor) and prints what the board found; an error is a panic on the console.
    pub check: fn(&Fdt<'_>) -> Result<(), &'static str>,
    /// What the console is, for the boot report (`"Xen HYPERVISOR_console_io"`).
    pub console_name: &'static str,
    /// What the exit is, for the boot report (`"Xen SCHEDOP_shutdown"`).
    pub exit_name: &'static str,
}

/// An interrupt controller a board layers over the GIC (`rhea-board-xen-arm64`: Xen's event
/// channels, which arrive on one PPI). The shared code still brings up the GIC, the timer's PPI
/// and the counter; the layer then returns the controller the runtime uses — one of its own
/// that handles its lines and delegates the rest to [`GicController`] — and brings itself up
/// on every secondary CPU too.
///
/// Lines: the layer owns the low `IrqLine` numbers; GIC INTID `n` is `IrqLine(gic_lines + n)`
/// wherever the shared code names a GIC line (the console UART's, virtio-mmio SPIs), and the
/// layer's controller hands such lines to the GIC as INTID `n`.
#[derive(Debug, Clone, Copy)]
pub struct InterruptLayer {
    /// On the boot CPU, once the GIC, the timer and the clock are up (IRQs masked): brings the
    /// layer up and returns the runtime's controller; an error (already printed in detail by
    /// the board) stops the boot.
    pub init:
        fn(gic: &'static GicController) -> Result<&'static dyn InterruptController, &'static str>,
    /// On each secondary CPU, once its side of the GIC is up and before it reports in (IRQs
    /// masked); an error leaves the CPU out.
    pub init_cpu: fn(cpu: usize) -> Result<(), &'static str>,
    /// Where GIC INTIDs start among the layer's lines (see above).
    pub gic_lines: u32,
}

/// `map` plus `shared` as a [`RegionKind::Shared`](rhea_mm::RegionKind::Shared) region; a
/// range that does not fit (overlaps the devicetree's memory, or too many regions) is a panic
/// naming it: the board's own constant is wrong.
fn with_shared(map: &MemoryMap, shared: Range<u64>) -> MemoryMap {
    if shared.is_empty() {
        return map.clone();
    }
    let mut m = MemoryMap::new();
    let ok = map
        .regions()
        .iter()
        .try_for_each(|r| m.push(r.start.0, r.len_bytes, r.kind))
        .and_then(|()| {
            m.push(
                shared.start,
                shared.end - shared.start,
                rhea_mm::RegionKind::Shared,
            )
        });
    match ok.and_then(|()| m.finish()) {
        Ok(m) => m,
        Err(e) => panic!(
            "the board's shared memory {:#x}..{:#x} does not fit the memory map: {e}",
            shared.start, shared.end
        ),
    }
}

/// An Arm board: its name, its fixed early console and the device range of its boot map.
#[derive(Debug)]
pub struct ArmBoard {
    name: &'static str,
    uart: Pl011<Mmio>,
    uart_base: u64,
    /// `[start, end)` mapped as device memory by the boot map; the devicetree must not be there.
    device_range: Range<u64>,
    /// The board's own console and exit, when it does not use the PL011's.
    services: Option<HostedServices>,
    /// The board's interrupt controller over the GIC, if it has one.
    interrupt_layer: Option<InterruptLayer>,
    /// Memory outside RAM shared with the hypervisor, mapped like RAM (empty: none).
    shared_memory: Range<u64>,
}

impl ArmBoard {
    /// A board named `name` whose console is the PL011 at `uart_base` and whose boot map
    /// treats `device_range` as device memory.
    pub const fn new(name: &'static str, uart_base: u64, device_range: Range<u64>) -> Self {
        Self {
            name,
            uart: Pl011::new(Mmio::new(uart_base)),
            uart_base,
            device_range,
            services: None,
            interrupt_layer: None,
            shared_memory: 0..0,
        }
    }

    /// The same board with `range` (outside RAM) shared with the hypervisor: added to the
    /// memory map as [`RegionKind::Shared`](rhea_mm::RegionKind::Shared), so the kernel maps it
    /// like RAM and never hands it out.
    pub const fn with_shared_memory(self, range: Range<u64>) -> Self {
        Self {
            shared_memory: range,
            ..self
        }
    }

    /// The same board with its own console and exit (see [`HostedServices`]).
    pub const fn with_services(self, services: HostedServices) -> Self {
        Self {
            services: Some(services),
            ..self
        }
    }

    /// The same board with an interrupt controller over the GIC (see [`InterruptLayer`]).
    pub const fn with_interrupt_layer(self, layer: InterruptLayer) -> Self {
        Self {
            interrupt_layer: Some(layer),
            ..self
        }
    }

    /// The board's own console and exit, if it has them.
    pub fn services(&self) -> Option<&HostedServices> {
        self.services.as_ref()
    }

    /// The board's interrupt controller over the GIC, if it has one.
    pub fn interrupt_layer(&self) -> Option<&InterruptLayer> {
        self.interrupt_layer.as_ref()
    }

    /// The `IrqLine` of GIC INTID `intid` on this board (see [`InterruptLayer::gic_lines`]).
    pub fn gic_line(&self, intid: u32) -> rhea_hal::IrqLine {
        let base = self.interrupt_layer.map_or(0, |l| l.gic_lines);
        rhea_hal::IrqLine(intid.saturating_add(base))
    }

    /// The console UART.
    pub fn uart(&self) -> &Pl011<Mmio> {
        &self.uart
    }

    /// The device range of the boot map.
    pub(crate) fn device_range(&self) -> Range<u64> {
        self.device_range.clone()
    }
}

/// The board, for code that runs without being handed it (a secondary CPU's first steps).
static BOARD: Once<&'static ArmBoard> = Once::new();

/// The board `early_init` ran for.
pub(crate) fn board() -> Option<&'static ArmBoard> {
    BOARD.get().copied()
}

impl Console for ArmBoard {
    fn write_bytes(&self, bytes: &[u8]) {
        match &self.services {
            Some(services) => (services.write)(bytes),
            None => self.uart.write_bytes(bytes),
        }
    }
}

/// Enables the console's receive interrupt: the PL011's; nothing with a hosted console.
pub fn console_rx_enable(board: &ArmBoard) {
    if board.services.is_none() {
        board.uart.enable_rx_interrupt();
    }
}

/// Drains at most `max` bytes of the console's receive FIFO into `sink`: the PL011's; nothing
/// with a hosted console.
pub fn console_rx_drain(board: &ArmBoard, max: usize, sink: impl FnMut(u8)) -> (usize, usize) {
    match board.services {
        Some(_) => (0, 0),
        None => board.uart.drain_rx(max, sink),
    }
}

/// Exit statuses through semihosting, the same as x86's `isa-debug-exit` gives QEMU, so that
/// xtask keeps one table: 33 success, 35 failure.
const EXIT_SUCCESS: u32 = 33;
const EXIT_FAILURE: u32 = 35;
/// PSCI `SYSTEM_OFF` (DEN0022 §5.1.9, SMC32 function ID).
const PSCI_SYSTEM_OFF: u32 = 0x8400_0008;
/// PSCI `SYSTEM_RESET` (DEN0022 §5.1.10, SMC32 function ID).
const PSCI_SYSTEM_RESET: u32 = 0x8400_0009;
/// The console line that carries the exit status where semihosting cannot (KVM, or no
/// emulator serving it): this, the status (33 or 35, as above), then ` (success)` or
/// ` (failure)`. xtask reads it in `qemu::console_exit_status`; keep the two in step.
pub const EXIT_STATUS_LINE: &str = "rhea: exit status=";

/// The PSCI conduit from the devicetree: 0 unknown/none, 1 HVC, 2 SMC.
static PSCI: AtomicU8 = AtomicU8::new(0);
/// Set when SMCCC discovery found KVM (`rhea_arch::smccc::hypervisor`): semihosting cannot
/// work there, the exit status goes on the console.
static UNDER_KVM: AtomicBool = AtomicBool::new(false);

impl Platform for ArmBoard {
    fn name(&self) -> &'static str {
        self.name
    }

    fn console(&self) -> &dyn Console {
        self
    }

    /// Semihosting `SYS_EXIT_EXTENDED` first: it carries the status (QEMU exits with it). Under
    /// KVM, or where nothing serves semihosting, the status goes on the console as the line
    /// [`EXIT_STATUS_LINE`], then PSCI `SYSTEM_OFF` turns the machine off; without PSCI (a
    /// Raspberry Pi's firmware has none) the CPU halts.
    fn exit(&self, status: ExitStatus) -> ! {
        if let Some(services) = &self.services {
            (services.exit)(status);
        }
        let (code, word) = match status {
            ExitStatus::Success => (EXIT_SUCCESS, "success"),
            ExitStatus::Failure => (EXIT_FAILURE, "failure"),
        };
        if !UNDER_KVM.load(Ordering::Relaxed) {
            rhea_arch::semihosting::exit(code); // returns only without semihosting
        }
        // On a line of its own, whatever was printed before without a newline.
        let _ = write!(ConsoleWriter(self), "\n{EXIT_STATUS_LINE}{code} ({word})\n");
        let conduit = PSCI.load(Ordering::Relaxed);
        if conduit != 0 {
            // SAFETY: SYSTEM_OFF is the call this path exists for; the conduit is what the
            // devicetree's PSCI node says.
            unsafe { rhea_arch::psci_call(conduit == 2, PSCI_SYSTEM_OFF, 0, 0, 0) };
        }
        rhea_arch::halt_forever()
    }

    /// PSCI `SYSTEM_RESET` where the devicetree names PSCI and the board has no exit of its
    /// own (a hypervisor's, whose reset it would have to say).
    fn reboot(&self) -> &'static str {
        if self.services.is_some() {
            return "not through this board's hypervisor interface yet";
        }
        let conduit = PSCI.load(Ordering::Relaxed);
        if conduit == 0 {
            return "no PSCI on this machine (a Raspberry Pi's firmware has none)";
        }
        // SAFETY: SYSTEM_RESET is the call this path exists for; the conduit is what the
        // devicetree's PSCI node says. It does not return where PSCI implements it.
        unsafe { rhea_arch::psci_call(conduit == 2, PSCI_SYSTEM_RESET, 0, 0, 0) };
        "PSCI SYSTEM_RESET returned"
    }

    /// The CPUs of the devicetree's `/cpus`, cut to what the run can use (see `smp.rs`).
    fn cpu_count(&self) -> usize {
        crate::smp::cpu_count()
    }

    /// PSCI `CPU_ON` or the spin table, one CPU at a time (see `smp.rs`).
    fn start_secondary_cpus(
        &self,
        entry: extern "C" fn(usize) -> !,
        stacks: &dyn rhea_hal::StackSource,
    ) -> usize {
        crate::smp::start(self, entry, stacks)
    }
}

pub use rhea_hal::BootInfo;

/// The devicetree facts, kept for interrupt and time bring-up, and the tree itself for the
/// devices (`devices.rs`). It stays readable: it lies in RAM, which the kernel's tables map,
/// and the frame allocator never hands it out (`BootInfo::reserved`).
pub(crate) struct Facts {
    pub(crate) platform: ArmPlatform<'static>,
    pub(crate) tree: Fdt<'static>,
    pub(crate) dtb: u64,
    pub(crate) dtb_bytes: u64,
}

pub(crate) static FACTS: Once<Facts> = Once::new();

unsafe extern "C" {
    static __rhea_text_start: u8;
    static __rhea_text_end: u8;
    static __rhea_rodata_start: u8;
    static __rhea_rodata_end: u8;
    static __rhea_data_start: u8;
    static __rhea_image_end: u8;
}

fn addr_of(sym: &u8) -> u64 {
    sym as *const u8 as u64
}

/// The end of the boot identity map (the entry code maps the first 4 GiB).
pub(crate) const BOOT_MAP_END: u64 = 4 << 30;

/// Where the devicetree can be read before the kernel's page tables exist: inside the boot
/// identity map and outside the board's device range.
fn check_dtb_address(board: &ArmBoard, dtb: u64) -> Result<(), &'static str> {
    if dtb == 0 {
        return Err(
            "no devicetree: x0 was 0 at entry (the loader must pass one, as QEMU does with \
             -kernel <Image>, or -dtb <file> for machines that have none)",
        );
    }
    if !dtb.is_multiple_of(8) {
        return Err("the devicetree address in x0 is not 8-byte aligned");
    }
    let end = dtb
        .checked_add(fdt::HEADER_BYTES as u64)
        .ok_or("the devicetree address wraps")?;
    if end > BOOT_MAP_END {
        return Err("the devicetree lies above 4 GiB, outside the boot identity map");
    }
    if board.device_range.contains(&dtb) || board.device_range.contains(&(end - 1)) {
        return Err("the devicetree address in x0 lies in the board's device range, not in RAM");
    }
    Ok(())
}

/// Reads and checks the devicetree at `dtb`. Panics (the console is up) with what is wrong.
fn read_devicetree(board: &ArmBoard, dtb: u64) -> Fdt<'static> {
    if let Err(why) = check_dtb_address(board, dtb) {
        panic!("{why} (x0 = {dtb:#x})");
    }
    // SAFETY: `[dtb, dtb + 40)` is inside the boot identity map, outside device memory (checked
    // above), and nothing writes it (one CPU, before any other code).
    let header = unsafe { core::slice::from_raw_parts(dtb as *const u8, fdt::HEADER_BYTES) };
    let total = match fdt::total_size(header) {
        Ok(t) => t as u64,
        Err(e) => panic!("the devicetree at {dtb:#x} is malformed: {e}"),
    };
    if dtb + total > BOOT_MAP_END {
        panic!("the devicetree at {dtb:#x} ({total} bytes) runs past the 4 GiB boot map");
    }
    // SAFETY: as above for the whole blob: `totalsize` is at most 2 MiB and the range stays in
    // the boot map. It lives in RAM that the frame allocator never hands out (`reserved`), so
    // it stays valid for the run.
    let blob = unsafe { core::slice::from_raw_parts(dtb as *const u8, total as usize) };
    match Fdt::new(blob) {
        Ok(f) => f,
        Err(e) => panic!("the devicetree at {dtb:#x} is malformed: {e}"),
    }
}

static CMDLINE: CmdlineBuf = CmdlineBuf::new();
/// Longest command line kept.
const MAX_CMDLINE: usize = 1024;

/// A write-once buffer for the command line: `early_init` runs once on the boot CPU before
/// anything else. (The devicetree stays mapped, but a copy keeps the runtime independent of
/// where firmware put it.)
struct CmdlineBuf(core::cell::UnsafeCell<[u8; MAX_CMDLINE]>);

// SAFETY: written once by `early_init` on the boot CPU before any other code runs, then only
// read.
unsafe impl Sync for CmdlineBuf {}

impl CmdlineBuf {
    const fn new() -> Self {
        Self(core::cell::UnsafeCell::new([0; MAX_CMDLINE]))
    }

    /// The whole of `s`, or `None` when it does not fit (it is never cut: a cut line would
    /// silently drop its last arguments).
    ///
    /// # Safety
    /// Called once, before any reader exists.
    unsafe fn store(&'static self, s: &str) -> Option<&'static str> {
        // SAFETY: per the contract no other reference to the buffer exists yet.
        let buf = unsafe { &mut *self.0.get() };
        let stored = buf.get_mut(..s.len())?;
        stored.copy_from_slice(s.as_bytes());
        core::str::from_utf8(stored).ok()
    }
}

/// Early board initialisation, called once by the runtime's entry point on the boot CPU with
/// the entry code's argument (the devicetree's physical address): console, exception vectors,
/// the semihosting probe, and the devicetree read and validated. A missing or malformed tree,
/// an unknown GIC or no usable RAM is a panic that says so on the console.
pub fn early_init(board: &'static ArmBoard, dtb: usize) -> BootInfo {
    if board.services.is_none() {
        board.uart.init(None, 115_200);
    }
    rhea_arch::init_boot_cpu();
    if board.services.is_none() {
        rhea_arch::semihosting::probe();
    }

    let dtb = dtb as u64;
    let tree = read_devicetree(board, dtb);
    if let Some(services) = &board.services
        && let Err(e) = (services.check)(&tree)
    {
        panic!("devicetree at {dtb:#x}: {e}");
    }
    let platform = match ArmPlatform::from_fdt_with(&tree, board.services.is_none()) {
        Ok(p) => p,
        Err(e) => panic!("devicetree at {dtb:#x}: {e}"),
    };
    // SAFETY: `early_init` runs once, before any reader of the command line.
    let Some(cmdline) = (unsafe { CMDLINE.store(platform.bootargs) }) else {
        panic!(
            "the command line (/chosen/bootargs) is {} bytes; this board keeps at most {MAX_CMDLINE}",
            platform.bootargs.len()
        );
    };
    BOARD.call_once(|| board);
    crate::smp::plan(board, &platform);
    if let Some(conduit) = platform.psci {
        PSCI.store(
            match conduit {
                PsciConduit::Hvc => 1,
                PsciConduit::Smc => 2,
            },
            Ordering::Relaxed,
        );
        if board.services.is_none() {
            report_hypervisor(board, conduit == PsciConduit::Smc);
        }
    }
    // SAFETY: the linker script defines these symbols; only their addresses are used.
    let image = unsafe {
        KernelImage {
            text: addr_of(&__rhea_text_start)..addr_of(&__rhea_text_end),
            rodata: addr_of(&__rhea_rodata_start)..addr_of(&__rhea_rodata_end),
            data: addr_of(&__rhea_data_start)..addr_of(&__rhea_image_end),
            early_mmio: [board.uart_base..board.uart_base + PAGE_SIZE, 0..0],
        }
    };
    let image_range = image.range();
    if platform.memory_map.usable().all(|r| {
        !r.contains(
            PhysAddr(image_range.start),
            image_range.end - image_range.start,
        )
    }) {
        panic!(
            "the kernel image {:#x}..{:#x} is not inside one usable RAM region of the devicetree",
            image_range.start, image_range.end
        );
    }
    let memory_map = with_shared(&platform.memory_map, board.shared_memory.clone());
    let initrd = platform.initrd.map(|(at, len)| (PhysAddr(at), len));
    let dtb_bytes = tree.total_size() as u64;
    FACTS.call_once(|| Facts {
        platform,
        tree,
        dtb,
        dtb_bytes,
    });
    BootInfo {
        memory_map,
        cmdline,
        image,
        reserved: [
            (
                PhysAddr(image_range.start),
                image_range.end - image_range.start,
            ),
            (
                PhysAddr(dtb).align_down(PAGE_SIZE),
                (dtb % PAGE_SIZE + dtb_bytes).div_ceil(PAGE_SIZE) * PAGE_SIZE,
            ),
            // Page 0 is never mapped, so it can never be a page table or a stack page.
            (PhysAddr(0), PAGE_SIZE),
        ],
        boot_cycles: rhea_arch::boot_cycles(),
        initrd,
    }
}

/// Asks the PSCI conduit which hypervisor answers it (SMCCC discovery, `rhea_arch::smccc`) and
/// says so when it is one: under KVM the exit status goes on the console (see `exit`).
fn report_hypervisor(board: &ArmBoard, use_smc: bool) {
    // SAFETY: the devicetree's `/psci` node names this conduit; discovery only queries.
    let found = unsafe { rhea_arch::smccc::hypervisor(use_smc) };
    let mut w = ConsoleWriter(board);
    match found {
        Hypervisor::Unknown => {}
        Hypervisor::Kvm => {
            UNDER_KVM.store(true, Ordering::Relaxed);
            let _ = writeln!(
                w,
                "rhea: hypervisor: KVM (SMCCC vendor hypervisor UID); exit status on the console"
            );
        }
        Hypervisor::Other(uid) => {
            let _ = writeln!(
                w,
                "rhea: hypervisor: UID {:08x}-{:08x}-{:08x}-{:08x} (SMCCC vendor hypervisor UID)",
                uid[0], uid[1], uid[2], uid[3]
            );
        }
    }
}

/// Writes to the console without any lock (board-level reports).
pub(crate) struct ConsoleWriter<'a>(pub(crate) &'a ArmBoard);

impl Write for ConsoleWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        Console::write_bytes(self.0, s.as_bytes());
        Ok(())
    }
}

unsafe extern "C" {
    static rhea_boot_stack_bottom: u8;
    static rhea_boot_stack_top: u8;
}

/// The boot stack's `[bottom, top)` (defined by the board's entry code), for reports of faults
/// before the first thread runs.
pub fn boot_stack() -> Range<u64> {
    // SAFETY: linker-visible symbols of the board's entry code; only their addresses are used.
    unsafe { addr_of(&rhea_boot_stack_bottom)..addr_of(&rhea_boot_stack_top) }
}
