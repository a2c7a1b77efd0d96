//! The Arm boards' devices: the devicetree's `virtio,mmio` transports as a bus
//! (`rhea_drivers::virtio::mmio::VirtioMmioBus`: each window mapped and probed — magic,
//! version, device ID; empty slots, device ID 0, skipped without a message each) and the
//! virtio-net MMIO driver, which binds a network device with its SPI as an edge-triggered line
//! (offered, hence linked, only with the runtime's `net` feature). A board adds its own buses
//! and NIC drivers through `arm_board!`'s `buses` and `net_drivers`.
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
use rhea_drivers::virtio::blk::VirtioBlkMmio;
use rhea_drivers::virtio::mmio::{MmioDevice, VirtioMmioBus};
use rhea_drivers::virtio::p9::VirtioP9Mmio;

/// Buses of the device model.
pub type Buses = Vec<Box<dyn Bus>>;

/// Drivers of the device model.
pub type Drivers = Vec<&'static dyn Driver>;

/// The devicetree's virtio-mmio transports.
pub fn buses() -> Buses {
    let Some(facts) = FACTS.get() else {
        return Vec::new();
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
    buses
}

/// The virtio-net MMIO driver (linked only when the runtime asks: its `net` feature).
pub fn net_drivers() -> Drivers {
    static VIRTIO_NET_MMIO: VirtioNetMmio = VirtioNetMmio;
    alloc::vec![&VIRTIO_NET_MMIO as &dyn Driver]
}

/// The virtio-9p MMIO driver (linked only when the runtime asks: its `p9` feature).
pub fn p9_drivers() -> Drivers {
    static VIRTIO_P9_MMIO: VirtioP9Mmio = VirtioP9Mmio;
    alloc::vec![&VIRTIO_P9_MMIO as &dyn Driver]
}

/// The virtio-blk MMIO driver (linked only when the runtime asks: its `blk` feature).
pub fn blk_drivers() -> Drivers {
    static VIRTIO_BLK_MMIO: VirtioBlkMmio = VirtioBlkMmio;
    alloc::vec![&VIRTIO_BLK_MMIO as &dyn Driver]
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
