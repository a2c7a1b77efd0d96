//! The board as the runtime sees it: the platform (COM1, CPUs, exit) and early boot.

use alloc::boxed::Box;
use alloc::vec::Vec;
use rhea_board_common_x86 as pc;
use rhea_drivers::bus::{BoardDevices, Bus, Driver};
use rhea_hal::{Board, BootInfo, Console, ExitStatus, IrqLine, Platform, TimeAndIrq};

/// The QEMU x86_64 board as the runtime sees it.
#[derive(Debug)]
pub struct QemuX86_64;

/// The board's services.
pub static PLATFORM: QemuX86_64 = QemuX86_64;

impl Console for QemuX86_64 {
    fn write_bytes(&self, bytes: &[u8]) {
        pc::console_write(bytes);
    }
}

impl Platform for QemuX86_64 {
    fn name(&self) -> &'static str {
        "qemu-x86_64"
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

    /// QEMU's `isa-debug-exit`, which xtask configures; without it, a halt.
    fn exit(&self, status: ExitStatus) -> ! {
        pc::debug_exit(status);
        rhea_arch::halt_forever()
    }

    /// q35's reset control register; microvm's triple fault ([`pc::reset`]).
    fn reboot(&self) -> &'static str {
        pc::reset()
    }
}

/// A PC entered through PVH: everything but the exit and the devices is `common-x86`'s.
impl Board for QemuX86_64 {
    type Platform = Self;
    type InitError = pc::interrupts::InitError;

    fn platform() -> &'static Self {
        &PLATFORM
    }

    /// The entry code's argument is the `hvm_start_info` physical address: a PC's early boot
    /// ([`pc::early_pc`]), then the command line kept for the devices.
    fn early_init(start_info: usize) -> BootInfo {
        let (boot, _rsdp) = pc::early_pc(start_info);
        crate::devices::early(boot.cmdline);
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
        pc::console_rx_enable();
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

impl BoardDevices for QemuX86_64 {
    fn buses() -> Vec<Box<dyn Bus>> {
        crate::devices::buses()
    }

    fn net_drivers() -> Vec<&'static dyn Driver> {
        crate::devices::net_drivers()
    }

    fn blk_drivers() -> Vec<&'static dyn Driver> {
        crate::devices::blk_drivers()
    }

    fn p9_drivers() -> Vec<&'static dyn Driver> {
        crate::devices::p9_drivers()
    }
}
