//! Test app: every misuse the issue names is reported as an error and leaves the objects
//! working: locking a mutex twice, unlocking one not held, invalid priorities, waiting past
//! a timeout, overflowing a semaphore, destroying a mutex that is still held — and the mutex
//! fast path keeps them: the held-mutex limit, abandonment by an owner that took the mutex
//! without the scheduler (noticed by the next locker, or by a waiter at the owner's exit), and
//! priority inheritance by such an owner.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, Ordering};
use rhea::sync::{RawMutex, SchedError, Semaphore, SyncError};
use rhea::thread::{Builder, Priority};
use rhea::time::Duration;

rhea::main!(main);

/// `rhea_sched::MAX_HELD_MUTEXES`: how many mutexes a thread may hold at once.
const MAX_HELD: usize = 8;

fn main() -> Result<(), SyncError> {
    let m = Arc::new(RawMutex::new());
    m.lock()?;
    let e = m.lock().unwrap_err();
    rhea::println!("errors: relock -> {e}");

    // Another thread tries to unlock it, then to lock with a timeout.
    let m2 = m.clone();
    let h = Builder::new()
        .name("intruder")
        .spawn(move || {
            let e = m2.unlock().unwrap_err();
            rhea::println!("errors: unlock by non-owner -> {e}");
            let e = m2.lock_timeout(Duration::from_millis(3)).unwrap_err();
            rhea::println!("errors: lock timeout -> {e}");
        })
        .expect("spawn");
    h.join()?;
    m.unlock()?;
    m.lock()?; // still works
    m.unlock()?;

    for level in [0, 64] {
        let e = Priority::new(level).unwrap_err();
        rhea::println!("errors: priority {level} -> {e}");
    }

    let s = Semaphore::new(1, 1);
    let e = s.give().unwrap_err();
    rhea::println!("errors: semaphore overflow -> {e}");
    s.take()?;

    // The held-mutex limit counts mutexes taken on the fast path too.
    let many: [RawMutex; MAX_HELD + 1] = core::array::from_fn(|_| RawMutex::new());
    for m in &many[..MAX_HELD] {
        m.lock()?;
    }
    let e = many[MAX_HELD].lock().unwrap_err();
    rhea::println!("errors: lock past the limit -> {e}");
    assert_eq!(e, SyncError::Sched(SchedError::TooManyMutexes));
    let e = many[0].lock().unwrap_err();
    assert_eq!(e, SyncError::Sched(SchedError::AlreadyOwner));
    for m in &many[..MAX_HELD] {
        m.unlock()?;
    }
    many[MAX_HELD].lock()?;
    many[MAX_HELD].unlock()?;

    // Abandonment of a mutex taken on the fast path that nobody waited for: the next locker
    // is told, and owns it.
    let a = Arc::new(RawMutex::new());
    let a2 = a.clone();
    Builder::new()
        .name("abandoner")
        .spawn(move || a2.lock().expect("a free mutex"))
        .expect("spawn")
        .join()?;
    let e = a.lock().unwrap_err();
    rhea::println!("errors: lock after the owner exited -> {e}");
    assert_eq!(e, SyncError::Abandoned);
    assert_eq!(a.lock(), Err(SyncError::Sched(SchedError::AlreadyOwner)));
    a.unlock()?;
    a.lock()?;
    a.unlock()?;

    // A thread blocks on a mutex its owner took on the fast path: the owner inherits the
    // waiter's priority, then exits holding it; the waiter is told.
    static LOCKED: Semaphore = Semaphore::new(0, 1);
    static INHERITED: AtomicU32 = AtomicU32::new(0);
    let me = rhea::thread::current();
    let mine = rhea::thread::effective_priority(me).map_or(0, |p| p.level() as u32);
    let b = Arc::new(RawMutex::new());
    let b2 = b.clone();
    let owner = Builder::new()
        .name("low-owner")
        .priority(Priority::new(1).unwrap())
        .spawn(move || {
            b2.lock().expect("a free mutex");
            LOCKED.give().expect("once");
            // The main thread blocks on the mutex meanwhile.
            rhea::thread::sleep(Duration::from_millis(5));
            let me = rhea::thread::current();
            let p = rhea::thread::effective_priority(me).map_or(0, |p| p.level() as u32);
            INHERITED.store(p, Ordering::Relaxed);
        })
        .expect("spawn");
    LOCKED.take()?;
    let e = b.lock().unwrap_err();
    owner.join()?;
    let inherited = INHERITED.load(Ordering::Relaxed);
    rhea::println!(
        "errors: owner exited while a thread waited -> {e}; it ran at {inherited} (waiter {mine})"
    );
    assert_eq!(e, SyncError::Abandoned);
    assert_eq!(
        inherited, mine,
        "the fast owner inherits the waiter's priority"
    );
    b.unlock()?;

    // Destroying a held mutex: reported and leaked, never freed under its owner.
    let held = Box::new(RawMutex::new());
    held.lock()?;
    drop(held);

    // The scheduler is still sound: a fresh mutex works.
    let fresh = RawMutex::new();
    fresh.lock()?;
    fresh.unlock()?;
    rhea::println!("errors: PASS");
    Ok(())
}
