//! The one place [`crate::pool`]'s atomics come from: `core` in every real build, `loom`'s
//! instrumented versions under `--cfg loom` so the model checker sees every access
//! (`tests/loom.rs`). The heap does not use them: its lock serialises everything.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
