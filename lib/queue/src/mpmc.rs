//! A bounded multi-producer/multi-consumer array queue (Dmitry Vyukov's design).
//!
//! [`Queue::new`] allocates `capacity` slots (a power of two, at least 2) once. `push` and
//! `pop` take `&self`, so the queue is shared by reference (an `Arc`, or a `static` set up at
//! boot); any number of threads and interrupt handlers may push and pop at once.
//!
//! ## Design
//!
//! Each slot carries a sequence number next to its value. Two counters, `tail` (next push
//! position) and `head` (next pop position), count up forever; position `p` maps to slot
//! `p & (capacity - 1)`. A slot's sequence number says whose turn it is:
//! - `seq == p`: empty and ready for the push at position `p`;
//! - `seq == p + 1`: holds the item pushed at position `p`, ready for the pop at `p`;
//! - after that pop, `seq = p + capacity`: ready for the push one lap later.
//!
//! A pusher reads `tail` = `p` and the slot's `seq`. If `seq == p` it claims `p` by moving
//! `tail` from `p` to `p + 1` with a compare-exchange (losing means another pusher took it:
//! retry with the new `tail`), writes the value, and publishes it by storing `seq = p + 1` with
//! `Release`. If `seq < p` the slot still holds (or is having popped) the item from the
//! previous lap: the queue is full, and `push` returns [`Full`] at once. If `seq > p`, `tail`
//! was stale: reload and retry. `pop` is the mirror image on `head`, expecting `seq == p + 1`,
//! returning `None` when `seq < p + 1`, and handing the slot to the next lap with
//! `seq = p + capacity`. The `Acquire` load of `seq` pairs with the `Release` store of the
//! other side, which is what orders the value's write before its read and its read before
//! the next lap's write; `head`/`tail` themselves only arbitrate who owns a position, so their
//! loads and compare-exchanges are `Relaxed`.
//!
//! Retries happen only when another thread's compare-exchange succeeded (lock-free); neither
//! side ever waits for a slot to be finished by another party. The price of never waiting,
//! which crossbeam's `ArrayQueue` pays by spinning instead:
//! - `push` reports [`Full`] while the oldest item is still being moved out by a `pop` that has
//!   claimed it (capacity items are then in flight, so full is a fair answer);
//! - `pop` reports `None` while the oldest claimed position's push has not yet stored its
//!   value, even if later pushes already have. The item appears as soon as that push finishes
//!   (a pusher that may be preempted mid-push should wake the consumer after pushing anyway).
//!
//! Sequence numbers are `usize`: a thread would have to stall between two of its own loads
//! while other threads complete 2^64 operations before an old number could be mistaken for a
//! current one.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::mem::MaybeUninit;

use crate::Full;
use crate::sync::{AtomicUsize, CachePadded, Ordering, UnsafeCell};

/// One position in the queue: whose turn it is, and the value.
struct Slot<T> {
    seq: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// A bounded lock-free MPMC queue. See the [module documentation](self) for the design.
pub struct Queue<T> {
    /// Next position to pop.
    head: CachePadded<AtomicUsize>,
    /// Next position to push.
    tail: CachePadded<AtomicUsize>,
    slots: Box<[Slot<T>]>,
    mask: usize,
}

// SAFETY: the queue moves `T`s between threads, hence `T: Send`. A slot's value is accessed
// only by the one pusher or popper that won its position's compare-exchange, between that
// exchange and its Release store of `seq`, and the Acquire load of `seq` by the next owner
// orders the accesses one after the other.
unsafe impl<T: Send> Send for Queue<T> {}
// SAFETY: as for `Send`: all shared access goes through `push`/`pop`, which follow that protocol.
unsafe impl<T: Send> Sync for Queue<T> {}

impl<T> Queue<T> {
    /// A queue of `capacity` slots.
    ///
    /// # Panics
    ///
    /// If `capacity` is not a power of two or is 1 (with one slot, "the item at `p`"
    /// (`seq == p + 1`) and "free for the push at `p + 1`" would be the same number).
    pub fn new(capacity: usize) -> Self {
        Self::starting_at(capacity, 0)
    }

    /// A queue whose positions start at `start` (tests use values near `usize::MAX`).
    fn starting_at(capacity: usize, start: usize) -> Self {
        assert!(
            capacity.is_power_of_two() && capacity >= 2,
            "mpmc queue capacity {capacity} is not a power of two >= 2"
        );
        let slots: Vec<Slot<T>> = (0..capacity)
            .map(|i| {
                // The slot that position `start + k` maps to, for k in 0..capacity, expects
                // that position first.
                let offset = i.wrapping_sub(start) & (capacity - 1);
                Slot {
                    seq: AtomicUsize::new(start.wrapping_add(offset)),
                    value: UnsafeCell::new(MaybeUninit::uninit()),
                }
            })
            .collect();
        Self {
            head: CachePadded(AtomicUsize::new(start)),
            tail: CachePadded(AtomicUsize::new(start)),
            slots: slots.into_boxed_slice(),
            mask: capacity - 1,
        }
    }

    #[cfg(all(test, not(loom)))]
    pub(crate) fn starting_at_for_tests(capacity: usize, start: usize) -> Self {
        Self::starting_at(capacity, start)
    }

    /// Queues `item`, or hands it back if the queue is full. Never waits for another thread;
    /// never allocates.
    pub fn push(&self, item: T) -> Result<(), Full<T>> {
        let mut pos = self.tail.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[pos & self.mask];
            let seq = slot.seq.load(Ordering::Acquire);
            // Signed distance, correct across the wrap of the counters.
            let ahead = seq.wrapping_sub(pos) as isize;
            if ahead == 0 {
                match self.tail.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: winning the exchange makes us the only owner of position
                        // `pos`; `seq == pos` (Acquire) showed the previous lap's pop had moved
                        // its item out, and no pop reads it before our Release store below.
                        slot.value.with_mut(|p| unsafe { (*p).write(item) });
                        slot.seq.store(pos.wrapping_add(1), Ordering::Release);
                        return Ok(());
                    }
                    Err(current) => pos = current,
                }
            } else if ahead < 0 {
                return Err(Full(item));
            } else {
                pos = self.tail.load(Ordering::Relaxed);
            }
        }
    }

    /// Takes the oldest published item, or `None` if there is none (see the module
    /// documentation for the one case where that is said while a push is under way).
    pub fn pop(&self) -> Option<T> {
        let mut pos = self.head.load(Ordering::Relaxed);
        loop {
            let slot = &self.slots[pos & self.mask];
            let seq = slot.seq.load(Ordering::Acquire);
            let ahead = seq.wrapping_sub(pos.wrapping_add(1)) as isize;
            if ahead == 0 {
                match self.head.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: winning the exchange makes us the only owner of position
                        // `pos`; `seq == pos + 1` (Acquire) showed its push had stored the
                        // value, and no push overwrites it before our Release store below.
                        let item = slot.value.with(|p| unsafe { (*p).assume_init_read() });
                        slot.seq
                            .store(pos.wrapping_add(self.slots.len()), Ordering::Release);
                        return Some(item);
                    }
                    Err(current) => pos = current,
                }
            } else if ahead < 0 {
                return None;
            } else {
                pos = self.head.load(Ordering::Relaxed);
            }
        }
    }

    /// Items queued right now: a snapshot, exact only when nobody is pushing or popping.
    pub fn len(&self) -> usize {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        // `head` read first, so a racing pop can only make this an overestimate (clamped).
        (tail.wrapping_sub(head) as isize).clamp(0, self.slots.len() as isize) as usize
    }

    /// Whether the queue looked empty just now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        // `&mut self`: every push and pop has finished, so `pop` finds exactly the items left.
        while self.pop().is_some() {}
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpmc::Queue")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn positions_wrap_at_usize_max() {
        let q = Queue::<u32>::starting_at_for_tests(4, usize::MAX - 5);
        let mut next_in = 0;
        let mut next_out = 0;
        for round in 0..20 {
            for _ in 0..(round % 6) {
                if q.push(next_in).is_ok() {
                    next_in += 1;
                }
            }
            assert!(q.len() <= 4);
            while let Some(v) = q.pop() {
                assert_eq!(v, next_out);
                next_out += 1;
            }
        }
        assert!(next_in > 20);
        assert_eq!(next_in, next_out);
    }

    #[test]
    fn full_and_empty_edges() {
        let q = Queue::new(2);
        assert_eq!(q.pop(), None);
        q.push(1).unwrap();
        q.push(2).unwrap();
        assert_eq!(q.push(3), Err(Full(3)));
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop(), Some(1));
        q.push(3).unwrap();
        assert_eq!(q.pop(), Some(2));
        assert_eq!(q.pop(), Some(3));
        assert_eq!(q.pop(), None);
        assert!(q.is_empty());
    }

    #[test]
    #[should_panic(expected = "not a power of two >= 2")]
    fn capacity_one_is_refused() {
        let _ = Queue::<u8>::new(1);
    }

    #[test]
    fn remaining_items_are_dropped_once() {
        let item = Arc::new(());
        let q = Queue::new(4);
        for _ in 0..3 {
            q.push(item.clone()).unwrap();
        }
        drop(q.pop());
        assert_eq!(Arc::strong_count(&item), 3);
        drop(q);
        assert_eq!(Arc::strong_count(&item), 1);
    }
}
