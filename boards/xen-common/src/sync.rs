//! The one place the shared-info types and the event-channel tables take their atomics from:
//! `core` in every real build, loom's instrumented versions under `--cfg loom`, so the model
//! checker (`tests/loom.rs`) sees every access of the upcall demux and of the simulated Xen
//! that races it.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
