//! Test app: two threads at one priority with a 1 ms time slice each fill the SIMD registers
//! with their own pattern, spin long enough to be preempted, and check the registers still
//! hold it (`rhea::testing::simd_load_spin_check`: xmm0–15 on x86_64, v0–v31 in full on
//! aarch64, loaded, spun on and checked in one asm block). Only the kernel's interrupt entry
//! and context switch (XSAVE/FXSAVE; the signal frame under LinuxU; the vector-register saves
//! on aarch64) keep these registers per thread.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use rhea::thread::{Builder, Priority};
use rhea::time::{Duration, now};

rhea::main!(main);

static BAD: AtomicU64 = AtomicU64::new(0);
static SWITCHES_SEEN: AtomicU64 = AtomicU64::new(0);

/// Spin iterations lasting about `d`, measured once.
fn spins_for(d: Duration) -> u64 {
    let probe = 1_000_000;
    let t0 = now();
    rhea::testing::simd_load_spin_check(0, probe);
    let took = now().saturating_duration_since(t0).as_nanos().max(1) as u64;
    (probe * d.as_nanos() as u64 / took).max(1000)
}

fn main() -> Result<(), &'static str> {
    let mut handles = Vec::new();
    for t in 0..2u64 {
        handles.push(
            Builder::new()
                .name("simd")
                .priority(Priority::new(8).unwrap())
                .time_slice(Duration::from_millis(1))
                .spawn(move || {
                    let spins = spins_for(Duration::from_micros(400));
                    for round in 0..200u64 {
                        let v = (t + 1) << 40 | round << 8;
                        let before = rhea::thread::switches();
                        if !rhea::testing::simd_load_spin_check(v, spins) {
                            BAD.fetch_add(1, Ordering::Relaxed);
                        }
                        if rhea::thread::switches() != before {
                            SWITCHES_SEEN.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
                .map_err(|_| "spawn")?,
        );
    }
    for h in handles {
        h.join().map_err(|_| "join")?;
    }
    let (bad, seen) = (
        BAD.load(Ordering::Relaxed),
        SWITCHES_SEEN.load(Ordering::Relaxed),
    );
    rhea::println!(
        "fpu: 2 threads x 200 rounds, registers {}; {seen} rounds saw a switch",
        if bad == 0 { "intact" } else { "CORRUPTED" }
    );
    if bad != 0 {
        return Err("SIMD registers were not preserved");
    }
    if seen < 20 {
        return Err("too few rounds were preempted for the test to mean anything");
    }
    rhea::println!("fpu: PASS");
    Ok(())
}
