//! [`Once`]: a value set once, then read without locking — `spin::Once`'s algorithm with its
//! slow path compiled once for every type.
//!
//! `spin::Once::call_once` is generic over the value's type *and* the closure, so each call
//! site gets its own copy of the whole state machine (compare-exchange, the wait loop, the
//! poison handling): about 200 bytes each, some 5 KiB in a kernel image. Here the state machine
//! is one non-generic function, [`run_once`], that calls back into a small generic function
//! to write the value: per call site there is only that writer and a fast-path load.
//!
//! The algorithm is `spin` 0.10's (which kernel/irq's loom model follows): the status goes
//! `INCOMPLETE → RUNNING` by an acquire compare-exchange, the winner writes the value and
//! stores `COMPLETE` with release; [`Once::get`] is one acquire load; a loser spins while the
//! status is `RUNNING`. A panic in the initialiser (host tests; the kernel aborts) poisons it:
//! later callers panic instead of spinning forever.

#![allow(
    unsafe_code,
    reason = "a cell written once and then shared; every unsafe block says why it is sound"
)]

use core::cell::UnsafeCell;
use core::fmt;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};

const INCOMPLETE: u8 = 0;
const RUNNING: u8 = 1;
const COMPLETE: u8 = 2;
const POISONED: u8 = 3;

/// A value written at most once (by the first [`call_once`](Once::call_once)), then shared.
pub struct Once<T> {
    status: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the value is written once, by the thread that moved the status to `RUNNING`, and
// shared (`&T`, hence `T: Sync`) only after the release store of `COMPLETE`; the writing
// thread may be any thread, hence `T: Send`.
unsafe impl<T: Send + Sync> Sync for Once<T> {}
// SAFETY: moving the `Once` moves the value.
unsafe impl<T: Send> Send for Once<T> {}

impl<T> Once<T> {
    /// An empty `Once`.
    pub const fn new() -> Self {
        Self {
            status: AtomicU8::new(INCOMPLETE),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// The value, if one was stored; never waits.
    #[inline]
    pub fn get(&self) -> Option<&T> {
        if self.is_completed() {
            // SAFETY: `COMPLETE` was read with acquire, after the value's write.
            Some(unsafe { self.force_get() })
        } else {
            None
        }
    }

    /// Whether a value was stored.
    #[inline]
    pub fn is_completed(&self) -> bool {
        self.status.load(Ordering::Acquire) == COMPLETE
    }

    /// Runs `f` and stores its value if no value was stored yet; otherwise waits for the value
    /// being stored, if any, and drops `f`. Returns the stored value.
    #[inline]
    pub fn call_once<F: FnOnce() -> T>(&self, f: F) -> &T {
        if let Some(value) = self.get() {
            return value;
        }
        let mut job = Job {
            f: Some(f),
            slot: self.value.get().cast::<T>(),
        };
        // SAFETY: `job` outlives the call, and `write::<T, F>` is the writer for its type.
        unsafe { run_once(&self.status, (&raw mut job).cast(), write::<T, F>) };
        // SAFETY: `run_once` returns once the status is `COMPLETE` (read with acquire, or
        // stored by this thread after its write).
        unsafe { self.force_get() }
    }

    /// # Safety
    ///
    /// The value must have been written, and the write must happen before this call.
    unsafe fn force_get(&self) -> &T {
        // SAFETY: by the caller, the cell holds an initialised value whose write happens
        // before this read; it is never written again while `self` is shared.
        unsafe { (*self.value.get()).assume_init_ref() }
    }
}

impl<T> Default for Once<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for Once<T> {
    fn drop(&mut self) {
        if *self.status.get_mut() == COMPLETE {
            // SAFETY: `COMPLETE` under `&mut self`: the value is initialised and nobody else
            // can see it any more.
            unsafe { self.value.get_mut().assume_init_drop() }
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Once<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.get() {
            Some(value) => f.debug_tuple("Once").field(value).finish(),
            None => f.write_str("Once(<uninit>)"),
        }
    }
}

/// What [`run_once`] hands its writer: the initialiser and where its value goes.
struct Job<T, F> {
    f: Option<F>,
    slot: *mut T,
}

/// Runs the initialiser of the [`Job<T, F>`] at `job` and writes its value to the slot.
///
/// # Safety
///
/// `job` points to a live `Job<T, F>` whose slot may be written (the caller won `RUNNING`).
unsafe fn write<T, F: FnOnce() -> T>(job: *mut ()) {
    // SAFETY: by the caller, `job` is a live, unaliased `Job<T, F>`.
    let job = unsafe { &mut *job.cast::<Job<T, F>>() };
    if let Some(f) = job.f.take() {
        // SAFETY: by the caller, this thread alone may write the slot (it won `RUNNING`).
        unsafe { job.slot.write(f()) };
    }
}

/// Sets the status back to `POISONED` if the initialiser unwinds (never in the kernel, which
/// aborts on panic; there this drop is never reached).
struct PoisonOnUnwind<'a>(&'a AtomicU8);

impl Drop for PoisonOnUnwind<'_> {
    fn drop(&mut self) {
        self.0.store(POISONED, Ordering::Release);
    }
}

/// The state machine of every [`Once::call_once`]: returns once `status` is `COMPLETE`, having
/// called `writer(job)` first if this thread moved it from `INCOMPLETE`.
///
/// # Safety
///
/// `writer(job)` must be sound to call once, by the thread that wins `RUNNING`.
#[inline(never)]
unsafe fn run_once(status: &AtomicU8, job: *mut (), writer: unsafe fn(*mut ())) {
    loop {
        match status.compare_exchange(INCOMPLETE, RUNNING, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => {
                let poison = PoisonOnUnwind(status);
                // SAFETY: this thread moved the status to `RUNNING`: by the caller, it may
                // call the writer.
                unsafe { writer(job) };
                core::mem::forget(poison);
                status.store(COMPLETE, Ordering::Release);
                return;
            }
            Err(COMPLETE) => return,
            Err(RUNNING) => {
                while status.load(Ordering::Acquire) == RUNNING {
                    core::hint::spin_loop();
                }
            }
            Err(POISONED) => panic!("Once poisoned: its initialiser panicked"),
            Err(_) => {}
        }
    }
}
