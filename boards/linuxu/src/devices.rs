//! LinuxU's devices for the device model (`rhea_drivers::bus`): the tap interface named by
//! `rhea.net.tap=` ([`crate::tap`]). Signals carry interrupts; there are no message-signalled
//! ones.

use alloc::boxed::Box;
use alloc::vec::Vec;
use rhea_drivers::bus::{Bus, Driver};

/// The host "bus": the tap, when `rhea.net.tap=` names one.
pub(crate) fn buses() -> Vec<Box<dyn Bus>> {
    alloc::vec![Box::new(crate::tap::TapBus)]
}

/// The tap driver (linked only when the runtime asks: its `net` feature).
pub(crate) fn net_drivers() -> Vec<&'static dyn Driver> {
    alloc::vec![&crate::tap::TAP_DRIVER as &'static dyn Driver]
}
