//! What the policy tells an observer as it happens: wake-ups, blocking, priority changes
//! (inheritance with its chain), thread creation and exit. The kernel's observer keeps the
//! per-thread accounts and writes trace records (`runtime/src/trace.rs`); the tests' observer
//! records the sequence. Called under the scheduler lock, so an observer must be short and
//! must not call back into the scheduler.

use crate::WakeReason;
use crate::thread::{Thread, ThreadId};
use rhea_hal::Priority;

/// What a thread blocked on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockOn {
    /// A priority-inheritance mutex.
    Mutex,
    /// A counting semaphore.
    Semaphore,
    /// A wait queue (condition variable, join, message queue).
    Queue,
    /// Event flags.
    Events,
    /// A sleep until a deadline.
    Sleep,
}

/// Why an effective priority changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrioCause {
    /// The thread's base priority was set.
    Set,
    /// Raised by inheritance from a waiter.
    Boost,
    /// Lowered as inheritance ended (a mutex released, a waiter gone or lowered).
    Restore,
}

/// One thing that happened.
#[derive(Clone, Copy, Debug)]
pub enum SchedEvent<'a> {
    /// `thread` became ready (or, asked to suspend meanwhile, was parked).
    Wake {
        /// The thread.
        thread: &'a Thread,
        /// Why (`WakeReason::None`: spawned or resumed).
        why: WakeReason,
    },
    /// The running `thread` blocked.
    Block {
        /// The thread.
        thread: &'a Thread,
        /// On what.
        on: BlockOn,
        /// The object's raw id (0 for a sleep).
        object: u64,
    },
    /// `thread`'s effective priority changed from `old` to `new`.
    Prio {
        /// The thread.
        thread: &'a Thread,
        /// Before.
        old: Priority,
        /// After.
        new: Priority,
        /// Why.
        cause: PrioCause,
        /// The waiter it inherits from now (boosts), if any.
        by: Option<ThreadId>,
        /// The link in the inheritance chain: 0 the thread the operation touched, 1 the owner
        /// of the mutex it waits on, and so on.
        depth: u32,
    },
    /// A thread was created (idle threads too).
    Create {
        /// The thread.
        thread: &'a Thread,
        /// Its base priority.
        priority: Priority,
    },
    /// The running `thread` exited with `code`.
    Exit {
        /// The thread.
        thread: &'a Thread,
        /// Its exit code.
        code: i32,
    },
}

/// Receives [`SchedEvent`]s (see [`crate::Sched::set_observer`]).
pub trait Observer: Sync {
    /// One event, under the scheduler lock.
    fn event(&self, e: SchedEvent<'_>);
}

/// How a thread left its CPU at a switch ([`crate::Sched::last_left`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeftAs {
    /// Preempted by a more important thread (or moved off a CPU it may no longer use); it
    /// keeps its place at the head of its level.
    Preempted,
    /// It yielded to an equal.
    Yielded,
    /// Its round-robin slice ended.
    SliceEnded,
    /// Blocked on an object or asleep.
    Blocked,
    /// Suspended.
    Suspended,
    /// Exited.
    Exited,
    /// A CPU's idle thread.
    Idle,
}
