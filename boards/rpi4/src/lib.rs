//! # `rhea-board-rpi4` — the Raspberry Pi 4 Model B (BCM2711), and QEMU's `-M raspi4b`
//!
//! Layer 5: the only crate that names this machine's facts. It owns:
//! - the boot protocol: `kernel8.img`, a raw image the Pi's firmware loads at 0x8_0000 and
//!   enters at EL2 (after its `armstub8` left EL3) with the devicetree's address in `x0`. The
//!   image starts with a Linux arm64 `Image` header, so QEMU's `-kernel` (and U-Boot's
//!   `booti`) load it the same way; `cargo xtask build --board rpi4` writes it with
//!   `llvm-objcopy -O binary`;
//! - the linker script (`link.ld`: linked at 0x8_0000);
//! - the machine's fixed facts: the early console (UART0, the PL011 at 0xfe20_1000) and the
//!   boot map's device range (0xfc00_0000 up to 4 GiB: peripherals, the ARM local block and
//!   the GIC-400).
//!
//! The rest comes from the devicetree (`bcm2711-rpi-4-b.dtb`, which the firmware passes on
//! hardware and xtask passes to QEMU with `-dtb`): RAM, the GIC-400's frames (bus addresses
//! translated through `/soc`'s `ranges`), the generic timer's interrupt (its 54 MHz rate is in
//! `CNTFRQ_EL0`) and UART0's interrupt (SPI 121), shared with the other Arm boards in
//! `rhea-board-common-arm`.
//!
//! SMP: the other three cores wait in the firmware's spin table (`cpu-release-addr` in the
//! devicetree); early init releases those the run uses into the secondary entry and parks the
//! rest (`rhea.cpus=N`), see `rhea-board-common-arm`'s `smp.rs`. QEMU's `raspi4b` always has
//! four, so `cargo xtask test` passes `rhea.cpus=N`.
//!
//! Exit: semihosting `SYS_EXIT_EXTENDED` (statuses 33/35) under QEMU with
//! `-semihosting-config`. The Pi's devicetree has no PSCI node (its secondary CPUs use spin
//! tables), so on hardware a finished run halts the CPU.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod machine;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use machine::*;
