//! Test app: kernel locks that threads take must not be spun against by a more important
//! thread on the same CPU while their holder is preempted (a priority-inversion deadlock:
//! the holder never runs again). On one CPU, a low-priority thread works through a service
//! while a high-priority one wakes every 300 µs and uses the same service:
//!
//! 1. the console: line after line from both (before its lock blocked with priority
//!    inheritance, every board but the simulated one hung here);
//! 2. thread creation and reaping, which map and unmap stacks under the memory lock (it was a
//!    spin lock that left interrupts on).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use rhea::thread::{self, Builder, JoinHandle, Priority};
use rhea::time::Duration;

rhea::main!(main);

const LOW_LINES: u32 = 400;
const LOW_SPAWNS: u32 = 300;

fn prio(level: u32) -> Result<Priority, &'static str> {
    Priority::new(level).map_err(|_| "bad priority")
}

/// Runs `low` on this (low-priority) thread while a high-priority thread runs `high` every
/// 300 µs until `low` returns; returns how many times `high` ran.
fn contend(
    name: &'static str,
    low: impl FnOnce() -> Result<(), &'static str>,
    high: fn(u32) -> Result<(), &'static str>,
) -> Result<u32, &'static str> {
    static STOP: AtomicBool = AtomicBool::new(false);
    static RUNS: AtomicU32 = AtomicU32::new(0);
    static FAILED: AtomicBool = AtomicBool::new(false);
    STOP.store(false, Ordering::SeqCst);
    RUNS.store(0, Ordering::SeqCst);
    let h: JoinHandle = Builder::new()
        .name(name)
        .priority(prio(40)?)
        .spawn(move || {
            while !STOP.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_micros(300));
                let n = RUNS.fetch_add(1, Ordering::Relaxed);
                if high(n).is_err() {
                    FAILED.store(true, Ordering::SeqCst);
                }
            }
        })
        .map_err(|_| "spawn the high thread")?;
    let r = low();
    STOP.store(true, Ordering::SeqCst);
    h.join().map_err(|_| "join the high thread")?;
    r?;
    if FAILED.load(Ordering::SeqCst) {
        return Err("the high thread's work failed");
    }
    Ok(RUNS.load(Ordering::SeqCst))
}

fn spawn_and_join(prio_level: u32) -> Result<(), &'static str> {
    Builder::new()
        .name("short")
        .priority(prio(prio_level)?)
        .stack_size(16 << 10)
        .spawn(|| {})
        .map_err(|_| "spawn a short thread")?
        .join()
        .map_err(|_| "join a short thread")
}

fn main() -> Result<(), &'static str> {
    thread::set_priority(thread::current(), prio(5)?).map_err(|_| "lower main")?;

    let high = contend(
        "high-printer",
        || {
            for n in 0..LOW_LINES {
                rhea::println!(
                    "lock: low {n:05} .................................................."
                );
            }
            Ok(())
        },
        |n| {
            rhea::println!("lock: high {n:05} ................................");
            Ok(())
        },
    )?;
    rhea::println!("lock: console: {LOW_LINES} low lines and {high} high lines printed");
    if high == 0 {
        return Err("the high printer never printed");
    }

    let high = contend(
        "high-spawner",
        || (0..LOW_SPAWNS).try_for_each(|_| spawn_and_join(4)),
        |_| spawn_and_join(41),
    )?;
    rhea::println!("lock: threads: {LOW_SPAWNS} low and {high} high spawn+join");
    if high == 0 {
        return Err("the high spawner never ran");
    }
    rhea::println!("lock: PASS");
    Ok(())
}
