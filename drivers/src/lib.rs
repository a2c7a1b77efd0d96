//! # `rhea-drivers` — device drivers
//!
//! One module per device, each the only place that knows its registers. Drivers reach their
//! registers through small access traits that boards implement (port I/O on x86, MMIO on
//! ARM), so a driver compiles for every architecture and is tested on the host against a
//! model of the device.
//!
//! Now: [`uart16550`], the console of PC-class boards, and [`pl011`], the console of Arm
//! boards; [`bus`], the device model (buses enumerate, drivers match and bind); [`net`], the
//! contract of network devices.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod bus;
pub mod net;
pub mod pl011;
pub mod uart16550;
