//! # `rhea-smp` — layer 3: multiprocessor bring-up policy
//!
//! What the machine's CPUs are and how they talk to each other, without touching hardware:
//!
//! - [`cpus`]: [`CpuTable`], the logical CPU numbering (boot CPU first) over hardware IDs,
//!   limited to what the kernel supports, saying what it left out;
//! - [`calls`]: [`CallBoard`], cross-CPU function calls as per-(target, sender) mailboxes that
//!   an IPI tells the target to drain.
//!
//! The platforms do the hardware part (firmware tables, trampolines, INIT-SIPI-SIPI, PSCI,
//! IPIs: `rhea-board-common-x86`, `rhea-board-common-arm`); this crate is host-tested, and the
//! call mailboxes are model-checked
//! with loom (`tests/loom.rs`, atomics swapped in through `sync`).
#![no_std]

#[cfg(test)]
extern crate std;

pub mod calls;
pub mod cpus;
mod sync;

pub use calls::{CallBoard, CallError};
pub use cpus::{CpuTable, MAX_CPUS};
