//! # `rhea-uefi-loader` — pc-uefi's UEFI application (`\EFI\BOOT\BOOTX64.EFI`)
//!
//! The kernel and app are one ELF, linked exactly as for every other x86 board
//! (`boards/common-x86/link.ld`: identity-mapped from 1 MiB); this application carries it
//! (`include_bytes!` of the file xtask names in `RHEA_KERNEL_ELF`) and, under UEFI boot
//! services:
//!
//! 1. checks the ELF ([`rhea_board_common_x86::uefi::plan_load`]) and allocates its physical
//!    range at its link address — firmware that already uses that memory gets a clear message
//!    and a failure status, so the boot manager can try the next entry;
//! 2. copies the segments and zeroes the rest;
//! 3. gathers the ACPI RSDP (configuration table), the GOP framebuffer (32-bit RGB or BGR
//!    only) and the command line (load options, else `\rhea.cfg` on the partition it was
//!    loaded from) into the hand-off page ([`rhea_board_common_x86::uefi::Handoff`]);
//! 4. exits boot services, keeping the final memory map for the kernel, and jumps to the
//!    ELF entry, `rhea_start64`, with the hand-off's address.
//!
//! Why a loader that carries the kernel rather than the kernel built as a PE32+ itself: the
//! kernel's layout (W^X sections at fixed physical addresses, the embedded symbol table, the
//! PVH note, the AP trampoline) is shared with qemu-x86_64 and xen-x86_64 through one linker
//! script; a PE build would need a second layout and relocation. The `uefi` crate covers the
//! firmware interfaces, so this file holds only the policy.
#![cfg_attr(target_os = "uefi", no_std)]
#![cfg_attr(target_os = "uefi", no_main)]

#[cfg(target_os = "uefi")]
mod efi;

/// The host build (clippy, `cargo test` of the workspace) has no UEFI: nothing to run.
#[cfg(not(target_os = "uefi"))]
fn main() {
    eprintln!("rhea-uefi-loader runs only as a UEFI application (target x86_64-unknown-uefi)");
    std::process::exit(2);
}
