//! Scheduler benchmarks, printed as `RESULT` lines for `cargo xtask bench sched`, which runs
//! the same measures in a Linux guest under the same QEMU flags and prints the ratios.
//!
//! - `yield_switch`: two threads at one priority alternating with `yield_now`; one-way switch;
//! - `sem_pingpong`: two threads handing two semaphores back and forth; one-way hand-off;
//! - `irq_to_thread`: a self-IPI whose fast handler gives a semaphore a high-priority thread
//!   waits on; from raising the interrupt to the thread running;
//! - `cyclic`: cyclictest's loop — a high-priority thread sleeps to absolute deadlines every
//!   period and records how late it woke — at 200 µs and 1 ms, idle and with a low-priority
//!   CPU hog.
//!
//! - `trace_event`: one `rhea::trace::instant!` — with tracing of apps on
//!   (`rhea.trace=app` or `all`), the cost of recording an event; off, the cost of the check.
//!
//! Arguments come from the kernel command line: `loops=N` (default 10000).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use rhea::sync::Semaphore;
use rhea::thread::{Builder, Priority};
use rhea::time::{Duration, cycles, cycles_per_second, now};

rhea::main!(main);

fn prio(n: u32) -> Priority {
    Priority::new(n).expect("valid")
}

fn ns_of(cycles: u64) -> f64 {
    cycles as f64 * 1e9 / cycles_per_second() as f64
}

/// Main runs above every measured thread while it sets a measurement up, so nothing starts
/// before it blocks in `join`.
const SETUP: u32 = 59;

fn yield_switch(loops: u64) -> f64 {
    let mut hs = Vec::new();
    for _ in 0..2 {
        hs.push(
            Builder::new()
                .name("yielder")
                .priority(prio(30))
                .spawn(move || {
                    for _ in 0..loops {
                        rhea::thread::yield_now();
                    }
                })
                .expect("spawn"),
        );
    }
    let t0 = cycles();
    for h in hs {
        h.join().expect("join");
    }
    // 2 * loops yields, each a switch to the other thread.
    (cycles() - t0) as f64 / (2 * loops) as f64
}

fn sem_pingpong(loops: u64) -> f64 {
    static PING: Semaphore = Semaphore::new(0, 1);
    static PONG: Semaphore = Semaphore::new(0, 1);
    let ponger = Builder::new()
        .name("ponger")
        .priority(prio(30))
        .spawn(move || {
            for _ in 0..loops {
                PING.take().expect("take");
                PONG.give().expect("give");
            }
        })
        .expect("spawn");
    let pinger = Builder::new()
        .name("pinger")
        .priority(prio(30))
        .spawn(move || {
            for _ in 0..loops {
                PING.give().expect("give");
                PONG.take().expect("take");
            }
        })
        .expect("spawn");
    let t0 = cycles();
    pinger.join().expect("join");
    ponger.join().expect("join");
    (cycles() - t0) as f64 / (2 * loops) as f64
}

static IRQ_SEM: Semaphore = Semaphore::new(0, 1);
static RAISED_AT: AtomicU64 = AtomicU64::new(0);

fn on_irq(_: usize) {
    let _ = IRQ_SEM.give();
}

fn irq_to_thread(loops: u64) -> Stats {
    let vector = rhea::irq::register_fast(on_irq, 0).expect("a free vector");
    let samples = Arc::new(rhea::sync::SpinLock::<Vec<u64>>::new(Vec::with_capacity(
        loops as usize,
    )));
    let s = samples.clone();
    let waiter = Builder::new()
        .name("irq-thread")
        .priority(prio(50))
        .spawn(move || {
            for _ in 0..loops {
                IRQ_SEM.take().expect("take");
                let dt = cycles() - RAISED_AT.load(Ordering::Relaxed);
                s.lock().push(dt);
            }
        })
        .expect("spawn");
    // Below the waiter (50) while raising, so it preempts us as soon as the interrupt
    // returns; by the time we run again it has taken the sample and waits again.
    let me = rhea::thread::current();
    rhea::thread::set_priority(me, prio(16)).expect("valid");
    for _ in 0..loops {
        RAISED_AT.store(cycles(), Ordering::Relaxed);
        rhea::irq::raise_self(vector);
    }
    rhea::thread::set_priority(me, prio(SETUP)).expect("valid");
    waiter.join().expect("join");
    let v = core::mem::take(&mut *samples.lock());
    Stats::of(v.into_iter().map(ns_of).collect())
}

fn cyclic(period: Duration, loops: u64, hog: bool) -> Stats {
    let stop = Arc::new(AtomicBool::new(false));
    let hog_thread = hog.then(|| {
        let s = stop.clone();
        Builder::new()
            .name("hog")
            .priority(prio(1))
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    core::hint::spin_loop();
                }
            })
            .expect("spawn")
    });
    let samples = Arc::new(rhea::sync::SpinLock::<Vec<u64>>::new(Vec::with_capacity(
        loops as usize,
    )));
    let s = samples.clone();
    let measurer = Builder::new()
        .name("cyclic")
        .priority(prio(60))
        .spawn(move || {
            let mut next = now().saturating_add(period);
            for _ in 0..loops {
                rhea::thread::sleep_until(next);
                let late = now().saturating_duration_since(next);
                s.lock().push(late.as_nanos() as u64);
                next = next.saturating_add(period);
            }
        })
        .expect("spawn");
    measurer.join().expect("join");
    stop.store(true, Ordering::Relaxed);
    if let Some(h) = hog_thread {
        h.join().expect("join");
    }
    let v = core::mem::take(&mut *samples.lock());
    Stats::of(v.into_iter().map(|ns| ns as f64).collect())
}

struct Stats {
    min: f64,
    avg: f64,
    p50: f64,
    p99: f64,
    max: f64,
    n: usize,
}

impl Stats {
    fn of(mut v: Vec<f64>) -> Stats {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(core::cmp::Ordering::Equal));
        let n = v.len().max(1);
        // The smallest sample with at least `pct` % of the samples at or below it.
        let pct = |pct: usize| {
            v.get(((n * pct).div_ceil(100)).saturating_sub(1))
                .copied()
                .unwrap_or(0.0)
        };
        Stats {
            min: v.first().copied().unwrap_or(0.0),
            avg: v.iter().sum::<f64>() / n as f64,
            p50: pct(50),
            p99: pct(99),
            max: v.last().copied().unwrap_or(0.0),
            n: v.len(),
        }
    }
}

/// The mean cost of one `instant!` over `loops * 10` calls (ns), and whether app events were
/// being recorded. In ring mode, so the buffer never fills.
fn trace_event(loops: u64) -> (f64, bool) {
    let on = rhea::trace::enabled(rhea::trace::Category::App);
    let n = loops * 10;
    let t0 = cycles();
    for _ in 0..n {
        rhea::trace::instant!("bench");
    }
    (ns_of(cycles() - t0) / n as f64, on)
}

fn main() {
    let loops = rhea::cmdline_value("loops")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000u64);
    rhea::thread::set_priority(rhea::thread::current(), prio(SETUP)).expect("valid");
    rhea::println!(
        "RESULT conditions tsc_hz={} loops={loops}",
        cycles_per_second()
    );
    let c = yield_switch(loops);
    rhea::println!(
        "RESULT yield_switch cycles={c:.1} ns={:.1}",
        ns_of(c as u64)
    );
    let c = sem_pingpong(loops);
    rhea::println!(
        "RESULT sem_pingpong cycles={c:.1} ns={:.1}",
        ns_of(c as u64)
    );
    let s = irq_to_thread(loops);
    rhea::println!(
        "RESULT irq_to_thread min_ns={:.0} avg_ns={:.0} p50_ns={:.0} p99_ns={:.0} max_ns={:.0} samples={}",
        s.min,
        s.avg,
        s.p50,
        s.p99,
        s.max,
        s.n
    );
    for period_us in [200u64, 1000] {
        for hog in [false, true] {
            let s = cyclic(Duration::from_micros(period_us), loops, hog);
            rhea::println!(
                "RESULT cyclictest period={period_us} hog={} min={:.2} avg={:.2} p50={:.2} p99={:.2} max={:.2} samples={}",
                u8::from(hog),
                s.min / 1000.0,
                s.avg / 1000.0,
                s.p50 / 1000.0,
                s.p99 / 1000.0,
                s.max / 1000.0,
                s.n
            );
        }
    }
    let (ns, on) = trace_event(loops);
    rhea::println!("RESULT trace_event ns={ns:.1} on={}", u8::from(on));
    rhea::println!("RESULT done");
}
