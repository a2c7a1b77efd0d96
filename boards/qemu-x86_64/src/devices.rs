//! This machine's devices for the device model (`rhea_drivers::bus`) and its message-signalled
//! interrupts (x86 MSI format, SDM Vol. 3A §11.11).

use alloc::boxed::Box;
use alloc::vec::Vec;
use rhea_drivers::bus::{Bus, Driver};

/// The buses to enumerate and the drivers to offer their devices to.
pub type Devices = (Vec<Box<dyn Bus>>, Vec<&'static dyn Driver>);

/// No bus is enumerated yet.
pub fn devices() -> Devices {
    (Vec::new(), Vec::new())
}

/// An MSI raising `vector` on the boot CPU: address `0xFEE0_0000` with the destination APIC ID
/// in bits 19:12 (physical mode, no redirection hint), data the vector (fixed delivery, edge).
/// `None` if the boot CPU's APIC ID does not fit 8 bits (that needs interrupt remapping).
pub fn msi_message(vector: u8) -> Option<(u64, u32)> {
    let dest = crate::smp::apic_id(0).unwrap_or(0);
    let dest = u8::try_from(dest).ok()?;
    Some((0xfee0_0000 | (u64::from(dest) << 12), u32::from(vector)))
}
