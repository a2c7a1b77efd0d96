//! LinuxU's devices for the device model (`rhea_drivers::bus`): none yet (the tap NIC arrives
//! with the network issue). Signals carry interrupts; there are no message-signalled ones.

use alloc::boxed::Box;
use alloc::vec::Vec;
use rhea_drivers::bus::{Bus, Driver};

/// The buses to enumerate and the drivers to offer their devices to.
pub type Devices = (Vec<Box<dyn Bus>>, Vec<&'static dyn Driver>);

/// None yet.
pub fn devices() -> Devices {
    (Vec::new(), Vec::new())
}

/// No MSIs in a process.
pub fn msi_message(_vector: u8) -> Option<(u64, u32)> {
    None
}
