//! # `rhea-board-qemu-x86_64` — the QEMU x86_64 board (`-M q35` and `-M microvm`)
//!
//! Layer 5: the only crate that names this machine's hardware. It owns:
//! - the boot protocol: the PVH ELF note and the 32-bit entry that reaches long mode
//!   ([`entry`]), and the `hvm_start_info` parser with its validation ([`pvh`]);
//! - the linker script (`link.ld`, passed by xtask);
//! - interrupts and time ([`interrupts`]): PIC, LAPIC, I/O APIC, TSC and LAPIC timer bound to
//!   this machine;
//! - the console (COM1, a 16550 at port 0x3f8, receive interrupt on ISA IRQ 4) and the exit path (QEMU's `isa-debug-exit` at
//!   port 0xf4, which xtask adds to every QEMU command line).
//!
//! The same image is correct under TCG and hardware KVM, on q35 and microvm: both machines load
//! an ELF with a `XEN_ELFNOTE_PHYS32_ENTRY` note through `-kernel`, and both have COM1.
//!
//! The runtime (`rhea`) calls [`early_init`] from its entry point and uses [`PLATFORM`].
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

#[cfg(target_os = "none")]
extern crate alloc;

pub mod pvh;

#[cfg(target_os = "none")]
mod devices;
#[cfg(target_os = "none")]
pub use devices::{buses, msi_message, net_drivers};

#[cfg(target_os = "none")]
pub mod interrupts;
#[cfg(target_os = "none")]
mod machine;
#[cfg(target_os = "none")]
mod pci;
#[cfg(target_os = "none")]
mod smp;
#[cfg(target_os = "none")]
pub use machine::*;
#[cfg(target_os = "none")]
pub use smp::ap_stacks;
