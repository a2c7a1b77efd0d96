//! The Arm boards' devices: the devicetree's `virtio,mmio` transports as a bus
//! (`rhea_drivers::virtio::mmio::VirtioMmioBus`: each window mapped and probed — magic,
//! version, device ID; empty slots, device ID 0, skipped without a message each) with the
//! virtio-net MMIO driver, which binds a network device with its SPI as an edge-triggered line.
//!
//! Nodes the devicetree gets wrong (`platform::virtio_mmio`) are logged with the reason and
//! left out; well-formed ones Rhea cannot drive (`VirtioMmio::unsupported`: DMA not
//! cache-coherent, a level-triggered SPI) are probed like the others and the reason is logged
//! only if a device sits there. GICv2/GICv3 without an ITS have no message-signalled
//! interrupts.

use crate::machine::{ConsoleWriter, FACTS, board};
use crate::platform;
use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;
use core::fmt::Write;
use rhea_drivers::bus::{Bus, Driver};
use rhea_drivers::virtio::VirtioNetMmio;
use rhea_drivers::virtio::mmio::{MmioDevice, VirtioMmioBus};

/// The buses to enumerate and the drivers to offer their devices to.
pub type Devices = (Vec<Box<dyn Bus>>, Vec<&'static dyn Driver>);

static VIRTIO_NET_MMIO: VirtioNetMmio = VirtioNetMmio;

/// The devicetree's virtio-mmio transports and the virtio-net driver.
pub fn devices() -> Devices {
    let Some(facts) = FACTS.get() else {
        return (Vec::new(), Vec::new());
    };
    let mut transports = Vec::new();
    for node in platform::virtio_mmio(&facts.tree) {
        match node {
            Ok(t) => transports.push(MmioDevice {
                base: t.regs.base,
                size: t.regs.len,
                // The GIC line as the board numbers it (`InterruptLayer::gic_lines`).
                irq: board().map_or(t.intid, |b| b.gic_line(t.intid).0),
                refusal: t.unsupported(),
            }),
            Err(e) => log(&format!("devicetree: {e}; transport skipped")),
        }
    }
    let mut buses: Vec<Box<dyn Bus>> = Vec::new();
    if !transports.is_empty() {
        buses.push(Box::new(VirtioMmioBus::new(transports, log)));
    }
    let mut drivers: Vec<&'static dyn Driver> = alloc::vec![&VIRTIO_NET_MMIO as &dyn Driver];
    if let Some(extra) = board().and_then(|b| b.extra_devices()) {
        let (more_buses, more_drivers) = extra();
        buses.extend(more_buses);
        drivers.extend(more_drivers);
    }
    (buses, drivers)
}

/// Bus and devicetree messages, one console line each.
fn log(msg: &str) {
    if let Some(b) = board() {
        let _ = writeln!(ConsoleWriter(b), "rhea: device: {msg}");
    }
}

/// No MSIs on these machines.
pub fn msi_message(_vector: u8) -> Option<(u64, u32)> {
    None
}
