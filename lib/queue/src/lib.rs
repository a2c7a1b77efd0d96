//! # `rhea-queue` — lock-free bounded queues between interrupt handlers and threads
//!
//! Two queues, both bounded, both with storage allocated once at creation and never again, and
//! neither of which ever waits for another CPU or thread:
//! - [`spsc`]: a single-producer/single-consumer ring split into a [`spsc::Producer`] and a
//!   [`spsc::Consumer`] — the common driver case (an interrupt top half pushes, the driver's or
//!   the network thread pops);
//! - [`mpmc`]: a multi-producer/multi-consumer array queue shared by reference — for several
//!   driver threads feeding the network thread.
//!
//! "Full" is never waited out: `push` hands the item back in [`Full`], and the caller drops it
//! and counts it ([`Dropped::count_full`]) or applies backpressure upstream (a thread may
//! retry later; an interrupt handler must not spin). When dropping happens in interrupt
//! context, `T` should own nothing whose drop frees memory (the heap lock is never taken in
//! IRQ context): queue buffer indices or descriptors, not `Box`es.
//!
//! ## Why hand-written
//!
//! We looked at the usual crates before writing ~400 lines:
//! - `crossbeam-queue`'s `ArrayQueue` is `no_std` + `alloc` and has a run-time capacity, but its
//!   `push` and `pop` spin (`Backoff::snooze`) while another thread is between claiming a slot
//!   and publishing it. If that other party is the thread an interrupt handler interrupted on
//!   the same CPU, the handler spins forever. It also cannot be model-checked from outside:
//!   its loom support is crossbeam's own internal `crossbeam_loom` cfg.
//! - `heapless::spsc::Queue` is `no_std` and lock-free, but its capacity is a const generic,
//!   its split handles borrow the queue (so it must live in a `static`), it re-reads the other
//!   side's index on every operation (no cached indices), and it uses `core` atomics directly,
//!   so loom cannot check it. `heapless::mpmc` is Vyukov's queue with a const capacity and
//!   8-bit sequence numbers by default (a preempted thread can be lapped and see an old
//!   sequence number again, which the `usize` counters here make impossible in practice).
//!
//! So both queues here are our own: small, with `sync` indirection (`src/sync.rs`) so that
//! `--cfg loom` swaps every atomic and every slot cell for loom's instrumented versions, and
//! the same code is model-checked (`tests/loom.rs`), property-tested against a `VecDeque`
//! (`tests/model.rs`) and stress-tested across threads (`tests/stress.rs`).
//!
//! `unsafe` is confined to reading and writing slots (each with its `// SAFETY:` argument) and
//! to the `Send`/`Sync` impls that let the handles cross threads.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod mpmc;
pub mod spsc;
mod sync;

use core::fmt;

use crate::sync::{AtomicU64, Ordering};

/// A `push` found the queue full: the item is handed back, for the caller to drop and count
/// (see [`Dropped`]) or to keep for a later retry.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Full<T>(pub T);

impl<T> Full<T> {
    /// The item that was not queued.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Full(..)")
    }
}

impl<T> fmt::Display for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("queue full")
    }
}

/// A counter of items dropped because a queue was full: "full means drop-and-count".
///
/// Safe to bump from interrupt context and to read from anywhere (one relaxed atomic add: the
/// count orders nothing else).
#[derive(Debug, Default)]
pub struct Dropped(AtomicU64);

impl Dropped {
    /// A counter at zero (`const`, so it can be a `static` beside the queue it counts).
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// A counter at zero.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Counts one dropped item.
    pub fn record(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Settles a `push` result: `true` if the item was queued; otherwise drops the item,
    /// counts it and returns `false`.
    ///
    /// ```no_run
    /// // (`no_run`: doctests also build under `--cfg loom`, where queues exist only inside a
    /// // model; the unit test `dropped_counts_full_pushes` runs the same lines.)
    /// let (mut tx, _rx) = rhea_queue::spsc::ring::<u32>(2);
    /// let dropped = rhea_queue::Dropped::new();
    /// assert!(dropped.count_full(tx.push(1)));
    /// assert!(dropped.count_full(tx.push(2)));
    /// assert!(!dropped.count_full(tx.push(3)));
    /// assert_eq!(dropped.get(), 1);
    /// ```
    pub fn count_full<T>(&self, pushed: Result<(), Full<T>>) -> bool {
        match pushed {
            Ok(()) => true,
            Err(Full(item)) => {
                drop(item);
                self.record();
                false
            }
        }
    }

    /// How many items were dropped so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Returns the count and resets it to zero (for per-interval reports).
    pub fn take(&self) -> u64 {
        self.0.swap(0, Ordering::Relaxed)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn dropped_counts_full_pushes() {
        let (mut tx, _rx) = spsc::ring::<u32>(2);
        let dropped = Dropped::new();
        assert!(dropped.count_full(tx.push(1)));
        assert!(dropped.count_full(tx.push(2)));
        assert!(!dropped.count_full(tx.push(3)));
        assert!(!dropped.count_full(tx.push(4)));
        assert_eq!(dropped.get(), 2);
        assert_eq!(dropped.take(), 2);
        assert_eq!(dropped.get(), 0);
    }
}
