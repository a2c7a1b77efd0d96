//! The buffer's atomics: `core`'s in every real build, loom's under `--cfg loom` so the model
//! checker sees every access.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
