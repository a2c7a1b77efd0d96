//! # `rhea-arch` — layer 3: the architecture
//!
//! Owns everything that is defined by the instruction set rather than by a board: trap entry
//! and exit, descriptor tables, page-table formats, CPU feature discovery, register snapshots
//! and frame-pointer backtraces. This is the only crate (with `boards/`) allowed to use
//! `cfg(target_arch)`, and this file is the only place in it that does.
//!
//! Each architecture is one type implementing the contract [`rhea_hal::arch::Arch`]
//! ([`Selected`] names the one being built; this file is the one place that chooses). The
//! runtime uses the architecture only through it: fault and interrupt handlers, CPU identity
//! and cycle counter, interrupt masking and the idle wait, TLB flushes, the context switch,
//! the FPU, the feature report, and the page tables (`Arch::AddressSpace`). Arch-neutral
//! pieces exist once, in `common`: the register-dump layout, [`backtrace`], and (from the
//! contract) [`PagingError`] and [`KernelImage`].
//!
//! What a *board* needs beyond the contract stays here as plain functions of each module,
//! because a board may know its instruction set: I/O ports and MSRs, per-CPU blocks and AP
//! start-up (`init_secondary_cpu`, `run_on_stack`), PSCI and the generic timer, LinuxU's
//! vCPU threads and signals; and `testing::*`, the fault triggers of the fault test apps.
//!
//! `linux` is the LinuxU "architecture": x86_64 user space, sharing the x86_64 CPU-level code
//! and replacing privileged operations with system calls and signals.
//!
//! Hardware model assumed (x86_64): long mode entered by the board's entry code with paging on
//! and an identity map of at least the first 4 GiB; `EFER.NXE` set.
//!
//! Hardware model assumed (aarch64): entered by the board at EL2 or EL1 with the MMU off (Linux
//! arm64 boot protocol); a GICv2 or GICv3, the generic timer, 4 KiB translation granule.
#![no_std]

mod common;
pub mod sync;

pub use common::{KernelImage, PagingError, Section, backtrace};

#[cfg(all(target_arch = "x86_64", target_os = "none"))]
mod x86_64;
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub use x86_64::*;
/// The architecture this kernel is built for.
#[cfg(all(target_arch = "x86_64", target_os = "none"))]
pub type Selected = X86_64;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod linux;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub use linux::*;
/// The architecture this kernel is built for.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub type Selected = LinuxU;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod aarch64;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use aarch64::*;
/// The architecture this kernel is built for.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub type Selected = Aarch64;
