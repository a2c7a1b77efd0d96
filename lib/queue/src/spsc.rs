//! A bounded single-producer/single-consumer ring.
//!
//! [`ring`] allocates `capacity` slots (a power of two) once and returns the two ends. The
//! [`Producer`] and the [`Consumer`] are each `Send` but not `Clone`, and every operation takes
//! `&mut self`, so there is exactly one pusher and one popper at any time; an interrupt top
//! half that owns the producer (reached through its handler's context word) may push while a
//! thread on another CPU pops, with no lock and no interrupt masking.
//!
//! ## Design
//!
//! `tail` (next slot to fill) is written only by the producer, `head` (next slot to empty)
//! only by the consumer; both count up forever (wrapping at `usize::MAX`) and the slot is the
//! count masked by `capacity - 1`, so `tail - head` is the length with no "one slot kept empty"
//! rule. Each index sits on its own cache line. Each side keeps a private copy of the *other*
//! side's index and re-reads the shared one only when the copy says full (producer) or empty
//! (consumer), so in steady state a push or a pop touches one line the other side also writes
//! once per refill instead of once per item.
//!
//! Orderings: the producer writes the slot, then publishes `tail` with `Release`; the consumer
//! reads `tail` with `Acquire` before reading the slot. Symmetrically the consumer moves the
//! item out, then publishes `head` with `Release`; the producer reads `head` with `Acquire`
//! before overwriting the slot. Nothing else is needed: each index has one writer.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::fmt;
use core::mem::MaybeUninit;

use crate::Full;
use crate::sync::{Arc, AtomicUsize, CachePadded, Ordering, UnsafeCell};

/// Creates a ring of `capacity` slots and returns its two ends.
///
/// # Panics
///
/// If `capacity` is not a power of two (1 is allowed).
pub fn ring<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    assert!(
        capacity.is_power_of_two(),
        "spsc ring capacity {capacity} is not a power of two"
    );
    ring_at(capacity, 0)
}

/// A ring whose indices start at `start` rather than 0 (tests use values near `usize::MAX` to
/// exercise index wrap-around).
fn ring_at<T>(capacity: usize, start: usize) -> (Producer<T>, Consumer<T>) {
    let slots: Vec<UnsafeCell<MaybeUninit<T>>> = (0..capacity)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let ring = Arc::new(Ring {
        head: CachePadded(AtomicUsize::new(start)),
        tail: CachePadded(AtomicUsize::new(start)),
        slots: slots.into_boxed_slice(),
        mask: capacity - 1,
    });
    let producer = Producer {
        ring: ring.clone(),
        tail: start,
        head_cache: start,
    };
    let consumer = Consumer {
        ring,
        head: start,
        tail_cache: start,
    };
    (producer, consumer)
}

#[cfg(all(test, not(loom)))]
pub(crate) fn ring_at_for_tests<T>(capacity: usize, start: usize) -> (Producer<T>, Consumer<T>) {
    ring_at(capacity, start)
}

/// The shared part: the slots and the two published indices.
struct Ring<T> {
    /// Count of items popped; written only by the consumer.
    head: CachePadded<AtomicUsize>,
    /// Count of items pushed; written only by the producer.
    tail: CachePadded<AtomicUsize>,
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    mask: usize,
}

impl<T> Ring<T> {
    fn slot(&self, index: usize) -> &UnsafeCell<MaybeUninit<T>> {
        &self.slots[index & self.mask]
    }

    fn capacity(&self) -> usize {
        self.slots.len()
    }
}

// SAFETY: the ring moves `T`s between threads, hence `T: Send`. Shared access is sound because
// a slot is only ever touched by one side at a time: the producer writes slots in
// `tail..head+capacity` and the consumer reads slots in `head..tail`, the two ranges are
// disjoint, and each index is advanced (with Release) only after its side's access is done.
unsafe impl<T: Send> Send for Ring<T> {}
// SAFETY: as for `Send`; `&Ring` exposes nothing but through the two unique handles.
unsafe impl<T: Send> Sync for Ring<T> {}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // Both handles are gone (this is the last `Arc`), so both indices are final and their
        // last stores happen-before this (the `Arc` count's release/acquire).
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        let mut index = head;
        while index != tail {
            // SAFETY: slots in `head..tail` hold items pushed and never popped, and nobody
            // else can reach the ring any more.
            self.slot(index)
                .with_mut(|p| unsafe { (*p).assume_init_drop() });
            index = index.wrapping_add(1);
        }
    }
}

/// The pushing end of a [`ring`].
pub struct Producer<T> {
    ring: Arc<Ring<T>>,
    /// Our own count of pushed items (== `ring.tail`, which only we write).
    tail: usize,
    /// The consumer's `head` as last read; never ahead of the real one.
    head_cache: usize,
}

impl<T> Producer<T> {
    /// Queues `item`, or hands it back if the ring is full. Never blocks, never allocates.
    pub fn push(&mut self, item: T) -> Result<(), Full<T>> {
        if self.tail.wrapping_sub(self.head_cache) == self.ring.capacity() {
            self.head_cache = self.ring.head.load(Ordering::Acquire);
            if self.tail.wrapping_sub(self.head_cache) == self.ring.capacity() {
                return Err(Full(item));
            }
        }
        // SAFETY: `tail - head < capacity`, so the slot at `tail` is outside `head..tail`: the
        // consumer is not reading it and has finished moving its previous item out (the
        // Acquire load of `head` that showed it free orders that read before this write).
        self.ring
            .slot(self.tail)
            .with_mut(|p| unsafe { (*p).write(item) });
        self.tail = self.tail.wrapping_add(1);
        self.ring.tail.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Pushes items from `items` until it is exhausted or the ring is full; returns how many
    /// were pushed. Items not taken stay in the iterator. The consumer sees them all at once
    /// (one `tail` update).
    pub fn push_iter<I: Iterator<Item = T>>(&mut self, items: &mut I) -> usize {
        let free = self.free();
        let mut pushed = 0;
        while pushed < free {
            let Some(item) = items.next() else { break };
            let index = self.tail.wrapping_add(pushed);
            // SAFETY: `index` is within `tail..head_cache+capacity` (`pushed < free`), so as in
            // `push` the consumer is done with this slot.
            self.ring
                .slot(index)
                .with_mut(|p| unsafe { (*p).write(item) });
            pushed += 1;
        }
        if pushed > 0 {
            self.tail = self.tail.wrapping_add(pushed);
            self.ring.tail.store(self.tail, Ordering::Release);
        }
        pushed
    }

    /// Free slots right now (re-reads the consumer's index). Another push may still fail only
    /// if this producer pushes more than this many first.
    pub fn free(&mut self) -> usize {
        self.head_cache = self.ring.head.load(Ordering::Acquire);
        self.ring.capacity() - self.tail.wrapping_sub(self.head_cache)
    }

    /// Items queued right now (a snapshot: the consumer may be popping).
    pub fn len(&self) -> usize {
        self.tail
            .wrapping_sub(self.ring.head.load(Ordering::Acquire))
    }

    /// Whether the ring is empty right now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a push would fail right now.
    pub fn is_full(&self) -> bool {
        self.len() == self.ring.capacity()
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("spsc::Producer")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

/// The popping end of a [`ring`].
pub struct Consumer<T> {
    ring: Arc<Ring<T>>,
    /// Our own count of popped items (== `ring.head`, which only we write).
    head: usize,
    /// The producer's `tail` as last read; never ahead of the real one.
    tail_cache: usize,
}

impl<T> Consumer<T> {
    /// Takes the oldest item, or `None` if the ring is empty. Never blocks.
    pub fn pop(&mut self) -> Option<T> {
        if self.head == self.tail_cache {
            self.tail_cache = self.ring.tail.load(Ordering::Acquire);
            if self.head == self.tail_cache {
                return None;
            }
        }
        // SAFETY: `head` is in `head..tail`, so the producer has written this slot and the
        // Acquire load of `tail` that showed it makes the write visible; the producer will not
        // touch it again until we publish a `head` past it.
        let item = self
            .ring
            .slot(self.head)
            .with(|p| unsafe { (*p).assume_init_read() });
        self.head = self.head.wrapping_add(1);
        self.ring.head.store(self.head, Ordering::Release);
        Some(item)
    }

    /// Pops up to `max` items, handing each to `f` in order, and publishes the freed slots to
    /// the producer once at the end; returns how many were popped. Reads the producer's index
    /// at most once.
    pub fn pop_batch(&mut self, max: usize, mut f: impl FnMut(T)) -> usize {
        let mut available = self.tail_cache.wrapping_sub(self.head);
        if available < max {
            self.tail_cache = self.ring.tail.load(Ordering::Acquire);
            available = self.tail_cache.wrapping_sub(self.head);
        }
        let n = available.min(max);
        // Publishes progress even if `f` unwinds, so no item is dropped twice.
        let mut guard = Publish {
            consumer: self,
            popped: 0,
        };
        while guard.popped < n {
            let index = guard.consumer.head.wrapping_add(guard.popped);
            // SAFETY: `index` is in `head..tail_cache`, written by the producer and visible
            // (Acquire load of `tail`); its new head is published only after the read.
            let item = guard
                .consumer
                .ring
                .slot(index)
                .with(|p| unsafe { (*p).assume_init_read() });
            guard.popped += 1;
            f(item);
        }
        n
    }

    /// Items queued right now (a snapshot: the producer may be pushing).
    pub fn len(&self) -> usize {
        self.ring
            .tail
            .load(Ordering::Acquire)
            .wrapping_sub(self.head)
    }

    /// Whether the ring is empty right now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of slots.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }
}

/// Advances and publishes the consumer's `head` by `popped` when dropped.
struct Publish<'a, T> {
    consumer: &'a mut Consumer<T>,
    popped: usize,
}

impl<T> Drop for Publish<'_, T> {
    fn drop(&mut self) {
        if self.popped > 0 {
            let c = &mut *self.consumer;
            c.head = c.head.wrapping_add(self.popped);
            c.ring.head.store(c.head, Ordering::Release);
        }
    }
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("spsc::Consumer")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::vec;

    #[test]
    fn indices_wrap_at_usize_max() {
        let (mut tx, mut rx) = ring_at_for_tests::<u32>(4, usize::MAX - 5);
        let mut next_in = 0;
        let mut next_out = 0;
        for round in 0..20 {
            for _ in 0..(round % 5) {
                if tx.push(next_in).is_ok() {
                    next_in += 1;
                }
            }
            while let Some(v) = rx.pop() {
                assert_eq!(v, next_out);
                next_out += 1;
            }
        }
        assert!(next_in > 20, "the test must cross the wrap several times");
        assert_eq!(next_in, next_out);
    }

    #[test]
    fn full_hands_the_item_back() {
        let (mut tx, mut rx) = ring::<&str>(2);
        tx.push("a").unwrap();
        tx.push("b").unwrap();
        assert!(tx.is_full());
        assert_eq!(tx.push("c"), Err(Full("c")));
        assert_eq!(rx.pop(), Some("a"));
        tx.push("c").unwrap();
        let mut out = vec![];
        assert_eq!(rx.pop_batch(10, |s| out.push(s)), 2);
        assert_eq!(out, ["b", "c"]);
    }

    #[test]
    fn capacity_one_works() {
        let (mut tx, mut rx) = ring::<u8>(1);
        for i in 0..10 {
            tx.push(i).unwrap();
            assert_eq!(tx.push(99), Err(Full(99)));
            assert_eq!(rx.pop(), Some(i));
            assert_eq!(rx.pop(), None);
        }
    }

    #[test]
    #[should_panic(expected = "not a power of two")]
    fn capacity_must_be_a_power_of_two() {
        let _ = ring::<u8>(3);
    }

    #[test]
    fn remaining_items_are_dropped_once() {
        let item = Arc::new(());
        let (mut tx, mut rx) = ring(4);
        for _ in 0..4 {
            tx.push(item.clone()).unwrap();
        }
        drop(rx.pop());
        drop(tx.push(item.clone())); // the freed slot
        assert!(tx.push(item.clone()).is_err()); // full: handed back and dropped here
        assert_eq!(Arc::strong_count(&item), 5);
        drop(tx);
        assert_eq!(Arc::strong_count(&item), 5);
        drop(rx);
        assert_eq!(Arc::strong_count(&item), 1);
    }

    #[test]
    fn unwinding_in_pop_batch_drops_nothing_twice() {
        let item = Arc::new(());
        let (mut tx, mut rx) = ring(4);
        for _ in 0..4 {
            tx.push(item.clone()).unwrap();
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut seen = 0;
            rx.pop_batch(4, |_| {
                seen += 1;
                assert!(seen < 2, "stop mid-batch");
            });
        }));
        assert!(result.is_err());
        assert_eq!(rx.len(), 2);
        drop((tx, rx));
        assert_eq!(Arc::strong_count(&item), 1);
    }
}
