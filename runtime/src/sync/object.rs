//! A scheduler object registered on first use, so sync objects can be `const`-constructed.

use crate::kthread;
use core::sync::atomic::{AtomicU64, Ordering};
use rhea_sched::{ObjectId, Sched};

/// `0` = not registered yet; otherwise the `ObjectId` plus one.
#[derive(Debug)]
pub(super) struct LazyObject(AtomicU64);

impl LazyObject {
    pub(super) const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// The object, registering it with `create` under the scheduler lock the first time.
    pub(super) fn get_in(
        &self,
        s: &mut Sched,
        create: impl FnOnce(&mut Sched) -> ObjectId,
    ) -> ObjectId {
        match self.0.load(Ordering::Acquire) {
            0 => {
                let id = create(s);
                self.0.store(id.to_raw() + 1, Ordering::Release);
                id
            }
            raw => ObjectId::from_raw(raw - 1),
        }
    }

    /// The object if it was ever registered.
    pub(super) fn registered(&self) -> Option<ObjectId> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            raw => Some(ObjectId::from_raw(raw - 1)),
        }
    }

    /// Unregisters on drop; an object still in use is reported and leaked, never freed under
    /// its waiters.
    pub(super) fn destroy(&self, what: &str) {
        if let Some(id) = self.registered() {
            let r = kthread::with_sched(|s, _| (s.destroy_object(id), Default::default()));
            if let Err(e) = r {
                crate::println!("rhea: error: {what} destroyed while in use ({e}); leaked");
            }
        }
    }
}
