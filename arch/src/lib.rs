//! # `rhea-arch` — layer 3: the architecture
//!
//! Owns everything that is defined by the instruction set rather than by a board: trap entry
//! and exit, descriptor tables, page-table formats, CPU feature discovery, register snapshots
//! and frame-pointer backtraces. This is the only crate (with `boards/`) allowed to use
//! `cfg(target_arch)`, and this file is the only place in it that does.
//!
//! Every architecture module exports the same names, which the runtime uses without knowing
//! the architecture:
//! - `init_boot_cpu()`: descriptor tables, trap vectors, control-register policy;
//! - `set_fault_handler(fn(&Fault) -> !)`: where fatal exceptions go;
//! - `Fault` (with `pc()`, `address()`, `frame_pointer()`, `stack_pointer()` and a `Display`
//!   register dump) and `Registers::capture()` for panics;
//! - `backtrace(fp, stack_bounds, f)`: a bounded frame-pointer walk;
//! - `paging::{AddressSpace, KernelImage}`: kernel page tables with W^X and guard pages;
//! - `cpu_id()`, `read_cycle_counter()`, `halt_forever()`, `features::report()`;
//! - `testing::{divide_by_zero, ...}`: fault triggers for the fault test apps.
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

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod linux;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub use linux::*;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod aarch64;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub use aarch64::*;
