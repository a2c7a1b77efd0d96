//! # `rhea-board-common-arm` — what the Arm boards share
//!
//! Layer 5, like every board crate, but naming no particular machine: the board crates
//! (`qemu-aarch64`, `rpi4`) give it their facts (early UART address, device range of the boot
//! map) and it does the rest:
//! - [`fdt`]: a validating flattened-devicetree reader, and [`platform`]: the facts Rhea needs
//!   from the tree (memory, GIC, timer and UART interrupts, PSCI, command line, virtio-mmio
//!   transports), each refusal a clear message. Both are hardware-free and host-tested with corrupt blobs;
//! - on the machine (`aarch64`, bare metal): early init and `BootInfo` ([`machine`]), the GIC
//!   through `arm-gic` with INTID↔vector translation, the virtual generic timer and counter,
//!   the PL011 console with its receive interrupt ([`interrupts`]), secondary CPUs (PSCI
//!   `CPU_ON` or spin tables, `smp.rs`), and ending a run (semihosting, then PSCI
//!   `SYSTEM_OFF`).
//!
//! May depend on: `rhea-hal`, `rhea-mm` (everywhere); `rhea-arch`, `rhea-drivers`, `rhea-irq`,
//! `rhea-timers`, `arm-gic` (on the machine). Not on the runtime, which links the board.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
extern crate alloc;

pub mod fdt;
pub mod platform;

#[cfg(test)]
mod tests;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod board;
/// For `arm_board!`'s expansion in the board crates.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[doc(hidden)]
pub use {rhea_drivers as __drivers, rhea_hal as __hal};
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod devices;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod interrupts;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod machine;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod smp;
