//! SMP benchmarks, printed as `RESULT` lines:
//!
//! - `cross_cpu_wake`: a thread pinned to the first CPU gives a semaphore a thread pinned to the
//!   second CPU waits on; from just before the give to the waiter running (the wake-up, the
//!   reschedule IPI, the remote switch). Per-sample, so p50/p99/max are exact. The same hand-off
//!   with both threads on one CPU is measured in the same run as the baseline.
//! - `speedup`: a fixed amount of independent CPU-bound work (a xorshift loop), first as two
//!   units in one thread, then one unit in each of two threads pinned to different CPUs; the
//!   ratio of the wall times is the speed-up (ideal 2.0).
//!
//! With one online CPU it says so and measures only the baselines. Arguments come from the
//! kernel command line: `loops=N` (default 10000).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use rhea::sync::{Mutex, Semaphore};
use rhea::thread::{Builder, CpuSet, Priority};
use rhea::time::{cycles, cycles_per_second};

rhea::main!(main);

fn prio(n: u32) -> Priority {
    Priority::new(n).expect("valid")
}

fn ns_of(cycles: u64) -> f64 {
    cycles as f64 * 1e9 / cycles_per_second() as f64
}

/// Main runs above every measured thread while it sets a measurement up.
const SETUP: u32 = 59;

struct Stats {
    p50: f64,
    p99: f64,
    max: f64,
    n: usize,
}

fn stats(mut v: Vec<u64>) -> Stats {
    v.sort_unstable();
    let at = |q: f64| ns_of(v[((v.len() - 1) as f64 * q) as usize]);
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
        n: v.len(),
    }
}

/// One-way wake-up latency from `giver_cpu` to `waiter_cpu`, per sample.
fn wake_latency(giver_cpu: usize, waiter_cpu: usize, loops: u64) -> Stats {
    static GO: Semaphore = Semaphore::new(0, 1);
    static BACK: Semaphore = Semaphore::new(0, 1);
    static SENT: AtomicU64 = AtomicU64::new(0);
    let out = Arc::new(Mutex::new(Vec::new()));
    let o = out.clone();
    let waiter = Builder::new()
        .name("waiter")
        .priority(prio(40))
        .affinity(CpuSet::single(waiter_cpu))
        .spawn(move || {
            let mut v = Vec::with_capacity(loops as usize);
            for _ in 0..loops {
                GO.take().expect("take");
                let now = cycles();
                v.push(now.saturating_sub(SENT.load(Ordering::Acquire)));
                BACK.give().expect("give");
            }
            *o.lock().expect("lock") = v;
        })
        .expect("spawn");
    let giver = Builder::new()
        .name("giver")
        .priority(prio(30))
        .affinity(CpuSet::single(giver_cpu))
        .spawn(move || {
            for _ in 0..loops {
                SENT.store(cycles(), Ordering::Release);
                GO.give().expect("give");
                BACK.take().expect("take");
            }
        })
        .expect("spawn");
    giver.join().expect("join");
    waiter.join().expect("join");
    let v = core::mem::take(&mut *out.lock().expect("lock"));
    stats(v)
}

/// A unit of CPU-bound work that touches no shared memory.
fn work(units: u64) -> u64 {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..units * 20_000_000 {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
    }
    core::hint::black_box(s)
}

/// Wall cycles for `threads` threads, pinned to `cpus` in turn, doing `units_each` each.
fn timed_work(cpus: &[usize], threads: usize, units_each: u64) -> u64 {
    let t0 = cycles();
    let hs: Vec<_> = (0..threads)
        .map(|i| {
            Builder::new()
                .name("worker")
                .priority(prio(20))
                .affinity(CpuSet::single(cpus[i % cpus.len()]))
                .spawn(move || {
                    work(units_each);
                })
                .expect("spawn")
        })
        .collect();
    for h in hs {
        h.join().expect("join");
    }
    cycles() - t0
}

fn main() {
    let loops = rhea::cmdline_value("loops")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000u64);
    rhea::thread::set_priority(rhea::thread::current(), prio(SETUP)).expect("valid");
    let cpus: Vec<usize> = rhea::thread::online_cpus().iter().collect();
    rhea::println!(
        "RESULT conditions tsc_hz={} loops={loops} cpus={}",
        cycles_per_second(),
        cpus.len()
    );
    let same = wake_latency(cpus[0], cpus[0], loops);
    rhea::println!(
        "RESULT same_cpu_wake p50_ns={:.0} p99_ns={:.0} max_ns={:.0} samples={}",
        same.p50,
        same.p99,
        same.max,
        same.n
    );
    let units = (loops / 10_000).max(1);
    if let [a, b, ..] = cpus[..] {
        let cross = wake_latency(a, b, loops);
        rhea::println!(
            "RESULT cross_cpu_wake p50_ns={:.0} p99_ns={:.0} max_ns={:.0} samples={} ratio_p50={:.2}",
            cross.p50,
            cross.p99,
            cross.max,
            cross.n,
            cross.p50 / same.p50
        );
        let one = timed_work(&[a], 1, 2 * units);
        let two = timed_work(&[a, b], 2, units);
        rhea::println!(
            "RESULT speedup one_cpu_ms={:.1} two_cpus_ms={:.1} speedup={:.2}",
            ns_of(one) / 1e6,
            ns_of(two) / 1e6,
            one as f64 / two as f64
        );
    } else {
        rhea::println!("RESULT cross_cpu_wake skipped: one CPU online");
    }
    rhea::println!("RESULT done");
}
