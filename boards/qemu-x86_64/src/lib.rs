//! # `rhea-board-qemu-x86_64` — the QEMU x86_64 board (`-M q35` and `-M microvm`)
//!
//! Layer 4: the only crate that names this machine's facts. Everything a PC has — the PVH entry
//! and its linker script, COM1, the LAPIC/I/O APIC/PIT, ACPI tables, PCI configuration access,
//! application processors — comes from `rhea-board-common-x86`. This crate owns:
//! - the exit path: QEMU's `isa-debug-exit` at port 0xf4, which xtask adds to every QEMU
//!   command line (`machine.rs`);
//! - the devices (`devices.rs`): PCI on q35 with the window for unassigned BARs, virtio-mmio
//!   transports on microvm (named on the command line or at QEMU's fixed layout).
//!
//! The same image is correct under TCG and hardware KVM, on q35 and microvm: both machines load
//! an ELF with a `XEN_ELFNOTE_PHYS32_ENTRY` note through `-kernel`, and both have COM1.
//!
//! The board is [`QemuX86_64`], implementing `rhea_hal::Board` and
//! `rhea_drivers::bus::BoardDevices`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod devices;
#[cfg(target_os = "none")]
mod machine;
#[cfg(target_os = "none")]
pub use machine::*;
