//! LinuxU's devices for the device model (`rhea_drivers::bus`): the tap interface named by
//! `rhea.net.tap=` ([`crate::tap`]). Signals carry interrupts; there are no message-signalled
//! ones.

use alloc::boxed::Box;
use alloc::vec::Vec;
use rhea_drivers::bus::{Bus, Driver};

/// The host "bus": the tap, when `rhea.net.tap=` names one.
pub fn buses() -> Vec<Box<dyn Bus>> {
    alloc::vec![Box::new(crate::tap::TapBus)]
}

/// The tap driver (linked only when the runtime asks: its `net` feature).
pub fn net_drivers() -> Vec<&'static dyn Driver> {
    alloc::vec![&crate::tap::TAP_DRIVER as &'static dyn Driver]
}

/// No MSIs in a process.
pub fn msi_message(_vector: u8) -> Option<(u64, u32)> {
    None
}
