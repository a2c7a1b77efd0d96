//! # `rhea-board-qemu-aarch64` — QEMU's `virt` machine (`-M virt`, GICv2 or GICv3)
//!
//! Layer 5: the only crate that names this machine's facts. It owns:
//! - the boot protocol: a Linux arm64 `Image` header (`Documentation/arch/arm64/booting.rst`)
//!   and `_start`, so QEMU's `-kernel`, boot loaders and Xen load it as they load Linux, with
//!   the devicetree's address in `x0` (see `machine.rs`);
//! - the linker script (`link.ld`: linked at 0x4008_0000, QEMU's RAM base plus the header's
//!   `text_offset`);
//! - the machine's fixed facts: the early console (the PL011 at 0x0900_0000, used before the
//!   devicetree is read) and the boot map's device range (everything below RAM, 0–1 GiB).
//!
//! Everything else — the devicetree, the GIC (v2 or v3, whichever `-M virt,gic-version=N`
//! made), the generic timer, the console's interrupt, the secondary CPUs (`-smp N`, started
//! with PSCI `CPU_ON`), the exit path — is shared with the other
//! Arm boards in `rhea-board-common-arm` and read from the devicetree QEMU generates.
//!
//! Exit: semihosting `SYS_EXIT_EXTENDED` with status 33 (success) or 35 (failure) — the same
//! statuses x86's `isa-debug-exit` produces, so xtask maps them with one table. Semihosting is
//! chosen because it is the only way to give QEMU an exit *status*; PSCI `SYSTEM_OFF` (via
//! `hvc`, as QEMU's devicetree says) is the fallback when QEMU runs without
//! `-semihosting-config`: it stops the machine, but QEMU then exits 0, which xtask reports as
//! "no status".
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod machine;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use machine::*;
