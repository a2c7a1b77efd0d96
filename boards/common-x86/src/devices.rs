//! What every PC board's device model shares: PCI configuration access, the PCI bus, and the
//! PCI NIC drivers (virtio-net-pci, the Intel 82574L) with their board environment.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::Write;
use rhea_drivers::bus::{Bus, Driver};
use rhea_drivers::e1000e::E1000ePci;
use rhea_drivers::pci::{BarAllocator, ConfigAccess, NicEnv, PciBus};
use rhea_drivers::virtio::VirtioNetPci;
use rhea_drivers::virtio::blk::VirtioBlkPci;
use rhea_drivers::virtio::p9::VirtioP9Pci;
use rhea_hal::cmdline::{Cmdline, keys};
use rhea_sync::Once;

/// Addresses for memory BARs firmware left unassigned (qboot assigns none; UEFI firmware and
/// SeaBIOS assign all): the top of q35's 32-bit PCI hole, which runs from the end of the ECAM
/// window (0xc000_0000) to the I/O APIC (0xfec0_0000); SeaBIOS fills it from the top, so the
/// bottom 256 MiB is used here. (The window would come from the host bridge's ACPI _CRS,
/// which needs AML.)
static BAR_SPACE: BarAllocator = BarAllocator::new(0xc000_0000, 0xd000_0000);

/// PCI configuration access, one for the run: the bus and the PCI drivers share its port lock.
fn config() -> Arc<dyn ConfigAccess> {
    static CONFIG: Once<Arc<dyn ConfigAccess>> = Once::new();
    Arc::clone(CONFIG.call_once(|| Arc::new(crate::pci::BoardConfig::new())))
}

/// The PCI bus (ECAM from the MCFG, else ports 0xcf8/0xcfc).
pub fn pci_bus() -> Box<dyn Bus> {
    Box::new(PciBus::new(config(), log))
}

/// What a PCI driver works with: the configuration access, the BAR window, and whether
/// `cmdline` (checked by boot before devices are bound) allows MSI-X and MSI.
fn pci_env(cmdline: &str) -> NicEnv {
    let line = Cmdline::new(cmdline);
    NicEnv {
        access: config(),
        bar_space: &BAR_SPACE,
        allow_msix: line.choice(&keys::PCI_MSIX) != Ok(Some("off")),
        allow_msi: line.choice(&keys::PCI_MSI) != Ok(Some("off")),
        intx_gsi,
    }
}

/// The PCI NIC drivers: virtio-net and the Intel 82574L (`e1000e`). On `cmdline`,
/// `rhea.pci.msix=off` keeps them off MSI-X (the e1000e then takes MSI; virtio-net, which has
/// only MSI-X, INTx) and `rhea.pci.msi=off` off MSI (with both off: INTx). Built once at boot
/// and kept for the kernel's lifetime, like statics.
pub fn pci_nic_drivers(cmdline: &str) -> Vec<&'static dyn Driver> {
    let env = pci_env(cmdline);
    let virtio: &'static VirtioNetPci = Box::leak(Box::new(VirtioNetPci::new(env.clone())));
    let e1000e: &'static E1000ePci = Box::leak(Box::new(E1000ePci::new(env)));
    alloc::vec![virtio as &dyn Driver, e1000e]
}

/// The virtio-9p PCI driver (no interrupt: its callers poll), with the same configuration
/// access and BAR window as the NICs.
pub fn pci_p9_driver(cmdline: &str) -> &'static dyn Driver {
    let env = pci_env(cmdline);
    Box::leak(Box::new(VirtioP9Pci::new(env)))
}

/// The virtio-blk PCI driver (no interrupt: its callers poll), with the same configuration
/// access and BAR window as the NICs.
pub fn pci_blk_driver(cmdline: &str) -> &'static dyn Driver {
    let env = pci_env(cmdline);
    Box::leak(Box::new(VirtioBlkPci::new(env)))
}

/// Bus and parser messages, one console line each.
pub fn log(msg: &str) {
    let _ = writeln!(crate::ConsoleWriter, "rhea: device: {msg}");
}

/// A PCI interrupt-line value (an ISA IRQ, as firmware routed the pin through the chipset's
/// PIRQ links) as the GSI it arrives on: the MADT's interrupt source overrides (QEMU declares
/// IRQs 5, 9, 10, 11 level-triggered, identity-mapped). q35's _PRT (GSIs 16-23) would need AML.
/// The line is only as right as firmware made it: OVMF's matches QEMU's ICH9 routing; qboot
/// writes 11 for slot 1, whose INTA ICH9 delivers on ISA IRQ 10 (GSI 21), so INTx under qboot
/// gets no interrupt (MSI-X and MSI do not depend on it).
fn intx_gsi(line: u8) -> Option<u32> {
    Some(crate::interrupts::isa_line(line).0)
}
