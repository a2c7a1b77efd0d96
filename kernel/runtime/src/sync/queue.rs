//! Bounded message queues.

use super::spin::{IrqsOff, SpinLock};
use super::{Semaphore, SyncError};
use crate::time::Duration;
use alloc::collections::VecDeque;

/// A bounded FIFO of `T` between threads (and from interrupt handlers with
/// [`MessageQueue::try_send`]). Storage is allocated once, at creation.
#[derive(Debug)]
pub struct MessageQueue<T> {
    items: SpinLock<VecDeque<T>, IrqsOff>,
    /// Free slots.
    slots: Semaphore,
    /// Queued messages.
    filled: Semaphore,
}

impl<T: Send> MessageQueue<T> {
    /// A queue of at most `capacity` messages (at least 1).
    pub fn new(capacity: u32) -> Self {
        let capacity = capacity.max(1);
        Self {
            items: SpinLock::new(VecDeque::with_capacity(capacity as usize)),
            slots: Semaphore::new(capacity, capacity),
            filled: Semaphore::new(0, capacity),
        }
    }

    fn push(&self, msg: T) {
        // A slot was taken, so the deque has room: no allocation here.
        self.items.lock().push_back(msg);
        // Cannot overflow: every message given here took a slot first.
        let _ = self.filled.give();
    }

    fn pop(&self) -> T {
        let msg = self
            .items
            .lock()
            .pop_front()
            .expect("a filled unit means a message is queued");
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

    /// Receives only if a message is queued.
    pub fn try_recv(&self) -> Result<T, SyncError> {
        self.filled.try_take().map(|()| self.pop())
    }
}
