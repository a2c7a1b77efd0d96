//! The one place the [`registry`](crate::registry) takes its concurrency primitives from: in
//! every real build, `core`'s atomics and [`rhea_sync::Once`]; under `--cfg loom`, loom's atomics and
//! a `Once` built on them, so the model checker (`tests/loom.rs`) sees every access between
//! registration and dispatch.
//!
//! `rhea_sync::Once` itself cannot run under loom: its atomics are invisible to the model, and a
//! losing `call_once` spins on them without ever letting the winner run. The loom `Once` below
//! follows its algorithm (`spin` 0.10's) step for step (status `Incomplete → Running` by an acquire
//! compare-exchange, the value written, `Complete` stored with release; `get` is one acquire
//! load; a loser waits while the status is `Running`), for the subset the registry uses. The
//! models therefore check the registry's protocol over that algorithm, not `spin`'s code.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom_once::Once;

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use rhea_sync::Once;

#[cfg(loom)]
#[allow(
    unsafe_code,
    reason = "a model-only Once hands out references into its cell; each use has a SAFETY note"
)]
mod loom_once {
    use core::fmt;
    use core::mem::MaybeUninit;
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{AtomicU8, Ordering};

    const INCOMPLETE: u8 = 0;
    const RUNNING: u8 = 1;
    const COMPLETE: u8 = 2;

    /// `rhea_sync::Once` for the model. Holds `Copy` values only (the registry's are), so it has
    /// nothing to drop.
    pub(crate) struct Once<T: Copy> {
        status: AtomicU8,
        data: UnsafeCell<MaybeUninit<T>>,
    }

    // SAFETY: as `spin::Once`: the value is written once, by the thread that moved the status
    // to `Running`, and shared (`&T`) only after the release store of `Complete`.
    unsafe impl<T: Copy + Send + Sync> Sync for Once<T> {}

    impl<T: Copy> Once<T> {
        pub(crate) fn new() -> Self {
            Self {
                status: AtomicU8::new(INCOMPLETE),
                data: UnsafeCell::new(MaybeUninit::uninit()),
            }
        }

        /// Runs `f` and stores its value if no value was stored yet; otherwise waits for the
        /// value being stored, if any. Returns the stored value.
        pub(crate) fn call_once(&self, f: impl FnOnce() -> T) -> &T {
            if let Some(value) = self.get() {
                return value;
            }
            loop {
                match self.status.compare_exchange(
                    INCOMPLETE,
                    RUNNING,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        let value = f();
                        // SAFETY: the compare-exchange above made this thread the only one
                        // past `Incomplete`; nobody reads the cell before `Complete`.
                        self.data
                            .with_mut(|p| unsafe { p.write(MaybeUninit::new(value)) });
                        self.status.store(COMPLETE, Ordering::Release);
                        // SAFETY: written just above, by this thread.
                        return unsafe { self.force_get() };
                    }
                    Err(RUNNING) => loop {
                        match self.status.load(Ordering::Acquire) {
                            RUNNING => loom::thread::yield_now(),
                            // SAFETY: `Complete` was read with acquire, after the write.
                            COMPLETE => return unsafe { self.force_get() },
                            _ => break,
                        }
                    },
                    // SAFETY: `Complete` was read with acquire, after the write.
                    Err(COMPLETE) => return unsafe { self.force_get() },
                    Err(_) => {}
                }
            }
        }

        /// The value, if one was stored; never waits.
        pub(crate) fn get(&self) -> Option<&T> {
            match self.status.load(Ordering::Acquire) {
                // SAFETY: `Complete` was read with acquire, after the write.
                COMPLETE => Some(unsafe { self.force_get() }),
                _ => None,
            }
        }

        /// Whether a value was stored.
        pub(crate) fn is_completed(&self) -> bool {
            self.status.load(Ordering::Acquire) == COMPLETE
        }

        /// # Safety
        ///
        /// The value must have been written, and the write must happen before this call (a
        /// `Complete` status read with acquire, or the writing thread itself).
        unsafe fn force_get(&self) -> &T {
            // SAFETY: by the caller, the cell holds an initialised value whose write happens
            // before this read (loom checks that edge); the value is never written again, so
            // the reference stays valid while `self` is borrowed.
            self.data.with(|p| unsafe { (*p).assume_init_ref() })
        }
    }

    impl<T: Copy + fmt::Debug> fmt::Debug for Once<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.get() {
                Some(value) => f.debug_tuple("Once").field(value).finish(),
                None => f.write_str("Once(<uninit>)"),
            }
        }
    }
}
