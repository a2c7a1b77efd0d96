//! Test app: 300 threads spawned and joined, then 300 spawned detached, must give back every
//! stack page, stack slot and heap byte they took (joined threads are reaped by `join`,
//! detached ones by the next spawn).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};
use rhea::thread::{Builder, Priority};
use rhea::time::Duration;

rhea::main!(main);

static RAN: AtomicU64 = AtomicU64::new(0);

fn main() -> Result<(), &'static str> {
    // One warm-up round so lazily created objects exist before the baseline.
    Builder::new()
        .spawn(|| {})
        .map_err(|_| "spawn")?
        .join()
        .map_err(|_| "join")?;
    let before = rhea::memory_stats();
    for _ in 0..300 {
        let h = Builder::new()
            .name("joined")
            .stack_size(16 * 1024)
            .priority(Priority::new(20).unwrap())
            .spawn(|| {
                RAN.fetch_add(1, Ordering::Relaxed);
            })
            .map_err(|_| "spawn")?;
        h.join().map_err(|_| "join")?;
    }
    for _ in 0..300 {
        // Dropping the handle detaches the thread.
        drop(
            Builder::new()
                .name("detached")
                .stack_size(16 * 1024)
                .priority(Priority::new(20).unwrap())
                .spawn(|| {
                    RAN.fetch_add(1, Ordering::Relaxed);
                })
                .map_err(|_| "spawn")?,
        );
        rhea::thread::sleep(Duration::from_micros(10));
    }
    // One more spawn reaps the last detached thread.
    Builder::new()
        .spawn(|| {})
        .map_err(|_| "spawn")?
        .join()
        .map_err(|_| "join")?;
    let after = rhea::memory_stats();
    if RAN.load(Ordering::Relaxed) != 600 {
        return Err("not every thread ran");
    }
    rhea::println!("churn: before {before:?}");
    rhea::println!("churn: after  {after:?}");
    if after.free_frame_bytes != before.free_frame_bytes
        || after.stacks != before.stacks
        || after.heap_used_bytes > before.heap_used_bytes
    {
        return Err("threads leaked memory");
    }
    rhea::println!(
        "churn: 300 joined and 300 detached threads; frames, stacks and heap back to where they started"
    );
    rhea::println!("churn: PASS");
    Ok(())
}
