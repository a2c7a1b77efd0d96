//! Test app: two threads at one priority with a 1 ms time slice each fill the SIMD registers
//! with their own pattern, spin long enough to be preempted, and check the registers still
//! hold it. Only the context switch's XSAVE/FXSAVE (and, under LinuxU, the signal frame of a
//! preempted thread) keeps these registers per thread.
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

/// Loads `v + i` into the low half of xmm_i (i = 0..16), spins `spins` iterations touching no
/// memory, then returns the sum of (xmm_i - i): `16 * v` when the registers survived. One asm
/// block, so no compiled code runs between the load and the check — on LinuxU the kernel's own
/// code is not soft-float and may use these registers.
fn load_spin_check(v: u64, spins: u64) -> u64 {
    let sum: u64;
    // SAFETY: writes only SIMD registers (declared clobbered) and two general registers; no
    // memory is touched.
    unsafe {
        core::arch::asm!(
            "movq xmm0, {v}", "inc {v}", "movq xmm1, {v}", "inc {v}", "movq xmm2, {v}", "inc {v}", "movq xmm3, {v}", "inc {v}",
            "movq xmm4, {v}", "inc {v}", "movq xmm5, {v}", "inc {v}", "movq xmm6, {v}", "inc {v}", "movq xmm7, {v}", "inc {v}",
            "movq xmm8, {v}", "inc {v}", "movq xmm9, {v}", "inc {v}", "movq xmm10, {v}", "inc {v}", "movq xmm11, {v}", "inc {v}",
            "movq xmm12, {v}", "inc {v}", "movq xmm13, {v}", "inc {v}", "movq xmm14, {v}", "inc {v}", "movq xmm15, {v}",
            "2:",
            "dec {n}",
            "jnz 2b",
            "xor {v:e}, {v:e}",
            "movq {t}, xmm0", "add {v}, {t}", "movq {t}, xmm1", "add {v}, {t}", "movq {t}, xmm2", "add {v}, {t}", "movq {t}, xmm3", "add {v}, {t}",
            "movq {t}, xmm4", "add {v}, {t}", "movq {t}, xmm5", "add {v}, {t}", "movq {t}, xmm6", "add {v}, {t}", "movq {t}, xmm7", "add {v}, {t}",
            "movq {t}, xmm8", "add {v}, {t}", "movq {t}, xmm9", "add {v}, {t}", "movq {t}, xmm10", "add {v}, {t}", "movq {t}, xmm11", "add {v}, {t}",
            "movq {t}, xmm12", "add {v}, {t}", "movq {t}, xmm13", "add {v}, {t}", "movq {t}, xmm14", "add {v}, {t}", "movq {t}, xmm15", "add {v}, {t}",
            v = inout(reg) v => sum,
            n = inout(reg) spins.max(1) => _,
            t = out(reg) _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
            out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _, out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
            options(nomem, nostack),
        );
    }
    sum.wrapping_sub((0..16).sum::<u64>())
}

/// Spin iterations lasting about `d`, measured once.
fn spins_for(d: Duration) -> u64 {
    let probe = 1_000_000;
    let t0 = now();
    load_spin_check(0, probe);
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
                        if load_spin_check(v, spins) != v.wrapping_mul(16) {
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
