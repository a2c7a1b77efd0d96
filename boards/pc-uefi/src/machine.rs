//! The board as the runtime sees it: the hand-off, the consoles, the exit.
#![allow(
    unsafe_code,
    reason = "the framebuffer's memory; its use has a SAFETY note"
)]

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::AtomicU32;
use rhea_board_common_x86 as pc;
use rhea_board_common_x86::uefi::{Framebuffer, PixelOrder};
use rhea_drivers::bus::{BoardDevices, Bus, Driver};
use rhea_drivers::fbcon::{FbConsole, FramebufferInfo, PixelFormat};
use rhea_hal::{Board, BootInfo, Console, ExitStatus, IrqLine, PAGE_SIZE, Platform, TimeAndIrq};
use spin::Once;

/// An x86_64 PC booted by UEFI, as the runtime sees it.
#[derive(Debug)]
pub struct PcUefi;

/// The board's services.
pub static PLATFORM: PcUefi = PcUefi;

/// The framebuffer console, once the hand-off named a framebuffer.
static SCREEN: Once<FbConsole<&'static [AtomicU32]>> = Once::new();

/// The kernel command line, for the devices.
static CMDLINE: Once<&'static str> = Once::new();

/// COM1 (when present) and the screen: `common-x86` writes both, its own reports included.
impl Console for PcUefi {
    fn write_bytes(&self, bytes: &[u8]) {
        pc::console_write(bytes);
    }
}

/// The mirror `common-x86` writes every console byte to.
fn write_screen(bytes: &[u8]) {
    if let Some(screen) = SCREEN.get() {
        screen.write_bytes(bytes);
    }
}

/// Whether CPUID says a hypervisor runs us (CPUID.01H:ECX[31]).
fn under_hypervisor() -> bool {
    let leaf1 = core::arch::x86_64::__cpuid(1);
    leaf1.ecx & (1 << 31) != 0
}

impl Platform for PcUefi {
    fn name(&self) -> &'static str {
        "pc-uefi"
    }

    fn console(&self) -> &dyn Console {
        self
    }

    fn cpu_count(&self) -> usize {
        pc::cpu_count()
    }

    fn start_secondary_cpus(
        &self,
        entry: extern "C" fn(usize) -> !,
        stacks: &dyn rhea_hal::StackSource,
    ) -> usize {
        pc::start_secondary_cpus(entry, stacks)
    }

    fn exit(&self, status: ExitStatus) -> ! {
        let _ = writeln!(
            pc::ConsoleWriter,
            "rhea: halted ({}); the machine can be switched off",
            match status {
                ExitStatus::Success => "success",
                ExitStatus::Failure => "failure",
            }
        );
        // Under a hypervisor port 0xf4 is QEMU's debug-exit device when xtask configured one,
        // and unclaimed otherwise; on a real PC it could be any device, so it is left alone.
        if under_hypervisor() {
            pc::debug_exit(status);
        }
        rhea_arch::halt_forever()
    }

    /// The PC's reset control register, else the keyboard controller, else a triple fault.
    fn reboot(&self) -> &'static str {
        pc::reset()
    }
}

/// The framebuffer's pixels as a slice of atomics over its memory.
fn screen_memory(fb: &Framebuffer) -> &'static [AtomicU32] {
    let pixels = (fb.bytes / 4) as usize;
    // SAFETY: the loader took `[base, base + bytes)` from GOP, which reserves it for the
    // framebuffer (checked consistent: non-wrapping, 4-byte pixels); the boot identity map and,
    // after the switch, the kernel's tables (`early_mmio`) map it; atomics make the shared
    // access sound, and nothing else in the kernel writes this memory.
    unsafe { core::slice::from_raw_parts(fb.base as *const AtomicU32, pixels) }
}

/// Starts the framebuffer console, blank; refusals are reported on COM1 (there is no screen).
fn start_screen(fb: &Framebuffer) {
    if fb
        .base
        .checked_add(fb.bytes)
        .is_none_or(|end| end > 4 << 30)
    {
        let _ = writeln!(
            pc::ConsoleWriter,
            "rhea: framebuffer at {:#x} is above 4 GiB, beyond the boot map: no screen console",
            fb.base
        );
        return;
    }
    let info = FramebufferInfo {
        width: fb.width as usize,
        height: fb.height as usize,
        stride: fb.stride as usize,
        format: match fb.order {
            PixelOrder::Rgb => PixelFormat::Rgb,
            PixelOrder::Bgr => PixelFormat::Bgr,
        },
    };
    match FbConsole::new(screen_memory(fb), info) {
        Ok(console) => {
            let console = SCREEN.call_once(|| console);
            console.clear();
            pc::set_console_mirror(write_screen);
        }
        Err(e) => {
            let _ = writeln!(pc::ConsoleWriter, "rhea: no screen console: {e}");
        }
    }
}

/// A PC entered from the UEFI loader: everything but the hand-off, the consoles and the exit
/// is `common-x86`'s.
impl Board for PcUefi {
    type Platform = Self;
    type InitError = pc::interrupts::InitError;

    fn platform() -> &'static Self {
        &PLATFORM
    }

    /// The entry code's argument is the hand-off page: consoles first (so that anything wrong
    /// with the rest is shown), then the UEFI memory map, then a PC's early boot.
    fn early_init(handoff_addr: usize) -> BootInfo {
        if !pc::com1_present() {
            pc::set_com1_absent();
        }
        pc::early_console();
        let handoff = match pc::uefi_handoff(handoff_addr) {
            Ok(h) => h,
            Err(e) => panic!("the UEFI loader's hand-off at {handoff_addr:#x} is malformed: {e}"),
        };
        if let Some(fb) = &handoff.framebuffer {
            start_screen(fb);
        }
        let e820 = match pc::uefi_memory_map(&handoff) {
            Ok(map) => map,
            Err(e) => panic!("the UEFI memory map is malformed: {e}"),
        };
        let (mut boot, _rsdp) = pc::early_pc_with_map(handoff_addr, Some(e820.entries()));
        if let Some(fb) = handoff.framebuffer.filter(|_| SCREEN.get().is_some()) {
            let start = fb.base & !(PAGE_SIZE - 1);
            boot.image.early_mmio[0] = start..(fb.base + fb.bytes).next_multiple_of(PAGE_SIZE);
        }
        // No heap yet: formatted straight to the consoles.
        let com1 = if pc::com1_in_use() {
            "present"
        } else {
            "absent"
        };
        let _ = match (SCREEN.get(), handoff.framebuffer) {
            (Some(s), Some(fb)) => writeln!(
                pc::ConsoleWriter,
                "rhea: consoles: COM1 {com1}, screen {}x{} pixels ({}x{} characters)",
                fb.width,
                fb.height,
                s.cols(),
                s.rows()
            ),
            _ => writeln!(
                pc::ConsoleWriter,
                "rhea: consoles: COM1 {com1}, screen none"
            ),
        };
        CMDLINE.call_once(|| boot.cmdline);
        boot
    }

    fn boot_stack() -> core::ops::Range<u64> {
        pc::boot_stack()
    }

    fn init_interrupts_and_time(
        boot: &BootInfo,
        cross_check: bool,
        map_mmio: &dyn Fn(u64, u64) -> bool,
    ) -> Result<TimeAndIrq, Self::InitError> {
        pc::init_interrupts_and_time(boot, cross_check, map_mmio)
    }

    fn console_rx_line() -> IrqLine {
        pc::console_rx_line()
    }

    fn console_rx_enable() {
        if pc::com1_in_use() {
            pc::console_rx_enable();
        }
    }

    fn console_rx_drain(max: usize, sink: &mut dyn FnMut(u8)) -> (usize, usize) {
        pc::console_rx_drain(max, sink)
    }

    fn msi_message(vector: u8) -> Option<(u64, u32)> {
        pc::interrupts::msi_message(vector)
    }

    fn stolen_ns(cpu: usize) -> Option<u64> {
        pc::kvm::stolen_ns(cpu)
    }

    fn defer_tlb_flush(cpu: usize) -> bool {
        pc::kvm::defer_tlb_flush(cpu)
    }
}

impl BoardDevices for PcUefi {
    fn buses() -> Vec<Box<dyn Bus>> {
        alloc::vec![pc::devices::pci_bus()]
    }

    fn net_drivers() -> Vec<&'static dyn Driver> {
        pc::devices::pci_nic_drivers(CMDLINE.get().copied().unwrap_or(""))
    }

    fn blk_drivers() -> Vec<&'static dyn Driver> {
        alloc::vec![pc::devices::pci_blk_driver(
            CMDLINE.get().copied().unwrap_or("")
        )]
    }

    fn p9_drivers() -> Vec<&'static dyn Driver> {
        alloc::vec![pc::devices::pci_p9_driver(
            CMDLINE.get().copied().unwrap_or("")
        )]
    }
}
