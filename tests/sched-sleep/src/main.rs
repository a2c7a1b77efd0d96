//! Test app: sleeps of many lengths, by several threads at different priorities at once, must
//! never return before their deadline. Lateness is printed (informational only: timing
//! belongs in benchmarks).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use rhea::thread::{Builder, Priority};
use rhea::time::{Duration, Instant, now};

rhea::main!(main);

fn main() -> Result<(), &'static str> {
    let early = Arc::new(AtomicU64::new(0));
    let worst_late_ns = Arc::new(AtomicU64::new(0));
    let count = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for t in 0..4u64 {
        let (e, w, c) = (early.clone(), worst_late_ns.clone(), count.clone());
        handles.push(
            Builder::new()
                .name("sleeper")
                .priority(Priority::new(10 + t as u32).unwrap())
                .spawn(move || {
                    let mut seed = 0x9e37_79b9u64 * (t + 1);
                    for i in 0..50u64 {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        let us = 50 + seed % 3000;
                        let start = now();
                        if i % 2 == 0 {
                            rhea::thread::sleep(Duration::from_micros(us));
                        } else {
                            rhea::thread::sleep_until(
                                start.saturating_add(Duration::from_micros(us)),
                            );
                        }
                        let deadline: Instant = start.saturating_add(Duration::from_micros(us));
                        let woke = now();
                        if woke < deadline {
                            e.fetch_add(1, Ordering::Relaxed);
                        } else {
                            w.fetch_max(
                                woke.saturating_duration_since(deadline).as_nanos() as u64,
                                Ordering::Relaxed,
                            );
                        }
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .map_err(|_| "spawn")?,
        );
    }
    for h in handles {
        h.join().map_err(|_| "join")?;
    }
    let (n, e) = (count.load(Ordering::Relaxed), early.load(Ordering::Relaxed));
    rhea::println!(
        "sleep: {n} sleeps, {} early, worst lateness {} us",
        if e == 0 { "none" } else { "SOME" },
        worst_late_ns.load(Ordering::Relaxed) / 1000
    );
    if e != 0 || n != 200 {
        return Err("a sleep woke early or went missing");
    }
    rhea::println!("sleep: PASS");
    Ok(())
}
