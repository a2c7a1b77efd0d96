//! The one place [`calls`](crate::calls) takes its atomics from: `core` in every real build,
//! loom's instrumented versions under `--cfg loom`, so the model checker (`tests/loom.rs`) sees
//! every access of the post/drain/wait protocol.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
