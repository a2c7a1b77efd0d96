//! Counting semaphores.

use super::object::LazyObject;
use super::{SyncError, deadline_of};
use crate::kthread;
use crate::time::Duration;
use rhea_sched::WakeReason;

/// A counting semaphore. [`Semaphore::give`] and [`Semaphore::try_take`] may be called from
/// interrupt handlers.
#[derive(Debug)]
pub struct Semaphore {
    obj: LazyObject,
    initial: u32,
    max: u32,
}

impl Semaphore {
    /// A semaphore holding `initial` units, at most `max`.
    pub const fn new(initial: u32, max: u32) -> Self {
        Self {
            obj: LazyObject::new(),
            initial,
            max,
        }
    }

    fn take_inner(&self, timeout: Option<Duration>, try_only: bool) -> Result<(), SyncError> {
        let deadline = deadline_of(timeout);
        let mut taken = false;
        let r = kthread::block_on(|s, cpu| {
            let id = self
                .obj
                .get_in(s, |s| s.create_semaphore(self.initial, self.max));
            s.sem_take(cpu, id, deadline, try_only).map(|(got, d)| {
                taken = got;
                (got || try_only, d)
            })
        })?;
        match r {
            None if taken => Ok(()),
            None => Err(SyncError::WouldBlock),
            Some(WakeReason::Acquired) => Ok(()),
            Some(_) => Err(SyncError::Timeout),
        }
    }

    /// Takes a unit, waiting as long as it takes.
    pub fn take(&self) -> Result<(), SyncError> {
        self.take_inner(None, false)
    }

    /// Takes a unit, waiting at most `timeout`.
    pub fn take_timeout(&self, timeout: Duration) -> Result<(), SyncError> {
        self.take_inner(Some(timeout), false)
    }

    /// Takes a unit if one is there (interrupt-safe).
    pub fn try_take(&self) -> Result<(), SyncError> {
        self.take_inner(None, true)
    }

    /// Gives a unit, to the most important waiter if any (interrupt-safe). Errors if the
    /// count would exceed its maximum.
    pub fn give(&self) -> Result<(), SyncError> {
        kthread::with_sched(|s, _| {
            let id = self
                .obj
                .get_in(s, |s| s.create_semaphore(self.initial, self.max));
            match s.sem_give(id) {
                Ok(d) => (Ok(()), d),
                Err(e) => (Err(SyncError::Sched(e)), Default::default()),
            }
        })
    }

    /// Units available now.
    pub fn count(&self) -> u32 {
        kthread::with_sched(|s, _| {
            let id = self
                .obj
                .get_in(s, |s| s.create_semaphore(self.initial, self.max));
            (s.sem_count(id).unwrap_or(0), Default::default())
        })
    }
}

impl Drop for Semaphore {
    fn drop(&mut self) {
        self.obj.destroy("semaphore");
    }
}
