//! # `rhea-smp` — layer 3: multiprocessor bring-up policy
//!
//! What the machine's CPUs are and how they talk to each other, without touching hardware:
//!
//! - [`madt`]: the x86 ACPI MADT read through the `acpi` crate — the CPUs (local APIC and
//!   x2APIC entries), the I/O APICs and the ISA interrupt overrides — with the entry walk
//!   validated first (the crate's iterator trusts entry lengths);
//! - [`mcfg`]: the ACPI MCFG (PCI Express ECAM windows), read next to the MADT in early boot,
//!   its entries validated by our own parser (the crate's entry count underflows on a short
//!   table);
//! - [`cpus`]: [`CpuTable`], the logical CPU numbering (boot CPU first) over hardware IDs,
//!   limited to what the kernel supports, saying what it left out;
//! - [`calls`]: [`CallBoard`], cross-CPU function calls as per-(target, sender) mailboxes that
//!   an IPI tells the target to drain.
//!
//! The boards do the hardware part (trampolines, INIT-SIPI-SIPI, PSCI, IPIs); this crate is
//! host-tested, including against malformed tables, and the call mailboxes are model-checked
//! with loom (`tests/loom.rs`, atomics swapped in through `sync`).
#![no_std]

#[cfg(test)]
extern crate std;

pub mod calls;
pub mod cpus;
pub mod madt;
pub mod mcfg;
mod sync;

pub use calls::{CallBoard, CallError};
pub use cpus::{CpuTable, MAX_CPUS};
