//! Test app: four threads each sleep 500 µs 500 times while (on LinuxU) the harness floods the
//! process with 100k SIGIO a second. Every sleep must end — the timer interrupt is never lost
//! under the storm — and none early; the run must not die of a stack overflow (handlers run with
//! the interrupt signals blocked, so they cannot nest; with interrupts disabled they only record
//! a vector).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use rhea::thread::{Builder, Priority};
use rhea::time::{Duration, now};

rhea::main!(main);

static DONE: AtomicU64 = AtomicU64::new(0);
static EARLY: AtomicU64 = AtomicU64::new(0);

fn main() -> Result<(), &'static str> {
    let mut hs = Vec::new();
    for t in 0..4 {
        hs.push(
            Builder::new()
                .name("sleeper")
                .priority(Priority::new(20 + t).unwrap())
                .stack_size(16 * 1024)
                .spawn(|| {
                    for _ in 0..500 {
                        let deadline = now().saturating_add(Duration::from_micros(500));
                        rhea::thread::sleep_until(deadline);
                        if now() < deadline {
                            EARLY.fetch_add(1, Ordering::Relaxed);
                        }
                        DONE.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .map_err(|_| "spawn")?,
        );
    }
    for h in hs {
        h.join().map_err(|_| "join")?;
    }
    let (done, early) = (DONE.load(Ordering::Relaxed), EARLY.load(Ordering::Relaxed));
    rhea::println!(
        "storm: {done} sleeps of 500 us by 4 threads, {} early, none lost",
        if early == 0 { "none" } else { "SOME" }
    );
    if done != 2000 || early != 0 {
        return Err("sleeps were lost or ended early");
    }
    rhea::println!("storm: PASS");
    Ok(())
}
