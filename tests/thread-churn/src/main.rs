//! Test app: 300 threads spawned and joined, then 300 spawned detached, must give back every
//! stack page, stack slot and heap byte they took (joined threads are reaped by `join`,
//! detached ones by the next spawn).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

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
    stack_peaks()?;
    rhea::println!("churn: PASS");
    Ok(())
}

/// `rhea::stack_usage_here` and `rhea::stack_usage` report how deep a thread went: one that
/// wrote 12 KiB of its 32 KiB stack reads at least 12 KiB and well under the whole (its frames,
/// the switch area, and on LinuxU a signal frame on top: up to 24 KiB allowed), and the list
/// shows it by name with its size; a thread that only returned reads under 16 KiB. An
/// unpainted stack would read as wholly used (32 KiB).
fn stack_peaks() -> Result<(), &'static str> {
    static PEAK: AtomicU64 = AtomicU64::new(0);
    static LISTED: AtomicU64 = AtomicU64::new(0);
    let deep = Builder::new()
        .name("deep")
        .stack_size(32 * 1024)
        .spawn(|| {
            let mut buf = [0u8; 12 * 1024];
            for (i, b) in core::hint::black_box(&mut buf).iter_mut().enumerate() {
                *b = i as u8;
            }
            core::hint::black_box(&buf);
            let here = rhea::stack_usage_here().map_or(0, |u| u.peak_bytes);
            PEAK.store(here, Ordering::Relaxed);
            let listed = rhea::stack_usage()
                .iter()
                .find(|u| u.name() == "deep" && u.bytes() == 32 * 1024)
                .map_or(0, |u| u.peak_bytes);
            LISTED.store(listed, Ordering::Relaxed);
        })
        .map_err(|_| "spawn")?;
    deep.join().map_err(|_| "join")?;
    let (peak, listed) = (PEAK.load(Ordering::Relaxed), LISTED.load(Ordering::Relaxed));
    if !(12 * 1024..24 * 1024).contains(&peak) || listed < peak {
        rhea::println!("churn: deep thread's peak {peak} B, listed {listed} B");
        return Err("a stack's peak use was misreported");
    }
    Builder::new()
        .name("shallow")
        .stack_size(32 * 1024)
        .spawn(|| {
            PEAK.store(
                rhea::stack_usage_here().map_or(u64::MAX, |u| u.peak_bytes),
                Ordering::Relaxed,
            );
        })
        .map_err(|_| "spawn")?
        .join()
        .map_err(|_| "join")?;
    let shallow = PEAK.load(Ordering::Relaxed);
    if shallow >= 16 * 1024 {
        rhea::println!("churn: shallow thread's peak {shallow} B");
        return Err("a fresh stack read as used (not painted?)");
    }
    rhea::println!(
        "churn: stack peaks: {} B after writing 12 KiB, {shallow} B for a thread that only returned",
        peak
    );
    Ok(())
}
