//! This machine's devices for the device model (`rhea_drivers::bus`): PCI (q35) and virtio-mmio
//! (microvm, or named on the command line).

use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;
use pc::devices::log;
use rhea_board_common_x86 as pc;
use rhea_drivers::bus::{Bus, Driver};
use rhea_drivers::virtio::VirtioNetMmio;
use rhea_drivers::virtio::blk::VirtioBlkMmio;
use rhea_drivers::virtio::mmio::{MmioDevice, VirtioMmioBus, parse_cmdline};
use rhea_drivers::virtio::p9::VirtioP9Mmio;
use rhea_sync::Once;

/// The kernel command line, kept by [`early`] for [`buses`] and [`net_drivers`].
static CMDLINE: Once<&'static str> = Once::new();

/// Keeps the command line (`virtio_mmio.device=` entries, `rhea.pci.msix=off`,
/// `rhea.pci.msi=off`) for [`buses`] and [`net_drivers`].
pub(crate) fn early(cmdline: &'static str) {
    CMDLINE.call_once(|| cmdline);
}

/// PCI (q35: ECAM or ports; microvm has no PCI host bridge, so it finds nothing there) and the
/// virtio-mmio devices the command line names (microvm).
pub(crate) fn buses() -> Vec<Box<dyn Bus>> {
    let cmdline = CMDLINE.get().copied().unwrap_or("");
    let mut buses: Vec<Box<dyn Bus>> = Vec::new();
    buses.push(pc::devices::pci_bus());
    let (mut mmio, errors) = parse_cmdline(cmdline);
    for e in errors {
        log(&format!("{e}; entry skipped"));
    }
    if mmio.is_empty() && !pc::pci::has_ecam() {
        mmio = microvm_transports();
    }
    if !mmio.is_empty() {
        buses.push(Box::new(VirtioMmioBus::new(mmio, log)));
    }
    buses
}

/// The NIC drivers: the PCI ones every PC has (`common-x86`) and virtio-net over MMIO.
pub(crate) fn net_drivers() -> Vec<&'static dyn Driver> {
    static VIRTIO_NET_MMIO: VirtioNetMmio = VirtioNetMmio;
    let mut drivers = pc::devices::pci_nic_drivers(CMDLINE.get().copied().unwrap_or(""));
    drivers.push(&VIRTIO_NET_MMIO);
    drivers
}

/// The 9P drivers: virtio-9p over PCI (q35) and over MMIO (microvm).
pub(crate) fn p9_drivers() -> Vec<&'static dyn Driver> {
    static VIRTIO_P9_MMIO: VirtioP9Mmio = VirtioP9Mmio;
    alloc::vec![
        pc::devices::pci_p9_driver(CMDLINE.get().copied().unwrap_or("")),
        &VIRTIO_P9_MMIO as &dyn Driver,
    ]
}

/// The block drivers: virtio-blk over PCI (q35) and over MMIO (microvm).
pub(crate) fn blk_drivers() -> Vec<&'static dyn Driver> {
    static VIRTIO_BLK_MMIO: VirtioBlkMmio = VirtioBlkMmio;
    alloc::vec![
        pc::devices::pci_blk_driver(CMDLINE.get().copied().unwrap_or("")),
        &VIRTIO_BLK_MMIO as &dyn Driver,
    ]
}

/// QEMU microvm's virtio-mmio transports, for when the command line names none (QEMU 10 with
/// ACPI describes them only in its DSDT, which needs AML): 512-byte windows from
/// `0xfeb0_0000`; their lines start at GSI 24 (all 24 pins of the second I/O APIC) when the
/// MADT lists one there, else at GSI 16 (8 transports, ACPI without the second I/O APIC), else
/// at 5 (8 transports, no ACPI) — QEMU's `hw/i386/microvm.c` layout. Empty transports (device
/// type 0) are skipped by the bus; a machine without them shows no virtio magic there.
fn microvm_transports() -> Vec<MmioDevice> {
    const BASE: u64 = 0xfeb0_0000;
    let madt = pc::smp::madt();
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
