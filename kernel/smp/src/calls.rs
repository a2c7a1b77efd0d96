//! Cross-CPU function calls: CPU `s` asks CPUs `T` to run `f(arg)` and waits until all have.
//!
//! Each sender has one slot (function, argument) and a mask of targets that have not finished;
//! each target has a mask of senders whose call waits for it. Posting fills the slot, sets the
//! masks (release) and leaves it to the caller to send the IPIs; a target drains its mask
//! (acquire) in its IPI handler, runs each call, and clears its bit in the sender's mask
//! (release). A sender has at most one call in flight, so its slot is not rewritten before
//! every target has read it. A waiting sender keeps draining its own mask, so two CPUs that
//! call each other with interrupts disabled both make progress.
//!
//! Hand-written because it is a handful of atomics whose protocol is specific to this IPI
//! scheme; no crate offers it without allocation. Host-tested with one thread per "CPU", and
//! model-checked with loom (`tests/loom.rs`: every interleaving of two and three CPUs calling
//! one another, within a preemption bound), the atomics coming from `crate::sync`.
#![allow(
    unsafe_code,
    reason = "a function pointer travels through an AtomicUsize; the one use has a SAFETY note"
)]

use crate::cpus::MAX_CPUS;
use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// Why a call could not be posted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CallError {
    /// This CPU already has a call in flight (a call from an interrupt handler that
    /// interrupted one).
    Busy,
    /// The sender or a target is not a CPU index below [`MAX_CPUS`], or the targets name the
    /// sender itself.
    BadTarget,
}

impl core::fmt::Display for CallError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Busy => f.write_str("this CPU already waits for a cross-CPU call"),
            Self::BadTarget => {
                f.write_str("cross-CPU call to a CPU that does not exist or to itself")
            }
        }
    }
}

#[derive(Debug)]
struct Slot {
    func: AtomicUsize,
    arg: AtomicUsize,
    /// Targets that have not run the call yet.
    outstanding: AtomicU64,
}

/// The call mailboxes of every CPU.
#[derive(Debug)]
pub struct CallBoard {
    slots: [Slot; MAX_CPUS],
    /// Per target: senders whose call waits for it.
    pending: [AtomicU64; MAX_CPUS],
}

impl Default for CallBoard {
    fn default() -> Self {
        Self::new()
    }
}

impl CallBoard {
    /// Empty mailboxes (`const`: the kernel keeps them in a `static`).
    #[cfg(not(loom))]
    pub const fn new() -> CallBoard {
        CallBoard {
            slots: [const {
                Slot {
                    func: AtomicUsize::new(0),
                    arg: AtomicUsize::new(0),
                    outstanding: AtomicU64::new(0),
                }
            }; MAX_CPUS],
            pending: [const { AtomicU64::new(0) }; MAX_CPUS],
        }
    }

    /// Empty mailboxes (loom's atomics have no `const` constructor).
    #[cfg(loom)]
    pub fn new() -> CallBoard {
        CallBoard {
            slots: core::array::from_fn(|_| Slot {
                func: AtomicUsize::new(0),
                arg: AtomicUsize::new(0),
                outstanding: AtomicU64::new(0),
            }),
            pending: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Posts `f(arg)` from CPU `me` to every CPU in the mask `targets`. The caller then sends
    /// each target an IPI and waits with [`CallBoard::outstanding`] while running
    /// [`CallBoard::run_pending`].
    pub fn post(&self, me: usize, targets: u64, f: fn(usize), arg: usize) -> Result<(), CallError> {
        if me >= MAX_CPUS || targets & (1 << me) != 0 {
            return Err(CallError::BadTarget);
        }
        let slot = &self.slots[me];
        if slot.outstanding.load(Ordering::Acquire) != 0 {
            return Err(CallError::Busy);
        }
        if targets == 0 {
            return Ok(());
        }
        slot.func.store(f as usize, Ordering::Relaxed);
        slot.arg.store(arg, Ordering::Relaxed);
        slot.outstanding.store(targets, Ordering::Release);
        let mut t = targets;
        while t != 0 {
            let target = t.trailing_zeros() as usize;
            t &= t - 1;
            // Release: the target that sees this bit sees the slot written above.
            self.pending[target].fetch_or(1 << me, Ordering::Release);
        }
        Ok(())
    }

    /// The targets of `me`'s call that have not finished it.
    pub fn outstanding(&self, me: usize) -> u64 {
        self.slots
            .get(me)
            .map_or(0, |s| s.outstanding.load(Ordering::Acquire))
    }

    /// Runs every call waiting for CPU `me`; returns how many ran. Called from the call IPI's
    /// handler and by waiting senders.
    pub fn run_pending(&self, me: usize) -> usize {
        let Some(pending) = self.pending.get(me) else {
            return 0;
        };
        let mut senders = pending.swap(0, Ordering::Acquire);
        let mut ran = 0;
        while senders != 0 {
            let sender = senders.trailing_zeros() as usize;
            senders &= senders - 1;
            let slot = &self.slots[sender];
            let func = slot.func.load(Ordering::Relaxed);
            let arg = slot.arg.load(Ordering::Relaxed);
            // Under loom, a slot read before its post (a missing acquire/release edge) is
            // reported here rather than by calling address 0.
            #[cfg(loom)]
            assert_ne!(
                func, 0,
                "CPU {me} read sender {sender}'s slot before it was posted"
            );
            // SAFETY: `post` stored a `fn(usize)` in this slot before setting our pending bit
            // (release, paired with the acquire swap above), and does not rewrite the slot
            // until every target, us included, has cleared its bit below.
            let f: fn(usize) = unsafe { core::mem::transmute::<usize, fn(usize)>(func) };
            f(arg);
            slot.outstanding.fetch_and(!(1 << me), Ordering::Release);
            ran += 1;
        }
        ran
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::vec::Vec;

    static HITS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

    fn count(cpu: usize) {
        HITS[cpu].fetch_add(1, Ordering::Relaxed);
    }

    #[test]
    fn post_checks_its_arguments() {
        let b = CallBoard::new();
        assert_eq!(b.post(0, 1, count, 0), Err(CallError::BadTarget));
        assert_eq!(b.post(64, 1, count, 0), Err(CallError::BadTarget));
        assert_eq!(b.post(0, 0, count, 0), Ok(()));
        assert_eq!(b.post(0, 0b10, count, 0), Ok(()));
        assert_eq!(b.post(0, 0b100, count, 0), Err(CallError::Busy));
        assert_eq!(b.outstanding(0), 0b10);
        assert_eq!(b.run_pending(2), 0);
        assert_eq!(b.run_pending(1), 1);
        assert_eq!(b.outstanding(0), 0);
        assert_eq!(b.run_pending(1), 0);
    }

    /// Four "CPUs" as threads, each repeatedly calling all others and one other while serving
    /// calls: every call runs exactly once on its target, nobody deadlocks.
    #[test]
    fn threads_calling_each_other() {
        const CPUS: usize = 4;
        const ROUNDS: usize = 300;
        static RAN: [[AtomicU64; CPUS]; CPUS] =
            [const { [const { AtomicU64::new(0) }; CPUS] }; CPUS];
        fn record(packed: usize) {
            let (sender, target) = (packed >> 8, packed & 0xff);
            RAN[sender][target].fetch_add(1, Ordering::Relaxed);
        }
        let board = Arc::new(CallBoard::new());
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handles: Vec<_> = (0..CPUS)
            .map(|me| {
                let (board, done, stop) = (board.clone(), done.clone(), stop.clone());
                std::thread::spawn(move || {
                    for round in 0..ROUNDS {
                        let all = ((1u64 << CPUS) - 1) & !(1 << me);
                        let one = 1u64 << ((me + 1 + round % (CPUS - 1)) % CPUS);
                        for targets in [all, one] {
                            // Each target records itself: `record` reads the target from the
                            // argument, so post one call per target to check where it ran.
                            let mut t = targets;
                            while t != 0 {
                                let target = t.trailing_zeros() as usize;
                                t &= t - 1;
                                board
                                    .post(me, 1 << target, record, (me << 8) | target)
                                    .unwrap();
                                while board.outstanding(me) != 0 {
                                    board.run_pending(me);
                                    std::thread::yield_now();
                                }
                            }
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                    while !stop.load(Ordering::Relaxed) {
                        board.run_pending(me);
                        std::thread::yield_now();
                    }
                })
            })
            .collect();
        while done.load(Ordering::Relaxed) < CPUS as u64 {
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().unwrap();
        }
        for (s, row) in RAN.iter().enumerate() {
            for (t, n) in row.iter().enumerate() {
                let expect = if s == t {
                    0
                } else {
                    // every round: once in the broadcast, plus the rounds where it was "one".
                    let ones = (0..ROUNDS)
                        .filter(|r| (s + 1 + r % (CPUS - 1)) % CPUS == t)
                        .count();
                    (ROUNDS + ones) as u64
                };
                assert_eq!(n.load(Ordering::Relaxed), expect, "sender {s} target {t}");
            }
        }
    }

    #[test]
    fn broadcast_runs_once_per_target() {
        let b = CallBoard::new();
        b.post(3, 0b0111, count, 5).unwrap();
        let before = HITS[5].load(Ordering::Relaxed);
        for cpu in 0..3 {
            assert_eq!(b.run_pending(cpu), 1);
        }
        assert_eq!(HITS[5].load(Ordering::Relaxed) - before, 3);
        assert_eq!(b.outstanding(3), 0);
    }
}
