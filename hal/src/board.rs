//! The board contract: what every board crate implements for the runtime, which uses the
//! board only through it (the board is chosen in one place, `boards/select`).

use crate::image::KernelImage;
use crate::memmap::MemoryMap;
use crate::{IrqLine, PhysAddr, Platform, TimeAndIrq};
use core::ops::Range;

/// What the board learned during early boot, for the runtime.
#[derive(Debug)]
pub struct BootInfo {
    /// The validated physical memory map.
    pub memory_map: MemoryMap,
    /// The kernel command line (may be empty).
    pub cmdline: &'static str,
    /// The image's sections, for the page tables.
    pub image: KernelImage,
    /// Physical ranges the frame allocator must never hand out (the image, boot data still in
    /// use, firmware areas); unused entries have length 0.
    pub reserved: [(PhysAddr, u64); 3],
    /// The cycle counter at the first instruction.
    pub boot_cycles: u64,
    /// The initial RAM disk the boot protocol carried (a cpio archive: `rhea::fs` mounts it
    /// at `/`), as (address, bytes): in RAM the kernel maps one-to-one, inside one usable
    /// region of `memory_map` (the runtime keeps the frame allocator off it for good), or —
    /// LinuxU — memory the board mapped itself, outside the map. `None`: none given.
    pub initrd: Option<(PhysAddr, u64)>,
}

/// A board: one machine's boot protocol, console, interrupts and time, CPUs and exit, as the
/// runtime's one boot sequence needs them. The device side is `rhea_drivers::bus::BoardDevices`.
///
/// Implemented by one type per board crate (`boards/select` names it `Selected`), with
/// associated functions — a board is chosen at build time and there is one: the runtime calls
/// `B::early_init(..)` and `B::platform().exit(..)` for the selected `B`, and never names a
/// board crate.
pub trait Board: 'static {
    /// The board's services from the first instruction on: console, CPUs, exit.
    type Platform: Platform + 'static;
    /// Why interrupt and time bring-up failed.
    type InitError: core::fmt::Display;

    /// The board's services.
    fn platform() -> &'static Self::Platform;

    /// Early initialisation on the boot CPU, once, with the entry code's argument (boot
    /// protocol data): console, CPU tables, the validated memory map. Malformed boot data is a
    /// panic with a clear message (the console is up by then).
    fn early_init(arg: usize) -> BootInfo;

    /// The stack the boot (later idle) context runs on, for fault reports.
    fn boot_stack() -> Range<u64>;

    /// Interrupt controller, clock and this CPU's timer. `cross_check` asks for a calibration
    /// cross-check where the board calibrates; `map_mmio(phys, len)` maps device registers.
    fn init_interrupts_and_time(
        boot: &BootInfo,
        cross_check: bool,
        map_mmio: &dyn Fn(u64, u64) -> bool,
    ) -> Result<TimeAndIrq, Self::InitError>;

    /// The interrupt line of the console's receive interrupt.
    fn console_rx_line() -> IrqLine;

    /// Enables the console's receive interrupt (the line is routed and unmasked first).
    fn console_rx_enable();

    /// How many threads now wait for console input (LinuxU's simulation counts console input
    /// as a source that can end a wait only while someone waits); others ignore it.
    fn console_rx_readers(readers: usize) {
        let _ = readers;
    }

    /// Drains at most `max` received console bytes into `sink` (the interrupt's top half;
    /// acknowledges it). Bytes beyond `max` stay in the device — its FIFO, or the host's
    /// pipe behind it, holds them back — for a later drain: the caller passes the room it has,
    /// so input is held up, never dropped, while its buffer is full. Returns bytes read and
    /// line errors seen.
    fn console_rx_drain(max: usize, sink: &mut dyn FnMut(u8)) -> (usize, usize);

    /// Nanoseconds the hypervisor has kept CPU `cpu` (the kernel's index) from running while
    /// it was runnable (steal time: KVM's steal-time record, Xen's runstate area) since the CPU
    /// came up; `None` where the machine does not say (bare metal, TCG, LinuxU) or for a CPU
    /// not up. Called at every context switch: must be cheap (a few loads of memory the
    /// hypervisor writes) and callable from any CPU with interrupts disabled.
    fn stolen_ns(cpu: usize) -> Option<u64> {
        let _ = cpu;
        None
    }

    /// If CPU `cpu` is not running now (the hypervisor preempted it) and the hypervisor can
    /// flush its TLB before it runs again, asks it to and returns `true`: a TLB shootdown then
    /// need not interrupt that CPU and wait for it (KVM's PV TLB flush). `false` by default:
    /// interrupt it. Callable from any CPU with interrupts disabled.
    fn defer_tlb_flush(cpu: usize) -> bool {
        let _ = cpu;
        false
    }

    /// A message-signalled interrupt raising `vector` on the boot CPU, as (address, data),
    /// where the machine has them.
    fn msi_message(vector: u8) -> Option<(u64, u32)> {
        let _ = vector;
        None
    }
}
