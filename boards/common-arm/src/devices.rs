//! The Arm boards' devices: no bus is enumerated yet (virtio-mmio from the devicetree arrives
//! with the network issue's Arm part), and GICv2/GICv3 without an ITS have no message-signalled
//! interrupts.

use alloc::boxed::Box;
use alloc::vec::Vec;
use rhea_drivers::bus::{Bus, Driver};

/// The buses to enumerate and the drivers to offer their devices to.
pub type Devices = (Vec<Box<dyn Bus>>, Vec<&'static dyn Driver>);

/// None yet.
pub fn devices() -> Devices {
    (Vec::new(), Vec::new())
}

/// No MSIs on these machines.
pub fn msi_message(_vector: u8) -> Option<(u64, u32)> {
    None
}
