//! Bounded message queues with inline storage.
//!
//! # Why a const-generic capacity
//!
//! A queue must be constructible in a `static` (like [`Semaphore::new`]) and
//! [`MessageQueue::try_send`] must work from an interrupt handler, which may not allocate
//! (the heap is never taken in interrupt context). A `const fn new(capacity)` would have to
//! allocate its ring on first use — from whatever context comes first, possibly an interrupt
//! handler — or be handed a buffer by the caller. With the capacity in the type
//! (`MessageQueue<T, N>`) the ring is part of the queue: no allocation ever, a `static` queue
//! lives in `.bss`, and a queue in an `Arc` is one allocation with its storage. The price is
//! that the capacity is chosen at compile time (every user in the tree already used a
//! constant), and a large queue built on the stack before being moved into an `Arc` needs the
//! stack for it (prefer a `static` for large queues).
//!
//! # Locking
//!
//! Two [`Semaphore`]s count the free slots and the queued messages (both have lock-free fast
//! paths while nobody waits, so an uncontended send or receive takes no scheduler lock); the
//! ring's head and length sit under a `SpinLock<_, IrqsOff>` held for a copy and two stores.
//! A sender takes a slot, then the ring lock (push), then gives a message unit; a receiver
//! takes a message unit, then the ring lock (pop), then gives a slot — so the ring lock is a
//! leaf, never held while a semaphore is touched, and it is taken in interrupt context
//! (`try_send`), hence `IrqsOff`.
#![allow(
    unsafe_code,
    reason = "the ring's uninitialised slots; each use has a SAFETY note"
)]

use super::{IrqsOff, SpinLock};
use super::{Semaphore, SyncError};
use crate::time::Duration;
use core::mem::MaybeUninit;

/// A bounded FIFO of up to `N` messages of type `T` between threads (and from interrupt
/// handlers with [`MessageQueue::try_send`]). The storage is inline: nothing is allocated,
/// and a queue can be a `static`:
///
/// ```ignore
/// static EVENTS: MessageQueue<u64, 64> = MessageQueue::new();
/// ```
#[derive(Debug)]
pub struct MessageQueue<T, const N: usize> {
    ring: SpinLock<Ring<T, N>, IrqsOff>,
    /// Free slots.
    slots: Semaphore,
    /// Queued messages.
    filled: Semaphore,
}

/// `len` messages from `head` (wrapping): `buf[(head + i) % N]` is initialised for `i < len`.
struct Ring<T, const N: usize> {
    buf: [MaybeUninit<T>; N],
    head: usize,
    len: usize,
}

impl<T, const N: usize> Ring<T, N> {
    fn push(&mut self, msg: T) {
        assert!(self.len < N, "a slot unit means the ring has room");
        let at = (self.head + self.len) % N;
        self.buf[at].write(msg);
        self.len += 1;
    }

    fn pop(&mut self) -> T {
        assert!(self.len > 0, "a message unit means a message is queued");
        let at = self.head;
        self.head = (self.head + 1) % N;
        self.len -= 1;
        // SAFETY: `at` was `head` with `len > 0`, so it held an initialised message (the ring's
        // invariant); advancing `head` and decrementing `len` moved it out of the ring, so it is
        // read exactly once.
        unsafe { self.buf[at].assume_init_read() }
    }
}

impl<T, const N: usize> Drop for Ring<T, N> {
    fn drop(&mut self) {
        while self.len > 0 {
            drop(self.pop());
        }
    }
}

impl<T: Send, const N: usize> Default for MessageQueue<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Send, const N: usize> MessageQueue<T, N> {
    /// The capacity.
    pub const CAPACITY: usize = {
        assert!(
            N > 0 && N < (1 << 31),
            "a queue holds 1 ..= 2^31 - 1 messages"
        );
        N
    };

    /// An empty queue of at most `N` messages (`N` in 1 ..= 2^31 - 1, checked at compile time).
    pub const fn new() -> Self {
        let capacity = Self::CAPACITY as u32;
        Self {
            ring: SpinLock::new(Ring {
                buf: [const { MaybeUninit::uninit() }; N],
                head: 0,
                len: 0,
            }),
            slots: Semaphore::new(capacity, capacity),
            filled: Semaphore::new(0, capacity),
        }
    }

    fn push(&self, msg: T) {
        self.ring.lock().push(msg);
        // Cannot overflow: every message given here took a slot first.
        let _ = self.filled.give();
    }

    fn pop(&self) -> T {
        let msg = self.ring.lock().pop();
        // Cannot overflow: every slot given back was taken by a send.
        let _ = self.slots.give();
        msg
    }

    /// Sends, waiting for room as long as it takes.
    pub fn send(&self, msg: T) -> Result<(), (T, SyncError)> {
        match self.slots.take() {
            Ok(()) => {
                self.push(msg);
                Ok(())
            }
            Err(e) => Err((msg, e)),
        }
    }

    /// Sends, waiting at most `timeout` for room.
    pub fn send_timeout(&self, msg: T, timeout: Duration) -> Result<(), (T, SyncError)> {
        match self.slots.take_timeout(timeout) {
            Ok(()) => {
                self.push(msg);
                Ok(())
            }
            Err(e) => Err((msg, e)),
        }
    }

    /// Sends only if there is room (interrupt-safe). A full queue hands the message back.
    pub fn try_send(&self, msg: T) -> Result<(), (T, SyncError)> {
        match self.slots.try_take() {
            Ok(()) => {
                self.push(msg);
                Ok(())
            }
            Err(e) => Err((msg, e)),
        }
    }

    /// Receives, waiting as long as it takes.
    pub fn recv(&self) -> Result<T, SyncError> {
        self.filled.take().map(|()| self.pop())
    }

    /// Receives, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, SyncError> {
        self.filled.take_timeout(timeout).map(|()| self.pop())
    }

    /// Receives only if a message is queued (interrupt-safe).
    pub fn try_recv(&self) -> Result<T, SyncError> {
        self.filled.try_take().map(|()| self.pop())
    }

    /// Messages queued now (a snapshot).
    pub fn len(&self) -> usize {
        self.ring.lock().len
    }

    /// Whether no message is queued now (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
