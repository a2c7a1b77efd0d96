//! The board as the runtime sees it: the platform (COM1, CPUs, exit) and early boot.
#![allow(unsafe_code, reason = "the exit port write; it has a SAFETY note")]

use rhea_board_common_x86 as pc;
use rhea_hal::{Console, ExitStatus, Platform};

pub use pc::interrupts::msi_message;
pub use pc::{
    BootInfo, boot_stack, console_rx_drain, console_rx_enable, console_rx_line, console_rx_readers,
    init_interrupts_and_time,
};

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

/// `isa-debug-exit` (QEMU `hw/misc/debugexit.c`): writing `v` ends QEMU with status
/// `(v << 1) | 1`. xtask maps 33 (v = 0x10) to success and 35 (v = 0x11) to failure; 0 and 1
/// are avoided because a QEMU that exits normally returns them too.
const DEBUG_EXIT_PORT: u16 = 0xf4;

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

    fn exit(&self, status: ExitStatus) -> ! {
        let code = match status {
            ExitStatus::Success => 0x10,
            ExitStatus::Failure => 0x11,
        };
        // SAFETY: port 0xf4 is the debug-exit device xtask configures; on a machine without
        // it the write is ignored and we halt below.
        unsafe { rhea_arch::outl(DEBUG_EXIT_PORT, code) };
        rhea_arch::halt_forever()
    }
}

/// Early board initialisation, called once by the runtime's entry point on the boot CPU with the
/// entry code's argument (the `hvm_start_info` physical address): a PC's early boot
/// ([`pc::early_pc`]), then the command line kept for the devices.
pub fn early_init(start_info: usize) -> BootInfo {
    let (boot, _rsdp) = pc::early_pc(start_info);
    crate::devices::early(boot.cmdline);
    boot
}
