//! # `rhea-irq` — layer 2: interrupt dispatch
//!
//! This crate owns what happens between a vector being raised and a handler running: the
//! vector plan every architecture follows, and the registry that maps vectors to handlers (fast
//! handlers and threaded ones whose thread the scheduler wakes). The interrupt controllers
//! themselves are hardware and live with the platforms: the x86 LAPIC, I/O APIC and 8259 in
//! `rhea-board-common-x86`, the GIC in `rhea-board-common-arm`, Xen's event channels in the
//! Xen boards.
//!
//! No `unsafe`, no `cfg(target_arch)`, no allocation; host-tested, the registry model-checked
//! with loom.
//!
//! May depend on: `rhea-hal` (contracts), `spin` (`Once`). Must not depend on: the scheduler
//! (it registers an [`IrqThreadWaker`] instead), the runtime, `rhea-arch`, any board.
//!
//! Map:
//! - [`vectors`]: the vector plan and [`Vector`];
//! - [`registry`]: [`IrqRegistry`] — registration at any time, lock-free O(1) dispatch,
//!   per-vector statistics, the reschedule signal; model-checked with loom (`tests/loom.rs`),
//!   its atomics and `Once` taken from `sync`.
#![cfg_attr(not(test), no_std)]
// Under `--cfg loom` only, `sync` holds a model-only `Once` that needs `unsafe` (allowed there);
// every real build forbids it.
#![cfg_attr(not(loom), forbid(unsafe_code))]
#![cfg_attr(loom, deny(unsafe_code))]

pub mod registry;
mod sync;
pub mod vectors;

pub use registry::{
    Dispatch, IrqHandler, IrqRegistry, IrqThreadWaker, RegistryError, Reschedule, TopHalf,
};
pub use vectors::Vector;
