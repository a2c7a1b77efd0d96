//! This machine's devices for the device model (`rhea_drivers::bus`): PCI (q35) and virtio-mmio
//! (microvm, or named on the command line).

use alloc::boxed::Box;
use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::Write;
use rhea_board_common_x86::ConsoleWriter;
use rhea_drivers::bus::{Bus, Driver};
use rhea_drivers::e1000e::E1000ePci;
use rhea_drivers::pci::{BarAllocator, ConfigAccess, NicEnv, PciBus};
use rhea_drivers::virtio::mmio::{MmioDevice, VirtioMmioBus, parse_cmdline};
use rhea_drivers::virtio::{VirtioNetMmio, VirtioNetPci};
use rhea_hal::cmdline::{Cmdline, keys};
use spin::Once;

/// The kernel command line, kept by [`early`] for [`buses`] and [`net_drivers`].
static CMDLINE: Once<&'static str> = Once::new();

/// Keeps the command line (`virtio_mmio.device=` entries, `rhea.pci.msix=off`) for [`buses`]
/// and [`net_drivers`].
pub(crate) fn early(cmdline: &'static str) {
    CMDLINE.call_once(|| cmdline);
}

/// Addresses for memory BARs firmware left unassigned (qboot assigns none): the top of q35's
/// 32-bit PCI hole, which runs from the end of the ECAM window (0xc000_0000) to the I/O APIC
/// (0xfec0_0000); SeaBIOS fills it from the top, so the bottom 256 MiB is used here. (The
/// window would come from the host bridge's ACPI _CRS, which needs AML.)
static BAR_SPACE: BarAllocator = BarAllocator::new(0xc000_0000, 0xd000_0000);

/// PCI configuration access, one for the run: the bus and virtio-net-pci share its port lock.
fn config() -> Arc<dyn ConfigAccess> {
    static CONFIG: Once<Arc<dyn ConfigAccess>> = Once::new();
    Arc::clone(CONFIG.call_once(|| Arc::new(rhea_board_common_x86::pci::BoardConfig::new())))
}

/// PCI (q35: ECAM or ports; microvm has no PCI host bridge, so it finds nothing there) and the
/// virtio-mmio devices the command line names (microvm).
pub(crate) fn buses() -> Vec<Box<dyn Bus>> {
    let cmdline = CMDLINE.get().copied().unwrap_or("");
    let mut buses: Vec<Box<dyn Bus>> = Vec::new();
    buses.push(Box::new(PciBus::new(config(), log)));
    let (mut mmio, errors) = parse_cmdline(cmdline);
    for e in errors {
        log(&format!("{e}; entry skipped"));
    }
    if mmio.is_empty() && !rhea_board_common_x86::pci::has_ecam() {
        mmio = microvm_transports();
    }
    if !mmio.is_empty() {
        buses.push(Box::new(VirtioMmioBus::new(mmio, log)));
    }
    buses
}

/// The NIC drivers: virtio-net for both buses and the Intel 82574L (`e1000e`) on PCI (linked
/// only when the runtime asks: its `net` feature). `rhea.pci.msix=off` makes the PCI ones use
/// INTx even where MSI-X is offered.
pub(crate) fn net_drivers() -> Vec<&'static dyn Driver> {
    static VIRTIO_NET_MMIO: VirtioNetMmio = VirtioNetMmio;
    let cmdline = CMDLINE.get().copied().unwrap_or("");
    // Boot checked the command line before devices are bound.
    let allow_msix = Cmdline::new(cmdline).choice(&keys::PCI_MSIX) != Ok(Some("off"));
    // Built once at boot and kept for the kernel's lifetime, like a static.
    let env = NicEnv {
        access: config(),
        bar_space: &BAR_SPACE,
        allow_msix,
        intx_gsi,
    };
    let pci: &'static VirtioNetPci = Box::leak(Box::new(VirtioNetPci::new(env.clone())));
    let e1000e: &'static E1000ePci = Box::leak(Box::new(E1000ePci::new(env)));
    alloc::vec![pci as &dyn Driver, e1000e, &VIRTIO_NET_MMIO]
}

/// QEMU microvm's virtio-mmio transports, for when the command line names none (QEMU 10 with
/// ACPI describes them only in its DSDT, which needs AML): 512-byte windows from
/// `0xfeb0_0000`; their lines start at GSI 24 (all 24 pins of the second I/O APIC) when the
/// MADT lists one there, else at GSI 16 (8 transports, ACPI without the second I/O APIC), else
/// at 5 (8 transports, no ACPI) — QEMU's `hw/i386/microvm.c` layout. Empty transports (device
/// type 0) are skipped by the bus; a machine without them shows no virtio magic there.
fn microvm_transports() -> Vec<MmioDevice> {
    const BASE: u64 = 0xfeb0_0000;
    let madt = rhea_board_common_x86::smp::madt();
    let (irq_base, count) = match madt {
        Some(m) if m.io_apics().iter().any(|io| io.gsi_base == 24) => (24, 24),
        Some(_) => (16, 8),
        None => (5, 8),
    };
    (0..count)
        .map(|i| MmioDevice {
            base: BASE + u64::from(i) * 512,
            size: 512,
            irq: irq_base + i,
            refusal: None,
        })
        .collect()
}

/// Bus and parser messages, one console line each.
fn log(msg: &str) {
    let _ = writeln!(ConsoleWriter, "rhea: device: {msg}");
}

/// A PCI interrupt-line value (an ISA IRQ, as firmware routed the pin through the chipset's
/// PIRQ links) as the GSI it arrives on: the MADT's interrupt source overrides (QEMU declares
/// IRQs 5, 9, 10, 11 level-triggered, identity-mapped). q35's _PRT (GSIs 16-23) would need AML.
fn intx_gsi(line: u8) -> Option<u32> {
    Some(rhea_board_common_x86::interrupts::isa_line(line).0)
}
