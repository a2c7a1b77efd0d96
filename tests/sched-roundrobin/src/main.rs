//! Test app: three CPU-bound threads at one priority with a 2 ms slice must take turns (each
//! observes the others' progress while it is still running); the same threads without a slice
//! run FIFO, one to completion before the next starts.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use rhea::thread::{Builder, Priority};
use rhea::time::{Duration, now};

rhea::main!(main);

const N: usize = 3;

/// Runs N spinners for `work` each; returns, per thread, how many times it saw another
/// thread's counter move while it was itself not finished.
fn run(slice: Option<Duration>, work: Duration) -> Result<Vec<u64>, &'static str> {
    let progress: Arc<[AtomicU64; N]> = Arc::new([const { AtomicU64::new(0) }; N]);
    let interleavings: Arc<[AtomicU64; N]> = Arc::new([const { AtomicU64::new(0) }; N]);
    let mut handles = Vec::new();
    for i in 0..N {
        let (p, x) = (progress.clone(), interleavings.clone());
        let mut b = Builder::new()
            .name("spinner")
            .priority(Priority::new(10).unwrap());
        if let Some(s) = slice {
            b = b.time_slice(s);
        }
        handles.push(
            b.spawn(move || {
                let end = now().saturating_add(work);
                let mut last_others = 0u64;
                while now() < end {
                    p[i].fetch_add(1, Ordering::Relaxed);
                    let others: u64 = (0..N)
                        .filter(|&j| j != i)
                        .map(|j| p[j].load(Ordering::Relaxed))
                        .sum();
                    if others != last_others {
                        x[i].fetch_add(1, Ordering::Relaxed);
                        last_others = others;
                    }
                }
            })
            .map_err(|_| "spawn")?,
        );
    }
    for h in handles {
        h.join().map_err(|_| "join")?;
    }
    Ok((0..N)
        .map(|i| interleavings[i].load(Ordering::Relaxed))
        .collect())
}

fn main() -> Result<(), &'static str> {
    // Main runs at 16, above the spinners: it starts them all, then blocks in join.
    let sliced = run(Some(Duration::from_millis(2)), Duration::from_millis(60))?;
    rhea::println!("roundrobin: sliced threads interleaved {sliced:?} times");
    // Every thread must have seen the others progress more than once while it ran: with a
    // 2 ms slice over 60 ms each, there are ~90 slices.
    if sliced.iter().any(|&x| x < 5) {
        return Err("sliced threads did not take turns");
    }
    let fifo = run(None, Duration::from_millis(20))?;
    rhea::println!("roundrobin: fifo threads ran one after the other (interleavings {fifo:?})");
    // FIFO: a thread sees the others move only between its start and... never while it runs,
    // except the first observation of already-finished predecessors (at most 1).
    if fifo.iter().any(|&x| x > 1) {
        return Err("FIFO threads were sliced");
    }
    rhea::println!("roundrobin: PASS");
    Ok(())
}
