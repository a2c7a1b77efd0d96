//! LinuxU's devices for the device model (`rhea_drivers::bus`): the tap interface named by
//! `rhea.net.tap=` ([`crate::tap`]). Signals carry interrupts; there are no message-signalled
//! ones.

use alloc::boxed::Box;
use alloc::vec::Vec;
use rhea_drivers::bus::{Bus, Driver};

/// The buses to enumerate and the drivers to offer their devices to.
pub type Devices = (Vec<Box<dyn Bus>>, Vec<&'static dyn Driver>);

/// The host "bus" (the tap, when named) and the tap driver.
pub fn devices() -> Devices {
    let buses: Vec<Box<dyn Bus>> = alloc::vec![Box::new(crate::tap::TapBus)];
    (
        buses,
        alloc::vec![&crate::tap::TAP_DRIVER as &'static dyn Driver],
    )
}

/// No MSIs in a process.
pub fn msi_message(_vector: u8) -> Option<(u64, u32)> {
    None
}
