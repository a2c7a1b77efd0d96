//! Test app: two threads at one priority with a 1 ms time slice each fill the SIMD registers
//! with their own pattern, spin long enough to be preempted, and check the registers still
//! hold it. The kernel itself is soft-float, so only the context switch's XSAVE/FXSAVE keeps
//! these registers per thread.
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

/// Loads `v` into xmm0..xmm15 (low 64 bits each, vector i gets v + i).
fn load(v: u64) {
    // SAFETY: writes only SIMD registers, which no compiled code of this soft-float target
    // uses; the kernel preserves them per thread (what this test checks).
    unsafe {
        core::arch::asm!(
            "movq xmm0, {v}", "inc {v}", "movq xmm1, {v}", "inc {v}", "movq xmm2, {v}", "inc {v}", "movq xmm3, {v}", "inc {v}",
            "movq xmm4, {v}", "inc {v}", "movq xmm5, {v}", "inc {v}", "movq xmm6, {v}", "inc {v}", "movq xmm7, {v}", "inc {v}",
            "movq xmm8, {v}", "inc {v}", "movq xmm9, {v}", "inc {v}", "movq xmm10, {v}", "inc {v}", "movq xmm11, {v}", "inc {v}",
            "movq xmm12, {v}", "inc {v}", "movq xmm13, {v}", "inc {v}", "movq xmm14, {v}", "inc {v}", "movq xmm15, {v}",
            v = inout(reg) v => _,
        );
    }
}

/// Sum of (xmm_i low 64 bits - i), which is 16 * v when `load(v)` is intact.
fn check() -> u64 {
    let mut sum = 0u64;
    let mut tmp: u64;
    macro_rules! add {
        ($($r:literal),*) => {$(
            // SAFETY: reads one SIMD register.
            unsafe { core::arch::asm!(concat!("movq {t}, ", $r), t = out(reg) tmp) };
            sum = sum.wrapping_add(tmp);
        )*};
    }
    add!(
        "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"
    );
    sum.wrapping_sub((0..16).sum::<u64>())
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
                    for round in 0..200u64 {
                        let v = (t + 1) << 40 | round << 8;
                        load(v);
                        let before = rhea::thread::switches();
                        let end = now().saturating_add(Duration::from_micros(300));
                        while now() < end {
                            core::hint::spin_loop();
                        }
                        if rhea::thread::switches() != before {
                            SWITCHES_SEEN.fetch_add(1, Ordering::Relaxed);
                        }
                        if check() != v.wrapping_mul(16) {
                            BAD.fetch_add(1, Ordering::Relaxed);
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
