//! # `rhea-board-xen-arm64` — an arm64 guest of the Xen hypervisor
//!
//! Layer 5: the only crate that names Xen's facts on Arm. Rhea runs as a domU that Xen builds
//! itself at boot ("dom0less": a `xen,domain` node under `/chosen` in the devicetree Xen is
//! given), entered like Linux:
//! - the boot protocol: Xen's domain builder loads a Linux arm64 `Image` at the guest's RAM
//!   base (`GUEST_RAM0_BASE`, 0x4000_0000) plus the header's `text_offset`, and enters it at
//!   EL1 with the MMU off and the devicetree it built for the guest in `x0` (`link.ld`: linked
//!   at 0x4008_0000);
//! - that devicetree: a `hypervisor` node compatible with `xen,xen` (checked at boot; its
//!   `xen,xen-4.17` compatible names the version), the GIC Xen emulates (GICv3 distributor at
//!   0x0300_1000 and redistributors at 0x0302_0000, or GICv2), the generic timer (the guest's
//!   virtual timer is the real one), PSCI through `hvc` (secondary vCPUs: `CPU_ON`), and RAM;
//!   read by the shared code in `rhea-board-common-arm`;
//! - interrupts (`events.rs`): Xen's event channels over the GIC — the shared-info page and
//!   per-vCPU `vcpu_info`s, the event-channel PPI (`GUEST_EVTCHN_PPI`, 31) demultiplexed into
//!   the vectors of pending ports, IPIs as one event channel per vCPU (`EVTCHNOP_bind_ipi`,
//!   `EVTCHNOP_send`) instead of SGIs, device lines as ports; the GIC keeps the timer's PPI.
//!   Time stays the generic timer's: Xen on Arm has no single-shot timer hypercall;
//! - the console: `HYPERVISOR_console_io` (`CONSOLEIO_write`), which Xen prints on its own
//!   console as `(d1) ...` lines (`guest_loglvl=all`); no console input yet;
//! - the exit: `SCHEDOP_shutdown` with reason `SHUTDOWN_poweroff` (success) or
//!   `SHUTDOWN_crash` (failure), announced on the console first (`hypercall.rs`);
//! - the device range of the boot map: everything below RAM (the GIC, Xen's emulated
//!   `vpl011` at 0x2200_0000 when the domain has one, the grant-table window).
//!
//! The early UART is the `vpl011` (`GUEST_PL011_BASE`): only the entry code's fixed messages
//! (wrong load address or Exception level) go there, before any Rust runs; xtask gives the
//! domain a `vpl011` so that they are seen.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod events;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod hypercall;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod machine;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use machine::*;
