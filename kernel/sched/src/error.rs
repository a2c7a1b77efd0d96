//! Errors of scheduling and synchronisation operations.

use core::fmt;

/// Why an operation was refused. Each is the caller's mistake or a resource limit; none leaves
/// the scheduler changed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SchedError {
    /// No thread with this id (never existed, or exited and was reaped).
    NoSuchThread,
    /// No sync object with this id, or one of another kind.
    NoSuchObject,
    /// The affinity mask names no online CPU.
    NoUsableCpu,
    /// The thread already holds this mutex.
    AlreadyOwner,
    /// The thread does not hold this mutex.
    NotOwner,
    /// Locking would close a cycle of threads waiting for each other's mutexes.
    Deadlock,
    /// The thread holds [`crate::MAX_HELD_MUTEXES`] mutexes already.
    TooManyMutexes,
    /// The object still has waiters or an owner and cannot be destroyed.
    Busy,
    /// A semaphore would exceed its maximum count.
    Overflow,
    /// The operation needs a blocking context but was asked of the idle thread or a
    /// thread that cannot block.
    WouldBlockIdle,
    /// Joining a thread that is itself, or already joined or detached.
    BadJoin,
    /// The operation is not allowed on an idle thread (suspend, resume, priority, affinity,
    /// join, detach).
    IdleThread,
    /// Priority 0 belongs to the idle threads; no other thread may take it.
    BadPriority,
    /// The caller would block or suspend itself with interrupts disabled (it holds an
    /// interrupt-disabling spin lock, or runs in an interrupt handler).
    AtomicContext,
}

impl fmt::Display for SchedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoSuchThread => "no such thread",
            Self::NoSuchObject => "no such synchronisation object",
            Self::NoUsableCpu => "the affinity mask names no online CPU",
            Self::AlreadyOwner => "the thread already holds this mutex",
            Self::NotOwner => "the thread does not hold this mutex",
            Self::Deadlock => "locking would deadlock",
            Self::TooManyMutexes => "the thread holds too many mutexes",
            Self::Busy => "the object has waiters or an owner",
            Self::Overflow => "semaphore count overflow",
            Self::WouldBlockIdle => "the idle thread cannot block",
            Self::BadJoin => "the thread cannot be joined",
            Self::IdleThread => "not allowed on an idle thread",
            Self::BadPriority => "priority 0 is reserved for the idle threads",
            Self::AtomicContext => {
                "cannot block or suspend itself with interrupts disabled (spin lock held or in an interrupt handler)"
            }
        })
    }
}
