//! Threads as the scheduler sees them.

use crate::observe::BlockOn;
use alloc::string::String;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use intrusive_collections::{LinkedListAtomicLink, RBTreeAtomicLink};

/// A thread's identity: a slot index and a generation, so a stale id never names a newer
/// thread in the same slot.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ThreadId(u64);

impl ThreadId {
    pub(crate) const fn new(index: u32, generation: u32) -> Self {
        Self(((generation as u64) << 32) | index as u64)
    }

    pub(crate) const fn index(self) -> usize {
        self.0 as u32 as usize
    }

    /// The raw value (for traces and statistics).
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// A non-zero word naming this thread with bit 63 clear, for a lock-free owner word
    /// (a mutex's fast path keeps bit 63 for itself): the slot index plus one, and the low 31
    /// bits of the generation. Two threads alive at once never share a tag (they have
    /// different slots); a stale tag names a thread of its slot only after 2^31 reuses of it.
    pub const fn fast_tag(self) -> u64 {
        let index = self.0 as u32 as u64;
        let generation = (self.0 >> 32) & 0x7fff_ffff;
        (generation << 32) | (index + 1)
    }
}

impl fmt::Debug for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "T{}.{}", self.0 as u32, self.0 >> 32)
    }
}

/// A thread: identity, name, the links that put it on run, wait and sleep queues, and the
/// architecture's saved context. Its scheduling state lives in the [`crate::Sched`] that owns
/// it, behind the scheduler lock.
pub struct Thread {
    id: AtomicU64,
    name: String,
    /// A kernel service (idle, an interrupt's thread, a driver's, the network's): operators'
    /// tools (the shell) refuse to suspend it or change its priority or CPUs.
    kernel: AtomicBool,
    /// On a run queue or on a wait queue (never both).
    pub(crate) run_link: LinkedListAtomicLink,
    /// On a CPU's sleep queue.
    pub(crate) sleep_link: RBTreeAtomicLink,
    /// The sleep-queue key while on it (written under the scheduler lock before insertion).
    pub(crate) sleep_deadline: AtomicU64,
    /// The saved stack pointer while the thread is not running (the architecture's context
    /// switch reads and writes it; opaque here).
    pub context: AtomicUsize,
    /// `[bottom, top)` of the thread's kernel stack, for the kernel that owns it.
    pub stack: core::ops::Range<u64>,
    /// How many mutexes the thread holds, those taken on a lock-free fast path included (the
    /// scheduler's own record has only those it handled). Kept by the kernel's mutex; only the
    /// thread itself changes it.
    pub mutexes_held: AtomicU32,
    /// Nanoseconds it has run on a CPU (its finished slices; [`Thread::account`]).
    run_ns: AtomicU64,
    /// Of those, nanoseconds the hypervisor took from the CPU it ran on (steal time).
    stolen_ns: AtomicU64,
    /// Its other accounts ([`Accounts`]), kept by the kernel under the scheduler lock.
    acct: Acct,
}

/// The per-thread accounts the kernel keeps always (a few relaxed stores per event). Written
/// under the scheduler lock only; read by anyone.
#[derive(Debug, Default)]
struct Acct {
    switches_in: AtomicU64,
    switches_out: AtomicU64,
    wakeups: AtomicU64,
    max_wake_latency_ns: AtomicU64,
    /// When it was last made ready and has not run since (`u64::MAX`: not waiting to run).
    woken_at: AtomicU64,
    /// When it last blocked (`u64::MAX`: not blocked) and on what ([`BlockOn`] as index).
    blocked_at: AtomicU64,
    blocked_on: AtomicU64,
    blocked_ns: [AtomicU64; 5],
}

/// A thread's accounts: how often it ran and woke, how long it waited to run once woken, and
/// how long it spent blocked on each kind of object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accounts {
    /// Times a CPU switched to it.
    pub switches_in: u64,
    /// Times a CPU switched away from it.
    pub switches_out: u64,
    /// Times it was made ready after blocking (or at its start or resumption).
    pub wakeups: u64,
    /// The longest it waited between being made ready and running (ns).
    pub max_wake_latency_ns: u64,
    /// Nanoseconds blocked, per kind of object.
    pub blocked_ns: BlockedNs,
}

/// Nanoseconds a thread spent blocked, per kind of object (finished waits only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockedNs {
    /// On mutexes.
    pub mutex: u64,
    /// On semaphores.
    pub semaphore: u64,
    /// On wait queues (condition variables, joins, message queues).
    pub queue: u64,
    /// On event flags.
    pub events: u64,
    /// Asleep.
    pub sleep: u64,
}

impl fmt::Debug for Thread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Thread({:?} '{}')", self.id(), self.name)
    }
}

impl Thread {
    /// A thread not yet known to any scheduler; [`crate::Sched::spawn`] gives it its id.
    pub fn new(name: String, stack: core::ops::Range<u64>) -> Self {
        Self {
            id: AtomicU64::new(u64::MAX),
            name,
            kernel: AtomicBool::new(false),
            run_link: LinkedListAtomicLink::new(),
            sleep_link: RBTreeAtomicLink::new(),
            sleep_deadline: AtomicU64::new(u64::MAX),
            context: AtomicUsize::new(0),
            stack,
            mutexes_held: AtomicU32::new(0),
            run_ns: AtomicU64::new(0),
            stolen_ns: AtomicU64::new(0),
            acct: Acct {
                woken_at: AtomicU64::new(u64::MAX),
                blocked_at: AtomicU64::new(u64::MAX),
                ..Acct::default()
            },
        }
    }

    /// Its id (meaningless before spawn).
    pub fn id(&self) -> ThreadId {
        ThreadId(self.id.load(Ordering::Relaxed))
    }

    pub(crate) fn set_id(&self, id: ThreadId) {
        self.id.store(id.0, Ordering::Relaxed);
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Marks it a kernel service thread (before it is spawned).
    pub fn set_kernel(&self) {
        self.kernel.store(true, Ordering::Relaxed);
    }

    /// Whether it is a kernel service thread.
    pub fn is_kernel(&self) -> bool {
        self.kernel.load(Ordering::Relaxed)
    }

    /// Adds a finished slice: `ran` ns on a CPU, of which the hypervisor stole `stolen` (more
    /// is taken as all of it). Called by the CPU that ran it, as it switches away; only that
    /// CPU writes, anyone reads.
    pub fn account(&self, ran: u64, stolen: u64) {
        self.run_ns.fetch_add(ran, Ordering::Relaxed);
        self.stolen_ns.fetch_add(stolen.min(ran), Ordering::Relaxed);
    }

    /// Nanoseconds it has run, up to its last switch away (steal included).
    pub fn run_ns(&self) -> u64 {
        self.run_ns.load(Ordering::Relaxed)
    }

    /// Nanoseconds of [`Thread::run_ns`] the hypervisor stole.
    pub fn stolen_ns(&self) -> u64 {
        self.stolen_ns.load(Ordering::Relaxed)
    }

    /// Its accounts so far.
    pub fn accounts(&self) -> Accounts {
        let a = &self.acct;
        let r = |x: &AtomicU64| x.load(Ordering::Relaxed);
        Accounts {
            switches_in: r(&a.switches_in),
            switches_out: r(&a.switches_out),
            wakeups: r(&a.wakeups),
            max_wake_latency_ns: r(&a.max_wake_latency_ns),
            blocked_ns: BlockedNs {
                mutex: r(&a.blocked_ns[0]),
                semaphore: r(&a.blocked_ns[1]),
                queue: r(&a.blocked_ns[2]),
                events: r(&a.blocked_ns[3]),
                sleep: r(&a.blocked_ns[4]),
            },
        }
    }

    /// Accounts a block at `now` on `on` (by the kernel, under the scheduler lock).
    pub fn note_block(&self, now: u64, on: BlockOn) {
        let a = &self.acct;
        a.blocked_at.store(now, Ordering::Relaxed);
        let i = match on {
            BlockOn::Mutex => 0,
            BlockOn::Semaphore => 1,
            BlockOn::Queue => 2,
            BlockOn::Events => 3,
            BlockOn::Sleep => 4,
        };
        a.blocked_on.store(i, Ordering::Relaxed);
    }

    /// Accounts a wake-up at `now` (under the scheduler lock): ends the blocked time, starts
    /// the wait to run.
    pub fn note_wake(&self, now: u64) {
        let a = &self.acct;
        a.wakeups.fetch_add(1, Ordering::Relaxed);
        let since = a.blocked_at.swap(u64::MAX, Ordering::Relaxed);
        if since != u64::MAX {
            let i = a.blocked_on.load(Ordering::Relaxed) as usize;
            a.blocked_ns[i.min(4)].fetch_add(now.saturating_sub(since), Ordering::Relaxed);
        }
        a.woken_at.store(now, Ordering::Relaxed);
    }

    /// Accounts a switch to it at `now`; returns how long it waited to run since it was made
    /// ready, if it was.
    pub fn note_switch_in(&self, now: u64) -> Option<u64> {
        let a = &self.acct;
        a.switches_in.fetch_add(1, Ordering::Relaxed);
        let woken = a.woken_at.swap(u64::MAX, Ordering::Relaxed);
        (woken != u64::MAX).then(|| {
            let waited = now.saturating_sub(woken);
            a.max_wake_latency_ns.fetch_max(waited, Ordering::Relaxed);
            waited
        })
    }

    /// Accounts a switch away from it.
    pub fn note_switch_out(&self) {
        self.acct.switches_out.fetch_add(1, Ordering::Relaxed);
    }
}
