//! Test app: a low-priority thread spins without ever blocking or yielding; a high-priority
//! thread sleeping on the timer must preempt it when its deadline passes. Without preemption
//! the spinner never stops and the run times out.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use rhea::thread::{Builder, Priority};
use rhea::time::{Duration, now};

rhea::main!(main);

fn main() -> Result<(), &'static str> {
    let stop = Arc::new(AtomicBool::new(false));
    let spins = Arc::new(AtomicU64::new(0));
    let (s, n) = (stop.clone(), spins.clone());
    let low = Builder::new()
        .name("spinner")
        .priority(Priority::new(3).unwrap())
        .spawn(move || {
            while !s.load(Ordering::Relaxed) {
                n.fetch_add(1, Ordering::Relaxed);
            }
        })
        .map_err(|_| "spawn spinner")?;
    let seen = Arc::new(AtomicU64::new(0));
    let (s, n, seen2) = (stop.clone(), spins.clone(), seen.clone());
    let high = Builder::new()
        .name("waker")
        .priority(Priority::new(40).unwrap())
        .spawn(move || {
            let start = now();
            rhea::thread::sleep(Duration::from_millis(20));
            let late = now().saturating_duration_since(start);
            seen2.store(n.load(Ordering::Relaxed), Ordering::Relaxed);
            rhea::println!(
                "preempt: high woke after {} us while the spinner had spun {} times",
                late.as_micros(),
                n.load(Ordering::Relaxed)
            );
            s.store(true, Ordering::Relaxed);
        })
        .map_err(|_| "spawn waker")?;
    // The main thread (priority 16) sleeps too, so the spinner gets the CPU.
    high.join().map_err(|_| "join waker")?;
    low.join().map_err(|_| "join spinner")?;
    if seen.load(Ordering::Relaxed) == 0 {
        return Err("the spinner never ran before the waker preempted it");
    }
    rhea::println!("preempt: PASS");
    Ok(())
}
