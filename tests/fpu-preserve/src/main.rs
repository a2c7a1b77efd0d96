//! Test app: two threads at one priority with a 1 ms time slice each fill the SIMD registers
//! with their own pattern, spin long enough to be preempted, and check the registers still
//! hold it (`rhea::testing::simd_load_spin_check`: xmm0–15 on x86_64, v0–v31 in full on
//! aarch64, loaded, spun on and checked in one asm block). Only the kernel's interrupt entry
//! and context switch (XSAVE/FXSAVE; the signal frame under LinuxU; the vector-register saves
//! on aarch64) keep these registers per thread.
//!
//! Both threads are pinned to one CPU: with several CPUs each would otherwise get a CPU of its
//! own and never be preempted (seen: "too few rounds were preempted" with 2 vCPUs). The spin
//! length is calibrated once, by main before the threads exist (calibrating in the threads let
//! one thread's slice land inside the other's probe), as the fastest of several short probes,
//! so neither a host stall nor a switch can shorten the rounds.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use rhea::thread::{Builder, Priority};
use rhea::time::{Duration, now};

rhea::main!(main);

static BAD: AtomicU64 = AtomicU64::new(0);
static SWITCHES_SEEN: AtomicU64 = AtomicU64::new(0);

/// Spin iterations lasting about `d` when the CPU is not stolen: the fastest of five probes
/// (a stall, a preemption or a host descheduling only ever makes a probe slower).
fn spins_for(d: Duration) -> u64 {
    let probe = 50_000;
    let took = (0..5)
        .map(|_| {
            let t0 = now();
            rhea::testing::simd_load_spin_check(0, probe);
            now().saturating_duration_since(t0).as_nanos().max(1) as u64
        })
        .min()
        .unwrap_or(1);
    (probe * d.as_nanos() as u64 / took).max(1000)
}

fn main() -> Result<(), &'static str> {
    let cpu = rhea::thread::online_cpus().first().ok_or("no CPU online")?;
    // Rounds of ~800 µs against 1 ms slices: most rounds contain a switch.
    let spins = spins_for(Duration::from_micros(800));
    let mut handles = Vec::new();
    for t in 0..2u64 {
        handles.push(
            Builder::new()
                .name("simd")
                .priority(Priority::new(8).unwrap())
                .time_slice(Duration::from_millis(1))
                .affinity(rhea::thread::CpuSet::single(cpu))
                .spawn(move || {
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
    // Expected: each ~800 µs round of two threads sharing one CPU with 1 ms slices meets a
    // switch most of the time: measured 351-361 of 400 rounds on q35 TCG with 1 and 2 vCPUs on
    // an idle host, 187-361 with both host CPUs busy (two `yes` hogs and a Xen guest); 20
    // leaves a margin of 9x at the worst seen.
    if seen < 20 {
        return Err("too few rounds were preempted for the test to mean anything");
    }
    rhea::println!("fpu: PASS");
    Ok(())
}
