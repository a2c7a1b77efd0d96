//! The board's services: console, exit, early init, and the items the runtime expects of a
//! board (`runtime/src/boards.rs`).
#![allow(unsafe_code, reason = "port 0xE9 output; each use has a SAFETY note")]

use crate::hypercall;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};
use rhea_board_xen_common::abi;
use rhea_drivers::bus::{Bus, Driver};
use rhea_hal::{Console, ExitStatus, Platform};

use rhea_board_common_x86::boot_stack;
use rhea_board_common_x86::pvh::E820Entry;
use rhea_hal::BootInfo;

/// The most e820 entries read from Xen.
const MAX_E820: usize = 64;

/// Xen's debug console port for HVM guests (printed as `(dN) ...` lines).
const DEBUG_PORT: u16 = 0xe9;

/// Whether Xen accepts `console_io` from this domain (the hardware domain): then the console
/// uses it (one hypercall per write); else port 0xE9 (one exit per byte).
static CONSOLE_IO: AtomicBool = AtomicBool::new(false);

fn write_console(bytes: &[u8]) {
    if rhea_board_xen_common::pv::console_write(bytes) {
        return;
    }
    if CONSOLE_IO.load(Ordering::Relaxed) {
        for chunk in bytes.chunks(1024) {
            hypercall::console_write(chunk);
        }
    } else {
        for &b in bytes {
            // SAFETY: port 0xE9 is Xen's debug console for HVM guests; writing it has no
            // other effect.
            unsafe { rhea_arch::outb(DEBUG_PORT, b) };
        }
    }
}

/// Writes to the console without any lock (board-level reports).
pub(crate) struct ConsoleWriter;

impl Write for ConsoleWriter {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        write_console(s.as_bytes());
        Ok(())
    }
}

/// The Xen x86_64 board as the runtime sees it.
#[derive(Debug)]
pub struct XenX86_64;

/// The board's services.
pub static PLATFORM: XenX86_64 = XenX86_64;

impl Console for XenX86_64 {
    fn write_bytes(&self, bytes: &[u8]) {
        write_console(bytes);
    }
}

impl Platform for XenX86_64 {
    fn name(&self) -> &'static str {
        "xen-x86_64"
    }

    fn console(&self) -> &dyn Console {
        self
    }

    fn cpu_count(&self) -> usize {
        crate::smp::cpu_count()
    }

    fn start_secondary_cpus(
        &self,
        entry: extern "C" fn(usize) -> !,
        stacks: &dyn rhea_hal::StackSource,
    ) -> usize {
        crate::smp::start(entry, stacks)
    }

    /// `SCHEDOP_shutdown`: poweroff for success, crash for failure, announced on the console
    /// first (the harness reads the line; for the hardware domain Xen also prints "Hardware
    /// Dom0 halted/crashed").
    fn exit(&self, status: ExitStatus) -> ! {
        let reason = match status {
            ExitStatus::Success => abi::shutdown::POWEROFF,
            ExitStatus::Failure => abi::shutdown::CRASH,
        };
        let _ = writeln!(
            ConsoleWriter,
            "rhea: xen: SCHEDOP_shutdown reason={reason} ({})",
            abi::shutdown_name(reason)
        );
        // The console back end reads the ring asynchronously: let it take the last lines
        // before the domain goes away.
        rhea_board_xen_common::pv::console_flush();
        let rc = hypercall::shutdown(reason);
        let _ = writeln!(
            ConsoleWriter,
            "rhea: xen: SCHEDOP_shutdown returned {rc} ({})",
            abi::errno_name(rc)
        );
        rhea_arch::halt_forever()
    }

    /// `SCHEDOP_shutdown` with `SHUTDOWN_reboot`: the toolstack restarts the domain (or not:
    /// its `on_reboot` setting).
    fn reboot(&self) -> &'static str {
        rhea_board_xen_common::pv::console_flush();
        let rc = hypercall::shutdown(abi::shutdown::REBOOT);
        let _ = writeln!(
            ConsoleWriter,
            "rhea: xen: SCHEDOP_shutdown(reboot) returned {rc} ({})",
            abi::errno_name(rc)
        );
        "Xen refused SCHEDOP_shutdown(reboot)"
    }
}

/// Early init on the boot CPU: Xen found (else a fixed message on port 0xE9 and a halt — the
/// image was booted outside Xen), the hypercall page, the console, descriptor tables, the PVH
/// boot data, the shared-info page, the vCPU count.
pub(crate) fn early_init(start_info: usize) -> BootInfo {
    let Some(xen) = hypercall::detect() else {
        write_console(
            b"rhea: xen-x86_64: no Xen CPUID leaves: this image runs under Xen \
              (cargo xtask run --board xen-x86_64)\n",
        );
        rhea_arch::halt_forever()
    };
    hypercall::install(xen);
    // console_io with nothing to write: 0 where Xen allows it, -EPERM for a domU.
    CONSOLE_IO.store(hypercall::console_write(&[]) == 0, Ordering::Relaxed);
    rhea_arch::init_boot_cpu();
    // Xen 4.17 gives a PVH dom0 a version-0 start info (no memory map): ask Xen for it.
    let mut raw = [0u8; MAX_E820 * abi::E820_ENTRY_BYTES];
    let mut e820 = [E820Entry {
        addr: 0,
        size: 0,
        kind: 0,
    }; MAX_E820];
    let n = match hypercall::memory_map(&mut raw) {
        Ok(n) => n,
        Err(rc) => panic!(
            "xen: XENMEM_memory_map failed: {rc} ({})",
            abi::errno_name(rc)
        ),
    };
    for (slot, (addr, size, kind)) in e820.iter_mut().zip(abi::e820_entries(&raw, n)) {
        *slot = E820Entry { addr, size, kind };
    }
    let (boot, _rsdp) = rhea_board_common_x86::pvh_boot(start_info, Some(&e820[..n]));
    if let Err(e) = crate::interrupts::map_shared_info() {
        panic!("xen: cannot map the shared-info page: {e}");
    }
    let (major, minor) = xen.version;
    let _ = writeln!(
        ConsoleWriter,
        "rhea: xen: Xen {major}.{minor} (CPUID base {:#x}); console: {}; clock: vcpu_time_info; \
         timer: VCPUOP_set_singleshot_timer; interrupts: event channels",
        xen.base,
        if CONSOLE_IO.load(Ordering::Relaxed) {
            "console_io"
        } else {
            "port 0xe9"
        }
    );
    crate::smp::discover(boot.cmdline);
    boot
}

/// Interrupts and time: see [`crate::interrupts`].
pub(crate) fn init_interrupts_and_time(
    _boot: &BootInfo,
    _cross_check: bool,
    map_mmio: &dyn Fn(u64, u64) -> bool,
) -> Result<rhea_hal::TimeAndIrq, crate::interrupts::InitError> {
    let it = crate::interrupts::init()?;
    // x86 keeps uncached mappings coherent with the other domains' cached ones: the device
    // mapping serves for the shared pages.
    rhea_board_xen_common::pv::init(
        &hypercall::HYPERVISOR,
        map_mmio,
        CONSOLE_IO.load(Ordering::Relaxed),
    );
    Ok(it)
}

/// Console input's line: the PV console's event channel (domU) or `VIRQ_CONSOLE`'s port
/// (hardware domain); `IrqLine::NONE` when neither exists.
pub(crate) fn console_rx_line() -> rhea_hal::IrqLine {
    match rhea_board_xen_common::pv::console_rx_line() {
        0 => rhea_hal::IrqLine::NONE,
        port => rhea_hal::IrqLine(port),
    }
}

/// Nothing to enable: the event channel is the interrupt.
pub(crate) fn console_rx_enable() {}

/// Drains console input into `sink` (the interrupt's top half); returns (bytes, errors).
pub(crate) fn console_rx_drain(max: usize, sink: impl FnMut(u8)) -> (usize, usize) {
    rhea_board_xen_common::pv::console_rx_drain(max, sink)
}

/// Xenbus when xenstore is there (a domU of a toolstack), else nothing.
pub(crate) fn buses() -> Vec<Box<dyn Bus>> {
    rhea_board_xen_common::pv::buses()
}

/// Netfront when xenstore is there (linked only with the runtime's `net` feature).
pub(crate) fn net_drivers() -> Vec<&'static dyn Driver> {
    rhea_board_xen_common::pv::net_drivers()
}

/// No message-signalled interrupts under Xen PVH (devices are event channels).
pub(crate) fn msi_message(_vector: u8) -> Option<(u64, u32)> {
    None
}

/// The board contract, over the functions above.
impl rhea_hal::Board for XenX86_64 {
    type Platform = Self;
    type InitError = crate::interrupts::InitError;

    fn platform() -> &'static Self {
        &PLATFORM
    }

    fn early_init(arg: usize) -> BootInfo {
        early_init(arg)
    }

    fn boot_stack() -> core::ops::Range<u64> {
        boot_stack()
    }

    fn init_interrupts_and_time(
        boot: &BootInfo,
        cross_check: bool,
        map_mmio: &dyn Fn(u64, u64) -> bool,
    ) -> Result<rhea_hal::TimeAndIrq, Self::InitError> {
        init_interrupts_and_time(boot, cross_check, map_mmio)
    }

    fn console_rx_line() -> rhea_hal::IrqLine {
        console_rx_line()
    }

    fn console_rx_enable() {
        console_rx_enable();
    }

    fn console_rx_drain(max: usize, sink: &mut dyn FnMut(u8)) -> (usize, usize) {
        console_rx_drain(max, sink)
    }

    fn msi_message(vector: u8) -> Option<(u64, u32)> {
        msi_message(vector)
    }

    fn stolen_ns(cpu: usize) -> Option<u64> {
        rhea_board_xen_common::steal::RUNSTATE.stolen_ns(cpu)
    }
}

impl rhea_drivers::bus::BoardDevices for XenX86_64 {
    fn buses() -> Vec<Box<dyn Bus>> {
        buses()
    }

    fn net_drivers() -> Vec<&'static dyn Driver> {
        net_drivers()
    }
}
