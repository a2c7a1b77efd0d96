//! Event flags.

use super::object::LazyObject;
use super::{SyncError, deadline_of};
use crate::kthread;
use crate::time::Duration;
use rhea_sched::{EventWait, WakeReason};

/// How [`EventFlags::wait`] combines the mask.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WaitMode {
    /// Any bit of the mask.
    Any,
    /// Every bit of the mask.
    All,
}

/// 32 event flags threads wait on. [`EventFlags::set`] may be called from interrupt handlers.
#[derive(Debug)]
pub struct EventFlags {
    obj: LazyObject,
}

impl Default for EventFlags {
    fn default() -> Self {
        Self::new()
    }
}

impl EventFlags {
    /// All flags clear.
    pub const fn new() -> Self {
        Self {
            obj: LazyObject::new(),
        }
    }

    /// Sets `bits`, waking every waiter now satisfied.
    pub fn set(&self, bits: u32) {
        kthread::with_sched(|s, _| {
            let e = self.obj.get_in(s, |s| s.create_events());
            match s.events_set(e, bits) {
                Ok(d) => ((), d),
                Err(_) => ((), Default::default()),
            }
        });
    }

    /// Clears `bits`; returns the flags left set.
    pub fn clear(&self, bits: u32) -> u32 {
        kthread::with_sched(|s, _| {
            let e = self.obj.get_in(s, |s| s.create_events());
            (s.events_clear(e, bits).unwrap_or(0), Default::default())
        })
    }

    /// Waits until `mask` is satisfied per `mode`, at most `timeout` if given; returns the
    /// flags as they were when the wait was satisfied, clearing the mask's bits if `clear`.
    pub fn wait(
        &self,
        mask: u32,
        mode: WaitMode,
        clear: bool,
        timeout: Option<Duration>,
    ) -> Result<u32, SyncError> {
        let deadline = deadline_of(timeout);
        let wait = EventWait {
            mask,
            all: mode == WaitMode::All,
            clear,
        };
        let mut seen = 0;
        let r = kthread::block_on(|s, cpu| {
            let e = self.obj.get_in(s, |s| s.create_events());
            s.events_wait(cpu, e, wait, deadline, false)
                .map(|(bits, d)| {
                    seen = bits.unwrap_or(0);
                    (bits.is_some(), d)
                })
        })?;
        match r {
            None => Ok(seen),
            Some(WakeReason::Signaled) => Ok(kthread::with_sched(|s, cpu| {
                let cur = s.current(cpu);
                (s.take_event_bits(cur), Default::default())
            })),
            Some(_) => Err(SyncError::Timeout),
        }
    }
}

impl Drop for EventFlags {
    fn drop(&mut self) {
        self.obj.destroy("event flags");
    }
}
