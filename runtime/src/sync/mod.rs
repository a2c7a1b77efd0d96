//! Synchronisation for apps and drivers.
//!
//! - [`SpinLock`]: a spin lock whose type says what it disables — [`IrqsOff`] (usable from
//!   interrupt handlers; also keeps the holder from being preempted) or [`NothingOff`] (thread
//!   context only; a holder can be preempted, so keep sections tiny) — the kernel's one lock
//!   family (`rhea-sync`, bound to the CPU in `rhea_arch::sync`), and [`IrqGuard`], a scope
//!   with interrupts off;
//! - [`Mutex`] / [`RawMutex`]: sleeping locks with **transitive priority inheritance** and
//!   direct hand-off to the most important waiter;
//! - [`Semaphore`]: counting; `give` and `try_take` work from interrupt handlers;
//! - [`Condvar`]: with a [`Mutex`];
//! - [`EventFlags`]: 32 flags, wait for any or all; `set` works from interrupt handlers;
//! - [`MessageQueue`]: bounded (`MessageQueue<T, N>`, the `N` slots inline: nothing is
//!   allocated, usable in a `static`), blocking / try / timeout; `try_send` works from
//!   interrupt handlers;
//! - [`BlockPool`]: fixed-size memory blocks carved once; [`BlockPool::try_alloc`] and freeing
//!   (dropping the [`Block`]) are O(1), lock-free and work from interrupt handlers;
//!   [`BlockPool::alloc_timeout`] waits for a block.
//!
//! The sleeping objects are registered with the scheduler on first use (so they can be
//! `static`). While no thread waits on a semaphore, a mutex or event flags, their state is one
//! word in the object, updated without the scheduler lock (`fast.rs`); when a thread must wait
//! it moves under the scheduler lock (a `SLOW` bit), where priority order, inheritance,
//! timeouts and suspension are handled, and moves back when an operation finds no waiter.

mod condvar;
mod events;
mod fast;
mod mutex;
mod object;
mod pool;
mod queue;
mod semaphore;

pub use condvar::Condvar;
pub use events::{EventFlags, WaitMode};
pub use mutex::{Mutex, MutexGuard, RawMutex};
pub use pool::{Block, BlockPool, PoolError};
pub use queue::MessageQueue;
pub use rhea_arch::sync::{IrqGuard, IrqsOff, LockMode, NothingOff, SpinLock, SpinLockGuard};
pub use rhea_sched::SchedError;
pub use semaphore::Semaphore;

use core::fmt;

/// Why a blocking synchronisation call failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SyncError {
    /// The timeout passed first.
    Timeout,
    /// `try_` variant: not available right now.
    WouldBlock,
    /// The mutex's previous owner exited while holding it (the data may be inconsistent; the
    /// caller now owns the mutex).
    Abandoned,
    /// The scheduler refused (already owner, not owner, deadlock, overflow, ...).
    Sched(SchedError),
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out"),
            Self::WouldBlock => f.write_str("would block"),
            Self::Abandoned => f.write_str("the previous owner exited while holding the mutex"),
            Self::Sched(e) => write!(f, "{e}"),
        }
    }
}

impl From<SchedError> for SyncError {
    fn from(e: SchedError) -> Self {
        Self::Sched(e)
    }
}

fn deadline_of(timeout: Option<crate::time::Duration>) -> Option<rhea_hal::Instant> {
    timeout.map(|d| crate::time::now().saturating_add(d))
}
