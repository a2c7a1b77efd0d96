//! # `rhea-sched` — layer 3: scheduling policy
//!
//! The whole scheduling policy of Rhea as a hardware-free state machine, [`Sched`], unit- and
//! property-tested on the host. The kernel keeps one `Sched` behind the scheduler lock (an
//! interrupt-disabling spin lock, see `runtime/src/kthread.rs`), calls its operations
//! with the current time, and carries out what they decide: which thread runs next on a CPU,
//! when that CPU's one-shot timer must fire, which CPUs must reschedule.
//!
//! What it owns:
//! - [`Thread`]s (shared as `Arc<Thread>`) with a name, a base and an effective [`Priority`],
//!   an affinity [`CpuSet`], an optional round-robin time slice, and a state;
//! - per-CPU run queues: a 64-bit priority bitmap and one intrusive FIFO list per level
//!   (`intrusive-collections`), so picking the next thread is O(1);
//! - per-CPU sleep queues (an intrusive red-black tree keyed by deadline), which make the
//!   kernel tickless: a CPU's timer is armed for its earliest deadline or slice end only;
//! - sync objects: wait queues ordered by priority (FIFO within a level), mutexes with
//!   transitive priority inheritance and hand-off, counting semaphores, event flags;
//! - an invariant checker the tests run after every operation.
//!
//! Priorities: **a larger number is more important** (`rhea_hal::Priority`); level 0 is idle.
//!
//! Bounds (`// RT:`): picking, waking and timer expiry are O(1) or O(log n) in the number of
//! threads, except wait-queue insertion (O(waiters)) and priority-inheritance propagation
//! (O(length of the blocking chain)), both bounded by the thread count. Nothing here
//! allocates except creating threads and sync objects.
//!
//! No `unsafe` except in [`lists`], where removing a known element from the middle of an
//! intrusive list needs a pointer the list cannot check.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

mod cpuset;
mod error;
mod lists;
mod observe;
mod sched;
mod thread;

#[cfg(test)]
mod tests;

pub use cpuset::CpuSet;
pub use error::SchedError;
pub use observe::{BlockOn, LeftAs, Observer, PrioCause, SchedEvent};
pub use rhea_hal::{Instant, Priority};
pub use sched::{
    Decision, EventWait, ObjectId, RunState, Sched, SpawnParams, Switch, ThreadState, WakeReason,
};
pub use thread::{Accounts, BlockedNs, Thread, ThreadId};

/// The most CPUs a [`Sched`] manages (the width of [`CpuSet`]).
pub const MAX_CPUS: usize = 64;

/// The most mutexes one thread may hold at once (priority inheritance keeps them inline).
pub const MAX_HELD_MUTEXES: usize = 8;
