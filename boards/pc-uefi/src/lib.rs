//! # `rhea-board-pc-uefi` — an x86_64 PC booted by UEFI firmware
//!
//! Layer 4. The machine is a PC like `qemu-x86_64`'s q35 — LAPIC/I/O APIC, ACPI tables, PCI,
//! application processors all come from `rhea-board-common-x86` — but reached differently:
//! UEFI firmware (OVMF under QEMU, or a real PC's) runs `\EFI\BOOT\BOOTX64.EFI` from the disk's
//! EFI system partition, Rhea's loader (`loader/`, a UEFI application carrying this kernel's
//! ELF) loads the kernel at 1 MiB, exits boot services and enters it in long mode at
//! `rhea_start64` with a hand-off page (`rhea_board_common_x86::uefi`). This crate owns:
//! - reading the hand-off: the UEFI memory map (converted and validated by the kernel, which
//!   can report), the GOP framebuffer, the command line and RSDP (as a PVH start info);
//! - the consoles: COM1 when present, and the framebuffer text console (`rhea_drivers::fbcon`)
//!   whenever the firmware gave a framebuffer — a PC with only a screen shows the boot, the
//!   app and any fault report;
//! - the exit: under a hypervisor QEMU's `isa-debug-exit` (port 0xf4), which xtask adds; on
//!   a real PC (no hypervisor bit) a message and a halt, since a port write there could reach
//!   any device.
//!
//! The board is [`PcUefi`], implementing `rhea_hal::Board` and
//! `rhea_drivers::bus::BoardDevices`.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod machine;
#[cfg(target_os = "none")]
pub use machine::*;
