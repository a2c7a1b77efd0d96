//! Test app: every misuse the issue names is reported as an error and leaves the objects
//! working: locking a mutex twice, unlocking one not held, invalid priorities, waiting past
//! a timeout, overflowing a semaphore, destroying a mutex that is still held.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::boxed::Box;
use alloc::sync::Arc;
use rhea::sync::{RawMutex, Semaphore, SyncError};
use rhea::thread::{Builder, Priority};
use rhea::time::Duration;

rhea::main!(main);

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
