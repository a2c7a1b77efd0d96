//! # `rhea-drivers` — device drivers
//!
//! One module per device, each the only place that knows its registers. Drivers reach their
//! registers through small access traits that boards implement (port I/O on x86, MMIO on
//! ARM), so a driver compiles for every architecture and is tested on the host against a
//! model of the device.
//!
//! Now: [`uart16550`], the console of PC-class boards, and [`pl011`], the console of Arm boards. Buses, virtio-net and the driver-thread
//! model arrive with the device-model issue.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod pl011;
pub mod uart16550;
